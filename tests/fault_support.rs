//! Harness of the fault-injection suite (`faults`): a deploy site whose `zdd` runs see a private
//! `/tmp`, the one invariant checker every scenario calls after its fault, the signal driver
//! that stops zdd after its Nth task event, guards that undo mounts and `chattr +i`, and the
//! suite's figures.
//!
//! Private temporary directory: every `zdd` of a [`Site`] runs with `TMPDIR=<sandbox>/tmp`, and
//! zdd makes its control directories there (`$TMPDIR/zdd-<pid>-*`). They are then in that
//! sandbox only, so "no control directory of a dead run is left once a later run has run" can
//! be checked exactly, while other tests (and other people's) run beside.
//!
//! kill -9: the driver stops zdd (SIGSTOP), stops every process it started, then kills them all
//! (SIGKILL), the way a lost machine or an OOM kill of the whole unit ends a deploy. Children
//! left running would race the checker and make the outcome depend on timing.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub use crate::support::wait_at_most;
use crate::support::{git, Run, Sandbox};

// ---------------------------------------------------------------------------------------------
// The figures
// ---------------------------------------------------------------------------------------------

pub static FAULTS: AtomicUsize = AtomicUsize::new(0);
pub static SCENARIOS: AtomicUsize = AtomicUsize::new(0);
pub static STATES: AtomicUsize = AtomicUsize::new(0);
pub static LOSSES: AtomicUsize = AtomicUsize::new(0);
static FINISHED: AtomicUsize = AtomicUsize::new(0);

/// How many `#[test]`s the suite has: the last one to finish prints the totals.
pub const SUITE_TESTS: usize = 9;

/// Held by each test of the suite; when the last one ends (passing or not), the totals print.
pub struct Figures {
    name: &'static str,
    faults: usize,
    scenarios: usize,
    states: usize,
    losses: usize,
}

