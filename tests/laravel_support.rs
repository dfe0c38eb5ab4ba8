//! Harness for the Laravel tests: the fixture app (`examples/laravel-app`) in a git repository
//! with several versions, a real php-fpm + nginx stack (`examples/stack/{start,stop}`), a load
//! generator that classifies every response, a session client with a cookie jar, a supervised
//! `queue:work`, and the by-hand deploy steps the harness tests (and negative controls) use.
//!
//! Everything a test starts here stops when its value is dropped (also when the test panics):
//! the stack (by its pid files, through `examples/stack/stop`), the load threads (a hard cap on
//! their duration besides), and the queue worker (SIGTERM to the pid it spawned, then SIGKILL).
//!
//! Paths called `deploy_path` below are either absolute or relative to the sandbox root
//! (`"app"` means `sandbox.path("app")`), matching [`Sandbox::releases`] and friends.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ureq::http::HeaderMap;

use crate::support::{git, Repo, Sandbox};

/// Per-request timeout of every HTTP client here (load, session, `Stack::get`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `examples/laravel-app` in the source tree.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/laravel-app")
}

/// `examples/stack` in the source tree (the `start` and `stop` scripts).
pub fn stack_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/stack")
}

/// `deploy_path` as an absolute path: absolute paths are kept, others are under the sandbox.
pub fn deploy_dir(sandbox: &Sandbox, deploy_path: impl AsRef<Path>) -> PathBuf {
    let path = deploy_path.as_ref();
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        sandbox.root().join(path)
    }
}

// ---------------------------------------------------------------------------------------------
// The fixture repository
// ---------------------------------------------------------------------------------------------

/// A `HEALTH_FAIL` file: `/health` of that version answers 500 (a version the gate must reject).
pub const HEALTH_FAIL: (&str, &str) = ("HEALTH_FAIL", "broken on purpose by the test\n");

/// A migration whose `up()` throws: `artisan migrate --force` fails (nothing is changed first).
pub const BROKEN_MIGRATION: (&str, &str) = (
    "database/migrations/2030_01_01_000000_broken_on_purpose.php",
    "<?php\n\nuse Illuminate\\Database\\Migrations\\Migration;\n\n\
     return new class extends Migration\n{\n    public function up()\n    {\n        \
     throw new RuntimeException('broken migration, on purpose');\n    }\n\n    \
     public function down()\n    {\n    }\n};\n",
);

/// A `composer.json` that is not JSON: `composer install` fails.
pub const BROKEN_COMPOSER_JSON: (&str, &str) =
    ("composer.json", "{ \"name\": \"zdd/broken\", oops\n");

/// An extra artisan command for [`artisan_commands`]: `(class, signature, PHP body of handle())`.
/// The body runs inside `public function handle(): int { ... }` and must return an int.
pub type ArtisanCommand<'a> = (&'a str, &'a str, &'a str);

/// Files adding artisan commands to the fixture: one class per command under
/// `app/Console/Commands/` plus a `app/Console/Kernel.php` that lists them next to the fixture's
/// own `DispatchJobs` (the Kernel lists commands explicitly; it scans no directory). Pass the
/// result to [`FixtureRepo::version`] through [`as_refs`]. A later version built on top keeps
/// the commands.
pub fn artisan_commands(commands: &[ArtisanCommand]) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut listed = String::from("        Commands\\DispatchJobs::class,\n");
    for (class, signature, body) in commands {
        files.push((
            format!("app/Console/Commands/{class}.php"),
            format!(
                "<?php\n\nnamespace App\\Console\\Commands;\n\nuse Illuminate\\Console\\Command;\n\n\
                 class {class} extends Command\n{{\n    protected $signature = '{signature}';\n\n    \
                 protected $description = 'Fixture command added by a test';\n\n    \
                 public function handle(): int\n    {{\n{body}\n    }}\n}}\n"
            ),
        ));
        listed.push_str(&format!("        Commands\\{class}::class,\n"));
    }
    files.push((
        "app/Console/Kernel.php".to_string(),
        format!(
            "<?php\n\nnamespace App\\Console;\n\nuse Illuminate\\Console\\Scheduling\\Schedule;\n\
             use Illuminate\\Foundation\\Console\\Kernel as ConsoleKernel;\n\n\
             class Kernel extends ConsoleKernel\n{{\n    protected $commands = [\n{listed}    ];\n\n    \
             protected function schedule(Schedule $schedule)\n    {{\n    }}\n\n    \
             protected function commands()\n    {{\n    }}\n}}\n"
        ),
    ));
    files
}

/// The PHP body of a command that appends `<name> <version> <release>` to
/// `storage/app/artisan.log` (shared storage) and succeeds: a fake `octane:reload` or
/// `horizon:terminate` whose calls [`artisan_log`] reads back.
pub fn recording_command_body(name: &str) -> String {
    format!(
        "        file_put_contents(storage_path('app/artisan.log'), sprintf(\"%s %s %s\\n\", '{name}', \
         \\App\\Support\\Release::version(), \\App\\Support\\Release::name()), FILE_APPEND | LOCK_EX);\n        \
         $this->line('{name}: recorded');\n        return 0;"
    )
}

