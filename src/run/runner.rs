//! Runs a plan on the selected hosts.
//!
//! Every host is connected first (an unreachable host stops the run before anything changes).
//! When the plan contains the cutover step (`cutover_task`, default `deploy:symlink`), the steps
//! before it (the preparation) run on all hosts in parallel, at most `parallel` at a time; the
//! cutover (the swap and everything after it) then walks the hosts `rollout_batch` at a time,
//! `rollout_stagger` seconds apart. Without a cutover step all steps run on all hosts in parallel.
//!
//! A failure anywhere stops new steps everywhere; then every host is put back as it was
//! (`current` switched back, release removed), runs its fail hooks on the restored host, and
//! releases its lock. The runner alone undoes a failed run: no fail hook has to.
//!
//! When every host is connected, each host's secret values (its `.env` included) are learned
//! (`host_secrets`); at the end the run's notification (`crate::run::notify`) is read from the first
//! host and sent, and a successful run is summed up (`describe_summary`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::output::failure::{Failure, FailureKind};
use crate::output::fleet::{self, HostOutcome, LeftBehind, Outcome};
use crate::output::report::TaskTiming;
use crate::output::reporter::{format_duration, Event, Reporter};
use crate::output::watch::WatchSummary;
use crate::plan::{self, Step};
use crate::primitives::host_context::{Deployment, HostContext, Sender};
use crate::primitives::{cleanup, lock, next_deploy, next_run, paths, release, update_code};
use crate::registry::{Host, Origin};
use crate::run::build::{self, BuildOn};
use crate::run::host_secrets;
use crate::run::host_setup;
use crate::run::left_behind;
use crate::run::notification;
use crate::run::notify;
use crate::run::step_caller::{StepCaller, StepError};
use crate::run::step_failure::{Cause, StepFailure};
use crate::run::watcher::{self, Watcher};
use crate::system::{interrupt, process};
use crate::transport::{Deferred, DeferredError, Ssh};
use crate::values::config;
use crate::values::rollout::{self, Waves};

/// What a finished run did.
pub struct Summary {
    pub hosts: Vec<String>,
    pub release: Option<String>,
    pub commit: Option<String>,
    pub duration: Duration,
    /// How long the preparation and the cutover took, when the run had a cutover.
    pub phases: Option<(Duration, Duration)>,
    /// What the watcher saw, when the run was watched.
    pub watch: Option<WatchSummary>,
    /// The hosts the run went on without (within `max_fail`): exit 4.
    pub left_behind: Vec<LeftBehind>,
    /// How the run ended on each host, when it had several.
    pub outcomes: Vec<HostOutcome>,
    /// The hosts left behind are remembered (for `--hosts` later).
    pub remembered: bool,
}

#[derive(Debug)]
pub enum RunError {
    /// A host could not be reached or set up; nothing ran anywhere.
    Setup(Vec<String>),
    Step(Box<StepFailure>),
}

/// A host while the run goes on.
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) context: Arc<Mutex<HostContext>>,
    ssh: Option<Arc<Ssh>>,
    /// The failure of this host, if it failed.
    failure: Mutex<Option<Box<StepFailure>>>,
    /// Left behind within `max_fail`: put back as it was, and out of the run.
    left: AtomicBool,
}

impl Slot {
    /// A host that is not an SSH host (the build's).
    pub(super) fn new(name: &str, context: HostContext) -> Slot {
        Slot {
            name: name.to_string(),
            context: Arc::new(Mutex::new(context)),
            ssh: None,
            failure: Mutex::new(None),
            left: AtomicBool::new(false),
        }
    }

    /// A failure of work zdd does itself, outside the recipe's steps (the build's checkout,
    /// its packing): placed at the recipe.
    pub(super) fn failure_outside_steps(
        host: &str,
        task: &str,
        recipe: &dyn StepCaller,
        failure: Failure,
    ) -> StepFailure {
        StepFailure {
            host: host.to_string(),
            task: task.to_string(),
            location: crate::registry::Origin {
                source: recipe.path().to_string(),
                line: 0,
                column: 0,
            },
            cause: Cause::Failure(failure),
            ancestry: vec![task.to_string()],
            aftermath: Vec::new(),
            outcomes: Vec::new(),
        }
    }
}

/// Settings of the run as a whole (not per host).
struct Rollout {
    parallel: usize,
    /// `rollout_batch`: hosts at a time, or waves.
    waves: Waves,
    /// `max_fail`, read against the number of hosts.
    max_fail: Option<rhai::Dynamic>,
    /// `max_concurrent_starts`: connections opened at the same time.
    starts: usize,
    stagger: Duration,
    cutover_task: String,
}

impl Rollout {
    fn read(recipe: &dyn StepCaller) -> Result<Rollout, String> {
        let global = host_setup::merged_config(recipe, None);
        let count = |key: &str, default: u64| -> Result<u64, String> {
            global
                .get(key)
                .map(|v| config::count(v).map_err(|e| format!("`{key}`: {e}")))
                .unwrap_or(Ok(default))
        };
        let stagger = match global.get("rollout_stagger") {
            None => Duration::from_secs(10),
            Some(v) => config::seconds(v).map_err(|e| format!("`rollout_stagger`: {e}"))?,
        };
        Ok(Rollout {
            parallel: count("parallel", 50)?.max(1) as usize,
            waves: match global.get("rollout_batch") {
                None => Waves::Batches(rollout::Size::Hosts(1)),
                Some(v) => Waves::read(v).map_err(|e| format!("`rollout_batch`: {e}"))?,
            },
            max_fail: global.get("max_fail").cloned(),
            starts: count("max_concurrent_starts", 50)?.max(1) as usize,
            stagger,
            cutover_task: global
                .get("cutover_task")
                .map(|v| v.to_string())
                .unwrap_or_else(|| "deploy:symlink".to_string()),
        })
    }
}

/// The stdlib's task that checks the repository out (Deployer's name).
const CHECKOUT_TASK: &str = "deploy:update_code";
const ROLLBACK_TASK: &str = "rollback";

