//! One `sh` on a remote host, kept open for the whole run over one SSH connection, so a command
//! costs a round trip on an open channel instead of a new SSH session.
//!
//! Protocol: each request is a line of shell that runs the command in a subshell with its
//! output sent to two temporary files, then prints `MARKER STATUS OUT_BYTES ERR_BYTES` and the two
//! files. Lengths, not delimiters, frame the output, so any bytes can come back.
//!
//! Requests are pipelined: zdd writes a request without waiting for the answers of those before
//! it, and reads the answers in order when it needs one. A request whose status is not one it
//! accepts marks the shell failed (`zdd_f=1`): every request after it is skipped (answered
//! `MARKER skip`) until zdd, having read the failure, sends the next request with a reset. So a
//! request that fails stops everything sent after it, as in a script with `set -e`.

use std::borrow::Cow;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context};

use crate::output::secrets::{self, Secrets};
use crate::values::quote;

/// What a remote command did.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// The statuses a request accepts; any other one fails it and skips what follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accept {
    Zero,
    /// 0, or the "not there" status of the helper scripts.
    ZeroOr(i32),
    Any,
}

/// One request's shell: `script`, run with `sh -c` semantics in `cwd`.
#[derive(Debug, Clone, Copy)]
pub struct Shell<'a> {
    pub script: &'a str,
    pub cwd: Option<&'a str>,
    pub accept: Accept,
    /// The script neither exits, nor changes directory or variables (it may end with
    /// `zdd_st N` for status N): it runs in the shell itself, without a subshell's fork.
    pub inline: bool,
}

pub struct RemoteShell {
    /// ssh and its arguments, without the remote command: the connection starts at the first
    /// request written (or [`RemoteShell::wait_ready`]), with that request in the command.
    ssh: PathBuf,
    arguments: Vec<OsString>,
    connection: Option<Connection>,
    /// What must not go in the command (see [`RemoteShell::start`]).
    secrets: Arc<Secrets>,
    marker: String,
    /// The remote shell printed its ready line (read before the first answer).
    ready: bool,
    /// A failed request was read: the next request resets the remote failure mark.
    reset: bool,
    /// Bytes written to the remote shell's input (requests and data).
    written: u64,
}

/// The running ssh.
struct Connection {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// What ssh itself printed (connection errors, host key problems).
    ssh_errors: Arc<Mutex<Vec<u8>>>,
}

/// The longest SSH command, the first request encoded in it (a third longer than the request,
/// up to five times for one of quotes only): a first request that would make it longer goes
/// in the input. Far below what `execve` takes in one argument (128 KiB on Linux) and an SSH
/// packet (256 KiB); far more than a run's first request (the stdlib deploy's: ~14 KiB).
const MAX_COMMAND: usize = 64 * 1024;

/// The bytes of a file sent in one line of [`RemoteShell::write_file_data`] (a third more as
/// base64): the remote shell holds one line at a time.
const UPLOAD_PIECE: usize = 768 * 1024;

impl RemoteShell {
    /// The remote shell on the host `ssh ARGUMENTS` reaches (the remote command is added
    /// here). Nothing starts yet: the first request written starts the connection, and goes in
    /// the SSH command itself, so it runs as soon as the session does (see
    /// [`RemoteShell::start`]).
    pub fn open(ssh: &Path, arguments: Vec<OsString>, secrets: Arc<Secrets>) -> RemoteShell {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        RemoteShell {
            ssh: ssh.to_path_buf(),
            arguments,
            connection: None,
            secrets,
            marker: format!("ZDD-{}-{nanos}", std::process::id()),
            ready: false,
            reset: false,
            written: 0,
        }
    }

