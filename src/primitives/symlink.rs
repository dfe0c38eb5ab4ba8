//! `deploy:symlink`: `current` moves to the new release by rename(2) of a temporary link, then is
//! read back. Never unlink-then-create: at no moment is there no `current`.
//!
//! `swap_signalling` does the same rename from a PHP process of the new release, booted before
//! it, that sends the workers' restart signals (`queue:restart`, `horizon:terminate`)
//! microseconds before the rename (see `stdlib/php/swap.php`): no window in which a worker on
//! the old code can take a job the new code dispatched.

use serde::Deserialize;

use super::app_php::{self, Probe};
use super::artisan;
use super::lifecycle;
use super::lock;
use super::release_log::{self, Entry};
use crate::output::failure::Failure;
use crate::primitives::host_context::{Done, HostContext};
use crate::system::process::quoted_tail;
use crate::transport::{temporary_path, Op};

const SWAP: Probe = Probe {
    name: "swap",
    source: include_str!("../../stdlib/php/swap.php"),
    setting: "signal_at_swap",
};

/// Points `current` at the new release.
///
/// Sent without waiting: the host makes the swap only if every request before it succeeded,
/// and the request fails (stopping what follows) if the release is not a directory or the
/// link does not read back as the release.
pub fn swap(ctx: &mut HostContext) -> Result<(), Failure> {
    let target = checked_target(ctx)?;
    let link = ctx.path("current")?;
    ctx.send(Op::ReplaceSymlink {
        target: target.clone(),
        link,
    })?;
    ctx.current_moved(Some(&target));
    swapped(ctx)
}

#[derive(Debug, Deserialize)]
struct SwapReport {
    swapped: bool,
    #[serde(default)]
    commands: Vec<CommandReport>,
    error: Option<String>,
    gap_us: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct CommandReport {
    command: String,
    status: i64,
    output: String,
}

/// Points `current` at the new release from a PHP process of the new release that runs the
/// artisan `commands` (restart signals) just before the rename. With no commands, [`swap`].
pub fn swap_signalling(ctx: &mut HostContext, commands: &[String]) -> Result<(), Failure> {
    if commands.is_empty() {
        return swap(ctx);
    }
    let target = checked_target(ctx)?;
    let link = ctx.path("current")?;
    let temp = temporary_path(&link, "swap");
    let then = commands.join("\n");
    let result = app_php::run(
        ctx,
        &SWAP,
        &[
            ("ZDD_SWAP_TARGET", target.as_str()),
            ("ZDD_SWAP_LINK", link.as_str()),
            ("ZDD_SWAP_TEMP", temp.as_str()),
            ("ZDD_SWAP_THEN", then.as_str()),
        ],
    )
    .and_then(|result| {
        serde_json::from_value::<SwapReport>(result.clone()).map_err(|_| {
            Failure::message(format!("the swap returned `{result}`, not a swap report"))
        })
    });
    // When the process renamed and its report was then lost (killed, connection dropped),
    // `current` is this run's release: the failure's discard (`release::discard`) puts back
    // what it pointed at before.
    let report = result?;
    if let Some(failed) = report.commands.iter().find(|c| c.status != 0) {
        return Err(Failure::message(format!(
            "`artisan {}` failed (status {}) just before the swap; `current` was not changed:{}",
            failed.command,
            failed.status,
            quoted_tail(&failed.output)
        )));
    }
    if !report.swapped {
        return Err(Failure::message(format!(
            "the swap failed; `current` was not changed: {}",
            report.error.as_deref().unwrap_or("no reason given")
        )));
    }
    // Read back on the host, without waiting: when it is not the release, that request fails
    // and stops what follows (the undo reads `current` again before switching back).
    ctx.send(Op::ExpectLink {
        link: link.clone(),
        target: target.clone(),
        otherwise: format!("`{link}` is not `{target}` after the swap: it points at"),
    })?;
    ctx.current_moved(Some(&target));
    swapped(ctx)?;
    ctx.info(&format!(
        "workers signalled ({}) {} µs before the swap",
        commands.join(", "),
        report.gap_us.unwrap_or(0)
    ));
    if let Some(state) = ctx.release.as_mut() {
        state.signalled = commands.to_vec();
    }
    Ok(())
}

/// The restart signals sent at the swap: `horizon:terminate` when the app runs Horizon (every
/// host), else `queue:restart` (unless `queue_restart` is false) when this host sends its own
/// cache signals (see `lifecycle::cache_signals_per_host`: with a cache several hosts share, the
/// last host to switch sends it after its swap); none when `signal_at_swap` is false.
pub fn signals(ctx: &mut HostContext) -> Result<Vec<String>, Failure> {
    if !ctx.boolean("signal_at_swap", true)? {
        return Ok(Vec::new());
    }
    let horizon = match artisan::tri_state(ctx, "horizon")? {
        Some(on) => on,
        None => artisan::has_command(ctx, "horizon:terminate")?,
    };
    Ok(if horizon {
        vec!["horizon:terminate".to_string()]
    } else if ctx.boolean("queue_restart", true)? && lifecycle::cache_signals_per_host(ctx)? {
        vec!["queue:restart".to_string()]
    } else {
        Vec::new()
    })
}

/// `releases/NAME` of this run's release, once it is known to be a directory.
fn checked_target(ctx: &mut HostContext) -> Result<String, Failure> {
    lock::hold(ctx)?;
    let release = ctx.release()?.clone();
    let release_dir = ctx.path(&format!("releases/{}", release.name))?;
    ctx.send(Op::ExpectDirectory {
        path: release_dir,
        otherwise: format!(
            "release `{}` is not a directory: refusing to point `current` at it",
            release.name
        ),
    })?;
    Ok(format!("releases/{}", release.name))
}

/// Records the swap this run made.
fn swapped(ctx: &mut HostContext) -> Result<(), Failure> {
    let release = ctx.release()?.clone();
    if let Some(state) = ctx.release.as_mut() {
        state.swapped = true;
    }
    release_log::record(
        ctx,
        Entry {
            event: "swapped".into(),
            release: release.name.clone(),
            from: release.previous.clone(),
            ..Default::default()
        },
    )?;
    ctx.report_done(Done::Swapped {
        release: release.name.clone(),
        previous: release.previous.clone(),
    });
    Ok(())
}
