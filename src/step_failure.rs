//! Why a step failed and where: the script error dug down to its innermost cause and the
//! recipe line it points at, and what each host was left as.

use rhai::{EvalAltResult, Position};

use crate::diagnostic;
use crate::failure::{Failure, FailureKind};
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

/// Find the innermost error and where it happened.
pub fn classify(error: &EvalAltResult, source: &str) -> (Option<Origin>, Cause) {
    let at = |position: Position, source: &str| {
        position.line().map(|line| Origin {
            source: source.to_string(),
            line,
            column: position.position().unwrap_or(1),
        })
    };
    match error {
        EvalAltResult::ErrorInFunctionCall(_, fn_source, inner, position) => {
            let inner_source = if fn_source.is_empty() {
                source
            } else {
                fn_source.as_str()
            };
            let (location, cause) = classify(inner, inner_source);
            (location.or_else(|| at(*position, source)), cause)
        }
        EvalAltResult::ErrorInModule(module, inner, position) => {
            let (location, cause) = classify(inner, module);
            (location.or_else(|| at(*position, source)), cause)
        }
        EvalAltResult::ErrorRuntime(value, position) => {
            let cause = if let Some(failure) = value.clone().try_cast::<Failure>() {
                Cause::Failure(failure)
            } else if value.is_map() {
                let map = value.clone().cast::<rhai::Map>();
                let text = map
                    .get("message")
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| value.to_string());
                Cause::Script(text, None)
            } else {
                Cause::Script(value.to_string(), None)
            };
            (at(*position, source), cause)
        }
        // The engine stops a recipe for Ctrl-C (`"interrupted"`) or for what it costs.
        EvalAltResult::ErrorTerminated(token, position) if token.to_string() != "interrupted" => (
            at(*position, source),
            Cause::Script(
                token.to_string(),
                Some(
                    "a recipe declares settings, hosts and tasks: it never needs this much"
                        .to_string(),
                ),
            ),
        ),
        EvalAltResult::ErrorTerminated(_, position) => (
            at(*position, source),
            Cause::Failure(Failure {
                kind: FailureKind::Interrupted,
                hint: None,
            }),
        ),
        other => {
            let (message, hint) = diagnostic::explain(other);
            (at(other.position(), source), Cause::Script(message, hint))
        }
    }
}
