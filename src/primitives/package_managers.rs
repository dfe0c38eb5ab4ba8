//! `composer` and `npm`, run in the release this run is making.

use super::artisan::app_path;
use super::programs::{php, program};
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::values::quote::Line;
use crate::values::template::Mode;

fn run_tool(ctx: &HostContext, tool: &str, arguments: &str) -> Result<String, Failure> {
    let binary = program(ctx, tool)?;
    let line = Line::command(&[binary])?.text(&ctx.expand(arguments, Mode::Shell)?);
    let output = ctx.exec_in(line.as_str(), Some(&app_path(ctx)?))?;
    Ok(output.stdout.trim_end().to_string())
}

/// `{{bin/php}} {{bin/composer}} ARGS`: composer runs on the PHP the recipe names, as in
/// Deployer (a missing PHP fails here, before anything else runs on it).
pub fn composer(ctx: &HostContext, arguments: &str) -> Result<String, Failure> {
    super::programs::find(ctx, &["php", "composer"])?;
    let composer = program(ctx, "composer")?;
    let line = php(ctx)?
        .arg(&composer)?
        .text(&ctx.expand(arguments, Mode::Shell)?);
    let output = ctx.exec_in(line.as_str(), Some(&app_path(ctx)?))?;
    Ok(output.stdout.trim_end().to_string())
}

pub fn npm(ctx: &HostContext, arguments: &str) -> Result<String, Failure> {
    run_tool(ctx, "npm", arguments)
}
