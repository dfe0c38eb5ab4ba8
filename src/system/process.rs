//! Every child process zdd starts goes through [`run`]: found with `which`, an argv (never a
//! string for a shell to split), an explicit working directory, output captured with its tails
//! kept for errors, and Ctrl-C forwarded.

use std::ffi::OsString;
use std::fmt;
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;

use crate::system::interrupt;

/// How many lines of each stream an error shows.
pub const TAIL_LINES: usize = 20;

/// A command to start: program, arguments, directory, extra environment, standard input.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(OsString, OsString)>,
    pub stdin: Option<Vec<u8>>,
    /// What to show the user as "the command" (the recipe's command, not `sh -c ...`).
    pub display: String,
}

/// Receives output lines as they arrive (for `-vv`).
pub type LineSink = Arc<dyn Fn(Stream, &str) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// What a finished command produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
}

/// A command that could not start or did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessError {
    pub command: String,
    pub kind: ProcessErrorKind,
    pub stdout_tail: String,
    pub stderr_tail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProcessErrorKind {
    /// The program could not be started.
    Spawn(String),
    /// It exited with a non-zero status.
    Exit(i32),
    /// A signal ended it.
    Signal(String),
}

impl fmt::Display for ProcessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ProcessErrorKind::Spawn(why) => {
                write!(f, "command `{}` could not start: {why}", self.command)?
            }
            ProcessErrorKind::Exit(code) => {
                write!(f, "command `{}` exited with status {code}", self.command)?
            }
            ProcessErrorKind::Signal(name) => {
                write!(f, "command `{}` was killed by {name}", self.command)?
            }
        }
        for (label, tail) in [("stdout", &self.stdout_tail), ("stderr", &self.stderr_tail)] {
            if !tail.is_empty() {
                write!(f, "\n{label} (last lines):")?;
                for line in tail.lines() {
                    write!(f, "\n  | {line}")?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for ProcessError {}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// The last [`TAIL_LINES`] non-blank lines of `text`, each on a line of its own behind `  | `,
/// as failures quote another program's output.
pub fn quoted_tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..]
        .iter()
        .map(|l| format!("\n  | {l}"))
        .collect()
}

fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// This process's own CPU time (user + system) in ms and its peak resident memory in KiB, its
/// children not counted (`getrusage(RUSAGE_SELF)`); zeros where the kernel does not say.
pub fn own_usage() -> (u64, u64) {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => {
            let ms = |t: nix::sys::time::TimeVal| {
                (t.tv_sec().max(0) as u64) * 1000 + (t.tv_usec().max(0) as u64) / 1000
            };
            let cpu = ms(usage.user_time()) + ms(usage.system_time());
            (cpu, usage.max_rss().max(0) as u64)
        }
        Err(_) => (0, 0),
    }
}

/// Whether process `pid` of this machine is running.
pub fn alive(pid: u32) -> bool {
    use nix::errno::Errno;
    // 0 and what does not fit a pid would signal a process group: no process of its own.
    if pid == 0 || i32::try_from(pid).is_err() {
        return false;
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) => true,
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}

/// Find a program on PATH, or say which setting names it.
pub fn find_program(name: &str) -> Result<PathBuf, which::Error> {
    which::which(name)
}

/// Run to completion, capturing output. A non-zero exit is an error carrying the output tails.
pub fn run(invocation: &Invocation, sink: Option<LineSink>) -> Result<Output, ProcessError> {
    let failure = |kind: ProcessErrorKind, out: &Output| ProcessError {
        command: invocation.display.clone(),
        kind,
        stdout_tail: tail(&out.stdout, TAIL_LINES),
        stderr_tail: tail(&out.stderr, TAIL_LINES),
    };
    if interrupt::should_stop() {
        return Err(failure(
            ProcessErrorKind::Signal("SIGINT".into()),
            &Output::default(),
        ));
    }
    let mut command = Command::new(&invocation.program);
    command
        .args(&invocation.args)
        .stdin(if invocation.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cwd) = &invocation.cwd {
        command.current_dir(cwd);
    }
    for (key, value) in &invocation.env {
        command.env(key, value);
    }
    let mut child = command.spawn().map_err(|e| {
        failure(
            ProcessErrorKind::Spawn(spawn_reason(&e, invocation.cwd.as_deref())),
            &Output::default(),
        )
    })?;
    interrupt::set_running_group(child.id());

    let stdin_thread = match (child.stdin.take(), invocation.stdin.clone()) {
        (Some(mut pipe), Some(bytes)) => Some(std::thread::spawn(move || {
            let _ = pipe.write_all(&bytes);
        })),
        _ => None,
    };
    let stderr_pipe = child.stderr.take();
    let stderr_sink = sink.clone();
    let stderr_thread =
        std::thread::spawn(move || read_stream(stderr_pipe, Stream::Stderr, stderr_sink));
    let stdout = read_stream(child.stdout.take(), Stream::Stdout, sink);
    let stderr = stderr_thread.join().unwrap_or_default();
    if let Some(thread) = stdin_thread {
        let _ = thread.join();
    }
    let status = child.wait();
    interrupt::clear_running_group();
    let output = Output { stdout, stderr };
    match status {
        Ok(status) if status.success() => Ok(output),
        Ok(status) => Err(failure(kind_of(status), &output)),
        Err(e) => Err(failure(ProcessErrorKind::Spawn(e.to_string()), &output)),
    }
}

fn spawn_reason(error: &std::io::Error, cwd: Option<&Path>) -> String {
    match (error.kind(), cwd) {
        (std::io::ErrorKind::NotFound, Some(dir)) if !dir.is_dir() => {
            format!("working directory `{}` does not exist", dir.display())
        }
        _ => error.to_string(),
    }
}

fn kind_of(status: ExitStatus) -> ProcessErrorKind {
    match (status.code(), status.signal()) {
        (Some(code), _) => ProcessErrorKind::Exit(code),
        (None, Some(signal)) => ProcessErrorKind::Signal(signal_name(signal)),
        (None, None) => ProcessErrorKind::Exit(-1),
    }
}

fn read_stream<R: Read>(pipe: Option<R>, stream: Stream, sink: Option<LineSink>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut collected = Vec::new();
    match sink {
        None => {
            let _ = pipe.read_to_end(&mut collected);
        }
        Some(sink) => {
            let mut reader = std::io::BufReader::new(pipe);
            let mut line = Vec::new();
            loop {
                line.clear();
                match std::io::BufRead::read_until(&mut reader, b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        collected.extend_from_slice(&line);
                        sink(
                            stream,
                            String::from_utf8_lossy(&line).trim_end_matches('\n'),
                        );
                    }
                }
            }
        }
    }
    String::from_utf8_lossy(&collected).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Invocation {
        Invocation {
            program: find_program("sh").unwrap(),
            args: vec!["-c".into(), script.into()],
            display: script.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn failure_names_command_status_and_tails() {
        let error = run(&sh("echo out; echo err >&2; exit 3"), None).unwrap_err();
        assert_eq!(
            error.to_string(),
            "command `echo out; echo err >&2; exit 3` exited with status 3\nstdout (last lines):\n  | out\nstderr (last lines):\n  | err"
        );
    }

    #[test]
    fn signals_are_named() {
        let error = run(&sh("kill -KILL $$"), None).unwrap_err();
        assert_eq!(error.kind, ProcessErrorKind::Signal("SIGKILL".into()));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
    }
}
