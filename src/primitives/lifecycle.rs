//! The Laravel lifecycle commands a deploy runs, chosen from what the app's `artisan list` says
//! (once per release per host): `optimize` where it builds the four caches, `migrate
//! --isolated` where it exists, `artisan reload` (Laravel 12.41+) or the individual restarts,
//! and which of them run once per deploy and which on every host.
//!
//! Once or per host: `queue:restart`, `pulse:restart`, `reverb:restart` and
//! `schedule:interrupt` only write a signal into the app's cache. When the hosts share that
//! cache, one signal reaches every host's processes: it is sent once per deploy, by the last
//! host to reach the step, i.e. after the last host's swap (earlier, it would restart the
//! processes of hosts still on the old release, on the old code). When each host has its own
//! cache (`file`, `array`, `apc`, `null` stores; `shared_cache` says otherwise), every host sends
//! its own. `horizon:terminate` and Octane act on the processes of the host they run on: every
//! host, always.

use std::time::{Duration, Instant};

use super::app_php;
use super::artisan::{self, app_path, artisan, has_command, has_option, tri_state};
use super::programs::program;
use crate::output::failure::{Failure, FailureKind};
use crate::primitives::host_context::HostContext;
use crate::system::process::ProcessErrorKind;
use crate::values::quote::Line;

/// The commands that only write a signal into the cache (see the module's documentation).
pub const CACHE_SIGNALS: [&str; 4] = [
    "queue:restart",
    "schedule:interrupt",
    "pulse:restart",
    "reverb:restart",
];

/// Cache stores whose data stays on one host.
const LOCAL_CACHE_DRIVERS: [&str; 4] = ["file", "array", "apc", "null"];

/// The exit status zdd asks `migrate --isolated=N` to return when another migration holds the
/// lock (Laravel's default is 0, which would read as "migrated").
const MIGRATION_RUNNING: i32 = 75;
const MIGRATION_POLL: Duration = Duration::from_secs(1);

/// The caches of the cache steps, in the order they are built.
const CACHES: [&str; 4] = ["config", "route", "view", "event"];

fn memo_key(ctx: &HostContext, what: &str) -> Result<String, Failure> {
    Ok(format!("{what} {}", app_path(ctx)?))
}

// ---------------------------------------------------------------------------------------------
// optimize
// ---------------------------------------------------------------------------------------------

/// `artisan storage:link` (public/storage -> storage/app/public), in a PHP start that also reads
/// `artisan list` for the steps after it (see `app_php::run_commands`).
pub fn storage_link(ctx: &mut HostContext) -> Result<(), Failure> {
    app_php::run_commands(ctx, &["storage:link".to_string()], "storage_link")?;
    ctx.info("storage link: public/storage -> storage/app/public");
    Ok(())
}

/// Whether `artisan optimize` builds the config, route, view and event caches: Laravel 11.0
/// and later (8.x to 10.x cache only the config and the routes).
fn optimize_builds_all_caches(ctx: &mut HostContext) -> Result<bool, Failure> {
    Ok(
        artisan::framework_version(ctx)?.is_some_and(|v| v >= (11, 0))
            && has_command(ctx, "optimize")?,
    )
}

