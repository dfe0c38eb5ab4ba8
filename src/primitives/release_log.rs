//! `{{deploy_path}}/.zdd/releases.jsonl`: one JSON line per event, appended, never rewritten.
//! What a release is follows from its events through the state machine of
//! `crate::primitives::release_state`. A damaged line never blocks anything: it is skipped with a warning
//! that names the file and the line.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::output::failure::Failure;
use crate::output::fleet::LeftBehind;
use crate::output::report::TaskTiming;
use crate::output::watch::{Swap, WatchSummary};
use crate::primitives::foreign_layout::{self, Layout};
use crate::primitives::host_context::HostContext;
use crate::primitives::release_state::{self, Event, Record, Status};
use crate::transport::Op;

pub use crate::primitives::release_state::ReleaseInfo;

pub const LOG: &str = ".zdd/releases.jsonl";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Entry {
    pub event: String,
    pub release: String,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The sha256 of the build's archive the release was unpacked from (`build_on` other
    /// than `hosts`): every host's release of one deploy has the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// On an `adopted` line of a release that was no directory in `releases/`: exactly what
    /// `current` was (its link text, or `.zdd/adopted/NAME` for a directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub time: String,
    /// When the run that wrote a `finished`, `prepared` or `failed` line started (RFC 3339),
    /// its tasks on this host, this host's swap and what the watcher saw: what `zdd report`
    /// draws (times in ms from `started`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskTiming>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<Swap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchSummary>,
    /// On a `finished` line: the hosts this deploy went on without (left on their old
    /// release within `max_fail`), each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_behind: Vec<LeftBehind>,
}

/// The log as read: its events, and the numbers of the lines that could not be read.
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub entries: Vec<Entry>,
    pub damaged: Vec<usize>,
    /// There is no log file at all.
    pub missing: bool,
}

pub fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Append an event for `release`: kept in the host's state, and sent to the log without
/// waiting.
pub fn record(ctx: &mut HostContext, entry: Entry) -> Result<(), Failure> {
    let (entry, line) = line(ctx, entry)?;
    let path = ctx.path(LOG)?;
    ctx.send(Op::AppendLine { path, line })?;
    remember(ctx, entry);
    Ok(())
}

/// The event as the log's line: user and time filled in, secrets redacted.
pub fn line(ctx: &HostContext, mut entry: Entry) -> Result<(Entry, String), Failure> {
    if entry.user.is_empty() {
        entry.user = ctx.deployment.user.clone();
    }
    if entry.time.is_empty() {
        entry.time = now();
    }
    // The log outlives the run: no secret value and no URL password goes into it.
    let secrets = ctx.reporter.secrets();
    let redact = |text: &mut String| {
        if let std::borrow::Cow::Owned(redacted) = secrets.redact(text) {
            *text = redacted;
        }
    };
    for text in [
        &mut entry.event,
        &mut entry.release,
        &mut entry.user,
        &mut entry.time,
    ] {
        redact(text);
    }
    // A commit id is not secret, and it is not redacted: a secret that happens to be part of
    // it (or of the placeholder a checkout's host fills in) would make the log lie.
    for text in [&mut entry.reference, &mut entry.from, &mut entry.message]
        .into_iter()
        .flatten()
    {
        redact(text);
    }
    // A watched URL may carry a password or a token.
    if let Some(watch) = entry.watch.as_mut() {
        for url in &mut watch.urls {
            redact(&mut url.url);
            for failure in &mut url.first_failures {
                redact(&mut failure.error);
            }
        }
    }
    let line = serde_json::to_string(&entry).map_err(|e| Failure::message(e.to_string()))?;
    Ok((entry, line))
}

/// Keep an event written to the log in the host's state.
pub fn remember(ctx: &mut HostContext, entry: Entry) {
    if let Some(state) = ctx.state.as_mut() {
        state.log.entries.push(entry);
        state.log.missing = false;
    }
}

