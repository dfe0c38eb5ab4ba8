//! A transport for unit tests: the work is real ([`Local`], on the local file system), the
//! waiting is the SSH transport's. An op sent without waiting only joins a queue; every wait
//! (a query, `sync`, `finish`, and each direct method, which [`Ssh`](super::Ssh) answers with
//! a round trip of its own) first runs the queue in order, stops at the first op that fails
//! (the remote shell skips everything after it) and counts one round trip. So a test can
//! assert what a primitive costs, and a primitive that starts waiting where it only needs to
//! tell fails a test instead of slowing a benchmark.
//!
//! As with SSH: a wait with nothing to run and nothing to ask is no round trip; the failure of
//! a sent op is kept, with its tag, until [`Transport::take_failure`]; the wait that finds it
//! returns [`EarlierFailure`] when what it asked was skipped (and `sync`/`finish` return it
//! for as long as it is kept); after that wait the host runs requests again.
//!
//! [`Counting::fail_when`] injects a fault: the ops it picks fail as a command failing on the
//! host would.

use std::sync::{Mutex, MutexGuard};

use anyhow::anyhow;

use super::{Answer, Deferred, DeferredError, EarlierFailure, Kept, Local, Op, Transport};
use crate::system::process::{LineSink, Output, ProcessError, ProcessErrorKind};

/// Picks the ops that fail: the number of ops run before it (sent or asked), and the op.
type Fault = Box<dyn Fn(usize, &Op) -> bool + Send + Sync>;

pub struct Counting {
    local: Local,
    pipe: Mutex<Pipeline>,
}

#[derive(Default)]
struct Pipeline {
    /// Sent without waiting and not run yet, oldest first, with their senders' tags (and
    /// where the answer goes, for one sent with `send_kept`).
    sent: Vec<(Op, u64, Option<u64>)>,
    /// The answers of ops sent with `send_kept`, once run (`None`: failed or skipped).
    kept: std::collections::BTreeMap<u64, Option<Answer>>,
    next_kept: u64,
    /// The first sent op that failed, until it is taken.
    failure: Option<Deferred>,
    round_trips: u64,
    /// Every op that ran (a failed one included), in order.
    ran: Vec<Op>,
    fault: Option<Fault>,
}

impl Counting {
    pub fn new() -> anyhow::Result<Counting> {
        Ok(Counting {
            local: Local::new()?,
            pipe: Mutex::new(Pipeline::default()),
        })
    }

    /// From now on, an op fails when `fails(index, op)` is true; `index` counts the ops run
    /// before it (the first is 0), sent or asked.
    pub fn fail_when(&self, fails: impl Fn(usize, &Op) -> bool + Send + Sync + 'static) {
        self.pipe().fault = Some(Box::new(fails));
    }

    /// The ops that ran so far, in order (the one that failed included, the skipped ones not).
    pub fn ran(&self) -> Vec<Op> {
        self.pipe().ran.clone()
    }

    /// How many ops were sent and have not run yet.
    pub fn queued(&self) -> usize {
        self.pipe().sent.len()
    }

    fn pipe(&self) -> MutexGuard<'_, Pipeline> {
        self.pipe.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One op, on the local file system, unless the fault picks it.
    fn run(&self, pipe: &mut Pipeline, op: Op) -> anyhow::Result<Answer> {
        if pipe.picks(&op) {
            return Err(injected(op));
        }
        self.local.apply(op)
    }

    /// The start of a wait: one round trip, in which what was sent runs, in order, until an op
    /// fails (kept for `take_failure` unless an earlier one still is). False when one failed:
    /// the host skips what the wait asks.
    fn wait(&self, pipe: &mut Pipeline) -> bool {
        pipe.round_trips += 1;
        let mut going = true;
        for (op, tag, keep) in std::mem::take(&mut pipe.sent) {
            if !going {
                if let Some(id) = keep {
                    pipe.kept.insert(id, None);
                }
                continue;
            }
            let repository = match &op {
                Op::Checkout { repository, .. } => repository.clone(),
                _ => String::new(),
            };
            match self.run(pipe, op) {
                Ok(answer) => {
                    if let Some(id) = keep {
                        pipe.kept.insert(id, Some(answer));
                    }
                }
                Err(e) => {
                    if let Some(id) = keep {
                        pipe.kept.insert(id, None);
                    }
                    if pipe.failure.is_none() {
                        pipe.failure = Some(Deferred {
                            tag,
                            error: deferred(e, repository),
                        });
                    }
                    going = false;
                }
            }
        }
        going
    }