/// One of the caches (`config`, `route`, `view`, `event`): the first cache step builds all four
/// in one PHP start, the others are then done: with `artisan optimize` where it builds them
/// (Laravel 11+), else by running the four `KIND:cache` commands in one process, as Laravel's
/// own `optimize` does.
pub fn cache(ctx: &mut HostContext, kind: &str) -> Result<(), Failure> {
    if !CACHES.contains(&kind) {
        return Err(Failure::message(format!(
            "`artisan_cache`: unknown cache `{kind}` (config, route, view or event)"
        )));
    }
    let key = memo_key(ctx, "optimize")?;
    if ctx.memo.contains_key(&key) {
        ctx.info(&format!("{kind} cache: built by the first cache step"));
        return Ok(());
    }
    if optimize_builds_all_caches(ctx)? {
        let output = artisan(ctx, "optimize")?;
        let items = report_items(&output);
        check_items("optimize", &items)?;
        ctx.memo.insert(key, names(&items));
        ctx.info(
            "optimize: config, route, view and event caches built in one run (`artisan optimize`, Laravel 11+)",
        );
        return Ok(());
    }
    let commands: Vec<String> = CACHES.iter().map(|c| format!("{c}:cache")).collect();
    for command in app_php::run_commands(ctx, &commands, "artisan_caches")? {
        ctx.info(&format!("{command}: done"));
    }
    ctx.memo.insert(key, CACHES.join(" "));
    ctx.info(&format!(
        "caches: {} built in one PHP start (the first cache step builds them all)",
        CACHES.join(", ")
    ));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// migrate
// ---------------------------------------------------------------------------------------------

/// `artisan migrate --force`, with `--isolated` where the app's `migrate` has it (Laravel
/// 9.38+): two deploys or two hosts never migrate at once; when another holds the lock, zdd
/// waits for it (up to `migrate_wait`, 600 s) and runs again.
pub fn migrate(ctx: &mut HostContext) -> Result<(), Failure> {
    if !has_option(ctx, "migrate", "isolated")? {
        artisan(ctx, "migrate --force")?;
        return Ok(());
    }
    let wait = match ctx.value("migrate_wait")? {
        Some(value) => crate::values::config::seconds(&value)
            .map_err(|e| Failure::message(format!("`migrate_wait`: {e}")))?,
        None => Duration::from_secs(600),
    };
    let command = format!("migrate --force --isolated={MIGRATION_RUNNING}");
    let started = Instant::now();
    let mut said = false;
    loop {
        match artisan(ctx, &command) {
            Ok(_) => {
                if said {
                    ctx.info("migrate: the other migration finished; migrated");
                }
                return Ok(());
            }
            Err(Failure {
                kind: FailureKind::Command(error),
                ..
            }) if error.kind == ProcessErrorKind::Exit(MIGRATION_RUNNING) => {
                if started.elapsed() >= wait {
                    return Err(Failure::message(format!(
                        "migrate: another `migrate --isolated` (another deploy, or another host) \
                         still holds the migration lock after {} s",
                        wait.as_secs_f64()
                    ))
                    .with_hint(
                        "wait for the other deploy to finish, or raise `migrate_wait`; a lock left \
                         by a killed migration expires with the app's cache lock",
                    ));
                }
                if !said {
                    ctx.info(&format!(
                        "migrate: another `migrate --isolated` is running (another deploy, or \
                         another host): waiting for it (up to {} s)",
                        wait.as_secs_f64()
                    ));
                    said = true;
                }
                std::thread::sleep(MIGRATION_POLL);
            }
            Err(other) => return Err(other),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// reload and the restarts
// ---------------------------------------------------------------------------------------------

/// Whether this host sends the cache signals now (see the module's documentation): on every
/// host when there is one, when the cache is not shared, or after a switch back; else only the
/// last host to reach `point`.
fn sends_cache_signals(ctx: &mut HostContext, point: &str) -> Result<bool, Failure> {
    if cache_signals_per_host(ctx)? {
        return Ok(true);
    }
    Ok(ctx.deployment.last_to_arrive(point, &ctx.host.clone()))
}

/// Whether this host sends its own cache signals: one host, a cache the hosts do not share,
/// or a switch back.
pub fn cache_signals_per_host(ctx: &mut HostContext) -> Result<bool, Failure> {
    if ctx.switched_back || ctx.deployment.host_count() == 1 {
        return Ok(true);
    }
    let shared = match tri_state(ctx, "shared_cache")? {
        Some(shared) => shared,
        None => cache_is_shared(ctx)?,
    };
    Ok(!shared)
}

/// Reads the cache store's driver from the release's config cache (`bootstrap/cache/config.php`,
/// a plain PHP array). Without it, or with a store of one host, the cache is taken as not shared
/// (a signal per host is never wrong, only repeated).
fn cache_is_shared(ctx: &mut HostContext) -> Result<bool, Failure> {
    let key = memo_key(ctx, "cache driver")?;
    if !ctx.memo.contains_key(&key) {
        let php = program(ctx, "php")?;
        let code = r#"$c = @include $argv[1]; if (!is_array($c)) { exit(0); }
$s = $c['cache']['default'] ?? ''; echo $c['cache']['stores'][$s]['driver'] ?? '';"#;
        let command = Line::command(&[php.as_str(), "-r", code, "bootstrap/cache/config.php"])?;
        let driver = ctx
            .exec_in(command.as_str(), Some(&app_path(ctx)?))?
            .stdout
            .trim()
            .to_string();
        ctx.memo.insert(key.clone(), driver);
    }
    let driver = ctx.memo[&key].clone();
    if driver.is_empty() {
        ctx.info(
            "cache: the app's cache driver is unknown (no config cache): restart signals are sent \
             on every host (set `shared_cache` to say whether the hosts share the cache)",
        );
        return Ok(false);
    }
    Ok(!LOCAL_CACHE_DRIVERS.contains(&driver.as_str()))
}

/// Whether `artisan reload` ran in this app on this host and restarted `item` (`queue`,
/// `horizon`, `octane`...: the keys it reports).
pub fn reload_covered(ctx: &HostContext, item: &str) -> bool {
    memo_key(ctx, "artisan reload")
        .ok()
        .and_then(|key| ctx.memo.get(&key))
        .is_some_and(|items| items.split(' ').any(|i| i == item))
}

/// The restart signals sent at this run's swap (see `symlink::signals`).
fn signalled_at_swap(ctx: &HostContext) -> Vec<String> {
    ctx.release
        .as_ref()
        .map(|r| r.signalled.clone())
        .unwrap_or_default()
}

fn reload_ran(ctx: &HostContext) -> bool {
    memo_key(ctx, "artisan reload")
        .ok()
        .is_some_and(|key| ctx.memo.contains_key(&key))
}

/// `artisan reload` (Laravel 12.41+) when the app has it (`artisan_reload`: auto): it restarts
/// what the app's packages registered (queue, schedule, Horizon, Pulse, Reverb, Octane...). On
/// the hosts that do not send the cache signals (see the module's documentation) it runs with
/// `--except` those. It exits 0 even when a restart inside it failed: zdd reads its report and
/// fails naming the item. Returns whether it ran.
pub fn reload(ctx: &mut HostContext) -> Result<bool, Failure> {
    match tri_state(ctx, "artisan_reload")? {
        Some(false) => {
            ctx.info("reload: skipped (artisan_reload = false)");
            return Ok(false);
        }
        Some(true) => {}
        None => {
            if !has_command(ctx, "reload")? {
                ctx.info(
                    "reload: the app has no `artisan reload` (Laravel 12.41+): zdd runs each restart itself",
                );
                return Ok(false);
            }
        }
    }
    // What was signalled at the swap (see `symlink::signals`) is not restarted again.
    let mut except = signalled_at_swap(ctx);
    let once = !sends_cache_signals(ctx, "artisan reload")?;
    if once {
        for signal in CACHE_SIGNALS {
            if !except.iter().any(|c| c == signal) {
                except.push(signal.to_string());
            }
        }
    }
    let command = if except.is_empty() {
        "reload".to_string()
    } else {
        format!("reload --except={}", except.join(","))
    };
    let output = artisan(ctx, &command)?;
    let items = report_items(&output);
    check_items("reload", &items)?;
    let key = memo_key(ctx, "artisan reload")?;
    ctx.memo.insert(key, names(&items));
    if once {
        ctx.info(&format!(
            "reload: restarted {} (the cache signals are sent once, by the last host to switch: the hosts share the cache)",
            listed(&items)
        ));
    } else {
        ctx.info(&format!("reload: restarted {}", listed(&items)));
    }
    Ok(true)
}

/// After the swap: `horizon:terminate` on every host (with Horizon), then the cache signals
/// (`queue:restart` unless Horizon runs the workers or `queue_restart` is false, and
/// `pulse:restart`, `reverb:restart`, `schedule:interrupt` where the app has them), once per
/// deploy or per host. Nothing when `artisan reload` already did it on this host.
pub fn restart_workers(ctx: &mut HostContext) -> Result<(), Failure> {
    if reload_ran(ctx) {
        ctx.info("workers: restarted by `artisan reload`");
        return Ok(());
    }
    let at_swap = signalled_at_swap(ctx);
    let horizon = if at_swap.iter().any(|c| c == "horizon:terminate") {
        true
    } else {
        artisan::horizon_terminate(ctx)?
    };
    let mut signals = Vec::new();
    if !horizon
        && ctx.boolean("queue_restart", true)?
        && !at_swap.iter().any(|c| c == "queue:restart")
    {
        signals.push("queue:restart");
    }
    for command in ["pulse:restart", "reverb:restart", "schedule:interrupt"] {
        if has_command(ctx, command)? {
            signals.push(command);
        }
    }
    if signals.is_empty() {
        return Ok(());
    }
    if !sends_cache_signals(ctx, "cache signals")? {
        ctx.info(&format!(
            "workers: `{}` sent once, by the last host to switch (the hosts share the cache)",
            signals.join("`, `")
        ));
        return Ok(());
    }
    for command in signals {
        if command == "queue:restart" {
            artisan::queue_restart(ctx)?;
        } else {
            artisan(ctx, command)?;
            ctx.info(&format!("workers: `{command}` sent"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The report of `reload` and `optimize`
// ---------------------------------------------------------------------------------------------

/// One line of the report `reload` and `optimize` print: `  queue ........ 3ms DONE`.
#[derive(Debug, PartialEq)]
struct Item {
    name: String,
    done: bool,
}

fn report_items(output: &str) -> Vec<Item> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let outcome = words.last()?;
            let done = match outcome {
                "DONE" | "SKIPPED" => true,
                "FAIL" => false,
                _ => return None,
            };
            Some(Item {
                name: name.to_string(),
                done,
            })
        })
        .collect()
}

fn check_items(command: &str, items: &[Item]) -> Result<(), Failure> {
    let failed: Vec<&str> = items
        .iter()
        .filter(|i| !i.done)
        .map(|i| i.name.as_str())
        .collect();
    if failed.is_empty() {
        return Ok(());
    }
    Err(Failure::message(format!(
        "`artisan {command}` reported {} as failed (it exits 0 even then; zdd reads its report)",
        failed
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .with_hint(format!(
        "run `php artisan {command} -v` in the release to see why; the name is the package's (or the \
         framework's `queue`, `schedule`, `config`...)"
    )))
}

fn names(items: &[Item]) -> String {
    items
        .iter()
        .map(|i| i.name.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn listed(items: &[Item]) -> String {
    if items.is_empty() {
        "nothing (no service registered a restart)".to_string()
    } else {
        names(items).replace(' ', ", ")
    }
}

#[cfg(test)]
mod tests {
    use super::{check_items, report_items, Item};

    #[test]
    fn the_report_of_reload_is_read_item_by_item() {
        let output = "\n   INFO  Reloading services.\n\n  queue ....................... 2.10ms DONE\n  \
                      schedule .......... 1ms DONE\n  pulse ............ 12ms FAIL\n  horizon 3ms SKIPPED\n";
        let items = report_items(output);
        assert_eq!(
            items,
            vec![
                Item {
                    name: "queue".into(),
                    done: true
                },
                Item {
                    name: "schedule".into(),
                    done: true
                },
                Item {
                    name: "pulse".into(),
                    done: false
                },
                Item {
                    name: "horizon".into(),
                    done: true
                },
            ]
        );
        let error = check_items("reload", &items).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("`artisan reload` reported `pulse` as failed"),
            "{error}"
        );
        assert!(check_items("reload", &items[..2]).is_ok());
    }
}
