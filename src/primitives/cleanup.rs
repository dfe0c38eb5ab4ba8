//! `deploy:cleanup`: keep the newest `keep_releases` good releases; never remove `current`, the
//! release this run made, the release that was live before it, or the release a rollback would
//! pick (`crate::primitives::release_state::to_remove` decides). Failed and unfinished releases never
//! count, so they never push good ones out.
//!
//! Cleanup only decides: the removals happen when the whole run has succeeded, under the lock
//! ([`remove_pending`], called by the runner before it releases the lock). A deploy that fails
//! after cleanup still finds the releases a switch back and a later rollback need.
//!
//! A release is removed in three moves: the log marks it `removing` (never picked again), its
//! directory is renamed out of `releases/` into `.zdd/removing/` (so nothing can find it
//! half-deleted), then deleted. A deletion that fails is a warning: the deploy succeeded, and
//! the next run tries again.

use super::programs::PHP_FILE_CACHE;
use super::release_log::{self, Entry};
use super::{lock, next_run};
use crate::output::failure::Failure;
use crate::output::reporter::Event;
use crate::primitives::host_context::HostContext;
use crate::primitives::release_state::{self, Protected};
use crate::transport::Op;

/// Where releases being removed wait for their deletion.
pub const REMOVING: &str = ".zdd/removing";

pub fn cleanup(ctx: &mut HostContext) -> Result<Vec<String>, Failure> {
    lock::hold(ctx)?;
    // Its range is checked before the run (`settings`); whatever it is, what must stay stays.
    let keep_count = ctx.count("keep_releases", 5)?.max(1);
    let releases = release_log::on_disk(ctx)?;
    let current = ctx.current_release()?;
    let this_run = ctx.release.as_ref().map(|r| r.name.clone());
    let previous = ctx.release.as_ref().and_then(|r| r.previous.clone());
    // What another tool's pointer names stays (Deployer's `release` link, ...).
    let layout = release_log::layout(ctx)?;
    let doomed = release_state::to_remove(
        &releases,
        keep_count as usize,
        &Protected {
            current: current.as_deref(),
            this_run: this_run.as_deref(),
            previous: previous.as_deref(),
            pointed: layout
                .pointers
                .iter()
                .map(|(_, name)| name.as_str())
                .collect(),
        },
    );
    let mut doomed = doomed;
    if let Some(planned) = &ctx.planned {
        // The host removes what the plan says, decided by the run that wrote it from this
        // same state: the same, unless the plan was edited by hand (its names are checked on
        // the host: releases there, never `current` nor the rollback's). What the host does
        // is what happened.
        let (mut planned_doomed, mut decided) = (planned.doomed.clone(), doomed.clone());
        planned_doomed.sort();
        decided.sort();
        if planned_doomed != decided {
            let list = |names: &[String]| match names {
                [] => "nothing".to_string(),
                names => names.join(", "),
            };
            ctx.warn(&format!(
                "the last run's plan (`{}`) removes {}, where cleanup removes {}: was it edited by hand?",
                next_run::PLAN,
                list(&planned_doomed),
                list(&decided)
            ));
            doomed = planned.doomed.clone();
        }
    }
    if !doomed.is_empty() {
        ctx.info(&format!(
            "{} old release{} will be removed once the {} has succeeded",
            doomed.len(),
            if doomed.len() == 1 { "" } else { "s" },
            if this_run.is_some() { "deploy" } else { "run" }
        ));
    }
    ctx.pending_removals = doomed.clone();
    Ok(doomed)
}

/// The run succeeded: remove what its cleanup decided to remove, and what earlier runs could
/// not finish removing. Everything is sent without waiting; a removal that fails is a warning
/// (`runner::finish_all` reads it), never an error.
pub fn remove_pending(ctx: &mut HostContext) -> Vec<String> {
    let doomed = std::mem::take(&mut ctx.pending_removals);
    let mut warnings = Vec::new();
    if !ctx.holds_lock {
        return warnings;
    }
    let (Ok(removing), Ok(releases)) = (ctx.path(REMOVING), ctx.path("releases")) else {
        return warnings;
    };
    // Left by an earlier run whose deletion failed or was cut short.
    let left: Vec<String> = ctx
        .state
        .as_ref()
        .map(|state| state.removing.clone())
        .unwrap_or_default();
    let mut sent = left
        .iter()
        .try_for_each(|name| ctx.send(Op::RemoveDirAll(format!("{removing}/{name}"))));
    if sent.is_ok() && !doomed.is_empty() {
        sent = ctx.send(Op::CreateDirAll(removing.clone()));
    }
    if let Err(e) = sent {
        warnings.push(e.to_string());
        return warnings;
    }
    for name in &doomed {
        if let Err(e) = remove_one(ctx, &releases, &removing, name) {
            warnings.push(format!(
                "old release `{name}` was not removed: {e}; it will never be picked again, and the next run tries again"
            ));
        }
    }
    forget_compiled(ctx, &releases, &doomed);
    forget_artifacts(ctx, &doomed);
    warnings
}

