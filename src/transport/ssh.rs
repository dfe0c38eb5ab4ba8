//! A remote host over the system OpenSSH client (it honours ~/.ssh/config, the agent,
//! known_hosts and ProxyJump). One connection per host per run, `BatchMode`, a ControlMaster
//! socket in a short private directory, and one remote `sh` that every operation goes through.
//! Every path and value is quoted with `crate::quote`; nothing else builds remote commands.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context};

use super::remote_shell::{RemoteShell, Reply};
use super::Transport;
use crate::process::{self, LineSink, Output, ProcessError, ProcessErrorKind, TAIL_LINES};
use crate::quote::word;

/// Status the helper scripts below use for "not there" (not an error).
const ABSENT: i32 = 100;

/// How to reach a host, from its settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    pub hostname: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<String>,
    pub config_file: Option<String>,
    pub forward_agent: bool,
    pub extra_arguments: Vec<String>,
}

impl Target {
    /// `user@hostname:port`, for messages.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        if let Some(user) = &self.user {
            text.push_str(user);
            text.push('@');
        }
        text.push_str(&self.hostname);
        if let Some(port) = self.port {
            text.push_str(&format!(":{port}"));
        }
        text
    }

    /// The ssh arguments (without the program) that open the remote shell.
    pub fn arguments(&self, control_path: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut option = |key: &str, value: &str| {
            args.push("-o".into());
            args.push(format!("{key}={value}").into());
        };
        option("BatchMode", "yes");
        option("ControlMaster", "auto");
        option("ControlPath", &control_path.display().to_string());
        option("ControlPersist", "no");
        option("ServerAliveInterval", "15");
        args.push("-T".into());
        if let Some(config) = &self.config_file {
            args.push("-F".into());
            args.push(config.into());
        }
        if let Some(port) = self.port {
            args.push("-p".into());
            args.push(port.to_string().into());
        }
        if let Some(identity) = &self.identity_file {
            args.push("-i".into());
            args.push(identity.into());
        }
        if self.forward_agent {
            args.push("-A".into());
        }
        args.extend(self.extra_arguments.iter().map(OsString::from));
        if let Some(user) = &self.user {
            args.push("-l".into());
            args.push(user.into());
        }
        args.push(self.hostname.clone().into());
        args.push("sh".into());
        args
    }
}

pub struct Ssh {
    label: String,
    shell: Mutex<RemoteShell>,
}

impl Ssh {
    /// Connect now: an unreachable host is an error before anything runs.
    pub fn connect(label: &str, target: &Target, control_path: &Path) -> anyhow::Result<Ssh> {
        let ssh = process::find_program("ssh")
            .context("cannot find `ssh` (the OpenSSH client) on PATH")?;
        let shell = RemoteShell::open(&ssh, &target.arguments(control_path), label)?;
        Ok(Ssh {
            label: label.to_string(),
            shell: Mutex::new(shell),
        })
    }

    fn call(&self, script: &str, cwd: Option<&str>) -> anyhow::Result<Reply> {
        self.shell
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .run(script, cwd, &self.label)
    }

    /// Run a helper script; any status but 0 is an error showing its stderr.
    fn must(&self, script: &str, what: &str) -> anyhow::Result<String> {
        let reply = self.call(script, None)?;
        if reply.status != 0 {
            bail!("{what} on `{}`: {}", self.label, reply.stderr.trim());
        }
        Ok(reply.stdout)
    }

    /// Run a helper script that exits [`ABSENT`] for "not there".
    fn maybe(&self, script: &str, what: &str) -> anyhow::Result<Option<String>> {
        let reply = self.call(script, None)?;
        match reply.status {
            0 => Ok(Some(reply.stdout)),
            ABSENT => Ok(None),
            _ => bail!("{what} on `{}`: {}", self.label, reply.stderr.trim()),
        }
    }

    pub fn close(&self) {
        self.shell.lock().unwrap_or_else(|e| e.into_inner()).close();
    }
}

impl Transport for Ssh {
    fn exec(
        &self,
        script: &str,
        cwd: Option<&str>,
        display: &str,
        sink: Option<LineSink>,
    ) -> Result<Output, ProcessError> {
        let reply = self.call(script, cwd).map_err(|e| ProcessError {
            command: display.to_string(),
            kind: ProcessErrorKind::Spawn(format!("{e:#}")),
            stdout_tail: String::new(),
            stderr_tail: String::new(),
        })?;
        if let Some(sink) = sink {
            for line in reply.stdout.lines() {
                sink(process::Stream::Stdout, line);
            }
            for line in reply.stderr.lines() {
                sink(process::Stream::Stderr, line);
            }
        }
        if reply.status != 0 {
            return Err(ProcessError {
                command: display.to_string(),
                kind: ProcessErrorKind::Exit(reply.status),
                stdout_tail: process::tail(&reply.stdout, TAIL_LINES),
                stderr_tail: process::tail(&reply.stderr, TAIL_LINES),
            });
        }
        Ok(Output {
            stdout: reply.stdout,
            stderr: reply.stderr,
        })
    }

