//! `recipes/laravel.rhai`, every gate on, on each app layout of the corpus
//! (`laravel_layouts_support`): real php-fpm, nginx, Laravel (Debian's), under load, with a
//! queue worker and a session kept across the deploys; and the gates on each layout's queue and
//! database.

use std::time::{Duration, Instant};

use crate::laravel_layouts_support::{assert_deployed, stderr, Layout, Site, DEPLOY};
use crate::laravel_support::{
    dispatch, failed_jobs, wait_for_jobs, Load, QueueWorker, SessionClient, Stack, StackOptions,
};

/// A first deploy, then `rounds` deploys alternating v2 and v1 under load, with jobs dispatched
/// before and after each: no failed request, no connection error, no mixed-version answer, every
/// answer after a deploy from its release, the session and its CSRF token kept, every job run
/// (the late ones by the last release) and none failed. Returns zdd's stderr of the deploys.
fn zero_downtime(site: &Site, rounds: usize) -> String {
    let sandbox = &site.sandbox;
    let stack = Stack::start(sandbox, DEPLOY, StackOptions::default());
    let first = site.deploy(Some(&stack), "v1", &[]);
    assert_deployed(&first);
    let (status, _, body) = stack.get("/version");
    assert_eq!(
        (status, body.trim().to_string()),
        (200, format!("v1 {}", sandbox.current(DEPLOY).unwrap())),
        "{} serves DEPLOY/current/public\n{}",
        site.layout.name(),
        stack.logs()
    );

    let worker = QueueWorker::start(sandbox, DEPLOY);
    let mut session = SessionClient::new(&stack);
    let before = session.count();
    let token = session.csrf();
    let load = Load::start(&stack);
    load.wait_for(20, Duration::from_secs(30));

    let mut jobs = dispatch(&stack, 3);
    let mut deploys: Vec<(Instant, Instant, String, String)> = Vec::new();
    let mut log = stderr(&first);
    for round in 0..rounds {
        let version = if round % 2 == 0 { "v2" } else { "v1" };
        jobs.extend(dispatch(&stack, 2));
        let started = Instant::now();
        let output = site.deploy(Some(&stack), version, &[]);
        assert_deployed(&output);
        let finished = Instant::now();
        log.push_str(&stderr(&output));
        let release = sandbox.current(DEPLOY).expect("current");
        let (status, _, body) = stack.get("/version");
        assert_eq!(
            (status, body.trim().to_string()),
            (200, format!("{version} {release}")),
            "after deploy {round}"
        );
        deploys.push((started, finished, version.to_string(), release));
        jobs.extend(dispatch(&stack, 2));
        std::thread::sleep(Duration::from_millis(300));
    }
    let report = load.stop();
    report.assert_clean();
    for (index, (_, finished, _, release)) in deploys.iter().enumerate() {
        let next = deploys
            .get(index + 1)
            .map(|d| d.0)
            .unwrap_or(report.stopped);
        let stale = report
            .responses
            .iter()
            .filter(|s| s.sent >= *finished && s.sent < next)
            .filter(|s| s.release.as_deref() != Some(release.as_str()))
            .count();
        assert_eq!(stale, 0, "deploy {index}: answers not from {release}");
    }

    let after = session.count();
    assert_eq!(after.id, before.id, "the session survived the deploys");
    assert_eq!(after.count, before.count + 1);
    assert_eq!(session.post_count(&token).0, 200, "the CSRF token survived");

    let (_, _, last_version, last_release) = deploys.last().unwrap().clone();
    let late = dispatch(&stack, 3);
    wait_for_jobs(sandbox, DEPLOY, &jobs, Duration::from_secs(60));
    for record in wait_for_jobs(sandbox, DEPLOY, &late, Duration::from_secs(60)) {
        assert_eq!(
            (record.version, record.release),
            (last_version.clone(), last_release.clone())
        );
    }
    assert_eq!(failed_jobs(sandbox, DEPLOY), 0);
    let workers = worker.stop();
    assert!(
        workers.spawns > 1,
        "queue:restart restarted the workers: {:?}",
        workers.exits
    );
    eprintln!(
        "{}: {} requests, {}",
        site.layout.name(),
        report.total(),
        report.latency()
    );
    log
}

