//! File operations and commands as values, so that several can travel in one request.
//!
//! A primitive whose result decides nothing *sends* an [`Op`] ([`Transport::send`]): the SSH
//! transport writes it to the remote shell at once and does not wait; the remote side runs
//! requests in order and skips every request after one that failed. A primitive that must look
//! at results *queries* ([`Transport::query`]): its ops and everything sent before them are
//! answered in one round trip. The local transport does each op at once.
//!
//! [`Transport::send`]: super::Transport::send
//! [`Transport::query`]: super::Transport::query

use super::link_shared::{Refusal, SharedEntry};
use super::FileType;
use crate::system::process::{Output, ProcessError};
use crate::transport::git::RefError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A shell command whose output nobody reads (`display` is what errors show).
    Exec {
        script: String,
        cwd: Option<String>,
        display: String,
    },
    WriteFile {
        path: String,
        contents: String,
    },
    /// A file only worth having (the watcher's recording): `directory` made, then `path`
    /// written, if there is room. Never a failure: requests after it run whatever happened.
    KeepFile {
        directory: String,
        path: String,
        contents: String,
    },
    AppendLine {
        path: String,
        line: String,
    },
    CreateDirAll(String),
    RemoveFile(String),
    RemoveDirAll(String),
    Rename {
        from: String,
        to: String,
    },
    Symlink {
        target: String,
        link: String,
    },
    /// Swap two paths at once (renameat2(2) `RENAME_EXCHANGE`): a directory and a symlink
    /// trade places with no moment where either path is missing.
    Exchange {
        a: String,
        b: String,
    },
    ReplaceSymlink {
        target: String,
        link: String,
    },
    Export {
        cache: String,
        commit: String,
        destination: String,
    },
    /// `deploy:update_code` in one request: fetch `repository` into the bare `cache`, resolve
    /// `reference`, write the tree of that commit into `destination` with the commit's id in
    /// `destination/REVISION`, and append `record` to `log` with that id in place of
    /// [`PENDING_COMMIT`]. Answers `Text(Some(commit))`.
    Checkout {
        repository: String,
        cache: String,
        reference: String,
        destination: String,
        log: String,
        record: String,
    },
    /// The checkout's fetch, started early: when `lock` holds `holder` (this run took the
    /// lock), fetch `repository` into `cache` while the run goes on; the next checkout or
    /// resolve waits for it instead of fetching again, and the lock is released only after
    /// it ended. Once fetched, the commit `reference` names is exported into the directory
    /// `stage` (a temporary name, purpose `stage`): a checkout or export of that same commit
    /// into an empty release moves it there instead of exporting again. Nothing on a transport
    /// that does each op at once.
    Prefetch {
        repository: String,
        cache: String,
        reference: String,
        stage: String,
        lock: String,
        holder: String,
    },
    /// The build's archive (the local file `source`, zdd's machine) written to `destination`
    /// on the host over the connection zdd has (no second one), through a temporary name; kept
    /// only when what arrived has the sha256 `sha256`, else removed and a failure. Until the
    /// [`Op::Unpack`] after it has succeeded, the release `for_release` is removed by the host
    /// if the connection ends (never a half-filled release left behind).
    Upload {
        source: String,
        destination: String,
        sha256: String,
        for_release: String,
    },
    /// Unpack the archive `archive` into the directory `destination` (the new release, empty)
    /// and check what came out against the build's manifest: every file in `manifest` (a
    /// `sha256sum` list, a file on the host) with its hash, `files` regular files in all, and
    /// its symlinks exactly those of `links` (a file on the host, [`crate::artifact::link_list`]).
    /// A failure leaves the release to the runner to discard.
    Unpack {
        archive: String,
        destination: String,
        manifest: String,
        files: usize,
        links: String,
    },
    /// `deploy:shared` in one request: link `entries` into `release` from `shared_root`
    /// (see [`super::link_shared`]); refused with a [`Refusal`] before anything changes.
    LinkShared {
        release: String,
        shared_root: String,
        entries: Vec<SharedEntry>,
    },
    /// Remove `path` only if it holds exactly `contents` (a lock this run took: one line, no
    /// newline); fails, leaving it, when it holds something else.
    RemoveIfHolds {
        path: String,
        contents: String,
    },
    /// Fail with `otherwise` (zdd's words, then what `link` points at) unless `link` is a
    /// symlink to `target`.
    ExpectLink {
        link: String,
        target: String,
        otherwise: String,
    },
    /// Fail with `otherwise` (zdd's words) unless `path` is a directory.
    ExpectDirectory {
        path: String,
        otherwise: String,
    },
    /// What the next run may do without asking, left by a run that ends holding the lock
    /// (`primitives::next_run`): `head` (the plan's first lines), then the CRC and size of
    /// `log` as it is now (`cksum`), then `names`, then `tail` (the deploys it plans, when
    /// any), written to `plan`. Nothing on a transport that does each op at once (the plan is
    /// only worth its round trip over a pipelining one).
    WritePlan {
        plan: String,
        head: String,
        log: String,
        names: String,
        tail: String,
    },
    /// `op`, done only when the request that took the lock found the deploy the last run
    /// planned ([`Op::DeployPlanCheck`] set the remote shell's `zdd_plan`); otherwise answered
    /// as done, doing nothing. A transport that does each op at once never plans: it does
    /// nothing either.
    IfPlanned(Box<Op>),
    /// [`Op::AppendLine`] with the release `current` pointed at when the planned deploy
    /// began (`zdd_from`, see [`Op::DeployPlanCheck`]) in place of [`PLANNED_FROM`].
    AppendPlanned {
        path: String,
        line: String,
    },
    /// The planned deploy's cleanup: each release the plan names for it (`zdd_doomed`) is
    /// recorded `removing` in `log`, renamed into `removing`, deleted and recorded `removed`
    /// (`removing_record` and `removed_record` with its name in place of [`PLANNED_TO`]), as
    /// `primitives::cleanup` removes one; what earlier runs left in `removing` goes too.
    RemoveAsPlanned {
        releases: String,
        removing: String,
        log: String,
        removing_record: String,
        removed_record: String,
    },
    /// The plan moved on by the planned deploy that made `name`: the rollback it plans goes
    /// back to `zdd_from`, the facts are the host's as they are now (`current` pointing at
    /// `releases/NAME`, as the swap before it read back; the CRC and size of `log`; the names
    /// in `releases`), and the next deploy's removals are the next line, with `name` in place
    /// of the token that stood for it.
    AdvancePlan {
        plan: String,
        version: String,
        name: String,
        log: String,
        releases: String,
    },
    /// The remote shell ends once it has answered this request and every one before it
    /// succeeded: the last request of a planned deploy, nothing is sent after it.
    Leave,
    // Ops with an answer (they are queried):
    /// Where a program is on the host's PATH (`command -v`): `Text(None)` when it is not.
    FindProgram(String),
    ReadFile(String),
    /// A file's text when it is a regular file this user can read, else `Text(None)`: for
    /// files zdd only consults (another tool's log), which must never stop a deploy.
    ReadIfReadable(String),
    /// The first line of a file, without its newline, read by the shell itself (no process
    /// started): for one-line files such as the lock. `Text(None)` when there is no file.
    ReadLine(String),
    ReadLink(String),
    /// Whether `path` is a file with the sha256 `sha256` (the archive of an earlier deploy,
    /// shipped already): `Flag`.
    HasArtifact {
        path: String,
        sha256: String,
    },
    FileType(String),
    ListDir(String),
    Exists(String),
    CreateExclusive {
        path: String,
        contents: String,
    },
    /// `zdd rollback` in the request that takes the lock: when the `guard` holds, point
    /// `current` at `releases/TO`, append `record` with TO and FROM in place of
    /// [`PLANNED_TO`] and [`PLANNED_FROM`], remove the plan and the lock, and leave: the remote
    /// shell ends once its answers are written. Answers `Text(Some("TO FROM"))` when it did,
    /// `Text(None)` when the plan does not hold (nothing changed). A transport that does each
    /// op at once answers `Text(None)`.
    RollbackAsPlanned {
        guard: PlanGuard,
        record: String,
    },
    /// The stdlib's deploy in the request that takes the lock (`primitives::next_deploy`): when
    /// the `guard` holds, the plan was made for `keep` kept releases, plans a next
    /// deploy, and every name it knows sorts before `name`, sets the remote shell's `zdd_plan`
    /// (the [`Op::IfPlanned`] ops after it run), `zdd_from` (the release `current` points at)
    /// and `zdd_doomed` (the releases this deploy's cleanup removes). Answers
    /// `Text(Some("FROM DOOMED..."))` when it did, `Text(None)` when the plan does not hold.
    /// A transport that does each op at once answers `Text(None)`.
    DeployPlanCheck {
        guard: PlanGuard,
        keep: usize,
        name: String,
    },
}

