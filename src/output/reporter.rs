//! What the user sees while a run goes on: progress on stderr, or one JSON event per line on
//! stdout with `--json`. Everything goes through [`Secrets::redact`] first. In GitHub Actions
//! the lines of each task are folded into a `::group::` (collected per host and printed when the
//! task ends, so hosts running in parallel never interleave inside a group).

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::output::fleet::{HostOutcome, LeftBehind};
use crate::output::secrets::Secrets;
use crate::output::watch::WatchSummary;

/// How much to say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    /// `-v`: commands.
    Commands,
    /// `-vv`: commands and their output.
    Output,
}

/// One thing that happened, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    TaskStarted {
        host: &'a str,
        task: &'a str,
    },
    TaskFinished {
        host: &'a str,
        task: &'a str,
        duration_ms: u128,
        /// How many times the step waited for the host (0 on the local transport).
        round_trips: u64,
    },
    TaskFailed {
        host: &'a str,
        task: &'a str,
        duration_ms: u128,
        error: &'a str,
    },
    Command {
        host: &'a str,
        command: &'a str,
    },
    Output {
        host: &'a str,
        stream: &'a str,
        line: &'a str,
    },
    ReleaseCreated {
        host: &'a str,
        release: &'a str,
    },
    Swapped {
        host: &'a str,
        release: &'a str,
        previous: Option<&'a str>,
    },
    SwitchedBack {
        host: &'a str,
        from: &'a str,
        to: &'a str,
    },
    ReleaseRemoved {
        host: &'a str,
        release: &'a str,
        reason: &'a str,
    },
    RolledBack {
        host: &'a str,
        from: Option<&'a str>,
        to: &'a str,
    },
    Message {
        host: &'a str,
        level: &'a str,
        text: &'a str,
    },
    /// A notification (`slack_webhook`, `webhook_url`) was delivered.
    NotificationSent {
        setting: &'a str,
        status: u16,
    },
    /// A notification could not be delivered; the deploy goes on regardless.
    NotificationFailed {
        setting: &'a str,
        error: &'a str,
    },
    Finished {
        task: &'a str,
        status: &'a str,
        duration_ms: u128,
        #[serde(skip_serializing_if = "Option::is_none")]
        release: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        commit: Option<&'a str>,
        /// How many times zdd waited for a host after its connection was up, summed over
        /// the hosts (requests sent without waiting are not counted).
        round_trips: u64,
        /// What the watcher saw, when the run was watched.
        #[serde(skip_serializing_if = "Option::is_none")]
        watch: Option<&'a WatchSummary>,
        /// The hosts left behind on their old release (exit 4), each with why.
        #[serde(skip_serializing_if = "<[LeftBehind]>::is_empty")]
        left_behind: &'a [LeftBehind],
        /// How the run ended on each host (runs of several hosts).
        #[serde(skip_serializing_if = "<[HostOutcome]>::is_empty")]
        hosts: &'a [HostOutcome],
        /// How many requests zdd wrote to the hosts, summed over the hosts.
        requests: u64,
        /// How many bytes zdd wrote to the hosts (requests and the build's archive), summed.
        bytes_sent: u64,
        /// How long the preparation and the cutover took, when the run had a cutover.
        #[serde(skip_serializing_if = "Option::is_none")]
        preparation_ms: Option<u128>,
        #[serde(skip_serializing_if = "Option::is_none")]
        cutover_ms: Option<u128>,
        /// zdd's own CPU time (user + system, its child processes not counted) and peak
        /// memory, for the run.
        cpu_ms: u64,
        peak_rss_kb: u64,
    },
    /// A wave of the cutover starts (`rollout_batch`).
    Wave {
        number: usize,
        of: usize,
        hosts: &'a [String],
    },
    /// A host finished a phase of the run (`prepared`, `switched`, `left_behind`): what a run of
    /// many hosts shows instead of every task, unless `-v`.
    HostPhase {
        host: &'a str,
        phase: &'a str,
        duration_ms: u128,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'a str>,
    },
}

pub struct Reporter {
    pub verbosity: Verbosity,
    pub json: bool,
    /// `::group::` folding per task (GitHub Actions).
    github: bool,
    secrets: Arc<Secrets>,
    /// The lines of the task each host is running, while folding into groups.
    groups: Mutex<HashMap<String, Group>>,
    /// A run of many hosts: one line per host per phase instead of per task (unless `-v`).
    per_phase: AtomicBool,
}

