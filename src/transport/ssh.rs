//! A remote host over the system OpenSSH client (it honours ~/.ssh/config, the agent,
//! known_hosts and ProxyJump). One connection per host per run, `BatchMode`, a ControlMaster
//! socket in a short private directory, and one remote `sh` that every operation goes through.
//! Every path and value is quoted with `crate::values::quote`; nothing else builds remote commands.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context};

use std::collections::{BTreeMap, VecDeque};

use super::link_shared::{self, SharedEntry};
use super::op::PlanGuard;
use super::remote_shell::{Accept, RemoteShell, Reply, Shell};
use super::{Answer, Deferred, DeferredError, EarlierFailure, FileType, Kept, Op, Transport};
use crate::output::secrets::Secrets;
use crate::system::process::{self, LineSink, Output, ProcessError, ProcessErrorKind, TAIL_LINES};
use crate::transport::git::{self, RefError};
use crate::values::quote::word;

/// Status the helper scripts below use for "not there" (not an error).
const ABSENT: i32 = 100;
/// Status of the fetch script when the host has no `git`.
const NO_GIT: i32 = 101;
/// The bytes of a host's file read by one request of [`Transport::download`] (a third more
/// as base64), and how many such requests go in one wait.
const DOWNLOAD_PIECE: u64 = 768 * 1024;
const DOWNLOAD_BATCH: usize = 16;

/// How to reach a host, from its settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub hostname: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<String>,
    pub config_file: Option<String>,
    pub forward_agent: bool,
    pub extra_arguments: Vec<String>,
}

impl Target {
    /// `user@hostname:port`, for messages.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        if let Some(user) = &self.user {
            text.push_str(user);
            text.push('@');
        }
        text.push_str(&self.hostname);
        if let Some(port) = self.port {
            text.push_str(&format!(":{port}"));
        }
        text
    }

    /// The ssh arguments (without the program) up to the host: the remote shell's command
    /// follows ([`RemoteShell`] adds it).
    pub fn arguments(&self, control_path: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut option = |key: &str, value: &str| {
            args.push("-o".into());
            args.push(format!("{key}={value}").into());
        };
        option("BatchMode", "yes");
        option("ControlMaster", "auto");
        option("ControlPath", &control_path.display().to_string());
        option("ControlPersist", "no");
        option("ServerAliveInterval", "15");
        args.push("-T".into());
        if let Some(config) = &self.config_file {
            args.push("-F".into());
            args.push(config.into());
        }
        if let Some(port) = self.port {
            args.push("-p".into());
            args.push(port.to_string().into());
        }
        if let Some(identity) = &self.identity_file {
            args.push("-i".into());
            args.push(identity.into());
        }
        if self.forward_agent {
            args.push("-A".into());
        }
        args.extend(self.extra_arguments.iter().map(OsString::from));
        if let Some(user) = &self.user {
            args.push("-l".into());
            args.push(user.into());
        }
        args.push(self.hostname.clone().into());
        args
    }
}

pub struct Ssh {
    label: String,
    pipe: Mutex<Pipeline>,
}

/// The remote shell and what was written to it and not answered yet.
struct Pipeline {
    shell: RemoteShell,
    /// Requests written and not answered yet, oldest first.
    waiting: VecDeque<Sent>,
    /// The first request sent without waiting that failed, until the runner takes it.
    failure: Option<Deferred>,
    round_trips: u64,
    /// Requests written (the work asked of the host, waited for or not).
    requests: u64,
    /// The answers of requests sent with `send_kept`, once read (`None`: failed or skipped).
    kept: BTreeMap<u64, Option<Answer>>,
    next_kept: u64,
    /// The remote shell ended on its own (a planned rollback): nothing more is sent.
    left: bool,
    /// It may end on its own once it has answered (a planned deploy's last request,
    /// [`Op::Leave`]): the run's end does not ask it to.
    may_have_left: bool,
    /// Something was written since the last wait began: the next wait is a round trip.
    written: bool,
    /// The tags of requests that do nothing ([`Transport::void`]).
    void: std::collections::BTreeSet<u64>,
}

struct Sent {
    accept: Accept,
    /// For a request sent without waiting: its sender's tag, and how its failure is worded.
    deferred: Option<(u64, Request)>,
    /// For a request sent with `send_kept`: where its answer goes, and its op.
    keep: Option<(u64, Op)>,
}

/// One request: a shell line, the statuses it accepts, and how its failure is worded.
#[derive(Clone)]
struct Request {
    script: String,
    cwd: Option<String>,
    accept: Accept,
    /// Failures say `{what} on `host`: {stderr}`; `None`: a command (status and output tails).
    what: Option<String>,
    display: String,
    /// For the fetch of an [`Op::Checkout`]: the repository and the reference, so a failure is
    /// a [`RefError`].
    fetch: Option<(String, String)>,
    /// For an [`Op::LinkShared`]: the shared root and the entries, to read a refusal.
    link: Option<(String, Vec<SharedEntry>)>,
    /// The script runs in the remote shell itself (see `remote_shell::Shell::inline`).
    inline: bool,
}

impl Request {
    fn must(script: String, what: String) -> Request {
        Request {
            script,
            cwd: None,
            accept: Accept::Zero,
            what: Some(what),
            display: String::new(),
            fetch: None,
            link: None,
            inline: false,
        }
    }

    /// Runs without a subshell: the script neither exits nor changes directory or variables.
    fn inline(self) -> Request {
        Request {
            inline: true,
            ..self
        }
    }

    fn maybe(script: String, what: String) -> Request {
        Request {
            accept: Accept::ZeroOr(ABSENT),
            ..Request::must(script, what)
        }
    }

    fn command(&self) -> Shell<'_> {
        Shell {
            script: &self.script,
            cwd: self.cwd.as_deref(),
            accept: self.accept,
            inline: self.inline,
        }
    }

    /// The error of a reply this request does not accept.
    fn error(&self, reply: &Reply, label: &str) -> DeferredError {
        if let Some((shared_root, entries)) = &self.link {
            if reply.status == link_shared::REFUSED {
                if let Some(refusal) = link_shared::refusal(&reply.stdout, shared_root, entries) {
                    return DeferredError::Refused(refusal);
                }
            }
        }
        if let Some((repository, reference)) = &self.fetch {
            let error = match reply.status {
                ABSENT => RefError::Unknown {
                    reference: reference.clone(),
                },
                NO_GIT => RefError::NoGitClient {
                    repository: repository.clone(),
                },
                _ => RefError::Fetch {
                    repository: repository.clone(),
                    reason: format!("{} (on `{label}`)", reply.stderr.trim()),
                },
            };
            return DeferredError::Ref {
                error,
                repository: repository.clone(),
            };
        }
        match &self.what {
            Some(what) if what.is_empty() => {
                DeferredError::Message(reply.stderr.trim().to_string())
            }
            Some(what) => {
                DeferredError::Message(format!("{what} on `{label}`: {}", reply.stderr.trim()))
            }
            None => DeferredError::Command(ProcessError {
                command: self.display.clone(),
                kind: ProcessErrorKind::Exit(reply.status),
                stdout_tail: process::tail(&reply.stdout, TAIL_LINES),
                stderr_tail: process::tail(&reply.stderr, TAIL_LINES),
            }),
        }
    }
}

fn accepted(accept: Accept, status: i32) -> bool {
    match accept {
        Accept::Zero => status == 0,
        Accept::ZeroOr(other) => status == 0 || status == other,
        Accept::Any => true,
    }
}

impl Ssh {
    /// The host's remote shell, not connected yet: the first request written starts the
    /// connection (in its command, see [`RemoteShell`]), and the first answer (or
    /// [`Ssh::wait_ready`]) waits, and reports a host that cannot be reached.
    pub fn start(
        label: &str,
        target: &Target,
        control_path: &Path,
        secrets: Arc<Secrets>,
    ) -> anyhow::Result<Ssh> {
        let ssh = process::find_program("ssh")
            .context("cannot find `ssh` (the OpenSSH client) on PATH")?;
        let shell = RemoteShell::open(&ssh, target.arguments(control_path), secrets);
        Ok(Ssh {
            label: label.to_string(),
            pipe: Mutex::new(Pipeline {
                shell,
                waiting: VecDeque::new(),
                failure: None,
                round_trips: 0,
                requests: 0,
                kept: BTreeMap::new(),
                next_kept: 0,
                left: false,
                may_have_left: false,
                written: false,
                void: Default::default(),
            }),
        })
    }

