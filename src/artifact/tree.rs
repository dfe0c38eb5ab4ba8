//! The walk of a build directory: every entry that goes into the archive, sorted by relative
//! path (byte order), with where its bytes come from. Excluded paths are never entered; links
//! are decided by [`super::link`]; what an archive and a manifest cannot carry (a FIFO, a
//! socket, a device, a name with a newline, a carriage return or a backslash, a name that is
//! not UTF-8) is an error naming its relative path.

use std::ffi::OsStr;
use std::fs::{self, FileType, Metadata};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::exclude::Excludes;
use super::link::{self, Fate, Links, Roots};

/// One entry of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// From the build directory, without `./`: `app/X.php`.
    pub path: String,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Directory {
        mode: u32,
    },
    /// Read from `source` when packed (its mode too, from the open file).
    File {
        source: PathBuf,
    },
    Link {
        target: String,
    },
}

/// Every entry under `root`, sorted by path, `links` saying what becomes of the symlinks that
/// leave it. The root itself is not an entry.
pub fn walk(root: &Path, excludes: &Excludes, links: &Links) -> anyhow::Result<Vec<Entry>> {
    let canonical = fs::canonicalize(root)
        .with_context(|| format!("cannot read the build directory `{}`", root.display()))?;
    let metadata = fs::metadata(&canonical)
        .with_context(|| format!("cannot read the build directory `{}`", root.display()))?;
    if !metadata.is_dir() {
        anyhow::bail!(
            "the build directory `{}` is not a directory",
            root.display()
        );
    }
    let given = std::path::absolute(root)
        .with_context(|| format!("cannot read the build directory `{}`", root.display()))?;
    let mut walk = Walk {
        roots: Roots {
            given,
            canonical: canonical.clone(),
        },
        excludes,
        links,
        entries: Vec::new(),
        ancestors: vec![(metadata.dev(), metadata.ino())],
    };
    walk.directory(&canonical, "", true)?;
    let mut entries = walk.entries;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

struct Walk<'a> {
    roots: Roots,
    excludes: &'a Excludes,
    links: &'a Links,
    entries: Vec<Entry>,
    /// (device, inode) of the directories being walked, from the root down: a followed link
    /// to one of them is a cycle.
    ancestors: Vec<(u64, u64)>,
}

