//! The fault-injection suite (issue 8), as SQLite tests its write paths: a fault injected at every
//! step, then one invariant checker ([`check_invariants`]) over what is left on disk. Scenarios
//! are data: the kill points are tables of (recipe, fault, points), the other faults a table of
//! (name, function) rows. Every scenario reports each broken invariant by name (`INVARIANT
//! current`, `INVARIANT shared`, `INVARIANT lock`, ...), all of them, not only the first.
//!
//! Seeds: random kill points print `ZDD_FAULT_SEED=<n>`; set it to replay the same points.
//! Figures (faults injected, scenarios, states checked, losses) print at the end, for the
//! README's reliability section:
//! `cargo test --test integration faults -- --nocapture 2>&1 | grep 'faults suite'`.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::fault_support::*;
use crate::laravel_support::{fixture_dir, fixture_repo, shared_env, FixtureRepo};
use crate::ssh_support::SshHosts;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::support::{recipe, Repo, Sandbox};

// ---------------------------------------------------------------------------------------------
// Sites
// ---------------------------------------------------------------------------------------------

/// Shared entries and keep_releases of the stdlib site.
const CONFIG: &str = "set(\"shared_dirs\", [\"storage\"]);
set(\"shared_files\", [\".env\"]);
set(\"writable_dirs\", [\"storage\"]);
set(\"keep_releases\", 3);
";

/// The stdlib `deploy` of a small repository into `app`, with shared data, deployed twice (so
/// there is a live release and a rollback target). `extra` is added to the recipe.
fn stdlib_site(extra: &str) -> (Site, Repo) {
    let sandbox = fault_sandbox();
    let repo = sandbox.repo("repo");
    repo.commit(
        &[
            ("index.html", "one\n"),
            ("src/app.txt", "app\n"),
            ("src/lib/deep.txt", "deep\n"),
            ("public/style.css", "body{}\n"),
            ("storage/seed.txt", "seed\n"),
        ],
        "one",
    );
    let site = stdlib_recipe(sandbox, &repo, extra);
    site.run(&["run", "app.rhai", "-q"]).success();
    repo.commit(&[("index.html", "two\n"), ("src/two.txt", "2\n")], "two");
    site.run(&["run", "app.rhai", "-q"]).success();
    (site, repo)
}

/// The stdlib `deploy` of `repo` into `app` of `sandbox` (`extra` added to the recipe), with
/// its shared data in place; nothing deployed yet.
fn stdlib_recipe(sandbox: Sandbox, repo: &Repo, extra: &str) -> Site {
    sandbox.write("app/shared/.env", "APP_KEY=secret\n");
    sandbox.write("app/shared/storage/upload.txt", "kept\n");
    sandbox.write(
        "app.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            &format!("{CONFIG}{extra}"),
        ),
    );
    Site {
        repo: repo.path.clone(),
        recipe: "app.rhai".into(),
        options: Vec::new(),
        deploys: vec!["app".into()],
        shared_entries: vec!["storage".into(), ".env".into()],
        shared_written_by_app: Vec::new(),
        sandbox,
    }
}

/// `recipes/laravel.rhai` deploying the fixture app (v1, then v2) into `app`; php-fpm is not
/// running (fpm_reload=none), no health URL. `wrapper` (Rhai lines after `import "laravel";`)
/// replaces the recipe by one that imports the shipped recipe and adds hooks.
fn laravel_site(
    wrapper: Option<&str>,
    on_tmpfs: Option<&str>,
) -> (Site, FixtureRepo, Option<MountGuard>) {
    let sandbox = fault_sandbox();
    let fixture = fixture_repo(&sandbox, "repo");
    let mount = on_tmpfs.map(|size| MountGuard::tmpfs(&sandbox.path("app"), size));
    shared_env(&sandbox, "app");
    let shipped = format!("{}/recipes/laravel.rhai", env!("CARGO_MANIFEST_DIR"));
    let recipe = match wrapper {
        None => shipped,
        Some(lines) => {
            std::fs::copy(&shipped, sandbox.path("laravel.rhai")).unwrap();
            sandbox.write("app.rhai", &format!("import \"laravel\";\n{lines}"));
            "app.rhai".to_string()
        }
    };
    let site = Site {
        repo: fixture.path().to_path_buf(),
        recipe,
        options: vec![
            format!("repository={}", fixture.str()),
            format!("deploy_path={}", sandbox.str("app")),
            "fpm_reload=none".into(),
        ],
        deploys: vec!["app".into()],
        shared_entries: vec!["storage".into(), ".env".into()],
        // What the application itself writes into shared storage while it is deployed.
        shared_written_by_app: vec![
            "storage/framework/cache".into(),
            "storage/framework/views".into(),
            "storage/logs".into(),
            "storage/database.sqlite".into(),
        ],
        sandbox,
    };
    let first = site.run(&["run", &site.recipe, "-q", "-o", "branch=v1"]);
    first.success();
    site.run(&["run", &site.recipe, "-q"]).success();
    let _ = fixture_dir();
    (site, fixture, mount)
}

// ---------------------------------------------------------------------------------------------
// Kill points: (recipe, fault, points) x every step
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recipe {
    Stdlib,
    Laravel,
}

#[derive(Debug, Clone, Copy)]
enum Points {
    /// After every task event (start and end of each step).
    EveryEvent,
    /// After every `task_finished` (between two steps).
    EveryStepEnd,
    /// `count` points: after a random `task_started`, plus a random 0..`max_ms` ms.
    Random { count: usize, max_ms: u64 },
    /// After the `task_started` of these tasks.
    StartOf(&'static [&'static str]),
}

/// The kill-point table. Adding a row adds its points.
const KILLS: &[(Recipe, Fault, Points)] = &[
    (Recipe::Stdlib, Fault::Kill, Points::EveryEvent),
    (
        Recipe::Stdlib,
        Fault::Kill,
        Points::Random {
            count: 12,
            max_ms: 40,
        },
    ),
    (Recipe::Stdlib, Fault::Term, Points::EveryEvent),
    (Recipe::Stdlib, Fault::Int, Points::EveryEvent),
    (Recipe::Laravel, Fault::Kill, Points::EveryStepEnd),
    (
        Recipe::Laravel,
        Fault::Kill,
        Points::Random {
            count: 3,
            max_ms: 300,
        },
    ),
    (
        Recipe::Laravel,
        Fault::Term,
        Points::StartOf(&["deploy:vendors", "artisan:migrate"]),
    ),
    (
        Recipe::Laravel,
        Fault::Int,
        Points::StartOf(&["artisan:config:cache", "deploy:symlink"]),
    ),
];

/// The task names of a whole deploy of `recipe`, in order (from `--plan`-free reference run
/// events: the tasks a deploy runs).
fn reference_tasks(site: &Site) -> Vec<String> {
    let run = site.run(&["run", &site.recipe, "--json"]);
    run.success();
    run.json_lines()
        .iter()
        .filter(|e| e["event"] == "task_started")
        .map(|e| e["task"].as_str().unwrap().to_string())
        .collect()
}

/// The kill points of every row of [`KILLS`] for `which`.
fn kill_points(which: Recipe, tasks: &[String], random: &mut Random) -> Vec<KillPoint> {
    let mut points = Vec::new();
    for (recipe, fault, rule) in KILLS.iter().filter(|row| row.0 == which) {
        let _ = recipe;
        match *rule {
            Points::EveryEvent => {
                for event in 1..=tasks.len() * 2 {
                    let task = &tasks[(event - 1) / 2];
                    let edge = if event % 2 == 1 { "start" } else { "end" };
                    points.push(KillPoint {
                        fault: *fault,
                        event,
                        delay: Duration::ZERO,
                        label: format!("{fault:?} at the {edge} of {task}"),
                    });
                }
            }
            Points::EveryStepEnd => {
                for (index, task) in tasks.iter().enumerate() {
                    points.push(KillPoint {
                        fault: *fault,
                        event: 2 * index + 2,
                        delay: Duration::ZERO,
                        label: format!("{fault:?} at the end of {task}"),
                    });
                }
            }
            Points::Random { count, max_ms } => {
                for _ in 0..count {
                    let index = random.below(tasks.len() as u64) as usize;
                    let delay = random.below(max_ms + 1);
                    points.push(KillPoint {
                        fault: *fault,
                        event: 2 * index + 1,
                        delay: Duration::from_millis(delay),
                        label: format!("{fault:?} {delay} ms into {}", tasks[index]),
                    });
                }
            }
            Points::StartOf(names) => {
                for name in names {
                    let index = tasks
                        .iter()
                        .position(|t| t == name)
                        .unwrap_or_else(|| panic!("no task {name} in {tasks:?}"));
                    points.push(KillPoint {
                        fault: *fault,
                        event: 2 * index + 1,
                        delay: Duration::ZERO,
                        label: format!("{fault:?} at the start of {name}"),
                    });
                }
            }
        }
    }
    points
}

/// Strike one deploy of `site` at `point`, then check everything. `round` makes the deploy
/// bring a new commit (so "complete" means the files of a commit never deployed before).
fn strike_and_check(site: &Site, point: &KillPoint, new_commit: &dyn Fn()) -> Vec<String> {
    SCENARIOS.fetch_add(1, Ordering::SeqCst);
    let before = site.before();
    new_commit();
    let struck = run_and_strike(site, &["run", &site.recipe], point);
    let context = format!(
        "{} (events seen: {})",
        point.label,
        struck.events.join(", ")
    );
    let mut problems = Vec::new();
    if !struck.hit {
        problems.push(format!(
            "{context}: SETUP the deploy ended (exit {:?}) before the fault could be injected\n{}",
            struck.code, struck.stderr
        ));
        return problems;
    }
    let mut dead = Vec::new();
    match point.fault {
        Fault::Kill => dead.push(struck.pid),
        Fault::Term | Fault::Int => {
            // zdd stops itself: fail hooks, switch back, unlock, exit 1 (0 only when the
            // signal came after its last step had finished).
            let finished_all = struck.completed;
            let ok = struck.code == Some(1) || (finished_all && struck.code == Some(0));
            if !ok {
                problems.push(format!(
                    "{context}: INVARIANT signal: zdd did not stop with exit 1 after {:?} (exit {:?}, signal {:?})\n{}",
                    point.fault, struck.code, struck.signal, struck.stderr
                ));
            }
            for host in 0..site.deploys.len() {
                if site.deploy_path(host).join(".zdd/lock").exists() {
                    problems.push(format!(
                        "{context}: INVARIANT signal: zdd left the lock after {:?}: it must release it itself\n{}",
                        point.fault, struck.stderr
                    ));
                }
            }
            if struck.stderr.contains("panicked") {
                problems.push(format!("{context}: zdd panicked\n{}", struck.stderr));
            }
        }
    }
    problems.extend(check_invariants(site, &before, &dead, &context));
    problems
}

/// Run `points` over `chains` parallel chains of sites made by `make`; all problems.
fn run_chains<F>(points: Vec<KillPoint>, chains: usize, fresh_each: bool, make: F) -> Vec<String>
where
    F: Fn() -> (Site, Box<dyn Fn() + Send>) + Sync,
{
    let problems: Problems = Arc::new(Mutex::new(Vec::new()));
    let points = Arc::new(points);
    std::thread::scope(|scope| {
        for chain in 0..chains {
            let points = Arc::clone(&points);
            let problems = Arc::clone(&problems);
            let make = &make;
            scope.spawn(move || {
                let mut current: Option<(Site, Box<dyn Fn() + Send>)> = None;
                for point in points.iter().skip(chain).step_by(chains) {
                    if fresh_each || current.is_none() {
                        current = Some(make());
                    }
                    let (site, commit) = current.as_ref().unwrap();
                    let found = strike_and_check(site, point, commit.as_ref());
                    problems.lock().unwrap().extend(found);
                }
            });
        }
    });
    let problems = problems.lock().unwrap().clone();
    problems
}

/// A closure that commits a new version to `repo` each time it is called.
fn committer(repo: &Path) -> Box<dyn Fn() + Send> {
    let repo = Repo {
        path: repo.to_path_buf(),
    };
    let counter = std::sync::atomic::AtomicUsize::new(0);
    Box::new(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        repo.commit(
            &[
                ("index.html", format!("round {n}\n").as_str()),
                (&format!("src/round-{n}.txt"), "new\n"),
            ],
            "round",
        );
    })
}

