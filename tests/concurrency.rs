//! Deploys that overlap: the lock, stale locks, `zdd unlock`, and Ctrl-C.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::support::{dead_pid, hostname, recipe, wait_at_most, Repo, Sandbox};

fn setup(extra: &str) -> (Sandbox, Repo) {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n")], "one");
    sandbox.write("app.rhai", &recipe(&repo.str(), &sandbox.str("app"), extra));
    (sandbox, repo)
}

/// Wait until `path` exists (a task writes it when it has started), or panic.
#[track_caller]
fn wait_for(path: &Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("zdd ended ({status}) before {} appeared", path.display());
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` still runs (a zombie waiting for its reaper does not count).
fn running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

#[test]
fn a_second_deploy_while_the_first_holds_the_lock_exits_3_naming_the_holder() {
    let (sandbox, _repo) = setup(
        "before(\"deploy:symlink\", || { run(\"touch {{deploy_path}}/../ready && sleep {{nap}}\"); });\n",
    );
    // A first, good deploy, so the second has a `current` to leave alone.
    sandbox
        .run(&["run", "app.rhai", "-q", "-o", "nap=0"])
        .success();
    std::fs::remove_file(sandbox.path("ready")).unwrap();
    let first_release = sandbox.current("app").unwrap();

    let mut first = sandbox
        .zdd(&["run", "app.rhai", "-q", "-o", "nap=2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&sandbox.path("ready"), &mut first);
    let lock: serde_json::Value =
        serde_json::from_str(&sandbox.read("app/.zdd/lock")).expect("the lock is JSON");
    assert_eq!(lock["user"], "tester");
    assert_eq!(lock["machine"], hostname().as_str());
    assert_eq!(lock["pid"], first.id());
    assert_eq!(lock["ref"], "HEAD");

    let second = sandbox.run(&["run", "app.rhai", "-q", "-o", "nap=0"]);
    second.expect(3);
    assert_eq!(
        second.stderr,
        format!(
            "error: task `deploy:prepare` failed on host `localhost`
 --> stdlib/deploy.rhai:6:27
  |
6 | task(\"deploy:prepare\", || prepare());
  |                           ^
Caused by: deploy to `localhost` is locked by tester on {} (pid {}, since {}, deploying `HEAD`)
now: on `localhost`, `current` points at releases/{first_release}

hint: wait for that deploy to finish; if it is gone, clear the lock with `zdd unlock app.rhai`
",
            hostname(),
            first.id(),
            lock["time"].as_str().unwrap()
        )
    );
    // The loser touched nothing: the winner's lock is still there.
    assert!(sandbox.path("app/.zdd/lock").exists());
    // A rollback waits its turn too.
    let rollback = sandbox.run(&["rollback", "app.rhai", "-q"]);
    rollback.expect(3);
    assert!(
        rollback.stderr.contains(&format!(
            "Caused by: deploy to `localhost` is locked by tester on {} (pid {},",
            hostname(),
            first.id()
        )),
        "{}",
        rollback.stderr
    );
    assert_eq!(
        sandbox.current("app").as_deref(),
        Some(first_release.as_str())
    );

    let status = wait_at_most(&mut first, Duration::from_secs(30));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut first.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "the first deploy failed: {stderr}");
    assert_eq!(stderr, "");
    assert!(!sandbox.path("app/.zdd/lock").exists());
    let releases = sandbox.releases("app");
    assert_eq!(releases.len(), 2);
    assert_eq!(sandbox.current("app").as_ref(), releases.last());
}

#[test]
fn a_stale_lock_is_reported_with_the_command_that_clears_it() {
    let (sandbox, _repo) = setup("");
    sandbox.run(&["run", "app.rhai", "-q"]).success();
    let current = sandbox.current("app").unwrap();
    let pid = dead_pid();
    let lock = format!(
        "{{\"user\":\"bob\",\"machine\":\"{}\",\"pid\":{pid},\"time\":\"2026-01-02T03:04:05Z\",\"ref\":\"v1.2.3\"}}",
        hostname()
    );
    sandbox.write("app/.zdd/lock", &lock);
    let before = sandbox.tree("app", &[".zdd/releases.jsonl"]);

    let run = sandbox.run(&["run", "app.rhai", "-q"]);
    run.expect(3);
    assert_eq!(
        run.stderr,
        format!(
            "error: task `deploy:prepare` failed on host `localhost`
 --> stdlib/deploy.rhai:6:27
  |
6 | task(\"deploy:prepare\", || prepare());
  |                           ^
Caused by: deploy to `localhost` is locked by a process that is no longer running: bob on {} (pid {pid}, since 2026-01-02T03:04:05Z, deploying `v1.2.3`) (stale lock)
now: on `localhost`, `current` points at releases/{current}

hint: clear the stale lock with `zdd unlock app.rhai`
",
            hostname()
        )
    );
    // The stale lock is reported, not silently taken over.
    assert_eq!(sandbox.tree("app", &[".zdd/releases.jsonl"]), before);
    assert_eq!(sandbox.read("app/.zdd/lock"), lock);

    let run = sandbox.run(&["unlock", "app.rhai"]);
    run.success();
    assert_eq!(
        run.stdout,
        format!(
            "localhost: removed the lock held by bob on {} (pid {pid}, since 2026-01-02T03:04:05Z, deploying `v1.2.3`)\n",
            hostname()
        )
    );
    assert_eq!(run.stderr, "");
    assert!(!sandbox.path("app/.zdd/lock").exists());

    let run = sandbox.run(&["unlock", "app.rhai"]);
    run.success();
    assert_eq!(run.stdout, "localhost: not locked\n");

    sandbox.run(&["run", "app.rhai", "-q"]).success();
    assert_ne!(sandbox.current("app").unwrap(), current);
}

#[test]
fn a_lock_from_another_machine_is_never_called_stale() {
    let (sandbox, _repo) = setup("");
    // Another machine's deploy: zdd cannot know whether its pid runs, so it is not stale.
    let pid = dead_pid();
    sandbox.write(
        "app/.zdd/lock",
        &format!("{{\"user\":\"carol\",\"machine\":\"build-server-9\",\"pid\":{pid},\"time\":\"2026-01-02T03:04:05Z\",\"ref\":\"main\"}}"),
    );
    let run = sandbox.run(&["run", "app.rhai", "-q"]);
    run.expect(3);
    assert_eq!(
        run.stderr,
        format!(
            "error: task `deploy:prepare` failed on host `localhost`
 --> stdlib/deploy.rhai:6:27
  |
6 | task(\"deploy:prepare\", || prepare());
  |                           ^
Caused by: deploy to `localhost` is locked by carol on build-server-9 (pid {pid}, since 2026-01-02T03:04:05Z, deploying `main`)
now: on `localhost`, there is no `current` release

hint: wait for that deploy to finish; if it is gone, clear the lock with `zdd unlock app.rhai`
"
        )
    );
    assert!(sandbox.path("app/.zdd/lock").exists());
    assert_eq!(sandbox.releases("app"), Vec::<String>::new());
}

#[test]
fn a_lock_that_does_not_say_who_holds_it() {
    let (sandbox, _repo) = setup("");
    sandbox.write("app/.zdd/lock", "{ not json");
    let run = sandbox.run(&["run", "app.rhai", "-q"]);
    run.expect(3);
    assert_eq!(
        run.stderr,
        "error: task `deploy:prepare` failed on host `localhost`
 --> stdlib/deploy.rhai:6:27
  |
6 | task(\"deploy:prepare\", || prepare());
  |                           ^
Caused by: deploy to `localhost` is locked (`[SANDBOX]/app/.zdd/lock` exists but does not say by whom)
now: on `localhost`, there is no `current` release

hint: if no deploy is running, clear it with `zdd unlock app.rhai`
"
    );
    assert_eq!(sandbox.read("app/.zdd/lock"), "{ not json");
    let run = sandbox.run(&["unlock", "app.rhai"]);
    run.success();
    assert_eq!(
        run.stdout,
        "localhost: removed the lock held by an unknown holder\n"
    );
    sandbox.run(&["run", "app.rhai", "-q"]).success();
}

#[test]
fn ctrl_c_stops_the_command_runs_the_fail_hooks_and_releases_the_lock() {
    let (sandbox, _repo) = setup(
        "before(\"deploy:symlink\", || { run(\"echo $$ > {{deploy_path}}/../sleep.pid; exec sleep {{nap}}\"); });\n",
    );
    sandbox
        .run(&["run", "app.rhai", "-q", "-o", "nap=0"])
        .success();
    std::fs::remove_file(sandbox.path("sleep.pid")).unwrap();
    let current = sandbox.current("app").unwrap();
    let before = sandbox.tree("app", &[".zdd/releases.jsonl", "repo.git"]);

    let mut zdd = sandbox
        .zdd(&["run", "app.rhai", "-q", "-o", "nap=30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid_file = sandbox.path("sleep.pid");
    wait_for(&pid_file, &mut zdd);
    // The shell writes its pid, then becomes `sleep`: wait until the pid is read whole.
    let sleep_pid: i32 = loop {
        if let Ok(pid) = sandbox.read("sleep.pid").trim().parse() {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(sandbox.path("app/.zdd/lock").exists());
    let pending = sandbox.releases("app");
    assert_eq!(pending.len(), 2, "the unfinished release is there");

    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zdd.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_at_most(&mut zdd, Duration::from_secs(20));
    let took = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut zdd.stderr.take().unwrap(), &mut stderr).unwrap();
    if running(sleep_pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(sleep_pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        panic!("the sleep survived Ctrl-C");
    }

    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(
        sandbox.normalize(&stderr),
        "error: task `before deploy:symlink` failed on host `localhost`
 --> app.rhai:5:31
  |
5 | before(\"deploy:symlink\", || { run(\"echo $$ > {{deploy_path}}/../sleep.pid; exec sleep {{nap}}\"); });
  |                               ^
Caused by: interrupted
now: on `localhost`, `current` points at releases/"
            .to_string()
            + &current
            + "

hint: the fail hooks ran and the lock was released
"
    );
    assert!(!sandbox.path("app/.zdd/lock").exists());
    assert_eq!(sandbox.current("app").as_deref(), Some(current.as_str()));
    assert_eq!(
        sandbox.tree("app", &[".zdd/releases.jsonl", "repo.git"]),
        before
    );
    let log = sandbox.log("app");
    assert_eq!(log.last().unwrap()["event"], "failed");
}
