//! Harness for the SSH tests: several real OpenSSH servers (`/usr/sbin/sshd -D`) on loopback
//! ports, each one a "host" with its own host key, config, log, pid file, remote HOME and deploy
//! path in the sandbox, and one client key pair that every host accepts for root.
//!
//! Layout in the sandbox (hosts are numbered from 1, as in `web1`, `zdd-host1`):
//!
//! ```text
//! ssh/client, ssh/client.pub      the client key pair (ed25519, no passphrase)
//! ssh/authorized_keys             the client's public key (every host reads this file)
//! ssh/ssh_config                  `Host zdd-hostN` entries, then `Host *` defaults
//! hostN/sshd/                     host_key, sshd_config, sshd.pid, sshd.log
//! hostN/home/                     the remote HOME of sessions on host N (created, empty)
//! hostN/app                       the host's deploy path (not created)
//! ```
//!
//! The remote login environment: sshd runs every command as `$SHELL -c COMMAND` with root's
//! shell (bash), and bash started by sshd reads `~/.bashrc` even when non-interactive. Root's
//! `/root/.bashrc` on these machines runs slow set-up (pyenv: 0.2-0.35 s per session). Each
//! sshd here has `SetEnv HOME=<sandbox>/hostN/home`, which sshd applies after its defaults, so
//! bash looks for `.bashrc` in the empty test home and skips root's. Nothing under /root is
//! touched. Consequences: remote `~` and `$HOME` are [`SshHosts::home`]; the remote working
//! directory is still root's home directory (sshd `chdir`s to the passwd entry); `PATH` is
//! sshd's default for root (`/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`).
//!
//! Key exchange: every sshd here offers only `curve25519-sha256` (`KexAlgorithms`): OpenSSH
//! 9.2's default `sntrup761x25519-sha512` costs an extra 0.1-0.25 s of CPU per new connection on
//! these 2-CPU machines, which would dominate tests that open many connections.
//!
//! Everything started here stops when the [`SshHosts`] is dropped (also when the test panics):
//! each sshd and the connection processes it forked get SIGTERM by pid (SIGKILL after 5 s), and
//! each sshd (our child) is reaped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::support::Sandbox;

/// The sshd binary (sshd refuses to re-exec itself unless started by an absolute path).
pub const SSHD: &str = "/usr/sbin/sshd";

/// How long [`SshHosts::start`] waits for one sshd to listen.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How many times a host is started on a new port when its port was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// One running sshd.
struct Host {
    /// 1-based number: `web{n}`, `zdd-host{n}`, `host{n}/`.
    number: usize,
    port: u16,
    child: Option<Child>,
    pid: u32,
    dir: PathBuf,
    home: PathBuf,
    deploy_path: PathBuf,
}

/// Several sshd servers on 127.0.0.1, started by [`SshHosts::start`], stopped on drop.
///
/// Host numbers `i` are 1-based everywhere (`1..=len()`), matching `web{i}` and `zdd-host{i}`.
/// Declare it after the [`Sandbox`] (`let sandbox = ..; let hosts = ..;`) so it is dropped
/// first: the servers stop before their files are removed.
pub struct SshHosts {
    hosts: Vec<Host>,
    ssh_dir: PathBuf,
    config_file: PathBuf,
    identity_file: PathBuf,
}

impl SshHosts {
    /// Generate one client key pair and `count` host keys, write the configs and start `count`
    /// sshd processes (`sshd -D -f CONFIG -E LOG`) on free loopback ports; returns once every
    /// one accepts TCP connections. Panics with the sshd log if one does not start within
    /// [`START_TIMEOUT`]. Creates `/run/sshd` (mode 0755) if it is missing.
    pub fn start(sandbox: &Sandbox, count: usize) -> SshHosts {
        SshHosts::start_with(sandbox, count, &Login::default())
    }

