//! What the deploy lock `{{deploy_path}}/.zdd/lock` says, decided in one place: its record
//! ([`LockInfo`], one JSON object) and whether it is free, held by a run that may still be
//! going, stale (its process of this machine is gone), or unreadable ([`state`]).
//!
//! No transport: the caller reads the file (`primitives::lock` to take and release the lock,
//! `doctor` to report on it) and passes its text. [`alive`] (`process::alive`) asks this
//! machine's kernel whether a process runs; [`decide`] takes that question as an argument, for
//! tests.

use serde::{Deserialize, Serialize};

/// The lock file, relative to `deploy_path`.
pub const LOCK: &str = ".zdd/lock";

/// Who holds the lock: the record written into the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LockInfo {
    pub user: String,
    pub machine: String,
    pub pid: u32,
    pub time: String,
    #[serde(rename = "ref", default)]
    pub reference: String,
}

impl LockInfo {
    /// The holder, for messages: `alice on web1 (pid 42, since 2026-…, deploying `v2`)`.
    pub fn describe(&self) -> String {
        format!(
            "{} on {} (pid {}, since {}, deploying `{}`)",
            self.user, self.machine, self.pid, self.time, self.reference
        )
    }

    /// The record in a lock file's text; `None` when it is not one.
    pub fn parse(text: &str) -> Option<LockInfo> {
        serde_json::from_str(text).ok()
    }
}

/// What the lock file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockState {
    /// There is no lock file.
    Free,
    /// Held by a run that may still be going. `running_here`: its process is on this machine
    /// and runs; otherwise it is on another machine, whose processes cannot be seen from here.
    Held {
        holder: LockInfo,
        running_here: bool,
    },
    /// Held by a process of this machine that is no longer running: nothing will release it.
    Stale(LockInfo),
    /// The lock file exists but does not say who holds it.
    Unreadable,
}

/// The state of the lock, from the lock file's text (`None`: no lock file) as read on the
/// machine named `this_machine`.
pub fn state(text: Option<&str>, this_machine: &str) -> LockState {
    decide(text, this_machine, alive)
}

/// [`state`], with `alive` saying whether a process of this machine runs.
pub fn decide(text: Option<&str>, this_machine: &str, alive: impl Fn(u32) -> bool) -> LockState {
    let Some(text) = text else {
        return LockState::Free;
    };
    let Some(holder) = LockInfo::parse(text) else {
        return LockState::Unreadable;
    };
    if holder.machine != this_machine {
        return LockState::Held {
            holder,
            running_here: false,
        };
    }
    if alive(holder.pid) {
        LockState::Held {
            holder,
            running_here: true,
        }
    } else {
        LockState::Stale(holder)
    }
}

pub use crate::system::process::alive;

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(machine: &str, pid: u32) -> LockInfo {
        LockInfo {
            user: "alice".into(),
            machine: machine.into(),
            pid,
            time: "2026-01-01T00:00:00Z".into(),
            reference: "v2".into(),
        }
    }

    #[test]
    fn the_record_reads_back_and_describes_its_holder() {
        let info = holder("web1", 42);
        let text = serde_json::to_string(&info).unwrap();
        assert_eq!(
            text,
            r#"{"user":"alice","machine":"web1","pid":42,"time":"2026-01-01T00:00:00Z","ref":"v2"}"#
        );
        assert_eq!(LockInfo::parse(&text), Some(info.clone()));
        assert_eq!(
            info.describe(),
            "alice on web1 (pid 42, since 2026-01-01T00:00:00Z, deploying `v2`)"
        );
        // Written before `ref` was recorded.
        let old = LockInfo::parse(r#"{"user":"a","machine":"m","pid":1,"time":"t"}"#).unwrap();
        assert_eq!(old.reference, "");
    }

    #[test]
    fn free_held_stale_or_unreadable() {
        let running = |pid: u32| pid == 42;
        let text = |machine: &str, pid: u32| serde_json::to_string(&holder(machine, pid)).unwrap();
        assert_eq!(decide(None, "web1", running), LockState::Free);
        assert_eq!(
            decide(Some(&text("web1", 42)), "web1", running),
            LockState::Held {
                holder: holder("web1", 42),
                running_here: true
            }
        );
        assert_eq!(
            decide(Some(&text("web1", 7)), "web1", running),
            LockState::Stale(holder("web1", 7))
        );
        // Another machine's process cannot be looked at: held, whatever its pid.
        assert_eq!(
            decide(Some(&text("web2", 7)), "web1", running),
            LockState::Held {
                holder: holder("web2", 7),
                running_here: false
            }
        );
        for damaged in ["", "locked", "{\"user\":\"a\"}", "\u{fffd}"] {
            assert_eq!(
                decide(Some(damaged), "web1", running),
                LockState::Unreadable,
                "{damaged:?}"
            );
        }
    }

    #[test]
    fn this_process_is_alive() {
        assert!(alive(std::process::id()));
        assert_eq!(
            state(
                Some(&serde_json::to_string(&holder("here", std::process::id())).unwrap()),
                "here"
            ),
            LockState::Held {
                holder: holder("here", std::process::id()),
                running_here: true
            }
        );
    }
}
