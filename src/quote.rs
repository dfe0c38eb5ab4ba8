//! The one place where values become shell words.
//!
//! Every command that reaches `sh -c`, locally or over SSH, is built from a template the recipe
//! author wrote plus values that are quoted here. Nothing else in zdd joins strings into a shell
//! command.

use std::fmt;

/// A value could not be made into a shell word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteError {
    pub value: String,
}

impl fmt::Display for QuoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "value `{}` contains a NUL byte, which no shell can pass as an argument",
            self.value.escape_debug()
        )
    }
}

impl std::error::Error for QuoteError {}

/// Quote one value so that `sh` reads it back as exactly one word with the same bytes.
pub fn word(value: &str) -> Result<String, QuoteError> {
    if value.is_empty() {
        return Ok("''".to_string());
    }
    shlex::try_quote(value)
        .map(|quoted| quoted.into_owned())
        .map_err(|_| QuoteError {
            value: value.to_string(),
        })
}

/// Quote every argument and join them with spaces: an argv as one shell command line.
pub fn command<S: AsRef<str>>(argv: &[S]) -> Result<String, QuoteError> {
    let words: Result<Vec<String>, QuoteError> = argv.iter().map(|a| word(a.as_ref())).collect();
    Ok(words?.join(" "))
}

/// `rm -rf` of `DIR/*/REST` for each `rest`: every directory one level under `dir` (whatever
/// its name) followed by `rest` (an absolute path). The `*` is the only unquoted character.
pub fn remove_under_any(dir: &str, rests: &[String]) -> Result<String, QuoteError> {
    let mut line = String::from("rm -rf --");
    for rest in rests {
        line.push_str(&format!(" {}/*{}", word(dir)?, word(rest)?));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn echo_back(value: &str) -> String {
        let script = format!("printf %s {}", word(value).unwrap());
        let out = Command::new("sh").arg("-c").arg(&script).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn hostile_values_come_back_unchanged() {
        for value in [
            "x; rm -rf /",
            "$(touch /tmp/zdd-pwned)",
            "`id`",
            "it's \"quoted\"",
            "line one\nline two",
            "naïve ünïcode ✓",
            "",
            "-n",
            "a\\b",
            "$HOME",
        ] {
            assert_eq!(echo_back(value), value);
        }
    }

    #[test]
    fn nul_bytes_are_refused() {
        assert!(word("a\0b").is_err());
    }

    #[test]
    fn command_quotes_each_argument() {
        assert_eq!(command(&["ls", "a b"]).unwrap(), "ls 'a b'");
    }
}
