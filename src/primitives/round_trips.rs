//! What each primitive costs in round trips, measured on the counting transport
//! (`transport::counting`: the local file system, with the SSH transport's waits). A primitive
//! that starts waiting where it only needs to tell, or adds a read, fails here.
//!
//! The deploy below is the stdlib's (`stdlib/deploy.rhai`), step by step, with `writable_dirs`
//! set (the stdlib sets none), then what the runner does when every step succeeded
//! (`runner::finish_all`): the release recorded, old releases removed, the lock released, the
//! last wait, the commit read from its answer.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use rhai::Dynamic;

use super::host_state::Current;
use super::{
    cleanup, command, lock, release, release_log, rollback, shared, symlink, update_code, writable,
};
use crate::output::failure::Failure;
use crate::output::reporter::Reporter;
use crate::primitives::host_context::{Deployment, HostContext, Sender};
use crate::transport::counting::Counting;
use crate::transport::{Local, Op, Transport};

/// The release this run makes (every test pins it: names are otherwise times).
const RELEASE: &str = "20260518T103000Z";
/// Good releases already on the host, oldest first; `current` is the last.
const OLD: [&str; 3] = ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"];

type Step = fn(&mut HostContext) -> Result<(), Failure>;

/// The deploy, and what each step costs.
const DEPLOY: [(&str, Step, u64); 14] = [
    // The first change takes the lock, and the lock's request reads the host's state.
    ("deploy:prepare", release::prepare, 1),
    ("deploy:lock", lock::lock, 0),
    ("deploy:release", |ctx| release::create(ctx).map(drop), 0),
    // One host: fetch, resolve, export, REVISION and the log line in one request, sent.
    ("deploy:update_code", update_code::clone, 0),
    // One request for all the entries (three here), checked on the host, sent.
    ("deploy:shared", shared::link, 0),
    // One query for all the entries (two here; none are set by the stdlib: then nothing).
    ("deploy:writable", writable::make_writable, 1),
    ("deploy:symlink", symlink::swap, 0),
    ("deploy:cleanup", |ctx| cleanup::cleanup(ctx).map(drop), 0),
    ("deploy:unlock", lock::unlock, 0),
    ("finish:record", release::finish, 0),
    (
        "finish:remove",
        |ctx| {
            let warnings = cleanup::remove_pending(ctx);
            assert!(warnings.is_empty(), "{warnings:?}");
            Ok(())
        },
        0,
    ),
    ("finish:unlock", lock::release, 0),
    ("finish:wait", |ctx| Ok(ctx.transport.finish()?), 1),
    // Read by the last wait.
    ("finish:commit", |ctx| update_code::settle(ctx).map(drop), 0),
];

/// A deploy path (`app/` in a temporary directory) with the releases of [`OLD`] and a
/// shared `.env`, and a host whose transport counts.
struct Host {
    _temp: tempfile::TempDir,
    root: String,
    counting: Arc<Counting>,
    ctx: HostContext,
}

impl Host {
    fn new() -> Host {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("app").display().to_string();
        seed(Path::new(&root));
        let counting = Arc::new(Counting::new().unwrap());
        let ctx = context(&root, counting.clone());
        Host {
            _temp: temp,
            root,
            counting,
            ctx,
        }
    }

    /// The round trips `step` costs (it must succeed).
    fn cost<T>(&mut self, step: impl FnOnce(&mut HostContext) -> Result<T, Failure>) -> u64 {
        let before = self.counting.round_trips();
        if let Err(failure) = step(&mut self.ctx) {
            panic!("{failure}");
        }
        self.counting.round_trips() - before
    }

    /// Runs `steps` in order, as the runner would (each named as the step sending), until
    /// one fails; the round trips of each.
    fn run(&mut self, steps: &[(&str, Step, u64)]) -> Result<Vec<(String, u64)>, Failure> {
        let mut costs = Vec::new();
        for (name, step, _) in steps {
            self.ctx.step = Some(Sender {
                task: name.to_string(),
                ..Sender::default()
            });
            let before = self.counting.round_trips();
            step(&mut self.ctx)?;
            costs.push((name.to_string(), self.counting.round_trips() - before));
        }
        Ok(costs)
    }

    fn path(&self, relative: &str) -> String {
        format!("{}/{relative}", self.root)
    }

    fn link(&self, relative: &str) -> Option<String> {
        std::fs::read_link(self.path(relative))
            .ok()
            .map(|target| target.display().to_string())
    }

