//! The state of one host during a run: its transport, its configuration, the working directory
//! set by `cd`, and what this run did there (release created, swapped, lock held). Primitives
//! read and change it; the runner owns it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use rhai::Dynamic;

use crate::output::failure::{Failure, FailureKind};
use crate::output::fleet::LeftBehind;
use crate::output::report::TaskTiming;
use crate::output::reporter::{Event, Reporter};
use crate::output::suggest;
use crate::output::watch::{Swap, WatchSummary};
use crate::primitives::host_state::{Current, HostState};
use crate::primitives::release_log;
use crate::system::process::{LineSink, Output, Stream};
use crate::transport::{Kept, Op, Transport};
use crate::values::config;
use crate::values::template::{self, Mode, TemplateError};

/// Shared by every host of one run: the things that must be the same everywhere.
pub struct Deployment {
    /// One release name for the whole deploy.
    pub release_name: Mutex<Option<String>>,
    /// One commit for the whole deploy: the first host to resolve the ref pins it.
    pub commit: Mutex<Option<String>>,
    /// The run's hosts were named one by one (`--hosts`): only then may it bring hosts up to
    /// a deploy that left them behind.
    pub hosts_named: bool,
    /// Set by the runner when the run fails anywhere: every host stops before its next step,
    /// and a host waiting for its lock (`lock_wait`) stops waiting.
    pub stopping: std::sync::atomic::AtomicBool,
    /// Bringing hosts left behind by an earlier deploy up to it: that deploy's commit, checked
    /// out instead of resolving `branch` again (and `release_name` is that deploy's name).
    pub catch_up: Mutex<Option<String>>,
    /// The deploy was built once (`build_on` other than `hosts`): what `deploy:update_code`
    /// ships to each host instead of checking the repository out there.
    pub artifact: Mutex<Option<Arc<super::ship::Artifact>>>,
    /// Who deploys (for the lock and the log).
    pub user: String,
    /// This machine's name (for the lock).
    pub machine: String,
    /// The recipe path as the user gave it (for hints that name a command).
    pub recipe: String,
    /// The hosts of this run, set by the runner once every host is connected.
    pub hosts: Mutex<Vec<String>>,
    /// When the run started: the origin of every time in the report (task timings, the
    /// watcher's samples), and the same instant in RFC 3339 for the release log.
    pub started: std::time::Instant,
    pub started_at: String,
    /// For each point reached by [`Deployment::last_to_arrive`], the hosts that reached it.
    arrivals: Mutex<BTreeMap<String, BTreeSet<String>>>,
}

impl Deployment {
    pub fn new(recipe: &str) -> Deployment {
        let user = std::env::var("USER")
            .ok()
            .filter(|u| !u.is_empty())
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .unwrap_or_else(|| "unknown".to_string());
        let machine = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".to_string());
        Deployment {
            release_name: Mutex::new(None),
            commit: Mutex::new(None),
            catch_up: Mutex::new(None),
            artifact: Mutex::new(None),
            hosts_named: false,
            stopping: std::sync::atomic::AtomicBool::new(false),
            user,
            machine,
            recipe: recipe.to_string(),
            hosts: Mutex::new(Vec::new()),
            started: std::time::Instant::now(),
            started_at: super::release_log::now(),
            arrivals: Mutex::new(BTreeMap::new()),
        }
    }

    /// `host` reached `point`: true for exactly one host, the last of this run's hosts to reach
    /// it (true at once when the hosts are not known, i.e. outside a run).
    pub fn last_to_arrive(&self, point: &str, host: &str) -> bool {
        let hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut arrivals = self.arrivals.lock().unwrap_or_else(|e| e.into_inner());
        let arrived = arrivals.entry(point.to_string()).or_default();
        let new = arrived.insert(host.to_string());
        new && hosts.iter().all(|h| arrived.contains(h))
    }

    /// How many hosts this run has (1 outside a run).
    pub fn host_count(&self) -> usize {
        self.hosts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
            .max(1)
    }
}

