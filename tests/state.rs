//! The state promises, each at its root: the lock covers every change, a release's state
//! follows what happened to it, the release log never blocks anything, nothing is done through
//! a symlink of the release, a switch back restores exactly what was there, and a killed run's
//! leftovers are cleaned by the next one.

use std::os::unix::fs::symlink;
use std::process::Stdio;
use std::time::Duration;

use crate::support::{dead_pid, recipe, Repo, Sandbox};

fn setup(extra: &str) -> (Sandbox, Repo) {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    sandbox.write("app.rhai", &recipe(&repo.str(), &sandbox.str("app"), extra));
    (sandbox, repo)
}

/// Commit a new version and deploy it; returns the release now current.
fn deploy(sandbox: &Sandbox, repo: &Repo, version: &str, args: &[&str]) -> String {
    repo.commit(&[("index.html", version)], version);
    let mut all = vec!["run", "app.rhai", "-q"];
    all.extend_from_slice(args);
    sandbox.run(&all).success();
    sandbox.current("app").expect("current is a link")
}

/// `chattr +i` on a path, undone when dropped (even when the test fails).
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: std::path::PathBuf) -> Option<Immutable> {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Immutable(path))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// A deploy started in the background, once it holds the lock (the recipe makes it linger).
fn deploy_holding_the_lock(sandbox: &Sandbox) -> std::process::Child {
    let child = sandbox
        .zdd(&["run", "app.rhai", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !sandbox.path("app/.zdd/lock").exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn a_symlink_committed_in_the_repository_is_never_followed() {
    let (sandbox, repo) = setup("set(\"shared_dirs\", [\"storage/logs\"]);\n");
    sandbox.write("outside/logs/keep.txt", "precious\n");
    deploy(&sandbox, &repo, "v1", &[]);
    let outside = sandbox.tree("outside", &[]);
    // The next commit makes `storage` a link out of the release.
    symlink(sandbox.path("outside"), repo.path.join("storage")).unwrap();
    repo.commit(&[("index.html", "v2")], "storage is a link");
    let before = sandbox.current("app");
    let run = sandbox.run(&["run", "app.rhai", "-q"]);
    run.expect(1);
    assert!(
        run.stderr.contains(
            "`shared_dirs` entry `storage/logs`: `storage` in the release is a symlink (to `[SANDBOX]/outside`), and zdd never acts through one"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.tree("outside", &[]), outside, "outside was changed");
    assert_eq!(sandbox.current("app"), before);

    // `writable_dirs` through the same link: refused, permissions outside untouched.
    sandbox.write(
        "app.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            "set(\"writable_dirs\", [\"storage\"]);\nset(\"writable_chmod_mode\", \"0777\");\n",
        ),
    );
    let mode = |p: &str| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(sandbox.path(p))
            .unwrap()
            .permissions()
            .mode()
    };
    let outside_mode = mode("outside/logs");
    let run = sandbox.run(&["run", "app.rhai", "-q"]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("`writable_dirs` entry `storage`: `storage` in the release is a symlink"),
        "{}",
        run.stderr
    );
    assert_eq!(mode("outside/logs"), outside_mode);

    // Sharing the link itself replaces the link, never what it points at.
    sandbox.write(
        "app.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            "set(\"shared_dirs\", [\"storage\"]);\n",
        ),
    );
    deploy(&sandbox, &repo, "v3", &[]);
    assert_eq!(sandbox.tree("outside", &[]), outside, "outside was changed");
    let shared = std::fs::symlink_metadata(sandbox.path("app/shared/storage")).unwrap();
    assert!(shared.is_dir(), "shared/storage must be a real directory");
    assert_eq!(
        std::fs::read_link(sandbox.path("app/current/storage"))
            .unwrap()
            .display()
            .to_string(),
        "../../shared/storage"
    );
}

#[test]
fn a_release_rolled_forward_to_is_good_again() {
    let (sandbox, repo) = setup("");
    let a = deploy(&sandbox, &repo, "a", &[]);
    let b = deploy(&sandbox, &repo, "b", &[]);
    sandbox.run(&["rollback", "app.rhai", "-q"]).success();
    assert_eq!(sandbox.current("app").as_deref(), Some(a.as_str()));
    sandbox
        .run(&["rollback", "app.rhai", "-q", "--to", &b])
        .success();
    assert_eq!(sandbox.current("app").as_deref(), Some(b.as_str()));
    // b is live and good: two more deploys with keep_releases=2 keep it, and a rollback
    // from the newest finds its way back to it.
    let c = deploy(&sandbox, &repo, "c", &["-o", "keep_releases=2"]);
    assert!(sandbox.releases("app").contains(&b), "b was removed");
    sandbox.run(&["rollback", "app.rhai", "-q"]).success();
    assert_eq!(sandbox.current("app").as_deref(), Some(b.as_str()));
    let releases = sandbox.run(&["releases", "app.rhai"]);
    releases.success();
    let line = |name: &str| {
        releases
            .stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        line(&b).starts_with('*') && line(&b).contains(" good "),
        "{}",
        releases.stdout
    );
    assert!(line(&c).contains(" rolled back "), "{}", releases.stdout);
}

#[test]
fn an_emptied_log_never_costs_the_live_release() {
    let (sandbox, repo) = setup("");
    let first = deploy(&sandbox, &repo, "v1", &[]);
    let second = deploy(&sandbox, &repo, "v2", &[]);
    std::fs::write(sandbox.path("app/.zdd/releases.jsonl"), "").unwrap();
    let third = deploy(&sandbox, &repo, "v3", &["-o", "keep_releases=1"]);
    let left = sandbox.releases("app");
    assert!(
        left.contains(&second),
        "the release live before the deploy was removed: {left:?}"
    );
    assert!(left.contains(&third));
    // keep_releases=1 counts the new release; `first` was neither live nor a rollback target.
    assert!(!left.contains(&first), "{left:?}");
    sandbox.run(&["rollback", "app.rhai", "-q"]).success();
    assert_eq!(sandbox.current("app"), Some(second));
}

#[test]
fn a_damaged_log_is_skipped_line_by_line_and_named() {
    let (sandbox, repo) = setup("");
    let first = deploy(&sandbox, &repo, "v1", &[]);
    deploy(&sandbox, &repo, "v2", &[]);
    let log = sandbox.path("app/.zdd/releases.jsonl");
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(b"\xff\xfe\x00garbage\n{\"event\":\"fin");
    std::fs::write(&log, &bytes).unwrap();
    let lines = bytes.split(|b| *b == b'\n').count();
    let warning = format!(
        "[localhost] warning: `[SANDBOX]/app/.zdd/releases.jsonl`: lines {}, {lines} cannot be read and were skipped",
        lines - 1
    );

    let releases = sandbox.run(&["releases", "app.rhai"]);
    releases.success();
    assert!(releases.stdout.contains(&first), "{}", releases.stdout);
    let rollback = sandbox.run(&["rollback", "app.rhai"]);
    rollback.success();
    assert!(rollback.stderr.contains(&warning), "{}", rollback.stderr);
    assert_eq!(sandbox.current("app").as_deref(), Some(first.as_str()));
    deploy(&sandbox, &repo, "v3", &[]);
}

#[test]
fn with_the_log_gone_rollback_picks_from_the_disk_and_says_so() {
    let (sandbox, repo) = setup("");
    let first = deploy(&sandbox, &repo, "v1", &[]);
    deploy(&sandbox, &repo, "v2", &[]);
    std::fs::remove_file(sandbox.path("app/.zdd/releases.jsonl")).unwrap();
    let run = sandbox.run(&["rollback", "app.rhai"]);
    run.success();
    assert!(
        run.stderr.contains(&format!(
            "the release log has no good release before `current`: rolling back to releases/{first}, the newest release directory before it (picked from what is on disk)"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("`[SANDBOX]/app/.zdd/releases.jsonl` is missing"),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.current("app"), Some(first));
}

#[test]
fn a_release_that_cannot_be_removed_is_a_warning_and_never_a_target() {
    let (sandbox, repo) = setup("");
    let first = deploy(&sandbox, &repo, "v1", &[]);
    let second = deploy(&sandbox, &repo, "v2", &[]);
    let Some(guard) = Immutable::set(sandbox.path(&format!("app/releases/{first}/index.html")))
    else {
        eprintln!("skipped: chattr +i does not work on this file system");
        return;
    };
    repo.commit(&[("index.html", "v3")], "v3");
    let run = sandbox.run(&["run", "app.rhai", "-o", "keep_releases=1"]);
    run.success();
    assert!(
        run.stderr
            .contains(&format!("warning: old release `{first}` was not removed: ")),
        "{}",
        run.stderr
    );
    assert!(!sandbox.releases("app").contains(&first));
    assert!(sandbox.releases("app").contains(&second));
    // Never a rollback target: the rollback goes to `second`, then finds nothing.
    sandbox.run(&["rollback", "app.rhai", "-q"]).success();
    assert_eq!(sandbox.current("app"), Some(second));
    sandbox.run(&["rollback", "app.rhai", "-q"]).expect(1);
    // Once it can be removed, the next successful run finishes the job.
    let mut guard = guard;
    guard.0 = sandbox.path(&format!("app/.zdd/removing/{first}/index.html"));
    drop(guard);
    deploy(&sandbox, &repo, "v4", &[]);
    assert_eq!(
        std::fs::read_dir(sandbox.path("app/.zdd/removing"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn a_switch_back_restores_a_current_made_by_someone_else() {
    let (sandbox, repo) =
        setup("task(\"break\", || run(\"false\"));\nafter(\"deploy:symlink\", \"break\");\n");
    sandbox.write("legacy/index.html", "legacy\n");
    std::fs::create_dir_all(sandbox.path("app")).unwrap();
    symlink(sandbox.path("legacy"), sandbox.path("app/current")).unwrap();
    repo.commit(&[("index.html", "v1")], "v1");
    let run = sandbox.run(&["run", "app.rhai", "-q"]);
    run.expect(1);
    assert_eq!(
        std::fs::read_link(sandbox.path("app/current")).unwrap(),
        sandbox.path("legacy"),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.read("app/current/index.html"), "legacy\n");
}

#[test]
fn cleanup_and_unlock_wait_for_a_deploy_in_progress() {
    let (sandbox, repo) =
        setup("task(\"nap\", || run(\"sleep 3\"));\nbefore(\"deploy:symlink\", \"nap\");\n");
    deploy(&sandbox, &repo, "v1", &["-o", "keep_releases=1"]);
    repo.commit(&[("index.html", "v2")], "v2");
    let mut first = deploy_holding_the_lock(&sandbox);
    let release = loop {
        if let Some(name) = sandbox
            .releases("app")
            .into_iter()
            .find(|n| Some(n) != sandbox.current("app").as_ref())
        {
            break name;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let cleanup = sandbox.run(&["run", "app.rhai", "deploy:cleanup", "-q"]);
    cleanup.expect(3);
    assert!(
        cleanup.stderr.contains("is locked by tester"),
        "{}",
        cleanup.stderr
    );
    let unlock = sandbox.run(&["unlock", "app.rhai"]);
    unlock.expect(3);
    assert!(
        unlock.stderr.contains(
            "error: the lock of `localhost` is held by a run that is still going: tester on "
        ),
        "{}",
        unlock.stderr
    );
    assert!(sandbox.path(&format!("app/releases/{release}")).exists());
    assert!(first.wait().unwrap().success());
    assert_eq!(sandbox.current("app"), Some(release));
}

#[test]
fn unlock_force_removes_the_lock_of_a_live_run() {
    let (sandbox, repo) =
        setup("task(\"nap\", || run(\"sleep 2\"));\nbefore(\"deploy:symlink\", \"nap\");\n");
    repo.commit(&[("index.html", "v1")], "v1");
    let mut first = deploy_holding_the_lock(&sandbox);
    let unlock = sandbox.run(&["unlock", "app.rhai", "--force"]);
    unlock.success();
    assert!(
        unlock.stdout.starts_with(&format!(
            "localhost: removed the lock held by tester on {}",
            crate::support::hostname()
        )),
        "{}",
        unlock.stdout
    );
    assert!(!sandbox.path("app/.zdd/lock").exists());
    // Someone takes the lock meanwhile: the first run goes on, ends well, and leaves that lock.
    let other = format!(
        "{{\"user\":\"other\",\"machine\":\"elsewhere\",\"pid\":{},\"time\":\"now\",\"ref\":\"main\"}}",
        std::process::id()
    );
    std::fs::write(sandbox.path("app/.zdd/lock"), &other).unwrap();
    assert!(first.wait().unwrap().success());
    assert_eq!(sandbox.read("app/.zdd/lock"), other);
}

#[test]
fn old_releases_are_removed_while_the_lock_is_held() {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let (sandbox, repo) = setup("");
    let old = deploy(&sandbox, &repo, "v1", &[]);
    deploy(&sandbox, &repo, "v2", &[]);
    std::fs::create_dir_all(sandbox.path("app/.zdd/removing")).unwrap();
    // One inotify queue for both directories: its events are in the order they happened.
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    let zdd = inotify
        .add_watch(&sandbox.path("app/.zdd"), AddWatchFlags::IN_DELETE)
        .unwrap();
    let removing = inotify
        .add_watch(
            &sandbox.path("app/.zdd/removing"),
            AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_DELETE,
        )
        .unwrap();
    deploy(&sandbox, &repo, "v3", &["-o", "keep_releases=1"]);
    let events: Vec<String> = inotify
        .read_events()
        .unwrap()
        .into_iter()
        .filter_map(|event| {
            let name = event.name?.to_string_lossy().into_owned();
            if event.wd == zdd && name == "lock" {
                Some("lock released".to_string())
            } else if event.wd == removing && name == old {
                Some(if event.mask.contains(AddWatchFlags::IN_MOVED_TO) {
                    "old release moved aside".to_string()
                } else {
                    "old release deleted".to_string()
                })
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        events,
        [
            "old release moved aside",
            "old release deleted",
            "lock released"
        ]
    );
    assert!(!sandbox.releases("app").contains(&old));
}

#[test]
fn a_killed_run_leaves_nothing_the_next_run_does_not_clean() {
    let (sandbox, repo) = setup(
        "task(\"control\", || run(\"stat -c %a /tmp/zdd-$PPID-*\"));\nbefore(\"deploy:symlink\", \"control\");\n",
    );
    deploy(&sandbox, &repo, "v1", &[]);
    let dead = dead_pid();
    let lock_temp = sandbox.path(&format!("app/.zdd/.lock.new.{dead}"));
    let swap_temp = sandbox.path(&format!("app/.current.swap.{dead}"));
    std::fs::write(&lock_temp, "{}").unwrap();
    symlink("releases/x", &swap_temp).unwrap();
    // git's own lock files, left by a fetch that was killed (seen under kill -9 in faults).
    let git_locks = [
        sandbox.path("app/repo.git/refs/zdd/HEAD.lock"),
        sandbox.path("app/repo.git/packed-refs.lock"),
    ];
    for lock in &git_locks {
        std::fs::write(lock, "").unwrap();
    }
    let control = std::path::PathBuf::from(format!("/tmp/zdd-{dead}-leftover"));
    std::fs::create_dir_all(&control).unwrap();
    repo.commit(&[("index.html", "v2")], "v2");
    let run = sandbox.run(&["run", "app.rhai", "-vv"]);
    run.success();
    assert!(!lock_temp.exists(), "the lock's temporary file was left");
    assert!(!swap_temp.exists(), "the swap's temporary link was left");
    assert!(!control.exists(), "a dead run's control directory was left");
    for lock in &git_locks {
        assert!(!lock.exists(), "{} was left", lock.display());
    }
    // The run's own control directory is private.
    assert!(run.stderr.contains("[localhost]   700\n"), "{}", run.stderr);
}
