//! Database and cache servers for the Laravel tests: a private PostgreSQL, MariaDB or Redis for
//! one test, from Debian's packages (`scripts/setup` installs them), started by the test with
//! its own config files in a directory of its [`Sandbox`], on 127.0.0.1 at a free port, with a
//! database and a user with a password as an app has in production. Dropping the value stops
//! the server (the pid this started, and no other), also when the test panics.
//!
//!     let sandbox = Sandbox::new();
//!     let database = Postgres::start(&sandbox);   // or MariaDb::start, Redis::start
//!     std::fs::write(env, database.laravel_env())?;
//!
//! PostgreSQL refuses to run as root and MariaDB drops to `mysql`: their files belong to those
//! accounts, so they must be able to reach the sandbox. tempfile makes the sandbox 0700; it is
//! opened for traversal (0711, not for listing). When a directory above it is closed to them
//! too (a `$TMPDIR` under `/root`), the server's directory is made in this process's directory
//! for servers instead (see [`process_dir`]) and `sandbox/<name>` links to it.
//!
//! A cluster is initialized once per test process (initdb ~2 s, mariadb-install-db ~4 s) and
//! copied for each server; a server then answers in well under a second.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{chown, Gid, Pid, Uid, User};

use crate::laravel_support::free_port;
use crate::support::Sandbox;

/// How long a server may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a server may take to stop after its stop signal, before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);
/// Ports tried when another process takes the free port first.
const PORT_ATTEMPTS: usize = 5;

// ---------------------------------------------------------------------------------------------
// Redis

/// A private `redis-server` on 127.0.0.1:`port`, no password, nothing saved to disk.
pub struct Redis {
    pub port: u16,
    /// `redis.conf` and `redis.log`.
    pub dir: PathBuf,
    /// From spawning the server to its first PONG.
    pub started_in: Duration,
    server: Server,
}

impl Redis {
    pub fn start(sandbox: &Sandbox) -> Redis {
        let began = Instant::now();
        let dir = sandbox.path("redis");
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("redis.conf");
        let (server, port) = Server::start(
            "redis-server",
            &dir.join("redis.log"),
            Signal::SIGTERM,
            |port| {
                std::fs::write(
                    &config,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {}\nsave \"\"\nappendonly no\n\
                         daemonize no\nlogfile \"\"\n",
                        dir.display()
                    ),
                )
                .unwrap();
                let mut command = Command::new("redis-server");
                clean(&mut command).arg(&config).current_dir(&dir);
                command
            },
            redis_answers,
        );
        Redis {
            port,
            dir,
            started_in: began.elapsed(),
            server,
        }
    }

    /// `redis-cli` with `args` against this server: its output, trimmed (panics on failure).
    pub fn cli(&self, args: &[&str]) -> String {
        let port = self.port.to_string();
        let mut all = vec!["-h", "127.0.0.1", "-p", &port];
        all.extend(args);
        output(Command::new("redis-cli").args(&all), "redis-cli")
    }

    /// The `.env` lines of a Laravel app using this server.
    pub fn laravel_env(&self) -> String {
        format!(
            "REDIS_CLIENT=phpredis\nREDIS_HOST=127.0.0.1\nREDIS_PORT={}\nREDIS_PASSWORD=null\n",
            self.port
        )
    }

    /// The pid of the server (to check that it stops).
    pub fn pid(&self) -> u32 {
        self.server.child.id()
    }
}

fn redis_answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 7];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"+PONG\r\n"
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/// A private PostgreSQL cluster on 127.0.0.1:`port` (and a socket in `dir`): `database` owned
/// by `user`, who logs in with `password` over TCP (scram-sha-256); the superuser `postgres`
/// logs in on the socket without one.
pub struct Postgres {
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    /// `postgresql.conf`, `pg_hba.conf`, `postgres.log`, the socket, and `data/`.
    pub dir: PathBuf,
    /// From copying the cluster to the database created (the first initdb not counted).
    pub started_in: Duration,
    server: Server,
    place: Place,
}