/// What every deploy of a layout says: each gate ran and passed.
fn assert_every_gate_ran(log: &str, deploys: usize) {
    for line in [
        "disk: ",
        "tests: `php artisan --version` passed",
        "app key: ",
        "queued jobs: ",
        "migrations: ",
    ] {
        assert_eq!(
            log.matches(line).count(),
            deploys,
            "{line:?} in every deploy:\n{log}"
        );
    }
}

#[test]
fn the_fixture_layout_deploys_under_load_with_every_gate_on() {
    let site = Site::new(Layout::Fixture);
    let log = zero_downtime(&site, 3);
    assert_every_gate_ran(&log, 4);
}

#[test]
fn an_app_booted_through_bootstrap_autoload_deploys_under_load() {
    let site = Site::new(Layout::BootstrapAutoload);
    let log = zero_downtime(&site, 3);
    assert_every_gate_ran(&log, 4);
}

#[test]
fn an_app_with_its_own_bootstrap_file_and_storage_path_deploys_under_load() {
    let site = Site::new(Layout::CustomBootstrap);
    let log = zero_downtime(&site, 3);
    assert_every_gate_ran(&log, 4);
}

/// Apps zdd cannot boot: its check says why and what to set, and nothing is switched.
#[test]
fn an_app_whose_artisan_does_not_boot_is_refused_with_the_reason() {
    let site = Site::new(Layout::Fixture);
    assert_deployed(&site.deploy(None, "v1", &[]));
    let good = site.sandbox.current(DEPLOY).unwrap();
    let refused = |output: &std::process::Output, message: &str, hint: &str| {
        let text = stderr(output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(
            text.contains("error: task `gate:queued_jobs` failed on host `localhost`"),
            "{text}"
        );
        assert!(text.contains(message), "expected {message:?} in:\n{text}");
        assert!(text.contains(hint), "expected {hint:?} in:\n{text}");
        let cause = text.lines().find(|l| l.starts_with("Caused by: ")).unwrap();
        assert!(
            cause.ends_with("; it printed:"),
            "one line of reason: {text}"
        );
        assert_eq!(site.sandbox.current(DEPLOY).unwrap(), good);
    };

    // No vendor/ (composer off, so no artisan step runs before the gate either).
    let output = site.deploy(
        None,
        "v2",
        &[
            "composer=false",
            "storage_link=false",
            "artisan_caches=false",
            "test_command=",
        ],
    );
    refused(
        &output,
        "Caused by: queued jobs: the app did not boot: `php artisan --version` exited with status 255 before Laravel booted: Uncaught Error: Failed opening required '",
        "hint: the release has no `vendor/`: zdd runs its check in the app as its `artisan` boots it, so the app's dependencies must be installed first (`composer = true`, the default), or deploy without this check with `-o check_queued_jobs=false`",
    );

    // `artisan` as a shell wrapper: `php artisan` prints it and exits 0, so composer's
    // package:discover and every artisan cache step "pass"; the gate does not.
    site.fixture.version_from(
        "v2",
        "shell-artisan",
        &[("artisan", "#!/bin/sh\nexec php bin/console \"$@\"\n")],
    );
    let output = site.deploy(None, "shell-artisan", &[]);
    refused(
        &output,
        "Caused by: queued jobs: the app did not boot: `php artisan --version` exited with status 0 without booting Laravel; it printed:\n  | exec php bin/console \"$@\"\n",
        "hint: zdd runs its check in the app as its `artisan` boots it: `php artisan --version` in the release must boot Laravel (require the autoloader and bootstrap files, make the console kernel and handle the command); fix `artisan`, or deploy without this check with `-o check_queued_jobs=false`",
    );

    // Switched off as the hint says, the shell wrapper deploys (zdd cannot tell it is broken).
    let output = site.deploy(None, "shell-artisan", &["check_queued_jobs=false"]);
    assert_deployed(&output);
    assert!(stderr(&output).contains("queued jobs: skipped (check_queued_jobs = false)"));
}
