//! `recipes/laravel.rhai` against real php-fpm, nginx and Laravel (Debian's packages), under
//! load: the four meanings of zero downtime in DESIGN.md, the health gate's rollback, a negative
//! control that shows the load test can fail, and failures that stop before the swap.
//!
//! Octane and Horizon are not packaged here: their artisan commands are fixture commands that
//! record their calls (see `laravel_support::recording_command_body`).

use std::process::Output;
use std::time::{Duration, Instant};

use crate::laravel_support::{
    artisan_commands, artisan_log, as_refs, deploy_dir, dispatch, failed_job_errors, failed_jobs,
    fixture_repo, recording_command_body, shared_env, wait_for_jobs, Dispatcher, FixtureRepo, Load,
    LoadOptions, QueueWorker, SessionClient, Stack, StackOptions, BROKEN_COMPOSER_JSON,
    BROKEN_MIGRATION, HEALTH_FAIL,
};
use crate::services::Redis;
use crate::support::Sandbox;

const DEPLOY: &str = "app";

fn recipe() -> String {
    format!("{}/recipes/laravel.rhai", env!("CARGO_MANIFEST_DIR"))
}

/// `zdd run recipes/laravel.rhai` for `branch`, wired to the test's stack.
fn deploy(
    sandbox: &Sandbox,
    fixture: &FixtureRepo,
    stack: &Stack,
    branch: &str,
    extra: &[&str],
) -> Output {
    let options = [
        format!("repository={}", fixture.str()),
        format!("deploy_path={}", sandbox.str(DEPLOY)),
        format!("branch={branch}"),
        format!("fpm_pid_file={}", stack.fpm_pid_file.display()),
        format!("fpm_socket={}", stack.fpm_socket.display()),
        format!("health_url={}", stack.url("/health")),
        "health_checks=3".to_string(),
        "health_interval=0.1".to_string(),
        "health_expect_release=true".to_string(),
    ];
    let mut args: Vec<String> = vec!["run".into(), recipe()];
    for option in options
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
    {
        args.push("-o".into());
        args.push(option.to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sandbox.zdd(&args).output().expect("zdd runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn assert_success(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "zdd failed:\n{}",
        stderr(output)
    );
}

fn setup(options: StackOptions) -> (Sandbox, FixtureRepo, Stack) {
    let sandbox = Sandbox::new();
    let fixture = fixture_repo(&sandbox, "repo");
    shared_env(&sandbox, DEPLOY);
    let stack = Stack::start(&sandbox, DEPLOY, options);
    (sandbox, fixture, stack)
}

/// Ten deploys alternating v2 and v1 under load: no failed request, no connection error, no
/// mixed-version response, every page after a deploy from the new release, the session from
/// before the first deploy still valid after the last, every queued job processed, after a
/// deploy by the new code, and no job dispatched by new code run by old code (a job is
/// dispatched every 50 ms across the swaps).
fn zero_downtime(options: StackOptions) -> String {
    let (sandbox, fixture, stack) = setup(options);
    // The queue on Redis, as in production (and in the rig that measured the queue window):
    // Laravel 8's database queue on SQLite, under this load on two cores, loses the deletion of
    // some processed jobs (they run again after `retry_after` and fail as attempted too many
    // times), with or without zdd's signal at the swap.
    let redis = Redis::start(&sandbox);
    let env = shared_env(&sandbox, DEPLOY);
    let mut text = std::fs::read_to_string(&env).unwrap();
    text.push_str(&(redis.laravel_env() + "QUEUE_CONNECTION=redis\n"));
    std::fs::write(&env, text).unwrap();
    let first = deploy(&sandbox, &fixture, &stack, "v1", &[]);
    assert_success(&first);

    let worker = QueueWorker::start(&sandbox, DEPLOY);
    let mut session = SessionClient::new(&stack);
    let before = session.count();
    let token = session.csrf();
    let load = Load::start(&stack);
    load.wait_for(20, Duration::from_secs(30));

    let mut jobs = dispatch(&stack, 3);
    let dispatcher = Dispatcher::start(&stack, Duration::from_millis(50));
    let mut deploys: Vec<(Instant, Instant, String, String)> = Vec::new();
    let mut log = String::new();
    for round in 0..10 {
        let version = if round % 2 == 0 { "v2" } else { "v1" };
        jobs.extend(dispatch(&stack, 2));
        let started = Instant::now();
        let output = deploy(&sandbox, &fixture, &stack, version, &[]);
        assert_success(&output);
        let finished = Instant::now();
        log.push_str(&stderr(&output));
        let release = sandbox.current(DEPLOY).expect("current");
        let (status, headers, body) = stack.get("/version");
        assert_eq!(status, 200);
        assert_eq!(
            body.trim(),
            format!("{version} {release}"),
            "after deploy {round}"
        );
        assert_eq!(headers.get("x-release").unwrap().to_str().unwrap(), release);
        deploys.push((started, finished, version.to_string(), release));
        jobs.extend(dispatch(&stack, 2));
        std::thread::sleep(Duration::from_millis(300));
    }
    let report = load.stop();
    let steady = dispatcher.stop();
    if !report.is_clean() {
        // The error page says nothing (APP_DEBUG is off): the app's log says what failed.
        let app_log = sandbox.path(&format!("{DEPLOY}/shared/storage/logs/laravel.log"));
        let text = std::fs::read_to_string(&app_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!(
            "the app's log ({}), last lines:\n{}\nzdd said:\n{log}",
            app_log.display(),
            lines[lines.len().saturating_sub(60)..].join("\n")
        );
    }
    report.assert_clean();
    assert!(report.total() > 200, "the load ran: {report}");

    // Pages after each deploy (until the next one started) come from that deploy's release.
    for (index, (_, finished, _, release)) in deploys.iter().enumerate() {
        let next_start = deploys
            .get(index + 1)
            .map(|d| d.0)
            .unwrap_or(report.stopped);
        let stale: Vec<_> = report
            .responses
            .iter()
            .filter(|s| s.sent >= *finished && s.sent < next_start)
            .filter(|s| s.release.as_deref() != Some(release.as_str()))
            .collect();
        assert!(
            stale.is_empty(),
            "deploy {index}: {} responses not from {release}: {:?}",
            stale.len(),
            stale.first()
        );
    }

    // Sessions and CSRF survive: same session, counter continues, the old token still works.
    let after = session.count();
    assert_eq!(after.id, before.id);
    assert_eq!(after.count, before.count + 1);
    assert_eq!(session.post_count(&token).0, 200);

    // The queue: everything dispatched was processed, nothing failed; jobs dispatched after the
    // last deploy ran on its code.
    let last = deploys.last().unwrap();
    let late = dispatch(&stack, 3);
    let records = wait_for_jobs(&sandbox, DEPLOY, &jobs, Duration::from_secs(60));
    assert_eq!(records.len(), jobs.len());
    let late_records = wait_for_jobs(&sandbox, DEPLOY, &late, Duration::from_secs(60));
    for record in &late_records {
        assert_eq!(
            (record.version.as_str(), record.release.as_str()),
            (last.2.as_str(), last.3.as_str())
        );
    }
    if failed_jobs(&sandbox, DEPLOY) > 0 {
        let log = std::fs::read_to_string(&worker.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let around: Vec<String> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains("Failed") || l.contains("worker start"))
            .map(|(i, _)| lines[i.saturating_sub(3)..(i + 2).min(lines.len())].join("\n"))
            .collect();
        panic!(
            "failed jobs: {:?}\nworker log around failures and starts:\n{}",
            failed_job_errors(&sandbox, DEPLOY).first(),
            around.join("\n--\n")
        );
    }

    // The queue window: a job dispatched by the new code is never run by the old code, though
    // one was dispatched every 50 ms across every swap.
    let steady_records = wait_for_jobs(&sandbox, DEPLOY, &steady, Duration::from_secs(60));
    let stale: Vec<_> = steady_records
        .iter()
        .filter(|r| r.run_by_older_code())
        .collect();
    assert!(
        steady.len() > 50 && stale.is_empty(),
        "{} of {} jobs dispatched by new code were run by old code: {:?}",
        stale.len(),
        steady.len(),
        stale.first()
    );
    let workers = worker.stop();
    assert!(
        workers.spawns > 1,
        "queue:restart made the workers restart: {:?}",
        workers.exits
    );

    let swaps = report.latency_where(|s| {
        deploys
            .iter()
            .any(|(a, b, _, _)| s.sent >= *a && s.sent <= *b)
    });
    eprintln!(
        "load during deploys: {swaps}; overall: {}",
        report.latency()
    );
    log
}

#[test]
fn zero_downtime_under_load_with_a_graceful_fpm_reload() {
    let log = zero_downtime(StackOptions {
        process_control_timeout: Some(10),
        document_root: false,
    });
    assert_eq!(
        log.matches("php-fpm: reloaded (SIGUSR2").count(),
        10,
        "{log}"
    );
}

#[test]
fn zero_downtime_under_load_with_debians_default_fpm_pool() {
    // process_control_timeout = 0: a reload would cut requests, so `fpm_reload = auto` skips it.
    let log = zero_downtime(StackOptions::default());
    assert_eq!(
        log.matches("php-fpm: not reloaded: php-fpm's process_control_timeout is 0")
            .count(),
        10,
        "{log}"
    );
    assert!(!log.contains("SIGUSR2"));
}

#[test]
fn a_failing_health_gate_rolls_back_automatically_under_load() {
    let (sandbox, fixture, stack) = setup(StackOptions {
        process_control_timeout: Some(10),
        document_root: false,
    });
    assert_success(&deploy(&sandbox, &fixture, &stack, "v1", &[]));
    let good = sandbox.current(DEPLOY).unwrap();
    fixture.version_from("v2", "v3-bad", &[HEALTH_FAIL]);
    // The bad version's /health fails by design; the pages users load must not.
    let load = Load::start_with(
        &stack.url(""),
        LoadOptions {
            paths: ["/slow?ms=200", "/version", "/"]
                .iter()
                .map(|p| p.to_string())
                .collect(),
            ..LoadOptions::default()
        },
    );
    load.wait_for(10, Duration::from_secs(30));

    let output = deploy(&sandbox, &fixture, &stack, "v3-bad", &[]);
    let back = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let report = load.stop();

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("error: task `deploy:health` failed on host `localhost`"),
        "{text}"
    );
    assert!(
        text.contains("health check failed: GET http://127.0.0.1:"),
        "{text}"
    );
    assert!(
        text.contains("answered HTTP 500 `fail version=v3-bad"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "now: on `localhost`, `current` points at releases/{good}"
        )),
        "{text}"
    );
    assert!(
        text.contains("php-fpm: reloaded"),
        "the switch back reloaded php-fpm: {text}"
    );
    assert_eq!(sandbox.current(DEPLOY).unwrap(), good);
    assert!(!deploy_dir(&sandbox, DEPLOY).join(".zdd/lock").exists());
    report.assert_clean();
    report.assert_from_after(back, &good);

    // The failed release served requests, so it stays (marked failed) until the next deploy.
    let releases = sandbox.releases(DEPLOY);
    assert_eq!(releases.len(), 2);
    let failed = releases[1].clone();
    assert!(
        text.contains(&format!(
            "releases/{failed} is marked failed; the next deploy removes it"
        )),
        "{text}"
    );
    let listing = sandbox
        .zdd(&[
            "releases",
            &recipe(),
            "--json",
            "-o",
            &format!("deploy_path={}", sandbox.str(DEPLOY)),
        ])
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains(&format!("\"release\":\"{failed}\",\"status\":\"failed\"")),
        "{listing}"
    );
    assert_success(&deploy(&sandbox, &fixture, &stack, "v2", &[]));
    assert!(!sandbox.releases(DEPLOY).contains(&failed));
}