/// The release this run is making on a host.
#[derive(Debug, Clone, Default)]
pub struct ReleaseState {
    pub name: String,
    /// The release `current` pointed at before this run (a name under `releases/`).
    pub previous: Option<String>,
    /// Exactly what `current` pointed at before this run (`None`: there was no `current`);
    /// a switch back restores this, even when it is not under `releases/`.
    pub previous_target: Option<String>,
    /// The commit checked out; `None` until the host said which (see `checkout`).
    pub commit: Option<String>,
    /// A checkout sent without waiting: its answer names the commit
    /// (`primitives::update_code::settle` reads it).
    pub checkout: Option<PendingCheckout>,
    pub swapped: bool,
    /// The artisan commands that signalled the workers at the swap (`swap_signalling`).
    pub signalled: Vec<String>,
    /// `current` was a directory, which this run moved to `.zdd/adopted/NAME` with a link to
    /// it in its place (`release::adopt`): NAME, so that a failed run puts it back.
    pub adopted_directory: Option<String>,
}

/// A change worth reporting (a progress line, a JSON event) that is only true once the host
/// has done it: reported when every request sent before it was answered, never when one of
/// them failed (then it did not happen).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    Swapped {
        release: String,
        previous: Option<String>,
    },
    RolledBack {
        from: Option<String>,
        to: String,
    },
}

/// A checkout sent without waiting, until its answer is read.
#[derive(Debug, Clone)]
pub struct PendingCheckout {
    pub kept: Kept,
    pub reference: String,
}

pub struct HostContext {
    pub host: String,
    pub transport: Arc<dyn Transport>,
    /// Defaults < recipe `set` < host `.set` < `-o`.
    pub config: BTreeMap<String, Dynamic>,
    /// `set()` called inside a task, for this host only.
    pub runtime: BTreeMap<String, Dynamic>,
    /// Set by `cd()`; reset at the start of each task.
    pub cwd: Option<String>,
    pub release: Option<ReleaseState>,
    pub holds_lock: bool,
    /// This run put `current` back on the release it had before (a failed deploy).
    pub switched_back: bool,
    /// Old releases `cleanup()` decided to remove, removed once the deploy has succeeded.
    pub pending_removals: Vec<String>,
    /// Why the run failed, once it has (for the release log).
    pub failure: Option<String>,
    /// Answers worth keeping for the rest of the run (e.g. the artisan commands an app has).
    pub memo: BTreeMap<String, String>,
    /// Where each program a primitive starts was found on the host (`primitives::programs`):
    /// looked up once per run.
    pub programs: std::sync::Mutex<BTreeMap<String, Option<String>>>,
    /// This run checks the repository out (its plan has `deploy:update_code`): the request
    /// that takes the lock also starts the fetch (`Op::Prefetch`).
    pub will_check_out: bool,
    /// This run's whole plan is the stdlib's `rollback` on one host: the request that takes
    /// the lock may roll back as the last run planned (`primitives::next_rollback`).
    pub may_roll_back_as_planned: bool,
    /// It did: the release gone back to, and the one left.
    pub rolled_back_as_planned: Option<(String, String)>,
    /// This run's whole plan is the stdlib's `deploy` on one host: each of its tasks, with
    /// its sender (`primitives::next_deploy`).
    pub planned_steps: Option<BTreeMap<String, Sender>>,
    /// The host is deploying as the last run planned: what it was sent. Until a failure is
    /// found, nothing more is sent: the steps only decide, and check.
    pub planned: Option<super::next_deploy::Planned>,
    /// What this run changed and has not been confirmed yet, with the number of requests sent
    /// before it (see [`HostContext::report_done`]).
    pub unconfirmed: Vec<(u64, Done)>,
    /// The host's deploy state, read when the lock was taken (`primitives::host_state`).
    pub state: Option<HostState>,
    /// The step running now, set by the runner: what a request sent without waiting is
    /// reported as when it fails.
    pub step: Option<Sender>,
    /// Who sent each request sent without waiting, by tag.
    pub senders: Vec<Sender>,
    /// What the run did here and when, for the release log and `zdd report`.
    pub timeline: Timeline,
    pub deployment: Arc<Deployment>,
    pub reporter: Arc<Reporter>,
}

