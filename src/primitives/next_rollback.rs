//! The next `zdd rollback`, planned by the run before it (`next_run`).
//!
//! `zdd rollback` sends, in the request that takes the lock, the swap guarded by exactly
//! those facts (`Op::RollbackAsPlanned`), its record, and the lock's release: one round trip
//! instead of two. When anything differs, nothing changes and the rollback goes on as it does
//! without a plan; when the host did roll back, zdd checks the plan against the state read in
//! that same request.
//!
//! Only a run whose whole plan is the stdlib's `rollback` task on one host does this (the
//! runner says so: `HostContext::may_roll_back_as_planned`): nothing may follow the swap.

use super::next_run;
use super::release_log::{self, Entry};
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::primitives::release_state::{self, Target};
use crate::transport::op::{PLANNED_FROM, PLANNED_TO};
use crate::transport::Op;

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
        guard: next_run::guard(ctx, lock, holder)?,
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
