//! The machine zdd runs on: std, nix and git2, no shell unless the recipe asked for one.

use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::Context;

use super::Transport;
use crate::artifact;
use crate::system::process::{self, Invocation, LineSink, Output, ProcessError};
use crate::transport::git;

/// The local host.
pub struct Local {
    shell: PathBuf,
}

impl Local {
    pub fn new() -> anyhow::Result<Local> {
        let shell = process::find_program("sh").context("cannot find `sh` on PATH")?;
        Ok(Local { shell })
    }
}

fn temp_sibling(path: &Path, purpose: &str) -> PathBuf {
    PathBuf::from(super::temporary_path(&path.to_string_lossy(), purpose))
}

impl Transport for Local {
    fn exec(
        &self,
        script: &str,
        cwd: Option<&str>,
        display: &str,
        sink: Option<LineSink>,
    ) -> Result<Output, ProcessError> {
        process::run(
            &Invocation {
                program: self.shell.clone(),
                args: vec!["-c".into(), script.into()],
                cwd: cwd.map(PathBuf::from),
                display: display.to_string(),
                ..Default::default()
            },
            sink,
        )
    }

    fn read_file(&self, path: &str) -> anyhow::Result<Option<String>> {
        // Bytes that are not UTF-8 (a damaged file) become U+FFFD: whoever reads decides.
        match std::fs::read(path) {
            Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read `{path}`")),
        }
    }

    fn write_file(&self, path: &str, contents: &str) -> anyhow::Result<()> {
        let temp = temp_sibling(Path::new(path), "tmp");
        let _ = std::fs::remove_file(&temp);
        std::fs::write(&temp, contents)
            .with_context(|| format!("cannot write `{}`", temp.display()))?;
        std::fs::rename(&temp, path).with_context(|| format!("cannot write `{path}`"))
    }