    fn read_file(&self, path: &str) -> anyhow::Result<Option<String>> {
        let p = word(path)?;
        self.maybe(
            &format!("[ -e {p} ] || exit {ABSENT}; cat -- {p}"),
            &format!("cannot read `{path}`"),
        )
    }

    fn write_file(&self, path: &str, contents: &str) -> anyhow::Result<()> {
        let p = word(path)?;
        let t = word(&super::temporary_path(path, "tmp"))?;
        self.must(
            &format!(
                "rm -f -- {t} && printf '%s' {} > {t} && mv -f -- {t} {p}",
                word(contents)?
            ),
            &format!("cannot write `{path}`"),
        )?;
        Ok(())
    }

    fn append_line(&self, path: &str, line: &str) -> anyhow::Result<()> {
        self.must(
            &format!("printf '%s\\n' {} >> {}", word(line)?, word(path)?),
            &format!("cannot append to `{path}`"),
        )?;
        Ok(())
    }

    fn create_dir_all(&self, path: &str) -> anyhow::Result<()> {
        self.must(
            &format!("mkdir -p -- {}", word(path)?),
            &format!("cannot create directory `{path}`"),
        )?;
        Ok(())
    }

    fn create_exclusive(&self, path: &str, contents: &str) -> anyhow::Result<bool> {
        // Like the local transport: full content first, then link(2), which fails if the name
        // exists. `ln` without -f never replaces.
        let p = word(path)?;
        let t = word(&super::temporary_path(path, "new"))?;
        let script = format!(
            "rm -f -- {t}; printf '%s' {} > {t} || exit 1; if ln -- {t} {p} 2>/dev/null; then rm -f -- {t}; exit 0; fi; \
             rm -f -- {t}; if [ -e {p} ]; then exit {ABSENT}; fi; exit 1",
            word(contents)?
        );
        Ok(self
            .maybe(&script, &format!("cannot create `{path}`"))?
            .is_some())
    }

    fn remove_file(&self, path: &str) -> anyhow::Result<()> {
        self.must(
            &format!("rm -f -- {}", word(path)?),
            &format!("cannot remove `{path}`"),
        )?;
        Ok(())
    }

    fn remove_dir_all(&self, path: &str) -> anyhow::Result<()> {
        self.must(
            &format!("rm -rf -- {}", word(path)?),
            &format!("cannot remove `{path}`"),
        )?;
        Ok(())
    }

    fn exists(&self, path: &str) -> anyhow::Result<bool> {
        let p = word(path)?;
        Ok(self
            .maybe(
                &format!("[ -e {p} ] || [ -L {p} ] || exit {ABSENT}"),
                "cannot check a path",
            )?
            .is_some())
    }

    fn file_type(&self, path: &str) -> anyhow::Result<Option<super::FileType>> {
        use super::FileType;
        let p = word(path)?;
        let kind = self.maybe(
            &format!(
                "if [ -L {p} ]; then echo l; elif [ -d {p} ]; then echo d; \
                 elif [ -f {p} ]; then echo f; elif [ -e {p} ]; then echo o; else exit {ABSENT}; fi"
            ),
            &format!("cannot look at `{path}`"),
        )?;
        Ok(kind.map(|kind| match kind.trim() {
            "l" => FileType::Symlink,
            "d" => FileType::Directory,
            "f" => FileType::File,
            _ => FileType::Other,
        }))
    }

    fn rename(&self, from: &str, to: &str) -> anyhow::Result<()> {
        self.must(
            &format!("mv -fT -- {} {}", word(from)?, word(to)?),
            &format!("cannot rename `{from}` to `{to}`"),
        )?;
        Ok(())
    }

    fn is_dir(&self, path: &str) -> anyhow::Result<bool> {
        Ok(self
            .maybe(
                &format!("[ -d {} ] || exit {ABSENT}", word(path)?),
                "cannot check a path",
            )?
            .is_some())
    }

