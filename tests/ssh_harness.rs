//! Tests of the SSH harness itself (`ssh_support`): real sshd servers on loopback answer the
//! system ssh client with the harness's config, commands round-trip unmangled, the remote
//! session does not read root's `.bashrc`, and everything stops on drop.
//!
//! `measure_ssh_costs` (ignored) prints what ssh costs on this machine:
//! `cargo test --test integration ssh_harness::measure -- --ignored --nocapture`.

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::ssh_support::{port_open, SshHosts};
use crate::support::Sandbox;

#[test]
fn three_hosts_answer_over_ssh() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 3);
    assert_eq!(hosts.len(), 3);
    let mut ports = Vec::new();
    for i in 1..=3 {
        assert_eq!(hosts.ssh_ok(i, "echo ok"), "ok\n");
        assert_eq!(hosts.alias(i), format!("zdd-host{i}"));
        assert!(hosts.deploy_path(i).starts_with(sandbox.root()));
        assert!(
            !hosts.deploy_path(i).exists(),
            "deploy paths are not created"
        );
        ports.push(hosts.port(i));
    }
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 3, "each host has its own port");

    // The session runs as root, with the test HOME (not /root, so /root/.bashrc is not read).
    let report = hosts.ssh_ok(2, "id -un; echo \"$HOME\"");
    assert_eq!(
        report,
        format!("root\n{}\n", hosts.home(2).display()),
        "user and HOME of the remote session"
    );

    // The recipe lines name web1..web3 with their ports and deploy paths.
    let recipe = hosts.recipe_hosts();
    assert_eq!(recipe.lines().count(), 3);
    for i in 1..=3 {
        let line = recipe.lines().nth(i - 1).unwrap();
        assert!(line.starts_with(&format!("host(\"web{i}\")")), "{line}");
        assert!(
            line.contains(&format!(".set(\"port\", {})", hosts.port(i))),
            "{line}"
        );
        assert!(line.contains(&hosts.deploy_str(i)), "{line}");
        assert!(line.ends_with(';'), "{line}");
    }
}

/// The way zdd's transport connects (explicit `-p -l -i` to 127.0.0.1 with `-F`, a
/// ControlMaster that does not persist, one remote `sh` fed on stdin) works with the
/// harness's files: the `Host *` defaults apply to `127.0.0.1` too.
#[test]
fn connects_the_way_zdd_does() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 2);
    for i in 1..=2 {
        let mut child = std::process::Command::new("ssh")
            .args(["-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o"])
            .arg(format!(
                "ControlPath={}",
                sandbox.path(&format!("c{i}")).display()
            ))
            .args(["-o", "ControlPersist=no", "-T", "-F"])
            .arg(hosts.config_file())
            .args(["-p", &hosts.port(i).to_string(), "-i"])
            .arg(hosts.identity_file())
            .args(["-l", "root", "127.0.0.1", "sh"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"echo \"$HOME\"; exit 3\n")
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&output.stdout),
            format!("{}\n", hosts.home(i).display())
        );
        assert_eq!(output.status.code(), Some(3), "{output:?}");
        assert_eq!(String::from_utf8_lossy(&output.stderr), "", "no warnings");
    }
    // The alias-only recipe form names the config entry.
    assert!(hosts
        .recipe_host_via_config(2)
        .contains("set(\"hostname\", \"zdd-host2\")"));
}

#[test]
fn hostile_characters_round_trip() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    assert_eq!(hosts.ssh_ok(1, "printf %s 'a b$(x)'"), "a b$(x)");

    // A corpus quoted once (POSIX single quotes) arrives byte for byte and runs nothing.
    let marker = hosts.home(1).join("executed");
    let corpus = [
        "plain",
        "two words",
        "it's",
        "\"double\"",
        "$(touch MARKER)",
        "`touch MARKER`",
        "; touch MARKER",
        "a\nb",
        "tab\there",
        "back\\slash",
        "* ? [a-z]",
        "~root",
        "héllo wörld ✓",
        "$HOME ${HOME}",
        "-n",
        "",
    ];
    for value in corpus {
        let value = value.replace("MARKER", &marker.display().to_string());
        let quoted = shlex::try_quote(&value).unwrap();
        let output = hosts.ssh_ok(1, &format!("printf %s {quoted}"));
        assert_eq!(output, value, "round trip of {value:?}");
    }
    assert!(!marker.exists(), "a quoted value was executed");
}

