//! The shared recipes on this machine, under `$XDG_CACHE_HOME/zdd/recipes/` (else
//! `~/.cache/zdd/recipes/`):
//!
//!     repositories/<sha256 of the URL>.git    a bare cache per repository, fetched under
//!                                             a flock of `<...>.git.lock`
//!     trees/<sha256 of URL@commit>/files/     the commit's files (symlinks are not written:
//!                                             they are in the manifest)
//!     trees/<sha256 of URL@commit>/manifest.json
//!                                             the sha256 of every file, written with them
//!
//! A tree is written in a temporary directory and renamed into place, so a run sees a whole
//! tree or none; every file read from it is checked against its manifest first. A tree that
//! is there is used without asking the network.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use git2::{DiffFormat, DiffOptions, ObjectType, Oid, Repository, TreeWalkMode, TreeWalkResult};
use serde::{Deserialize, Serialize};

use super::import::join_in_repository;
use super::Problem;
use crate::artifact::{hex, sha256_text};
use crate::system::interrupt;

/// The recipe cache of this machine.
pub struct Cache {
    root: PathBuf,
}

/// What a tree's `manifest.json` holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Manifest {
    url: String,
    commit: String,
    /// Every regular file of the commit: its path and sha256.
    files: BTreeMap<String, String>,
    /// Every symbolic link of the commit: its path and target.
    links: BTreeMap<String, String>,
}

/// One repository at one commit, as the cache holds it.
pub struct Tree {
    pub url: String,
    pub commit: String,
    dir: PathBuf,
    manifest: Manifest,
}

/// A file read from a tree, checked.
pub struct Read {
    /// Its path in the repository (links followed).
    pub path: String,
    pub text: String,
    pub sha256: String,
}

impl Cache {
    /// The cache under `root` (`$XDG_CACHE_HOME/zdd` or `~/.cache/zdd`).
    pub fn open() -> Result<Cache, Problem> {
        let root = crate::run::build::cache_root().ok_or_else(|| {
            Problem::new("shared recipes need a cache directory: set HOME or XDG_CACHE_HOME")
        })?;
        Ok(Cache {
            root: root.join("recipes"),
        })
    }

    #[cfg(test)]
    pub fn at(root: &Path) -> Cache {
        Cache {
            root: root.to_path_buf(),
        }
    }

    fn repository(&self, fetch_url: &str) -> PathBuf {
        self.root
            .join("repositories")
            .join(format!("{}.git", sha256_text(fetch_url)))
    }

    fn tree_dir(&self, url: &str, commit: &str) -> PathBuf {
        self.root
            .join("trees")
            .join(sha256_text(&format!("{url}@{commit}")))
    }

