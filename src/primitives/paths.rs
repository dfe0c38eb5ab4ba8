//! Checks on the relative paths a recipe lists (`shared_dirs`, `writable_dirs`, ...), and the
//! rule that keeps zdd's file operations inside the release: a path inside a release is only
//! acted on when nothing on the way to it is a symlink, except the links into `shared/` that
//! zdd itself made. A symlink committed in the repository (`storage -> /somewhere`) is never
//! followed.

use std::collections::BTreeMap;

use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::transport::link_shared::Refusal;
use crate::transport::{FileType, Op};

/// A path inside the release: relative, no `..`, no empty parts.
pub fn inside_release(setting: &str, path: &str) -> Result<String, Failure> {
    let trimmed = path.trim_end_matches('/');
    let bad = trimmed.is_empty()
        || trimmed.starts_with('/')
        || trimmed
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(Failure::message(format!(
            "`{setting}` entry `{path}` must be a relative path inside the release, without `..`"
        )));
    }
    Ok(trimmed.to_string())
}

/// The target zdd gives the link at `relative` in a release: `../../shared/relative` (one
/// `..` per part, and one for `releases/`).
pub fn shared_link_target(relative: &str) -> String {
    let depth = relative.split('/').count();
    format!("{}shared/{relative}", "../".repeat(depth + 1))
}

/// What the host says of the paths on the way to some entries of a release (lstat and
/// readlink of each), asked in one round trip, for [`check_parents`] and [`check_whole`].
#[derive(Debug, Default)]
pub struct Facts {
    kinds: BTreeMap<String, (Option<FileType>, Option<String>)>,
}

impl Facts {
    /// Ask, in one query, about every prefix of each of `relatives` in the release (and the
    /// entry itself), plus each of `extra` (any path).
    pub fn gather(
        ctx: &HostContext,
        release_path: &str,
        relatives: &[String],
        extra: &[String],
    ) -> Result<Facts, Failure> {
        let mut paths: Vec<String> = Vec::new();
        for relative in relatives {
            let parts: Vec<&str> = relative.split('/').collect();
            for end in 1..=parts.len() {
                let path = format!("{release_path}/{}", parts[..end].join("/"));
                if !paths.contains(&path) {
                    paths.push(path);
                }
            }
        }
        for path in extra {
            if !paths.contains(path) {
                paths.push(path.clone());
            }
        }
        let ops = paths
            .iter()
            .flat_map(|p| [Op::FileType(p.clone()), Op::ReadLink(p.clone())])
            .collect();
        let mut answers = ctx.transport.query(ops)?.into_iter();
        let mut kinds = BTreeMap::new();
        for path in paths {
            let kind = answers.next().and_then(|a| a.kind());
            let link = answers.next().and_then(|a| a.text());
            kinds.insert(path, (kind, link));
        }
        Ok(Facts { kinds })
    }

    /// What is at `path` (asked for in [`Facts::gather`]).
    pub fn kind(&self, path: &str) -> Option<FileType> {
        self.kinds.get(path).and_then(|(kind, _)| *kind)
    }

    fn link(&self, path: &str) -> Option<String> {
        self.kinds.get(path).and_then(|(_, link)| link.clone())
    }
}

/// Whether the directories on the way to `relative` in the release (not `relative` itself)
/// may be walked through: each is a real directory, or — when `through_shared` — a link into
/// `shared/` that zdd made. Errors name the setting, the entry and the culprit.
pub fn check_parents(
    facts: &Facts,
    release_path: &str,
    setting: &str,
    relative: &str,
    through_shared: bool,
) -> Result<(), Failure> {
    let parts: Vec<&str> = relative.split('/').collect();
    for end in 1..parts.len() {
        let prefix = parts[..end].join("/");
        check_step(
            facts,
            release_path,
            setting,
            relative,
            &prefix,
            through_shared,
        )?;
    }
    Ok(())
}

/// Like [`check_parents`], and `relative` itself too (for operations that act on what it
/// points at, such as `chmod -R`).
pub fn check_whole(
    facts: &Facts,
    release_path: &str,
    setting: &str,
    relative: &str,
) -> Result<(), Failure> {
    check_parents(facts, release_path, setting, relative, true)?;
    check_step(facts, release_path, setting, relative, relative, true)
}

fn check_step(
    facts: &Facts,
    release_path: &str,
    setting: &str,
    relative: &str,
    prefix: &str,
    through_shared: bool,
) -> Result<(), Failure> {
    let path = format!("{release_path}/{prefix}");
    let refusal = match facts.kind(&path) {
        None | Some(FileType::Directory) => return Ok(()),
        Some(FileType::Symlink) => {
            let target = facts.link(&path).unwrap_or_default();
            if through_shared && target == shared_link_target(prefix) {
                return Ok(());
            }
            Refusal::Symlink {
                setting: setting.to_string(),
                relative: relative.to_string(),
                prefix: prefix.to_string(),
                target,
            }
        }
        Some(_) => Refusal::NotADirectory {
            setting: setting.to_string(),
            relative: relative.to_string(),
            prefix: prefix.to_string(),
        },
    };
    Err(refused(&refusal, ""))
}

/// A refused entry as a failure, with what to do about it (`host`: where, for the hint).
pub fn refused(refusal: &Refusal, host: &str) -> Failure {
    let failure = Failure::message(refusal.to_string());
    match refusal {
        Refusal::Symlink {
            setting, prefix, ..
        } => failure.with_hint(if setting.starts_with("shared_") {
            format!("remove the symlink `{prefix}` from the repository; a path inside a shared dir is shared with it already")
        } else {
            format!("remove the symlink `{prefix}` from the repository, or list `{prefix}` in `shared_dirs`")
        }),
        Refusal::NotADirectory { .. } => failure,
        Refusal::MissingSharedFile { shared, .. } => failure.with_hint(format!(
            "create `{shared}` on host `{host}` before deploying (zdd never creates an empty one)"
        )),
        Refusal::SharedKind { shared, .. } => failure.with_hint(format!(
            "on host `{host}`, move `{shared}` aside (zdd seeds a missing one from the release)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_inside_the_release() {
        assert_eq!(
            inside_release("shared_dirs", "storage/").unwrap(),
            "storage"
        );
        for bad in ["/etc", "../x", "a/../../b", "", "a//b"] {
            assert!(inside_release("shared_dirs", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn links_climb_out_of_the_release_and_releases() {
        assert_eq!(shared_link_target(".env"), "../../shared/.env");
        assert_eq!(
            shared_link_target("storage/app/public"),
            "../../../../shared/storage/app/public"
        );
    }
}
