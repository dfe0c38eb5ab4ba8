//! One function per subcommand, each: load the recipe, pick hosts, act, report.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use rhai::Dynamic;
use serde::Serialize;

use crate::cli::arguments::{Command, Common};
use crate::cli::error::Error;
use crate::output::reporter::{Reporter, Verbosity};
use crate::output::secrets::Secrets;
use crate::output::sources::Sources;
use crate::plan;
use crate::primitives::host_context::{Deployment, COMPUTED_KEYS};
use crate::primitives::{lock, release_log};
use crate::registry::{Host, TaskBody};
use crate::run::host_setup;
use crate::run::runner::{self, RunError};
use crate::script::shared_imports::{self, Pins};
use crate::script::{self, LoadError, Recipe};
use crate::settings::{self, HostSettings, OverrideProblem, RunSettings};
use crate::system::interrupt;
use crate::values::config;

pub fn execute(command: Command, sources: &Sources, secrets: &Arc<Secrets>) -> Result<(), Error> {
    match command {
        Command::Run {
            recipe,
            task,
            plan,
            watch,
            lock_wait,
            common,
        } => {
            let mut extra = Vec::new();
            if !watch.is_empty() {
                let urls: rhai::Array = watch.into_iter().map(Dynamic::from).collect();
                extra.push(("watch".to_string(), Dynamic::from(urls)));
            }
            if let Some(wait) = lock_wait {
                extra.push(("lock_wait".to_string(), Dynamic::from(wait)));
            }
            let recipe = load(&recipe, &common, extra, sources, secrets)?;
            if plan {
                print_plan(&recipe, &task, &common)
            } else {
                run_task(&recipe, &task, &common)
            }
        }
        Command::Rollback { recipe, to, common } => {
            if to.as_deref().is_some_and(|to| to.trim().is_empty()) {
                return Err(Error::Usage {
                    message: "`--to` is empty: it must name a release".to_string(),
                    hint: Some(format!(
                        "`zdd releases {}` lists the releases; leave `--to` out to roll back to the previous one",
                        recipe.display()
                    )),
                });
            }
            let extra = to
                .map(|to| vec![("rollback_to".to_string(), Dynamic::from(to))])
                .unwrap_or_default();
            let recipe = load(&recipe, &common, extra, sources, secrets)?;
            run_task(&recipe, "rollback", &common)
        }
        Command::Releases { recipe, common } => {
            let recipe = load(&recipe, &common, Vec::new(), sources, secrets)?;
            releases(&recipe, &common)
        }
        Command::Report {
            recipe,
            release,
            output,
            common,
        } => {
            let recipe = load(&recipe, &common, Vec::new(), sources, secrets)?;
            let hosts = select_hosts(&recipe, &common)?;
            crate::cli::report::run(&recipe, &hosts, release, output, common.json)
        }
        Command::Hosts { recipe, common } => {
            let recipe = load(&recipe, &common, Vec::new(), sources, secrets)?;
            crate::cli::hosts::run(&recipe, &common)
        }
        Command::Tasks { recipe, common } => {
            let recipe = load(&recipe, &common, Vec::new(), sources, secrets)?;
            tasks(&recipe);
            Ok(())
        }
        Command::Check { recipe, common } => {
            let recipe = load(&recipe, &common, Vec::new(), sources, secrets)?;
            let hosts = select_hosts(&recipe, &common)?;
            // `check` checks the settings of the task `run` runs by default, when there is one.
            let deploy = match recipe.registry.tasks.contains_key("deploy") {
                true => Some(plan::steps(&recipe.registry, "deploy").map_err(Error::Plan)?),
                false => None,
            };
            validate_settings(&recipe, &hosts, deploy.as_deref().map(|s| ("deploy", s)))?;
            println!(
                "{}: ok ({} tasks, {} host{})",
                recipe.path,
                recipe.registry.tasks.len(),
                hosts.len(),
                if hosts.len() == 1 { "" } else { "s" }
            );
            Ok(())
        }
        Command::Unlock {
            recipe,
            force,
            common,
        } => {
            let recipe = load(&recipe, &common, Vec::new(), sources, secrets)?;
            unlock(&recipe, &common, force)
        }
        Command::Recipes { command } => crate::cli::recipes::execute(command, sources, secrets),
        Command::Doctor { recipe, common } => {
            let recipe = load(&recipe, &common, Vec::new(), sources, secrets)?;
            let hosts = select_hosts(&recipe, &common)?;
            crate::doctor::run(&recipe, &hosts, common.json)
        }
    }
}