impl Postgres {
    pub fn start(sandbox: &Sandbox) -> Postgres {
        let account = Account::named("postgres");
        let bin = postgres_bin();
        let template = template("postgres", &account, |dir| {
            run_as(
                &account,
                Command::new(bin.join("initdb"))
                    .args(["-D", "data", "-U", "postgres"])
                    .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
                    .args([
                        "--encoding=UTF8",
                        "--locale=C",
                        "--no-sync",
                        "--no-instructions",
                    ])
                    .current_dir(dir),
                "initdb",
            );
        });
        let began = Instant::now();
        let place = Place::new(sandbox, "postgres", &account);
        let dir = place.dir.clone();
        copy_tree(&template.join("data"), &dir.join("data"));
        std::fs::write(
            dir.join("pg_hba.conf"),
            "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )
        .unwrap();
        let config = dir.join("postgresql.conf");
        let (server, port) = Server::start(
            "postgres",
            &dir.join("postgres.log"),
            // Fast shutdown: SIGTERM would wait for every client (php-fpm's) to leave.
            Signal::SIGINT,
            |port| {
                std::fs::write(
                    &config,
                    format!(
                        "data_directory = '{dir}/data'\nhba_file = '{dir}/pg_hba.conf'\n\
                         ident_file = '{dir}/data/pg_ident.conf'\n\
                         listen_addresses = '127.0.0.1'\nport = {port}\n\
                         unix_socket_directories = '{dir}'\nmax_connections = 40\n\
                         shared_buffers = 16MB\nfsync = off\nsynchronous_commit = off\n\
                         full_page_writes = off\nlog_destination = 'stderr'\n",
                        dir = dir.display()
                    ),
                )
                .unwrap();
                let mut command = Command::new(bin.join("postgres"));
                command
                    .arg("-c")
                    .arg(format!("config_file={}", config.display()));
                account.apply(&mut command, &dir);
                command
            },
            |port| {
                superuser_psql(&dir, port, "select 1")
                    .output()
                    .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"1")
            },
        );
        let (database, user, password) = app_credentials(port);
        output(
            superuser_psql(
                &dir,
                port,
                &format!("create role {user} login password '{password}'"),
            )
            .arg("-c")
            .arg(format!("create database {database} owner {user}")),
            "psql",
        );
        Postgres {
            port,
            database,
            user,
            password,
            dir,
            started_in: began.elapsed(),
            server,
            place,
        }
    }

    /// `sql` run by the app's user over TCP with its password: the rows, `|`-separated, one a
    /// line (panics on failure).
    pub fn query(&self, sql: &str) -> String {
        output(
            clean(&mut Command::new(postgres_bin().join("psql")))
                .env("PGPASSWORD", &self.password)
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["-U", &self.user, "-d", &self.database])
                .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]),
            "psql",
        )
    }

    /// PDO's data source name.
    pub fn dsn(&self) -> String {
        format!(
            "pgsql:host=127.0.0.1;port={};dbname={}",
            self.port, self.database
        )
    }

    /// The `.env` lines of a Laravel app using this database.
    pub fn laravel_env(&self) -> String {
        format!(
            "DB_CONNECTION=pgsql\nDB_HOST=127.0.0.1\nDB_PORT={}\nDB_DATABASE={}\n\
             DB_USERNAME={}\nDB_PASSWORD={}\n",
            self.port, self.database, self.user, self.password
        )
    }

    pub fn pid(&self) -> u32 {
        self.server.child.id()
    }
}

/// The newest PostgreSQL's programs (`/usr/lib/postgresql/<major>/bin`).
fn postgres_bin() -> PathBuf {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("/usr/lib/postgresql: install postgresql (scripts/setup)")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let major = path.file_name()?.to_str()?.parse().ok()?;
            Some((major, path.join("bin")))
        })
        .filter(|(_, bin)| bin.join("postgres").exists())
        .collect();
    majors.sort();
    majors
        .pop()
        .expect("no PostgreSQL server: install postgresql (scripts/setup)")
        .1
}

