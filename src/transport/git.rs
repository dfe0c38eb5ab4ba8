//! The repository cache and checkout, with git2 (no `git` binary needed on the local host).
//!
//! What a `branch` value may name ([`ref_candidates`]) and the ways fetching and resolving it
//! fail ([`RefError`]) are decided here for every transport: the local one resolves with git2
//! below, the SSH one with the remote's `git`.

use std::fmt;
use std::path::Path;

use anyhow::Context;
use git2::{build::CheckoutBuilder, FetchOptions, FetchPrune, Oid, Repository};

/// Where the remote's default branch is kept in the cache.
pub const REMOTE_HEAD: &str = "refs/zdd/HEAD";

/// Why a repository could not be fetched or a ref not resolved to a commit. Callers tell the
/// cases apart with `anyhow::Error::downcast_ref::<RefError>()`, never by the words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefError {
    /// `branch` is empty.
    Empty,
    /// No branch, tag or commit of that name.
    Unknown { reference: String },
    /// A commit prefix that more than one commit starts with.
    Ambiguous { reference: String },
    /// The ref exists but does not lead to a commit (the cause, git's, follows it).
    NotACommit { reference: String },
    /// `repository` is empty.
    NoRepository,
    /// `repository` is a path on this machine that does not exist.
    MissingRepository { repository: String },
    /// `repository` is not an address git can fetch from (the cause, git's, follows it).
    NotARepository { repository: String },
    /// A network repository, and no `git` client to fetch it with.
    NoGitClient { repository: String },
    /// git could not fetch `repository`; `reason` is git's.
    Fetch { repository: String, reason: String },
}

impl fmt::Display for RefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefError::Empty => write!(f, "`branch` is empty: name a branch, tag or commit"),
            RefError::Unknown { reference } => write!(
                f,
                "unknown ref `{reference}`: no branch, tag or commit of that name in the repository"
            ),
            RefError::Ambiguous { reference } => write!(
                f,
                "commit prefix `{reference}` is ambiguous: give more digits"
            ),
            RefError::NotACommit { reference } => {
                write!(f, "`{reference}` does not name a commit")
            }
            RefError::NoRepository => write!(f, "`repository` is empty"),
            RefError::MissingRepository { repository } => {
                write!(f, "repository `{repository}` does not exist")
            }
            RefError::NotARepository { repository } => {
                write!(f, "`{repository}` is not a repository address git can use")
            }
            RefError::NoGitClient { repository } => write!(
                f,
                "fetching `{repository}` needs the `git` client, which is not installed"
            ),
            RefError::Fetch { repository, reason } => {
                write!(f, "cannot fetch `{repository}`: {reason}")
            }
        }
    }
}

impl std::error::Error for RefError {}

/// The names `reference` (a `branch` value) may stand for, in the order they are tried: the
/// remote's default branch for `HEAD`; else the full ref itself (`refs/heads/X`, `refs/tags/X`),
/// `refs/heads/X`, `refs/tags/X`, and last, for 4 to 40 hex digits, `X` as a commit (prefix).
/// An empty value, or one starting with `-` (an option to git), names nothing.
pub fn ref_candidates(reference: &str) -> Result<Vec<String>, RefError> {
    if reference.trim().is_empty() {
        return Err(RefError::Empty);
    }
    if reference.starts_with('-') {
        return Err(RefError::Unknown {
            reference: reference.to_string(),
        });
    }
    if reference == "HEAD" {
        return Ok(vec![REMOTE_HEAD.to_string()]);
    }
    let mut list = Vec::new();
    if is_full_ref(reference) {
        list.push(reference.to_string());
    }
    list.push(format!("refs/heads/{reference}"));
    list.push(format!("refs/tags/{reference}"));
    if is_commit_prefix(reference) {
        list.push(reference.to_string());
    }
    Ok(list)
}

/// 4 to 40 hex digits: what may be a commit id or the start of one.
fn is_commit_prefix(reference: &str) -> bool {
    (4..=40).contains(&reference.len()) && reference.chars().all(|c| c.is_ascii_hexdigit())
}

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

