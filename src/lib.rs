//! zdd: zero-downtime deploys driven by Rhai recipes. See DESIGN.md for the layers; `run` is the
//! whole program.

mod arguments;
mod config;
mod context;
mod diagnostic;
mod doctor;
mod environment;
mod error;
mod failure;
mod git;
mod host_secrets;
mod host_setup;
mod http;
mod interrupt;
#[cfg(test)]
mod layers;
mod notify;
mod plan;
mod primitives;
mod process;
mod quote;
mod registry;
mod release_state;
mod reporter;
mod run_notification;
mod runner;
mod script;
mod secrets;
mod settings;
mod sources;
mod step_caller;
mod step_failure;
mod subcommand;
mod suggest;
mod template;
mod transport;

use std::ffi::OsString;

use clap::Parser;

pub use error::exit;

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
