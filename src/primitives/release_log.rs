//! `{{deploy_path}}/.zdd/releases.jsonl`: one JSON line per event, appended, never rewritten.
//! A release's status is what its events add up to.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::context::HostContext;
use crate::failure::Failure;

pub const LOG: &str = ".zdd/releases.jsonl";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Entry {
    pub event: String,
    pub release: String,
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub time: String,
}

/// What a release is, from its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Being prepared, or left by a run that did not finish.
    Pending,
    /// A deploy finished with it: a rollback target.
    Good,
    /// Its deploy failed; never `current`, never a rollback target.
    Failed,
    /// A rollback moved away from it.
    RolledBack,
    /// Removed by cleanup.
    Removed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Good => "good",
            Status::Failed => "failed",
            Status::RolledBack => "rolled back",
            Status::Removed => "removed",
        }
    }
}

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
}

pub fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// Append an event for `release`.
pub fn record(ctx: &HostContext, mut entry: Entry) -> Result<(), Failure> {
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
    for text in [
        &mut entry.reference,
        &mut entry.commit,
        &mut entry.from,
        &mut entry.message,
    ]
    .into_iter()
    .flatten()
    {
        redact(text);
    }
    let line = serde_json::to_string(&entry).map_err(|e| Failure::message(e.to_string()))?;
    ctx.transport.append_line(&ctx.path(LOG)?, &line)?;
    Ok(())
}

/// Every event, oldest first. Lines that cannot be read are skipped (a torn last line).
pub fn read(ctx: &HostContext) -> Result<Vec<Entry>, Failure> {
    let text = ctx
        .transport
        .read_file(&ctx.path(LOG)?)?
        .unwrap_or_default();
    Ok(parse(&text))
}

pub fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Fold events into one record per release, by name (which is deploy order).
pub fn releases(entries: &[Entry]) -> BTreeMap<String, ReleaseInfo> {
    let mut map: BTreeMap<String, ReleaseInfo> = BTreeMap::new();
    for entry in entries {
        let info = map
            .entry(entry.release.clone())
            .or_insert_with(|| ReleaseInfo {
                name: entry.release.clone(),
                status: Status::Pending,
                reference: None,
                commit: None,
                user: entry.user.clone(),
                time: entry.time.clone(),
            });
        if entry.reference.is_some() {
            info.reference = entry.reference.clone();
        }
        if entry.commit.is_some() {
            info.commit = entry.commit.clone();
        }
        match entry.event.as_str() {
            "finished" => info.status = Status::Good,
            "failed" => info.status = Status::Failed,
            "removed" => info.status = Status::Removed,
            "rollback" => {
                if let Some(from) = &entry.from {
                    if let Some(left) = map.get_mut(from) {
                        if left.status == Status::Good {
                            left.status = Status::RolledBack;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    map
}

/// The release directories on the host, oldest first, with what the log says of each.
pub fn on_disk(ctx: &HostContext) -> Result<Vec<ReleaseInfo>, Failure> {
    let names = ctx.transport.list_dir(&ctx.path("releases")?)?;
    let known = releases(&read(ctx)?);
    Ok(names
        .into_iter()
        .filter(|name| !name.starts_with('.'))
        .map(|name| {
            known.get(&name).cloned().unwrap_or(ReleaseInfo {
                name,
                status: Status::Pending,
                reference: None,
                commit: None,
                user: String::new(),
                time: String::new(),
            })
        })
        .collect())
}

/// The release a rollback from `current` picks: the newest good release older than it.
pub fn rollback_target(releases: &[ReleaseInfo], current: Option<&str>) -> Option<String> {
    releases
        .iter()
        .filter(|r| r.status == Status::Good)
        .filter(|r| current.is_none_or(|c| r.name.as_str() < c))
        .map(|r| r.name.clone())
        .next_back()
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
    fn torn_lines_are_skipped() {
        let text = "{\"event\":\"created\",\"release\":\"a\"}\n{\"event\":\"fin";
        assert_eq!(parse(text).len(), 1);
    }
}