/// The build archives (`primitives::ship`) that no release left on the host was unpacked
/// from go too: those of removed releases, of failed deploys. Sent only when this deploy or a
/// removed release used one. Best effort, as above.
fn forget_artifacts(ctx: &mut HostContext, doomed: &[String]) {
    let Some(state) = ctx.state.as_ref() else {
        return;
    };
    let artifact_of = |name: &str| {
        state
            .log
            .entries
            .iter()
            .rev()
            .find(|e| e.release == name && e.artifact.is_some())
            .and_then(|e| e.artifact.clone())
    };
    let shipped = ctx
        .deployment
        .artifact
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some();
    if !shipped && !doomed.iter().any(|name| artifact_of(name).is_some()) {
        return;
    }
    let mut keep: Vec<String> = Vec::new();
    let this_run = ctx.release.as_ref().map(|r| r.name.clone());
    for name in state.releases.iter().chain(this_run.iter()) {
        if let Some(sha256) = artifact_of(name) {
            keep.extend(
                super::ship::KINDS
                    .iter()
                    .map(|kind| format!("{sha256}{kind}")),
            );
        }
    }
    let Ok(dir) = ctx.path(super::ship::ARTIFACTS) else {
        return;
    };
    if let Ok(script) = crate::values::quote::remove_all_but(&dir, &super::ship::KINDS, &keep) {
        let _ = ctx.send(Op::Exec {
            display: "remove the build archives no release uses".to_string(),
            script,
            cwd: None,
        });
    }
}

/// PHP's file cache (`programs::php`) keeps compiled scripts by path, under
/// `.zdd/opcache/SYSTEM-ID/PATH`: those of removed releases go with them. Best effort: what
/// is left only takes space.
fn forget_compiled(ctx: &mut HostContext, releases: &str, doomed: &[String]) {
    let Ok(cache) = ctx.path(PHP_FILE_CACHE) else {
        return;
    };
    if doomed.is_empty() {
        return;
    }
    let rests: Vec<String> = doomed
        .iter()
        .map(|name| format!("{releases}/{name}"))
        .collect();
    if let Ok(script) = crate::values::quote::remove_under_any(&cache, &rests) {
        let _ = ctx.send(Op::Exec {
            display: script.clone(),
            script,
            cwd: None,
        });
    }
}

fn remove_one(
    ctx: &mut HostContext,
    releases: &str,
    removing: &str,
    name: &str,
) -> Result<(), Failure> {
    let entry = |event: &str| Entry {
        event: event.into(),
        release: name.to_string(),
        ..Default::default()
    };
    release_log::record(ctx, entry("removing"))?;
    // A release adopted from a `current` outside `releases/` (`release_log::adopted_entry`):
    // its directory, when it was one (`.zdd/adopted/NAME`), goes like a release's; a link
    // elsewhere named something zdd never made, which stays where it is (only the record goes).
    let adopted = ctx
        .state
        .as_ref()
        .and_then(|state| release_log::adopted_entry(&state.log.entries, name).cloned());
    let from = match adopted {
        Some(entry) => release_log::adopted_directory(&entry)
            .map(|dir| ctx.path(&dir))
            .transpose()?,
        None => Some(format!("{releases}/{name}")),
    };
    if let Some(from) = from {
        let aside = format!("{removing}/{name}");
        ctx.send(Op::Rename {
            from,
            to: aside.clone(),
        })?;
        ctx.send(Op::RemoveDirAll(aside))?;
    }
    // The watcher's recording of it goes with it.
    let recording = ctx.path(&crate::output::watch::recording_path(name))?;
    ctx.send(Op::RemoveFile(recording))?;
    release_log::record(ctx, entry("removed"))?;
    if let Some(state) = ctx.state.as_mut() {
        state.releases.retain(|r| r != name);
    }
    ctx.reporter.event(Event::ReleaseRemoved {
        host: &ctx.host,
        release: name,
        reason: "cleanup",
    });
    Ok(())
}
