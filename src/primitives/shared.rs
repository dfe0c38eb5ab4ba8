//! `deploy:shared`: `shared_dirs` and `shared_files` live in `{{deploy_path}}/shared` and are
//! linked into every release, so uploads, sessions and `.env` survive deploys.
//!
//! Nothing here acts through a symlink: an entry whose parents in the release are not real
//! directories (a symlink committed in the repository, or a shared dir the entry lies inside)
//! is refused, an entry that is itself a symlink is replaced as a link (never followed), and a
//! shared path is seeded from the release only from a real directory or a regular file.

use super::{lock, paths};
use crate::context::HostContext;
use crate::failure::Failure;
use crate::quote;
use crate::transport::{FileType, Op};

/// One round trip: what is on the way to every entry, in the release and in `shared/`, is
/// asked at once; the links are then sent without waiting.
pub fn link(ctx: &mut HostContext) -> Result<(), Failure> {
    lock::hold(ctx)?;
    let release_path = ctx.release_path()?;
    let shared_root = ctx.path("shared")?;
    let mut entries = Vec::new();
    for dir in ctx.list("shared_dirs")? {
        entries.push(("shared_dirs", paths::inside_release("shared_dirs", &dir)?));
    }
    for file in ctx.list("shared_files")? {
        entries.push((
            "shared_files",
            paths::inside_release("shared_files", &file)?,
        ));
    }
    if entries.is_empty() {
        return Ok(());
    }
    let relatives: Vec<String> = entries.iter().map(|(_, r)| r.clone()).collect();
    let shared_paths: Vec<String> = relatives
        .iter()
        .map(|r| format!("{shared_root}/{r}"))
        .collect();
    let facts = paths::Facts::gather(ctx, &release_path, &relatives, &shared_paths)?;
    // Every entry is checked before anything is sent: a refused entry changes nothing.
    for (setting, relative) in &entries {
        paths::check_parents(&facts, &release_path, setting, relative, false)?;
        let shared = format!("{shared_root}/{relative}");
        let kind = facts.kind(&format!("{release_path}/{relative}"));
        if *setting == "shared_files"
            && facts.kind(&shared).is_none()
            && kind != Some(FileType::File)
        {
            return Err(Failure::message(format!(
                "shared file `{relative}` is missing: `{shared}` does not exist"
            ))
            .with_hint(format!(
                "create `{shared}` on host `{}` before deploying (zdd never creates an empty one)",
                ctx.host
            )));
        }
    }
    for (setting, relative) in &entries {
        let shared = format!("{shared_root}/{relative}");
        let in_release = format!("{release_path}/{relative}");
        let kind = facts.kind(&in_release);
        if facts.kind(&shared).is_none() {
            if let Some(parent) = paths::parent(&shared) {
                ctx.send(Op::CreateDirAll(parent.to_string()))?;
            }
            let seed = if *setting == "shared_dirs" {
                FileType::Directory
            } else {
                FileType::File
            };
            if kind == Some(seed) {
                // First deploy: the shared entry starts as the release's own content.
                copy(ctx, &in_release, &shared)?;
            } else {
                ctx.send(Op::CreateDirAll(shared.clone()))?;
            }
        }
        replace_with_link(ctx, &release_path, relative, kind)?;
    }
    Ok(())
}

fn copy(ctx: &mut HostContext, from: &str, to: &str) -> Result<(), Failure> {
    let command = quote::command(&["cp", "-a", "--", from, to])?;
    ctx.send_command(command)
}

/// Replace `relative` in the release (which is `kind`) with a relative symlink into `shared/`.
fn replace_with_link(
    ctx: &mut HostContext,
    release_path: &str,
    relative: &str,
    kind: Option<FileType>,
) -> Result<(), Failure> {
    let link = format!("{release_path}/{relative}");
    match kind {
        // Its parents are real directories of the release: nothing here leaves it.
        Some(FileType::Directory) => ctx.send(Op::RemoveDirAll(link.clone()))?,
        Some(_) => ctx.send(Op::RemoveFile(link.clone()))?,
        None => {}
    }
    if let Some(parent) = paths::parent(&link) {
        if kind.is_none() {
            ctx.send(Op::CreateDirAll(parent.to_string()))?;
        }
    }
    ctx.send(Op::Symlink {
        target: paths::shared_link_target(relative),
        link,
    })
}
