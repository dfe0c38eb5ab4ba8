//! An archive back into a directory, on the machine zdd runs on (the local transport; hosts
//! over ssh use GNU tar). Only files, directories and symlinks are made, with their modes and
//! mtime; an entry that would land outside the destination (`..`, an absolute path, a path
//! through a symlink of the archive) is refused, as is an archive that ends early: a truncated
//! transfer is an error here or in [`super::verify_tree`], never a release.

use std::collections::HashSet;
use std::fs::{self, File, FileTimes, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use flate2::bufread::GzDecoder;
use tar::EntryType;

use super::manifest::BUFFER;

/// Unpack the tar.gz `archive` into `destination`, an existing empty directory. On an error,
/// what was unpacked so far stays: the caller discards the directory.
pub fn unpack(archive: &Path, destination: &Path) -> anyhow::Result<()> {
    let shown = archive.display();
    let file = File::open(archive).with_context(|| format!("cannot read the archive `{shown}`"))?;
    let broken = |e: io::Error| {
        anyhow::Error::new(e).context(format!("the archive `{shown}` is damaged or cut short"))
    };
    let mut archive = tar::Archive::new(GzDecoder::new(io::BufReader::with_capacity(BUFFER, file)));
    let mut unpacking = Unpacking {
        destination,
        links: HashSet::new(),
        directories: Vec::new(),
        buffer: vec![0; BUFFER],
    };
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        unpacking.entry(&mut entry).map_err(|e| match e {
            Failure::Archive(e) => broken(e),
            Failure::Other(e) => e,
        })?;
    }
    // What follows the end of the tar stream must decode too: the gzip trailer's CRC and
    // length are checked only when the stream is read to its end.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(broken)?;
    unpacking.finish_directories()
}

/// Why an entry could not be unpacked: the archive's bytes, or the entry or the disk.
enum Failure {
    Archive(io::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure::Other(e)
    }
}

struct Unpacking<'a> {
    destination: &'a Path,
    /// The symlinks made so far (relative): nothing may be unpacked through one.
    links: HashSet<PathBuf>,
    /// Directories made from entries, with their mode and mtime: set last, deepest first, so
    /// that what is made inside them does not change their mtime and a read-only mode does
    /// not stop their contents.
    directories: Vec<(PathBuf, u32, SystemTime)>,
    /// What files' bytes are copied through.
    buffer: Vec<u8>,
}

