//! `deploy:lock` / `deploy:unlock`: `{{deploy_path}}/.zdd/lock`, created atomically with who
//! holds it. A second deploy is refused (exit 3) naming the holder; a lock left by a process of
//! this machine that is gone is called stale, with the command that clears it.
//!
//! A run holds the lock from its first change of the deploy path to its last: every primitive
//! that changes the deploy path takes it ([`hold`]) if the run does not hold it yet, and only
//! the runner releases it ([`release`]), once the release is recorded and old releases are
//! removed, or once a failed run is undone. `unlock()` in a recipe says the recipe is done
//! with the lock; the runner releases it when the run ends.

use super::{host_state, next_deploy, next_rollback, release_log};
use crate::output::failure::{Failure, FailureKind};
use crate::primitives::host_context::HostContext;
use crate::transport::Op;

pub use super::lock_state::{alive, LockInfo, LOCK};

/// Where the context keeps what this run wrote into the lock file.
const LOCK_CONTENTS: &str = "lock_contents";

/// How many times a lock that vanished while we looked at it is tried again.
const ATTEMPTS: usize = 3;

/// Take the lock for this run, unless it holds it already.
pub fn lock(ctx: &mut HostContext) -> Result<(), Failure> {
    hold(ctx)
}

/// What every primitive that changes the deploy path calls first.
pub fn hold(ctx: &mut HostContext) -> Result<(), Failure> {
    if ctx.holds_lock {
        return Ok(());
    }
    let path = ctx.path(LOCK)?;
    let info = LockInfo {
        user: ctx.deployment.user.clone(),
        machine: ctx.deployment.machine.clone(),
        pid: std::process::id(),
        time: release_log::now(),
        reference: ctx.text_or("branch", "")?,
    };
    let contents = serde_json::to_string(&info).map_err(|e| Failure::message(e.to_string()))?;
    // The holder may release the lock between our attempt and our reading of it: then the
    // lock is free, and we try again (a few times: each retry means another run just ended).
    // The request that takes the lock also reads the host's deploy state (`host_state`):
    // one round trip.
    let mut text = None;
    for attempt in 0..ATTEMPTS {
        // The deploy the last run planned is sent behind the lock's request (the first
        // attempt only: a lock held by another run means no plan holds anyway).
        let deploy = if attempt == 0 {
            next_deploy::request(ctx, &path, &contents)?
        } else {
            None
        };
        let found = host_state::take_lock_and_read(ctx, &path, &contents, deploy)?;
        if found.taken {
            ctx.state = Some(found.state);
            if let Some((answer, record)) = found.planned {
                // The host rolled back and released the lock, and the remote shell is gone:
                // nothing is left to send.
                return next_rollback::settle(ctx, &answer, record);
            }
            ctx.holds_lock = true;
            ctx.memo.insert(LOCK_CONTENTS.into(), contents);
            if let Some((request, answer, kept)) = found.deploying {
                // The host is deploying as planned, up to the lock's release: the steps
                // only decide (leftovers of killed runs wait for a run without a plan).
                return next_deploy::settle(ctx, request, &answer, kept);
            }
            remove_leftovers(ctx)?;
            return Ok(());
        }
        text = found.holder;
        if text.is_some() {
            break;
        }
    }
    let holder: Option<LockInfo> = text.and_then(|text| serde_json::from_str(&text).ok());
    let unlock = format!("zdd unlock {}", ctx.deployment.recipe);
    let failure = match holder {
        Some(holder) if holder.machine == ctx.deployment.machine && !alive(holder.pid) => Failure {
            kind: FailureKind::Locked(format!(
                "deploy to `{}` is locked by a process that is no longer running: {} (stale lock)",
                ctx.host,
                holder.describe()
            )),
            hint: Some(format!("clear the stale lock with `{unlock}`")),
        },
        Some(holder) => Failure {
            kind: FailureKind::Locked(format!(
                "deploy to `{}` is locked by {}",
                ctx.host,
                holder.describe()
            )),
            hint: Some(format!(
                "wait for that deploy to finish; if it is gone, clear the lock with `{unlock}`"
            )),
        },
        None => Failure {
            kind: FailureKind::Locked(format!(
                "deploy to `{}` is locked (`{path}` exists but does not say by whom)",
                ctx.host
            )),
            hint: Some(format!("if no deploy is running, clear it with `{unlock}`")),
        },
    };
    Err(failure)
}

