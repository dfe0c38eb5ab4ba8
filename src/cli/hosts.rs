//! `zdd hosts RECIPE`: the hosts, their roles, the settings each gets and where each came from
//! (the recipe's `set`, the host's `.set`, an inventory's file and line, `-o`, zdd's default
//! with `-v`). Connection settings first; secret values redacted. `--json`: one object a host.

use std::collections::BTreeMap;

use rhai::Dynamic;

use crate::cli::arguments::Common;
use crate::cli::error::Error;
use crate::output::secrets::{Secrets, REDACTED};
use crate::registry::Host;
use crate::run::host_setup;
use crate::script::Recipe;
use crate::values::config;

/// Shown first, in this order: how zdd reaches the host, then where it deploys.
const FIRST: &[&str] = &[
    "hostname",
    "port",
    "remote_user",
    "identity_file",
    "config_file",
    "ssh_arguments",
    "forward_agent",
    "deploy_path",
];

/// One setting of one host, as shown.
struct Shown {
    key: String,
    value: Dynamic,
    source: String,
}

pub fn run(recipe: &Recipe, common: &Common) -> Result<(), Error> {
    let hosts = crate::cli::subcommand::select_hosts(recipe, common)?;
    let secrets = recipe.runtime.reporter.secrets().clone();
    let mut out = String::new();
    for host in &hosts {
        let settings = settings(recipe, host, common.verbose > 0);
        if common.json {
            out.push_str(&json_line(host, &settings, &secrets));
            out.push('\n');
        } else {
            text_block(&mut out, host, &settings, &secrets);
        }
    }
    print!("{out}");
    Ok(())
}

/// A host's settings, each with its source; zdd's defaults only when `defaults`.
fn settings(recipe: &Recipe, host: &Host, defaults: bool) -> Vec<Shown> {
    let merged = host_setup::merged_config(recipe, Some(host));
    let zdd = config::defaults();
    let overrides = &recipe.runtime.overrides;
    let registry = &recipe.registry;
    let mut shown = Vec::new();
    for (key, value) in merged {
        if key == "roles" {
            continue;
        }
        let source = if overrides.contains_key(&key) {
            "-o".to_string()
        } else if host.config.contains_key(&key) {
            host.sources
                .get(&key)
                .cloned()
                .unwrap_or_else(|| "host".to_string())
        } else if registry.config.contains_key(&key) {
            match registry.config_sources.get(&key) {
                Some(origin) => format!("{origin} (set)"),
                None => "recipe".to_string(),
            }
        } else if zdd.contains_key(&key) {
            if !defaults {
                continue;
            }
            "zdd default".to_string()
        } else {
            "recipe".to_string()
        };
        shown.push(Shown { key, value, source });
    }
    let rank = |key: &str| FIRST.iter().position(|k| *k == key).unwrap_or(FIRST.len());
    shown.sort_by(|a, b| rank(&a.key).cmp(&rank(&b.key)).then(a.key.cmp(&b.key)));
    shown
}

/// A value as text: a list as `[a, b]`, a secret key's value as `[secret]` whatever its length.
fn text(key: &str, value: &Dynamic, secrets: &Secrets) -> String {
    if secrets.is_secret(key) {
        return REDACTED.to_string();
    }
    let shown = if value.is_array() {
        let items: Vec<String> = value
            .clone()
            .into_array()
            .unwrap_or_default()
            .iter()
            .map(|item| item.to_string())
            .collect();
        format!("[{}]", items.join(", "))
    } else {
        value.to_string()
    };
    secrets.redact(&shown).into_owned()
}

fn text_block(out: &mut String, host: &Host, settings: &[Shown], secrets: &Secrets) {
    let roles = host.roles();
    let mut title = host.name.clone();
    if host.local {
        title.push_str(" (local)");
    }
    if !roles.is_empty() {
        title.push_str(&format!("  roles: {}", roles.join(", ")));
        if let Some(source) = host.sources.get("roles").filter(|s| !s.is_empty()) {
            title.push_str(&format!("  ({source})"));
        }
    }
    out.push_str(&secrets.redact(&title));
    out.push('\n');
    let values: Vec<String> = settings
        .iter()
        .map(|s| text(&s.key, &s.value, secrets))
        .collect();
    let key_width = settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
    // Long values do not push every source far right: they are capped in the alignment.
    let value_width = values
        .iter()
        .map(|v| v.chars().count())
        .max()
        .unwrap_or(0)
        .min(40);
    for (setting, value) in settings.iter().zip(&values) {
        let line = format!(
            "  {:<key_width$}  {:<value_width$}  {}",
            setting.key, value, setting.source
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
}

fn json_value(value: &Dynamic) -> serde_json::Value {
    if let Ok(b) = value.as_bool() {
        return serde_json::Value::Bool(b);
    }
    if let Ok(i) = value.as_int() {
        return serde_json::Value::from(i);
    }
    if let Ok(x) = value.as_float() {
        return serde_json::Value::from(x);
    }
    if value.is_unit() {
        return serde_json::Value::Null;
    }
    if value.is_array() {
        let items = value.clone().into_array().unwrap_or_default();
        return serde_json::Value::Array(items.iter().map(json_value).collect());
    }
    serde_json::Value::String(value.to_string())
}

fn json_line(host: &Host, settings: &[Shown], secrets: &Secrets) -> String {
    let mut values = serde_json::Map::new();
    let mut sources = BTreeMap::new();
    for setting in settings {
        let value = if secrets.is_secret(&setting.key) {
            serde_json::Value::String(REDACTED.to_string())
        } else {
            json_value(&setting.value)
        };
        values.insert(setting.key.clone(), value);
        sources.insert(setting.key.clone(), setting.source.clone());
    }
    let mut line = serde_json::json!({
        "host": host.name,
        "local": host.local,
        "roles": host.roles(),
        "roles_source": host.sources.get("roles"),
        "settings": values,
        "sources": sources,
    });
    secrets.redact_json(&mut line);
    line.to_string()
}
