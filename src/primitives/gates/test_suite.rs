//! `run_tests()`: `test_command` (e.g. `php artisan test`) in the new release; red means no
//! deploy. Empty `test_command` skips it (and says so).

use crate::output::failure::{Failure, FailureKind};
use crate::primitives::artisan::app_path;
use crate::primitives::host_context::HostContext;
use crate::values::template::Mode;

pub fn run_tests(ctx: &HostContext) -> Result<bool, Failure> {
    let command = ctx.text_or("test_command", "")?;
    if command.trim().is_empty() {
        ctx.info("tests: skipped (no test_command set)");
        return Ok(false);
    }
    let line = ctx.expand(&command, Mode::Shell)?;
    match ctx.exec_in(&line, Some(&app_path(ctx)?)) {
        Ok(_) => {
            ctx.info(&format!("tests: `{command}` passed"));
            Ok(true)
        }
        Err(Failure {
            kind: FailureKind::Command(error),
            ..
        }) => Err(Failure::message(format!(
            "the tests failed, so nothing was deployed: {error}"
        ))
        .with_hint("fix the tests, or deploy without them with `-o test_command=`")),
        Err(other) => Err(other),
    }
}