/// `unlock()` in a recipe: the recipe is done with the lock. The runner releases it when the
/// run ends, after its last change (the release recorded, old releases removed).
pub fn unlock(_ctx: &mut HostContext) -> Result<(), Failure> {
    Ok(())
}

/// The runner, at the very end of a run: release the lock if this run holds it; never someone
/// else's (after `zdd unlock --force`, another run may have taken it meanwhile).
pub fn release(ctx: &mut HostContext) -> Result<(), Failure> {
    if !ctx.holds_lock {
        return Ok(());
    }
    ctx.holds_lock = false;
    let path = ctx.path(LOCK)?;
    // Kept: when a failure skips this request, the runner holds the lock again
    // (`runner::finish_all`) and its undo releases it with these contents.
    let Some(contents) = ctx.memo.get(LOCK_CONTENTS).cloned() else {
        return Ok(());
    };
    // Removed only when it still says what this run wrote: sent without waiting, and when
    // someone else holds it now, that failure says so.
    ctx.send(Op::RemoveIfHolds { path, contents })
}

/// Temporary files left in the deploy path by zdd runs that were killed (a lock being taken, a
/// swap, a file being written, a checkout being staged): removed by the next run that holds the lock. Only files whose
/// process is gone from this machine; nothing that is not a zdd temporary name.
fn remove_leftovers(ctx: &mut HostContext) -> Result<(), Failure> {
    let own = std::process::id();
    let Some(state) = &ctx.state else {
        return Ok(());
    };
    let mut doomed = Vec::new();
    for (dir, names) in [
        (ctx.deploy_path()?, &state.root_names),
        (ctx.path(".zdd")?, &state.zdd_names),
    ] {
        for name in names {
            match crate::transport::leftover_pid(name) {
                Some(pid) if pid != own && !alive(pid) => doomed.push(format!("{dir}/{name}")),
                _ => {}
            }
        }
    }
    for path in doomed {
        let name = path.rsplit('/').next().unwrap_or_default();
        if crate::transport::leftover_is_dir(name) {
            ctx.send(Op::RemoveDirAll(path))?;
        } else {
            ctx.send(Op::RemoveFile(path))?;
        }
    }
    Ok(())
}

/// `zdd unlock`: remove the lock; says whose it was. A lock held by a process of this machine
/// that is still running is a deploy in progress: it is refused (exit 3) unless `force`.
pub fn force_unlock(ctx: &mut HostContext, force: bool) -> Result<Option<String>, Failure> {
    let path = ctx.path(LOCK)?;
    let Some(text) = ctx.transport.read_file(&path)? else {
        return Ok(None);
    };
    let holder: Option<LockInfo> = serde_json::from_str(&text).ok();
    if let Some(holder) = &holder {
        if !force && holder.machine == ctx.deployment.machine && alive(holder.pid) {
            return Err(Failure {
                kind: FailureKind::Locked(format!(
                    "the lock of `{}` is held by a run that is still going: {}",
                    ctx.host,
                    holder.describe()
                )),
                hint: Some(format!(
                    "wait for it to finish (it releases the lock itself), or stop it; `zdd unlock --force {}` removes the lock anyway",
                    ctx.deployment.recipe
                )),
            });
        }
    }
    ctx.transport.remove_file(&path)?;
    ctx.holds_lock = false;
    Ok(Some(
        holder
            .map(|h| h.describe())
            .unwrap_or_else(|| "an unknown holder".to_string()),
    ))
}
