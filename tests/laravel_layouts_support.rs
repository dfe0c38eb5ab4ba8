//! A corpus of Laravel app layouts, all on Debian's framework: the fixture app
//! (`examples/laravel-app`) rewritten by small overlays into the shapes real apps take — another
//! `artisan` and bootstrap chain, another storage path, another queue, cache and database — so
//! the recipe is proven on each (`tests/laravel_layouts.rs`).
//!
//! A [`Layout`] is an overlay on the app's files (applied before the first commit, so every
//! version of the repository has it), the recipe settings it needs, and where it keeps its
//! storage. A [`Site`] is one such app in a git repository, the server it uses (Redis,
//! PostgreSQL or MariaDB from `services`, started for the test) and its shared `.env` pointing
//! at that server, ready to deploy.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::laravel_support::{
    deploy_dir, failed_jobs, fixture_repo_with, shared_env, FixtureRepo, Stack,
};
use crate::services::{MariaDb, Postgres, Redis};
use crate::support::Sandbox;

/// Where the sites of these tests deploy to, in their sandbox.
pub const DEPLOY: &str = "app";

/// The shapes of app in the corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// `examples/laravel-app` as it is: `artisan` requires `vendor/autoload.php`, which loads
    /// the framework through composer's `autoload.files` (`bootstrap/framework.php`).
    Fixture,
    /// An app begun on Laravel 5: `artisan` and `public/index.php` require
    /// `bootstrap/autoload.php`, which requires `vendor/autoload.php` and *then* the framework;
    /// `vendor/autoload.php` alone loads only `App\`.
    BootstrapAutoload,
    /// `artisan` and `public/index.php` require `bootstrap/start.php`, which loads composer's
    /// autoloader and `app/paths.php` (a constant `bootstrap/app.php` uses) before the app: the
    /// app cannot be made without that chain. It keeps its storage in `var/storage`
    /// (`$app->useStoragePath`), shared as `var/storage`.
    CustomBootstrap,
    /// The queue and the cache on Redis (`QUEUE_CONNECTION=redis`, `CACHE_DRIVER=redis`, with
    /// the key prefixes of Laravel's skeleton): `queue:restart`'s signal lives in Redis.
    Redis,
    /// The database on PostgreSQL, the queue in its `jobs` table.
    Postgres,
    /// The database on MariaDB, the queue in its `jobs` table.
    MariaDb,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Fixture => "fixture",
            Layout::BootstrapAutoload => "bootstrap-autoload",
            Layout::CustomBootstrap => "custom-bootstrap",
            Layout::Redis => "redis",
            Layout::Postgres => "postgres",
            Layout::MariaDb => "mariadb",
        }
    }

    /// The app's storage directory, relative to the release (and to `shared/`).
    pub fn storage(self) -> &'static str {
        match self {
            Layout::CustomBootstrap => "var/storage",
            _ => "storage",
        }
    }

    /// Recipe settings (`-o KEY=VALUE`) this layout needs.
    pub fn options(self) -> Vec<String> {
        match self {
            Layout::CustomBootstrap => vec!["shared_dirs=var/storage".to_string()],
            _ => Vec::new(),
        }
    }

    /// Rewrites the copied fixture app in `app` into this layout.
    pub fn overlay(self, app: &Path) {
        match self {
            Layout::Fixture => {}
            Layout::BootstrapAutoload => bootstrap_autoload(app),
            Layout::CustomBootstrap => custom_bootstrap(app),
            Layout::Redis => redis_cache(app),
            Layout::Postgres | Layout::MariaDb => database_servers(app),
        }
    }
}