    /// Wait until the remote shell has started.
    pub fn wait_ready(&self) -> anyhow::Result<()> {
        self.pipe().shell.wait_ready(&self.label)
    }

    fn pipe(&self) -> std::sync::MutexGuard<'_, Pipeline> {
        self.pipe.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write `requests` after what was sent before, then read every answer: one round trip.
    /// The answers of `requests`, in order; `None` for one that was skipped because a request
    /// before it failed.
    fn ask(&self, requests: &[Request]) -> anyhow::Result<Vec<Option<Reply>>> {
        self.ask_and_leave(requests, false)
    }

    /// [`Ssh::ask`]; with `leaves`, the remote shell ends after answering when a request
    /// set `zdd_leave` (see [`Op::RollbackAsPlanned`]).
    fn ask_and_leave(
        &self,
        requests: &[Request],
        leaves: bool,
    ) -> anyhow::Result<Vec<Option<Reply>>> {
        let mut pipe = self.pipe();
        self.write_asked(&mut pipe, requests, leaves)?;
        self.drain(&mut pipe, None)
    }

    /// Write `requests` as one batch whose answers a wait returns.
    fn write_asked(
        &self,
        pipe: &mut Pipeline,
        requests: &[Request],
        leaves: bool,
    ) -> anyhow::Result<()> {
        let batch: Vec<Shell<'_>> = requests.iter().map(Request::command).collect();
        if !batch.is_empty() {
            pipe.shell.write_batch(&batch, &self.label)?;
            pipe.written = true;
            pipe.requests += batch.len() as u64;
        }
        if leaves {
            pipe.shell.leave_if_asked(&self.label)?;
        }
        for request in requests {
            pipe.waiting.push_back(Sent {
                accept: request.accept,
                deferred: None,
                keep: None,
            });
        }
        Ok(())
    }

    /// Read every answer not read yet (with `until`, only until that many answers of asked
    /// requests are read); the answers of the requests that wait for one. A round trip when
    /// something was written since the last wait began: reading what was already on its way
    /// then is not another.
    fn drain(
        &self,
        pipe: &mut Pipeline,
        until: Option<usize>,
    ) -> anyhow::Result<Vec<Option<Reply>>> {
        if pipe.waiting.is_empty() {
            return Ok(Vec::new());
        }
        if std::mem::take(&mut pipe.written) {
            pipe.round_trips += 1;
        }
        let started = std::time::Instant::now();
        let mut count = 0;
        let mut answers = Vec::new();
        while until.is_none_or(|n| answers.len() < n) {
            let Some(sent) = pipe.waiting.pop_front() else {
                break;
            };
            count += 1;
            let reply = match pipe.shell.read_reply(sent.accept, &self.label) {
                Ok(reply) => reply,
                Err(error) => {
                    // The connection went before this request was answered: it may not have
                    // run, and the step that sent it without waiting is the one that failed
                    // (the first that was to do something: see `void`).
                    let blamed = std::iter::once(&sent)
                        .chain(pipe.waiting.iter())
                        .filter_map(|s| s.deferred.as_ref().map(|(tag, _)| *tag))
                        .find(|tag| !pipe.void.contains(tag));
                    if let (Some(tag), None) = (blamed, &pipe.failure) {
                        pipe.failure = Some(Deferred {
                            tag,
                            error: DeferredError::Message(format!("{error:#}")),
                        });
                    }
                    return Err(error);
                }
            };
            match sent.deferred {
                Some((tag, request)) => {
                    let mut answer = None;
                    if let Some(reply) = reply {
                        if !accepted(sent.accept, reply.status) {
                            if pipe.failure.is_none() {
                                pipe.failure = Some(Deferred {
                                    tag,
                                    error: request.error(&reply, &self.label),
                                });
                            }
                        } else if let Some((_, op)) = &sent.keep {
                            answer = self.answer(op, &request, reply).ok();
                        }
                    }
                    if let Some((id, _)) = sent.keep {
                        pipe.kept.insert(id, answer);
                    }
                }
                None => answers.push(reply),
            }
        }
        tracing::debug!(
            "`{}`: wait {} read {count} answers in {:.1} ms",
            self.label,
            pipe.round_trips,
            started.elapsed().as_secs_f64() * 1e3
        );
        Ok(answers)
    }

    /// One request, waited for; an error when a request sent before it failed.
    fn call(&self, request: Request) -> anyhow::Result<Reply> {
        let answer = self.ask(std::slice::from_ref(&request))?.pop().flatten();
        match answer {
            Some(reply) => Ok(reply),
            None => Err(self.earlier()),
        }
    }

    fn earlier(&self) -> anyhow::Error {
        match self.pipe().failure.clone() {
            Some(failure) => EarlierFailure(failure).into(),
            None => anyhow!("a request on `{}` was skipped", self.label),
        }
    }

    /// A request's answer as the op's result.
    fn answer(&self, op: &Op, request: &Request, reply: Reply) -> anyhow::Result<Answer> {
        if !accepted(request.accept, reply.status) {
            return Err(request.error(&reply, &self.label).into_error());
        }
        let present = reply.status == 0;
        Ok(match op {
            Op::Exec { .. } => Answer::Output(Output {
                stdout: reply.stdout,
                stderr: reply.stderr,
            }),
            Op::ReadFile(_) | Op::ReadIfReadable(_) | Op::ReadLine(_) => {
                Answer::Text(present.then_some(reply.stdout))
            }
            Op::FindProgram(_) => Answer::Text(present.then(|| reply.stdout.trim().to_string())),
            Op::ReadLink(_) => {
                Answer::Text(present.then(|| reply.stdout.trim_end_matches('\n').to_string()))
            }
            Op::FileType(_) => Answer::Kind(present.then(|| match reply.stdout.trim() {
                "l" => FileType::Symlink,
                "d" => FileType::Directory,
                "f" => FileType::File,
                _ => FileType::Other,
            })),
            Op::ListDir(_) => {
                let mut names: Vec<String> = reply
                    .stdout
                    .split('\0')
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect();
                names.sort();
                Answer::Names(names)
            }
            Op::Exists(_) | Op::CreateExclusive { .. } | Op::HasArtifact { .. } => {
                Answer::Flag(present)
            }
            Op::Checkout { .. } => Answer::Text(Some(reply.stdout.trim().to_string())),
            Op::RollbackAsPlanned { .. } | Op::DeployPlanCheck { .. } => {
                let done = reply.stdout.trim();
                Answer::Text((!done.is_empty()).then(|| done.to_string()))
            }
            _ => Answer::Done,
        })
    }

    /// Write `op` after what was sent before, without waiting; with `keep`, its answer is
    /// kept for [`Transport::collect`].
    fn write_sent(&self, op: Op, tag: u64, keep: bool) -> anyhow::Result<Kept> {
        let request = request(&op)?;
        let mut pipe = self.pipe();
        // A prefetch is over before the checkout that uses it, and before the lock that
        // covers it is released.
        let inner = match &op {
            Op::IfPlanned(inner) => inner.as_ref(),
            op => op,
        };
        if matches!(
            inner,
            Op::Checkout { .. } | Op::Export { .. } | Op::RemoveIfHolds { .. }
        ) {
            let mut wait = await_prefetch();
            if matches!(op, Op::IfPlanned(_)) {
                wait = if_planned(wait)?;
            }
            pipe.shell.write_request(wait.command(), &self.label)?;
            pipe.waiting.push_back(Sent {
                accept: wait.accept,
                deferred: Some((tag, wait)),
                keep: None,
            });
        }
        // The build's archive goes ahead of the request that checks it; while a release is
        // being filled from it, the remote shell removes that release if it ends (the
        // connection lost): never a half-unpacked release left behind.
        match &op {
            Op::Upload {
                source,
                destination,
                for_release,
                ..
            } => {
                pipe.shell.write_shell(
                    &format!("[ \"$zdd_f\" = 0 ] && zdd_pending={}\n", word(for_release)?),
                    &self.label,
                )?;
                let temporary = super::temporary_path(destination, "tmp");
                pipe.shell
                    .write_file_data(Path::new(source), &temporary, &self.label)?;
            }
            Op::Unpack { destination, .. } => pipe.shell.write_shell(
                &format!("[ \"$zdd_f\" = 0 ] && zdd_pending={}\n", word(destination)?),
                &self.label,
            )?,
            _ => {}
        }
        pipe.shell.write_request(request.command(), &self.label)?;
        if matches!(op, Op::Unpack { .. }) {
            pipe.shell.write_shell("unset zdd_pending\n", &self.label)?;
        }
        pipe.written = true;
        pipe.requests += 1;
        if matches!(inner, Op::Leave) {
            // The shell ends after this request when it set `zdd_leave`.
            pipe.shell.leave_if_asked(&self.label)?;
            pipe.may_have_left = true;
        }
        let id = pipe.next_kept;
        pipe.next_kept += 1;
        pipe.waiting.push_back(Sent {
            accept: request.accept,
            deferred: Some((tag, request)),
            keep: keep.then_some((id, op)),
        });
        Ok(Kept::Waiting(id))
    }

