//! The settings zdd reads: each one's name, type and range, when it is required, and what it is
//! for. [`validate`] checks every selected host's settings against this table before anything
//! runs (`check`, `run --plan`, `run`, `rollback`), so a bad value is refused with exit 2 instead
//! of failing half-way through a deploy. [`check_override`] says when an `-o` key is read by
//! nothing. Pure: no host is touched here.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use rhai::Dynamic;

use crate::primitives::paths;
use crate::values::config;
use crate::values::template::{self, Mode, TemplateError};

/// What a setting's value must be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Text (a string, number or boolean, or a list of them joined with spaces); not a map.
    Text,
    /// One word: text that is not a list, has no control character and does not start with `-`.
    Word { empty: bool },
    /// An absolute path other than `/`, once its `{{key}}`s are expanded.
    DeployPath,
    /// A branch, tag or commit (or a full ref name such as `refs/heads/main`).
    Reference,
    /// A whole number from `min` to `max`.
    Number { min: u64, max: u64 },
    /// `true` or `false` (also `1`/`0`, `yes`/`no`), as `config::boolean` reads it.
    Boolean,
    /// Exactly `true` or `false` (a recipe's `on()` reads nothing else).
    Flag,
    /// Seconds (`1`, `0.5`, `"2s"`) above `0` when `positive`, at most `max`.
    Seconds { max: u32, positive: bool },
    /// One of these words.
    OneOf(&'static [&'static str]),
    /// A list of relative paths inside the release (no `..`, no empty parts).
    ReleasePaths,
    /// A list of words.
    List,
    /// The name of a release under `releases/`.
    ReleaseName,
    /// A version such as `8.2`.
    Version,
    /// Empty, or a URL starting with `http://` or `https://`.
    HttpUrl,
    /// A list of URLs starting with `http://` or `https://`.
    HttpUrls,
    /// Hosts at a time, or waves (`values::rollout::Waves`).
    Waves,
    /// A number of hosts or a percentage (`values::rollout::Size`).
    Budget,
}

/// When a setting must be set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    Never,
    /// By every command that works in the deploy path (the stdlib's tasks, `rollback`).
    ForDeployPath,
    /// When the plan checks code out (`deploy:update_code`).
    ForCode,
}

pub struct Setting {
    pub name: &'static str,
    pub kind: Kind,
    pub required: Required,
    /// A value that works, for hints (`-o keep_releases=5`).
    pub example: &'static str,
    pub description: &'static str,
}

const fn setting(
    name: &'static str,
    kind: Kind,
    example: &'static str,
    description: &'static str,
) -> Setting {
    Setting {
        name,
        kind,
        required: Required::Never,
        example,
        description,
    }
}

const TEXT: Kind = Kind::Text;
const WORD: Kind = Kind::Word { empty: false };
const SECONDS: Kind = Kind::Seconds {
    max: 3600,
    positive: false,
};
const AUTO_TRUE_FALSE: Kind = Kind::OneOf(&["auto", "true", "false"]);