/// The overlay of [`Layout::Redis`]: a Redis cache store on its own connection, and the key
/// prefixes Laravel's skeleton sets (the probe must read the queue through the app's own
/// connection to find its keys).
fn redis_cache(app: &Path) {
    edit(app, "config/cache.php", |text| {
        replace_once(
            text,
            "        'database' => [",
            r#"        // CACHE_DRIVER=redis: queue:restart's signal is a key in Redis.
        'redis' => [
            'driver' => 'redis',
            'connection' => 'cache',
            'lock_connection' => 'default',
        ],

        'database' => ["#,
        )
    });
    edit(app, "config/database.php", |text| {
        replace_once(
            text,
            "        'default' => [\n            'host' => env('REDIS_HOST', '127.0.0.1'),",
            r#"        'options' => [
            'prefix' => env('REDIS_PREFIX', Illuminate\Support\Str::slug(env('APP_NAME', 'laravel'), '_').'_database_'),
        ],
        'cache' => [
            'host' => env('REDIS_HOST', '127.0.0.1'),
            'password' => env('REDIS_PASSWORD'),
            'port' => env('REDIS_PORT', 6379),
            'database' => env('REDIS_CACHE_DB', 1),
        ],
        'default' => [
            'password' => env('REDIS_PASSWORD'),
            'host' => env('REDIS_HOST', '127.0.0.1'),"#,
        )
    });
}

/// The overlay of [`Layout::Postgres`] and [`Layout::MariaDb`]: the `pgsql` and `mysql`
/// connections of Laravel's skeleton (the `.env` picks one).
fn database_servers(app: &Path) {
    edit(app, "config/database.php", |text| {
        replace_once(
            text,
            "    ],\n\n    'migrations' => 'migrations',",
            r#"        'pgsql' => [
            'driver' => 'pgsql',
            'host' => env('DB_HOST', '127.0.0.1'),
            'port' => env('DB_PORT', '5432'),
            'database' => env('DB_DATABASE', 'forge'),
            'username' => env('DB_USERNAME', 'forge'),
            'password' => env('DB_PASSWORD', ''),
            'charset' => 'utf8',
            'prefix' => '',
            'schema' => 'public',
            'sslmode' => 'prefer',
        ],

        'mysql' => [
            'driver' => 'mysql',
            'host' => env('DB_HOST', '127.0.0.1'),
            'port' => env('DB_PORT', '3306'),
            'database' => env('DB_DATABASE', 'forge'),
            'username' => env('DB_USERNAME', 'forge'),
            'password' => env('DB_PASSWORD', ''),
            'charset' => 'utf8mb4',
            'collation' => 'utf8mb4_unicode_ci',
            'prefix' => '',
            'strict' => true,
            'engine' => null,
        ],

    ],

    'migrations' => 'migrations',"#,
        )
    });
}

/// The overlay of [`Layout::BootstrapAutoload`].
fn bootstrap_autoload(app: &Path) {
    // Composer's autoloader no longer pulls the framework in.
    edit(app, "composer.json", |text| {
        text.replace(
            ",\n        \"files\": [\n            \"bootstrap/framework.php\"\n        ]",
            "",
        )
    });
    write(
        app,
        "bootstrap/autoload.php",
        "<?php\n\n\
         // As Laravel 5 apps did: the time, composer's autoloader (App\\ only here), then the\n\
         // framework (Debian's php-laravel-framework, see framework.php).\n\
         define('LARAVEL_START', microtime(true));\n\n\
         require __DIR__.'/../vendor/autoload.php';\n\n\
         require __DIR__.'/framework.php';\n",
    );
    edit(app, "artisan", |text| {
        text.replace(
            "define('LARAVEL_START', microtime(true));\n\n\
             // vendor/autoload.php loads App\\ and, through bootstrap/framework.php, Debian's Laravel.\n\
             require __DIR__.'/vendor/autoload.php';",
            "require __DIR__.'/bootstrap/autoload.php';",
        )
    });
    edit(app, "public/index.php", |text| {
        text.replace("define('LARAVEL_START', microtime(true));\n\n", "")
            .replace(
                "require __DIR__.'/../vendor/autoload.php';",
                "require __DIR__.'/../bootstrap/autoload.php';",
            )
    });
}

