//! Check: every `writable_dirs` entry exists in the current release and is writable (by the
//! user doctor connects as, which is the deploy user). Without a current release there is
//! nothing to check yet.

use super::finding::Finding;
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::primitives::paths;
use crate::values::quote::{self, Joiner};

const CHECK: &str = "writable_dirs";

pub fn check(ctx: &HostContext) -> Result<Vec<Finding>, Failure> {
    let dirs = ctx.list("writable_dirs")?;
    if dirs.is_empty() {
        return Ok(vec![Finding::ok(CHECK, "no writable_dirs are set")]);
    }
    if ctx.current_release()?.is_none() {
        return Ok(vec![Finding::ok(
            CHECK,
            "no release is current yet: writable_dirs are checked once one is",
        )]);
    }
    let current = ctx.path("current")?;
    let mut findings = Vec::new();
    let mut fine = Vec::new();
    for dir in dirs {
        let dir = match paths::inside_release("writable_dirs", &dir) {
            Ok(dir) => dir,
            Err(failure) => {
                findings.push(Finding::problem(
                    CHECK,
                    failure.to_string(),
                    "list paths relative to the release, e.g. `storage`",
                ));
                continue;
            }
        };
        let path = format!("{current}/{dir}");
        let script = script(&path)?;
        let output = ctx.transport.exec(&script, None, &script, None)?;
        let lines: Vec<&str> = output.stdout.lines().map(str::trim).collect();
        let user = lines.last().copied().unwrap_or_default();
        let state = if lines.contains(&"missing") {
            "missing"
        } else if lines.contains(&"read-only") {
            "read-only"
        } else {
            "fine"
        };
        match state {
            "missing" => findings.push(Finding::problem(
                CHECK,
                format!("writable dir `{dir}` does not exist in the current release (`{path}`)"),
                "deploy again: `deploy:writable` creates it; until then the app cannot write there",
            )),
            "read-only" => findings.push(Finding::problem(
                CHECK,
                format!("writable dir `{dir}` is not writable by `{user}` in the current release (`{path}`)"),
                format!(
                    "make it writable (`chmod -R ug+rwX {path}`) and check `writable_mode`; with php-fpm running as another user, use `writable_mode = \"acl\"` and `http_user`"
                ),
            )),
            _ => fine.push(format!("`{dir}`")),
        }
    }
    if !fine.is_empty() {
        findings.insert(
            0,
            Finding::ok(
                CHECK,
                format!(
                    "writable dirs are writable in the current release: {}",
                    fine.join(", ")
                ),
            ),
        );
    }
    Ok(findings)
}

/// One line: `missing` when `path` is not a directory, `read-only` when the deploy user cannot
/// write it (both when it is missing), then the deploy user's name. `test -d`/`-w` follow a
/// shared-dir symlink to its directory; the status is `id`'s.
fn script(path: &str) -> Result<String, quote::QuoteError> {
    let unless = |test: &str, word: &str| -> Result<String, quote::QuoteError> {
        Ok(quote::join(
            &[
                quote::command(&["test", test, path])?,
                quote::command(&["echo", word])?,
            ],
            Joiner::Or,
        ))
    };
    Ok(quote::join(
        &[
            unless("-d", "missing")?,
            unless("-w", "read-only")?,
            quote::command(&["id", "-un"])?,
        ],
        Joiner::Then,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(path: &str) -> Vec<String> {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(path).unwrap())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_line_says_missing_and_names_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let user = run(&dir.path().display().to_string());
        assert_eq!(user.len(), 1, "{user:?}");
        let missing = run(&format!(
            "{}/not there; echo read-only",
            dir.path().display()
        ));
        assert_eq!(missing, ["missing", "read-only", user[0].as_str()]);
    }
}