#[test]
fn dropping_the_hosts_closes_their_ports() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 3);
    let ports: Vec<u16> = (1..=3).map(|i| hosts.port(i)).collect();
    let pids: Vec<u32> = (1..=3).map(|i| hosts.pid(i)).collect();
    // An open connection (its own sshd process) must not keep anything alive either.
    let mut session = hosts
        .ssh_command(1)
        .arg("echo started; sleep 30")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(session.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "started\n");
    for &port in &ports {
        assert!(port_open(port));
    }
    drop(hosts);
    for &port in &ports {
        assert!(!port_open(port), "port {port} still accepts connections");
    }
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "sshd {pid} still exists (not reaped?)"
        );
    }
    // The client sees its connection end well before `sleep 30` would have.
    let started = Instant::now();
    loop {
        if session.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = session.kill();
            let _ = session.wait();
            panic!("the ssh session survived its server");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stopping_one_host_makes_it_unreachable() {
    let sandbox = Sandbox::new();
    let mut hosts = SshHosts::start(&sandbox, 2);
    let port = hosts.port(1);
    hosts.stop(1);
    assert!(!port_open(port));
    let output = hosts.ssh(1, "true");
    assert_eq!(output.status.code(), Some(255), "ssh's own failure status");
    assert_eq!(hosts.ssh_ok(2, "echo ok"), "ok\n");
    hosts.stop(1);
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

/// What ssh costs on this machine: a new connection per command, a command through a
/// ControlMaster, commands piped into one `sh` session, and round trips on one persistent
/// shell (how zdd's transport works). Prints; asserts nothing about speed.
#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn measure_ssh_costs() {
    const RUNS: usize = 20;
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let quiet = |mut command: std::process::Command| {
        command.stdout(Stdio::null()).stderr(Stdio::null());
        command
    };

    // 1. `ssh host true`, a new connection each time.
    let mut plain = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let status = quiet(hosts.ssh_command(1)).arg("true").status().unwrap();
        plain.push(started.elapsed());
        assert!(status.success());
    }

    // 2. The same through a ControlMaster: the first call starts it (ControlPersist), the
    //    others reuse it.
    let control_path = sandbox.path("cm");
    let master_options = |mut command: std::process::Command| {
        command
            .arg("-o")
            .arg("ControlMaster=auto")
            .arg("-o")
            .arg(format!("ControlPath={}", control_path.display()))
            .arg("-o")
            .arg("ControlPersist=30");
        command
    };
    let mut multiplexed = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let status = quiet(master_options(hosts.ssh_command(1)))
            .arg("true")
            .status()
            .unwrap();
        multiplexed.push(started.elapsed());
        assert!(status.success());
    }
    // Stop the master: `-O check` names its pid, `-O exit` asks it to leave; by pid if not.
    let check = master_options(hosts.ssh_command(1))
        .args(["-O", "check"])
        .output()
        .unwrap();
    let check = String::from_utf8_lossy(&check.stderr).into_owned();
    let master_pid: Option<i32> = check
        .split("pid=")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok());
    let _ = quiet(master_options(hosts.ssh_command(1)))
        .args(["-O", "exit"])
        .status();
    if let Some(pid) = master_pid {
        std::thread::sleep(Duration::from_millis(100));
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }

    // 3. One `ssh host sh` session with 0 and with 100 `true` lines on stdin.
    let piped = |lines: usize| {
        let mut best = Duration::MAX;
        for _ in 0..5 {
            let started = Instant::now();
            let mut child = quiet(hosts.ssh_command(1))
                .arg("sh")
                .stdin(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all("true\n".repeat(lines).as_bytes())
                .unwrap();
            assert!(child.wait().unwrap().success());
            best = best.min(started.elapsed());
        }
        best
    };
    let empty_session = piped(0);
    let hundred_session = piped(100);

    // 4. One persistent `sh`: 100 round trips (send a command, wait for its end marker).
    let mut child = hosts
        .ssh_command(1)
        .arg("sh")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut round_trips = Vec::new();
    let mut line = String::new();
    // The first round trip also waits for the connection: measured apart.
    let started = Instant::now();
    stdin.write_all(b"echo __ready\n").unwrap();
    stdin.flush().unwrap();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "__ready\n");
    let connect = started.elapsed();
    for _ in 0..100 {
        let started = Instant::now();
        stdin.write_all(b"true; echo \"__end $?\"\n").unwrap();
        stdin.flush().unwrap();
        line.clear();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "__end 0\n");
        round_trips.push(started.elapsed());
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());

    let total = |samples: &[Duration]| samples.iter().sum::<Duration>();
    println!(
        "ssh costs on this machine ({} CPUs):",
        nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
            .ok()
            .flatten()
            .unwrap_or(0)
    );
    println!(
        "  {RUNS} x `ssh host true`, new connection each: total {}, median {}",
        ms(total(&plain)),
        ms(median(plain.clone()))
    );
    println!(
        "  {RUNS} x `ssh host true` via ControlMaster (first one starts it): total {}, first {}, median of the rest {}",
        ms(total(&multiplexed)),
        ms(multiplexed[0]),
        ms(median(multiplexed[1..].to_vec()))
    );
    println!(
        "  one `ssh host sh`, empty stdin: {} (best of 5); with 100 `true` lines: {} -> {} per command",
        ms(empty_session),
        ms(hundred_session),
        ms(hundred_session.saturating_sub(empty_session) / 100)
    );
    println!(
        "  one persistent `sh`: first answer (connection) {}, then 100 round trips: total {}, median {}",
        ms(connect),
        ms(total(&round_trips)),
        ms(median(round_trips))
    );
}
