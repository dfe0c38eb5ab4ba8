//! What other deploy tools leave on a deploy path (Deployer, Capistrano, Mina, Ansistrano,
//! Envoyer and scripts that name releases by the time), read the way those tools write it, and
//! the order of releases that follows from it. Pure: the files are read with the host's state
//! (`host_state`, `release_log::on_disk`).
//!
//! Release order is deploy order. zdd's own names sort by time, so the name was enough; another
//! tool's names do not (Deployer's `9` sorts after `10` and after every zdd name). The order is
//! the other tool's own log when it has one (Deployer's `.dep/releases_log` gives each release
//! its time), else the time the name says (Capistrano and Envoyer `%Y%m%d%H%M%S`, Ansistrano
//! `%Y%m%d%H%M%SZ`, zdd `%Y%m%dT%H%M%SZ`), else the number (Mina, Deployer without a log), else
//! the name. A release whose time is unknown came before every release whose time is known:
//! zdd came last. The modification time of a directory is never used: a copy, a `touch` or a
//! restore changes it.

use std::collections::BTreeMap;

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

/// The files of other tools zdd reads, under the deploy path.
pub const DEPLOYER_LOG: &str = ".dep/releases_log";
pub const DEPLOYER_LATEST: &str = ".dep/latest_release";
/// Deployer's link to the release a deploy is preparing (left behind when one failed).
pub const DEPLOYER_RELEASE_LINK: &str = "release";
pub const CAPISTRANO_LOG: &str = "revisions.log";
/// Mina's number of the last release it made.
pub const MINA_LAST_VERSION: &str = "last_version";

/// Where zdd keeps a `current` that was a directory when zdd first deployed (an in-place
/// deploy), named by the adopted release: see `release::adopt`.
pub const ADOPTED: &str = ".zdd/adopted";

/// The prefix of a release zdd adopted from a `current` that was not a release in
/// `releases/` (a directory, or a link elsewhere): `before-<the first zdd release>`.
pub const BEFORE: &str = "before-";

/// What the other tools' files say, as read from the host (each `None` when absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Files {
    pub deployer_log: Option<String>,
    pub deployer_latest: Option<String>,
    pub release_link: Option<String>,
    pub capistrano_log: Option<String>,
    pub mina_last_version: Option<String>,
}

/// The tool a release (or a deploy path) was made by, as far as zdd can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    Zdd,
    Deployer,
    Capistrano,
    Mina,
    Ansistrano,
    /// `%Y%m%d%H%M%S` names without Capistrano's log (Envoyer, scripts).
    Timestamped,
    /// zdd's own name format, but no record of it in zdd's log (zdd's seed scripts).
    ZddNamed,
    /// What `current` was when zdd first deployed, not a release in `releases/`: a directory
    /// (an in-place deploy) or a link elsewhere.
    Adopted,
    Unknown,
}

impl Tool {
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Zdd => "zdd",
            Tool::Deployer => "deployer",
            Tool::Capistrano => "capistrano",
            Tool::Mina => "mina",
            Tool::Ansistrano => "ansistrano",
            Tool::Timestamped => "timestamped",
            Tool::ZddNamed => "zdd-named",
            Tool::Adopted => "before zdd",
            Tool::Unknown => "unknown",
        }
    }
}

