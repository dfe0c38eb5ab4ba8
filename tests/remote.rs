//! Deploying to several hosts over SSH: real OpenSSH servers on loopback (see `ssh_support`),
//! each host with its own deploy path. Parallel preparation, staggered cutover, failures during
//! preparation and cutover, an unreachable host, host selection, quoting, rollback.

use std::collections::BTreeSet;

use crate::ssh_support::{rhai_string, SshHosts};
use crate::support::{git, their_words, Repo, Sandbox};

/// The stdlib deploy of `repo` to every host, plus `extra` recipe lines.
pub(crate) fn recipe(sandbox: &Sandbox, hosts: &SshHosts, repo: &Repo, extra: &str) {
    sandbox.write(
        "app.rhai",
        &format!(
            "import \"deploy\";\nset(\"repository\", {});\nset(\"shared_dirs\", [\"storage\"]);\n{}{extra}",
            rhai_string(&repo.str()),
            hosts.recipe_hosts()
        ),
    );
}

pub(crate) fn repo(sandbox: &Sandbox) -> Repo {
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n"), ("storage/.keep", "")], "one");
    repo
}

pub(crate) fn run(sandbox: &Sandbox, args: &[&str]) -> (i32, String) {
    let output = sandbox.zdd(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        sandbox.normalize(&String::from_utf8_lossy(&output.stderr)),
    )
}

/// (event, release, time) of every line of a host's release log.
pub(crate) fn events(
    sandbox: &Sandbox,
    hosts: &SshHosts,
    i: usize,
) -> Vec<(String, String, String)> {
    sandbox
        .read(&format!("{}/.zdd/releases.jsonl", hosts.deploy_rel(i)))
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                value["event"].as_str().unwrap().to_string(),
                value["release"].as_str().unwrap().to_string(),
                value["time"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn time_of(events: &[(String, String, String)], event: &str) -> String {
    events
        .iter()
        .find(|(e, _, _)| e == event)
        .map(|(_, _, t)| t.clone())
        .unwrap_or_else(|| panic!("no `{event}` event in {events:?}"))
}

/// Seconds between two RFC 3339 times of the release log.
fn seconds_between(a: &str, b: &str) -> f64 {
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap()
    };
    (parse(b) - parse(a)).as_seconds_f64()
}

#[test]
fn three_hosts_prepare_in_parallel_and_switch_one_at_a_time() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 3);
    let repo = repo(&sandbox);
    let commit = repo.commit(&[("index.html", "two\n")], "two");
    recipe(&sandbox, &hosts, &repo, "");

    let (code, stderr) = run(&sandbox, &["run", "app.rhai", "-o", "rollout_stagger=1"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stderr
            .matches("waiting 1.00 s before the next batch")
            .count(),
        2,
        "{stderr}"
    );

    let mut releases = BTreeSet::new();
    let logs: Vec<_> = (1..=3).map(|i| events(&sandbox, &hosts, i)).collect();
    for i in 1..=3 {
        let deploy = hosts.deploy_rel(i);
        let current = sandbox.current(&deploy).expect("current");
        releases.insert(current.clone());
        assert_eq!(
            sandbox.read(&format!("{deploy}/current/REVISION")),
            format!("{commit}\n")
        );
        assert_eq!(
            sandbox.read(&format!("{deploy}/current/index.html")),
            "two\n"
        );
        assert!(sandbox
            .path(&format!("{deploy}/current/storage"))
            .is_symlink());
        assert!(!sandbox.path(&format!("{deploy}/.zdd/lock")).exists());
        let kinds: Vec<&str> = logs[i - 1].iter().map(|(e, _, _)| e.as_str()).collect();
        assert_eq!(kinds, ["created", "checked_out", "swapped", "finished"]);
    }
    assert_eq!(
        releases.len(),
        1,
        "one release name on every host: {releases:?}"
    );

    // Preparation everywhere before any swap; swaps at least the stagger apart, in host order.
    let last_checkout = (0..3)
        .map(|h| time_of(&logs[h], "checked_out"))
        .max()
        .unwrap();
    let swaps: Vec<String> = (0..3).map(|h| time_of(&logs[h], "swapped")).collect();
    assert!(
        last_checkout < swaps[0],
        "preparation ended before the first swap"
    );
    assert!(seconds_between(&swaps[0], &swaps[1]) >= 1.0, "{swaps:?}");
    assert!(seconds_between(&swaps[1], &swaps[2]) >= 1.0, "{swaps:?}");
}