    /// The answers of asked `ops` from their `replies`; the error of one that failed or was
    /// skipped.
    fn answers(
        &self,
        ops: &[Op],
        requests: &[Request],
        replies: Vec<Option<Reply>>,
    ) -> anyhow::Result<Vec<Answer>> {
        let mut answers = Vec::new();
        for ((op, request), reply) in ops.iter().zip(requests).zip(replies) {
            match reply {
                Some(reply) => {
                    let answer = self.answer(op, request, reply)?;
                    if let (Op::RollbackAsPlanned { .. }, Answer::Text(Some(_))) = (op, &answer) {
                        self.pipe().left = true;
                    }
                    answers.push(answer);
                }
                None => return Err(self.earlier()),
            }
        }
        Ok(answers)
    }

    /// An op that only travels the way [`Transport::send`] sends (its data goes ahead of its
    /// request), waited for at once: its failure, or one before it, is the error.
    fn sent_and_waited(&self, op: Op) -> anyhow::Result<()> {
        self.write_sent(op, u64::MAX, false)?;
        let mut pipe = self.pipe();
        self.drain(&mut pipe, None)?;
        match pipe.failure.take() {
            Some(failure) => Err(failure.error.into_error()),
            None => Ok(()),
        }
    }

    /// One op, waited for.
    fn one(&self, op: Op) -> anyhow::Result<Answer> {
        let mut answers = self.query(vec![op])?;
        Ok(answers.pop().unwrap_or(Answer::Done))
    }

    pub fn close(&self) {
        self.pipe().shell.close();
    }

    /// Whether the remote shell has answered at least once (the connection is up).
    pub fn is_ready(&self) -> bool {
        self.pipe().shell.is_ready()
    }
}

