//! The Laravel recipe's gates, each made to refuse and each letting a safe deploy through, on the
//! real fixture app (Debian's Laravel, real composer, real SQLite queue and migrations). The
//! advisory database cannot be reached here: the refusal by severity uses a stand-in `composer`
//! that prints an audit report (and passes everything else to the real composer); the offline
//! path uses the real composer.

use std::process::Output;

use crate::laravel_support::{
    deploy_dir, fixture_dir, fixture_repo, run_in, shared_env, FixtureRepo,
};
use crate::support::{their_words, Sandbox};

const DEPLOY: &str = "app";

fn deploy(sandbox: &Sandbox, fixture: &FixtureRepo, branch: &str, extra: &[&str]) -> Output {
    let recipe = format!("{}/recipes/laravel.rhai", env!("CARGO_MANIFEST_DIR"));
    let mut args: Vec<String> = vec!["run".into(), recipe];
    let options = [
        format!("repository={}", fixture.str()),
        format!("deploy_path={}", sandbox.str(DEPLOY)),
        format!("branch={branch}"),
        "fpm_reload=none".to_string(),
        "health_url=".to_string(),
    ];
    for option in options
        .iter()
        .map(String::as_str)
        .chain(extra.iter().copied())
    {
        args.push("-o".into());
        args.push(option.into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    sandbox.zdd(&args).output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn setup() -> (Sandbox, FixtureRepo) {
    let sandbox = Sandbox::new();
    let fixture = fixture_repo(&sandbox, "repo");
    shared_env(&sandbox, DEPLOY);
    (sandbox, fixture)
}

/// A refusal: exit 1 in `task`, with `message`, before the swap (`current` unchanged).
fn assert_refused(sandbox: &Sandbox, output: &Output, task: &str, message: &str, current: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("error: task `{task}` failed on host `localhost`")),
        "{text}"
    );
    assert!(text.contains(message), "expected {message:?} in:\n{text}");
    assert_eq!(sandbox.current(DEPLOY).unwrap(), current);
    // The refused release is gone: nothing newer than `current` is left.
    let releases = sandbox.releases(DEPLOY);
    assert!(
        releases.iter().all(|r| r.as_str() <= current),
        "{releases:?}"
    );
}

fn assert_deployed(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "{}", stderr(output));
}

#[test]
fn tests_gate_refuses_red_tests() {
    let (sandbox, fixture) = setup();
    let command = "test_command=php -r 'exit(file_exists(\"TESTS_FAIL\") ? 1 : 0);'";
    let first = deploy(&sandbox, &fixture, "v1", &[command]);
    assert_deployed(&first);
    assert!(stderr(&first)
        .contains("tests: `php -r 'exit(file_exists(\"TESTS_FAIL\") ? 1 : 0);'` passed"));
    let good = sandbox.current(DEPLOY).unwrap();
    fixture.version_from("v2", "red", &[("TESTS_FAIL", "1\n")]);
    let output = deploy(&sandbox, &fixture, "red", &[command]);
    assert_refused(
        &sandbox,
        &output,
        "gate:tests",
        "Caused by: the tests failed, so nothing was deployed: command `php -r",
        &good,
    );
    assert!(stderr(&output)
        .contains("hint: fix the tests, or deploy without them with `-o test_command=`"));
    assert!(stderr(&deploy(&sandbox, &fixture, "v1", &[]))
        .contains("tests: skipped (no test_command set)"));
}