fn reporter(common: &Common, secrets: &Arc<Secrets>) -> Arc<Reporter> {
    let verbosity = match (common.quiet, common.verbose) {
        (true, _) => Verbosity::Quiet,
        (false, 0) => Verbosity::Normal,
        (false, 1) => Verbosity::Commands,
        (false, _) => Verbosity::Output,
    };
    Arc::new(
        Reporter::new(verbosity, common.json)
            .with_secrets(secrets.clone())
            .with_github_groups(crate::system::environment::github_actions()),
    )
}

fn load(
    path: &std::path::Path,
    common: &Common,
    extra: Vec<(String, Dynamic)>,
    sources: &Sources,
    secrets: &Arc<Secrets>,
) -> Result<Recipe, Error> {
    load_pinned(path, common, extra, sources, secrets, Pins::Locked)
}

/// [`load`], with the pins of branch and tag imports read as `pins` says (`zdd recipes`).
pub(crate) fn load_pinned(
    path: &std::path::Path,
    common: &Common,
    extra: Vec<(String, Dynamic)>,
    sources: &Sources,
    secrets: &Arc<Secrets>,
    pins: Pins,
) -> Result<Recipe, Error> {
    let mut overrides = BTreeMap::new();
    for option in &common.options {
        let (key, value) = config::parse_override(option).map_err(|message| Error::Usage {
            message: format!("invalid `-o {option}`: {message}"),
            hint: Some("write options as `-o key=value`, e.g. `-o branch=main`".to_string()),
        })?;
        overrides.insert(key, value);
    }
    overrides.extend(extra);
    let imports = shared_imports::Options {
        offline: common.offline,
        pins,
    };
    let mut recipe = script::load(
        path,
        overrides,
        reporter(common, secrets),
        sources.clone(),
        imports,
    )
    .map_err(|e| match e {
        LoadError::Read { path, error } => Error::Read { path, error },
        LoadError::Script(error) => Error::Script {
            error,
            source: path.display().to_string(),
        },
    })?;
    // `-i`: the inventories' hosts are the fleet, instead of the recipe's (as in Ansible).
    if !common.inventory.is_empty() {
        let inventory = crate::inventory::load_all(&common.inventory, std::path::Path::new(""))
            .map_err(|e| Error::Usage {
                message: format!("inventory: {e}"),
                hint: e.hint.clone(),
            })?;
        for warning in &inventory.warnings {
            eprintln!("warning: {}", secrets.redact(warning));
        }
        recipe.registry.hosts = inventory.hosts;
    }
    // Secret values are known before anything runs: the recipe's, each host's and `-o`'s.
    secrets.learn(&host_setup::merged_config(&recipe, None));
    for host in &recipe.registry.hosts {
        secrets.learn(&host_setup::merged_config(&recipe, Some(host)));
    }
    plan::validate(&recipe.registry).map_err(Error::Plan)?;
    check_overrides(&recipe, common)?;
    Ok(recipe)
}

