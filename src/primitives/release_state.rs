//! The state of a release: one small state machine, driven by the events of the release log,
//! and the two decisions taken from it (which release a rollback picks, which releases cleanup
//! removes). Pure: the release log's reading and writing live in `primitives::release_log`.
//!
//! ```text
//!             created                 finished
//!   (none) ──────────▶ pending ───────────────────▶ good ◀──────┐
//!                        │  │ failed                  │ rollback  │ rollback
//!                        │  └────────▶ failed         │ from it   │ to it
//!                        │                            ▼           │
//!                        └── rollback from it ───▶ rolled back ───┘
//!   any state ── removing ──▶ removing ── removed ──▶ removed
//! ```
//!
//! A release directory with no event at all (the log was damaged, emptied or removed) is
//! `unknown`: it is kept like a good release and, when the log knows no good release, a
//! rollback may fall back on it, saying so.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::primitives::foreign_layout::{self, Layout};

/// What a release is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being prepared, or left by a run that did not finish.
    Pending,
    /// A deploy finished with it, or a rollback moved to it: a rollback target.
    Good,
    /// Its deploy failed; never `current` again, never a rollback target.
    Failed,
    /// A rollback moved away from it; `rollback --to` can still pick it.
    RolledBack,
    /// Cleanup began to remove it; never picked again.
    Removing,
    /// Removed by cleanup.
    Removed,
    /// On disk, but the log says nothing of it.
    Unknown,
}

/// What happened to a release, as the release log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Created,
    CheckedOut,
    Swapped,
    /// Prepared by a run without a swap (a task list that stops before `deploy:symlink`).
    Prepared,
    Finished,
    Failed,
    /// A rollback made it `current`.
    RolledBackTo,
    /// A rollback moved `current` away from it.
    RolledBackFrom,
    /// Live when zdd first deployed to a path another tool made: as good as a finished one.
    Adopted,
    Removing,
    Removed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Good => "good",
            Status::Failed => "failed",
            Status::RolledBack => "rolled back",
            Status::Removing => "removing",
            Status::Removed => "removed",
            Status::Unknown => "unknown",
        }
    }

    /// The one transition function.
    pub fn after(self, event: Event) -> Status {
        use Status::*;
        match (self, event) {
            // Removal is final: nothing brings a release back from it.
            (Removing | Removed, Event::Removed) => Removed,
            (Removing | Removed, _) => self,
            (_, Event::Removing) => Removing,
            (_, Event::Removed) => Removed,
            (_, Event::Created) => Pending,
            (_, Event::Failed) => Failed,
            (Failed, _) => Failed,
            (_, Event::Finished) => Good,
            // A rollback to a release (by default, or `--to` a rolled-back one) makes it good.
            (_, Event::RolledBackTo) => Good,
            (_, Event::Adopted) => Good,
            (Good | Pending | Unknown, Event::RolledBackFrom) => RolledBack,
            (RolledBack, Event::RolledBackFrom) => RolledBack,
            (state, Event::CheckedOut | Event::Swapped | Event::Prepared) => state,
        }
    }

    /// Whether `keep_releases` counts it and a default rollback may pick it.
    pub fn is_good(self) -> bool {
        self == Status::Good
    }

    /// Whether `rollback --to` may make it `current`.
    pub fn can_become_current(self) -> bool {
        matches!(self, Status::Good | Status::RolledBack | Status::Unknown)
    }
}

/// A release directory and what the log says of it.
#[derive(Debug, Clone, Serialize)]
pub struct ReleaseInfo {
    pub name: String,
    pub status: Status,
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    pub commit: Option<String>,
    pub user: String,
    /// When it was created (RFC 3339, UTC).
    pub time: String,
    /// The tool that made it (`zdd`, or another tool whose deploy path zdd adopted:
    /// `foreign_layout::Tool`).
    pub made_by: &'static str,
}

impl ReleaseInfo {
    pub fn unknown(name: &str) -> ReleaseInfo {
        ReleaseInfo {
            name: name.to_string(),
            status: Status::Unknown,
            reference: None,
            commit: None,
            user: String::new(),
            time: String::new(),
            made_by: "unknown",
        }
    }
}

/// One event of one release, as the fold needs it.
pub struct Record<'a> {
    pub release: &'a str,
    pub event: Event,
    pub reference: Option<&'a str>,
    pub commit: Option<&'a str>,
    pub user: &'a str,
    pub time: &'a str,
}