/// The request that does `op` on the host. Every path and value is quoted here.
fn request(op: &Op) -> anyhow::Result<Request> {
    Ok(match op {
        Op::Exec {
            script,
            cwd,
            display,
        } => Request {
            script: script.clone(),
            cwd: cwd.clone(),
            accept: Accept::Zero,
            what: None,
            display: display.clone(),
            fetch: None,
            link: None,
            inline: false,
        },
        Op::FindProgram(name) => Request::maybe(
            format!("command -v {} || zdd_st {ABSENT}", word(name)?),
            "cannot look a program up".to_string(),
        )
        .inline(),
        Op::ReadFile(path) => {
            let p = word(path)?;
            Request::maybe(
                format!("if [ -e {p} ]; then cat -- {p}; else zdd_st {ABSENT}; fi"),
                format!("cannot read `{path}`"),
            )
            .inline()
        }
        Op::ReadIfReadable(path) => {
            let p = word(path)?;
            Request::maybe(
                format!(
                    "if [ -f {p} ] && [ -r {p} ]; then cat -- {p} 2>/dev/null || zdd_st {ABSENT}; else zdd_st {ABSENT}; fi"
                ),
                format!("cannot read `{path}`"),
            )
            .inline()
        }
        Op::ReadLine(path) => {
            let p = word(path)?;
            Request::maybe(
                format!(
                    "if [ -e {p} ]; then zdd_x=; IFS= read -r zdd_x < {p}; printf '%s' \"$zdd_x\"; else zdd_st {ABSENT}; fi"
                ),
                format!("cannot read `{path}`"),
            )
            .inline()
        }
        Op::WriteFile { path, contents } => {
            let p = word(path)?;
            let t = word(&super::temporary_path(path, "tmp"))?;
            Request::must(
                format!(
                    "{{ [ ! -e {t} ] || rm -f -- {t}; }} && printf '%s' {} > {t} && mv -f -- {t} {p}",
                    word(contents)?
                ),
                format!("cannot write `{path}`"),
            )
            .inline()
        }
        Op::KeepFile {
            directory,
            path,
            contents,
        } => {
            let (d, p) = (word(directory)?, word(path)?);
            let t = word(&super::temporary_path(path, "tmp"))?;
            // Whatever happens, the request succeeds: a file that could not be written is
            // not there, and its temporary file is removed.
            Request::must(
                format!(
                    "{{ mkdir -p -- {d} && printf '%s' {} > {t} && mv -f -- {t} {p}; }} 2>/dev/null || rm -f -- {t}",
                    word(contents)?
                ),
                format!("cannot write `{path}`"),
            )
            .inline()
        }
        Op::AppendLine { path, line } => Request::must(
            format!("printf '%s\\n' {} >> {}", word(line)?, word(path)?),
            format!("cannot append to `{path}`"),
        )
        .inline(),
        Op::CreateDirAll(path) => Request::must(
            format!("[ -d {p} ] || mkdir -p -- {p}", p = word(path)?),
            format!("cannot create directory `{path}`"),
        )
        .inline(),
        Op::CreateExclusive { path, contents } => {
            // Like the local transport: full content first, then link(2), which fails if the
            // name exists. `ln` without -f never replaces.
            let p = word(path)?;
            let t = word(&super::temporary_path(path, "new"))?;
            Request::maybe(
                format!(
                    "[ ! -e {t} ] || rm -f -- {t}; if printf '%s' {} > {t}; then \
                     if ln -- {t} {p} 2>/dev/null; then rm -f -- {t}; \
                     else rm -f -- {t}; if [ -e {p} ]; then zdd_st {ABSENT}; else zdd_st 1; fi; fi; \
                     else zdd_st 1; fi",
                    word(contents)?
                ),
                format!("cannot create `{path}`"),
            )
            .inline()
        }
        Op::RemoveFile(path) => Request::must(
            format!("rm -f -- {}", word(path)?),
            format!("cannot remove `{path}`"),
        )
        .inline(),
        Op::RemoveDirAll(path) => Request::must(
            format!("rm -rf -- {}", word(path)?),
            format!("cannot remove `{path}`"),
        )
        .inline(),
        Op::Exists(path) => {
            let p = word(path)?;
            Request::maybe(
                format!("[ -e {p} ] || [ -L {p} ] || zdd_st {ABSENT}"),
                "cannot check a path".to_string(),
            )
            .inline()
        }
        Op::FileType(path) => {
            let p = word(path)?;
            Request::maybe(
                format!(
                    "if [ -L {p} ]; then echo l; elif [ -d {p} ]; then echo d; \
                     elif [ -f {p} ]; then echo f; elif [ -e {p} ]; then echo o; else zdd_st {ABSENT}; fi"
                ),
                format!("cannot look at `{path}`"),
            )
            .inline()
        }
        Op::Rename { from, to } => Request::must(
            format!("mv -fT -- {} {}", word(from)?, word(to)?),
            format!("cannot rename `{from}` to `{to}`"),
        )
        .inline(),
        Op::Exchange { a, b } => Request::must(
            // No shell tool swaps two paths (coreutils' `mv --exchange` is 9.5+): perl (part of
            // every Debian and Ubuntu) calls renameat2(2) itself, by the machine's number.
            format!(
                "case $(uname -m) in x86_64) zdd_n=316;; aarch64|riscv64) zdd_n=276;; i?86) zdd_n=353;; \
                 arm*) zdd_n=382;; ppc64*) zdd_n=357;; s390x) zdd_n=347;; *) zdd_n=;; esac; \
                 if [ -n \"$zdd_n\" ]; then perl -e 'exit(syscall($ARGV[0], -100, $ARGV[1], -100, $ARGV[2], 2) == 0 ? 0 : 1)' \
                 \"$zdd_n\" {} {}; else echo \"no renameat2 number known for $(uname -m)\" >&2; zdd_st 1; fi",
                word(a)?,
                word(b)?
            ),
            format!("cannot swap `{a}` and `{b}` atomically"),
        )
        .inline(),
        Op::ListDir(path) => {
            // A name that does not exist (the pattern itself, nothing matched) is left out.
            let d = word(path)?;
            Request::must(
                format!(
                    "for zdd_e in {d}/* {d}/.[!.]* {d}/..?*; do \
                     if [ -e \"$zdd_e\" ] || [ -L \"$zdd_e\" ]; then printf '%s\\0' \"${{zdd_e##*/}}\"; fi; done"
                ),
                format!("cannot list `{path}`"),
            )
            .inline()
        }
        Op::ReadLink(path) => {
            let p = word(path)?;
            Request::maybe(
                format!("if [ -L {p} ]; then readlink -- {p}; else zdd_st {ABSENT}; fi"),
                format!("cannot read link `{path}`"),
            )
            .inline()
        }
        Op::HasArtifact { path, sha256 } => {
            let p = word(path)?;
            Request::maybe(
                format!(
                    "if [ -f {p} ]; then zdd_h=$(sha256sum < {p}) || exit 1; [ \"${{zdd_h%% *}}\" = {} ] && exit 0; fi; exit {ABSENT}",
                    word(sha256)?
                ),
                format!("cannot read `{path}`"),
            )
        }
        Op::Upload {
            destination,
            sha256,
            ..
        } => {
            // The data went ahead of this request (`RemoteShell::write_file_data`).
            let (d, h) = (word(destination)?, word(sha256)?);
            let t = word(&super::temporary_path(destination, "tmp"))?;
            Request::must(
                format!(
                    "if [ -n \"${{zdd_up:-}}\" ] || [ ! -f {t} ]; then cat -- \"$zdd_tmp/up.e\" >&2 2>/dev/null; rm -f -- {t}; exit 1; fi; \
                     zdd_h=$(sha256sum < {t}) || exit 1; \
                     if [ \"${{zdd_h%% *}}\" != {h} ]; then rm -f -- {t}; printf 'it arrived with sha256 %s, not %s\\n' \"${{zdd_h%% *}}\" {h} >&2; exit 1; fi; \
                     mv -f -- {t} {d}"
                ),
                format!("cannot ship the build's archive to `{destination}`"),
            )
        }
        Op::Unpack {
            archive,
            destination,
            manifest,
            files,
            links,
        } => {
            let (a, d, m, l) = (
                word(archive)?,
                word(destination)?,
                word(manifest)?,
                word(links)?,
            );
            // The checks in a function: when one fails (a full disk while unpacking, a
            // damaged archive), what was unpacked, the archive and its manifest go, so the
            // space comes back and the next deploy ships the archive again.
            let script = format!(
                "zdd_unpack() {{ mkdir -p -- {d} && tar -xzf {a} -C {d} --no-same-owner && cd -- {d} || return 1; \
                 sha256sum -c --quiet --strict -- {m} >&2 || {{ echo 'files differ from the build (above)' >&2; return 1; }}; \
                 zdd_c=$(find . -type f | wc -l); [ \"$zdd_c\" -eq {files} ] || {{ printf 'it holds %s files, the build %s\\n' \"$zdd_c\" {files} >&2; return 1; }}; \
                 find . -type l -printf '%p\\\\%l\\n' | LC_ALL=C sort | cmp -s - {l} || {{ echo 'its symlinks differ from the build'\\''s' >&2; return 1; }}; \
                 }}; zdd_unpack && exit 0; cd / && rm -rf -- {d} {a} {m} {l}; mkdir -p -- {d}; exit 1"
            );
            Request::must(
                script,
                format!("the release `{destination}` does not match the build's archive"),
            )
        }
        Op::Symlink { target, link } => Request::must(
            format!("ln -s -- {} {}", word(target)?, word(link)?),
            format!("cannot link `{link}` to `{target}`"),
        )
        .inline(),
        Op::ReplaceSymlink { target, link } => {
            // Read back and compared on the host, so a request sent without waiting fails (and
            // stops what follows) when the link is not what was asked. No output: an answer
            // with output costs the host three processes more.
            let target_word = word(target)?;
            Request::must(
                format!(
                    "if {}; then [ \"$zdd_now\" = {target_word} ] || \
                     {{ printf '%s\\n' \"points at $zdd_now after the swap, not at the target\" >&2; zdd_st 1; }}; \
                     else zdd_st 1; fi",
                    swap(link, &target_word)?
                ),
                format!("cannot switch `{link}`"),
            )
            .inline()
        }
        Op::ExpectLink {
            link,
            target,
            otherwise,
        } => Request {
            // Only zdd's own words when it fails.
            what: Some(String::new()),
            ..Request::must(
                format!(
                    "zdd_now=$(readlink -- {}) || zdd_now=nothing; [ \"$zdd_now\" = {} ] || \
                     {{ printf '%s `%s`\\n' {} \"$zdd_now\" >&2; zdd_st 1; }}",
                    word(link)?,
                    word(target)?,
                    word(otherwise)?
                ),
                String::new(),
            )
            .inline()
        },
        Op::ExpectDirectory { path, otherwise } => Request {
            // Only zdd's own words when it fails.
            what: Some(String::new()),
            ..Request::must(
                format!(
                    "[ -d {} ] || {{ printf '%s\\n' {} >&2; zdd_st 1; }}",
                    word(path)?,
                    word(otherwise)?
                ),
                String::new(),
            )
            .inline()
        },
        Op::RemoveIfHolds { path, contents } => {
            let p = word(path)?;
            Request::must(
                format!(
                    "if [ -e {p} ]; then if {}; then rm -f -- {p}; \
                     else cat -- {p} >&2; zdd_st 1; fi; fi",
                    holds(path, contents)?
                ),
                super::left_in_place(path),
            )
            .inline()
        }
        Op::Checkout {
            repository,
            cache,
            reference,
            destination,
            log,
            record,
        } => {
            let d = word(destination)?;
            let (before, after) = record
                .split_once(&super::op::commit_placeholder())
                .ok_or_else(|| anyhow!("the checkout record has no place for the commit"))?;
            let script = format!(
                "{}; zdd_c=\"$zdd_r\" && {} && \
                 printf '%s\\n' \"$zdd_c\" > {d}/REVISION && \
                 printf '%s\"commit\":\"%s\"%s\\n' {} \"$zdd_c\" {} >> {} && \
                 printf '%s\\n' \"$zdd_r\"",
                fetch_script(repository, cache, reference)?,
                export_script(cache, destination)?,
                word(before)?,
                word(after)?,
                word(log)?,
            );
            Request {
                accept: Accept::Zero,
                fetch: Some((repository.clone(), reference.clone())),
                ..Request::must(script, format!("cannot check out `{reference}`"))
            }
        }
        Op::Prefetch {
            repository,
            cache,
            reference,
            stage,
            lock,
            holder,
        } => {
            // In the background of the remote shell itself (inline: `$!` and the job are
            // its own); only under this run's lock. The job's status is the fetch's: the
            // staged export is a bonus, its commit in `$zdd_tmp/stage` once it is whole.
            let st = word(stage)?;
            Request::must(
                format!(
                    "zdd_prefetch=; zdd_stage=; zdd_stage_ref=; if {}; then \
                     zdd_stage={st}; zdd_stage_ref={}; {{ {}; {} && mkdir -- {st} && \
                     git --git-dir={} archive --format=tar \"$zdd_r\" | tar -x -C {st} && \
                     printf '%s\\n' \"$zdd_r\" > \"$zdd_tmp/stage\"; exit 0; }} </dev/null >/dev/null 2>&1 & \
                     zdd_prefetch=$!; fi",
                    holds(lock, holder)?,
                    word(reference)?,
                    fetch_only(repository, cache)?,
                    resolve_script(cache, reference)?,
                    word(cache)?,
                ),
                "cannot start fetching".to_string(),
            )
            .inline()
        }
        Op::WritePlan {
            plan,
            head,
            log,
            names,
            tail,
        } => {
            // The log's CRC and size (`cksum`, POSIX), split by the shell and printed with
            // one space. Written in place: a plan cut short does not hold (the lines it is
            // checked against come first, the deploys it plans after them).
            let p = word(plan)?;
            let tail = if tail.is_empty() {
                String::new()
            } else {
                format!(" {}", word(tail)?)
            };
            // A plan that cannot be written is no plan (removed): never a failure that
            // would stop the lock's release after it.
            Request::must(
                format!(
                    "if ! {{ zdd_now=$(cksum < {}) && set -- $zdd_now && \
                     printf '%s\\n' {} \"$1 $2\" {}{tail} > {p}; }}; then rm -f -- {p}; fi",
                    word(log)?,
                    word(head)?,
                    word(names)?,
                ),
                format!("cannot write `{plan}`"),
            )
            .inline()
        }
        Op::RollbackAsPlanned { guard, record } => rollback_as_planned(guard, record)?,
        Op::DeployPlanCheck { guard, keep, name } => deploy_plan_check(guard, *keep, name)?,
        Op::IfPlanned(inner) => if_planned(request(inner)?)?,
        Op::AppendPlanned { path, line } => {
            let (before, after) = line
                .split_once(super::op::PLANNED_FROM)
                .ok_or_else(|| anyhow!("the planned record has no place for the release left"))?;
            Request::must(
                format!(
                    "printf '%s%s%s\\n' {} \"$zdd_from\" {} >> {}",
                    word(before)?,
                    word(after)?,
                    word(path)?
                ),
                format!("cannot append to `{path}`"),
            )
            .inline()
        }
        Op::RemoveAsPlanned {
            releases,
            removing,
            log,
            removing_record,
            removed_record,
        } => remove_as_planned(releases, removing, log, removing_record, removed_record)?,
        Op::AdvancePlan {
            plan,
            version,
            name,
            log,
            releases,
        } => advance_plan(plan, version, name, log, releases)?,
        Op::Leave => Request::must("zdd_leave=1".to_string(), "cannot leave".to_string()).inline(),
        Op::LinkShared {
            release,
            shared_root,
            entries,
        } => Request {
            link: Some((shared_root.clone(), entries.clone())),
            ..Request::must(
                link_shared::script(release, shared_root, entries)?,
                "cannot link the shared entries".to_string(),
            )
        },
        Op::Export {
            cache,
            commit,
            destination,
        } => Request::must(
            format!(
                "zdd_c={}; {}",
                word(commit)?,
                export_script(cache, destination)?
            ),
            format!("cannot check out {commit} into `{destination}`"),
        ),
    })
}