/// The overlay of [`Layout::CustomBootstrap`]. (`bootstrap/app.php` stays: Laravel 8's
/// `config:cache` requires it by that name to build a fresh app.)
fn custom_bootstrap(app: &Path) {
    write(
        app,
        "bootstrap/start.php",
        "<?php\n\n\
         // The one file every entry point requires: the time, composer's autoloader, the app's\n\
         // own paths (app/paths.php), then the app.\n\
         define('LARAVEL_START', microtime(true));\n\n\
         require __DIR__.'/../vendor/autoload.php';\n\n\
         require __DIR__.'/../app/paths.php';\n\n\
         return require __DIR__.'/app.php';\n",
    );
    write(
        app,
        "app/paths.php",
        "<?php\n\n\
         // Where this app keeps its storage: under var/, not at the root.\n\
         const APP_STORAGE_PATH = __DIR__.'/../var/storage';\n",
    );
    edit(app, "bootstrap/app.php", |text| {
        replace_once(
            text,
            "$app->singleton(\n    Illuminate\\Contracts\\Http\\Kernel::class,",
            "$app->useStoragePath(APP_STORAGE_PATH);\n\n\
             $app->singleton(\n    Illuminate\\Contracts\\Http\\Kernel::class,",
        )
    });
    edit(app, "artisan", |text| {
        replace_once(
            text,
            "define('LARAVEL_START', microtime(true));\n\n\
             // vendor/autoload.php loads App\\ and, through bootstrap/framework.php, Debian's Laravel.\n\
             require __DIR__.'/vendor/autoload.php';\n\n\
             $app = require_once __DIR__.'/bootstrap/app.php';",
            "$app = require_once __DIR__.'/bootstrap/start.php';",
        )
    });
    edit(app, "public/index.php", |text| {
        replace_once(text, "define('LARAVEL_START', microtime(true));\n\n", "")
            .replace("/../storage/framework/", "/../var/storage/framework/")
            .replace(
                "require __DIR__.'/../vendor/autoload.php';\n\n\
                 $app = require_once __DIR__.'/../bootstrap/app.php';",
                "$app = require_once __DIR__.'/../bootstrap/start.php';",
            )
    });
    std::fs::create_dir_all(app.join("var")).unwrap();
    std::fs::rename(app.join("storage"), app.join("var/storage")).unwrap();
    edit(app, ".gitignore", |text| {
        text.replace("/storage/*.sqlite", "/var/storage/*.sqlite")
    });
}

/// Replaces the file `path` of `app` by `change(contents)`; panics when nothing changed (the
/// fixture moved on and the overlay no longer applies: fix the overlay).
pub fn edit(app: &Path, path: &str, change: impl FnOnce(&str) -> String) {
    let file = app.join(path);
    let before = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{path}: {e}"));
    let after = change(&before);
    assert_ne!(before, after, "the overlay changed nothing in {path}");
    std::fs::write(&file, after).unwrap();
}

/// Writes `contents` to `path` of `app`, creating its directory.
pub fn write(app: &Path, path: &str, contents: &str) {
    let file = app.join(path);
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, contents).unwrap();
}

fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "{from:?} once in:\n{text}");
    text.replace(from, to)
}

// ---------------------------------------------------------------------------------------------
// A site: one layout in a repository, with its shared .env, ready to deploy
// ---------------------------------------------------------------------------------------------

/// The server a layout uses, running for the site's test.
pub enum Service {
    None,
    Redis(Redis),
    Postgres(Postgres),
    MariaDb(MariaDb),
}

pub struct Site {
    pub layout: Layout,
    pub fixture: FixtureRepo,
    pub service: Service,
    /// Last: the sandbox outlives what runs in it.
    pub sandbox: Sandbox,
}