    fn list_dir(&self, path: &str) -> anyhow::Result<Vec<String>> {
        let script = format!(
            "cd -- {} 2>/dev/null || exit 0; for f in * .[!.]* ..?*; do \
             if [ -e \"$f\" ] || [ -L \"$f\" ]; then printf '%s\\0' \"$f\"; fi; done",
            word(path)?
        );
        let out = self.must(&script, &format!("cannot list `{path}`"))?;
        let mut names: Vec<String> = out
            .split('\0')
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        names.sort();
        Ok(names)
    }

    fn read_link(&self, path: &str) -> anyhow::Result<Option<String>> {
        let p = word(path)?;
        Ok(self
            .maybe(
                &format!("[ -L {p} ] || exit {ABSENT}; readlink -- {p}"),
                &format!("cannot read link `{path}`"),
            )?
            .map(|t| t.trim_end_matches('\n').to_string()))
    }

    fn symlink(&self, target: &str, link: &str) -> anyhow::Result<()> {
        self.must(
            &format!("ln -s -- {} {}", word(target)?, word(link)?),
            &format!("cannot link `{link}` to `{target}`"),
        )?;
        Ok(())
    }

    fn replace_symlink(&self, target: &str, link: &str) -> anyhow::Result<()> {
        // One round trip: temp link, rename over (mv -T: rename(2), never into a directory),
        // read back.
        let l = word(link)?;
        let t = word(&super::temporary_path(link, "swap"))?;
        let now = self.must(
            &format!(
                "rm -f -- {t} && ln -s -- {} {t} && mv -fT -- {t} {l} && readlink -- {l}",
                word(target)?
            ),
            &format!("cannot switch `{link}`"),
        )?;
        let now = now.trim_end_matches('\n');
        if now != target {
            bail!("`{link}` points at `{now}` after the swap, not at `{target}`");
        }
        Ok(())
    }

    fn find_program(&self, program: &str) -> anyhow::Result<Option<String>> {
        Ok(self
            .maybe(
                &format!("command -v {} || exit {ABSENT}", word(program)?),
                "cannot look a program up",
            )?
            .map(|p| p.trim().to_string()))
    }

    fn resolve(&self, repository: &str, cache: &str, reference: &str) -> anyhow::Result<String> {
        self.remote_resolve(repository, cache, reference)
    }

    fn export(&self, cache: &str, commit: &str, destination: &str) -> anyhow::Result<()> {
        self.remote_export(cache, commit, destination)
    }

    fn log_oneline(
        &self,
        cache: &str,
        from: Option<&str>,
        to: &str,
        limit: usize,
    ) -> anyhow::Result<Vec<String>> {
        super::check_commit_id(to)?;
        let mut script = format!(
            "git --git-dir={} log --oneline --no-decorate --no-color -n {limit} {}",
            word(cache)?,
            word(to)?
        );
        if let Some(from) = from {
            super::check_commit_id(from)?;
            script.push_str(&format!(" --not {}", word(from)?));
        }
        script.push_str(" --");
        let out = self.must(&script, "cannot read the commit log")?;
        Ok(out.lines().map(str::to_string).collect())
    }

    fn signal(&self, pid: i32, signal: Option<nix::sys::signal::Signal>) -> anyhow::Result<()> {
        let name = signal.map(|s| s.as_str().trim_start_matches("SIG").to_string());
        let script = match name {
            Some(name) => format!("kill -{name} {pid}"),
            None => format!("kill -0 {pid}"),
        };
        self.must(&script, &format!("cannot signal process {pid}"))?;
        Ok(())
    }
}

impl Ssh {
    /// Fetch into the bare cache with the remote's `git`, then resolve `reference` to a commit.
    fn remote_resolve(
        &self,
        repository: &str,
        cache: &str,
        reference: &str,
    ) -> anyhow::Result<String> {
        let c = word(cache)?;
        let fetch = format!(
            "command -v git >/dev/null || {{ echo 'git is not installed' >&2; exit 1; }}; \
             [ -d {c} ] || git init -q --bare -- {c} || exit 1; \
             find {c}/refs -type f -name '*.lock' -exec rm -f {{}} + 2>/dev/null; \
             rm -f {c}/packed-refs.lock {c}/HEAD.lock {c}/config.lock {c}/shallow.lock {c}/index.lock; \
             git --git-dir={c} fetch -q --prune --no-tags -- {} '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*' '+HEAD:refs/zdd/HEAD'",
            word(repository)?
        );
        self.must(&fetch, &format!("cannot fetch `{repository}`"))
            .map_err(|e| anyhow!("{e:#}"))?;
        let unknown = || {
            anyhow!("unknown ref `{reference}`: no branch, tag or commit of that name in the repository")
        };
        if reference.trim().is_empty() {
            return Err(anyhow!("`branch` is empty: name a branch, tag or commit"));
        }
        if reference.starts_with('-') {
            return Err(unknown());
        }
        let candidates: Vec<String> = if reference == "HEAD" {
            vec!["refs/zdd/HEAD".into()]
        } else {
            let mut list = Vec::new();
            if crate::git::is_full_ref(reference) {
                list.push(reference.to_string());
            }
            list.push(format!("refs/heads/{reference}"));
            list.push(format!("refs/tags/{reference}"));
            let hex = reference.len() >= 4
                && reference.len() <= 40
                && reference.chars().all(|ch| ch.is_ascii_hexdigit());
            if hex {
                list.push(reference.to_string());
            }
            list
        };
        for candidate in candidates {
            let script = format!(
                "git --git-dir={c} rev-parse -q --verify {} || exit {ABSENT}",
                word(&format!("{candidate}^{{commit}}"))?
            );
            if let Some(commit) = self.maybe(&script, "cannot resolve a ref")? {
                return Ok(commit.trim().to_string());
            }
        }
        Err(unknown())
    }

