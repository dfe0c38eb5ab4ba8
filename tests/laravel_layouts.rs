//! `recipes/laravel.rhai`, every gate on, on each app layout of the corpus
//! (`laravel_layouts_support`): real php-fpm, nginx, Laravel (Debian's), under load, with a
//! queue worker and a session kept across the deploys; and the gates on each layout's queue and
//! database.

use std::time::{Duration, Instant};

use crate::laravel_layouts_support::Service;
use crate::laravel_layouts_support::{assert_deployed, stderr, Layout, Site, DEPLOY};
use crate::laravel_support::{
    as_refs, dispatch, run_in, wait_for_jobs, Load, QueueWorker, SessionClient, Stack, StackOptions,
};
use crate::support::git;

/// A first deploy, then `rounds` deploys alternating v2 and v1 under load, with jobs dispatched
/// before and after each: no failed request, no connection error, no mixed-version answer, every
/// answer after a deploy from its release, the session and its CSRF token kept, every job run
/// (the late ones by the last release) and none failed. Returns zdd's stderr of the deploys.
fn zero_downtime(site: &Site, rounds: usize, options: StackOptions) -> String {
    let sandbox = &site.sandbox;
    let reloads = options.process_control_timeout.is_some();
    let stack = Stack::start(sandbox, DEPLOY, options);
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
    assert_eq!(site.failed_jobs(), 0);
    let workers = worker.stop();
    assert!(
        workers.spawns > 1,
        "queue:restart restarted the workers: {:?}",
        workers.exits
    );
    assert_eq!(
        log.matches("php-fpm: reloaded (SIGUSR2").count(),
        if reloads { rounds + 1 } else { 0 },
        "php-fpm reloaded at each deploy only when the reload is graceful:\n{log}"
    );
    eprintln!(
        "{}: {} requests, {}",
        site.layout.name(),
        report.total(),
        report.latency()
    );
    log
}

/// php-fpm with `process_control_timeout` > 0: the recipe reloads it at each deploy (the other
/// layouts run Debian's default pool, where it does not).
const GRACEFUL_RELOAD: StackOptions = StackOptions {
    process_control_timeout: Some(10),
    document_root: false,
};

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

/// Boots the app in `DEPLOY/current` the way zdd's probe did before it went through `artisan`
/// (`vendor/autoload.php`, then `bootstrap/app.php`): whether that works.
fn boots_without_artisan(site: &Site) -> bool {
    let code = "require 'vendor/autoload.php'; $app = require 'bootstrap/app.php'; \
                $app->make(Illuminate\\Contracts\\Console\\Kernel::class)->bootstrap(); echo 'booted';";
    let output = std::process::Command::new("php")
        .args(["-r", code])
        .current_dir(site.deploy_path().join("current"))
        .output()
        .unwrap();
    output.status.success() && String::from_utf8_lossy(&output.stdout).ends_with("booted")
}

#[test]
fn the_fixture_layout_deploys_under_load_with_every_gate_on() {
    let site = Site::new(Layout::Fixture);
    let log = zero_downtime(&site, 3, StackOptions::default());
    assert_every_gate_ran(&log, 4);
    assert!(boots_without_artisan(&site));
}

#[test]
fn an_app_booted_through_bootstrap_autoload_deploys_under_load() {
    let site = Site::new(Layout::BootstrapAutoload);
    let log = zero_downtime(&site, 3, StackOptions::default());
    assert_every_gate_ran(&log, 4);
    // The layout is what it claims: only its artisan's chain loads the framework.
    assert!(!boots_without_artisan(&site));
}

#[test]
fn an_app_with_its_own_bootstrap_file_and_storage_path_deploys_under_load() {
    let site = Site::new(Layout::CustomBootstrap);
    let log = zero_downtime(&site, 3, GRACEFUL_RELOAD);
    assert_every_gate_ran(&log, 4);
    // The layout is what it claims: the app cannot be made without bootstrap/start.php.
    assert!(!boots_without_artisan(&site));
}

#[test]
fn an_app_with_its_queue_and_cache_on_redis_deploys_under_load() {
    let site = Site::new(Layout::Redis);
    let log = zero_downtime(&site, 3, StackOptions::default());
    assert_every_gate_ran(&log, 4);
    assert_eq!(log.matches("(redis queue)").count(), 4, "{log}");
    // The workers restarted (see zero_downtime) on a signal that lives in Redis, not in a file.
    let Service::Redis(redis) = &site.service else {
        unreachable!()
    };
    let keys = redis.cli(&[
        "-n",
        "1",
        "--scan",
        "--pattern",
        "*illuminate:queue:restart",
    ]);
    assert_eq!(
        keys.lines().count(),
        1,
        "the restart signal in Redis: {keys:?}"
    );
}

