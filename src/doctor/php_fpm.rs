//! Check: php-fpm's `process_control_timeout` is above 0, so a reload (SIGUSR2) lets the
//! requests in flight finish. Read exactly as `reload_fpm()` reads it
//! (`primitives::php_fpm`), so doctor says what the deploy will do.
//!
//! Which php-fpm, first match wins:
//! 1. `fpm_config`;
//! 2. the master named by `fpm_pid_file`, when it runs (what `reload_fpm()` signals);
//! 3. the running master with a pool listening where nginx sends PHP for deploy_path
//!    (the `fastcgi_pass` of the config the nginx check chose);
//! 4. the running master whose config mentions deploy_path;
//! 5. the only running master;
//! 6. with no master running, `/etc/php/{{php_version}}/fpm/php-fpm.conf` if it exists.
//!
//! Several masters and none related is a warning that names their configs.

use super::finding::Finding;
use super::fpm_config::{self, FpmConfig, Pool};
use super::nginx::{self, NginxFacts};
use super::processes::Masters;
use crate::primitives::host_context::HostContext;
use crate::primitives::php_fpm;

const CHECK: &str = "php-fpm";

/// What the php-fpm check learned, for the OPcache check.
#[derive(Debug, Clone, Default)]
pub struct FpmFacts {
    pub config: Option<FpmConfig>,
    /// The master running that config, when one does.
    pub master: Option<u32>,
    /// Whether a reload is graceful (`process_control_timeout` > 0); `None` when unknown.
    pub graceful: Option<bool>,
    /// The pools nginx sends PHP to; every pool when none matches.
    pub pools: Vec<Pool>,
}

enum Choice {
    Found { path: String, master: Option<u32> },
    Ambiguous(Vec<String>),
    Missing(String),
}

