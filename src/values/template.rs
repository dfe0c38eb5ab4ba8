//! `{{key}}` expansion. In a command, every expanded value is quoted as shell words (through
//! [`crate::values::quote`]), so a value is data, never code.

use std::fmt;

use crate::values::quote::{self, QuoteError};

/// How expanded values are inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// As they are (paths, messages).
    Plain,
    /// Quoted as shell words (commands given to `sh -c`).
    Shell,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    UnknownKey {
        key: String,
        suggestion: Option<String>,
    },
    Unclosed {
        template: String,
    },
    Value {
        key: String,
        reason: String,
    },
    Quote(QuoteError),
    TooDeep {
        key: String,
    },
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TemplateError::UnknownKey { key, suggestion } => {
                write!(f, "unknown key `{{{{{key}}}}}`")?;
                if let Some(s) = suggestion {
                    write!(f, " (did you mean `{s}`?)")?;
                }
                Ok(())
            }
            TemplateError::Unclosed { template } => {
                write!(f, "`{{{{` without a closing `}}}}` in `{template}`")
            }
            TemplateError::Value { key, reason } => write!(f, "`{{{{{key}}}}}`: {reason}"),
            TemplateError::Quote(e) => e.fmt(f),
            TemplateError::TooDeep { key } => {
                write!(f, "`{{{{{key}}}}}` expands into itself")
            }
        }
    }
}

impl std::error::Error for TemplateError {}

/// A key's value as words, or `None` when no such key exists.
pub type Lookup<'a> = dyn Fn(&str) -> Result<Option<Vec<String>>, TemplateError> + 'a;

const MAX_DEPTH: usize = 16;

/// How many `expand` calls may be running inside one another on one thread. A lookup may call
/// `expand` again (a computed key such as `current_path` expands `deploy_path`), so a value that
/// refers to itself through a computed key recurses across calls that `MAX_DEPTH` cannot see.
const MAX_NESTED_CALLS: usize = 16;

thread_local! {
    static NESTED_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// One running `expand` call on this thread, counted while it lives.
struct NestedCall;

impl NestedCall {
    fn enter() -> Option<NestedCall> {
        NESTED_CALLS.with(|calls| {
            let depth = calls.get();
            if depth >= MAX_NESTED_CALLS {
                return None;
            }
            calls.set(depth + 1);
            Some(NestedCall)
        })
    }
}

impl Drop for NestedCall {
    fn drop(&mut self) {
        NESTED_CALLS.with(|calls| calls.set(calls.get().saturating_sub(1)));
    }
}

/// Expand every `{{key}}` in `template`.
pub fn expand(template: &str, mode: Mode, lookup: &Lookup) -> Result<String, TemplateError> {
    let Some(_call) = NestedCall::enter() else {
        return Err(TemplateError::TooDeep {
            key: first_key(template).unwrap_or_else(|| template.to_string()),
        });
    };
    expand_at(template, mode, lookup, 0)
}

/// The first `{{key}}` named in `template`.
fn first_key(template: &str) -> Option<String> {
    let after = &template[template.find("{{")? + 2..];
    Some(after[..after.find("}}")?].trim().to_string())
}

/// The keys `template` names, in order (an unclosed `{{` ends the list).
pub fn keys(template: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            break;
        };
        keys.push(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    keys
}

fn expand_at(
    template: &str,
    mode: Mode,
    lookup: &Lookup,
    depth: usize,
) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(TemplateError::Unclosed {
                template: template.to_string(),
            });
        };
        let key = after[..end].trim();
        let words = lookup(key)?.ok_or_else(|| TemplateError::UnknownKey {
            key: key.to_string(),
            suggestion: None,
        })?;
        if depth >= MAX_DEPTH {
            return Err(TemplateError::TooDeep {
                key: key.to_string(),
            });
        }
        // Values may themselves name keys (`set("app_path", "{{release_path}}/app")`).
        let mut expanded = Vec::with_capacity(words.len());
        for word in &words {
            expanded.push(expand_at(word, Mode::Plain, lookup, depth + 1)?);
        }
        match mode {
            Mode::Plain => out.push_str(&expanded.join(" ")),
            Mode::Shell => {
                let quoted: Result<Vec<String>, QuoteError> =
                    expanded.iter().map(|w| quote::word(w)).collect();
                out.push_str(&quoted.map_err(TemplateError::Quote)?.join(" "));
            }
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(key: &str) -> Result<Option<Vec<String>>, TemplateError> {
        Ok(match key {
            "branch" => Some(vec!["x; rm -rf /".into()]),
            "deploy_path" => Some(vec!["/srv/app".into()]),
            "release_path" => Some(vec!["{{deploy_path}}/releases/1".into()]),
            "dirs" => Some(vec!["a b".into(), "c".into()]),
            "self" => Some(vec!["{{self}}".into()]),
            _ => None,
        })
    }

    #[test]
    fn shell_mode_quotes_each_word() {
        assert_eq!(
            expand("git checkout {{branch}}", Mode::Shell, &lookup).unwrap(),
            "git checkout 'x; rm -rf /'"
        );
        assert_eq!(
            expand("ls {{ dirs }}", Mode::Shell, &lookup).unwrap(),
            "ls 'a b' c"
        );
    }

    #[test]
    fn values_expand_recursively() {
        assert_eq!(
            expand("{{release_path}}", Mode::Plain, &lookup).unwrap(),
            "/srv/app/releases/1"
        );
    }

    #[test]
    fn recursion_through_separate_calls_is_an_error() {
        // A lookup that calls `expand` again, as a computed key does.
        fn again(key: &str) -> Result<Option<Vec<String>>, TemplateError> {
            let inner = expand("{{current_path}}", Mode::Plain, &again)?;
            Ok(Some(vec![format!("{key}:{inner}")]))
        }
        assert!(matches!(
            expand("{{current_path}}", Mode::Plain, &again),
            Err(TemplateError::TooDeep { .. })
        ));
        // The count is back to zero afterwards.
        assert_eq!(
            expand("{{release_path}}", Mode::Plain, &lookup).unwrap(),
            "/srv/app/releases/1"
        );
        assert_eq!(keys("a {{ b }} {{c}} {{d"), ["b", "c"]);
    }

    #[test]
    fn errors_name_the_key() {
        assert_eq!(
            expand("{{nope}}", Mode::Plain, &lookup)
                .unwrap_err()
                .to_string(),
            "unknown key `{{nope}}`"
        );
        assert!(matches!(
            expand("{{self}}", Mode::Plain, &lookup),
            Err(TemplateError::TooDeep { .. })
        ));
        assert!(matches!(
            expand("{{open", Mode::Plain, &lookup),
            Err(TemplateError::Unclosed { .. })
        ));
    }
}
