//! The hosts a deploy went on without, remembered on this machine so that
//! `zdd run RECIPE --hosts <them>` later brings them to *that* release (same name, same
//! commit) instead of resolving `branch` again.
//!
//! One JSON file per recipe under `$XDG_STATE_HOME/zdd/left-behind/` (else
//! `~/.local/state/zdd/left-behind/`), named by a hash of the recipe's absolute path. Written
//! when a deploy ends with exceptions (exit 4); hosts are taken off it when a later run brings
//! them up to date; removed when a deploy reaches every host it names. Losing it loses nothing
//! but the convenience: a normal deploy still brings every host to one new release.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::output::fleet::LeftBehind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The recipe's absolute path (the file name is only its hash).
    pub recipe: String,
    pub task: String,
    pub release: String,
    pub commit: String,
    /// When the deploy that left them behind started (RFC 3339).
    pub started: String,
    pub hosts: Vec<LeftBehind>,
}

impl Record {
    /// Whether every one of `hosts` was left behind by this deploy.
    pub fn covers(&self, hosts: &[String]) -> bool {
        !hosts.is_empty()
            && hosts
                .iter()
                .all(|host| self.hosts.iter().any(|left| &left.host == host))
    }
}

/// The most a record file may hold: thousands of hosts and their reasons. Anything larger (or
/// anything but a regular file: a link to `/dev/zero`, a FIFO) was not written by zdd.
const MOST_BYTES: u64 = 4 << 20;

/// The record of `recipe` (as given on the command line), if there is one for `task`.
pub fn read(recipe: &str, task: &str) -> Option<Record> {
    use std::io::Read;
    let (absolute, file) = location(recipe)?;
    let opened = std::fs::File::open(file).ok()?;
    let metadata = opened.metadata().ok()?;
    if !metadata.is_file() || metadata.len() > MOST_BYTES {
        return None;
    }
    let mut text = String::new();
    opened.take(MOST_BYTES).read_to_string(&mut text).ok()?;
    let record: Record = serde_json::from_str(&text).ok()?;
    (record.recipe == absolute && record.task == task && plain(&record)).then_some(record)
}

/// Remember `record` (replacing the recipe's last one). Best effort: a warning when it cannot.
pub fn write(recipe: &str, mut record: Record) -> Result<(), String> {
    let (absolute, file) = location(recipe).ok_or("no state directory (set HOME)")?;
    record.recipe = absolute;
    let directory = file.parent().ok_or("no state directory")?;
    std::fs::create_dir_all(directory).map_err(|e| format!("{}: {e}", directory.display()))?;
    let text = serde_json::to_string_pretty(&record).map_err(|e| e.to_string())?;
    let temporary = file.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&temporary, text + "\n")
        .and_then(|()| std::fs::rename(&temporary, &file))
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// Forget the hosts of `done` (they are up to date now); the file goes with the last one.
pub fn forget(recipe: &str, task: &str, done: &[String]) -> Result<(), String> {
    let Some(mut record) = read(recipe, task) else {
        return Ok(());
    };
    record.hosts.retain(|left| !done.contains(&left.host));
    if record.hosts.is_empty() {
        let (_, file) = location(recipe).ok_or("no state directory")?;
        return std::fs::remove_file(&file).map_err(|e| format!("{}: {e}", file.display()));
    }
    write(recipe, record)
}

/// A record with names that could not have come from a deploy is ignored (hand-edited): a
/// release name is zdd's (`20261203T101500Z`), a commit a whole one (40 or 64 hex digits).
fn plain(record: &Record) -> bool {
    let release = record.release.as_bytes();
    let release_ok = release.len() == 16
        && release.iter().enumerate().all(|(i, c)| match i {
            8 => *c == b'T',
            15 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    let commit_ok = matches!(record.commit.len(), 40 | 64)
        && record.commit.chars().all(|c| c.is_ascii_hexdigit());
    release_ok && commit_ok
}

/// The recipe's absolute path and its record's file.
fn location(recipe: &str) -> Option<(String, PathBuf)> {
    let absolute = std::fs::canonicalize(recipe)
        .unwrap_or_else(|_| Path::new(recipe).to_path_buf())
        .display()
        .to_string();
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".local/state"))
        })?;
    let file = state
        .join("zdd/left-behind")
        .join(format!("{:016x}.json", fnv1a(absolute.as_bytes())));
    Some((absolute, file))
}

/// FNV-1a, 64 bits: a stable file name for a path (not a security boundary: the record says
/// its recipe's path, checked when read).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(hosts: &[&str]) -> Record {
        Record {
            recipe: String::new(),
            task: "deploy".into(),
            release: "20261203T101010Z".into(),
            commit: "0123456789abcdef0123456789abcdef01234567".into(),
            started: "2026-12-03T10:10:09Z".into(),
            hosts: hosts
                .iter()
                .map(|h| LeftBehind {
                    host: h.to_string(),
                    reason: "unreachable".into(),
                })
                .collect(),
        }
    }

    #[test]
    fn covers_only_hosts_it_names() {
        let r = record(&["web19", "web20"]);
        assert!(r.covers(&["web20".into()]));
        assert!(r.covers(&["web19".into(), "web20".into()]));
        assert!(!r.covers(&["web01".into(), "web20".into()]));
        assert!(!r.covers(&[]));
    }

    #[test]
    fn hand_edited_names_are_ignored() {
        let mut r = record(&["web20"]);
        assert!(plain(&r));
        r.release = "../../etc".into();
        assert!(!plain(&r));
        r.release = "..".into();
        assert!(!plain(&r));
        r.release = "current".into();
        assert!(!plain(&r));
        r.release = "20261203T101010Z".into();
        r.commit = "abc".into();
        assert!(!plain(&r));
        r.commit = String::new();
        assert!(!plain(&r));
        let mut r = record(&["web20"]);
        r.commit = "main; rm -rf /".into();
        assert!(!plain(&r));
    }

    #[test]
    fn only_a_small_regular_file_is_read() {
        let state = tempfile::tempdir().unwrap();
        let recipe = state.path().join("recipe.rhai");
        std::fs::write(&recipe, "").unwrap();
        let recipe = recipe.display().to_string();
        // `location` reads XDG_STATE_HOME: no other test of this crate sets it.
        std::env::set_var("XDG_STATE_HOME", state.path());
        let (_, file) = location(&recipe).unwrap();
        write(&recipe, record(&["web20"])).unwrap();
        assert_eq!(read(&recipe, "deploy").unwrap().hosts[0].host, "web20");
        assert!(read(&recipe, "rollback").is_none());
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
        assert!(read(&recipe, "deploy").is_none());
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, " ".repeat(MOST_BYTES as usize + 1)).unwrap();
        assert!(read(&recipe, "deploy").is_none());
        std::env::remove_var("XDG_STATE_HOME");
    }

    #[test]
    fn the_file_name_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