pub fn run(
    recipe: &dyn StepCaller,
    task: &str,
    steps: &[Step],
    hosts: &[Host],
    reporter: Arc<Reporter>,
    deployment: Arc<Deployment>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let rollout = Rollout::read(recipe).map_err(|e| RunError::Setup(vec![e]))?;
    let global = host_setup::merged_config(recipe, None);
    let notifier = notify::Settings::read(&global)
        .map_err(|e| RunError::Setup(vec![e]))?
        .filter(|settings| settings.wants(task));
    let cutover = steps.iter().position(|s| s.task == rollout.cutover_task);
    let allowed = rollout::budget(rollout.max_fail.as_ref(), hosts.len())
        .map_err(|e| RunError::Setup(vec![format!("`max_fail`: {e}")]))?;
    // A run of many hosts says one line per host per phase (`-v`: per task).
    reporter.set_per_phase(hosts.len() >= PER_PHASE_FROM);
    let watch_plan =
        read_watch_plan(recipe, hosts, &global).map_err(|e| RunError::Setup(vec![e]))?;
    let watch_plan = match (watch_plan, cutover) {
        (Some(_), None) => {
            reporter.say(&format!(
                "watch: nothing watched: task `{task}` has no cutover (`{}`)",
                rollout.cutover_task
            ));
            None
        }
        (plan, _) => plan,
    };
    // Hosts an earlier deploy left behind, brought up to that deploy's release and commit.
    let catch_up = catch_up(recipe, task, hosts, &deployment, &reporter);
    // Built once (`build_on`), before any host is reached: the hosts skip the build's steps
    // and ship its archive instead of checking the repository out.
    let build_on =
        BuildOn::read(&global, recipe.registry()).map_err(|e| RunError::Setup(vec![e]))?;
    let (build_steps, host_steps) = build::split(steps);
    let built = build_on != BuildOn::Hosts && steps.iter().any(|s| s.task == CHECKOUT_TASK);
    let steps: &[Step] = if built { &host_steps } else { steps };
    let cutover = steps.iter().position(|s| s.task == rollout.cutover_task);
    let control = crate::transport::ssh::control_directory()
        .map_err(|e| RunError::Setup(vec![format!("{e:#}")]))?;
    // Nothing ran anywhere: the webhook hears of it too.
    let setup_failed = |messages: Vec<String>| -> RunError {
        if let Some(settings) = &notifier {
            let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
            let notification = notification::setup_failure(
                recipe,
                task,
                settings,
                &names,
                &deployment,
                &messages,
                started,
            );
            notify::send(settings, &notification, &reporter);
        }
        RunError::Setup(messages)
    };
    // The build runs while the hosts are connected (a connection changes nothing there): a
    // build that fails closes them before anything was sent.
    let (connected, artifact) = std::thread::scope(|scope| {
        let building = built.then(|| {
            scope.spawn(|| build::build(recipe, &build_on, &build_steps, &deployment, &reporter))
        });
        let connected = connect_all(
            recipe,
            hosts,
            control.path(),
            &reporter,
            &deployment,
            Connecting {
                starts: rollout.starts,
                allowed,
                wait: built,
            },
        );
        let artifact = building.map(|building| {
            building.join().unwrap_or_else(|_| {
                Err(RunError::Setup(vec![
                    "the build stopped unexpectedly".to_string()
                ]))
            })
        });
        (connected, artifact)
    });
    match artifact {
        Some(Err(error)) => {
            if let Ok((slots, _)) = &connected {
                close_all(slots);
            }
            return Err(match error {
                RunError::Setup(messages) => setup_failed(messages),
                error => error,
            });
        }
        Some(Ok(artifact)) => {
            *deployment
                .artifact
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(artifact);
        }
        None => {}
    }
    let (slots, unreachable) = match connected {
        Ok(connected) => connected,
        Err(RunError::Setup(messages)) => return Err(setup_failed(messages)),
        Err(error) => return Err(error),
    };
    let mut left_behind: Vec<LeftBehind> = unreachable;
    for left in &left_behind {
        reporter.event(Event::HostPhase {
            host: &left.host,
            phase: "left_behind",
            duration_ms: 0,
            reason: Some(&left.reason),
        });
    }
    let budget = Budget {
        allowed,
        used: AtomicUsize::new(left_behind.len()),
        protected: slots.first().map(|s| s.name.clone()).unwrap_or_default(),
    };
    *deployment.hosts.lock().unwrap_or_else(|e| e.into_inner()) =
        slots.iter().map(|s| s.name.clone()).collect();
    // A run that checks the repository out starts the fetch with the lock (the fetch is the
    // slowest part before anything can be decided).
    let checks_out = !built && steps.iter().any(|step| step.task == CHECKOUT_TASK);
    // A run that is the stdlib's rollback alone, on one host, may roll back as the last run
    // planned, in the request that takes the lock (`next_rollback`): nothing follows the swap.
    let planned_rollback = slots.len() == 1
        && matches!(steps, [step] if step.task == ROLLBACK_TASK && recipe.is_stdlib(&step.origin));
    // A run that is the stdlib's deploy alone, on one host, may deploy as the last run
    // planned, behind the request that takes the lock (`next_deploy`).
    // A watched deploy confirms each swap as it happens (the watcher's time axis needs it):
    // it is not sent ahead as planned; nor is a catch-up (its release name is an earlier one).
    let planned_steps = if slots.len() == 1
        && !built
        && watch_plan.is_none()
        && catch_up.is_none()
        && steps.iter().all(|s| recipe.is_stdlib(&s.origin))
    {
        next_deploy::steps_of(
            steps
                .iter()
                .map(|step| (step.task.clone(), sender_of(step)))
                .collect(),
        )
    } else {
        None
    };
    for slot in &slots {
        let mut ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        ctx.will_check_out = checks_out;
        ctx.may_roll_back_as_planned = planned_rollback;
        ctx.planned_steps = planned_steps.clone();
    }
    let before = start_all(&slots, notifier.is_some(), rollout.parallel);
    // From before the first change: the watcher's first requests are the baseline.
    let watching = match &watch_plan {
        Some(plan) => {
            let old = slots
                .iter()
                .filter_map(|slot| {
                    let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
                    ctx.current_release().ok().flatten()
                })
                .collect();
            match Watcher::start(
                plan.watched.clone(),
                plan.pace,
                deployment.started,
                deployment.clone(),
                old,
            ) {
                Ok(watching) => Some(watching),
                Err(message) => {
                    close_all(&slots);
                    return Err(setup_failed(vec![message]));
                }
            }
        }
        None => None,
    };
    let (preparation, cutover_steps) = match cutover {
        Some(index) => steps.split_at(index),
        None => (steps, &steps[..0]),
    };
    // Set by a failure anywhere; the hosts see it too (a host waiting for its lock stops).
    let abort: &AtomicBool = &deployment.stopping;
    let all: Vec<&Slot> = slots.iter().collect();
    let first = budget.protected.clone();
    let phase = Phase {
        recipe,
        parallel: rollout.parallel,
        first_host: &first,
        abort,
        reporter: &reporter,
        watcher: watching.as_ref(),
        cutover_task: &rollout.cutover_task,
        budget: None,
    };
    // With several hosts, what each host was sent is answered before the next phase: no host
    // switches while another's preparation may still fail, and no wave before the last is
    // finished. With one, nothing waits: the last round trip answers everything.
    let barrier = slots.len() > 1;
    let preparation_started = Instant::now();
    // Within `max_fail`, a host that fails its preparation is left behind and the others go
    // on (never the host that runs the `once` tasks).
    let preparing = Phase {
        budget: Some(&budget),
        ..phase
    };
    preparing.run(&all, preparation);
    if barrier {
        // Each host says when it is prepared (answered everything) and switched.
        let done = (!cutover_steps.is_empty()).then_some(("prepared", preparation_started));
        preparing.sync(&all, done);
    }
    let preparation_took = preparation_started.elapsed();
    if !abort.load(Ordering::SeqCst) {
        left_behind.extend(leave_behind(recipe, task, &slots, &reporter, &deployment));
    }
    let active: Vec<&Slot> = slots
        .iter()
        .filter(|slot| !slot.left.load(Ordering::SeqCst))
        .collect();
    let cutover_started = Instant::now();
    if !abort.load(Ordering::SeqCst) && !cutover_steps.is_empty() {
        let sizes = rollout.waves.split(active.len());
        let mut rest = active.as_slice();
        for (number, size) in sizes.iter().enumerate() {
            let (wave, after) = rest.split_at(*size);
            rest = after;
            if number > 0 && !rollout.stagger.is_zero() {
                reporter.say(&format!(
                    "waiting {} before the next batch",
                    format_duration(rollout.stagger)
                ));
                sleep_unless_interrupted(rollout.stagger);
                if interrupt::should_stop() {
                    abort.store(true, Ordering::SeqCst);
                    break;
                }
            }
            if sizes.len() > 1 {
                let names: Vec<String> = wave.iter().map(|s| s.name.clone()).collect();
                reporter.event(Event::Wave {
                    number: number + 1,
                    of: sizes.len(),
                    hosts: &names,
                });
            }
            let wave_started = Instant::now();
            phase.run(wave, cutover_steps);
            if barrier {
                phase.sync(wave, Some(("switched", wave_started)));
            }
            // What users got so far decides whether the next wave switches.
            if let (Some(watcher), Some(plan)) = (&watching, &watch_plan) {
                if !abort.load(Ordering::SeqCst) {
                    watch_failure(&watcher.summary(), plan, &slots, task, abort);
                }
            }
            if abort.load(Ordering::SeqCst) {
                break;
            }
        }
    }

    let phases = (!cutover_steps.is_empty()).then(|| (preparation_took, cutover_started.elapsed()));
    let watch = watching.map(|watcher| {
        let plan = watch_plan.as_ref().expect("a watcher has its plan");
        if !abort.load(Ordering::SeqCst) {
            sleep_unless_interrupted(plan.tail);
            // Stopped while watching: the run is not done, as anywhere else.
            if interrupt::should_stop() {
                abort.store(true, Ordering::SeqCst);
            }
        }
        let (summary, recording) = watcher.finish();
        if !abort.load(Ordering::SeqCst) {
            watch_failure(&summary, plan, &slots, task, abort);
        }
        // Kept on every host: written once, with no secret in it (a URL's password).
        let recording = serde_json::to_string(&recording)
            .ok()
            .map(|text| Arc::new(reporter.secrets().redact(&text).into_owned()));
        for slot in &slots {
            let mut ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
            ctx.timeline.watch = Some(summary.clone());
            ctx.timeline.recording = recording.clone();
        }
        summary
    });

    if let Some(messages) = never_connected(&slots) {
        close_all(&slots);
        return Err(setup_failed(messages));
    }
    // The hosts that switched say, in their release log, which hosts were left behind.
    let left_behind: Vec<LeftBehind> = left_behind
        .into_iter()
        .map(|left| LeftBehind {
            reason: reporter.secrets().redact(&left.reason).into_owned(),
            ..left
        })
        .collect();
    for slot in &active {
        let mut ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        ctx.timeline.left_behind = left_behind.clone();
    }
    if !abort.load(Ordering::SeqCst) && !finish_all(&active, &reporter, notifier.is_none()) {
        abort.store(true, Ordering::SeqCst);
    }
    let failed = abort.load(Ordering::SeqCst);
    let mut result = if failed {
        Err(fail_all(recipe, task, &slots, &reporter))
    } else {
        Ok(summarize(&active, started))
    };
    let outcomes = outcomes(&slots, &left_behind, failed, !cutover_steps.is_empty());
    if let Ok(summary) = &mut result {
        summary.phases = phases;
        summary.watch = watch.clone();
        summary.left_behind = left_behind.clone();
        if hosts.len() > 1 {
            summary.outcomes = outcomes.clone();
        }
    } else {
        if let Some(watch) = &watch {
            for url in &watch.urls {
                reporter.say(&url.line());
            }
        }
        if hosts.len() > 1 {
            reporter.say(&fleet::table(&outcomes));
        }
    }
    // Read what the notification says while the hosts are still connected; send it after.
    let notification = notifier.as_ref().map(|settings| {
        let names: Vec<String> = active.iter().map(|s| s.name.clone()).collect();
        let error = result.as_ref().err().map(|failure| {
            format!(
                "task `{}` failed on host `{}`: {}",
                failure.task, failure.host, failure.cause
            )
        });
        notification::describe(
            recipe,
            task,
            settings,
            &names,
            active.first().map(|s| s.context.as_ref()),
            &deployment,
            before,
            error,
            started,
        )
    });
    let notification = notification.map(|mut notification| {
        notification.watch = watch.clone();
        notification.left_behind = left_behind.clone();
        notification
    });
    close_all(&slots);
    if let (Some(settings), Some(notification)) = (&notifier, &notification) {
        notify::send(settings, notification, &reporter);
    }
    let (release, commit) = match &result {
        Ok(summary) => (summary.release.as_deref(), summary.commit.as_deref()),
        Err(_) => (None, None),
    };
    let remembered = match (&result, release, commit) {
        (Ok(summary), Some(release), Some(commit)) => remember_left_behind(
            recipe,
            task,
            summary,
            release,
            commit,
            &deployment,
            &reporter,
        ),
        _ => false,
    };
    let (round_trips, requests, bytes_sent) = slots
        .iter()
        .map(|slot| {
            let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
            (
                ctx.transport.round_trips(),
                ctx.transport.requests(),
                ctx.transport.bytes_sent(),
            )
        })
        .fold((0, 0, 0), |(a, b, c), (d, e, f)| (a + d, b + e, c + f));
    let (cpu_ms, peak_rss_kb) = process::own_usage();
    reporter.event(Event::Finished {
        task,
        status: match (&result, left_behind.is_empty()) {
            (Err(_), _) => "failed",
            (Ok(_), true) => "success",
            (Ok(_), false) => "exceptions",
        },
        duration_ms: started.elapsed().as_millis(),
        release,
        commit,
        round_trips,
        requests,
        bytes_sent,
        preparation_ms: phases.map(|(p, _)| p.as_millis()),
        cutover_ms: phases.map(|(_, c)| c.as_millis()),
        watch: watch.as_ref(),
        left_behind: &left_behind,
        hosts: if hosts.len() > 1 { &outcomes } else { &[] },
        cpu_ms,
        peak_rss_kb,
    });
    result
        .map(|summary| Summary {
            remembered,
            ..summary
        })
        .map_err(RunError::Step)
}