    /// `event release` of each line of the release log.
    fn events(&self) -> Vec<String> {
        let text = std::fs::read_to_string(self.path(release_log::LOG)).unwrap_or_default();
        release_log::parse(&text)
            .entries
            .iter()
            .map(|e| format!("{} {}", e.event, e.release))
            .collect()
    }
}

/// The repository deployed: beside the deploy path, with the same commit id every time.
fn repository(root: &Path) -> String {
    format!("{}.git-source", root.display())
}

/// The id of the commit [`seed`] makes (fixed author, committer and dates).
const COMMIT: &str = "5c741bc6c8c1bcecda04c09cf3d8ab62548ff78e";

fn seed(root: &Path) {
    let write_in = |base: &Path, relative: &str, contents: &str| {
        let path = base.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    };
    let source = repository(root);
    let source = Path::new(&source);
    for (relative, contents) in [
        ("artisan", "<?php\n"),
        ("storage/app/.gitignore", "*\n"),
        ("public/uploads/.gitkeep", ""),
        ("bootstrap/cache/.gitignore", "*\n"),
    ] {
        write_in(source, relative, contents);
    }
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .args(args)
            .current_dir(source)
            .env("GIT_AUTHOR_NAME", "zdd")
            .env("GIT_AUTHOR_EMAIL", "zdd@example.com")
            .env("GIT_COMMITTER_NAME", "zdd")
            .env("GIT_COMMITTER_EMAIL", "zdd@example.com")
            .env("GIT_AUTHOR_DATE", "2026-05-18T10:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-05-18T10:00:00Z")
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "app"]);
    let write = |relative: &str, contents: &str| write_in(root, relative, contents);
    let mut log = String::new();
    for name in OLD {
        write(&format!("releases/{name}/REVISION"), "abc123\n");
        for event in ["created", "swapped", "finished"] {
            log.push_str(&format!(
                "{{\"event\":\"{event}\",\"release\":\"{name}\"}}\n"
            ));
        }
    }
    write(release_log::LOG, &log);
    write("shared/.env", "APP_KEY=base64:x\n");
    std::os::unix::fs::symlink(format!("releases/{}", OLD[2]), root.join("current")).unwrap();
}

fn context(root: &str, transport: Arc<dyn Transport>) -> HostContext {
    let text = |value: &str| Dynamic::from(value.to_string());
    let list = |values: &[&str]| Dynamic::from_array(values.iter().map(|v| text(v)).collect());
    let config = BTreeMap::from([
        ("deploy_path".to_string(), text(root)),
        ("branch".to_string(), text("main")),
        ("repository".to_string(), text(&repository(Path::new(root)))),
        ("keep_releases".to_string(), Dynamic::from_int(1)),
        (
            "shared_dirs".to_string(),
            list(&["storage", "public/uploads"]),
        ),
        ("shared_files".to_string(), list(&[".env"])),
        (
            "writable_dirs".to_string(),
            list(&["bootstrap/cache", "storage"]),
        ),
        ("writable_mode".to_string(), text("chmod")),
        ("writable_chmod_mode".to_string(), text("ug+rwX")),
    ]);
    let deployment = Deployment::new("app.rhai");
    *deployment.release_name.lock().unwrap() = Some(RELEASE.to_string());
    HostContext::new(
        "web1".into(),
        transport,
        config,
        Arc::new(deployment),
        Arc::new(Reporter::silent()),
    )
}

#[test]
fn a_deploy_waits_three_times_and_two_without_writable_dirs() {
    let mut host = Host::new();
    let costs = host.run(&DEPLOY).unwrap();
    let expected: Vec<(String, u64)> = DEPLOY
        .iter()
        .map(|(name, _, cost)| (name.to_string(), *cost))
        .collect();
    assert_eq!(costs, expected);
    assert_eq!(host.counting.round_trips(), 3);
    assert_eq!(host.counting.queued(), 0);
    let commit = std::fs::read_to_string(host.path(&format!("releases/{RELEASE}/REVISION")));
    assert_eq!(commit.unwrap().trim(), COMMIT);
    assert_eq!(
        host.ctx.release.as_ref().and_then(|r| r.commit.as_deref()),
        Some(COMMIT),
        "the commit, read from the checkout's answer"
    );

    // The stdlib's deploy: no `writable_dirs`.
    let mut host = Host::new();
    host.ctx.config.remove("writable_dirs");
    host.run(&DEPLOY).unwrap();
    assert_eq!(host.counting.round_trips(), 2);
    assert_eq!(
        host.link("current").as_deref(),
        Some("releases/20260518T103000Z")
    );
}

