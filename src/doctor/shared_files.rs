//! Check: every `shared_files` entry exists under `{{deploy_path}}/shared` (the next deploy
//! links it into the release and fails when it is missing: zdd never creates an empty one).

use super::finding::Finding;
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::primitives::paths;

const CHECK: &str = "shared_files";

pub fn check(ctx: &HostContext) -> Result<Vec<Finding>, Failure> {
    let files = ctx.list("shared_files")?;
    if files.is_empty() {
        return Ok(vec![Finding::ok(CHECK, "no shared_files are set")]);
    }
    let shared = ctx.path("shared")?;
    let mut findings = Vec::new();
    let mut present = Vec::new();
    for file in files {
        let file = match paths::inside_release("shared_files", &file) {
            Ok(file) => file,
            Err(failure) => {
                findings.push(Finding::problem(
                    CHECK,
                    failure.to_string(),
                    "list paths relative to the release, e.g. `.env`",
                ));
                continue;
            }
        };
        let path = format!("{shared}/{file}");
        if !ctx.transport.exists(&path)? {
            findings.push(Finding::problem(
                CHECK,
                format!("shared file `{file}` is missing: `{path}` does not exist"),
                format!("create `{path}` before the next deploy (zdd never creates an empty one)"),
            ));
        } else if ctx.transport.is_dir(&path)? {
            findings.push(Finding::problem(
                CHECK,
                format!("shared file `{file}` is a directory: `{path}`"),
                format!(
                    "list `{file}` in `shared_dirs` instead, or replace `{path}` with the file"
                ),
            ));
        } else {
            present.push(format!("`{file}`"));
        }
    }
    if !present.is_empty() {
        findings.insert(
            0,
            Finding::ok(
                CHECK,
                format!("shared files exist in `{shared}`: {}", present.join(", ")),
            ),
        );
    }
    Ok(findings)
}