impl Transport for Ssh {
    fn exec(
        &self,
        script: &str,
        cwd: Option<&str>,
        display: &str,
        sink: Option<LineSink>,
    ) -> Result<Output, ProcessError> {
        let request = Request {
            script: script.to_string(),
            cwd: cwd.map(str::to_string),
            accept: Accept::Any,
            what: None,
            display: display.to_string(),
            fetch: None,
            link: None,
            inline: false,
        };
        let reply = self.call(request).map_err(|e| ProcessError {
            command: display.to_string(),
            kind: ProcessErrorKind::Spawn(format!("{e:#}")),
            stdout_tail: String::new(),
            stderr_tail: String::new(),
        })?;
        if let Some(sink) = sink {
            for line in reply.stdout.lines() {
                sink(process::Stream::Stdout, line);
            }
            for line in reply.stderr.lines() {
                sink(process::Stream::Stderr, line);
            }
        }
        if reply.status != 0 {
            return Err(ProcessError {
                command: display.to_string(),
                kind: ProcessErrorKind::Exit(reply.status),
                stdout_tail: process::tail(&reply.stdout, TAIL_LINES),
                stderr_tail: process::tail(&reply.stderr, TAIL_LINES),
            });
        }
        Ok(Output {
            stdout: reply.stdout,
            stderr: reply.stderr,
        })
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
        let reply = self.call(Request::maybe(
            format!("[ -d {} ] || exit {ABSENT}", word(path)?),
            "cannot check a path".to_string(),
        ))?;
        self.maybe_reply(reply, "cannot check a path")
            .map(|found| found.is_some())
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
        Ok(self.one(Op::FindProgram(program.to_string()))?.text())
    }

    fn resolve(&self, repository: &str, cache: &str, reference: &str) -> anyhow::Result<String> {
        self.remote_resolve(repository, cache, reference)
    }

    fn upload(&self, source: &str, destination: &str, sha256: &str) -> anyhow::Result<()> {
        self.sent_and_waited(Op::Upload {
            source: source.into(),
            destination: destination.into(),
            sha256: sha256.into(),
            for_release: String::new(),
        })
    }

    fn unpack(
        &self,
        archive: &str,
        destination: &str,
        manifest: &str,
        files: usize,
        links: &str,
    ) -> anyhow::Result<()> {
        self.sent_and_waited(Op::Unpack {
            archive: archive.into(),
            destination: destination.into(),
            manifest: manifest.into(),
            files,
            links: links.into(),
        })
    }

    fn has_artifact(&self, path: &str, sha256: &str) -> anyhow::Result<bool> {
        self.one(Op::HasArtifact {
            path: path.into(),
            sha256: sha256.into(),
        })
        .map(Answer::flag)
    }

    fn bytes_sent(&self) -> u64 {
        self.pipe().shell.bytes_written()
    }

    fn download(&self, source: &str, destination: &Path) -> anyhow::Result<u64> {
        use base64::Engine;
        use std::io::Write;
        let s = word(source)?;
        let exec = |script: String| Op::Exec {
            display: format!("read `{source}`"),
            script,
            cwd: None,
        };
        let size: u64 = match self.one(exec(format!("wc -c < {s}")))? {
            Answer::Output(output) => output
                .stdout
                .trim()
                .parse()
                .with_context(|| format!("cannot measure `{source}` on `{}`", self.label))?,
            _ => bail!("cannot measure `{source}` on `{}`", self.label),
        };
        let mut file = std::fs::File::create(destination)
            .with_context(|| format!("cannot write `{}`", destination.display()))?;
        let mut offset = 0u64;
        while offset < size {
            // A batch of pieces per wait: each a request answered with base64.
            let mut ops = Vec::new();
            let mut next = offset;
            while next < size && ops.len() < DOWNLOAD_BATCH {
                let length = (size - next).min(DOWNLOAD_PIECE);
                ops.push(exec(format!(
                    "tail -c +{} {s} | head -c {length} | base64 -w 0",
                    next + 1
                )));
                next += length;
            }
            for answer in self.query(ops)? {
                let Answer::Output(output) = answer else {
                    bail!("cannot read `{source}` on `{}`", self.label);
                };
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(output.stdout.trim())
                    .with_context(|| format!("`{source}` on `{}` came back damaged", self.label))?;
                file.write_all(&bytes)
                    .with_context(|| format!("cannot write `{}`", destination.display()))?;
                offset += bytes.len() as u64;
            }
            anyhow::ensure!(
                offset == next,
                "`{source}` on `{}` came back short: {offset} bytes of {size}",
                self.label
            );
        }
        file.flush()?;
        Ok(size)
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
        super::check_commit_id(to)?;
        let mut script = format!(
            "git --git-dir={} log --oneline --no-decorate --no-color -n {limit} {}",
            word(cache)?,
            word(to)?
        );
        if let Some(from) = from {
            super::check_commit_id(from)?;
            script.push_str(&format!(" --not {}", word(from)?));
        }
        script.push_str(" --");
        let out = self.must(script, "cannot read the commit log")?;
        Ok(out.lines().map(str::to_string).collect())
    }

    fn signal(&self, pid: i32, signal: Option<nix::sys::signal::Signal>) -> anyhow::Result<()> {
        let name = signal.map(|s| s.as_str().trim_start_matches("SIG").to_string());
        let script = match name {
            Some(name) => format!("kill -{name} {pid}"),
            None => format!("kill -0 {pid}"),
        };
        self.must(script, &format!("cannot signal process {pid}"))?;
        Ok(())
    }

    fn send(&self, op: Op, tag: u64) -> anyhow::Result<()> {
        self.write_sent(op, tag, false).map(drop)
    }

    fn send_kept(&self, op: Op, tag: u64) -> anyhow::Result<Kept> {
        self.write_sent(op, tag, true)
    }

    fn collect(&self, kept: &Kept) -> anyhow::Result<Option<Answer>> {
        let id = match kept {
            Kept::Ready(answer) => return Ok(Some(answer.clone())),
            Kept::Waiting(id) => *id,
        };
        let mut pipe = self.pipe();
        if !pipe.kept.contains_key(&id) {
            self.drain(&mut pipe, None)?;
        }
        Ok(pipe.kept.get(&id).cloned().flatten())
    }

