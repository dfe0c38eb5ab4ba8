//! `zdd doctor RECIPE`: checks, per host, what zero downtime needs, and says how to fix what
//! is missing. Doctor only reads: it never changes anything on a host.
//!
//! One check per file: `nginx` ($realpath_root), `php_fpm` (process_control_timeout),
//! `opcache`, `shared_files`, `writable_dirs`, `disk`, `lock`; SSH reachability is the
//! connection itself (an unreachable host is a finding for that host, not a crash). The
//! configs of the running nginx and php-fpm are found from their master processes
//! (`processes`), unless `nginx_config` / `fpm_config` name them.
//!
//! Output: per host, one line per finding (`ok`, `warning`, `problem`) with a `fix:` line
//! under each that is not ok; `--json`: one object per finding per line. Exit code 1 when any
//! host has a problem (warnings allowed).

mod disk;
mod finding;
mod fpm_config;
mod include_files;
mod layout;
mod lock;
mod nginx;
mod nginx_config;
mod opcache;
mod php_fpm;
mod processes;
mod shared_files;
mod writable_dirs;

use std::path::Path;
use std::sync::Arc;

use crate::cli::error::Error;
use crate::output::failure::Failure;
use crate::output::reporter::Reporter;
use crate::primitives::host_context::{Deployment, HostContext};
use crate::registry::Host;
use crate::run::host_setup;
use crate::script::Recipe;
use crate::transport::ssh;
use crate::values::quote;

pub use finding::{Finding, Status};

/// Check every host (in parallel), print the findings in host order, and fail (exit 1) when
/// any is a problem.
pub fn run(recipe: &Recipe, hosts: &[Host], json: bool) -> Result<(), Error> {
    let control = ssh::control_directory().map_err(|e| Error::Failed {
        message: format!("{e:#}"),
        hint: None,
    })?;
    let reports: Vec<Vec<Finding>> = std::thread::scope(|scope| {
        let handles: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(index, host)| {
                let control = control.path();
                scope.spawn(move || diagnose(recipe, host, index, control))
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    vec![Finding::problem(
                        "doctor",
                        "doctor crashed while checking this host",
                        "report this as a bug in zdd",
                    )]
                })
            })
            .collect()
    });
    let mut troubled = Vec::new();
    let mut problems = 0;
    for (host, findings) in hosts.iter().zip(&reports) {
        if json {
            print!("{}", finding::render_json(&host.name, findings));
        } else {
            print!("{}", finding::render_text(&host.name, findings));
        }
        let count = findings
            .iter()
            .filter(|f| f.status == Status::Problem)
            .count();
        if count > 0 {
            problems += count;
            troubled.push(format!("`{}`", host.name));
        }
    }
    if problems == 0 {
        return Ok(());
    }
    Err(Error::Failed {
        message: format!(
            "doctor found {problems} problem{} on {}",
            if problems == 1 { "" } else { "s" },
            troubled.join(", ")
        ),
        hint: None,
    })
}

/// Every finding for one host: connect, then run each check.
fn diagnose(recipe: &Recipe, host: &Host, index: usize, control: &Path) -> Vec<Finding> {
    let deployment = Arc::new(Deployment::new(&recipe.path));
    let connection_check = if host.local { "host" } else { "ssh" };
    let connected = match host_setup::connect(
        recipe,
        host,
        index,
        control,
        Arc::new(Reporter::silent()),
        deployment,
        true,
    ) {
        Ok(connected) => connected,
        Err(message) => {
            return vec![Finding::problem(
                connection_check,
                message,
                "check the host's settings (hostname, port, remote_user, identity_file, config_file) and that `ssh` reaches it",
            )]
        }
    };
    let mut findings = Vec::new();
    if !host.local {
        let target = host_setup::ssh_target(host, &connected.context.config)
            .map(|t| t.describe())
            .unwrap_or_else(|_| host.name.clone());
        findings.push(Finding::ok("ssh", format!("reachable over SSH ({target})")));
    }
    findings.extend(checks(&connected.context));
    if let Some(ssh) = connected.ssh {
        ssh.close();
    }
    findings
}

fn checks(ctx: &HostContext) -> Vec<Finding> {
    let deploy_path = match ctx.deploy_path() {
        Ok(path) => path,
        Err(failure) => {
            return vec![Finding::problem(
                "deploy_path",
                failure.to_string(),
                failure.hint.unwrap_or_else(|| {
                    "set `deploy_path` in the recipe or with `-o deploy_path=...`".to_string()
                }),
            )]
        }
    };
    let mut deploy_paths = vec![deploy_path.clone()];
    if let Some(resolved) = resolved_path(ctx, &deploy_path) {
        if resolved != deploy_path {
            deploy_paths.push(resolved);
        }
    }
    let masters = processes::scan(ctx).unwrap_or_default();
    let mut findings = Vec::new();
    let (nginx_findings, nginx) = nginx::check(ctx, &masters, &deploy_paths);
    findings.extend(nginx_findings);
    let (fpm_findings, fpm) = php_fpm::check(ctx, &masters, &nginx, &deploy_paths);
    findings.extend(fpm_findings);
    findings.extend(opcache::check(ctx, &fpm, &nginx));
    findings.extend(guarded("shared_files", shared_files::check(ctx)));
    findings.extend(guarded("writable_dirs", writable_dirs::check(ctx)));
    findings.extend(guarded("disk", disk::check(ctx)));
    findings.extend(guarded("layout", layout::check(ctx)));
    findings.extend(guarded("lock", lock::check(ctx)));
    findings
}

/// A check that could not run is a warning saying why.
fn guarded(check: &'static str, result: Result<Vec<Finding>, Failure>) -> Vec<Finding> {
    result.unwrap_or_else(|failure| {
        vec![Finding::warning(
            check,
            format!("cannot check: {failure}"),
            failure
                .hint
                .clone()
                .unwrap_or_else(|| "check that the deploy user can read `deploy_path`".to_string()),
        )]
    })
}

/// deploy_path with symlinks resolved (nginx may name either), when it exists.
fn resolved_path(ctx: &HostContext, deploy_path: &str) -> Option<String> {
    // A deploy_path that does not exist fails `cd` (its words on stderr, not read): `None`.
    let script = quote::join(
        &[
            quote::command(&["cd", "-P", "--", deploy_path]).ok()?,
            quote::command(&["pwd", "-P"]).ok()?,
        ],
        quote::Joiner::And,
    );
    let output = ctx.transport.exec(&script, None, &script, None).ok()?;
    Some(output.stdout.trim_end_matches('\n').to_string()).filter(|p| !p.is_empty())
}
