//! The recipe language's declarations: `localhost`, `host` (and a host's `.set`), `inventory`, `task`,
//! `desc`, `once`, `before`, `after`, `fail`, `quote`, and the values of the top level (what
//! `set`, `add`, `get`, `has` and `secret` read and write there: [`declared_value`],
//! [`declare_value`]). These read and fill the registry only; nothing here reads a host (inside
//! a task, `value_bindings` asks the running host's context instead).

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, NativeCallContext};

use super::{into_script_error, Runtime};
use crate::output::failure::Failure;
use crate::primitives::host_context::COMPUTED_KEYS;
use crate::registry::{HookKind, HookTarget, Origin, TaskBody};
use crate::values::config;

pub type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// Where the function being called was called from.
fn origin(ctx: &NativeCallContext) -> Origin {
    let position = ctx.call_position();
    Origin {
        source: ctx.call_source().unwrap_or("<recipe>").to_string(),
        line: position.line().unwrap_or(0),
        column: position.position().unwrap_or(0),
    }
}

/// `key` is one a recipe may set.
pub fn check_settable(key: &str) -> ScriptResult<()> {
    if key.is_empty() {
        return Err("a configuration key cannot be empty".into());
    }
    if COMPUTED_KEYS.contains(&key) {
        return Err(format!("`{key}` is computed by zdd and cannot be set").into());
    }
    Ok(())
}

/// A host being declared: `host("web1").set("hostname", "10.0.0.1")`.
#[derive(Clone)]
pub struct HostBuilder {
    /// One host, or several from a range (`web[1:4]`).
    names: Vec<String>,
    runtime: Arc<Runtime>,
}

pub fn register(engine: &mut Engine, runtime: Arc<Runtime>) {
    // `-o KEY=VALUE`: secret before the recipe's first line runs.
    runtime.reporter.secrets().learn(&runtime.overrides);

    engine.register_fn("quote", |value: &str| -> ScriptResult<String> {
        crate::values::quote::word(value).map_err(|e| e.to_string().into())
    });

    engine.register_type_with_name::<HostBuilder>("Host");
    let rt = runtime.clone();
    engine.register_fn("localhost", move || -> HostBuilder {
        declare_host(&rt, "localhost", true)
    });
    let rt = runtime.clone();
    engine.register_fn("localhost", move |name: &str| -> HostBuilder {
        declare_host(&rt, name, true)
    });
    let rt = runtime.clone();
    engine.register_fn("host", move |name: &str| -> ScriptResult<HostBuilder> {
        if name.is_empty() {
            return Err("a host name cannot be empty".into());
        }
        let names = crate::registry::expand_host_range(name)
            .map_err(|e| -> Box<EvalAltResult> { e.into() })?;
        let mut builder = declare_host(&rt, &names[0], false);
        for other in &names[1..] {
            builder.names.extend(declare_host(&rt, other, false).names);
        }
        Ok(builder)
    });
    engine.register_fn(
        "set",
        |ctx: NativeCallContext,
         builder: &mut HostBuilder,
         key: &str,
         value: Dynamic|
         -> ScriptResult<HostBuilder> {
            check_settable(key)?;
            let source = origin(&ctx).to_string();
            {
                let mut registry = builder
                    .runtime
                    .registry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                for host in registry
                    .hosts
                    .iter_mut()
                    .filter(|h| builder.names.contains(&h.name))
                {
                    host.config.insert(key.to_string(), value.clone());
                    host.sources.insert(key.to_string(), source.clone());
                }
            }
            // A host's secret setting is secret from its declaration on.
            builder.runtime.reporter.secrets().learn_value(key, &value);
            Ok(builder.clone())
        },
    );

    // `inventory("hosts.ini")`: the hosts of an Ansible or Deployer inventory, its path
    // relative to the recipe's directory (`!COMMAND` runs a dynamic inventory there).
    let rt = runtime.clone();
    engine.register_fn("inventory", move |spec: &str| -> ScriptResult<()> {
        declare_inventory(&rt, spec)
    });

    let rt = runtime.clone();
    engine.register_fn(
        "task",
        move |ctx: NativeCallContext, name: &str, body: FnPtr| -> ScriptResult<()> {
            check_task_name(name)?;
            rt.registry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add_task(name, TaskBody::Closure(body), origin(&ctx));
            Ok(())
        },
    );
    let rt = runtime.clone();
    engine.register_fn(
        "task",
        move |ctx: NativeCallContext, name: &str, members: Array| -> ScriptResult<()> {
            check_task_name(name)?;
            let mut names = Vec::new();
            for member in members {
                if !member.is_string() {
                    return Err(format!(
                        "group `{name}` lists `{member}`, which is not a task name: a group is a list of task names in quotes"
                    )
                    .into());
                }
                names.push(member.to_string());
            }
            rt.registry
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add_task(name, TaskBody::Group(names), origin(&ctx));
            Ok(())
        },
    );
    let rt = runtime.clone();
    engine.register_fn("desc", move |text: &str| {
        rt.registry
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pending_description = Some(text.to_string());
    });
    let rt = runtime.clone();
    engine.register_fn("once", move |name: &str| -> ScriptResult<()> {
        let mut registry = rt.registry.lock().unwrap_or_else(|e| e.into_inner());
        match registry.tasks.get_mut(name) {
            Some(task) => {
                task.once = true;
                Ok(())
            }
            None => Err(format!("`once` names task `{name}`, which is not defined yet").into()),
        }
    });

    let rt = runtime.clone();
    engine.register_fn("build", move |name: &str| -> ScriptResult<()> {
        let mut registry = rt.registry.lock().unwrap_or_else(|e| e.into_inner());
        match registry.tasks.get_mut(name) {
            Some(task) => {
                task.build = true;
                Ok(())
            }
            None => Err(format!("`build` names task `{name}`, which is not defined yet").into()),
        }
    });

    for kind in [HookKind::Before, HookKind::After, HookKind::Fail] {
        let name = kind.to_string();
        let rt = runtime.clone();
        engine.register_fn(
            name.as_str(),
            move |ctx: NativeCallContext, task: &str, other: &str| {
                rt.registry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add_hook(
                        kind,
                        task,
                        HookTarget::Task {
                            name: other.to_string(),
                            origin: origin(&ctx),
                        },
                    );
            },
        );
        let rt = runtime.clone();
        engine.register_fn(
            name.as_str(),
            move |ctx: NativeCallContext, task: &str, body: FnPtr| {
                rt.registry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .add_hook(
                        kind,
                        task,
                        HookTarget::Closure {
                            body,
                            origin: origin(&ctx),
                        },
                    );
            },
        );
    }
}