/// Every event, oldest first. Damaged lines are skipped, with a warning (once per run).
pub fn read(ctx: &mut HostContext) -> Result<Log, Failure> {
    let path = ctx.path(LOG)?;
    let log = match &ctx.state {
        Some(state) => state.log.clone(),
        None => match ctx.transport.read_file(&path)? {
            Some(text) => parse(&text),
            None => Log {
                missing: true,
                ..Log::default()
            },
        },
    };
    if !log.damaged.is_empty()
        && ctx
            .memo
            .insert("log_damaged".into(), String::new())
            .is_none()
    {
        let lines: Vec<String> = log.damaged.iter().map(usize::to_string).collect();
        ctx.warn(&format!(
            "`{path}`: line{} {} cannot be read and {} skipped",
            if lines.len() == 1 { "" } else { "s" },
            lines.join(", "),
            if lines.len() == 1 { "was" } else { "were" },
        ));
    }
    Ok(log)
}

/// The lines of the log; lines that are not an event (a torn last line, bytes that are not
/// text, garbage) are listed by number (from 1) in `damaged`.
pub fn parse(text: &str) -> Log {
    let mut log = Log::default();
    for (index, line) in text.split('\n').enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Entry>(line) {
            Ok(entry) if !entry.release.is_empty() => log.entries.push(entry),
            _ => log.damaged.push(index + 1),
        }
    }
    log
}

/// The events of the log as the state machine sees them.
fn records(entries: &[Entry]) -> impl Iterator<Item = Record<'_>> {
    entries.iter().flat_map(|entry| {
        let event = match entry.event.as_str() {
            "created" => Some(Event::Created),
            "checked_out" => Some(Event::CheckedOut),
            "swapped" => Some(Event::Swapped),
            "prepared" => Some(Event::Prepared),
            "finished" => Some(Event::Finished),
            "failed" => Some(Event::Failed),
            "rollback" => Some(Event::RolledBackTo),
            "adopted" => Some(Event::Adopted),
            "removing" => Some(Event::Removing),
            "removed" => Some(Event::Removed),
            _ => None,
        };
        let main = event.map(|event| Record {
            release: &entry.release,
            event,
            reference: entry.reference.as_deref(),
            commit: entry.commit.as_deref(),
            user: &entry.user,
            time: &entry.time,
        });
        // A rollback also moves away from the release it left.
        let left = (entry.event == "rollback")
            .then_some(entry.from.as_deref())
            .flatten()
            .map(|from| Record {
                release: from,
                event: Event::RolledBackFrom,
                reference: None,
                commit: None,
                user: &entry.user,
                time: &entry.time,
            });
        main.into_iter().chain(left)
    })
}

/// One record per release, by name.
pub fn releases(entries: &[Entry]) -> std::collections::BTreeMap<String, ReleaseInfo> {
    release_state::fold(records(entries))
}

/// The release directories on the host, oldest first, with what the log says of each.
pub fn on_disk(ctx: &mut HostContext) -> Result<Vec<ReleaseInfo>, Failure> {
    let names = match &ctx.state {
        Some(state) => state.releases.clone(),
        None => ctx.transport.list_dir(&ctx.path("releases")?)?,
    };
    let log = read(ctx)?;
    if log.missing
        && !names.is_empty()
        && ctx
            .memo
            .insert("log_missing".into(), String::new())
            .is_none()
    {
        ctx.warn(&format!(
            "`{}` is missing: zdd knows the releases only from what is on disk",
            ctx.path(LOG)?
        ));
    }
    let known = releases(&log.entries);
    // One read of what other tools left (one request when the state has none).
    let (files, adopted_dirs) = super::host_state::foreign(ctx)?;
    let layout = foreign_layout::read(&files, &ctx.deploy_path()?);
    let mut names = names;
    names.extend(adopted(&log.entries, &known, &adopted_dirs));
    Ok(release_state::on_disk(&names, &known, &layout))
}

