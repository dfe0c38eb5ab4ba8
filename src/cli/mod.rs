//! The command line: the arguments as clap reads them, one function per subcommand, and every
//! way a command ends (its message and exit code); `report` reads a deploy back from its hosts; `hosts` shows the hosts and where each setting came from; `recipes` pins shared recipes (`zdd.lock`).

pub mod arguments;
pub mod error;
pub mod hosts;
pub mod recipes;
pub mod report;
pub mod subcommand;
