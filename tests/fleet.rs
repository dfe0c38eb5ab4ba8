//! Fleets (issue 12): 20 host entries behind two real sshd processes, each host its own deploy
//! path. Rollout waves observed in order on the hosts' side, a canary whose health gate fails,
//! the failure budget (`max_fail`: unreachable hosts, failed preparations, never the cutover),
//! the catch-up of the hosts left behind (`--hosts`: the same release name and commit),
//! progress at 20 hosts, bad values refused before anything changes, bounded connection
//! starts, and what a careless user (or a hand-edited file) does to all of it.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use crate::ssh_support::{free_port, rhai_string, SshHosts};
use crate::support::{assert_same_tree, wait_at_most, Repo, Run, Sandbox};

/// Host entries in the fleet: `web1`..`web20`.
const HOSTS: usize = 20;

/// sshd processes the host entries are spread over.
const SERVERS: usize = 2;

/// The stdlib deploy of a local repository to 20 host entries spread over [`SERVERS`] sshd
/// processes, each host its own deploy path `<sandbox>/fleet/webN`; each test writes the
/// recipe `app.rhai` with its own extra lines.
struct Fleet {
    /// Declared first: its servers stop before the sandbox is removed.
    servers: SshHosts,
    sandbox: Sandbox,
    repo: Repo,
}

impl Fleet {
    fn new() -> Fleet {
        let sandbox = Sandbox::new();
        let servers = SshHosts::start(&sandbox, SERVERS);
        let repo = sandbox.repo("repo");
        repo.commit(&[("index.html", "one\n")], "one");
        Fleet {
            servers,
            sandbox,
            repo,
        }
    }

    /// The sandbox-relative deploy path of host `n` (1-based).
    fn deploy(&self, n: usize) -> String {
        format!("fleet/web{n}")
    }

    /// The loopback port of the sshd serving host `n`.
    fn port(&self, n: usize) -> u16 {
        self.servers.port((n - 1) % SERVERS + 1)
    }

    /// A recipe line declaring host `name` on `port`, deploying to `deploy` (sandbox-relative).
    fn host_line(&self, name: &str, port: u16, deploy: &str) -> String {
        format!(
            "host({}).set(\"hostname\", \"127.0.0.1\").set(\"port\", {port}).set(\"remote_user\", \"root\").set(\"identity_file\", {}).set(\"config_file\", {}).set(\"deploy_path\", {});\n",
            rhai_string(name),
            rhai_string(&self.servers.identity_file().display().to_string()),
            rhai_string(&self.servers.config_file().display().to_string()),
            rhai_string(&self.sandbox.str(deploy)),
        )
    }

    /// Write `app.rhai`: the stdlib deploy, no pause between waves, the 20 hosts declared in a
    /// loop (host `n` on port `ports(n)`), then `extra`.
    fn recipe_with_ports(&self, ports: impl Fn(usize) -> u16, extra: &str) {
        let mut text = format!(
            "import \"deploy\";\nset(\"repository\", {});\nset(\"rollout_stagger\", 0);\nlet root = {};\nlet ports = [{}];\nfor n in 1..={HOSTS} {{\n    host(`web${{n}}`).set(\"hostname\", \"127.0.0.1\").set(\"port\", ports[n - 1]).set(\"remote_user\", \"root\").set(\"identity_file\", {}).set(\"config_file\", {}).set(\"deploy_path\", `${{root}}/web${{n}}`);\n}}\n",
            rhai_string(&self.repo.str()),
            rhai_string(&self.sandbox.str("fleet")),
            (1..=HOSTS)
                .map(|n| ports(n).to_string())
                .collect::<Vec<_>>()
                .join(", "),
            rhai_string(&self.servers.identity_file().display().to_string()),
            rhai_string(&self.servers.config_file().display().to_string()),
        );
        text.push_str(extra);
        self.sandbox.write("app.rhai", &text);
    }

    /// [`recipe_with_ports`](Self::recipe_with_ports) with every host reachable.
    fn recipe(&self, extra: &str) {
        self.recipe_with_ports(|n| self.port(n), extra);
    }

