//! Shared recipes: an import of a module from a git repository at a pinned commit
//! (`import "git+https://host/recipes.git@<commit>/laravel-acme"`), or at a branch or tag
//! pinned by `zdd.lock`. import.rs reads the import string (pure), cache.rs fetches a
//! repository into the cache on this machine and checks every file read from it, lock.rs
//! reads and writes `zdd.lock`. The script layer's module resolver uses them.

pub mod cache;
pub mod import;
pub mod lock;

use std::fmt;

/// Why a shared recipe cannot be used, with what the user can do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub message: String,
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(message: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Problem {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
