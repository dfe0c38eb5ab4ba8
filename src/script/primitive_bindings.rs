//! Thin Rhai bindings of the primitives: each finds the running host and calls the Rust
//! function. All the behaviour is in `crate::primitives`.

use std::sync::Arc;

use rhai::{Array, Dynamic, Engine, EvalAltResult};

use super::Runtime;
use crate::primitives::gates::{app_key, audit, disk, migrations, queued_jobs, test_suite};
use crate::primitives::{
    artisan, cleanup, command, health, lifecycle, lock, octane, package_managers, php_fpm, release,
    rollback, shared, symlink, update_code, writable,
};

type ScriptResult<T> = Result<T, Box<EvalAltResult>>;

pub fn register(engine: &mut Engine, runtime: Arc<Runtime>) {
    let rt = runtime.clone();
    engine.register_fn("run", move |cmd: &str| -> ScriptResult<String> {
        rt.with_host("run", |ctx| command::run(ctx, cmd))
    });
    let rt = runtime.clone();
    engine.register_fn("test", move |cmd: &str| -> ScriptResult<bool> {
        rt.with_host("test", |ctx| command::test(ctx, cmd))
    });
    let rt = runtime.clone();
    engine.register_fn("cd", move |path: &str| -> ScriptResult<()> {
        rt.with_host("cd", |ctx| command::cd(ctx, path))
    });
    let rt = runtime.clone();
    engine.register_fn("prepare", move || -> ScriptResult<()> {
        rt.with_host("prepare", release::prepare)
    });
    let rt = runtime.clone();
    engine.register_fn("lock", move || -> ScriptResult<()> {
        rt.with_host("lock", lock::lock)
    });
    let rt = runtime.clone();
    engine.register_fn("unlock", move || -> ScriptResult<()> {
        rt.with_host("unlock", lock::unlock)
    });
    let rt = runtime.clone();
    engine.register_fn("release", move || -> ScriptResult<String> {
        rt.with_host("release", release::create)
    });
    let rt = runtime.clone();
    engine.register_fn("clone", move || -> ScriptResult<()> {
        rt.with_host("clone", update_code::clone)
    });
    let rt = runtime.clone();
    engine.register_fn("link_shared", move || -> ScriptResult<()> {
        rt.with_host("link_shared", shared::link)
    });
    let rt = runtime.clone();
    engine.register_fn("writable", move || -> ScriptResult<()> {
        rt.with_host("writable", writable::make_writable)
    });
    let rt = runtime.clone();
    engine.register_fn("swap_symlink", move || -> ScriptResult<()> {
        rt.with_host("swap_symlink", symlink::swap)
    });
    let rt = runtime.clone();
    engine.register_fn("swap_symlink_signalling", move || -> ScriptResult<()> {
        rt.with_host("swap_symlink_signalling", |ctx| {
            let signals = symlink::signals(ctx)?;
            symlink::swap_signalling(ctx, &signals)
        })
    });
    let rt = runtime.clone();
    engine.register_fn("cleanup", move || -> ScriptResult<Array> {
        rt.with_host("cleanup", |ctx| {
            Ok(cleanup::cleanup(ctx)?
                .into_iter()
                .map(Dynamic::from)
                .collect())
        })
    });
    let rt = runtime.clone();
    engine.register_fn("rollback", move || -> ScriptResult<String> {
        rt.with_host("rollback", rollback::rollback)
    });
    let rt = runtime.clone();
    engine.register_fn("discard_release", move || -> ScriptResult<()> {
        rt.with_host("discard_release", |ctx| {
            let reason = ctx
                .failure
                .clone()
                .unwrap_or_else(|| "the deploy failed".to_string());
            release::discard(ctx, &reason)
        })
    });
    let rt = runtime.clone();
    engine.register_fn("switched_back", move || -> ScriptResult<bool> {
        rt.with_host("switched_back", |ctx| Ok(ctx.switched_back))
    });
    let rt = runtime.clone();
    engine.register_fn("artisan", move |cmd: &str| -> ScriptResult<String> {
        rt.with_host("artisan", |ctx| artisan::artisan(ctx, cmd))
    });
    let rt = runtime.clone();
    engine.register_fn("composer", move |args: &str| -> ScriptResult<String> {
        rt.with_host("composer", |ctx| package_managers::composer(ctx, args))
    });
    let rt = runtime.clone();
    engine.register_fn("npm", move |args: &str| -> ScriptResult<String> {
        rt.with_host("npm", |ctx| package_managers::npm(ctx, args))
    });
    let rt = runtime.clone();
    engine.register_fn("reload_fpm", move || -> ScriptResult<bool> {
        rt.with_host("reload_fpm", |ctx| {
            Ok(php_fpm::reload(ctx)? != php_fpm::Reload::Skipped)
        })
    });
    let rt = runtime.clone();
    engine.register_fn("octane_reload", move || -> ScriptResult<bool> {
        rt.with_host("octane_reload", octane::reload)
    });
    let rt = runtime.clone();
    engine.register_fn("artisan_reload", move || -> ScriptResult<bool> {
        rt.with_host("artisan_reload", lifecycle::reload)
    });
    let rt = runtime.clone();
    engine.register_fn("restart_workers", move || -> ScriptResult<()> {
        rt.with_host("restart_workers", lifecycle::restart_workers)
    });
    let rt = runtime.clone();
    engine.register_fn("artisan_cache", move |kind: &str| -> ScriptResult<()> {
        rt.with_host("artisan_cache", |ctx| lifecycle::cache(ctx, kind))
    });
    let rt = runtime.clone();
    engine.register_fn("storage_link", move || -> ScriptResult<()> {
        rt.with_host("storage_link", lifecycle::storage_link)
    });
    let rt = runtime.clone();
    engine.register_fn("artisan_migrate", move || -> ScriptResult<()> {
        rt.with_host("artisan_migrate", lifecycle::migrate)
    });
    let rt = runtime.clone();
    engine.register_fn("horizon_terminate", move || -> ScriptResult<bool> {
        rt.with_host("horizon_terminate", artisan::horizon_terminate)
    });
    let rt = runtime.clone();
    engine.register_fn("queue_restart", move || -> ScriptResult<()> {
        rt.with_host("queue_restart", artisan::queue_restart)
    });
    let rt = runtime.clone();
    engine.register_fn("health_gate", move |url: &str| -> ScriptResult<i64> {
        rt.with_host("health_gate", |ctx| Ok(health::gate(ctx, url)? as i64))
    });
    let rt = runtime.clone();
    engine.register_fn(
        "health_gate",
        move |url: &str, options: rhai::Map| -> ScriptResult<i64> {
            rt.with_host("health_gate", |ctx| {
                // Options win over the `health_*` settings for this call only.
                let saved = ctx.runtime.clone();
                for (key, value) in options {
                    ctx.runtime.insert(format!("health_{key}"), value);
                }
                let result = health::gate(ctx, url);
                ctx.runtime = saved;
                Ok(result? as i64)
            })
        },
    );
    let rt = runtime.clone();
    engine.register_fn("run_tests", move || -> ScriptResult<bool> {
        rt.with_host("run_tests", |ctx| test_suite::run_tests(ctx))
    });
    let rt = runtime.clone();
    engine.register_fn("audit", move || -> ScriptResult<()> {
        rt.with_host("audit", |ctx| audit::audit(ctx))
    });
    let rt = runtime.clone();
    engine.register_fn("check_queued_jobs", move || -> ScriptResult<()> {
        rt.with_host("check_queued_jobs", |ctx| {
            queued_jobs::check_queued_jobs(ctx)
        })
    });
    let rt = runtime.clone();
    engine.register_fn("check_app_key", move || -> ScriptResult<()> {
        rt.with_host("check_app_key", app_key::check_app_key)
    });
    let rt = runtime.clone();
    engine.register_fn("check_migrations", move || -> ScriptResult<()> {
        rt.with_host("check_migrations", migrations::check_migrations)
    });
    let rt = runtime.clone();
    engine.register_fn("check_disk", move || -> ScriptResult<()> {
        rt.with_host("check_disk", |ctx| disk::check_disk(ctx))
    });
    let rt = runtime.clone();
    engine.register_fn("info", move |text: &str| -> ScriptResult<()> {
        rt.with_host("info", |ctx| {
            ctx.info(text);
            Ok(())
        })
    });
    let rt = runtime;
    engine.register_fn("warn", move |text: &str| -> ScriptResult<()> {
        rt.with_host("warn", |ctx| {
            ctx.warn(text);
            Ok(())
        })
    });
}
