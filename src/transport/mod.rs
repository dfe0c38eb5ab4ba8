//! Where commands and file operations happen.
//!
//! A primitive never touches the file system or starts a process itself: it asks the host's
//! [`Transport`]. The local transport uses std, nix and git2 directly; a remote transport (SSH)
//! implements the same operations with the same meaning (atomic rename for the swap, exclusive
//! create for the lock) so every primitive works on both.

#[cfg(test)]
pub mod counting;
pub mod git;
pub mod link_shared;
mod local;
pub mod op;
mod remote_shell;
pub mod ssh;

pub use local::Local;
pub use op::{Answer, Deferred, DeferredError, EarlierFailure, Kept, Op};
pub use ssh::Ssh;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_carry_the_pid() {
        let pid = std::process::id();
        let temp = temporary_path("/srv/app/.zdd/lock", "new");
        assert_eq!(temp, format!("/srv/app/.zdd/.lock.new.{pid}"));
        assert_eq!(leftover_pid(&format!(".lock.new.{pid}")), Some(pid));
        assert_eq!(leftover_pid(".current.swap.12"), Some(12));
        assert_eq!(leftover_pid(".env"), None);
        assert_eq!(leftover_pid(".releases.jsonl.backup.12"), None);
        assert_eq!(leftover_pid("current"), None);
    }
}

use crate::system::process::{LineSink, Output, ProcessError};

/// What every host can do.
pub trait Transport: Send + Sync {
    /// Run `script` with `sh -c` on the host. `display` is what errors and logs show.
    fn exec(
        &self,
        script: &str,
        cwd: Option<&str>,
        display: &str,
        sink: Option<LineSink>,
    ) -> Result<Output, ProcessError>;

