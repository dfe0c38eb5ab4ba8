//! Laravel's `artisan`, run with `bin/php` in the release this run is making (or in `current`
//! when there is none, e.g. after a switch back), what the app's `artisan list` says (its
//! commands, their options, the framework's version), and the worker restarts that depend on
//! what the app has installed: `horizon:terminate`, `queue:restart` (Octane: `octane.rs`; the
//! other lifecycle commands: `lifecycle.rs`).

use super::programs::php;
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::values::template::Mode;

/// The directory of the app this run acts on.
pub fn app_path(ctx: &HostContext) -> Result<String, Failure> {
    match &ctx.release {
        Some(_) => ctx.release_path(),
        None => ctx.path("current"),
    }
}

/// `php artisan COMMAND`; `{{key}}` values in COMMAND are quoted. Returns its output.
pub fn artisan(ctx: &HostContext, command: &str) -> Result<String, Failure> {
    let dir = app_path(ctx)?;
    let line = php(ctx)?
        .text("artisan")
        .text(&ctx.expand(command, Mode::Shell)?);
    let output = ctx.exec_in(line.as_str(), Some(&dir))?;
    Ok(output.stdout.trim_end().to_string())
}

/// What `artisan list --format=json` says of the app: the framework's version and each
/// command with its options. Asked once per app directory (release) per host, and kept in the
/// host's memo as lines: `version X.Y.Z`, then `NAME OPTION...` per command.
fn listing(ctx: &mut HostContext) -> Result<String, Failure> {
    let key = format!("artisan list {}", app_path(ctx)?);
    if let Some(listing) = ctx.memo.get(&key) {
        return Ok(listing.clone());
    }
    let json = artisan(ctx, "list --format=json")?;
    let listing = summarize_listing(&json).map_err(|e| {
        Failure::message(format!(
            "`artisan list --format=json` did not answer JSON ({e}): zdd reads the app's commands from it"
        ))
    })?;
    ctx.memo.insert(key, listing.clone());
    Ok(listing)
}

/// Keeps what `artisan list --format=json` printed in another PHP start (see
/// `app_php::run_commands`), so that [`listing`] does not start PHP again.
pub fn remember_listing(ctx: &mut HostContext, json: &str) -> Result<(), Failure> {
    if let Ok(listing) = summarize_listing(json) {
        let key = format!("artisan list {}", app_path(ctx)?);
        ctx.memo.insert(key, listing);
    }
    Ok(())
}

/// `artisan list --format=json` (Symfony's JSON descriptor) as `version …` and `NAME OPTION…` lines.
fn summarize_listing(json: &str) -> Result<String, String> {
    let start = json.find('{').ok_or("no JSON object")?;
    let value: serde_json::Value =
        serde_json::from_str(&json[start..]).map_err(|e| e.to_string())?;
    let version = value["application"]["version"].as_str().unwrap_or("");
    let mut lines = vec![format!("version {version}")];
    for command in value["commands"].as_array().ok_or("no `commands`")? {
        let Some(name) = command["name"].as_str() else {
            continue;
        };
        let mut line = name.to_string();
        if let Some(options) = command["definition"]["options"].as_object() {
            for option in options.keys() {
                line.push(' ');
                line.push_str(option);
            }
        }
        lines.push(line);
    }
    Ok(lines.join("\n"))
}

fn command_line<'a>(listing: &'a str, name: &str) -> Option<&'a str> {
    listing
        .lines()
        .skip(1)
        .find(|line| line.split(' ').next() == Some(name))
}

/// Whether the app has artisan command `name` (from `artisan list`, asked once per release).
pub fn has_command(ctx: &mut HostContext, name: &str) -> Result<bool, Failure> {
    Ok(command_line(&listing(ctx)?, name).is_some())
}

/// Whether the app's artisan command `name` takes the option `--option`.
pub fn has_option(ctx: &mut HostContext, name: &str, option: &str) -> Result<bool, Failure> {
    Ok(command_line(&listing(ctx)?, name)
        .is_some_and(|line| line.split(' ').skip(1).any(|o| o == option)))
}

/// The framework's version as `artisan list` reports it (`(major, minor)`), when it says.
pub fn framework_version(ctx: &mut HostContext) -> Result<Option<(u32, u32)>, Failure> {
    let listing = listing(ctx)?;
    let version = listing
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("version "))
        .unwrap_or("");
    Ok(parse_version(version))
}

/// `12.41.0`, `v11.0.2`, `10.x-dev` -> (12, 41), (11, 0), (10, 0).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

/// A setting that is `auto` (default), `true` or `false`.
pub fn tri_state(ctx: &HostContext, key: &str) -> Result<Option<bool>, Failure> {
    match ctx.value(key)? {
        None => Ok(None),
        Some(value) if value.to_string() == "auto" => Ok(None),
        Some(value) => crate::values::config::boolean(&value)
            .map(Some)
            .map_err(|e| Failure::message(format!("`{key}` must be auto, true or false: {e}"))),
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

#[cfg(test)]
mod tests {
    use super::{command_line, parse_version, summarize_listing};

    #[test]
    fn the_listing_keeps_the_version_the_commands_and_their_options() {
        let json = r#"Warning: noise first
{"application":{"name":"Laravel Framework","version":"12.41.0"},"commands":[
 {"name":"migrate","definition":{"arguments":[],"options":{"force":{},"isolated":{}}}},
 {"name":"reload","definition":{"arguments":[],"options":{"except":{}}}}]}"#;
        let listing = summarize_listing(json).unwrap();
        assert_eq!(
            listing,
            "version 12.41.0\nmigrate force isolated\nreload except"
        );
        assert_eq!(command_line(&listing, "reload"), Some("reload except"));
        assert_eq!(command_line(&listing, "version"), None);
        assert_eq!(command_line(&listing, "queue:restart"), None);
    }

    #[test]
    fn versions_are_read_leniently() {
        assert_eq!(parse_version("12.41.0"), Some((12, 41)));
        assert_eq!(parse_version("v11.0.2"), Some((11, 0)));
        assert_eq!(parse_version("10.x-dev"), Some((10, 0)));
        assert_eq!(parse_version(""), None);
        assert_eq!(parse_version("UNKNOWN"), None);
    }
}
