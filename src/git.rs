//! The repository cache and checkout, with git2 (no `git` binary needed on the local host).

use std::path::Path;

use anyhow::{anyhow, Context};
use git2::{build::CheckoutBuilder, FetchOptions, FetchPrune, Oid, Repository};

/// Where the remote's default branch is kept in the cache.
const REMOTE_HEAD: &str = "refs/zdd/HEAD";

/// Fetch `repository` into the bare cache at `cache` (created on first use) and resolve
/// `reference` to a full commit id.
pub fn fetch_and_resolve(
    repository: &str,
    cache: &Path,
    reference: &str,
) -> anyhow::Result<String> {
    remove_stale_locks(cache);
    let repo = open_cache(cache)?;
    fetch(&repo, repository)?;
    compact(cache);
    Ok(resolve(&repo, reference)?.to_string())
}

/// git's own `*.lock` files in the cache (`refs/**/X.lock`, `packed-refs.lock`, ...) left by a
/// fetch that was killed: every later fetch would fail on them. The cache is only fetched under
/// the deploy lock, so any that exist belong to a run that is gone.
fn remove_stale_locks(cache: &Path) {
    fn walk(dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => walk(&path),
                Ok(kind) if kind.is_file() && path.extension().is_some_and(|e| e == "lock") => {
                    let _ = std::fs::remove_file(&path);
                }
                _ => {}
            }
        }
    }
    walk(&cache.join("refs"));
    for name in [
        "packed-refs.lock",
        "HEAD.lock",
        "config.lock",
        "shallow.lock",
        "index.lock",
    ] {
        let _ = std::fs::remove_file(cache.join(name));
    }
}

/// Packs that make `compact` repack the cache.
const MAX_PACKS: usize = 32;

/// libgit2 writes one pack per fetch and never repacks; reading objects slows down as packs
/// pile up (measured: +25% checkout time after ~160 deploys). Repack with the git client when
/// there are many; without it, the cache just stays as it is.
fn compact(cache: &Path) {
    let packs = std::fs::read_dir(cache.join("objects/pack"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
                .count()
        })
        .unwrap_or(0);
    if packs <= MAX_PACKS {
        return;
    }
    let Ok(git) = crate::process::find_program("git") else {
        return;
    };
    let invocation = crate::process::Invocation {
        program: git,
        args: vec![
            format!("--git-dir={}", cache.display()).into(),
            "repack".into(),
            "-a".into(),
            "-d".into(),
            "-q".into(),
        ],
        display: "git repack -a -d".to_string(),
        ..Default::default()
    };
    if let Err(e) = crate::process::run(&invocation, None) {
        tracing::warn!("could not repack the repository cache: {e}");
    }
}

/// Write the tree of `commit` (from the cache) into `destination`.
pub fn export(cache: &Path, commit: &str, destination: &Path) -> anyhow::Result<()> {
    let repo = open_cache(cache)?;
    let oid = Oid::from_str(commit).with_context(|| format!("`{commit}` is not a commit id"))?;
    let commit = repo
        .find_commit(oid)
        .with_context(|| format!("commit {oid} is not in the repository cache"))?;
    let mut options = CheckoutBuilder::new();
    options
        .target_dir(destination)
        .update_index(false)
        .force()
        .recreate_missing(true);
    repo.checkout_tree(commit.as_object(), Some(&mut options))
        .with_context(|| format!("cannot check out {oid} into `{}`", destination.display()))?;
    Ok(())
}

/// `git log --oneline from..to` in the cache (see `Transport::log_oneline`), newest first.
pub fn log_oneline(
    cache: &Path,
    from: Option<&str>,
    to: &str,
    limit: usize,
) -> anyhow::Result<Vec<String>> {
    let repo = Repository::open_bare(cache)
        .with_context(|| format!("cannot open the repository cache `{}`", cache.display()))?;
    let oid = |id: &str| Oid::from_str(id).with_context(|| format!("`{id}` is not a commit id"));
    let mut walk = repo.revwalk()?;
    walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)?;
    walk.push(oid(to)?)
        .with_context(|| format!("commit {to} is not in the repository cache"))?;
    if let Some(from) = from {
        walk.hide(oid(from)?)
            .with_context(|| format!("commit {from} is not in the repository cache"))?;
    }
    let mut lines = Vec::new();
    for id in walk.take(limit) {
        let commit = repo.find_commit(id?)?;
        let short = commit.as_object().short_id()?;
        lines.push(format!(
            "{} {}",
            short.as_str().unwrap_or_default(),
            commit.summary().unwrap_or_default()
        ));
    }
    Ok(lines)
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
    if !is_local_path(repository) && !repository.starts_with("file://") {
        // git2 is built without SSH and TLS: network remotes go through the `git` client,
        // which also honours the user's ~/.ssh/config, agent and credential helpers.
        return fetch_with_git_client(repo.path(), repository);
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

fn fetch_with_git_client(cache: &Path, repository: &str) -> anyhow::Result<()> {
    let git = crate::process::find_program("git").map_err(|_| {
        anyhow!("fetching `{repository}` needs the `git` client, which is not installed")
    })?;
    let invocation = crate::process::Invocation {
        program: git,
        args: vec![
            format!("--git-dir={}", cache.display()).into(),
            "fetch".into(),
            "--quiet".into(),
            "--prune".into(),
            "--no-tags".into(),
            "--".into(),
            repository.into(),
            "+refs/heads/*:refs/heads/*".into(),
            "+refs/tags/*:refs/tags/*".into(),
            format!("+HEAD:{REMOTE_HEAD}").into(),
        ],
        env: vec![("GIT_TERMINAL_PROMPT".into(), "0".into())],
        display: format!("git fetch {repository}"),
        ..Default::default()
    };
    crate::process::run(&invocation, None)
        .map(|_| ())
        .map_err(|e| anyhow!("cannot fetch `{repository}`: {e}"))
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

/// `refs/heads/NAME` or `refs/tags/NAME`: the refs the cache holds, by their full name.
pub fn is_full_ref(reference: &str) -> bool {
    ["refs/heads/", "refs/tags/"]
        .iter()
        .any(|prefix| reference.len() > prefix.len() && reference.starts_with(prefix))
}

fn resolve(repo: &Repository, reference: &str) -> anyhow::Result<Oid> {
    let unknown = || {
        anyhow!(
            "unknown ref `{reference}`: no branch, tag or commit of that name in the repository"
        )
    };
    if reference.trim().is_empty() {
        return Err(anyhow!("`branch` is empty: name a branch, tag or commit"));
    }
    let candidates = if reference == "HEAD" {
        vec![REMOTE_HEAD.to_string()]
    } else {
        let mut list = Vec::new();
        // A full ref name (`refs/heads/main`, `refs/tags/v1`) names itself.
        if is_full_ref(reference) {
            list.push(reference.to_string());
        }
        list.push(format!("refs/heads/{reference}"));
        list.push(format!("refs/tags/{reference}"));
        list
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
