//! The archive: a build directory's entries ([`super::tree`]) written as one tar.gz that is the
//! same byte for byte for the same tree, whoever owns its files and whenever they were touched:
//! entries sorted by path, uid and gid 0 with no user or group names, one mtime for every
//! entry, the permission bits alone (`& 0o777`), and a gzip header with no name and mtime 0.
//! Files are streamed into the encoder and hashed on the way (their manifest lines); the
//! archive is hashed as it is written. GNU tar reads it (`tar -xzf A -C D --no-same-owner`).

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use super::exclude::Excludes;
use super::link::Links;
use super::manifest::{self, BUFFER};
use super::tree::{self, Entry, Kind};
use super::Packed;

/// The gzip level. `/usr/share/php` (4,631 files, 21.3 MB; test `gzip_levels`): level 1 packs
/// in 0.27 s to 4.68 MB, 3 in 0.53 s to 3.32 MB, 6 in 1.04 s to 3.16 MB: 3 is the knee.
pub const DEFAULT_LEVEL: u32 = 3;

/// Pack the build directory `root` into the archive file `archive` (created or replaced),
/// leaving out `excludes` and `.git`, with `mtime` (seconds since the epoch) on every entry.
/// On an error the archive is removed.
pub fn pack(
    root: &Path,
    excludes: &[String],
    mtime: u64,
    archive: &Path,
) -> anyhow::Result<Packed> {
    pack_with_level(root, excludes, mtime, archive, DEFAULT_LEVEL)
}

/// [`pack`] at the gzip `level` (0-9).
pub fn pack_with_level(
    root: &Path,
    excludes: &[String],
    mtime: u64,
    archive: &Path,
    level: u32,
) -> anyhow::Result<Packed> {
    pack_build(root, excludes, mtime, archive, level, &Links::default())
}

/// [`pack_with_level`], with `links` saying what becomes of the links that leave the build
/// directory (the commit's own are packed as links; see [`Links`]).
pub fn pack_build(
    root: &Path,
    excludes: &[String],
    mtime: u64,
    archive: &Path,
    level: u32,
    links: &Links,
) -> anyhow::Result<Packed> {
    let excludes = Excludes::parse(excludes)?;
    let entries = tree::walk(root, &excludes, links)?;
    let packed = write(&entries, mtime, archive, level);
    if packed.is_err() {
        let _ = std::fs::remove_file(archive);
    }
    packed
}

fn write(entries: &[Entry], mtime: u64, archive: &Path, level: u32) -> anyhow::Result<Packed> {
    let shown = archive.display();
    let file =
        File::create(archive).with_context(|| format!("cannot create the archive `{shown}`"))?;
    let hashing = Hashing {
        inner: BufWriter::with_capacity(BUFFER, file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(hashing, Compression::new(level));
    let mut builder = tar::Builder::new(encoder);
    let mut manifest = String::new();
    let mut files = 0;
    let mut links = Vec::new();
    let written = |e: io::Error| anyhow::Error::new(e).context(format!("cannot write `{shown}`"));
    for entry in entries {
        let mut header = Header::new_gnu();
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        match &entry.kind {
            Kind::Directory { mode } => {
                header.set_entry_type(EntryType::Directory);
                header.set_mode(*mode);
                builder
                    .append_data(&mut header, &entry.path, io::empty())
                    .map_err(written)?;
            }
            Kind::Link { target } => {
                header.set_entry_type(EntryType::Symlink);
                header.set_mode(0o777);
                builder
                    .append_link(&mut header, &entry.path, target)
                    .map_err(written)?;
                links.push((format!("./{}", entry.path), target.clone()));
            }
            Kind::File { source } => {
                let read = || format!("cannot read `{}` in the build", entry.path);
                // Non-blocking: should a FIFO have taken the file's place since the walk, the
                // check below refuses it instead of waiting for a writer.
                let file = File::options()
                    .read(true)
                    .custom_flags(nix::libc::O_NONBLOCK)
                    .open(source)
                    .with_context(read)?;
                let metadata = file.metadata().with_context(read)?;
                if !metadata.is_file() {
                    anyhow::bail!(
                        "cannot pack `{}`: it is no longer a regular file",
                        entry.path
                    );
                }
                header.set_entry_type(EntryType::Regular);
                header.set_mode(metadata.permissions().mode() & 0o777);
                header.set_size(metadata.len());
                let mut reader = Exact {
                    inner: file,
                    remaining: metadata.len(),
                    hasher: Sha256::new(),
                };
                builder
                    .append_data(&mut header, &entry.path, &mut reader)
                    .map_err(|e| {
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            anyhow::anyhow!(
                                "cannot pack `{}`: it shrank while it was being packed",
                                entry.path
                            )
                        } else {
                            anyhow::Error::new(e)
                                .context(format!("cannot pack `{}` into `{shown}`", entry.path))
                        }
                    })?;
                manifest.push_str(&manifest::line(
                    &manifest::hex(&reader.hasher.finalize()),
                    &entry.path,
                ));
                files += 1;
            }
        }
    }
    let encoder = builder.into_inner().map_err(written)?;
    let hashing = encoder.finish().map_err(written)?;
    let Hashing {
        inner,
        hasher,
        bytes,
    } = hashing;
    inner
        .into_inner()
        .map_err(|e| written(e.into_error()))?
        .sync_all()
        .map_err(written)?;
    Ok(Packed {
        sha256: manifest::hex(&hasher.finalize()),
        bytes,
        files,
        links,
        manifest,
    })
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A file read for exactly the size its header says, hashed on the way: what grew after it
/// was measured is left out, and a file that shrank is an `UnexpectedEof` error (the archive
/// would be corrupt otherwise).
struct Exact {
    inner: File,
    remaining: u64,
    hasher: Sha256,
}

impl Read for Exact {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let wanted = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let read = self.inner.read(&mut buf[..wanted])?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being packed",
            ));
        }
        self.hasher.update(&buf[..read]);
        self.remaining -= read as u64;
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Not a test: the figures behind [`DEFAULT_LEVEL`]. Packs a real PHP tree
    /// (`ZDD_GZIP_TREE`, default Debian's `/usr/share/php`) at each level, best of 3, and
    /// unpacks the result once.
    #[test]
    #[ignore]
    fn gzip_levels() {
        let tree = std::env::var("ZDD_GZIP_TREE").unwrap_or_else(|_| "/usr/share/php".into());
        let dir = tempfile::tempdir().unwrap();
        for level in [0, 1, 3, 6, 9] {
            let archive = dir.path().join(format!("{level}.tar.gz"));
            let mut best = f64::MAX;
            let mut packed = None;
            for _ in 0..3 {
                let start = Instant::now();
                packed = Some(pack_with_level(Path::new(&tree), &[], 0, &archive, level).unwrap());
                best = best.min(start.elapsed().as_secs_f64());
            }
            let packed = packed.unwrap();
            let destination = dir.path().join(format!("{level}.d"));
            std::fs::create_dir(&destination).unwrap();
            let start = Instant::now();
            super::super::unpack(&archive, &destination).unwrap();
            let unpacked = start.elapsed().as_secs_f64();
            println!(
                "level {level}: packed in {best:.3} s to {:.2} MB ({} files), unpacked in \
                 {unpacked:.3} s",
                packed.bytes as f64 / 1e6,
                packed.files
            );
        }
    }
}
