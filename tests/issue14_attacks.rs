//! Attacks on issue 14 (deploy paths other tools made, shared recipes): hostile files of other
//! tools, rollbacks in a row, a zdd killed after it adopted an in-place `current`.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::adoption_support::{self, version, Adopted};
use crate::support::{wait_at_most, Sandbox};

fn write_recipe(sandbox: &Sandbox, adopted: &Adopted, keep: usize, extra: &str) {
    sandbox.write(
        "app.rhai",
        &adoption_support::zdd_recipe(adopted, "localhost();", keep, extra),
    );
}

fn link(path: &Path) -> Option<String> {
    std::fs::read_link(path)
        .ok()
        .map(|t| t.display().to_string())
}

/// Deployer's log says its last release was made later than zdd's first (the server's clock
/// ahead of the deploying machine's, or a time zone written wrong): a rollback right after
/// zdd's first deploy still goes back to the release Deployer had live, and zdd's release is
/// the newest.
#[test]
fn a_deployer_log_time_ahead_of_zdd_clock_does_not_misplace_the_rollback() {
    let sandbox = Sandbox::new();
    let deploy_path = sandbox.path("app");
    let mut adopted = adoption_support::deployer(&sandbox, &deploy_path, 3);
    let log = deploy_path.join(".dep/releases_log");
    let text = std::fs::read_to_string(&log).unwrap();
    // Release 3, as logged by a server whose clock is a year ahead.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let last = lines.last_mut().unwrap();
    let mut entry: serde_json::Value = serde_json::from_str(last).unwrap();
    let next_year = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    entry["created_at"] = serde_json::Value::String(
        next_year
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
    );
    *last = entry.to_string();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    assert_eq!(link(&adopted.current()).as_deref(), Some("releases/3"));

    write_recipe(&sandbox, &adopted, 5, "");
    adopted.source.next();
    sandbox.run(&["run", "app.rhai", "-q"]).expect(0);
    assert_eq!(version(&adopted.current()), "4");

    let rollback = sandbox.run(&["rollback", "app.rhai", "-q"]);
    rollback.expect(0);
    assert_eq!(
        version(&adopted.current()),
        "3",
        "the rollback did not go back to Deployer's live release: {}",
        rollback.stderr
    );
}

/// Two rollbacks in a row after zdd adopted an in-place `current`: the first puts the
/// directory back; the second has nothing older to go to and says so, changing nothing.
#[test]
fn a_second_rollback_after_an_in_place_adoption_changes_nothing() {
    let sandbox = Sandbox::new();
    let deploy_path = sandbox.path("app");
    let mut adopted = adoption_support::in_place(&sandbox, &deploy_path, 2);
    write_recipe(&sandbox, &adopted, 5, "");
    adopted.source.next();
    sandbox.run(&["run", "app.rhai", "-q"]).expect(0);
    assert_eq!(version(&adopted.current()), "3");
    sandbox.run(&["rollback", "app.rhai", "-q"]).expect(0);
    assert!(
        link(&adopted.current()).is_none(),
        "current is a directory again"
    );
    assert_eq!(version(&adopted.current()), "2");

    let before = sandbox.tree("app", &[".zdd/releases.jsonl"]);
    let again = sandbox.run(&["rollback", "app.rhai", "-q"]);
    assert!(!again.stderr.contains("panicked"), "{}", again.stderr);
    assert_ne!(again.code, Some(0), "{}", again.stderr);
    assert!(
        link(&adopted.current()).is_none(),
        "current is still the directory"
    );
    assert_eq!(version(&adopted.current()), "2");
    assert_eq!(sandbox.tree("app", &[".zdd/releases.jsonl"]), before);
    assert!(!sandbox.path("app/.zdd/lock").exists());

    // A deploy after that adopts the directory again, and a rollback puts it back again.
    adopted.source.next();
    sandbox.run(&["run", "app.rhai", "-q"]).expect(0);
    assert_eq!(version(&adopted.current()), "4");
    sandbox.run(&["rollback", "app.rhai", "-q"]).expect(0);
    assert!(link(&adopted.current()).is_none());
    assert_eq!(version(&adopted.current()), "2");
}

