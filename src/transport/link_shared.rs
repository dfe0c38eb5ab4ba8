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

use crate::values::quote::{word, QuoteError};

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
    /// The shared path of an entry (`shared`) is there but is not what the entry is: a shared
    /// dir that is not a directory, a shared file that is a directory (a symlink to nothing is
    /// neither). Linking the release to it would break the app.
    SharedKind {
        setting: String,
        relative: String,
        shared: String,
    },
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
            Refusal::SharedKind {
                setting,
                relative,
                shared,
            } => {
                let kind = if setting == "shared_dirs" {
                    "a directory"
                } else {
                    "a file"
                };
                write!(
                    f,
                    "`{setting}` entry `{relative}`: `{shared}` is not {kind}"
                )
            }
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
        let s = word(&format!("{shared_root}/{}", entry.relative))?;
        // What is in `shared/` already must be what the entry is (`-d` and `-e` follow a
        // symlink: a link to a directory is a directory, a link to nothing is nothing).
        let wrong = if entry.is_dir() {
            format!("[ ! -d {s} ]")
        } else {
            format!("{{ [ -d {s} ] || [ ! -e {s} ]; }}")
        };
        lines.push(format!(
            "if {{ [ -e {s} ] || [ -L {s} ]; }} && {wrong}; then printf 'kind {index}\\n'; exit {REFUSED}; fi"
        ));
        if !entry.is_dir() {
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
        "kind" => Refusal::SharedKind {
            setting: entry.setting.clone(),
            relative: entry.relative.clone(),
            shared: format!("{shared_root}/{}", entry.relative),
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(setting: &str, relative: &str) -> SharedEntry {
        SharedEntry {
            setting: setting.to_string(),
            relative: relative.to_string(),
            target: format!("../../shared/{relative}"),
        }
    }

    /// Runs the script with `sh` in a temporary deploy path: (status, stdout).
    fn run(root: &std::path::Path, entries: &[SharedEntry]) -> (i32, String) {
        let release = root.join("releases/r1").display().to_string();
        let shared = root.join("shared").display().to_string();
        let output = std::process::Command::new("sh")
            .arg("-c")
            .arg(script(&release, &shared, entries).unwrap())
            .output()
            .unwrap();
        (
            output.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    #[test]
    fn a_shared_path_of_the_wrong_kind_is_refused_before_anything_changes() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("releases/r1/storage")).unwrap();
        std::fs::write(root.path().join("releases/r1/.env"), "x").unwrap();
        std::fs::create_dir_all(root.path().join("shared/.env")).unwrap();
        std::fs::write(root.path().join("shared/storage"), "a file").unwrap();
        std::os::unix::fs::symlink("/nonexistent/zdd", root.path().join("shared/cache")).unwrap();
        let shared = root.path().join("shared").display().to_string();
        for (entries, setting, relative) in [
            (
                vec![entry("shared_dirs", "storage")],
                "shared_dirs",
                "storage",
            ),
            (vec![entry("shared_files", ".env")], "shared_files", ".env"),
            // A symlink to nothing is neither a directory nor a file.
            (vec![entry("shared_dirs", "cache")], "shared_dirs", "cache"),
        ] {
            let (status, stdout) = run(root.path(), &entries);
            assert_eq!(status, REFUSED, "{relative}: {stdout}");
            let refusal = refusal(&stdout, &shared, &entries).unwrap();
            assert_eq!(
                refusal,
                Refusal::SharedKind {
                    setting: setting.into(),
                    relative: relative.into(),
                    shared: format!("{shared}/{relative}"),
                }
            );
            assert!(root.path().join("releases/r1/storage").is_dir());
            assert!(root.path().join("releases/r1/.env").is_file());
        }
        assert_eq!(
            refusal(
                "kind 0\n",
                "/srv/app/shared",
                &[entry("shared_dirs", "storage")]
            )
            .unwrap()
            .to_string(),
            "`shared_dirs` entry `storage`: `/srv/app/shared/storage` is not a directory"
        );
        assert_eq!(
            refusal(
                "kind 0\n",
                "/srv/app/shared",
                &[entry("shared_files", ".env")]
            )
            .unwrap()
            .to_string(),
            "`shared_files` entry `.env`: `/srv/app/shared/.env` is not a file"
        );
    }

    #[test]
    fn a_shared_path_that_links_to_the_right_kind_is_used() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("releases/r1/storage")).unwrap();
        std::fs::create_dir_all(root.path().join("elsewhere/storage")).unwrap();
        std::fs::create_dir_all(root.path().join("shared")).unwrap();
        std::os::unix::fs::symlink(
            root.path().join("elsewhere/storage"),
            root.path().join("shared/storage"),
        )
        .unwrap();
        let (status, stdout) = run(root.path(), &[entry("shared_dirs", "storage")]);
        assert_eq!((status, stdout.as_str()), (0, ""));
        assert!(root.path().join("releases/r1/storage").is_symlink());
    }
}
