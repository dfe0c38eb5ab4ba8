//! Laravel's `artisan`, run with `bin/php` in the release this run is making (or in `current`
//! when there is none, e.g. after a switch back), and the worker restarts that depend on what
//! the app has installed: `octane:reload`, `horizon:terminate`, `queue:restart`.

use super::programs::program;
use crate::context::HostContext;
use crate::failure::Failure;
use crate::quote;
use crate::template::Mode;

/// The directory of the app this run acts on.
pub fn app_path(ctx: &HostContext) -> Result<String, Failure> {
    match &ctx.release {
        Some(_) => ctx.release_path(),
        None => ctx.path("current"),
    }
}

/// `php artisan COMMAND`; `{{key}}` values in COMMAND are quoted. Returns its output.
pub fn artisan(ctx: &HostContext, command: &str) -> Result<String, Failure> {
    let php = program(ctx, "php")?;
    let dir = app_path(ctx)?;
    let line = format!(
        "{} artisan {}",
        quote::word(&php)?,
        ctx.expand(command, Mode::Shell)?
    );
    let output = ctx.exec_in(&line, Some(&dir))?;
    Ok(output.stdout.trim_end().to_string())
}

/// Whether the app has artisan command `name` (from `artisan list --raw`, asked once per run).
pub fn has_command(ctx: &mut HostContext, name: &str) -> Result<bool, Failure> {
    let key = format!("artisan list {}", app_path(ctx)?);
    if !ctx.memo.contains_key(&key) {
        let listing = artisan(ctx, "list --raw")?;
        ctx.memo.insert(key.clone(), listing);
    }
    Ok(ctx.memo[&key]
        .lines()
        .any(|line| line.split_whitespace().next() == Some(name)))
}

/// A setting that is `auto` (default), `true` or `false`.
pub(crate) fn tri_state(ctx: &HostContext, key: &str) -> Result<Option<bool>, Failure> {
    match ctx.value(key)? {
        None => Ok(None),
        Some(value) if value.to_string() == "auto" => Ok(None),
        Some(value) => crate::config::boolean(&value)
            .map(Some)
            .map_err(|e| Failure::message(format!("`{key}` must be auto, true or false: {e}"))),
    }
}

/// `octane:reload` when the app runs Octane. Returns whether it ran.
pub fn octane_reload(ctx: &mut HostContext) -> Result<bool, Failure> {
    match tri_state(ctx, "octane")? {
        Some(false) => {
            ctx.info("octane: skipped (octane = false)");
            Ok(false)
        }
        Some(true) => {
            artisan(ctx, "octane:reload")?;
            ctx.info("octane: reloaded the Octane workers");
            Ok(true)
        }
        None => {
            if !has_command(ctx, "octane:reload")? {
                ctx.info("octane: skipped (the app does not have Laravel Octane)");
                return Ok(false);
            }
            let php = program(ctx, "php")?;
            let status = format!("{} artisan octane:status", quote::word(&php)?);
            if ctx.exec_in(&status, Some(&app_path(ctx)?)).is_err() {
                ctx.info("octane: skipped (Octane is installed but its server is not running)");
                return Ok(false);
            }
            artisan(ctx, "octane:reload")?;
            ctx.info("octane: reloaded the Octane workers");
            Ok(true)
        }
    }
}

/// `horizon:terminate` when the app runs Horizon. Returns whether it ran.
pub fn horizon_terminate(ctx: &mut HostContext) -> Result<bool, Failure> {
    let run = match tri_state(ctx, "horizon")? {
        Some(false) => {
            ctx.info("horizon: skipped (horizon = false)");
            return Ok(false);
        }
        Some(true) => true,
        None => has_command(ctx, "horizon:terminate")?,
    };
    if !run {
        ctx.info("horizon: skipped (the app does not have Laravel Horizon)");
        return Ok(false);
    }
    artisan(ctx, "horizon:terminate")?;
    ctx.info("horizon: terminated; its supervisor restarts it on the new release");
    Ok(true)
}

/// `queue:restart`: workers finish their current job and exit; their supervisor starts them
/// again on the new code.
pub fn queue_restart(ctx: &mut HostContext) -> Result<(), Failure> {
    artisan(ctx, "queue:restart")?;
    ctx.info("queue: workers told to restart after their current job");
    Ok(())
}