impl Walk<'_> {
    /// The entries under the directory `real` (on disk), packed under `relative` (`""` for the
    /// root). `mirrored`: `real` is the build directory's own, not a followed link's.
    fn directory(&mut self, real: &Path, relative: &str, mirrored: bool) -> anyhow::Result<()> {
        let shown = if relative.is_empty() { "." } else { relative };
        let mut children: Vec<(std::ffi::OsString, FileType)> = Vec::new();
        for child in fs::read_dir(real)
            .with_context(|| format!("cannot read the directory `{shown}` of the build"))?
        {
            let child = child
                .with_context(|| format!("cannot read the directory `{shown}` of the build"))?;
            let file_type = child
                .file_type()
                .with_context(|| format!("cannot read the directory `{shown}` of the build"))?;
            children.push((child.file_name(), file_type));
        }
        children.sort_by(|a, b| a.0.cmp(&b.0));
        let components: Vec<&OsStr> = if relative.is_empty() {
            Vec::new()
        } else {
            relative.split('/').map(OsStr::new).collect()
        };
        for (name, file_type) in children {
            let mut path = components.clone();
            path.push(&name);
            if self.excludes.excludes(&path) {
                continue;
            }
            let child_relative = checked_name(relative, &name)?;
            self.entry(&real.join(&name), child_relative, file_type, mirrored)?;
        }
        Ok(())
    }

    /// The entry at `real` (on disk), packed at `relative`.
    fn entry(
        &mut self,
        real: &Path,
        relative: String,
        file_type: FileType,
        mirrored: bool,
    ) -> anyhow::Result<()> {
        if file_type.is_symlink() {
            return match link::fate(
                real,
                &relative,
                mirrored,
                &self.roots,
                self.excludes,
                self.links,
            )? {
                Fate::Keep(target) => {
                    self.entries.push(Entry {
                        path: relative,
                        kind: Kind::Link { target },
                    });
                    Ok(())
                }
                Fate::Follow(resolved) => {
                    let metadata = fs::metadata(&resolved).with_context(|| {
                        format!(
                            "cannot read `{}`, where the symlink `{relative}` points",
                            resolved.display()
                        )
                    })?;
                    if metadata.is_dir() || metadata.is_file() {
                        self.followed(&resolved, relative, &metadata)
                    } else {
                        anyhow::bail!(
                            "cannot pack `{relative}`: it is a symlink to {}; an archive holds \
                             files, directories and symlinks only",
                            what(&metadata.file_type())
                        )
                    }
                }
            };
        }
        if file_type.is_dir() {
            let metadata = fs::symlink_metadata(real)
                .with_context(|| format!("cannot read `{relative}` in the build"))?;
            return self.descend(real, relative, &metadata, mirrored);
        }
        if file_type.is_file() {
            self.entries.push(Entry {
                path: relative,
                kind: Kind::File {
                    source: real.to_path_buf(),
                },
            });
            return Ok(());
        }
        anyhow::bail!(
            "cannot pack `{relative}`: it is {}; an archive holds files, directories and \
             symlinks only",
            what(&file_type)
        )
    }

    /// A link that leaves the build directory, packed as the file or directory at `resolved`.
    fn followed(
        &mut self,
        resolved: &Path,
        relative: String,
        metadata: &Metadata,
    ) -> anyhow::Result<()> {
        if metadata.is_file() {
            self.entries.push(Entry {
                path: relative,
                kind: Kind::File {
                    source: resolved.to_path_buf(),
                },
            });
            return Ok(());
        }
        self.descend(resolved, relative, metadata, false)
    }

    /// The directory at `real` as an entry, and what is under it; one that is already being
    /// walked (reached again through a link) is a cycle.
    fn descend(
        &mut self,
        real: &Path,
        relative: String,
        metadata: &Metadata,
        mirrored: bool,
    ) -> anyhow::Result<()> {
        let identity = (metadata.dev(), metadata.ino());
        if self.ancestors.contains(&identity) {
            anyhow::bail!(
                "cannot pack `{relative}`: it leads to `{}`, a directory that contains it (a \
                 cycle of symlinks)",
                real.display()
            );
        }
        self.entries.push(Entry {
            path: relative.clone(),
            kind: Kind::Directory {
                mode: metadata.permissions().mode() & 0o777,
            },
        });
        self.ancestors.push(identity);
        let walked = self.directory(real, &relative, mirrored);
        self.ancestors.pop();
        walked
    }
}

/// `parent/name`, if `name` can be carried by the archive and a `sha256sum` manifest: UTF-8,
/// no newline, carriage return or backslash (sha256sum escapes those, which `-c` on another
/// version may read differently).
fn checked_name(parent: &str, name: &OsStr) -> anyhow::Result<String> {
    let joined = |name: &str| {
        if parent.is_empty() {
            name.to_string()
        } else {
            format!("{parent}/{name}")
        }
    };
    let Some(text) = name.to_str() else {
        anyhow::bail!(
            "cannot pack `{}`: its name is not UTF-8, which a sha256sum manifest cannot carry",
            joined(&name.to_string_lossy())
        );
    };
    let path = joined(text);
    for (character, called) in [
        ('\n', "a newline"),
        ('\r', "a carriage return"),
        ('\\', "a backslash"),
    ] {
        if text.contains(character) {
            anyhow::bail!(
                "cannot pack `{}`: its name holds {called}, which a sha256sum manifest cannot \
                 carry",
                path.escape_debug()
            );
        }
    }
    Ok(path)
}