/// git's lock files at the top of a repository (beside those under `refs/`).
pub const TOP_LOCK_FILES: [&str; 5] = [
    "packed-refs.lock",
    "HEAD.lock",
    "config.lock",
    "shallow.lock",
    "index.lock",
];

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
    for name in TOP_LOCK_FILES {
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
    let Ok(git) = crate::system::process::find_program("git") else {
        return;
    };
    let invocation = crate::system::process::Invocation {
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
    if let Err(e) = crate::system::process::run(&invocation, None) {
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

/// When `commit` (in the cache) was made, in seconds since the epoch: the time a build's
/// archive gives every file, so that one commit always packs the same.
pub fn commit_time(cache: &Path, commit: &str) -> anyhow::Result<i64> {
    let repo = open_cache(cache)?;
    let oid = Oid::from_str(commit).with_context(|| format!("`{commit}` is not a commit id"))?;
    let commit = repo
        .find_commit(oid)
        .with_context(|| format!("commit {oid} is not in the repository cache"))?;
    Ok(commit.time().seconds())
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
        return Err(RefError::NoRepository.into());
    }
    // git2 calls a path it cannot find an "unsupported URL protocol": say what is wrong.
    if is_local_path(repository) && !Path::new(repository).exists() {
        return Err(RefError::MissingRepository {
            repository: repository.to_string(),
        }
        .into());
    }
    if !is_local_path(repository) && !repository.starts_with("file://") {
        // git2 is built without SSH and TLS: network remotes go through the `git` client,
        // which also honours the user's ~/.ssh/config, agent and credential helpers.
        return fetch_with_git_client(repo.path(), repository);
    }
    let mut remote = repo.remote_anonymous(repository).map_err(|e| {
        anyhow::Error::new(e).context(RefError::NotARepository {
            repository: repository.to_string(),
        })
    })?;
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
        .map_err(|e| {
            RefError::Fetch {
                repository: repository.to_string(),
                reason: e.message().to_string(),
            }
            .into()
        })
}

fn fetch_with_git_client(cache: &Path, repository: &str) -> anyhow::Result<()> {
    let git = crate::system::process::find_program("git").map_err(|_| RefError::NoGitClient {
        repository: repository.to_string(),
    })?;
    let invocation = crate::system::process::Invocation {
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
    crate::system::process::run(&invocation, None)
        .map(|_| ())
        .map_err(|e| {
            RefError::Fetch {
                repository: repository.to_string(),
                reason: e.to_string(),
            }
            .into()
        })
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
    let unknown = || RefError::Unknown {
        reference: reference.to_string(),
    };
    for candidate in ref_candidates(reference)? {
        if candidate.starts_with("refs/") {
            if let Ok(found) = repo.find_reference(&candidate) {
                let commit = found.peel_to_commit().map_err(|e| {
                    anyhow::Error::new(e).context(RefError::NotACommit {
                        reference: reference.to_string(),
                    })
                })?;
                return Ok(commit.id());
            }
            continue;
        }
        // A commit id or prefix.
        let object = repo.revparse_single(&candidate).map_err(|e| {
            if e.code() == git2::ErrorCode::Ambiguous {
                RefError::Ambiguous {
                    reference: reference.to_string(),
                }
            } else {
                unknown()
            }
        })?;
        let commit = object.peel_to_commit().map_err(|_| unknown())?;
        return Ok(commit.id());
    }
    Err(unknown().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_in_the_order_they_are_tried() {
        assert_eq!(ref_candidates("HEAD").unwrap(), ["refs/zdd/HEAD"]);
        assert_eq!(
            ref_candidates("main").unwrap(),
            ["refs/heads/main", "refs/tags/main"]
        );
        assert_eq!(
            ref_candidates("refs/tags/v1").unwrap(),
            [
                "refs/tags/v1",
                "refs/heads/refs/tags/v1",
                "refs/tags/refs/tags/v1"
            ]
        );
        assert_eq!(
            ref_candidates("beef").unwrap(),
            ["refs/heads/beef", "refs/tags/beef", "beef"]
        );
        let full = "a".repeat(40);
        assert_eq!(ref_candidates(&full).unwrap().last(), Some(&full));
        for not_a_commit in ["abc", "cafe-1", &"a".repeat(41)] {
            assert_eq!(
                ref_candidates(not_a_commit).unwrap().len(),
                2,
                "{not_a_commit}"
            );
        }
        assert_eq!(ref_candidates(""), Err(RefError::Empty));
        assert_eq!(ref_candidates("  "), Err(RefError::Empty));
        assert_eq!(
            ref_candidates("--upload-pack=x"),
            Err(RefError::Unknown {
                reference: "--upload-pack=x".into()
            })
        );
    }

    #[test]
    fn errors_are_worded_once_and_typed() {
        let unknown = RefError::Unknown {
            reference: "nope".into(),
        };
        assert_eq!(
            unknown.to_string(),
            "unknown ref `nope`: no branch, tag or commit of that name in the repository"
        );
        assert_eq!(
            RefError::Empty.to_string(),
            "`branch` is empty: name a branch, tag or commit"
        );
        let fetch = RefError::Fetch {
            repository: "/srv/app".into(),
            reason: "not a git repository".into(),
        };
        assert_eq!(
            fetch.to_string(),
            "cannot fetch `/srv/app`: not a git repository"
        );
        // Through anyhow, as a cause or as context.
        let error = anyhow::Error::from(unknown.clone());
        assert_eq!(error.downcast_ref::<RefError>(), Some(&unknown));
        let error = anyhow::anyhow!("git's words").context(RefError::NotACommit {
            reference: "v1".into(),
        });
        assert_eq!(
            format!("{error:#}"),
            "`v1` does not name a commit: git's words"
        );
        assert!(matches!(
            error.downcast_ref::<RefError>(),
            Some(RefError::NotACommit { .. })
        ));
    }

    #[test]
    fn a_local_repository_resolves_each_kind_of_ref() {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("origin");
        let repo = Repository::init(&origin).unwrap();
        let signature = git2::Signature::now("t", "t@example.com").unwrap();
        let tree = repo.treebuilder(None).unwrap().write().unwrap();
        let tree = repo.find_tree(tree).unwrap();
        let commit = repo
            .commit(Some("HEAD"), &signature, &signature, "one", &tree, &[])
            .unwrap();
        repo.tag_lightweight("v1", repo.find_commit(commit).unwrap().as_object(), false)
            .unwrap();
        let cache = dir.path().join("cache.git");
        let origin = origin.display().to_string();
        let id = commit.to_string();
        for reference in ["HEAD", "v1", "refs/tags/v1", &id, &id[..7]] {
            assert_eq!(
                fetch_and_resolve(&origin, &cache, reference).unwrap(),
                id,
                "{reference}"
            );
        }
        let error = fetch_and_resolve(&origin, &cache, "nope").unwrap_err();
        assert_eq!(
            error.downcast_ref::<RefError>(),
            Some(&RefError::Unknown {
                reference: "nope".into()
            })
        );
        let missing = dir.path().join("missing").display().to_string();
        let error = fetch_and_resolve(&missing, &cache, "HEAD").unwrap_err();
        assert_eq!(
            error.downcast_ref::<RefError>(),
            Some(&RefError::MissingRepository {
                repository: missing.clone()
            })
        );
        assert_eq!(
            error.to_string(),
            format!("repository `{missing}` does not exist")
        );
    }
}