    /// `zdd run app.rhai ARGS` (the deploy).
    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["run", "app.rhai"];
        all.extend_from_slice(args);
        self.sandbox.run(&all)
    }

    /// The release `current` of host `n` points at.
    fn current(&self, n: usize) -> Option<String> {
        self.sandbox.current(&self.deploy(n))
    }

    /// The release directories of host `n`.
    fn releases(&self, n: usize) -> Vec<String> {
        self.sandbox.releases(&self.deploy(n))
    }

    /// The release log of host `n`.
    fn log(&self, n: usize) -> Vec<serde_json::Value> {
        self.sandbox.log(&self.deploy(n))
    }

    /// The commit release `release` of host `n` was checked out at.
    fn revision(&self, n: usize, release: &str) -> String {
        self.sandbox
            .read(&format!("{}/releases/{release}/REVISION", self.deploy(n)))
            .trim()
            .to_string()
    }

    /// Whether host `n`'s release log says `release` was swapped in.
    fn swapped(&self, n: usize, release: &str) -> bool {
        self.log(n)
            .iter()
            .any(|line| line["event"] == "swapped" && line["release"] == release)
    }

    fn lock_file(&self, n: usize) -> PathBuf {
        self.sandbox.path(&format!("{}/.zdd/lock", self.deploy(n)))
    }

    /// Every host's `current`, in order.
    fn currents(&self) -> Vec<Option<String>> {
        (1..=HOSTS).map(|n| self.current(n)).collect()
    }

    /// Panic naming the host unless no host holds a lock.
    #[track_caller]
    fn assert_unlocked(&self) {
        for n in 1..=HOSTS {
            assert!(!self.lock_file(n).exists(), "web{n} is still locked");
        }
    }

    /// Panic unless every host is on `release` alone, as after the first deploy: `current`
    /// points at it, no other release directory, no lock.
    #[track_caller]
    fn assert_all_on(&self, release: &str, context: &str) {
        for n in 1..=HOSTS {
            assert_eq!(
                self.current(n).as_deref(),
                Some(release),
                "{context}: web{n}'s current"
            );
            assert_eq!(self.releases(n), [release], "{context}: web{n}'s releases");
        }
        self.assert_unlocked();
    }

    /// Panic unless every host is back on `release` after a failed run: `current` points at
    /// it, no lock, and any other release directory is one that was swapped in and switched
    /// back (kept, and marked failed in the host's log, as the evidence of what went wrong).
    #[track_caller]
    fn assert_all_back_on(&self, release: &str, context: &str) {
        for n in 1..=HOSTS {
            assert_eq!(
                self.current(n).as_deref(),
                Some(release),
                "{context}: web{n}'s current"
            );
            let log = self.log(n);
            for other in self.releases(n).iter().filter(|r| *r != release) {
                let marked = |event: &str| {
                    log.iter()
                        .any(|line| line["event"] == event && line["release"] == other.as_str())
                };
                assert!(
                    marked("swapped") && marked("failed"),
                    "{context}: web{n} has release {other}, not switched back"
                );
            }
        }
        self.assert_unlocked();
    }

    /// One deploy to every host (exit 0): each host has one good release, `current`; returns
    /// its name (the same everywhere).
    fn first_deploy(&self) -> String {
        self.run(&["-q", "-o", "rollout_batch=100%"]).success();
        let first = self.current(1).expect("web1 deployed");
        self.assert_all_on(&first, "the first deploy");
        first
    }

    /// The files of the left-behind records (`$HOME/.local/state/zdd/left-behind/`).
    fn records(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> =
            std::fs::read_dir(self.sandbox.path(".local/state/zdd/left-behind"))
                .map(|entries| entries.map(|e| e.unwrap().path()).collect())
                .unwrap_or_default();
        files.retain(|f| f.extension().is_some_and(|e| e == "json"));
        files
    }

    /// The one left-behind record.
    #[track_caller]
    fn record(&self) -> (PathBuf, serde_json::Value) {
        let files = self.records();
        assert_eq!(files.len(), 1, "{files:?}");
        let text = std::fs::read_to_string(&files[0]).unwrap();
        (files[0].clone(), serde_json::from_str(&text).unwrap())
    }
}

/// The `(number, of, hosts)` of the `wave` events of a `--json` run.
fn waves(run: &Run) -> Vec<(u64, u64, Vec<String>)> {
    run.json_lines()
        .into_iter()
        .filter(|event| event["event"] == "wave")
        .map(|event| {
            (
                event["number"].as_u64().unwrap(),
                event["of"].as_u64().unwrap(),
                strings(&event["hosts"]),
            )
        })
        .collect()
}

fn strings(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {value}"))
        .iter()
        .map(|h| h.as_str().unwrap().to_string())
        .collect()
}

/// The `finished` event of a `--json` run.
#[track_caller]
fn finished(run: &Run) -> serde_json::Value {
    run.json_lines()
        .into_iter()
        .find(|event| event["event"] == "finished")
        .unwrap_or_else(|| panic!("no finished event:\n{}", run.stdout))
}

/// Each host's outcome in a `finished` event, in the event's order.
fn outcomes(finished: &serde_json::Value) -> Vec<(String, String)> {
    finished["hosts"]
        .as_array()
        .unwrap_or_else(|| panic!("no hosts: {finished}"))
        .iter()
        .map(|row| {
            (
                row["host"].as_str().unwrap().to_string(),
                row["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `web{n}` for each of `range`.
fn names(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range.map(|n| format!("web{n}")).collect()
}

/// An HTTP server on 127.0.0.1 answering every request with `status` (the app a health gate
/// asks), until the test process ends.
fn http_server(status: u16) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut buffer = [0u8; 4096];
            let _ = stream.read(&mut buffer);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 6\r\nconnection: close\r\n\r\nstatus"
            );
        }
    });
    address
}

