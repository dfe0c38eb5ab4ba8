//! What a symlink of the build directory becomes in the archive. A link whose target stays
//! inside the build directory is packed as a link: a relative target as stored, an absolute
//! one rewritten relative (the release lives elsewhere on the host). A link that leaves the
//! build directory (composer's path repositories link `vendor/acme/pkg` to
//! `/abs/packages/pkg`) is packed as what it points at, so the host gets real files. A link to
//! nothing is an error, unless its target is excluded (`public/storage -> ../storage/app/public`
//! with `storage` shared: the host provides it).
//!
//! A symlink the commit itself holds ([`Links::committed`]) is never followed: it is packed as
//! the commit has it, as a checkout on the host would have it. Otherwise a link in the
//! repository to `/etc/passwd` or to the deployer's `~/.ssh` would ship zdd's machine's files
//! into every release. A target holding a newline or a carriage return is refused: a host
//! reads a link back with `readlink` in `$(...)`, which drops trailing newlines.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;

use super::exclude::Excludes;

/// The build directory as given (made absolute, not resolved) and as resolved: an absolute
/// target may name either.
#[derive(Debug)]
pub struct Roots {
    pub given: PathBuf,
    pub canonical: PathBuf,
}

/// What the walk does with symlinks that leave the build directory.
#[derive(Debug, Clone)]
pub struct Links {
    /// The symlinks of the commit (`public/x`, from the build directory): packed as they are.
    pub committed: BTreeSet<String>,
    /// Whether a link the build made that leaves the build directory is packed as what it
    /// points at (the build ran on this machine); otherwise it is an error (the build ran on
    /// another host: what it points at is there, not here).
    pub follow_outside: bool,
}

impl Default for Links {
    fn default() -> Links {
        Links {
            committed: BTreeSet::new(),
            follow_outside: true,
        }
    }
}

/// A symlink's fate.
#[derive(Debug, PartialEq, Eq)]
pub enum Fate {
    /// Packed as a link to this target (relative).
    Keep(String),
    /// Packed as the file or directory at this resolved path, outside the build directory.
    Follow(PathBuf),
}

/// Decide what the symlink at `link` (on disk), packed at `relative` (`a/b`), becomes.
/// `mirrored` says that the link's directory is the build directory's own (its relative target
/// then resolves from `relative`'s directory); inside a followed directory it is not.
pub fn fate(
    link: &Path,
    relative: &str,
    mirrored: bool,
    roots: &Roots,
    excludes: &Excludes,
    links: &Links,
) -> anyhow::Result<Fate> {
    let target = std::fs::read_link(link)
        .with_context(|| format!("cannot read the symlink `{relative}`"))?;
    let Some(stored) = target.to_str() else {
        anyhow::bail!(
            "cannot pack `{relative}`: it is a symlink whose target `{}` is not UTF-8",
            target.display()
        );
    };
    for (character, called) in [('\n', "a newline"), ('\r', "a carriage return")] {
        if stored.contains(character) {
            anyhow::bail!(
                "cannot pack `{relative}`: it is a symlink whose target `{}` holds {called}, \
                 which a host cannot read back to check it",
                stored.escape_debug()
            );
        }
    }
    if mirrored && links.committed.contains(relative) {
        return Ok(Fate::Keep(stored.to_string()));
    }
    let parent: Vec<&str> = match relative.rsplit_once('/') {
        Some((parent, _)) => parent.split('/').collect(),
        None => Vec::new(),
    };
    let lexical = if target.is_absolute() {
        [&roots.given, &roots.canonical]
            .into_iter()
            .find_map(|root| target.strip_prefix(root).ok())
            .and_then(|rest| normalize(&[], rest))
    } else if mirrored {
        normalize(&parent, &target)
    } else {
        None
    };
    if let Some(inside) = lexical {
        if !excludes.excludes_path(&inside.join("/")) {
            resolve(link, relative, stored)?;
        }
        let stored = if target.is_absolute() {
            relative_from(&parent, &inside)
        } else {
            stored.to_string()
        };
        return Ok(Fate::Keep(stored));
    }
    let resolved = resolve(link, relative, stored)?;
    match resolved.strip_prefix(&roots.canonical) {
        Ok(rest) => {
            let inside: Vec<String> = rest
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            Ok(Fate::Keep(relative_from(&parent, &inside)))
        }
        Err(_) if links.follow_outside => Ok(Fate::Follow(resolved)),
        Err(_) => anyhow::bail!(
            "cannot pack `{relative}`: the build made it a symlink to `{stored}`, outside the \
             build directory on the build host, which zdd cannot follow from its own machine"
        ),
    }
}

/// The file or directory the link at `link` finally names; a link to nothing or a loop of
/// links is an error naming `relative`.
fn resolve(link: &Path, relative: &str, target: &str) -> anyhow::Result<PathBuf> {
    match std::fs::canonicalize(link) {
        Ok(resolved) => Ok(resolved),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "cannot pack `{relative}`: it is a symlink to `{target}`, which does not exist"
        ),
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => anyhow::bail!(
            "cannot pack `{relative}`: it is a symlink to `{target}`, in a loop of symlinks"
        ),
        Err(e) => Err(e)
            .with_context(|| format!("cannot follow the symlink `{relative}` (to `{target}`)")),
    }
}

