//! `deploy:update_code`: the repository cache at `{{deploy_path}}/repo.git`, fetched every
//! deploy, and `{{branch}}` checked out into the release, with its commit in `REVISION` and in
//! the release log.

use super::lock;
use super::release_log::{self, Entry};
use crate::context::HostContext;
use crate::failure::Failure;
use crate::template::Mode;
use crate::transport::Op;

pub fn clone(ctx: &mut HostContext) -> Result<String, Failure> {
    lock::hold(ctx)?;
    let repository = ctx.expand(&ctx.text("repository")?, Mode::Plain)?;
    let reference = ctx.expand(&ctx.text("branch")?, Mode::Plain)?;
    let release_path = ctx.release_path()?;
    let cache = ctx.path("repo.git")?;
    let resolved = ctx
        .transport
        .resolve(&repository, &cache, &reference)
        .map_err(|e| {
            let failure = Failure::from(e);
            let message = failure.to_string();
            if message.starts_with("unknown ref") {
                failure.with_hint(format!(
                    "set `branch` to a branch, tag or commit of `{repository}`, e.g. `-o branch=main`"
                ))
            } else if message.starts_with("repository `")
                || message.starts_with("`repository`")
                || message.starts_with("cannot fetch")
            {
                failure.with_hint(
                    "set `repository` to a git URL or the path of a git repository on this host",
                )
            } else {
                failure
            }
        })?;
    // Every host checks out the same commit, even if the branch moves during the deploy.
    let commit = ctx
        .deployment
        .commit
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(|| resolved.clone())
        .clone();
    if commit != resolved {
        ctx.warn(&format!(
            "`{reference}` is {resolved} here, but the deploy pinned {commit} on the first host: checking that out"
        ));
    }
    ctx.send(Op::Export {
        cache,
        commit: commit.clone(),
        destination: release_path.clone(),
    })?;
    ctx.send(Op::WriteFile {
        path: format!("{release_path}/REVISION"),
        contents: format!("{commit}\n"),
    })?;
    if let Some(release) = ctx.release.as_mut() {
        release.commit = Some(commit.clone());
    }
    let name = ctx.release()?.name.clone();
    release_log::record(
        ctx,
        Entry {
            event: "checked_out".into(),
            release: name,
            reference: Some(reference.clone()),
            commit: Some(commit.clone()),
            ..Default::default()
        },
    )?;
    ctx.info(&format!(
        "checked out `{reference}` at {}",
        &commit[..commit.len().min(12)]
    ));
    Ok(commit)
}
