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

/// A shell command line, built left to right, one piece after another with a space between.
/// A value goes in through [`Line::arg`] (or [`Line::command`], [`Line::assign`]) and is quoted
/// here; shell text goes in through [`Line::shell`] and [`Line::text`] as it is, and is only
/// ever zdd's own (`artisan --version 2>&1`), a line built here, or a recipe's template expanded
/// with its values quoted (`Mode::Shell`). Primitives build their command lines with it and
/// with [`join`]; nowhere else are strings joined into a command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Line(String);

impl Line {
    /// A command from its argv: each word quoted.
    pub fn command<S: AsRef<str>>(argv: &[S]) -> Result<Line, QuoteError> {
        Ok(Line(command(argv)?))
    }

    /// Shell text, as it is (zdd's own, a line built here, or an expanded template).
    pub fn shell(text: impl Into<String>) -> Line {
        Line(text.into())
    }

    /// `value`, quoted: one more word.
    pub fn arg(self, value: &str) -> Result<Line, QuoteError> {
        Ok(self.text(&word(value)?))
    }

    /// More shell text, as it is (see [`Line::shell`]).
    pub fn text(mut self, text: &str) -> Line {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(text);
        self
    }

    /// `NAME=value`, the value quoted: the environment of the command that follows. `name` is
    /// zdd's own, a shell name (`ZDD_SWAP_TARGET`).
    pub fn assign(self, name: &str, value: &str) -> Result<Line, QuoteError> {
        debug_assert!(
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "`{name}` is not a shell name"
        );
        Ok(self.text(&format!("{name}={}", word(value)?)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Line {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Line {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Line> for String {
    fn from(line: Line) -> String {
        line.0
    }
}

/// `rm -rf` of `DIR/*/REST` for each `rest`: every directory one level under `dir` (whatever
/// its name) followed by `rest` (an absolute path). The `*` is the only unquoted character.
/// `rm` starts only when something matched (most deploys have nothing there: a process saved).
pub fn remove_under_any(dir: &str, rests: &[String]) -> Result<String, QuoteError> {
    let mut line = String::from("set --; for zdd_e in");
    for rest in rests {
        line.push_str(&format!(" {}/*{}", word(dir)?, word(rest)?));
    }
    line.push_str(
        "; do if [ -e \"$zdd_e\" ] || [ -L \"$zdd_e\" ]; then set -- \"$@\" \"$zdd_e\"; fi; done; \
         [ \"$#\" = 0 ] || rm -rf -- \"$@\"",
    );
    Ok(line)
}

/// `rm -f` of every file in `dir` named `*SUFFIX` for one of `suffixes` whose name is not one
/// of `keep` (matched literally); nothing else there is touched; a file that cannot be removed
/// is left, and the command still succeeds.
pub fn remove_all_but(dir: &str, suffixes: &[&str], keep: &[String]) -> Result<String, QuoteError> {
    let mut patterns = vec!["''".to_string()];
    for name in keep {
        patterns.push(word(name)?);
    }
    let mut globs = Vec::new();
    for suffix in suffixes {
        globs.push(format!("{}/*{}", word(dir)?, word(suffix)?));
    }
    Ok(format!(
        "for zdd_e in {}; do case \"${{zdd_e##*/}}\" in {}) ;; *) [ ! -f \"$zdd_e\" ] || [ -L \"$zdd_e\" ] || rm -f -- \"$zdd_e\" 2>/dev/null;; esac; done; :",
        globs.join(" "),
        patterns.join("|")
    ))
}

/// `script` as the one command an SSH server hands to the login shell: `sh -c '...'` that runs
/// `script` in `sh`, whatever the login shell is (sh, bash, zsh, fish, csh). Inside the single
/// quotes are only characters every one of those shells leaves as they are: every other byte
/// of `script` (quotes, `$`, `\`, `!`, newlines, anything not ASCII) is written as a `printf %b`
/// octal escape (`\0ooo`), and `sh` gets the script back with `eval "$(printf %b "...")"`.
/// (A login shell's own quoting differs: fish reads `\\` and `\'` inside single quotes, csh a
/// newline or `!`.) Trailing newlines of `script` are dropped, as `$(...)` drops them.
pub fn sh_command_line(script: &str) -> Result<String, QuoteError> {
    if script.contains('\0') {
        return Err(QuoteError {
            value: script.to_string(),
        });
    }
    let mut encoded = String::with_capacity(script.len() + script.len() / 4 + 32);
    encoded.push_str("sh -c 'eval \"$(printf %b \"");
    for byte in script.bytes() {
        if byte.is_ascii_alphanumeric() || b" _-.,:/=+@%^~;&|<>(){}[]*?#".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("\\0{byte:03o}"));
        }
    }
    encoded.push_str("\")\"'");
    Ok(encoded)
}

/// How [`join`] puts command lines together, as `sh` reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joiner {
    /// `a; b`: one after the other, whatever each one's status.
    Then,
    /// `a && b`: the next only when the one before succeeded.
    And,
    /// `a || b`: the next only when the one before failed.
    Or,
    /// `a | b`: each one's output is the next one's input.
    Pipe,
}

/// Command lines (each built with [`command`], or by this function) joined into one line:
/// `a; b`, `a && b`, `a || b` or `a | b`. Nothing is added around the parts, so `sh` reads
/// the result by its own precedence (`|` binds tighter than `&&` and `||`, which bind tighter
/// than `;`): join the tighter parts first, e.g. `join(&[join(&[a, b], Pipe), c], Then)`.
pub fn join<S: AsRef<str>>(commands: &[S], joiner: Joiner) -> String {
    let separator = match joiner {
        Joiner::Then => "; ",
        Joiner::And => " && ",
        Joiner::Or => " || ",
        Joiner::Pipe => " | ",
    };
    commands
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(separator)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remove_all_but_removes_only_the_named_kinds_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("it's artifacts");
        std::fs::create_dir(&d).unwrap();
        for name in [
            "a.tar.gz",
            "a.manifest",
            "b.tar.gz",
            "b.manifest",
            "notes.txt",
        ] {
            std::fs::write(d.join(name), "x").unwrap();
        }
        let script = remove_all_but(
            &d.display().to_string(),
            &[".tar.gz", ".manifest"],
            &["a.tar.gz".to_string(), "a.manifest".to_string()],
        )
        .unwrap();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap();
        assert!(status.success());
        let mut left: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a.manifest", "a.tar.gz", "notes.txt"]);
        // An empty directory, and one that is not there: nothing to do, still a success.
        let empty = dir.path().join("none");
        let script = remove_all_but(&empty.display().to_string(), &[".tar.gz"], &[]).unwrap();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .status()
            .unwrap();
        assert!(status.success());
    }
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

    /// What sshd does with the command: `LOGIN_SHELL -c COMMAND`. Every login shell found on
    /// this machine (.ci/run installs bash, dash, zsh, fish and tcsh) must hand `sh` the same
    /// script; the script prints its hostile values back.
    #[test]
    fn sh_command_lines_reach_sh_unchanged_through_every_login_shell() {
        let values = [
            "x; rm -rf /",
            "$(touch /tmp/zdd-pwned) `id` $HOME ${HOME}",
            "it's \"quoted\" \\' \\\\ \\0101 %s %b %%",
            "line one\nline two\n\ttab",
            "naïve ünïcode ✓ !! !$ !-1 ^foo^bar",
            "-n",
            "'",
            "01234567",
        ];
        let mut script = String::from("set -e; printf '%s\\0'");
        for value in values {
            script.push(' ');
            script.push_str(&word(value).unwrap());
        }
        script.push('\n');
        let line = sh_command_line(&script).unwrap();
        assert!(
            line.starts_with("sh -c '") && line.ends_with('\''),
            "{line}"
        );
        let inner = &line["sh -c '".len()..line.len() - 1];
        assert!(!inner.contains(['\'', '!', '\n', '`']), "{inner}");
        assert!(!inner.contains("\\\\") && !inner.contains("\\'"), "{inner}");
        let mut tried = Vec::new();
        for shell in ["sh", "bash", "dash", "zsh", "fish", "tcsh", "csh"] {
            let Ok(path) = which::which(shell) else {
                continue;
            };
            let out = Command::new(&path).arg("-c").arg(&line).output().unwrap();
            assert!(
                out.status.success(),
                "{shell}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let printed: Vec<&str> = std::str::from_utf8(&out.stdout)
                .unwrap()
                .split_terminator('\0')
                .collect();
            assert_eq!(printed, values, "through {shell}");
            tried.push(shell);
        }
        assert!(
            tried.contains(&"bash") && tried.contains(&"dash"),
            "{tried:?}"
        );
        assert!(sh_command_line("a\0b").is_err());
    }

    #[test]
    fn remove_under_any_removes_what_matches_and_only_that() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache dir");
        let rest = format!("{}/releases/it's old", dir.path().display());
        let keep = format!("{}/releases/kept", dir.path().display());
        for system in ["a", "b c"] {
            for path in [&rest, &keep] {
                let full = format!("{}/{system}{path}", cache.display());
                std::fs::create_dir_all(&full).unwrap();
                std::fs::write(format!("{full}/f.php.bin"), "x").unwrap();
            }
        }
        let script =
            remove_under_any(&cache.display().to_string(), std::slice::from_ref(&rest)).unwrap();
        let ran = Command::new("sh").arg("-c").arg(&script).status().unwrap();
        assert!(ran.success());
        for system in ["a", "b c"] {
            assert!(!std::path::Path::new(&format!("{}/{system}{rest}", cache.display())).exists());
            assert!(std::path::Path::new(&format!("{}/{system}{keep}", cache.display())).exists());
        }
        // Nothing there: no error, nothing started.
        let nothing = remove_under_any("/nonexistent", &[rest]).unwrap();
        assert!(Command::new("sh")
            .arg("-c")
            .arg(&nothing)
            .status()
            .unwrap()
            .success());
    }

    #[test]
    fn nul_bytes_are_refused() {
        assert!(word("a\0b").is_err());
    }

    #[test]
    fn command_quotes_each_argument() {
        assert_eq!(command(&["ls", "a b"]).unwrap(), "ls 'a b'");
    }

    #[test]
    fn a_line_quotes_its_values_and_keeps_its_shell_text() {
        let hostile = "it's $HOME; `id`";
        let line = Line::shell("")
            .assign("ZDD_VALUE", hostile)
            .unwrap()
            .text("sh -c 'printf \"%s|%s\" \"$ZDD_VALUE\" \"$0\"'")
            .arg(hostile)
            .unwrap()
            .text("2>&1");
        assert!(line.as_str().starts_with("ZDD_VALUE="), "{line}");
        assert!(line.as_str().ends_with(" 2>&1"), "{line}");
        let out = Command::new("sh")
            .arg("-c")
            .arg(line.as_str())
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            format!("{hostile}|{hostile}")
        );
        let php = Line::command(&["php"])
            .unwrap()
            .text("-d opcache.enable_cli=1 -d");
        assert_eq!(
            php.arg("opcache.file_cache=/srv/a b").unwrap().as_str(),
            "php -d opcache.enable_cli=1 -d 'opcache.file_cache=/srv/a b'"
        );
        assert!(Line::shell("ls").arg("a\0b").is_err());
    }

    #[test]
    fn joined_lines_run_as_sh_reads_them() {
        let run = |script: &str| {
            let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
            String::from_utf8(out.stdout).unwrap()
        };
        let echo = |text: &str| command(&["echo", text]).unwrap();
        let fails = command(&["false"]).unwrap();
        let pipe = join(
            &[echo("a; b"), command(&["tr", "a", "x"]).unwrap()],
            Joiner::Pipe,
        );
        assert_eq!(pipe, "echo 'a; b' | tr a x");
        assert_eq!(run(&pipe), "x; b\n");
        let and = join(&[fails.clone(), echo("and")], Joiner::And);
        let or = join(&[fails, echo("or")], Joiner::Or);
        assert_eq!(run(&join(&[and, or, pipe], Joiner::Then)), "or\nx; b\n");
    }
}
