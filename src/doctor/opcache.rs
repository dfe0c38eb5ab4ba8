//! Check (informational): OPcache in php-fpm, `opcache.enable` and
//! `opcache.validate_timestamps`. With validate_timestamps=0 (production's choice) php-fpm
//! never sees a changed file again: a new release is served only because its files have new
//! paths (nginx passes `$realpath_root`) or because php-fpm is reloaded. That is a warning only
//! when neither holds.
//!
//! The values: the pool's `php_admin_value`/`php_value` (pools nginx sends PHP to), else what
//! `php-fpm -i` reports from php.ini (the running master's binary, from `/proc/PID/exe`).
//! Flags given to the master with `-d` are not visible and are not read.

use std::collections::BTreeMap;

use super::finding::Finding;
use super::nginx::NginxFacts;
use super::php_fpm::FpmFacts;
use crate::primitives::host_context::HostContext;
use crate::values::quote;

const CHECK: &str = "opcache";

/// The settings read, with PHP's defaults.
const SETTINGS: [(&str, &str); 3] = [
    ("opcache.enable", "1"),
    ("opcache.validate_timestamps", "1"),
    ("opcache.revalidate_freq", "2"),
];

pub fn check(ctx: &HostContext, fpm: &FpmFacts, nginx: &NginxFacts) -> Vec<Finding> {
    let base = match php_ini(ctx, fpm) {
        Ok(base) => base,
        Err(error) => {
            return vec![Finding::warning(
                CHECK,
                format!("cannot read php-fpm's PHP settings: {error}"),
                "check that php-fpm is installed (and `php_version` names its version)",
            )]
        }
    };
    if !base.contains_key("opcache.enable") {
        return vec![Finding::ok(
            CHECK,
            "OPcache is not loaded in php-fpm: every request compiles PHP afresh",
        )];
    }
    // (enable, validate_timestamps, revalidate_freq) -> the pools with those values.
    let mut groups: BTreeMap<(bool, bool, String), Vec<String>> = BTreeMap::new();
    let value = |pool: Option<&super::fpm_config::Pool>, key: &str, default: &str| -> String {
        pool.and_then(|p| p.php_settings.get(key))
            .or_else(|| base.get(key))
            .cloned()
            .unwrap_or_else(|| default.to_string())
    };
    let settings = |pool| {
        (
            on(&value(pool, SETTINGS[0].0, SETTINGS[0].1)),
            on(&value(pool, SETTINGS[1].0, SETTINGS[1].1)),
            value(pool, SETTINGS[2].0, SETTINGS[2].1),
        )
    };
    if fpm.pools.is_empty() {
        groups.insert(settings(None), Vec::new());
    }
    for pool in &fpm.pools {
        groups
            .entry(settings(Some(pool)))
            .or_default()
            .push(pool.name.clone());
    }
    groups
        .into_iter()
        .map(|((enable, validate, frequency), pools)| {
            let label = match pools.as_slice() {
                [] => "php.ini".to_string(),
                [one] => format!("pool `{one}`"),
                many => format!(
                    "pools {}",
                    many.iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            finding(enable, validate, &frequency, &label, fpm, nginx)
        })
        .collect()
}

fn finding(
    enable: bool,
    validate: bool,
    frequency: &str,
    label: &str,
    fpm: &FpmFacts,
    nginx: &NginxFacts,
) -> Finding {
    if !enable {
        return Finding::ok(
            CHECK,
            format!(
                "OPcache is off (opcache.enable=0, {label}): nothing is cached across releases"
            ),
        );
    }
    if validate {
        return Finding::ok(
            CHECK,
            format!("OPcache is on and re-checks changed files every {frequency} s (validate_timestamps=1, {label})"),
        );
    }
    let never = format!("OPcache is on and never re-checks files (validate_timestamps=0, {label})");
    if nginx.realpath_root == Some(true) {
        Finding::ok(
            CHECK,
            format!("{never}: a new release is served because nginx passes $realpath_root (its files have new paths)"),
        )
    } else if fpm.graceful == Some(true) {
        Finding::ok(
            CHECK,
            format!("{never}: a new release is served because zdd reloads php-fpm after the swap"),
        )
    } else {
        Finding::warning(
            CHECK,
            format!("{never}: with neither $realpath_root from nginx nor a graceful php-fpm reload, php-fpm keeps serving the old release's code"),
            "pass $realpath_root from nginx, or set php-fpm's process_control_timeout above 0 so zdd reloads php-fpm after each deploy",
        )
    }
}

fn on(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "on" | "yes" | "true"
    )
}

/// The OPcache settings php.ini gives php-fpm: `opcache.x => local => master` lines of
/// `php-fpm -i`; empty when OPcache is not loaded.
fn php_ini(ctx: &HostContext, fpm: &FpmFacts) -> Result<BTreeMap<String, String>, String> {
    let binary = binary(ctx, fpm)?;
    let command = quote::command(&[binary.as_str(), "-i"]).map_err(|e| e.to_string())?;
    let output = ctx
        .transport
        .exec(&command, None, &command, None)
        .map_err(|e| e.to_string())?;
    Ok(parse_info(&output.stdout))
}

fn binary(ctx: &HostContext, fpm: &FpmFacts) -> Result<String, String> {
    if let Some(pid) = fpm.master {
        if let Ok(Some(exe)) = ctx.transport.read_link(&format!("/proc/{pid}/exe")) {
            let exe = exe.trim_end_matches(" (deleted)").to_string();
            if ctx.transport.exists(&exe).unwrap_or(false) {
                return Ok(exe);
            }
        }
    }
    let version = ctx.text_or("php_version", "8.2").unwrap_or_default();
    for name in [format!("php-fpm{version}"), "php-fpm".to_string()] {
        if let Ok(Some(path)) = ctx.transport.find_program(&name) {
            return Ok(path);
        }
        for dir in ["/usr/sbin", "/usr/local/sbin"] {
            let path = format!("{dir}/{name}");
            if ctx.transport.exists(&path).unwrap_or(false) {
                return Ok(path);
            }
        }
    }
    Err(format!(
        "no php-fpm{version} or php-fpm program on the host"
    ))
}

fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(" => ");
            let key = parts.next()?.trim();
            let local = parts.next()?.trim();
            SETTINGS
                .iter()
                .any(|(name, _)| *name == key)
                .then(|| (key.to_string(), local.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_php_info() {
        let info = "opcache.enable => On => On\nopcache.enable_cli => Off => Off\nopcache.validate_timestamps => Off => On\nopcache.revalidate_freq => 2 => 2\n";
        assert_eq!(
            parse_info(info),
            BTreeMap::from([
                ("opcache.enable".to_string(), "On".to_string()),
                ("opcache.revalidate_freq".to_string(), "2".to_string()),
                ("opcache.validate_timestamps".to_string(), "Off".to_string()),
            ])
        );
    }
}
