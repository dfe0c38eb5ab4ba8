//! `deploy:shared`: `shared_dirs` and `shared_files` live in `{{deploy_path}}/shared` and are
//! linked into every release, so uploads, sessions and `.env` survive deploys.

use super::paths;
use crate::context::HostContext;
use crate::failure::Failure;
use crate::quote;

pub fn link(ctx: &mut HostContext) -> Result<(), Failure> {
    let release_path = ctx.release_path()?;
    let shared_root = ctx.path("shared")?;
    for dir in ctx.list("shared_dirs")? {
        let dir = paths::inside_release("shared_dirs", &dir)?;
        let shared = format!("{shared_root}/{dir}");
        let in_release = format!("{release_path}/{dir}");
        if !ctx.transport.exists(&shared)? {
            if let Some(parent) = paths::parent(&shared) {
                ctx.transport.create_dir_all(parent)?;
            }
            if ctx.transport.is_dir(&in_release)? {
                // First deploy: the shared dir starts as the release's own content.
                copy(ctx, &in_release, &shared)?;
            } else {
                ctx.transport.create_dir_all(&shared)?;
            }
        }
        replace_with_link(ctx, &release_path, &dir)?;
    }
    for file in ctx.list("shared_files")? {
        let file = paths::inside_release("shared_files", &file)?;
        let shared = format!("{shared_root}/{file}");
        let in_release = format!("{release_path}/{file}");
        if !ctx.transport.exists(&shared)? {
            if ctx.transport.exists(&in_release)? && !ctx.transport.is_dir(&in_release)? {
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
        replace_with_link(ctx, &release_path, &file)?;
    }
    Ok(())
}

fn copy(ctx: &HostContext, from: &str, to: &str) -> Result<(), Failure> {
    let command = quote::command(&["cp", "-a", "--", from, to])?;
    ctx.shell_raw(&command)?;
    Ok(())
}

/// Replace `relative` in the release with a relative symlink into `shared/`.
fn replace_with_link(ctx: &HostContext, release_path: &str, relative: &str) -> Result<(), Failure> {
    let link = format!("{release_path}/{relative}");
    if ctx.transport.read_link(&link)?.is_some() || !ctx.transport.is_dir(&link)? {
        ctx.transport.remove_file(&link)?;
    } else {
        ctx.transport.remove_dir_all(&link)?;
    }
    if let Some(parent) = paths::parent(&link) {
        ctx.transport.create_dir_all(parent)?;
    }
    let depth = relative.split('/').count();
    let target = format!("{}shared/{relative}", "../".repeat(depth + 1));
    ctx.transport.symlink(&target, &link)?;
    Ok(())
}