#[test]
fn kill_9_at_every_step_of_the_stdlib_deploy_and_inside_steps() {
    let _figures = Figures::start("kill -9, stdlib");
    let (random, seed) = Random::from_env();
    eprintln!("kill points: ZDD_FAULT_SEED={seed}");
    let mut random = random;
    let (reference, _repo) = stdlib_site("");
    let tasks = reference_tasks(&reference);
    drop(reference);
    let points: Vec<KillPoint> = kill_points(Recipe::Stdlib, &tasks, &mut random)
        .into_iter()
        .filter(|p| p.fault == Fault::Kill)
        .collect();
    assert!(points.len() >= 30, "{} points", points.len());
    let problems = run_chains(points, 3, true, || {
        let (site, repo) = stdlib_site("");
        let commit = committer(&repo.path);
        (site, commit)
    });
    assert_no_problems(&problems);
}

#[test]
fn sigterm_and_sigint_at_every_step_of_the_stdlib_deploy() {
    let _figures = Figures::start("SIGTERM/SIGINT, stdlib");
    let (mut random, _) = Random::from_env();
    let (reference, _repo) = stdlib_site("");
    let tasks = reference_tasks(&reference);
    drop(reference);
    let points: Vec<KillPoint> = kill_points(Recipe::Stdlib, &tasks, &mut random)
        .into_iter()
        .filter(|p| p.fault != Fault::Kill)
        .collect();
    let problems = run_chains(points, 3, true, || {
        let (site, repo) = stdlib_site("");
        let commit = committer(&repo.path);
        (site, commit)
    });
    assert_no_problems(&problems);
}

#[test]
fn kill_9_sigterm_and_sigint_at_every_step_of_the_laravel_recipe() {
    let _figures = Figures::start("Laravel recipe");
    let (random, seed) = Random::from_env();
    eprintln!("Laravel kill points: ZDD_FAULT_SEED={seed}");
    let mut random = random;
    let (reference, _fixture, _) = laravel_site(None, None);
    let tasks = reference_tasks(&reference);
    drop(reference);
    let points = kill_points(Recipe::Laravel, &tasks, &mut random);
    assert!(points.len() >= 27, "{} points", points.len());
    // One site per chain (a Laravel deploy costs seconds): each point starts from what the
    // previous one's checker left, a good deploy rolled back.
    let problems = run_chains(points, 3, false, || {
        let (site, fixture, _) = laravel_site(None, None);
        let path = fixture.path().to_path_buf();
        let counter = std::sync::atomic::AtomicUsize::new(0);
        let commit: Box<dyn Fn() + Send> = Box::new(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            Repo { path: path.clone() }.commit(
                &[
                    ("VERSION", format!("round-{n}\n").as_str()),
                    (&format!("public/round-{n}.txt"), "new\n"),
                ],
                "round",
            );
        });
        (site, commit)
    });
    assert_no_problems(&problems);
}