    /// [`SshHosts::start`], with the hosts' sessions changed as `login` says.
    pub fn start_with(sandbox: &Sandbox, count: usize, login: &Login) -> SshHosts {
        assert!(count >= 1, "SshHosts::start needs at least one host");
        ensure_privsep_dir();

        let ssh_dir = sandbox.path("ssh");
        std::fs::create_dir_all(&ssh_dir).unwrap();
        let identity_file = ssh_dir.join("client");
        keygen(&identity_file, "zdd-test-client");
        let public_key = std::fs::read_to_string(ssh_dir.join("client.pub")).unwrap();
        let authorized_keys = ssh_dir.join("authorized_keys");
        std::fs::write(&authorized_keys, public_key).unwrap();

        let mut hosts = SshHosts {
            hosts: Vec::with_capacity(count),
            ssh_dir: ssh_dir.clone(),
            config_file: ssh_dir.join("ssh_config"),
            identity_file,
        };
        for number in 1..=count {
            // Pushed one by one so that a panic while starting host N still stops 1..N-1.
            let host = start_host(sandbox, number, &authorized_keys, login);
            hosts.hosts.push(host);
        }
        std::fs::write(&hosts.config_file, hosts.client_config()).unwrap();
        hosts
    }

    /// How many hosts there are.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// The shared ssh client config (`ssh -F` this): `Host zdd-hostN` entries (HostName
    /// 127.0.0.1, Port, User root, IdentityFile) followed by `Host *` defaults that also apply
    /// when zdd connects to `127.0.0.1` with `-p`/`-l`/`-i`: IdentitiesOnly, no known_hosts
    /// (`UserKnownHostsFile /dev/null`, `StrictHostKeyChecking no`), BatchMode, ConnectTimeout
    /// 5, LogLevel ERROR.
    pub fn config_file(&self) -> &Path {
        &self.config_file
    }

    /// The client's private key (every host accepts it for root).
    pub fn identity_file(&self) -> &Path {
        &self.identity_file
    }

    /// The loopback port host `i` listens on.
    pub fn port(&self, i: usize) -> u16 {
        self.host(i).port
    }

    /// The `Host` alias of host `i` in [`config_file`](Self::config_file): `zdd-host{i}`.
    pub fn alias(&self, i: usize) -> String {
        format!("zdd-host{}", self.host(i).number)
    }

    /// The recipe name of host `i`: `web{i}`.
    pub fn name(&self, i: usize) -> String {
        format!("web{}", self.host(i).number)
    }

    /// Host `i`'s deploy path, absolute: `<sandbox>/host{i}/app` (not created). Sandbox
    /// helpers that take a path relative to the sandbox (`releases`, `current`, `log`, `tree`)
    /// accept [`deploy_str`](Self::deploy_str) too, since joining an absolute path replaces.
    pub fn deploy_path(&self, i: usize) -> &Path {
        &self.host(i).deploy_path
    }

    /// [`deploy_path`](Self::deploy_path) as a string.
    pub fn deploy_str(&self, i: usize) -> String {
        self.deploy_path(i).display().to_string()
    }

    /// Host `i`'s deploy path relative to the sandbox: `host{i}/app`.
    pub fn deploy_rel(&self, i: usize) -> String {
        format!("host{}/app", self.host(i).number)
    }

    /// The remote `HOME` of sessions on host `i`: `<sandbox>/host{i}/home` (created, empty).
    pub fn home(&self, i: usize) -> &Path {
        &self.host(i).home
    }

    /// Host `i`'s sshd log (`sshd -E`, LogLevel ERROR).
    pub fn log_file(&self, i: usize) -> PathBuf {
        self.host(i).dir.join("sshd.log")
    }

    /// The pid of host `i`'s sshd (0 once [`stop`](Self::stop)ped).
    pub fn pid(&self, i: usize) -> u32 {
        self.host(i).pid
    }

    /// Stop host `i` now (it becomes unreachable: connections to its port are refused).
    /// Stopping a stopped host does nothing.
    pub fn stop(&mut self, i: usize) {
        let index = self.index(i);
        stop_host(&mut self.hosts[index]);
    }

