//! Check: every `writable_dirs` entry exists in the current release and is writable (by the
//! user doctor connects as, which is the deploy user). Without a current release there is
//! nothing to check yet.

use super::finding::Finding;
use crate::context::HostContext;
use crate::failure::Failure;
use crate::primitives::paths;
use crate::quote;

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
        let word = quote::word(&path)?;
        // `-d`/`-w` follow a shared-dir symlink to its directory.
        let script = format!("if [ ! -d {word} ]; then echo missing; elif [ ! -w {word} ]; then echo read-only; fi; id -un");
        let output = ctx.transport.exec(&script, None, &script, None)?;
        let mut lines = output.stdout.lines();
        let first = lines.next().unwrap_or_default().trim().to_string();
        let user = match first.as_str() {
            "missing" | "read-only" => lines.next().unwrap_or_default().trim().to_string(),
            _ => first.clone(),
        };
        match first.as_str() {
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