    fn query(&self, ops: Vec<Op>) -> anyhow::Result<Vec<Answer>> {
        let requests = ops
            .iter()
            .map(request)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let replies = self.ask_and_leave(&requests, leaves(&ops))?;
        self.answers(&ops, &requests, replies)
    }

    fn query_ahead(
        &self,
        ops: Vec<Op>,
        ahead: Vec<(Op, u64)>,
    ) -> anyhow::Result<(Vec<Answer>, Vec<Kept>)> {
        let requests = ops
            .iter()
            .map(request)
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.write_asked(&mut self.pipe(), &requests, leaves(&ops))?;
        let kept = ahead
            .into_iter()
            .map(|(op, tag)| self.write_sent(op, tag, true))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let replies = self.drain(&mut self.pipe(), Some(requests.len()))?;
        Ok((self.answers(&ops, &requests, replies)?, kept))
    }

    fn void(&self, tags: &[u64]) {
        self.pipe().void.extend(tags);
    }

    fn sync(&self) -> anyhow::Result<()> {
        let mut pipe = self.pipe();
        self.drain(&mut pipe, None)?;
        match pipe.failure.clone() {
            Some(failure) => Err(EarlierFailure(failure).into()),
            None => Ok(()),
        }
    }

    /// Send the remote shell away once every request has succeeded, then wait for the
    /// answers: the last round trip of a run also closes the connection. When a request
    /// failed, the shell stays (the failure is returned) for what must still run.
    fn finish(&self) -> anyhow::Result<()> {
        let mut pipe = self.pipe();
        if pipe.left {
            return Ok(());
        }
        if pipe.may_have_left {
            // Gone already, or about to go: the request is written into a closed pipe at
            // worst; when it did not leave (a plan that did not hold), this sends it away.
            let _ = pipe.shell.exit_if_all_succeeded();
        } else {
            pipe.shell.exit_if_all_succeeded()?;
        }
        let drained = self.drain(&mut pipe, None);
        if let Some(failure) = pipe.failure.clone() {
            return Err(EarlierFailure(failure).into());
        }
        drained.map(drop)
    }

    fn take_failure(&self) -> Option<Deferred> {
        self.pipe().failure.take()
    }

    fn round_trips(&self) -> u64 {
        self.pipe().round_trips
    }

    fn requests(&self) -> u64 {
        self.pipe().requests
    }

    fn unanswered(&self) -> usize {
        self.pipe().waiting.len()
    }
}

impl Ssh {
    /// Run a helper script; any status but 0 is an error showing its stderr.
    fn must(&self, script: String, what: &str) -> anyhow::Result<String> {
        let reply = self.call(Request::must(script, what.to_string()))?;
        if reply.status != 0 {
            bail!("{what} on `{}`: {}", self.label, reply.stderr.trim());
        }
        Ok(reply.stdout)
    }

    /// A helper script's answer: its output, `None` for [`ABSENT`], else an error.
    fn maybe_reply(&self, reply: Reply, what: &str) -> anyhow::Result<Option<String>> {
        match reply.status {
            0 => Ok(Some(reply.stdout)),
            ABSENT => Ok(None),
            _ => bail!("{what} on `{}`: {}", self.label, reply.stderr.trim()),
        }
    }

    /// Fetch into the bare cache with the remote's `git`, then resolve `reference` to a commit:
    /// one request (the candidates are tried on the host, in order).
    fn remote_resolve(
        &self,
        repository: &str,
        cache: &str,
        reference: &str,
    ) -> anyhow::Result<String> {
        let script = format!(
            "{}; printf '%s\\n' \"$zdd_r\"",
            fetch_script(repository, cache, reference)?
        );
        let request = Request {
            accept: Accept::Zero,
            fetch: Some((repository.to_string(), reference.to_string())),
            ..Request::must(script, String::new())
        };
        let reply = match self
            .ask(&[await_prefetch(), request.clone()])?
            .pop()
            .flatten()
        {
            Some(reply) => reply,
            None => return Err(self.earlier()),
        };
        if reply.status != 0 {
            return Err(request.error(&reply, &self.label).into_error());
        }
        Ok(reply.stdout.trim().to_string())
    }
}

/// The shell that fetches `repository` into the bare `cache` with the host's `git` (unless a
/// prefetch of this run did: `zdd_fetched`, see [`AWAIT_PREFETCH`]) and sets `zdd_r` to the
/// commit `reference` names (the candidates of [`git::ref_candidates`], tried in order). Exits
/// [`ABSENT`] for an unknown ref, [`NO_GIT`] without git, 1 when the fetch fails.
fn fetch_script(repository: &str, cache: &str, reference: &str) -> anyhow::Result<String> {
    // The prefetch resolved this same reference after its fetch, under this run's lock: its
    // answer stands (no git started again).
    Ok(format!(
        "if [ \"${{zdd_fetched:-}}\" = 1 ] && [ \"${{zdd_stage_ref:-}}\" = {} ] && [ -f \"$zdd_tmp/stage\" ] && \
         IFS= read -r zdd_r < \"$zdd_tmp/stage\" && [ -n \"$zdd_r\" ]; then :; else \
         if [ \"${{zdd_fetched:-}}\" != 1 ]; then {}; fi; {} || exit {ABSENT}; fi",
        word(reference)?,
        fetch_only(repository, cache)?,
        resolve_script(cache, reference)?,
    ))
}

/// The shell that sets `zdd_r` to the commit `reference` names in `cache` (the candidates of
/// [`git::ref_candidates`], tried in order); empty when none names one.
fn resolve_script(cache: &str, reference: &str) -> anyhow::Result<String> {
    let mut words = Vec::new();
    for candidate in git::ref_candidates(reference)? {
        words.push(word(&format!("{candidate}^{{commit}}"))?);
    }
    Ok(format!(
        "zdd_r=; for zdd_t in {}; do zdd_r=$(git --git-dir={} rev-parse -q --verify \"$zdd_t\") && break; done; [ -n \"$zdd_r\" ]",
        words.join(" "),
        word(cache)?
    ))
}

/// The shell that writes the tree of commit `$zdd_c` into the directory `destination`: by
/// renaming the checkout this run's prefetch staged (`$zdd_stage`, see [`Op::Prefetch`]) over
/// it when the stage is of that commit and `destination` is empty (rename(2) replaces an empty
/// directory, never one with something in it), else by `git archive | tar`.
fn export_script(cache: &str, destination: &str) -> anyhow::Result<String> {
    let d = word(destination)?;
    Ok(format!(
        "{{ if [ -n \"${{zdd_stage:-}}\" ] && [ -d \"$zdd_stage\" ] && [ -f \"$zdd_tmp/stage\" ] && \
         IFS= read -r zdd_sc < \"$zdd_tmp/stage\" && [ \"$zdd_sc\" = \"$zdd_c\" ] && \
         mv -T -- \"$zdd_stage\" {d} 2>/dev/null; then :; \
         else git --git-dir={c} archive --format=tar \"$zdd_c\" | tar -x -C {d}; fi; }}",
        c = word(cache)?,
    ))
}

/// The file in a repository cache that one fetch at a time holds (flock).
const FETCH_LOCK: &str = "zdd-fetch.lock";
/// Seconds a fetch waits for another run's fetch into the same cache.
const FETCH_WAIT: u32 = 600;

/// The shell that fetches `repository` into the bare `cache` (created on first use). Exits
/// [`NO_GIT`] without git, 1 when it fails.
///
/// A fetch that was killed leaves git's own lock files (`refs/**/X.lock`, `packed-refs.lock`,
/// ...), and every later fetch fails on them; the cache is only fetched holding
/// [`FETCH_LOCK`] (flock, released when the fetch ends or its process dies; a build host's
/// cache is fetched by any run that builds there, under no deploy lock), so any that exist
/// belong to a run that is gone. When the fetch fails and such files are there, they are
/// removed and the fetch runs once more; a fetch that succeeds costs no look for them.
fn fetch_only(repository: &str, cache: &str) -> anyhow::Result<String> {
    let c = word(cache)?;
    let fetch = format!(
        "git --git-dir={c} fetch -q --prune --no-tags -- {} '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*' {}",
        word(repository)?,
        word(&format!("+HEAD:{}", git::REMOTE_HEAD))?,
    );
    let mut places = vec![word(&format!("{cache}/refs"))?];
    for name in git::TOP_LOCK_FILES {
        places.push(word(&format!("{cache}/{name}"))?);
    }
    Ok(format!(
        "command -v git >/dev/null || exit {NO_GIT}; \
         [ -d {c} ] || git init -q --bare -- {c} || exit 1; \
         {{ if command -v flock >/dev/null; then flock -w {FETCH_WAIT} 9 || \
         {{ echo 'another run has been fetching into this cache for {FETCH_WAIT} s' >&2; exit 1; }}; fi; \
         {fetch} || {{ zdd_l=$(find {} -type f -name '*.lock' -print -exec rm -f {{}} + 2>/dev/null); \
         [ -n \"$zdd_l\" ] && {fetch}; }}; }} 9>>{} || exit 1",
        places.join(" "),
        word(&format!("{cache}/{FETCH_LOCK}"))?
    ))
}

