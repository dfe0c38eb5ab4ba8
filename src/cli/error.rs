//! Everything that can end a zdd command, its exit code, and how it reads.

use std::fmt::Write;

use rhai::EvalAltResult;

use crate::output::secrets::Secrets;
use crate::output::sources::Sources;
use crate::plan::PlanError;
use crate::run::step_failure::StepFailure;
use crate::script;
use crate::script::diagnostic;
use crate::settings::Problem;

/// Exit codes, as documented in `zdd --help` and the README.
pub mod exit {
    pub const SUCCESS: i32 = 0;
    /// The deploy failed: nothing was switched, or it was switched back.
    pub const FAILED: i32 = 1;
    /// Bad usage or a broken recipe; nothing ran.
    pub const USAGE: i32 = 2;
    /// Another deploy holds the lock.
    pub const LOCKED: i32 = 3;
    /// Deployed with exceptions: hosts left behind on their old release, within `max_fail`.
    pub const EXCEPTIONS: i32 = 4;
}

pub enum Error {
    /// Wrong arguments, or a request the recipe cannot satisfy (no such host).
    Usage {
        message: String,
        hint: Option<String>,
    },
    /// The recipe file could not be read.
    Read { path: String, error: std::io::Error },
    /// The recipe did not compile or its top level failed.
    Script {
        error: Box<EvalAltResult>,
        source: String,
    },
    /// Settings zdd reads that are missing or wrong (before anything ran).
    Settings(Vec<Problem>),
    /// Unknown task or a cycle.
    Plan(PlanError),
    /// A step failed on a host.
    Step(Box<StepFailure>),
    /// A command was refused without running a step (e.g. nothing to list).
    Failed {
        message: String,
        hint: Option<String>,
    },
    /// Someone else holds the deploy lock (outside a step: `zdd unlock`).
    Locked {
        message: String,
        hint: Option<String>,
    },
    /// The deploy reached some hosts and went on without others (`max_fail`): each is named,
    /// with why.
    Exceptions {
        message: String,
        left_behind: Vec<(String, String)>,
        hint: Option<String>,
    },
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage { .. }
            | Error::Read { .. }
            | Error::Script { .. }
            | Error::Settings(_)
            | Error::Plan(_) => exit::USAGE,
            Error::Step(failure) if failure.cause.is_locked() => exit::LOCKED,
            Error::Locked { .. } => exit::LOCKED,
            Error::Exceptions { .. } => exit::EXCEPTIONS,
            Error::Step(_) | Error::Failed { .. } => exit::FAILED,
        }
    }

    /// The whole message, as printed on stderr, with every secret value taken out.
    pub fn render(&self, sources: &Sources, secrets: &Secrets) -> String {
        secrets.redact(&self.render_text(sources)).into_owned()
    }

    /// The message as a GitHub Actions annotation (`::error::...`, one line).
    pub fn annotation(rendered: &str) -> String {
        format!(
            "::error::{}",
            crate::output::reporter::workflow_message(
                rendered.strip_prefix("error: ").unwrap_or(rendered)
            )
        )
    }

    fn render_text(&self, sources: &Sources) -> String {
        let mut out = String::new();
        match self {
            Error::Usage { message, hint }
            | Error::Failed { message, hint }
            | Error::Locked { message, hint } => {
                let _ = writeln!(out, "error: {message}");
                hint_line(&mut out, hint.as_deref());
            }
            Error::Exceptions {
                message,
                left_behind,
                hint,
            } => {
                let _ = writeln!(out, "warning: deployed with exceptions: {message}");
                for (host, reason) in left_behind {
                    let _ = writeln!(out, "left behind: `{host}`: {reason}");
                }
                hint_line(&mut out, hint.as_deref());
            }
            Error::Settings(problems) => {
                for problem in problems {
                    let _ = writeln!(out, "error: {problem}");
                }
                let mut hints: Vec<&str> = Vec::new();
                for problem in problems {
                    if !hints.contains(&problem.hint.as_str()) {
                        hints.push(&problem.hint);
                    }
                }
                for hint in hints {
                    hint_line(&mut out, Some(hint));
                }
            }
            Error::Read { path, error } => {
                let _ = writeln!(out, "error: cannot read recipe `{path}`: {error}");
            }
            Error::Script { error, source } => {
                let classified = script::classify(error, source);
                let _ = writeln!(out, "error: {}", classified.cause);
                if let Some(location) = &classified.location {
                    diagnostic::snippet(&mut out, location, sources);
                }
                hint_line(&mut out, classified.cause.hint());
            }
            Error::Plan(error) => {
                let _ = writeln!(out, "error: {error}");
                if let Some(origin) = error.origin() {
                    diagnostic::snippet(&mut out, origin, sources);
                }
                hint_line(&mut out, error.hint().as_deref());
            }
            Error::Step(failure) => {
                let _ = writeln!(
                    out,
                    "error: task `{}` failed on host `{}`",
                    failure.task, failure.host
                );
                diagnostic::snippet(&mut out, &failure.location, sources);
                let _ = writeln!(out, "Caused by: {}", failure.cause);
                for line in &failure.aftermath {
                    let _ = writeln!(out, "also: {line}");
                }
                for (host, outcome) in &failure.outcomes {
                    let _ = writeln!(out, "now: on `{host}`, {outcome}");
                }
                hint_line(&mut out, failure.cause.hint());
            }
        }
        out
    }
}

fn hint_line(out: &mut String, hint: Option<&str>) {
    if let Some(hint) = hint {
        let _ = writeln!(out, "\nhint: {hint}");
    }
}