#[test]
fn what_is_sent_happens_at_the_next_wait() {
    let mut host = Host::new();
    assert_eq!(host.cost(lock::hold), 1);
    assert_eq!(host.cost(lock::hold), 0, "held already");
    let state = host.ctx.state.clone().unwrap();
    assert_eq!(state.releases, OLD);
    assert_eq!(state.current, Current::Link(format!("releases/{}", OLD[2])));
    assert_eq!(state.log.entries.len(), 9);
    assert!(Path::new(&host.path(lock::LOCK)).exists());
    let ran = host.counting.ran().len();

    assert_eq!(host.cost(release::prepare), 0);
    assert_eq!(host.cost(release::create), 0);
    assert!(!Path::new(&host.path("releases")).join(RELEASE).exists());
    assert_eq!(host.cost(symlink::swap), 0);
    assert_eq!(host.link("current"), Some(format!("releases/{}", OLD[2])));
    let record = |ctx: &mut HostContext| {
        release_log::record(
            ctx,
            release_log::Entry {
                event: "checked_out".into(),
                release: RELEASE.into(),
                ..Default::default()
            },
        )
    };
    assert_eq!(host.cost(record), 0);
    assert_eq!(host.events().len(), 9, "nothing appended yet");
    assert_eq!(host.counting.ran().len(), ran, "sent ops ran before a wait");
    assert!(host.counting.queued() > 0);

    // A command's output is a result: one wait, after everything sent.
    let root = host.root.clone();
    let mut output = String::new();
    let cost = host.cost(|ctx| {
        output = command::run(ctx, &format!("ls {root}/releases | wc -l"))?;
        Ok(())
    });
    assert_eq!((cost, output.trim()), (1, "4"));
    assert_eq!(host.counting.queued(), 0);
    assert_eq!(
        host.link("current").as_deref(),
        Some("releases/20260518T103000Z")
    );
    assert_eq!(
        host.events()[9..],
        [
            "created 20260518T103000Z",
            "swapped 20260518T103000Z",
            "checked_out 20260518T103000Z"
        ]
    );
}

#[test]
fn direct_commands_wait_once_each() {
    let mut host = Host::new();
    let root = host.root.clone();
    assert_eq!(host.cost(|ctx| command::cd(ctx, &root)), 1);
    assert_eq!(host.cost(|ctx| command::test(ctx, "test -L current")), 1);
    assert_eq!(
        host.counting.ran().len(),
        1,
        "`cd` checks a directory, no op"
    );
}

/// Every path under `root` and what it is (mode, link target, contents); the release log's
/// lines without their times.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut found = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap().display().to_string();
            if relative == "repo.git" {
                // git's own files (compressed objects): what was checked out is compared.
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode() & 0o7777;
            let what = if meta.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&path).unwrap().display())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {mode:o}")
            } else {
                let mut text = std::fs::read_to_string(&path).unwrap();
                if relative == release_log::LOG {
                    text = text
                        .lines()
                        .map(|line| {
                            let mut event: serde_json::Value = serde_json::from_str(line).unwrap();
                            let fields = event.as_object_mut().unwrap();
                            // When a run happened: its start (`started`) too.
                            fields.remove("time");
                            fields.remove("started");
                            // The commit's record is `checked_out`; `finished` repeats it only
                            // when it was known before the last wait (not over a pipeline).
                            if fields["event"] == "finished" {
                                fields.remove("commit");
                            }
                            format!("{event}\n")
                        })
                        .collect();
                }
                format!("file {mode:o} {text}")
            };
            found.insert(relative, what);
        }
    }
    found
}

#[test]
fn a_deploy_leaves_what_the_local_transport_leaves() {
    let mut counted = Host::new();
    counted.run(&DEPLOY).unwrap();
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("app");
    seed(&root);
    let mut local = context(&root.display().to_string(), Arc::new(Local::new().unwrap()));
    for (name, step, _) in DEPLOY {
        step(&mut local).unwrap_or_else(|failure| panic!("{name}: {failure}"));
    }
    let after = snapshot(Path::new(&counted.root));
    assert_eq!(after, snapshot(&root));
    // What that is: the new release live with its links, the oldest release gone, no lock.
    assert_eq!(after["current"], "link releases/20260518T103000Z");
    assert_eq!(
        after["releases/20260518T103000Z/storage"],
        "link ../../shared/storage"
    );
    assert_eq!(
        after["releases/20260518T103000Z/public/uploads"],
        "link ../../../shared/public/uploads"
    );
    assert_eq!(
        after["releases/20260518T103000Z/.env"],
        "link ../../shared/.env"
    );
    assert!(after.contains_key("releases/20260518T103000Z/bootstrap/cache"));
    assert!(
        after.contains_key(&format!("releases/{}", OLD[2])),
        "the previous release"
    );
    assert!(!after.contains_key(&format!("releases/{}", OLD[0])));
    assert!(!after.contains_key(lock::LOCK));
    assert_eq!(
        counted.events()[9..],
        [
            "created 20260518T103000Z",
            "checked_out 20260518T103000Z",
            "swapped 20260518T103000Z",
            "finished 20260518T103000Z",
            "removing 20260101T000000Z",
            "removed 20260101T000000Z",
            "removing 20260102T000000Z",
            "removed 20260102T000000Z",
        ]
    );
}