#[test]
fn audit_gate_refuses_critical_advisories_and_says_when_it_cannot_run() {
    let (sandbox, fixture) = setup();
    assert_deployed(&deploy(&sandbox, &fixture, "v1", &[]));
    let good = sandbox.current(DEPLOY).unwrap();

    // A stand-in composer for the advisory database (unreachable here): `audit` prints a
    // report in composer's JSON format; everything else goes to the real composer.
    let report = r#"{"advisories":{"acme/http":[{"advisoryId":"PKSA-1","packageName":"acme/http","title":"Request smuggling","cve":"CVE-2026-0001","link":"https://example.test/1","severity":"critical"}],"acme/log":[{"advisoryId":"PKSA-2","packageName":"acme/log","title":"Log injection","cve":"","link":"https://example.test/2","severity":"medium"}]}}"#;
    let stand_in = sandbox.write(
        "bin/composer",
        &format!(
            "<?php\nif (in_array('audit', $argv, true)) {{ echo '{report}'; exit(1); }}\n\
             passthru('/usr/bin/composer ' . implode(' ', array_map('escapeshellarg', array_slice($argv, 1))), $status);\nexit($status);\n"
        ),
    );
    let composer = format!("bin/composer={}", stand_in.display());
    let output = deploy(&sandbox, &fixture, "v2", &[&composer]);
    assert_refused(
        &sandbox,
        &output,
        "gate:audit",
        "Caused by: 1 advisory at or above critical affect the release:\n  | composer acme/http: critical Request smuggling (CVE-2026-0001)\n",
        &good,
    );
    assert!(stderr(&output).contains("warning: audit: composer audit: 1 advisory below critical"));
    // At a lower bar both refuse; with the bar above both, it deploys.
    let output = deploy(
        &sandbox,
        &fixture,
        "v2",
        &[&composer, "audit_severity=medium"],
    );
    assert_refused(
        &sandbox,
        &output,
        "gate:audit",
        "2 advisories at or above medium affect the release:",
        &good,
    );
    assert_deployed(&deploy(
        &sandbox,
        &fixture,
        "v2",
        &[&composer, "audit=false"],
    ));
    let good = sandbox.current(DEPLOY).unwrap();

    // The real composer, offline: a lock file with a package from packagist.
    let lock = std::fs::read_to_string(fixture_dir().join("composer.lock")).unwrap();
    let mut lock: serde_json::Value = serde_json::from_str(&lock).unwrap();
    lock["packages"] =
        serde_json::json!([{"name": "monolog/monolog", "version": "2.0.0", "type": "library"}]);
    let json = std::fs::read_to_string(fixture_dir().join("composer.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&json).unwrap();
    json["repositories"] = serde_json::json!([]);
    json["require"] = serde_json::json!({"monolog/monolog": "2.0.0"});
    fixture.version_from(
        "v2",
        "packagist",
        &[
            (
                "composer.lock",
                &serde_json::to_string_pretty(&lock).unwrap(),
            ),
            (
                "composer.json",
                &serde_json::to_string_pretty(&json).unwrap(),
            ),
        ],
    );
    // Why composer could not reach the advisory database is composer's wording, and depends
    // on how this machine lacks the network (no DNS, a refused connection, a proxy): the test
    // holds zdd to its own words and checks only that a reason was passed on.
    let offline = "composer audit could not check for advisories: ";
    let output = deploy(&sandbox, &fixture, "packagist", &["audit_offline=fail"]);
    assert_refused(
        &sandbox,
        &output,
        "gate:audit",
        &format!("Caused by: {offline}"),
        &good,
    );
    let text = their_words(&stderr(&output), offline, "\n");
    assert!(
        text.contains(&format!("Caused by: {offline}[THEIRS]\n")),
        "{text}"
    );
    assert!(
        text.contains(
            "hint: make the advisory database reachable, or deploy with `-o audit_offline=warn`\n"
        ),
        "{text}"
    );
    let output = deploy(&sandbox, &fixture, "packagist", &[]);
    let text = their_words(&stderr(&output), offline, " (deploying anyway");
    assert!(
        text.contains(&format!(
            "warning: audit: {offline}[THEIRS] (deploying anyway: audit_offline = warn)\n"
        )),
        "{text}"
    );
    // It went on, and composer install then failed offline, before the swap.
    assert_refused(&sandbox, &output, "deploy:vendors", "composer", &good);
}

#[test]
fn queued_jobs_gate_refuses_a_release_without_their_class() {
    let (sandbox, fixture) = setup();
    queued_jobs_gate(&sandbox, &fixture, "database");
}

/// The same with the Redis queue driver: a real redis-server on a loopback port (php-redis).
#[test]
fn queued_jobs_gate_reads_the_redis_queue() {
    let (sandbox, fixture) = setup();
    let port = crate::laravel_support::free_port();
    let mut redis = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let env = deploy_dir(&sandbox, DEPLOY).join("shared/.env");
    let text = std::fs::read_to_string(&env)
        .unwrap()
        .replace("QUEUE_CONNECTION=database", "QUEUE_CONNECTION=redis");
    std::fs::write(&env, format!("{text}\nREDIS_PORT={port}\n")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    queued_jobs_gate(&sandbox, &fixture, "redis");
    let _ = redis.kill();
    let _ = redis.wait();
}

/// Jobs of class RecordVersion wait in the queue; a release that renamed the class in one step
/// is refused, the two-release rename deploys. `driver` names the queue in the messages.
fn queued_jobs_gate(sandbox: &Sandbox, fixture: &FixtureRepo, driver: &str) {
    assert_deployed(&deploy(sandbox, fixture, "v1", &[]));
    let good = sandbox.current(DEPLOY).unwrap();
    let current = deploy_dir(sandbox, DEPLOY).join("current");
    run_in(&current, "php", &["artisan", "app:dispatch", "3"]);

    // Version 2 renames the job class in one step: the waiting jobs would all fail.
    let app = fixture.path().to_path_buf();
    let read = |path: &str| std::fs::read_to_string(app.join(path)).unwrap();
    let renamed =
        read("app/Jobs/RecordVersion.php").replace("class RecordVersion", "class RecordRelease");
    let controller =
        read("app/Http/Controllers/ProbeController.php").replace("RecordVersion", "RecordRelease");
    let command =
        read("app/Console/Commands/DispatchJobs.php").replace("RecordVersion", "RecordRelease");
    fixture.remove_and_tag(
        "renamed",
        &["app/Jobs/RecordVersion.php"],
        &[
            ("app/Jobs/RecordRelease.php", &renamed),
            ("app/Http/Controllers/ProbeController.php", &controller),
            ("app/Console/Commands/DispatchJobs.php", &command),
        ],
    );
    let output = deploy(sandbox, fixture, "renamed", &[]);
    assert_refused(
        sandbox,
        &output,
        "gate:queued_jobs",
        "Caused by: jobs waiting in the queue use classes the new release does not have:\n  | App\\Jobs\\RecordVersion: 3 jobs\n",
        &good,
    );
    assert!(stderr(&output).contains("hint: rename a job class in two releases"));

    // The two-release pattern: keep the old class next to the new one, and it deploys.
    let old = read_at(fixture, "v1", "app/Jobs/RecordVersion.php");
    fixture.version("renamed-safely", &[("app/Jobs/RecordVersion.php", &old)]);
    let output = deploy(sandbox, fixture, "renamed-safely", &[]);
    assert_deployed(&output);
    assert!(stderr(&output).contains(&format!(
        "queued jobs: 3 waiting ({driver} queue), every class exists in the new release"
    )));
}

fn read_at(fixture: &FixtureRepo, commit: &str, path: &str) -> String {
    crate::support::git(fixture.path(), &["show", &format!("{commit}:{path}")])
}

#[test]
fn app_key_gate_refuses_a_changed_key_unless_rotation_is_allowed() {
    let (sandbox, fixture) = setup();
    assert_deployed(&deploy(&sandbox, &fixture, "v1", &[]));
    let good = sandbox.current(DEPLOY).unwrap();
    let key = std::fs::read_to_string(
        deploy_dir(&sandbox, DEPLOY).join(format!("releases/{good}/.zdd-app-key")),
    )
    .unwrap();
    assert_eq!(key.trim().len(), 64, "a sha256, never the key: {key}");
    assert!(!key.contains("base64:"));

    let env = deploy_dir(&sandbox, DEPLOY).join("shared/.env");
    let text = std::fs::read_to_string(&env).unwrap();
    let rotated: String = text
        .lines()
        .map(|l| {
            if l.starts_with("APP_KEY=") {
                "APP_KEY=base64:c2Vjb25kIGtleSBmb3IgdGhlIHRlc3Qgb2YgemRkIQ==".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&env, rotated).unwrap();
    let output = deploy(&sandbox, &fixture, "v2", &[]);
    assert_refused(
        &sandbox,
        &output,
        "gate:app_key",
        "Caused by: APP_KEY in the shared .env differs from the one the running release uses: deploying would log every user out and break encrypted data",
        &good,
    );
    assert!(
        !stderr(&output).contains("c2Vjb25k"),
        "the key never appears"
    );
    let output = deploy(&sandbox, &fixture, "v2", &["allow_key_rotation=true"]);
    assert_deployed(&output);
    assert!(stderr(&output).contains("APP_KEY changed (allowed by allow_key_rotation)"));
    let output = deploy(&sandbox, &fixture, "v1", &[]);
    assert_deployed(&output);
    assert!(stderr(&output).contains("app key: unchanged"));
}

#[test]
fn migrations_gate_refuses_drops_and_renames() {
    let (sandbox, fixture) = setup();
    assert_deployed(&deploy(&sandbox, &fixture, "v1", &[]));
    let good = sandbox.current(DEPLOY).unwrap();
    let migration = |name: &str, body: &str| {
        (
            format!("database/migrations/2030_01_01_000000_{name}.php"),
            format!(
                "<?php\n\nuse Illuminate\\Database\\Migrations\\Migration;\nuse Illuminate\\Support\\Facades\\Schema;\nuse Illuminate\\Database\\Schema\\Blueprint;\n\n\
                 return new class extends Migration\n{{\n    public function up()\n    {{\n        {body}\n    }}\n\n    public function down()\n    {{\n    }}\n}};\n"
            ),
        )
    };
    let (path, add) = migration(
        "add_notes",
        "Schema::create('notes', function (Blueprint $table) { $table->id(); });",
    );
    fixture.version_from("v1", "additive", &[(&path, &add)]);
    let (path, drop) = migration("drop_failed_jobs", "Schema::drop('failed_jobs');");
    fixture.version_from("v1", "dropping", &[(&path, &drop)]);
    let (path, rename) = migration("rename_jobs", "Schema::rename('failed_jobs', 'failures');");
    fixture.version_from("v1", "renaming", &[(&path, &rename)]);

    let output = deploy(&sandbox, &fixture, "dropping", &[]);
    assert_refused(
        &sandbox,
        &output,
        "gate:migrations",
        "Caused by: the migrations drop or rename what the running release still uses:\n  | 2030_01_01_000000_drop_failed_jobs: drop table \"failed_jobs\"\n",
        &good,
    );
    let output = deploy(&sandbox, &fixture, "renaming", &[]);
    assert_refused(
        &sandbox,
        &output,
        "gate:migrations",
        "  | 2030_01_01_000000_rename_jobs: alter table \"failed_jobs\" rename to \"failures\"\n",
        &good,
    );

    let output = deploy(&sandbox, &fixture, "additive", &[]);
    assert_deployed(&output);
    assert!(
        stderr(&output).contains("migrations: 1 statement(s) pending, none destructive"),
        "{}",
        stderr(&output)
    );
    let output = deploy(
        &sandbox,
        &fixture,
        "dropping",
        &["allow_destructive_migrations=true"],
    );
    assert_deployed(&output);
    assert!(stderr(&output).contains(
        "warning: migrations: 1 destructive statement(s) allowed by allow_destructive_migrations"
    ));
}

#[test]
fn disk_gate_refuses_when_space_is_short() {
    let (sandbox, fixture) = setup();
    assert_deployed(&deploy(&sandbox, &fixture, "v1", &[]));
    let good = sandbox.current(DEPLOY).unwrap();
    let output = deploy(&sandbox, &fixture, "v2", &["disk_min_free_mb=100000000"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error: task `gate:disk` failed on host `localhost`"),
        "{text}"
    );
    assert!(
        text.contains(" MB needed (disk_min_free_mb = 100000000)"),
        "{text}"
    );
    assert_eq!(sandbox.current(DEPLOY).unwrap(), good);
    assert_eq!(sandbox.releases(DEPLOY), vec![good]);
    let output = deploy(&sandbox, &fixture, "v2", &[]);
    assert_deployed(&output);
    assert!(stderr(&output).contains("disk: "), "{}", stderr(&output));
}