/// Every setting zdd reads (and those the shipped Laravel recipe reads), by name.
pub const SETTINGS: &[Setting] = &[
    // Where and what.
    Setting {
        name: "deploy_path",
        kind: Kind::DeployPath,
        required: Required::ForDeployPath,
        example: "/var/www/app",
        description: "the directory holding current, releases/ and shared/",
    },
    Setting {
        name: "repository",
        kind: Kind::Word { empty: false },
        required: Required::ForCode,
        example: "git@github.com:acme/shop.git",
        description: "the git repository to deploy, a URL or a path on the host",
    },
    setting(
        "branch",
        Kind::Reference,
        "main",
        "the branch, tag or commit to deploy",
    ),
    setting(
        "keep_releases",
        Kind::Number { min: 1, max: 1000 },
        "5",
        "good releases kept for rollback",
    ),
    setting(
        "shared_files",
        Kind::ReleasePaths,
        ".env",
        "files linked from shared/ into every release",
    ),
    setting(
        "shared_dirs",
        Kind::ReleasePaths,
        "storage",
        "directories linked from shared/ into every release",
    ),
    setting(
        "writable_dirs",
        Kind::ReleasePaths,
        "bootstrap/cache",
        "directories the web server may write",
    ),
    setting(
        "writable_mode",
        Kind::OneOf(&["chmod", "acl", "chown", "skip"]),
        "chmod",
        "how writable_dirs are made writable",
    ),
    setting(
        "writable_chmod_mode",
        WORD,
        "ug+rwX",
        "the mode chmod gives writable_dirs",
    ),
    setting(
        "writable_recursive",
        Kind::Boolean,
        "true",
        "whether writable_dirs are changed recursively",
    ),
    setting(
        "http_user",
        WORD,
        "www-data",
        "the web server's user (writable_mode acl or chown)",
    ),
    setting(
        "rollback_to",
        Kind::ReleaseName,
        "20260518T103000Z",
        "the release a rollback switches to (`--to`)",
    ),
    // Programs.
    setting(
        "bin/php",
        WORD,
        "/usr/bin/php",
        "the php program (found on PATH unless set)",
    ),
    setting(
        "bin/composer",
        WORD,
        "/usr/bin/composer",
        "the composer program (found on PATH unless set)",
    ),
    setting(
        "bin/npm",
        WORD,
        "/usr/bin/npm",
        "the npm program (found on PATH unless set)",
    ),
    setting(
        "php_version",
        Kind::Version,
        "8.2",
        "the PHP version (names php-fpm's service and pid file)",
    ),
    // php-fpm.
    setting(
        "fpm_reload",
        Kind::OneOf(&["auto", "signal", "systemctl", "none"]),
        "auto",
        "how php-fpm is reloaded after the swap",
    ),
    setting(
        "fpm_service",
        WORD,
        "php8.2-fpm",
        "php-fpm's systemd service",
    ),
    setting(
        "fpm_pid_file",
        WORD,
        "/run/php/php8.2-fpm.pid",
        "php-fpm's master pid file",
    ),
    setting(
        "fpm_config",
        WORD,
        "/etc/php/8.2/fpm/php-fpm.conf",
        "php-fpm's configuration file",
    ),
    setting(
        "fpm_socket",
        Kind::Word { empty: true },
        "/run/php/php8.2-fpm.sock",
        "php-fpm's socket, to wait for after a reload",
    ),
    setting(
        "fpm_reload_timeout",
        Kind::Number { min: 1, max: 3600 },
        "20",
        "seconds to wait for php-fpm to reload",
    ),
    setting(
        "nginx_config",
        WORD,
        "/etc/nginx/sites-enabled/app",
        "nginx's site configuration (doctor)",
    ),
    // The health gate.
    setting(
        "health_url",
        Kind::HttpUrl,
        "http://127.0.0.1/health",
        "the URL the health gate checks; empty skips it",
    ),
    setting(
        "health_checks",
        Kind::Number {
            min: 1,
            max: 10_000,
        },
        "20",
        "consecutive good answers the health gate needs",
    ),
    setting(
        "health_retries",
        Kind::Number {
            min: 0,
            max: 10_000,
        },
        "5",
        "bad answers the health gate tolerates",
    ),
    setting(
        "health_interval",
        SECONDS,
        "1",
        "seconds between health checks",
    ),
    setting(
        "health_timeout",
        SECONDS,
        "5",
        "seconds one health check may take",
    ),
    setting(
        "health_expect",
        TEXT,
        "ok",
        "text the health answer must contain",
    ),
    setting(
        "health_expect_release",
        AUTO_TRUE_FALSE,
        "auto",
        "whether the health answer must name the new release (auto: when the app names one)",
    ),
    setting(
        "health_expect_commit",
        Kind::Boolean,
        "true",
        "whether the health answer must name the new commit",
    ),
    setting(
        "health_host",
        TEXT,
        "shop.example.com",
        "the Host header of health checks",
    ),
    // The watcher.
    setting(
        "watch",
        Kind::HttpUrls,
        "https://shop.example.com/",
        "URLs requested during the deploy to measure what users got (also `--watch`)",
    ),
    setting(
        "watch_rate",
        Kind::Number { min: 1, max: 100 },
        "5",
        "requests per second per watched URL",
    ),
    setting(
        "watch_timeout",
        Kind::Seconds {
            max: 60,
            positive: true,
        },
        "2",
        "seconds one watched request may take",
    ),
    setting(
        "watch_tail",
        Kind::Seconds {
            max: 600,
            positive: false,
        },
        "2",
        "seconds watched after the last host's cutover",
    ),
    setting(
        "watch_max_failures",
        Kind::Number {
            min: 0,
            max: 1_000_000,
        },
        "0",
        "failed watched requests (no answer, 5xx) a deploy tolerates",
    ),
    setting(
        "watch_max_stale",
        Kind::Number {
            min: 0,
            max: 1_000_000,
        },
        "0",
        "answers from the old release after the swap a deploy tolerates",
    ),
    setting(
        "watch_max_p99",
        Kind::Number {
            min: 1,
            max: 3_600_000,
        },
        "500",
        "the p99 latency (ms) of watched requests a deploy tolerates",
    ),
    // Gates.
    setting(
        "disk_min_free_mb",
        Kind::Number {
            min: 0,
            max: 1_000_000_000,
        },
        "500",
        "free megabytes the disk gate needs",
    ),
    setting(
        "test_command",
        TEXT,
        "php artisan test",
        "the test suite the tests gate runs; empty skips it",
    ),
    setting(
        "audit",
        Kind::Boolean,
        "true",
        "whether the audit gate runs",
    ),
    setting(
        "audit_severity",
        Kind::OneOf(&["low", "medium", "high", "critical"]),
        "critical",
        "advisories at or above this refuse a deploy",
    ),
    setting(
        "audit_offline",
        Kind::OneOf(&["warn", "fail"]),
        "warn",
        "what the audit gate does without an advisory database",
    ),
    setting(
        "check_queued_jobs",
        Kind::Boolean,
        "true",
        "whether queued jobs are checked against the release",
    ),
    setting(
        "queue_names",
        Kind::List,
        "emails",
        "Redis queues the queued-jobs gate reads besides the connection's default queue",
    ),
    setting(
        "allow_key_rotation",
        Kind::Boolean,
        "false",
        "whether a new APP_KEY is allowed",
    ),
    setting(
        "allow_destructive_migrations",
        Kind::Boolean,
        "false",
        "whether DROP/RENAME migrations are allowed",
    ),
    // The build.
    setting(
        "build_on",
        Kind::Word { empty: false },
        "local",
        "where the build tasks run: `hosts` (each its own), `local` (once, on this machine) or a host's name",
    ),
    setting(
        "build_exclude",
        Kind::ReleasePaths,
        "node_modules",
        "paths the build's archive leaves out (`*` and `?` inside a name)",
    ),
    setting(
        "build_cache",
        Kind::Boolean,
        "false",
        "whether a build of the same commit, tasks and settings kept on this machine is reused (its build tasks, `gate:audit` too, not run again)",
    ),
    // The rollout.
    setting(
        "parallel",
        Kind::Number { min: 1, max: 1000 },
        "50",
        "hosts worked on at the same time",
    ),
    setting(
        "rollout_batch",
        Kind::Waves,
        "1",
        "hosts switched at the same time, or waves (`[1, \"10%\", \"100%\"]`)",
    ),
    setting(
        "max_fail",
        Kind::Budget,
        "1",
        "hosts (or a percentage) that may be left behind on their old release",
    ),
    setting(
        "max_concurrent_starts",
        Kind::Number { min: 1, max: 1000 },
        "50",
        "SSH connections opened at the same time (at most 10 to one hostname and port)",
    ),
    setting(
        "lock_wait",
        SECONDS,
        "300",
        "seconds to wait for a deploy lock another run holds (0: do not wait)",
    ),
    setting(
        "rollout_stagger",
        SECONDS,
        "10",
        "seconds between rollout batches",
    ),
    setting(
        "cutover_task",
        WORD,
        "deploy:symlink",
        "the task that makes a release live",
    ),
    // Notifications.
    setting(
        "slack_webhook",
        Kind::Word { empty: true },
        "https://hooks.slack.com/services/...",
        "a Slack webhook notified of deploys",
    ),
    setting(
        "webhook_url",
        Kind::Word { empty: true },
        "https://example.com/hook",
        "a URL notified of deploys (JSON)",
    ),
    setting(
        "notify_tasks",
        Kind::List,
        "deploy",
        "the tasks whose runs notify",
    ),
    setting(
        "webhook_timeout",
        Kind::Seconds {
            max: 600,
            positive: true,
        },
        "10",
        "seconds a notification may take",
    ),
    setting(
        "application",
        TEXT,
        "shop",
        "the application's name in notifications",
    ),
    // Hosts.
    setting(
        "hostname",
        Kind::Word { empty: true },
        "10.0.0.1",
        "the address ssh connects to",
    ),
    setting(
        "remote_user",
        Kind::Word { empty: true },
        "deploy",
        "the ssh user",
    ),
    setting(
        "port",
        Kind::Number {
            min: 1,
            max: 65_535,
        },
        "22",
        "the ssh port",
    ),
    setting(
        "identity_file",
        Kind::Word { empty: true },
        "~/.ssh/id_ed25519",
        "the ssh key",
    ),
    setting(
        "config_file",
        Kind::Word { empty: true },
        "~/.ssh/config",
        "the ssh configuration file",
    ),
    setting(
        "ssh_arguments",
        Kind::List,
        "-oConnectTimeout=5",
        "more arguments for ssh",
    ),
    setting(
        "forward_agent",
        Kind::Boolean,
        "false",
        "whether ssh forwards the agent",
    ),
    setting("roles", Kind::List, "web", "the host's roles (`--roles`)"),
    // Read by the shipped Laravel recipe (recipes/laravel.rhai).
    setting(
        "composer",
        Kind::Flag,
        "true",
        "whether composer install runs",
    ),
    setting(
        "composer_options",
        TEXT,
        "--no-dev",
        "composer install's options",
    ),
    setting(
        "npm",
        AUTO_TRUE_FALSE,
        "auto",
        "whether npm builds assets (auto: when there is a package.json)",
    ),
    setting(
        "vendor_reuse",
        Kind::OneOf(&["hardlink", "copy", "true", "false"]),
        "hardlink",
        "how composer install and npm ci start from the previous release's vendor/ and node_modules/",
    ),
    setting(
        "storage_link",
        Kind::Flag,
        "true",
        "whether public/storage is linked",
    ),
    setting(
        "artisan_caches",
        Kind::Flag,
        "true",
        "whether config, route, view and event caches are built",
    ),
    setting("migrate", Kind::Flag, "true", "whether migrations run"),
    setting(
        "check_migrations",
        Kind::Flag,
        "true",
        "whether migrations are checked before they run",
    ),
    setting(
        "octane",
        AUTO_TRUE_FALSE,
        "auto",
        "whether Octane is reloaded",
    ),
    setting(
        "horizon",
        AUTO_TRUE_FALSE,
        "auto",
        "whether Horizon is terminated",
    ),
    setting(
        "queue_restart",
        Kind::Flag,
        "true",
        "whether queue workers restart",
    ),
    setting(
        "php_file_cache",
        Kind::Flag,
        "true",
        "whether zdd's PHP starts share compiled scripts through OPcache's file cache in `.zdd/opcache`",
    ),
    setting(
        "signal_at_swap",
        Kind::Flag,
        "true",
        "whether the workers' restart signal is sent by a process of the new release, microseconds before the swap",
    ),
    setting(
        "artisan_reload",
        AUTO_TRUE_FALSE,
        "auto",
        "whether `artisan reload` (Laravel 12.41+) replaces the individual restarts",
    ),
    setting(
        "shared_cache",
        AUTO_TRUE_FALSE,
        "auto",
        "whether the hosts share the app's cache (restart signals sent once per deploy)",
    ),
    setting(
        "octane_url",
        TEXT,
        "http://127.0.0.1:8000/health",
        "a URL of the Octane server on each host; its answer must name the new release",
    ),
    setting(
        "octane_restart_timeout",
        SECONDS,
        "30",
        "seconds Octane's supervisor may take to start it again after `octane:stop`",
    ),
    setting(
        "migrate_wait",
        SECONDS,
        "600",
        "seconds to wait for another `migrate --isolated` to finish",
    ),
];