#[test]
fn a_failed_swap_stops_everything_sent_after_it_and_names_its_step() {
    let mut host = Host::new();
    host.counting
        .fail_when(|_, op| matches!(op, Op::ReplaceSymlink { .. }));
    let failure = host.run(&DEPLOY).unwrap_err();
    // Found by the last wait, and reported as the step that sent it.
    assert!(failure.to_string().contains("injected fault"), "{failure}");
    let deferred = host.ctx.transport.take_failure().unwrap();
    assert_eq!(
        host.ctx.sender(deferred.tag).unwrap().task,
        "deploy:symlink"
    );
    assert!(matches!(
        host.counting.ran().last(),
        Some(Op::ReplaceSymlink { .. })
    ));
    // What was sent before it happened; nothing after it did: `current` is where it was,
    // nothing was recorded after the release's creation, no release was removed, the lock
    // is held.
    assert_eq!(
        host.link(&format!("releases/{RELEASE}/storage")).as_deref(),
        Some("../../shared/storage")
    );
    assert_eq!(host.link("current"), Some(format!("releases/{}", OLD[2])));
    assert_eq!(
        host.events()[9..],
        [
            format!("created {RELEASE}"),
            format!("checked_out {RELEASE}")
        ]
    );
    for name in OLD {
        assert!(Path::new(&host.path(&format!("releases/{name}"))).is_dir());
    }
    assert!(Path::new(&host.path(lock::LOCK)).exists());

    // The runner's undo (`runner::finish_all` keeps the lock, `recover` discards): the host
    // runs requests again once the failure was found.
    host.ctx.holds_lock = true;
    // `current` read back (a result), then the release removed: that removal needs no
    // result, yet it waits.
    assert_eq!(host.cost(|ctx| release::discard(ctx, "the swap failed")), 2);
    assert_eq!(host.cost(lock::release), 0);
    assert_eq!(host.cost(|ctx| Ok(ctx.transport.finish()?)), 1);
    assert!(!Path::new(&host.path(&format!("releases/{RELEASE}"))).exists());
    assert_eq!(host.link("current"), Some(format!("releases/{}", OLD[2])));
    assert_eq!(
        host.events()[9..],
        [
            format!("created {RELEASE}"),
            format!("checked_out {RELEASE}"),
            format!("failed {RELEASE}")
        ]
    );
    assert!(!Path::new(&host.path(lock::LOCK)).exists());
}

#[test]
fn a_failed_request_is_found_by_the_next_query() {
    let mut host = Host::new();
    host.counting
        .fail_when(|_, op| matches!(op, Op::CreateDirAll(path) if path.ends_with(RELEASE)));
    let failure = host.run(&DEPLOY).unwrap_err();
    assert!(failure.to_string().contains("injected fault"), "{failure}");
    // `deploy:writable` asked (and its query was skipped); `deploy:release` sent the failure.
    assert_eq!(host.ctx.step.as_ref().unwrap().task, "deploy:writable");
    let deferred = host.ctx.transport.take_failure().unwrap();
    assert_eq!(
        host.ctx.sender(deferred.tag).unwrap().task,
        "deploy:release"
    );
    assert_eq!(host.counting.round_trips(), 2);
    // The release was recorded before its directory was made.
    assert_eq!(host.events()[9..], [format!("created {RELEASE}")]);
    assert!(!Path::new(&host.path(&format!("releases/{RELEASE}"))).exists());
}

/// What holds after any fault: `current` is a link to a directory, and the release log reads
/// without a damaged line.
fn check(host: &Host, fault: &str) {
    let current = Path::new(&host.root).join("current");
    assert!(
        current.is_symlink() && current.is_dir(),
        "{fault}: `current` is not a link to a directory"
    );
    let log = std::fs::read_to_string(host.path(release_log::LOG)).unwrap();
    assert_eq!(release_log::parse(&log).damaged, [0usize; 0], "{fault}");
}

