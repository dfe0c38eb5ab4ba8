//! `run`, `test`, `cd`: shell commands on the current host. `{{key}}` values are quoted.

use crate::output::failure::{Failure, FailureKind};
use crate::primitives::host_context::HostContext;
use crate::system::process::ProcessErrorKind;
use crate::values::template::Mode;

/// Run a command; its standard output, without the trailing newline.
pub fn run(ctx: &HostContext, command: &str) -> Result<String, Failure> {
    let output = ctx.shell(command)?;
    Ok(output.stdout.trim_end_matches('\n').to_string())
}

/// Run a command; whether it exited 0. A command that could not start or was killed is an error.
pub fn test(ctx: &HostContext, command: &str) -> Result<bool, Failure> {
    match ctx.shell(command) {
        Ok(_) => Ok(true),
        Err(Failure {
            kind: FailureKind::Command(e),
            ..
        }) if matches!(e.kind, ProcessErrorKind::Exit(_)) => Ok(false),
        Err(other) => Err(other),
    }
}

/// Run the next commands of this task in `path`.
pub fn cd(ctx: &mut HostContext, path: &str) -> Result<(), Failure> {
    let path = ctx.expand(path, Mode::Plain)?;
    if !ctx.transport.is_dir(&path)? {
        return Err(Failure::message(format!(
            "cannot cd into `{path}`: no such directory"
        )));
    }
    ctx.cwd = Some(path);
    Ok(())
}
