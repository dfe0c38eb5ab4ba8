//! Runs a plan: each selected host gets its context, the steps run in order, and a failure runs
//! the fail hooks and then makes sure the host is as it was (release removed, `current`
//! switched back, lock released).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use rhai::{Dynamic, EvalAltResult, Position};

use crate::config;
use crate::context::{Deployment, HostContext};
use crate::diagnostic;
use crate::failure::{Failure, FailureKind};
use crate::interrupt;
use crate::plan::{self, Step};
use crate::primitives::{lock, release};
use crate::registry::{Host, Origin};
use crate::reporter::{format_duration, Event, Reporter};
use crate::script::Recipe;
use crate::transport::{Local, Transport};

/// Why a step failed, as the user is told.
#[derive(Debug, Clone)]
pub enum Cause {
    Failure(Failure),
    /// A script error (or `throw`), with a hint when zdd knows one.
    Script(String, Option<String>),
}

impl Cause {
    pub fn is_locked(&self) -> bool {
        matches!(self, Cause::Failure(f) if f.is_locked())
    }
    pub fn hint(&self) -> Option<&str> {
        match self {
            Cause::Failure(f) => f.hint.as_deref(),
            Cause::Script(_, hint) => hint.as_deref(),
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Failure(failure) => failure.fmt(f),
            Cause::Script(text, _) => f.write_str(text),
        }
    }
}

/// A step that failed on a host, and what the host was left as.
#[derive(Debug, Clone)]
pub struct StepFailure {
    pub host: String,
    pub task: String,
    /// Where the failing call is in the recipe or module (falls back to the task's declaration).
    pub location: Origin,
    pub cause: Cause,
    /// Failures of fail hooks and of the clean-up, reported after the main one.
    pub aftermath: Vec<String>,
    /// What the host looks like now (`current` and the release).
    pub outcome: String,
}

/// What a finished run did on each host.
pub struct Summary {
    pub hosts: Vec<String>,
    pub release: Option<String>,
    pub commit: Option<String>,
    pub duration: std::time::Duration,
}

/// Build the context each host's steps run in.
pub fn host_context(
    recipe: &Recipe,
    host: &Host,
    reporter: Arc<Reporter>,
    deployment: Arc<Deployment>,
) -> Result<HostContext, String> {
    if !host.local {
        return Err(format!(
            "host `{}` is a remote host, and this version of zdd deploys only to `localhost()`",
            host.name
        ));
    }
    let transport: Arc<dyn Transport> = Arc::new(Local::new().map_err(|e| format!("{e:#}"))?);
    let mut merged: BTreeMap<String, Dynamic> = config::defaults();
    merged.extend(recipe.registry.config.clone());
    merged.extend(host.config.clone());
    merged.extend(recipe.runtime.overrides.clone());
    Ok(HostContext {
        host: host.name.clone(),
        transport,
        config: merged,
        runtime: BTreeMap::new(),
        cwd: None,
        release: None,
        holds_lock: false,
        switched_back: false,
        memo: BTreeMap::new(),
        deployment,
        reporter,
    })
}

/// Run `steps` on every host in turn; stop at the first host that fails.
pub fn run(
    recipe: &Recipe,
    task: &str,
    steps: &[Step],
    hosts: &[Host],
    reporter: Arc<Reporter>,
    deployment: Arc<Deployment>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let mut summary = Summary {
        hosts: Vec::new(),
        release: None,
        commit: None,
        duration: Default::default(),
    };
    for (index, host) in hosts.iter().enumerate() {
        let ctx = host_context(recipe, host, reporter.clone(), deployment.clone())
            .map_err(RunError::Setup)?;
        let ctx = Arc::new(Mutex::new(ctx));
        let result = run_host(recipe, steps, index, &ctx, &reporter);
        *recipe
            .runtime
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        let ctx = ctx.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                summary.hosts.push(host.name.clone());
                if let Some(release) = &ctx.release {
                    summary.release = Some(release.name.clone());
                    summary.commit = release.commit.clone();
                }
            }
            Err(failure) => {
                reporter.event(Event::Finished {
                    task,
                    status: "failed",
                    duration_ms: started.elapsed().as_millis(),
                });
                return Err(RunError::Step(failure));
            }
        }
    }
    summary.duration = started.elapsed();
    reporter.event(Event::Finished {
        task,
        status: "success",
        duration_ms: summary.duration.as_millis(),
    });
    Ok(summary)
}

#[derive(Debug)]
pub enum RunError {
    /// A host could not be set up (before anything ran on it).
    Setup(String),
    Step(Box<StepFailure>),
}

fn run_host(
    recipe: &Recipe,
    steps: &[Step],
    host_index: usize,
    ctx: &Arc<Mutex<HostContext>>,
    reporter: &Reporter,
) -> Result<(), Box<StepFailure>> {
    *recipe
        .runtime
        .current
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(ctx.clone());
    let host = ctx.lock().unwrap_or_else(|e| e.into_inner()).host.clone();
    for step in steps {
        if step.once && host_index > 0 {
            continue;
        }
        if let Err(mut failure) = run_step(recipe, step, ctx, &host, reporter) {
            if interrupt::interrupted() {
                interrupt::begin_cleanup();
                failure.cause = Cause::Failure(Failure {
                    kind: FailureKind::Interrupted,
                    hint: Some("the fail hooks ran and the lock was released".to_string()),
                });
            }
            recover(recipe, step, ctx, &host, reporter, &mut failure);
            return Err(failure);
        }
    }
    let mut ctx = ctx.lock().unwrap_or_else(|e| e.into_inner());
    release::finish(&mut ctx).map_err(|f| {
        Box::new(StepFailure {
            host: host.clone(),
            task: "finish".to_string(),
            location: Origin::default(),
            cause: Cause::Failure(f),
            aftermath: Vec::new(),
            outcome: String::new(),
        })
    })
}

