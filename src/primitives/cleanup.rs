//! `deploy:cleanup`: keep the newest `keep_releases` good releases; never remove `current`, the
//! release this run made, or the release a rollback would pick. Failed and unfinished releases
//! never count, so they never push good ones out.
//!
//! While this run's release is not finished, cleanup only decides: the removals happen once the
//! whole deploy has succeeded ([`remove_pending`]). A deploy that fails after cleanup must still
//! find the releases a switch back and a later rollback need.

use std::collections::BTreeSet;

use super::release_log::{self, Entry, Status};
use crate::context::HostContext;
use crate::failure::Failure;
use crate::reporter::Event;

pub fn cleanup(ctx: &mut HostContext) -> Result<Vec<String>, Failure> {
    let keep_count = ctx.count("keep_releases", 5)?.max(1) as usize;
    let releases = release_log::on_disk(ctx)?;
    let current = ctx.current_release()?;
    let this_run = ctx.release.as_ref().map(|r| r.name.clone());

    let mut keep: BTreeSet<String> = BTreeSet::new();
    keep.extend(current.clone());
    keep.extend(this_run.clone());
    keep.extend(release_log::rollback_target(&releases, current.as_deref()));
    let good = releases
        .iter()
        .filter(|r| r.status == Status::Good || Some(&r.name) == this_run.as_ref())
        .map(|r| r.name.clone())
        .collect::<Vec<_>>();
    keep.extend(good.iter().rev().take(keep_count).cloned());

    let doomed: Vec<String> = releases
        .iter()
        .filter(|r| !keep.contains(&r.name))
        .map(|r| r.name.clone())
        .collect();
    if this_run.is_some() {
        if !doomed.is_empty() {
            ctx.info(&format!(
                "{} old release{} will be removed once the deploy has succeeded",
                doomed.len(),
                if doomed.len() == 1 { "" } else { "s" }
            ));
        }
        ctx.pending_removals = doomed.clone();
        return Ok(doomed);
    }
    remove(ctx, &doomed)?;
    Ok(doomed)
}

/// The deploy succeeded: remove what its cleanup decided to remove.
pub fn remove_pending(ctx: &mut HostContext) -> Result<(), Failure> {
    let doomed = std::mem::take(&mut ctx.pending_removals);
    remove(ctx, &doomed)
}

fn remove(ctx: &HostContext, names: &[String]) -> Result<(), Failure> {
    for name in names {
        ctx.transport
            .remove_dir_all(&ctx.path(&format!("releases/{name}"))?)?;
        release_log::record(
            ctx,
            Entry {
                event: "removed".into(),
                release: name.clone(),
                ..Default::default()
            },
        )?;
        ctx.reporter.event(Event::ReleaseRemoved {
            host: &ctx.host,
            release: name,
            reason: "cleanup",
        });
    }
    Ok(())
}