/// Each `-o` key must be read by something: zdd, the recipe or its hosts. A close match to a
/// setting that is read is a typo (exit 2); anything else is worth a warning.
fn check_overrides(recipe: &Recipe, common: &Common) -> Result<(), Error> {
    let mut declared: BTreeSet<String> = recipe.registry.config.keys().cloned().collect();
    for host in &recipe.registry.hosts {
        declared.extend(host.config.keys().cloned());
    }
    let texts = recipe.runtime.sources.texts();
    for option in &common.options {
        let Ok((key, _)) = config::parse_override(option) else {
            continue;
        };
        let found =
            settings::check_override(&key, &COMPUTED_KEYS, &declared, texts.iter().map(|t| &**t));
        match found {
            Ok(()) => {}
            Err(OverrideProblem::Computed) => {
                return Err(Error::Usage {
                    message: format!("`-o {key}`: `{key}` is computed by zdd and cannot be set"),
                    hint: Some(
                        "zdd computes it from `deploy_path` and the release it makes".to_string(),
                    ),
                })
            }
            Err(OverrideProblem::Unread {
                suggestion: Some(suggestion),
            }) => {
                return Err(Error::Usage {
                    message: format!(
                        "`-o {key}`: no setting of that name is read by the recipe or zdd"
                    ),
                    hint: Some(format!("did you mean `{suggestion}`?")),
                })
            }
            Err(OverrideProblem::Unread { suggestion: None }) => {
                eprintln!(
                    "warning: `-o {key}`: no setting of that name is read by the recipe or zdd"
                );
            }
        }
    }
    Ok(())
}

/// The settings zdd reads, checked on every selected host before anything connects: the
/// task to run and its steps say which are required.
fn validate_settings(
    recipe: &Recipe,
    hosts: &[Host],
    run: Option<(&str, &[plan::Step])>,
) -> Result<(), Error> {
    let recipe_hosts = hosts;
    let task = run.map(|(task, _)| task);
    let plan: Vec<String> = run
        .map(|(_, steps)| steps)
        .unwrap_or_default()
        .iter()
        .flat_map(|step| step.ancestry.iter().chain([&step.task]).cloned())
        .collect();
    let configs: Vec<(&str, BTreeMap<String, Dynamic>)> = hosts
        .iter()
        .map(|host| {
            (
                host.name.as_str(),
                host_setup::merged_config(recipe, Some(host)),
            )
        })
        .collect();
    let hosts: Vec<HostSettings> = configs
        .iter()
        .map(|(host, config)| HostSettings { host, config })
        .collect();
    let global = host_setup::merged_config(recipe, None);
    let run = RunSettings {
        config: &global,
        tasks: recipe.registry.tasks.keys().map(String::as_str).collect(),
        hosts: recipe
            .registry
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect(),
    };
    settings::validate(&run, &hosts, task, &plan).map_err(|problems| {
        Error::Settings(
            problems
                .into_iter()
                .map(|problem| set_where(problem, recipe_hosts, &recipe.path))
                .collect(),
        )
    })?;
    let places: Vec<settings::Place> = hosts
        .iter()
        .zip(recipe_hosts)
        .map(|(settings, host)| settings::Place {
            host: settings.host,
            local: host.local,
            config: settings.config,
        })
        .collect();
    settings::one_deploy_per_place(&places).map_err(Error::Settings)
}

/// A problem with a value one host got from outside the recipe (an inventory's line): the
/// problem names that host and where to change the value. (A run's own settings are never a
/// host's; a host's `.set` in the recipe is shown by the recipe's own hint.)
fn set_where(mut problem: settings::Problem, hosts: &[Host], recipe: &str) -> settings::Problem {
    if (problem.host.is_none() && hosts.len() != 1)
        || settings::RUN_SETTINGS.contains(&problem.setting.as_str())
    {
        return problem;
    }
    let own: Vec<(&Host, &String)> = hosts
        .iter()
        .filter(|host| problem.host.as_deref().is_none_or(|name| name == host.name))
        .filter_map(|host| host.sources.get(&problem.setting).map(|s| (host, s)))
        .filter(|(_, source)| !source.starts_with(&format!("{recipe}:")))
        .collect();
    if let [(host, source)] = own.as_slice() {
        problem.host = Some(host.name.clone());
        problem.hint = format!(
            "host `{}` gets `{}` from {source}: change it there",
            host.name, problem.setting
        );
    }
    problem
}

