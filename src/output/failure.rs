//! Why a step failed, as primitives report it. The runner reads it back from the script error
//! and the renderer turns it into the message users see.

use std::fmt;

use crate::system::process::ProcessError;

#[derive(Debug, Clone)]
pub enum FailureKind {
    /// A command exited non-zero, was killed, or could not start.
    Command(Box<ProcessError>),
    /// Another deploy holds the lock (exit code 3).
    Locked(String),
    /// Anything else a primitive refused or could not do.
    Message(String),
    /// The user pressed Ctrl-C.
    Interrupted,
    /// A `{{key}}` value that names itself, directly or through a computed key.
    SelfReference(String),
}

/// A primitive's failure, with a hint for the user when there is one.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: FailureKind,
    pub hint: Option<String>,
}

impl Failure {
    pub fn message(text: impl Into<String>) -> Failure {
        Failure {
            kind: FailureKind::Message(text.into()),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_locked(&self) -> bool {
        matches!(self.kind, FailureKind::Locked(_))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            FailureKind::Command(e) => e.fmt(f),
            FailureKind::Locked(text) | FailureKind::Message(text) => f.write_str(text),
            FailureKind::Interrupted => f.write_str("interrupted"),
            FailureKind::SelfReference(key) => write!(f, "`{{{{{key}}}}}` expands into itself"),
        }
    }
}

impl From<ProcessError> for Failure {
    fn from(e: ProcessError) -> Failure {
        if crate::system::interrupt::interrupted() {
            return Failure {
                kind: FailureKind::Interrupted,
                hint: None,
            };
        }
        Failure {
            kind: FailureKind::Command(Box::new(e)),
            hint: None,
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        match e.downcast::<ProcessError>() {
            Ok(process) => Failure::from(process),
            Err(e) => Failure::message(format!("{e:#}")),
        }
    }
}

impl From<crate::values::template::TemplateError> for Failure {
    fn from(e: crate::values::template::TemplateError) -> Failure {
        match e {
            // Kept as it is, so that an expansion around it passes it on instead of wrapping
            // it once per level.
            crate::values::template::TemplateError::TooDeep { key } => Failure {
                kind: FailureKind::SelfReference(key),
                hint: Some(
                    "a value cannot name itself, directly or through a computed key such as `current_path`"
                        .to_string(),
                ),
            },
            e => Failure::message(e.to_string()),
        }
    }
}

impl From<crate::values::quote::QuoteError> for Failure {
    fn from(e: crate::values::quote::QuoteError) -> Failure {
        Failure::message(e.to_string())
    }
}