    /// What was sent, then `ops`, in one round trip (none when both are empty). Each op's
    /// result; `None` for one skipped because an op before it failed.
    fn ask(&self, ops: Vec<Op>) -> Vec<Option<anyhow::Result<Answer>>> {
        let mut pipe = self.pipe();
        if pipe.sent.is_empty() && ops.is_empty() {
            return Vec::new();
        }
        let mut going = self.wait(&mut pipe);
        ops.into_iter()
            .map(|op| {
                going.then(|| {
                    let answer = self.run(&mut pipe, op);
                    going = answer.is_ok();
                    answer
                })
            })
            .collect()
    }

    /// A direct method that is no op: what was sent, then `direct`, in one round trip.
    fn call<T>(&self, direct: impl FnOnce(&Local) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let going = self.wait(&mut self.pipe());
        if !going {
            return Err(self.earlier());
        }
        direct(&self.local)
    }

    /// What a wait returns when what it asked was skipped.
    fn earlier(&self) -> anyhow::Error {
        match self.pipe().failure.clone() {
            Some(failure) => EarlierFailure(failure).into(),
            None => anyhow!("a request was skipped"),
        }
    }

    fn one(&self, op: Op) -> anyhow::Result<Answer> {
        Ok(self.query(vec![op])?.pop().unwrap_or(Answer::Done))
    }
}

impl Pipeline {
    /// `op` runs now: whether the fault picks it.
    fn picks(&mut self, op: &Op) -> bool {
        let index = self.ran.len();
        self.ran.push(op.clone());
        self.fault.as_ref().is_some_and(|fails| fails(index, op))
    }
}

/// A sent op's error as the SSH transport reports it.
fn deferred(error: anyhow::Error, repository: String) -> DeferredError {
    let error = match error.downcast::<ProcessError>() {
        Ok(e) => return DeferredError::Command(e),
        Err(e) => e,
    };
    let error = match error.downcast::<super::link_shared::Refusal>() {
        Ok(refusal) => return DeferredError::Refused(refusal),
        Err(e) => e,
    };
    match error.downcast::<crate::transport::git::RefError>() {
        Ok(error) => DeferredError::Ref { error, repository },
        Err(e) => DeferredError::Message(format!("{e:#}")),
    }
}

/// An injected fault, as the host would word it: a command's status, or an op's message.
fn injected(op: Op) -> anyhow::Error {
    match op {
        Op::Exec { display, .. } => ProcessError {
            command: display,
            kind: ProcessErrorKind::Exit(1),
            stdout_tail: String::new(),
            stderr_tail: "injected fault".into(),
        }
        .into(),
        op => anyhow!("injected fault: {op:?}"),
    }
}

impl Transport for Counting {
    fn exec(
        &self,
        script: &str,
        cwd: Option<&str>,
        display: &str,
        sink: Option<LineSink>,
    ) -> Result<Output, ProcessError> {
        let op = Op::Exec {
            script: script.into(),
            cwd: cwd.map(str::to_string),
            display: display.into(),
        };
        // Over SSH a command that fails here stops nothing: nothing is sent after it.
        let spawn = |e: anyhow::Error| ProcessError {
            command: display.to_string(),
            kind: ProcessErrorKind::Spawn(format!("{e:#}")),
            stdout_tail: String::new(),
            stderr_tail: String::new(),
        };
        let mut pipe = self.pipe();
        if !self.wait(&mut pipe) {
            drop(pipe);
            return Err(spawn(self.earlier()));
        }
        if pipe.picks(&op) {
            return Err(injected(op).downcast().unwrap_or_else(spawn));
        }
        drop(pipe);
        self.local.exec(script, cwd, display, sink)
    }

    fn read_file(&self, path: &str) -> anyhow::Result<Option<String>> {
        Ok(self.one(Op::ReadFile(path.into()))?.text())
    }

    fn write_file(&self, path: &str, contents: &str) -> anyhow::Result<()> {
        self.one(Op::WriteFile {
            path: path.into(),
            contents: contents.into(),
        })
        .map(drop)
    }

    fn append_line(&self, path: &str, line: &str) -> anyhow::Result<()> {
        self.one(Op::AppendLine {
            path: path.into(),
            line: line.into(),
        })
        .map(drop)
    }

    fn create_dir_all(&self, path: &str) -> anyhow::Result<()> {
        self.one(Op::CreateDirAll(path.into())).map(drop)
    }

