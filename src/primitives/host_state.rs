//! The deploy state of one host, read once, in the request that takes the lock: where
//! `current` points, the release log, the release directories, and what killed runs left
//! behind. While the lock is held nothing else changes them, so the primitives read them from
//! here and update them here as they change the host (a swap, a release created, recorded or
//! removed); the host is told in requests sent without waiting.

use super::foreign_layout::{self, Files};
use super::next_deploy;
use super::release_log::{self, Entry, Log};
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::transport::{Answer, FileType, Kept, Op};
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
    /// What other deploy tools left on the deploy path (`foreign_layout`).
    pub foreign: Files,
    /// Names in `.zdd/adopted/` (in-place trees zdd adopted: `release::adopt`).
    pub adopted: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Current {
    #[default]
    Missing,
    /// A symlink, and exactly where it points.
    Link(String),
    /// A directory: an in-place deploy, adopted by zdd's first deploy (`release::adopt`).
    Directory,
    /// A file or anything else: not something zdd swaps.
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
    let reference = ctx
        .text("branch")
        .and_then(|text| ctx.expand(&text, Mode::Plain))
        .ok()?;
    Some(Op::Prefetch {
        repository,
        cache: ctx.path("repo.git").ok()?,
        reference,
        stage: crate::transport::temporary_path(&ctx.path(".zdd/checkout").ok()?, "stage"),
        lock: lock.to_string(),
        holder: contents.to_string(),
    })
}

/// What the request that takes the lock found.
pub struct Taken {
    /// The lock was taken.
    pub taken: bool,
    /// What the lock file says (the holder, when it was not taken).
    pub holder: Option<String>,
    /// The state, as it was before anything this request changed.
    pub state: HostState,
    /// The host rolled back as the last run planned (`next_rollback`): its answer, and the
    /// record it wrote.
    pub planned: Option<(String, Entry)>,
    /// The host is deploying as the last run planned (`next_deploy`): the request, the
    /// check's answer, and where the answers of what was sent behind it will be.
    pub deploying: Option<(next_deploy::Request, String, Vec<Kept>)>,
}

/// The lock file's creation followed by the reads of the state: one request. `lock` is the
/// lock file's path and `contents` what it says. With the lock, it also starts the fetch of a
/// run that checks out, and rolls back or deploys (`deploy`) as the last run planned.
pub fn take_lock_and_read(
    ctx: &HostContext,
    lock: &str,
    contents: &str,
    deploy: Option<next_deploy::Request>,
) -> Result<Taken, Failure> {
    let root = ctx.deploy_path()?;
    let current = ctx.path("current")?;
    let mut ops = vec![
        Op::CreateDirAll(ctx.path(".zdd")?),
        Op::CreateExclusive {
            path: lock.to_string(),
            contents: contents.to_string(),
        },
        Op::ReadLine(lock.to_string()),
        Op::FileType(current.clone()),
        Op::ReadLink(current),
        Op::ReadFile(ctx.path(release_log::LOG)?),
        Op::ListDir(ctx.path("releases")?),
        Op::ListDir(root),
        Op::ListDir(ctx.path(".zdd")?),
        Op::ListDir(ctx.path(super::cleanup::REMOVING)?),
    ];
    ops.extend(foreign_ops(ctx)?);
    let mut ahead = Vec::new();
    if let Some(deploy) = &deploy {
        // After the reads, which say what the host had before it; before the fetch starts
        // (the fetch is the last of the request, as without a plan).
        ops.push(deploy.check.clone());
        ahead = deploy.ahead.clone();
    }
    let prefetch = prefetch(ctx, lock, contents);
    let prefetching = prefetch.is_some();
    if let Some(prefetch) = prefetch {
        // Started once the lock is ours, answered at once, fetching while the state travels
        // back. (Started before the reads, side by side at 50 ms it gained nothing measurable,
        // and a fetch that kills the remote shell then lands in the reads.)
        ops.push(prefetch);
    }
    let planned = super::next_rollback::request(ctx, lock, contents)?;
    let record = planned.map(|(op, record)| {
        // Last: after the reads, which say what it changed.
        ops.push(op);
        record
    });
    let (answers, kept) = ctx.transport.query_ahead(ops, ahead)?;
    let mut answers = answers.into_iter().skip(1);
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
        (Some(FileType::Directory), _) => Current::Directory,
        _ => Current::Other,
    };
    let releases = next().names();
    let root_names = next().names();
    let zdd_names = next().names();
    let removing = next().names();
    let (foreign, adopted) = foreign_answers(&mut next);
    let state = HostState {
        current,
        log,
        releases,
        root_names,
        zdd_names,
        removing,
        foreign,
        adopted,
    };
    let checked = deploy.as_ref().map(|_| next().text());
    if prefetching {
        next();
    }
    let planned = match record {
        Some(record) => next().text().map(|answer| (answer, record)),
        None => None,
    };
    let deploying = match (deploy, checked) {
        (Some(deploy), Some(checked)) => match checked {
            Some(answer) => Some((deploy, answer, kept)),
            None => {
                // No plan held: what was sent behind the check does nothing.
                let tags: Vec<u64> = deploy.ahead.iter().map(|(_, tag)| *tag).collect();
                ctx.transport.void(&tags);
                None
            }
        },
        _ => None,
    };
    Ok(Taken {
        taken,
        holder,
        state,
        planned,
        deploying,
    })
}

/// The reads of what other tools left (`foreign_layout`) and of `.zdd/adopted/`: part of the
/// request that takes the lock, or a request of their own ([`foreign`]).
fn foreign_ops(ctx: &HostContext) -> Result<Vec<Op>, Failure> {
    Ok(vec![
        Op::ReadIfReadable(ctx.path(foreign_layout::DEPLOYER_LOG)?),
        Op::ReadIfReadable(ctx.path(foreign_layout::DEPLOYER_LATEST)?),
        Op::ReadLink(ctx.path(foreign_layout::DEPLOYER_RELEASE_LINK)?),
        Op::ReadIfReadable(ctx.path(foreign_layout::CAPISTRANO_LOG)?),
        Op::ReadIfReadable(ctx.path(foreign_layout::MINA_LAST_VERSION)?),
        Op::ListDir(ctx.path(foreign_layout::ADOPTED)?),
    ])
}

fn foreign_answers(next: &mut impl FnMut() -> Answer) -> (Files, Vec<String>) {
    let files = Files {
        deployer_log: next().text(),
        deployer_latest: next().text(),
        release_link: next().text(),
        capistrano_log: next().text(),
        mina_last_version: next().text(),
    };
    (files, next().names())
}

/// What other tools left on the deploy path and the names in `.zdd/adopted/`: from the state
/// when the lock was taken, else read now (one request).
pub fn foreign(ctx: &HostContext) -> Result<(Files, Vec<String>), Failure> {
    if let Some(state) = &ctx.state {
        return Ok((state.foreign.clone(), state.adopted.clone()));
    }
    let answers = ctx.transport.query(foreign_ops(ctx)?)?;
    let mut answers = answers.into_iter();
    let mut next = || answers.next().unwrap_or(Answer::Done);
    Ok(foreign_answers(&mut next))
}