// ---------------------------------------------------------------------------------------------
// Ten concurrent runs
// ---------------------------------------------------------------------------------------------

/// A probe the deploy runs from inside its locked section: the lock must still be its own
/// (named by its pid), its release whole, and after its swap `current` its release. Anything
/// else is written to `violations`.
const PROBE: &str = r#"#!/bin/sh
mode=$1; pid=$2; release=$3; d=$4; out=$5
lock=$(cat "$d/.zdd/lock" 2>/dev/null)
case "$lock" in
  *"\"pid\":$pid,"*|*"\"pid\":$pid}"*) ;;
  *) echo "deploy pid $pid ($release, $mode): the lock is not its own while it deploys: ${lock:-no lock}" >> "$out" ;;
esac
if [ "$mode" != lock ] && [ ! -f "$d/releases/$release/REVISION" ]; then
  echo "deploy pid $pid: its release $release lost REVISION while it held the lock ($mode)" >> "$out"
fi
if [ "$mode" = live ]; then
  now=$(readlink "$d/current")
  [ "$now" = "releases/$release" ] || echo "deploy pid $pid: current switched to $now under its lock (expected releases/$release)" >> "$out"
fi
exit 0
"#;

#[test]
fn ten_concurrent_runs_change_the_deploy_path_one_at_a_time() {
    let _figures = Figures::start("concurrency");
    let probe_hooks = "set(\"keep_releases\", 50);
after(\"deploy:lock\", || { run(\"{{probe}} lock $PPID none {{deploy_path}} {{violations}}\"); });
before(\"deploy:symlink\", || { run(\"sleep 0.1; {{probe}} release $PPID {{release_name}} {{deploy_path}} {{violations}}\"); });
before(\"deploy:unlock\", || { run(\"sleep 0.1; {{probe}} live $PPID {{release_name}} {{deploy_path}} {{violations}}\"); });
";
    let (site, repo) = stdlib_site("");
    site.sandbox.write("probe.sh", PROBE);
    sh(&format!(
        "chmod +x {}",
        quote(&site.sandbox.path("probe.sh"))
    ));
    let mut hooks = format!(
        "set(\"probe\", \"{}\");\nset(\"violations\", \"{}\");\n",
        site.sandbox.str("probe.sh"),
        site.sandbox.str("violations")
    );
    hooks.push_str(probe_hooks);
    site.sandbox.write(
        "app.rhai",
        &recipe(
            &repo.str(),
            &site.sandbox.str("app"),
            &format!("{CONFIG}{hooks}"),
        ),
    );
    site.run(&["run", "app.rhai", "-q"]).success();

    // (command, arguments) of each of the 10 runs of a round.
    const MIX: [&[&str]; 10] = [
        &["run", "app.rhai", "-q"],
        &["rollback", "app.rhai", "-q"],
        &["run", "app.rhai", "deploy:cleanup", "-q"],
        &["unlock", "app.rhai"],
        &["run", "app.rhai", "-q"],
        &["run", "app.rhai", "-q"],
        &["rollback", "app.rhai", "-q"],
        &["run", "app.rhai", "deploy:cleanup", "-q"],
        &["unlock", "app.rhai"],
        &["run", "app.rhai", "-q"],
    ];
    let mut problems = Vec::new();
    for round in 0..4 {
        SCENARIOS.fetch_add(1, Ordering::SeqCst);
        let before = site.before();
        repo.commit(&[(&format!("round-{round}.txt"), "r\n")], "round");
        let mut children = Vec::new();
        for args in MIX {
            let child = site
                .zdd_with(args, false)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            children.push((args, child));
            // Rotate who goes first from round to round.
            if round % 2 == 1 {
                std::thread::sleep(Duration::from_millis(7));
            }
        }
        FAULTS.fetch_add(MIX.len(), Ordering::SeqCst);
        let pids: Vec<u32> = children.iter().map(|(_, c)| c.id()).collect();
        let mut changed = 0;
        for (args, mut child) in children {
            let status = wait_at_most(&mut child, Duration::from_secs(120));
            let mut stderr = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            let mut stdout = String::new();
            child
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut stdout)
                .unwrap();
            let stderr = site.sandbox.normalize(&stderr);
            let context = format!(
                "round {round}: `zdd {}` (pid {})",
                args.join(" "),
                child.id()
            );
            match status.code() {
                Some(0) => {
                    if args[0] != "unlock" {
                        changed += 1;
                    }
                    if args[0] == "unlock" && stdout.contains("removed the lock held by") {
                        problems.push(format!(
                            "{context}: INVARIANT lock: `zdd unlock` removed the lock of a live run (it must refuse with exit 3 unless --force): {stdout}"
                        ));
                    }
                }
                Some(3) => {
                    let named = pids
                        .iter()
                        .any(|pid| stderr.contains(&format!("(pid {pid},")));
                    let holder = stderr.contains("locked by") || stderr.contains("held by");
                    if !holder || !named {
                        problems.push(format!(
                            "{context}: INVARIANT lock: exit 3 without naming the holder (one of {pids:?})\n{stderr}"
                        ));
                    }
                }
                Some(1) if args[0] == "rollback" && stderr.contains("nothing to roll back to") => {}
                code => problems.push(format!(
                    "{context}: INVARIANT concurrency: exit {code:?} (expected 0, or 3 naming the holder)\n{stderr}"
                )),
            }
        }
        if changed == 0 {
            problems.push(format!("round {round}: SETUP no run got the lock"));
        }
        let violations =
            std::fs::read_to_string(site.sandbox.path("violations")).unwrap_or_default();
        if !violations.is_empty() {
            problems.push(format!(
                "round {round}: INVARIANT one at a time: changes overlapped a deploy's locked section:\n{violations}"
            ));
            let _ = std::fs::remove_file(site.sandbox.path("violations"));
        }
        // Runs that succeeded may have moved the rollback target on: no kept-release check.
        let before = before.unprotected();
        problems.extend(check_invariants(
            &site,
            &before,
            &[],
            &format!("round {round}"),
        ));
    }
    assert_no_problems(&problems);
}

// ---------------------------------------------------------------------------------------------
// sshd of one host killed, 2-host deploy
// ---------------------------------------------------------------------------------------------

/// (moment, which host's sshd, task whose start on that host triggers the kill).
const SSHD_KILLS: &[(&str, usize, &str)] = &[
    ("preparation", 2, "deploy:update_code"),
    ("cutover", 2, "deploy:symlink"),
    ("cutover, first host", 1, "deploy:symlink"),
];

#[test]
fn sshd_of_one_host_killed_during_preparation_and_cutover() {
    let _figures = Figures::start("sshd killed");
    let mut problems = Vec::new();
    for (moment, victim, task) in SSHD_KILLS {
        SCENARIOS.fetch_add(1, Ordering::SeqCst);
        let sandbox = fault_sandbox();
        let mut hosts = SshHosts::start(&sandbox, 2);
        let repo = sandbox.repo("repo");
        repo.commit(
            &[
                ("index.html", "one\n"),
                ("src/a.txt", "a\n"),
                ("storage/seed.txt", "s\n"),
            ],
            "one",
        );
        for i in 1..=2 {
            sandbox.write(&format!("{}/shared/.env", hosts.deploy_rel(i)), "K=v\n");
            sandbox.write(
                &format!("{}/shared/storage/u.txt", hosts.deploy_rel(i)),
                "kept\n",
            );
        }
        sandbox.write(
            "app.rhai",
            &format!(
                "import \"deploy\";\nset(\"repository\", \"{}\");\nset(\"rollout_stagger\", 0);\n{CONFIG}{}",
                repo.str(),
                hosts.recipe_hosts()
            ),
        );
        let site = Site {
            repo: repo.path.clone(),
            recipe: "app.rhai".into(),
            options: Vec::new(),
            deploys: vec![hosts.deploy_rel(1), hosts.deploy_rel(2)],
            shared_entries: vec!["storage".into(), ".env".into()],
            shared_written_by_app: Vec::new(),
            sandbox,
        };
        site.run(&["run", "app.rhai", "-q"]).success();
        repo.commit(&[("index.html", "two\n")], "two");
        site.run(&["run", "app.rhai", "-q"]).success();
        let before = site.before();
        let three = repo.commit(&[("index.html", "three\n"), ("src/b.txt", "b\n")], "three");

        let mut child = site
            .zdd(&["run", "app.rhai", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr_pipe = child.stderr.take().unwrap();
        let stderr_thread = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr_pipe.read_to_string(&mut s);
            s
        });
        let victim_name = format!("web{victim}");
        let mut killed = false;
        let mut killed_at: Option<Instant> = None;
        let reader = std::io::BufReader::new(child.stdout.take().unwrap());
        for line in std::io::BufRead::lines(reader) {
            let Ok(line) = line else { break };
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if !killed
                && event["event"] == "task_started"
                && event["task"] == *task
                && event["host"] == victim_name.as_str()
            {
                hosts.stop(*victim);
                killed = true;
                killed_at = Some(Instant::now());
                FAULTS.fetch_add(1, Ordering::SeqCst);
            }
        }
        let status = wait_at_most(&mut child, Duration::from_secs(120));
        let stderr = site.sandbox.normalize(&stderr_thread.join().unwrap());
        let context = format!("sshd of web{victim} killed during {moment} ({task})");
        eprintln!(
            "{context}: zdd ended {:.1} s after the kill",
            killed_at.map(|t| t.elapsed().as_secs_f64()).unwrap_or(0.0)
        );
        if !killed {
            problems.push(format!(
                "{context}: SETUP the task never started on web{victim}\n{stderr}"
            ));
            continue;
        }
        // A host lost mid-deploy: the deploy fails (1) or finishes with that host left behind
        // (4), naming it; "success" only when the kill came after every host's work was done
        // (requests are sent without waiting: under load, a host can finish its cutover, and
        // zdd read its last answer, before the test sees the event that triggers the kill):
        // then zdd lost nothing it was waiting for, and has no host to name.
        let live_everywhere = (0..2).all(|i| {
            std::fs::read_to_string(site.deploy_path(i).join("current/REVISION"))
                .is_ok_and(|revision| revision.trim() == three)
        });
        let late = status.code() == Some(0) && live_everywhere;
        if late {
            eprintln!("{context}: the kill came after the deploy's work was done");
        }
        if !late && !matches!(status.code(), Some(1) | Some(4)) {
            problems.push(format!(
                "{context}: INVARIANT exit: expected 1 (switched back) or 4 (host left behind), got {:?}\n{stderr}",
                status.code()
            ));
        }
        if !late && !stderr.contains(&victim_name) {
            problems.push(format!(
                "{context}: the failure does not name the host {victim_name}\n{stderr}"
            ));
        }
        // The surviving host must be back where it was or complete, unlocked.
        let other = if *victim == 1 { 1 } else { 0 };
        if site.deploy_path(other).join(".zdd/lock").exists() {
            problems.push(format!(
                "{context}: INVARIANT lock: the reachable host is still locked\n{stderr}"
            ));
        }
        hosts.restart(*victim);
        // The lock zdd could not remove from the lost host names a dead process now.
        problems.extend(check_invariants(&site, &before, &[child.id()], &context));
        drop(hosts);
    }
    assert_no_problems(&problems);
}

// ---------------------------------------------------------------------------------------------
// The fault table: full disk, read-only shared/, undeletable release, damaged log, known bugs
// ---------------------------------------------------------------------------------------------

type Scenario = (&'static str, fn() -> Vec<String>);

const DISK: &[Scenario] = &[
    (
        "full disk while fetching (deploy path on a 3 MB tmpfs, a 4 MB commit)",
        disk_full_fetch,
    ),
    (
        "full disk while checking out (a 5 MB commit fits an 8 MB tmpfs once, not twice)",
        disk_full_checkout,
    ),
    (
        "full disk during composer install (Laravel, a step fills the disk)",
        disk_full_composer,
    ),
    ("shared/ immutable (chattr +i)", shared_immutable),
    (
        "shared/ on a read-only bind mount, a new shared dir to seed",
        shared_read_only,
    ),
    (
        "a release cleanup cannot remove (chattr +i on a file)",
        undeletable_release,
    ),
];

const LOG: &[Scenario] = &[
    ("release log: non-UTF-8 bytes appended", || {
        log_damage(LogDamage::Binary)
    }),
    ("release log: a garbage line in the middle", || {
        log_damage(LogDamage::GarbageLine)
    }),
    (
        "release log: truncated in the middle of its last line",
        || log_damage(LogDamage::Truncated),
    ),
    ("release log: emptied", || log_damage(LogDamage::Emptied)),
    ("release log: missing", || log_damage(LogDamage::Missing)),
];

const KNOWN_BUGS: &[Scenario] = &[
    (
        "rolled back, rolled forward (--to), then a deploy",
        rolled_forward_release_survives,
    ),
    (
        "`zdd run RECIPE deploy:cleanup` during a deploy",
        cleanup_task_during_a_deploy,
    ),
    (
        "`zdd unlock` while a live deploy holds the lock",
        unlock_of_a_live_holder,
    ),
    (
        "current -> a directory outside releases/, failure after the swap",
        current_outside_releases,
    ),
    (
        "a committed `storage -> /outside` symlink with shared_dirs storage",
        committed_symlink_outside,
    ),
    (
        "old releases deleted only under the lock (inotify order)",
        deletions_under_the_lock,
    ),
];

fn run_table(table: &[Scenario]) {
    let mut problems = Vec::new();
    for (name, scenario) in table {
        SCENARIOS.fetch_add(1, Ordering::SeqCst);
        let found = std::panic::catch_unwind(scenario).unwrap_or_else(|panic| {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            vec![format!("SETUP panicked: {message}")]
        });
        eprintln!("{name}: {}", if found.is_empty() { "ok" } else { "FAILED" });
        problems.extend(found.into_iter().map(|p| format!("[{name}] {p}")));
    }
    assert_no_problems(&problems);
}

#[test]
fn full_disk_read_only_shared_and_undeletable_release() {
    let _figures = Figures::start("disk");
    run_table(DISK);
}

#[test]
fn damaged_truncated_emptied_and_missing_release_log() {
    let _figures = Figures::start("release log");
    run_table(LOG);
}

#[test]
fn known_bugs_of_issue_8() {
    let _figures = Figures::start("known bugs");
    run_table(KNOWN_BUGS);
}

/// Random bytes (incompressible, so git stores them whole), as a file of `size` bytes.
fn random_file(path: &Path, size: usize) {
    sh(&format!("head -c {size} /dev/urandom > {}", quote(path)));
}

/// A stdlib site whose deploy path is a tmpfs of `size`.
fn site_on_tmpfs(size: &str) -> (Site, Repo, MountGuard) {
    let sandbox = fault_sandbox();
    let mount = MountGuard::tmpfs(&sandbox.path("app"), size);
    let repo = sandbox.repo("repo");
    repo.commit(
        &[("index.html", "one\n"), ("storage/seed.txt", "s\n")],
        "one",
    );
    let site = stdlib_recipe(sandbox, &repo, "");
    site.run(&["run", "app.rhai", "-q"]).success();
    repo.commit(&[("index.html", "two\n")], "two");
    site.run(&["run", "app.rhai", "-q"]).success();
    (site, repo, mount)
}

/// Deploy a commit too big for the disk; expect exit 1; remove the big file (heal); check.
fn disk_full(size: &str, big: usize) -> Vec<String> {
    let (site, repo, _mount) = site_on_tmpfs(size);
    let before = site.before();
    random_file(&repo.path.join("big.bin"), big);
    repo.commit(&[("index.html", "big\n")], "big");
    FAULTS.fetch_add(1, Ordering::SeqCst);
    let run = site.run(&["run", "app.rhai", "-q"]);
    let mut problems = Vec::new();
    if run.code != Some(1) {
        problems.push(format!(
            "INVARIANT exit: a deploy that ran out of disk must exit 1, got {:?}\n{}",
            run.code, run.stderr
        ));
    }
    if run.stderr.contains("panicked") {
        problems.push(format!("zdd panicked\n{}", run.stderr));
    }
    // Heal: the big commit is taken back (history rewritten, as after a bad push), so the
    // next fetch does not need the big file.
    crate::support::git(&repo.path, &["reset", "-q", "--hard", "HEAD~1"]);
    repo.commit(&[("index.html", "small again\n")], "small");
    problems.extend(check_invariants(&site, &before, &[], "after ENOSPC"));
    problems
}

fn disk_full_fetch() -> Vec<String> {
    disk_full("3m", 4 << 20)
}

fn disk_full_checkout() -> Vec<String> {
    disk_full("8m", 5 << 20)
}

fn disk_full_composer() -> Vec<String> {
    // A step before `composer install` fills the disk; composer then cannot write vendor/.
    let fill = "before(\"deploy:vendors\", || { run(\"if [ -f {{deploy_path}}/../fill ]; then cat /dev/zero > {{release_path}}/filler 2>/dev/null; fi; true\"); });\n";
    let (site, fixture, _mount) = laravel_site(Some(fill), Some("48m"));
    let before = site.before();
    fixture.version("v3", &[]);
    site.sandbox.write("fill", "");
    FAULTS.fetch_add(1, Ordering::SeqCst);
    let run = site.run(&["run", &site.recipe, "-q"]);
    std::fs::remove_file(site.sandbox.path("fill")).unwrap();
    let mut problems = Vec::new();
    if run.code != Some(1) {
        problems.push(format!(
            "INVARIANT exit: composer out of disk must fail the deploy with exit 1, got {:?}\n{}",
            run.code, run.stderr
        ));
    }
    if !run.stderr.contains("deploy:vendors") {
        problems.push(format!(
            "the failure does not name `deploy:vendors`\n{}",
            run.stderr
        ));
    }
    // The filler was in the failed release: discarding it frees the disk.
    let free = sh(&format!(
        "df -k --output=avail {} | tail -1",
        quote(&site.deploy_path(0))
    ));
    if free.trim().parse::<u64>().unwrap_or(0) < 4096 {
        problems.push(format!(
            "INVARIANT discard: the failed release was not removed, the disk stays full ({} KiB free)",
            free.trim()
        ));
        let _ = sh(&format!(
            "find {} -name filler -delete",
            quote(&site.deploy_path(0).join("releases"))
        ));
    }
    problems.extend(check_invariants(
        &site,
        &before,
        &[],
        "after ENOSPC in composer",
    ));
    problems
}

fn shared_immutable() -> Vec<String> {
    let (site, repo) = stdlib_site("");
    let before = site.before();
    repo.commit(&[("index.html", "three\n")], "three");
    let guard = ImmutableGuard::new(&site.deploy_path(0).join("shared"), &site.deploy_path(0));
    FAULTS.fetch_add(1, Ordering::SeqCst);
    let run = site.run(&["run", "app.rhai", "-q"]);
    let mut problems = Vec::new();
    if !matches!(run.code, Some(0) | Some(1)) || run.stderr.contains("panicked") {
        problems.push(format!(
            "INVARIANT exit: expected 0 or 1, got {:?}\n{}",
            run.code, run.stderr
        ));
    }
    drop(guard);
    problems.extend(check_invariants(&site, &before, &[], "shared/ immutable"));
    problems
}

fn shared_read_only() -> Vec<String> {
    let (site, repo) = stdlib_site("add(\"shared_dirs\", [\"uploads\"]);\n");
    let before = site.before();
    repo.commit(
        &[("index.html", "three\n"), ("uploads/a.txt", "a\n")],
        "three",
    );
    let guard = MountGuard::read_only(&site.deploy_path(0).join("shared"));
    FAULTS.fetch_add(1, Ordering::SeqCst);
    let run = site.run(&["run", "app.rhai", "-q"]);
    let mut problems = Vec::new();
    if run.code != Some(1) {
        problems.push(format!(
            "INVARIANT exit: seeding a new shared dir on a read-only shared/ must fail with exit 1, got {:?}\n{}",
            run.code, run.stderr
        ));
    }
    drop(guard);
    // After the fault: the recipe without the new shared dir (the heal is the operator's).
    site.sandbox.write(
        "app.rhai",
        &recipe(&repo.str(), &site.sandbox.str("app"), CONFIG),
    );
    problems.extend(check_invariants(&site, &before, &[], "read-only shared/"));
    problems
}

fn undeletable_release() -> Vec<String> {
    let (site, repo) = stdlib_site("");
    // keep_releases = 3: two more deploys push the oldest out.
    let oldest = site.releases(0)[0].clone();
    let pinned = site
        .deploy_path(0)
        .join(format!("releases/{oldest}/src/lib/deep.txt"));
    let guard = ImmutableGuard::new(&pinned, &site.deploy_path(0));
    let mut problems = Vec::new();
    FAULTS.fetch_add(1, Ordering::SeqCst);
    for round in 0..2 {
        repo.commit(
            &[("index.html", format!("more {round}\n").as_str())],
            "more",
        );
        let run = site.run(&["run", "app.rhai", "-q"]);
        if run.code != Some(0) {
            problems.push(format!(
                "INVARIANT exit: the new release is live and good; a cleanup problem is a warning with exit 0, got {:?}\n{}",
                run.code, run.stderr
            ));
        }
        if round == 1 && !run.stderr.contains(&oldest) {
            problems.push(format!(
                "the warning does not name the release it could not remove ({oldest})\n{}",
                run.stderr
            ));
        }
    }
    // The half-removed release is never a rollback target, by name or by walking back.
    let current = site.current(0);
    let run = site.run(&["rollback", "app.rhai", "-q", "--to", &oldest]);
    if run.code == Some(0) || site.current(0).as_deref() == Some(oldest.as_str()) {
        problems.push(format!(
            "INVARIANT rollback target: `rollback --to {oldest}` switched to a half-removed release (exit {:?})",
            run.code
        ));
        let _ = site.run(&[
            "rollback",
            "app.rhai",
            "-q",
            "--to",
            current.as_deref().unwrap_or(""),
        ]);
    }
    let listed = site.run(&["releases", "app.rhai", "--json"]);
    if listed
        .stdout
        .lines()
        .any(|line| line.contains(&oldest) && line.contains("\"good\""))
    {
        problems.push(format!(
            "INVARIANT rollback target: `zdd releases` still lists the half-removed {oldest} as good\n{}",
            listed.stdout
        ));
    }
    drop(guard);
    // Back to the newest, then the usual checks.
    let newest = site.releases(0).last().cloned().unwrap();
    let _ = site.run(&["rollback", "app.rhai", "-q", "--to", &newest]);
    let before = site.before();
    problems.extend(check_invariants(&site, &before, &[], "undeletable release"));
    problems
}

#[derive(Debug, Clone, Copy)]
enum LogDamage {
    Binary,
    GarbageLine,
    Truncated,
    Emptied,
    Missing,
}

fn log_damage(damage: LogDamage) -> Vec<String> {
    let (site, repo) = stdlib_site("");
    // Four good releases, keep 3 (two, three, four live; "one" removed).
    for n in 3..=4 {
        repo.commit(&[("index.html", format!("v{n}\n").as_str())], "more");
        site.run(&["run", "app.rhai", "-q"]).success();
    }
    let before = site.before();
    let releases_before = site.releases(0);
    let live = site.current(0).unwrap();
    let log = site.deploy_path(0).join(".zdd/releases.jsonl");
    let text = std::fs::read(&log).unwrap();
    let lines = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .count();
    match damage {
        LogDamage::Binary => {
            let mut bytes = text.clone();
            bytes.extend_from_slice(b"\xff\xfe\x00garbage\xc3\x28\n");
            std::fs::write(&log, bytes).unwrap();
        }
        LogDamage::GarbageLine => {
            let mut out = Vec::new();
            for (i, line) in text
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .enumerate()
            {
                if i == lines / 2 {
                    out.extend_from_slice(b"{\"event\": this is not json\n");
                }
                out.extend_from_slice(line);
                out.push(b'\n');
            }
            std::fs::write(&log, out).unwrap();
        }
        LogDamage::Truncated => {
            std::fs::write(&log, &text[..text.len() - 20]).unwrap();
        }
        LogDamage::Emptied => std::fs::write(&log, "").unwrap(),
        LogDamage::Missing => std::fs::remove_file(&log).unwrap(),
    }
    FAULTS.fetch_add(1, Ordering::SeqCst);
    let mut problems = Vec::new();
    let damaged_line = match damage {
        LogDamage::Binary => Some(lines + 1),
        LogDamage::GarbageLine => Some(lines / 2 + 1),
        LogDamage::Truncated => Some(lines),
        _ => None,
    };

    let listed = site.run(&["releases", "app.rhai"]);
    if listed.code != Some(0) {
        problems.push(format!(
            "INVARIANT log: `zdd releases` with a {damage:?} log exited {:?}\n{}",
            listed.code, listed.stderr
        ));
    }
    if let Some(line) = damaged_line {
        if !listed.stderr.contains("releases.jsonl")
            || !listed.stderr.contains(&format!("line {line}"))
        {
            problems.push(format!(
                "the warning of `zdd releases` does not name the file and line {line} of the damage\n{}",
                listed.stderr
            ));
        }
    }

    // A deploy must keep the release that was live before it and the rollback target.
    repo.commit(&[("index.html", "v5\n")], "v5");
    let run = site.run(&["run", "app.rhai", "-q"]);
    if run.code != Some(0) {
        problems.push(format!(
            "INVARIANT deploy: `zdd run` with a {damage:?} log exited {:?}\n{}",
            run.code, run.stderr
        ));
    }
    let after = site.releases(0);
    let target = releases_before.iter().rfind(|r| **r < live).cloned();
    for keep in [Some(live.clone()), target].into_iter().flatten() {
        if !after.contains(&keep) {
            problems.push(format!(
                "INVARIANT kept releases: the deploy after a {damage:?} log deleted {keep} (live before it, or the rollback target); releases now {after:?}"
            ));
        }
    }

    let rollback = site.run(&["rollback", "app.rhai", "-q"]);
    if rollback.code != Some(0) {
        problems.push(format!(
            "INVARIANT rollback: `zdd rollback` with a {damage:?} log exited {:?}\n{}",
            rollback.code, rollback.stderr
        ));
    } else if let Some(problem) = site.current_problem(0) {
        problems.push(format!("INVARIANT rollback: current incomplete: {problem}"));
    }
    // zdd's words for "fell back on what is on disk": it names the log or the disk.
    let says_so = |text: &str| text.contains("releases.jsonl") || text.contains("on disk");
    if matches!(damage, LogDamage::Missing) && !says_so(&rollback.stderr) && !says_so(&run.stderr) {
        problems.push(format!(
            "with the log gone, zdd must say it fell back on what is on disk (naming the log)\n{}{}",
            run.stderr, rollback.stderr
        ));
    }
    // The checker's own before: the state now (the protected releases of the original one
    // may legitimately age out through keep_releases after the extra deploy).
    let _ = before;
    let now = site.before();
    problems.extend(check_invariants(
        &site,
        &now,
        &[],
        &format!("{damage:?} log"),
    ));
    problems
}

fn rolled_forward_release_survives() -> Vec<String> {
    let (site, repo) = stdlib_site("");
    // keep 3: releases one, two, three; then back to two, forward to three.
    repo.commit(&[("index.html", "three\n")], "three");
    site.run(&["run", "app.rhai", "-q"]).success();
    let three = site.current(0).unwrap();
    let mut problems = Vec::new();
    site.run(&["rollback", "app.rhai", "-q"]).success();
    site.run(&["rollback", "app.rhai", "-q", "--to", &three])
        .success();
    FAULTS.fetch_add(1, Ordering::SeqCst);
    for n in 4..=5 {
        repo.commit(&[("index.html", format!("v{n}\n").as_str())], "more");
        site.run(&["run", "app.rhai", "-q"]).success();
    }
    if !site.releases(0).contains(&three) {
        problems.push(format!(
            "INVARIANT kept releases: {three} (rolled back, then rolled forward to and live) was deleted by the next deploys: {:?}",
            site.releases(0)
        ));
    }
    let before = site.before();
    problems.extend(check_invariants(&site, &before, &[], "rolled forward"));
    problems
}

/// A deploy paused inside its locked section (before its swap) until `go` exists.
fn paused_deploy(site: &Site) -> std::process::Child {
    let _ = std::fs::remove_file(site.sandbox.path("go"));
    let _ = std::fs::remove_file(site.sandbox.path("ready"));
    let mut child = site
        .zdd(&["run", "app.rhai", "-q", "-o", "pause=true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&site.sandbox.path("ready"), &mut child);
    child
}

const PAUSE: &str = "before(\"deploy:symlink\", || { let p = get(\"pause\"); if p == true || p == \"true\" { run(\"touch {{deploy_path}}/../ready; while [ ! -f {{deploy_path}}/../go ]; do sleep 0.02; done\"); } });\nset(\"pause\", \"false\");\n";

fn finish(site: &Site, mut child: std::process::Child) -> (Option<i32>, String) {
    site.sandbox.write("go", "");
    let status = wait_at_most(&mut child, Duration::from_secs(60));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (status.code(), stderr)
}

fn cleanup_task_during_a_deploy() -> Vec<String> {
    let (site, repo) = stdlib_site(PAUSE);
    let before = site.before();
    repo.commit(&[("index.html", "three\n"), ("src/c.txt", "c\n")], "three");
    let child = paused_deploy(&site);
    let pid = child.id();
    let pending: Vec<String> = site
        .releases(0)
        .into_iter()
        .filter(|r| !before.hosts[0].protected.contains(r) && Some(r) != site.current(0).as_ref())
        .collect();
    FAULTS.fetch_add(1, Ordering::SeqCst);
    let cleanup = site.run(&[
        "run",
        "app.rhai",
        "deploy:cleanup",
        "-q",
        "-o",
        "keep_releases=1",
    ]);
    let mut problems = Vec::new();
    if cleanup.code != Some(3) || !cleanup.stderr.contains(&format!("pid {pid}")) {
        problems.push(format!(
            "INVARIANT lock: `deploy:cleanup` as its own task during a deploy must exit 3 naming the holder (pid {pid}), got {:?}\n{}",
            cleanup.code, cleanup.stderr
        ));
    }
    let newest = site.releases(0).last().cloned();
    if let Some(release) = newest.filter(|n| pending.contains(n)) {
        let dir = site.deploy_path(0).join("releases").join(&release);
        if let Some(problem) = site.release_problem(&dir) {
            problems.push(format!(
                "INVARIANT one at a time: the cleanup task damaged the deploy in progress ({release}): {problem}"
            ));
        }
    } else {
        problems.push(format!(
            "INVARIANT one at a time: the cleanup task deleted the release of the deploy in progress ({pending:?}); releases now {:?}",
            site.releases(0)
        ));
    }
    let (code, stderr) = finish(&site, child);
    if code != Some(0) {
        problems.push(format!("the paused deploy then exited {code:?}\n{stderr}"));
    }
    problems.extend(check_invariants(
        &site,
        &before,
        &[],
        "cleanup task during a deploy",
    ));
    problems
}

fn unlock_of_a_live_holder() -> Vec<String> {
    let (site, repo) = stdlib_site(PAUSE);
    let before = site.before();
    repo.commit(&[("index.html", "three\n")], "three");
    let child = paused_deploy(&site);
    let pid = child.id();
    FAULTS.fetch_add(1, Ordering::SeqCst);
    let unlock = site.run(&["unlock", "app.rhai"]);
    let mut problems = Vec::new();
    if unlock.code != Some(3) || !site.deploy_path(0).join(".zdd/lock").exists() {
        problems.push(format!(
            "INVARIANT lock: `zdd unlock` of a live holder on this machine (pid {pid}) must refuse with exit 3 without --force, got {:?}\n{}{}",
            unlock.code, unlock.stdout, unlock.stderr
        ));
    } else if !unlock.stderr.contains(&format!("pid {pid}")) || !unlock.stderr.contains("--force") {
        problems.push(format!(
            "the refusal of `zdd unlock` must name the holder (pid {pid}) and `--force`\n{}",
            unlock.stderr
        ));
    }
    let (code, stderr) = finish(&site, child);
    if code != Some(0) {
        problems.push(format!("the paused deploy then exited {code:?}\n{stderr}"));
    }
    // --force clears a live lock; then the usual checks.
    let child = paused_deploy(&site);
    let forced = site.run(&["unlock", "app.rhai", "--force"]);
    if forced.code != Some(0) || site.deploy_path(0).join(".zdd/lock").exists() {
        problems.push(format!(
            "`zdd unlock --force` must remove a live holder's lock, got {:?}\n{}",
            forced.code, forced.stderr
        ));
    }
    let _ = finish(&site, child);
    let _ = sh(&format!(
        "rm -f {}",
        quote(&site.deploy_path(0).join(".zdd/lock"))
    ));
    // Two deploys succeeded since `before`: keep_releases may have removed its rollback target.
    let before = before.unprotected();
    problems.extend(check_invariants(
        &site,
        &before,
        &[],
        "unlock of a live holder",
    ));
    problems
}

fn current_outside_releases() -> Vec<String> {
    let (site, repo) = stdlib_site("");
    // Adopt: current made by hand, pointing at a directory outside releases/.
    let outside = site.sandbox.path("outside-site");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("index.html"), "by hand\n").unwrap();
    // A whole checkout, as a deploy tool leaves it (the checker's "complete"): since issue 14
    // a rollback after zdd's next deploy returns here, the `current` zdd adopted.
    sh(&format!(
        "git -C {} archive HEAD | tar -x -C {}",
        quote(&repo.path),
        quote(&outside)
    ));
    let revision = crate::support::git(&repo.path, &["rev-parse", "HEAD"]);
    std::fs::write(outside.join("REVISION"), format!("{}\n", revision.trim())).unwrap();
    let link = site.deploy_path(0).join("current");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(&outside, &link).unwrap();
    let before = site.before();
    let outside_tree = site.sandbox.tree("outside-site", &[]);
    site.sandbox.write(
        "failing.rhai",
        &recipe(
            &repo.str(),
            &site.sandbox.str("app"),
            &format!("{CONFIG}after(\"deploy:symlink\", || {{ run(\"exit 7\"); }});\n"),
        ),
    );
    repo.commit(&[("index.html", "three\n")], "three");
    FAULTS.fetch_add(1, Ordering::SeqCst);
    let run = site.run(&["run", "failing.rhai", "-q"]);
    let mut problems = Vec::new();
    if run.code != Some(1) {
        problems.push(format!(
            "expected exit 1, got {:?}\n{}",
            run.code, run.stderr
        ));
    }
    let now = std::fs::read_link(&link).ok();
    if now.as_deref() != Some(outside.as_path()) {
        problems.push(format!(
            "INVARIANT switch back: current must be restored to its exact previous target {} , it is {now:?}\n{}",
            outside.display(),
            run.stderr
        ));
    }
    if site.sandbox.tree("outside-site", &[]) != outside_tree {
        problems.push("INVARIANT outside: the directory current pointed at was changed".into());
    }
    problems.extend(check_invariants(
        &site,
        &before,
        &[],
        "current outside releases/",
    ));
    problems
}

fn committed_symlink_outside() -> Vec<String> {
    let sandbox = fault_sandbox();
    let outside = sandbox.path("outside-data");
    std::fs::create_dir_all(outside.join("sub")).unwrap();
    std::fs::write(outside.join("precious.txt"), "do not touch\n").unwrap();
    std::fs::write(outside.join("sub/more.txt"), "nor this\n").unwrap();
    let outside_tree = sandbox.tree("outside-data", &[]);
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n")], "one");
    std::os::unix::fs::symlink(&outside, repo.path.join("storage")).unwrap();
    repo.commit(&[], "storage is a committed symlink");
    let site = stdlib_recipe(sandbox, &repo, "");
    let before = site.before();
    FAULTS.fetch_add(1, Ordering::SeqCst);
    let mut problems = Vec::new();
    for attempt in 0..2 {
        let run = site.run(&["run", "app.rhai", "-q"]);
        if run.stderr.contains("panicked") || !matches!(run.code, Some(0) | Some(1) | Some(2)) {
            problems.push(format!(
                "deploy {attempt}: exit {:?}\n{}",
                run.code, run.stderr
            ));
        }
        if site.sandbox.tree("outside-data", &[]) != outside_tree
            || !outside.join("precious.txt").exists()
        {
            problems.push(format!(
                "INVARIANT outside: deploy {attempt} changed or deleted files outside the deploy path ({}) through the committed `storage` symlink (exit {:?})\n{}",
                outside.display(),
                run.code,
                run.stderr
            ));
            break;
        }
    }
    // The checker needs a deployable repository: the next commit drops the symlink.
    std::fs::remove_file(repo.path.join("storage")).unwrap();
    repo.commit(
        &[("storage/seed.txt", "s\n")],
        "storage is a directory again",
    );
    let before = if site.current(0).is_some() {
        site.before()
    } else {
        before
    };
    problems.extend(check_invariants(&site, &before, &[], "committed symlink"));
    if site.sandbox.tree("outside-data", &[]) != outside_tree {
        problems.push("INVARIANT outside: files outside the deploy path changed".into());
    }
    problems
}

fn deletions_under_the_lock() -> Vec<String> {
    let (site, repo) = stdlib_site("set(\"keep_releases\", 1);\n");
    // A big old release (slow to delete), then a deploy whose cleanup removes it.
    let oldest = site.releases(0)[0].clone();
    let heavy = site.deploy_path(0).join(format!("releases/{oldest}/heavy"));
    std::fs::create_dir_all(&heavy).unwrap();
    for i in 0..4000 {
        std::fs::write(heavy.join(format!("f{i}")), "x").unwrap();
    }
    // keep_releases 1 keeps the live release and the rollback target: make the oldest neither.
    repo.commit(&[("index.html", "three\n")], "three");
    site.run(&["run", "app.rhai", "-q", "-o", "keep_releases=50"])
        .success();
    let mut problems = Vec::new();
    let doomed = site.deploy_path(0).join(format!("releases/{oldest}"));
    if !doomed.exists() {
        return vec![format!("SETUP {oldest} is already gone")];
    }
    let before = site.before();
    let live_before = site.current(0);
    repo.commit(&[("index.html", "four\n")], "four");
    FAULTS.fetch_add(1, Ordering::SeqCst);
    // One inotify queue watches the lock and `releases/`: its events come in the order they
    // happened, so "the old release left `releases/` while the lock was free" is seen exactly
    // (polling could only guess, and guessed wrong under load).
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK).unwrap();
    let zdd_dir = inotify
        .add_watch(
            &site.deploy_path(0).join(".zdd"),
            AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_DELETE,
        )
        .unwrap();
    let releases_dir = inotify
        .add_watch(
            &site.deploy_path(0).join("releases"),
            AddWatchFlags::IN_MOVED_FROM | AddWatchFlags::IN_DELETE,
        )
        .unwrap();
    let mut child = site
        .zdd(&["run", "app.rhai", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut events = Vec::new();
    while child.try_wait().unwrap().is_none() {
        events.extend(inotify.read_events().unwrap_or_default());
        std::thread::sleep(Duration::from_millis(5));
    }
    events.extend(inotify.read_events().unwrap_or_default());
    let mut held = false;
    let mut violation = None;
    let mut left = false;
    for event in &events {
        let name = event
            .name
            .as_ref()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if event.wd == zdd_dir && name == "lock" {
            held = !event.mask.contains(AddWatchFlags::IN_DELETE);
        } else if event.wd == releases_dir && name == oldest {
            left = true;
            if !held && violation.is_none() {
                violation = Some(format!("{oldest} left releases/ while the lock was free"));
            }
        }
    }
    if !left {
        problems.push(format!("SETUP no event showed {oldest} leaving releases/"));
    }
    let status = wait_at_most(&mut child, Duration::from_secs(60));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    if status.code() != Some(0) {
        problems.push(format!("the deploy exited {:?}\n{stderr}", status.code()));
    }
    if let Some(change) = violation {
        problems.insert(
            0,
            format!("INVARIANT lock covers deletions: old releases were deleted without the lock ({change})"),
        );
    }
    if doomed.exists() {
        problems.push(format!("SETUP cleanup did not remove {oldest}"));
    }
    // The deploy succeeded with keep_releases=1: the release live before it stays (it is the
    // rollback target now); the older rollback target may go.
    if let Some(live) = &live_before {
        if !site.releases(0).contains(live) {
            problems.push(format!(
                "INVARIANT kept releases: {live} (live before the deploy, its rollback target) was removed"
            ));
        }
    }
    let before = before.unprotected();
    problems.extend(check_invariants(
        &site,
        &before,
        &[],
        "deletions under the lock",
    ));
    problems
}

// ---------------------------------------------------------------------------------------------
// 5,000 releases
// ---------------------------------------------------------------------------------------------

#[test]
fn five_thousand_releases_cleanup_time_and_memory() {
    let _figures = Figures::start("5,000 releases");
    SCENARIOS.fetch_add(1, Ordering::SeqCst);
    let (site, repo) = stdlib_site("");
    let deploy = site.deploy_path(0);
    let commit = crate::fault_support::head(&repo.path);
    let files = crate::support::git(&repo.path, &["ls-tree", "-r", "--name-only", &commit]);
    // 5,000 good releases, older than the two real ones: dirs and log lines made directly.
    let mut log = String::new();
    let mut names = Vec::new();
    for i in 0..5000u32 {
        let day = 1 + i / 1440;
        let minute = i % 1440;
        let name = format!(
            "2020{:02}{:02}T{:02}{:02}00Z",
            1 + day / 28,
            1 + day % 28,
            minute / 60,
            minute % 60
        );
        let dir = deploy.join("releases").join(&name);
        for file in files.lines() {
            if file.starts_with("storage/") {
                continue;
            }
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "x").unwrap();
        }
        std::os::unix::fs::symlink("../../shared/storage", dir.join("storage")).unwrap();
        std::fs::write(dir.join("REVISION"), format!("{commit}\n")).unwrap();
        for event in ["created", "checked_out", "swapped", "finished"] {
            log.push_str(&format!(
                "{{\"event\":\"{event}\",\"release\":\"{name}\",\"ref\":\"HEAD\",\"commit\":\"{commit}\",\"user\":\"tester\",\"time\":\"2020-01-01T00:00:00Z\"}}\n"
            ));
        }
        names.push(name);
    }
    let path = deploy.join(".zdd/releases.jsonl");
    let existing = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{log}{existing}")).unwrap();
    let before = site.before();
    let live = site.current(0).unwrap();
    repo.commit(&[("index.html", "after 5000\n")], "after");
    FAULTS.fetch_add(1, Ordering::SeqCst);

    let time = Path::new("/usr/bin/time").exists();
    let started = Instant::now();
    let mut command = if time {
        let mut command = site.zdd(&["run", "app.rhai", "-q", "-o", "keep_releases=5"]);
        // The same command, environment and directory, with /usr/bin/time -v around zdd.
        let mut with_time = std::process::Command::new("/usr/bin/time");
        with_time
            .arg("-v")
            .arg(command.get_program())
            .args(command.get_args())
            .env_clear();
        for (key, value) in command.get_envs() {
            if let Some(value) = value {
                with_time.env(key, value);
            }
        }
        with_time.current_dir(site.sandbox.root());
        command = with_time;
        command
    } else {
        site.zdd(&["run", "app.rhai", "-q", "-o", "keep_releases=5"])
    };
    let output = command.output().unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let peak = stderr
        .lines()
        .find(|l| l.contains("Maximum resident set size"))
        .and_then(|l| l.rsplit(':').next())
        .map(|kb| format!("{} KiB", kb.trim()))
        .unwrap_or_else(|| "not measured (/usr/bin/time missing)".into());
    eprintln!(
        "5,000 releases: deploy with cleanup (keep_releases=5) took {:.2} s wall, zdd peak memory {peak}",
        took.as_secs_f64()
    );
    let mut problems = Vec::new();
    if output.status.code() != Some(0) {
        problems.push(format!(
            "INVARIANT deploy: exit {:?}\n{stderr}",
            output.status.code()
        ));
    }
    let left = site.releases(0);
    let new = site.current(0).unwrap();
    let good_left: Vec<&String> = left
        .iter()
        .filter(|r| {
            site.release_problem(&deploy.join("releases").join(r))
                .is_none()
        })
        .collect();
    if !left.contains(&live) || !left.contains(&new) {
        problems.push(format!(
            "INVARIANT kept releases: the live release {live} or the new one {new} is gone"
        ));
    }
    if good_left.len() < 5 || left.len() > 6 {
        problems.push(format!(
            "keep_releases=5 must leave 5 good releases plus what must be kept (the live one before the deploy): {} left: {:?}",
            left.len(),
            &left[..left.len().min(10)]
        ));
    }
    let _ = names;
    let before = if problems.is_empty() {
        site.before()
    } else {
        before
    };
    problems.extend(check_invariants(&site, &before, &[], "5,000 releases"));
    assert_no_problems(&problems);
}
