//! The stdlib deploy, planned by the run before it (`next_run`): one round trip.
//!
//! A deploy waits for the host's state before it can decide its cleanup, and everything after
//! the lock used to wait with it. When the run before left a plan, the request that takes the
//! lock carries the whole deploy behind a check of that plan (`Op::DeployPlanCheck`): the
//! release (its name from the clock, checked on the host to sort after every name the plan
//! knows), the checkout, the shared links, the swap, the records, the removals the plan
//! decided for this deploy, the plan moved on, the lock released, and the remote shell told to
//! leave. Every request after the check runs only when it found the plan holding
//! (`Op::IfPlanned`); otherwise they are answered without doing anything and the run goes on
//! as it does without a plan.
//!
//! The steps then run as usual, on the state read in that same request, but send nothing:
//! what they would send has been sent (`HostContext::planned`). They still decide, and what
//! they decide is checked against what the host was told to do: the release's name, the
//! release `current` pointed at, and the removals (`cleanup` warns when the plan's differ, which
//! only a plan edited by hand can make happen). A request that fails on the host stops
//! everything after it, and is reported as the step it stands for (each carries that step's
//! tag); the run's undo then works on the host as the failure left it.
//!
//! Only a run whose plan is exactly the stdlib's `deploy` on one host, without
//! `writable_dirs`, does this (the runner says so: `HostContext::planned_steps`).

use std::collections::BTreeMap;
use std::ops::Range;

use time::OffsetDateTime;

use super::next_run::{self, version, PLAN};
use super::release_log::{self, Entry};
use super::{cleanup, release, shared, update_code};
use crate::output::failure::Failure;
use crate::primitives::host_context::{HostContext, Sender};
use crate::transport::op::{PLANNED_FROM, PLANNED_TO};
use crate::transport::{Kept, Op};
use crate::values::template::Mode;

/// The tasks of the stdlib's `deploy`, in order: a run of exactly these may deploy as planned.
pub const TASKS: [&str; 9] = [
    "deploy:prepare",
    "deploy:lock",
    "deploy:release",
    "deploy:update_code",
    "deploy:shared",
    "deploy:writable",
    "deploy:symlink",
    "deploy:cleanup",
    "deploy:unlock",
];

/// The planned deploy, for the request that takes the lock.
pub struct Request {
    /// The check of the plan, asked with the lock.
    pub check: Op,
    /// Everything else, sent behind it without waiting, with its sender's tag.
    pub ahead: Vec<(Op, u64)>,
    name: String,
    /// Where the checkout is in `ahead`.
    checkout: usize,
    /// The tags of the run's end (the finished record, the removals, the plan, the lock):
    /// their failure is a warning, as at the end of any run.
    end: Range<u64>,
}

/// A deploy the host is doing as planned: the steps send nothing, and check what they decide.
#[derive(Debug, Clone)]
pub struct Planned {
    pub name: String,
    /// The releases the plan removes with this deploy.
    pub doomed: Vec<String>,
    /// Where the checkout's answer (the commit) will be.
    pub checkout: Kept,
    pub end: Range<u64>,
}

/// The planned deploy, when this run may do one: built before the request that takes the lock
/// (`lock` holding `holder`). The release's name is this run's from now on.
pub fn request(
    ctx: &mut HostContext,
    lock: &str,
    holder: &str,
) -> Result<Option<Request>, Failure> {
    let Some(steps) = ctx.planned_steps.clone() else {
        return Ok(None);
    };
    if !ctx.list("writable_dirs")?.is_empty() {
        return Ok(None);
    }
    // A value that cannot be used fails in its own step, the usual way.
    let (Ok(repository), Ok(reference)) = (
        ctx.text("repository")
            .and_then(|text| ctx.expand(&text, Mode::Plain)),
        ctx.text("branch")
            .and_then(|text| ctx.expand(&text, Mode::Plain)),
    ) else {
        return Ok(None);
    };
    let Ok(keep) = ctx.count("keep_releases", 5) else {
        return Ok(None);
    };
    let name = release::next_name(
        OffsetDateTime::now_utc(),
        &[],
        &super::foreign_layout::Layout::default(),
    );
    let release_path = ctx.path(&format!("releases/{name}"))?;
    let Ok(shared) = shared::request(ctx, &release_path) else {
        return Ok(None);
    };
    let log = ctx.path(release_log::LOG)?;
    let records = Records::new(ctx, &name)?;
    let Some(records) = records else {
        return Ok(None);
    };
    let Ok((_, checkout)) = update_code::checkout(ctx, &name, &repository, &reference) else {
        return Ok(None);
    };
    let mut ahead = Vec::new();
    let mut push = |ctx: &mut HostContext, task: &str, op: Op| {
        let tag = ctx.senders.len() as u64;
        ctx.senders
            .push(steps.get(task).cloned().unwrap_or_default());
        ahead.push((Op::IfPlanned(Box::new(op)), tag));
        (ahead.len() - 1, tag)
    };
    push(
        ctx,
        "deploy:release",
        Op::AppendLine {
            path: log.clone(),
            line: records.created,
        },
    );
    push(
        ctx,
        "deploy:release",
        Op::CreateDirAll(release_path.clone()),
    );
    let (at, _) = push(ctx, "deploy:update_code", checkout);
    if let Some(op) = shared {
        push(ctx, "deploy:shared", op);
    }
    let current = ctx.path("current")?;
    push(
        ctx,
        "deploy:symlink",
        Op::ExpectDirectory {
            path: release_path.clone(),
            otherwise: format!(
                "release `{name}` is not a directory: refusing to point `current` at it"
            ),
        },
    );
    push(
        ctx,
        "deploy:symlink",
        Op::ReplaceSymlink {
            target: format!("releases/{name}"),
            link: current.clone(),
        },
    );
    push(
        ctx,
        "deploy:symlink",
        Op::AppendPlanned {
            path: log.clone(),
            line: records.swapped,
        },
    );
    let (_, end) = push(
        ctx,
        "deploy:unlock",
        Op::AppendLine {
            path: log.clone(),
            line: records.finished,
        },
    );
    let releases = ctx.path("releases")?;
    push(
        ctx,
        "deploy:unlock",
        Op::RemoveAsPlanned {
            releases: releases.clone(),
            removing: ctx.path(cleanup::REMOVING)?,
            log: log.clone(),
            removing_record: records.removing,
            removed_record: records.removed,
        },
    );
    push(
        ctx,
        "deploy:unlock",
        Op::AdvancePlan {
            plan: ctx.path(PLAN)?,
            version: version(),
            name: name.clone(),
            log,
            releases,
        },
    );
    push(
        ctx,
        "deploy:unlock",
        Op::RemoveIfHolds {
            path: lock.to_string(),
            contents: holder.to_string(),
        },
    );
    let (_, last) = push(ctx, "deploy:unlock", Op::Leave);
    let check = Op::DeployPlanCheck {
        guard: next_run::guard(ctx, lock, holder)?,
        keep: keep.max(1) as usize,
        name: name.clone(),
    };
    Ok(Some(Request {
        check,
        ahead,
        name,
        checkout: at,
        end: end..last + 1,
    }))
}