#[test]
fn an_app_on_postgresql_deploys_under_load() {
    let site = Site::new(Layout::Postgres);
    let log = zero_downtime(&site, 3, GRACEFUL_RELOAD);
    assert_every_gate_ran(&log, 4);
    assert_eq!(log.matches("(database queue)").count(), 4, "{log}");
}

#[test]
fn an_app_on_mariadb_deploys_under_load() {
    let site = Site::new(Layout::MariaDb);
    let log = zero_downtime(&site, 3, GRACEFUL_RELOAD);
    assert_every_gate_ran(&log, 4);
    assert_eq!(log.matches("(database queue)").count(), 4, "{log}");
}

/// A refusal by `task` with `message`, before the swap: `current` is still `good`.
fn assert_refused(
    site: &Site,
    output: &std::process::Output,
    task: &str,
    message: &str,
    good: &str,
) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("error: task `{task}` failed on host `localhost`")),
        "{text}"
    );
    assert!(text.contains(message), "expected {message:?} in:\n{text}");
    assert_eq!(site.sandbox.current(DEPLOY).unwrap(), good);
}

/// Three RecordVersion jobs wait in the layout's queue: a release that renamed the class is
/// refused; one that keeps the old class next to the new deploys.
fn queued_jobs_gate(site: &Site, queue: &str) {
    assert_deployed(&site.deploy(None, "v1", &[]));
    let good = site.sandbox.current(DEPLOY).unwrap();
    run_in(
        &site.deploy_path().join("current"),
        "php",
        &["artisan", "app:dispatch", "3"],
    );

    let read = |path: &str| git(site.fixture.path(), &["show", &format!("v1:{path}")]);
    let renamed = |path: &str| read(path).replace("RecordVersion", "RecordRelease");
    site.fixture.remove_and_tag(
        "renamed",
        &["app/Jobs/RecordVersion.php"],
        &[
            (
                "app/Jobs/RecordRelease.php",
                &renamed("app/Jobs/RecordVersion.php"),
            ),
            (
                "app/Http/Controllers/ProbeController.php",
                &renamed("app/Http/Controllers/ProbeController.php"),
            ),
            (
                "app/Console/Commands/DispatchJobs.php",
                &renamed("app/Console/Commands/DispatchJobs.php"),
            ),
        ],
    );
    let output = site.deploy(None, "renamed", &[]);
    assert_refused(
        site,
        &output,
        "gate:queued_jobs",
        "Caused by: jobs waiting in the queue use classes the new release does not have:\n  | App\\Jobs\\RecordVersion: 3 jobs\n",
        &good,
    );
    site.fixture.version(
        "renamed-safely",
        &[(
            "app/Jobs/RecordVersion.php",
            &read("app/Jobs/RecordVersion.php"),
        )],
    );
    let output = site.deploy(None, "renamed-safely", &[]);
    assert_deployed(&output);
    assert!(
        stderr(&output).contains(&format!(
            "queued jobs: 3 waiting ({queue} queue), every class exists in the new release"
        )),
        "{}",
        stderr(&output)
    );
}

#[test]
fn queued_jobs_gate_reads_the_database_queue_on_postgresql() {
    queued_jobs_gate(&Site::new(Layout::Postgres), "database");
}

#[test]
fn queued_jobs_gate_reads_the_database_queue_on_mariadb() {
    queued_jobs_gate(&Site::new(Layout::MariaDb), "database");
}