    fn create_exclusive(&self, path: &str, contents: &str) -> anyhow::Result<bool> {
        Ok(self
            .one(Op::CreateExclusive {
                path: path.into(),
                contents: contents.into(),
            })?
            .flag())
    }

    fn remove_file(&self, path: &str) -> anyhow::Result<()> {
        self.one(Op::RemoveFile(path.into())).map(drop)
    }

    fn remove_dir_all(&self, path: &str) -> anyhow::Result<()> {
        self.one(Op::RemoveDirAll(path.into())).map(drop)
    }

    fn exists(&self, path: &str) -> anyhow::Result<bool> {
        Ok(self.one(Op::Exists(path.into()))?.flag())
    }

    fn file_type(&self, path: &str) -> anyhow::Result<Option<super::FileType>> {
        Ok(self.one(Op::FileType(path.into()))?.kind())
    }

    fn rename(&self, from: &str, to: &str) -> anyhow::Result<()> {
        self.one(Op::Rename {
            from: from.into(),
            to: to.into(),
        })
        .map(drop)
    }

    fn exchange(&self, a: &str, b: &str) -> anyhow::Result<()> {
        self.one(Op::Exchange {
            a: a.into(),
            b: b.into(),
        })
        .map(drop)
    }

    fn is_dir(&self, path: &str) -> anyhow::Result<bool> {
        self.call(|local| local.is_dir(path))
    }

    fn list_dir(&self, path: &str) -> anyhow::Result<Vec<String>> {
        Ok(self.one(Op::ListDir(path.into()))?.names())
    }

    fn read_link(&self, path: &str) -> anyhow::Result<Option<String>> {
        Ok(self.one(Op::ReadLink(path.into()))?.text())
    }

    fn symlink(&self, target: &str, link: &str) -> anyhow::Result<()> {
        self.one(Op::Symlink {
            target: target.into(),
            link: link.into(),
        })
        .map(drop)
    }

    fn replace_symlink(&self, target: &str, link: &str) -> anyhow::Result<()> {
        self.one(Op::ReplaceSymlink {
            target: target.into(),
            link: link.into(),
        })
        .map(drop)
    }

    fn find_program(&self, program: &str) -> anyhow::Result<Option<String>> {
        self.call(|local| local.find_program(program))
    }

    fn signal(&self, pid: i32, signal: Option<nix::sys::signal::Signal>) -> anyhow::Result<()> {
        self.call(|local| local.signal(pid, signal))
    }

    fn resolve(&self, repository: &str, cache: &str, reference: &str) -> anyhow::Result<String> {
        self.call(|local| local.resolve(repository, cache, reference))
    }

    fn upload(&self, source: &str, destination: &str, sha256: &str) -> anyhow::Result<()> {
        self.call(|local| local.upload(source, destination, sha256))
    }

    fn unpack(
        &self,
        archive: &str,
        destination: &str,
        manifest: &str,
        files: usize,
        links: &str,
    ) -> anyhow::Result<()> {
        self.call(|local| local.unpack(archive, destination, manifest, files, links))
    }

    fn has_artifact(&self, path: &str, sha256: &str) -> anyhow::Result<bool> {
        self.call(|local| local.has_artifact(path, sha256))
    }

    fn download(&self, source: &str, destination: &std::path::Path) -> anyhow::Result<u64> {
        self.call(|local| local.download(source, destination))
    }

    fn export(&self, cache: &str, commit: &str, destination: &str) -> anyhow::Result<()> {
        self.one(Op::Export {
            cache: cache.into(),
            commit: commit.into(),
            destination: destination.into(),
        })
        .map(drop)
    }