#[test]
fn a_failure_during_preparation_on_one_host_switches_no_host() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 3);
    let repo = repo(&sandbox);
    recipe(&sandbox, &hosts, &repo, "");
    assert_eq!(
        run(&sandbox, &["run", "app.rhai", "-o", "rollout_stagger=0"]).0,
        0
    );
    let before: Vec<_> = (1..=3)
        .map(|i| sandbox.tree(&hosts.deploy_rel(i), &["repo.git", ".zdd/releases.jsonl"]))
        .collect();

    repo.commit(&[("index.html", "two\n")], "two");
    recipe(
        &sandbox,
        &hosts,
        &repo,
        "before(\"deploy:shared\", || { if get(\"host\") == \"web2\" { run(\"echo disk full >&2; exit 5\"); } });\n",
    );
    let (code, stderr) = run(&sandbox, &["run", "app.rhai", "-o", "rollout_stagger=0"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error: task `before deploy:shared` failed on host `web2`"),
        "{stderr}"
    );
    assert!(stderr.contains("exited with status 5"), "{stderr}");
    assert!(stderr.contains("  | disk full"), "{stderr}");
    for i in 1..=3 {
        assert!(
            stderr.contains(&format!("now: on `web{i}`, `current` points at releases/")),
            "{stderr}"
        );
        // Nothing switched, no release left, no lock: only the log grew.
        let after = sandbox.tree(&hosts.deploy_rel(i), &["repo.git", ".zdd/releases.jsonl"]);
        assert!(after == before[i - 1], "host web{i} changed");
    }
}

#[test]
fn a_failed_health_gate_on_the_second_host_switches_the_first_back() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 3);
    let repo = repo(&sandbox);
    recipe(&sandbox, &hosts, &repo, "");
    assert_eq!(
        run(&sandbox, &["run", "app.rhai", "-o", "rollout_stagger=0"]).0,
        0
    );
    let good = sandbox.current(&hosts.deploy_rel(1)).unwrap();

    repo.commit(&[("index.html", "two\n")], "two");
    // A health URL that answers 200 (web1, web3) and one where nothing listens (web2): the real
    // health_gate() primitive fails on the second host of the cutover.
    let healthy = healthy_server();
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    recipe(
        &sandbox,
        &hosts,
        &repo,
        &format!(
            "set(\"health_url\", \"http://{healthy}/health\");\n\
             task(\"health\", || {{ if get(\"host\") == \"web2\" {{ set(\"health_url\", \"http://{closed}/health\"); }} health_gate(get(\"health_url\"), #{{checks: 2, interval: 0.05}}); }});\n\
             after(\"deploy:symlink\", \"health\");\n"
        ),
    );
    let (code, stderr) = run(&sandbox, &["run", "app.rhai", "-o", "rollout_stagger=0"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error: task `health` failed on host `web2`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "Caused by: health check failed: GET http://{closed}/health: "
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("[web1] switched back: current -> releases/"),
        "{stderr}"
    );
    assert!(
        stderr.contains("[web2] switched back: current -> releases/"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("[web3] current -> releases/"),
        "web3 was never switched: {stderr}"
    );
    for i in 1..=3 {
        let deploy = hosts.deploy_rel(i);
        assert_eq!(sandbox.current(&deploy).unwrap(), good, "web{i}");
        assert_eq!(
            sandbox.read(&format!("{deploy}/current/index.html")),
            "one\n"
        );
        assert!(!sandbox.path(&format!("{deploy}/.zdd/lock")).exists());
        assert!(
            stderr.contains(&format!(
                "now: on `web{i}`, `current` points at releases/{good}"
            )),
            "{stderr}"
        );
    }
}

#[test]
fn an_unreachable_host_stops_the_deploy_before_anything_changes() {
    let sandbox = Sandbox::new();
    let mut hosts = SshHosts::start(&sandbox, 3);
    let repo = repo(&sandbox);
    recipe(&sandbox, &hosts, &repo, "");
    hosts.stop(3);
    let port = hosts.port(3);
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 1, "{stderr}");
    // Why ssh could not connect is ssh's wording: zdd passes it on between its own words.
    assert_eq!(
        their_words(&stderr, "cannot reach host `web3`: ", " (ssh root@"),
        format!(
            "error: nothing was changed: cannot reach host `web3`: [THEIRS] (ssh root@127.0.0.1:{port})\n\nhint: check the host's settings (hostname, port, remote_user, identity_file) and that `ssh` reaches it\n"
        )
    );
    for i in 1..=3 {
        assert!(!hosts.deploy_path(i).exists(), "web{i} was touched");
    }
}

#[test]
fn hosts_and_roles_select_where_to_deploy() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 3);
    let repo = repo(&sandbox);
    let lines = format!(
        "{}.set(\"roles\", [\"web\"]);\n{}.set(\"roles\", [\"web\", \"worker\"]);\n{}.set(\"roles\", [\"worker\"]);\n",
        hosts.recipe_host(1),
        hosts.recipe_host(2),
        hosts.recipe_host(3)
    );
    sandbox.write(
        "app.rhai",
        &format!(
            "import \"deploy\";\nset(\"repository\", {});\n{lines}",
            rhai_string(&repo.str())
        ),
    );
    assert_eq!(run(&sandbox, &["run", "app.rhai", "--hosts", "web3"]).0, 0);
    assert!(sandbox.current(&hosts.deploy_rel(3)).is_some());
    assert!(!hosts.deploy_path(1).exists() && !hosts.deploy_path(2).exists());

    assert_eq!(
        run(
            &sandbox,
            &[
                "run",
                "app.rhai",
                "--roles",
                "web",
                "-o",
                "rollout_stagger=0"
            ]
        )
        .0,
        0
    );
    assert!(sandbox.current(&hosts.deploy_rel(1)).is_some());
    assert!(sandbox.current(&hosts.deploy_rel(2)).is_some());
    assert_eq!(sandbox.releases(&hosts.deploy_rel(3)).len(), 1);

    let (code, stderr) = run(&sandbox, &["run", "app.rhai", "--hosts", "web4"]);
    assert_eq!(
        (code, stderr.as_str()),
        (
            2,
            "error: no host `web4` in `app.rhai`\n\nhint: did you mean `web1`?\n"
        )
    );
    let (code, stderr) = run(&sandbox, &["run", "app.rhai", "--roles", "db"]);
    assert_eq!(
        (code, stderr.as_str()),
        (2, "error: no host has the role `db`\n\nhint: set roles on hosts with `.set(\"roles\", [\"web\"])`\n")
    );
}