/// Fold events, oldest first, into one record per release (by name, which is deploy order).
pub fn fold<'a>(records: impl IntoIterator<Item = Record<'a>>) -> BTreeMap<String, ReleaseInfo> {
    let mut map: BTreeMap<String, ReleaseInfo> = BTreeMap::new();
    for record in records {
        let info = map
            .entry(record.release.to_string())
            .or_insert_with(|| ReleaseInfo {
                user: record.user.to_string(),
                time: record.time.to_string(),
                // An adopted release was made by another tool: the layout says which.
                made_by: if record.event == Event::Adopted {
                    ""
                } else {
                    "zdd"
                },
                ..ReleaseInfo::unknown(record.release)
            });
        if let Some(reference) = record.reference {
            info.reference = Some(reference.to_string());
        }
        if let Some(commit) = record.commit {
            info.commit = Some(commit.to_string());
        }
        info.status = info.status.after(record.event);
    }
    map
}

/// The releases `names` (release directories, and releases adopted from a `current` outside
/// `releases/`) in deploy order (`foreign_layout`), each with what `known` (zdd's log) or,
/// for a release another tool made, `layout` says of it.
pub fn on_disk(
    names: &[String],
    known: &BTreeMap<String, ReleaseInfo>,
    layout: &Layout,
) -> Vec<ReleaseInfo> {
    let mut names: Vec<String> = names
        .iter()
        .filter(|name| !name.starts_with('.'))
        .cloned()
        .collect();
    foreign_layout::sort(&mut names, layout);
    names
        .iter()
        .map(|name| match known.get(name) {
            Some(info) if !info.made_by.is_empty() => info.clone(),
            found => {
                let mut info = found.cloned().unwrap_or_else(|| ReleaseInfo::unknown(name));
                info.made_by = layout.tool_of(name).as_str();
                if info.commit.is_none() && info.reference.is_none() {
                    info.reference = layout.revisions.get(name).cloned();
                }
                info
            }
        })
        .collect()
}

/// Where a default rollback from `current` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The newest good release older than `current`.
    Good(String),
    /// The log knows no good release older than `current`: the newest directory it says
    /// nothing of (a damaged or missing log).
    FromDisk(String),
}

/// The releases before `current` in `releases` (deploy order): all of them without a
/// `current`; those whose names sort before it when it is none of them (a dangling link).
pub fn before<'a>(releases: &'a [ReleaseInfo], current: Option<&str>) -> &'a [ReleaseInfo] {
    let index = match current {
        None => releases.len(),
        Some(c) => releases
            .iter()
            .position(|r| r.name == c)
            .unwrap_or_else(|| releases.partition_point(|r| r.name.as_str() < c)),
    };
    &releases[..index]
}

/// The release a default rollback from `current` picks.
pub fn rollback_target(releases: &[ReleaseInfo], current: Option<&str>) -> Option<Target> {
    let older = before(releases, current);
    if let Some(good) = older.iter().rfind(|r| r.status.is_good()) {
        return Some(Target::Good(good.name.clone()));
    }
    older
        .iter()
        .rfind(|r| r.status == Status::Unknown)
        .map(|r| Target::FromDisk(r.name.clone()))
}

impl Target {
    pub fn name(&self) -> &str {
        match self {
            Target::Good(name) | Target::FromDisk(name) => name,
        }
    }
}

/// What cleanup must never remove, whatever the statuses say.
#[derive(Debug, Default)]
pub struct Protected<'a> {
    /// The release `current` points at.
    pub current: Option<&'a str>,
    /// The release this run made.
    pub this_run: Option<&'a str>,
    /// The release that was live before this run.
    pub previous: Option<&'a str>,
    /// Releases another tool's pointer still names (Deployer's `release` link, ...).
    pub pointed: Vec<&'a str>,
}