/// `psql` as the superuser on the socket in `dir`, running `sql`.
fn superuser_psql(dir: &Path, port: u16, sql: &str) -> Command {
    let mut command = Command::new(postgres_bin().join("psql"));
    clean(&mut command)
        .args(["-h", &dir.display().to_string(), "-p", &port.to_string()])
        .args(["-U", "postgres", "-d", "postgres"])
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]);
    command
}

// ---------------------------------------------------------------------------------------------
// MariaDB

/// A private MariaDB server on 127.0.0.1:`port` (and `socket`): `database`, on which `user`
/// (at any host) has every privilege, logging in with `password`; `root` logs in on the socket.
pub struct MariaDb {
    pub port: u16,
    pub database: String,
    pub user: String,
    pub password: String,
    pub socket: PathBuf,
    /// `my.cnf`, `mariadb.log`, the socket, and `data/`.
    pub dir: PathBuf,
    /// From copying the data directory to the user created (the first install not counted).
    pub started_in: Duration,
    server: Server,
    place: Place,
}

/// The server settings of the template and of every server (small and fast; no binary log).
const MARIADB_SETTINGS: &str = "skip-name-resolve\nskip-log-bin\ninnodb_buffer_pool_size=16M\n\
                                innodb_log_file_size=8M\ninnodb_flush_log_at_trx_commit=0\n\
                                innodb_doublewrite=0\n";

impl MariaDb {
    pub fn start(sandbox: &Sandbox) -> MariaDb {
        let account = Account::named("mysql");
        let template = template("mariadb", &account, |dir| {
            let config = dir.join("my.cnf");
            std::fs::write(
                &config,
                format!(
                    "[mariadbd]\ndatadir={}/data\n{MARIADB_SETTINGS}",
                    dir.display()
                ),
            )
            .unwrap();
            output(
                clean(&mut Command::new("mariadb-install-db"))
                    .arg(format!("--defaults-file={}", config.display()))
                    .args(["--user=mysql", "--auth-root-authentication-method=normal"])
                    .args(["--skip-test-db", "--skip-name-resolve"])
                    .current_dir(dir),
                "mariadb-install-db",
            );
        });
        let began = Instant::now();
        let place = Place::new(sandbox, "mariadb", &account);
        let dir = place.dir.clone();
        copy_tree(&template.join("data"), &dir.join("data"));
        let socket = dir.join("mariadb.sock");
        let config = dir.join("my.cnf");
        let (server, port) = Server::start(
            "mariadbd",
            &dir.join("mariadb.log"),
            Signal::SIGTERM,
            |port| {
                std::fs::write(
                    &config,
                    format!(
                        "[mariadbd]\ndatadir={dir}/data\nsocket={socket}\npid-file={dir}/mariadb.pid\n\
                         port={port}\nbind-address=127.0.0.1\n{MARIADB_SETTINGS}",
                        dir = dir.display(),
                        socket = socket.display()
                    ),
                )
                .unwrap();
                let mut command = Command::new("mariadbd");
                clean(&mut command)
                    .arg(format!("--defaults-file={}", config.display()))
                    .arg("--user=mysql")
                    .current_dir(&dir);
                command
            },
            |_| {
                root_mariadb(&socket, "select 1")
                    .output()
                    .is_ok_and(|o| o.status.success())
            },
        );
        let (database, user, password) = app_credentials(port);
        output(
            &mut root_mariadb(
                &socket,
                &format!(
                    "create database `{database}`; \
                     create user '{user}'@'%' identified by '{password}'; \
                     grant all privileges on `{database}`.* to '{user}'@'%';"
                ),
            ),
            "mariadb",
        );
        MariaDb {
            port,
            database,
            user,
            password,
            socket,
            dir,
            started_in: began.elapsed(),
            server,
            place,
        }
    }

    /// `sql` run by the app's user over TCP with its password: the rows, tab-separated, one a
    /// line (panics on failure).
    pub fn query(&self, sql: &str) -> String {
        output(
            clean(&mut Command::new("mariadb"))
                .env("MYSQL_PWD", &self.password)
                .args(["--no-defaults", "--protocol=TCP", "-h", "127.0.0.1"])
                .args(["-P", &self.port.to_string(), "-u", &self.user])
                .args(["-D", &self.database, "-N", "-B", "-e", sql]),
            "mariadb",
        )
    }

