//! The Laravel 9-12 lifecycle commands in `recipes/laravel.rhai`: `artisan reload`, which
//! restarts run once per deploy and which on every host, `optimize`, `migrate --isolated`, and
//! Octane's reload that keeps serving the old release (laravel/octane#1004).
//!
//! Debian ships Laravel 8, so the newer commands are fixture commands of our own that behave like
//! the real ones (read from the framework's and Octane's sources): `reload` runs `queue:restart`,
//! `schedule:interrupt` and what the installed packages registered, prints one `DONE`/`FAIL`
//! line per item and exits 0 even when one failed, and takes `--except`; `optimize` builds the
//! config, event, route and view caches and reports them the same way; `migrate --isolated=N`
//! exits N without migrating while another migration holds the lock. The app claims Laravel
//! 12.41 the way Laravel reports its version: its console Kernel sets the artisan application's
//! version. Every fixture command appends `HOST COMMAND [web1=CURRENT web2=CURRENT]` to one log
//! for all hosts, so the tests see what ran, where, in which order, and what `current` was then.
//!
//! Two hosts are two `localhost("webN")` with their own `deploy_path` in one sandbox.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::laravel_support::{
    artisan_commands, as_refs, fixture_repo, free_port, shared_env, FixtureRepo,
};
use crate::support::Sandbox;

const LOG: &str = "lifecycle.log";

