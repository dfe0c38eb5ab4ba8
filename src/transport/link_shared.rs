//! [`Op::LinkShared`](super::Op::LinkShared): every `shared_dirs` and `shared_files` entry
//! linked into a release by one shell script, the same on every transport, so `deploy:shared`
//! is one request sent without waiting.
//!
//! The script first checks every entry, then changes anything: a directory on the way to an
//! entry in the release that is a symlink or not a directory, or a shared file that is neither
//! in `shared/` nor a regular file in the release, refuses the whole op ([`Refusal`], exit
//! [`REFUSED`], nothing changed). Then, per entry: a shared path that does not exist yet is
//! seeded from the release (a real directory or a regular file, copied) or created empty (a
//! directory); the entry in the release is removed (a symlink there is removed as a link, never
//! followed) and replaced by a relative link into `shared/`.

use std::fmt;

use crate::quote::{word, QuoteError};

/// The status of the script when it refuses (its stdout says why).
pub const REFUSED: i32 = 3;

/// One entry to link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedEntry {
    /// `shared_dirs` or `shared_files`.
    pub setting: String,
    /// The path inside the release (checked: relative, no `..`).
    pub relative: String,
    /// What the link points at, from the entry (`../../shared/...`).
    pub target: String,
}

impl SharedEntry {
    fn is_dir(&self) -> bool {
        self.setting == "shared_dirs"
    }
}

/// Why nothing was linked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `prefix`, on the way to `relative` in the release, is a symlink (to `target`).
    Symlink {
        setting: String,
        relative: String,
        prefix: String,
        target: String,
    },
    /// `prefix`, on the way to `relative` in the release, is a file.
    NotADirectory {
        setting: String,
        relative: String,
        prefix: String,
    },
    /// A shared file missing in `shared/` (at `shared`) and not a regular file in the release.
    MissingSharedFile { relative: String, shared: String },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Symlink {
                setting,
                relative,
                prefix,
                target,
            } => write!(
                f,
                "`{setting}` entry `{relative}`: `{prefix}` in the release is a symlink (to `{target}`), and zdd never acts through one"
            ),
            Refusal::NotADirectory {
                setting,
                relative,
                prefix,
            } => write!(
                f,
                "`{setting}` entry `{relative}`: `{prefix}` in the release is not a directory"
            ),
            Refusal::MissingSharedFile { relative, shared } => write!(
                f,
                "shared file `{relative}` is missing: `{shared}` does not exist"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// The script that links `entries` into `release` from `shared_root`. It exits [`REFUSED`]
/// with the reason on stdout (see [`refusal`]), 1 with the failing command's words on stderr.
pub fn script(
    release: &str,
    shared_root: &str,
    entries: &[SharedEntry],
) -> Result<String, QuoteError> {
    let mut lines = Vec::new();
    // Every entry is checked before anything changes.
    for (index, entry) in entries.iter().enumerate() {
        let parts: Vec<&str> = entry.relative.split('/').collect();
        for end in 1..parts.len() {
            let p = word(&format!("{release}/{}", parts[..end].join("/")))?;
            lines.push(format!(
                "if [ -L {p} ]; then printf 'symlink {index} {end}\\n'; readlink -- {p}; exit {REFUSED}; fi; \
                 if [ -e {p} ] && [ ! -d {p} ]; then printf 'notdir {index} {end}\\n'; exit {REFUSED}; fi"
            ));
        }
        if !entry.is_dir() {
            let s = word(&format!("{shared_root}/{}", entry.relative))?;
            let r = word(&format!("{release}/{}", entry.relative))?;
            lines.push(format!(
                "if [ ! -e {s} ] && [ ! -L {s} ] && {{ [ -L {r} ] || [ ! -f {r} ]; }}; then printf 'missing {index}\\n'; exit {REFUSED}; fi"
            ));
        }
    }
    for entry in entries {
        let shared = format!("{shared_root}/{}", entry.relative);
        let in_release = format!("{release}/{}", entry.relative);
        let (s, r) = (word(&shared)?, word(&in_release)?);
        let seed = if entry.is_dir() { "-d" } else { "-f" };
        let make_parent = |path: &str| -> Result<String, QuoteError> {
            Ok(match path.rsplit_once('/') {
                Some((parent, _)) => format!("mkdir -p -- {} || exit 1; ", word(parent)?),
                None => String::new(),
            })
        };
        let shared_parent = make_parent(&shared)?;
        let release_parent = make_parent(&in_release)?;
        // First deploy: the shared entry starts as the release's own content.
        lines.push(format!(
            "if [ ! -e {s} ] && [ ! -L {s} ]; then {shared_parent}\
             if [ ! -L {r} ] && [ {seed} {r} ]; then cp -a -- {r} {s} || exit 1; else mkdir -p -- {s} || exit 1; fi; fi"
        ));
        lines.push(format!(
            "if [ -L {r} ] || [ -e {r} ]; then \
             if [ ! -L {r} ] && [ -d {r} ]; then rm -rf -- {r} || exit 1; else rm -f -- {r} || exit 1; fi; \
             else {release_parent}:; fi; \
             ln -s -- {} {r} || exit 1",
            word(&entry.target)?
        ));
    }
    Ok(lines.join("\n"))
}

/// The reason in the stdout of a script that exited [`REFUSED`]; `None` when it says nothing
/// this module wrote.
pub fn refusal(stdout: &str, shared_root: &str, entries: &[SharedEntry]) -> Option<Refusal> {
    let (first, rest) = stdout.split_once('\n').unwrap_or((stdout, ""));
    let mut fields = first.split(' ');
    let kind = fields.next()?;
    let entry = entries.get(fields.next()?.parse::<usize>().ok()?)?;
    let prefix = |fields: &mut std::str::Split<'_, char>| -> Option<String> {
        let end: usize = fields.next()?.parse().ok()?;
        let parts: Vec<&str> = entry.relative.split('/').collect();
        (end < parts.len()).then(|| parts[..end].join("/"))
    };
    Some(match kind {
        "symlink" => Refusal::Symlink {
            setting: entry.setting.clone(),
            relative: entry.relative.clone(),
            prefix: prefix(&mut fields)?,
            target: rest.strip_suffix('\n').unwrap_or(rest).to_string(),
        },
        "notdir" => Refusal::NotADirectory {
            setting: entry.setting.clone(),
            relative: entry.relative.clone(),
            prefix: prefix(&mut fields)?,
        },
        "missing" => Refusal::MissingSharedFile {
            relative: entry.relative.clone(),
            shared: format!("{shared_root}/{}", entry.relative),
        },
        _ => return None,
    })
}