    fn append_line(&self, path: &str, line: &str) -> anyhow::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open `{path}`"))?;
        // One write(2) of the whole line so concurrent appenders never interleave.
        file.write_all(format!("{line}\n").as_bytes())
            .with_context(|| format!("cannot append to `{path}`"))
    }

    fn create_dir_all(&self, path: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(path).with_context(|| format!("cannot create directory `{path}`"))
    }

    fn create_exclusive(&self, path: &str, contents: &str) -> anyhow::Result<bool> {
        // Write the whole content first, then link(2) it into place: link fails if the name
        // exists, so the file appears atomically and never half-written.
        let temp = temp_sibling(Path::new(path), "new");
        let _ = std::fs::remove_file(&temp);
        std::fs::write(&temp, contents)
            .with_context(|| format!("cannot write `{}`", temp.display()))?;
        let linked = std::fs::hard_link(&temp, path);
        let _ = std::fs::remove_file(&temp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot create `{path}`")),
        }
    }

    fn remove_file(&self, path: &str) -> anyhow::Result<()> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove `{path}`"))
            }
            _ => Ok(()),
        }
    }

    fn remove_dir_all(&self, path: &str) -> anyhow::Result<()> {
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove `{path}`"))
            }
            _ => Ok(()),
        }
    }

    fn exists(&self, path: &str) -> anyhow::Result<bool> {
        Ok(std::fs::symlink_metadata(path).is_ok())
    }

    fn file_type(&self, path: &str) -> anyhow::Result<Option<super::FileType>> {
        use super::FileType;
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("cannot look at `{path}`")),
        };
        let kind = meta.file_type();
        Ok(Some(if kind.is_symlink() {
            FileType::Symlink
        } else if kind.is_dir() {
            FileType::Directory
        } else if kind.is_file() {
            FileType::File
        } else {
            FileType::Other
        }))
    }

    fn rename(&self, from: &str, to: &str) -> anyhow::Result<()> {
        std::fs::rename(from, to).with_context(|| format!("cannot rename `{from}` to `{to}`"))
    }

    fn exchange(&self, a: &str, b: &str) -> anyhow::Result<()> {
        let parent = |path: &str| -> anyhow::Result<(std::fs::File, std::path::PathBuf)> {
            let path = Path::new(path);
            let name = path
                .file_name()
                .with_context(|| format!("`{}` names no file", path.display()))?;
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let file = std::fs::File::open(dir)
                .with_context(|| format!("cannot open `{}`", dir.display()))?;
            Ok((file, name.into()))
        };
        let ((dir_a, name_a), (dir_b, name_b)) = (parent(a)?, parent(b)?);
        nix::fcntl::renameat2(
            &dir_a,
            name_a.as_path(),
            &dir_b,
            name_b.as_path(),
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        )
        .with_context(|| format!("cannot swap `{a}` and `{b}` atomically"))
    }

    fn is_dir(&self, path: &str) -> anyhow::Result<bool> {
        Ok(Path::new(path).is_dir())
    }

    fn list_dir(&self, path: &str) -> anyhow::Result<Vec<String>> {
        let entries = match std::fs::read_dir(path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot list `{path}`")),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list `{path}`"))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn read_link(&self, path: &str) -> anyhow::Result<Option<String>> {
        match std::fs::read_link(path) {
            Ok(target) => Ok(Some(target.to_string_lossy().into_owned())),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::InvalidInput =>
            {
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read link `{path}`")),
        }
    }

    fn symlink(&self, target: &str, link: &str) -> anyhow::Result<()> {
        symlink(target, link).with_context(|| format!("cannot link `{link}` to `{target}`"))
    }

    fn replace_symlink(&self, target: &str, link: &str) -> anyhow::Result<()> {
        let temp = temp_sibling(Path::new(link), "swap");
        let _ = std::fs::remove_file(&temp);
        symlink(target, &temp).with_context(|| format!("cannot create `{}`", temp.display()))?;
        if let Err(e) = std::fs::rename(&temp, link) {
            let _ = std::fs::remove_file(&temp);
            return Err(e).with_context(|| format!("cannot rename a link over `{link}`"));
        }
        let now = std::fs::read_link(link).with_context(|| format!("cannot read `{link}`"))?;
        anyhow::ensure!(
            now == Path::new(target),
            "`{link}` points at `{}` after the swap, not at `{target}`",
            now.display()
        );
        Ok(())
    }

    fn find_program(&self, program: &str) -> anyhow::Result<Option<String>> {
        Ok(process::find_program(program)
            .ok()
            .map(|path| path.display().to_string()))
    }

    fn signal(&self, pid: i32, signal: Option<nix::sys::signal::Signal>) -> anyhow::Result<()> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).with_context(
            || match signal {
                Some(signal) => format!("cannot send {signal} to process {pid}"),
                None => format!("process {pid} is not running"),
            },
        )
    }

    fn resolve(&self, repository: &str, cache: &str, reference: &str) -> anyhow::Result<String> {
        git::fetch_and_resolve(repository, Path::new(cache), reference)
    }

    fn export(&self, cache: &str, commit: &str, destination: &str) -> anyhow::Result<()> {
        git::export(Path::new(cache), commit, Path::new(destination))
    }

    fn log_oneline(
        &self,
        cache: &str,
        from: Option<&str>,
        to: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<String>> {
        git::log_oneline(Path::new(cache), from, to, limit)
    }

    fn upload(&self, source: &str, destination: &str, sha256: &str) -> anyhow::Result<()> {
        let destination = Path::new(destination);
        let temp = temp_sibling(destination, "tmp");
        let _ = std::fs::remove_file(&temp);
        let copied = std::fs::copy(source, &temp)
            .with_context(|| format!("cannot copy the build's archive to `{}`", temp.display()))
            .and_then(|_| {
                let arrived = artifact::sha256_file(&temp)
                    .with_context(|| format!("cannot read `{}`", temp.display()))?;
                anyhow::ensure!(
                    arrived == sha256,
                    "the build's archive arrived with sha256 {arrived}, not {sha256}"
                );
                std::fs::rename(&temp, destination)
                    .with_context(|| format!("cannot write `{}`", destination.display()))
            });
        if copied.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        copied
    }

    fn unpack(
        &self,
        archive: &str,
        destination: &str,
        manifest: &str,
        files: usize,
        links: &str,
    ) -> anyhow::Result<()> {
        let manifest_text = std::fs::read_to_string(manifest)
            .with_context(|| format!("cannot read the build's manifest `{manifest}`"))?;
        let links_file = links;
        let links = std::fs::read_to_string(links_file)
            .with_context(|| format!("cannot read the build's link list `{links_file}`"))
            .and_then(|list| artifact::parse_link_list(&list))?;
        let unpacked = std::fs::create_dir_all(destination)
            .with_context(|| format!("cannot create directory `{destination}`"))
            .and_then(|()| artifact::unpack(Path::new(archive), Path::new(destination)))
            .and_then(|()| {
                artifact::verify_tree(Path::new(destination), &manifest_text, files, &links)
                    .context("the release does not match the build's manifest")
            });
        if unpacked.is_err() {
            // As over SSH: what was unpacked, the archive and its manifest go (a full disk
            // gets its space back; the next deploy ships the archive again).
            let _ = std::fs::remove_dir_all(destination);
            let _ = std::fs::remove_file(archive);
            let _ = std::fs::remove_file(manifest);
            let _ = std::fs::remove_file(links_file);
            let _ = std::fs::create_dir_all(destination);
        }
        unpacked
    }

    fn download(&self, source: &str, destination: &Path) -> anyhow::Result<u64> {
        std::fs::copy(source, destination)
            .with_context(|| format!("cannot copy `{source}` to `{}`", destination.display()))
    }

    fn has_artifact(&self, path: &str, sha256: &str) -> anyhow::Result<bool> {
        match artifact::sha256_file(Path::new(path)) {
            Ok(found) => Ok(found == sha256),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("cannot read `{path}`")),
        }
    }
}