    /// Write `commit`'s tree into `destination` (git archive | tar: the cache has no work tree
    /// and no index to disturb).
    fn remote_export(&self, cache: &str, commit: &str, destination: &str) -> anyhow::Result<()> {
        self.must(
            &format!(
                "git --git-dir={} archive --format=tar {} | tar -x -C {}",
                word(cache)?,
                word(commit)?,
                word(destination)?
            ),
            &format!("cannot check out {commit} into `{destination}`"),
        )?;
        Ok(())
    }
}

/// A short private directory (0700) for the ControlMaster sockets of one run:
/// `$TMPDIR/zdd-<pid>-XXXXXX`, or under `/tmp` when `TMPDIR` is long (a socket path must stay
/// under ~100 bytes). Directories of runs whose process is gone (killed before they could remove
/// theirs) are removed first.
pub fn control_directory() -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let temp = std::env::temp_dir();
    let parent = if temp.as_os_str().len() <= MAX_CONTROL_PARENT {
        temp
    } else {
        PathBuf::from("/tmp")
    };
    remove_dead_control_directories(&parent);
    tempfile::Builder::new()
        .prefix(&format!("zdd-{}-", std::process::id()))
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(&parent)
        .with_context(|| {
            format!(
                "cannot create a directory for SSH control sockets in `{}`",
                parent.display()
            )
        })
}

/// The longest parent of control directories: with `/zdd-<pid>-XXXXXX/h<index>` after it, a
/// socket path stays well under the 108 bytes of `sun_path` (and ssh's own suffix).
const MAX_CONTROL_PARENT: usize = 60;

fn remove_dead_control_directories(parent: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let uid = nix::unistd::getuid().as_raw();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = control_directory_pid(&name) else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() && meta.uid() == uid && !crate::primitives::lock::alive(pid) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid in a control directory's name (`zdd-<pid>-XXXXXX`).
fn control_directory_pid(name: &str) -> Option<u32> {
    let (pid, rest) = name.strip_prefix("zdd-")?.split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) || rest.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// The control socket for host number `index`.
pub fn control_path(directory: &Path, index: usize) -> PathBuf {
    directory.join(format!("h{index}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_directories_name_their_process() {
        assert_eq!(control_directory_pid("zdd-4242-a1B2c3"), Some(4242));
        assert_eq!(control_directory_pid("zdd-test-a1B2c3"), None);
        assert_eq!(control_directory_pid("zdd-4242-"), None);
        assert_eq!(control_directory_pid("zdd.abc"), None);
    }

    #[test]
    fn arguments_carry_every_setting() {
        let target = Target {
            hostname: "10.0.0.5".into(),
            user: Some("deploy".into()),
            port: Some(2222),
            identity_file: Some("/k/id".into()),
            config_file: Some("/k/config".into()),
            forward_agent: true,
            extra_arguments: vec!["-o".into(), "Compression=yes".into()],
        };
        let args: Vec<String> = target
            .arguments(Path::new("/tmp/zdd-x/h0"))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        assert_eq!(
            args.join(" "),
            "-o BatchMode=yes -o ControlMaster=auto -o ControlPath=/tmp/zdd-x/h0 -o ControlPersist=no \
             -o ServerAliveInterval=15 -T -F /k/config -p 2222 -i /k/id -A -o Compression=yes -l deploy 10.0.0.5 sh"
        );
        assert_eq!(target.describe(), "deploy@10.0.0.5:2222");
    }
}