/// From this many hosts on, progress is one line per host per phase (`-v`: per task).
const PER_PHASE_FROM: usize = 10;

/// How many hosts may still be left behind (`max_fail`).
struct Budget {
    allowed: usize,
    /// Hosts left behind so far (the unreachable ones first).
    used: AtomicUsize,
    /// The host that runs the `once` tasks (the first connected): never left behind.
    protected: String,
}

impl Budget {
    /// `host` failed: true when it may be left behind (the budget allows one more), false
    /// when the whole run must fail.
    fn spend(&self, host: &str) -> bool {
        if self.allowed == 0 || host == self.protected {
            return false;
        }
        self.used.fetch_add(1, Ordering::SeqCst) < self.allowed
    }
}

/// When every host of this run was left behind by the recipe's last deploy (and the run does
/// not set `branch` or `release_name` itself): bring them to that deploy's release name and
/// commit. Returns the record it follows.
fn catch_up(
    recipe: &dyn StepCaller,
    task: &str,
    hosts: &[Host],
    deployment: &Deployment,
    reporter: &Reporter,
) -> Option<left_behind::Record> {
    if !deployment.hosts_named || recipe.overrides().contains_key("branch") {
        return None;
    }
    let names: Vec<String> = hosts.iter().map(|h| h.name.clone()).collect();
    let record = left_behind::read(recipe.path(), task).filter(|r| r.covers(&names))?;
    reporter.say(&format!(
        "bringing {} up to release {} (commit {}) of the deploy started {}, which left {} behind",
        names.join(", "),
        record.release,
        &record.commit[..record.commit.len().min(12)],
        record.started,
        if names.len() == 1 { "it" } else { "them" },
    ));
    *deployment
        .release_name
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(record.release.clone());
    *deployment
        .catch_up
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(record.commit.clone());
    Some(record)
}

