//! The release directory of this run: its name, its creation, and its end (kept as good, or
//! removed with `current` switched back).

use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::foreign_layout::{Layout, ADOPTED, BEFORE};
use super::host_state::Current;
use super::lock;
use super::programs::PHP_FILE_CACHE;
use super::release_log::{self, Entry};
use super::release_state::Status;
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
    // A directory (an in-place deploy) is adopted by the release's creation (`adopt`).
    let not_a_link = match &ctx.state {
        Some(state) => state.current == Current::Other,
        None => {
            ctx.transport.exists(&current)?
                && ctx.transport.read_link(&current)?.is_none()
                && !ctx.transport.is_dir(&current)?
        }
    };
    // `.zdd/opcache` makes `.zdd` too: PHP's file cache (see `programs::php`).
    for dir in ["releases", "shared", PHP_FILE_CACHE] {
        let path = ctx.path(dir)?;
        ctx.send(Op::CreateDirAll(path))?;
    }
    if not_a_link {
        return Err(Failure::message(format!(
            "`{current}` exists and is neither a symlink nor a directory"
        ))
        .with_hint("zdd swaps `current` as a symlink: move the file away, then deploy"));
    }
    Ok(())
}

/// The UTC name for a release made at `now` that sorts after every name in `existing`, in
/// deploy order (`layout`: the time another tool's log gives a release counts as its name's).
pub fn next_name(now: OffsetDateTime, existing: &[String], layout: &Layout) -> String {
    let mut candidate = now.to_offset(time::UtcOffset::UTC);
    // Every name that says a time (zdd's, Capistrano's, Ansistrano's), every time another
    // tool's log says (a server's clock ahead of this machine's): the new one after it.
    let latest = existing
        .iter()
        .flat_map(|n| {
            let named = super::foreign_layout::time_of_name(n).map(|(seconds, _)| seconds);
            [named, layout.times.get(n).copied()]
        })
        .flatten()
        .max()
        .and_then(|seconds| OffsetDateTime::from_unix_timestamp(seconds).ok());
    if let Some(latest) = latest {
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
    // Deploy order, not name order: another tool's names (Deployer's `9`) sort by their own
    // rule (`foreign_layout`).
    let layout = release_log::layout(ctx)?;
    let before = |k: &String, name: &String| layout.key(k) < layout.key(name);
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
            Some(name) if known.iter().all(|k| before(k, name)) => name.clone(),
            // The name of the deploy that left this host behind: it may have made (and
            // removed) a release of that name here; it must still sort after every other.
            Some(name)
                if catching_up
                    && known.iter().all(|k| k == name || before(k, name))
                    && !ctx
                        .state
                        .as_ref()
                        .is_some_and(|state| state.releases.contains(name)) =>
            {
                name.clone()
            }
            Some(name) if catching_up => {
                let newer = known.iter().filter(|k| !before(k, name)).max().cloned();
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
                let newer = known.iter().filter(|k| !before(k, name)).max().cloned();
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
                let own = next_name(now, &known, &layout);
                ctx.warn(&format!(
                    "release {own} here, not {name} as on the hosts before it: it has release {} already (a deploy moments ago)",
                    newer.unwrap_or_default()
                ));
                *shared = Some(own.clone());
                own
            }
            None => {
                let name = next_name(OffsetDateTime::now_utc(), &known, &layout);
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
    let adopted_directory = adopt(ctx, &name)?;
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
        adopted_directory,
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

/// The first zdd deploy to a deploy path another tool made (or a script, or an in-place
/// deploy) records what was live as `adopted`: as good as a finished release, so a rollback
/// goes back to it and cleanup counts it. A release in `releases/` zdd's log does not know is
/// adopted by its name. A `current` that is no release there is adopted as `before-NAME`
/// (`NAME` the release this run makes) with exactly what `current` was: a link elsewhere is
/// kept as its text; a directory is moved to `.zdd/adopted/before-NAME` and a link to it put
/// in its place in one renameat2(2) exchange (no moment without `current`, the same files
/// served). A rollback to it puts back exactly that (`rollback`); a failed run puts the
/// directory back (`discard`). Returns the adopted directory's name, when there was one.
fn adopt(ctx: &mut HostContext, name: &str) -> Result<Option<String>, Failure> {
    let Some(state) = &ctx.state else {
        return Ok(None);
    };
    let entry = |release: &str, target: Option<String>| Entry {
        event: "adopted".into(),
        release: release.to_string(),
        target,
        ..Default::default()
    };
    let known = release_log::releases(&state.log.entries);
    let pseudo = format!("{BEFORE}{name}");
    match state.current.clone() {
        Current::Link(target) => {
            if let Some(live) = ctx.current_release()? {
                let unknown = known
                    .get(&live)
                    .is_none_or(|info| info.status == Status::Unknown);
                if unknown && state.releases.contains(&live) {
                    // Read as the rest of the run reads them: a missing log is said (before
                    // this record makes one).
                    release_log::on_disk(ctx)?;
                    ctx.info(&format!(
                        "adopting releases/{live}, live before zdd's first deploy here: a rollback goes back to it"
                    ));
                    release_log::record(ctx, entry(&live, None))?;
                }
                return Ok(None);
            }
            ctx.info(&format!(
                "adopting `current` -> {target} (outside releases/) as release {pseudo}: a rollback puts that link back"
            ));
            release_log::record(ctx, entry(&pseudo, Some(target)))?;
            Ok(None)
        }
        Current::Directory => {
            let text = format!("{ADOPTED}/{pseudo}");
            let kept = ctx.path(&text)?;
            let current = ctx.path("current")?;
            ctx.info(&format!(
                "`current` is a directory (an in-place deploy): moved to {text} as release {pseudo}, with `current` a link to it (one atomic exchange); a rollback puts the directory back"
            ));
            release_log::record(ctx, entry(&pseudo, Some(text.clone())))?;
            ctx.send(Op::CreateDirAll(ctx.path(ADOPTED)?))?;
            ctx.send(Op::Symlink {
                target: text.clone(),
                link: kept.clone(),
            })?;
            ctx.send(Op::Exchange {
                a: kept,
                b: current,
            })?;
            ctx.current_moved(Some(&text));
            if let Some(state) = ctx.state.as_mut() {
                state.adopted.push(pseudo.clone());
            }
            Ok(Some(pseudo))
        }
        Current::Missing | Current::Other => Ok(None),
    }
}

/// Put back the directory `adopt` moved: `current` the link to it, then the two exchanged
/// again (the directory at `current`, the link where it was), the link removed.
pub fn put_back_directory(ctx: &mut HostContext, pseudo: &str) -> Result<(), Failure> {
    let text = format!("{ADOPTED}/{pseudo}");
    let kept = ctx.path(&text)?;
    let current = ctx.path("current")?;
    ctx.send(Op::ReplaceSymlink {
        target: text,
        link: current.clone(),
    })?;
    ctx.send(Op::Exchange {
        a: kept.clone(),
        b: current,
    })?;
    ctx.send(Op::RemoveFile(kept))?;
    if let Some(state) = ctx.state.as_mut() {
        state.current = Current::Directory;
        state.adopted.retain(|n| n != pseudo);
    }
    Ok(())
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
    if let Some(pseudo) = &release.adopted_directory {
        // `current` was a directory: exactly that again.
        put_back_directory(ctx, pseudo)?;
        release_log::record(
            ctx,
            Entry {
                event: "removed".into(),
                release: pseudo.clone(),
                message: Some("put back as `current`: the deploy that adopted it failed".into()),
                ..Default::default()
            },
        )?;
        ctx.transport.sync()?;
    }
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
        let none = Layout::default();
        assert_eq!(next_name(now, &[], &none), "20260518T103000Z");
        let same_second = vec!["20260518T103000Z".to_string()];
        assert_eq!(next_name(now, &same_second, &none), "20260518T103001Z");
        let from_the_future = vec!["20260518T110000Z".to_string(), "junk".to_string()];
        assert_eq!(next_name(now, &from_the_future, &none), "20260518T110001Z");
        // Deployer's log says release 7 was made after `now` (its server's clock ahead).
        let mut logged = Layout::default();
        logged.times.insert(
            "7".into(),
            datetime!(2026-05-18 10:35:00 UTC).unix_timestamp(),
        );
        let deployer = vec!["7".to_string()];
        assert_eq!(next_name(now, &deployer, &logged), "20260518T103501Z");
    }
}