/// The Redis queue, read through the app's own connection (its key prefix), and the queues
/// listed in `queue_names` besides the default one.
#[test]
fn queued_jobs_gate_reads_the_redis_queues_named_in_queue_names() {
    let site = Site::new(Layout::Redis);
    queued_jobs_gate(&site, "redis");
    // A job of a class no release has, waiting in another queue (`emails`), as Laravel stores it.
    let Service::Redis(redis) = &site.service else {
        unreachable!()
    };
    let payload = r#"{"uuid":"8a4c1c1e-0000-4000-8000-000000000001","displayName":"App\\Jobs\\SendNewsletter","job":"Illuminate\\Queue\\CallQueuedHandler@call","maxTries":null,"timeout":null,"data":{"commandName":"App\\Jobs\\SendNewsletter","command":"O:26:\"App\\Jobs\\SendNewsletter\":0:{}"},"id":"1","attempts":0}"#;
    redis.cli(&["rpush", "zdd_fixture_database_queues:emails", payload]);
    let output = site.deploy(None, "renamed-safely", &[]);
    assert_deployed(&output);
    assert!(
        stderr(&output).contains("queued jobs: 3 waiting (redis queue)"),
        "{}",
        stderr(&output)
    );
    let good = site.sandbox.current(DEPLOY).unwrap();
    let output = site.deploy(None, "renamed-safely", &["queue_names=emails"]);
    assert_refused(
        &site,
        &output,
        "gate:queued_jobs",
        "use classes the new release does not have:\n  | App\\Jobs\\SendNewsletter: 1 job\n",
        &good,
    );
}

/// A migration file `database/migrations/<name>.php` whose `up()` runs `body`.
fn migration(name: &str, body: &str) -> (String, String) {
    (
        format!("database/migrations/{name}.php"),
        format!(
            "<?php\n\nuse Illuminate\\Database\\Migrations\\Migration;\nuse Illuminate\\Database\\Schema\\Blueprint;\n\
             use Illuminate\\Support\\Facades\\Schema;\n\nreturn new class extends Migration\n{{\n    \
             public function up()\n    {{\n        {body}\n    }}\n\n    public function down()\n    {{\n    }}\n}};\n"
        ),
    )
}