/// After a deploy that made `release`: remember the hosts it left behind (for `--hosts`
/// later), or forget the ones it brought up to date. True when hosts left behind are
/// remembered.
fn remember_left_behind(
    recipe: &dyn StepCaller,
    task: &str,
    summary: &Summary,
    release: &str,
    commit: &str,
    deployment: &Deployment,
    reporter: &Reporter,
) -> bool {
    let result = if summary.left_behind.is_empty() {
        left_behind::forget(recipe.path(), task, &summary.hosts)
    } else {
        // A catch-up that leaves some behind again keeps the earlier deploy's start.
        let started = left_behind::read(recipe.path(), task)
            .filter(|r| r.release == release)
            .map(|r| r.started)
            .unwrap_or_else(|| deployment.started_at.clone());
        left_behind::write(
            recipe.path(),
            left_behind::Record {
                recipe: String::new(),
                task: task.to_string(),
                release: release.to_string(),
                commit: commit.to_string(),
                started,
                hosts: summary.left_behind.clone(),
            },
        )
    };
    match result {
        Ok(()) => !summary.left_behind.is_empty(),
        Err(e) => {
            reporter.say(&format!(
                "warning: could not remember the hosts left behind: {e}"
            ));
            false
        }
    }
}

/// The hosts that failed their preparation within the budget: each is put back as it was
/// (its release removed, its fail hooks run, its lock released), in parallel, and the run
/// goes on without it. Returns them, with why.
fn leave_behind(
    recipe: &dyn StepCaller,
    task: &str,
    slots: &[Slot],
    reporter: &Reporter,
    deployment: &Deployment,
) -> Vec<LeftBehind> {
    let failed: Vec<&Slot> = slots
        .iter()
        .filter(|slot| {
            slot.failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
        })
        .collect();
    if failed.is_empty() {
        return Vec::new();
    }
    let left: Mutex<Vec<LeftBehind>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for slot in &failed {
            let left = &left;
            scope.spawn(move || {
                let failure = slot
                    .failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                let reason = failure
                    .as_ref()
                    .map(|f| format!("task `{}` failed: {}", f.task, f.cause))
                    .unwrap_or_else(|| "it failed".to_string());
                let ancestry = failure
                    .map(|f| f.ancestry)
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| vec![task.to_string()]);
                slot.left.store(true, Ordering::SeqCst);
                for note in undo(recipe, &ancestry, slot, &reason, reporter) {
                    let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
                    ctx.warn(&note);
                }
                reporter.event(Event::HostPhase {
                    host: &slot.name,
                    phase: "left_behind",
                    duration_ms: 0,
                    reason: Some(&reason),
                });
                left.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(LeftBehind {
                        host: slot.name.clone(),
                        reason,
                    });
            });
        }
    });
    *deployment.hosts.lock().unwrap_or_else(|e| e.into_inner()) = slots
        .iter()
        .filter(|slot| !slot.left.load(Ordering::SeqCst))
        .map(|slot| slot.name.clone())
        .collect();
    let mut left = left.into_inner().unwrap_or_else(|e| e.into_inner());
    left.sort_by(|a, b| a.host.cmp(&b.host));
    left
}

/// How the run ended on each host, in the order the hosts were declared.
fn outcomes(
    slots: &[Slot],
    left_behind: &[LeftBehind],
    failed: bool,
    cutover: bool,
) -> Vec<HostOutcome> {
    let mut rows: Vec<HostOutcome> = Vec::new();
    for slot in slots {
        if slot.left.load(Ordering::SeqCst) {
            continue;
        }
        let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        let outcome = match (failed, cutover) {
            (false, true) => Outcome::Switched,
            (false, false) => Outcome::Done,
            (true, _) if ctx.switched_back => Outcome::SwitchedBack,
            (true, _) => Outcome::Unchanged,
        };
        rows.push(HostOutcome {
            host: slot.name.clone(),
            outcome,
            reason: ctx.failure.clone().filter(|_| failed),
        });
    }
    for left in left_behind {
        rows.push(HostOutcome {
            host: left.host.clone(),
            outcome: if failed {
                Outcome::Unchanged
            } else {
                Outcome::LeftBehind
            },
            reason: Some(left.reason.clone()),
        });
    }
    rows.sort_by(|a, b| a.host.cmp(&b.host));
    rows
}