impl Figures {
    pub fn start(name: &'static str) -> Figures {
        Figures {
            name,
            faults: FAULTS.load(Ordering::SeqCst),
            scenarios: SCENARIOS.load(Ordering::SeqCst),
            states: STATES.load(Ordering::SeqCst),
            losses: LOSSES.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Figures {
    fn drop(&mut self) {
        // The counters are global: with tests in parallel, a test's own figures are approximate;
        // the suite's totals (printed by the last test) are exact.
        eprintln!(
            "faults figures [{}]: faults injected ~{}, scenarios ~{}, states checked ~{}, losses ~{}",
            self.name,
            FAULTS.load(Ordering::SeqCst) - self.faults,
            SCENARIOS.load(Ordering::SeqCst) - self.scenarios,
            STATES.load(Ordering::SeqCst) - self.states,
            LOSSES.load(Ordering::SeqCst) - self.losses,
        );
        if FINISHED.fetch_add(1, Ordering::SeqCst) + 1 == SUITE_TESTS {
            eprintln!(
                "faults suite: faults injected {}, scenarios {}, states checked {}, losses {}",
                FAULTS.load(Ordering::SeqCst),
                SCENARIOS.load(Ordering::SeqCst),
                STATES.load(Ordering::SeqCst),
                LOSSES.load(Ordering::SeqCst),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A site: a sandbox, a repository, a recipe, one or more deploy paths
// ---------------------------------------------------------------------------------------------

/// A sandbox under `/var/tmp` (a short path: zdd makes its control sockets under it), with a
/// `tmp/` directory that those runs get as `TMPDIR`.
pub fn fault_sandbox() -> Sandbox {
    let sandbox = Sandbox {
        dir: tempfile::Builder::new()
            .prefix("zdd-test-")
            .tempdir_in("/var/tmp")
            .expect("temp dir under /var/tmp"),
    };
    std::fs::create_dir_all(sandbox.path("tmp")).unwrap();
    sandbox
}

/// What a fault is checked against: a recipe deployed from a repository into deploy paths.
pub struct Site {
    pub sandbox: Sandbox,
    /// The repository the recipe deploys (for `git ls-tree`).
    pub repo: PathBuf,
    /// The recipe file, relative to the sandbox.
    pub recipe: String,
    /// `-o KEY=VALUE` options every command gets.
    pub options: Vec<String>,
    /// The deploy paths (relative to the sandbox, or absolute), one per host.
    pub deploys: Vec<String>,
    /// Shared entries (release-relative): files of the commit under them are not checked in a
    /// release (they are links into `shared/`).
    pub shared_entries: Vec<String>,
    /// Paths under `shared/` that the application itself writes while deploying (Laravel's
    /// compiled views, caches, logs): left out of the byte-for-byte comparison of `shared/`.
    pub shared_written_by_app: Vec<String>,
}

impl Site {
    /// `zdd ARGS` with the site's options after ARGS, in a private `/tmp`.
    pub fn zdd(&self, args: &[&str]) -> Command {
        self.zdd_with(args, true)
    }

    /// `zdd ARGS`, with the site's `-o` options when `options` (commands like `unlock` and
    /// `releases` take them too: they name the deploy path).
    pub fn zdd_with(&self, args: &[&str], options: bool) -> Command {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin("zdd"));
        command.args(args);
        if options {
            for option in &self.options {
                command.arg("-o").arg(option);
            }
        }
        command
            .current_dir(self.sandbox.root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.sandbox.root())
            .env("TMPDIR", self.sandbox.path("tmp"))
            .env("USER", "tester")
            .env("NO_COLOR", "1")
            .env("COMPOSER_ALLOW_SUPERUSER", "1")
            .stdin(Stdio::null());
        command
    }

    /// Run `zdd ARGS` (site options added) to the end.
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.zdd(args).output().expect("zdd runs");
        Run {
            code: output.status.code(),
            stdout: self
                .sandbox
                .normalize(&String::from_utf8_lossy(&output.stdout)),
            stderr: self
                .sandbox
                .normalize(&String::from_utf8_lossy(&output.stderr)),
        }
    }

    pub fn deploy_path(&self, host: usize) -> PathBuf {
        self.sandbox.path(&self.deploys[host])
    }

    /// What `current` of host `host` is (the raw link target), if it exists.
    pub fn current_target(&self, host: usize) -> Option<PathBuf> {
        std::fs::read_link(self.deploy_path(host).join("current")).ok()
    }

    /// The release `current` points at (its last path component).
    pub fn current(&self, host: usize) -> Option<String> {
        self.current_target(host)
            .map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
    }

    pub fn releases(&self, host: usize) -> Vec<String> {
        self.sandbox.releases(&self.deploys[host])
    }

    /// Snapshot of every host before a fault.
    pub fn before(&self) -> Before {
        let hosts = (0..self.deploys.len())
            .map(|host| {
                let current = self.current_target(host);
                let current_complete = current
                    .as_ref()
                    .map(|_| self.current_problem(host).is_none())
                    .unwrap_or(false);
                let good = self.good_releases(host);
                let live = self.current(host);
                // The release a rollback picks: the newest good one before the live one.
                let target = good
                    .iter()
                    .rfind(|name| {
                        Some(*name) != live.as_ref()
                            && live.as_ref().is_none_or(|live| *name < live)
                    })
                    .cloned();
                let mut protected = BTreeSet::new();
                // A live release of `releases/` (a `current` elsewhere is no release there).
                let in_releases = current.as_ref().is_some_and(|t| {
                    let t = t.display().to_string();
                    t.starts_with("releases/") || t.contains("/releases/")
                });
                if current_complete && in_releases {
                    protected.extend(live);
                }
                protected.extend(target);
                HostBefore {
                    current,
                    current_complete,
                    shared: self.shared_tree(host),
                    protected,
                }
            })
            .collect();
        Before { hosts }
    }

    /// Good releases of host `host`, per the release log (read directly: the checker does not
    /// trust the code under test to say what is good).
    pub fn good_releases(&self, host: usize) -> Vec<String> {
        let text =
            std::fs::read(self.deploy_path(host).join(".zdd/releases.jsonl")).unwrap_or_default();
        let text = String::from_utf8_lossy(&text);
        // finished -> good; failed, removed -> not; a rollback away from a good one -> not.
        let mut good: BTreeMap<String, bool> = BTreeMap::new();
        for line in text.lines() {
            let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let (Some(kind), Some(release)) = (event["event"].as_str(), event["release"].as_str())
            else {
                continue;
            };
            match kind {
                "finished" => {
                    good.insert(release.to_string(), true);
                }
                "failed" | "removed" => {
                    good.insert(release.to_string(), false);
                }
                "rollback" => {
                    if let Some(from) = event["from"].as_str() {
                        if let Some(flag) = good.get_mut(from) {
                            *flag = false;
                        }
                    }
                }
                _ => {}
            }
        }
        let on_disk: BTreeSet<String> = self.releases(host).into_iter().collect();
        good.into_iter()
            .filter(|(name, good)| *good && on_disk.contains(name))
            .map(|(name, _)| name)
            .collect()
    }

    fn shared_tree(&self, host: usize) -> BTreeMap<String, String> {
        let shared = format!("{}/shared", self.deploys[host]);
        let skip: Vec<&str> = self
            .shared_written_by_app
            .iter()
            .map(String::as_str)
            .collect();
        self.sandbox.tree(&shared, &skip)
    }

    /// Why `current` of `host` is not a complete release, or None when it is.
    pub fn current_problem(&self, host: usize) -> Option<String> {
        let link = self.deploy_path(host).join("current");
        let Ok(target) = std::fs::read_link(&link) else {
            return Some("`current` does not exist".into());
        };
        let release = if target.is_absolute() {
            target.clone()
        } else {
            self.deploy_path(host).join(&target)
        };
        self.release_problem(&release)
            .map(|problem| format!("`current` -> {}: {problem}", target.display()))
    }

    /// Why the directory `release` is not a complete release of its REVISION, or None.
    pub fn release_problem(&self, release: &Path) -> Option<String> {
        if !release.is_dir() {
            return Some("not a directory (dangling)".into());
        }
        let revision = match std::fs::read_to_string(release.join("REVISION")) {
            Ok(text) => text.trim().to_string(),
            Err(e) => return Some(format!("cannot read REVISION: {e}")),
        };
        let listing = Command::new("git")
            .args(["ls-tree", "-r", "--name-only", &revision])
            .current_dir(&self.repo)
            .output()
            .unwrap();
        if !listing.status.success() {
            return Some(format!(
                "REVISION `{revision}` is not a commit of the repository"
            ));
        }
        let files = String::from_utf8_lossy(&listing.stdout).into_owned();
        let missing: Vec<&str> = files
            .lines()
            .filter(|file| {
                !self
                    .shared_entries
                    .iter()
                    .any(|entry| *file == entry || file.starts_with(&format!("{entry}/")))
            })
            .filter(|file| std::fs::symlink_metadata(release.join(file)).is_err())
            .collect();
        if missing.is_empty() {
            None
        } else {
            Some(format!(
                "{} file(s) of commit {} missing, e.g. {:?}",
                missing.len(),
                &revision[..12.min(revision.len())],
                &missing[..missing.len().min(5)]
            ))
        }
    }
}

/// One host's state before a fault.
#[derive(Clone)]
pub struct HostBefore {
    pub current: Option<PathBuf>,
    pub current_complete: bool,
    pub shared: BTreeMap<String, String>,
    /// Releases that must survive anything: the live one and the rollback target.
    pub protected: BTreeSet<String>,
}

#[derive(Clone)]
pub struct Before {
    pub hosts: Vec<HostBefore>,
}

impl Before {
    /// Without the releases that must survive: for checks after runs that succeeded and so
    /// may legitimately have moved on (a rollback target that became "rolled back" is
    /// removable).
    pub fn unprotected(mut self) -> Before {
        for host in &mut self.hosts {
            host.protected.clear();
        }
        self
    }
}

// ---------------------------------------------------------------------------------------------
// The invariant checker
// ---------------------------------------------------------------------------------------------

/// What a fault left, checked the same way after every scenario:
/// 1. `current` is exactly what it was, or a complete release (every file of its REVISION's
///    commit present, shared entries excepted); releases that were live or the rollback target
///    are still complete;
/// 2. `shared/` is byte-identical;
/// 3. `/tmp/zdd-*` directories left by dead runs are private (0700);
/// 4. the lock is free, or `zdd run` reports it stale naming the holder (exit 3) and `zdd unlock`
///    clears it;
/// 5. a new deploy succeeds, then a rollback, with `current` complete after each;
/// 6. `zdd releases` exits 0; no `/tmp/zdd-*` and no `.lock.new.*`-style leftover of a dead run
///    remains.
///
/// Returns every broken invariant (empty: all hold). `dead` are pids of zdd runs the fault
/// ended (the lock may name one).
pub fn check_invariants(site: &Site, before: &Before, dead: &[u32], context: &str) -> Vec<String> {
    let mut problems = Vec::new();
    STATES.fetch_add(1, Ordering::SeqCst);

    for (host, was) in before.hosts.iter().enumerate() {
        let name = &site.deploys[host];
        // 1. current
        let now = site.current_target(host);
        let same = now == was.current;
        match site.current_problem(host) {
            None => {}
            Some(_) if same && !was.current_complete => {}
            Some(problem) => {
                problems.push(format!(
                    "[{name}] INVARIANT current: neither a complete release nor what it was before ({:?}): {problem}",
                    was.current
                ));
            }
        }
        for release in &was.protected {
            let dir = site.deploy_path(host).join("releases").join(release);
            if let Some(problem) = site.release_problem(&dir) {
                problems.push(format!(
                    "[{name}] INVARIANT kept releases: releases/{release} (live or rollback target before the fault) is damaged: {problem}"
                ));
            }
        }
        // 2. shared
        let shared = site.shared_tree(host);
        if shared != was.shared {
            problems.push(format!(
                "[{name}] INVARIANT shared: shared/ changed: {}",
                tree_diff(&was.shared, &shared)
            ));
        }
    }

    // 3. control directories of dead runs are private while they exist.
    for (dir, mode) in zdd_temp_dirs(site) {
        if mode & 0o077 != 0 {
            problems.push(format!(
                "INVARIANT private temp: {} has mode {:o} (readable by others; must be 0700)",
                dir.display(),
                mode
            ));
        }
    }

    // 4. the lock: free, or stale naming the holder, and `zdd unlock` clears it.
    let locked: Vec<usize> = (0..site.deploys.len())
        .filter(|&h| site.deploy_path(h).join(".zdd/lock").exists())
        .collect();
    if !locked.is_empty() {
        let lock_text = std::fs::read_to_string(site.deploy_path(locked[0]).join(".zdd/lock"))
            .unwrap_or_default();
        let run = site.run(&["run", &site.recipe, "-q"]);
        let names_holder = dead.is_empty()
            || dead
                .iter()
                .any(|pid| run.stderr.contains(&format!("pid {pid}")));
        if run.code != Some(3) || !run.stderr.contains("stale") || !names_holder {
            problems.push(format!(
                "INVARIANT lock: left locked ({lock_text:?}) and `zdd run` did not report a stale lock naming the dead run {dead:?} with exit 3: exit {:?}\n{}",
                run.code, run.stderr
            ));
        }
        let unlock = site.run(&["unlock", &site.recipe]);
        if unlock.code != Some(0) {
            problems.push(format!(
                "INVARIANT lock: `zdd unlock` of a stale lock exited {:?}\n{}",
                unlock.code, unlock.stderr
            ));
        }
        for &h in &locked {
            if site.deploy_path(h).join(".zdd/lock").exists() {
                problems.push(format!(
                    "[{}] INVARIANT lock: still locked after `zdd unlock`",
                    site.deploys[h]
                ));
            }
        }
    }

    // 5. a deploy, then a rollback, each leaving a complete current.
    let deploy = site.run(&["run", &site.recipe, "-q"]);
    STATES.fetch_add(1, Ordering::SeqCst);
    if deploy.code != Some(0) || deploy.stderr.contains("panicked") {
        problems.push(format!(
            "INVARIANT next deploy: `zdd run` after the fault exited {:?}\n{}",
            deploy.code, deploy.stderr
        ));
    }
    for host in 0..site.deploys.len() {
        if let Some(problem) = site.current_problem(host) {
            problems.push(format!(
                "[{}] INVARIANT next deploy: current incomplete after it: {problem}",
                site.deploys[host]
            ));
        }
    }
    let deployed: Vec<Option<String>> = (0..site.deploys.len()).map(|h| site.current(h)).collect();
    let rollback = site.run(&["rollback", &site.recipe, "-q"]);
    STATES.fetch_add(1, Ordering::SeqCst);
    if rollback.code != Some(0) || rollback.stderr.contains("panicked") {
        problems.push(format!(
            "INVARIANT rollback: `zdd rollback` after the fault and a deploy exited {:?}\n{}",
            rollback.code, rollback.stderr
        ));
    }
    for (host, deployed) in deployed.iter().enumerate() {
        if let Some(problem) = site.current_problem(host) {
            problems.push(format!(
                "[{}] INVARIANT rollback: current incomplete after it: {problem}",
                site.deploys[host]
            ));
        } else if rollback.code == Some(0) && site.current(host) == *deployed {
            problems.push(format!(
                "[{}] INVARIANT rollback: exit 0 but current still {:?}",
                site.deploys[host], deployed
            ));
        }
    }

    // 6. the log is readable; no leftovers of dead runs once later runs have run.
    let releases = site.run(&["releases", &site.recipe]);
    if releases.code != Some(0) || releases.stderr.contains("panicked") {
        problems.push(format!(
            "INVARIANT log: `zdd releases` exited {:?}\n{}",
            releases.code, releases.stderr
        ));
    }
    let left: Vec<String> = zdd_temp_dirs(site)
        .into_iter()
        .map(|(dir, _)| dir.display().to_string())
        .collect();
    if !left.is_empty() {
        problems.push(format!(
            "INVARIANT leftovers: control directories of dead runs still in /tmp after later runs: {left:?}"
        ));
    }
    for host in 0..site.deploys.len() {
        let leftovers = dead_run_files(&site.deploy_path(host));
        if !leftovers.is_empty() {
            problems.push(format!(
                "[{}] INVARIANT leftovers: temporary files of dead runs after later runs: {leftovers:?}",
                site.deploys[host]
            ));
        }
    }

    problems
        .into_iter()
        .map(|p| format!("{context}: {p}"))
        .collect()
}

/// Panic with every problem, numbered, unless there are none.
#[track_caller]
pub fn assert_no_problems(problems: &[String]) {
    LOSSES.fetch_add(
        problems.iter().filter(|p| is_loss(p)).count(),
        Ordering::SeqCst,
    );
    if problems.is_empty() {
        return;
    }
    panic!(
        "{} broken invariant(s):\n\n{}",
        problems.len(),
        problems
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}. {p}", i + 1))
            .collect::<Vec<_>>()
            .join("\n\n")
    );
}

/// Whether a problem is a loss: data or a usable release gone or damaged (as opposed to a
/// wrong exit code, a message, or a leftover).
pub fn is_loss(problem: &str) -> bool {
    LOSS_INVARIANTS.iter().any(|name| problem.contains(name))
}

/// The invariants whose violation loses something.
pub const LOSS_INVARIANTS: [&str; 4] = [
    "INVARIANT current",
    "INVARIANT kept releases",
    "INVARIANT shared",
    "INVARIANT outside",
];

fn tree_diff(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> String {
    let mut out = Vec::new();
    for (path, old) in before {
        match after.get(path) {
            None => out.push(format!("removed {path}")),
            Some(new) if new != old => out.push(format!("changed {path}")),
            _ => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("added {path}"));
    }
    out.join(", ")
}

/// The `zdd-*` directories in the site's private temporary directory, with their modes.
pub fn zdd_temp_dirs(site: &Site) -> Vec<(PathBuf, u32)> {
    let Ok(entries) = std::fs::read_dir(site.sandbox.path("tmp")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("zdd-"))
        .map(|e| {
            let mode = e.metadata().map(|m| m.permissions().mode()).unwrap_or(0);
            (e.path(), mode & 0o7777)
        })
        .collect()
}

/// Entries of the deploy path (top level and `.zdd/`) whose name ends in `.<pid>` of a process
/// that no longer runs: the temp files of a dead run (`.lock.new.<pid>`, `current.zdd-swap.<pid>`).
pub fn dead_run_files(deploy: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for dir in [deploy.to_path_buf(), deploy.join(".zdd")] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(|e| e.ok()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some((stem, pid)) = name.rsplit_once('.') else {
                continue;
            };
            if stem.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            if let Ok(pid) = pid.parse::<i32>() {
                if !alive(pid) {
                    out.push(entry.path().display().to_string());
                }
            }
        }
    }
    out
}

/// Whether process `pid` runs (a zombie does not count).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Signals at task events
// ---------------------------------------------------------------------------------------------

/// The fault a kill point injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of zdd and everything it started.
    Kill,
    /// SIGTERM to zdd: it must stop, run its fail hooks, restore and unlock (exit 1).
    Term,
    /// SIGINT to zdd (Ctrl-C): the same.
    Int,
}

/// When to strike: after the `event`-th task event (1-based, `task_started`/`task_finished`
/// lines of `--json` stdout), plus `delay` (0 at a step boundary).
#[derive(Debug, Clone)]
pub struct KillPoint {
    pub fault: Fault,
    pub event: usize,
    pub delay: Duration,
    pub label: String,
}

/// What happened to a run that was struck.
#[derive(Debug)]
pub struct Struck {
    pub pid: u32,
    /// Whether the process was still running when the fault came.
    pub hit: bool,
    /// The task events seen before the fault (`started X` / `finished X`).
    pub events: Vec<String>,
    /// Whether the run finished its last step (`deploy:unlock`) anyway.
    pub completed: bool,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub stderr: String,
    /// `/tmp/zdd-*` directories (and modes) right after the fault.
    pub temp_dirs: Vec<(PathBuf, u32)>,
}

/// Run `zdd ARGS --json` for `site` and strike at `point`. Waits for the end of the process
/// (at most 120 s) and of everything it started.
pub fn run_and_strike(site: &Site, args: &[&str], point: &KillPoint) -> Struck {
    let mut all: Vec<&str> = args.to_vec();
    all.push("--json");
    let mut child = site
        .zdd(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("zdd starts");
    let pid = child.id();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_thread = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut events = Vec::new();
    let mut count = 0;
    let mut line = String::new();
    let mut hit = false;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let kind = event["event"].as_str().unwrap_or("");
        if kind != "task_started" && kind != "task_finished" {
            continue;
        }
        count += 1;
        events.push(format!(
            "{} {} on {}",
            if kind == "task_started" {
                "started"
            } else {
                "finished"
            },
            event["task"].as_str().unwrap_or("?"),
            event["host"].as_str().unwrap_or("?")
        ));
        if count == point.event {
            if !point.delay.is_zero() {
                std::thread::sleep(point.delay);
            }
            hit = strike(pid, point.fault);
            break;
        }
    }
    // Drain the rest of stdout so zdd never blocks on a full pipe; note whether the deploy ran
    // to its end anyway (a signal that came after the last step is too late to stop anything).
    let mut rest = Vec::new();
    let _ = reader.read_to_end(&mut rest);
    let completed = events
        .iter()
        .any(|e| e.starts_with("finished deploy:unlock"))
        || String::from_utf8_lossy(&rest)
            .lines()
            .any(|line| line.contains("\"task_finished\"") && line.contains("\"deploy:unlock\""));
    let status = wait_at_most(&mut child, Duration::from_secs(120));
    let stderr = site.sandbox.normalize(&stderr_thread.join().unwrap());
    let temp_dirs = zdd_temp_dirs(site);
    FAULTS.fetch_add(1, Ordering::SeqCst);
    use std::os::unix::process::ExitStatusExt;
    Struck {
        pid,
        hit,
        events,
        completed,
        code: status.code(),
        signal: status.signal(),
        stderr,
        temp_dirs,
    }
}

/// Deliver `fault` to `pid`; false when the process had already ended.
pub fn strike(pid: u32, fault: Fault) -> bool {
    let target = Pid::from_raw(pid as i32);
    match fault {
        Fault::Kill => {
            if kill(target, Signal::SIGSTOP).is_err() {
                return false;
            }
            let tree = freeze_descendants(pid as i32);
            let _ = kill(target, Signal::SIGKILL);
            for &child in &tree {
                let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(child), Signal::SIGCONT);
            }
            // They are reparented to init once zdd dies: wait until they are gone.
            let deadline = Instant::now() + Duration::from_secs(20);
            while tree.iter().any(|&p| alive(p)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            true
        }
        Fault::Term => kill(target, Signal::SIGTERM).is_ok(),
        Fault::Int => kill(target, Signal::SIGINT).is_ok(),
    }
}

/// SIGSTOP every descendant of `root` (repeated until no new one appears); returns them.
fn freeze_descendants(root: i32) -> Vec<i32> {
    let mut frozen: BTreeSet<i32> = BTreeSet::new();
    loop {
        let mut parents: BTreeSet<i32> = frozen.clone();
        parents.insert(root);
        let mut new = Vec::new();
        for (pid, ppid) in processes() {
            if parents.contains(&ppid) && !frozen.contains(&pid) {
                new.push(pid);
            }
        }
        if new.is_empty() {
            return frozen.into_iter().collect();
        }
        for pid in new {
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            frozen.insert(pid);
        }
    }
}

/// (pid, parent pid) of every process.
fn processes() -> Vec<(i32, i32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after = stat.rsplit_once(')')?.1;
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect()
}

/// Wait until `path` exists (a recipe hook writes it), or panic.
#[track_caller]
pub fn wait_for_file(path: &Path, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("zdd ended ({status}) before {} appeared", path.display());
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---------------------------------------------------------------------------------------------
// A seeded random source (reproducible kill points)
// ---------------------------------------------------------------------------------------------

/// xorshift64*: enough to spread kill points; the seed is printed so a failure reproduces
/// with `ZDD_FAULT_SEED=<seed>`.
pub struct Random(u64);

impl Random {
    pub fn from_env() -> (Random, u64) {
        let seed = std::env::var("ZDD_FAULT_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        (Random(seed.max(1)), seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n.max(1)
    }
}

// ---------------------------------------------------------------------------------------------
// Guards: every mount and immutable flag is undone, also when a test panics
// ---------------------------------------------------------------------------------------------

/// A mount at `path`, unmounted (lazily, so a busy one goes too) on drop.
pub struct MountGuard {
    pub path: PathBuf,
}

impl MountGuard {
    /// `mount -t tmpfs -o size=SIZE tmpfs PATH` (PATH created).
    pub fn tmpfs(path: &Path, size: &str) -> MountGuard {
        std::fs::create_dir_all(path).unwrap();
        sh(&format!(
            "mount -t tmpfs -o size={size} tmpfs {}",
            quote(path)
        ));
        MountGuard {
            path: path.to_path_buf(),
        }
    }

    /// A read-only bind mount of `path` on itself.
    pub fn read_only(path: &Path) -> MountGuard {
        let p = quote(path);
        sh(&format!("mount --bind {p} {p}"));
        let guard = MountGuard {
            path: path.to_path_buf(),
        };
        sh(&format!("mount -o remount,bind,ro {p}"));
        guard
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// `chattr +i` on `path`; on drop, `chattr -R -i` on all of `scope` (zdd may have moved the file
/// meanwhile, e.g. a release renamed aside for removal).
pub struct ImmutableGuard {
    pub path: PathBuf,
    pub scope: PathBuf,
}

impl ImmutableGuard {
    pub fn new(path: &Path, scope: &Path) -> ImmutableGuard {
        sh(&format!("chattr +i {}", quote(path)));
        ImmutableGuard {
            path: path.to_path_buf(),
            scope: scope.to_path_buf(),
        }
    }
}

impl Drop for ImmutableGuard {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.path).status();
        let _ = Command::new("chattr")
            .args(["-R", "-f", "-i"])
            .arg(&self.scope)
            .stderr(Stdio::null())
            .status();
    }
}

pub fn quote(path: &Path) -> String {
    shlex::try_quote(&path.display().to_string())
        .unwrap()
        .into_owned()
}

/// Run a shell command; panic with its output when it fails.
#[track_caller]
pub fn sh(command: &str) -> String {
    let output = Command::new("sh").arg("-c").arg(command).output().unwrap();
    assert!(
        output.status.success(),
        "`{command}` failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The commit `HEAD` of `repo`.
pub fn head(repo: &Path) -> String {
    git(repo, &["rev-parse", "HEAD"]).trim().to_string()
}

/// Shared collector of problems from worker threads.
pub type Problems = Arc<Mutex<Vec<String>>>;
