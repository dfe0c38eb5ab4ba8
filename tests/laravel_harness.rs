//! Tests of the Laravel harness itself (no zdd): a release deployed by hand, served by the real
//! php-fpm + nginx stack, under load; the session client; the supervised queue worker.

use std::time::{Duration, Instant};

use crate::laravel_support::*;
use crate::support::Sandbox;

/// A sandbox with the fixture repository and release `A` (tag `v1`, with caches) made `current`.
fn deployed_by_hand() -> (Sandbox, FixtureRepo) {
    let sandbox = Sandbox::new();
    let fixture = fixture_repo(&sandbox, "repo");
    shared_env(&sandbox, "app");
    manual_release(&sandbox, &fixture, "app", "A", "v1", true);
    swap_current(&sandbox, "app", "A");
    (sandbox, fixture)
}

#[test]
fn fixture_repo_has_versions() {
    let sandbox = Sandbox::new();
    let fixture = fixture_repo(&sandbox, "repo");
    assert_eq!(fixture.commit_of("v1"), fixture.v1);
    assert_eq!(fixture.commit_of("v2"), fixture.v2);
    for dotfile in [
        ".env.example",
        ".gitignore",
        "storage/framework/sessions/.gitignore",
    ] {
        assert!(fixture.path().join(dotfile).is_file(), "{dotfile} copied");
    }
    assert!(!fixture.path().join("vendor").exists());

    // A one-off broken version does not leak into the next version on main.
    let broken = fixture.version_from("v2", "v3-broken", &[HEALTH_FAIL]);
    let v4 = fixture.version("v4", &[("NOTES", "four\n")]);
    assert_eq!(fixture.commit_of("v3-broken"), broken);
    let files = crate::support::git(fixture.path(), &["ls-tree", "-r", "--name-only", "v4"]);
    assert!(!files.lines().any(|f| f == "HEALTH_FAIL"), "{files}");
    assert!(files.lines().any(|f| f == "NOTES"));
    let removed = fixture.remove_and_tag("v5", &["NOTES"], &[]);
    let files = crate::support::git(fixture.path(), &["ls-tree", "-r", "--name-only", &removed]);
    assert!(!files.lines().any(|f| f == "NOTES"), "{files}");
    let version = crate::support::git(fixture.path(), &["show", &format!("{v4}:VERSION")]);
    assert_eq!(version, "v4\n");
}