    /// PDO's data source name.
    pub fn dsn(&self) -> String {
        format!(
            "mysql:host=127.0.0.1;port={};dbname={}",
            self.port, self.database
        )
    }

    /// The `.env` lines of a Laravel app using this database.
    pub fn laravel_env(&self) -> String {
        format!(
            "DB_CONNECTION=mysql\nDB_HOST=127.0.0.1\nDB_PORT={}\nDB_DATABASE={}\n\
             DB_USERNAME={}\nDB_PASSWORD={}\n",
            self.port, self.database, self.user, self.password
        )
    }

    pub fn pid(&self) -> u32 {
        self.server.child.id()
    }
}

/// The `mariadb` client as root on `socket`, running `sql`.
fn root_mariadb(socket: &Path, sql: &str) -> Command {
    let mut command = Command::new("mariadb");
    clean(&mut command)
        .arg("--no-defaults")
        .arg(format!("--socket={}", socket.display()))
        .args(["-u", "root", "-N", "-B", "-e", sql]);
    command
}

// ---------------------------------------------------------------------------------------------
// What the servers share

/// A server this process spawned. Dropping it sends `stop` to that pid (and only that one),
/// waits up to [`STOP_TIMEOUT`], then SIGKILLs it.
struct Server {
    name: &'static str,
    child: Child,
    stop: Signal,
}