const ZDD_NAME: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year][month][day]T[hour][minute][second]Z");
const DIGITS_14: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year][month][day][hour][minute][second]");
const DIGITS_14_Z: &[time::format_description::BorrowedFormatItem<'static>] =
    format_description!("[year][month][day][hour][minute][second]Z");
/// PHP's `DateTime::ISO8601` (Deployer's `created_at`): `2024-01-31T10:00:00+0000`.
const PHP_ISO8601: &[time::format_description::BorrowedFormatItem<'static>] = format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"
);

fn parse_with(
    name: &str,
    format: &[time::format_description::BorrowedFormatItem<'static>],
) -> Option<i64> {
    PrimitiveDateTime::parse(name, format)
        .ok()
        .map(|t| t.assume_utc().unix_timestamp())
}

/// The time a release's name says (UTC), and the format's tool.
pub fn time_of_name(name: &str) -> Option<(i64, Tool)> {
    if let Some(made) = name.strip_prefix(BEFORE) {
        return parse_with(made, ZDD_NAME).map(|t| (t, Tool::Zdd));
    }
    if name.len() == 16 {
        if let Some(t) = parse_with(name, ZDD_NAME) {
            return Some((t, Tool::ZddNamed));
        }
    }
    if name.len() == 15 {
        if let Some(t) = parse_with(name, DIGITS_14_Z) {
            return Some((t, Tool::Ansistrano));
        }
    }
    if name.len() == 14 {
        if let Some(t) = parse_with(name, DIGITS_14) {
            return Some((t, Tool::Timestamped));
        }
    }
    None
}

fn parse_time(text: &str) -> Option<i64> {
    OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(text, PHP_ISO8601))
        .ok()
        .map(|t| t.unix_timestamp())
}

/// One line of Deployer's `.dep/releases_log` (Deployer 7: `created_at`, `release_name`,
/// `user`, `target`).
#[derive(Debug, serde::Deserialize)]
struct DeployerEntry {
    created_at: Option<String>,
    release_name: serde_json::Value,
    #[serde(default)]
    target: Option<String>,
}

/// What the other tools' files say about the releases: each one's time, commit and tool, and
/// the names their pointers still name.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Each release another tool's log names: its time (unix seconds), when the log says.
    pub times: BTreeMap<String, i64>,
    /// Each release another tool's log names: its commit or ref, when the log says.
    pub revisions: BTreeMap<String, String>,
    /// The tool whose files are on the deploy path, if any.
    pub tool: Option<Tool>,
    /// Pointers of other tools to a release: (what points, the release's name).
    pub pointers: Vec<(String, String)>,
    /// Lines of the tools' logs that could not be read: (file, line number from 1).
    pub damaged: Vec<(&'static str, usize)>,
}

/// The release name a link's text names, when it is a release in `releases/` of
/// `deploy_path` (relative, `./` or absolute): `current`, Deployer's `release`.
pub fn release_named(text: &str, deploy_path: &str) -> Option<String> {
    let text = text.trim_end_matches('/');
    let relative = text
        .strip_prefix(&format!("{deploy_path}/"))
        .unwrap_or(text)
        .trim_start_matches("./");
    let name = relative.strip_prefix("releases/")?;
    (!name.is_empty() && !name.contains('/') && name != "." && name != "..")
        .then(|| name.to_string())
}

/// Read the other tools' files.
pub fn read(files: &Files, deploy_path: &str) -> Layout {
    let mut layout = Layout::default();
    if let Some(text) = &files.deployer_log {
        layout.tool = Some(Tool::Deployer);
        for (index, line) in text.split('\n').enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let entry = serde_json::from_str::<DeployerEntry>(line).ok();
            let name = entry.as_ref().and_then(|e| match &e.release_name {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                _ => None,
            });
            let (Some(entry), Some(name)) = (entry, name) else {
                layout.damaged.push((DEPLOYER_LOG, index + 1));
                continue;
            };
            if let Some(time) = entry.created_at.as_deref().and_then(parse_time) {
                // A name logged twice (a release made again) counts from its last deploy.
                layout.times.insert(name.clone(), time);
            }
            if let Some(target) = entry.target.filter(|t| !t.is_empty()) {
                layout.revisions.insert(name, target);
            }
        }
    }
    if let Some(latest) = files
        .deployer_latest
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        layout.tool.get_or_insert(Tool::Deployer);
        layout
            .pointers
            .push((DEPLOYER_LATEST.to_string(), latest.to_string()));
    }
    if let Some(name) = files
        .release_link
        .as_deref()
        .and_then(|link| release_named(link, deploy_path))
    {
        layout
            .pointers
            .push((DEPLOYER_RELEASE_LINK.to_string(), name));
    }
    if let Some(text) = &files.capistrano_log {
        layout.tool.get_or_insert(Tool::Capistrano);
        // `Branch main (at 1a2b3c) deployed as release 20240131100000 by deploy`
        for line in text.lines() {
            let Some((head, tail)) = line.split_once(" deployed as release ") else {
                continue;
            };
            let name = tail.split_whitespace().next().unwrap_or_default();
            let revision = head
                .split_once("(at ")
                .and_then(|(_, rest)| rest.split(')').next())
                .unwrap_or_default();
            if !name.is_empty() && !revision.is_empty() {
                layout
                    .revisions
                    .insert(name.to_string(), revision.to_string());
            }
        }
    }
    if let Some(last) = files
        .mina_last_version
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        layout.tool.get_or_insert(Tool::Mina);
        layout
            .pointers
            .push((MINA_LAST_VERSION.to_string(), last.to_string()));
    }
    layout
}

impl Layout {
    /// The tool that made release `name` (zdd's own log aside: the caller knows those).
    pub fn tool_of(&self, name: &str) -> Tool {
        if name.starts_with(BEFORE) {
            return Tool::Adopted;
        }
        if self.times.contains_key(name) || self.revisions.contains_key(name) {
            if let Some(tool) = self.tool {
                return tool;
            }
        }
        match time_of_name(name) {
            Some((_, Tool::Timestamped)) if self.tool == Some(Tool::Capistrano) => Tool::Capistrano,
            Some((_, tool)) => tool,
            None if name.bytes().all(|b| b.is_ascii_digit()) && !name.is_empty() => {
                match self.tool {
                    Some(Tool::Mina) => Tool::Mina,
                    Some(Tool::Deployer) => Tool::Deployer,
                    _ => Tool::Unknown,
                }
            }
            None => Tool::Unknown,
        }
    }

