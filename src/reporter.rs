//! What the user sees while a run goes on: progress on stderr, or one JSON event per line on
//! stdout with `--json`.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;

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
    Finished {
        task: &'a str,
        status: &'a str,
        duration_ms: u128,
    },
}

pub struct Reporter {
    pub verbosity: Verbosity,
    pub json: bool,
    lock: Mutex<()>,
}

impl Reporter {
    pub fn new(verbosity: Verbosity, json: bool) -> Reporter {
        Reporter {
            verbosity,
            json,
            lock: Mutex::new(()),
        }
    }

    /// A reporter that says nothing (for `check`, `tasks` and tests).
    pub fn silent() -> Reporter {
        Reporter::new(Verbosity::Quiet, false)
    }

    pub fn event(&self, event: Event) {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        if self.json {
            if let Ok(line) = serde_json::to_string(&event) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            return;
        }
        if let Some(line) = self.human(&event) {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }

    fn human(&self, event: &Event) -> Option<String> {
        let v = self.verbosity;
        match *event {
            Event::TaskStarted { host, task } if v >= Verbosity::Commands => {
                Some(format!("[{host}] {task}"))
            }
            Event::TaskFinished {
                host,
                task,
                duration_ms,
            } if v >= Verbosity::Normal => Some(format!(
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
            Event::Swapped { host, release, .. } if v >= Verbosity::Normal => {
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
            Event::RolledBack { host, from, to } if v >= Verbosity::Quiet => Some(match from {
                Some(from) => {
                    format!("[{host}] rolled back: current -> releases/{to} (was {from})")
                }
                None => format!("[{host}] rolled back: current -> releases/{to}"),
            }),
            Event::Message { host, level, text } => match level {
                "warning" => Some(format!("[{host}] warning: {text}")),
                _ if v >= Verbosity::Normal => Some(format!("[{host}] {text}")),
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
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
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
