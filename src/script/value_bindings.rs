//! `set`, `add`, `get`, `has` and `secret`: where a recipe's values are read and written.
//! Inside a task they are the running host's, through its context (what `set` put there, its
//! settings, the computed keys, text expanded: `HostContext::expanded_value`); at the top level
//! they are the declarations' (`recipe_api::declared_value`).

use std::collections::BTreeMap;
use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, NativeCallContext};

use super::recipe_api::{
    check_settable, declare_source, declare_value, declared_value, missing, ScriptResult,
};
use super::{into_script_error, Runtime};

/// A key's value where the recipe runs now: on the running host, or at the top level.
fn lookup(runtime: &Runtime, key: &str) -> ScriptResult<Option<Dynamic>> {
    match runtime.host() {
        Some(host) => host
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .expanded_value(key)
            .map_err(into_script_error),
        None => Ok(declared_value(runtime, key)),
    }
}

/// `key` is `value` from now on: on the running host only, or for every host at the top level.
fn store(runtime: &Runtime, key: &str, value: Dynamic) {
    match runtime.host() {
        Some(host) => host
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set_value(key, value),
        None => declare_value(runtime, key, value),
    }
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
    let rt = runtime.clone();
    engine.register_fn(
        "set",
        move |ctx: NativeCallContext, key: &str, value: Dynamic| -> ScriptResult<()> {
            check_settable(key)?;
            if rt.host().is_none() {
                declare_source(&rt, key, &ctx);
            }
            store(&rt, key, value.clone());
            learn_set_value(&rt, key, &value);
            Ok(())
        },
    );

    let rt = runtime.clone();
    engine.register_fn(
        "add",
        move |ctx: NativeCallContext, key: &str, items: Array| -> ScriptResult<()> {
            check_settable(key)?;
            if rt.host().is_none() {
                declare_source(&rt, key, &ctx);
            }
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
            store(&rt, key, value.clone());
            rt.reporter.secrets().learn_value(key, &value);
            Ok(())
        },
    );

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

    // `secret("key")`: the key's value never appears in output, errors or notifications. Inside
    // a task the value the key has now on this host is taken out at once.
    let rt = runtime;
    engine.register_fn("secret", move |key: &str| -> ScriptResult<()> {
        if key.is_empty() {
            return Err("a configuration key cannot be empty".into());
        }
        let secrets = rt.reporter.secrets();
        secrets.declare(key);
        if let Some(value) = lookup(&rt, key).ok().flatten() {
            let mut values = BTreeMap::new();
            values.insert(key.to_string(), value);
            secrets.learn(&values);
        }
        Ok(())
    });
}