impl Unpacking<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), Failure> {
        let header = entry.header();
        let entry_type = header.entry_type();
        let mode = header.mode().map_err(Failure::Archive)? & 0o777;
        let mtime = header.mtime().map_err(Failure::Archive)?;
        let size = header.size().map_err(Failure::Archive)?;
        let raw = entry.path().map_err(Failure::Archive)?.into_owned();
        let shown = raw.display().to_string();
        let relative = self.relative(&raw)?;
        let Some(relative) = relative else {
            // `./` itself: the destination is there already.
            return if entry_type == EntryType::Directory {
                Ok(())
            } else {
                Err(
                    anyhow::anyhow!("the archive's entry `{shown}` names its root as a file")
                        .into(),
                )
            };
        };
        let target = self.destination.join(&relative);
        let made = |e: io::Error| anyhow::Error::new(e).context(format!("cannot unpack `{shown}`"));
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(made)?;
        }
        match entry_type {
            EntryType::Directory => {
                match fs::create_dir(&target) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        let metadata = fs::symlink_metadata(&target).map_err(made)?;
                        if !metadata.is_dir() {
                            return Err(anyhow::anyhow!(
                                "cannot unpack `{shown}`: the archive holds it twice"
                            )
                            .into());
                        }
                    }
                    Err(e) => return Err(made(e).into()),
                }
                self.directories.push((target, mode, time));
            }
            EntryType::Regular => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&target)
                    .map_err(|e| twice(e, &shown))?;
                let copied = copy(entry, &mut file, &mut self.buffer, &shown)?;
                if copied != size {
                    return Err(Failure::Archive(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("`{shown}` ends after {copied} of its {size} bytes"),
                    )));
                }
                file.set_times(FileTimes::new().set_accessed(time).set_modified(time))
                    .map_err(made)?;
                file.set_permissions(Permissions::from_mode(mode))
                    .map_err(made)?;
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(Failure::Archive)?
                    .ok_or_else(|| {
                        anyhow::anyhow!("the archive's symlink `{shown}` has no target")
                    })?
                    .into_owned();
                std::os::unix::fs::symlink(&link, &target).map_err(|e| twice(e, &shown))?;
                self.links.insert(relative);
            }
            // Metadata for the whole archive (`git archive` writes the commit there): nothing
            // to make.
            EntryType::XGlobalHeader => {}
            other => {
                return Err(anyhow::anyhow!(
                    "cannot unpack `{shown}`: it is {}, and an archive of zdd holds files, \
                     directories and symlinks only",
                    kind(other)
                )
                .into())
            }
        }
        Ok(())
    }

    /// The entry's path under the destination (`None` for the root itself), or an error when
    /// it would land outside.
    fn relative(&self, raw: &Path) -> Result<Option<PathBuf>, Failure> {
        let shown = raw.display();
        let mut relative = PathBuf::new();
        for component in raw.components() {
            match component {
                Component::Normal(name) => {
                    if self.links.contains(&relative) && !relative.as_os_str().is_empty() {
                        return Err(anyhow::anyhow!(
                            "the archive's entry `{shown}` lies under the symlink `{}`: \
                             refused, it could land outside `{}`",
                            relative.display(),
                            self.destination.display()
                        )
                        .into());
                    }
                    relative.push(name)
                }
                Component::CurDir => {}
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => {
                    return Err(anyhow::anyhow!(
                        "the archive's entry `{shown}` would land outside `{}`: refused",
                        self.destination.display()
                    )
                    .into())
                }
            }
        }
        Ok((!relative.as_os_str().is_empty()).then_some(relative))
    }

    /// Give the directories their modes and mtimes, deepest first.
    fn finish_directories(mut self) -> anyhow::Result<()> {
        self.directories.sort_by(|a, b| b.0.cmp(&a.0));
        for (path, mode, time) in &self.directories {
            let set = || -> io::Result<()> {
                let directory = File::open(path)?;
                directory.set_times(FileTimes::new().set_accessed(*time).set_modified(*time))?;
                directory.set_permissions(Permissions::from_mode(*mode))
            };
            set().with_context(|| format!("cannot set the mode of `{}`", path.display()))?;
        }
        Ok(())
    }
}

/// Copy an entry's bytes into `writer`: an error reading is the archive's, one writing is
/// the disk's.
fn copy<R: Read, W: Write>(
    entry: &mut R,
    writer: &mut W,
    buffer: &mut [u8],
    shown: &str,
) -> Result<u64, Failure> {
    let mut copied = 0;
    loop {
        let read = match entry.read(buffer) {
            Ok(0) => return Ok(copied),
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Failure::Archive(e)),
        };
        writer
            .write_all(&buffer[..read])
            .with_context(|| format!("cannot unpack `{shown}`"))?;
        copied += read as u64;
    }
}

/// An entry that exists already: the archive holds it twice (the destination was empty).
fn twice(e: io::Error, shown: &str) -> Failure {
    if e.kind() == io::ErrorKind::AlreadyExists {
        anyhow::anyhow!("cannot unpack `{shown}`: the archive holds it twice").into()
    } else {
        anyhow::Error::new(e)
            .context(format!("cannot unpack `{shown}`"))
            .into()
    }
}

/// A tar entry type in words, for errors.
fn kind(entry_type: EntryType) -> &'static str {
    match entry_type {
        EntryType::Link => "a hard link",
        EntryType::Char => "a character device",
        EntryType::Block => "a block device",
        EntryType::Fifo => "a FIFO",
        _ => "an entry of another type",
    }
}
