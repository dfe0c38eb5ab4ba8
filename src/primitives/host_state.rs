//! The deploy state of one host, read once, in the request that takes the lock: where
//! `current` points, the release log, the release directories, and what killed runs left
//! behind. While the lock is held nothing else changes them, so the primitives read them from
//! here and update them here as they change the host (a swap, a release created, recorded or
//! removed); the host is told in requests sent without waiting.

use super::release_log::{self, Log};
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::transport::{Answer, FileType, Op};
use crate::values::template::Mode;

#[derive(Debug, Clone, Default)]
pub struct HostState {
    /// What `current` is now.
    pub current: Current,
    /// The release log, with the events this run recorded.
    pub log: Log,
    /// The names in `releases/`, sorted.
    pub releases: Vec<String>,
    /// Names in the deploy path and in `.zdd/` (for the temporary files of killed runs).
    pub root_names: Vec<String>,
    pub zdd_names: Vec<String>,
    /// Names in `.zdd/removing/` (releases whose deletion an earlier run did not finish).
    pub removing: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Current {
    #[default]
    Missing,
    /// A symlink, and exactly where it points.
    Link(String),
    /// A directory or a file: not something zdd swaps.
    Other,
}

impl Current {
    pub fn target(&self) -> Option<String> {
        match self {
            Current::Link(target) => Some(target.clone()),
            _ => None,
        }
    }
}

/// The fetch of a run that checks the repository out, to start with the lock; nothing when
/// the repository cannot be named yet (the checkout will say why).
fn prefetch(ctx: &HostContext, lock: &str, contents: &str) -> Option<Op> {
    if !ctx.will_check_out {
        return None;
    }
    let repository = ctx
        .text("repository")
        .and_then(|text| ctx.expand(&text, Mode::Plain))
        .ok()?;
    Some(Op::Prefetch {
        repository,
        cache: ctx.path("repo.git").ok()?,
        lock: lock.to_string(),
        holder: contents.to_string(),
    })
}

/// The lock file's creation followed by the reads of the state: one request. `lock` is the
/// lock file's path and `contents` what it says. Returns whether the lock was taken, what the
/// lock file says (the holder when it was not), and the state.
pub fn take_lock_and_read(
    ctx: &HostContext,
    lock: &str,
    contents: &str,
) -> Result<(bool, Option<String>, HostState), Failure> {
    let root = ctx.deploy_path()?;
    let current = ctx.path("current")?;
    let ops = vec![
        Op::CreateDirAll(ctx.path(".zdd")?),
        Op::CreateExclusive {
            path: lock.to_string(),
            contents: contents.to_string(),
        },
        Op::ReadFile(lock.to_string()),
        Op::FileType(current.clone()),
        Op::ReadLink(current),
        Op::ReadFile(ctx.path(release_log::LOG)?),
        Op::ListDir(ctx.path("releases")?),
        Op::ListDir(root),
        Op::ListDir(ctx.path(".zdd")?),
        Op::ListDir(ctx.path(super::cleanup::REMOVING)?),
    ];
    let mut ops = ops;
    if let Some(prefetch) = prefetch(ctx, lock, contents) {
        // Last: started once the lock is ours, answered at once, fetching while the state
        // travels back.
        ops.push(prefetch);
    }
    let mut answers = ctx.transport.query(ops)?.into_iter().skip(1);
    let mut next = || answers.next().unwrap_or(Answer::Done);
    let taken = next().flag();
    let holder = next().text();
    let kind = next().kind();
    let link = next().text();
    let log = match next().text() {
        Some(text) => release_log::parse(&text),
        None => Log {
            missing: true,
            ..Log::default()
        },
    };
    let current = match (kind, link) {
        (Some(FileType::Symlink), Some(target)) => Current::Link(target),
        (None, _) => Current::Missing,
        _ => Current::Other,
    };
    let state = HostState {
        current,
        log,
        releases: next().names(),
        root_names: next().names(),
        zdd_names: next().names(),
        removing: next().names(),
    };
    Ok((taken, holder, state))
}
