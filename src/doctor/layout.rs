//! Check: the deploy path's layout, as the next deploy will find it. Which tool made it
//! (`primitives::foreign_layout`), what `current` is, and what makes zero downtime impossible
//! there: a `current` that is a file, a directory that cannot be exchanged atomically (no
//! perl), shared data that lives in an in-place `current` while `shared/` lacks it (the first
//! deploy would start with none: sessions, uploads), a deploy of another tool that did not
//! finish, releases whose order only their names tell.

use super::finding::Finding;
use crate::output::failure::Failure;
use crate::primitives::foreign_layout::{self, Tool};
use crate::primitives::host_context::HostContext;
use crate::primitives::release_log;
use crate::transport::FileType;

const CHECK: &str = "layout";

pub fn check(ctx: &HostContext) -> Result<Vec<Finding>, Failure> {
    let mut findings = Vec::new();
    let current = ctx.path("current")?;
    let kind = ctx.transport.file_type(&current)?;
    let link = ctx.transport.read_link(&current)?;
    let layout = release_log::layout(ctx)?;
    let releases = ctx.transport.list_dir(&ctx.path("releases")?)?;
    let log = ctx.transport.read_file(&ctx.path(release_log::LOG)?)?;
    let mut names = releases.clone();
    foreign_layout::sort(&mut names, &layout);
    let mut tools: Vec<Tool> = names.iter().map(|n| layout.tool_of(n)).collect();
    tools.sort();
    tools.dedup();
    // Releases named as zdd names them are zdd's, with or without its log.
    let made_by: Vec<&str> = tools
        .iter()
        .filter(|t| !matches!(t, Tool::ZddNamed | Tool::Zdd))
        .map(|t| t.as_str())
        .collect();
    let what = match (&log, made_by.is_empty()) {
        (_, true) if releases.is_empty() => "no releases yet".to_string(),
        (_, true) => "zdd's layout".to_string(),
        (Some(_), false) => format!(
            "zdd's layout, adopted from {} ({} releases, in deploy order: {})",
            made_by.join(", "),
            names.len(),
            names.join(", ")
        ),
        (None, _) => format!(
            "made by {} ({} releases, in deploy order: {}); zdd's first deploy adopts it",
            made_by.join(", "),
            names.len(),
            names.join(", ")
        ),
    };
    findings.push(Finding::ok(CHECK, what));
    match (kind, link) {
        (None, _) => {}
        (Some(FileType::Symlink), Some(target)) => {
            let deploy_path = ctx.deploy_path()?;
            if crate::primitives::host_context::release_of_target(&target, &deploy_path).is_none()
                && ctx.current_release()?.is_none()
            {
                findings.push(Finding::warning(
                    CHECK,
                    format!("`current` points outside releases/ (-> {target})"),
                    "the first deploy switches from it atomically and keeps it as a release (`before-...`): `zdd rollback` puts this exact link back",
                ));
            }
        }
        (Some(FileType::Directory), _) => {
            let perl = ctx.transport.find_program("perl")?;
            if perl.is_none() {
                findings.push(Finding::problem(
                    CHECK,
                    "`current` is a directory (an in-place deploy) and this host has no `perl` to swap it for a link atomically",
                    "install perl (Debian: perl-base), or move the directory into releases/ and make `current` a link to it",
                ));
            } else {
                findings.push(Finding::warning(
                    CHECK,
                    "`current` is a directory (an in-place deploy)",
                    "the first deploy moves it to .zdd/adopted/ and puts a link in its place in one atomic exchange; `zdd rollback` puts the directory back",
                ));
            }
            for entry in ctx
                .list("shared_dirs")?
                .into_iter()
                .chain(ctx.list("shared_files")?)
            {
                let inside = format!("{current}/{entry}");
                let shared = ctx.path(&format!("shared/{entry}"))?;
                let real = matches!(
                    ctx.transport.file_type(&inside)?,
                    Some(FileType::File | FileType::Directory)
                );
                if real && ctx.transport.file_type(&shared)?.is_none() {
                    findings.push(Finding::problem(
                        CHECK,
                        format!("`{entry}` lives in the in-place `current` and `shared/{entry}` does not exist: the first deploy would start without it (sessions, uploads, the app key)"),
                        format!("copy it first: cp -a {inside} {shared}"),
                    ));
                }
            }
        }
        _ => findings.push(Finding::problem(
            CHECK,
            format!("`{current}` is neither a link nor a directory: zdd cannot switch it"),
            "move it away, then deploy",
        )),
    }
    for (what, name) in &layout.pointers {
        if what == foreign_layout::DEPLOYER_RELEASE_LINK {
            findings.push(Finding::warning(
                CHECK,
                format!("Deployer's `release` link names releases/{name}: a Deployer deploy did not finish (or runs now)"),
                "zdd never removes a release another tool's pointer names; remove the link once no Deployer deploy runs",
            ));
        }
    }
    let unordered: Vec<&String> = names
        .iter()
        .filter(|n| {
            matches!(
                layout.key(n),
                foreign_layout::Key::Untimed { number: None, .. }
            )
        })
        .collect();
    if !unordered.is_empty() {
        findings.push(Finding::warning(
            CHECK,
            format!(
                "the order of {} cannot be told from a log or the names (ordered by name)",
                unordered
                    .iter()
                    .map(|n| format!("releases/{n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "`zdd rollback --to NAME` picks one by name; cleanup keeps them as it keeps good releases",
        ));
    }
    for (file, line) in &layout.damaged {
        findings.push(Finding::warning(
            CHECK,
            format!("`{file}` line {line} cannot be read"),
            "its release is ordered by its name",
        ));
    }
    Ok(findings)
}