/// zdd killed (SIGKILL) after it adopted an in-place `current` (moved into `.zdd/adopted/`,
/// `current` a link to it) and before the swap: the next deploy finishes, and a rollback puts
/// the directory back as `current`.
#[test]
fn a_zdd_killed_after_adopting_an_in_place_directory() {
    let sandbox = Sandbox::new();
    let deploy_path = sandbox.path("app");
    let mut adopted = adoption_support::in_place(&sandbox, &deploy_path, 2);
    write_recipe(
        &sandbox,
        &adopted,
        5,
        "before(\"deploy:symlink\", || { run(\"echo $$ > {{deploy_path}}/../sleep.pid; exec sleep {{nap}}\"); });\n",
    );
    adopted.source.next();
    let mut zdd = sandbox
        .zdd(&["run", "app.rhai", "-q", "-o", "nap=60"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = sandbox.path("sleep.pid");
    let started = Instant::now();
    let sleep_pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no sleep.pid");
        std::thread::sleep(Duration::from_millis(20));
    };
    let kill = |pid: i32| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    kill(zdd.id() as i32);
    kill(sleep_pid);
    wait_at_most(&mut zdd, Duration::from_secs(20));
    // What the kill left: the directory adopted, `current` a link to it.
    let current = link(&adopted.current()).expect("current is a link to the adopted directory");
    assert!(current.starts_with(".zdd/adopted/before-"), "{current}");
    assert_eq!(version(&adopted.current()), "2");

    sandbox.run(&["unlock", "app.rhai"]).expect(0);
    let deploy = sandbox.run(&["run", "app.rhai", "-q", "-o", "nap=0"]);
    deploy.expect(0);
    assert_eq!(version(&adopted.current()), "3");
    let rollback = sandbox.run(&["rollback", "app.rhai", "-q"]);
    rollback.expect(0);
    assert_eq!(version(&adopted.current()), "2", "{}", rollback.stderr);
}

/// Hostile lines in Deployer's `.dep/releases_log` (bytes that are not UTF-8, a megabyte on
/// one line, names with `/` and `..`, a JSON string with a newline): zdd reads them as damaged
/// or as names, deploys, and a rollback goes back to Deployer's live release.
#[test]
fn hostile_deployer_log_lines() {
    let sandbox = Sandbox::new();
    let deploy_path = sandbox.path("app");
    let mut adopted = adoption_support::deployer(&sandbox, &deploy_path, 2);
    let log = deploy_path.join(".dep/releases_log");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"\xff\xfe{\"release_name\":\"\xff\"}\n");
    bytes.extend_from_slice(
        format!("{{\"release_name\":\"{}\"}}\n", "x".repeat(1 << 20)).as_bytes(),
    );
    bytes.extend_from_slice(
        b"{\"created_at\":\"2099-01-01T00:00:00+0000\",\"release_name\":\"../current\"}\n",
    );
    bytes.extend_from_slice(
        b"{\"created_at\":\"2099-01-01T00:00:00+0000\",\"release_name\":\"a/b\\nc\"}\n",
    );
    bytes
        .extend_from_slice(b"{\"created_at\":\"2099-01-01T00:00:00+0000\",\"release_name\":[1]}\n");
    std::fs::write(&log, bytes).unwrap();
    std::fs::write(deploy_path.join(".dep/latest_release"), "../../etc\n").unwrap();
    write_recipe(&sandbox, &adopted, 1, "");

    let listed = sandbox.run(&["releases", "app.rhai"]);
    listed.expect(0);
    adopted.source.next();
    sandbox.run(&["run", "app.rhai", "-q"]).expect(0);
    assert_eq!(version(&adopted.current()), "3");
    assert!(deploy_path.join("releases/2").is_dir());
    sandbox.run(&["rollback", "app.rhai", "-q"]).expect(0);
    assert_eq!(version(&adopted.current()), "2");
}

/// Another tool's file zdd only consults for order cannot be read (a directory where
/// Deployer's log should be, as a careless `mkdir -p` leaves it): the deploy goes on, ordered
/// by the names, and a rollback still lands on Deployer's live release.
#[test]
fn an_unreadable_deployer_log_never_stops_a_deploy() {
    let sandbox = Sandbox::new();
    let mut adopted = adoption_support::deployer(&sandbox, &sandbox.path("app"), 3);
    let log = adopted.deploy_path.join(".dep/releases_log");
    std::fs::remove_file(&log).unwrap();
    std::fs::create_dir_all(log.join("x")).unwrap();
    write_recipe(&sandbox, &adopted, 3, "");
    let live = version(&adopted.current());
    adopted.source.next();
    sandbox.run(&["run", "app.rhai", "-q"]).expect(0);
    sandbox.run(&["rollback", "app.rhai", "-q"]).expect(0);
    assert_eq!(version(&adopted.current()), live);
}

/// A directory someone named `before-...` in `releases/` by hand is no release zdd adopted:
/// cleanup removes it from the disk like any old release (it used to be only logged removed).
#[test]
fn a_hand_made_before_directory_is_removed_like_any_release() {
    let sandbox = Sandbox::new();
    let mut adopted = adoption_support::deployer(&sandbox, &sandbox.path("app"), 2);
    let odd = adopted.deploy_path.join("releases/before-handmade");
    std::fs::create_dir_all(&odd).unwrap();
    std::fs::write(odd.join("VERSION"), "0\n").unwrap();
    write_recipe(&sandbox, &adopted, 1, "");
    for _ in 0..3 {
        adopted.source.next();
        std::thread::sleep(Duration::from_millis(1100));
        sandbox.run(&["run", "app.rhai", "-q"]).expect(0);
    }
    assert!(!odd.exists(), "releases/before-handmade is still there");
}