#[test]
fn rollback_switches_every_host_back() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 2);
    let repo = repo(&sandbox);
    recipe(&sandbox, &hosts, &repo, "");
    assert_eq!(
        run(&sandbox, &["run", "app.rhai", "-o", "rollout_stagger=0"]).0,
        0
    );
    let first = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    // git's lock files left in a host's cache by a fetch that was killed do not stop the next.
    let git_lock = hosts.deploy_path(2).join("repo.git/refs/zdd/HEAD.lock");
    std::fs::write(&git_lock, "").unwrap();
    repo.commit(&[("index.html", "two\n")], "two");
    let (code, stderr) = run(&sandbox, &["run", "app.rhai", "-o", "rollout_stagger=0"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!git_lock.exists());
    assert_ne!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), first);

    let (code, stderr) = run(&sandbox, &["rollback", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    for i in 1..=2 {
        assert_eq!(sandbox.current(&hosts.deploy_rel(i)).unwrap(), first);
        assert!(
            stderr.contains(&format!(
                "[web{i}] rolled back: current -> releases/{first}"
            )),
            "{stderr}"
        );
    }
    let listing = sandbox.zdd(&["releases", "app.rhai"]).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.starts_with("web1\n"), "{listing}");
    assert!(listing.contains("\nweb2\n"), "{listing}");
    assert_eq!(listing.matches("rolled back").count(), 2, "{listing}");
}

/// Values with spaces, quotes, `$()`, backticks, `;` and non-ASCII go through every
/// primitive over SSH as data: paths are created as named, commands print them literally, and
/// nothing they contain is executed.
/// Names that hold spaces, quotes, `$()`, backticks, `;` and non-ASCII (paths with control
/// characters, a newline, are refused before anything runs; see bad_input): everything else a
/// path may hold.
pub(crate) struct Hostile {
    /// A file the commands in the names would create.
    pub canary: std::path::PathBuf,
    /// A value with those commands in it.
    pub evil: String,
    /// A deploy path with `evil` in its name, and the recipe's host line with it.
    pub deploy: String,
    pub host: String,
    /// A relative name for a shared dir.
    pub dir: &'static str,
    /// The app: `index.html` ("one") and `data/.keep`, one commit.
    pub repo: Repo,
}

pub(crate) fn hostile(sandbox: &Sandbox, hosts: &SshHosts) -> Hostile {
    let canary = sandbox.path("PWNED");
    let evil = format!(
        "a b 'q' \"d\" $(touch {c}) `touch {c}`; touch {c} ü",
        c = canary.display()
    );
    let deploy = format!("{}/dir {evil}", hosts.deploy_str(1));
    let host = hosts
        .recipe_host(1)
        .replace(&rhai_string(&hosts.deploy_str(1)), &rhai_string(&deploy));
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n"), ("data/.keep", "")], "one");
    Hostile {
        canary,
        evil,
        deploy,
        host,
        dir: "we ird;$(touch PWNED)`x`'\"ü",
        repo,
    }
}

