//! The stdlib deploy to one host, planned by the run before it (`.zdd/next-run`): sent whole
//! behind the request that takes the lock, one round trip, and only when the host and the
//! recipe are exactly what the plan was made for. Real sshd on loopback (`ssh_support`).

use std::time::Duration;

use crate::remote::{events, hostile, recipe, repo, round_trips, run, Hostile};
use crate::ssh_support::SshHosts;
use crate::support::{git, Repo, Sandbox};

/// Waits until a release made now is named after every release the deploy path knows.
/// Release names have one-second resolution: a deploy whose name would not sort after the
/// last one waits for the host's state (two round trips) and names its release after it.
pub(crate) fn after_the_last_name(sandbox: &Sandbox, hosts: &SshHosts) {
    let rel = hosts.deploy_rel(1);
    let logged = if hosts.deploy_path(1).join(".zdd/releases.jsonl").exists() {
        events(sandbox, hosts, 1).into_iter().map(|e| e.1).collect()
    } else {
        Vec::new()
    };
    let latest = sandbox
        .releases(&rel)
        .into_iter()
        .chain(logged)
        .max()
        .unwrap_or_default();
    wait_for_a_name_after(latest);
}

/// The plan's lines.
fn plan(hosts: &SshHosts) -> Vec<String> {
    std::fs::read_to_string(hosts.deploy_path(1).join(".zdd/next-run"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

fn write_plan(hosts: &SshHosts, lines: &[String]) {
    std::fs::write(
        hosts.deploy_path(1).join(".zdd/next-run"),
        lines.join("\n") + "\n",
    )
    .unwrap();
}

/// One host over SSH with the recipe of `tests/remote.rs` (plus `extra`), deployed to commit
/// after commit.
struct Host {
    // Dropped in this order: sshd stops before its sandbox goes.
    hosts: SshHosts,
    repo: Repo,
    sandbox: Sandbox,
    count: std::cell::Cell<usize>,
}

impl Host {
    fn start(extra: &str) -> Host {
        let sandbox = Sandbox::new();
        let hosts = SshHosts::start(&sandbox, 1);
        let repo = repo(&sandbox);
        recipe(&sandbox, &hosts, &repo, extra);
        Host {
            hosts,
            repo,
            sandbox,
            count: std::cell::Cell::new(0),
        }
    }

    fn root(&self) -> &std::path::Path {
        self.hosts.deploy_path(1)
    }

    fn rel(&self) -> String {
        self.hosts.deploy_rel(1)
    }

    fn recipe(&self, extra: &str) {
        recipe(&self.sandbox, &self.hosts, &self.repo, extra);
    }

    /// A new commit, deployed: the round trips and the release now live.
    fn deploy(&self, args: &[&str]) -> (u64, String) {
        self.count.set(self.count.get() + 1);
        let text = format!("{}\n", self.count.get());
        self.repo.commit(&[("index.html", &text)], &text);
        after_the_last_name(&self.sandbox, &self.hosts);
        let mut all = vec!["run", "app.rhai", "--json"];
        all.extend_from_slice(args);
        let trips = round_trips(&self.sandbox, &all);

        let live = self.sandbox.current(&self.hosts.deploy_rel(1)).unwrap();
        let release = self.hosts.deploy_path(1).join("releases").join(&live);
        assert_eq!(
            std::fs::read_to_string(release.join("index.html")).unwrap(),
            text
        );
        assert_eq!(
            std::fs::read_to_string(release.join("REVISION")).unwrap(),
            format!("{}\n", git(&self.repo.path, &["rev-parse", "HEAD"]).trim())
        );
        assert_eq!(
            std::fs::read_link(release.join("storage")).unwrap(),
            std::path::Path::new("../../shared/storage")
        );
        assert!(!self.hosts.deploy_path(1).join(".zdd/lock").exists());
        (trips, live)
    }
}

/// The events the log has for `release`, in order.
fn events_of(sandbox: &Sandbox, hosts: &SshHosts, release: &str) -> Vec<String> {
    events(sandbox, hosts, 1)
        .into_iter()
        .filter(|e| e.1 == release)
        .map(|e| e.0)
        .collect()
}

/// A deploy right after a deploy waits for the host once: the plan the last run left names
/// the releases this deploy's cleanup removes, decided by the same rules, and the host moves
/// the plan on by itself. The release, its records, the removals and the rollback after it
/// are the same as without a plan; a plan whose deploys are used up, or that a rollback used,
/// makes the next deploy read first (two round trips), and that one plans again.
#[test]
fn a_deploy_after_a_deploy_is_one_round_trip_and_removes_what_cleanup_decides() {
    let d = Host::start("set(\"keep_releases\", 2);\n");
    let (sandbox, hosts, rel) = (&d.sandbox, &d.hosts, d.rel());
    let (trips, a) = d.deploy(&[]);
    assert_eq!(trips, 2, "no plan yet");
    assert_eq!(plan(hosts)[6], format!("2 {a} 1"));

    let (trips, b) = d.deploy(&[]);
    assert_eq!(trips, 1, "planned");
    assert_eq!(
        events_of(sandbox, hosts, &b),
        events_of(sandbox, hosts, &a),
        "the same records as a deploy without a plan"
    );
    let log = sandbox.read(&format!("{rel}/.zdd/releases.jsonl"));
    let swapped: serde_json::Value = log
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .find(|v| v["event"] == "swapped" && v["release"] == b.as_str())
        .unwrap();
    assert_eq!(swapped["from"], a.as_str(), "{swapped}");
    let lines = plan(hosts);
    assert_eq!(
        (lines[1].as_str(), lines[2].as_str()),
        (a.as_str(), b.as_str())
    );
    assert_eq!(lines[6], format!("2 {b} 2"), "moved on by the host");

    // keep_releases 2: `a` goes with the next deploy, as cleanup decides without a plan.
    let (trips, c) = d.deploy(&[]);
    assert_eq!(trips, 1);
    assert_eq!(sandbox.releases(&rel), vec![b.clone(), c.clone()]);
    assert_eq!(
        events_of(sandbox, hosts, &a)[4..],
        ["removing".to_string(), "removed".to_string()]
    );
    let zdd_names: Vec<String> = std::fs::read_dir(hosts.deploy_path(1).join(".zdd"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        zdd_names
            .iter()
            .all(|n| !n.contains(".tmp.") && !n.contains(".stage.")),
        "{zdd_names:?}"
    );
    let (code, stderr) = run(sandbox, &["releases", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");

    // A rollback after a planned deploy: planned too, back to the release it left.
    assert_eq!(round_trips(sandbox, &["rollback", "app.rhai", "--json"]), 1);
    assert_eq!(sandbox.current(&rel).unwrap(), b);
    // The rollback used the plan: the next deploy reads first, and plans again.
    let (trips, _) = d.deploy(&[]);
    assert_eq!(trips, 2);
    let (trips, _) = d.deploy(&[]);
    assert_eq!(trips, 1);

    // A plan with one deploy left: that one is planned, the one after it reads first.
    let mut lines = plan(hosts);
    lines.truncate(8);
    write_plan(hosts, &lines);
    assert_eq!(d.deploy(&[]).0, 1);
    assert_eq!(plan(hosts).len(), 7, "no deploy left in the plan");
    assert_eq!(d.deploy(&[]).0, 2);
    assert_eq!(d.deploy(&[]).0, 1);
    assert_eq!(sandbox.releases(&rel).len(), 2);
}

/// The plan is used only when the host and the recipe are exactly what it was made for:
/// anything else, and the deploy reads the state first (two round trips) and decides as
/// usual. A plan tampered with is refused by the host's check: nothing is removed on its word.
#[test]
fn a_deploy_goes_by_the_plan_only_on_an_unchanged_host_and_recipe() {
    let d = Host::start("set(\"keep_releases\", 2);\n");
    let (sandbox, hosts, root, rel) = (&d.sandbox, &d.hosts, d.root(), d.rel());
    d.deploy(&[]);
    assert_eq!(d.deploy(&[]).0, 1);

    // A release directory another tool made.
    let other = root.join("releases/20000101T000000Z");
    std::fs::create_dir(&other).unwrap();
    assert_eq!(d.deploy(&[]).0, 2);
    assert!(
        !other.exists(),
        "unknown to the log and old: cleanup removes it as usual"
    );
    assert_eq!(d.deploy(&[]).0, 1);

    // The release log appended to by hand.
    let mut log = sandbox.read(&format!("{rel}/.zdd/releases.jsonl"));
    log.push_str(
        r#"{"event":"failed","release":"20000101T000001Z","user":"x","time":"2000-01-01T00:00:00Z"}"#,
    );
    log.push('\n');
    std::fs::write(root.join(".zdd/releases.jsonl"), log).unwrap();
    assert_eq!(d.deploy(&[]).0, 2);

    // keep_releases other than the plan's.
    assert_eq!(d.deploy(&["-o", "keep_releases=3"]).0, 2);
    assert_eq!(d.deploy(&["-o", "keep_releases=3"]).0, 1);
    assert_eq!(sandbox.releases(&rel).len(), 3);

    // A recipe that hooks the deploy is not the stdlib's deploy alone.
    d.recipe("set(\"keep_releases\", 3);\nafter(\"deploy:symlink\", || info(\"switched\"));\n");
    assert!(d.deploy(&[]).0 >= 2);
    d.recipe("set(\"keep_releases\", 3);\n");
    d.deploy(&[]);

    // The removals tampered with: a path, shell, a name that is not there, the live release
    // and the one a rollback goes back to. The host refuses the plan; every release is
    // still there or removed by the rules.
    let pwned = sandbox.path("pwned");
    for hostile in [
        "..".to_string(),
        "../../etc".to_string(),
        format!("$(touch {})", pwned.display()),
        "x;touch".to_string(),
        "20000101T000002Z".to_string(),
        "current".to_string(),
        "from".to_string(),
    ] {
        let lines = plan(hosts);
        let before = sandbox.releases(&rel);
        let hostile = match hostile.as_str() {
            "from" => lines[2].clone(),
            "current" => sandbox.current(&rel).unwrap(),
            _ => hostile,
        };
        let mut edited = lines.clone();
        edited[7] = hostile.clone();
        write_plan(hosts, &edited);
        let (trips, live) = d.deploy(&[]);
        assert_eq!(trips, 2, "with `{hostile}` in the plan");
        let now = sandbox.releases(&rel);
        assert!(now.contains(&lines[2]), "{hostile}: {before:?} -> {now:?}");
        assert!(now.contains(&live));
        assert_eq!(now.len(), 3, "{hostile}: {before:?} -> {now:?}");
    }
    assert!(!pwned.exists());
}

/// A request of a planned deploy that fails on the host stops everything after it, is
/// reported as the step it stands for with zdd's words and hint, and the run's undo puts the
/// host back: `current` untouched, the release removed, the lock released. The next deploy
/// reads first (the log changed).
#[test]
fn a_planned_deploy_that_fails_is_reported_as_its_step_and_undone() {
    let d = Host::start("");
    let (sandbox, hosts, root, rel) = (&d.sandbox, &d.hosts, d.root(), d.rel());
    d.deploy(&[]);
    let (trips, live) = d.deploy(&[]);
    assert_eq!(trips, 1);
    let releases = sandbox.releases(&rel);

    after_the_last_name(sandbox, hosts);
    let (code, stderr) = run(sandbox, &["run", "app.rhai", "-o", "branch=nope"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("task `deploy:update_code` failed on host `web1`"),
        "{stderr}"
    );
    assert!(stderr.contains("unknown ref `nope`"), "{stderr}");
    assert!(
        stderr.contains("hint: set `branch` to a branch, tag or commit of"),
        "{stderr}"
    );
    assert!(!stderr.contains("] current -> releases/"), "{stderr}");
    assert_eq!(sandbox.current(&rel).unwrap(), live);
    assert!(!root.join(".zdd/lock").exists());
    assert_eq!(
        sandbox.releases(&rel),
        releases,
        "the failed release is gone"
    );

    // A shared file that is nowhere: refused before anything is linked, as deploy:shared.
    let (trips, live) = d.deploy(&[]);
    assert_eq!(trips, 2);
    assert_eq!(d.deploy(&[]).0, 1);
    let live = sandbox.current(&rel).unwrap_or(live);
    d.recipe("set(\"shared_files\", [\"config/app.ini\"]);\n");
    after_the_last_name(sandbox, hosts);
    let (code, stderr) = run(sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("task `deploy:shared` failed on host `web1`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("shared file `config/app.ini` is missing"),
        "{stderr}"
    );
    assert_eq!(sandbox.current(&rel).unwrap(), live);
    assert!(!root.join(".zdd/lock").exists());
}

/// A deploy path and a shared dir whose names hold spaces, quotes, `$()`, backticks, `;` and
/// non-ASCII: the planned deploy's requests (the plan's check, the removals, the plan moved
/// on) carry them as data, and nothing in them is run.
#[test]
fn a_planned_deploy_under_a_hostile_deploy_path_runs_nothing_it_names() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let Hostile {
        canary,
        deploy,
        host,
        dir: evil_dir,
        repo,
        ..
    } = hostile(&sandbox, &hosts);
    sandbox.write(
        "app.rhai",
        &format!(
            "import \"deploy\";\nset(\"repository\", {});\nset(\"shared_dirs\", [{}]);\nset(\"keep_releases\", 1);\n{host};\n",
            crate::ssh_support::rhai_string(&repo.str()),
            crate::ssh_support::rhai_string(evil_dir),
        ),
    );
    let root = std::path::Path::new(&deploy);
    let mut trips = Vec::new();
    for text in ["two\n", "three\n", "four\n"] {
        repo.commit(&[("index.html", text)], text);
        let names: Vec<String> = std::fs::read_dir(root.join("releases"))
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        wait_for_a_name_after(names.iter().max().cloned().unwrap_or_default());
        trips.push(round_trips(&sandbox, &["run", "app.rhai", "--json"]));
        assert_eq!(
            std::fs::read_to_string(root.join("current/index.html")).unwrap(),
            text
        );
        assert!(root.join("current").join(evil_dir).is_symlink());
    }
    assert_eq!(trips, [2, 1, 1]);
    // keep_releases 1: the live release and the one a rollback goes back to.
    assert_eq!(std::fs::read_dir(root.join("releases")).unwrap().count(), 2);
    assert_eq!(
        round_trips(&sandbox, &["rollback", "app.rhai", "--json"]),
        1
    );
    assert_eq!(
        std::fs::read_to_string(root.join("current/index.html")).unwrap(),
        "three\n"
    );
    assert!(!canary.exists(), "a value was executed");
    assert!(!sandbox.path("PWNED").exists());
    assert!(!hosts.home(1).join("PWNED").exists());
}

/// Until the wall clock's release name sorts after `latest`.
fn wait_for_a_name_after(latest: String) {
    loop {
        let now = time::OffsetDateTime::now_utc();
        let name = format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        );
        if name > latest {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The connection lost while the host deploys as planned (the remote shell killed, or its
/// sshd, from inside the fetch): the run fails and says the host could not be reached, and
/// reports no release. The host did its flight up to where it was cut: `current` is either
/// where it was or the whole new release, never a release half made; a lock left is reported
/// stale by the next run, and once cleared the host deploys.
#[test]
fn a_connection_lost_during_a_planned_deploy_fails_the_run() {
    for victim in ["$pid", "$parent"] {
        let d = Host::start("");
        let (sandbox, hosts, root, rel) = (&d.sandbox, &d.hosts, d.root(), d.rel());
        d.deploy(&[]);
        let (trips, live) = d.deploy(&[]);
        assert_eq!(trips, 1);
        let commit = d.repo.commit(&[("index.html", "cut\n")], "cut");
        crate::pipeline_attacks::kill_during_fetch(sandbox, hosts, victim);
        after_the_last_name(sandbox, hosts);
        let (code, stderr) = run(sandbox, &["run", "app.rhai"]);
        assert_eq!(code, 1, "{victim}: {stderr}");
        assert!(stderr.contains("cannot reach host `web1`"), "{stderr}");
        assert!(!stderr.contains("deploy: release"), "{stderr}");
        let now = sandbox.current(&rel).unwrap();
        if now != live {
            let release = root.join("releases").join(&now);
            assert_eq!(
                std::fs::read_to_string(release.join("REVISION")).unwrap(),
                format!("{commit}\n"),
                "{victim}: {stderr}"
            );
            assert_eq!(
                std::fs::read_to_string(release.join("index.html")).unwrap(),
                "cut\n"
            );
            assert!(release.join("storage").is_symlink());
        }
        assert!(root.join("shared/storage").is_dir());

        std::fs::remove_file(hosts.home(1).join(".gitconfig")).unwrap();
        if root.join(".zdd/lock").exists() {
            let (code, stderr) = run(sandbox, &["run", "app.rhai"]);
            assert_eq!(code, 3, "{victim}: {stderr}");
            let (code, stderr) = run(sandbox, &["unlock", "app.rhai"]);
            assert_eq!(code, 0, "{stderr}");
        }
        let (trips, _) = d.deploy(&[]);
        assert!(trips >= 1);
    }
}