/// Waits for this run's prefetch ([`Op::Prefetch`]), if one is running: `zdd_fetched=1` when
/// it fetched. Inline (the job is the remote shell's own); a request of its own, written
/// before a checkout or a resolve, and before the lock's removal.
const AWAIT_PREFETCH: &str = "zdd_fetched=; if [ -n \"${zdd_prefetch:-}\" ]; then \
     if wait \"$zdd_prefetch\"; then zdd_fetched=1; fi; zdd_prefetch=; fi";

/// The condition "the file `path` holds exactly `contents`" (a lock: one line without a
/// newline, so `read` reaches the end of the file and fails), read by the shell itself.
fn holds(path: &str, contents: &str) -> anyhow::Result<String> {
    let p = word(path)?;
    Ok(format!(
        "{{ [ -f {p} ] && zdd_h= && ! IFS= read -r zdd_h < {p} && [ \"$zdd_h\" = {} ]; }}",
        word(contents)?
    ))
}

/// The commands that point `link` at `target` (shell text: a quoted word or a quoted
/// expansion) by rename(2) of a temporary link (`mv -T`: never into a directory) and read it
/// back into `zdd_now`; they fail when a step does. `current` changes only through this.
fn swap(link: &str, target: &str) -> anyhow::Result<String> {
    let l = word(link)?;
    let t = word(&super::temporary_path(link, "swap"))?;
    Ok(format!(
        "{{ {{ [ ! -e {t} ] && [ ! -L {t} ]; }} || rm -f -- {t}; }} && \
         ln -s -- {target} {t} && mv -fT -- {t} {l} && zdd_now=$(readlink -- {l})"
    ))
}

/// A name the plan may hold, as a `case` pattern that matches anything else.
const NOT_PLAIN: &str = "*[!A-Za-z0-9._-]*";

/// The condition "the [`PlanGuard`] holds": the lock is this run's, and the plan a run left
/// still describes the host (its first line is the version, `current` points where it says,
/// the log has the CRC and size it says, `releases/` holds exactly the names it lists, all
/// plain). Reads its lines into `zdd_v`, `zdd_to`, `zdd_from`, `zdd_link`, `zdd_size`,
/// `zdd_names`, and the deploy part into `zdd_p7` and `zdd_p8` (`zdd_has8=1` when there is an
/// eighth line). Nothing in the plan is run.
fn plan_holds(guard: &PlanGuard) -> anyhow::Result<String> {
    let (p, r) = (word(&guard.plan)?, word(&guard.releases)?);
    Ok(format!(
        "{ours} && {{ [ -f {p} ] && zdd_p7= && zdd_p8= && zdd_has8= && \
         {{ IFS= read -r zdd_v && IFS= read -r zdd_to && IFS= read -r zdd_from && \
         IFS= read -r zdd_link && IFS= read -r zdd_size && IFS= read -r zdd_names && \
         {{ IFS= read -r zdd_p7 || :; }} && {{ IFS= read -r zdd_p8 && zdd_has8=1 || :; }}; }} < {p} && \
         [ \"$zdd_v\" = {v} ] && case $zdd_names in *[!A-Za-z0-9._\\ -]*) false;; esac && \
         zdd_now=$(readlink -- {l}) && [ \"$zdd_now\" = \"$zdd_link\" ] && \
         zdd_now=$(cksum < {g}) && set -- $zdd_now && [ \"${{1:-}} ${{2:-}}\" = \"$zdd_size\" ] && \
         zdd_pc=0 && zdd_pk=0 && zdd_same=1 && \
         for zdd_e in {r}/* {r}/.[!.]* {r}/..?*; do if [ -e \"$zdd_e\" ] || [ -L \"$zdd_e\" ]; then \
         zdd_pc=$((zdd_pc+1)); case \" $zdd_names \" in *\" ${{zdd_e##*/}} \"*) ;; *) zdd_same=;; esac; fi; done && \
         for zdd_e in $zdd_names; do zdd_pk=$((zdd_pk+1)); done && \
         [ -n \"$zdd_same\" ] && [ \"$zdd_pc\" = \"$zdd_pk\" ]; }}",
        ours = holds(&guard.lock, &guard.holder)?,
        v = word(&guard.version)?,
        l = word(&guard.link)?,
        g = word(&guard.log)?,
    ))
}

/// The request of [`Op::RollbackAsPlanned`]: inline, so that `zdd_leave` is the remote
/// shell's own (the line written after it leaves when it is 1). The plan is trusted only as
/// far as it is checked: every name in it is a plain name, the one to go back to is among the
/// releases, and nothing it says is run.
fn rollback_as_planned(guard: &PlanGuard, record: &str) -> anyhow::Result<Request> {
    let (p, k, g) = (word(&guard.plan)?, word(&guard.lock)?, word(&guard.log)?);
    let (before, rest) = record
        .split_once(super::op::PLANNED_TO)
        .ok_or_else(|| anyhow!("the planned rollback's record has no place for the release"))?;
    let (middle, after) = rest.split_once(super::op::PLANNED_FROM).ok_or_else(|| {
        anyhow!("the planned rollback's record has no place for the release left")
    })?;
    let script = format!(
        // The lock is this run's: exactly its contents, one line without a newline.
        "zdd_leave=; if {holds} && [ -n \"$zdd_to\" ] && [ -n \"$zdd_from\" ] && \
         case $zdd_to in {NOT_PLAIN}) false;; esac && case $zdd_from in {NOT_PLAIN}) false;; esac && \
         case \" $zdd_names \" in *\" $zdd_to \"*) true;; *) false;; esac; then \
         if {switch} && [ \"$zdd_now\" = \"releases/$zdd_to\" ] && \
         printf '%s%s%s%s%s\\n' {b} \"$zdd_to\" {m} \"$zdd_from\" {a} >> {g} && rm -f -- {p} {k}; then \
         printf '%s %s\\n' \"$zdd_to\" \"$zdd_from\"; zdd_leave=1; \
         else printf '%s\\n' \"the rollback to releases/$zdd_to was not finished\" >&2; zdd_st 1; fi; fi",
        holds = plan_holds(guard)?,
        switch = swap(&guard.link, "\"releases/$zdd_to\"")?,
        b = word(before)?,
        m = word(middle)?,
        a = word(after)?,
    );
    Ok(Request::must(script, "cannot roll back as planned".to_string()).inline())
}

/// The request of [`Op::DeployPlanCheck`]: inline (its variables are the remote shell's). A
/// plan holds for this deploy when it holds for the host ([`plan_holds`]), `current` is
/// `releases/FROM`, it was made for `keep` kept releases, every name it knows sorts before
/// `name`, and it names this deploy's removals (an eighth line): plain names of releases
/// there, never `current`'s (the release this deploy leaves, which its rollback goes back to).
fn deploy_plan_check(guard: &PlanGuard, keep: usize, name: &str) -> anyhow::Result<Request> {
    let script = format!(
        "zdd_plan=; zdd_doomed=; if {holds} && [ -n \"$zdd_from\" ] && \
         case $zdd_from in {NOT_PLAIN}) false;; esac && [ \"$zdd_link\" = \"releases/$zdd_from\" ] && \
         [ -n \"$zdd_has8\" ] && set -- $zdd_p7 && [ \"$#\" = 3 ] && [ \"$1\" = {keep} ] && \
         case $2 in {NOT_PLAIN}) false;; esac && [ \"$2\" \\< {n} ] && \
         case $3 in ''|*[!0-9]*) false;; esac && \
         case $zdd_p8 in *[!A-Za-z0-9._\\ -]*) false;; esac && zdd_ok=1 && \
         for zdd_e in $zdd_p8; do case \" $zdd_names \" in *\" $zdd_e \"*) ;; *) zdd_ok=;; esac; \
         if [ \"$zdd_e\" = \"$zdd_from\" ]; then zdd_ok=; fi; done && \
         [ -n \"$zdd_ok\" ]; then zdd_plan=1; zdd_doomed=$zdd_p8; \
         printf '%s %s\\n' \"$zdd_from\" \"$zdd_doomed\"; fi",
        holds = plan_holds(guard)?,
        n = word(name)?,
    );
    Ok(Request::must(script, "cannot check the planned deploy".to_string()).inline())
}