/// A task whose lines are being collected for its `::group::`.
struct Group {
    task: String,
    lines: Vec<String>,
}

impl Reporter {
    pub fn new(verbosity: Verbosity, json: bool) -> Reporter {
        Reporter {
            verbosity,
            json,
            github: false,
            secrets: Arc::default(),
            groups: Mutex::new(HashMap::new()),
            per_phase: AtomicBool::new(false),
        }
    }

    /// Redact with `secrets` (shared with the error renderer).
    pub fn with_secrets(mut self, secrets: Arc<Secrets>) -> Reporter {
        self.secrets = secrets;
        self
    }

    /// Fold each task's lines into a GitHub Actions `::group::`.
    pub fn with_github_groups(mut self, on: bool) -> Reporter {
        self.github = on;
        self
    }

    /// Say one line per host per phase (`HostPhase`) instead of one per task, and a host's
    /// informational messages only with `-v`: the runner turns it on for runs of many hosts.
    pub fn set_per_phase(&self, on: bool) {
        self.per_phase.store(on, Ordering::Relaxed);
    }

    /// The values this reporter never prints.
    pub fn secrets(&self) -> &Arc<Secrets> {
        &self.secrets
    }

    /// A reporter that says nothing (for `check`, `tasks` and tests).
    pub fn silent() -> Reporter {
        Reporter::new(Verbosity::Quiet, false)
    }

    pub fn event(&self, event: Event) {
        let mut groups = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        if self.json {
            if let Ok(line) = serde_json::to_string(&event) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}", self.secrets.redact_serialized(&line));
                let _ = out.flush();
            }
            return;
        }
        let line = self
            .human(&event)
            .map(|line| self.secrets.redact(&line).into_owned());
        if !self.github {
            if let Some(line) = line {
                let _ = writeln!(std::io::stderr().lock(), "{line}");
            }
            return;
        }
        let mut lines = Vec::new();
        match event {
            Event::TaskStarted { host, task } => {
                // The group's title says what `-v` would print here.
                groups.insert(
                    host.to_string(),
                    Group {
                        task: task.to_string(),
                        lines: Vec::new(),
                    },
                );
            }
            Event::TaskFinished { host, .. } | Event::TaskFailed { host, .. } => {
                if let Some(group) = groups.remove(host) {
                    fold(&mut lines, host, group, &self.secrets);
                }
                lines.extend(line);
            }
            Event::Finished { .. } => {
                let mut open: Vec<(String, Group)> = groups.drain().collect();
                open.sort_by(|a, b| a.0.cmp(&b.0));
                for (host, group) in open {
                    fold(&mut lines, &host, group, &self.secrets);
                }
                lines.extend(line);
            }
            _ => {
                let host = host_of(&event);
                match (line, host.and_then(|h| groups.get_mut(h))) {
                    (Some(line), Some(group)) => group.lines.push(line),
                    (line, _) => lines.extend(line),
                }
            }
        }
        if !lines.is_empty() {
            let mut err = std::io::stderr().lock();
            for line in lines {
                let _ = writeln!(err, "{line}");
            }
        }
    }

    fn human(&self, event: &Event) -> Option<String> {
        let v = self.verbosity;
        // Per task (and each host's informational lines) from `-v` on in a run of many hosts.
        let tasks = if self.per_phase.load(Ordering::Relaxed) {
            Verbosity::Commands
        } else {
            Verbosity::Normal
        };
        match *event {
            Event::TaskStarted { host, task } if v >= Verbosity::Commands => {
                Some(format!("[{host}] {task}"))
            }
            Event::TaskFinished {
                host,
                task,
                duration_ms,
                ..
            } if v >= tasks => Some(format!(
                "[{host}] {task} ... ok ({})",
                format_duration(Duration::from_millis(duration_ms as u64))
            )),
            Event::TaskFailed { host, task, .. } if v >= Verbosity::Normal => {
                Some(format!("[{host}] {task} ... failed"))
            }
            Event::Command { host, command } if v >= Verbosity::Commands => {
                Some(format!("[{host}] $ {command}"))
            }
            Event::Output { host, line, .. } if v >= Verbosity::Output => {
                Some(format!("[{host}]   {line}"))
            }
            Event::Swapped { host, release, .. } if v >= tasks => {
                Some(format!("[{host}] current -> releases/{release}"))
            }
            Event::SwitchedBack { host, to, from } if v >= Verbosity::Quiet => Some(format!(
                "[{host}] switched back: current -> releases/{to} (was {from})"
            )),
            Event::ReleaseRemoved {
                host,
                release,
                reason,
            } if v >= Verbosity::Commands => {
                Some(format!("[{host}] removed releases/{release} ({reason})"))
            }
            Event::RolledBack { host, from, to } if v >= Verbosity::Quiet => {
                // `before-NAME`: what `current` was before zdd's first deploy, no directory
                // of `releases/` (`primitives::foreign_layout::BEFORE`).
                let to = if to.starts_with("before-") {
                    format!("{to} (what `current` was before zdd)")
                } else {
                    format!("releases/{to}")
                };
                Some(match from {
                    Some(from) => format!("[{host}] rolled back: current -> {to} (was {from})"),
                    None => format!("[{host}] rolled back: current -> {to}"),
                })
            }
            Event::Wave { number, of, hosts } if v >= Verbosity::Normal => {
                let names = match hosts {
                    [one] => one.clone(),
                    [first, .., last] => format!("{first} .. {last}"),
                    [] => String::new(),
                };
                let count = if hosts.len() == 1 { "host" } else { "hosts" };
                Some(format!(
                    "wave {number}/{of}: {} {count} ({names})",
                    hosts.len()
                ))
            }
            Event::HostPhase {
                host,
                phase,
                duration_ms,
                reason,
            } if v >= Verbosity::Normal => match reason {
                Some(reason) => Some(format!("[{host}] {}: {reason}", phase.replace('_', " "))),
                // Instead of the lines per task, which a run of few hosts shows.
                None if tasks > Verbosity::Normal => Some(format!(
                    "[{host}] {phase} ({})",
                    format_duration(Duration::from_millis(duration_ms as u64))
                )),
                None => None,
            },
            Event::NotificationSent { setting, status } if v >= Verbosity::Commands => {
                Some(format!("notified `{setting}` (HTTP {status})"))
            }
            Event::NotificationFailed { setting, error } => Some(format!(
                "warning: notification to `{setting}` failed: {error}"
            )),
            Event::Message { host, level, text } => match level {
                "warning" => Some(format!("[{host}] warning: {text}")),
                _ if v >= tasks => Some(format!("[{host}] {text}")),
                _ => None,
            },
            _ => None,
        }
    }

    /// Free text on stderr (summaries), unless quiet or JSON.
    pub fn say(&self, text: &str) {
        if self.json || self.verbosity == Verbosity::Quiet {
            return;
        }
        let _guard = self.groups.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(std::io::stderr().lock(), "{}", self.secrets.redact(text));
    }
}