/// A run on one host, on the run's time axis (ms from `Deployment::started`): its tasks, its
/// swap, and what the watcher saw (the same for every host of the run).
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub tasks: Vec<TaskTiming>,
    pub swap: Option<Swap>,
    pub watch: Option<WatchSummary>,
    /// The watcher's samples as `.zdd/watch/<release>.json` keeps them (JSON, secrets
    /// redacted): written once for the whole run, shared by every host.
    pub recording: Option<Arc<String>>,
    /// The hosts this run went on without (written with the `finished` line).
    pub left_behind: Vec<LeftBehind>,
}

/// The step that sent a request without waiting, and where it is declared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sender {
    pub task: String,
    pub source: String,
    pub line: usize,
    pub column: usize,
    /// The tasks the step runs inside (whose fail hooks fire), ending with `task`.
    pub ancestry: Vec<String>,
}

/// The release a `current` link target names: `releases/NAME` (relative, as zdd writes it) or
/// `DEPLOY_PATH/releases/NAME`; anything else (another directory) names no release.
pub fn release_of_target(target: &str, deploy_path: &str) -> Option<String> {
    crate::primitives::foreign_layout::release_named(target, deploy_path)
}

/// Keys zdd computes; they cannot be set.
pub const COMPUTED_KEYS: [&str; 4] = [
    "release_name",
    "release_path",
    "current_path",
    "previous_release",
];

impl HostContext {
    /// A host at the start of a run: its settings, nothing done yet.
    pub fn new(
        host: String,
        transport: Arc<dyn Transport>,
        config: BTreeMap<String, Dynamic>,
        deployment: Arc<Deployment>,
        reporter: Arc<Reporter>,
    ) -> HostContext {
        HostContext {
            host,
            transport,
            config,
            runtime: BTreeMap::new(),
            cwd: None,
            release: None,
            holds_lock: false,
            switched_back: false,
            pending_removals: Vec::new(),
            failure: None,
            memo: BTreeMap::new(),
            programs: Default::default(),
            will_check_out: false,
            may_roll_back_as_planned: false,
            rolled_back_as_planned: None,
            planned_steps: None,
            planned: None,
            unconfirmed: Vec::new(),
            state: None,
            step: None,
            senders: Vec::new(),
            timeline: Timeline::default(),
            deployment,
            reporter,
        }
    }

    /// A key's value: set inside a task, then configured, then computed.
    pub fn value(&self, key: &str) -> Result<Option<Dynamic>, Failure> {
        if let Some(value) = self.runtime.get(key).or_else(|| self.config.get(key)) {
            return Ok(Some(value.clone()));
        }
        self.computed(key)
    }

    /// A key's value as a recipe reads it inside a task (`get()`): [`value`](Self::value), with
    /// the `{{key}}`s of a text value expanded.
    pub fn expanded_value(&self, key: &str) -> Result<Option<Dynamic>, Failure> {
        match self.value(key)? {
            Some(value) if value.is_string() => {
                let expanded = self.expand(&value.to_string(), Mode::Plain)?;
                Ok(Some(Dynamic::from(expanded)))
            }
            other => Ok(other),
        }
    }

    /// `set()` inside a task: `key` is `value` on this host for the rest of the run.
    pub fn set_value(&mut self, key: &str, value: Dynamic) {
        self.runtime.insert(key.to_string(), value);
    }

    fn computed(&self, key: &str) -> Result<Option<Dynamic>, Failure> {
        let text = match key {
            "release_name" => self.release()?.name.clone(),
            "release_path" => self.release_path()?,
            "current_path" => self.path("current")?,
            "previous_release" => match self.previous_release()? {
                Some(name) => self.path(&format!("releases/{name}"))?,
                None => {
                    return Err(Failure::message(
                        "`previous_release` is not known: there is no release before this one",
                    ))
                }
            },
            "host" | "alias" => self.host.clone(),
            "user" => self.deployment.user.clone(),
            _ => return Ok(None),
        };
        Ok(Some(Dynamic::from(text)))
    }