    /// The contents of a file, or `None` when it does not exist.
    fn read_file(&self, path: &str) -> anyhow::Result<Option<String>>;
    /// Replace a file's contents atomically (temp file + rename).
    fn write_file(&self, path: &str, contents: &str) -> anyhow::Result<()>;
    /// Append one line (a newline is added) to a file, creating it.
    fn append_line(&self, path: &str, line: &str) -> anyhow::Result<()>;
    /// `mkdir -p`.
    fn create_dir_all(&self, path: &str) -> anyhow::Result<()>;
    /// Create `path` with `contents` only if nothing is there; `false` when something was.
    fn create_exclusive(&self, path: &str, contents: &str) -> anyhow::Result<bool>;
    /// Remove a file or symlink; missing is fine.
    fn remove_file(&self, path: &str) -> anyhow::Result<()>;
    /// Remove a directory tree; missing is fine.
    fn remove_dir_all(&self, path: &str) -> anyhow::Result<()>;
    /// Whether anything (file, dir, symlink, even dangling) is at `path`.
    fn exists(&self, path: &str) -> anyhow::Result<bool>;
    /// What is at `path`, without following a symlink there (lstat), or `None`.
    fn file_type(&self, path: &str) -> anyhow::Result<Option<FileType>>;
    /// Rename `from` to `to` (rename(2)); `to` must not be a non-empty directory.
    fn rename(&self, from: &str, to: &str) -> anyhow::Result<()>;
    /// Swap `a` and `b` atomically (see `Op::Exchange`).
    fn exchange(&self, a: &str, b: &str) -> anyhow::Result<()>;
    /// Whether `path` is a directory (following symlinks).
    fn is_dir(&self, path: &str) -> anyhow::Result<bool>;
    /// The names in a directory, sorted; empty when it does not exist.
    fn list_dir(&self, path: &str) -> anyhow::Result<Vec<String>>;
    /// Where a symlink points, or `None` when `path` is not a symlink.
    fn read_link(&self, path: &str) -> anyhow::Result<Option<String>>;
    /// Create a symlink `link` -> `target`.
    fn symlink(&self, target: &str, link: &str) -> anyhow::Result<()>;
    /// Point `link` at `target` atomically: a temporary link renamed over `link` (rename(2)),
    /// then read back. At no moment is `link` missing.
    fn replace_symlink(&self, target: &str, link: &str) -> anyhow::Result<()>;
    /// The path of `program` found on the host's PATH, if any.
    fn find_program(&self, program: &str) -> anyhow::Result<Option<String>>;
    /// Send `signal` (e.g. `SIGUSR2`) to process `pid` on the host; `None` only checks that
    /// the process exists.
    fn signal(&self, pid: i32, signal: Option<nix::sys::signal::Signal>) -> anyhow::Result<()>;
    /// Fetch `repository` into the bare cache `cache` (created on first use) and resolve
    /// `reference` (branch, tag, full or short commit, or `HEAD`) to a full commit id.
    fn resolve(&self, repository: &str, cache: &str, reference: &str) -> anyhow::Result<String>;
    /// Write the tree of `commit` from the cache into `destination`, which must exist.
    fn export(&self, cache: &str, commit: &str, destination: &str) -> anyhow::Result<()>;
    /// `git log --oneline from..to` in the cache: the commits `to` has and `from` has not (all of
    /// `to`'s history without `from`), newest first, at most `limit`, each as `abbrev subject`.
    /// `from` and `to` are commit ids.
    fn log_oneline(
        &self,
        cache: &str,
        from: Option<&str>,
        to: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<String>>;

    /// Write the local file `source` to `destination` on the host, kept only when what
    /// arrived has the sha256 `sha256` ([`Op::Upload`]).
    fn upload(&self, source: &str, destination: &str, sha256: &str) -> anyhow::Result<()>;
    /// Unpack `archive` into `destination` and check it against the manifest ([`Op::Unpack`]).
    fn unpack(
        &self,
        archive: &str,
        destination: &str,
        manifest: &str,
        files: usize,
        links: &str,
    ) -> anyhow::Result<()>;
    /// Whether `path` is a file whose sha256 is `sha256` ([`Op::HasArtifact`]).
    fn has_artifact(&self, path: &str, sha256: &str) -> anyhow::Result<bool>;
    /// Copy the host's file `source` to `destination` on zdd's machine (a build host's
    /// result), over the connection zdd has; returns its size.
    fn download(&self, source: &str, destination: &std::path::Path) -> anyhow::Result<u64>;

    /// Run `op` after everything sent before, without waiting for its answer. When it fails,
    /// every request after it is skipped, the next wait returns an [`EarlierFailure`], and
    /// [`Transport::take_failure`] gives the failure with `tag`. The local transport runs it
    /// now and returns its error at once.
    fn send(&self, op: Op, tag: u64) -> anyhow::Result<()> {
        let _ = tag;
        self.apply(op).map(|_| ())
    }

    /// Like [`Transport::send`], and the answer is kept: [`Transport::collect`] returns it,
    /// waiting only when no wait has read it yet. The local transport runs it now.
    fn send_kept(&self, op: Op, tag: u64) -> anyhow::Result<Kept> {
        let _ = tag;
        self.apply(op).map(Kept::Ready)
    }

    /// The answer of a request sent with [`Transport::send_kept`]: one round trip if no wait
    /// has read it yet, none otherwise. `None` when it failed or was skipped (the failure is
    /// then [`Transport::take_failure`]'s, or the error of this call).
    fn collect(&self, kept: &Kept) -> anyhow::Result<Option<Answer>> {
        match kept {
            Kept::Ready(answer) => Ok(Some(answer.clone())),
            Kept::Waiting(_) => Ok(None),
        }
    }

    /// Run `ops` after everything sent before and wait for their answers: one round trip.
    /// Stops at the first op that fails.
    fn query(&self, ops: Vec<Op>) -> anyhow::Result<Vec<Answer>> {
        ops.into_iter().map(|op| self.apply(op)).collect()
    }

    /// [`Transport::query`], with `ahead` (ops and their senders' tags) written right after
    /// `ops`, in the same flight, and not waited for: the answers of `ops`, and where each
    /// answer of `ahead` will be (as [`Transport::send_kept`]). A transport that does each op
    /// at once sends nothing ahead (an empty list): what it answers `ops` must say so.
    fn query_ahead(
        &self,
        ops: Vec<Op>,
        ahead: Vec<(Op, u64)>,
    ) -> anyhow::Result<(Vec<Answer>, Vec<Kept>)> {
        let _ = ahead;
        Ok((self.query(ops)?, Vec::new()))
    }

    /// The requests sent with `tags` do nothing (a planned deploy's, after its check found no
    /// plan): a connection lost while they are unanswered is not theirs to report, but the
    /// oldest unanswered request's after them.
    fn void(&self, tags: &[u64]) {
        let _ = tags;
    }

    /// Wait until everything sent has been answered.
    fn sync(&self) -> anyhow::Result<()> {
        Ok(())
    }

    /// The last wait of a run: everything sent is answered, and the connection is let go
    /// when nothing failed.
    fn finish(&self) -> anyhow::Result<()> {
        self.sync()
    }

    /// The failure of a request sent without waiting, once a wait has found it.
    fn take_failure(&self) -> Option<Deferred> {
        None
    }

    /// How many requests were sent and not answered yet (0: everything sent is done).
    fn unanswered(&self) -> usize {
        0
    }

    /// How many times zdd waited for the host since the connection was up.
    fn round_trips(&self) -> u64 {
        0
    }

    /// How many requests zdd wrote to the host (0 where nothing is sent over a wire).
    fn requests(&self) -> u64 {
        0
    }

    /// How many bytes zdd wrote to the host (0 where nothing is sent over a wire).
    fn bytes_sent(&self) -> u64 {
        0
    }

    /// One op, at once, with the methods above.
    fn apply(&self, op: Op) -> anyhow::Result<Answer> {
        Ok(match op {
            Op::Exec {
                script,
                cwd,
                display,
            } => Answer::Output(self.exec(&script, cwd.as_deref(), &display, None)?),
            Op::WriteFile { path, contents } => {
                self.write_file(&path, &contents)?;
                Answer::Done
            }
            Op::KeepFile {
                directory,
                path,
                contents,
            } => {
                let written = self
                    .create_dir_all(&directory)
                    .and_then(|()| self.write_file(&path, &contents));
                if written.is_err() {
                    let _ = self.remove_file(&temporary_path(&path, "tmp"));
                }
                Answer::Done
            }
            Op::AppendLine { path, line } => {
                self.append_line(&path, &line)?;
                Answer::Done
            }
            Op::CreateDirAll(path) => {
                self.create_dir_all(&path)?;
                Answer::Done
            }
            Op::RemoveFile(path) => {
                self.remove_file(&path)?;
                Answer::Done
            }
            Op::RemoveDirAll(path) => {
                self.remove_dir_all(&path)?;
                Answer::Done
            }
            Op::Rename { from, to } => {
                self.rename(&from, &to)?;
                Answer::Done
            }
            Op::Symlink { target, link } => {
                self.symlink(&target, &link)?;
                Answer::Done
            }
            Op::Exchange { a, b } => {
                self.exchange(&a, &b)?;
                Answer::Done
            }
            Op::ReplaceSymlink { target, link } => {
                self.replace_symlink(&target, &link)?;
                Answer::Done
            }
            Op::Export {
                cache,
                commit,
                destination,
            } => {
                self.export(&cache, &commit, &destination)?;
                Answer::Done
            }
            Op::Upload {
                source,
                destination,
                sha256,
                ..
            } => {
                self.upload(&source, &destination, &sha256)?;
                Answer::Done
            }
            Op::Unpack {
                archive,
                destination,
                manifest,
                files,
                links,
            } => {
                self.unpack(&archive, &destination, &manifest, files, &links)?;
                Answer::Done
            }
            Op::HasArtifact { path, sha256 } => Answer::Flag(self.has_artifact(&path, &sha256)?),
            Op::Checkout {
                repository,
                cache,
                reference,
                destination,
                log,
                record,
            } => {
                let commit = self.resolve(&repository, &cache, &reference)?;
                self.export(&cache, &commit, &destination)?;
                self.write_file(&format!("{destination}/REVISION"), &format!("{commit}\n"))?;
                self.append_line(&log, &op::with_commit(&record, &commit))?;
                Answer::Text(Some(commit))
            }
            Op::ReadLine(path) => Answer::Text(
                self.read_file(&path)?
                    .map(|text| text.lines().next().unwrap_or_default().to_string()),
            ),
            Op::Prefetch { .. } => Answer::Done,
            Op::WritePlan { .. } => Answer::Done,
            Op::RollbackAsPlanned { .. } | Op::DeployPlanCheck { .. } => Answer::Text(None),
            // Never planned here (the check above says so): nothing to do.
            Op::IfPlanned(_)
            | Op::AppendPlanned { .. }
            | Op::RemoveAsPlanned { .. }
            | Op::AdvancePlan { .. }
            | Op::Leave => Answer::Done,
            Op::LinkShared {
                release,
                shared_root,
                entries,
            } => {
                // The script exits REFUSED with the reason on stdout: made a success here, so
                // its stdout comes back whole.
                let script = format!(
                    "({}\n); zdd_s=$?; [ \"$zdd_s\" = {} ] && exit 0; exit \"$zdd_s\"",
                    link_shared::script(&release, &shared_root, &entries)?,
                    link_shared::REFUSED
                );
                let output = self.exec(&script, None, "link the shared entries", None)?;
                if !output.stdout.is_empty() {
                    return Err(
                        match link_shared::refusal(&output.stdout, &shared_root, &entries) {
                            Some(refusal) => refusal.into(),
                            None => anyhow::anyhow!(
                                "cannot link the shared entries: {}",
                                output.stdout.trim()
                            ),
                        },
                    );
                }
                Answer::Done
            }
            Op::RemoveIfHolds { path, contents } => {
                match self.read_file(&path)? {
                    Some(now) if now == contents => self.remove_file(&path)?,
                    Some(now) => anyhow::bail!("{}: {now}", left_in_place(&path)),
                    None => {}
                }
                Answer::Done
            }
            Op::ExpectLink {
                link,
                target,
                otherwise,
            } => {
                let now = self.read_link(&link)?;
                anyhow::ensure!(
                    now.as_deref() == Some(target.as_str()),
                    "{otherwise} `{}`",
                    now.as_deref().unwrap_or("nothing")
                );
                Answer::Done
            }
            Op::ExpectDirectory { path, otherwise } => {
                anyhow::ensure!(self.is_dir(&path)?, "{otherwise}");
                Answer::Done
            }
            Op::FindProgram(name) => Answer::Text(self.find_program(&name)?),
            Op::ReadFile(path) => Answer::Text(self.read_file(&path)?),
            Op::ReadIfReadable(path) => Answer::Text(self.read_file(&path).ok().flatten()),
            Op::ReadLink(path) => Answer::Text(self.read_link(&path)?),
            Op::FileType(path) => Answer::Kind(self.file_type(&path)?),
            Op::ListDir(path) => Answer::Names(self.list_dir(&path)?),
            Op::Exists(path) => Answer::Flag(self.exists(&path)?),
            Op::CreateExclusive { path, contents } => {
                Answer::Flag(self.create_exclusive(&path, &contents)?)
            }
        })
    }
}

/// Why [`Op::RemoveIfHolds`] left a file (what it holds now follows).
pub fn left_in_place(path: &str) -> String {
    format!("`{path}` was left in place: it no longer holds what this run wrote, but")
}

/// What a path is, as lstat(2) tells it: a symlink is never followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    File,
    Directory,
    Symlink,
    /// A socket, a FIFO, a device.
    Other,
}