    /// The key that puts releases in deploy order (see the module's text).
    pub fn key(&self, name: &str) -> Key {
        // zdd's planned releases (`next_run::made_by`) come after everything.
        if let Some(step) = name.strip_prefix('~') {
            return Key::Planned(step.to_string());
        }
        let number = (name.len() <= 18 && name.bytes().all(|b| b.is_ascii_digit()))
            .then(|| name.parse().ok())
            .flatten();
        // Within one second: what `current` was before zdd's release of that second, a time
        // another tool logged before a time a name says (zdd's own), numbers by number.
        let time = match (self.times.get(name), time_of_name(name)) {
            (Some(&t), _) => Some((t, 1)),
            (None, Some((t, _))) if name.starts_with(BEFORE) => Some((t, 0)),
            (None, Some((t, _))) => Some((t, 2)),
            (None, None) => None,
        };
        match time {
            Some((seconds, rank)) => Key::Timed {
                seconds,
                rank,
                number,
                name: name.to_string(),
            },
            None => Key::Untimed {
                number,
                name: name.to_string(),
            },
        }
    }
}

/// Deploy order: releases of unknown time first (by number, then name), then by time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    Untimed {
        /// `None` (not a number) sorts before numbers: a name that is not a number says nothing.
        number: Option<u64>,
        name: String,
    },
    Timed {
        seconds: i64,
        /// 0: adopted by the release named that second; 1: a time another tool's log says;
        /// 2: a time the name says.
        rank: u8,
        number: Option<u64>,
        name: String,
    },
    Planned(String),
}

/// Sort `names` into deploy order.
pub fn sort(names: &mut [String], layout: &Layout) {
    names.sort_by_cached_key(|name| layout.key(name));
}

/// Whether zdd's name order is deploy order for these names: every one is zdd's own format.
pub fn zdd_ordered(names: &[String]) -> bool {
    names
        .iter()
        .all(|name| name.len() == 16 && parse_with(name, ZDD_NAME).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(names: &[&str], layout: &Layout) -> Vec<String> {
        let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        sort(&mut names, layout);
        names
    }

    #[test]
    fn deployer_numbers_sort_as_numbers_and_by_their_log() {
        let files = Files {
            deployer_log: Some(
                [
                    r#"{"created_at":"2026-11-01T10:00:00+0000","release_name":"9","user":"a","target":"main"}"#,
                    r#"{"created_at":"2026-11-02T10:00:00+0000","release_name":"10","user":"a","target":"main"}"#,
                    "garbage",
                ]
                .join("\n"),
            ),
            deployer_latest: Some("10\n".into()),
            release_link: Some("/srv/app/releases/10".into()),
            ..Files::default()
        };
        let layout = read(&files, "/srv/app");
        assert_eq!(layout.damaged, [(DEPLOYER_LOG, 3)]);
        assert_eq!(
            sorted(&["20261203T100000Z", "10", "9", "8"], &layout),
            ["8", "9", "10", "20261203T100000Z"]
        );
        assert_eq!(layout.tool_of("9"), Tool::Deployer);
        assert_eq!(layout.tool_of("8"), Tool::Deployer);
        assert!(layout
            .pointers
            .contains(&(DEPLOYER_LATEST.to_string(), "10".to_string())));
        assert_eq!(layout.revisions.get("9").map(String::as_str), Some("main"));
    }

    #[test]
    fn timestamps_of_every_format_sort_by_time() {
        let layout = Layout::default();
        assert_eq!(
            sorted(
                &[
                    "20261203T120000Z",
                    "20261203150000",
                    "20261203130000Z",
                    "before-20261203T120000Z",
                    "3",
                    "legacy",
                    "20261203110000",
                ],
                &layout
            ),
            [
                "legacy",
                "3",
                "20261203110000",
                "before-20261203T120000Z",
                "20261203T120000Z",
                "20261203130000Z",
                "20261203150000"
            ]
        );
        assert_eq!(layout.tool_of("20261203130000Z"), Tool::Ansistrano);
        assert_eq!(layout.tool_of("20261203150000"), Tool::Timestamped);
        assert!(!zdd_ordered(&["20261203150000".into()]));
        assert!(zdd_ordered(&["20261203T120000Z".into()]));
    }

    #[test]
    fn capistrano_log_gives_commits() {
        let files = Files {
            capistrano_log: Some(
                "Branch main (at 1a2b3c4) deployed as release 20261201100000 by deploy\ndeploy rolled back to release 20261201100000\n".into(),
            ),
            ..Files::default()
        };
        let layout = read(&files, "/srv/app");
        assert_eq!(layout.tool_of("20261201100000"), Tool::Capistrano);
        assert_eq!(
            layout.revisions.get("20261201100000").map(String::as_str),
            Some("1a2b3c4")
        );
    }
}