/// Lines of `DEPLOY/shared/storage/app/artisan.log` (see [`recording_command_body`]).
pub fn artisan_log(sandbox: &Sandbox, deploy_path: impl AsRef<Path>) -> Vec<String> {
    let path = deploy_dir(sandbox, deploy_path).join("shared/storage/app/artisan.log");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `&[(String, String)]` as the `&[(&str, &str)]` that [`FixtureRepo::version`] takes.
pub fn as_refs(files: &[(String, String)]) -> Vec<(&str, &str)> {
    files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect()
}

/// The fixture app in a git repository (branch `main`), with tags `v1` and `v2`.
pub struct FixtureRepo {
    pub repo: Repo,
    /// Commit of tag `v1` (VERSION "v1").
    pub v1: String,
    /// Commit of tag `v2` (VERSION "v2"), the head of `main` after [`fixture_repo`].
    pub v2: String,
}

/// Copies `examples/laravel-app` (every file, dotfiles included; no `vendor/`, no symlinks) into
/// a new git repository `name` in the sandbox, commits it with VERSION "v1" and tags `v1`, then
/// commits VERSION "v2" and tags `v2`. Files the app's `.gitignore` ignores (a stray `.env`,
/// `storage/*.sqlite`) are copied but never committed.
pub fn fixture_repo(sandbox: &Sandbox, name: &str) -> FixtureRepo {
    let repo = sandbox.repo(name);
    copy_tree(&fixture_dir(), &repo.path, true);
    let v1 = repo.commit(&[("VERSION", "v1\n")], "fixture v1");
    repo.tag("v1");
    let v2 = repo.commit(&[("VERSION", "v2\n")], "fixture v2");
    repo.tag("v2");
    FixtureRepo { repo, v1, v2 }
}

fn copy_tree(from: &Path, to: &Path, top: bool) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let kind = entry.file_type().unwrap();
        if top && (name == "vendor" || name == ".git") {
            continue;
        }
        if kind.is_dir() {
            copy_tree(&entry.path(), &to.join(&name), false);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

impl FixtureRepo {
    pub fn path(&self) -> &Path {
        &self.repo.path
    }

    /// The repository path as a string (for `repository` in recipes).
    pub fn str(&self) -> String {
        self.repo.str()
    }

    /// The commit a tag (or any ref) names.
    pub fn commit_of(&self, refname: &str) -> String {
        git(
            &self.repo.path,
            &["rev-parse", &format!("{refname}^{{commit}}")],
        )
        .trim()
        .to_string()
    }

    /// A new version on top of `main`: writes VERSION = `tag` plus `extra_files` (path, contents),
    /// commits, tags `tag`, and returns the commit. Extra files stay in later versions built with
    /// `version` (use [`FixtureRepo::version_from`] for a one-off broken version).
    pub fn version(&self, tag: &str, extra_files: &[(&str, &str)]) -> String {
        self.make_version(None, tag, &[], extra_files)
    }

    /// A version on top of `base` (a tag or commit) that `main` does not include: for a broken
    /// version (HEALTH_FAIL, a failing migration...) that later [`FixtureRepo::version`]s must
    /// not inherit. Returns the commit; `main` is left where it was.
    pub fn version_from(&self, base: &str, tag: &str, extra_files: &[(&str, &str)]) -> String {
        self.make_version(Some(base), tag, &[], extra_files)
    }

    /// A new version on top of `main` without the files `remove` (paths in the repository, e.g.
    /// a `HEALTH_FAIL` added before), with VERSION = `tag` and `extra_files`; returns the commit.
    pub fn remove_and_tag(
        &self,
        tag: &str,
        remove: &[&str],
        extra_files: &[(&str, &str)],
    ) -> String {
        self.make_version(None, tag, remove, extra_files)
    }

    fn make_version(
        &self,
        base: Option<&str>,
        tag: &str,
        remove: &[&str],
        extra_files: &[(&str, &str)],
    ) -> String {
        let dir = &self.repo.path;
        if let Some(base) = base {
            git(dir, &["checkout", "-q", "--detach", base]);
        }
        for path in remove {
            git(dir, &["rm", "-q", "-r", "--", path]);
        }
        let version = format!("{tag}\n");
        let mut files: Vec<(&str, &str)> = vec![("VERSION", &version)];
        files.extend_from_slice(extra_files);
        let commit = self.repo.commit(&files, &format!("fixture {tag}"));
        self.repo.tag(tag);
        if base.is_some() {
            git(dir, &["checkout", "-q", "main"]);
        }
        commit
    }
}

/// Creates `DEPLOY/shared/.env` from the fixture's `.env.example` (fixed APP_KEY, sqlite in
/// `storage/database.sqlite`, file sessions, database queue) and returns its path. Nothing else
/// is needed before a first deploy: `shared/storage` is seeded from the first release's
/// `storage/` skeleton (zdd does it; [`manual_release`] too).
pub fn shared_env(sandbox: &Sandbox, deploy_path: impl AsRef<Path>) -> PathBuf {
    let shared = deploy_dir(sandbox, deploy_path).join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let env = shared.join(".env");
    std::fs::copy(fixture_dir().join(".env.example"), &env).unwrap();
    env
}

// ---------------------------------------------------------------------------------------------
// Deploying by hand (the harness tests and unsafe negative controls; zdd is not involved)
// ---------------------------------------------------------------------------------------------

/// Builds `DEPLOY/releases/<name>` by hand from `refname` of `fixture`, the way the recipe does
/// before its swap: checkout (no `.git`), `REVISION`, `.env` -> `shared/.env` (created with
/// [`shared_env`] if missing), `storage` -> `shared/storage` (seeded from this release's
/// `storage/` when missing), `composer install --no-dev ...` (with COMPOSER_ALLOW_SUPERUSER=1),
/// then with `caches` the artisan config/route/view/event caches, and `migrate --force`.
/// Does not touch `current`; see [`swap_current`]. Panics with the output of a failing step.
pub fn manual_release(
    sandbox: &Sandbox,
    fixture: &FixtureRepo,
    deploy_path: impl AsRef<Path>,
    name: &str,
    refname: &str,
    caches: bool,
) -> PathBuf {
    let deploy = deploy_dir(sandbox, deploy_path);
    let release = deploy.join("releases").join(name);
    std::fs::create_dir_all(deploy.join("releases")).unwrap();
    let shared = deploy.join("shared");
    if !shared.join(".env").exists() {
        shared_env(sandbox, &deploy);
    }

    git(
        &deploy,
        &[
            "clone",
            "-q",
            "--no-checkout",
            &fixture.str(),
            &release.display().to_string(),
        ],
    );
    git(&release, &["checkout", "-q", "--detach", refname]);
    let commit = git(&release, &["rev-parse", "HEAD"]).trim().to_string();
    std::fs::remove_dir_all(release.join(".git")).unwrap();
    std::fs::write(release.join("REVISION"), format!("{commit}\n")).unwrap();

    if !shared.join("storage").exists() {
        std::fs::rename(release.join("storage"), shared.join("storage")).unwrap();
    } else {
        std::fs::remove_dir_all(release.join("storage")).unwrap();
    }
    std::os::unix::fs::symlink("../../shared/storage", release.join("storage")).unwrap();
    std::os::unix::fs::symlink("../../shared/.env", release.join(".env")).unwrap();

    run_in(
        &release,
        "composer",
        &[
            "install",
            "--no-dev",
            "--no-interaction",
            "--optimize-autoloader",
            "--no-progress",
            "--prefer-dist",
        ],
    );
    if caches {
        for cache in ["config:cache", "route:cache", "view:cache", "event:cache"] {
            run_in(&release, "php", &["artisan", cache]);
        }
    }
    run_in(&release, "php", &["artisan", "migrate", "--force"]);
    release
}

/// Points `DEPLOY/current` at `releases/<name>` atomically (a temp link renamed over it).
pub fn swap_current(sandbox: &Sandbox, deploy_path: impl AsRef<Path>, name: &str) {
    let deploy = deploy_dir(sandbox, deploy_path);
    let temp = deploy.join(".current.tmp");
    let _ = std::fs::remove_file(&temp);
    std::os::unix::fs::symlink(format!("releases/{name}"), &temp).unwrap();
    std::fs::rename(&temp, deploy.join("current")).unwrap();
}

/// Runs `program args` in `dir` (composer may run as root); panics with its output on failure.
pub fn run_in(dir: &Path, program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .env("COMPOSER_ALLOW_SUPERUSER", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} in {} failed ({}):\n{}\n{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// An HTTP agent for the tests: 4xx/5xx are responses (not errors), a 10 s timeout per request,
/// no redirects followed, and no connection reuse: every request opens a fresh connection, so a
/// connection nginx closed between two requests can never be mistaken for a server error, and
/// a connection error always means the server refused or dropped *that* request. (Loopback
/// TIME_WAIT sockets are reused by Linux: tcp_tw_reuse=2 is the default.)
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(REQUEST_TIMEOUT))
        .max_redirects(0)
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .build()
        .into()
}

fn read_response(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, HeaderMap, String), String> {
    let mut response = response.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("reading the body: {e}"))?;
    Ok((status, headers, body))
}

// ---------------------------------------------------------------------------------------------
// The stack: php-fpm + nginx
// ---------------------------------------------------------------------------------------------

/// How to start the stack.
#[derive(Clone, Debug, Default)]
pub struct StackOptions {
    /// php-fpm's `process_control_timeout` in seconds; `None` keeps Debian's default (0), where
    /// a reload (SIGUSR2) kills the requests in flight.
    pub process_control_timeout: Option<u32>,
    /// nginx passes `$document_root` (the `current` symlink path) instead of `$realpath_root`:
    /// unsafe on purpose, for negative controls.
    pub document_root: bool,
}

/// A running php-fpm + nginx serving `DEPLOY/current/public` on a loopback port, started by
/// `examples/stack/start`; dropped, it runs `examples/stack/stop`.
pub struct Stack {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    pub port: u16,
    /// Configs, pid files, socket and logs of this stack.
    pub state_dir: PathBuf,
    pub deploy_path: PathBuf,
    pub fpm_pid_file: PathBuf,
    pub fpm_config: PathBuf,
    pub fpm_socket: PathBuf,
    pub nginx_pid_file: PathBuf,
    pub nginx_config: PathBuf,
    agent: ureq::Agent,
    stopped: bool,
}

impl Stack {
    /// Starts php-fpm and nginx for `deploy_path` (which need not exist yet: nginx then answers
    /// 404) on a free loopback port (bind 127.0.0.1:0, release, pass it on; retried with a new
    /// port if nginx loses that race), with a state dir `stack`, `stack-2`, ... in the sandbox.
    /// Panics with the script's stderr when it fails.
    pub fn start(sandbox: &Sandbox, deploy_path: impl AsRef<Path>, options: StackOptions) -> Stack {
        let deploy = deploy_dir(sandbox, deploy_path);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let state_dir = (1..)
                .map(|n| {
                    sandbox.path(&if n == 1 {
                        "stack".to_string()
                    } else {
                        format!("stack-{n}")
                    })
                })
                .find(|p| !p.exists())
                .unwrap();
            let port = free_port();
            let mut command = Command::new(stack_dir().join("start"));
            command
                .arg(&state_dir)
                .arg(port.to_string())
                .arg(&deploy)
                .stdin(Stdio::null());
            if let Some(timeout) = options.process_control_timeout {
                command
                    .arg("--process-control-timeout")
                    .arg(timeout.to_string());
            }
            if options.document_root {
                command.arg("--document-root");
            }
            let output = command.output().expect("examples/stack/start runs");
            let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            if !output.status.success() {
                let nginx_log =
                    std::fs::read_to_string(state_dir.join("nginx-error.log")).unwrap_or_default();
                if attempt < 4 && nginx_log.contains("Address already in use") {
                    continue;
                }
                panic!(
                    "examples/stack/start failed ({}):\n{stderr}\n{stdout}\nnginx-error.log:\n{nginx_log}",
                    output.status
                );
            }
            let values: BTreeMap<&str, &str> = stdout
                .lines()
                .filter_map(|line| line.split_once('='))
                .collect();
            let value = |key: &str| -> String {
                values
                    .get(key)
                    .unwrap_or_else(|| panic!("stack/start printed no {key}=: {stdout}\n{stderr}"))
                    .to_string()
            };
            return Stack {
                url: value("url"),
                port,
                state_dir,
                deploy_path: deploy,
                fpm_pid_file: value("fpm_pid_file").into(),
                fpm_config: value("fpm_config").into(),
                fpm_socket: value("fpm_socket").into(),
                nginx_pid_file: value("nginx_pid_file").into(),
                nginx_config: value("nginx_config").into(),
                agent: agent(),
                stopped: false,
            };
        }
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// `GET path`: (status, headers, body). Panics on a transport error (use [`Stack::try_get`]).
    pub fn get(&self, path: &str) -> (u16, HeaderMap, String) {
        self.try_get(path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.logs()))
    }

    /// `GET path`, with a transport error as `Err(message)`.
    pub fn try_get(&self, path: &str) -> Result<(u16, HeaderMap, String), String> {
        read_response(self.agent.get(self.url(path)).call())
    }

    /// The php-fpm master's pid (from its pid file; it keeps it across reloads).
    pub fn fpm_pid(&self) -> i32 {
        read_pid(&self.fpm_pid_file)
    }

    /// The nginx master's pid.
    pub fn nginx_pid(&self) -> i32 {
        read_pid(&self.nginx_pid_file)
    }

    /// SIGUSR2 to the php-fpm master, as a deploy by hand would (no wait).
    pub fn reload_fpm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.fpm_pid()),
            nix::sys::signal::Signal::SIGUSR2,
        )
        .expect("SIGUSR2 to php-fpm");
    }

    /// The tails of the stack's logs (nginx errors, php-fpm, PHP errors), for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for name in [
            "nginx-error.log",
            "php-fpm.log",
            "php-error.log",
            "php-fpm.stderr",
        ] {
            let content = std::fs::read_to_string(self.state_dir.join(name)).unwrap_or_default();
            let lines: Vec<&str> = content.lines().collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            text.push_str(&format!("--- {name} (last {} lines)\n", tail.len()));
            for line in tail {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }

    /// Stops nginx and php-fpm now (what dropping does), panicking if `stop` fails.
    pub fn stop(mut self) {
        self.stopped = true;
        let output = self.run_stop();
        assert!(
            output.status.success(),
            "examples/stack/stop failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn run_stop(&self) -> std::process::Output {
        Command::new(stack_dir().join("stop"))
            .arg(&self.state_dir)
            .stdin(Stdio::null())
            .output()
            .expect("examples/stack/stop runs")
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let output = self.run_stop();
        if !output.status.success() {
            eprintln!(
                "examples/stack/stop {} failed: {}",
                self.state_dir.display(),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// A loopback port that was free a moment ago (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The load generator
// ---------------------------------------------------------------------------------------------

/// How [`Load`] runs.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Concurrent client threads, each sending one request at a time.
    pub clients: usize,
    /// The paths each client cycles through, client `i` starting at `paths[i % len]`.
    pub paths: Vec<String>,
    /// Pause of each client between two requests.
    pub pause: Duration,
    /// Hard cap: the clients stop by themselves after this long, stopped or not.
    pub max_duration: Duration,
}

impl Default for LoadOptions {
    /// 6 clients, no pause, a 5 minute cap, cycling `/slow?ms=200`, `/version`, `/health`, `/`.
    fn default() -> Self {
        LoadOptions {
            clients: 6,
            paths: ["/slow?ms=200", "/version", "/health", "/"]
                .iter()
                .map(|p| p.to_string())
                .collect(),
            pause: Duration::ZERO,
            max_duration: Duration::from_secs(300),
        }
    }
}

/// One request the load generator made.
#[derive(Clone, Debug)]
pub struct Sample {
    pub client: usize,
    pub path: String,
    /// When the request was sent, and when its response (or error) was complete.
    pub sent: Instant,
    pub received: Instant,
    /// `None` on a transport error.
    pub status: Option<u16>,
    /// The transport error (connect, reset, timeout, body cut short...).
    pub error: Option<String>,
    pub body: String,
    /// The release that answered: for `/slow` the *end* release of its body, otherwise the
    /// `X-Release` header (falling back to the body of `/version` and `/health`).
    pub release: Option<String>,
    /// The version that answered, where the body says (`/version`, `/health`, `/slow` end).
    pub version: Option<String>,
}

impl Sample {
    pub fn latency(&self) -> Duration {
        self.received - self.sent
    }

    /// An HTTP answer other than 2xx.
    pub fn failed(&self) -> bool {
        matches!(self.status, Some(s) if !(200..300).contains(&s))
    }

    /// No HTTP answer at all.
    pub fn connection_error(&self) -> bool {
        self.status.is_none()
    }

    /// A 2xx `/slow` answer whose start half (`<version>/<release>`) differs from its end half.
    pub fn mixed(&self) -> bool {
        self.is_ok() && self.is_slow() && matches!(parse_slow(&self.body), Some((s, e)) if s != e)
    }

    /// A 2xx answer whose body is not what the route prints (e.g. a `/slow` body that does
    /// not parse): nothing can be concluded from it, so it counts as a problem.
    pub fn malformed(&self) -> bool {
        self.is_ok()
            && ((self.is_slow() && parse_slow(&self.body).is_none()) || self.release.is_none())
    }

    /// Any of failed, connection error, mixed, malformed.
    pub fn problem(&self) -> bool {
        self.failed() || self.connection_error() || self.mixed() || self.malformed()
    }

    fn is_ok(&self) -> bool {
        matches!(self.status, Some(s) if (200..300).contains(&s))
    }

    fn is_slow(&self) -> bool {
        self.path.starts_with("/slow")
    }

    fn describe(&self, origin: Instant) -> String {
        let at = self.sent.saturating_duration_since(origin).as_secs_f64();
        let what = match (&self.status, &self.error) {
            (_, Some(error)) => format!("connection error: {error}"),
            (Some(status), None) => {
                let kind = if self.failed() {
                    "failed"
                } else if self.mixed() {
                    "mixed"
                } else if self.malformed() {
                    "malformed"
                } else {
                    "ok"
                };
                let mut body: String = self.body.trim().chars().take(160).collect();
                body = body.replace('\n', " | ");
                format!("{kind} {status}: {body}")
            }
            (None, None) => "no status".to_string(),
        };
        format!(
            "+{at:.3}s client {} GET {} ({} ms) {what}",
            self.client,
            self.path,
            self.latency().as_millis()
        )
    }
}

/// `start=<v>/<r> end=<v>/<r>` -> (start, end).
fn parse_slow(body: &str) -> Option<(String, String)> {
    let mut words = body.split_whitespace();
    let start = words.next()?.strip_prefix("start=")?;
    let end = words.next()?.strip_prefix("end=")?;
    if words.next().is_some() || start.rsplit_once('/').is_none() || end.rsplit_once('/').is_none()
    {
        return None;
    }
    Some((start.to_string(), end.to_string()))
}

/// (version, release) a response names, from its body or `X-Release`.
fn identify(
    path: &str,
    headers: Option<&HeaderMap>,
    body: &str,
) -> (Option<String>, Option<String>) {
    let header = headers
        .and_then(|h| h.get("x-release"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let route = path.split('?').next().unwrap_or(path);
    match route {
        "/slow" => match parse_slow(body) {
            Some((_, end)) => {
                let (version, release) = end.rsplit_once('/').unwrap();
                (Some(version.to_string()), Some(release.to_string()))
            }
            None => (None, header),
        },
        "/version" => {
            let mut words = body.split_whitespace();
            let version = words.next().map(str::to_string);
            let release = header.or_else(|| words.next().map(str::to_string));
            (version, release)
        }
        "/health" => {
            let field = |key: &str| {
                body.split_whitespace()
                    .find_map(|w| w.strip_prefix(key))
                    .map(str::to_string)
            };
            (field("version="), header.or_else(|| field("release=")))
        }
        _ => (None, header),
    }
}

/// Latency statistics of a set of responses, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of<'a>(samples: impl Iterator<Item = &'a Sample>) -> Latency {
        let mut ms: Vec<f64> = samples
            .map(|s| s.latency().as_secs_f64() * 1000.0)
            .collect();
        if ms.is_empty() {
            return Latency::default();
        }
        ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Latency {
            count: ms.len(),
            p50_ms: rank(0.50),
            p99_ms: rank(0.99),
            max_ms: *ms.last().unwrap(),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} responses: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.count, self.p50_ms, self.p99_ms, self.max_ms
        )
    }
}

/// A running load generator: `clients` threads requesting `paths` from a stack until
/// [`Load::stop`], or until `max_duration` (a hard cap), whichever comes first. Dropping it
/// stops it too.
pub struct Load {
    started: Instant,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    problems: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<Vec<Sample>>>,
    max_duration: Duration,
}

impl Load {
    /// Starts the default load ([`LoadOptions::default`]) against `stack`.
    pub fn start(stack: &Stack) -> Load {
        Load::start_with(&stack.url, LoadOptions::default())
    }

    /// Starts a load against `base_url` (e.g. `stack.url`).
    pub fn start_with(base_url: &str, options: LoadOptions) -> Load {
        assert!(options.clients > 0 && !options.paths.is_empty());
        let started = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let problems = Arc::new(AtomicUsize::new(0));
        let threads = (0..options.clients)
            .map(|client| {
                let (stop, sent, problems) = (stop.clone(), sent.clone(), problems.clone());
                let options = options.clone();
                let base = base_url.trim_end_matches('/').to_string();
                thread::Builder::new()
                    .name(format!("load-{client}"))
                    .spawn(move || {
                        let agent = agent();
                        let mut samples = Vec::new();
                        let mut next = client;
                        while !stop.load(Ordering::Relaxed)
                            && started.elapsed() < options.max_duration
                        {
                            let path = &options.paths[next % options.paths.len()];
                            next += 1;
                            let sample_sent = Instant::now();
                            let result = read_response(agent.get(format!("{base}{path}")).call());
                            let received = Instant::now();
                            let sample = match result {
                                Ok((status, headers, body)) => {
                                    let (version, release) = identify(path, Some(&headers), &body);
                                    Sample {
                                        client,
                                        path: path.clone(),
                                        sent: sample_sent,
                                        received,
                                        status: Some(status),
                                        error: None,
                                        body,
                                        release,
                                        version,
                                    }
                                }
                                Err(error) => Sample {
                                    client,
                                    path: path.clone(),
                                    sent: sample_sent,
                                    received,
                                    status: None,
                                    error: Some(error),
                                    body: String::new(),
                                    release: None,
                                    version: None,
                                },
                            };
                            sent.fetch_add(1, Ordering::Relaxed);
                            if sample.problem() {
                                problems.fetch_add(1, Ordering::Relaxed);
                            }
                            samples.push(sample);
                            if !options.pause.is_zero() {
                                thread::sleep(options.pause);
                            }
                        }
                        samples
                    })
                    .expect("spawn a load thread")
            })
            .collect();
        Load {
            started,
            stop,
            sent,
            problems,
            threads,
            max_duration: options.max_duration,
        }
    }

    /// When the load started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Responses so far (complete ones).
    pub fn count(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// Problem responses so far (failed, connection error, mixed, malformed).
    pub fn problems(&self) -> usize {
        self.problems.load(Ordering::Relaxed)
    }

    /// Blocks until at least `n` responses came back (so a deploy really runs under load);
    /// panics after `timeout`.
    pub fn wait_for(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "load: only {} responses after {timeout:?}",
                self.count()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the clients (each finishes its request in flight) and reports.
    pub fn stop(mut self) -> LoadReport {
        self.stop.store(true, Ordering::Relaxed);
        let stopped = Instant::now();
        let mut responses: Vec<Sample> = self
            .threads
            .drain(..)
            .flat_map(|t| t.join().expect("a load thread panicked"))
            .collect();
        responses.sort_by_key(|s| s.sent);
        LoadReport {
            started: self.started,
            stopped,
            hit_cap: stopped.duration_since(self.started) >= self.max_duration,
            responses,
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// What the load generator saw.
pub struct LoadReport {
    pub started: Instant,
    pub stopped: Instant,
    /// The hard cap stopped the clients before [`Load::stop`] did.
    pub hit_cap: bool,
    /// Every response, ordered by the time it was sent.
    pub responses: Vec<Sample>,
}

impl LoadReport {
    pub fn total(&self) -> usize {
        self.responses.len()
    }

    /// 2xx answers that are neither mixed nor malformed.
    pub fn ok(&self) -> usize {
        self.responses.iter().filter(|s| !s.problem()).count()
    }

    /// Non-2xx answers.
    pub fn failed(&self) -> usize {
        self.responses.iter().filter(|s| s.failed()).count()
    }

    pub fn connection_errors(&self) -> usize {
        self.responses
            .iter()
            .filter(|s| s.connection_error())
            .count()
    }

    /// `/slow` answers whose start and end came from different versions or releases.
    pub fn mixed(&self) -> usize {
        self.responses.iter().filter(|s| s.mixed()).count()
    }

    pub fn malformed(&self) -> usize {
        self.responses.iter().filter(|s| s.malformed()).count()
    }

    /// Up to 20 problem responses, described (time since start, client, path, what went wrong).
    pub fn examples(&self) -> Vec<String> {
        self.responses
            .iter()
            .filter(|s| s.problem())
            .take(20)
            .map(|s| s.describe(self.started))
            .collect()
    }

    /// Latency of every response.
    pub fn latency(&self) -> Latency {
        Latency::of(self.responses.iter())
    }

    /// Latency of the responses sent in `[from, to)` (e.g. around a swap).
    pub fn latency_between(&self, from: Instant, to: Instant) -> Latency {
        Latency::of(
            self.responses
                .iter()
                .filter(|s| s.sent >= from && s.sent < to),
        )
    }

    /// Latency of the responses `filter` selects (e.g. one path, or one window and one path).
    pub fn latency_where(&self, filter: impl Fn(&Sample) -> bool) -> Latency {
        Latency::of(self.responses.iter().filter(|s| filter(s)))
    }

    /// The responses to requests *sent* at or after `instant`. A request sent before it (a slow
    /// one) may legitimately finish on the old release; one sent after may not.
    pub fn responses_after(&self, instant: Instant) -> Vec<&Sample> {
        self.responses
            .iter()
            .filter(|s| s.sent >= instant)
            .collect()
    }

    /// The responses sent at or after `instant` that were not served entirely by `release`
    /// (another release, no release, a mixed `/slow`, or no answer at all).
    pub fn not_from_after(&self, instant: Instant, release: &str) -> Vec<&Sample> {
        self.responses_after(instant)
            .into_iter()
            .filter(|s| s.release.as_deref() != Some(release) || s.mixed())
            .collect()
    }

    /// How many responses each release served (`?` for none).
    pub fn releases(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for sample in &self.responses {
            let release = sample.release.clone().unwrap_or_else(|| "?".to_string());
            *counts.entry(release).or_insert(0) += 1;
        }
        counts
    }

    /// No failed, connection-error, mixed or malformed response.
    pub fn is_clean(&self) -> bool {
        self.responses.iter().all(|s| !s.problem())
    }

    /// Panics with the report unless [`LoadReport::is_clean`].
    pub fn assert_clean(&self) {
        assert!(self.is_clean(), "the load saw problems:\n{self}");
    }

    /// Panics unless every response sent at or after `instant` came from `release` (and there
    /// was at least one: an empty window proves nothing).
    pub fn assert_from_after(&self, instant: Instant, release: &str) {
        let after = self.responses_after(instant).len();
        assert!(
            after > 0,
            "no response sent after the instant to check release {release}:\n{self}"
        );
        let wrong = self.not_from_after(instant, release);
        assert!(
            wrong.is_empty(),
            "{} of {after} responses sent after +{:.3}s were not served by release {release}, e.g.:\n{}\n{self}",
            wrong.len(),
            instant.saturating_duration_since(self.started).as_secs_f64(),
            wrong
                .iter()
                .take(20)
                .map(|s| s.describe(self.started))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.stopped.duration_since(self.started).as_secs_f64();
        writeln!(
            f,
            "load: {} responses in {seconds:.1} s ({:.0}/s){}: ok {}, failed {}, connection errors {}, mixed {}, malformed {}",
            self.total(),
            self.total() as f64 / seconds.max(0.001),
            if self.hit_cap { ", stopped by its time cap" } else { "" },
            self.ok(),
            self.failed(),
            self.connection_errors(),
            self.mixed(),
            self.malformed()
        )?;
        writeln!(f, "latency: {}", self.latency())?;
        writeln!(f, "releases: {:?}", self.releases())?;
        for example in self.examples() {
            writeln!(f, "  {example}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Sessions
// ---------------------------------------------------------------------------------------------

/// A browser-like client of the `web` routes: keeps the cookies the app sets (session and
/// XSRF-TOKEN, which Laravel re-encrypts on every response) and sends them back.
pub struct SessionClient {
    base: String,
    agent: ureq::Agent,
    /// Cookie name -> value.
    pub cookies: BTreeMap<String, String>,
}

/// What `/session` answered: `count=<n> id=<prefix of sha1(session id)>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionState {
    pub count: u32,
    pub id: String,
}

impl SessionClient {
    /// A client of `stack`, with an empty cookie jar.
    pub fn new(stack: &Stack) -> SessionClient {
        SessionClient::for_url(&stack.url)
    }

    pub fn for_url(base_url: &str) -> SessionClient {
        SessionClient {
            base: base_url.trim_end_matches('/').to_string(),
            agent: agent(),
            cookies: BTreeMap::new(),
        }
    }

    /// `GET path` with the cookies; stores the cookies the answer sets.
    pub fn get(&mut self, path: &str) -> (u16, HeaderMap, String) {
        let mut request = self.agent.get(format!("{}{path}", self.base));
        if let Some(cookie) = self.cookie_header() {
            request = request.header("Cookie", cookie);
        }
        self.finish("GET", path, request.call())
    }

    /// `POST path` with a form and the cookies; stores the cookies the answer sets.
    pub fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> (u16, HeaderMap, String) {
        let mut request = self.agent.post(format!("{}{path}", self.base));
        if let Some(cookie) = self.cookie_header() {
            request = request.header("Cookie", cookie);
        }
        let result = request.send_form(form.iter().copied());
        self.finish("POST", path, result)
    }

    /// `GET /session`: increments the counter. Panics unless 200.
    pub fn count(&mut self) -> SessionState {
        let (status, _, body) = self.get("/session");
        assert_eq!(status, 200, "GET /session: {body}");
        parse_session(&body)
    }

    /// `GET /csrf`: the session's CSRF token. Panics unless 200.
    pub fn csrf(&mut self) -> String {
        let (status, _, body) = self.get("/csrf");
        assert_eq!(status, 200, "GET /csrf: {body}");
        body.trim().to_string()
    }

    /// `POST /session` with `_token=token`: (status, body). 200 when the token is valid for the
    /// session (the counter increments), 419 when it is not.
    pub fn post_count(&mut self, token: &str) -> (u16, String) {
        let (status, _, body) = self.post_form("/session", &[("_token", token)]);
        (status, body)
    }

    /// `GET /csrf` then `POST /session` with it; panics unless 200; the new state.
    pub fn post_with_csrf(&mut self) -> SessionState {
        let token = self.csrf();
        let (status, body) = self.post_count(&token);
        assert_eq!(
            status, 200,
            "POST /session with the session's token: {body}"
        );
        parse_session(&body)
    }

    fn cookie_header(&self) -> Option<String> {
        if self.cookies.is_empty() {
            return None;
        }
        Some(
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }

    fn finish(
        &mut self,
        method: &str,
        path: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> (u16, HeaderMap, String) {
        let (status, headers, body) =
            read_response(result).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        for value in headers.get_all("set-cookie") {
            let Ok(value) = value.to_str() else { continue };
            let mut parts = value.split(';');
            let Some((name, val)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let expired = parts.any(|attr| {
                let attr = attr.trim().to_ascii_lowercase();
                attr.strip_prefix("max-age=")
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|age| age <= 0)
            });
            if expired {
                self.cookies.remove(name.trim());
            } else {
                self.cookies
                    .insert(name.trim().to_string(), val.trim().to_string());
            }
        }
        (status, headers, body)
    }
}

/// `count=<n> id=<id>` -> SessionState; panics on anything else.
pub fn parse_session(body: &str) -> SessionState {
    let mut count = None;
    let mut id = None;
    for word in body.split_whitespace() {
        if let Some(v) = word.strip_prefix("count=") {
            count = v.parse().ok();
        } else if let Some(v) = word.strip_prefix("id=") {
            id = Some(v.to_string());
        }
    }
    match (count, id) {
        (Some(count), Some(id)) => SessionState { count, id },
        _ => panic!("not a /session answer: {body:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------------

/// `php DEPLOY/current/artisan queue:work --sleep=0.2 --tries=1`, run from `DEPLOY/current`
/// and started again whenever it exits (as supervisord would: `queue:restart` makes a worker
/// exit after its current job, and the new one starts from whatever `current` is then), until
/// [`QueueWorker::stop`], drop, or its 5 minute cap. Its output goes to a log in the sandbox.
pub struct QueueWorker {
    stop: Arc<AtomicBool>,
    spawns: Arc<AtomicUsize>,
    thread: Option<JoinHandle<Vec<String>>>,
    /// stdout and stderr of every worker run, appended.
    pub log: PathBuf,
}

/// What a stopped [`QueueWorker`] did.
#[derive(Debug)]
pub struct WorkerReport {
    /// How many times a worker process was started.
    pub spawns: usize,
    /// Exit status of each run, in order (the last one is the stop).
    pub exits: Vec<String>,
    /// The workers' output.
    pub log: String,
}

impl QueueWorker {
    /// Starts supervising a worker for `deploy_path` (its `current` must exist).
    pub fn start(sandbox: &Sandbox, deploy_path: impl AsRef<Path>) -> QueueWorker {
        QueueWorker::start_with(sandbox, deploy_path, &["--sleep=0.2", "--tries=1"])
    }

    /// Same, with other `queue:work` options.
    pub fn start_with(
        sandbox: &Sandbox,
        deploy_path: impl AsRef<Path>,
        options: &[&str],
    ) -> QueueWorker {
        const CAP: Duration = Duration::from_secs(300);
        let deploy = deploy_dir(sandbox, deploy_path);
        let current = deploy.join("current");
        assert!(
            current.exists(),
            "no {} to run a queue worker in",
            current.display()
        );
        let log = (1..)
            .map(|n| sandbox.path(&format!("queue-worker-{n}.log")))
            .find(|p| !p.exists())
            .unwrap();
        std::fs::File::create(&log).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let spawns = Arc::new(AtomicUsize::new(0));
        let options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        let thread = {
            let (stop, spawns, log) = (stop.clone(), spawns.clone(), log.clone());
            thread::Builder::new()
                .name("queue-worker".into())
                .spawn(move || {
                    let started = Instant::now();
                    let mut exits = Vec::new();
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < CAP {
                        let out = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
                        let _ = writeln!(
                            &out,
                            "--- worker start at +{:.3}s",
                            started.elapsed().as_secs_f64()
                        );
                        let err = out.try_clone().unwrap();
                        let mut child = match Command::new("php")
                            .arg(current.join("artisan"))
                            .arg("queue:work")
                            .args(&options)
                            .current_dir(&current)
                            .stdin(Stdio::null())
                            .stdout(out)
                            .stderr(err)
                            .spawn()
                        {
                            Ok(child) => child,
                            Err(e) => {
                                exits.push(format!("spawn failed: {e}"));
                                thread::sleep(Duration::from_millis(200));
                                continue;
                            }
                        };
                        spawns.fetch_add(1, Ordering::Relaxed);
                        let run_started = Instant::now();
                        let status = loop {
                            if let Some(status) = child.try_wait().unwrap() {
                                break status;
                            }
                            if stop.load(Ordering::Relaxed) || started.elapsed() >= CAP {
                                break terminate(&mut child);
                            }
                            thread::sleep(Duration::from_millis(20));
                        };
                        exits.push(status.to_string());
                        // A worker that dies at once (no `current`, broken code) is not a hot loop.
                        if run_started.elapsed() < Duration::from_millis(500) {
                            thread::sleep(Duration::from_millis(200));
                        }
                    }
                    exits
                })
                .expect("spawn the queue supervisor")
        };
        QueueWorker {
            stop,
            spawns,
            thread: Some(thread),
            log,
        }
    }

    /// How many worker processes were started so far (1 + restarts).
    pub fn spawns(&self) -> usize {
        self.spawns.load(Ordering::Relaxed)
    }

    /// Stops supervising: SIGTERM to the running worker (it finishes its job and exits), SIGKILL
    /// after 10 s, and waits for it.
    pub fn stop(mut self) -> WorkerReport {
        let exits = self.finish();
        WorkerReport {
            spawns: self.spawns(),
            exits,
            log: std::fs::read_to_string(&self.log).unwrap_or_default(),
        }
    }

    fn finish(&mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().expect("the queue supervisor panicked"))
            .unwrap_or_default()
    }
}

impl Drop for QueueWorker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// SIGTERM `child` by its pid, wait up to 10 s, then SIGKILL; reaps it.
fn terminate(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().unwrap()
}

/// `GET /dispatch?n=N` on the stack: the ids of the N queued `RecordVersion` jobs.
pub fn dispatch(stack: &Stack, n: usize) -> Vec<String> {
    let (status, _, body) = stack.get(&format!("/dispatch?n={n}"));
    assert_eq!(status, 200, "GET /dispatch?n={n}: {body}\n{}", stack.logs());
    let ids: Vec<String> = body
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(ids.len(), n, "GET /dispatch?n={n}: {body}");
    ids
}

/// Dispatches one job every `every` from its own thread (`GET /dispatch?n=1`), as an app's
/// traffic does, until stopped; across a deploy, some are dispatched by the old code and some
/// by the new.
pub struct Dispatcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<(Vec<String>, Vec<String>)>>,
}

impl Dispatcher {
    pub fn start(stack: &Stack, every: Duration) -> Dispatcher {
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("{}/dispatch?n=1", stack.url);
        let thread = {
            let stop = stop.clone();
            thread::Builder::new()
                .name("dispatcher".into())
                .spawn(move || {
                    let agent = agent();
                    let (mut ids, mut errors) = (Vec::new(), Vec::new());
                    while !stop.load(Ordering::Relaxed) {
                        let next = Instant::now() + every;
                        match read_response(agent.get(&url).call()) {
                            Ok((200, _, body)) => ids.extend(
                                body.lines()
                                    .map(str::trim)
                                    .filter(|l| !l.is_empty())
                                    .map(str::to_string),
                            ),
                            Ok((status, _, body)) => errors.push(format!("{status}: {body}")),
                            Err(e) => errors.push(e),
                        }
                        thread::sleep(next.saturating_duration_since(Instant::now()));
                    }
                    (ids, errors)
                })
                .expect("spawn the dispatcher")
        };
        Dispatcher {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops dispatching; returns the ids dispatched. Panics when a dispatch failed.
    pub fn stop(mut self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let (ids, errors) = self.thread.take().unwrap().join().unwrap();
        assert!(errors.is_empty(), "dispatches failed: {errors:?}");
        ids
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One line of `jobs.log`: a job that ran, the code that ran it, and the release whose code
/// dispatched it (`-` for jobs of a fixture older than that field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobRecord {
    pub id: String,
    pub version: String,
    pub release: String,
    pub dispatched_by: String,
}

impl JobRecord {
    /// Old code ran a new job: the worker's release is older than the dispatcher's (release
    /// names sort by the time they were made).
    pub fn run_by_older_code(&self) -> bool {
        self.dispatched_by != "-" && self.release < self.dispatched_by
    }
}

/// The jobs that ran, from `DEPLOY/shared/storage/app/jobs.log` (`<id> <version> <release>` per
/// line, see [`JobRecord`]), in order; empty when no job ran yet. A job run twice appears twice.
pub fn jobs_log(sandbox: &Sandbox, deploy_path: impl AsRef<Path>) -> Vec<JobRecord> {
    let path = deploy_dir(sandbox, deploy_path).join("shared/storage/app/jobs.log");
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some(JobRecord {
                id: words.next()?.to_string(),
                version: words.next()?.to_string(),
                release: words.next()?.to_string(),
                dispatched_by: words.next().unwrap_or("-").to_string(),
            })
        })
        .collect()
}

/// Waits until every id in `ids` is in `jobs.log`, and returns their records (the first of
/// each, in the order of `ids`). Panics after `timeout` with the missing ids, the failed-job
/// count and the tail of `laravel.log`.
pub fn wait_for_jobs(
    sandbox: &Sandbox,
    deploy_path: impl AsRef<Path>,
    ids: &[String],
    timeout: Duration,
) -> Vec<JobRecord> {
    let deploy = deploy_dir(sandbox, deploy_path);
    let deadline = Instant::now() + timeout;
    loop {
        let log = jobs_log(sandbox, &deploy);
        let found: BTreeMap<&str, &JobRecord> =
            log.iter().rev().map(|r| (r.id.as_str(), r)).collect();
        let missing: Vec<&String> = ids
            .iter()
            .filter(|id| !found.contains_key(id.as_str()))
            .collect();
        if missing.is_empty() {
            return ids.iter().map(|id| found[id.as_str()].clone()).collect();
        }
        if Instant::now() >= deadline {
            let laravel_log =
                std::fs::read_to_string(deploy.join("shared/storage/logs/laravel.log"))
                    .unwrap_or_default();
            let tail: Vec<&str> = laravel_log.lines().rev().take(30).collect();
            panic!(
                "{} of {} jobs did not run within {timeout:?} (e.g. {:?}); failed_jobs: {}, jobs pending: {}\nlaravel.log (last lines, newest first):\n{}",
                missing.len(),
                ids.len(),
                &missing[..missing.len().min(5)],
                table_count(&deploy, "failed_jobs"),
                table_count(&deploy, "jobs"),
                tail.join("\n")
            );
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Rows in `failed_jobs` of the shared sqlite database (jobs that threw).
pub fn failed_jobs(sandbox: &Sandbox, deploy_path: impl AsRef<Path>) -> usize {
    table_count(&deploy_dir(sandbox, deploy_path), "failed_jobs")
}

/// The first line of each failed job's exception (for messages).
pub fn failed_job_errors(sandbox: &Sandbox, deploy_path: impl AsRef<Path>) -> Vec<String> {
    let db = deploy_dir(sandbox, deploy_path).join("shared/storage/database.sqlite");
    let code = "$db = new PDO('sqlite:' . $argv[1]); foreach ($db->query('SELECT exception FROM failed_jobs') as $row) { echo strtok($row[0], \"\\n\"), \"\\n\"; }";
    let output = Command::new("php")
        .args(["-r", code])
        .arg(&db)
        .output()
        .expect("php runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Rows in `jobs` of the shared sqlite database (jobs queued and not yet done).
pub fn pending_jobs(sandbox: &Sandbox, deploy_path: impl AsRef<Path>) -> usize {
    table_count(&deploy_dir(sandbox, deploy_path), "jobs")
}

fn table_count(deploy: &Path, table: &str) -> usize {
    let db = deploy.join("shared/storage/database.sqlite");
    let code = format!(
        "$db = new PDO('sqlite:' . $argv[1]); echo $db->query('SELECT COUNT(*) FROM {table}')->fetchColumn();"
    );
    let output = Command::new("php")
        .args(["-r", &code])
        .arg(&db)
        .output()
        .expect("php runs");
    assert!(
        output.status.success(),
        "counting {table} in {}: {}{}",
        db.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Other app layouts (see `laravel_layouts_support`)
// ---------------------------------------------------------------------------------------------

/// [`fixture_repo`], with `overlay` applied to the copied app before the first commit: the same
/// app in another layout (another `artisan`, another bootstrap, another database...).
pub fn fixture_repo_with(
    sandbox: &Sandbox,
    name: &str,
    overlay: impl FnOnce(&Path),
) -> FixtureRepo {
    let repo = sandbox.repo(name);
    copy_tree(&fixture_dir(), &repo.path, true);
    overlay(&repo.path);
    let v1 = repo.commit(&[("VERSION", "v1\n")], "fixture v1");
    repo.tag("v1");
    let v2 = repo.commit(&[("VERSION", "v2\n")], "fixture v2");
    repo.tag("v2");
    FixtureRepo { repo, v1, v2 }
}