impl Server {
    /// Spawn `spawn(port)` at a free port, its output into `log`, until `ready(port)`. When
    /// the server exits because another process took the port meanwhile, another port is tried.
    fn start(
        name: &'static str,
        log: &Path,
        stop: Signal,
        mut spawn: impl FnMut(u16) -> Command,
        mut ready: impl FnMut(u16) -> bool,
    ) -> (Server, u16) {
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            let file = File::create(log).unwrap();
            let child = spawn(port)
                .stdin(Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .unwrap_or_else(|e| {
                    panic!("{name} does not start: {e} (scripts/setup installs it)")
                });
            let mut server = Server { name, child, stop };
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if let Some(status) = server.child.try_wait().unwrap() {
                    let text = std::fs::read_to_string(log).unwrap_or_default();
                    // Detecting a taken port needs the server's words; nothing is asserted on them.
                    if text.contains("Address already in use") && attempt < PORT_ATTEMPTS {
                        break;
                    }
                    panic!(
                        "{name} exited with {status} before it answered on 127.0.0.1:{port}\n--- {}\n{text}",
                        log.display()
                    );
                }
                if ready(port) {
                    return (server, port);
                }
                if Instant::now() > deadline {
                    drop(server);
                    panic!(
                        "{name} did not answer on 127.0.0.1:{port} within {START_TIMEOUT:?}\n--- {}\n{}",
                        log.display(),
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        unreachable!("the last attempt returns or panics")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = kill(Pid::from_raw(self.child.id() as i32), self.stop);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} (pid {}) did not stop within {STOP_TIMEOUT:?}: SIGKILL",
            self.name,
            self.child.id()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The system account a server runs as.
struct Account {
    name: &'static str,
    uid: Uid,
    gid: Gid,
}

impl Account {
    fn named(name: &'static str) -> Account {
        let user = User::from_name(name)
            .unwrap()
            .unwrap_or_else(|| panic!("no user `{name}`: install its server (scripts/setup)"));
        Account {
            name,
            uid: user.uid,
            gid: user.gid,
        }
    }

    /// `command` runs as this account, in `dir`, with a clean environment.
    fn apply(&self, command: &mut Command, dir: &Path) {
        clean(command)
            .uid(self.uid.as_raw())
            .gid(self.gid.as_raw())
            .current_dir(dir);
    }

    fn own(&self, path: &Path) {
        chown(path, Some(self.uid), Some(self.gid))
            .unwrap_or_else(|e| panic!("chown {} {}: {e}", self.name, path.display()));
    }
}

/// The environment of every program started here: PATH and the C locale, nothing else.
fn clean(command: &mut Command) -> &mut Command {
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LC_ALL", "C")
}

/// Run `command` as `account`; panic with its output when it fails.
fn run_as(account: &Account, command: &mut Command, what: &str) -> String {
    let dir = command
        .get_current_dir()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    account.apply(command, &dir);
    output(command, what)
}

/// Run `command`: its stdout, trimmed; panic with both outputs when it fails.
#[track_caller]
fn output(command: &mut Command, what: &str) -> String {
    let result = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what} does not start: {e} (scripts/setup installs it)"));
    let stdout = String::from_utf8_lossy(&result.stdout).trim().to_string();
    assert!(
        result.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        result.status,
        String::from_utf8_lossy(&result.stderr)
    );
    stdout
}

/// A database, user and password for an app: unique per server, as a real password looks.
fn app_credentials(port: u16) -> (String, String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    (
        "app".to_string(),
        "app".to_string(),
        format!("pw{port}x{nanos:08x}"),
    )
}

/// `cp -a` of `from` (a directory) to `to`: owners and modes kept.
fn copy_tree(from: &Path, to: &Path) {
    output(
        Command::new("cp").arg("-a").arg(from).arg(to),
        "cp -a (a cluster)",
    );
}

/// Where a server's files are: `sandbox/<name>`, or (when the account cannot reach the
/// sandbox) a directory in [`process_dir`] that `sandbox/<name>` links to, removed on drop.
struct Place {
    dir: PathBuf,
    elsewhere: bool,
}

impl Place {
    fn new(sandbox: &Sandbox, name: &str, account: &Account) -> Place {
        let root = sandbox.root();
        let dir = sandbox.path(name);
        let elsewhere = !reachable_by_all(root.parent().unwrap_or(Path::new("/")));
        let dir = if elsewhere {
            let unique = root.file_name().unwrap().to_string_lossy().into_owned();
            let target = process_dir().join(format!("{unique}-{name}"));
            std::fs::create_dir_all(&target).unwrap();
            std::os::unix::fs::symlink(&target, &dir).unwrap();
            target
        } else {
            // tempfile makes the sandbox 0700: let the account through, not read it.
            let mode = std::fs::metadata(root).unwrap().permissions().mode();
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode | 0o011)).unwrap();
            std::fs::create_dir_all(&dir).unwrap();
            dir
        };
        account.own(&dir);
        Place { dir, elsewhere }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.elsewhere {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether every directory from `/` down to `dir` lets anyone through (`o+x`): the server
/// accounts can reach what is inside.
fn reachable_by_all(dir: &Path) -> bool {
    dir.ancestors()
        .all(|d| std::fs::metadata(d).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// This process's directory for server files outside the sandboxes (the initialized clusters
/// the servers are copied from): `zdd-services-<pid>` in the temp dir, or in `/var/tmp` when
/// the server accounts cannot reach the temp dir. Nothing drops a static, so the directories
/// of processes that are no longer running are removed when a process makes its own.
fn process_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let temp = std::env::temp_dir();
        let base = if reachable_by_all(&temp) {
            temp
        } else {
            PathBuf::from("/var/tmp")
        };
        for entry in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.strip_prefix("zdd-services-") else {
                continue;
            };
            let Ok(pid) = pid.parse::<i32>() else {
                continue;
            };
            if kill(Pid::from_raw(pid), None) == Err(nix::errno::Errno::ESRCH) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let dir = base.join(format!("zdd-services-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        dir
    })
}

/// The initialized cluster of `kind` (made once per process by `make(dir)`, in a directory
/// `account` owns): servers start from a copy of `<template>/data`.
fn template(kind: &'static str, account: &Account, make: impl FnOnce(&Path)) -> PathBuf {
    static TEMPLATES: Mutex<Option<HashMap<&'static str, PathBuf>>> = Mutex::new(None);
    let mut templates = TEMPLATES.lock().unwrap_or_else(|e| e.into_inner());
    let templates = templates.get_or_insert_with(HashMap::new);
    if let Some(dir) = templates.get(kind) {
        return dir.clone();
    }
    let dir = process_dir().join(format!("{kind}-template"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    account.own(&dir);
    let began = Instant::now();
    make(&dir);
    eprintln!("{kind}: cluster initialized in {:?}", began.elapsed());
    templates.insert(kind, dir.clone());
    dir
}

// ---------------------------------------------------------------------------------------------

/// PHP's drivers reach each server: PDO (pgsql, mysql) logs in with the app's password and
/// round-trips a row; phpredis sets and gets a key. A wrong password is refused. Dropping a
/// server stops it. Also where the sandbox's parent is closed to the server accounts.
#[test]
fn services_start_and_php_reaches_them() {
    let sandbox = Sandbox::new();
    let redis = Redis::start(&sandbox);
    let postgres = Postgres::start(&sandbox);
    let mariadb = MariaDb::start(&sandbox);
    eprintln!(
        "started: redis {:?}, postgres {:?}, mariadb {:?}",
        redis.started_in, postgres.started_in, mariadb.started_in
    );

    let pdo = |dsn: &str, user: &str, password: &str| {
        php(&format!(
            "$db = new PDO({}, {}, {}, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);\n\
             $db->exec('create table probe (value varchar(20))');\n\
             $db->exec(\"insert into probe values ('from php')\");\n\
             echo $db->query('select value from probe')->fetchColumn();",
            php_string(dsn),
            php_string(user),
            php_string(password)
        ))
    };
    for (name, dsn, user, password) in [
        (
            "postgres",
            postgres.dsn(),
            &postgres.user,
            &postgres.password,
        ),
        ("mariadb", mariadb.dsn(), &mariadb.user, &mariadb.password),
    ] {
        let (ok, out) = pdo(&dsn, user, password);
        assert!(ok && out == "from php", "{name}: {out}");
        let (ok, out) = pdo(&dsn, user, "wrong");
        assert!(!ok, "{name} let a wrong password in: {out}");
    }
    assert_eq!(postgres.query("select value from probe"), "from php");
    assert_eq!(mariadb.query("select value from probe"), "from php");
    let (ok, out) = php(&format!(
        "$redis = new Redis();\n$redis->connect('127.0.0.1', {});\n\
         $redis->set('probe', 'from php');\necho $redis->get('probe');",
        redis.port
    ));
    assert!(ok && out == "from php", "redis: {out}");
    assert_eq!(redis.cli(&["get", "probe"]), "from php");

    let pids = [redis.pid(), postgres.pid(), mariadb.pid()];
    let began = Instant::now();
    drop((redis, postgres, mariadb));
    eprintln!("stopped all three in {:?}", began.elapsed());
    for pid in pids {
        assert_eq!(
            kill(Pid::from_raw(pid as i32), None),
            Err(nix::errno::Errno::ESRCH),
            "pid {pid} still runs"
        );
    }

    // A sandbox in a directory closed to `postgres`: its cluster lives elsewhere, linked.
    let closed = tempfile::Builder::new()
        .prefix("zdd-closed-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(closed.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let inside = Sandbox {
        dir: tempfile::Builder::new()
            .prefix("zdd-test-")
            .tempdir_in(closed.path())
            .unwrap(),
    };
    let postgres = Postgres::start(&inside);
    assert!(inside.path("postgres").is_symlink());
    let (ok, out) = pdo(&postgres.dsn(), &postgres.user, &postgres.password);
    assert!(
        ok && out == "from php",
        "postgres outside the sandbox: {out}"
    );
    let elsewhere = postgres.dir.clone();
    drop(postgres);
    assert!(!elsewhere.exists(), "{}", elsewhere.display());
}

/// `php -r code`: whether it succeeded, and its output (stdout then stderr).
fn php(code: &str) -> (bool, String) {
    let result = clean(&mut Command::new("php"))
        .args(["-r", code])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    (result.status.success(), text.trim().to_string())
}

/// `text` as a single-quoted PHP string.
fn php_string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}
