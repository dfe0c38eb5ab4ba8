//! What the next run may do without asking: `.zdd/next-run`, left by a run that ends holding
//! the lock.
//!
//! A rollback must read the host's state to pick the release to go back to, and a deploy to
//! pick the releases its cleanup removes: one round trip before anything can be sent. The run
//! that ends holding the lock knows that state (it made it), so it leaves the answers on the
//! host, with what the host must still look like for them to hold: where `current` points, the
//! CRC and size of the release log (`cksum`, computed on the host), the names in `releases/`,
//! and the zdd version that decided. The next `zdd rollback` (`next_rollback`) or stdlib
//! deploy (`next_deploy`) sends its work guarded by exactly those facts in the request that
//! takes the lock; when anything differs, the host does nothing on the plan's word and the
//! run goes on as it does without one.
//!
//! ```text
//! zdd-next-run 2 VERSION
//! TO                      the release a rollback goes back to (empty: none)
//! FROM                    the release `current` points at
//! LINK                    `current`'s link text
//! CRC SIZE                the release log's `cksum`
//! NAMES                   the names in `releases/`
//! KEEP LATEST NEXT        deploys: keep_releases, the greatest name known, the next step
//! STEP...                 the removals of each of the next deploys, one line each
//! ```
//!
//! A deploy that went as planned moves the plan on by itself, on the host (`Op::AdvancePlan`):
//! its rollback goes back to the release it left, its facts are read again, and its first step
//! line is dropped. The steps are decided here, by the same `release_state::to_remove` as
//! `deploy:cleanup`, for deploys that each add a release sorting after every other one; a
//! release made by step N is `~NNN` in the lines after it until the host puts its name there.

use super::{foreign_layout, release_log};
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::primitives::host_state::Current;
use crate::primitives::release_state::{self, Protected, ReleaseInfo, Status, Target};
use crate::transport::op::PlanGuard;
use crate::transport::Op;

/// The plan's file, under the deploy path.
pub const PLAN: &str = ".zdd/next-run";

/// How many deploys one plan decides ahead: after that many planned deploys, one deploy waits
/// for the state and plans again.
const DEPLOYS_AHEAD: usize = 16;

/// The plan's first line: its format and the zdd that decided (another version may decide
/// differently).
pub fn version() -> String {
    format!("zdd-next-run 2 {}", env!("CARGO_PKG_VERSION"))
}

/// What a run planned by the one before it checks on the host first: under this run's lock
/// (`lock` holding `holder`), the plan still describes the host.
pub fn guard(ctx: &HostContext, lock: &str, holder: &str) -> Result<PlanGuard, Failure> {
    Ok(PlanGuard {
        plan: ctx.path(PLAN)?,
        version: version(),
        link: ctx.path("current")?,
        log: ctx.path(release_log::LOG)?,
        releases: ctx.path("releases")?,
        lock: lock.to_string(),
        holder: holder.to_string(),
    })
}

