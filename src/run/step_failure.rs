//! Why a step failed and where (the script layer words a script's error as a [`Cause`]), and
//! what each host was left as.

use crate::output::failure::Failure;
use crate::registry::Origin;

/// Why a step failed, as the user is told.
#[derive(Debug, Clone)]
pub enum Cause {
    Failure(Failure),
    /// A script error (or `throw`), with a hint when zdd knows one.
    Script(String, Option<String>),
}

impl Cause {
    pub fn is_locked(&self) -> bool {
        matches!(self, Cause::Failure(f) if f.is_locked())
    }
    pub fn hint(&self) -> Option<&str> {
        match self {
            Cause::Failure(f) => f.hint.as_deref(),
            Cause::Script(_, hint) => hint.as_deref(),
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Failure(failure) => failure.fmt(f),
            Cause::Script(text, _) => f.write_str(text),
        }
    }
}

/// A step that failed on a host, and what the host was left as.
#[derive(Debug, Clone)]
pub struct StepFailure {
    pub host: String,
    pub task: String,
    /// Where the failing call is in the recipe or module (falls back to the task's declaration).
    pub location: Origin,
    pub cause: Cause,
    /// The tasks the failing step ran inside (whose fail hooks fire).
    pub ancestry: Vec<String>,
    /// Failures of fail hooks and of the clean-up, reported after the main one.
    pub aftermath: Vec<String>,
    /// What every host looks like now (`current`), the failing host first.
    pub outcomes: Vec<(String, String)>,
}