#[test]
fn hostile_values_are_data_over_ssh() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let Hostile {
        canary,
        evil,
        deploy,
        host,
        dir: evil_dir,
        repo,
    } = hostile(&sandbox, &hosts);
    sandbox.write(
        "app.rhai",
        &format!(
            "import \"deploy\";\nset(\"repository\", {repo});\nset(\"shared_dirs\", [{dir}]);\nset(\"writable_dirs\", [{dir}]);\nset(\"evil\", {evil});\n{host};\n\
             task(\"echo\", || {{ let out = run(\"printf '%s' {{{{evil}}}}\"); if out != get(\"evil\") {{ throw `got ${{out}}`; }} cd(\"{{{{release_path}}}}\"); run(\"test -d {{{{release_path}}}}\"); }});\nafter(\"deploy:writable\", \"echo\");\n",
            repo = rhai_string(&repo.str()),
            dir = rhai_string(evil_dir),
            evil = rhai_string(&evil),
        ),
    );
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    let current = std::path::Path::new(&deploy).join("current");
    assert_eq!(
        std::fs::read_to_string(current.join("index.html")).unwrap(),
        "one\n"
    );
    assert!(
        current.join(evil_dir).is_symlink(),
        "the shared dir is linked under its own name"
    );
    assert!(std::path::Path::new(&deploy)
        .join("shared")
        .join(evil_dir)
        .is_dir());
    // A branch that cannot be a ref name is refused before anything runs; one that can is one
    // argument: an unknown ref, nothing run.
    for branch in [evil.as_str(), "--upload-pack=touch PWNED", "x\ny"] {
        let (code, stderr) = run(
            &sandbox,
            &["run", "app.rhai", "-o", &format!("branch={branch}")],
        );
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.starts_with("error: `branch` is `"), "{stderr}");
    }
    let (code, stderr) = run(
        &sandbox,
        &[
            "run",
            "app.rhai",
            "-o",
            "branch=$(touch${IFS}PWNED)`touch${IFS}PWNED`",
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("Caused by: unknown ref `"), "{stderr}");
    // The staged checkout and the planned rollback under that deploy path: the rollback is done
    // by the request that takes the lock (one round trip), back on the first release.
    let first = std::fs::read_link(&current).unwrap();
    repo.commit(&[("index.html", "two\n")], "two");
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(current.join("index.html")).unwrap(),
        "two\n"
    );
    assert_eq!(
        round_trips(&sandbox, &["rollback", "app.rhai", "--json"]),
        1
    );
    assert_eq!(std::fs::read_link(&current).unwrap(), first);
    assert!(!canary.exists(), "a value was executed");
    assert!(!sandbox.path("PWNED").exists());
    assert!(!hosts.home(1).join("PWNED").exists());
    assert!(!std::path::Path::new("/root/PWNED").exists());
}

/// The Laravel recipe on two hosts over SSH, each with its own real php-fpm and nginx: both
/// prepare in parallel, migrations run once, both switch to the same release and commit, and a
/// load on both sites sees no failed, stale or mixed request.
#[test]
fn the_laravel_recipe_deploys_to_two_hosts_under_load() {
    use crate::laravel_support::{fixture_repo, shared_env, Load, Stack, StackOptions};
    use std::time::{Duration, Instant};

    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 2);
    let fixture = fixture_repo(&sandbox, "repo");
    let options = || StackOptions {
        process_control_timeout: Some(10),
        document_root: false,
    };
    let stacks: Vec<Stack> = (1..=2)
        .map(|i| {
            shared_env(&sandbox, hosts.deploy_path(i));
            Stack::start(&sandbox, hosts.deploy_path(i), options())
        })
        .collect();
    let mut lines = String::new();
    for (i, stack) in (1..=2).zip(&stacks) {
        lines.push_str(&format!(
            "{}.set(\"roles\", [\"web\"]).set(\"health_url\", {}).set(\"fpm_pid_file\", {}).set(\"fpm_socket\", {});\n",
            hosts.recipe_host(i),
            rhai_string(&stack.url("/health")),
            rhai_string(&stack.fpm_pid_file.display().to_string()),
            rhai_string(&stack.fpm_socket.display().to_string()),
        ));
    }
    let recipe = format!("{}/recipes/laravel", env!("CARGO_MANIFEST_DIR"));
    sandbox.write(
        "app.rhai",
        &format!(
            "import {};\nset(\"repository\", {});\n{lines}",
            rhai_string(&recipe),
            rhai_string(&fixture.str())
        ),
    );
    let deploy = |branch: &str| {
        run(
            &sandbox,
            &[
                "run",
                "app.rhai",
                "--roles",
                "web",
                "-o",
                &format!("branch={branch}"),
                "-o",
                "health_checks=3",
                "-o",
                "health_interval=0.1",
                "-o",
                "health_expect_release=true",
                "-o",
                "rollout_stagger=0.5",
            ],
        )
    };
    let (code, stderr) = deploy("v1");
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("[web1] artisan:migrate ... ok"), "{stderr}");
    assert!(
        !stderr.contains("[web2] artisan:migrate"),
        "migrations run once: {stderr}"
    );

    let loads: Vec<Load> = stacks.iter().map(Load::start).collect();
    for load in &loads {
        load.wait_for(10, Duration::from_secs(30));
    }
    let (code, stderr) = deploy("v2");
    assert_eq!(code, 0, "{stderr}");
    let done = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let release = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    assert_eq!(sandbox.current(&hosts.deploy_rel(2)).unwrap(), release);
    for i in 1..=2 {
        assert_eq!(
            sandbox.read(&format!("{}/current/REVISION", hosts.deploy_rel(i))),
            format!("{}\n", fixture.commit_of("v2"))
        );
    }
    for (load, stack) in loads.into_iter().zip(&stacks) {
        let report = load.stop();
        report.assert_clean();
        report.assert_from_after(done, &release);
        let (_, _, body) = stack.get("/version");
        assert_eq!(body.trim(), format!("v2 {release}"));
    }
}

/// A tiny HTTP server on loopback answering `200 ok` to every request (for health gates); it
/// lives until the test process ends.
fn healthy_server() -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buffer = [0u8; 2048];
            let _ = stream.read(&mut buffer);
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
        }
    });
    address
}

