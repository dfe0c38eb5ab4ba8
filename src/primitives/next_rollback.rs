//! The next `zdd rollback`, planned by the run before it.
//!
//! A rollback must read the host's state to pick the release to go back to: one round trip
//! before the swap can even be sent. A run that ends holding the lock knows that state (it made
//! it), so it leaves the answer on the host, in `.zdd/next-rollback`, with what the host must
//! still look like for it to hold: where `current` points, the CRC and size of the release log
//! (`cksum`), the names in `releases/`, and the zdd version that picked.
//! `zdd rollback` then sends, in the request that takes the lock, the swap guarded by exactly
//! those facts (`Op::RollbackAsPlanned`), its record, and the lock's release: one round trip
//! instead of two. When anything differs, nothing changes and the rollback goes on as it does
//! without a plan; when the host did roll back, zdd checks the plan against the state read in
//! that same request.
//!
//! Only a run whose whole plan is the stdlib's `rollback` task on one host does this (the
//! runner says so: `HostContext::may_roll_back_as_planned`): nothing may follow the swap.

use super::release_log::{self, Entry};
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::primitives::host_state::Current;
use crate::primitives::release_state::{self, Target};
use crate::transport::op::{PLANNED_FROM, PLANNED_TO};
use crate::transport::Op;

/// The plan's file, under the deploy path.
pub const PLAN: &str = ".zdd/next-rollback";

/// The plan's first line: its format and the zdd that picked (another version may pick
/// differently).
fn version() -> String {
    format!("zdd-next-rollback 1 {}", env!("CARGO_PKG_VERSION"))
}

/// A name the host's shell can check and a JSON string can hold as it is.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// At the end of a run that holds the lock, after its last record: the plan, sent without
/// waiting. Nothing when the state picks no good release to go back to, or cannot be written
/// down exactly (a damaged log, a name the plan cannot hold); a plan an earlier run left is
/// then stale, and its guard says so.
pub fn write(ctx: &mut HostContext) -> Result<(), Failure> {
    let Some(head) = head(ctx)? else {
        return Ok(());
    };
    let names = ctx
        .state
        .as_ref()
        .map(|state| state.releases.join(" "))
        .unwrap_or_default();
    let op = Op::WriteRollbackPlan {
        plan: ctx.path(PLAN)?,
        head,
        log: ctx.path(release_log::LOG)?,
        names,
    };
    ctx.send(op)
}

/// The plan's first lines (version, the release to go back to, the one left, where `current`
/// points), when there is one.
fn head(ctx: &mut HostContext) -> Result<Option<String>, Failure> {
    let Some(state) = &ctx.state else {
        return Ok(None);
    };
    let Current::Link(link) = &state.current else {
        return Ok(None);
    };
    let clean = !state.log.missing
        && state.log.damaged.is_empty()
        && state.releases.iter().all(|name| plain(name))
        && !link.contains('\n');
    if !clean {
        return Ok(None);
    }
    let link = link.clone();
    let Some(from) = ctx.current_release()? else {
        return Ok(None);
    };
    let releases = release_log::on_disk(ctx)?;
    let Some(Target::Good(to)) = release_state::rollback_target(&releases, Some(&from)) else {
        return Ok(None);
    };
    if !plain(&to) || !plain(&from) {
        return Ok(None);
    }
    Ok(Some(format!("{}\n{to}\n{from}\n{link}", version())))
}

/// The planned rollback, for the request that takes the lock (`lock` holding `holder`), when
/// this run may do it: the op, and the record it writes (with the names in place of
/// [`PLANNED_TO`] and [`PLANNED_FROM`]).
pub fn request(
    ctx: &HostContext,
    lock: &str,
    holder: &str,
) -> Result<Option<(Op, Entry)>, Failure> {
    if !ctx.may_roll_back_as_planned || !ctx.text_or("rollback_to", "")?.is_empty() {
        return Ok(None);
    }
    let (entry, record) = release_log::line(
        ctx,
        Entry {
            event: "rollback".into(),
            release: PLANNED_TO.into(),
            from: Some(PLANNED_FROM.into()),
            ..Default::default()
        },
    )?;
    // A secret that happens to be part of a place-holder was redacted: no plan.
    if record.matches(PLANNED_TO).count() != 1 || record.matches(PLANNED_FROM).count() != 1 {
        return Ok(None);
    }
    let op = Op::RollbackAsPlanned {
        plan: ctx.path(PLAN)?,
        version: version(),
        link: ctx.path("current")?,
        log: ctx.path(release_log::LOG)?,
        releases: ctx.path("releases")?,
        lock: lock.to_string(),
        holder: holder.to_string(),
        record,
    };
    Ok(Some((op, entry)))
}

/// The host rolled back as planned (`answer`: "TO FROM"), and released the lock. Checked
/// against the state read before it in the same request, then kept: `current` moved, the
/// record in the log, and the rollback for `rollback()` to report.
pub fn settle(ctx: &mut HostContext, answer: &str, mut entry: Entry) -> Result<(), Failure> {
    let (to, from) = answer.split_once(' ').unwrap_or((answer, ""));
    let (to, from) = (to.to_string(), from.to_string());
    let releases = release_log::on_disk(ctx)?;
    let current = ctx.current_release()?;
    let picked = release_state::rollback_target(&releases, current.as_deref());
    ctx.current_moved(Some(&format!("releases/{to}")));
    entry.release = to.clone();
    entry.from = Some(from.clone());
    release_log::remember(ctx, entry);
    if current.as_deref() != Some(from.as_str()) || picked != Some(Target::Good(to.clone())) {
        let picked = picked.map_or("no release".to_string(), |t| {
            format!("releases/{}", t.name())
        });
        return Err(Failure::message(format!(
            "`current` was switched to releases/{to}, as the last run planned, but the deploy path changed since: the release log now picks {picked}"
        ))
        .with_hint(format!(
            "`zdd releases {recipe}` lists the releases; `zdd rollback {recipe} --to NAME` picks one",
            recipe = ctx.deployment.recipe
        )));
    }
    ctx.rolled_back_as_planned = Some((to, from));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_go_into_a_plan() {
        assert!(plain("20261202T091300Z"));
        assert!(plain("release-2.1_b"));
        for name in ["", ".", "..", "a b", "a\"b", "a\nb", "a/b", "a*", "é"] {
            assert!(!plain(name), "{name:?}");
        }
    }
}