    /// A required key, as text.
    pub fn text(&self, key: &str) -> Result<String, Failure> {
        match self.value(key)? {
            Some(value) => {
                config::text(&value).map_err(|e| Failure::message(format!("`{key}`: {e}")))
            }
            None => Err(self.missing(key)),
        }
    }

    /// An optional key, as text.
    pub fn text_or(&self, key: &str, default: &str) -> Result<String, Failure> {
        match self.value(key)? {
            Some(value) => {
                config::text(&value).map_err(|e| Failure::message(format!("`{key}`: {e}")))
            }
            None => Ok(default.to_string()),
        }
    }

    /// A key as a list of strings, each expanded.
    pub fn list(&self, key: &str) -> Result<Vec<String>, Failure> {
        let Some(value) = self.value(key)? else {
            return Ok(Vec::new());
        };
        let items = config::list(&value).map_err(|e| Failure::message(format!("`{key}`: {e}")))?;
        items
            .iter()
            .map(|item| self.expand(item, Mode::Plain))
            .collect()
    }

    pub fn boolean(&self, key: &str, default: bool) -> Result<bool, Failure> {
        match self.value(key)? {
            Some(value) => {
                config::boolean(&value).map_err(|e| Failure::message(format!("`{key}`: {e}")))
            }
            None => Ok(default),
        }
    }

    pub fn count(&self, key: &str, default: u64) -> Result<u64, Failure> {
        match self.value(key)? {
            Some(value) => {
                config::count(&value).map_err(|e| Failure::message(format!("`{key}`: {e}")))
            }
            None => Ok(default),
        }
    }

    fn missing(&self, key: &str) -> Failure {
        let known = self.known_keys();
        let mut failure = Failure::message(format!("`{key}` is not set"));
        failure.hint = Some(match suggest::closest(key, known.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`? Otherwise set it with `set(\"{key}\", ...)` or `-o {key}=...`"),
            None => format!("set it in the recipe with `set(\"{key}\", ...)` or on the command line with `-o {key}=...`"),
        });
        failure
    }