fn check_task_name(name: &str) -> ScriptResult<()> {
    if name.trim().is_empty() {
        return Err("a task name cannot be empty".into());
    }
    Ok(())
}

/// Declare the hosts of an inventory. A host the recipe declared too gets the inventory's
/// settings over its own, and the roles of both. Warnings go to stderr.
fn declare_inventory(runtime: &Runtime, spec: &str) -> ScriptResult<()> {
    let inventory = crate::inventory::load(spec, &runtime.recipe_dir).map_err(|error| {
        let failure = Failure::message(format!("inventory `{spec}`: {error}"));
        into_script_error(match &error.hint {
            Some(hint) => failure.with_hint(hint.clone()),
            None => failure,
        })
    })?;
    let secrets = runtime.reporter.secrets();
    for warning in &inventory.warnings {
        eprintln!("warning: {}", secrets.redact(warning));
    }
    let mut registry = runtime.registry.lock().unwrap_or_else(|e| e.into_inner());
    for host in inventory.hosts {
        for key in host.config.keys() {
            check_settable(key)?;
        }
        secrets.learn(&host.config);
        let declared = registry.host_mut(&host.name, host.local);
        crate::inventory::merge_host(declared, host);
    }
    Ok(())
}

fn declare_host(runtime: &Arc<Runtime>, name: &str, local: bool) -> HostBuilder {
    runtime
        .registry
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .host_mut(name, local);
    HostBuilder {
        names: vec![name.to_string()],
        runtime: runtime.clone(),
    }
}

/// A key's value at the top level of the recipe: `-o`, then `set`, then zdd's default.
pub fn declared_value(runtime: &Runtime, key: &str) -> Option<Dynamic> {
    if let Some(value) = runtime.overrides.get(key) {
        return Some(value.clone());
    }
    let registry = runtime.registry.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(value) = registry.config.get(key) {
        return Some(value.clone());
    }
    config::defaults().remove(key)
}

/// Where the top level's `set()` (or `add()`) of `key` was called: for `zdd hosts`.
pub fn declare_source(runtime: &Runtime, key: &str, ctx: &NativeCallContext) {
    runtime
        .registry
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .config_sources
        .insert(key.to_string(), origin(ctx).to_string());
}

/// `set()` at the top level of the recipe: every host has `key`, unless it sets its own.
pub fn declare_value(runtime: &Runtime, key: &str, value: Dynamic) {
    runtime
        .registry
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .config
        .insert(key.to_string(), value);
}

/// `get()` of a key nothing set: the error, with the closest known key.
pub fn missing(runtime: &Runtime, key: &str) -> Box<EvalAltResult> {
    let registry = runtime.registry.lock().unwrap_or_else(|e| e.into_inner());
    let known: Vec<String> = registry
        .config
        .keys()
        .cloned()
        .chain(config::defaults().into_keys())
        .chain(COMPUTED_KEYS.iter().map(|k| k.to_string()))
        .collect();
    let mut message = format!("`{key}` is not set");
    if let Some(s) = crate::output::suggest::closest(key, known.iter().map(String::as_str)) {
        message.push_str(&format!(" (did you mean `{s}`?)"));
    }
    message.into()
}