    /// Start ssh, `first` (shell text, whole lines) being the first thing the remote shell
    /// runs.
    ///
    /// An SSH server opens a session's input only once the command has started: input
    /// written at connect reaches the remote shell a round trip after it started (measured:
    /// ~40 ms at a 50 ms round trip, every run). The command itself travels with the
    /// session's start, so the shell's set-up and `first` go there
    /// ([`quote::sh_command_line`]), and the shell then reads the rest of its input as a
    /// script: `. /dev/stdin`, which dash runs line by line as it arrives. Other shells (bash
    /// reads a sourced file whole, up to its end: it would wait forever) `exec sh` without
    /// running anything, and a fresh `sh` reads its input as before. So the input starts
    /// with the set-up and `first` again, run only where the command did not run them.
    ///
    /// A lost connection ends the shell through its EXIT trap, which removes what the run left
    /// half-done (a staged checkout, a half-shipped archive and the release it was for). So
    /// SIGPIPE (the shell writing to the gone connection, an answer or its own error about a
    /// cut line) is trapped, never left to kill the shell without its trap (a trapped signal
    /// is reset in the commands it runs; an ignored one would be inherited).
    fn start(&mut self, first: &str, label: &str) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt;
        let setup = format!(
            "umask 022; unset zdd_stage zdd_stage_ref zdd_prefetch zdd_fetched zdd_plan zdd_leave zdd_up zdd_upload zdd_pending; zdd_f=0; zdd_st() {{ return \"$1\"; }}; zdd_tmp=$(mktemp -d /tmp/zdd.XXXXXX) || exit 1; trap '[ -z \"${{zdd_prefetch:-}}\" ] || {{ kill \"$zdd_prefetch\" 2>/dev/null; wait \"$zdd_prefetch\"; }}; [ -z \"${{zdd_stage:-}}\" ] || [ ! -e \"$zdd_stage\" ] || rm -rf -- \"$zdd_stage\"; [ -z \"${{zdd_upload:-}}\" ] || rm -f -- \"$zdd_upload\"; [ -z \"${{zdd_pending:-}}\" ] || rm -rf -- \"$zdd_pending\"; rm -rf \"$zdd_tmp\"' EXIT; trap 'exit 129' HUP; trap 'exit 143' TERM; trap 'exit 141' PIPE; printf '%s READY\\n' {}\n",
            self.marker
        );
        let command = |in_command: &str| {
            quote::sh_command_line(&format!(
                "if [ -p /dev/stdin ] && {{ [ /proc/$$/exe -ef /bin/dash ] || [ /proc/$$/exe -ef /usr/bin/dash ]; }}; then zdd_command=1\n\
                 {setup}{in_command}command . /dev/stdin\n\
                 else unset zdd_command; exec sh\n\
                 fi\n"
            ))
        };
        // The command is there for every user of the host to read (`ps`) as long as the shell
        // runs; its input is not. A first request that holds a secret (a value the run knows
        // as one, a URL with a user in it: `https://TOKEN@host/...`) goes in the input.
        let private =
            secrets::names_url_user(first) || matches!(self.secrets.redact(first), Cow::Owned(_));
        let whole = if private { None } else { Some(command(first)?) };
        let (command, in_command, after) = match whole {
            Some(whole) if whole.len() <= MAX_COMMAND => (whole, first, ""),
            _ => (command("")?, "", first),
        };
        let mut child = Command::new(&self.ssh)
            .args(&self.arguments)
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: a terminal's Ctrl-C must not cut the connection the
            // fail hooks still need.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start `{}`", self.ssh.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let ssh_errors = Arc::new(Mutex::new(Vec::new()));
        let mut stderr = child.stderr.take().expect("piped");
        let sink = ssh_errors.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&buffer[..n]);
            }
        });
        self.connection = Some(Connection {
            child,
            stdin,
            stdout,
            ssh_errors,
        });
        let input =
            format!("if [ -z \"${{zdd_command:-}}\" ]; then\n{setup}{in_command}fi\n{after}");
        self.write(&input).map_err(|e| self.explain(e, label))
    }

    /// Write `text` to the remote shell, starting the connection with it when it has not
    /// started.
    fn send(&mut self, text: &str, label: &str) -> anyhow::Result<()> {
        if self.connection.is_none() {
            return self.start(text, label);
        }
        self.write(text).map_err(|e| self.explain(e, label))
    }

    fn write(&mut self, text: &str) -> anyhow::Result<()> {
        let connection = self.connection.as_mut().expect("started");
        connection.stdin.write_all(text.as_bytes())?;
        connection.stdin.flush()?;
        self.written += text.len() as u64;
        Ok(())
    }

    /// Bytes written to the remote shell so far (what this host cost the network, upward).
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// Shell text (whole lines) the remote shell runs itself, between requests, with no answer:
    /// it sets or unsets the shell's own variables (see [`RemoteShell::write_file_data`]).
    pub fn write_shell(&mut self, text: &str, label: &str) -> anyhow::Result<()> {
        self.send(text, label)
    }

    /// Stream the local file `source` into `temporary` on the host, in the remote shell's
    /// input: lines of base64, each decoded and appended as it arrives, unless a request
    /// before failed. No answer is written: the request after it checks what arrived, and
    /// finds `zdd_up` set when a piece could not be written (why is in `$zdd_tmp/up.e`). While
    /// the file is there unchecked, the remote shell removes it if it ends (`zdd_upload`).
    /// Returns the bytes of `source` sent.
    pub fn write_file_data(
        &mut self,
        source: &Path,
        temporary: &str,
        label: &str,
    ) -> anyhow::Result<u64> {
        use base64::Engine;
        let t = quote::word(temporary)?;
        let mut file = std::fs::File::open(source)
            .with_context(|| format!("cannot read `{}`", source.display()))?;
        self.send(
            &format!(
                "unset zdd_up; if [ \"$zdd_f\" = 0 ]; then zdd_upload={t}; : >\"$zdd_tmp/up.e\"; {{ rm -f -- {t} && : > {t}; }} 2>>\"$zdd_tmp/up.e\" || zdd_up=1; fi\n"
            ),
            label,
        )?;
        let mut buffer = vec![0u8; UPLOAD_PIECE];
        let mut line = String::with_capacity(UPLOAD_PIECE / 3 * 4 + 256);
        let mut sent = 0u64;
        loop {
            if crate::system::interrupt::should_stop() {
                bail!("interrupted while the build's archive was being sent");
            }
            let mut filled = 0;
            while filled < buffer.len() {
                let n = file
                    .read(&mut buffer[filled..])
                    .with_context(|| format!("cannot read `{}`", source.display()))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            if filled == 0 {
                break;
            }
            line.clear();
            line.push_str("[ \"$zdd_f\" = 0 ] && [ -z \"${zdd_up:-}\" ] && { printf %s '");
            base64::engine::general_purpose::STANDARD.encode_string(&buffer[..filled], &mut line);
            line.push_str(&format!(
                "' | base64 -d >> {t} 2>>\"$zdd_tmp/up.e\" || zdd_up=1; }}\n"
            ));
            self.send(&line, label)?;
            sent += filled as u64;
        }
        Ok(sent)
    }

    /// The connection, started (with nothing for the remote shell to run first) if it was not.
    fn connection(&mut self, label: &str) -> anyhow::Result<&mut Connection> {
        if self.connection.is_none() {
            self.start("", label)?;
        }
        Ok(self.connection.as_mut().expect("started"))
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Wait until the remote shell has started (the connection is up).
    pub fn wait_ready(&mut self, label: &str) -> anyhow::Result<()> {
        let result = self.read_ready(label);
        result.map_err(|e| self.explain(e, label))
    }

    fn read_ready(&mut self, label: &str) -> anyhow::Result<()> {
        if self.ready {
            return Ok(());
        }
        let ready = format!("{} READY", self.marker);
        let stdout = &mut self.connection(label)?.stdout;
        let mut line = String::new();
        loop {
            line.clear();
            if stdout.read_line(&mut line)? == 0 {
                bail!("the connection closed before the remote shell started");
            }
            // Login files may print; everything before the marker is ignored.
            if line.trim_end() == ready {
                self.ready = true;
                return Ok(());
            }
        }
    }

    /// ssh's own words, when the connection is the problem.
    fn explain(&mut self, error: anyhow::Error, label: &str) -> anyhow::Error {
        let Some(connection) = self.connection.as_mut() else {
            return anyhow!("cannot reach host `{label}`: {error}");
        };
        // Give ssh a moment to exit and say why.
        for _ in 0..50 {
            if matches!(connection.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let said = String::from_utf8_lossy(
            &connection
                .ssh_errors
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        )
        .trim()
        .to_string();
        if said.is_empty() {
            anyhow!("cannot reach host `{label}`: {error}")
        } else {
            anyhow!("cannot reach host `{label}`: {said}")
        }
    }

    /// Write a request: run `script` with `sh -c` in `cwd` on the remote host. Its answer is
    /// read later, in order, by [`RemoteShell::read_reply`].
    pub fn write_request(&mut self, command: Shell<'_>, label: &str) -> anyhow::Result<()> {
        self.write_batch(&[command], label)
    }

    /// Write several requests as one line: they run in order, as separate requests would, and
    /// are answered as separate requests are (one answer each, read by
    /// [`RemoteShell::read_reply`]), but their output is measured and sent by one `wc` and one
    /// `cat` instead of one each: a query of ten small reads costs the host a few forks, not
    /// thirty.
    pub fn write_batch(&mut self, requests: &[Shell<'_>], label: &str) -> anyhow::Result<()> {
        let reset = if std::mem::take(&mut self.reset) {
            "zdd_f=0; "
        } else {
            ""
        };
        let marker = &self.marker;
        // Each line's output files are new files: a command that left a process in the
        // background writing to its output (`nohup worker &`) must not write into the answer
        // of a later request (measured: it did when the names were reused).
        let mut line = format!("{reset}zdd_n=$((zdd_n+1)); ");
        if let [command] = requests {
            // The command runs in a subshell (`eval`: no exec of another sh); the lengths are
            // only counted when there is output, so a quiet command costs one fork on the host.
            line.push_str(&format!(
                "if [ \"$zdd_f\" = 0 ]; then {} \
                 if [ -s \"$zdd_tmp/$zdd_n.o\" ] || [ -s \"$zdd_tmp/$zdd_n.e\" ]; then \
                 set -- $(wc -c \"$zdd_tmp/$zdd_n.o\" \"$zdd_tmp/$zdd_n.e\"); \
                 printf '%s %s %s %s\\n' {marker} \"$zdd_s\" \"$1\" \"$3\"; cat \"$zdd_tmp/$zdd_n.o\" \"$zdd_tmp/$zdd_n.e\"; \
                 else printf '%s %s 0 0\\n' {marker} \"$zdd_s\"; fi; \
                 else printf '%s skip\\n' {marker}; fi\n",
                run(command, "")?,
            ));
        } else {
            let mut files = Vec::new();
            let mut headers = Vec::new();
            for (i, command) in requests.iter().enumerate() {
                let (o, e) = (
                    format!("\"$zdd_tmp/$zdd_n.o{i}\""),
                    format!("\"$zdd_tmp/$zdd_n.e{i}\""),
                );
                line.push_str(&format!(
                    "if [ \"$zdd_f\" = 0 ]; then {} zdd_s{i}=$zdd_s; \
                     else zdd_s{i}=skip; : >{o}; : >{e}; fi; ",
                    run(command, &i.to_string())?,
                ));
                // `wc -c` prints `SIZE NAME` per file: the sizes are every other word.
                let (out, err) = (4 * i + 1, 4 * i + 3);
                headers.push(format!(
                    "if [ \"$zdd_s{i}\" = skip ]; then printf '%s skip\\n' {marker}; \
                     else printf '%s %s %s %s\\n' {marker} \"$zdd_s{i}\" \"${{{out}}}\" \"${{{err}}}\"; fi >\"$zdd_tmp/$zdd_n.h{i}\"; "
                ));
                files.push(format!("\"$zdd_tmp/$zdd_n.h{i}\" {o} {e}"));
            }
            let sizes: Vec<String> = (0..requests.len())
                .map(|i| format!("\"$zdd_tmp/$zdd_n.o{i}\" \"$zdd_tmp/$zdd_n.e{i}\""))
                .collect();
            line.push_str(&format!("set -- $(wc -c {}); ", sizes.join(" ")));
            for header in headers {
                line.push_str(&header);
            }
            line.push_str(&format!("cat {}\n", files.join(" ")));
        }
        self.send(&line, label)
    }

    /// The answer to the oldest request not read yet; `None` when it was skipped (a request
    /// before it failed). `accept` is what the request was written with.
    pub fn read_reply(&mut self, accept: Accept, label: &str) -> anyhow::Result<Option<Reply>> {
        let result = self.read_ready(label).and_then(|_| self.read_framed(label));
        let reply = result.map_err(|e| self.explain(e, label))?;
        if let Some(reply) = &reply {
            let accepted = match accept {
                Accept::Zero => reply.status == 0,
                Accept::ZeroOr(other) => reply.status == 0 || reply.status == other,
                Accept::Any => true,
            };
            if !accepted {
                self.reset = true;
            }
        }
        Ok(reply)
    }

    fn read_framed(&mut self, label: &str) -> anyhow::Result<Option<Reply>> {
        let marker = self.marker.clone();
        let stdout = &mut self.connection(label)?.stdout;
        let mut header = String::new();
        if stdout.read_line(&mut header)? == 0 {
            bail!("the connection closed");
        }
        let mut fields = header.split_whitespace();
        if fields.next() != Some(marker.as_str()) {
            bail!(
                "unexpected output from the remote shell: `{}`",
                header.trim()
            );
        }
        let mut fields = fields.peekable();
        if fields.peek() == Some(&"skip") {
            return Ok(None);
        }
        let mut number = || -> anyhow::Result<i64> {
            fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| anyhow!("malformed reply `{}`", header.trim()))
        };
        let status = number()? as i32;
        let out_len = number()? as usize;
        let err_len = number()? as usize;
        let mut out = vec![0u8; out_len];
        stdout.read_exact(&mut out)?;
        let mut err = vec![0u8; err_len];
        stdout.read_exact(&mut err)?;
        Ok(Some(Reply {
            status,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        }))
    }

    /// Ask the remote shell to leave once everything before has run without a failure; it
    /// stays when a request failed (the runner may still need it to put the host back).
    pub fn exit_if_all_succeeded(&mut self) -> anyhow::Result<()> {
        if self.connection.is_none() {
            return Ok(());
        }
        self.write("[ \"$zdd_f\" = 0 ] && exit 0\n")
    }

    /// Ask the remote shell to leave once it has answered, when a request of the last line
    /// set `zdd_leave` to 1 and nothing failed.
    pub fn leave_if_asked(&mut self, label: &str) -> anyhow::Result<()> {
        self.send(
            "[ \"$zdd_f\" = 0 ] && [ \"${zdd_leave:-}\" = 1 ] && exit 0\n",
            label,
        )
    }

    /// Leave the remote shell and wait for ssh to end (closing the master connection).
    pub fn close(&mut self) {
        if self.connection.is_none() {
            return;
        }
        let _ = self.write("exit 0\n");
        let child = &mut self.connection.as_mut().expect("started").child;
        // ssh ends a moment after the remote shell: look often (a run's end waits for this),
        // for at most 2 s.
        for _ in 0..2000 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The shell that runs one request's script in its directory, its output in
/// `$zdd_tmp/$zdd_n.o{suffix}` and `$zdd_tmp/$zdd_n.e{suffix}` (new files for each line) and its
/// status in `zdd_s`, and marks the shell failed (`zdd_f=1`) when the request does not accept
/// that status.
fn run(request: &Shell<'_>, suffix: &str) -> anyhow::Result<String> {
    let command = quote::word(request.script)?;
    let cd = match request.cwd {
        Some(dir) => format!("cd -- {} && ", quote::word(dir)?),
        None => String::new(),
    };
    let check = match request.accept {
        Accept::Zero => "[ \"$zdd_s\" = 0 ] || zdd_f=1;".to_string(),
        Accept::ZeroOr(other) => format!("case $zdd_s in 0|{other}) ;; *) zdd_f=1;; esac;"),
        Accept::Any => String::new(),
    };
    // A subshell (`eval`: no exec of another sh) keeps `exit` and `cd` to the request.
    let body = if request.inline && request.cwd.is_none() {
        format!("{{ eval {command}; }}")
    } else {
        format!("({cd}eval {command})")
    };
    Ok(format!(
        "{body} </dev/null >\"$zdd_tmp/$zdd_n.o{suffix}\" 2>\"$zdd_tmp/$zdd_n.e{suffix}\"; zdd_s=$?; {check}"
    ))
}

impl Drop for RemoteShell {
    fn drop(&mut self) {
        let running = self
            .connection
            .as_mut()
            .is_some_and(|c| matches!(c.child.try_wait(), Ok(None)));
        if running {
            self.close();
        }
    }
}