/// What a run planned by the run before it checks on the host before it does anything on the
/// plan's word: that `lock` holds `holder` (this run took it), and that `plan` still describes
/// the host exactly: its first line is `version`, `link` points where it says, `log` has the
/// CRC and size it says, `releases` holds exactly the names it lists
/// (`primitives::next_run`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanGuard {
    pub plan: String,
    pub version: String,
    pub link: String,
    pub log: String,
    pub releases: String,
    pub lock: String,
    pub holder: String,
}

/// Where a planned rollback's record names the release it goes back to, and the one it
/// leaves ([`Op::RollbackAsPlanned`]): JSON string contents nothing else in a record has.
pub const PLANNED_TO: &str = "@zdd-to@";
pub const PLANNED_FROM: &str = "@zdd-from@";

/// The `commit` of [`Op::Checkout`]'s `record`, which is written before the host says which
/// commit the reference names: the host puts the commit in its place.
pub const PENDING_COMMIT: &str = "@zdd-commit@";

/// Where the commit goes in a checkout's record: `"commit":"@zdd-commit@"`, a JSON key and
/// string value, which nothing inside another value can look like (quotes are escaped there).
pub fn commit_placeholder() -> String {
    format!("\"commit\":\"{PENDING_COMMIT}\"")
}

/// `record` with `commit` in place of [`PENDING_COMMIT`].
pub fn with_commit(record: &str, commit: &str) -> String {
    record.replacen(
        &commit_placeholder(),
        &format!("\"commit\":\"{commit}\""),
        1,
    )
}

