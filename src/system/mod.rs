//! What zdd asks of the machine it runs on: child processes (`process`), Ctrl-C
//! (`interrupt`), environment variables (`environment`) and the one HTTP client (`http`).

pub mod environment;
pub mod http;
pub mod interrupt;
pub mod process;
