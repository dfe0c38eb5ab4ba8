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
use crate::transport::FileType;

pub fn link(ctx: &mut HostContext) -> Result<(), Failure> {
    lock::hold(ctx)?;
    let release_path = ctx.release_path()?;
    let shared_root = ctx.path("shared")?;
    for dir in ctx.list("shared_dirs")? {
        let dir = paths::inside_release("shared_dirs", &dir)?;
        paths::check_parents(ctx, &release_path, "shared_dirs", &dir, false)?;
        let shared = format!("{shared_root}/{dir}");
        let in_release = format!("{release_path}/{dir}");
        let kind = ctx.transport.file_type(&in_release)?;
        if !ctx.transport.exists(&shared)? {
            if let Some(parent) = paths::parent(&shared) {
                ctx.transport.create_dir_all(parent)?;
            }
            if kind == Some(FileType::Directory) {
                // First deploy: the shared dir starts as the release's own content.
                copy(ctx, &in_release, &shared)?;
            } else {
                ctx.transport.create_dir_all(&shared)?;
            }
        }
        replace_with_link(ctx, &release_path, &dir, kind)?;
    }
    for file in ctx.list("shared_files")? {
        let file = paths::inside_release("shared_files", &file)?;
        paths::check_parents(ctx, &release_path, "shared_files", &file, false)?;
        let shared = format!("{shared_root}/{file}");
        let in_release = format!("{release_path}/{file}");
        let kind = ctx.transport.file_type(&in_release)?;
        if !ctx.transport.exists(&shared)? {
            if kind == Some(FileType::File) {
                if let Some(parent) = paths::parent(&shared) {
                    ctx.transport.create_dir_all(parent)?;
                }
                copy(ctx, &in_release, &shared)?;
            } else {
                return Err(Failure::message(format!(
                    "shared file `{file}` is missing: `{shared}` does not exist"
                ))
                .with_hint(format!(
                    "create `{shared}` on host `{}` before deploying (zdd never creates an empty one)",
                    ctx.host
                )));
            }
        }
        replace_with_link(ctx, &release_path, &file, kind)?;
    }
    Ok(())
}

fn copy(ctx: &HostContext, from: &str, to: &str) -> Result<(), Failure> {
    let command = quote::command(&["cp", "-a", "--", from, to])?;
    ctx.shell_raw(&command)?;
    Ok(())
}

/// Replace `relative` in the release (which is `kind`) with a relative symlink into `shared/`.
fn replace_with_link(
    ctx: &HostContext,
    release_path: &str,
    relative: &str,
    kind: Option<FileType>,
) -> Result<(), Failure> {
    let link = format!("{release_path}/{relative}");
    match kind {
        // Its parents are real directories of the release: nothing here leaves it.
        Some(FileType::Directory) => ctx.transport.remove_dir_all(&link)?,
        Some(_) => ctx.transport.remove_file(&link)?,
        None => {}
    }
    if let Some(parent) = paths::parent(&link) {
        ctx.transport.create_dir_all(parent)?;
    }
    ctx.transport
        .symlink(&paths::shared_link_target(relative), &link)?;
    Ok(())
}