/// Connect every host, at most `starts` at a time (`max_concurrent_starts`: sshd refuses
/// connections beyond its `MaxStartups`). A host that cannot be reached is left behind when
/// the budget (`allowed` hosts) allows; otherwise every failure is reported, for all hosts,
/// before anything runs.
fn connect_all(
    recipe: &dyn StepCaller,
    hosts: &[Host],
    control: &std::path::Path,
    reporter: &Arc<Reporter>,
    deployment: &Arc<Deployment>,
    how: Connecting,
) -> Result<(Vec<Slot>, Vec<LeftBehind>), RunError> {
    let Connecting {
        starts,
        allowed,
        wait,
    } = how;
    let results: Vec<Mutex<Option<Result<host_setup::Connected, String>>>> =
        hosts.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let gate = Endpoints::default();
    std::thread::scope(|scope| {
        for _ in 0..starts.min(hosts.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(host) = hosts.get(index) else { break };
                let endpoint = endpoint(recipe, host);
                let _entered = endpoint.as_deref().map(|key| gate.enter(key));
                // With one host, its first answer waits for the connection: nothing can change
                // anywhere before it. With several, all are waited for before anything runs;
                // and with a build going on (`wait`), which the connection overlaps.
                let connected = host_setup::connect(
                    recipe,
                    host,
                    index,
                    control,
                    reporter.clone(),
                    deployment.clone(),
                    wait || hosts.len() > 1,
                );
                *results[index].lock().unwrap_or_else(|e| e.into_inner()) = Some(connected);
            });
        }
    });
    let mut slots = Vec::new();
    let mut errors = Vec::new();
    for (host, result) in hosts.iter().zip(results) {
        match result.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(connected)) => slots.push(Slot {
                name: host.name.clone(),
                context: Arc::new(Mutex::new(connected.context)),
                ssh: connected.ssh,
                failure: Mutex::new(None),
                left: AtomicBool::new(false),
            }),
            Some(Err(message)) => errors.push((host.name.clone(), message)),
            None => errors.push((host.name.clone(), "it was not connected".to_string())),
        }
    }
    // Unreachable within the budget (and some host left to deploy to): left behind.
    if !errors.is_empty() && errors.len() <= allowed && !slots.is_empty() {
        return Ok((
            slots,
            errors
                .into_iter()
                .map(|(host, reason)| LeftBehind {
                    host,
                    reason: format!("unreachable: {reason}"),
                })
                .collect(),
        ));
    }
    if errors.is_empty() {
        return Ok((slots, Vec::new()));
    }
    for slot in &slots {
        if let Some(ssh) = &slot.ssh {
            ssh.close();
        }
    }
    let mut messages: Vec<String> = errors.into_iter().map(|(_, message)| message).collect();
    if slots.is_empty() && allowed > 0 {
        messages.push("every host is unreachable: nothing to deploy to".to_string());
    } else if allowed > 0 {
        messages.push(format!(
            "{} hosts unreachable, more than `max_fail` allows ({allowed})",
            messages.len()
        ));
    }
    Err(RunError::Setup(messages))
}

/// How [`connect_all`] connects: how many connections start at once (`max_concurrent_starts`),
/// how many hosts may be unreachable (`max_fail`), and whether even one host's connection is
/// waited for (a build runs meanwhile).
struct Connecting {
    starts: usize,
    allowed: usize,
    wait: bool,
}

/// sshd's `MaxStartups` (10 by default) drops connections beyond 10 that are not logged in
/// yet: at most this many connect to one endpoint at once, however many host entries lead
/// there (several sites behind one bastion, test hosts behind one sshd).
const STARTS_PER_ENDPOINT: usize = 10;

/// Where a host's SSH connection goes (its ssh_config, hostname and port); none for a local
/// host.
fn endpoint(recipe: &dyn StepCaller, host: &Host) -> Option<String> {
    if host.local {
        return None;
    }
    let config = host_setup::merged_config(recipe, Some(host));
    let target = host_setup::ssh_target(host, &config).ok()?;
    Some(format!(
        "{}|{}|{}",
        target.config_file.unwrap_or_default(),
        target.hostname,
        target.port.unwrap_or(22)
    ))
}

/// How many connections are being opened to each endpoint.
#[derive(Default)]
struct Endpoints {
    busy: Mutex<std::collections::HashMap<String, usize>>,
    freed: std::sync::Condvar,
}

/// One connection being opened to `key`; the next may start when it is dropped.
struct Entered<'a> {
    gate: &'a Endpoints,
    key: String,
}

impl Endpoints {
    fn enter(&self, key: &str) -> Entered<'_> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        while busy.get(key).copied().unwrap_or(0) >= STARTS_PER_ENDPOINT {
            busy = self.freed.wait(busy).unwrap_or_else(|e| e.into_inner());
        }
        *busy.entry(key.to_string()).or_default() += 1;
        Entered {
            gate: self,
            key: key.to_string(),
        }
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        let mut busy = self.gate.busy.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = busy.get_mut(&self.key) {
            *count = count.saturating_sub(1);
        }
        self.gate.freed.notify_all();
    }
}

fn sleep_unless_interrupted(duration: Duration) {
    let until = Instant::now() + duration;
    while Instant::now() < until && !interrupt::should_stop() {
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
}

/// How a set of steps runs on a set of hosts.
struct Phase<'a> {
    recipe: &'a dyn StepCaller,
    parallel: usize,
    /// Where `once` tasks run.
    first_host: &'a str,
    /// Set by a failure; every host stops before its next step.
    abort: &'a AtomicBool,
    reporter: &'a Reporter,
    /// When the run is watched, each host's cutover step is confirmed as soon as it ran, and
    /// the watcher told when the swap was sent and done.
    watcher: Option<&'a Watcher>,
    cutover_task: &'a str,
    /// In the preparation, `max_fail`: a host that fails within it is left behind instead of
    /// failing the run.
    budget: Option<&'a Budget>,
}

impl Phase<'_> {
    /// Run `steps` on each of `slots`, at most `parallel` hosts at once.
    fn run(&self, slots: &[&Slot], steps: &[Step]) {
        if steps.is_empty() || slots.is_empty() {
            return;
        }
        let next = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..self.parallel.min(slots.len()) {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(slot) = slots.get(index) else { break };
                    for step in steps {
                        if self.abort.load(Ordering::SeqCst) || interrupt::should_stop() {
                            self.abort.store(true, Ordering::SeqCst);
                            break;
                        }
                        if step.once && slot.name != self.first_host {
                            continue;
                        }
                        let watcher = self.watcher.filter(|_| step.task == self.cutover_task);
                        let swap_sent = watcher.map(Watcher::now_ms);
                        let mut result = run_step(self.recipe, step, slot, self.reporter);
                        if let (Ok(()), Some(watcher), Some(sent)) = (&result, watcher, swap_sent) {
                            result = confirm_swap(slot, watcher, sent, self.reporter);
                        }
                        if let Err(failure) = result {
                            *slot.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure);
                            self.failed(slot);
                            break;
                        }
                    }
                });
            }
        });
    }
}

impl Phase<'_> {
    /// Wait until every request `slots` were sent is answered; a host whose request failed
    /// fails as the step that sent it. With `done`, each host that ran every step and answered
    /// says so (`prepared`, `switched`: its phase line), with the time since the phase began.
    fn sync(&self, slots: &[&Slot], done: Option<(&str, Instant)>) {
        std::thread::scope(|scope| {
            for slot in slots {
                scope.spawn(move || {
                    let mut ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
                    let synced = ctx.transport.sync();
                    if synced.is_ok() {
                        ctx.confirm(None);
                    }
                    drop(ctx);
                    let ran_all = !self.abort.load(Ordering::SeqCst)
                        && slot
                            .failure
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .is_none();
                    if let (Ok(()), Some((phase, began)), true) = (&synced, done, ran_all) {
                        self.reporter.event(Event::HostPhase {
                            host: &slot.name,
                            phase,
                            duration_ms: began.elapsed().as_millis(),
                            reason: None,
                        });
                    }
                    if let Err(error) = synced {
                        let failure = deferred_failure(slot, self.reporter)
                            .unwrap_or_else(|| lost_host(slot, &error));
                        let mut own = slot.failure.lock().unwrap_or_else(|e| e.into_inner());
                        if own.is_none() {
                            *own = Some(failure);
                            drop(own);
                            self.failed(slot);
                        }
                    }
                });
            }
        });
    }

    /// `slot` failed: the run fails, unless the budget lets it be left behind.
    fn failed(&self, slot: &Slot) {
        let spared = !interrupt::should_stop() && self.budget.is_some_and(|b| b.spend(&slot.name));
        if !spared {
            self.abort.store(true, Ordering::SeqCst);
        }
    }
}

