//! What an archive holds, read back from its bytes: its sha256 and size, and the manifest,
//! file count and kept links that [`super::pack`] said when it wrote it. A build kept from an
//! earlier deploy is shipped again only when this matches what its build recorded: an archive
//! or a record damaged (or edited) since then is built again, never shipped to fail on every
//! host.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

use anyhow::Context;
use flate2::bufread::GzDecoder;
use sha2::{Digest, Sha256};
use tar::EntryType;

use super::manifest::{self, BUFFER};
use super::Packed;

/// Read the tar.gz `file` from its start: what [`super::pack`] would have said of it. An entry
/// that an archive of zdd never holds (a hard link, a device, a name that is not UTF-8) is an
/// error, as is an archive cut short.
pub fn inspect(file: &mut File) -> anyhow::Result<Packed> {
    file.seek(SeekFrom::Start(0))
        .context("cannot read the archive")?;
    let broken =
        |e: io::Error| anyhow::Error::new(e).context("the archive is damaged or cut short");
    let mut hashing = Hashing {
        inner: &mut *file,
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut manifest = String::new();
    let mut files = 0;
    let mut links = Vec::new();
    let mut buffer = vec![0; BUFFER];
    let mut archive = tar::Archive::new(GzDecoder::new(BufReader::with_capacity(
        BUFFER,
        &mut hashing,
    )));
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| anyhow::anyhow!("the archive holds a name that is not UTF-8"))?;
        let path = path.strip_prefix("./").unwrap_or(&path).to_string();
        match entry.header().entry_type() {
            EntryType::Directory | EntryType::XGlobalHeader => {}
            EntryType::Regular => {
                let mut hasher = Sha256::new();
                loop {
                    let read = match entry.read(&mut buffer) {
                        Ok(0) => break,
                        Ok(read) => read,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(broken(e)),
                    };
                    hasher.update(&buffer[..read]);
                }
                manifest.push_str(&manifest::line(&manifest::hex(&hasher.finalize()), &path));
                files += 1;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8(t.into_owned()))
                    .transpose()
                    .map_err(|_| {
                        anyhow::anyhow!("the link `{path}` has a target that is not UTF-8")
                    })?
                    .ok_or_else(|| anyhow::anyhow!("the link `{path}` has no target"))?;
                links.push((format!("./{path}"), target));
            }
            _ => anyhow::bail!(
                "the archive's entry `{path}` is neither a file, a directory nor a symlink"
            ),
        }
    }
    // The gzip trailer (CRC and length) is checked only when the stream is read to its end.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(broken)?;
    // What lies after the gzip stream is hashed too: it is part of the file that ships.
    io::copy(&mut hashing, &mut io::sink()).context("cannot read the archive")?;
    let Hashing { hasher, bytes, .. } = hashing;
    Ok(Packed {
        sha256: manifest::hex(&hasher.finalize()),
        bytes,
        files,
        links,
        manifest,
    })
}

/// A reader that hashes and counts what goes through it.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        self.hasher.update(&buf[..read]);
        self.bytes += read as u64;
        Ok(read)
    }
}
