//! The release directory of this run: its name, its creation, and its end (kept as good, or
//! removed with `current` switched back).

use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::host_state::Current;
use super::lock;
use super::programs::PHP_FILE_CACHE;
use super::release_log::{self, Entry};
use crate::output::failure::Failure;
use crate::output::reporter::Event;
use crate::output::watch;
use crate::primitives::host_context::{HostContext, ReleaseState};
use crate::transport::Op;

const NAME_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");

/// `deploy:prepare`: the directories of the on-disk contract.
pub fn prepare(ctx: &mut HostContext) -> Result<(), Failure> {
    lock::hold(ctx)?;
    let current = ctx.path("current")?;
    let not_a_link = match &ctx.state {
        Some(state) => state.current == Current::Other,
        None => ctx.transport.exists(&current)? && ctx.transport.read_link(&current)?.is_none(),
    };
    // `.zdd/opcache` makes `.zdd` too: PHP's file cache (see `programs::php`).
    for dir in ["releases", "shared", PHP_FILE_CACHE] {
        let path = ctx.path(dir)?;
        ctx.send(Op::CreateDirAll(path))?;
    }
    if not_a_link {
        return Err(
            Failure::message(format!("`{current}` exists and is not a symlink")).with_hint(
                "zdd swaps `current` as a symlink: move the directory away, then deploy",
            ),
        );
    }
    Ok(())
}

/// The UTC name for a release made at `now` that sorts after every name in `existing`.
pub fn next_name(now: OffsetDateTime, existing: &[String]) -> String {
    let mut candidate = now.to_offset(time::UtcOffset::UTC);
    if let Some(latest) = existing.iter().filter_map(|n| parse_name(n)).max() {
        if latest >= candidate.replace_nanosecond(0).unwrap_or(candidate) {
            candidate = latest + time::Duration::seconds(1);
        }
    }
    candidate.format(NAME_FORMAT).unwrap_or_default()
}

fn parse_name(name: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(name, NAME_FORMAT)
        .ok()
        .map(|t| t.assume_utc())
}

/// `deploy:release`: a new, empty release directory with a name that sorts after every other.
pub fn create(ctx: &mut HostContext) -> Result<String, Failure> {
    if let Some(release) = &ctx.release {
        return Err(Failure::message(format!(
            "release `{}` was already created in this run",
            release.name
        )));
    }
    lock::hold(ctx)?;
    let releases_dir = ctx.path("releases")?;
    ctx.send(Op::CreateDirAll(releases_dir.clone()))?;
    let mut known = match &ctx.state {
        Some(state) => state.releases.clone(),
        None => ctx.transport.list_dir(&releases_dir)?,
    };
    known.extend(
        release_log::read(ctx)?
            .entries
            .into_iter()
            .map(|e| e.release),
    );
    let name = {
        let mut shared = ctx
            .deployment
            .release_name
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let catching_up = ctx
            .deployment
            .catch_up
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some();
        match shared.as_ref() {
            Some(name) if known.iter().all(|k| k < name) => name.clone(),
            // The name of the deploy that left this host behind: it may have made (and
            // removed) a release of that name here; it must still sort after every other.
            Some(name)
                if catching_up
                    && known.iter().all(|k| k <= name)
                    && !ctx
                        .state
                        .as_ref()
                        .is_some_and(|state| state.releases.contains(name)) =>
            {
                name.clone()
            }
            Some(name) if catching_up => {
                let newer = known.iter().filter(|k| *k >= name).max().cloned();
                return Err(Failure::message(format!(
                    "cannot bring `{}` up to release {name}: it has release {} already",
                    ctx.host,
                    newer.unwrap_or_default()
                ))
                .with_hint("deploy every host again (without `--hosts`): a new release for all"));
            }
            // Another host named this deploy's release; this one has a release that sorts
            // after it. Named in the future (a clock ahead, made by hand): the deploy stops
            // here, named. Named within the last minute (deploys in quick succession, each
            // a second after the last): a name of its own, said, as the hosts after it get.
            Some(name) => {
                let newer = known.iter().filter(|k| *k >= name).max().cloned();
                let now = OffsetDateTime::now_utc();
                let near = newer
                    .as_deref()
                    .and_then(parse_name)
                    .is_some_and(|t| t <= now + time::Duration::minutes(1));
                if !near {
                    return Err(Failure::message(format!(
                        "this deploy's release is named {name} (on the other hosts), but `{}` has release {} already, which sorts after it",
                        ctx.host,
                        newer.unwrap_or_default()
                    ))
                    .with_hint(
                        "a release named in the future (a clock ahead, made by hand) must go before this host can take the deploy's name",
                    ));
                }
                let own = next_name(now, &known);
                ctx.warn(&format!(
                    "release {own} here, not {name} as on the hosts before it: it has release {} already (a deploy moments ago)",
                    newer.unwrap_or_default()
                ));
                *shared = Some(own.clone());
                own
            }
            None => {
                let name = next_name(OffsetDateTime::now_utc(), &known);
                *shared = Some(name.clone());
                name
            }
        }
    };
    if let Some(planned) = &ctx.planned {
        if planned.name != name {
            return Err(super::next_deploy::changed(
                ctx,
                &planned.name,
                &format!("a release would now be named {name}"),
            ));
        }
    }
    let path = format!("{releases_dir}/{name}");
    let previous_target = ctx.current_target()?;
    let previous = ctx.current_release()?;
    let reference = ctx.text("branch")?;
    // Recorded before the directory exists: a directory the log says nothing of is never one
    // this run left half-made.
    release_log::record(
        ctx,
        Entry {
            event: "created".into(),
            release: name.clone(),
            reference: Some(reference),
            ..Default::default()
        },
    )?;
    ctx.release = Some(ReleaseState {
        name: name.clone(),
        previous,
        previous_target,
        ..Default::default()
    });
    ctx.send(Op::CreateDirAll(path))?;
    if let Some(state) = ctx.state.as_mut() {
        state.releases.push(name.clone());
        state.releases.sort();
    }
    ctx.reporter.event(Event::ReleaseCreated {
        host: &ctx.host,
        release: &name,
    });
    Ok(name)
}

