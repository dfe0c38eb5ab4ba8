//! `--lock-wait` (the `lock_wait` setting): a run that finds the deploy lock held by another
//! run waits for it instead of exiting 3, on a local host and on an SSH host; it gives up with
//! exit 3 naming the holder when the time is up, never waits for a stale lock, and stops at
//! once on Ctrl-C.
//!
//! The first run ("A") holds the lock in a hook after `deploy:release` until the test creates
//! the file `go` next to the deploy path: the test decides when A ends, nothing is timed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::ssh_support::{rhai_string, SshHosts};
use crate::support::{dead_pid, hostname, recipe, scrub, wait_at_most, Sandbox};

/// Where the deploy goes.
#[derive(Clone, Copy, Debug)]
enum Place {
    Local,
    Ssh,
}

const PLACES: [Place; 2] = [Place::Local, Place::Ssh];

/// Holds the lock (after `deploy:release`) until `go` exists next to the deploy path; says it
/// holds it with `holding`. A run that finds `go` there goes straight on.
const HOLD: &str = "after(\"deploy:release\", || { run(\"touch {{deploy_path}}/../holding; while [ ! -e {{deploy_path}}/../go ]; do sleep 0.05; done\"); });\n";

/// A deploy path with one good release, and a recipe whose deploys hold the lock until told.
struct Setup {
    /// Declared first: dropped (its servers stopped) before the sandbox is removed.
    _hosts: Option<SshHosts>,
    sandbox: Sandbox,
    /// The deploy path, relative to the sandbox.
    deploy: String,
    /// The host's name in the recipe.
    host: String,
    /// The release the first deploy made (`current`).
    first: String,
}

impl Setup {
    fn new(place: Place) -> Setup {
        let sandbox = Sandbox::new();
        let repo = sandbox.repo("repo");
        repo.commit(&[("index.html", "one\n")], "one");
        let (hosts, deploy, host) = match place {
            Place::Local => {
                sandbox.write("app.rhai", &recipe(&repo.str(), &sandbox.str("app"), HOLD));
                (None, "app".to_string(), "localhost".to_string())
            }
            Place::Ssh => {
                let hosts = SshHosts::start(&sandbox, 1);
                sandbox.write(
                    "app.rhai",
                    &format!(
                        "import \"deploy\";\nset(\"repository\", {});\n{}{HOLD}",
                        rhai_string(&repo.str()),
                        hosts.recipe_hosts()
                    ),
                );
                let deploy = hosts.deploy_rel(1);
                (Some(hosts), deploy, "web1".to_string())
            }
        };
        let mut setup = Setup {
            _hosts: hosts,
            sandbox,
            deploy,
            host,
            first: String::new(),
        };
        std::fs::create_dir_all(setup.beside("")).unwrap();
        std::fs::write(setup.beside("go"), "").unwrap();
        setup.sandbox.run(&["run", "app.rhai", "-q"]).success();
        std::fs::remove_file(setup.beside("go")).unwrap();
        std::fs::remove_file(setup.beside("holding")).unwrap();
        setup.first = setup.sandbox.current(&setup.deploy).unwrap();
        setup
    }

    /// A file next to the deploy path (where `HOLD` looks).
    fn beside(&self, name: &str) -> PathBuf {
        self.sandbox.path(&self.deploy).parent().unwrap().join(name)
    }

    fn lock_file(&self) -> PathBuf {
        self.sandbox.path(&format!("{}/.zdd/lock", self.deploy))
    }

    /// Start run A and wait until it holds the lock; returns it, its release and what its
    /// lock file says.
    fn start_holder(&self) -> (Child, String, serde_json::Value) {
        let mut a = self
            .sandbox
            .zdd(&["run", "app.rhai", "-q"])
            .stdout(Stdio::null())
            .stderr(File::create(self.sandbox.path("a.err")).unwrap())
            .spawn()
            .unwrap();
        wait_for(&self.beside("holding"), &mut a, &self.sandbox.path("a.err"));
        let lock: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(self.lock_file()).unwrap())
                .expect("the lock is JSON");
        assert_eq!(lock["pid"], a.id(), "A holds the lock");
        let releases = self.sandbox.releases(&self.deploy);
        assert_eq!(releases.len(), 2, "{releases:?}");
        assert_eq!(releases[0], self.first);
        (a, releases[1].clone(), lock)
    }

    /// Start run B, its stderr in `b.err`.
    fn start_waiter(&self, args: &[&str]) -> Child {
        let mut all = vec!["run", "app.rhai"];
        all.extend_from_slice(args);
        self.sandbox
            .zdd(&all)
            .stdout(Stdio::null())
            .stderr(File::create(self.sandbox.path("b.err")).unwrap())
            .spawn()
            .unwrap()
    }

    /// Let A go on, and check that it ends well.
    fn release_holder(&self, mut a: Child) {
        std::fs::write(self.beside("go"), "").unwrap();
        let status = wait_at_most(&mut a, Duration::from_secs(60));
        assert!(status.success(), "A failed: {}", self.sandbox.read("a.err"));
    }

    /// The holder as zdd describes it, from what the lock file says.
    fn holder(lock: &serde_json::Value) -> String {
        format!(
            "tester on {} (pid {}, since {}, deploying `HEAD`)",
            hostname(),
            lock["pid"],
            lock["time"].as_str().unwrap()
        )
    }

    /// `releases`, `current`, the release log and the lock: what B must leave as it found it.
    fn snapshot(&self) -> (Vec<String>, Option<String>, String, String) {
        (
            self.sandbox.releases(&self.deploy),
            self.sandbox.current(&self.deploy),
            self.sandbox
                .read(&format!("{}/.zdd/releases.jsonl", self.deploy)),
            std::fs::read_to_string(self.lock_file()).unwrap_or_default(),
        )
    }
}

