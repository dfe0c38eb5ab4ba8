//! `rollback`: `current` back to the previous good release (or `rollback_to`, which
//! `zdd rollback --to` sets), recorded in the release log so the release left is never picked
//! again. With the log damaged or gone, the newest complete release directory before `current`
//! is picked, and the message says so.

use super::release_log::{self, Entry};
use super::{lock, release};
use crate::output::failure::Failure;
use crate::primitives::host_context::{Done, HostContext};
use crate::primitives::release_state::{self, ReleaseInfo, Status, Target};
use crate::transport::Op;

pub fn rollback(ctx: &mut HostContext) -> Result<String, Failure> {
    if ctx.rolled_back_as_planned.is_none() {
        lock::hold(ctx)?;
    }
    // Done already, in the request that took the lock (`next_rollback`).
    if let Some((to, from)) = ctx.rolled_back_as_planned.take() {
        ctx.report_done(Done::RolledBack {
            from: Some(from),
            to: to.clone(),
        });
        return Ok(to);
    }
    let releases = release_log::on_disk(ctx)?;
    let current = ctx.current_release()?;
    let current_target = ctx.current_target()?;
    let requested = ctx.text_or("rollback_to", "")?;
    let target = if requested.is_empty() {
        default_target(ctx, &releases, current.as_deref())?
    } else {
        let Some(found) = releases.iter().find(|r| r.name == requested) else {
            return Err(
                Failure::message(format!("no release `{requested}` on this host")).with_hint(
                    format!(
                        "`zdd releases {}` lists the releases that can be picked",
                        ctx.deployment.recipe
                    ),
                ),
            );
        };
        if !found.status.can_become_current() {
            return Err(Failure::message(format!(
                "release `{requested}` is {} and cannot become current",
                found.status.as_str()
            )));
        }
        if current.as_deref() == Some(requested.as_str()) {
            return Err(Failure::message(format!(
                "release `{requested}` is already current"
            )));
        }
        requested
    };
    let link = ctx.path("current")?;
    // A release zdd adopted from a `current` outside `releases/` (`release::adopt`): exactly
    // what `current` was, a link elsewhere or the directory itself.
    let log = release_log::read(ctx)?;
    let adopted = release_log::adopted_entry(&log.entries, &target);
    let directory = adopted.and_then(release_log::adopted_directory);
    match adopted.and_then(|entry| entry.target.clone()) {
        Some(_) if directory.is_some() => {
            release::put_back_directory(ctx, &target)?;
        }
        Some(text) => {
            // A link elsewhere names what zdd never made: it may be gone since. `current`
            // never dangles.
            let resolved = if text.starts_with('/') {
                text.clone()
            } else {
                ctx.path(&text)?
            };
            if !ctx.transport.is_dir(&resolved)? {
                return Err(Failure::message(format!(
                    "release `{target}` was `current` -> {text}, which is no longer a directory"
                ))
                .with_hint("`zdd rollback --to NAME` picks another release"));
            }
            ctx.send(Op::ReplaceSymlink {
                target: text.clone(),
                link,
            })?;
            ctx.current_moved(Some(&text));
        }
        None => {
            let new_target = format!("releases/{target}");
            ctx.send(Op::ReplaceSymlink {
                target: new_target.clone(),
                link,
            })?;
            ctx.current_moved(Some(&new_target));
        }
    }
    release_log::record(
        ctx,
        Entry {
            event: "rollback".into(),
            release: target.clone(),
            from: current.clone(),
            ..Default::default()
        },
    )?;
    let from = current.or(current_target);
    ctx.report_done(Done::RolledBack {
        from,
        to: target.clone(),
    });
    Ok(target)
}

/// The newest good release before `current`; without one in the log, the newest release
/// directory the log says nothing of that holds a whole checkout (its `REVISION` file).
fn default_target(
    ctx: &mut HostContext,
    releases: &[ReleaseInfo],
    current: Option<&str>,
) -> Result<String, Failure> {
    if let Some(Target::Good(name)) = release_state::rollback_target(releases, current) {
        return Ok(name);
    }
    let unknown_before_current = release_state::before(releases, current)
        .iter()
        .rev()
        .filter(|r| r.status == Status::Unknown);
    for release in unknown_before_current {
        let revision = ctx.path(&format!("releases/{}/REVISION", release.name))?;
        if ctx.transport.exists(&revision)? {
            ctx.warn(&format!(
                "the release log has no good release before `current`: rolling back to releases/{}, the newest release directory before it (picked from what is on disk)",
                release.name
            ));
            return Ok(release.name.clone());
        }
    }
    Err(Failure::message(match current {
        Some(c) => format!("nothing to roll back to: no good release older than `{c}`"),
        None => "nothing to roll back to: there is no release".to_string(),
    })
    .with_hint(format!(
        "`zdd releases {}` lists the releases and their status",
        ctx.deployment.recipe
    )))
}