/// Keys zdd computes (see `host_context::COMPUTED_KEYS`), and what validation expands them to.
fn computed(key: &str, host: &str) -> Option<String> {
    Some(match key {
        "release_name" => "RELEASE".to_string(),
        "release_path" => "{{deploy_path}}/releases/RELEASE".to_string(),
        "current_path" => "{{deploy_path}}/current".to_string(),
        "previous_release" => "{{deploy_path}}/releases/PREVIOUS".to_string(),
        "host" | "alias" => host.to_string(),
        "user" => "user".to_string(),
        _ => return None,
    })
}

pub fn find(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// Settings read once for the whole run (the rollout, the notifications), from the recipe's
/// own settings and `-o`, never from a host's: [`validate`] checks them in [`RunSettings`].
pub const RUN_SETTINGS: &[&str] = &[
    "build_on",
    "build_exclude",
    "build_cache",
    "parallel",
    "rollout_batch",
    "rollout_stagger",
    "max_fail",
    "max_concurrent_starts",
    "lock_wait",
    "cutover_task",
    "slack_webhook",
    "webhook_url",
    "notify_tasks",
    "webhook_timeout",
    "application",
];

/// The run as a whole: its settings (defaults < recipe < `-o`, as the runner reads
/// [`RUN_SETTINGS`]) and the tasks the recipe declares (`cutover_task` must name one).
pub struct RunSettings<'a> {
    pub config: &'a BTreeMap<String, Dynamic>,
    pub tasks: Vec<&'a str>,
    /// Every host the recipe declares (`build_on` may name one).
    pub hosts: Vec<&'a str>,
}

/// One host's merged settings (defaults < recipe < host < `-o`).
pub struct HostSettings<'a> {
    pub host: &'a str,
    pub config: &'a BTreeMap<String, Dynamic>,
}

