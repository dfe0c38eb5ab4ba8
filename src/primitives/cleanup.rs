//! `deploy:cleanup`: keep the newest `keep_releases` good releases; never remove `current`, the
//! release this run made, or the release a rollback would pick. Failed and unfinished releases
//! never count, so they never push good ones out.

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

    let mut removed = Vec::new();
    for release in releases.iter().filter(|r| !keep.contains(&r.name)) {
        ctx.transport
            .remove_dir_all(&ctx.path(&format!("releases/{}", release.name))?)?;
        release_log::record(
            ctx,
            Entry {
                event: "removed".into(),
                release: release.name.clone(),
                ..Default::default()
            },
        )?;
        ctx.reporter.event(Event::ReleaseRemoved {
            host: &ctx.host,
            release: &release.name,
            reason: "cleanup",
        });
        removed.push(release.name.clone());
    }
    Ok(removed)
}