    fn make_directories(&self) -> Result<(), Problem> {
        for dir in [self.root.join("repositories"), self.root.join("trees")] {
            std::fs::create_dir_all(&dir).map_err(|e| {
                Problem::new(format!(
                    "cannot create the recipe cache `{}`: {e}",
                    dir.display()
                ))
            })?;
        }
        // Recipes run shell on servers: nobody else writes here.
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700));
        Ok(())
    }

    /// Fetch `fetch_url` and resolve `reference` (a branch, tag or commit) to a commit id.
    pub fn resolve(&self, fetch_url: &str, reference: &str) -> Result<String, Problem> {
        self.make_directories()?;
        let repository = self.repository(fetch_url);
        let _held = hold(&repository)?;
        crate::transport::git::fetch_and_resolve(fetch_url, &repository, reference)
            .map_err(|e| Problem::new(format!("{e:#}")))
    }

    /// The tree of `url` at `commit` if the cache holds it (nothing is fetched).
    pub fn cached(&self, url: &str, commit: &str) -> Result<Option<Tree>, Problem> {
        let dir = self.tree_dir(url, commit);
        if !dir.exists() {
            return Ok(None);
        }
        let manifest_path = dir.join("manifest.json");
        let damaged = |why: String| {
            Problem::new(format!(
                "the recipe cache of {url}@{commit} is damaged: {why}"
            ))
            .with_hint(format!(
                "remove `{}` and zdd fetches it again",
                dir.display()
            ))
        };
        let text = std::fs::read_to_string(&manifest_path)
            .map_err(|e| damaged(format!("cannot read `{}`: {e}", manifest_path.display())))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| damaged(format!("`{}`: {e}", manifest_path.display())))?;
        if manifest.url != url || manifest.commit != commit {
            return Err(damaged(format!(
                "`{}` is about {}@{}",
                manifest_path.display(),
                manifest.url,
                manifest.commit
            )));
        }
        Ok(Some(Tree {
            url: url.to_string(),
            commit: commit.to_string(),
            dir,
            manifest,
        }))
    }

    /// The tree of `url` at `commit`, fetched from `fetch_url` first when the cache lacks it
    /// (not when the repository cache already has the commit).
    pub fn tree(&self, url: &str, fetch_url: &str, commit: &str) -> Result<Tree, Problem> {
        if let Some(tree) = self.cached(url, commit)? {
            return Ok(tree);
        }
        self.make_directories()?;
        let repository = self.repository(fetch_url);
        {
            let _held = hold(&repository)?;
            let known = Repository::open_bare(&repository)
                .ok()
                .and_then(|repo| {
                    let oid = Oid::from_str(commit).ok()?;
                    repo.find_commit(oid).ok().map(|_| ())
                })
                .is_some();
            if !known {
                crate::transport::git::fetch_and_resolve(fetch_url, &repository, commit)
                    .map_err(|e| Problem::new(format!("{e:#}")))?;
            }
        }
        let trees = self.root.join("trees");
        let temporary = tempfile::Builder::new()
            .prefix(".writing-")
            .tempdir_in(&trees)
            .map_err(|e| Problem::new(format!("cannot write in `{}`: {e}", trees.display())))?;
        let manifest = write_tree(&repository, url, commit, &temporary.path().join("files"))
            .map_err(|e| {
                Problem::new(format!(
                    "cannot write {url}@{commit} to the recipe cache: {e}"
                ))
            })?;
        let json = serde_json::to_string_pretty(&manifest).unwrap_or_default();
        std::fs::write(temporary.path().join("manifest.json"), json)
            .map_err(|e| Problem::new(format!("cannot write the recipe cache's manifest: {e}")))?;
        let dir = self.tree_dir(url, commit);
        // Another run may have put the same tree there meanwhile: theirs is as good.
        if std::fs::rename(temporary.path(), &dir).is_ok() {
            let _ = temporary.keep();
        }
        self.cached(url, commit)?
            .ok_or_else(|| Problem::new(format!("cannot place `{}`", dir.display())))
    }

    /// The diff of `paths` between two commits of `fetch_url`'s repository cache.
    pub fn diff(
        &self,
        fetch_url: &str,
        old: &str,
        new: &str,
        paths: &[String],
    ) -> Result<String, Problem> {
        let repository = self.repository(fetch_url);
        let problem =
            |e: git2::Error| Problem::new(format!("cannot diff {old}..{new}: {}", e.message()));
        let repo = Repository::open_bare(&repository).map_err(problem)?;
        let tree = |id: &str| -> Result<git2::Tree<'_>, git2::Error> {
            repo.find_commit(Oid::from_str(id)?)?.tree()
        };
        let (old_tree, new_tree) = (tree(old).map_err(problem)?, tree(new).map_err(problem)?);
        let mut options = DiffOptions::new();
        options.disable_pathspec_match(true);
        for path in paths {
            options.pathspec(path);
        }
        let diff = repo
            .diff_tree_to_tree(Some(&old_tree), Some(&new_tree), Some(&mut options))
            .map_err(problem)?;
        let mut out = String::new();
        diff.print(DiffFormat::Patch, |_, _, line| {
            if matches!(line.origin(), '+' | '-' | ' ') {
                out.push(line.origin());
            }
            out.push_str(&String::from_utf8_lossy(line.content()));
            true
        })
        .map_err(problem)?;
        Ok(out)
    }
}