/// The releases cleanup removes: all but the newest `keep` good (or unknown) ones, the
/// rollback target and the protected ones. Releases already being removed are removed again
/// (a removal that did not finish).
pub fn to_remove(releases: &[ReleaseInfo], keep: usize, protected: &Protected) -> Vec<String> {
    let mut kept: Vec<&str> = [protected.current, protected.this_run, protected.previous]
        .into_iter()
        .flatten()
        .chain(protected.pointed.iter().copied())
        .collect();
    if let Some(target) = rollback_target(releases, protected.current) {
        kept.push(
            releases
                .iter()
                .find(|r| r.name == target.name())
                .map(|r| r.name.as_str())
                .unwrap_or_default(),
        );
    }
    kept.extend(
        releases
            .iter()
            .filter(|r| {
                r.status.is_good()
                    || r.status == Status::Unknown
                    || Some(r.name.as_str()) == protected.this_run
            })
            .rev()
            .take(keep)
            .map(|r| r.name.as_str()),
    );
    releases
        .iter()
        .filter(|r| !kept.contains(&r.name.as_str()))
        .map(|r| r.name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn every_transition() {
        let events = [
            Event::Created,
            Event::CheckedOut,
            Event::Swapped,
            Event::Prepared,
            Event::Finished,
            Event::Failed,
            Event::RolledBackTo,
            Event::RolledBackFrom,
            Event::Removing,
            Event::Removed,
        ];
        // One row per state, one column per event above.
        let table: [(Status, [Status; 10]); 7] = [
            (
                Pending,
                [
                    Pending, Pending, Pending, Pending, Good, Failed, Good, RolledBack, Removing,
                    Removed,
                ],
            ),
            (
                Good,
                [
                    Pending, Good, Good, Good, Good, Failed, Good, RolledBack, Removing, Removed,
                ],
            ),
            (
                Failed,
                [
                    Pending, Failed, Failed, Failed, Failed, Failed, Failed, Failed, Removing,
                    Removed,
                ],
            ),
            (
                RolledBack,
                [
                    Pending, RolledBack, RolledBack, RolledBack, Good, Failed, Good, RolledBack,
                    Removing, Removed,
                ],
            ),
            (
                Removing,
                [
                    Removing, Removing, Removing, Removing, Removing, Removing, Removing, Removing,
                    Removing, Removed,
                ],
            ),
            (Removed, [Removed; 10]),
            (
                Unknown,
                [
                    Pending, Unknown, Unknown, Unknown, Good, Failed, Good, RolledBack, Removing,
                    Removed,
                ],
            ),
        ];
        for (state, expected) in table {
            for (event, want) in events.iter().zip(expected) {
                assert_eq!(state.after(*event), want, "{state:?} after {event:?}");
            }
        }
    }

    fn record(release: &str, event: Event) -> Record<'_> {
        Record {
            release,
            event,
            reference: None,
            commit: None,
            user: "",
            time: "",
        }
    }

    fn statuses(map: &BTreeMap<String, ReleaseInfo>) -> Vec<(&str, Status)> {
        map.values().map(|i| (i.name.as_str(), i.status)).collect()
    }

    #[test]
    fn rolled_forward_to_is_good_again() {
        let map = fold([
            record("a", Event::Created),
            record("a", Event::Finished),
            record("b", Event::Created),
            record("b", Event::Finished),
            record("a", Event::RolledBackTo),
            record("b", Event::RolledBackFrom),
            // `rollback --to b`: forward again.
            record("b", Event::RolledBackTo),
            record("a", Event::RolledBackFrom),
        ]);
        assert_eq!(statuses(&map), [("a", RolledBack), ("b", Good)]);
    }

    fn infos(list: &[(&str, Status)]) -> Vec<ReleaseInfo> {
        list.iter()
            .map(|(name, status)| ReleaseInfo {
                status: *status,
                ..ReleaseInfo::unknown(name)
            })
            .collect()
    }

    #[test]
    fn rollback_prefers_the_log_then_falls_back_on_disk() {
        let releases = infos(&[("a", Good), ("b", Unknown), ("c", Failed), ("d", Good)]);
        assert_eq!(
            rollback_target(&releases, Some("d")),
            Some(Target::Good("a".into()))
        );
        let no_log = infos(&[("a", Unknown), ("b", Unknown), ("c", Unknown)]);
        assert_eq!(
            rollback_target(&no_log, Some("c")),
            Some(Target::FromDisk("b".into()))
        );
        assert_eq!(rollback_target(&no_log, Some("a")), None);
    }

    #[test]
    fn cleanup_keeps_what_must_stay() {
        let releases = infos(&[
            ("a", Good),
            ("b", Good),
            ("c", Failed),
            ("d", Pending),
            ("e", Good),
            ("f", Removing),
            ("g", Pending),
        ]);
        let protected = Protected {
            current: Some("g"),
            this_run: Some("g"),
            previous: Some("e"),
            pointed: Vec::new(),
        };
        assert_eq!(
            to_remove(&releases, 1, &protected),
            ["a", "b", "c", "d", "f"]
        );
        assert_eq!(
            to_remove(&releases, 2, &protected),
            ["a", "b", "c", "d", "f"]
        );
        assert_eq!(to_remove(&releases, 3, &protected), ["a", "c", "d", "f"]);
    }

    #[test]
    fn an_empty_log_removes_nothing_that_was_live() {
        // The log was emptied: every directory is unknown; the newest `keep` stay, and the
        // release that was live before this run stays whatever `keep` says.
        let releases = infos(&[
            ("a", Unknown),
            ("b", Unknown),
            ("c", Unknown),
            ("d", Pending),
        ]);
        let protected = Protected {
            current: Some("d"),
            this_run: Some("d"),
            previous: Some("a"),
            pointed: Vec::new(),
        };
        assert_eq!(to_remove(&releases, 1, &protected), ["b"]);
    }
}