/// `round_trips` of the `finished` event of a `--json` run.
/// Bounded: a remote shell that waits for input it never gets would hang the run, and the
/// test must fail instead.
pub(crate) fn round_trips(sandbox: &Sandbox, args: &[&str]) -> u64 {
    let limit = std::time::Duration::from_secs(120);
    let mut child = sandbox
        .zdd(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let output = child.wait_with_output().unwrap();
            panic!(
                "`zdd {}` still running after {limit:?}\n{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|event| event["event"] == "finished")
        .and_then(|event| event["round_trips"].as_u64())
        .unwrap_or_else(|| panic!("no round_trips in {stdout}"))
}

/// The transport pipelines: what decides nothing is sent without waiting, and the host's
/// state is read once, with the lock. The stdlib deploy to one host waits for it twice after
/// the connection is up (the lock with the state; the end), once when the run before planned
/// it (`planned_deploy`), a rollback right after it once (DESIGN.md's targets: 4 and 2), and a
/// failure in a request that nobody waited for is still reported as the step that sent it,
/// with nothing after it done.
#[test]
fn one_host_is_waited_for_a_few_times_per_deploy() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    recipe(&sandbox, &hosts, &repo, "");
    let deploy = ["run", "app.rhai", "--json"];
    let first = round_trips(&sandbox, &deploy);
    repo.commit(&[("index.html", "two\n")], "two");
    crate::planned_deploy::after_the_last_name(&sandbox, &hosts);
    let second = round_trips(&sandbox, &deploy);
    assert_eq!((first, second), (2, 1), "round trips of two deploys");
    let rollback = round_trips(&sandbox, &["rollback", "app.rhai", "--json"]);
    assert_eq!(rollback, 1, "a rollback right after a deploy");

    // `shared` is a file: the `mkdir -p` deploy:prepare sent without waiting fails, and is
    // found by the next wait (in deploy:release or later); it is reported as deploy:prepare's,
    // and nothing sent after it ran.
    let live = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    repo.commit(&[("index.html", "three\n")], "three");
    let shared = hosts.deploy_path(1).join("shared");
    std::fs::rename(&shared, hosts.deploy_path(1).join("shared.aside")).unwrap();
    std::fs::write(&shared, "not a directory").unwrap();
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("task `deploy:prepare` failed on host `web1`"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot create directory"), "{stderr}");
    assert_eq!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), live);
    assert!(!hosts.deploy_path(1).join(".zdd/lock").exists());
    let names: Vec<String> = std::fs::read_dir(hosts.deploy_path(1).join("releases"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

/// Over SSH the checkout and the shared links are sent without waiting: an unknown ref, or a
/// shared file that is nowhere, is found at the end of the run, and still reported as the
/// step that sent it, with zdd's words and hint, the host put back and the lock released.
#[test]
fn a_checkout_or_shared_link_that_fails_unseen_names_its_step_and_hint() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    recipe(&sandbox, &hosts, &repo, "");
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    let live = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    // The swap is reported once the host has made it (at the end, over SSH).
    assert!(
        stderr.contains(&format!("[web1] current -> releases/{live}")),
        "{stderr}"
    );
    let releases = |hosts: &SshHosts| {
        std::fs::read_dir(hosts.deploy_path(1).join("releases"))
            .unwrap()
            .count()
    };

    let (code, stderr) = run(&sandbox, &["run", "app.rhai", "-o", "branch=nope"]);
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
    assert_eq!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), live);
    assert!(!hosts.deploy_path(1).join(".zdd/lock").exists());
    assert_eq!(releases(&hosts), 1, "the release of the failed run is gone");

    recipe(
        &sandbox,
        &hosts,
        &repo,
        "set(\"shared_files\", [\"config/app.ini\"]);\n",
    );
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("task `deploy:shared` failed on host `web1`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("shared file `config/app.ini` is missing"),
        "{stderr}"
    );
    // The swap was sent after the failed request: it never happened, and is never reported.
    assert!(!stderr.contains("] current -> releases/"), "{stderr}");
    assert!(
        stderr.contains("on host `web1` before deploying (zdd never creates an empty one)"),
        "{stderr}"
    );
    assert_eq!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), live);
    assert!(!hosts.deploy_path(1).join(".zdd/lock").exists());
    assert_eq!(releases(&hosts), 1);

    // A symlink the repository brings on the way to a shared entry: refused, nothing linked.
    recipe(
        &sandbox,
        &hosts,
        &repo,
        "set(\"shared_dirs\", [\"data/uploads\"]);\n",
    );
    let outside = sandbox.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, repo.path.join("data")).unwrap();
    repo.commit(&[], "data is a link");
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(
            "`shared_dirs` entry `data/uploads`: `data` in the release is a symlink (to "
        ),
        "{stderr}"
    );
    assert!(stderr.contains("zdd never acts through one"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing made through the link"
    );
    assert_eq!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), live);
    assert!(!hosts.deploy_path(1).join(".zdd/lock").exists());
}