    /// Start host `i` again after [`stop`](Self::stop), with the same config and port (a host
    /// that comes back after a crash). Panics when sshd does not listen again.
    pub fn restart(&mut self, i: usize) {
        let index = self.index(i);
        let host = &mut self.hosts[index];
        if host.child.is_some() {
            return;
        }
        let config = host.dir.join("sshd_config");
        let log = host.dir.join("sshd.log");
        let pid_file = host.dir.join("sshd.pid");
        let _ = std::fs::remove_file(&pid_file);
        let child = spawn_sshd(&config, &log);
        host.pid = child.id();
        host.child = Some(child);
        if wait_listening(host, &pid_file).is_err() {
            panic!(
                "sshd for host{} did not listen again on port {}: {}",
                host.number,
                host.port,
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }

    /// The recipe line for host `i`, without the final `;` so a test can chain more `.set(..)`:
    /// `host("web{i}").set("hostname", "127.0.0.1").set("port", PORT).set("remote_user",
    /// "root").set("identity_file", "..").set("config_file", "..").set("deploy_path", "..")`.
    pub fn recipe_host(&self, i: usize) -> String {
        format!(
            "host({}).set(\"hostname\", \"127.0.0.1\").set(\"port\", {}).set(\"remote_user\", \"root\").set(\"identity_file\", {}).set(\"config_file\", {}).set(\"deploy_path\", {})",
            rhai_string(&self.name(i)),
            self.port(i),
            rhai_string(&self.identity_file.display().to_string()),
            rhai_string(&self.config_file.display().to_string()),
            rhai_string(&self.deploy_str(i)),
        )
    }

    /// Rhai lines declaring every host for a zdd recipe, `web1`..`webN`, one
    /// [`recipe_host`](Self::recipe_host) per line, each ending with `;` and a newline.
    pub fn recipe_hosts(&self) -> String {
        (1..=self.len())
            .map(|i| format!("{};\n", self.recipe_host(i)))
            .collect()
    }

    /// A recipe line for host `i` that relies on the ssh config alone:
    /// `host("web{i}").set("hostname", "zdd-host{i}").set("config_file", "..").set("deploy_path", "..")`
    /// (port, user and key come from the `Host zdd-host{i}` entry). No final `;`.
    pub fn recipe_host_via_config(&self, i: usize) -> String {
        format!(
            "host({}).set(\"hostname\", {}).set(\"config_file\", {}).set(\"deploy_path\", {})",
            rhai_string(&self.name(i)),
            rhai_string(&self.alias(i)),
            rhai_string(&self.config_file.display().to_string()),
            rhai_string(&self.deploy_str(i)),
        )
    }

    /// `ssh -F CONFIG zdd-host{i}` with stdin from /dev/null; add the remote command (one
    /// argument: the remote shell parses it) or change stdin before running it.
    pub fn ssh_command(&self, i: usize) -> Command {
        let mut command = Command::new("ssh");
        command
            .arg("-F")
            .arg(&self.config_file)
            .arg(self.alias(i))
            .stdin(Stdio::null());
        command
    }

    /// Run `command` (a shell command line, parsed by the remote shell) on host `i` through
    /// the system ssh client and the harness config; returns whatever happened.
    pub fn ssh(&self, i: usize, command: &str) -> Output {
        self.ssh_command(i).arg(command).output().expect("ssh runs")
    }

    /// [`ssh`](Self::ssh), panicking with stderr (and the sshd log) unless the command exits 0;
    /// returns its stdout.
    #[track_caller]
    pub fn ssh_ok(&self, i: usize, command: &str) -> String {
        let output = self.ssh(i, command);
        assert!(
            output.status.success(),
            "ssh {} {command:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}\n--- sshd log\n{}",
            self.alias(i),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.log_file(i)).unwrap_or_default()
        );
        String::from_utf8(output.stdout).expect("UTF-8 stdout")
    }

    fn index(&self, i: usize) -> usize {
        assert!(
            (1..=self.hosts.len()).contains(&i),
            "host numbers are 1..={}, not {i}",
            self.hosts.len()
        );
        i - 1
    }

    fn host(&self, i: usize) -> &Host {
        &self.hosts[self.index(i)]
    }

    fn client_config(&self) -> String {
        let mut text = String::new();
        for host in &self.hosts {
            text.push_str(&format!(
                "Host zdd-host{}\n  HostName 127.0.0.1\n  Port {}\n  User root\n  IdentityFile {}\n\n",
                host.number,
                host.port,
                self.identity_file.display()
            ));
        }
        text.push_str(
            "Host *\n  IdentitiesOnly yes\n  UserKnownHostsFile /dev/null\n  StrictHostKeyChecking no\n  BatchMode yes\n  ConnectTimeout 5\n  LogLevel ERROR\n",
        );
        text
    }
}

impl Drop for SshHosts {
    fn drop(&mut self) {
        for host in &mut self.hosts {
            stop_host(host);
        }
    }
}

/// sshd's privilege separation directory: it refuses to start without it.
fn ensure_privsep_dir() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new("/run/sshd");
    if !dir.is_dir() {
        // Several tests may race here: create_dir_all does not fail when the other one won.
        std::fs::create_dir_all(dir).expect("create /run/sshd");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// `ssh-keygen -t ed25519 -N '' -f PATH` (writes PATH mode 0600 and PATH.pub).
fn keygen(path: &Path, comment: &str) {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("ssh-keygen runs");
    assert!(
        output.status.success(),
        "ssh-keygen {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A port nothing listens on right now (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn port_open(port: u16) -> bool {
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&address, Duration::from_millis(500)).is_ok()
}

/// A string literal for a Rhai script.
pub fn rhai_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How the hosts' sessions differ from the default (root's bash running the command).
#[derive(Debug, Clone, Default)]
pub struct Login {
    /// `PATH` of every session (sshd's default for root when `None`).
    pub path: Option<String>,
    /// sshd's `ForceCommand`: run (by root's bash) instead of the client's command, which is
    /// in `$SSH_ORIGINAL_COMMAND`; e.g. `exec fish -c "$SSH_ORIGINAL_COMMAND"` is a host whose
    /// login shell is fish.
    pub force_command: Option<String>,
    /// More `NAME="value"` pairs for sshd's `SetEnv` (the sessions' environment).
    pub environment: Vec<(String, String)>,
    /// sshd's `KexAlgorithms` instead of curve25519 alone (Ruby's net-ssh, which Capistrano
    /// uses, has no curve25519 without the `x25519` gem: it needs `ecdh-sha2-nistp256`).
    pub kex_algorithms: Option<String>,
}

fn sshd_config(
    dir: &Path,
    home: &Path,
    port: u16,
    authorized_keys: &Path,
    login: &Login,
) -> String {
    let mut environment = format!("HOME=\"{}\"", home.display());
    if let Some(path) = &login.path {
        environment.push_str(&format!(" PATH=\"{path}\""));
    }
    for (name, value) in &login.environment {
        environment.push_str(&format!(" {name}=\"{value}\""));
    }
    let kex = login
        .kex_algorithms
        .as_deref()
        .unwrap_or("curve25519-sha256,curve25519-sha256@libssh.org");
    let force = match &login.force_command {
        Some(command) => format!("ForceCommand {command}\n"),
        None => String::new(),
    };
    format!(
        "\
ListenAddress 127.0.0.1
Port {port}
HostKey {dir}/host_key
PidFile {dir}/sshd.pid
AuthorizedKeysFile {authorized_keys}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LoginGraceTime 10
MaxStartups 100
MaxSessions 100
MaxAuthTries 10
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
AllowAgentForwarding yes
AllowTcpForwarding yes
LogLevel ERROR
# The default post-quantum key exchange (sntrup761x25519) costs 0.1-0.25 s of CPU per
# connection on these machines; curve25519 keeps a new connection cheap for the tests.
KexAlgorithms {kex}
# Bash started by sshd reads $HOME/.bashrc: point HOME at an empty test home so root's slow
# /root/.bashrc is not read (SetEnv is applied after sshd's own HOME).
SetEnv {environment}
# scp of OpenSSH >= 9.0 speaks sftp.
Subsystem sftp internal-sftp
{force}",
        dir = dir.display(),
        authorized_keys = authorized_keys.display(),
    )
}

/// Start host `number`: its host key and config, then sshd on a free port (a new port when
/// another process took the one picked before sshd could bind it).
fn start_host(sandbox: &Sandbox, number: usize, authorized_keys: &Path, login: &Login) -> Host {
    let dir = sandbox.path(&format!("host{number}/sshd"));
    let home = sandbox.path(&format!("host{number}/home"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    keygen(&dir.join("host_key"), &format!("zdd-test-host{number}"));
    let config = dir.join("sshd_config");
    let log = dir.join("sshd.log");
    let pid_file = dir.join("sshd.pid");

    for attempt in 1..=PORT_ATTEMPTS {
        let port = free_port();
        std::fs::write(
            &config,
            sshd_config(&dir, &home, port, authorized_keys, login),
        )
        .unwrap();
        let _ = std::fs::remove_file(&pid_file);
        let _ = std::fs::remove_file(&log);
        let child = spawn_sshd(&config, &log);
        let pid = child.id();
        let mut host = Host {
            number,
            port,
            child: Some(child),
            pid,
            dir: dir.clone(),
            home: home.clone(),
            deploy_path: sandbox.path(&format!("host{number}/app")),
        };
        match wait_listening(&mut host, &pid_file) {
            Ok(()) => return host,
            Err(Exit::Exited(status)) => {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                let port_taken = text.contains("Address already in use")
                    || text.contains("Cannot bind any address");
                if port_taken && attempt < PORT_ATTEMPTS {
                    continue;
                }
                panic!(
                    "sshd for host{number} (port {port}) exited with {status} before listening\n--- {}\n{text}\n--- config\n{}",
                    log.display(),
                    std::fs::read_to_string(&config).unwrap_or_default()
                );
            }
            Err(Exit::Timeout) => {
                stop_host(&mut host);
                panic!(
                    "sshd for host{number} did not listen on 127.0.0.1:{port} within {START_TIMEOUT:?}\n--- {}\n{}",
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
        }
    }
    unreachable!()
}

enum Exit {
    Exited(std::process::ExitStatus),
    Timeout,
}

/// Wait until sshd wrote its pid file (it does so after binding its port) and the port
/// accepts a TCP connection.
fn wait_listening(host: &mut Host, pid_file: &Path) -> Result<(), Exit> {
    let deadline = Instant::now() + START_TIMEOUT;
    let child = host.child.as_mut().unwrap();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            host.child = None;
            host.pid = 0;
            return Err(Exit::Exited(status));
        }
        let pid_written =
            std::fs::read_to_string(pid_file).is_ok_and(|text| text.trim() == host.pid.to_string());
        if pid_written && port_open(host.port) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Exit::Timeout);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Every process below `root` (children first in the list's order of discovery, by /proc).
fn descendants(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The command name is in parentheses and may contain spaces: parse after the last ')'.
        let Some(rest) = stat.rfind(')').map(|at| &stat[at + 1..]) else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![root];
    while let Some(pid) = queue.pop() {
        for &child in children.get(&pid).map(Vec::as_slice).unwrap_or(&[]) {
            out.push(child);
            queue.push(child);
        }
    }
    out
}

/// SIGTERM the connection processes sshd forked, then sshd itself; reap it (SIGKILL after
/// 5 s). The listening socket is closed once this returns.
fn stop_host(host: &mut Host) {
    let Some(mut child) = host.child.take() else {
        return;
    };
    let pid = host.pid;
    host.pid = 0;
    // The per-connection sshd processes (and the sessions under them) outlive the listener;
    // they are ours too. Found and signalled by pid right away.
    let below = descendants(pid);
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    for &other in below.iter().rev() {
        let _ = kill(Pid::from_raw(other as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            Err(_) => break,
        }
    }
}

/// `sshd -D -f CONFIG -E LOG`, in the foreground so its pid is the daemon's.
fn spawn_sshd(config: &std::path::Path, log: &std::path::Path) -> std::process::Child {
    Command::new(SSHD)
        .arg("-D")
        .arg("-f")
        .arg(config)
        .arg("-E")
        .arg(log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"))
}