/// A name the host's shell can check and a JSON string can hold as it is.
pub fn plain(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// At the end of a run that holds the lock, after its last record: the plan, sent without
/// waiting. Nothing when the state cannot be written down exactly (a damaged log, a name the
/// plan cannot hold, no `current`); a plan an earlier run left is then stale, and its guard
/// says so.
pub fn write(ctx: &mut HostContext) -> Result<(), Failure> {
    let Some((head, tail)) = plan(ctx)? else {
        return Ok(());
    };
    let names = ctx
        .state
        .as_ref()
        .map(|state| state.releases.join(" "))
        .unwrap_or_default();
    let op = Op::WritePlan {
        plan: ctx.path(PLAN)?,
        head,
        log: ctx.path(release_log::LOG)?,
        names,
        tail,
    };
    ctx.send(op)
}

/// The plan's first lines (version, the release to go back to, the one left, where `current`
/// points) and its deploy lines, when there is a plan.
fn plan(ctx: &mut HostContext) -> Result<Option<(String, String)>, Failure> {
    let Some(state) = &ctx.state else {
        return Ok(None);
    };
    let Current::Link(link) = &state.current else {
        return Ok(None);
    };
    // The plan's host-side checks order releases by name: only zdd's names sort that way. A
    // deploy path another tool made (its names, its pointers, an adopted `current`) is asked.
    let clean = !state.log.missing
        && state.log.damaged.is_empty()
        && state.releases.iter().all(|name| plain(name))
        && foreign_layout::zdd_ordered(&state.releases)
        && !foreign_layout::read(&state.foreign, &ctx.deploy_path()?)
            .pointers
            .iter()
            .any(|(_, name)| state.releases.contains(name))
        && !link.contains('\n');
    if !clean {
        return Ok(None);
    }
    let link = link.clone();
    let latest = state
        .releases
        .iter()
        .chain(state.log.entries.iter().map(|entry| &entry.release))
        .max()
        .cloned()
        .unwrap_or_default();
    let Some(from) = ctx.current_release()? else {
        return Ok(None);
    };
    if !plain(&from) {
        return Ok(None);
    }
    let releases = release_log::on_disk(ctx)?;
    if releases
        .iter()
        .any(|r| r.name.starts_with(foreign_layout::BEFORE))
    {
        return Ok(None);
    }
    let to = match release_state::rollback_target(&releases, Some(&from)) {
        Some(Target::Good(to)) if plain(&to) => to,
        _ => String::new(),
    };
    let head = format!("{}\n{to}\n{from}\n{link}", version());
    let keep = ctx.count("keep_releases", 5)?.max(1) as usize;
    let steps = deploys(&releases, &from, keep, DEPLOYS_AHEAD);
    let tail = if link == format!("releases/{from}") && plain(&latest) && !steps.is_empty() {
        let lines: Vec<String> = steps.iter().map(|doomed| doomed.join(" ")).collect();
        format!("{keep} {latest} 1\n{}", lines.join("\n"))
    } else {
        String::new()
    };
    Ok(Some((head, tail)))
}

/// The name of the release the planned deploy number `step` (from 1) makes, until the host
/// knows it: sorts after every plain name, and in the order of the steps.
pub fn made_by(step: usize) -> String {
    format!("~{step:03}")
}

/// The removals of each of the next `ahead` deploys from `releases` with `current` live and
/// `keep` kept, as `deploy:cleanup` will decide them: each deploy adds a release that sorts
/// after every other one ([`made_by`]), switches to it, and removes what
/// [`release_state::to_remove`] picks. Stops before a deploy after which a rollback would not
/// go back to the release that deploy left (the host plans that rollback by itself).
pub fn deploys(
    releases: &[ReleaseInfo],
    current: &str,
    keep: usize,
    ahead: usize,
) -> Vec<Vec<String>> {
    let mut list = releases.to_vec();
    let mut current = current.to_string();
    let mut steps = Vec::new();
    for step in 1..=ahead {
        let made = made_by(step);
        let mut release = ReleaseInfo::unknown(&made);
        release.status = Status::Pending;
        list.push(release);
        let doomed = release_state::to_remove(
            &list,
            keep,
            &Protected {
                current: Some(&made),
                this_run: Some(&made),
                previous: Some(&current),
                pointed: Vec::new(),
            },
        );
        list.retain(|r| !doomed.contains(&r.name));
        if let Some(release) = list.iter_mut().find(|r| r.name == made) {
            release.status = Status::Good;
        }
        if release_state::rollback_target(&list, Some(&made)) != Some(Target::Good(current.clone()))
        {
            break;
        }
        steps.push(doomed);
        current = made;
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_names_go_into_a_plan() {
        assert!(plain("20261202T091300Z"));
        assert!(plain("release-2.1_b"));
        for name in [
            "", ".", "..", "a b", "a\"b", "a\nb", "a/b", "a*", "é", "~001",
        ] {
            assert!(!plain(name), "{name:?}");
        }
    }

    fn good(name: &str) -> ReleaseInfo {
        let mut release = ReleaseInfo::unknown(name);
        release.status = Status::Good;
        release
    }

    #[test]
    fn the_next_deploys_remove_the_oldest_beyond_keep() {
        let releases: Vec<ReleaseInfo> = ["r1", "r2", "r3"].into_iter().map(good).collect();
        let steps = deploys(&releases, "r3", 3, 5);
        assert_eq!(
            steps,
            vec![
                vec!["r1".to_string()],
                vec!["r2".to_string()],
                vec!["r3".to_string()],
                vec![made_by(1)],
                vec![made_by(2)],
            ]
        );
    }

    #[test]
    fn failed_releases_go_with_the_first_deploy_and_a_rolled_back_one_stays_out_of_keep() {
        let mut releases: Vec<ReleaseInfo> =
            ["r1", "r2", "r3", "r4"].into_iter().map(good).collect();
        releases[1].status = Status::Failed;
        releases[3].status = Status::RolledBack;
        // current is r3 (rolled back to), r4 rolled back from.
        let steps = deploys(&releases, "r3", 2, 2);
        assert_eq!(
            steps[0],
            vec!["r1".to_string(), "r2".to_string(), "r4".to_string()]
        );
        assert_eq!(steps[1], vec!["r3".to_string()]);
    }

    #[test]
    fn the_same_decisions_as_cleanup_step_by_step() {
        // What each planned step removes is what to_remove says for the state that step
        // finds, with the names the earlier steps made.
        let releases: Vec<ReleaseInfo> = ["a", "b"].into_iter().map(good).collect();
        let steps = deploys(&releases, "b", 1, 3);
        assert_eq!(steps[0], vec!["a".to_string()]);
        assert_eq!(steps[1], vec!["b".to_string()]);
        assert_eq!(steps[2], vec![made_by(1)]);
    }

    #[test]
    fn no_step_when_a_rollback_would_not_go_back_to_the_release_left() {
        // current is an unknown release (the log says nothing of it): a rollback after the
        // deploy would not go back to it as a good release.
        let releases = vec![ReleaseInfo::unknown("x")];
        assert!(deploys(&releases, "x", 5, 3).is_empty());
    }
}