/// The failure a wait found in a request sent earlier without waiting, as the step that sent
/// it (with its task's declaration as the location), reported as that step's failure.
fn deferred_failure(slot: &Slot, reporter: &Reporter) -> Option<Box<StepFailure>> {
    let deferred = {
        let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        ctx.transport.take_failure()?
    };
    Some(failure_of(slot, deferred, reporter))
}

/// A request sent without waiting failed: the step that sent it failed.
fn failure_of(slot: &Slot, deferred: Deferred, reporter: &Reporter) -> Box<StepFailure> {
    // What was done before the failed request is reported; what was sent after it never
    // happened.
    slot.context
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .confirm(Some(deferred.tag));
    step_failure_of(slot, deferred, reporter)
}

/// The step that sent the failed request, as a failure.
fn step_failure_of(slot: &Slot, deferred: Deferred, reporter: &Reporter) -> Box<StepFailure> {
    let sender = {
        let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        ctx.sender(deferred.tag).cloned().unwrap_or_default()
    };
    let cause = Cause::Failure(match deferred.error {
        DeferredError::Command(error) => Failure::from(error),
        DeferredError::Message(text) => Failure::message(text),
        DeferredError::Ref { error, repository } => {
            update_code::ref_failure(error.into(), &repository)
        }
        DeferredError::Refused(refusal) => paths::refused(&refusal, &slot.name),
    });
    reporter.event(Event::TaskFailed {
        host: &slot.name,
        task: &sender.task,
        duration_ms: 0,
        error: &cause.to_string(),
    });
    let ancestry = if sender.ancestry.is_empty() {
        vec![sender.task.clone()]
    } else {
        sender.ancestry.clone()
    };
    Box::new(StepFailure {
        host: slot.name.clone(),
        task: sender.task,
        location: Origin {
            source: sender.source,
            line: sender.line,
            column: sender.column,
        },
        cause,
        ancestry,
        aftermath: Vec::new(),
        outcomes: Vec::new(),
    })
}

/// Wait until `slot`'s host has answered everything sent: a request sent without waiting that
/// failed is the failure of the step that sent it.
pub(super) fn settle(slot: &Slot, reporter: &Reporter) -> Result<(), Box<StepFailure>> {
    let synced = {
        let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        ctx.transport.sync()
    };
    if let Some(failure) = deferred_failure(slot, reporter) {
        return Err(failure);
    }
    synced.map_err(|e| lost_host(slot, &e))
}

/// A wait failed without a request to blame: the connection went.
fn lost_host(slot: &Slot, error: &anyhow::Error) -> Box<StepFailure> {
    Box::new(StepFailure {
        host: slot.name.clone(),
        task: "(waiting for the host)".to_string(),
        location: Origin::default(),
        cause: Cause::Failure(Failure::message(format!("{error:#}"))),
        ancestry: Vec::new(),
        aftermath: Vec::new(),
        outcomes: Vec::new(),
    })
}

/// A run with one host connects without waiting (`connect_all`); if that host was never
/// reached, the run is a setup failure, as when a host is waited for: nothing ran there.
fn never_connected(slots: &[Slot]) -> Option<Vec<String>> {
    let mut messages = Vec::new();
    for slot in slots {
        let Some(ssh) = &slot.ssh else { continue };
        if ssh.is_ready() {
            continue;
        }
        let failure = slot.failure.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(failure) = failure.as_ref() {
            messages.push(format!("{}", failure.cause));
        }
    }
    (!messages.is_empty()).then_some(messages)
}

/// The watcher's plan for this run: the run's URLs, and each host's own (`host(..).set("watch",
/// ..)`) unless `-o watch=` / `--watch` replaced them.
fn read_watch_plan(
    recipe: &dyn StepCaller,
    hosts: &[Host],
    global: &std::collections::BTreeMap<String, rhai::Dynamic>,
) -> Result<Option<watcher::Plan>, String> {
    let overridden = recipe.overrides().contains_key("watch");
    let own: Vec<(String, Option<rhai::Dynamic>)> = hosts
        .iter()
        .map(|host| {
            let own = host.config.get("watch").filter(|_| !overridden).cloned();
            (host.name.clone(), own)
        })
        .collect();
    watcher::Plan::read(global, &own)
}

/// The cutover step ran on `slot` (its swap sent at `sent` ms): wait for the host to have done
/// it, and tell the watcher. A request that failed fails the step that sent it.
fn confirm_swap(
    slot: &Slot,
    watcher: &Watcher,
    sent: u64,
    reporter: &Reporter,
) -> Result<(), Box<StepFailure>> {
    let synced = {
        let mut ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        let synced = ctx.transport.sync();
        if synced.is_ok() {
            ctx.confirm(None);
            ctx.timeline.swap = Some(watcher.swapped(&slot.name, sent));
        }
        synced
    };
    synced.map_err(|error| {
        deferred_failure(slot, reporter).unwrap_or_else(|| lost_host(slot, &error))
    })
}

/// When what the watcher saw goes over the limits (`watch_max_failures`, `watch_max_stale`,
/// `watch_max_p99`), the run fails as a failed health gate does: on the host whose swap came
/// last before the first failure (else the first host), in the step `watch`.
fn watch_failure(
    summary: &WatchSummary,
    plan: &watcher::Plan,
    slots: &[Slot],
    task: &str,
    abort: &AtomicBool,
) {
    let problems: Vec<String> = summary
        .urls
        .iter()
        .filter_map(|url| url.over(&plan.limits))
        .collect();
    if problems.is_empty() {
        return;
    }
    let blamed = summary
        .urls
        .iter()
        .flat_map(|url| url.first_failures.first())
        .filter_map(|failure| failure.after_swap_of.clone())
        .next();
    let slot = blamed
        .and_then(|host| slots.iter().find(|slot| slot.name == host))
        .or(slots.first());
    let Some(slot) = slot else { return };
    let failure = StepFailure {
        host: slot.name.clone(),
        task: "watch".to_string(),
        location: Origin::default(),
        cause: Cause::Failure(Failure::message(problems.join("; ")).with_hint(
            "`zdd report` draws the deploy and the watcher's requests on one time axis",
        )),
        ancestry: vec![task.to_string()],
        aftermath: Vec::new(),
        outcomes: Vec::new(),
    };
    let mut own = slot.failure.lock().unwrap_or_else(|e| e.into_inner());
    if own.is_none() {
        *own = Some(Box::new(failure));
    }
    abort.store(true, Ordering::SeqCst);
}

/// A step as the sender of the requests it sends without waiting.
fn sender_of(step: &Step) -> Sender {
    Sender {
        task: step.task.clone(),
        source: step.origin.source.clone(),
        line: step.origin.line,
        column: step.origin.column,
        ancestry: step.ancestry.clone(),
    }
}

