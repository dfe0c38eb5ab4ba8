//! What a run's notification says: the app, hosts, ref, commit range with its `git log`,
//! duration and who deployed, read from the first host (its release log, `REVISION` files and
//! repository cache) while it is still connected. Sending is `notify`'s job.

use std::sync::Mutex;
use std::time::Instant;

use crate::primitives::host_context::{Deployment, HostContext};
use crate::primitives::release_log;
use crate::run::host_setup;
use crate::run::notify::{self, Notification};
use crate::run::step_caller::StepCaller;
use crate::values::template::Mode;

/// The recipe's file name without `.rhai`: the application's name when nothing better is known.
fn recipe_name(recipe: &dyn StepCaller) -> String {
    let path = std::path::Path::new(recipe.path());
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| recipe.path().to_string())
}

/// The notification of a run that never started: a host could not be reached or set up.
pub fn setup_failure(
    recipe: &dyn StepCaller,
    task: &str,
    settings: &notify::Settings,
    hosts: &[String],
    deployment: &Deployment,
    messages: &[String],
    started: Instant,
) -> Notification {
    let global = host_setup::merged_config(recipe, None);
    Notification {
        event: notify::event_name(task, false),
        app: settings.application(
            global.get("repository").map(|r| r.to_string()).as_deref(),
            &recipe_name(recipe),
        ),
        task: task.to_string(),
        hosts: hosts.to_vec(),
        reference: global
            .get("branch")
            .filter(|_| task != "rollback")
            .map(|b| b.to_string()),
        commit: None,
        previous_commit: None,
        commits: Vec::new(),
        commits_truncated: false,
        duration_ms: started.elapsed().as_millis(),
        user: deployment.user.clone(),
        release: None,
        previous_release: None,
        error: Some(format!("nothing was changed: {}", messages.join("; "))),
        watch: None,
        left_behind: Vec::new(),
    }
}

/// What the notification of this run says, read from the first host (its release log, its
/// `REVISION` files, its repository cache) while it is still connected.
#[allow(clippy::too_many_arguments)]
pub fn describe(
    recipe: &dyn StepCaller,
    task: &str,
    settings: &notify::Settings,
    hosts: &[String],
    first: Option<&Mutex<HostContext>>,
    deployment: &Deployment,
    before: Option<String>,
    error: Option<String>,
    started: Instant,
) -> Notification {
    let succeeded = error.is_none();
    let rollback = task == "rollback";
    let made = deployment
        .release_name
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let pinned = deployment
        .commit
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let global = host_setup::merged_config(recipe, None);
    let mut notification = Notification {
        event: notify::event_name(task, succeeded),
        app: String::new(),
        task: task.to_string(),
        hosts: hosts.to_vec(),
        reference: None,
        commit: None,
        previous_commit: None,
        commits: Vec::new(),
        commits_truncated: false,
        duration_ms: started.elapsed().as_millis(),
        user: deployment.user.clone(),
        release: None,
        previous_release: before.clone(),
        error,
        watch: None,
        left_behind: Vec::new(),
    };
    let mut repository = global.get("repository").map(|r| r.to_string());
    if let Some(first) = first {
        let mut ctx = first.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(text) = ctx.text("repository") {
            repository = ctx.expand(&text, Mode::Plain).ok().or(Some(text));
        }
        let known = release_log::read(&mut ctx)
            .map(|log| release_log::releases(&log.entries))
            .unwrap_or_default();
        let commit_of = |name: &str| -> Option<String> {
            known
                .get(name)
                .and_then(|info| info.commit.clone())
                .or_else(|| {
                    let path = ctx.path(&format!("releases/{name}/REVISION")).ok()?;
                    let text = ctx.transport.read_file(&path).ok()??;
                    Some(text.trim().to_string()).filter(|c| !c.is_empty())
                })
        };
        if rollback {
            let after = ctx.current_release().ok().flatten();
            if succeeded && after != before {
                notification.release = after;
            }
            notification.commit = notification.release.as_deref().and_then(commit_of);
            notification.reference = notification
                .release
                .as_ref()
                .and_then(|name| known.get(name))
                .and_then(|info| info.reference.clone());
        } else {
            notification.release = made;
            notification.commit = pinned;
            notification.reference = ctx
                .text("branch")
                .ok()
                .and_then(|branch| ctx.expand(&branch, Mode::Plain).ok());
        }
        notification.previous_commit = before.as_deref().and_then(commit_of);
        let range = match (&notification.commit, &notification.previous_commit) {
            (Some(commit), previous) if previous.as_ref() != Some(commit) => match previous {
                Some(previous) if rollback => Some((Some(commit.clone()), previous.clone())),
                previous => Some((previous.clone(), commit.clone())),
            },
            _ => None,
        };
        if let (Some((from, to)), Ok(cache)) = (range, ctx.path("repo.git")) {
            match ctx
                .transport
                .log_oneline(&cache, from.as_deref(), &to, notify::COMMIT_LIMIT + 1)
            {
                Ok(mut lines) => {
                    notification.commits_truncated = lines.len() > notify::COMMIT_LIMIT;
                    lines.truncate(notify::COMMIT_LIMIT);
                    notification.commits = lines;
                }
                Err(e) => tracing::debug!("no commit log for the notification: {e:#}"),
            }
        }
    }
    notification.app = settings.application(repository.as_deref(), &recipe_name(recipe));
    notification
}
