//! A declared host becomes a running context: its merged configuration and its transport
//! (local, or SSH from `hostname`, `port`, `remote_user`, `identity_file`, `config_file`,
//! `ssh_arguments`, `forward_agent`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rhai::Dynamic;

use crate::output::reporter::Reporter;
use crate::primitives::host_context::{Deployment, HostContext};
use crate::registry::Host;
use crate::run::step_caller::StepCaller;
use crate::transport::ssh::{self, Target};
use crate::transport::{Local, Ssh, Transport};
use crate::values::config;

/// Defaults < recipe `set` < host `.set` < `-o`.
pub fn merged_config(recipe: &dyn StepCaller, host: Option<&Host>) -> BTreeMap<String, Dynamic> {
    let mut merged = config::defaults();
    merged.extend(recipe.registry().config.clone());
    if let Some(host) = host {
        merged.extend(host.config.clone());
    }
    merged.extend(recipe.overrides().clone());
    merged
}

/// How to reach `host` over SSH, from its settings.
pub fn ssh_target(host: &Host, config: &BTreeMap<String, Dynamic>) -> Result<Target, String> {
    let text = |key: &str| -> Result<Option<String>, String> {
        match config.get(key) {
            None => Ok(None),
            Some(v) if v.is_unit() => Ok(None),
            Some(v) => config::text(v)
                .map(|t| Some(t).filter(|t| !t.is_empty()))
                .map_err(|e| format!("host `{}`: `{key}`: {e}", host.name)),
        }
    };
    let port = match config.get("port") {
        None => None,
        Some(v) => Some(
            config::count(v)
                .ok()
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| {
                    format!(
                        "host `{}`: `port` must be a port number, not `{v}`",
                        host.name
                    )
                })?,
        ),
    };
    let extra_arguments = match config.get("ssh_arguments") {
        None => Vec::new(),
        Some(v) => {
            config::list(v).map_err(|e| format!("host `{}`: `ssh_arguments`: {e}", host.name))?
        }
    };
    let forward_agent = match config.get("forward_agent") {
        None => false,
        Some(v) => {
            config::boolean(v).map_err(|e| format!("host `{}`: `forward_agent`: {e}", host.name))?
        }
    };
    let hostname = text("hostname")?.unwrap_or_else(|| host.name.clone());
    if hostname.starts_with('-') {
        return Err(format!(
            "host `{}`: `hostname` cannot start with `-`",
            host.name
        ));
    }
    Ok(Target {
        hostname,
        user: text("remote_user")?,
        port,
        identity_file: text("identity_file")?,
        config_file: text("config_file")?,
        forward_agent,
        extra_arguments,
    })
}

/// A connected host. `control_directory` holds the SSH control sockets of this run.
pub struct Connected {
    pub context: HostContext,
    /// Closed at the end of the run.
    pub ssh: Option<Arc<Ssh>>,
}

/// Connect to `host`. With `wait`, an SSH host is waited for (an unreachable host is an error
/// here); without, its first answer waits, one round trip less (the runner does this when
/// the run has one host: nothing can change anywhere before that first answer).
pub fn connect(
    recipe: &dyn StepCaller,
    host: &Host,
    index: usize,
    control_directory: &Path,
    reporter: Arc<Reporter>,
    deployment: Arc<Deployment>,
    wait: bool,
) -> Result<Connected, String> {
    let config = merged_config(recipe, Some(host));
    let (transport, ssh): (Arc<dyn Transport>, Option<Arc<Ssh>>) = if host.local {
        (Arc::new(Local::new().map_err(|e| format!("{e:#}"))?), None)
    } else {
        let target = ssh_target(host, &config)?;
        let ssh = Ssh::start(
            &host.name,
            &target,
            &ssh::control_path(control_directory, index),
            reporter.secrets().clone(),
        )
        .and_then(|ssh| {
            if wait {
                ssh.wait_ready()?;
            }
            Ok(ssh)
        })
        .map_err(|e| format!("{e:#} (ssh {})", target.describe()))?;
        let ssh = Arc::new(ssh);
        (ssh.clone(), Some(ssh))
    };
    Ok(Connected {
        context: HostContext::new(host.name.clone(), transport, config, deployment, reporter),
        ssh,
    })
}
