//! `deploy:update_code` when the deploy was built once (`build_on` other than `hosts`): the
//! build's archive is streamed to the host over the connection zdd has (or found there from an
//! earlier deploy, checked by its hash), unpacked into the new release and checked file by file
//! against the build's manifest. The host needs neither git nor network access to the
//! repository.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::lock;
use super::release_log::{self, Entry};
use crate::artifact::Packed;
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::transport::Op;

/// Where each host keeps the archives of its releases (by hash), so that a later deploy of the
/// same build (a rollback forward, a host brought up to date) ships nothing.
pub const ARTIFACTS: &str = ".zdd/artifacts";

/// One deploy's build: the archive on zdd's machine, what it holds, and what it was built from.
#[derive(Debug, Clone)]
pub struct Artifact {
    /// Where the archive is kept (`~/.cache/zdd/artifacts/KEY.tar.gz`).
    pub archive: PathBuf,
    /// The archive as this run opened it, checked against `packed`: what ships, whatever
    /// another run does meanwhile with the file of the same name (builds the same commit
    /// again, prunes the cache).
    pub file: Arc<File>,
    pub packed: Packed,
    pub commit: String,
    /// The reference asked for (`branch`), for the release log.
    pub reference: String,
}

impl Artifact {
    /// Where the transports read the archive: the file this run opened (`/proc/self/fd/N`),
    /// else its path.
    pub fn source(&self) -> String {
        let opened = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        if Path::new(&opened).exists() {
            opened
        } else {
            self.archive.display().to_string()
        }
    }

    /// The hash as shown: its first 12 characters.
    pub fn short(&self) -> &str {
        &self.packed.sha256[..self.packed.sha256.len().min(12)]
    }
}

/// What a host keeps of one build, under [`ARTIFACTS`]: the archive, its manifest and its
/// link list, each named by the archive's hash.
pub const KINDS: [&str; 3] = [".tar.gz", ".manifest", ".links"];

/// The host's paths of the archive, its manifest and its link list ([`KINDS`]).
pub fn paths(ctx: &HostContext, sha256: &str) -> Result<[String; 3], Failure> {
    let path = |kind: &str| ctx.path(&format!("{ARTIFACTS}/{sha256}{kind}"));
    Ok([path(KINDS[0])?, path(KINDS[1])?, path(KINDS[2])?])
}

/// Put `artifact` into this run's release on the host: one wait (which of the archive, its
/// manifest and its link list are there already, checked by their hashes?), then what is
/// missing, the unpacking and the checks, sent without waiting. A host that has the build
/// from an earlier deploy is sent nothing but the unpacking.
pub fn ship(ctx: &mut HostContext, artifact: &Artifact) -> Result<(), Failure> {
    lock::hold(ctx)?;
    let release_path = ctx.release_path()?;
    let name = ctx.release()?.name.clone();
    let sha256 = artifact.packed.sha256.clone();
    let [archive, manifest, links] = paths(ctx, &sha256)?;
    let link_list = crate::artifact::link_list(&artifact.packed.links);
    let texts = [
        (manifest.clone(), artifact.packed.manifest.clone()),
        (links.clone(), link_list),
    ];
    let mut questions = vec![
        Op::CreateDirAll(ctx.path(ARTIFACTS)?),
        Op::HasArtifact {
            path: archive.clone(),
            sha256: sha256.clone(),
        },
    ];
    for (path, text) in &texts {
        questions.push(Op::HasArtifact {
            path: path.clone(),
            sha256: crate::artifact::sha256_text(text),
        });
    }
    let there: Vec<bool> = ctx
        .transport
        .query(questions)?
        .into_iter()
        .skip(1)
        .map(|answer| answer.flag())
        .collect();
    if there.first() == Some(&true) {
        ctx.info(&format!(
            "artifact {}: on the host already, nothing shipped",
            artifact.short()
        ));
    } else {
        ctx.info(&format!(
            "artifact {}: shipping {}",
            artifact.short(),
            size(artifact.packed.bytes)
        ));
        ctx.send(Op::Upload {
            source: artifact.source(),
            destination: archive.clone(),
            sha256: sha256.clone(),
            for_release: release_path.clone(),
        })?;
    }
    for ((path, contents), there) in texts.into_iter().zip(there.into_iter().skip(1)) {
        if !there {
            ctx.send(Op::WriteFile { path, contents })?;
        }
    }
    ctx.send(Op::Unpack {
        archive,
        destination: release_path,
        manifest,
        files: artifact.packed.files,
        links,
    })?;
    if let Some(release) = ctx.release.as_mut() {
        release.commit = Some(artifact.commit.clone());
    }
    release_log::record(
        ctx,
        Entry {
            event: "checked_out".into(),
            release: name,
            reference: Some(artifact.reference.clone()),
            commit: Some(artifact.commit.clone()),
            artifact: Some(sha256),
            ..Default::default()
        },
    )?;
    Ok(())
}

/// `12.3 MB`, `840 KB`, `512 B`.
pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{} KB", b / 1_000),
        b => format!("{b} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(840_123), "840 KB");
        assert_eq!(size(12_345_678), "12.3 MB");
    }
}