/// On the layout's real database, with the SQL its driver prints for `migrate --pretend`:
/// additive migrations pass, dropping indexes, unique keys and foreign keys passes, and
/// dropping or renaming a table or a column is refused, each migration named.
fn migrations_gate(site: &Site) {
    let additive = [
        migration(
            "2030_01_01_000000_create_authors",
            "Schema::create('authors', function (Blueprint $table) { $table->id(); $table->string('name'); });",
        ),
        migration(
            "2030_01_01_000001_create_notes",
            "Schema::create('notes', function (Blueprint $table) { $table->id(); \
             $table->foreignId('author_id')->constrained(); $table->string('title')->index(); \
             $table->string('slug')->unique(); $table->text('body'); $table->text('summary'); });",
        ),
    ];
    let harmless = [
        migration(
            "2030_01_02_000000_drop_indexes",
            "Schema::table('notes', function (Blueprint $table) { $table->dropForeign(['author_id']); \
             $table->dropIndex(['title']); $table->dropUnique(['slug']); });",
        ),
        migration(
            "2030_01_02_000001_add_column",
            "Schema::table('notes', function (Blueprint $table) { $table->string('tag')->nullable(); });",
        ),
    ];
    let destructive = [
        migration(
            "2030_01_03_000000_drop_body",
            "Schema::table('notes', function (Blueprint $table) { $table->dropColumn('body'); });",
        ),
        migration(
            "2030_01_03_000001_drop_two_columns",
            "Schema::table('notes', function (Blueprint $table) { $table->dropColumn(['summary', 'tag']); });",
        ),
        migration(
            "2030_01_03_000002_rename_notes",
            "Schema::rename('notes', 'posts');",
        ),
        migration("2030_01_03_000003_drop_authors", "Schema::drop('authors');"),
        migration(
            "2030_01_03_000004_drop_legacy_if_exists",
            "Schema::dropIfExists('failed_jobs');",
        ),
    ];
    assert_deployed(&site.deploy(None, "v1", &[]));
    site.fixture.version("additive", &as_refs(&additive));
    let output = site.deploy(None, "additive", &[]);
    assert_deployed(&output);
    assert!(
        stderr(&output).contains(" statement(s) pending, none destructive"),
        "{}",
        stderr(&output)
    );
    site.fixture.version("harmless", &as_refs(&harmless));
    let output = site.deploy(None, "harmless", &[]);
    assert_deployed(&output);
    assert!(
        stderr(&output).contains(" statement(s) pending, none destructive"),
        "{}",
        stderr(&output)
    );
    let good = site.sandbox.current(DEPLOY).unwrap();

    site.fixture.version("destructive", &as_refs(&destructive));
    let output = site.deploy(None, "destructive", &[]);
    assert_refused(
        site,
        &output,
        "gate:migrations",
        "Caused by: the migrations drop or rename what the running release still uses:\n",
        &good,
    );
    let text = stderr(&output);
    for (path, _) in &destructive {
        let name = path
            .trim_start_matches("database/migrations/")
            .trim_end_matches(".php");
        assert!(
            text.contains(&format!("\n  | {name}: ")),
            "{name} refused:\n{text}"
        );
    }
    // What --pretend printed is what runs: allowed, the same migrations apply on the database.
    let output = site.deploy(None, "destructive", &["allow_destructive_migrations=true"]);
    assert_deployed(&output);
    assert!(
        stderr(&output).contains("warning: migrations: 5 destructive statement(s) allowed"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn migrations_gate_on_postgresql() {
    migrations_gate(&Site::new(Layout::Postgres));
}

#[test]
fn migrations_gate_on_mariadb() {
    migrations_gate(&Site::new(Layout::MariaDb));
}

/// Apps zdd cannot boot: the first step that runs PHP in the app says why and what to set, and
/// nothing is switched.
#[test]
fn an_app_whose_artisan_does_not_boot_is_refused_with_the_reason() {
    let site = Site::new(Layout::Fixture);
    assert_deployed(&site.deploy(None, "v1", &[]));
    let good = site.sandbox.current(DEPLOY).unwrap();
    let refused = |output: &std::process::Output, task: &str, message: &str, hint: &str| {
        let text = stderr(output);
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(
            text.contains(&format!("error: task `{task}` failed on host `localhost`")),
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
        "gate:queued_jobs",
        "Caused by: queued jobs: the app did not boot: `php artisan --version` exited with status 255 before Laravel booted: Uncaught Error: Failed opening required '",
        "hint: the release has no `vendor/`: zdd runs its PHP in the app as its `artisan` boots it, so the app's dependencies must be installed first (`composer = true`, the default), or deploy without this step with `-o check_queued_jobs=false`",
    );

    // `artisan` as a shell wrapper: `php artisan` prints it and exits 0, so composer's
    // package:discover "passes"; storage:link, run inside the booted app, does not.
    site.fixture.version_from(
        "v2",
        "shell-artisan",
        &[("artisan", "#!/bin/sh\nexec php bin/console \"$@\"\n")],
    );
    let output = site.deploy(None, "shell-artisan", &[]);
    refused(
        &output,
        "artisan:storage:link",
        "Caused by: artisan: the app did not boot: `php artisan --version` exited with status 0 without booting Laravel; it printed:\n  | exec php bin/console \"$@\"\n",
        "hint: zdd runs its PHP in the app as its `artisan` boots it: `php artisan --version` in the release must boot Laravel (require the autoloader and bootstrap files, make the console kernel and handle the command); fix `artisan`, or deploy without this step with `-o storage_link=false`",
    );
    let output = site.deploy(None, "shell-artisan", &["storage_link=false"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error: task `artisan:config:cache` failed on host `localhost`"),
        "{text}"
    );
    assert!(
        text.contains("Caused by: `artisan list --format=json` did not answer JSON"),
        "{text}"
    );
    assert_eq!(site.sandbox.current(DEPLOY).unwrap(), good);
    let output = site.deploy(
        None,
        "shell-artisan",
        &["storage_link=false", "artisan_caches=false"],
    );
    refused(
        &output,
        "gate:queued_jobs",
        "Caused by: queued jobs: the app did not boot: `php artisan --version` exited with status 0 without booting Laravel",
        "or deploy without this step with `-o check_queued_jobs=false`",
    );

    // No `artisan` at all (and so no composer, whose scripts call it): said as such, before
    // anything is switched.
    site.fixture.remove_and_tag("no-artisan", &["artisan"], &[]);
    let output = site.deploy(None, "no-artisan", &["composer=false"]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("error: task `artisan:storage:link` failed on host `localhost`"),
        "{text}"
    );
    assert!(
        text.contains("Caused by: artisan: the app has no `artisan` in "),
        "{text}"
    );
    assert!(
        text.contains("or switch the step off with `-o storage_link=false`"),
        "{text}"
    );
    assert_eq!(site.sandbox.current(DEPLOY).unwrap(), good);

    // An `artisan` that is not Laravel's cannot be deployed with the Laravel recipe: every
    // step that asks the app something refuses it, each saying why.
}