pub fn check(
    ctx: &HostContext,
    masters: &Masters,
    nginx: &NginxFacts,
    deploy_paths: &[String],
) -> (Vec<Finding>, FpmFacts) {
    let mut facts = FpmFacts::default();
    let explicit = matches!(ctx.value("fpm_config"), Ok(Some(_)));
    let (path, master) = match choose(ctx, masters, nginx, deploy_paths, explicit) {
        Choice::Found { path, master } => (path, master),
        Choice::Ambiguous(configs) => {
            let finding = Finding::warning(
                CHECK,
                format!(
                    "{} php-fpm masters run and none serves this app for sure: {}",
                    configs.len(),
                    configs
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "set `fpm_config` (or `fpm_pid_file`) to this app's php-fpm",
            );
            return (vec![finding], facts);
        }
        Choice::Missing(message) => {
            let finding = Finding::warning(
                CHECK,
                message,
                "if php-fpm serves this app, set `fpm_config` to its php-fpm.conf",
            );
            return (vec![finding], facts);
        }
    };
    facts.master = master;
    let config = match fpm_config::load(ctx.transport.as_ref(), &path) {
        Ok(Some(config)) => config,
        Ok(None) if explicit => {
            let finding = Finding::problem(
                CHECK,
                format!("`fpm_config` is `{path}`, which does not exist"),
                "set `fpm_config` to the php-fpm.conf the running master uses (`ps -o args -C php-fpm8.2` shows it)",
            );
            return (vec![finding], facts);
        }
        Ok(None) => {
            let finding = Finding::warning(
                CHECK,
                format!("php-fpm's config `{path}` does not exist"),
                "set `fpm_config` to the php-fpm.conf the running master uses",
            );
            return (vec![finding], facts);
        }
        Err(error) => {
            let finding = Finding::warning(
                CHECK,
                format!("cannot read php-fpm's config: {error}"),
                "check that the deploy user can read it, or set `fpm_config`",
            );
            return (vec![finding], facts);
        }
    };
    let timeout = php_fpm::parse_process_control_timeout(&config.text);
    facts.graceful = Some(timeout > 0);
    let serving: Vec<Pool> = config
        .pools
        .iter()
        .filter(|pool| serves_nginx(pool, nginx))
        .cloned()
        .collect();
    facts.pools = if serving.is_empty() {
        config.pools.clone()
    } else {
        serving
    };
    facts.config = Some(config);
    let finding = if timeout > 0 {
        Finding::ok(
            CHECK,
            format!("php-fpm process_control_timeout is {timeout} s: a reload lets requests in flight finish ({path})"),
        )
    } else {
        Finding::problem(
            CHECK,
            format!("php-fpm process_control_timeout is 0: a reload cuts requests in flight ({path})"),
            format!(
                "set `process_control_timeout = 10s` in the [global] section of {path} and reload php-fpm once; until then zdd skips reloads (fpm_reload = auto)"
            ),
        )
    };
    (vec![finding], facts)
}

fn serves_nginx(pool: &Pool, nginx: &NginxFacts) -> bool {
    pool.listen.as_deref().is_some_and(|listen| {
        nginx
            .fastcgi_targets
            .iter()
            .any(|target| fpm_config::same_address(listen, target))
    })
}

fn choose(
    ctx: &HostContext,
    masters: &Masters,
    nginx: &NginxFacts,
    deploy_paths: &[String],
    explicit: bool,
) -> Choice {
    let master_of = |path: &str| {
        masters
            .php_fpm
            .iter()
            .find(|m| m.config.as_deref() == Some(path))
            .map(|m| m.pid)
    };
    if explicit {
        return match php_fpm::config_path(ctx, None) {
            Some(path) => Choice::Found {
                master: master_of(&path),
                path,
            },
            None => Choice::Missing("`fpm_config` cannot be read as a path".to_string()),
        };
    }
    if matches!(ctx.value("fpm_pid_file"), Ok(Some(_))) {
        if let Ok(pid) = php_fpm::master_pid(ctx) {
            if let Some(master) = masters
                .php_fpm
                .iter()
                .find(|m| i64::from(m.pid) == i64::from(pid))
            {
                if let Some(path) = &master.config {
                    return Choice::Found {
                        path: path.clone(),
                        master: Some(master.pid),
                    };
                }
            }
        }
    }
    let running: Vec<(u32, String)> = masters
        .php_fpm
        .iter()
        .filter_map(|m| m.config.clone().map(|c| (m.pid, c)))
        .collect();
    let loaded: Vec<(u32, String, Option<FpmConfig>)> = running
        .iter()
        .map(|(pid, path)| {
            let config = fpm_config::load(ctx.transport.as_ref(), path)
                .ok()
                .flatten();
            (*pid, path.clone(), config)
        })
        .collect();
    let pick = |related: Vec<&(u32, String, Option<FpmConfig>)>| -> Option<Choice> {
        match related.as_slice() {
            [] => None,
            [(pid, path, _)] => Some(Choice::Found {
                path: path.clone(),
                master: Some(*pid),
            }),
            several => Some(Choice::Ambiguous(
                several.iter().map(|(_, path, _)| path.clone()).collect(),
            )),
        }
    };
    let by_socket = loaded
        .iter()
        .filter(|(_, _, config)| {
            config
                .as_ref()
                .is_some_and(|c| c.pools.iter().any(|pool| serves_nginx(pool, nginx)))
        })
        .collect();
    if let Some(choice) = pick(by_socket) {
        return choice;
    }
    let by_path = loaded
        .iter()
        .filter(|(_, _, config)| {
            config
                .as_ref()
                .is_some_and(|c| nginx::under(&c.text, deploy_paths))
        })
        .collect();
    if let Some(choice) = pick(by_path) {
        return choice;
    }
    if let Some(choice) = pick(loaded.iter().collect()) {
        return choice;
    }
    let version = ctx
        .text_or("php_version", "8.2")
        .unwrap_or_else(|_| "8.2".to_string());
    let default = format!("/etc/php/{version}/fpm/php-fpm.conf");
    if ctx.transport.exists(&default).unwrap_or(false) {
        Choice::Found {
            path: default,
            master: None,
        }
    } else {
        Choice::Missing(format!(
            "php-fpm is not running and `{default}` does not exist"
        ))
    }
}
