//! The repository cache and checkout, with git2 (no `git` binary needed on the local host).

use std::path::Path;

use anyhow::{anyhow, Context};
use git2::{build::CheckoutBuilder, FetchOptions, FetchPrune, Oid, Repository};

/// Where the remote's default branch is kept in the cache.
const REMOTE_HEAD: &str = "refs/zdd/HEAD";

/// Fetch `repository` into the bare cache at `cache` (created on first use), resolve `reference`
/// and write its tree into `destination`. Returns the full commit id.
pub fn checkout(
    repository: &str,
    cache: &Path,
    reference: &str,
    destination: &Path,
) -> anyhow::Result<String> {
    let repo = open_cache(cache)?;
    fetch(&repo, repository)?;
    let oid = resolve(&repo, reference)?;
    let commit = repo.find_commit(oid)?;
    let mut options = CheckoutBuilder::new();
    options
        .target_dir(destination)
        .update_index(false)
        .force()
        .recreate_missing(true);
    repo.checkout_tree(commit.as_object(), Some(&mut options))
        .with_context(|| format!("cannot check out {oid} into `{}`", destination.display()))?;
    Ok(oid.to_string())
}

fn open_cache(cache: &Path) -> anyhow::Result<Repository> {
    if cache.join("HEAD").exists() {
        Repository::open_bare(cache)
            .with_context(|| format!("cannot open the repository cache `{}`", cache.display()))
    } else {
        Repository::init_bare(cache)
            .with_context(|| format!("cannot create the repository cache `{}`", cache.display()))
    }
}

fn fetch(repo: &Repository, repository: &str) -> anyhow::Result<()> {
    if repository.trim().is_empty() {
        return Err(anyhow!("`repository` is empty"));
    }
    // git2 calls a path it cannot find an "unsupported URL protocol": say what is wrong.
    if is_local_path(repository) && !Path::new(repository).exists() {
        return Err(anyhow!("repository `{repository}` does not exist"));
    }
    let mut remote = repo
        .remote_anonymous(repository)
        .with_context(|| format!("`{repository}` is not a repository address git can use"))?;
    let mut options = FetchOptions::new();
    options
        .prune(FetchPrune::On)
        .download_tags(git2::AutotagOption::None);
    let refspecs = [
        "+refs/heads/*:refs/heads/*",
        "+refs/tags/*:refs/tags/*",
        &format!("+HEAD:{REMOTE_HEAD}"),
    ];
    remote
        .fetch(&refspecs, Some(&mut options), None)
        .map_err(|e| anyhow!("cannot fetch `{repository}`: {}", e.message()))
}

/// Whether `repository` is a path on this machine rather than a URL (`scheme://...`) or an
/// scp-like address (`user@host:path`).
fn is_local_path(repository: &str) -> bool {
    if repository.contains("://") {
        return false;
    }
    match repository.split_once(':') {
        Some((before, _)) => before.contains('/'),
        None => true,
    }
}

fn resolve(repo: &Repository, reference: &str) -> anyhow::Result<Oid> {
    let unknown = || {
        anyhow!(
            "unknown ref `{reference}`: no branch, tag or commit of that name in the repository"
        )
    };
    if reference.is_empty() {
        return Err(unknown());
    }
    let candidates = if reference == "HEAD" {
        vec![REMOTE_HEAD.to_string()]
    } else {
        vec![
            format!("refs/heads/{reference}"),
            format!("refs/tags/{reference}"),
        ]
    };
    for name in candidates {
        if let Ok(found) = repo.find_reference(&name) {
            let commit = found
                .peel_to_commit()
                .with_context(|| format!("`{reference}` does not name a commit"))?;
            return Ok(commit.id());
        }
    }
    let is_hex = reference.len() >= 4
        && reference.len() <= 40
        && reference.chars().all(|c| c.is_ascii_hexdigit());
    if !is_hex {
        return Err(unknown());
    }
    let object = repo.revparse_single(reference).map_err(|e| {
        if e.code() == git2::ErrorCode::Ambiguous {
            anyhow!("commit prefix `{reference}` is ambiguous: give more digits")
        } else {
            unknown()
        }
    })?;
    let commit = object.peel_to_commit().map_err(|_| unknown())?;
    Ok(commit.id())
}