/// The negative control: nginx on `$document_root` and no php-fpm reload, with OPcache never
/// revalidating — the deploy "succeeds" without a health gate, but the pages keep coming from
/// the old release, and the checks the load test makes see it.
#[test]
fn an_unsafe_deploy_is_detected() {
    let (sandbox, fixture, stack) = setup(StackOptions {
        process_control_timeout: Some(10),
        document_root: true,
    });
    assert_success(&deploy(
        &sandbox,
        &fixture,
        &stack,
        "v1",
        &["fpm_reload=none"],
    ));
    // Warm the workers' realpath and OPcache on v1.
    for _ in 0..20 {
        stack.get("/version");
    }
    let load = Load::start(&stack);
    load.wait_for(10, Duration::from_secs(30));
    let output = deploy(
        &sandbox,
        &fixture,
        &stack,
        "v2",
        &["fpm_reload=none", "health_url="],
    );
    assert_success(&output);
    let swapped = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let report = load.stop();
    let release = sandbox.current(DEPLOY).unwrap();
    let stale = report.not_from_after(swapped, &release);
    assert!(
        !stale.is_empty(),
        "the unsafe deploy should serve the old release: {report}"
    );

    // With the gate on (as the recipe recommends), the same unsafe setup fails the deploy.
    let output = deploy(
        &sandbox,
        &fixture,
        &stack,
        "v1",
        &["fpm_reload=none", "health_checks=20", "health_retries=0"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("still answers from another release"),
        "{}",
        stderr(&output)
    );
    assert_eq!(sandbox.current(DEPLOY).unwrap(), release);
}

/// Failures before the swap: `current` unchanged, nothing left behind, a clear message.
#[test]
fn failures_before_the_swap_leave_current_alone() {
    let (sandbox, fixture, stack) = setup(StackOptions::default());
    assert_success(&deploy(&sandbox, &fixture, &stack, "v1", &[]));
    let good = sandbox.current(DEPLOY).unwrap();
    fixture.version_from("v2", "broken-composer", &[BROKEN_COMPOSER_JSON]);
    fixture.version_from("v2", "broken-migration", &[BROKEN_MIGRATION]);

    let cases: [(&str, &[&str], &str, &str); 3] = [
        (
            "v2",
            &["bin/php=/nonexistent/php"],
            "gate:audit",
            "Caused by: `bin/php` is `/nonexistent/php`, which does not exist on host `localhost`",
        ),
        (
            "broken-composer",
            &[],
            "deploy:vendors",
            "Caused by: command `",
        ),
        // `migrate --pretend` (the migrations gate) already runs the broken migration's up().
        (
            "broken-migration",
            &[],
            "gate:migrations",
            "artisan migrate --pretend --force --no-interaction` exited with status 1",
        ),
    ];
    for (branch, extra, task, message) in cases {
        let output = deploy(&sandbox, &fixture, &stack, branch, extra);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{branch}: {text}");
        assert!(
            text.contains(&format!("error: task `{task}` failed on host `localhost`")),
            "{branch}: {text}"
        );
        assert!(text.contains(message), "{branch}: {text}");
        if !extra.is_empty() {
            assert!(
                text.contains("hint: fix `bin/php` (e.g. `-o bin/php=/usr/bin/php`)"),
                "{text}"
            );
        }
        assert!(
            !text.contains("current -> releases/"),
            "{branch} must stop before the swap: {text}"
        );
        assert_eq!(sandbox.current(DEPLOY).unwrap(), good, "{branch}");
        assert_eq!(sandbox.releases(DEPLOY), vec![good.clone()], "{branch}");
        assert!(
            !deploy_dir(&sandbox, DEPLOY).join(".zdd/lock").exists(),
            "{branch}"
        );
        let (status, _, body) = stack.get("/version");
        assert_eq!(
            (status, body.trim().to_string()),
            (200, format!("v1 {good}"))
        );
    }
}

/// The swap is made by a PHP process of the new release (it signals the workers just before
/// it). When that process renames `current` and its report is then lost (killed, connection
/// dropped: here a `php` that swallows the swap's output and exits 137), zdd reads `current`
/// back, counts the swap as made, and switches back: `current` is never left on a release
/// that the failure discards. A failing restart signal stops the swap before the rename.
#[test]
fn a_swap_whose_report_is_lost_is_switched_back() {
    let (sandbox, fixture, stack) = setup(StackOptions::default());
    assert_success(&deploy(&sandbox, &fixture, &stack, "v1", &[]));
    let good = sandbox.current(DEPLOY).unwrap();
    let php = sandbox.write(
        "bin/php-losing-the-swap",
        "#!/bin/sh\nif [ -n \"$ZDD_SWAP_TARGET\" ]; then /usr/bin/php \"$@\" >/dev/null 2>&1; exit 137; fi\nexec /usr/bin/php \"$@\"\n",
    );
    std::fs::set_permissions(&php, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let option = format!("bin/php={}", php.display());
    let output = deploy(&sandbox, &fixture, &stack, "v2", &[&option]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error: task `deploy:symlink` failed on host `localhost`"),
        "{text}"
    );
    assert!(
        text.contains("swap: the app did not boot: `php artisan --version` exited with status 137"),
        "{text}"
    );
    assert_eq!(
        sandbox.current(DEPLOY).unwrap(),
        good,
        "switched back: {text}"
    );
    assert!(text.contains("switched back"), "{text}");
    assert!(!deploy_dir(&sandbox, DEPLOY).join(".zdd/lock").exists());
    let (status, _, body) = stack.get("/version");
    assert_eq!(
        (status, body.trim().to_string()),
        (200, format!("v1 {good}"))
    );

    // A restart signal that fails: nothing renamed, the deploy stops there.
    let commands = artisan_commands(&[(
        "BrokenQueueRestart",
        "queue:restart",
        "        $this->error('the cache is down'); return 3;",
    )]);
    fixture.version("v2-broken-restart", &as_refs(&commands));
    let output = deploy(&sandbox, &fixture, &stack, "v2-broken-restart", &[]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("`artisan queue:restart` failed (status 3) just before the swap; `current` was not changed:\n  | the cache is down"),
        "{text}"
    );
    assert_eq!(sandbox.current(DEPLOY).unwrap(), good);
    assert!(!text.contains("current -> releases/"), "{text}");
}

/// A hostile repository ships symlinks under the names of the files zdd writes in a release
/// (the APP_KEY record) or used to (its PHP probes), pointing at files outside the deploy path:
/// the deploy writes through none of them, and the link it replaces is the repository's own.
#[test]
fn symlinks_a_repository_ships_under_zdds_file_names_are_not_written_through() {
    let (sandbox, fixture, stack) = setup(StackOptions::default());
    assert_success(&deploy(&sandbox, &fixture, &stack, "v1", &[]));
    let names = [
        ".zdd-app-key",
        ".zdd-queued-jobs.php",
        ".zdd-swap.php",
        ".zdd-artisan-caches.php",
    ];
    let dir = &fixture.repo.path;
    for name in names {
        let victim = sandbox.write(&format!("victims/{name}"), "untouched\n");
        std::os::unix::fs::symlink(&victim, dir.join(name)).unwrap();
    }
    fixture.version("v2-hostile", &[]);
    assert_success(&deploy(&sandbox, &fixture, &stack, "v2-hostile", &[]));
    for name in names {
        assert_eq!(
            std::fs::read_to_string(sandbox.path(&format!("victims/{name}"))).unwrap(),
            "untouched\n",
            "{name}"
        );
    }
    let release = sandbox.current(DEPLOY).unwrap();
    let record = deploy_dir(&sandbox, DEPLOY).join(format!("releases/{release}/.zdd-app-key"));
    assert!(!record.is_symlink() && std::fs::read_to_string(&record).unwrap().len() == 65);
}

/// The compiled views of each release, by the release their `ENDPATH` names, in the shared
/// `storage/framework/views` (the fixture's `view.compiled`).
fn compiled_views(sandbox: &Sandbox) -> std::collections::BTreeMap<String, usize> {
    let dir = deploy_dir(sandbox, DEPLOY).join("shared/storage/framework/views");
    let mut by_release = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if !entry.file_name().to_string_lossy().ends_with(".php") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let release = text
            .split("/releases/")
            .nth(1)
            .filter(|_| text.contains("ENDPATH"))
            .and_then(|rest| rest.split('/').next())
            .unwrap_or("(not a release's)")
            .to_string();
        *by_release.entry(release).or_insert(0) += 1;
    }
    by_release
}

/// `view:cache` in a new release never clears the compiled views the live release serves from
/// (Laravel's own clears them all first: the live release's requests in flight failed with
/// `filemtime(): stat failed`, seen under load); the views of releases neither new nor live go,
/// and a compiled file that is not a release's stays.
#[test]
fn view_cache_keeps_the_live_releases_compiled_views() {
    let (sandbox, fixture, stack) = setup(StackOptions::default());
    assert_success(&deploy(&sandbox, &fixture, &stack, "v1", &[]));
    let first = sandbox.current(DEPLOY).unwrap();
    let dir = deploy_dir(&sandbox, DEPLOY).join("shared/storage/framework/views");
    std::fs::write(dir.join("foreign.php"), "<?php // not zdd's\n").unwrap();
    let views = compiled_views(&sandbox);
    assert!(views.get(&first).copied().unwrap_or(0) >= 2, "{views:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_success(&deploy(&sandbox, &fixture, &stack, "v2", &[]));
    let second = sandbox.current(DEPLOY).unwrap();
    let views = compiled_views(&sandbox);
    assert!(
        views.get(&first).copied().unwrap_or(0) >= 2,
        "the live release's views went: {views:?}"
    );
    assert!(views.get(&second).copied().unwrap_or(0) >= 2, "{views:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_success(&deploy(&sandbox, &fixture, &stack, "v1", &[]));
    let third = sandbox.current(DEPLOY).unwrap();
    let views = compiled_views(&sandbox);
    assert!(!views.contains_key(&first), "{views:?}");
    assert!(views.get(&second).copied().unwrap_or(0) >= 2, "{views:?}");
    assert!(views.get(&third).copied().unwrap_or(0) >= 2, "{views:?}");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        views.get("(not a release's)"),
        Some(&1),
        "{views:?} {names:?}"
    );
    assert!(dir.join("foreign.php").exists());
    // No private directory of the compile is left.
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".zdd"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Octane and Horizon are not packaged here: fixture commands named `octane:status`,
/// `octane:reload` and `horizon:terminate` stand in for them and record their calls.
#[test]
fn octane_and_horizon_are_detected_and_reloaded() {
    let (sandbox, fixture, stack) = setup(StackOptions::default());
    let commands = artisan_commands(&[
        ("FakeOctaneStatus", "octane:status", "        return 0;"),
        (
            "FakeOctaneReload",
            "octane:reload",
            &recording_command_body("octane:reload"),
        ),
        (
            "FakeHorizonTerminate",
            "horizon:terminate",
            &recording_command_body("horizon:terminate"),
        ),
    ]);
    fixture.version("v3-workers", &as_refs(&commands));

    let output = deploy(&sandbox, &fixture, &stack, "v2", &[]);
    assert_success(&output);
    let text = stderr(&output);
    assert!(
        text.contains("octane: skipped (the app does not have Laravel Octane)"),
        "{text}"
    );
    assert!(
        text.contains("workers signalled (queue:restart)"),
        "no Horizon: queue:restart at the swap: {text}"
    );
    assert!(artisan_log(&sandbox, DEPLOY).is_empty());

    let output = deploy(&sandbox, &fixture, &stack, "v3-workers", &[]);
    assert_success(&output);
    let text = stderr(&output);
    let release = sandbox.current(DEPLOY).unwrap();
    assert!(
        text.contains("octane: reloaded the Octane workers"),
        "{text}"
    );
    assert!(
        text.contains("workers signalled (horizon:terminate)"),
        "Horizon replaces queue:restart, at the swap: {text}"
    );
    assert_eq!(
        artisan_log(&sandbox, DEPLOY),
        vec![
            format!("horizon:terminate v3-workers {release}"),
            format!("octane:reload v3-workers {release}"),
        ]
    );

    let output = deploy(
        &sandbox,
        &fixture,
        &stack,
        "v3-workers",
        &["octane=false", "horizon=false"],
    );
    assert_success(&output);
    assert!(stderr(&output).contains("octane: skipped (octane = false)"));
    assert!(stderr(&output).contains("workers signalled (queue:restart)"));
    assert_eq!(artisan_log(&sandbox, DEPLOY).len(), 2);

    // Without the signal at the swap, the restart comes after it, from its own artisan.
    let output = deploy(
        &sandbox,
        &fixture,
        &stack,
        "v3-workers",
        &["octane=false", "signal_at_swap=false"],
    );
    assert_success(&output);
    let text = stderr(&output);
    assert!(!text.contains("workers signalled"), "{text}");
    assert!(text.contains("horizon: terminated"), "{text}");
    assert_eq!(artisan_log(&sandbox, DEPLOY).len(), 3);
}

/// The README's first command, as written (with the zdd under test instead of a release build).
#[test]
fn readme_quickstart_deploys_and_deploys_again() {
    let sandbox = Sandbox::new();
    let port = crate::laravel_support::free_port().to_string();
    let script = format!("{}/scripts/quickstart", env!("CARGO_MANIFEST_DIR"));
    let zdd = assert_cmd::cargo::cargo_bin("zdd");
    let run = |args: &[&str]| {
        std::process::Command::new(&script)
            .args(args)
            .env("ZDD_BIN", &zdd)
            .env("ZDD_QUICKSTART_DIR", sandbox.path("qs"))
            .env("PORT", &port)
            .env("HOME", sandbox.root())
            .output()
            .unwrap()
    };
    let first = run(&[]);
    let out = String::from_utf8_lossy(&first.stdout).into_owned();
    assert_eq!(first.status.code(), Some(0), "{out}{}", stderr(&first));
    assert!(out.contains("deployed v1 to "), "{out}");
    assert!(
        out.contains(&format!("serving at http://127.0.0.1:{port}/ : v1 ")),
        "{out}"
    );
    let second = run(&[]);
    let out = String::from_utf8_lossy(&second.stdout).into_owned();
    assert_eq!(second.status.code(), Some(0), "{out}{}", stderr(&second));
    assert!(
        out.contains(&format!("serving at http://127.0.0.1:{port}/ : v2 ")),
        "{out}"
    );
    assert_eq!(run(&["stop"]).status.code(), Some(0));
}
