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

use super::FileType;
use crate::process::{Output, ProcessError};

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
    ReplaceSymlink {
        target: String,
        link: String,
    },
    Export {
        cache: String,
        commit: String,
        destination: String,
    },
    /// Remove `path` only if it holds exactly `contents` (a lock this run took); fails,
    /// leaving it, when it holds something else.
    RemoveIfHolds {
        path: String,
        contents: String,
    },
    /// Fail with `otherwise` (zdd's words) unless `path` is a directory.
    ExpectDirectory {
        path: String,
        otherwise: String,
    },
    // Ops with an answer (they are queried):
    ReadFile(String),
    ReadLink(String),
    FileType(String),
    ListDir(String),
    Exists(String),
    CreateExclusive {
        path: String,
        contents: String,
    },
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
}

impl std::fmt::Display for DeferredError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeferredError::Command(e) => e.fmt(f),
            DeferredError::Message(text) => f.write_str(text),
        }
    }
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