/// What an op answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Done,
    Output(Output),
    /// A file's contents or a link's target; `None`: nothing there.
    Text(Option<String>),
    Kind(Option<FileType>),
    Names(Vec<String>),
    Flag(bool),
}

impl Answer {
    pub fn text(self) -> Option<String> {
        match self {
            Answer::Text(text) => text,
            _ => None,
        }
    }
    pub fn kind(self) -> Option<FileType> {
        match self {
            Answer::Kind(kind) => kind,
            _ => None,
        }
    }
    pub fn names(self) -> Vec<String> {
        match self {
            Answer::Names(names) => names,
            _ => Vec::new(),
        }
    }
    pub fn flag(self) -> bool {
        matches!(self, Answer::Flag(true))
    }
}

/// A request that was sent without waiting and failed, found by a later wait. `tag` is what
/// the sender gave ([`Transport::send`](super::Transport::send)), so the failure is reported
/// as the step that sent it.
#[derive(Debug, Clone)]
pub struct Deferred {
    pub tag: u64,
    pub error: DeferredError,
}

#[derive(Debug, Clone)]
pub enum DeferredError {
    Command(ProcessError),
    Message(String),
    /// An [`Op::LinkShared`] refused: nothing was changed.
    Refused(Refusal),
    /// An [`Op::Checkout`] could not fetch `repository` or resolve the reference.
    Ref {
        error: RefError,
        repository: String,
    },
}

impl DeferredError {
    /// As the error a waited-for request returns.
    pub fn into_error(self) -> anyhow::Error {
        match self {
            DeferredError::Command(error) => error.into(),
            DeferredError::Message(text) => anyhow::anyhow!(text),
            DeferredError::Ref { error, .. } => error.into(),
            DeferredError::Refused(refusal) => refusal.into(),
        }
    }
}

impl std::fmt::Display for DeferredError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeferredError::Command(e) => e.fmt(f),
            DeferredError::Message(text) => f.write_str(text),
            DeferredError::Ref { error, .. } => error.fmt(f),
            DeferredError::Refused(refusal) => refusal.fmt(f),
        }
    }
}

/// The answer of a request sent without waiting and kept ([`Transport::send_kept`]).
///
/// [`Transport::send_kept`]: super::Transport::send_kept
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// Answered already (the local transport does each op at once).
    Ready(Answer),
    /// Read by a later wait; the number identifies it.
    Waiting(u64),
}

/// What a wait returns when a request sent before it failed (and so it was not run).
#[derive(Debug, Clone)]
pub struct EarlierFailure(pub Deferred);

impl std::fmt::Display for EarlierFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.error.fmt(f)
    }
}

impl std::error::Error for EarlierFailure {}