impl Site {
    /// A sandbox with `layout`'s app in repository `repo` (tags `v1`, `v2`) and
    /// `DEPLOY/shared/.env`.
    pub fn new(layout: Layout) -> Site {
        let sandbox = Sandbox::new();
        let fixture = fixture_repo_with(&sandbox, "repo", |app| layout.overlay(app));
        shared_env(&sandbox, DEPLOY);
        if layout.storage() != "storage" {
            // The harness (`jobs_log`, `wait_for_jobs`, `failed_jobs`) reads the shared storage
            // at `shared/storage`: point it at where this layout keeps it.
            std::os::unix::fs::symlink(
                layout.storage(),
                deploy_dir(&sandbox, DEPLOY).join("shared/storage"),
            )
            .unwrap();
        }
        let service = match layout {
            Layout::Redis => Service::Redis(Redis::start(&sandbox)),
            Layout::Postgres => Service::Postgres(Postgres::start(&sandbox)),
            Layout::MariaDb => Service::MariaDb(MariaDb::start(&sandbox)),
            _ => Service::None,
        };
        let site = Site {
            layout,
            fixture,
            service,
            sandbox,
        };
        let env = match &site.service {
            Service::None => String::new(),
            Service::Redis(redis) => {
                redis.laravel_env() + "QUEUE_CONNECTION=redis\nCACHE_DRIVER=redis\n"
            }
            Service::Postgres(database) => database.laravel_env(),
            Service::MariaDb(database) => database.laravel_env(),
        };
        for line in env.lines() {
            let (key, value) = line.split_once('=').unwrap();
            site.set_env(key, value);
        }
        site
    }

    /// Rows in the app's `failed_jobs` table, on whichever database the layout uses.
    pub fn failed_jobs(&self) -> usize {
        let count = |text: String| text.trim().parse().unwrap();
        match &self.service {
            Service::Postgres(database) => {
                count(database.query("select count(*) from failed_jobs"))
            }
            Service::MariaDb(database) => count(database.query("select count(*) from failed_jobs")),
            _ => failed_jobs(&self.sandbox, DEPLOY),
        }
    }

    /// `DEPLOY` as an absolute path.
    pub fn deploy_path(&self) -> PathBuf {
        deploy_dir(&self.sandbox, DEPLOY)
    }

    /// Sets `key` in the shared `.env`: replaces its line, or appends one.
    pub fn set_env(&self, key: &str, value: &str) {
        let path = self.deploy_path().join("shared/.env");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut found = false;
        let mut lines: Vec<String> = text
            .lines()
            .map(|line| {
                if line.starts_with(&format!("{key}=")) {
                    found = true;
                    format!("{key}={value}")
                } else {
                    line.to_string()
                }
            })
            .collect();
        if !found {
            lines.push(format!("{key}={value}"));
        }
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    }

    /// `zdd run recipes/laravel.rhai` for `branch` with every gate on (`audit_offline=warn`:
    /// there is no network here), wired to `stack` (its php-fpm, its `/health` with the release
    /// check) or, without a stack, with no php-fpm reload and no health gate; then the layout's
    /// settings and `extra`.
    pub fn deploy(&self, stack: Option<&Stack>, branch: &str, extra: &[&str]) -> Output {
        let mut options = vec![
            format!("repository={}", self.fixture.str()),
            format!("deploy_path={}", self.deploy_path().display()),
            format!("branch={branch}"),
            "audit=true".to_string(),
            "audit_offline=warn".to_string(),
            "check_queued_jobs=true".to_string(),
            "check_migrations=true".to_string(),
            "test_command=php artisan --version".to_string(),
        ];
        match stack {
            Some(stack) => options.extend([
                format!("fpm_pid_file={}", stack.fpm_pid_file.display()),
                format!("fpm_socket={}", stack.fpm_socket.display()),
                format!("health_url={}", stack.url("/health")),
                "health_checks=3".to_string(),
                "health_interval=0.1".to_string(),
                "health_expect_release=true".to_string(),
            ]),
            None => options.extend(["fpm_reload=none".to_string(), "health_url=".to_string()]),
        }
        options.extend(self.layout.options());
        options.extend(extra.iter().map(|s| s.to_string()));
        let recipe = format!("{}/recipes/laravel.rhai", env!("CARGO_MANIFEST_DIR"));
        let mut args: Vec<String> = vec!["run".into(), recipe];
        for option in options {
            args.push("-o".into());
            args.push(option);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.sandbox.zdd(&args).output().expect("zdd runs")
    }
}

/// zdd's stderr.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Panics with zdd's stderr unless it exited 0.
pub fn assert_deployed(output: &Output) {
    assert_eq!(
        output.status.code(),
        Some(0),
        "zdd failed:\n{}",
        stderr(output)
    );
}
