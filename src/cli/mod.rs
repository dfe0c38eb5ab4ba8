//! The command line: the arguments as clap reads them, one function per subcommand, and every
//! way a command ends (its message and exit code).

pub mod arguments;
pub mod error;
pub mod subcommand;