/// Temporary files are named `.{name}.{purpose}.{pid}` beside the file they become, with the
/// pid of the zdd process that made them: a run that was killed leaves them behind, and
/// [`leftover_pid`] lets the next run (holding the lock) find and remove them.
pub fn temporary_path(path: &str, purpose: &str) -> String {
    let (dir, name) = match path.rsplit_once('/') {
        Some((dir, name)) => (format!("{dir}/"), name),
        None => (String::new(), path),
    };
    format!("{dir}.{name}.{purpose}.{}", std::process::id())
}

/// The purposes of temporary names.
pub const TEMPORARY_PURPOSES: [&str; 4] = ["tmp", "new", "swap", STAGE];

/// The purpose of a temporary *directory* (a checkout staged by `Op::Prefetch`).
pub const STAGE: &str = "stage";

/// Whether a temporary name is a directory's (see [`STAGE`]).
pub fn leftover_is_dir(name: &str) -> bool {
    name.rsplit('.').nth(1) == Some(STAGE)
}

/// The pid in a temporary file's name (see [`temporary_path`]), if `name` is one.
pub fn leftover_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (stem, pid) = rest.rsplit_once('.')?;
    let (_, purpose) = stem.rsplit_once('.')?;
    if !TEMPORARY_PURPOSES.contains(&purpose) {
        return None;
    }
    pid.parse().ok()
}

/// Refuse anything but a commit id (hex), so that no revision can be read as an option.
pub fn check_commit_id(id: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        (4..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_hexdigit()),
        "`{id}` is not a commit id"
    );
    Ok(())
}