pub(super) fn run_step(
    recipe: &dyn StepCaller,
    step: &Step,
    slot: &Slot,
    reporter: &Reporter,
) -> Result<(), Box<StepFailure>> {
    {
        let mut ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        ctx.cwd = None;
        ctx.step = Some(sender_of(step));
    }
    let host = slot.name.as_str();
    reporter.event(Event::TaskStarted {
        host,
        task: &step.task,
    });
    let waits = || {
        let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        ctx.transport.round_trips()
    };
    let waited_before = waits();
    let started = Instant::now();
    let result = recipe.call(step, &slot.context);
    let elapsed = started.elapsed().as_millis();
    {
        let mut ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        let origin = ctx.deployment.started;
        ctx.timeline.tasks.push(TaskTiming {
            task: step.task.clone(),
            start_ms: started.saturating_duration_since(origin).as_millis() as u64,
            duration_ms: elapsed as u64,
            outcome: if result.is_ok() { "ok" } else { "failed" }.to_string(),
        });
    }
    match result {
        Ok(_) => {
            // What the host has done already is reported now; the rest at a later wait.
            slot.context
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .confirm(None);
            reporter.event(Event::TaskFinished {
                host,
                task: &step.task,
                duration_ms: elapsed,
                round_trips: waits() - waited_before,
            });
            Ok(())
        }
        Err(StepError {
            location,
            mut cause,
        }) => {
            // A request an earlier step sent without waiting failed (and this step's wait
            // found it): that step failed.
            if let Some(failure) = deferred_failure(slot, reporter) {
                if failure.task != step.task {
                    reporter.event(Event::TaskFailed {
                        host,
                        task: &step.task,
                        duration_ms: elapsed,
                        error: "not run: a request sent before it failed",
                    });
                }
                return Err(failure);
            }
            if interrupt::interrupted() {
                cause = Cause::Failure(Failure {
                    kind: FailureKind::Interrupted,
                    hint: Some("the fail hooks ran and the lock was released".to_string()),
                });
            }
            let failure = StepFailure {
                host: host.to_string(),
                task: step.task.clone(),
                location: location.unwrap_or_else(|| step.origin.clone()),
                cause,
                ancestry: step.ancestry.clone(),
                aftermath: Vec::new(),
                outcomes: Vec::new(),
            };
            reporter.event(Event::TaskFailed {
                host,
                task: &step.task,
                duration_ms: elapsed,
                error: &failure.cause.to_string(),
            });
            Err(Box::new(failure))
        }
    }
}

/// The run failed: every host is put back as it was, then runs its fail hooks (the failing ones
/// for the task that failed, the others for the whole task), then its lock is released.
fn fail_all(
    recipe: &dyn StepCaller,
    task: &str,
    slots: &[Slot],
    reporter: &Reporter,
) -> Box<StepFailure> {
    if interrupt::interrupted() {
        interrupt::begin_cleanup();
    }
    let aftermath: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        // A host left behind was put back as it was already.
        for slot in slots.iter().filter(|s| !s.left.load(Ordering::SeqCst)) {
            let aftermath = &aftermath;
            scope.spawn(move || {
                let reason = slot
                    .failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|f| format!("task `{}` failed: {}", f.task, f.cause))
                    .unwrap_or_else(|| "the deploy failed on another host".to_string());
                let ancestry = slot
                    .failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .map(|f| f.ancestry.clone())
                    .unwrap_or_else(|| vec![task.to_string()]);
                let notes = undo(recipe, &ancestry, slot, &reason, reporter);
                aftermath
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(notes);
            });
        }
    });
    let mut failures: Vec<Box<StepFailure>> = slots
        .iter()
        .filter_map(|s| s.failure.lock().unwrap_or_else(|e| e.into_inner()).take())
        .collect();
    let mut primary = if failures.is_empty() {
        // Stopped without a failing step: interrupted between steps.
        Box::new(StepFailure {
            host: slots.first().map(|s| s.name.clone()).unwrap_or_default(),
            task: task.to_string(),
            location: Origin::default(),
            cause: Cause::Failure(Failure {
                kind: FailureKind::Interrupted,
                hint: Some("the fail hooks ran and the lock was released".to_string()),
            }),
            ancestry: vec![task.to_string()],
            aftermath: Vec::new(),
            outcomes: Vec::new(),
        })
    } else {
        failures.remove(0)
    };
    for other in failures {
        primary.aftermath.push(format!(
            "task `{}` also failed on host `{}`: {}",
            other.task, other.host, other.cause
        ));
    }
    primary
        .aftermath
        .extend(aftermath.into_inner().unwrap_or_else(|e| e.into_inner()));
    let failing_host = primary.host.clone();
    let mut outcomes: Vec<(String, String)> = slots
        .iter()
        .filter_map(|slot| {
            let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
            describe(&ctx).map(|text| (slot.name.clone(), text))
        })
        .collect();
    outcomes.sort_by_key(|(host, _)| *host != failing_host);
    primary.outcomes = outcomes;
    primary
}

/// Put one host back as it was because of `reason` (recorded in its release log, secrets
/// taken out), its fail hooks run and its lock released ([`recover`]). Returns notes on what
/// went wrong on the way.
fn undo(
    recipe: &dyn StepCaller,
    ancestry: &[String],
    slot: &Slot,
    reason: &str,
    reporter: &Reporter,
) -> Vec<String> {
    let reason = reporter.secrets().redact(reason).into_owned();
    slot.context
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .failure = Some(reason);
    recover(recipe, ancestry, slot, reporter)
}

/// Undo the run on one host, then run the fail hooks for `ancestry` on it, then release its
/// lock. The undo comes first and does not depend on any hook: `current` is switched back and
/// this run's release is discarded (`release::discard`), so every hook, whatever the order it
/// was registered in, sees the host restored (`switched_back()` is true when `current` was
/// switched back). The lock is released last: the hooks may still change the deploy path.
/// Returns notes on what went wrong on the way.
fn recover(
    recipe: &dyn StepCaller,
    ancestry: &[String],
    slot: &Slot,
    reporter: &Reporter,
) -> Vec<String> {
    let mut notes = Vec::new();
    // What a planned deploy's steps assumed no longer holds: the undo reads the host, and
    // sends what it changes.
    slot.context
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .abandon_plan();
    // A discard that fails half-way keeps the release in the context: it is tried again once
    // the hooks ran (one of them may have made it possible), and only that failure is noted.
    let _ = restore(slot);
    match plan::fail_steps(recipe.registry(), ancestry) {
        Ok(hooks) => {
            for hook in &hooks {
                if let Err(failure) = run_step(recipe, hook, slot, reporter) {
                    notes.push(format!(
                        "fail hook `{}` also failed on host `{}`: {}",
                        failure.task, slot.name, failure.cause
                    ));
                }
            }
        }
        Err(e) => notes.push(format!("fail hooks not run on host `{}`: {e}", slot.name)),
    }
    if let Err(e) = restore(slot) {
        notes.push(format!(
            "could not remove the unfinished release on host `{}`: {e}",
            slot.name
        ));
    }
    let mut ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
    if ctx.holds_lock {
        if let Err(e) = lock::release(&mut ctx) {
            notes.push(format!(
                "could not release the lock on host `{}`: {e}",
                slot.name
            ));
        }
    }
    notes
}