    fn known_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .config
            .keys()
            .chain(self.runtime.keys())
            .cloned()
            .collect();
        keys.extend(COMPUTED_KEYS.iter().map(|k| k.to_string()));
        keys
    }

    /// `deploy_path`, without a trailing slash.
    pub fn deploy_path(&self) -> Result<String, Failure> {
        let path = self.expand(&self.text("deploy_path")?, Mode::Plain)?;
        let trimmed = path.trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(Failure::message("`deploy_path` is empty or `/`"));
        }
        Ok(trimmed.to_string())
    }

    /// A path under `deploy_path`.
    pub fn path(&self, relative: &str) -> Result<String, Failure> {
        Ok(format!("{}/{relative}", self.deploy_path()?))
    }

    pub fn release(&self) -> Result<&ReleaseState, Failure> {
        self.release.as_ref().ok_or_else(|| {
            Failure::message("no release has been created in this run")
                .with_hint("run `deploy:release` (the `release()` primitive) before this step")
        })
    }

    pub fn release_path(&self) -> Result<String, Failure> {
        let name = self.release()?.name.clone();
        self.path(&format!("releases/{name}"))
    }

    /// The release `current` points at now (its name under `releases/`), if any.
    pub fn current_release(&self) -> Result<Option<String>, Failure> {
        let Some(target) = self.current_target()? else {
            return Ok(None);
        };
        if let Some(name) = release_of_target(&target, &self.deploy_path()?) {
            return Ok(Some(name));
        }
        // A link elsewhere: the release zdd adopted from it, if any (`release::adopt`).
        let entries = match &self.state {
            Some(state) => state.log.entries.clone(),
            None => match self.transport.read_file(&self.path(release_log::LOG)?)? {
                Some(text) => release_log::parse(&text).entries,
                None => Vec::new(),
            },
        };
        Ok(release_log::adopted_by_target(&entries, &target))
    }

    /// Exactly where the `current` link points, if it is a link.
    pub fn current_target(&self) -> Result<Option<String>, Failure> {
        match &self.state {
            Some(state) => Ok(state.current.target()),
            None => Ok(self.transport.read_link(&self.path("current")?)?),
        }
    }

    /// `current` was pointed at `target` (or removed): the state says so.
    pub fn current_moved(&mut self, target: Option<&str>) {
        if let Some(state) = self.state.as_mut() {
            state.current = match target {
                Some(target) => Current::Link(target.to_string()),
                None => Current::Missing,
            };
        }
    }

    /// Send `op` to the host without waiting for it; when it fails, the failure is reported
    /// as the step running now (see `Transport::send`).
    pub fn send(&mut self, op: Op) -> Result<(), Failure> {
        Ok(self.send_op(op)?)
    }

    /// [`HostContext::send`], with the transport's error as it is (for a caller that tells
    /// its cases apart).
    pub fn send_op(&mut self, op: Op) -> anyhow::Result<()> {
        let tag = self.senders.len() as u64;
        self.senders.push(self.step.clone().unwrap_or_default());
        if self.planned.is_some() {
            // Sent already, with the lock (`next_deploy`).
            return Ok(());
        }
        self.transport.send(op, tag)
    }

    /// Send `op` like [`HostContext::send`], keeping its answer (`Transport::collect`).
    /// The transport's error comes as it is (the caller tells its cases apart).
    pub fn send_kept(&mut self, op: Op) -> anyhow::Result<Kept> {
        let tag = self.senders.len() as u64;
        self.senders.push(self.step.clone().unwrap_or_default());
        if let Some(planned) = &self.planned {
            // Sent already, with the lock (`next_deploy`): the checkout's answer is there.
            return Ok(match op {
                Op::Checkout { .. } => planned.checkout.clone(),
                _ => Kept::Ready(crate::transport::Answer::Done),
            });
        }
        self.transport.send_kept(op, tag)
    }

    /// A request failed while the host deployed as planned: what the steps decided did not
    /// all happen, and what the host has is read again from now on; requests are sent again.
    pub fn abandon_plan(&mut self) {
        if self.planned.take().is_some() {
            self.state = None;
        }
    }

    /// Whether the request with `tag` was one of a planned deploy's run's end (its failure
    /// is a warning, as the end of any run).
    pub fn planned_end(&self, tag: u64) -> bool {
        self.planned.as_ref().is_some_and(|p| p.end.contains(&tag))
    }

    /// Report `done` once the host has done it: now when nothing sent is unanswered (the
    /// local transport), else at a wait that finds every request before it answered
    /// ([`HostContext::confirm`]).
    pub fn report_done(&mut self, done: Done) {
        if self.transport.unanswered() == 0 {
            self.emit(&done);
        } else {
            self.unconfirmed.push((self.senders.len() as u64, done));
        }
    }

    /// Report what the host has done: everything unconfirmed when `failed` is `None` and
    /// nothing sent is unanswered; with `failed` (the tag of a request that failed), what was
    /// sent before it, and the rest is dropped (it never happened).
    pub fn confirm(&mut self, failed: Option<u64>) {
        if failed.is_none() && self.transport.unanswered() > 0 {
            return;
        }
        for (sent, done) in std::mem::take(&mut self.unconfirmed) {
            if failed.is_none_or(|tag| sent <= tag) {
                self.emit(&done);
            }
        }
    }

    fn emit(&self, done: &Done) {
        match done {
            Done::Swapped { release, previous } => self.reporter.event(Event::Swapped {
                host: &self.host,
                release,
                previous: previous.as_deref(),
            }),
            Done::RolledBack { from, to } => self.reporter.event(Event::RolledBack {
                host: &self.host,
                from: from.as_deref(),
                to,
            }),
        }
    }

    /// Send an already-quoted command line without waiting (shown with `-v` as it is sent).
    pub fn send_command(&mut self, command: String) -> Result<(), Failure> {
        self.reporter.event(Event::Command {
            host: &self.host,
            command: &command,
        });
        self.send(Op::Exec {
            display: command.clone(),
            script: command,
            cwd: None,
        })
    }

    /// Who sent the request with `tag`.
    pub fn sender(&self, tag: u64) -> Option<&Sender> {
        self.senders.get(tag as usize)
    }

    fn previous_release(&self) -> Result<Option<String>, Failure> {
        match &self.release {
            Some(release) => Ok(release.previous.clone()),
            None => self.current_release(),
        }
    }

    /// Expand `{{key}}` in `template`.
    pub fn expand(&self, template: &str, mode: Mode) -> Result<String, Failure> {
        let lookup = |key: &str| -> Result<Option<Vec<String>>, TemplateError> {
            match self.value(key) {
                Ok(Some(value)) => {
                    config::words(&value)
                        .map(Some)
                        .map_err(|reason| TemplateError::Value {
                            key: key.to_string(),
                            reason,
                        })
                }
                Ok(None) => Err(TemplateError::UnknownKey {
                    key: key.to_string(),
                    suggestion: suggest::closest(key, self.known_keys().iter().map(String::as_str)),
                }),
                Err(Failure {
                    kind: FailureKind::SelfReference(inner),
                    ..
                }) => Err(TemplateError::TooDeep { key: inner }),
                Err(failure) => Err(TemplateError::Value {
                    key: key.to_string(),
                    reason: failure.to_string(),
                }),
            }
        };
        Ok(template::expand(template, mode, &lookup)?)
    }

    /// Run a shell command on the host: `{{key}}` values quoted, in the `cd` directory.
    pub fn shell(&self, template: &str) -> Result<Output, Failure> {
        let command = self.expand(template, Mode::Shell)?;
        self.shell_raw(&command)
    }

    /// Run an already-quoted command line in the `cd` directory.
    pub fn shell_raw(&self, command: &str) -> Result<Output, Failure> {
        self.exec_in(command, self.cwd.as_deref())
    }

    /// Run an already-quoted command line in `cwd`.
    pub fn exec_in(&self, command: &str, cwd: Option<&str>) -> Result<Output, Failure> {
        self.exec_shown(command, command, cwd)
    }

    /// Run `script`, shown (with `-v`, and in errors) as `shown`: for a script that carries
    /// a file's contents nobody needs to read.
    pub fn exec_shown(
        &self,
        script: &str,
        shown: &str,
        cwd: Option<&str>,
    ) -> Result<Output, Failure> {
        self.reporter.event(Event::Command {
            host: &self.host,
            command: shown,
        });
        let sink = self.output_sink();
        Ok(self.transport.exec(script, cwd, shown, sink)?)
    }

    fn output_sink(&self) -> Option<LineSink> {
        if self.reporter.verbosity < crate::output::reporter::Verbosity::Output {
            return None;
        }
        let reporter = self.reporter.clone();
        let host = self.host.clone();
        Some(Arc::new(move |stream: Stream, line: &str| {
            reporter.event(Event::Output {
                host: &host,
                stream: match stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                },
                line,
            })
        }))
    }

    pub fn info(&self, text: &str) {
        self.reporter.event(Event::Message {
            host: &self.host,
            level: "info",
            text,
        });
    }

    pub fn warn(&self, text: &str) {
        self.reporter.event(Event::Message {
            host: &self.host,
            level: "warning",
            text,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::release_of_target;

    #[test]
    fn only_targets_under_releases_name_a_release() {
        let base = "/srv/app";
        assert_eq!(release_of_target("releases/A", base).as_deref(), Some("A"));
        assert_eq!(release_of_target("releases/A/", base).as_deref(), Some("A"));
        assert_eq!(
            release_of_target("/srv/app/releases/A", base).as_deref(),
            Some("A")
        );
        assert_eq!(
            release_of_target("./releases/A", base).as_deref(),
            Some("A")
        );
        assert_eq!(release_of_target("/var/www/html", base), None);
        assert_eq!(release_of_target("/other/releases/A", base), None);
        assert_eq!(release_of_target("releases/A/public", base), None);
        assert_eq!(release_of_target("releases/..", base), None);
    }
}