fn run_step(
    recipe: &Recipe,
    step: &Step,
    ctx: &Arc<Mutex<HostContext>>,
    host: &str,
    reporter: &Reporter,
) -> Result<(), Box<StepFailure>> {
    ctx.lock().unwrap_or_else(|e| e.into_inner()).cwd = None;
    reporter.event(Event::TaskStarted {
        host,
        task: &step.task,
    });
    let started = Instant::now();
    let result: Result<Dynamic, Box<EvalAltResult>> =
        step.body.call(&recipe.engine, &recipe.functions, ());
    let elapsed = started.elapsed().as_millis();
    match result {
        Ok(_) => {
            reporter.event(Event::TaskFinished {
                host,
                task: &step.task,
                duration_ms: elapsed,
            });
            Ok(())
        }
        Err(error) => {
            let (location, cause) = classify(&error, &step.origin.source);
            let failure = StepFailure {
                host: host.to_string(),
                task: step.task.clone(),
                location: location.unwrap_or_else(|| step.origin.clone()),
                cause,
                aftermath: Vec::new(),
                outcome: String::new(),
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

/// Run the fail hooks, then put the host back as it was, whatever the hooks did.
fn recover(
    recipe: &Recipe,
    failed: &Step,
    ctx: &Arc<Mutex<HostContext>>,
    host: &str,
    reporter: &Reporter,
    failure: &mut Box<StepFailure>,
) {
    match plan::fail_steps(&recipe.registry, &failed.ancestry) {
        Ok(hooks) => {
            for hook in &hooks {
                if let Err(hook_failure) = run_step(recipe, hook, ctx, host, reporter) {
                    failure.aftermath.push(format!(
                        "fail hook `{}` also failed: {}",
                        hook_failure.task, hook_failure.cause
                    ));
                }
            }
        }
        Err(e) => failure.aftermath.push(format!("fail hooks not run: {e}")),
    }
    let mut ctx = ctx.lock().unwrap_or_else(|e| e.into_inner());
    let release = ctx.release.as_ref().map(|r| r.name.clone());
    if release.is_some() {
        if let Err(e) = release::discard(&mut ctx, &failure.cause.to_string()) {
            failure
                .aftermath
                .push(format!("could not remove the unfinished release: {e}"));
        }
    }
    if ctx.holds_lock {
        if let Err(e) = lock::unlock(&mut ctx) {
            failure
                .aftermath
                .push(format!("could not release the lock: {e}"));
        }
    }
    failure.outcome = describe(&ctx);
}

/// `current -> releases/X`, in words.
fn describe(ctx: &HostContext) -> String {
    match ctx.current_release() {
        Ok(Some(name)) => format!("`current` points at releases/{name}"),
        Ok(None) => "there is no `current` release".to_string(),
        Err(e) => format!("`current` could not be read: {e}"),
    }
}

/// Find the innermost error and where it happened.
pub fn classify(error: &EvalAltResult, source: &str) -> (Option<Origin>, Cause) {
    let at = |position: Position, source: &str| {
        position.line().map(|line| Origin {
            source: source.to_string(),
            line,
            column: position.position().unwrap_or(1),
        })
    };
    match error {
        EvalAltResult::ErrorInFunctionCall(_, fn_source, inner, position) => {
            let inner_source = if fn_source.is_empty() {
                source
            } else {
                fn_source.as_str()
            };
            let (location, cause) = classify(inner, inner_source);
            (location.or_else(|| at(*position, source)), cause)
        }
        EvalAltResult::ErrorInModule(module, inner, position) => {
            let (location, cause) = classify(inner, module);
            (location.or_else(|| at(*position, source)), cause)
        }
        EvalAltResult::ErrorRuntime(value, position) => {
            let cause = if let Some(failure) = value.clone().try_cast::<Failure>() {
                Cause::Failure(failure)
            } else if value.is_map() {
                let map = value.clone().cast::<rhai::Map>();
                let text = map
                    .get("message")
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| value.to_string());
                Cause::Script(text, None)
            } else {
                Cause::Script(value.to_string(), None)
            };
            (at(*position, source), cause)
        }
        EvalAltResult::ErrorTerminated(_, position) => (
            at(*position, source),
            Cause::Failure(Failure {
                kind: FailureKind::Interrupted,
                hint: None,
            }),
        ),
        other => {
            let (message, hint) = diagnostic::explain(other);
            (at(other.position(), source), Cause::Script(message, hint))
        }
    }
}

/// "deployed release X (commit abc1234) to localhost in 0.42 s".
pub fn describe_summary(task: &str, summary: &Summary) -> String {
    let hosts = summary.hosts.join(", ");
    let took = format_duration(summary.duration);
    match (&summary.release, &summary.commit) {
        (Some(release), Some(commit)) => format!(
            "{task}: release {release} (commit {}) on {hosts} in {took}",
            &commit[..commit.len().min(12)]
        ),
        (Some(release), None) => format!("{task}: release {release} on {hosts} in {took}"),
        _ => format!("{task}: done on {hosts} in {took}"),
    }
}