/// The request of [`Op::RemoveAsPlanned`]: what earlier runs left half-removed, then each
/// release of `zdd_doomed` in the moves of `primitives::cleanup` (recorded `removing`, renamed
/// out of `releases/`, deleted, recorded `removed`). Stops at the first that fails.
fn remove_as_planned(
    releases: &str,
    removing: &str,
    log: &str,
    removing_record: &str,
    removed_record: &str,
) -> anyhow::Result<Request> {
    let (r, d, g) = (word(releases)?, word(removing)?, word(log)?);
    // The watcher's recording of a release (`.zdd/watch/NAME.json`, beside the log) goes with it.
    let watched = std::path::Path::new(log)
        .parent()
        .map(|zdd| zdd.join("watch").to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("the release log `{log}` has no directory"))?;
    let w = word(&watched)?;
    let split = |record: &str| -> anyhow::Result<(String, String)> {
        let (before, after) = record
            .split_once(super::op::PLANNED_TO)
            .ok_or_else(|| anyhow!("the removal's record has no place for the release"))?;
        Ok((word(before)?, word(after)?))
    };
    let ((b1, a1), (b2, a2)) = (split(removing_record)?, split(removed_record)?);
    Ok(Request::must(
        format!(
            "for zdd_e in {d}/* {d}/.[!.]* {d}/..?*; do \
             if [ -e \"$zdd_e\" ] || [ -L \"$zdd_e\" ]; then rm -rf -- \"$zdd_e\" || exit 1; fi; done; \
             [ -z \"$zdd_doomed\" ] || [ -d {d} ] || mkdir -p -- {d} || exit 1; \
             for zdd_e in $zdd_doomed; do \
             printf '%s%s%s\\n' {b1} \"$zdd_e\" {a1} >> {g} && \
             mv -fT -- {r}/\"$zdd_e\" {d}/\"$zdd_e\" && rm -rf -- {d}/\"$zdd_e\" && \
             rm -f -- {w}/\"$zdd_e\".json && \
             printf '%s%s%s\\n' {b2} \"$zdd_e\" {a2} >> {g} || exit 1; done"
        ),
        "cannot remove the old releases".to_string(),
    ))
}

/// The request of [`Op::AdvancePlan`]: the plan rewritten (to a temporary file, then renamed
/// over it) for the run after this planned deploy, with the facts read on the host now. A
/// plan that cannot be written is removed: never a failure that would keep the lock.
fn advance_plan(
    plan: &str,
    version: &str,
    name: &str,
    log: &str,
    releases: &str,
) -> anyhow::Result<Request> {
    let (p, r) = (word(plan)?, word(releases)?);
    let t = word(&super::temporary_path(plan, "tmp"))?;
    Ok(Request::must(
        format!(
            "zdd_now=$(cksum < {g}) && set -- $zdd_now && zdd_sz=\"$1 $2\" && zdd_nm= && \
             for zdd_e in {r}/* {r}/.[!.]* {r}/..?*; do if [ -e \"$zdd_e\" ] || [ -L \"$zdd_e\" ]; then \
             zdd_nm=\"$zdd_nm${{zdd_nm:+ }}${{zdd_e##*/}}\"; fi; done && \
             set -- $zdd_p7 && zdd_tok=$3 && \
             while [ ${{#zdd_tok}} -lt 3 ]; do zdd_tok=0$zdd_tok; done && zdd_tok=\"~$zdd_tok\" && \
             {{ printf '%s\\n' {v} \"$zdd_from\" {n} {l} \"$zdd_sz\" \"$zdd_nm\" \"$1 \"{n}\" $(($3 + 1))\" && \
             awk -v t=\"$zdd_tok\" -v n={n} 'NR > 8 {{ for (i = 1; i <= NF; i++) if ($i == t) $i = n; print }}' {p}; }} > {t} && \
             mv -f -- {t} {p} || rm -f -- {t} {p}",
            g = word(log)?,
            l = word(&format!("releases/{name}"))?,
            v = word(version)?,
            n = word(name)?,
        ),
        format!("cannot write `{plan}`"),
    )
    .inline())
}

/// Whether the remote shell may leave after answering `ops` (it does when a planned rollback
/// among them set `zdd_leave`).
fn leaves(ops: &[Op]) -> bool {
    ops.iter()
        .any(|op| matches!(op, Op::RollbackAsPlanned { .. }))
}

/// `request`, run only when a planned deploy's check found its plan holding (see
/// [`Op::IfPlanned`]); answered as done otherwise.
/// The guard is the remote shell's own: a request skipped by it starts no subshell.
fn if_planned(request: Request) -> anyhow::Result<Request> {
    let body = if request.inline {
        request.script.clone()
    } else {
        format!("(eval {})", word(&request.script)?)
    };
    Ok(Request {
        script: format!("if [ \"${{zdd_plan:-}}\" = 1 ]; then\n{body}\nfi"),
        inline: request.cwd.is_none(),
        ..request
    })
}

/// The request of [`AWAIT_PREFETCH`].
fn await_prefetch() -> Request {
    Request::must(
        AWAIT_PREFETCH.to_string(),
        "cannot wait for the fetch".to_string(),
    )
    .inline()
}

/// A short private directory (0700) for the ControlMaster sockets of one run:
/// `$TMPDIR/zdd-<pid>-XXXXXX`, or under `/tmp` when `TMPDIR` is long (a socket path must stay
/// under ~100 bytes). Directories of runs whose process is gone (killed before they could remove
/// theirs) are removed first.
pub fn control_directory() -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let temp = std::env::temp_dir();
    let parent = if temp.as_os_str().len() <= MAX_CONTROL_PARENT {
        temp
    } else {
        PathBuf::from("/tmp")
    };
    remove_dead_control_directories(&parent);
    tempfile::Builder::new()
        .prefix(&format!("zdd-{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&parent)
        .with_context(|| {
            format!(
                "cannot create a directory for SSH control sockets in `{}`",
                parent.display()
            )
        })
}

/// The longest parent of control directories: with `/zdd-<pid>-XXXXXX/h<index>` after it, a
/// socket path stays well under the 108 bytes of `sun_path` (and ssh's own suffix).
const MAX_CONTROL_PARENT: usize = 60;

fn remove_dead_control_directories(parent: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let uid = nix::unistd::getuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = control_directory_pid(&name) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() && meta.uid() == uid && !crate::system::process::alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid in a control directory's name (`zdd-<pid>-XXXXXX`).
fn control_directory_pid(name: &str) -> Option<u32> {
    let (pid, rest) = name.strip_prefix("zdd-")?.split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || rest.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// The control socket for host number `index`.
pub fn control_path(directory: &Path, index: usize) -> PathBuf {
    directory.join(format!("h{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_directories_name_their_process() {
        assert_eq!(control_directory_pid("zdd-4242-a1B2c3"), Some(4242));
        assert_eq!(control_directory_pid("zdd-test-a1B2c3"), None);
        assert_eq!(control_directory_pid("zdd-4242-"), None);
        assert_eq!(control_directory_pid("zdd.abc"), None);
    }

    #[test]
    fn arguments_carry_every_setting() {
        let target = Target {
            hostname: "10.0.0.5".into(),
            user: Some("deploy".into()),
            port: Some(2222),
            identity_file: Some("/k/id".into()),
            config_file: Some("/k/config".into()),
            forward_agent: true,
            extra_arguments: vec!["-o".into(), "Compression=yes".into()],
        };
        let args: Vec<String> = target
            .arguments(Path::new("/tmp/zdd-x/h0"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args.join(" "),
            "-o BatchMode=yes -o ControlMaster=auto -o ControlPath=/tmp/zdd-x/h0 -o ControlPersist=no \
             -o ServerAliveInterval=15 -T -F /k/config -p 2222 -i /k/id -A -o Compression=yes -l deploy 10.0.0.5"
        );
        assert_eq!(target.describe(), "deploy@10.0.0.5:2222");
    }
}