/// Wait until `file` contains `text`, while `child` runs (panics with the file when the child
/// ends first or after a minute).
fn wait_for_text(file: &Path, text: &str, child: &mut Child) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let said = std::fs::read_to_string(file).unwrap_or_default();
        if said.contains(text) {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("zdd ended ({status}) before saying {text:?}:\n{said}");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("zdd did not say {text:?} within a minute:\n{said}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn waves_switch_in_order_each_after_the_last_ended() {
    let fleet = Fleet::new();
    // Each host appends its name to one file once its swap is done: the order of the swaps.
    fleet.recipe(&format!(
        "after(\"deploy:symlink\", || run(\"echo {{{{host}}}} >> {}\"));\n",
        fleet.sandbox.str("swapped")
    ));
    let run = fleet.run(&["--json", "-o", "rollout_batch=1,50%,100%"]);
    run.success();
    assert_eq!(
        waves(&run),
        vec![
            (1, 3, names(1..=1)),
            (2, 3, names(2..=11)),
            (3, 3, names(12..=20)),
        ]
    );
    let swapped: Vec<String> = fleet
        .sandbox
        .read("swapped")
        .lines()
        .map(str::to_string)
        .collect();
    let mut once = swapped.clone();
    once.sort();
    once.dedup();
    assert_eq!(once.len(), HOSTS, "each host swapped once: {swapped:?}");
    let wave_of = |host: &str| match host.trim_start_matches("web").parse::<usize>().unwrap() {
        1 => 1,
        2..=11 => 2,
        _ => 3,
    };
    let seen: Vec<usize> = swapped.iter().map(|h| wave_of(h)).collect();
    let mut in_order = seen.clone();
    in_order.sort();
    assert_eq!(
        seen, in_order,
        "a host swapped before the wave before its own ended: {swapped:?}"
    );
    let release = fleet.current(1).unwrap();
    assert_eq!(fleet.currents(), vec![Some(release.clone()); HOSTS]);
    for n in 1..=HOSTS {
        assert!(fleet.swapped(n, &release), "web{n}'s log");
    }
    fleet.assert_unlocked();
    let finished = finished(&run);
    assert_eq!(finished["status"], "success");
    assert_eq!(finished["release"], release.as_str());
    assert!(finished.get("left_behind").is_none(), "{finished}");
    assert!(outcomes(&finished).iter().all(|(_, o)| o == "switched"));
}

#[test]
fn a_canary_whose_health_gate_fails_switches_only_itself_back() {
    let fleet = Fleet::new();
    let bad = http_server(500);
    let good = http_server(200);
    fleet.recipe(&format!(
        "task(\"health\", || {{ health_gate(if get(\"host\") == \"web1\" {{ \"http://{bad}/up\" }} else {{ \"http://{good}/up\" }}, #{{checks: 1, interval: 0.05}}); }});\nafter(\"deploy:symlink\", \"health\");\n"
    ));
    let first = fleet.first_deploy_with_gate_off();
    fleet.repo.commit(&[("index.html", "two\n")], "two");
    let run = fleet.run(&["--json", "-o", "rollout_batch=1,50%,100%"]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("error: task `health` failed on host `web1`"),
        "{}",
        run.stderr
    );
    // Wave 1 only: no other wave started.
    assert_eq!(waves(&run), vec![(1, 3, names(1..=1))]);
    let finished = finished(&run);
    assert_eq!(finished["status"], "failed");
    let mut expected: Vec<(String, String)> = vec![("web1".into(), "switched_back".into())];
    expected.extend(
        names(2..=HOSTS)
            .into_iter()
            .map(|h| (h, "unchanged".into())),
    );
    expected.sort();
    let mut seen = outcomes(&finished);
    seen.sort();
    assert_eq!(seen, expected);
    // The canary swapped in the new release and back; no other host ever swapped it.
    let log = fleet.log(1);
    let new = log
        .iter()
        .rev()
        .find(|line| line["event"] == "swapped")
        .and_then(|line| line["release"].as_str())
        .expect("the canary swapped")
        .to_string();
    assert_ne!(new, first);
    for n in 2..=HOSTS {
        assert!(!fleet.swapped(n, &new), "web{n} swapped {new}");
        assert_eq!(fleet.releases(n), [first.as_str()], "web{n}");
    }
    fleet.assert_all_back_on(&first, "the canary's gate failed");
}

impl Fleet {
    /// The first deploy of a recipe whose health gate would fail on the canary: the gate is
    /// not there yet (`health` is a no-op task in that deploy).
    fn first_deploy_with_gate_off(&self) -> String {
        let recipe = self.sandbox.read("app.rhai");
        self.sandbox
            .write("app.rhai", &format!("{recipe}task(\"health\", || {{}});\n"));
        let first = self.first_deploy();
        self.sandbox.write("app.rhai", &recipe);
        first
    }
}

#[test]
fn an_unreachable_host_within_the_budget_is_left_behind_then_caught_up() {
    let fleet = Fleet::new();
    fleet.recipe("");
    let first = fleet.first_deploy();
    let two = fleet.repo.commit(&[("index.html", "two\n")], "two");
    let dead = free_port();
    fleet.recipe_with_ports(|n| if n == 20 { dead } else { fleet.port(n) }, "");

    let run = fleet.run(&[
        "--json",
        "-o",
        "max_fail=1",
        "-o",
        "rollout_batch=1,50%,100%",
    ]);
    run.expect(4);
    let release = fleet.current(1).unwrap();
    assert_ne!(release, first);
    for n in 1..HOSTS {
        assert_eq!(
            fleet.current(n).as_deref(),
            Some(release.as_str()),
            "web{n}"
        );
        assert_eq!(fleet.revision(n, &release), two, "web{n}");
    }
    assert_eq!(fleet.current(20).as_deref(), Some(first.as_str()));
    assert_eq!(fleet.releases(20), [first.as_str()]);
    fleet.assert_unlocked();
    assert!(
        run.stderr.contains(
            "warning: deployed with exceptions: 1 host left behind on its old release\nleft behind: `web20`: unreachable: "
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "`zdd run app.rhai deploy --hosts web20` brings them to release {release}"
        )),
        "{}",
        run.stderr
    );
    // The waves are of the 19 hosts reached.
    assert_eq!(
        waves(&run),
        vec![
            (1, 3, names(1..=1)),
            (2, 3, names(2..=11)),
            (3, 3, names(12..=19)),
        ]
    );
    let finished = finished(&run);
    assert_eq!(finished["status"], "exceptions");
    assert_eq!(finished["release"], release.as_str());
    let left = finished["left_behind"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{finished}");
    assert_eq!(left[0]["host"], "web20");
    assert!(
        left[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("unreachable: "),
        "{finished}"
    );
    let mut expected: Vec<(String, String)> = names(1..=19)
        .into_iter()
        .map(|h| (h, "switched".to_string()))
        .collect();
    expected.push(("web20".into(), "left_behind".into()));
    expected.sort();
    let mut seen = outcomes(&finished);
    seen.sort();
    assert_eq!(seen, expected);
    // Each host that switched says, in its release log, which host it went on without.
    for n in 1..HOSTS {
        let log = fleet.log(n);
        let end = log.last().unwrap();
        assert_eq!(end["event"], "finished", "web{n}: {end}");
        assert_eq!(end["release"], release.as_str(), "web{n}: {end}");
        assert_eq!(end["left_behind"][0]["host"], "web20", "web{n}: {end}");
    }
    let (_, record) = fleet.record();
    assert_eq!(record["release"], release.as_str());
    assert_eq!(record["commit"], two.as_str());

    // The branch moves on. `--hosts` naming a host that was not left behind is a normal
    // deploy there (the branch as it is now, a new release), not a catch-up; the record
    // still names web20.
    let three = fleet.repo.commit(&[("index.html", "three\n")], "three");
    let run = fleet.run(&["--hosts", "web5"]);
    run.success();
    assert!(!run.stderr.contains("bringing"), "{}", run.stderr);
    let fifth = fleet.current(5).unwrap();
    assert!(fifth > release, "{fifth}");
    assert_eq!(fleet.revision(5, &fifth), three);
    let (_, record) = fleet.record();
    assert_eq!(record["hosts"][0]["host"], "web20");
    assert_eq!(record["release"], release.as_str());

    // web20 comes back.
    fleet.recipe("");
    let state_of_others: Vec<_> = (1..HOSTS)
        .map(|n| fleet.sandbox.tree(&fleet.deploy(n), &[]))
        .collect();
    let run = fleet.run(&["--hosts", "web20"]);
    run.success();
    assert!(
        run.stderr.contains(&format!(
            "bringing web20 up to release {release} (commit {}) of the deploy started ",
            &two[..12]
        )),
        "{}",
        run.stderr
    );
    assert_eq!(fleet.current(20).as_deref(), Some(release.as_str()));
    assert_eq!(fleet.revision(20, &release), two);
    assert_eq!(
        fleet
            .sandbox
            .read(&format!("fleet/web20/releases/{release}/index.html")),
        "two\n"
    );
    assert_ne!(two, three);
    assert!(fleet.records().is_empty(), "{:?}", fleet.records());
    for n in 1..HOSTS {
        assert_same_tree(
            &state_of_others[n - 1],
            &fleet.sandbox.tree(&fleet.deploy(n), &[]),
            &format!("web{n} during the catch-up"),
        );
    }
    fleet.assert_unlocked();
}

#[test]
fn two_unreachable_hosts_over_the_budget_change_nothing_anywhere() {
    let fleet = Fleet::new();
    fleet.recipe("");
    let first = fleet.first_deploy();
    fleet.repo.commit(&[("index.html", "two\n")], "two");
    let before = fleet.sandbox.tree("fleet", &[]);
    let (dead1, dead2) = (free_port(), free_port());
    fleet.recipe_with_ports(
        |n| match n {
            8 => dead1,
            20 => dead2,
            _ => fleet.port(n),
        },
        "",
    );
    let run = fleet.run(&["-o", "max_fail=1"]);
    run.expect(1);
    assert!(
        run.stderr.starts_with("error: nothing was changed: "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("2 hosts unreachable, more than `max_fail` allows (1)"),
        "{}",
        run.stderr
    );
    assert_same_tree(
        &before,
        &fleet.sandbox.tree("fleet", &[]),
        "over the budget",
    );
    fleet.assert_all_on(&first, "over the budget");
    assert!(fleet.records().is_empty());
}

/// A recipe whose preparation fails on `host` alone (a hook before the swap), and whose fail
/// hook leaves a marker file `fleet/failed-HOST` for each host it runs on.
fn failing_preparation(host: &str) -> String {
    format!(
        "task(\"check\", || {{ if get(\"host\") == \"{host}\" {{ run(\"echo the check failed >&2; exit 3\"); }} }});\nbefore(\"deploy:symlink\", \"check\");\ntask(\"mark\", || run(\"touch {{{{deploy_path}}}}/../failed-{{{{host}}}}\"));\nfail(\"deploy\", \"mark\");\n"
    )
}

impl Fleet {
    /// The hosts whose fail hooks ran (`failing_preparation`'s markers).
    fn marked(&self) -> Vec<String> {
        let mut marked: Vec<String> = (1..=HOSTS)
            .map(|n| format!("web{n}"))
            .filter(|h| self.sandbox.path(&format!("fleet/failed-{h}")).exists())
            .collect();
        marked.sort();
        marked
    }

    fn clear_marks(&self) {
        for n in 1..=HOSTS {
            let _ = std::fs::remove_file(self.sandbox.path(&format!("fleet/failed-web{n}")));
        }
    }
}

#[test]
fn a_failed_preparation_within_the_budget_is_left_behind_and_over_it_fails_all() {
    let fleet = Fleet::new();
    fleet.recipe("");
    let first = fleet.first_deploy();
    fleet.repo.commit(&[("index.html", "two\n")], "two");
    fleet.recipe(&failing_preparation("web7"));

    // No budget: all or nothing, as before.
    let run = fleet.run(&["-q", "-o", "max_fail=0"]);
    run.expect(1);
    assert!(
        run.stderr
            .starts_with("error: task `check` failed on host `web7`"),
        "{}",
        run.stderr
    );
    fleet.assert_all_on(&first, "max_fail=0");
    assert_eq!(fleet.marked(), {
        let mut all = names(1..=HOSTS);
        all.sort();
        all
    });
    assert!(fleet.records().is_empty());
    fleet.clear_marks();

    // 10% of 20: two hosts may be left behind.
    let run = fleet.run(&["--json", "-o", "max_fail=10%"]);
    run.expect(4);
    let release = fleet.current(1).unwrap();
    assert_ne!(release, first);
    for n in (1..=HOSTS).filter(|n| *n != 7) {
        assert_eq!(
            fleet.current(n).as_deref(),
            Some(release.as_str()),
            "web{n}"
        );
    }
    // web7 is as it was: its new release removed, unlocked, its fail hooks ran (only there).
    assert_eq!(fleet.current(7).as_deref(), Some(first.as_str()));
    assert_eq!(fleet.releases(7), [first.as_str()]);
    assert!(!fleet.swapped(7, &release));
    fleet.assert_unlocked();
    assert_eq!(fleet.marked(), ["web7"]);
    assert!(
        run.stderr.contains(
            "warning: deployed with exceptions: 1 host left behind on its old release\nleft behind: `web7`: task `check` failed: "
        ),
        "{}",
        run.stderr
    );
    let finished = finished(&run);
    assert_eq!(finished["status"], "exceptions");
    assert_eq!(finished["left_behind"][0]["host"], "web7");
    assert_eq!(
        fleet.log(1).last().unwrap()["left_behind"][0]["host"],
        "web7"
    );
}

#[test]
fn the_host_that_runs_once_tasks_is_never_left_behind() {
    let fleet = Fleet::new();
    fleet.recipe("");
    let first = fleet.first_deploy();
    fleet.recipe(&failing_preparation("web1"));
    let run = fleet.run(&["-q", "-o", "max_fail=10%"]);
    run.expect(1);
    assert!(
        run.stderr
            .starts_with("error: task `check` failed on host `web1`"),
        "{}",
        run.stderr
    );
    fleet.assert_all_on(&first, "the first host failed");
    assert!(fleet.records().is_empty());
}

#[test]
fn the_budget_never_covers_the_cutover_every_switched_host_goes_back() {
    let fleet = Fleet::new();
    fleet.recipe("");
    let first = fleet.first_deploy();
    fleet.repo.commit(&[("index.html", "two\n")], "two");
    // web5 (in wave 2) fails after its swap.
    fleet.recipe(
        "after(\"deploy:symlink\", || { if get(\"host\") == \"web5\" { run(\"exit 3\"); } });\n",
    );
    let run = fleet.run(&[
        "--json",
        "-o",
        "max_fail=5",
        "-o",
        "rollout_batch=1,50%,100%",
    ]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("error: task `after deploy:symlink` failed on host `web5`"),
        "{}",
        run.stderr
    );
    assert_eq!(waves(&run).len(), 2, "wave 3 never started");
    fleet.assert_all_back_on(&first, "a failure in wave 2");
    let new = fleet
        .log(1)
        .iter()
        .rev()
        .find(|line| line["event"] == "swapped")
        .and_then(|line| line["release"].as_str())
        .unwrap()
        .to_string();
    assert_ne!(new, first);
    for n in 12..=HOSTS {
        assert!(!fleet.swapped(n, &new), "web{n} is in wave 3");
    }
    assert!(fleet.records().is_empty());
}

#[test]
fn twenty_hosts_say_one_line_per_host_per_phase() {
    let fleet = Fleet::new();
    fleet.recipe("");
    let run = fleet.run(&["-o", "rollout_batch=1,50%,100%"]);
    run.success();
    let lines: Vec<&str> = run.stderr.lines().collect();
    for n in 1..=HOSTS {
        for phase in ["prepared", "switched"] {
            let prefix = format!("[web{n}] {phase} (");
            let count = lines.iter().filter(|l| l.starts_with(&prefix)).count();
            assert_eq!(count, 1, "{prefix}:\n{}", run.stderr);
        }
    }
    assert!(!run.stderr.contains(" ... ok"), "{}", run.stderr);
    assert!(
        !run.stderr.contains("current -> releases/"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("wave 1/3: 1 host (web1)\n")
            && run.stderr.contains("wave 2/3: 10 hosts (web2 .. web11)\n")
            && run.stderr.contains("wave 3/3: 9 hosts (web12 .. web20)\n"),
        "{}",
        run.stderr
    );
    let mut sorted = names(1..=HOSTS);
    sorted.sort();
    let table: String = std::iter::once("host   outcome   why".to_string())
        .chain(sorted.iter().map(|h| format!("{h:<5}  switched")))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        run.stderr
            .ends_with(&format!("  hosts: 20 switched\n{table}\n")),
        "{}",
        run.stderr
    );

    // `-v`: the lines per task are back.
    let run = fleet.run(&["-v", "-o", "rollout_batch=100%"]);
    run.success();
    for n in 1..=HOSTS {
        for task in ["deploy:update_code", "deploy:symlink"] {
            let prefix = format!("[web{n}] {task} ... ok (");
            assert!(
                run.stderr.lines().any(|l| l.starts_with(&prefix)),
                "{prefix}:\n{}",
                run.stderr
            );
        }
    }
    assert!(run.stderr.contains(&table), "{}", run.stderr);
}

#[test]
fn bad_fleet_values_are_refused_before_anything_runs() {
    let fleet = Fleet::new();
    fleet.recipe("");
    for (args, setting) in [
        (&["-o", "max_fail=abc"][..], "max_fail"),
        (&["-o", "max_fail=-1"], "max_fail"),
        (&["-o", "max_fail=150%"], "max_fail"),
        (&["-o", "max_fail=10.5%"], "max_fail"),
        (&["-o", "rollout_batch=0"], "rollout_batch"),
        (&["-o", "rollout_batch=1,0%"], "rollout_batch"),
        (&["-o", "rollout_batch=1,x"], "rollout_batch"),
        (&["-o", "rollout_batch=0%"], "rollout_batch"),
        (&["-o", "max_concurrent_starts=0"], "max_concurrent_starts"),
        (
            &["-o", "max_concurrent_starts=many"],
            "max_concurrent_starts",
        ),
    ] {
        let run = fleet.run(args);
        run.expect(2);
        assert!(
            run.stderr.starts_with(&format!("error: `{setting}` is ")),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            !fleet.sandbox.path("fleet").exists(),
            "{args:?}: something ran"
        );
    }
    // The same values set in the recipe.
    for (line, setting) in [
        ("set(\"max_fail\", \"abc\");", "max_fail"),
        ("set(\"rollout_batch\", [1, \"0%\"]);", "rollout_batch"),
        ("set(\"rollout_batch\", []);", "rollout_batch"),
        ("set(\"rollout_batch\", [1, 0]);", "rollout_batch"),
        (
            "set(\"max_concurrent_starts\", 0);",
            "max_concurrent_starts",
        ),
    ] {
        fleet.recipe(&format!("{line}\n"));
        let run = fleet.run(&[]);
        run.expect(2);
        assert!(
            run.stderr.starts_with(&format!("error: `{setting}` is ")),
            "{line}: {}",
            run.stderr
        );
        assert!(
            !fleet.sandbox.path("fleet").exists(),
            "{line}: something ran"
        );
    }
}

#[test]
fn bounded_connection_starts_still_reach_every_host() {
    let fleet = Fleet::new();
    fleet.recipe("");
    let run = fleet.run(&[
        "-q",
        "-o",
        "max_concurrent_starts=2",
        "-o",
        "parallel=3",
        "-o",
        "rollout_batch=25%",
    ]);
    run.success();
    let release = fleet.current(1).unwrap();
    fleet.assert_all_on(&release, "max_concurrent_starts=2");
}

#[test]
fn ctrl_c_between_waves_switches_every_host_back() {
    let fleet = Fleet::new();
    fleet.recipe("");
    let first = fleet.first_deploy();
    fleet.repo.commit(&[("index.html", "two\n")], "two");
    let err = fleet.sandbox.path("zdd.err");
    let mut zdd = fleet
        .sandbox
        .zdd(&[
            "run",
            "app.rhai",
            "-o",
            "rollout_batch=1,50%,100%",
            "-o",
            "rollout_stagger=600",
        ])
        .stdout(Stdio::null())
        .stderr(File::create(&err).unwrap())
        .spawn()
        .unwrap();
    wait_for_text(&err, "before the next", &mut zdd);
    assert!(
        fleet.current(1) != Some(first.clone()),
        "the canary switched"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(zdd.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_at_most(&mut zdd, Duration::from_secs(60));
    let said = fleet
        .sandbox
        .normalize(&std::fs::read_to_string(&err).unwrap());
    assert_eq!(status.code(), Some(1), "{said}");
    assert!(said.contains("interrupted"), "{said}");
    assert!(!said.contains("wave 2/3"), "{said}");
    fleet.assert_all_back_on(&first, "Ctrl-C between waves");
    assert_eq!(fleet.releases(2), [first.as_str()]);
    assert!(fleet.records().is_empty());
}

#[test]
fn a_hand_edited_record_is_never_followed() {
    let fleet = Fleet::new();
    fleet.recipe("");
    fleet.first_deploy();
    let two = fleet.repo.commit(&[("index.html", "two\n")], "two");
    let dead = free_port();
    fleet.recipe_with_ports(|n| if n == 20 { dead } else { fleet.port(n) }, "");
    fleet
        .run(&["-q", "-o", "max_fail=1", "-o", "rollout_batch=100%"])
        .expect(4);
    let release = fleet.current(1).unwrap();
    let (file, record) = fleet.record();
    let original = std::fs::read_to_string(&file).unwrap();

    // web20 is still unreachable: the catch-up is announced (before connecting) or not, and
    // nothing changes either way.
    let run = fleet.run(&["--hosts", "web20"]);
    run.expect(1);
    assert!(
        run.stderr.contains(&format!(
            "bringing web20 up to release {release} (commit {})",
            &two[..12]
        )),
        "{}",
        run.stderr
    );
    for (field, hostile) in [
        ("release", serde_json::json!("../../../../tmp/zdd-hostile")),
        ("release", serde_json::json!("..")),
        ("release", serde_json::json!(".zdd")),
        ("release", serde_json::json!("$(touch pwned)")),
        ("release", serde_json::json!("a b")),
        ("release", serde_json::json!("")),
        ("commit", serde_json::json!("main; touch pwned")),
        ("commit", serde_json::json!("--upload-pack=touch pwned")),
        ("release", serde_json::json!(42)),
    ] {
        let mut edited = record.clone();
        edited[field] = hostile.clone();
        std::fs::write(&file, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
        let run = fleet.run(&["--hosts", "web20"]);
        run.expect(1);
        assert!(
            !run.stderr.contains("bringing"),
            "{field} = {hostile}: followed:\n{}",
            run.stderr
        );
        assert!(!fleet.sandbox.path("pwned").exists());
    }
    // Another recipe's record (same file name, another path inside): not this recipe's.
    let mut other = record.clone();
    other["recipe"] = serde_json::json!("/elsewhere/app.rhai");
    std::fs::write(&file, serde_json::to_string_pretty(&other).unwrap()).unwrap();
    let run = fleet.run(&["--hosts", "web20"]);
    run.expect(1);
    assert!(!run.stderr.contains("bringing"), "{}", run.stderr);
    // Not JSON at all.
    std::fs::write(&file, "{ not json").unwrap();
    let run = fleet.run(&["--hosts", "web20"]);
    run.expect(1);
    assert!(!run.stderr.contains("bringing"), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);

    // With a hostile release name and web20 back, the run is a normal deploy: the branch as
    // it is, a new release name.
    let mut edited = record.clone();
    edited["release"] = serde_json::json!("../../../../tmp/zdd-hostile");
    std::fs::write(&file, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    let three = fleet.repo.commit(&[("index.html", "three\n")], "three");
    fleet.recipe("");
    let run = fleet.run(&["--hosts", "web20"]);
    run.success();
    assert!(!run.stderr.contains("bringing"), "{}", run.stderr);
    let newest = fleet.current(20).unwrap();
    assert!(newest > release, "{newest}");
    assert_eq!(fleet.revision(20, &newest), three);
    assert!(!Path::new("/tmp/zdd-hostile").exists());
    // The original record again: web20 was brought up to date by that deploy? No: by another
    // one. The catch-up refuses to put an older release on top of a newer one.
    std::fs::write(&file, original).unwrap();
    let run = fleet.run(&["--hosts", "web20"]);
    run.expect(1);
    assert!(
        run.stderr.contains(&format!(
            "cannot bring `web20` up to release {release}: it has release {newest} already"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(fleet.current(20).as_deref(), Some(newest.as_str()));
    fleet.assert_unlocked();
}

#[test]
fn one_machine_listed_twice_is_refused_before_anything_runs() {
    // A careless inventory: `web2` again under another name (the same sshd, the same deploy
    // path). Two entries of one run would race for the one lock (and once left it behind):
    // refused with exit 2, before anything connects.
    let fleet = Fleet::new();
    fleet.recipe("");
    let first = fleet.first_deploy();
    let twin = fleet.host_line("web2-again", fleet.port(2), &fleet.deploy(2));
    fleet.recipe(&twin);
    fleet.repo.commit(&[("index.html", "twin\n")], "next");
    let run = fleet.run(&["-o", "rollout_batch=100%"]);
    run.expect(2);
    assert!(
        run.stderr
            .contains("error: hosts `web2` and `web2-again` both deploy to `"),
        "{}",
        run.stderr
    );
    assert!(!fleet.lock_file(2).exists());
    fleet.assert_all_on(&first, "after the refusal");
}

#[test]
fn a_record_naming_no_release_or_no_whole_commit_is_never_followed() {
    let fleet = Fleet::new();
    fleet.recipe("");
    fleet.first_deploy();
    fleet.repo.commit(&[("index.html", "two\n")], "two");
    let dead = free_port();
    fleet.recipe_with_ports(|n| if n == 20 { dead } else { fleet.port(n) }, "");
    fleet
        .run(&["-q", "-o", "max_fail=1", "-o", "rollout_batch=100%"])
        .expect(4);
    let (file, record) = fleet.record();
    // web20 is still unreachable: nothing changes, the run only says whether it follows.
    for (field, value) in [
        // Would give web20 `releases/current`, which sorts after every release name, so the
        // fleet's next deploy would name its release differently on web20.
        ("release", "current"),
        ("release", "zzz"),
        // Would check out `` (`branch` is empty) or whatever `abc` abbreviates.
        ("commit", ""),
        ("commit", "abc"),
    ] {
        let mut edited = record.clone();
        edited[field] = serde_json::json!(value);
        std::fs::write(&file, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
        let run = fleet.run(&["--hosts", "web20"]);
        run.expect(1);
        assert!(
            !run.stderr.contains("bringing"),
            "{field} = {value:?}: followed:\n{}",
            run.stderr
        );
    }
}

#[test]
fn one_deploy_has_one_release_name_on_every_host() {
    // One host has a release named later than now: made from a machine whose clock ran
    // ahead, or by a `--hosts` deploy in the same second. The deploy's name must sort after
    // it on every host, or the deploy must stop before anything switches.
    let fleet = Fleet::new();
    fleet.recipe("");
    let first = fleet.first_deploy();
    let ahead = "20991231T235900Z";
    std::fs::create_dir(
        fleet
            .sandbox
            .path(&format!("{}/releases/{ahead}", fleet.deploy(20))),
    )
    .unwrap();
    fleet.repo.commit(&[("index.html", "two\n")], "two");
    let run = fleet.run(&["-q", "-o", "rollout_batch=100%"]);
    let currents = fleet.currents();
    let mut names = currents.clone();
    names.sort();
    names.dedup();
    assert!(
        names.len() == 1
            || currents
                .iter()
                .all(|c| c.as_deref() == Some(first.as_str())),
        "one deploy, several release names: {currents:?}\n{}",
        run.stderr
    );
    fleet.assert_unlocked();
}