/// Wait until `path` exists, or panic (also when `child` ends first, with its stderr).
#[track_caller]
fn wait_for(path: &Path, child: &mut Child, stderr: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "zdd ended ({status}) before {} appeared: {}",
                path.display(),
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait until the file `stderr` says `text` (B says it waits), or panic.
#[track_caller]
fn wait_for_text(stderr: &Path, text: &str, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let said = std::fs::read_to_string(stderr).unwrap_or_default();
        if said.contains(text) {
            return said;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("zdd ended ({status}) before saying {text:?}: {said}");
        }
        assert!(Instant::now() < deadline, "never said {text:?}: {said}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_run_that_waits_for_the_lock_deploys_once_the_other_run_ends() {
    for place in PLACES {
        let setup = Setup::new(place);
        let (a, a_release, lock) = setup.start_holder();
        let mut b = setup.start_waiter(&["--lock-wait", "60s"]);
        let waiting = format!(
            "[{host}] waiting up to 1m for the lock of `{host}`, held by {}\n",
            Setup::holder(&lock),
            host = setup.host
        );
        wait_for_text(&setup.sandbox.path("b.err"), &waiting, &mut b);
        // B waits while A holds the lock: nothing of B's is there yet.
        assert_eq!(setup.sandbox.releases(&setup.deploy).len(), 2, "{place:?}");
        setup.release_holder(a);

        let status = wait_at_most(&mut b, Duration::from_secs(60));
        let said = setup.sandbox.read("b.err");
        assert!(status.success(), "{place:?}: B failed: {said}");
        assert!(
            scrub(&said).contains(&format!("[{}] lock taken after [DURATION]\n", setup.host)),
            "{place:?}: B did not say it took the lock: {said}"
        );
        assert_eq!(
            said.matches("waiting up to").count(),
            1,
            "said once, not per try: {said}"
        );

        let releases = setup.sandbox.releases(&setup.deploy);
        assert_eq!(releases.len(), 3, "{place:?}: {releases:?}");
        assert_eq!(releases[..2], [setup.first.clone(), a_release.clone()]);
        let b_release = releases[2].clone();
        assert!(b_release > a_release);
        assert_eq!(
            setup.sandbox.current(&setup.deploy),
            Some(b_release.clone())
        );
        assert!(
            !setup.lock_file().exists(),
            "{place:?}: B released the lock"
        );
        let listed = setup.sandbox.run(&["releases", "app.rhai", "--json"]);
        listed.success();
        let statuses: Vec<(String, String)> = listed
            .json_lines()
            .iter()
            .map(|line| {
                (
                    line["release"].as_str().unwrap().to_string(),
                    line["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            statuses,
            [
                (setup.first.clone(), "good".to_string()),
                (a_release, "good".to_string()),
                (b_release, "good".to_string()),
            ],
            "{place:?}"
        );
    }
}

#[test]
fn the_wait_ends_with_exit_3_naming_the_holder() {
    for place in PLACES {
        let setup = Setup::new(place);
        let (a, _, lock) = setup.start_holder();
        let before = setup.snapshot();
        let run = setup.sandbox.run(&["run", "app.rhai", "--lock-wait", "1s"]);
        run.expect(3);
        let holder = Setup::holder(&lock);
        let host = &setup.host;
        assert!(
            run.stderr.starts_with(&format!(
                "[{host}] waiting up to 1s for the lock of `{host}`, held by {holder}\n"
            )),
            "{place:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains(&format!(
                "Caused by: deploy to `{host}` is still locked after waiting 1s: held by {holder}\nnow: on `{host}`, `current` points at releases/{}\n\nhint: wait longer for that deploy (`--lock-wait`, `-o lock_wait=`); if it is gone, clear the lock with `zdd unlock app.rhai`\n",
                setup.first
            )),
            "{place:?}: {}",
            run.stderr
        );
        assert!(!run.stderr.contains("lock taken"), "{}", run.stderr);
        // B changed nothing: no release of its own, `current`, the log and A's lock as they were.
        assert_eq!(setup.snapshot(), before, "{place:?}");
        setup.release_holder(a);
        assert_eq!(setup.sandbox.releases(&setup.deploy).len(), 2);
    }
}

#[test]
fn a_stale_lock_is_never_waited_for() {
    for place in PLACES {
        let setup = Setup::new(place);
        let pid = dead_pid();
        let lock = format!(
            "{{\"user\":\"bob\",\"machine\":\"{}\",\"pid\":{pid},\"time\":\"2026-01-02T03:04:05Z\",\"ref\":\"v1.2.3\"}}",
            hostname()
        );
        std::fs::write(setup.lock_file(), &lock).unwrap();
        let before = setup.snapshot();
        // A run that waited would be killed here and fail the test, instead of hanging it.
        let output = assert_cmd::Command::from_std(setup.sandbox.zdd(&[
            "run",
            "app.rhai",
            "--lock-wait",
            "3600",
        ]))
        .timeout(Duration::from_secs(60))
        .output()
        .expect("zdd ends within 60 s");
        let stderr = setup
            .sandbox
            .normalize(&String::from_utf8_lossy(&output.stderr));
        assert_eq!(output.status.code(), Some(3), "{place:?}: {stderr}");
        let host = &setup.host;
        assert!(
            stderr.contains(&format!(
                "Caused by: deploy to `{host}` is locked by a process that is no longer running: bob on {} (pid {pid}, since 2026-01-02T03:04:05Z, deploying `v1.2.3`) (stale lock)\nnow: on `{host}`, `current` points at releases/{}\n\nhint: clear the stale lock with `zdd unlock app.rhai`\n",
                hostname(),
                setup.first
            )),
            "{place:?}: {stderr}"
        );
        assert!(!stderr.contains("waiting up to"), "{stderr}");
        assert_eq!(setup.snapshot(), before, "{place:?}");
    }
}

#[test]
fn a_lock_wait_that_is_not_a_duration_is_refused_before_anything_runs() {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n")], "one");
    sandbox.write("app.rhai", &recipe(&repo.str(), &sandbox.str("app"), ""));
    for args in [
        &["run", "app.rhai", "-o", "lock_wait=abc"][..],
        &["run", "app.rhai", "--lock-wait", "abc"],
        &["rollback", "app.rhai", "-o", "lock_wait=abc"],
    ] {
        let run = sandbox.run(args);
        run.expect(2);
        assert_eq!(
            run.stderr,
            "error: `lock_wait` is `abc`: it must be a number of seconds from 0 to 3600

hint: set it in the recipe with `set(\"lock_wait\", 300)` or on the command line with `-o lock_wait=300`
",
            "{args:?}"
        );
        assert_eq!(run.stdout, "");
        assert!(!sandbox.path("app").exists(), "{args:?}: something ran");
    }
}

#[test]
fn ctrl_c_stops_the_wait_and_leaves_the_other_runs_lock() {
    for place in PLACES {
        let setup = Setup::new(place);
        let (a, _, lock) = setup.start_holder();
        let before = setup.snapshot();
        let mut b = setup.start_waiter(&["--lock-wait", "1h"]);
        wait_for_text(&setup.sandbox.path("b.err"), "waiting up to 1h", &mut b);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(b.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        // Well before the hour: the wait stops at once.
        let status = wait_at_most(&mut b, Duration::from_secs(30));
        let said = setup.sandbox.normalize(&setup.sandbox.read("b.err"));
        assert_eq!(status.code(), Some(1), "{place:?}: {said}");
        assert!(
            said.contains("Caused by: interrupted\n"),
            "{place:?}: {said}"
        );
        assert!(!said.contains("lock taken"), "{said}");
        // A's lock, `current`, the log and the releases as they were: B left nothing.
        assert_eq!(setup.snapshot(), before, "{place:?}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&before.3).unwrap(),
            lock
        );
        setup.release_holder(a);
        assert_eq!(setup.sandbox.releases(&setup.deploy).len(), 2);
    }
}

#[test]
fn a_rollback_waits_for_the_lock_too() {
    // `-o lock_wait=` works on every command that takes the lock.
    let setup = Setup::new(Place::Local);
    let (a, a_release, _) = setup.start_holder();
    let mut b = setup
        .sandbox
        .zdd(&["rollback", "app.rhai", "-o", "lock_wait=60"])
        .stdout(Stdio::null())
        .stderr(File::create(setup.sandbox.path("b.err")).unwrap())
        .spawn()
        .unwrap();
    wait_for_text(
        &setup.sandbox.path("b.err"),
        "[localhost] waiting up to 1m for the lock of `localhost`",
        &mut b,
    );
    setup.release_holder(a);
    let status = wait_at_most(&mut b, Duration::from_secs(60));
    let said = setup.sandbox.read("b.err");
    assert!(status.success(), "the rollback failed: {said}");
    assert!(said.contains("[localhost] lock taken after "), "{said}");
    // A's release went live, then the rollback went back from it.
    assert_eq!(setup.sandbox.current("app"), Some(setup.first.clone()));
    let log = setup.sandbox.log("app");
    let last = log.last().unwrap();
    assert_eq!(last["event"], "rollback", "{log:?}");
    assert!(
        log.iter()
            .any(|event| event["release"] == a_release.as_str()),
        "{log:?}"
    );
}
