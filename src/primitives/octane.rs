//! Laravel Octane after a swap: reload its workers, then prove the server serves the new release,
//! and restart it when it does not.
//!
//! Octane's workers are long-lived PHP processes; `octane:reload` makes them boot the app again,
//! but from the base path the server was started from (laravel/octane#1004): with `current` a
//! symlink, that is the old release's real path, so a reload alone keeps serving the old code.
//! zdd asks `octane_url` (on the host, with its `php`) which release answers; when it is not the
//! new one, `octane:stop` stops the server and its supervisor (supervisord, systemd...) starts it
//! again from `current`, i.e. from the new release. Requests to Octane between the stop and the
//! start are refused: serving the old code after a deploy is worse, and a supervisor restarts in
//! about a second.

use std::time::{Duration, Instant};

use super::artisan::{app_path, artisan, has_command, tri_state};
use super::programs::{self, program};
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::values::quote::Line;
use crate::values::template::Mode;

/// How long a reload may take to reach every worker before zdd calls it a failed switch.
const RELOAD_SETTLE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(200);

/// Asks a URL from the host itself (Octane usually listens on loopback): the status line, the
/// headers and the body, or nothing when it does not answer.
const PROBE: &str = r#"$c = stream_context_create(['http' => ['timeout' => 5, 'ignore_errors' => true]]);
$b = @file_get_contents($argv[1], false, $c);
if ($b === false) { exit(1); }
echo implode("\n", $http_response_header ?? []), "\n\n", substr($b, 0, 65536);"#;

/// `octane:reload` when the app runs Octane (or `artisan reload` did it), then the proof that
/// the new release is served. Returns whether Octane was reloaded or restarted.
pub fn reload(ctx: &mut HostContext) -> Result<bool, Failure> {
    match tri_state(ctx, "octane")? {
        Some(false) => {
            ctx.info("octane: skipped (octane = false)");
            return Ok(false);
        }
        Some(true) => {}
        None => {
            if !has_command(ctx, "octane:reload")? {
                ctx.info("octane: skipped (the app does not have Laravel Octane)");
                return Ok(false);
            }
            let status = programs::php(ctx)?.text("artisan octane:status");
            if ctx.exec_in(status.as_str(), Some(&app_path(ctx)?)).is_err() {
                ctx.info("octane: skipped (Octane is installed but its server is not running)");
                return Ok(false);
            }
        }
    }
    if super::lifecycle::reload_covered(ctx, "octane") {
        ctx.info("octane: reloaded by `artisan reload`");
    } else {
        artisan(ctx, "octane:reload")?;
        ctx.info("octane: reloaded the Octane workers");
    }
    prove_new_release(ctx)?;
    Ok(true)
}

/// The release Octane must serve now: this run's release, or after a switch back or a rollback
/// the one `current` points at.
fn expected_release(ctx: &HostContext) -> Result<Option<String>, Failure> {
    match &ctx.release {
        Some(release) if !ctx.switched_back => Ok(Some(release.name.clone())),
        _ => ctx.current_release(),
    }
}

fn prove_new_release(ctx: &mut HostContext) -> Result<(), Failure> {
    let url = ctx.expand(&ctx.text_or("octane_url", "")?, Mode::Plain)?;
    if url.is_empty() {
        ctx.warn(
            "octane: no `octane_url` set: zdd cannot tell whether Octane serves the new release \
             (a reload keeps the old one with symlinked releases, laravel/octane#1004)",
        );
        return Ok(());
    }
    let Some(release) = expected_release(ctx)? else {
        return Ok(());
    };
    let answer = wait_for(ctx, &url, &release, RELOAD_SETTLE)?;
    if answer.names(&release) {
        ctx.info(&format!("octane: {url} serves release {release}"));
        return Ok(());
    }
    ctx.info(&format!(
        "octane: {url} still answers {} after the reload (laravel/octane#1004): stopping the \
         server for its supervisor to start it from `current`",
        answer.describe()
    ));
    if let Err(failure) = artisan(ctx, "octane:stop") {
        ctx.warn(&format!("octane: `octane:stop` failed: {failure}"));
    }
    let timeout = match ctx.value("octane_restart_timeout")? {
        Some(value) => crate::values::config::seconds(&value)
            .map_err(|e| Failure::message(format!("`octane_restart_timeout`: {e}")))?,
        None => Duration::from_secs(30),
    };
    let answer = wait_for(ctx, &url, &release, timeout)?;
    if answer.names(&release) {
        ctx.info(&format!(
            "octane: restarted; {url} serves release {release}"
        ));
        return Ok(());
    }
    Err(Failure::message(format!(
        "octane does not serve release {release} {} s after `octane:stop`: {url} answers {}",
        timeout.as_secs_f64(),
        answer.describe()
    ))
    .with_hint(
        "run Octane under a supervisor (supervisord, systemd) that starts it again from `current` \
         when it stops, or set `octane_url` to a URL of this host's Octane server",
    ))
}

/// What `octane_url` answered (`None`: nothing).
struct Answer(Option<String>);

impl Answer {
    fn names(&self, release: &str) -> bool {
        self.0.as_deref().is_some_and(|text| text.contains(release))
    }

    fn describe(&self) -> String {
        match &self.0 {
            None => "nothing (no connection)".to_string(),
            Some(text) => {
                let status = text.lines().next().unwrap_or("").trim();
                let body = text.split("\n\n").nth(1).unwrap_or("").trim();
                let body: String = body.chars().take(120).collect();
                format!("`{status}` `{}`", body.replace('\n', " "))
            }
        }
    }
}

/// Asks `url` until its answer names `release` or `timeout` passes; returns the last answer.
fn wait_for(
    ctx: &HostContext,
    url: &str,
    release: &str,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let php = program(ctx, "php")?;
    let command = Line::command(&[php.as_str(), "-r", PROBE, url])?;
    let until = Instant::now() + timeout;
    loop {
        let answer = Answer(ctx.exec_in(command.as_str(), None).ok().map(|o| o.stdout));
        if answer.names(release) || Instant::now() >= until {
            return Ok(answer);
        }
        std::thread::sleep(POLL);
    }
}
