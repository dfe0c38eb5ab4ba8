//! `deploy:update_code`: the repository cache at `{{deploy_path}}/repo.git`, fetched every
//! deploy, and `{{branch}}` checked out into the release, with its commit in `REVISION` and in
//! the release log.

use super::release_log::{self, Entry};
use crate::context::HostContext;
use crate::failure::Failure;
use crate::template::Mode;

pub fn clone(ctx: &mut HostContext) -> Result<String, Failure> {
    let repository = ctx.expand(&ctx.text("repository")?, Mode::Plain)?;
    let reference = ctx.expand(&ctx.text("branch")?, Mode::Plain)?;
    let release_path = ctx.release_path()?;
    let cache = ctx.path("repo.git")?;
    let checkout = ctx
        .transport
        .checkout(&repository, &cache, &reference, &release_path)
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
    ctx.transport.write_file(
        &format!("{release_path}/REVISION"),
        &format!("{}\n", checkout.commit),
    )?;
    if let Some(release) = ctx.release.as_mut() {
        release.commit = Some(checkout.commit.clone());
    }
    let name = ctx.release()?.name.clone();
    release_log::record(
        ctx,
        Entry {
            event: "checked_out".into(),
            release: name,
            reference: Some(reference.clone()),
            commit: Some(checkout.commit.clone()),
            ..Default::default()
        },
    )?;
    ctx.info(&format!(
        "checked out `{reference}` at {}",
        &checkout.commit[..checkout.commit.len().min(12)]
    ));
    Ok(checkout.commit)
}
