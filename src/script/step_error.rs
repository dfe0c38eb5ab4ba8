//! A script's error as the runner and the error renderer see it ([`StepError`]): dug down to
//! its innermost cause, in zdd's words, and the recipe line it points at. Rhai's error types
//! end here.

use rhai::{EvalAltResult, Position};

use crate::output::failure::{Failure, FailureKind};
use crate::registry::Origin;
use crate::run::step_caller::StepError;
use crate::run::step_failure::Cause;
use crate::script::diagnostic;

/// Find the innermost error and where it happened (`source`: where the failing code is, when
/// the error does not say).
pub fn classify(error: &EvalAltResult, source: &str) -> StepError {
    let (location, cause) = innermost(error, source);
    StepError { location, cause }
}

fn innermost(error: &EvalAltResult, source: &str) -> (Option<Origin>, Cause) {
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
            let (location, cause) = innermost(inner, inner_source);
            (location.or_else(|| at(*position, source)), cause)
        }
        EvalAltResult::ErrorInModule(module, inner, position) => {
            let (location, cause) = innermost(inner, module);
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
