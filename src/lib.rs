//! zdd: zero-downtime deploys driven by Rhai recipes. See ARCHITECTURE.md for the layers; `run`
//! is the whole program.

pub mod artifact;
mod cli;
mod doctor;
mod inventory;
#[cfg(test)]
mod layers;
mod output;
mod plan;
mod primitives;
mod recipes;
mod registry;
mod run;
mod script;
mod settings;
mod system;
mod transport;
mod values;

use std::ffi::OsString;

use clap::Parser;

use cli::{arguments, error, subcommand};
use output::{secrets, sources};
use system::environment;

pub use cli::error::exit;

/// Run zdd with `args` (the first is the program name); returns the exit code.
pub fn run<I: IntoIterator<Item = OsString>>(args: I) -> i32 {
    let arguments = match arguments::Arguments::try_parse_from(args) {
        Ok(arguments) => arguments,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
        }
    };
    init_tracing();
    let sources = sources::Sources::default();
    let secrets = std::sync::Arc::new(secrets::Secrets::default());
    match subcommand::execute(arguments.command, &sources, &secrets) {
        Ok(()) => exit::SUCCESS,
        Err(error) => {
            let rendered = error.render(&sources, &secrets);
            eprint!("{rendered}");
            if environment::github_actions() {
                eprintln!("{}", error::Error::annotation(&rendered));
            }
            error.exit_code()
        }
    }
}

fn init_tracing() {
    if let Ok(filter) = std::env::var(environment::LOG) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}