pub(crate) fn select_hosts(recipe: &Recipe, common: &Common) -> Result<Vec<Host>, Error> {
    let declared = &recipe.registry.hosts;
    if declared.is_empty() && !common.inventory.is_empty() {
        return Err(Error::Usage {
            message: format!(
                "the inventory names no host: {}",
                common.inventory.join(", ")
            ),
            hint: Some(
                "an Ansible inventory lists hosts under `[group]` (INI) or `hosts:` (YAML)"
                    .to_string(),
            ),
        });
    }
    if declared.is_empty() {
        return Err(Error::Usage {
            message: format!("`{}` declares no host", recipe.path),
            hint: Some("add `localhost();` (or `host(\"name\")`) to the recipe".to_string()),
        });
    }
    let names: Vec<&str> = declared.iter().map(|h| h.name.as_str()).collect();
    for wanted in &common.hosts {
        if !names.contains(&wanted.as_str()) {
            return Err(Error::Usage {
                message: format!("no host `{wanted}` in `{}`", recipe.path),
                hint: Some(
                    match crate::output::suggest::closest(wanted, names.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("the hosts are: {}", names.join(", ")),
                    },
                ),
            });
        }
    }
    let selected: Vec<Host> = declared
        .iter()
        .filter(|h| common.hosts.is_empty() || common.hosts.contains(&h.name))
        .filter(|h| common.roles.is_empty() || h.roles().iter().any(|r| common.roles.contains(r)))
        .cloned()
        .collect();
    if selected.is_empty() {
        return Err(Error::Usage {
            message: format!(
                "no host has the role{} {}",
                if common.roles.len() == 1 { "" } else { "s" },
                common
                    .roles
                    .iter()
                    .map(|r| format!("`{r}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            hint: Some("set roles on hosts with `.set(\"roles\", [\"web\"])`".to_string()),
        });
    }
    Ok(selected)
}

fn print_plan(recipe: &Recipe, task: &str, common: &Common) -> Result<(), Error> {
    let steps = plan::steps(&recipe.registry, task).map_err(Error::Plan)?;
    let hosts = select_hosts(recipe, common)?;
    validate_settings(recipe, &hosts, Some((task, &steps)))?;
    // Built once (`build_on`): the build's steps run once, where it says, not on the hosts.
    let global = host_setup::merged_config(recipe, None);
    let build_on = crate::run::build::BuildOn::read(&global, &recipe.registry)
        .unwrap_or(crate::run::build::BuildOn::Hosts);
    let built = build_on != crate::run::build::BuildOn::Hosts
        && steps.iter().any(|s| s.task == "deploy:update_code");
    let (build_steps, steps): (Vec<plan::Step>, Vec<plan::Step>) = if built {
        crate::run::build::split(&steps)
    } else {
        (Vec::new(), steps)
    };
    let place = match &build_on {
        crate::run::build::BuildOn::Host(name) => name.clone(),
        _ => crate::run::build::BUILD_HOST.to_string(),
    };
    let planned = if built {
        vec![(place.as_str(), build_steps.iter().collect::<Vec<_>>())]
    } else {
        Vec::new()
    };
    let hosts_planned = hosts.iter().enumerate().map(|(index, host)| {
        (
            host.name.as_str(),
            steps
                .iter()
                .filter(|s| !s.once || index == 0)
                .collect::<Vec<&plan::Step>>(),
        )
    });
    for (name, steps) in planned.into_iter().chain(hosts_planned) {
        let is_build = built && name == place && steps.iter().all(|s| s.build);
        if common.json {
            #[derive(Serialize)]
            struct PlannedStep<'a> {
                task: &'a str,
                declared: String,
            }
            let mut line = serde_json::json!({
                "host": name,
                "steps": steps.iter().map(|s| PlannedStep { task: &s.task, declared: s.origin.to_string() }).collect::<Vec<_>>(),
            });
            if is_build {
                line["build"] = serde_json::Value::Bool(true);
            }
            println!("{line}");
        } else {
            if is_build {
                println!("{name} (built once, shipped to every host)");
            } else {
                println!("{name}");
            }
            let width = steps.iter().map(|s| s.task.len()).max().unwrap_or(0);
            for (number, step) in steps.iter().enumerate() {
                println!(
                    "  {:>2}. {:<width$}  {}",
                    number + 1,
                    step.task,
                    step.origin
                );
            }
        }
    }
    Ok(())
}

fn run_task(recipe: &Recipe, task: &str, common: &Common) -> Result<(), Error> {
    let steps = plan::steps(&recipe.registry, task).map_err(Error::Plan)?;
    let hosts = select_hosts(recipe, common)?;
    validate_settings(recipe, &hosts, Some((task, &steps)))?;
    interrupt::install();
    interrupt::reset();
    let reporter = recipe.runtime.reporter.clone();
    let mut deployment = Deployment::new(&recipe.path);
    // Only hosts named with `--hosts` are brought up to a deploy that left them behind.
    deployment.hosts_named = !common.hosts.is_empty();
    let deployment = Arc::new(deployment);
    match runner::run(recipe, task, &steps, &hosts, reporter.clone(), deployment) {
        Ok(summary) if !summary.left_behind.is_empty() => {
            reporter.say(&runner::describe_summary(task, &summary));
            let count = summary.left_behind.len();
            let names: Vec<&str> = summary
                .left_behind
                .iter()
                .map(|l| l.host.as_str())
                .collect();
            Err(Error::Exceptions {
                message: format!(
                    "{count} host{} left behind on {} old release{}",
                    if count == 1 { "" } else { "s" },
                    if count == 1 { "its" } else { "their" },
                    if count == 1 { "" } else { "s" },
                ),
                left_behind: summary
                    .left_behind
                    .iter()
                    .map(|l| (l.host.clone(), l.reason.clone()))
                    .collect(),
                hint: summary.remembered.then(|| format!(
                    "once they are fixed, `zdd run {} {task} --hosts {}` brings them to release {} (the same commit)",
                    recipe.path,
                    names.join(","),
                    summary.release.as_deref().unwrap_or("of this deploy"),
                )),
            })
        }
        Ok(summary) => {
            reporter.say(&runner::describe_summary(task, &summary));
            Ok(())
        }
        Err(RunError::Setup(messages)) => Err(Error::Failed {
            message: format!(
                "nothing was changed: {}",
                messages.join("; ")
            ),
            hint: Some("check the host's settings (hostname, port, remote_user, identity_file) and that `ssh` reaches it".to_string()),
        }),
        Err(RunError::Step(failure)) => Err(Error::Step(failure)),
    }
}

/// A host's context for commands that act outside a task (`releases`, `unlock`, `report`).
pub fn with_host_context<T>(
    recipe: &Recipe,
    host: &Host,
    f: impl FnOnce(
        &mut crate::primitives::host_context::HostContext,
    ) -> Result<T, crate::output::failure::Failure>,
) -> Result<T, Error> {
    let deployment = Arc::new(Deployment::new(&recipe.path));
    let control = crate::transport::ssh::control_directory().map_err(|e| Error::Failed {
        message: format!("{e:#}"),
        hint: None,
    })?;
    let connected = host_setup::connect(
        recipe,
        host,
        0,
        control.path(),
        Arc::new(Reporter::silent()),
        deployment,
        true,
    )
    .map_err(|message| Error::Failed {
        message,
        hint: None,
    })?;
    let ctx = Arc::new(Mutex::new(connected.context));
    let result = {
        let mut guard = ctx.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard).map_err(|failure| {
            if failure.is_locked() {
                Error::Locked {
                    message: failure.to_string(),
                    hint: failure.hint.clone(),
                }
            } else {
                Error::Failed {
                    message: format!("on host `{}`: {failure}", host.name),
                    hint: failure.hint.clone(),
                }
            }
        })
    };
    if let Some(ssh) = connected.ssh {
        ssh.close();
    }
    result
}

fn releases(recipe: &Recipe, common: &Common) -> Result<(), Error> {
    for host in select_hosts(recipe, common)? {
        let (list, current, log) = with_host_context(recipe, &host, |ctx| {
            Ok((
                release_log::on_disk(ctx)?,
                ctx.current_release()?,
                release_log::read(ctx)?,
            ))
        })?;
        // What the watcher saw during each release's deploy (its last record that says).
        let watched = |name: &str| {
            log.entries
                .iter()
                .rev()
                .find(|e| e.release == name && e.watch.is_some())
                .and_then(|e| e.watch.clone())
        };
        // The build's archive each release was unpacked from (`build_on`).
        let artifact = |name: &str| {
            log.entries
                .iter()
                .rev()
                .find(|e| e.release == name && e.artifact.is_some())
                .and_then(|e| e.artifact.clone())
        };
        let built = list.iter().any(|r| artifact(&r.name).is_some());
        if common.json {
            for release in &list {
                let line = serde_json::json!({
                    "artifact": artifact(&release.name),
                    "host": host.name,
                    "release": release.name,
                    "status": release.status,
                    "ref": release.reference,
                    "commit": release.commit,
                    "user": release.user,
                    "time": release.time,
                    "current": current.as_deref() == Some(release.name.as_str()),
                    "made_by": release.made_by,
                    "watch": watched(&release.name),
                });
                println!("{line}");
            }
            continue;
        }
        println!("{}", host.name);
        if list.is_empty() {
            println!("  no releases");
            continue;
        }
        let artifact_column = |text: &str| {
            if built {
                format!("{:<14}", &text[..text.len().min(12)])
            } else {
                String::new()
            }
        };
        // Another tool's releases (an adopted deploy path): who made each.
        let adopted = list.iter().any(|r| r.made_by != "zdd");
        let made_by_column = |text: &str| {
            if adopted {
                format!("{text:<12} ")
            } else {
                String::new()
            }
        };
        let width = list.iter().map(|r| r.name.len()).max().unwrap_or(0).max(18);
        println!(
            "  {:<width$} {:<12} {}{:<16} {:<12} {}{:<20} USER",
            "RELEASE",
            "STATUS",
            made_by_column("MADE BY"),
            "REF",
            "COMMIT",
            artifact_column("ARTIFACT"),
            "CREATED"
        );
        for release in &list {
            let marker = if current.as_deref() == Some(release.name.as_str()) {
                "*"
            } else {
                " "
            };
            let commit = release.commit.as_deref().unwrap_or("-");
            println!(
                "{marker} {:<width$} {:<12} {}{:<16} {:<12} {}{:<20} {}",
                release.name,
                release.status.as_str(),
                made_by_column(release.made_by),
                short_ref(release.reference.as_deref().unwrap_or("-")),
                &commit[..commit.len().min(12)],
                artifact_column(artifact(&release.name).as_deref().unwrap_or("-")),
                release.time.get(..19).unwrap_or(&release.time),
                release.user
            );
            for url in watched(&release.name).iter().flat_map(|w| &w.urls) {
                println!("    {}", url.line());
            }
        }
    }
    Ok(())
}

/// A ref as the table shows it: a full commit id is cut to 12 digits, like the commit column.
fn short_ref(reference: &str) -> &str {
    if reference.len() == 40 && reference.chars().all(|c| c.is_ascii_hexdigit()) {
        &reference[..12]
    } else {
        reference
    }
}

fn tasks(recipe: &Recipe) {
    let tasks = &recipe.registry.tasks;
    let width = tasks.keys().map(String::len).max().unwrap_or(0);
    for task in tasks.values() {
        let description = task
            .description
            .clone()
            .unwrap_or_else(|| match &task.body {
                TaskBody::Group(members) => members.join(", "),
                TaskBody::Closure(_) => String::new(),
            });
        // A task of a shared recipe says which one, at which commit (`URL@COMMIT/PATH:LINE`).
        if crate::recipes::import::is_shared(&task.origin.source) {
            let from = format!("from {}:{}", task.origin.source, task.origin.line);
            match description.is_empty() {
                true => println!("{:<width$}  {from}", task.name),
                false => println!("{:<width$}  {description} ({from})", task.name),
            }
            continue;
        }
        println!("{:<width$}  {description}", task.name);
    }
}

fn unlock(recipe: &Recipe, common: &Common, force: bool) -> Result<(), Error> {
    for host in select_hosts(recipe, common)? {
        let holder = with_host_context(recipe, &host, |ctx| lock::force_unlock(ctx, force))?;
        match holder {
            Some(holder) => println!("{}: removed the lock held by {holder}", host.name),
            None => println!("{}: not locked", host.name),
        }
    }
    Ok(())
}