/// A run that created and swapped a release finished: the release is good.
pub fn finish(ctx: &mut HostContext) -> Result<(), Failure> {
    let Some(release) = ctx.release.clone() else {
        return Ok(());
    };
    let event = if release.swapped {
        "finished"
    } else {
        "prepared"
    };
    keep_recording(ctx, &release.name)?;
    let entry = with_timeline(
        ctx,
        Entry {
            event: event.into(),
            release: release.name,
            commit: release.commit,
            ..Default::default()
        },
    );
    release_log::record(ctx, entry)
}

/// The run's timeline on this host in a `finished`, `prepared` or `failed` line.
fn with_timeline(ctx: &HostContext, mut entry: Entry) -> Entry {
    let timeline = &ctx.timeline;
    entry.started = Some(ctx.deployment.started_at.clone());
    entry.tasks = timeline.tasks.clone();
    entry.swap = timeline.swap.clone();
    entry.watch = timeline.watch.clone();
    if entry.event == "finished" {
        entry.left_behind = timeline.left_behind.clone();
    }
    entry
}

/// The watcher's samples, next to the log (`.zdd/watch/<release>.json`), sent without
/// waiting; pruned with the release (`cleanup`).
fn keep_recording(ctx: &mut HostContext, release: &str) -> Result<(), Failure> {
    let Some(recording) = &ctx.timeline.recording else {
        return Ok(());
    };
    let contents = recording.to_string();
    let directory = ctx.path(".zdd/watch")?;
    let path = ctx.path(&watch::recording_path(release))?;
    // On a full disk, the release's own record matters more: it is never kept from it.
    ctx.send(Op::KeepFile {
        directory,
        path,
        contents,
    })
}

/// The run failed: put `current` back exactly where it was, and remove the unfinished release.
///
/// A release that was never `current` is removed at once. One that was `current` for a while
/// (the failure came after the swap) may still be running requests that started on it, and
/// removing its files would break them: it is recorded as failed and left for the next deploy's
/// cleanup, which removes it long after those requests ended. Either way it is never `current`
/// again and never a rollback target. Safe to call when nothing was created.
pub fn discard(ctx: &mut HostContext, reason: &str) -> Result<(), Failure> {
    // Kept in the context until the end: a discard that fails half-way is tried again by the
    // runner.
    let Some(mut release) = ctx.release.clone() else {
        return Ok(());
    };
    let current_link = ctx.path("current")?;
    {
        // Requests sent without waiting may have been skipped after a failure (or a planned
        // deploy stopped): what the host has is read again, and the release counts as
        // swapped only if `current` names it.
        let now = match ctx.transport.read_link(&current_link) {
            Ok(now) => now,
            Err(error) => {
                // The host cannot say (the connection went): what the state says of it is
                // no longer known to be true, so nothing reports it as the host's.
                ctx.state = None;
                return Err(error.into());
            }
        };
        ctx.current_moved(now.as_deref());
        if ctx.current_release()?.as_deref() != Some(release.name.as_str()) {
            release.swapped = false;
        }
    }
    if ctx.current_release()?.as_deref() == Some(release.name.as_str()) {
        match &release.previous_target {
            Some(previous) => {
                ctx.transport.replace_symlink(previous, &current_link)?;
                ctx.current_moved(Some(previous));
                ctx.switched_back = true;
                ctx.reporter.event(Event::SwitchedBack {
                    host: &ctx.host,
                    from: &release.name,
                    to: release.previous.as_deref().unwrap_or(previous),
                });
            }
            None => {
                ctx.transport.remove_file(&current_link)?;
                ctx.current_moved(None);
            }
        }
    }
    if release.swapped {
        // Kept until cleanup removes the release: the evidence of what went wrong.
        keep_recording(ctx, &release.name)?;
    }
    let entry = Entry {
        event: "failed".into(),
        release: release.name.clone(),
        message: Some(reason.to_string()),
        ..Default::default()
    };
    // With its timeline; on a disk too full for that line, the plain record still fits.
    let recorded = release_log::record(ctx, with_timeline(ctx, entry.clone()))
        .or_else(|_| release_log::record(ctx, entry));
    if !release.swapped {
        // A release that was never `current` goes whatever the log says: its space may be
        // what the host needs back.
        ctx.transport
            .remove_dir_all(&ctx.path(&format!("releases/{}", release.name))?)?;
        if let Some(state) = ctx.state.as_mut() {
            state.releases.retain(|r| *r != release.name);
        }
    }
    recorded?;
    ctx.release = None;
    if release.swapped {
        ctx.info(&format!(
            "releases/{} is marked failed; the next deploy removes it (requests that started on it may still be running)",
            release.name
        ));
    } else {
        ctx.reporter.event(Event::ReleaseRemoved {
            host: &ctx.host,
            release: &release.name,
            reason: "the deploy failed",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn names_sort_after_existing_ones() {
        let now = datetime!(2026-05-18 10:30:00.5 UTC);
        assert_eq!(next_name(now, &[]), "20260518T103000Z");
        let same_second = vec!["20260518T103000Z".to_string()];
        assert_eq!(next_name(now, &same_second), "20260518T103001Z");
        let from_the_future = vec!["20260518T110000Z".to_string(), "junk".to_string()];
        assert_eq!(next_name(now, &from_the_future), "20260518T110001Z");
    }
}
