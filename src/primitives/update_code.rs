//! `deploy:update_code`: the repository cache at `{{deploy_path}}/repo.git`, fetched every
//! deploy, and `{{branch}}` checked out into the release, with its commit in `REVISION` and in
//! the release log.
//!
//! On one host the whole checkout is one request sent without waiting ([`Op::Checkout`]): the
//! host resolves the ref, and zdd learns the commit from the answer at its next wait
//! ([`settle`]). With several hosts the first to resolve pins the commit for all, so each host
//! resolves first and waits for the answer.
//!
//! A deploy built once (`build_on`) ships the build's archive instead (`primitives::ship`).

use super::lock;
use super::release_log::{self, Entry};
use crate::output::failure::Failure;
use crate::primitives::host_context::{HostContext, PendingCheckout};
use crate::transport::git::RefError;
use crate::transport::op::{commit_placeholder, PENDING_COMMIT};
use crate::transport::{Answer, Kept, Op};
use crate::values::template::Mode;

/// The repository and the reference this deploy checks out: `branch`, or, bringing a host
/// left behind up to an earlier deploy, that deploy's commit whatever `branch` is now.
pub fn wanted(ctx: &HostContext) -> Result<(String, String), Failure> {
    let repository = ctx.expand(&ctx.text("repository")?, Mode::Plain)?;
    let catch_up = ctx
        .deployment
        .catch_up
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let reference = match catch_up {
        Some(commit) => commit,
        None => ctx.expand(&ctx.text("branch")?, Mode::Plain)?,
    };
    Ok((repository, reference))
}

pub fn clone(ctx: &mut HostContext) -> Result<(), Failure> {
    lock::hold(ctx)?;
    // Built once for every host: the build's archive, not a checkout.
    let artifact = ctx
        .deployment
        .artifact
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(artifact) = artifact {
        return super::ship::ship(ctx, &artifact);
    }
    let (repository, reference) = wanted(ctx)?;
    let release_path = ctx.release_path()?;
    let cache = ctx.path("repo.git")?;
    let name = ctx.release()?.name.clone();
    let one_host = ctx
        .deployment
        .hosts
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len()
        <= 1;
    if one_host {
        let (entry, op) = checkout(ctx, &name, &repository, &reference)?;
        let kept = ctx.send_kept(op).map_err(|e| ref_failure(e, &repository))?;
        release_log::remember(
            ctx,
            Entry {
                commit: None,
                ..entry
            },
        );
        let answered = matches!(kept, Kept::Ready(_));
        if let Some(release) = ctx.release.as_mut() {
            release.checkout = Some(PendingCheckout { kept, reference });
        }
        if answered {
            // The local transport did it at once: say so now.
            settle(ctx)?;
        }
        return Ok(());
    }
    let resolved = ctx
        .transport
        .resolve(&repository, &cache, &reference)
        .map_err(|e| ref_failure(e, &repository))?;
    let commit = pin(ctx, &reference, &resolved);
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
    release_log::record(ctx, checked_out(&name, &reference, Some(commit.clone())))?;
    checked_out_message(ctx, &reference, &commit);
    Ok(())
}

/// The whole checkout of `reference` from `repository` into release `name` as one request
/// ([`Op::Checkout`]), and the log's entry it writes (its line has a place for the commit the
/// host fills in).
pub fn checkout(
    ctx: &HostContext,
    name: &str,
    repository: &str,
    reference: &str,
) -> Result<(Entry, Op), Failure> {
    let (entry, record) = release_log::line(ctx, checked_out(name, reference, None))?;
    if !record.contains(&commit_placeholder()) {
        return Err(Failure::message(format!(
            "the release log's line has no place for the commit: `{record}`"
        )));
    }
    let op = Op::Checkout {
        repository: repository.to_string(),
        cache: ctx.path("repo.git")?,
        reference: reference.to_string(),
        destination: ctx.path(&format!("releases/{name}"))?,
        log: ctx.path(release_log::LOG)?,
        record,
    };
    Ok((entry, op))
}

fn checked_out(release: &str, reference: &str, commit: Option<String>) -> Entry {
    Entry {
        event: "checked_out".into(),
        release: release.to_string(),
        reference: Some(reference.to_string()),
        commit: Some(commit.unwrap_or_else(|| PENDING_COMMIT.to_string())),
        ..Default::default()
    }
}

/// The commit of this deploy: the first host to resolve the ref pins it, and every host
/// checks it out, even if the branch moved during the deploy.
fn pin(ctx: &HostContext, reference: &str, resolved: &str) -> String {
    let commit = ctx
        .deployment
        .commit
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(|| resolved.to_string())
        .clone();
    if commit != resolved {
        ctx.warn(&format!(
            "`{reference}` is {resolved} here, but the deploy pinned {commit} on the first host: checking that out"
        ));
    }
    commit
}

fn checked_out_message(ctx: &HostContext, reference: &str, commit: &str) {
    ctx.info(&format!(
        "checked out `{reference}` at {}",
        &commit[..commit.len().min(12)]
    ));
}

/// The commit of this run's release, once the host has said it: reads the answer of a
/// checkout sent without waiting (a round trip only if no wait has read it yet). `None` when
/// there is no checkout, or it failed (that failure is reported as the step that sent it).
pub fn settle(ctx: &mut HostContext) -> Result<Option<String>, Failure> {
    let Some(release) = ctx.release.as_ref() else {
        return Ok(None);
    };
    let Some(pending) = release.checkout.clone() else {
        return Ok(release.commit.clone());
    };
    let Some(Answer::Text(Some(commit))) = ctx.transport.collect(&pending.kept)? else {
        return Ok(None);
    };
    let name = release.name.clone();
    if let Some(release) = ctx.release.as_mut() {
        release.checkout = None;
        release.commit = Some(commit.clone());
    }
    if let Some(state) = ctx.state.as_mut() {
        for entry in &mut state.log.entries {
            if entry.event == "checked_out" && entry.release == name && entry.commit.is_none() {
                entry.commit = Some(commit.clone());
            }
        }
    }
    pin(ctx, &pending.reference, &commit);
    checked_out_message(ctx, &pending.reference, &commit);
    Ok(Some(commit))
}

/// A fetch or resolve error as a failure, with a hint at the setting to change.
pub fn ref_failure(error: anyhow::Error, repository: &str) -> Failure {
    let hint = error
        .downcast_ref::<RefError>()
        .and_then(|e| hint(e, repository));
    let failure = Failure::from(error);
    match hint {
        Some(hint) => failure.with_hint(hint),
        None => failure,
    }
}

fn hint(error: &RefError, repository: &str) -> Option<String> {
    match error {
        RefError::Unknown { .. } => Some(format!(
            "set `branch` to a branch, tag or commit of `{repository}`, e.g. `-o branch=main`"
        )),
        RefError::NoRepository | RefError::MissingRepository { .. } | RefError::Fetch { .. } => {
            Some(
                "set `repository` to a git URL or the path of a git repository on this host"
                    .to_string(),
            )
        }
        _ => None,
    }
}
