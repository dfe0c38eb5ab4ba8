//! The recipe language: `set`, `get`, `has`, `add`, `localhost`, `host`, `task`, `desc`,
//! `before`, `after`, `fail`, `quote`, `secret`. These only declare or read; nothing here
//! touches a host.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult, FnPtr, NativeCallContext};

use super::Runtime;
use crate::config;
use crate::context::COMPUTED_KEYS;
use crate::registry::{HookKind, HookTarget, Origin, TaskBody};
use crate::template::Mode;

type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

/// Where the function being called was called from.
fn origin(ctx: &NativeCallContext) -> Origin {
    let position = ctx.call_position();
    Origin {
        source: ctx.call_source().unwrap_or("<recipe>").to_string(),
        line: position.line().unwrap_or(0),
        column: position.position().unwrap_or(0),
    }
}

fn check_settable(key: &str) -> ScriptResult<()> {
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

/// A value just set: when `key` is secret, its value (as set, and as `get` returns it on the
/// running host, expanded) is never shown from this moment on, and neither is the password of
/// a URL in any value. Learned here rather than when the task ends, so that the commands the
/// task runs next (`-v`, `-vv`) and `print()` before hosts are known never show it.
fn learn_set_value(runtime: &Runtime, key: &str, value: &Dynamic) {
    let secrets = runtime.reporter.secrets();
    secrets.learn_value(key, value);
    if let Some(expanded) = lookup(runtime, key).ok().flatten() {
        secrets.learn_value(key, &expanded);
    }
}

pub fn register(engine: &mut Engine, runtime: Arc<Runtime>) {
    // `-o KEY=VALUE`: secret before the recipe's first line runs.
    runtime.reporter.secrets().learn(&runtime.overrides);

    let rt = runtime.clone();
    engine.register_fn(
        "set",
        move |key: &str, value: Dynamic| -> ScriptResult<()> {
            check_settable(key)?;
            match rt.host() {
                Some(host) => {
                    let mut host = host.lock().unwrap_or_else(|e| e.into_inner());
                    host.runtime.insert(key.to_string(), value.clone());
                }
                None => {
                    let mut registry = rt.registry.lock().unwrap_or_else(|e| e.into_inner());
                    registry.config.insert(key.to_string(), value.clone());
                }
            }
            learn_set_value(&rt, key, &value);
            Ok(())
        },
    );

    let rt = runtime.clone();
    engine.register_fn("add", move |key: &str, items: Array| -> ScriptResult<()> {
        check_settable(key)?;
        let current = lookup(&rt, key)?.unwrap_or_else(|| Dynamic::from_array(Array::new()));
        let mut list = if current.is_array() {
            current.into_array().unwrap_or_default()
        } else {
            return Err(format!(
                "`add` needs a list, but `{key}` is a {}",
                current.type_name()
            )
            .into());
        };
        list.extend(items);
        let value = Dynamic::from_array(list);
        match rt.host() {
            Some(host) => {
                host.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .runtime
                    .insert(key.to_string(), value.clone());
            }
            None => {
                rt.registry
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .config
                    .insert(key.to_string(), value.clone());
            }
        }
        rt.reporter.secrets().learn_value(key, &value);
        Ok(())
    });

    let rt = runtime.clone();
    engine.register_fn("get", move |key: &str| -> ScriptResult<Dynamic> {
        match lookup(&rt, key)? {
            Some(value) => Ok(value),
            None => Err(missing(&rt, key)),
        }
    });
    let rt = runtime.clone();
    engine.register_fn(
        "get",
        move |key: &str, default: Dynamic| -> ScriptResult<Dynamic> {
            Ok(lookup(&rt, key)?.unwrap_or(default))
        },
    );
    let rt = runtime.clone();
    engine.register_fn("has", move |key: &str| -> ScriptResult<bool> {
        Ok(lookup(&rt, key).ok().flatten().is_some())
    });

    engine.register_fn("quote", |value: &str| -> ScriptResult<String> {
        crate::quote::word(value).map_err(|e| e.to_string().into())
    });

    // `secret("key")`: the key's value never appears in output, errors or notifications. Inside
    // a task the value the key has now on this host is taken out at once.
    let rt = runtime.clone();
    engine.register_fn("secret", move |key: &str| -> ScriptResult<()> {
        if key.is_empty() {
            return Err("a configuration key cannot be empty".into());
        }
        let secrets = rt.reporter.secrets();
        secrets.declare(key);
        if let Some(value) = lookup(&rt, key).ok().flatten() {
            let mut values = std::collections::BTreeMap::new();
            values.insert(key.to_string(), value);
            secrets.learn(&values);
        }
        Ok(())
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
        |builder: &mut HostBuilder, key: &str, value: Dynamic| -> ScriptResult<HostBuilder> {
            check_settable(key)?;
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
                }
            }
            // A host's secret setting is secret from its declaration on.
            builder.runtime.reporter.secrets().learn_value(key, &value);
            Ok(builder.clone())
        },
    );

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

/// A key's value: on the running host (expanded), or at the top level of the recipe.
fn lookup(runtime: &Runtime, key: &str) -> ScriptResult<Option<Dynamic>> {
    if let Some(host) = runtime.host() {
        let host = host.lock().unwrap_or_else(|e| e.into_inner());
        return match host.value(key).map_err(super::into_script_error)? {
            Some(value) if value.is_string() => {
                let text = value.to_string();
                let expanded = host
                    .expand(&text, Mode::Plain)
                    .map_err(super::into_script_error)?;
                Ok(Some(Dynamic::from(expanded)))
            }
            other => Ok(other),
        };
    }
    if let Some(value) = runtime.overrides.get(key) {
        return Ok(Some(value.clone()));
    }
    let registry = runtime.registry.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(value) = registry.config.get(key) {
        return Ok(Some(value.clone()));
    }
    Ok(config::defaults().remove(key))
}

fn missing(runtime: &Runtime, key: &str) -> Box<EvalAltResult> {
    let registry = runtime.registry.lock().unwrap_or_else(|e| e.into_inner());
    let known: Vec<String> = registry
        .config
        .keys()
        .cloned()
        .chain(config::defaults().into_keys())
        .chain(COMPUTED_KEYS.iter().map(|k| k.to_string()))
        .collect();
    let mut message = format!("`{key}` is not set");
    if let Some(s) = crate::suggest::closest(key, known.iter().map(String::as_str)) {
        message.push_str(&format!(" (did you mean `{s}`?)"));
    }
    message.into()
}