/// What other tools left on the deploy path, read (`foreign_layout`).
pub fn layout(ctx: &HostContext) -> Result<Layout, Failure> {
    let (files, _) = super::host_state::foreign(ctx)?;
    Ok(foreign_layout::read(&files, &ctx.deploy_path()?))
}

/// The releases zdd adopted from a `current` that was no release in `releases/` (a directory
/// kept in `.zdd/adopted/`, or a link elsewhere) and still has: not removed, and the
/// directory still there.
fn adopted(
    entries: &[Entry],
    known: &std::collections::BTreeMap<String, ReleaseInfo>,
    dirs: &[String],
) -> Vec<String> {
    let mut names: Vec<String> = entries
        .iter()
        .filter(|e| e.event == "adopted" && e.release.starts_with(foreign_layout::BEFORE))
        .filter(|e| still_adopted(known, &e.release))
        .filter(|e| adopted_directory(e).is_none() || dirs.contains(&e.release))
        .map(|e| e.release.clone())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// An adopted release that cleanup, or the failed deploy that adopted it, has not taken away.
fn still_adopted(known: &std::collections::BTreeMap<String, ReleaseInfo>, name: &str) -> bool {
    known.get(name).is_some_and(|info| {
        !matches!(
            info.status,
            Status::Removing | Status::Removed | Status::Failed
        )
    })
}

/// The directory in `.zdd/adopted/` an adopted release's entry names (`release::adopt`), when
/// `current` was a directory.
pub fn adopted_directory(entry: &Entry) -> Option<String> {
    let dir = format!("{}/{}", foreign_layout::ADOPTED, entry.release);
    (entry.target.as_deref() == Some(dir.as_str())).then_some(dir)
}

/// The record of a release zdd adopted from a `current` that was no release of `releases/`
/// (its `target` the exact `current` it was), by its name; none for any other release (a
/// directory someone named `before-...` by hand included).
pub fn adopted_entry<'a>(entries: &'a [Entry], name: &str) -> Option<&'a Entry> {
    entries
        .iter()
        .rev()
        .find(|e| e.event == "adopted" && e.release == name && e.target.is_some())
}

/// The adopted release `current`'s exact link text stands for, if any.
pub fn adopted_by_target(entries: &[Entry], link: &str) -> Option<String> {
    let known = releases(entries);
    entries
        .iter()
        .rev()
        .filter(|e| e.event == "adopted" && e.target.as_deref() == Some(link))
        .find(|e| still_adopted(&known, &e.release))
        .map(|e| e.release.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(event: &str, release: &str) -> Entry {
        Entry {
            event: event.into(),
            release: release.into(),
            ..Default::default()
        }
    }

    #[test]
    fn statuses_follow_the_events() {
        let mut rollback = entry("rollback", "a");
        rollback.from = Some("b".into());
        let entries = vec![
            entry("created", "a"),
            entry("finished", "a"),
            entry("created", "b"),
            entry("swapped", "b"),
            entry("finished", "b"),
            entry("created", "c"),
            entry("failed", "c"),
            rollback,
            entry("created", "d"),
        ];
        let map = releases(&entries);
        use crate::primitives::release_state::Status;
        let statuses: Vec<Status> = map.values().map(|i| i.status).collect();
        assert_eq!(
            statuses,
            [
                Status::Good,
                Status::RolledBack,
                Status::Failed,
                Status::Pending
            ]
        );
    }

    #[test]
    fn damaged_lines_are_skipped_and_named() {
        let text = "{\"event\":\"created\",\"release\":\"a\"}\n\u{fffd}\u{fffd}garbage\n\n{\"event\":\"finished\",\"release\":\"a\"}\n{\"event\":\"fin";
        let log = parse(text);
        assert_eq!(log.entries.len(), 2);
        assert_eq!(log.damaged, [2, 5]);
    }
}