    fn log_oneline(
        &self,
        cache: &str,
        from: Option<&str>,
        to: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<String>> {
        self.call(|local| local.log_oneline(cache, from, to, limit))
    }

    fn send(&self, op: Op, tag: u64) -> anyhow::Result<()> {
        self.pipe().sent.push((op, tag, None));
        Ok(())
    }

    fn send_kept(&self, op: Op, tag: u64) -> anyhow::Result<Kept> {
        let mut pipe = self.pipe();
        let id = pipe.next_kept;
        pipe.next_kept += 1;
        pipe.sent.push((op, tag, Some(id)));
        Ok(Kept::Waiting(id))
    }

    fn collect(&self, kept: &Kept) -> anyhow::Result<Option<Answer>> {
        let id = match kept {
            Kept::Ready(answer) => return Ok(Some(answer.clone())),
            Kept::Waiting(id) => *id,
        };
        if !self.pipe().kept.contains_key(&id) {
            self.ask(Vec::new());
        }
        Ok(self.pipe().kept.get(&id).cloned().flatten())
    }

    fn query(&self, ops: Vec<Op>) -> anyhow::Result<Vec<Answer>> {
        let mut answers = Vec::new();
        for answer in self.ask(ops) {
            match answer {
                Some(answer) => answers.push(answer?),
                None => return Err(self.earlier()),
            }
        }
        Ok(answers)
    }

    fn sync(&self) -> anyhow::Result<()> {
        self.ask(Vec::new());
        match self.pipe().failure.clone() {
            Some(failure) => Err(EarlierFailure(failure).into()),
            None => Ok(()),
        }
    }

    // `finish` is `sync`, as over SSH (which also lets the connection go).

    fn take_failure(&self) -> Option<Deferred> {
        self.pipe().failure.take()
    }

    fn round_trips(&self) -> u64 {
        self.pipe().round_trips
    }

    fn unanswered(&self) -> usize {
        self.pipe().sent.len()
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn dir(root: &Path, name: &str) -> Op {
        Op::CreateDirAll(root.join(name).display().to_string())
    }

    fn exists(root: &Path, name: &str) -> bool {
        root.join(name).exists()
    }

    #[test]
    fn a_sent_op_runs_at_the_next_wait() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        let host = Counting::new().unwrap();
        host.send(dir(root, "a"), 0).unwrap();
        host.send(dir(root, "a/b"), 1).unwrap();
        assert!(!exists(root, "a"), "sent, not run");
        assert_eq!((host.round_trips(), host.queued()), (0, 2));
        let answers = host
            .query(vec![Op::Exists(root.join("a/b").display().to_string())])
            .unwrap();
        assert_eq!(answers, [Answer::Flag(true)], "ran before what was asked");
        assert_eq!((host.round_trips(), host.queued()), (1, 0));
        // A wait with nothing to run and nothing to ask costs nothing; a direct method, one.
        host.sync().unwrap();
        host.finish().unwrap();
        assert_eq!(host.round_trips(), 1);
        assert!(host.is_dir(&root.display().to_string()).unwrap());
        assert!(host.read_file("/nonexistent/x").unwrap().is_none());
        assert_eq!(host.round_trips(), 3);
    }

    #[test]
    fn a_failed_sent_op_skips_the_rest_and_is_kept_with_its_tag() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        let host = Counting::new().unwrap();
        host.fail_when(|_, op| matches!(op, Op::CreateDirAll(path) if path.ends_with("/b")));
        host.send(dir(root, "a"), 7).unwrap();
        host.send(dir(root, "b"), 8).unwrap();
        host.send(dir(root, "c"), 9).unwrap();
        let error = host.query(vec![dir(root, "d")]).unwrap_err();
        let EarlierFailure(deferred) = error.downcast::<EarlierFailure>().unwrap();
        assert_eq!(deferred.tag, 8);
        assert!(exists(root, "a"));
        for skipped in ["b", "c", "d"] {
            assert!(!exists(root, skipped), "{skipped} ran after the failure");
        }
        assert_eq!(host.ran().len(), 2);
        assert_eq!(host.round_trips(), 1);
        // Kept until taken: every sync says so. The host runs requests again meanwhile.
        assert!(host.sync().unwrap_err().is::<EarlierFailure>());
        host.query(vec![dir(root, "e")]).unwrap();
        assert!(exists(root, "e"));
        assert_eq!(host.take_failure().unwrap().tag, 8);
        assert!(host.take_failure().is_none());
        host.finish().unwrap();
    }

    #[test]
    fn a_failed_asked_op_is_its_own_error_and_not_kept() {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path();
        let host = Counting::new().unwrap();
        let command = Op::Exec {
            script: "exit 3".into(),
            cwd: None,
            display: "exit 3".into(),
        };
        let error = host.query(vec![command, dir(root, "a")]).unwrap_err();
        assert!(error.is::<ProcessError>(), "{error:#}");
        assert!(!exists(root, "a"), "ran after the failure");
        assert!(host.take_failure().is_none());
        // A direct command that fails stops nothing either.
        host.send(dir(root, "b"), 0).unwrap();
        assert!(host.exec("exit 4", None, "exit 4", None).is_err());
        assert!(exists(root, "b"));
        assert_eq!(host.round_trips(), 2);
        host.sync().unwrap();
    }
}