/// A setting that is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub setting: String,
    /// The host it is wrong on, when it is not wrong on every host.
    pub host: Option<String>,
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(host) = &self.host {
            write!(f, "host `{host}`: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Check the run's settings and every host's for running `task`, whose plan runs the tasks
/// `plan` (the steps and the tasks they run inside). A problem found on every host is
/// reported once, and once only when the run's settings have it too.
pub fn validate(
    run: &RunSettings,
    hosts: &[HostSettings],
    task: Option<&str>,
    plan: &[String],
) -> Result<(), Vec<Problem>> {
    let runs = |name: &str| task == Some(name) || plan.iter().any(|t| t == name);
    let needs_deploy_path =
        runs("rollback") || runs("deploy") || plan.iter().any(|t| t.starts_with("deploy:"));
    // Only `deploy:update_code` reads `repository`: a recipe's own `deploy` task may not.
    let needs_code = runs("deploy:update_code");
    let mut found: Vec<(Problem, Vec<&str>)> = Vec::new();
    for host in hosts {
        for problem in check_host(host.host, host.config, needs_deploy_path, needs_code) {
            match found.iter_mut().find(|(p, _)| *p == problem) {
                Some((_, on)) => on.push(host.host),
                None => found.push((problem, vec![host.host])),
            }
        }
    }
    let mut problems: Vec<Problem> = found
        .into_iter()
        .flat_map(|(problem, on)| {
            if on.len() == hosts.len() {
                vec![problem]
            } else {
                on.into_iter()
                    .map(|host| Problem {
                        host: Some(host.to_string()),
                        ..problem.clone()
                    })
                    .collect()
            }
        })
        .collect();
    for problem in check_run(run) {
        // The hosts have the same value (set in the recipe or with `-o`), or some do: reported
        // once, for the run, where the first host's problem was.
        let mut placed = false;
        let mut merged = Vec::new();
        for found in problems {
            if found.setting != problem.setting || found.message != problem.message {
                merged.push(found);
            } else if !placed {
                merged.push(problem.clone());
                placed = true;
            }
        }
        if !placed {
            merged.push(problem);
        }
        problems = merged;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Where a host deploys: for [`one_deploy_per_place`].
pub struct Place<'a> {
    pub host: &'a str,
    pub local: bool,
    pub config: &'a BTreeMap<String, Dynamic>,
}

/// Two hosts of one run must not deploy to the same deploy path of the same machine (the
/// same host listed twice, under two names or in two inventories): one deploy path takes one
/// deploy at a time, and two entries of one run would fight over its lock. The machine is
/// its `hostname` (default: the host's name), `port` and `config_file`; `localhost()` hosts
/// are this machine.
pub fn one_deploy_per_place(places: &[Place]) -> Result<(), Vec<Problem>> {
    let mut seen: BTreeMap<String, &str> = BTreeMap::new();
    let mut problems = Vec::new();
    for place in places {
        let text = |key: &str| {
            place
                .config
                .get(key)
                .filter(|v| !v.is_unit())
                .and_then(|v| config::text(v).ok())
        };
        let Some(deploy_path) = text("deploy_path")
            .and_then(|raw| expanded("deploy_path", &raw, place.host, place.config).ok())
            .flatten()
        else {
            continue;
        };
        let deploy_path = deploy_path.trim_end_matches('/').to_string();
        let machine = if place.local {
            "this machine".to_string()
        } else {
            format!(
                "{}:{}{}",
                text("hostname").unwrap_or_else(|| place.host.to_string()),
                text("port").unwrap_or_else(|| "22".to_string()),
                text("config_file")
                    .map(|file| format!(" (ssh config {file})"))
                    .unwrap_or_default()
            )
        };
        let key = format!("{machine}\n{deploy_path}");
        match seen.get(&key) {
            Some(first) => problems.push(Problem {
                setting: "deploy_path".to_string(),
                host: None,
                message: format!(
                    "hosts `{first}` and `{}` both deploy to `{deploy_path}` on {machine}: one deploy path takes one deploy at a time",
                    place.host
                ),
                hint: "give each host its own `deploy_path`, or list the machine once (`--hosts` picks one)".to_string(),
            }),
            None => {
                seen.insert(key, place.host);
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// The problems of the run's own settings ([`RUN_SETTINGS`]): checked as the hosts' are, and
/// `cutover_task` must name a task the recipe declares.
fn check_run(run: &RunSettings) -> Vec<Problem> {
    let mut problems = Vec::new();
    for name in RUN_SETTINGS {
        let Some(setting) = find(name) else {
            continue;
        };
        let Some(value) = run.config.get(*name).filter(|v| !v.is_unit()) else {
            continue;
        };
        let problem = |message: String, hint: String| Problem {
            setting: name.to_string(),
            host: None,
            message,
            hint,
        };
        if let Err(message) = check_value(setting, value, "", run.config) {
            problems.push(problem(message, how_to_set(setting)));
            continue;
        }
        if *name == "build_on" {
            let place = value.to_string();
            if !matches!(place.as_str(), "hosts" | "local") && !run.hosts.contains(&place.as_str())
            {
                problems.push(problem(
                    format!(
                        "`build_on` is `{}`: not `hosts`, `local`, nor a host the recipe declares",
                        shown(value)
                    ),
                    "`hosts` builds on each host, `local` once on this machine, a host's name once on that host"
                        .to_string(),
                ));
            }
        }
        if *name == "cutover_task" {
            let task = value.to_string();
            if !run.tasks.contains(&task.as_str()) {
                let hint = match crate::output::suggest::closest(&task, run.tasks.iter().copied()) {
                    Some(close) => format!("did you mean `{close}`?"),
                    None => how_to_set(setting),
                };
                problems.push(problem(
                    format!(
                        "`cutover_task` is `{}`: the recipe declares no task of that name",
                        shown(value)
                    ),
                    hint,
                ));
            }
        }
    }
    problems
}

fn check_host(
    host: &str,
    config: &BTreeMap<String, Dynamic>,
    needs_deploy_path: bool,
    needs_code: bool,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for setting in SETTINGS {
        let value = config.get(setting.name).filter(|v| !v.is_unit());
        let Some(value) = value else {
            let required = match setting.required {
                Required::Never => false,
                Required::ForDeployPath => needs_deploy_path,
                Required::ForCode => needs_code,
            };
            if required {
                problems.push(Problem {
                    setting: setting.name.to_string(),
                    host: None,
                    message: format!("`{}` is not set: {}", setting.name, purpose(setting)),
                    hint: how_to_set(setting),
                });
            }
            continue;
        };
        if let Err(message) = check_value(setting, value, host, config) {
            problems.push(Problem {
                setting: setting.name.to_string(),
                host: None,
                message,
                hint: how_to_set(setting),
            });
        }
    }
    problems.extend(overlapping_shared_entries(host, config));
    problems
}

fn purpose(setting: &Setting) -> String {
    match setting.required {
        Required::ForDeployPath => {
            format!("zdd needs {}", setting.description)
        }
        _ => format!("the deploy needs {}", setting.description),
    }
}

fn how_to_set(setting: &Setting) -> String {
    let name = setting.name;
    let example = setting.example;
    let in_recipe = match setting.kind {
        Kind::Number { .. }
        | Kind::Boolean
        | Kind::Flag
        | Kind::Seconds { .. }
        | Kind::Waves
        | Kind::Budget => example.to_string(),
        Kind::ReleasePaths | Kind::List | Kind::HttpUrls => format!("[\"{example}\"]"),
        _ => format!("\"{example}\""),
    };
    format!("set it in the recipe with `set(\"{name}\", {in_recipe})` or on the command line with `-o {name}={example}`")
}

/// A value as messages show it: control characters escaped, long values cut.
pub fn shown(value: &Dynamic) -> String {
    let text = value.to_string();
    let mut out = String::new();
    for (index, ch) in text.chars().enumerate() {
        if index == 80 {
            out.push('…');
            break;
        }
        match ch {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The value's text with its `{{key}}`s expanded from `config` (computed keys stand in for
/// themselves); `None` when it names a key that is only known while a task runs.
fn expanded(
    name: &str,
    text: &str,
    host: &str,
    config: &BTreeMap<String, Dynamic>,
) -> Result<Option<String>, String> {
    if !text.contains("{{") {
        return Ok(Some(text.to_string()));
    }
    match self_reference(name, config) {
        Some(through) if through == name => return Err(format!("`{name}` refers to itself")),
        Some(through) => return Err(format!("`{name}` refers to itself through `{through}`")),
        None => {}
    }
    let lookup = |key: &str| -> Result<Option<Vec<String>>, TemplateError> {
        if let Some(value) = config.get(key) {
            return config::words(value)
                .map(Some)
                .map_err(|reason| TemplateError::Value {
                    key: key.to_string(),
                    reason,
                });
        }
        Ok(computed(key, host).map(|v| vec![v]))
    };
    match template::expand(text, Mode::Plain, &lookup) {
        Ok(text) => Ok(Some(text)),
        // A key set inside a task is only known then; `deploy_path` is needed before.
        Err(TemplateError::UnknownKey { key, .. }) if name == "deploy_path" => Err(format!(
            "`{name}` is `{}`: it names `{{{{{key}}}}}`, which is not set",
            shown(&Dynamic::from(text.to_string()))
        )),
        Err(TemplateError::UnknownKey { .. }) => Ok(None),
        Err(TemplateError::TooDeep { key }) => {
            Err(format!("`{name}`: `{{{{{key}}}}}` expands into itself"))
        }
        Err(e) => Err(format!("`{name}`: {e}")),
    }
}

/// The key through which `name`'s value comes back to `name`, if it does.
fn self_reference(name: &str, config: &BTreeMap<String, Dynamic>) -> Option<String> {
    let references = |key: &str| -> Vec<String> {
        let text = match config.get(key) {
            Some(value) => config::words(value).unwrap_or_default().join(" "),
            None => computed(key, "").unwrap_or_default(),
        };
        template::keys(&text)
    };
    for first in references(name) {
        let mut seen = BTreeSet::new();
        let mut stack = vec![first.clone()];
        while let Some(key) = stack.pop() {
            if key == name {
                return Some(first);
            }
            if seen.insert(key.clone()) {
                stack.extend(references(&key));
            }
        }
    }
    None
}

fn scalar_text(name: &str, value: &Dynamic) -> Result<String, String> {
    if value.is_array() || value.is_map() {
        return Err(format!(
            "`{name}` is a {}: it must be text",
            kind_name(value)
        ));
    }
    Ok(value.to_string())
}

fn kind_name(value: &Dynamic) -> &'static str {
    if value.is_array() {
        "list"
    } else if value.is_map() {
        "map"
    } else {
        "value"
    }
}

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

fn check_value(
    setting: &Setting,
    value: &Dynamic,
    host: &str,
    config: &BTreeMap<String, Dynamic>,
) -> Result<(), String> {
    let name = setting.name;
    let bad = |expectation: &str| match shown(value) {
        text if text.is_empty() => format!("`{name}` is empty: {expectation}"),
        text => format!("`{name}` is `{text}`: {expectation}"),
    };
    match setting.kind {
        Kind::Text => {
            let text = config::text(value)
                .map_err(|_| format!("`{name}` is a {}: it must be text", kind_name(value)))?;
            expanded(name, &text, host, config)?;
        }
        Kind::Word { empty } => {
            let text = scalar_text(name, value)?;
            let Some(text) = expanded(name, &text, host, config)? else {
                return Ok(());
            };
            if text.trim().is_empty() && !empty {
                return Err(format!(
                    "`{name}` is empty: it must be {}",
                    setting.description
                ));
            }
            if has_control(&text) {
                return Err(bad(
                    "it cannot contain control characters (a newline, a tab)",
                ));
            }
            if text.starts_with('-') {
                return Err(bad("it cannot start with `-`"));
            }
        }
        Kind::DeployPath => {
            let raw = scalar_text(name, value)?;
            let Some(text) = expanded(name, &raw, host, config)? else {
                return Ok(());
            };
            let shown_path = if text == raw {
                format!("`{}`", shown(value))
            } else {
                format!(
                    "`{}` (expanded: `{}`)",
                    shown(value),
                    shown(&Dynamic::from(text.clone()))
                )
            };
            if text.trim().is_empty() {
                return Err(format!(
                    "`{name}` is empty: it must be an absolute path, e.g. `/var/www/app`"
                ));
            }
            if has_control(&text) {
                return Err(format!("`{name}` is {shown_path}: it cannot contain control characters (a newline, a tab)"));
            }
            if !text.starts_with('/') {
                return Err(format!(
                    "`{name}` is {shown_path}: it must be an absolute path (starting with `/`)"
                ));
            }
            if text.trim_end_matches('/').is_empty() {
                return Err(format!(
                    "`{name}` is {shown_path}: it cannot be the root directory"
                ));
            }
            if text.split('/').any(|part| part == "..") {
                return Err(format!("`{name}` is {shown_path}: it cannot contain `..`"));
            }
        }
        Kind::Reference => {
            let text = scalar_text(name, value)?;
            let Some(text) = expanded(name, &text, host, config)? else {
                return Ok(());
            };
            reference(&text).map_err(|why| {
                if text.is_empty() {
                    format!("`{name}` is empty: it must name a branch, tag or commit")
                } else {
                    bad(why)
                }
            })?;
        }
        Kind::Number { min, max } => {
            let number = whole_number(value).filter(|n| (min as i128..=max as i128).contains(n));
            if number.is_none() {
                return Err(bad(&format!(
                    "it must be a whole number from {min} to {max}"
                )));
            }
        }
        Kind::Boolean => {
            if value.is_array() || value.is_map() || config::boolean(value).is_err() {
                return Err(bad("it must be true or false"));
            }
        }
        Kind::Flag => {
            if !matches!(value.to_string().as_str(), "true" | "false") || value.is_array() {
                return Err(bad("it must be true or false"));
            }
        }
        Kind::Seconds { max, positive } => {
            let seconds = if value.is_array() || value.is_map() {
                None
            } else {
                config::seconds(value).ok()
            };
            let ok = seconds
                .is_some_and(|s| s.as_secs_f64() <= f64::from(max) && (!positive || !s.is_zero()));
            if !ok {
                let low = if positive { "more than 0" } else { "from 0" };
                return Err(bad(&format!(
                    "it must be a number of seconds {low} to {max}"
                )));
            }
        }
        Kind::OneOf(words) => {
            if value.is_array() || value.is_map() || !words.contains(&value.to_string().as_str()) {
                return Err(bad(&format!("it must be one of {}", words.join(", "))));
            }
        }
        Kind::ReleasePaths => {
            for item in list_items(name, value)? {
                let Some(item) = expanded(name, &item, host, config)? else {
                    continue;
                };
                if has_control(&item) {
                    return Err(format!(
                        "`{name}` entry `{}` cannot contain control characters (a newline, a tab)",
                        shown(&Dynamic::from(item))
                    ));
                }
                paths::inside_release(name, &item).map_err(|f| f.to_string())?;
            }
        }
        Kind::List => {
            for item in list_items(name, value)? {
                if has_control(&item) {
                    return Err(format!(
                        "`{name}` entry `{}` cannot contain control characters (a newline, a tab)",
                        shown(&Dynamic::from(item))
                    ));
                }
            }
        }
        Kind::ReleaseName => {
            let text = scalar_text(name, value)?;
            if text.is_empty() {
                return Err(format!(
                    "`{name}` is empty: it must name a release (`zdd releases` lists them)"
                ));
            }
            if has_control(&text)
                || text.contains('/')
                || text == "."
                || text == ".."
                || text.starts_with('-')
            {
                return Err(bad("it must be the name of a release under `releases/`"));
            }
        }
        Kind::Version => {
            let text = scalar_text(name, value)?;
            let ok = !text.is_empty()
                && text
                    .split('.')
                    .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit()));
            if !ok {
                return Err(bad(&format!(
                    "it must be a version such as {}",
                    setting.example
                )));
            }
        }
        Kind::HttpUrls => {
            for item in list_items(name, value)? {
                if let Err(why) = crate::system::http::check_url(&item) {
                    return Err(format!(
                        "`{name}` entry `{}` cannot be requested: {why}",
                        shown(&Dynamic::from(item))
                    ));
                }
            }
        }
        Kind::Waves => {
            crate::values::rollout::Waves::read(value)
                .map_err(|why| format!("`{name}` is `{}`: {why}", shown(value)))?;
        }
        Kind::Budget => {
            crate::values::rollout::budget(Some(value), 0)
                .map_err(|why| format!("`{name}` is `{}`: {why}", shown(value)))?;
        }
        Kind::HttpUrl => {
            let text = scalar_text(name, value)?;
            let Some(text) = expanded(name, &text, host, config)? else {
                return Ok(());
            };
            let lower = text.to_ascii_lowercase();
            if !text.is_empty()
                && ((!lower.starts_with("http://") && !lower.starts_with("https://"))
                    || text.chars().any(|c| c.is_control() || c == ' '))
            {
                return Err(bad(
                    "it must be empty or a URL starting with http:// or https://",
                ));
            }
        }
    }
    Ok(())
}

/// A value as a whole number, if it is one (an integer, or text of digits).
fn whole_number(value: &Dynamic) -> Option<i128> {
    if let Ok(i) = value.as_int() {
        return Some(i128::from(i));
    }
    if !value.is_string() {
        return None;
    }
    let text = value.to_string();
    let digits = text.strip_prefix('+').unwrap_or(&text);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Beyond any range in the table: clamp rather than overflow.
    Some(digits.parse::<i128>().unwrap_or(i128::MAX))
}

fn list_items(name: &str, value: &Dynamic) -> Result<Vec<String>, String> {
    if value.is_map() {
        return Err(format!("`{name}` is a map: it must be a list"));
    }
    if value.is_array() {
        let items = value.clone().into_array().unwrap_or_default();
        if let Some(item) = items.iter().find(|i| i.is_array() || i.is_map()) {
            return Err(format!(
                "`{name}` lists a {}: its entries must be text",
                kind_name(item)
            ));
        }
    }
    config::list(value).map_err(|e| format!("`{name}`: {e}"))
}

/// Whether `text` can name a branch, tag or commit (git's rules for ref names).
fn reference(text: &str) -> Result<(), &'static str> {
    if text.trim().is_empty() {
        return Err("it must name a branch, tag or commit");
    }
    if text.starts_with('-') {
        return Err("it cannot start with `-`");
    }
    let forbidden = |c: char| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(c);
    if text.chars().any(forbidden)
        || text.contains("..")
        || text.contains("@{")
        || text.contains("//")
        || text.starts_with('/')
        || text.ends_with('/')
        || text.ends_with('.')
        || text.ends_with(".lock")
    {
        return Err("a branch, tag or commit name has no spaces, control characters, `..`, `//`, `@{` or any of ~^:?*[\\");
    }
    Ok(())
}

/// Shared entries inside other shared entries: linking the inner one would act through the
/// outer one's link, into `shared/`.
fn overlapping_shared_entries(host: &str, config: &BTreeMap<String, Dynamic>) -> Vec<Problem> {
    let mut entries: Vec<(&str, String)> = Vec::new();
    for setting in ["shared_dirs", "shared_files"] {
        let Some(value) = config.get(setting) else {
            continue;
        };
        let Ok(items) = list_items(setting, value) else {
            continue;
        };
        for item in items {
            if let Ok(Some(item)) = expanded(setting, &item, host, config) {
                if let Ok(path) = paths::inside_release(setting, &item) {
                    entries.push((setting, path));
                }
            }
        }
    }
    let mut problems = Vec::new();
    for (index, (setting, path)) in entries.iter().enumerate() {
        for (other_index, (other_setting, other)) in entries.iter().enumerate() {
            if other_index == index {
                continue;
            }
            let message = if other == path && other_index < index {
                if other_setting == setting {
                    format!("`{setting}` lists `{path}` twice")
                } else {
                    format!("`{path}` is in both `{other_setting}` and `{setting}`")
                }
            } else if path.starts_with(&format!("{other}/")) {
                format!(
                    "`{setting}` entry `{path}` is inside `{other_setting}` entry `{other}`: it is already shared through `{other}`"
                )
            } else {
                continue;
            };
            problems.push(Problem {
                setting: setting.to_string(),
                host: None,
                message,
                hint: format!("remove `{path}` from `{setting}`: everything under a shared entry is shared with it"),
            });
            break;
        }
    }
    problems
}

/// Why an `-o` key is refused or worth a warning.
#[derive(Debug, PartialEq, Eq)]
pub enum OverrideProblem {
    /// A key zdd computes (`release_path`, ...).
    Computed,
    /// Read by nothing; `suggestion` is a close name that is read.
    Unread { suggestion: Option<String> },
}

/// Whether `-o key=...` is read: by zdd (the table), by the recipe or its hosts (`declared`),
/// or named in the source of the recipe or a module it imports (`"key"` or `{{key}}`).
pub fn check_override<'a>(
    key: &str,
    computed_keys: &[&str],
    declared: &BTreeSet<String>,
    sources: impl IntoIterator<Item = &'a str>,
) -> Result<(), OverrideProblem> {
    if computed_keys.contains(&key) {
        return Err(OverrideProblem::Computed);
    }
    if find(key).is_some() || declared.contains(key) {
        return Ok(());
    }
    let mut mentioned = BTreeSet::new();
    for text in sources {
        mentioned.extend(names_in(text));
    }
    if mentioned.contains(key) {
        return Ok(());
    }
    let candidates: Vec<&str> = SETTINGS
        .iter()
        .map(|s| s.name)
        .chain(declared.iter().map(String::as_str))
        .chain(
            mentioned
                .iter()
                .map(String::as_str)
                .filter(|n| !n.contains(':')),
        )
        .collect();
    Err(OverrideProblem::Unread {
        suggestion: crate::output::suggest::closest(key, candidates),
    })
}

/// The names a source text mentions: string literals that could be keys, and `{{key}}`s.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = template::keys(text).into_iter().collect();
    for quote in ['"', '`'] {
        for (index, piece) in text.split(quote).enumerate() {
            let could_be_key = !piece.is_empty()
                && piece
                    .chars()
                    .all(|c| c.is_alphanumeric() || "_-/:.".contains(c));
            if index % 2 == 1 && could_be_key {
                names.insert(piece.to_string());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, Dynamic)]) -> BTreeMap<String, Dynamic> {
        let mut map = config::defaults();
        map.insert("deploy_path".into(), Dynamic::from("/srv/app"));
        map.insert("repository".into(), Dynamic::from("/srv/git/app.git"));
        for (k, v) in pairs {
            map.insert(k.to_string(), v.clone());
        }
        map
    }

    /// The run's settings, with the tasks of a deploy declared.
    fn run(config: &BTreeMap<String, Dynamic>) -> RunSettings<'_> {
        RunSettings {
            config,
            tasks: vec![
                "deploy",
                "deploy:prepare",
                "deploy:update_code",
                "deploy:symlink",
                "deploy:cleanup",
            ],
            hosts: vec!["web1", "build1"],
        }
    }

    fn deploy_plan() -> Vec<String> {
        [
            "deploy",
            "deploy:prepare",
            "deploy:update_code",
            "deploy:cleanup",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn problems(pairs: &[(&str, Dynamic)]) -> Vec<String> {
        let config = config(pairs);
        let hosts = [HostSettings {
            host: "web1",
            config: &config,
        }];
        match validate(&run(&config), &hosts, Some("deploy"), &deploy_plan()) {
            Ok(()) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    fn text(s: &str) -> Dynamic {
        Dynamic::from(s.to_string())
    }

    fn list(items: &[&str]) -> Dynamic {
        Dynamic::from_array(items.iter().map(|s| text(s)).collect())
    }

    #[test]
    fn the_defaults_and_a_basic_recipe_pass() {
        assert_eq!(problems(&[]), Vec::<String>::new());
        assert_eq!(
            problems(&[
                ("branch", text("refs/heads/main")),
                ("keep_releases", text("3")),
                ("shared_dirs", list(&["storage", "bootstrap/cache"])),
                ("shared_files", list(&[".env"])),
                ("rollout_stagger", text("2s")),
                ("health_url", text("http://127.0.0.1/health")),
                ("deploy_path", text("/srv/{{host}}/app")),
            ]),
            Vec::<String>::new()
        );
    }

    #[test]
    fn health_urls_are_http_or_https() {
        for good in [
            "",
            "http://127.0.0.1/health",
            "https://app.example.com/health",
        ] {
            assert_eq!(
                problems(&[("health_url", text(good))]),
                Vec::<String>::new()
            );
        }
        assert_eq!(
            problems(&[("health_url", text("ftp://example.com"))]),
            ["`health_url` is `ftp://example.com`: it must be empty or a URL starting with http:// or https://"]
        );
    }

    #[test]
    fn numbers_are_whole_and_in_range() {
        for bad in [
            text("abc"),
            Dynamic::from_int(-1),
            Dynamic::from_float(1.5),
            text("99999999999999999999999"),
            Dynamic::from_int(0),
        ] {
            let found = problems(&[("keep_releases", bad.clone())]);
            assert_eq!(
                found,
                [format!(
                    "`keep_releases` is `{}`: it must be a whole number from 1 to 1000",
                    shown(&bad)
                )]
            );
        }
        assert!(problems(&[("keep_releases", Dynamic::from_int(1000))]).is_empty());
    }

    #[test]
    fn required_settings_depend_on_the_plan() {
        let mut config = config(&[]);
        config.remove("repository");
        config.remove("deploy_path");
        let hosts = [HostSettings {
            host: "web1",
            config: &config,
        }];
        let found = validate(&run(&config), &hosts, Some("deploy"), &deploy_plan()).unwrap_err();
        let names: Vec<&str> = found.iter().map(|p| p.setting.as_str()).collect();
        assert_eq!(names, ["deploy_path", "repository"]);
        // A task of the recipe's own needs neither.
        assert!(validate(&run(&config), &hosts, Some("show"), &["show".to_string()]).is_ok());
        // A rollback needs the deploy path only.
        let found = validate(
            &run(&config),
            &hosts,
            Some("rollback"),
            &["rollback".to_string()],
        )
        .unwrap_err();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].setting, "deploy_path");
    }

    #[test]
    fn deploy_paths_are_absolute_and_not_the_root() {
        assert_eq!(
            problems(&[("deploy_path", text("app"))]),
            ["`deploy_path` is `app`: it must be an absolute path (starting with `/`)"]
        );
        assert_eq!(
            problems(&[("deploy_path", text("//"))]),
            ["`deploy_path` is `//`: it cannot be the root directory"]
        );
        assert_eq!(
            problems(&[("deploy_path", text("{{current_path}}"))]),
            ["`deploy_path` refers to itself through `current_path`"]
        );
        assert_eq!(
            problems(&[("deploy_path", text("{{base}}/app")), ("base", text("srv"))]),
            ["`deploy_path` is `{{base}}/app` (expanded: `srv/app`): it must be an absolute path (starting with `/`)"]
        );
    }

    #[test]
    fn overlapping_shared_entries_are_refused() {
        assert_eq!(
            problems(&[("shared_dirs", list(&["storage"])), ("shared_files", list(&["storage/oauth-private.key"]))]),
            ["`shared_files` entry `storage/oauth-private.key` is inside `shared_dirs` entry `storage`: it is already shared through `storage`"]
        );
        assert_eq!(
            problems(&[("shared_dirs", list(&["storage", "storage/logs/"]))]),
            ["`shared_dirs` entry `storage/logs` is inside `shared_dirs` entry `storage`: it is already shared through `storage`"]
        );
        assert_eq!(
            problems(&[("shared_dirs", list(&["storage", "storage"]))]),
            ["`shared_dirs` lists `storage` twice"]
        );
        assert!(problems(&[("shared_dirs", list(&["storage", "storage2"]))]).is_empty());
    }

    #[test]
    fn a_problem_on_one_host_names_it() {
        let good = config(&[]);
        let bad = config(&[("keep_releases", text("x"))]);
        let hosts = [
            HostSettings {
                host: "web1",
                config: &good,
            },
            HostSettings {
                host: "web2",
                config: &bad,
            },
        ];
        let found = validate(&run(&good), &hosts, Some("deploy"), &deploy_plan()).unwrap_err();
        assert_eq!(
            found[0].to_string(),
            "host `web2`: `keep_releases` is `x`: it must be a whole number from 1 to 1000"
        );
    }

    #[test]
    fn the_runs_own_settings_are_checked_once() {
        // The recipe's value is what the runner reads, even where every host sets another.
        let recipe = config(&[("rollout_stagger", text("soon"))]);
        let host = config(&[("rollout_stagger", Dynamic::from_int(1))]);
        let hosts = [HostSettings {
            host: "web1",
            config: &host,
        }];
        let found = validate(&run(&recipe), &hosts, Some("deploy"), &deploy_plan()).unwrap_err();
        let expected = "`rollout_stagger` is `soon`: it must be a number of seconds from 0 to 3600";
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].to_string(), expected);
        // Bad on the hosts too, or on one of two: still one problem, named for the run.
        let other = config(&[]);
        let hosts = [
            HostSettings {
                host: "web1",
                config: &recipe,
            },
            HostSettings {
                host: "web2",
                config: &other,
            },
        ];
        let found = validate(&run(&recipe), &hosts, Some("deploy"), &deploy_plan()).unwrap_err();
        assert_eq!(
            found.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [expected]
        );
    }

    #[test]
    fn the_cutover_task_is_a_declared_task() {
        let found = |value: &str| {
            let config = config(&[("cutover_task", text(value))]);
            let hosts = [HostSettings {
                host: "web1",
                config: &config,
            }];
            match validate(&run(&config), &hosts, Some("deploy"), &deploy_plan()) {
                Ok(()) => Vec::new(),
                Err(problems) => problems
                    .iter()
                    .map(|p| format!("{p} / {}", p.hint))
                    .collect(),
            }
        };
        assert!(found("deploy:symlink").is_empty());
        assert_eq!(
            found("deploy:symlnk"),
            ["`cutover_task` is `deploy:symlnk`: the recipe declares no task of that name / did you mean `deploy:symlink`?"]
        );
    }

    #[test]
    fn build_on_names_a_place_the_recipe_knows() {
        let found = |value: &str| {
            let config = config(&[("build_on", text(value))]);
            let hosts = [HostSettings {
                host: "web1",
                config: &config,
            }];
            match validate(&run(&config), &hosts, Some("deploy"), &deploy_plan()) {
                Ok(()) => Vec::new(),
                Err(problems) => problems.iter().map(|p| p.to_string()).collect(),
            }
        };
        for good in ["hosts", "local", "build1", "web1"] {
            assert!(found(good).is_empty(), "{good}");
        }
        assert_eq!(
            found("buildbox"),
            ["`build_on` is `buildbox`: not `hosts`, `local`, nor a host the recipe declares"]
        );
        assert_eq!(found("-local").len(), 1);
    }

    #[test]
    fn overrides_read_by_nothing() {
        let declared: BTreeSet<String> = ["greeting".to_string()].into();
        let source = "task(\"show\", || { run(\"echo {{message}}\"); let d = get(\"dirs\"); });";
        let check = |key: &str| check_override(key, &["release_path"], &declared, [source]);
        assert_eq!(check("branch"), Ok(()));
        assert_eq!(check("greeting"), Ok(()));
        assert_eq!(check("message"), Ok(()));
        assert_eq!(check("dirs"), Ok(()));
        assert_eq!(check("release_path"), Err(OverrideProblem::Computed));
        assert_eq!(
            check("branhc"),
            Err(OverrideProblem::Unread {
                suggestion: Some("branch".into())
            })
        );
        assert_eq!(
            check("frobnicate"),
            Err(OverrideProblem::Unread { suggestion: None })
        );
    }

    /// Every key zdd reads through the context (`ctx.text("...")`, ...) or a recipe reads with
    /// `get("...")` is in the table: a new setting cannot skip validation.
    #[test]
    fn every_key_zdd_reads_is_in_the_table() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        for dir in ["src", "stdlib", "recipes"] {
            collect(&root.join(dir), &mut files);
        }
        assert!(files.len() > 20, "the source tree was not found");
        let readers = [
            "ctx.text(\"",
            ".text_or(\"",
            "ctx.count(\"",
            "ctx.boolean(\"",
            "ctx.list(\"",
            "ctx.value(\"",
            "seconds(ctx, \"",
            "config.get(\"",
            "global.get(\"",
            "count(\"",
        ];
        let mut missing = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap_or_default();
            let is_rhai = file.extension().is_some_and(|e| e == "rhai");
            let patterns: &[&str] = if is_rhai { &["get(\""] } else { &readers };
            for pattern in patterns {
                for piece in text.split(pattern).skip(1) {
                    let key = piece.split('"').next().unwrap_or_default();
                    seen.insert(key.to_string());
                    let known = find(key).is_some()
                        || crate::primitives::host_context::COMPUTED_KEYS.contains(&key);
                    if !known && !key.is_empty() {
                        missing.insert(format!("{key} ({})", file.display()));
                    }
                }
            }
        }
        for key in [
            "keep_releases",
            "health_host",
            "rollout_stagger",
            "migrate",
            "port",
        ] {
            assert!(seen.contains(key), "the scan did not see `{key}`");
        }
        assert!(
            missing.is_empty(),
            "read but not in settings::SETTINGS: {missing:?}"
        );
    }

    fn collect(dir: &std::path::Path, files: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect(&path, files);
            } else if path.extension().is_some_and(|e| e == "rs" || e == "rhai")
                && !path.ends_with("settings.rs")
            {
                files.push(path);
            }
        }
    }
}