/// The lock is removed at the end only when it still holds exactly what this run wrote: one
/// that another run took meanwhile (after a `zdd unlock`), or one changed by a byte, is left
/// in place, with a warning that says so (over SSH the removal is sent without waiting, and
/// the host compares).
#[test]
fn a_lock_that_changed_during_the_run_is_left_in_place() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    let lock = hosts.deploy_path(1).join(".zdd/lock");
    let other = r#"{"user":"alice","machine":"elsewhere","pid":1,"time":"2026-12-02T00:00:00Z","ref":"main"}"#;
    for (replacement, what) in [
        (other.to_string(), "another run's lock"),
        // This run's own lock with a newline added: not exactly what it wrote.
        (String::from("SAME\n"), "its own lock plus a newline"),
    ] {
        let command = if replacement == "SAME\n" {
            "printf '\\n' >> {{deploy_path}}/.zdd/lock".to_string()
        } else {
            format!(
                "printf '%s' {} > {{{{deploy_path}}}}/.zdd/lock",
                rhai_quote_shell(&replacement)
            )
        };
        recipe(
            &sandbox,
            &hosts,
            &repo,
            &format!(
                "after(\"deploy:symlink\", || {{ run({}); }});\n",
                rhai_string(&command)
            ),
        );
        let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
        assert_eq!(code, 0, "{what}: {stderr}");
        assert!(
            stderr.contains("was left in place: it no longer holds what this run wrote"),
            "{what}: {stderr}"
        );
        let now = std::fs::read_to_string(&lock).unwrap_or_else(|e| panic!("{what}: {e}"));
        if replacement == "SAME\n" {
            assert!(now.ends_with("}\n"), "{what}: {now}");
        } else {
            assert_eq!(now, other, "{what}");
        }
        std::fs::remove_file(&lock).unwrap();
    }
}

/// `value` as one shell word (single quotes), for a test's command.
fn rhai_quote_shell(value: &str) -> String {
    format!("'{}'", value.replace('\'', "'\\''"))
}

/// One SSH host with the stdlib deploy of `repo` (no extra lines), deployed once. (Bound in
/// this order, the host's sshd stops before its sandbox goes.)
fn deployed_once() -> (Sandbox, SshHosts, Repo) {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    recipe(&sandbox, &hosts, &repo, "");
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    (sandbox, hosts, repo)
}

