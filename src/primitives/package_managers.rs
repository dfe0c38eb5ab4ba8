//! `composer` and `npm`, run in the release this run is making. `composer install` and
//! `npm ci` start from the previous release's `vendor/` and `node_modules/` when there is one
//! (setting `vendor_reuse`, see `primitives::vendor_reuse`): the copy goes in the same
//! command as the tool, so it costs no round trip.

use super::artisan::app_path;
use super::programs::{php, program};
use super::vendor_reuse::{self, Dependencies, Reuse};
use crate::output::failure::{Failure, FailureKind};
use crate::primitives::host_context::HostContext;
use crate::values::quote::Line;
use crate::values::template::Mode;

/// `{{bin/php}} {{bin/composer}} ARGS`: composer runs on the PHP the recipe names, as in
/// Deployer (a missing PHP fails here, before anything else runs on it). `install` starts
/// from the previous release's `vendor/` (`vendor_reuse`).
pub fn composer(ctx: &HostContext, arguments: &str) -> Result<String, Failure> {
    let reuse = vendor_reuse::setting(ctx)?;
    super::programs::find(ctx, &["php", "composer"])?;
    let composer = program(ctx, "composer")?;
    let arguments = ctx.expand(arguments, Mode::Shell)?;
    let line = php(ctx)?.arg(&composer)?.text(&arguments);
    let previous = match first_word(&arguments) {
        "install" | "i" if reuse != Reuse::Off => vendor_reuse::previous_release(ctx)?,
        _ => None,
    };
    let script = vendor_reuse::composer_install(
        reuse,
        previous.as_ref().map(|(_, path)| path.as_str()),
        line.as_str(),
    )?;
    run_reusing(ctx, &vendor_reuse::VENDOR, previous, &script, line.as_str())
}

/// `{{bin/npm}} ARGS`. `ci` reuses the previous release's `node_modules/` instead of running
/// when the package files, `npm ci`'s arguments and node's version are the same
/// (`vendor_reuse`): `npm ci` would remove it and install the same tree again.
pub fn npm(ctx: &HostContext, arguments: &str) -> Result<String, Failure> {
    let reuse = vendor_reuse::setting(ctx)?;
    let binary = program(ctx, "npm")?;
    let arguments = ctx.expand(arguments, Mode::Shell)?;
    let line = Line::command(&[binary])?.text(&arguments);
    let ci = matches!(
        first_word(&arguments),
        "ci" | "clean-install" | "ic" | "install-clean"
    );
    if !ci || reuse == Reuse::Off {
        return run_reusing(ctx, &vendor_reuse::NODE_MODULES, None, line.as_str(), "");
    }
    let previous = vendor_reuse::previous_release(ctx)?;
    let script = vendor_reuse::npm_ci(
        reuse,
        previous.as_ref().map(|(_, path)| path.as_str()),
        &arguments,
        line.as_str(),
    )?;
    run_reusing(
        ctx,
        &vendor_reuse::NODE_MODULES,
        previous,
        &script,
        line.as_str(),
    )
}

/// The first word of a tool's arguments (its command).
fn first_word(arguments: &str) -> &str {
    arguments.split_whitespace().next().unwrap_or("")
}

/// Run `script` in the release (shown as `shown`, the tool's own command line, when it
/// differs) and say on the host's progress what became of the previous release's `deps`,
/// once the host has said it (its [`vendor_reuse::MARKER`] line, taken out of the output and
/// out of a failure's). Returns the tool's output.
fn run_reusing(
    ctx: &HostContext,
    deps: &Dependencies,
    previous: Option<(String, String)>,
    script: &str,
    shown: &str,
) -> Result<String, Failure> {
    let shown = if shown.is_empty() { script } else { shown };
    let dir = app_path(ctx)?;
    let report = |stdout: &str| -> String {
        let (outcome, rest) = vendor_reuse::outcome(stdout, deps);
        if let (Some(outcome), Some((name, _))) = (outcome, &previous) {
            match outcome.describe(deps, name) {
                (text, true) => ctx.warn(&text),
                (text, false) => ctx.info(&text),
            }
        }
        rest
    };
    match ctx.exec_shown(script, shown, Some(&dir)) {
        Ok(output) => Ok(report(&output.stdout).trim_end().to_string()),
        Err(Failure {
            kind: FailureKind::Command(mut error),
            hint,
        }) => {
            error.stdout_tail = report(&error.stdout_tail);
            Err(Failure {
                kind: FailureKind::Command(error),
                hint,
            })
        }
        Err(failure) => Err(failure),
    }
}