/// Hold `repository`'s fetch lock (`<repository>.lock`) until the file returned is dropped.
fn hold(repository: &Path) -> Result<nix::fcntl::Flock<File>, Problem> {
    use nix::fcntl::{Flock, FlockArg};
    let path = PathBuf::from(format!("{}.lock", repository.display()));
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Problem::new(format!("cannot open `{}`: {e}", path.display())))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) => {
                if interrupt::should_stop() {
                    return Err(Problem::new(format!(
                        "interrupted while another run fetched into `{}`",
                        repository.display()
                    )));
                }
                file = back;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, e)) => {
                return Err(Problem::new(format!(
                    "cannot lock `{}`: {e}",
                    path.display()
                )))
            }
        }
    }
}

/// Write the files of `commit` into `destination` and say what was written. Symbolic links
/// are recorded, not made: nothing in the cache points outside it.
fn write_tree(
    repository: &Path,
    url: &str,
    commit: &str,
    destination: &Path,
) -> Result<Manifest, String> {
    let repo = Repository::open_bare(repository).map_err(|e| e.message().to_string())?;
    let oid = Oid::from_str(commit).map_err(|e| e.message().to_string())?;
    let tree = repo
        .find_commit(oid)
        .and_then(|c| c.tree())
        .map_err(|e| format!("commit {commit}: {}", e.message()))?;
    let mut manifest = Manifest {
        url: url.to_string(),
        commit: commit.to_string(),
        ..Manifest::default()
    };
    std::fs::create_dir_all(destination).map_err(|e| e.to_string())?;
    let mut failure: Option<String> = None;
    tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let Some(name) = entry.name() else {
            return TreeWalkResult::Skip;
        };
        if name.is_empty() || name == "." || name == ".." || name.contains('\\') {
            return TreeWalkResult::Skip;
        }
        let path = format!("{dir}{name}");
        match entry.kind() {
            Some(ObjectType::Tree) => {
                if let Err(e) = std::fs::create_dir_all(destination.join(&path)) {
                    failure = Some(format!("`{path}`: {e}"));
                    return TreeWalkResult::Abort;
                }
            }
            Some(ObjectType::Blob) => {
                let blob = match repo.find_blob(entry.id()) {
                    Ok(blob) => blob,
                    Err(e) => {
                        failure = Some(format!("`{path}`: {}", e.message()));
                        return TreeWalkResult::Abort;
                    }
                };
                if entry.filemode() == 0o120000 {
                    let target = String::from_utf8_lossy(blob.content()).into_owned();
                    manifest.links.insert(path, target);
                } else {
                    if let Err(e) = std::fs::write(destination.join(&path), blob.content()) {
                        failure = Some(format!("`{path}`: {e}"));
                        return TreeWalkResult::Abort;
                    }
                    manifest.files.insert(path, sha256_bytes(blob.content()));
                }
            }
            _ => {}
        }
        TreeWalkResult::Ok
    })
    .map_err(|e| failure.clone().unwrap_or_else(|| e.message().to_string()))?;
    match failure {
        Some(failure) => Err(failure),
        None => Ok(manifest),
    }
}

fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

/// Symbolic links followed inside a repository before giving up (a loop).
const MAX_LINKS: usize = 8;

impl Tree {
    /// The name errors and `zdd tasks` give the file at `path`: `URL@COMMIT/PATH`.
    pub fn source_name(&self, path: &str) -> String {
        format!("{}@{}/{path}", self.url, self.commit)
    }

    /// The file `name` (or `name.rhai`) of the repository, if there is one.
    pub fn find(&self, name: &str) -> Option<String> {
        let bare = name.strip_suffix(".rhai").unwrap_or(name);
        [name.to_string(), format!("{bare}.rhai")]
            .into_iter()
            .find(|p| self.manifest.files.contains_key(p) || self.manifest.links.contains_key(p))
    }