/// Put one host back as it was before the run: `current` switched back, this run's release
/// removed (or marked failed when it was swapped in). Nothing to do when the run made no
/// release, or when it was already discarded.
fn restore(slot: &Slot) -> Result<(), Failure> {
    let mut ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
    if ctx.release.is_none() {
        return Ok(());
    }
    let reason = ctx
        .failure
        .clone()
        .unwrap_or_else(|| "the deploy failed".to_string());
    release::discard(&mut ctx, &reason)
}

/// Close every SSH connection, all at once.
fn close_all(slots: &[Slot]) {
    std::thread::scope(|scope| {
        for ssh in slots.iter().filter_map(|s| s.ssh.as_ref()) {
            scope.spawn(move || ssh.close());
        }
    });
}

/// Every host succeeded: their releases become good releases, old releases are removed, and
/// the lock is released, in that order (the lock covers the last change), all sent without
/// waiting and answered in the run's last round trip (`let_go`: the connection is let go in
/// it too). With one host, that round trip also answers what the steps sent: a failure there
/// is the failure of the step that sent it (returns false; the host keeps its lock for the
/// undo). Otherwise the release is live and good by then: a problem is a warning.
fn finish_all(slots: &[&Slot], reporter: &Reporter, let_go: bool) -> bool {
    let succeeded = AtomicBool::new(true);
    // Every host at the same time: one at a time this grew with the number of hosts
    // (measured: ~0.5 s for 16 hosts over SSH).
    std::thread::scope(|scope| {
        for slot in slots {
            let succeeded = &succeeded;
            scope.spawn(move || {
                let mut ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
                let steps_sent = ctx.senders.len() as u64;
                let held = ctx.holds_lock;
                let mut warnings = Vec::new();
                if let Err(failure) = release::finish(&mut ctx) {
                    warnings.push(format!("the release log was not updated: {failure}"));
                }
                warnings.extend(cleanup::remove_pending(&mut ctx));
                if ctx.holds_lock {
                    // After the last record: what the next rollback will do.
                    if let Err(failure) = next_run::write(&mut ctx) {
                        tracing::debug!("no rollback plan: {failure}");
                    }
                }
                if let Err(failure) = lock::release(&mut ctx) {
                    warnings.push(format!("the lock was not released: {failure}"));
                }
                let answered = if let_go {
                    ctx.transport.finish()
                } else {
                    ctx.transport.sync()
                };
                if answered.is_err() {
                    let step_failed = ctx.transport.take_failure().map(|deferred| {
                        if deferred.tag < steps_sent && !ctx.planned_end(deferred.tag) {
                            Err(deferred)
                        } else {
                            Ok(deferred)
                        }
                    });
                    match step_failed {
                        Some(Err(deferred)) => {
                            // Nothing after the failed request ran: the lock is still held.
                            ctx.holds_lock = held;
                            ctx.abandon_plan();
                            drop(ctx);
                            let failure = failure_of(slot, deferred, reporter);
                            *slot.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(failure);
                            succeeded.store(false, Ordering::SeqCst);
                            return;
                        }
                        Some(Ok(deferred)) => {
                            // Every step's requests were done; only the run's own end failed.
                            ctx.confirm(Some(deferred.tag));
                            warnings.push(format!("{}", deferred.error));
                        }
                        None => {
                            if let Err(e) = answered {
                                warnings.push(format!("{e:#}"));
                            }
                        }
                    }
                } else {
                    ctx.confirm(None);
                    if let Err(failure) = update_code::settle(&mut ctx) {
                        // Read by the wait above: the commit of a checkout sent without
                        // waiting.
                        warnings.push(format!("{failure}"));
                    }
                }
                for warning in warnings {
                    ctx.warn(&warning);
                }
            });
        }
    });
    succeeded.into_inner()
}

/// What a successful run did.
fn summarize(slots: &[&Slot], started: Instant) -> Summary {
    let mut summary = Summary {
        hosts: Vec::new(),
        release: None,
        commit: None,
        duration: Duration::default(),
        phases: None,
        watch: None,
        left_behind: Vec::new(),
        outcomes: Vec::new(),
        remembered: false,
    };
    for slot in slots {
        let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(release) = &ctx.release {
            summary.release = Some(release.name.clone());
            summary.commit = release.commit.clone();
        }
        summary.hosts.push(slot.name.clone());
    }
    summary.duration = started.elapsed();
    summary
}

/// `current -> releases/X`, in words; nothing when it cannot be known (no `deploy_path`).
fn describe(ctx: &HostContext) -> Option<String> {
    match ctx.current_release() {
        Ok(Some(name)) => Some(format!("`current` points at releases/{name}")),
        Ok(None) => Some("there is no `current` release".to_string()),
        Err(_) => None,
    }
}

/// What a successful run did, for stderr:
///
/// ```text
/// deploy: release 20261126T130003Z (commit 1a2b3c4d5e6f) on web1, web2 in 12.40 s
///   preparation 2.31 s, cutover 10.09 s
/// ```
///
/// The second line only when the run had a cutover (the steps from `cutover_task` on).
pub fn describe_summary(task: &str, summary: &Summary) -> String {
    let hosts = summary.hosts.join(", ");
    let took = format_duration(summary.duration);
    let mut text = match (&summary.release, &summary.commit) {
        (Some(release), Some(commit)) => format!(
            "{task}: release {release} (commit {}) on {hosts} in {took}",
            &commit[..commit.len().min(12)]
        ),
        (Some(release), None) => format!("{task}: release {release} on {hosts} in {took}"),
        _ => format!("{task}: done on {hosts} in {took}"),
    };
    if let Some((preparation, cutover)) = summary.phases {
        text.push_str(&format!(
            "\n  preparation {}, cutover {}",
            format_duration(preparation),
            format_duration(cutover)
        ));
    }
    for url in summary.watch.iter().flat_map(|watch| &watch.urls) {
        text.push_str(&format!("\n  {}", url.line()));
    }
    if !summary.outcomes.is_empty() {
        text.push_str(&format!(
            "\n  hosts: {}\n",
            fleet::counts(&summary.outcomes)
        ));
        text.push_str(&fleet::table(&summary.outcomes));
    }
    text
}

/// Once every host is connected: learn each host's secret values (expanded) and the values of
/// its shared `.env`; return the release `current` points at on the first host when a
/// notification will need it.
fn start_all(slots: &[Slot], notify: bool, parallel: usize) -> Option<String> {
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..parallel.min(slots.len()) {
            scope.spawn(|| loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                let Some(slot) = slots.get(index) else { break };
                let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
                host_secrets::learn(&ctx);
            });
        }
    });
    let first = slots.first()?;
    if !notify {
        return None;
    }
    let ctx = first.context.lock().unwrap_or_else(|e| e.into_inner());
    ctx.current_release().ok().flatten()
}