#[test]
fn stack_serves_a_release_deployed_by_hand_under_load_with_sessions() {
    let t0 = Instant::now();
    let (sandbox, _fixture) = deployed_by_hand();
    let built = t0.elapsed();
    let stack = Stack::start(&sandbox, "app", StackOptions::default());
    let started = t0.elapsed();

    let (status, headers, body) = stack.get("/health");
    assert_eq!(status, 200, "{body}\n{}", stack.logs());
    assert_eq!(headers.get("x-release").unwrap(), "A");
    assert!(
        body.starts_with("ok version=v1 release=A commit="),
        "{body}"
    );

    // A session from before the load keeps counting through it; CSRF works.
    let mut session = SessionClient::new(&stack);
    let first = session.count();
    assert_eq!(first.count, 1);
    let token = session.csrf();

    let load = Load::start(&stack);
    load.wait_for(20, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    let second = session.count();
    let (post_status, post_body) = session.post_count(&token);
    let report = load.stop();
    eprintln!("{report}");

    assert_eq!(
        second,
        SessionState {
            count: 2,
            id: first.id.clone()
        }
    );
    assert_eq!(post_status, 200, "{post_body}");
    assert_eq!(
        parse_session(&post_body),
        SessionState {
            count: 3,
            id: first.id.clone()
        }
    );
    // A wrong token is refused (419): CSRF is really checked.
    assert_eq!(session.post_count("not-the-token").0, 419);
    // A fresh client gets a fresh session.
    let other = SessionClient::new(&stack).count();
    assert_eq!(other.count, 1);
    assert_ne!(other.id, first.id);

    report.assert_clean();
    assert!(report.total() >= 40, "{report}");
    assert!(!report.hit_cap);
    report.assert_from_after(report.started, "A");
    for path in ["/slow?ms=200", "/version", "/health", "/"] {
        assert!(
            report.responses.iter().any(|s| s.path == path),
            "{path} requested"
        );
    }
    let slow = report.latency_where(|s| s.path.starts_with("/slow"));
    assert!(slow.p50_ms >= 200.0, "{slow}");
    assert_eq!(
        report.latency_between(report.started, report.stopped).count,
        report.total()
    );
    eprintln!(
        "release by hand {:.1} s, stack start {:.1} s, total {:.1} s",
        built.as_secs_f64(),
        (started - built).as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn load_detects_failures_and_other_releases() {
    // The classifier can fail: a release without the app answers 404 and names no release.
    let (sandbox, fixture) = deployed_by_hand();
    manual_release(&sandbox, &fixture, "app", "B", "v2", true);
    let stack = Stack::start(&sandbox, "app", StackOptions::default());
    let load = Load::start_with(
        &stack.url,
        LoadOptions {
            clients: 2,
            paths: vec![
                "/version".into(),
                "/slow?ms=50".into(),
                "/missing.txt".into(),
            ],
            ..LoadOptions::default()
        },
    );
    load.wait_for(10, Duration::from_secs(10));
    swap_current(&sandbox, "app", "B");
    let swapped = Instant::now();
    // Leave time for requests sent after the swap: with $realpath_root each lands on B.
    std::thread::sleep(Duration::from_millis(800));
    let report = load.stop();

    assert!(!report.is_clean());
    assert!(report.failed() > 0, "{report}");
    assert_eq!(report.connection_errors(), 0, "{report}");
    assert_eq!(report.mixed(), 0, "{report}");
    assert!(report.examples().len() <= 20);
    assert!(report.examples()[0].contains("failed 404"), "{report}");
    // Before the swap, A; after it, B — and "all from A" after the swap must not hold.
    let releases = report.releases();
    assert!(releases.get("A").copied().unwrap_or(0) > 0, "{report}");
    assert!(releases.get("B").copied().unwrap_or(0) > 0, "{report}");
    let ok_after: Vec<_> = report
        .responses_after(swapped)
        .into_iter()
        .filter(|s| !s.failed())
        .collect();
    assert!(!ok_after.is_empty());
    assert!(
        ok_after.iter().all(|s| s.release.as_deref() == Some("B")),
        "{report}"
    );
    assert!(!report.not_from_after(swapped, "A").is_empty());
}

#[test]
fn queue_worker_runs_jobs_and_restarts() {
    let (sandbox, _fixture) = deployed_by_hand();
    let stack = Stack::start(&sandbox, "app", StackOptions::default());
    let worker = QueueWorker::start(&sandbox, "app");

    let ids = dispatch(&stack, 5);
    let records = wait_for_jobs(&sandbox, "app", &ids, Duration::from_secs(15));
    assert!(
        records
            .iter()
            .all(|r| r.version == "v1" && r.release == "A"),
        "{records:?}"
    );

    // queue:restart makes the worker exit after its job; the supervisor starts a new one.
    let before = worker.spawns();
    run_in(
        &sandbox.path("app/current"),
        "php",
        &["artisan", "queue:restart"],
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while worker.spawns() == before {
        assert!(Instant::now() < deadline, "the worker was not restarted");
        std::thread::sleep(Duration::from_millis(50));
    }
    let more = dispatch(&stack, 3);
    wait_for_jobs(&sandbox, "app", &more, Duration::from_secs(15));

    let report = worker.stop();
    assert!(report.spawns >= 2, "{report:?}");
    assert_eq!(jobs_log(&sandbox, "app").len(), 8);
    assert_eq!(failed_jobs(&sandbox, "app"), 0);
    assert_eq!(pending_jobs(&sandbox, "app"), 0);
}

#[test]
fn load_counts_connection_errors_and_stops_at_its_cap() {
    // Nothing listens on this port: every request is a connection error, none a "failure".
    let url = format!("http://127.0.0.1:{}", free_port());
    let load = Load::start_with(
        &url,
        LoadOptions {
            clients: 2,
            pause: Duration::from_millis(10),
            max_duration: Duration::from_millis(500),
            ..LoadOptions::default()
        },
    );
    std::thread::sleep(Duration::from_millis(900));
    let count = load.count();
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(load.count(), count, "the clients stopped at the cap");
    let report = load.stop();
    assert!(report.hit_cap);
    assert!(report.total() > 0);
    assert_eq!(report.connection_errors(), report.total(), "{report}");
    assert_eq!(report.failed(), 0);
    assert!(
        report.examples()[0].contains("connection error"),
        "{report}"
    );
}

/// The panic message of `f`, which must panic.
fn panic_message(f: impl FnOnce()) -> String {
    let payload =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).expect_err("expected a panic");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn fixture_variants_behave_as_documented() {
    let sandbox = Sandbox::new();
    let fixture = fixture_repo(&sandbox, "repo");
    let body = recording_command_body("octane:reload");
    let commands = artisan_commands(&[("OctaneReload", "octane:reload", &body)]);
    fixture.version("v3", &as_refs(&commands));
    fixture.version_from("v3", "v3-bad-migration", &[BROKEN_MIGRATION]);
    fixture.version_from("v3", "v3-bad-composer", &[BROKEN_COMPOSER_JSON]);

    // An extra artisan command: listed, runs, records who ran it.
    let release = manual_release(&sandbox, &fixture, "app", "C", "v3", true);
    assert!(run_in(&release, "php", &["artisan", "list"]).contains("octane:reload"));
    run_in(&release, "php", &["artisan", "octane:reload"]);
    assert_eq!(
        artisan_log(&sandbox, "app"),
        vec!["octane:reload v3 C".to_string()]
    );

    let message = panic_message(|| {
        manual_release(&sandbox, &fixture, "app", "D", "v3-bad-migration", false);
    });
    assert!(
        message.contains("broken migration, on purpose"),
        "{message}"
    );
    let message = panic_message(|| {
        manual_release(&sandbox, &fixture, "app", "E", "v3-bad-composer", false);
    });
    assert!(message.contains("composer"), "{message}");
}