    /// Read `path`, following links that stay inside the repository, and check it against
    /// the manifest: a file changed since it was fetched is refused, named.
    pub fn read(&self, path: &str) -> Result<Read, Problem> {
        let mut path = path.to_string();
        for _ in 0..MAX_LINKS {
            let Some(target) = self.manifest.links.get(&path) else {
                break;
            };
            path = join_in_repository(&path, target).map_err(|_| {
                Problem::new(format!(
                    "`{}` is a symbolic link to `{target}`, outside the repository: refused",
                    self.source_name(&path)
                ))
            })?;
        }
        let Some(recorded) = self.manifest.files.get(&path) else {
            return Err(Problem::new(format!(
                "`{}` is not a file of the repository",
                self.source_name(&path)
            )));
        };
        let file = self.dir.join("files").join(&path);
        let changed = || {
            Problem::new(format!(
                "`{}` was changed after zdd fetched it (its sha256 is not the one recorded when it entered the cache): refused",
                file.display()
            ))
            .with_hint(format!(
                "remove `{}` and zdd fetches {}@{} again",
                self.dir.display(),
                self.url,
                self.commit
            ))
        };
        let is_file = std::fs::symlink_metadata(&file).is_ok_and(|m| m.file_type().is_file());
        if !is_file {
            return Err(changed());
        }
        let bytes = std::fs::read(&file)
            .map_err(|e| Problem::new(format!("cannot read `{}`: {e}", file.display())))?;
        let sha256 = sha256_bytes(&bytes);
        if &sha256 != recorded {
            return Err(changed());
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            Problem::new(format!(
                "`{}` is not UTF-8 text: a recipe is a Rhai script",
                self.source_name(&path)
            ))
        })?;
        Ok(Read { path, text, sha256 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit_files(repo: &Repository, files: &[(&str, &str)]) -> String {
        let signature = git2::Signature::now("t", "t@example.com").unwrap();
        let mut builder = repo.treebuilder(None).unwrap();
        for (name, text) in files {
            let blob = repo.blob(text.as_bytes()).unwrap();
            let mode = if name.starts_with("link") {
                0o120000
            } else {
                0o100644
            };
            builder.insert(name, blob, mode).unwrap();
        }
        let tree = repo.find_tree(builder.write().unwrap()).unwrap();
        repo.commit(Some("HEAD"), &signature, &signature, "c", &tree, &[])
            .unwrap()
            .to_string()
    }

    #[test]
    fn a_tree_is_fetched_once_checked_on_every_read() {
        let dir = tempfile::tempdir().unwrap();
        let origin = dir.path().join("origin");
        let repo = Repository::init_bare(&origin).unwrap();
        let commit = commit_files(
            &repo,
            &[
                ("a.rhai", "let x = 1;"),
                ("link-in", "a.rhai"),
                ("link-out", "../../etc/passwd"),
            ],
        );
        let cache = Cache::at(&dir.path().join("cache"));
        let url = format!("git+file://{}", origin.display());
        let fetch_url = format!("file://{}", origin.display());
        let tree = cache.tree(&url, &fetch_url, &commit).unwrap();
        assert_eq!(tree.find("a").as_deref(), Some("a.rhai"));
        assert_eq!(tree.read("a.rhai").unwrap().text, "let x = 1;");
        assert_eq!(tree.read("link-in").unwrap().path, "a.rhai");
        let refused = tree.read("link-out").err().unwrap().message;
        assert!(refused.contains("outside the repository"), "{refused}");
        // The origin gone, the cache still serves the tree.
        std::fs::remove_dir_all(&origin).unwrap();
        let tree = cache.tree(&url, &fetch_url, &commit).unwrap();
        std::fs::write(tree.dir.join("files/a.rhai"), "let x = 2;").unwrap();
        let refused = tree.read("a.rhai").err().unwrap().message;
        assert!(refused.contains("files/a.rhai` was changed"), "{refused}");
    }
}