/// The host an event is about, if any.
fn host_of<'a>(event: &Event<'a>) -> Option<&'a str> {
    match *event {
        Event::TaskStarted { host, .. }
        | Event::TaskFinished { host, .. }
        | Event::TaskFailed { host, .. }
        | Event::Command { host, .. }
        | Event::Output { host, .. }
        | Event::ReleaseCreated { host, .. }
        | Event::Swapped { host, .. }
        | Event::SwitchedBack { host, .. }
        | Event::ReleaseRemoved { host, .. }
        | Event::RolledBack { host, .. }
        | Event::Message { host, .. }
        | Event::HostPhase { host, .. } => Some(host),
        Event::Wave { .. }
        | Event::NotificationSent { .. }
        | Event::NotificationFailed { .. }
        | Event::Finished { .. } => None,
    }
}

/// A task's collected lines as a GitHub Actions group; nothing when it printed nothing.
fn fold(out: &mut Vec<String>, host: &str, group: Group, secrets: &Secrets) {
    if group.lines.is_empty() {
        return;
    }
    out.push(format!(
        "::group::{}",
        secrets.redact(&format!("[{host}] {}", group.task))
    ));
    out.extend(group.lines);
    out.push("::endgroup::".to_string());
}

/// `text` as the message of a GitHub Actions workflow command (`::error::text`): `%`, CR and LF
/// escaped so that a message of several lines stays one annotation.
pub fn workflow_message(text: &str) -> String {
    text.trim_end()
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// `12 ms`, `1.25 s`.
pub fn format_duration(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", duration.as_secs_f64())
    }
}