/// `recipes/laravel.rhai` with `hosts` (each `localhost(NAME)` deploying to `SANDBOX/NAME`)
/// instead of its `localhost()`.
fn recipe(sandbox: &Sandbox, hosts: &[&str]) -> String {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/laravel.rhai"))
            .unwrap();
    let declared: String = hosts
        .iter()
        .map(|h| {
            format!(
                "localhost(\"{h}\").set(\"deploy_path\", \"{}\");\n",
                sandbox.str(h)
            )
        })
        .collect();
    assert!(shipped.contains("\nlocalhost();\n"));
    let text = shipped.replace("\nlocalhost();\n", &format!("\n{declared}"));
    let path = sandbox.path(&format!("laravel-{}.rhai", hosts.join("-")));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn deploy(
    sandbox: &Sandbox,
    fixture: &FixtureRepo,
    hosts: &[&str],
    branch: &str,
    extra: &[&str],
) -> Output {
    deploy_recipe(sandbox, fixture, &recipe(sandbox, hosts), branch, extra)
}

/// [`deploy`] with the recipe at `recipe`.
fn deploy_recipe(
    sandbox: &Sandbox,
    fixture: &FixtureRepo,
    recipe: &str,
    branch: &str,
    extra: &[&str],
) -> Output {
    let mut args: Vec<String> = vec!["run".into(), recipe.to_string(), "-v".into()];
    let options = [
        format!("repository={}", fixture.str()),
        format!("branch={branch}"),
        "audit=false".to_string(),
        "check_queued_jobs=false".to_string(),
        "check_migrations=false".to_string(),
        "fpm_reload=none".to_string(),
        "rollout_stagger=0".to_string(),
    ];
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

fn assert_success(output: &Output) -> String {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(0), "zdd failed:\n{text}");
    text
}

/// The lines the fixture commands logged, then the log emptied for the next deploy.
fn take_log(sandbox: &Sandbox) -> Vec<String> {
    let path = sandbox.path(LOG);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let _ = std::fs::remove_file(&path);
    text.lines().map(str::to_string).collect()
}

/// `app/Support/LifecycleLog.php`: `record(WHAT)` appends `HOST WHAT [web1=.. web2=..]` to the
/// sandbox's log (HOST: the deploy path the release is in; CURRENT: where `current` points).
fn log_support(sandbox: &Sandbox) -> (String, String) {
    let root = sandbox.root().display().to_string();
    let log = sandbox.path(LOG).display().to_string();
    (
        "app/Support/LifecycleLog.php".to_string(),
        format!(
            "<?php\n\nnamespace App\\Support;\n\nclass LifecycleLog\n{{\n    \
             public static function record(string $what): void\n    {{\n        \
             $host = basename(dirname(dirname(realpath(base_path()))));\n        \
             $currents = [];\n        \
             foreach (['web1', 'web2'] as $h) {{\n            \
             $currents[] = $h.'='.basename((string) realpath('{root}/'.$h.'/current'));\n        }}\n        \
             file_put_contents('{log}', sprintf(\"%s %s [%s]\\n\", $host, $what, implode(' ', $currents)), FILE_APPEND | LOCK_EX);\n    \
             }}\n}}\n"
        ),
    )
}

const RECORD: &str =
    "        \\App\\Support\\LifecycleLog::record($this->getName());\n        return 0;";
const RECORD_AND_FAIL: &str =
    "        \\App\\Support\\LifecycleLog::record($this->getName());\n        return 1;";

/// Laravel 12's `queue:restart`: the signal in the cache (and the log).
const QUEUE_RESTART: &str =
    "        \\App\\Support\\LifecycleLog::record($this->getName());\n        \
     cache()->forever('illuminate:queue:restart', time());\n        \
     $this->info('Broadcasting queue restart signal.');\n        return 0;";

/// Laravel 12.41's `reload`: `queue:restart`, `schedule:interrupt`, then what packages
/// registered (here: the package commands the app has), each called silently; one report line
/// per item; `--except` skips items by key or command; exit 0 whatever the items did.
const RELOAD: &str = r#"        $except = array_filter(array_map('trim', explode(',', (string) $this->option('except'))));
        \App\Support\LifecycleLog::record($this->getName().($except ? ' --except='.implode(',', $except) : ''));
        $this->info('Reloading services.');
        $tasks = ['queue' => 'queue:restart', 'schedule' => 'schedule:interrupt', 'horizon' => 'horizon:terminate', 'pulse' => 'pulse:restart', 'reverb' => 'reverb:restart'];
        foreach ($tasks as $key => $command) {
            if (in_array($key, $except) || in_array($command, $except) || ! $this->getApplication()->has($command)) {
                continue;
            }
            $ok = $this->callSilent($command) == 0;
            $this->line(sprintf('  %s %s 1.20ms %s', $key, str_repeat('.', 40 - strlen($key)), $ok ? 'DONE' : 'FAIL'));
        }
        return 0;"#;

/// Laravel 11+'s `optimize`: the four caches, reported like `reload`.
const OPTIMIZE: &str = r#"        \App\Support\LifecycleLog::record($this->getName());
        $this->info('Caching framework bootstrap, configuration, and metadata.');
        foreach (['config' => 'config:cache', 'events' => 'event:cache', 'routes' => 'route:cache', 'views' => 'view:cache'] as $key => $command) {
            $ok = $this->callSilent($command) == 0;
            $this->line(sprintf('  %s %s 20ms %s', $key, str_repeat('.', 40 - strlen($key)), $ok ? 'DONE' : 'FAIL'));
        }
        return 0;"#;

/// Laravel 9.38+'s `migrate --isolated[=N]` on Debian's Laravel 8 `migrate`: while another
/// migration holds the lock (here: `storage/app/migrate.lock` exists) it says so and exits N
/// (0 by default) without migrating.
const ISOLATED_MIGRATE: &str = r#"<?php

namespace App\Console\Commands;

use Illuminate\Database\Console\Migrations\MigrateCommand;

class IsolatedMigrate extends MigrateCommand
{
    protected $signature = 'migrate {--database=} {--force} {--path=*} {--realpath} {--schema-path=}
                {--pretend} {--seed} {--seeder=} {--step} {--isolated= : Do not run the command if another instance is running}';

    public function __construct()
    {
        parent::__construct(app('migrator'), app('events'));
    }

    public function handle()
    {
        if ($this->input->hasParameterOption('--isolated')) {
            if (file_exists(storage_path('app/migrate.lock'))) {
                \App\Support\LifecycleLog::record('migrate (already running)');
                $this->comment('The [migrate] command is already running.');
                return (int) ($this->option('isolated') ?: 0);
            }
            \App\Support\LifecycleLog::record('migrate --isolated');
        }
        return parent::handle() ?? 0;
    }
}
"#;

/// The fixture's files for a version: `commands` (class, signature, body), the log support,
/// extra command classes (`(class, source)`, listed in the Kernel too), and with `laravel` a
/// console Kernel that reports that framework version, as `artisan --version` and `artisan
/// list` do.
fn app_files(
    sandbox: &Sandbox,
    commands: &[(&str, &str, &str)],
    classes: &[(&str, &str)],
    laravel: Option<&str>,
) -> Vec<(String, String)> {
    let mut files = artisan_commands(commands);
    for (path, contents) in files.iter_mut() {
        if path != "app/Console/Kernel.php" {
            continue;
        }
        for (class, _) in classes {
            *contents = contents.replace(
                "    protected $commands = [\n",
                &format!("    protected $commands = [\n        Commands\\{class}::class,\n"),
            );
        }
        if let Some(version) = laravel {
            let end = contents.rfind('}').unwrap();
            contents.insert_str(
                end,
                &format!(
                    "\n    protected function getArtisan()\n    {{\n        \
                     $artisan = parent::getArtisan();\n        \
                     $artisan->setVersion('{version}');\n\n        return $artisan;\n    }}\n"
                ),
            );
        }
    }
    for (class, source) in classes {
        files.push((
            format!("app/Console/Commands/{class}.php"),
            source.to_string(),
        ));
    }
    files.push(log_support(sandbox));
    files
}

/// Laravel 12.41 with Horizon, Pulse, Reverb, the scheduler's interrupt, `reload`, `optimize`
/// and `migrate --isolated`; `pulse_fails`: `pulse:restart` fails.
fn laravel_12(sandbox: &Sandbox, pulse_fails: bool) -> Vec<(String, String)> {
    app_files(
        sandbox,
        &[
            ("FakeReload", "reload {--except=}", RELOAD),
            ("FakeOptimize", "optimize {--except=}", OPTIMIZE),
            ("FakeQueueRestart", "queue:restart", QUEUE_RESTART),
            ("FakeScheduleInterrupt", "schedule:interrupt", RECORD),
            ("FakeHorizonTerminate", "horizon:terminate", RECORD),
            (
                "FakePulseRestart",
                "pulse:restart",
                if pulse_fails { RECORD_AND_FAIL } else { RECORD },
            ),
            ("FakeReverbRestart", "reverb:restart", RECORD),
        ],
        &[("IsolatedMigrate", ISOLATED_MIGRATE)],
        Some("12.41.0"),
    )
}

fn setup(hosts: &[&str]) -> (Sandbox, FixtureRepo) {
    let sandbox = Sandbox::new();
    let fixture = fixture_repo(&sandbox, "repo");
    for host in hosts {
        shared_env(&sandbox, host);
    }
    (sandbox, fixture)
}

/// The log's lines of `host` without the `[currents]` part.
fn ran_on(log: &[String], host: &str) -> Vec<String> {
    log.iter()
        .filter_map(|line| line.strip_prefix(&format!("{host} ")))
        .map(|line| line.split(" [").next().unwrap().to_string())
        .collect()
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// Two hosts, one cache: `artisan reload` on both, the cache signals (queue, schedule, Pulse,
/// Reverb) once, from the last host, after both swaps; Horizon on both. Without a shared cache
/// (auto: the fixture's cache is `file`) each host sends its own. Without `reload` the
/// individual commands follow the same rule. `artisan list` runs once per host per deploy;
/// `optimize` replaces the four cache commands; `migrate --isolated` runs once.
#[test]
fn laravel_12_restarts_run_once_per_deploy_or_on_every_host() {
    let hosts = ["web1", "web2"];
    let (sandbox, fixture) = setup(&hosts);
    let files = laravel_12(&sandbox, false);
    fixture.version("v12", &as_refs(&files));

    let text = assert_success(&deploy(
        &sandbox,
        &fixture,
        &hosts,
        "v12",
        &["shared_cache=true"],
    ));
    let release = sandbox.current("web1").unwrap();
    assert_eq!(sandbox.current("web2").as_deref(), Some(release.as_str()));
    // The commands are read once per host, in the PHP start of storage:link.
    assert_eq!(count(&text, "artisan list --format=json"), 0, "{text}");
    assert_eq!(count(&text, "ZDD_COMMANDS=storage:link"), 2, "{text}");
    let log = take_log(&sandbox);
    // Horizon is terminated at the swap (see deploy:symlink), so `reload` leaves it out.
    let except = "reload --except=horizon:terminate,queue:restart,schedule:interrupt,pulse:restart,reverb:restart";
    assert_eq!(
        ran_on(&log, "web1"),
        vec![
            "optimize",
            "migrate --isolated",
            "horizon:terminate",
            except
        ],
        "{log:#?}"
    );
    assert_eq!(
        ran_on(&log, "web2"),
        vec![
            "optimize",
            "horizon:terminate",
            "reload --except=horizon:terminate",
            "queue:restart",
            "schedule:interrupt",
            "pulse:restart",
            "reverb:restart"
        ],
        "{log:#?}"
    );
    // The signal left after both swaps.
    let signal = log.iter().find(|l| l.contains(" queue:restart ")).unwrap();
    assert!(
        signal.ends_with(&format!("[web1={release} web2={release}]")),
        "{signal}"
    );
    assert!(
        text.contains("optimize: config, route, view and event caches built in one run"),
        "{text}"
    );
    assert!(
        text.contains("route cache: built by the first cache step"),
        "{text}"
    );
    assert!(
        text.contains("reload: restarted queue, schedule, pulse, reverb"),
        "{text}"
    );
    assert!(
        text.contains("workers: restarted by `artisan reload`"),
        "{text}"
    );
    for cache in ["config.php", "routes-v7.php", "events.php"] {
        assert!(
            sandbox
                .path(&format!("web2/releases/{release}/bootstrap/cache/{cache}"))
                .exists(),
            "{cache}"
        );
    }

    // The fixture's cache store is `file`: each host has its own, and sends its own signals.
    let text = assert_success(&deploy(&sandbox, &fixture, &hosts, "v12", &[]));
    let log = take_log(&sandbox);
    for host in hosts {
        let ran = ran_on(&log, host);
        assert!(
            ran.contains(&"reload --except=horizon:terminate".to_string()),
            "{host}: {log:#?}"
        );
        assert_eq!(
            ran.iter().filter(|c| *c == "queue:restart").count(),
            1,
            "{log:#?}"
        );
    }
    assert!(!text.contains("--except=horizon:terminate,queue"), "{text}");

    // Without `reload`: Horizon on each host, the cache signals once, from the last host.
    let text = assert_success(&deploy(
        &sandbox,
        &fixture,
        &hosts,
        "v12",
        &["shared_cache=true", "artisan_reload=false"],
    ));
    let release = sandbox.current("web2").unwrap();
    let log = take_log(&sandbox);
    assert_eq!(
        ran_on(&log, "web1"),
        vec!["optimize", "migrate --isolated", "horizon:terminate"],
        "{log:#?}"
    );
    assert_eq!(
        ran_on(&log, "web2"),
        vec![
            "optimize",
            "horizon:terminate",
            "pulse:restart",
            "reverb:restart",
            "schedule:interrupt"
        ],
        "Horizon replaces queue:restart: {log:#?}"
    );
    let signal = log.iter().find(|l| l.contains(" pulse:restart ")).unwrap();
    assert!(
        signal.ends_with(&format!("[web1={release} web2={release}]")),
        "{signal}"
    );
    assert!(
        text.contains(
            "[web1] workers: `pulse:restart`, `reverb:restart`, `schedule:interrupt` sent once, by the last host to switch"
        ),
        "{text}"
    );
}

/// `artisan reload` exits 0 when a restart inside it failed: zdd reads its report, fails the
/// deploy naming the item, and switches back.
#[test]
fn a_failed_reload_item_fails_the_deploy_and_names_it() {
    let hosts = ["web1"];
    let (sandbox, fixture) = setup(&hosts);
    assert_success(&deploy(&sandbox, &fixture, &hosts, "v1", &[]));
    let before = sandbox.current("web1").unwrap();
    let files = laravel_12(&sandbox, true);
    fixture.version("v12-broken-pulse", &as_refs(&files));

    let output = deploy(&sandbox, &fixture, &hosts, "v12-broken-pulse", &[]);
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(
        text.contains("`artisan reload` reported `pulse` as failed (it exits 0 even then; zdd reads its report)"),
        "{text}"
    );
    assert!(text.contains("artisan:reload"), "{text}");
    assert_eq!(sandbox.current("web1").as_deref(), Some(before.as_str()));
    let log = take_log(&sandbox);
    assert!(
        ran_on(&log, "web1").contains(&"pulse:restart".to_string()),
        "{log:#?}"
    );
}

/// The recipe's fail hook `laravel:recover` declared before `import "deploy"` (so before the
/// stdlib's `deploy:failed`): zdd switches `current` back before any fail hook runs, so it still
/// finds `switched_back()` true and runs `artisan reload` again, in the restored release.
#[test]
fn laravel_recover_reloads_the_restored_release_whatever_the_hook_order() {
    let hosts = ["web1"];
    let (sandbox, fixture) = setup(&hosts);
    fixture.version("v12", &as_refs(&laravel_12(&sandbox, false)));
    assert_success(&deploy(&sandbox, &fixture, &hosts, "v12", &[]));
    let before = sandbox.current("web1").unwrap();
    fixture.version("v12-broken-pulse", &as_refs(&laravel_12(&sandbox, true)));
    let shipped = recipe(&sandbox, &hosts);
    let text = std::fs::read_to_string(&shipped).unwrap();
    let hook = "fail(\"deploy\", \"laravel:recover\");\n";
    assert!(text.contains(hook));
    let reordered = sandbox.write(
        "laravel-reordered.rhai",
        &text.replace(hook, "").replace(
            "import \"deploy\";\n",
            &format!("{hook}import \"deploy\";\n"),
        ),
    );
    take_log(&sandbox);

    let output = deploy_recipe(
        &sandbox,
        &fixture,
        &reordered.display().to_string(),
        "v12-broken-pulse",
        &[],
    );
    let text = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert_eq!(sandbox.current("web1").as_deref(), Some(before.as_str()));
    assert!(!sandbox.path("web1/.zdd/lock").exists());
    let log = take_log(&sandbox);
    let reloads: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("web1 reload "))
        .collect();
    assert_eq!(reloads.len(), 2, "{log:#?}\n{text}");
    assert!(
        !reloads[0].contains(&format!("web1={before}")),
        "the failing reload ran with the new release current: {log:#?}"
    );
    assert!(
        reloads[1].ends_with(&format!("[web1={before} web2=]")),
        "the recover reload ran with the old release current again: {log:#?}"
    );
}

/// Laravel 8 (Debian's, as it reports itself): `optimize` caches only the config and the
/// routes there, so zdd runs the four cache commands; `migrate` has no `--isolated`.
#[test]
fn laravel_8_gets_the_four_cache_commands_and_a_plain_migrate() {
    let hosts = ["web1"];
    let (sandbox, fixture) = setup(&hosts);
    let files = app_files(
        &sandbox,
        &[("FakeOptimize", "optimize {--except=}", OPTIMIZE)],
        &[],
        None,
    );
    fixture.version("v8", &as_refs(&files));
    let text = assert_success(&deploy(&sandbox, &fixture, &hosts, "v8", &[]));
    assert!(take_log(&sandbox).is_empty(), "optimize must not run");
    // The four cache commands, in one PHP start (as Laravel's own `optimize` runs its own).
    for command in ["config:cache", "route:cache", "view:cache", "event:cache"] {
        assert_eq!(
            count(&text, &format!("{command}: done")),
            1,
            "{command}: {text}"
        );
    }
    assert!(
        text.contains("caches: config, route, view, event built in one PHP start"),
        "{text}"
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.contains("auto_prepend_file=") && l.contains(".probe-artisan.php.tmp."))
            .count(),
        2,
        "one PHP start for storage:link (and `artisan list`), one for the caches: {text}"
    );
    assert!(
        !text.contains("artisan list"),
        "read in storage:link's start: {text}"
    );
    let release = sandbox.current("web1").unwrap();
    for cache in ["config.php", "routes-v7.php", "events.php"] {
        assert!(
            sandbox
                .path(&format!("web1/releases/{release}/bootstrap/cache/{cache}"))
                .exists(),
            "{cache}"
        );
    }
    assert!(text.contains("artisan migrate --force\n"), "{text}");
    assert!(!text.contains("--isolated"), "{text}");
    assert!(
        text.contains("reload: the app has no `artisan reload` (Laravel 12.41+)"),
        "{text}"
    );
    assert_eq!(count(&text, "artisan list --format=json"), 0, "{text}");
}