/// A file type in words, for errors.
fn what(file_type: &FileType) -> &'static str {
    if file_type.is_fifo() {
        "a FIFO (named pipe)"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_symlink() {
        "a symlink"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_file() {
        "a file"
    } else {
        "of an unknown type"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;

    fn paths(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn entries_are_sorted_by_path_bytes_and_dirs_included() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(root.join("bootstrap/cache")).unwrap();
        fs::write(root.join("a-c"), "x").unwrap();
        fs::write(root.join("a/b/f"), "x").unwrap();
        fs::write(root.join("B"), "x").unwrap();
        let entries = walk(root, &Excludes::default(), &Links::default()).unwrap();
        assert_eq!(
            paths(&entries),
            [
                "B",
                "a",
                "a-c",
                "a/b",
                "a/b/f",
                "bootstrap",
                "bootstrap/cache"
            ]
        );
    }

    #[test]
    fn excluded_directories_are_not_entered() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("storage/logs")).unwrap();
        fs::create_dir_all(root.join("node_modules/x")).unwrap();
        // What would be an error is never looked at when it is excluded.
        nix::unistd::mkfifo(
            &root.join("storage/logs/pipe"),
            nix::sys::stat::Mode::S_IRWXU,
        )
        .unwrap();
        fs::write(root.join("node_modules/x/i.js"), "x").unwrap();
        fs::write(root.join("keep"), "x").unwrap();
        let excludes = Excludes::parse(&["storage".into(), "node_modules".into()]).unwrap();
        assert_eq!(
            paths(&walk(root, &excludes, &Links::default()).unwrap()),
            ["keep"]
        );
    }

    #[test]
    fn names_a_manifest_cannot_carry_are_refused() {
        for (name, said) in [
            (
                "a\\b",
                "cannot pack `dir/a\\\\b`: its name holds a backslash",
            ),
            (
                "a\rb",
                "cannot pack `dir/a\\rb`: its name holds a carriage return",
            ),
        ] {
            let dir = tempfile::tempdir().unwrap();
            fs::create_dir(dir.path().join("dir")).unwrap();
            fs::write(dir.path().join("dir").join(name), "x").unwrap();
            let error = walk(dir.path(), &Excludes::default(), &Links::default())
                .unwrap_err()
                .to_string();
            assert_eq!(
                error,
                format!("{said}, which a sha256sum manifest cannot carry")
            );
        }
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(OsStr::from_bytes(b"caf\xe9.php")), "x").unwrap();
        assert_eq!(
            walk(dir.path(), &Excludes::default(), &Links::default())
                .unwrap_err()
                .to_string(),
            "cannot pack `caf\u{fffd}.php`: its name is not UTF-8, which a sha256sum manifest \
             cannot carry"
        );
    }

    #[test]
    fn a_socket_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("run")).unwrap();
        let _listener =
            std::os::unix::net::UnixListener::bind(dir.path().join("run/php.sock")).unwrap();
        assert_eq!(
            walk(dir.path(), &Excludes::default(), &Links::default())
                .unwrap_err()
                .to_string(),
            "cannot pack `run/php.sock`: it is a socket; an archive holds files, directories \
             and symlinks only"
        );
    }

    #[test]
    fn a_link_out_to_a_directory_holding_the_build_is_a_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("build");
        fs::create_dir(&root).unwrap();
        symlink(dir.path(), root.join("up")).unwrap();
        let error = walk(&root, &Excludes::default(), &Links::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("cannot pack `up/build`: it leads to `"),
            "{error}"
        );
        assert!(
            error.ends_with("`, a directory that contains it (a cycle of symlinks)"),
            "{error}"
        );
    }

    #[test]
    fn a_link_out_that_loops_back_out_is_a_cycle() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("build");
        let outside = dir.path().join("pkg");
        fs::create_dir_all(&root).unwrap();
        fs::create_dir_all(outside.join("src")).unwrap();
        symlink(&outside, outside.join("src/again")).unwrap();
        symlink(&outside, root.join("pkg")).unwrap();
        let error = walk(&root, &Excludes::default(), &Links::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("cannot pack `pkg/src/again`: it leads to `"),
            "{error}"
        );
    }
}