/// The log's lines of a planned deploy, with the places the host fills in.
struct Records {
    created: String,
    swapped: String,
    finished: String,
    removing: String,
    removed: String,
}

impl Records {
    /// `None` when a secret that happens to be part of a place-holder was redacted.
    fn new(ctx: &HostContext, name: &str) -> Result<Option<Records>, Failure> {
        let line = |entry: Entry| release_log::line(ctx, entry).map(|(_, line)| line);
        let entry = |event: &str, release: &str| Entry {
            event: event.into(),
            release: release.to_string(),
            ..Default::default()
        };
        let records = Records {
            created: line(Entry {
                reference: Some(ctx.text("branch")?),
                ..entry("created", name)
            })?,
            swapped: line(Entry {
                from: Some(PLANNED_FROM.into()),
                ..entry("swapped", name)
            })?,
            finished: line(entry("finished", name))?,
            removing: line(entry("removing", PLANNED_TO))?,
            removed: line(entry("removed", PLANNED_TO))?,
        };
        let once = |line: &str, place: &str| line.matches(place).count() == 1;
        let whole = once(&records.swapped, PLANNED_FROM)
            && once(&records.removing, PLANNED_TO)
            && once(&records.removed, PLANNED_TO)
            && !records.created.contains(PLANNED_FROM);
        Ok(whole.then_some(records))
    }
}

/// The check answered (`answer`: "FROM DOOMED..."; `kept`: where the answers of the requests
/// sent behind it will be): the host is deploying as planned, from the state read in the same
/// request. From now on the steps send nothing.
pub fn settle(
    ctx: &mut HostContext,
    request: Request,
    answer: &str,
    kept: Vec<Kept>,
) -> Result<(), Failure> {
    let mut words = answer.split_whitespace().map(str::to_string);
    let from = words.next().unwrap_or_default();
    let doomed: Vec<String> = words.collect();
    *ctx.deployment
        .release_name
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(request.name.clone());
    let checkout = kept
        .get(request.checkout)
        .cloned()
        .unwrap_or(Kept::Waiting(u64::MAX));
    ctx.planned = Some(Planned {
        name: request.name.clone(),
        doomed,
        checkout,
        end: request.end.clone(),
    });
    let current = ctx.current_release()?;
    if current.as_deref() != Some(from.as_str()) {
        return Err(changed(
            ctx,
            &request.name,
            &format!(
                "`current` points at {}",
                current.map_or("nothing".to_string(), |c| format!("releases/{c}"))
            ),
        ));
    }
    Ok(())
}

/// The failure of a planned deploy whose plan no longer says what zdd decides: the host did
/// the plan's work already.
pub fn changed(ctx: &HostContext, name: &str, now: &str) -> Failure {
    Failure::message(format!(
        "releases/{name} was deployed as the last run planned, but the deploy path changed since: {now}"
    ))
    .with_hint(format!(
        "`zdd releases {recipe}` lists the releases; remove `{plan}` if it was edited by hand",
        recipe = ctx.deployment.recipe,
        plan = next_run::PLAN,
    ))
}

/// The runner's map from each task of [`TASKS`] to its sender, when `steps` (task, sender) is
/// exactly that plan.
pub fn steps_of(steps: Vec<(String, Sender)>) -> Option<BTreeMap<String, Sender>> {
    let tasks: Vec<&str> = steps.iter().map(|(task, _)| task.as_str()).collect();
    (tasks == TASKS).then(|| steps.into_iter().collect())
}