/// `migrate --isolated`: while another migration holds the lock zdd waits, then migrates.
#[test]
fn migrate_isolated_waits_for_the_other_migration() {
    let hosts = ["web1"];
    let (sandbox, fixture) = setup(&hosts);
    assert_success(&deploy(&sandbox, &fixture, &hosts, "v1", &[]));
    let files = laravel_12(&sandbox, false);
    fixture.version("v12", &as_refs(&files));
    take_log(&sandbox);
    let lock = sandbox.path("web1/shared/storage/app/migrate.lock");
    std::fs::write(&lock, "another deploy\n").unwrap();
    // The other migration ends a moment after zdd found it running.
    let remover = {
        let lock = lock.clone();
        let log = sandbox.path(LOG);
        std::thread::spawn(move || {
            let started = Instant::now();
            while !std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("migrate (already running)")
            {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "zdd never migrated"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(1500));
            std::fs::remove_file(lock).unwrap();
        })
    };
    let text = assert_success(&deploy(&sandbox, &fixture, &hosts, "v12", &[]));
    remover.join().unwrap();
    assert!(
        text.contains("migrate: another `migrate --isolated` is running (another deploy, or another host): waiting for it"),
        "{text}"
    );
    assert!(
        text.contains("migrate: the other migration finished; migrated"),
        "{text}"
    );
    let ran = ran_on(&take_log(&sandbox), "web1");
    assert!(
        ran.contains(&"migrate (already running)".to_string()),
        "{ran:?}"
    );
    let migrations: Vec<&String> = ran.iter().filter(|c| c.starts_with("migrate")).collect();
    assert_eq!(
        migrations.last().map(|c| c.as_str()),
        Some("migrate --isolated"),
        "{ran:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Octane (laravel/octane#1004)
// ---------------------------------------------------------------------------------------------

/// A stand-in for an Octane server under a supervisor: PHP's built-in server started on the
/// real path of `current` (as Octane's workers keep the base path they started from), started
/// again by a supervisor loop whenever it stops. Its pid is in `shared/storage/app/octane.pid`,
/// where the fixture's `octane:status` and `octane:stop` find it.
struct FakeOctane {
    supervisor: Child,
    stop: PathBuf,
    pid_file: PathBuf,
    port: u16,
}

impl FakeOctane {
    fn start(sandbox: &Sandbox, host: &str) -> FakeOctane {
        let port = free_port();
        let deploy = sandbox.path(host);
        let stop = sandbox.path("octane.stop");
        let pid_file = deploy.join("shared/storage/app/octane.pid");
        let script = format!(
            "while [ ! -e '{stop}' ]; do\n  root=$(readlink -f '{deploy}/current')\n  \
             php -S 127.0.0.1:{port} -t \"$root/public\" \"$root/public/index.php\" >>'{log}' 2>&1 &\n  \
             echo $! > '{pid}'\n  wait $!\n  sleep 0.3\ndone\n",
            stop = stop.display(),
            deploy = deploy.display(),
            log = sandbox.path("octane.out").display(),
            pid = pid_file.display(),
        );
        let supervisor = Command::new("bash").arg("-c").arg(script).spawn().unwrap();
        FakeOctane {
            supervisor,
            stop,
            pid_file,
            port,
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/health", self.port)
    }

    /// The body of `/health`, once it answers (within 10 s).
    fn health(&self) -> String {
        let started = Instant::now();
        loop {
            if let Ok(mut response) = ureq::get(&self.url()).call() {
                return response.body_mut().read_to_string().unwrap_or_default();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no answer from the fake Octane"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for FakeOctane {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.stop, "");
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        }
        let _ = self.supervisor.kill();
        let _ = self.supervisor.wait();
    }
}

/// `octane:reload` keeps the old release served (the fixture behaves like laravel/octane#1004):
/// without `octane_url` zdd warns that it cannot tell; with it, zdd sees the old release, stops
/// Octane, and its supervisor starts it on the new one.
#[test]
fn an_octane_reload_that_keeps_the_old_release_is_followed_by_a_restart() {
    let hosts = ["web1"];
    let (sandbox, fixture) = setup(&hosts);
    let files = app_files(
        &sandbox,
        &[
            (
                "FakeOctaneStatus",
                "octane:status",
                "        $pid = (int) @file_get_contents(storage_path('app/octane.pid'));\n        \
                 return ($pid > 0 && posix_kill($pid, 0)) ? 0 : 1;",
            ),
            ("FakeOctaneReload", "octane:reload", RECORD),
            (
                "FakeOctaneStop",
                "octane:stop",
                "        \\App\\Support\\LifecycleLog::record($this->getName());\n        \
                 $pid = (int) @file_get_contents(storage_path('app/octane.pid'));\n        \
                 if (! ($pid > 0 && posix_kill($pid, 0))) {\n            \
                 $this->error('Octane server is not running.');\n            return 1;\n        }\n        \
                 posix_kill($pid, 15);\n        return 0;",
            ),
        ],
        &[],
        None,
    );
    fixture.version("v3-octane", &as_refs(&files));
    assert_success(&deploy(&sandbox, &fixture, &hosts, "v3-octane", &[]));
    let first = sandbox.current("web1").unwrap();
    let octane = FakeOctane::start(&sandbox, "web1");
    assert!(octane.health().contains(&first), "{}", octane.health());
    take_log(&sandbox);

    // The reload alone: Octane still serves the release it started from.
    let text = assert_success(&deploy(&sandbox, &fixture, &hosts, "v3-octane", &[]));
    let second = sandbox.current("web1").unwrap();
    assert_ne!(first, second);
    assert!(
        text.contains("octane: reloaded the Octane workers"),
        "{text}"
    );
    assert!(text.contains("octane: no `octane_url` set"), "{text}");
    assert_eq!(ran_on(&take_log(&sandbox), "web1"), vec!["octane:reload"]);
    assert!(octane.health().contains(&first), "{}", octane.health());

    // With octane_url: zdd sees the old release and restarts Octane on the new one.
    let url = format!("octane_url={}", octane.url());
    let text = assert_success(&deploy(&sandbox, &fixture, &hosts, "v3-octane", &[&url]));
    let third = sandbox.current("web1").unwrap();
    assert!(
        text.contains("after the reload (laravel/octane#1004): stopping the server"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "octane: restarted; {} serves release {third}",
            octane.url()
        )),
        "{text}"
    );
    assert_eq!(
        ran_on(&take_log(&sandbox), "web1"),
        vec!["octane:reload", "octane:stop"]
    );
    assert!(octane.health().contains(&third), "{}", octane.health());
}

/// The PHP starts of a deploy share compiled scripts (OPcache's file cache in `.zdd/opcache`):
/// the framework is compiled once and loaded compiled by the later starts; the compiled files
/// of a release go when cleanup removes the release; `php_file_cache=false` leaves PHP as it
/// is. (OPcache does not cache files changed in the last two seconds, so whether the release's
/// own fresh files are in the cache depends on timing: the removal is checked on a compiled
/// file put there by the test.)
#[test]
fn php_starts_share_compiled_scripts_and_forget_removed_releases() {
    let hosts = ["web1"];
    let (sandbox, fixture) = setup(&hosts);
    let text = assert_success(&deploy(
        &sandbox,
        &fixture,
        &hosts,
        "v1",
        &["keep_releases=1"],
    ));
    assert!(
        text.contains("-d opcache.enable_cli=1 -d 'opcache.file_cache="),
        "{text}"
    );
    let deploy_path = std::fs::canonicalize(sandbox.path("web1")).unwrap();
    let cache = deploy_path.join(".zdd/opcache");
    let systems: Vec<PathBuf> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|s| s.path())
        .collect();
    assert_eq!(systems.len(), 1, "{systems:?}");
    assert!(
        systems[0]
            .join("usr/share/php/Illuminate/Foundation/Application.php.bin")
            .exists(),
        "the framework is compiled into the cache"
    );

    let first = sandbox.current("web1").unwrap();
    let compiled = systems[0]
        .join(deploy_path.strip_prefix("/").unwrap())
        .join("releases")
        .join(&first);
    std::fs::create_dir_all(&compiled).unwrap();
    std::fs::write(compiled.join("artisan.bin"), "compiled").unwrap();
    assert_success(&deploy(
        &sandbox,
        &fixture,
        &hosts,
        "v2",
        &["keep_releases=1"],
    ));
    assert_success(&deploy(
        &sandbox,
        &fixture,
        &hosts,
        "v1",
        &["keep_releases=1"],
    ));
    assert!(!sandbox.path(&format!("web1/releases/{first}")).exists());
    assert!(!compiled.exists(), "its compiled scripts went with it");

    let text = assert_success(&deploy(
        &sandbox,
        &fixture,
        &hosts,
        "v2",
        &["keep_releases=1", "php_file_cache=false"],
    ));
    assert!(!text.contains("opcache"), "{text}");
}

/// The round trips of each step of `recipes/laravel.rhai` deploying the Laravel 12 fixture to
/// one host over real SSH: `(task, round trips)` of every `task_finished` event, in order,
/// and the run's total (the `finished` event's).
fn laravel_round_trips_over_ssh() -> (Vec<(String, u64)>, u64) {
    let sandbox = Sandbox::new();
    let fixture = fixture_repo(&sandbox, "repo");
    let files = laravel_12(&sandbox, false);
    fixture.version("v12", &as_refs(&files));
    let hosts = crate::ssh_support::SshHosts::start(&sandbox, 1);
    shared_env(&sandbox, hosts.deploy_path(1));
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/laravel.rhai"))
            .unwrap();
    let recipe = sandbox.path("laravel-ssh.rhai");
    std::fs::write(
        &recipe,
        shipped.replace("\nlocalhost();\n", &format!("\n{}", hosts.recipe_hosts())),
    )
    .unwrap();
    let recipe = recipe.display().to_string();
    // The first deploy seeds `shared/`; the second is a deploy as every later one is.
    let mut last = None;
    for _ in 0..2 {
        let repository = format!("repository={}", fixture.str());
        let mut args = vec!["run", recipe.as_str(), "--json"];
        for option in [
            repository.as_str(),
            "branch=v12",
            "audit=false",
            "check_queued_jobs=false",
            "check_migrations=false",
            "fpm_reload=none",
        ] {
            args.extend(["-o", option]);
        }
        let output = sandbox.zdd(&args).output().expect("zdd runs");
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        last = Some(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let events: Vec<serde_json::Value> = last
        .unwrap()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let steps = events
        .iter()
        .filter(|e| e["event"] == "task_finished")
        .map(|e| {
            (
                e["task"].as_str().unwrap().to_string(),
                e["round_trips"].as_u64().unwrap(),
            )
        })
        .collect();
    let total = events
        .iter()
        .find(|e| e["event"] == "finished")
        .and_then(|e| e["round_trips"].as_u64())
        .unwrap();
    (steps, total)
}

/// Over SSH the Laravel recipe waits for the host only in steps that look at a result, and
/// once in each but `deploy:vendors` (php and composer looked up on the host, once per run,
/// then composer's run). Steps that only change files never wait. Outside the steps the run
/// waits twice: the shared `.env` read for its secrets before anything is shown, and the
/// last wait. The figures are README.md's; a step that starts waiting more fails here.
#[test]
fn over_ssh_the_laravel_recipe_waits_only_in_steps_that_look_at_a_result() {
    let (steps, total) = laravel_round_trips_over_ssh();
    let report: Vec<String> = steps.iter().map(|(t, n)| format!("{t}: {n}")).collect();
    eprintln!(
        "round trips per step:\n{}\ntotal {total}",
        report.join("\n")
    );
    let of = |task: &str| {
        steps
            .iter()
            .find(|(t, _)| t == task)
            .unwrap_or_else(|| panic!("no {task} in {report:?}"))
            .1
    };
    // Steps that only change files are sent without waiting.
    for task in [
        "deploy:lock",
        "deploy:release",
        "deploy:update_code",
        "deploy:shared",
        "deploy:cleanup",
        "deploy:unlock",
    ] {
        assert_eq!(of(task), 0, "{task}: {report:?}");
    }
    // The lock with the host's state; the disk's free space; the writable dirs' facts.
    assert_eq!(of("deploy:prepare"), 1, "{report:?}");
    // php and composer looked up (once per run), then composer install.
    assert_eq!(of("deploy:vendors"), 2, "{report:?}");
    for (task, waits) in &steps {
        if task != "deploy:vendors" {
            assert!(*waits <= 1, "{task} waited {waits} times: {report:?}");
        }
    }
    let counted: u64 = steps.iter().map(|(_, n)| n).sum();
    assert_eq!(total, counted + 2, "{report:?}");
    assert!(total <= 15, "{total} round trips: {report:?}");
}
