//! `deploy:shared`: `shared_dirs` and `shared_files` live in `{{deploy_path}}/shared` and are
//! linked into every release, so uploads, sessions and `.env` survive deploys.
//!
//! Nothing here acts through a symlink: an entry whose parents in the release are not real
//! directories (a symlink committed in the repository, or a shared dir the entry lies inside)
//! is refused, an entry that is itself a symlink is replaced as a link (never followed), and a
//! shared path is seeded from the release only from a real directory or a regular file.

use super::{lock, paths};
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::transport::link_shared::{Refusal, SharedEntry};
use crate::transport::Op;

/// One request, sent without waiting ([`Op::LinkShared`]): every entry is checked on the host
/// before anything changes, then linked.
pub fn link(ctx: &mut HostContext) -> Result<(), Failure> {
    lock::hold(ctx)?;
    let release_path = ctx.release_path()?;
    let Some(op) = request(ctx, &release_path)? else {
        return Ok(());
    };
    let host = ctx.host.clone();
    ctx.send_op(op)
        .map_err(|error| match error.downcast::<Refusal>() {
            Ok(refusal) => paths::refused(&refusal, &host),
            Err(error) => Failure::from(error),
        })
}

/// The request that links every shared entry into the release at `release_path`; nothing
/// when there is none.
pub fn request(ctx: &HostContext, release_path: &str) -> Result<Option<Op>, Failure> {
    let shared_root = ctx.path("shared")?;
    let mut entries = Vec::new();
    for (setting, list) in [
        ("shared_dirs", ctx.list("shared_dirs")?),
        ("shared_files", ctx.list("shared_files")?),
    ] {
        for value in list {
            let relative = paths::inside_release(setting, &value)?;
            entries.push(SharedEntry {
                setting: setting.to_string(),
                target: paths::shared_link_target(&relative),
                relative,
            });
        }
    }
    if entries.is_empty() {
        return Ok(None);
    }
    // The settings check refuses these before the run, but a task may set the lists later:
    // the host checks every entry before linking any, so an entry inside another one would
    // be linked through the other's new link, into `shared/` (its data removed there).
    for entry in &entries {
        if let Some(outer) = entries
            .iter()
            .find(|outer| entry.relative.starts_with(&format!("{}/", outer.relative)))
        {
            return Err(Failure::message(format!(
                "`{}` entry `{}` is inside `{}` entry `{}`: it is already shared through `{}`",
                entry.setting, entry.relative, outer.setting, outer.relative, outer.relative
            ))
            .with_hint(format!(
                "remove `{}` from `{}`: everything under a shared entry is shared with it",
                entry.relative, entry.setting
            )));
        }
    }
    Ok(Some(Op::LinkShared {
        release: release_path.to_string(),
        shared_root,
        entries,
    }))
}