/// `target` read from the directory `from` (components from the build directory down), `.` and
/// `..` applied without looking at the disk; `None` when it climbs above the build directory.
fn normalize(from: &[&str], target: &Path) -> Option<Vec<String>> {
    let mut path: Vec<String> = from.iter().map(|c| c.to_string()).collect();
    for component in target.components() {
        match component {
            Component::Normal(name) => path.push(name.to_string_lossy().into_owned()),
            Component::CurDir => {}
            Component::ParentDir => {
                path.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(path)
}

/// The relative target that leads from the directory `from` to `to` (both from the build
/// directory down): `public` to `storage/app/public` is `../storage/app/public`.
fn relative_from(from: &[&str], to: &[String]) -> String {
    let common = from
        .iter()
        .zip(to)
        .take_while(|(a, b)| **a == b.as_str())
        .count();
    let parts: Vec<&str> = std::iter::repeat_n("..", from.len() - common)
        .chain(to[common..].iter().map(String::as_str))
        .collect();
    if parts.is_empty() {
        ".".to_string()
    } else {
        parts.join("/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn strings(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn relative_targets_climb_only_as_far_as_needed() {
        assert_eq!(
            relative_from(&["public"], &strings(&["storage", "app", "public"])),
            "../storage/app/public"
        );
        assert_eq!(relative_from(&[], &strings(&["a", "b"])), "a/b");
        assert_eq!(relative_from(&["a", "b"], &strings(&["a", "c"])), "../c");
        assert_eq!(relative_from(&["a", "b"], &strings(&[])), "../..");
        assert_eq!(relative_from(&[], &strings(&[])), ".");
    }

    #[test]
    fn normalizing_refuses_to_climb_above_the_build_directory() {
        assert_eq!(
            normalize(&["public"], Path::new("../storage/./app")),
            Some(strings(&["storage", "app"]))
        );
        assert_eq!(normalize(&["public"], Path::new("../../x")), None);
        assert_eq!(normalize(&[], Path::new("/etc")), None);
    }

    fn setup() -> (tempfile::TempDir, Roots) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("build");
        std::fs::create_dir_all(root.join("public")).unwrap();
        std::fs::create_dir_all(root.join("storage/app/public")).unwrap();
        let roots = Roots {
            given: root.clone(),
            canonical: std::fs::canonicalize(&root).unwrap(),
        };
        (dir, roots)
    }

    #[test]
    fn links_inside_are_kept_and_absolute_ones_made_relative() {
        let (dir, roots) = setup();
        let root = dir.path().join("build");
        let none = Excludes::default();
        symlink("../storage/app/public", root.join("public/storage")).unwrap();
        assert_eq!(
            fate(
                &root.join("public/storage"),
                "public/storage",
                true,
                &roots,
                &none,
                &Links::default()
            )
            .unwrap(),
            Fate::Keep("../storage/app/public".into())
        );
        symlink(root.join("storage/app"), root.join("public/app")).unwrap();
        assert_eq!(
            fate(
                &root.join("public/app"),
                "public/app",
                true,
                &roots,
                &none,
                &Links::default()
            )
            .unwrap(),
            Fate::Keep("../storage/app".into())
        );
        // Climbs out and back in: resolved on disk, then made relative.
        symlink("../../build/storage", root.join("public/back")).unwrap();
        assert_eq!(
            fate(
                &root.join("public/back"),
                "public/back",
                true,
                &roots,
                &none,
                &Links::default()
            )
            .unwrap(),
            Fate::Keep("../storage".into())
        );
    }

    #[test]
    fn a_link_to_an_excluded_path_is_kept_even_when_nothing_is_there() {
        let (dir, roots) = setup();
        let root = dir.path().join("build");
        symlink("../shared/uploads", root.join("public/uploads")).unwrap();
        let shared = Excludes::parse(&["shared".to_string()]).unwrap();
        assert_eq!(
            fate(
                &root.join("public/uploads"),
                "public/uploads",
                true,
                &roots,
                &shared,
                &Links::default()
            )
            .unwrap(),
            Fate::Keep("../shared/uploads".into())
        );
        let none = Excludes::default();
        assert_eq!(
            fate(
                &root.join("public/uploads"),
                "public/uploads",
                true,
                &roots,
                &none,
                &Links::default()
            )
            .unwrap_err()
            .to_string(),
            "cannot pack `public/uploads`: it is a symlink to `../shared/uploads`, which does \
             not exist"
        );
    }

    #[test]
    fn links_that_leave_are_followed() {
        let (dir, roots) = setup();
        let root = dir.path().join("build");
        let outside = dir.path().join("packages/pkg");
        std::fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("pkg")).unwrap();
        assert_eq!(
            fate(
                &root.join("pkg"),
                "pkg",
                true,
                &roots,
                &Excludes::default(),
                &Links::default()
            )
            .unwrap(),
            Fate::Follow(std::fs::canonicalize(&outside).unwrap())
        );
    }
}