/// The fetch starts with the lock (in the same request, on the host's own time) and only
/// under this run's lock: a run refused by another run's lock fetches nothing, and a
/// repository that cannot be fetched fails `deploy:update_code` in zdd's words, as before.
#[test]
fn the_fetch_starts_with_the_lock_and_only_under_it() {
    let (sandbox, hosts, repo) = deployed_once();
    let cache = hosts.deploy_path(1).join("repo.git");
    let has = |commit: &str| {
        std::process::Command::new("git")
            .arg(format!("--git-dir={}", cache.display()))
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .status()
            .unwrap()
            .success()
    };

    // Another run holds the lock: refused (exit 3), and the new commit was not fetched.
    let two = repo.commit(&[("index.html", "two\n")], "two");
    let lock = hosts.deploy_path(1).join(".zdd/lock");
    let other = r#"{"user":"alice","machine":"elsewhere","pid":1,"time":"2026-12-02T00:00:00Z","ref":"main"}"#;
    std::fs::write(&lock, other).unwrap();
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(!has(&two), "fetched under another run's lock");
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), other);
    std::fs::remove_file(&lock).unwrap();

    // Our lock: fetched, checked out.
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(has(&two));
    let live = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    let revision = sandbox.read(&format!("{}/releases/{live}/REVISION", hosts.deploy_rel(1)));
    assert_eq!(revision.trim(), two);

    // A repository that is not there: the early fetch fails quietly, the checkout's own
    // fetch says why, the host is put back.
    let missing = sandbox.str("nowhere");
    let (code, stderr) = run(
        &sandbox,
        &["run", "app.rhai", "-o", &format!("repository={missing}")],
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("task `deploy:update_code` failed on host `web1`"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot fetch `"), "{stderr}");
    assert!(
        stderr.contains("hint: set `repository` to a git URL or the path of a git repository"),
        "{stderr}"
    );
    assert_eq!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), live);
    assert!(!lock.exists());
}

/// git's own lock files in the host's cache, left by a fetch that was killed (kill -9 in
/// `faults`), fail the fetch that meets them: the fetch then removes them and runs again, on
/// the planned path and on the one that reads first.
#[test]
fn a_fetch_killed_before_does_not_fail_the_next_deploy() {
    let (sandbox, hosts, repo) = deployed_once();
    let cache = hosts.deploy_path(1).join("repo.git");
    let locks = [
        cache.join("refs/zdd/HEAD.lock"),
        cache.join("refs/heads/main.lock"),
    ];
    for (i, trips) in [(0, 1), (1, 2)] {
        if trips == 2 {
            std::fs::remove_file(hosts.deploy_path(1).join(".zdd/next-run")).unwrap();
        }
        let text = format!("{i}\n");
        let commit = repo.commit(&[("index.html", &text)], &text);
        for lock in &locks {
            std::fs::write(lock, "").unwrap();
        }
        crate::planned_deploy::after_the_last_name(&sandbox, &hosts);
        assert_eq!(
            round_trips(&sandbox, &["run", "app.rhai", "--json"]),
            trips,
            "deploy {i}"
        );
        let live = sandbox.current(&hosts.deploy_rel(1)).unwrap();
        let revision = sandbox.read(&format!("{}/releases/{live}/REVISION", hosts.deploy_rel(1)));
        assert_eq!(revision.trim(), commit, "deploy {i}");
        for lock in &locks {
            assert!(!lock.exists(), "{} was left", lock.display());
        }
    }
}

/// A rollback right after a deploy waits for the host once: the deploy left what the next
/// rollback will do (`.zdd/next-run`), and the request that takes the lock does it when
/// the host is still exactly as that run left it. When it is not (a second rollback, the log
/// appended to by hand, a release directory made by another tool, a plan tampered with, a
/// release asked for), nothing is done on the plan's word and the rollback reads first (two).
#[test]
fn a_rollback_after_a_deploy_is_one_round_trip_and_only_on_an_unchanged_host() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    recipe(&sandbox, &hosts, &repo, "");
    let root = hosts.deploy_path(1);
    let rel = hosts.deploy_rel(1);
    let deploy = |text: &str| {
        repo.commit(&[("index.html", text)], text);
        let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
        assert_eq!(code, 0, "{stderr}");
        sandbox.current(&rel).unwrap()
    };
    let rollback = |args: &[&str]| -> (u64, String) {
        let mut all = vec!["rollback", "app.rhai", "--json"];
        all.extend_from_slice(args);
        let trips = round_trips(&sandbox, &all);
        (trips, sandbox.current(&rel).unwrap())
    };
    let a = deploy("a\n");
    let b = deploy("b\n");
    assert!(root.join(".zdd/next-run").exists());

    // Planned: one round trip, the same result and record as without a plan.
    assert_eq!(rollback(&[]), (1, a.clone()));
    assert!(!root.join(".zdd/lock").exists(), "the lock is released");
    assert!(!root.join(".zdd/next-run").exists(), "a plan is used once");
    let last = events(&sandbox, &hosts, 1).pop().unwrap();
    assert_eq!((last.0.as_str(), last.1.as_str()), ("rollback", a.as_str()));
    let log = sandbox.read(&format!("{rel}/.zdd/releases.jsonl"));
    let record: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(record["from"], b.as_str(), "{record}");
    // `zdd releases` reads it as any rollback: `b` is rolled back.
    let (code, _) = run(&sandbox, &["releases", "app.rhai"]);
    assert_eq!(code, 0);

    // No plan left: the rollback reads the state first (and `a` has no good release before it).
    let (code, stderr) = run(&sandbox, &["rollback", "app.rhai"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("nothing to roll back to"), "{stderr}");
    assert_eq!(sandbox.current(&rel).unwrap(), a);

    // The log appended to since the plan was made: the plan does not hold.
    let c = deploy("c\n");
    let _d = deploy("d\n");
    let extra = r#"{"event":"failed","release":"20000101T000000Z","user":"x","time":"2000-01-01T00:00:00Z"}"#;
    let mut log = sandbox.read(&format!("{rel}/.zdd/releases.jsonl"));
    log.push_str(extra);
    log.push('\n');
    std::fs::write(root.join(".zdd/releases.jsonl"), log).unwrap();
    assert_eq!(rollback(&[]), (2, c.clone()));

    // The log edited in place, its size kept: the plan does not hold either (its CRC).
    let _x = deploy("x\n");
    let log = sandbox.read(&format!("{rel}/.zdd/releases.jsonl"));
    let at = log.find("\"user\":\"").unwrap() + "\"user\":\"".len();
    let edited = format!("{}~{}", &log[..at], &log[at + 1..]);
    assert_eq!(edited.len(), log.len());
    std::fs::write(root.join(".zdd/releases.jsonl"), edited).unwrap();
    assert_eq!(rollback(&[]).0, 2);

    // A release directory another tool made since: the plan does not hold.
    let _e = deploy("e\n");
    std::fs::create_dir(root.join("releases/20000101T000000Z")).unwrap();
    let (trips, now) = rollback(&[]);
    assert_eq!(trips, 2);
    assert_eq!(now, c, "back past `e` and `d` (rolled back before)");
    std::fs::remove_dir(root.join("releases/20000101T000000Z")).unwrap();

    // A plan tampered with (a target outside `releases/`, a name that is not one, shell):
    // refused by the host's check, nothing done on its word, the rollback reads first.
    for (n, hostile) in [
        "..",
        "../../etc",
        "x; touch /tmp/zdd-pwned",
        "$(touch /tmp/zdd-pwned)",
    ]
    .into_iter()
    .enumerate()
    {
        let before = sandbox.current(&rel).unwrap();
        let new = deploy(&format!("tampered {n}\n"));
        let plan = root.join(".zdd/next-run");
        let text = std::fs::read_to_string(&plan).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        assert_eq!(
            lines[2], new,
            "the plan leaves the release just made: {text}"
        );
        lines[1] = hostile.to_string();
        std::fs::write(&plan, lines.join("\n") + "\n").unwrap();
        assert_eq!(rollback(&[]), (2, before), "with `{hostile}` in the plan");
    }
    assert!(!std::path::Path::new("/tmp/zdd-pwned").exists());

    // A release asked for: the plan is not used.
    let _g = deploy("g\n");
    assert_eq!(rollback(&["--to", &c]), (2, c));
}

/// The checkout the fetch stages on the host while the lock's answer travels back
/// (`.zdd/.checkout.stage.<pid>`) becomes the release only when it is of the commit checked out
/// and the release is still empty: a hook that put a file into the release first, or a branch
/// set inside a task, get the export of the right commit as before. Nothing staged is left
/// behind, and a stage a killed run left is removed by the next run.
#[test]
fn the_staged_checkout_is_used_only_for_its_commit_and_an_empty_release() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    let root = hosts.deploy_path(1);
    let rel = hosts.deploy_rel(1);
    // The release directory's inode when deploy:release made it, and after the deploy: moved
    // in from the stage, the directory is another one.
    let inode = "after(\"deploy:release\", || run(\"stat -c %i {{release_path}} > {{deploy_path}}/made\"));\n";
    let deploy = |extra: &str| {
        recipe(&sandbox, &hosts, &repo, &format!("{inode}{extra}"));
        let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
        assert_eq!(code, 0, "{stderr}");
        let release = root.join("releases").join(sandbox.current(&rel).unwrap());
        let made = std::fs::read_to_string(root.join("made")).unwrap();
        let now = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&release).unwrap());
        let leftovers: Vec<String> = std::fs::read_dir(root.join(".zdd"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains(".stage."))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        (release, made.trim() != now.to_string())
    };

    let one = repo.commit(&[("index.html", "one\n")], "one");
    let (release, staged) = deploy("");
    assert!(staged, "the staged checkout became the release");
    assert_eq!(
        std::fs::read_to_string(release.join("index.html")).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(release.join("REVISION")).unwrap(),
        format!("{one}\n")
    );

    // A file put into the release before the checkout: kept, and the tree exported around it.
    repo.commit(&[("index.html", "two\n")], "two");
    let (release, staged) =
        deploy("before(\"deploy:update_code\", || run(\"touch {{release_path}}/marker\"));\n");
    assert!(!staged);
    assert!(release.join("marker").exists());
    assert_eq!(
        std::fs::read_to_string(release.join("index.html")).unwrap(),
        "two\n"
    );

    // The branch set inside a task, after the fetch started: that branch is checked out.
    repo.branch("other");
    repo.commit(&[("index.html", "three\n")], "three");
    let other = git(&repo.path, &["rev-parse", "other"]).trim().to_string();
    let (release, staged) =
        deploy("before(\"deploy:update_code\", || set(\"branch\", \"other\"));\n");
    assert!(!staged);
    assert_eq!(
        std::fs::read_to_string(release.join("REVISION")).unwrap(),
        format!("{other}\n")
    );
    assert_eq!(
        std::fs::read_to_string(release.join("index.html")).unwrap(),
        "two\n"
    );

    // A stage a killed run left (its process gone): removed by the next run.
    let left = root.join(".zdd/.checkout.stage.999999");
    std::fs::create_dir_all(left.join("app")).unwrap();
    std::fs::write(left.join("app/file"), "x").unwrap();
    deploy("");
    assert!(!left.exists());
}

/// The plan is trusted only as far as the host can check it: a plan whose facts all still hold
/// but whose target was edited by hand (someone who can write `.zdd/` can also move `current`)
/// is carried out on the host, and zdd, which checks the plan against the state read in the
/// same request, says so: the run fails, names the release `current` now points at and the one
/// the log picks, and leaves no lock.
#[test]
fn a_plan_edited_to_another_release_is_caught_and_named() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    recipe(&sandbox, &hosts, &repo, "");
    let root = hosts.deploy_path(1);
    let rel = hosts.deploy_rel(1);
    let mut made = Vec::new();
    for text in ["a\n", "b\n", "c\n"] {
        repo.commit(&[("index.html", text)], text);
        let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
        assert_eq!(code, 0, "{stderr}");
        made.push(sandbox.current(&rel).unwrap());
    }
    let plan = root.join(".zdd/next-run");
    let text = std::fs::read_to_string(&plan).unwrap();
    assert_eq!(text.lines().nth(1), Some(made[1].as_str()), "{text}");
    std::fs::write(&plan, text.replacen(&made[1], &made[0], 1)).unwrap();

    let (code, stderr) = run(&sandbox, &["rollback", "app.rhai"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "`current` was switched to releases/{}, as the last run planned, but the deploy path changed since: the release log now picks releases/{}",
            made[0], made[1]
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("zdd rollback app.rhai --to NAME"),
        "{stderr}"
    );
    assert_eq!(sandbox.current(&rel).unwrap(), made[0]);
    assert!(!root.join(".zdd/lock").exists());
    // The way out the hint names works.
    let (code, stderr) = run(&sandbox, &["rollback", "app.rhai", "--to", &made[1]]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(sandbox.current(&rel).unwrap(), made[1]);
}
