//! Error text users read: script errors explained in zdd's words, and the `--> file:line:col`
//! snippet with the source line and a caret.

use std::fmt::Write;

use rhai::EvalAltResult;

use crate::output::sources::Sources;
use crate::output::suggest;
use crate::registry::Origin;

/// Every function a recipe can call (for "did you mean").
pub const FUNCTIONS: &[&str] = &[
    "set",
    "get",
    "has",
    "add",
    "localhost",
    "host",
    "inventory",
    "task",
    "desc",
    "before",
    "after",
    "fail",
    "once",
    "quote",
    "run",
    "test",
    "cd",
    "prepare",
    "lock",
    "unlock",
    "release",
    "clone",
    "link_shared",
    "writable",
    "swap_symlink",
    "cleanup",
    "rollback",
    "discard_release",
    "info",
    "warn",
    "print",
    "debug",
    "switched_back",
    "artisan",
    "composer",
    "npm",
    "reload_fpm",
    "octane_reload",
    "horizon_terminate",
    "queue_restart",
    "artisan_reload",
    "restart_workers",
    "artisan_cache",
    "artisan_migrate",
    "health_gate",
    "secret",
    "run_tests",
    "audit",
    "check_queued_jobs",
    "check_app_key",
    "check_migrations",
    "check_disk",
];

/// The stdlib modules (for "did you mean" on imports).
fn modules() -> impl Iterator<Item = &'static str> {
    crate::script::EMBEDDED.iter().map(|(name, _)| *name)
}

/// A script error as a message and maybe a hint, without Rhai's position suffix.
pub fn explain(error: &EvalAltResult) -> (String, Option<String>) {
    match error {
        EvalAltResult::ErrorParsing(kind, _) => (format!("syntax error: {kind}"), None),
        EvalAltResult::ErrorFunctionNotFound(signature, _) => {
            let name = signature.split(" (").next().unwrap_or(signature).trim();
            if FUNCTIONS.contains(&name) {
                return (
                    format!("`{name}` cannot take these arguments: `{signature}`"),
                    Some("the README lists each function with its arguments".to_string()),
                );
            }
            let hint = match suggest::closest(name, FUNCTIONS.iter().copied()) {
                Some(s) => Some(format!("did you mean `{s}`?")),
                None => Some("the recipe functions are listed in the README".to_string()),
            };
            (format!("unknown function `{name}`"), hint)
        }
        EvalAltResult::ErrorVariableNotFound(name, _) => (
            format!("unknown variable `{name}`"),
            Some("declare variables with `let` before using them".to_string()),
        ),
        EvalAltResult::ErrorModuleNotFound(name, _) => {
            let hint = match suggest::closest(name, modules()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!(
                    "a module is a `.rhai` file next to the recipe, or one of zdd's: {}",
                    modules().collect::<Vec<_>>().join(", ")
                ),
            };
            (format!("unknown module `{name}`"), Some(hint))
        }
        EvalAltResult::ErrorTooManyOperations(_) => (
            "the recipe ran too many operations (an endless loop?)".to_string(),
            None,
        ),
        EvalAltResult::ErrorRuntime(value, _) => (value.to_string(), None),
        other => {
            let text = without_position(&other.to_string());
            let mut chars = text.chars();
            let text = match chars.next() {
                Some(first) => first.to_lowercase().collect::<String>() + chars.as_str(),
                None => text,
            };
            (text, None)
        }
    }
}

/// `  --> file:line:col`, the line, and a caret under the column.
pub fn snippet(out: &mut String, origin: &Origin, sources: &Sources) {
    if origin.line == 0 {
        return;
    }
    let number = origin.line.to_string();
    let pad = " ".repeat(number.len());
    let _ = writeln!(out, "{pad}--> {origin}");
    if let Some(line) = sources.line(&origin.source, origin.line) {
        let caret: String = line
            .chars()
            .take(origin.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{number} | {line}");
        let _ = writeln!(out, "{pad} | {caret}^");
    }
}

/// Rhai appends ` (line N, position M)`; zdd shows the position as a snippet instead.
fn without_position(text: &str) -> String {
    match text.rfind(" (line ") {
        Some(start) if text.ends_with(')') => text[..start].to_string(),
        _ => text.to_string(),
    }
}