#[test]
fn a_fault_at_any_op_of_a_deploy_is_reported_and_nothing_after_it_runs() {
    let ops = {
        let mut host = Host::new();
        host.run(&DEPLOY).unwrap();
        host.counting.ran()
    };
    assert!(ops.len() > 30, "{} ops", ops.len());
    for (index, op) in ops.iter().enumerate() {
        let fault = format!("a fault at op {index} ({op:?})");
        let mut host = Host::new();
        host.counting.fail_when(move |i, _| i == index);
        let Err(failure) = host.run(&DEPLOY) else {
            panic!("{fault} went unnoticed");
        };
        assert_eq!(
            host.counting.ran().len(),
            index + 1,
            "{fault}: ops ran after it"
        );
        // Its own step's failure, or one sent earlier and kept with its sender's tag.
        let reported = match host.ctx.transport.take_failure() {
            Some(deferred) => {
                assert!(host.ctx.sender(deferred.tag).is_some(), "{fault}");
                deferred.error.to_string()
            }
            None => failure.to_string(),
        };
        assert!(reported.contains("injected fault"), "{fault}: {reported}");
        check(&host, &fault);
    }
}

#[test]
fn a_rollback_waits_twice() {
    let mut host = Host::new();
    // The lock and the host's state; the switch is sent.
    assert_eq!(host.cost(rollback::rollback), 1);
    assert_eq!(host.link("current"), Some(format!("releases/{}", OLD[2])));
    assert_eq!(host.cost(lock::release), 0);
    assert_eq!(host.cost(|ctx| Ok(ctx.transport.finish()?)), 1);
    assert_eq!(host.link("current"), Some(format!("releases/{}", OLD[1])));
    assert_eq!(
        host.events().last().unwrap(),
        &format!("rollback {}", OLD[1])
    );
    assert!(!Path::new(&host.path(lock::LOCK)).exists());
}

#[test]
fn a_rollback_without_the_log_asks_about_each_candidate() {
    let mut host = Host::new();
    std::fs::remove_file(host.path(release_log::LOG)).unwrap();
    std::fs::remove_file(host.path(&format!("releases/{}/REVISION", OLD[1]))).unwrap();
    // The lock and the state, then one `exists` per release tried (newest first): OLD[1]
    // has no REVISION, OLD[0] has.
    assert_eq!(host.cost(rollback::rollback), 3);
    host.ctx.transport.finish().unwrap();
    assert_eq!(host.link("current"), Some(format!("releases/{}", OLD[0])));
}

#[test]
fn switching_back_after_the_swap_waits_twice() {
    let mut host = Host::new();
    host.run(&DEPLOY[..7]).unwrap();
    assert_eq!(DEPLOY[6].0, "deploy:symlink");
    host.ctx.transport.sync().unwrap();
    assert_eq!(
        host.link("current").as_deref(),
        Some("releases/20260518T103000Z")
    );
    // `current` read back (a result), then switched back: that switch needs no result, yet
    // it waits. A swapped release is kept (marked failed).
    assert_eq!(
        host.cost(|ctx| release::discard(ctx, "a later step failed")),
        2
    );
    assert!(host.ctx.switched_back);
    assert_eq!(host.link("current"), Some(format!("releases/{}", OLD[2])));
    host.ctx.transport.finish().unwrap();
    assert!(Path::new(&host.path(&format!("releases/{RELEASE}"))).is_dir());
    assert_eq!(host.events().last().unwrap(), &format!("failed {RELEASE}"));
}

#[test]
fn a_lock_held_elsewhere_costs_one_round_trip_and_unlock_two() {
    let mut host = Host::new();
    let holder = lock::LockInfo {
        user: "alice".into(),
        machine: "elsewhere".into(),
        pid: 1,
        time: "2026-05-18T10:00:00Z".into(),
        reference: "main".into(),
    };
    std::fs::create_dir_all(host.path(".zdd")).unwrap();
    std::fs::write(
        host.path(lock::LOCK),
        serde_json::to_string(&holder).unwrap(),
    )
    .unwrap();
    let refused = lock::hold(&mut host.ctx).unwrap_err();
    assert!(refused.is_locked(), "{refused}");
    assert_eq!(host.counting.round_trips(), 1);
    // `zdd unlock`: the lock read (whose it is decides), then removed: the removal needs no
    // result, yet it waits.
    assert_eq!(host.cost(|ctx| lock::force_unlock(ctx, false)), 2);
    assert!(!Path::new(&host.path(lock::LOCK)).exists());
}
