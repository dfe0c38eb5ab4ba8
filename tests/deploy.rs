//! Deploying again and again: releases kept, shared data kept, the release log, `zdd releases`,
//! rollback and release names.

use serde_json::Value;

use crate::support::{is_release, recipe, scrub, Repo, Sandbox};

/// The stdlib deploy with a shared dir (`storage`) and a shared file (`.env`).
const SHARED: &str = "set(\"shared_dirs\", [\"storage\"]);\nset(\"shared_files\", [\".env\"]);\n";

fn setup(extra: &str) -> (Sandbox, Repo) {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    sandbox.write("app.rhai", &recipe(&repo.str(), &sandbox.str("app"), extra));
    (sandbox, repo)
}

/// Deploy with `args` after `zdd run deploy.rhai`; returns the new current release.
fn deploy(sandbox: &Sandbox, args: &[&str]) -> String {
    let mut all = vec!["run", "app.rhai"];
    all.extend_from_slice(args);
    sandbox.run(&all).success();
    sandbox.current("app").expect("current is a link")
}

/// The events of the log for one release, as `(event, field)` pairs of interest.
fn events_of(log: &[Value], release: &str) -> Vec<String> {
    log.iter()
        .filter(|e| e["release"] == release)
        .map(|e| e["event"].as_str().unwrap().to_string())
        .collect()
}

fn event<'a>(log: &'a [Value], release: &str, name: &str) -> &'a Value {
    log.iter()
        .find(|e| e["release"] == release && e["event"] == name)
        .unwrap_or_else(|| panic!("no `{name}` event for {release} in {log:#?}"))
}

#[test]
fn seven_deploys_keep_five_releases_the_shared_data_and_the_story() {
    let (sandbox, repo) = setup(SHARED);
    sandbox.write("app/shared/.env", "APP_KEY=secret\n");

    let mut commits = Vec::new();
    let mut refs = Vec::new();
    let mut names = Vec::new();
    for i in 0..7 {
        let mut files = vec![("index.html", format!("v{i}\n"))];
        if i == 0 {
            files.push(("storage/seed.txt", "seed\n".to_string()));
        }
        let files: Vec<(&str, &str)> = files.iter().map(|(n, c)| (*n, c.as_str())).collect();
        let commit = repo.commit(&files, &format!("v{i}"));
        // Each deploy names its commit a different way.
        let reference = match i {
            1 => "main".to_string(),
            2 => {
                repo.tag("v2");
                "v2".to_string()
            }
            3 => commit.clone(),
            4 => commit[..7].to_string(),
            5 => {
                // The branch stays on this commit while `main` moves on.
                repo.branch("feature");
                repo.commit(&[("index.html", "not deployed\n")], "main moves on");
                "feature".to_string()
            }
            _ => "HEAD".to_string(),
        };
        let option = format!("branch={reference}");
        let args: Vec<&str> = if reference == "HEAD" {
            vec![]
        } else {
            vec!["-o", &option]
        };
        let name = deploy(&sandbox, &args);
        assert_eq!(sandbox.read("app/current/index.html"), format!("v{i}\n"));
        assert_eq!(sandbox.read("app/current/REVISION"), format!("{commit}\n"));
        // Something the application writes between deploys.
        sandbox.write(&format!("app/shared/storage/upload-{i}.txt"), "kept\n");
        commits.push(commit);
        refs.push(reference);
        names.push(name);
    }

    // Names sort in deploy order, and `current` is the last.
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, names, "release names are distinct and sorted");
    assert_eq!(sandbox.current("app").as_deref(), Some(names[6].as_str()));
    assert_eq!(sandbox.releases("app"), names[2..].to_vec());

    // Shared data: the seed of the first release, every upload, and the shared .env.
    let storage = std::fs::read_link(sandbox.path("app/current/storage")).unwrap();
    assert_eq!(storage.display().to_string(), "../../shared/storage");
    let env = std::fs::read_link(sandbox.path("app/current/.env")).unwrap();
    assert_eq!(env.display().to_string(), "../../shared/.env");
    assert_eq!(sandbox.read("app/current/.env"), "APP_KEY=secret\n");
    assert_eq!(sandbox.read("app/current/storage/seed.txt"), "seed\n");
    for i in 0..7 {
        assert_eq!(
            sandbox.read(&format!("app/current/storage/upload-{i}.txt")),
            "kept\n"
        );
    }
    assert!(!sandbox.path("app/.zdd/lock").exists());

    // The release log tells the story.
    let log = sandbox.log("app");
    for (i, name) in names.iter().enumerate() {
        let expected: &[&str] = if i < 2 {
            &[
                "created",
                "checked_out",
                "swapped",
                "finished",
                "removing",
                "removed",
            ]
        } else {
            &["created", "checked_out", "swapped", "finished"]
        };
        assert_eq!(events_of(&log, name), expected, "events of release {i}");
        assert_eq!(event(&log, name, "created")["ref"], refs[i].as_str());
        assert_eq!(event(&log, name, "checked_out")["ref"], refs[i].as_str());
        assert_eq!(
            event(&log, name, "checked_out")["commit"],
            commits[i].as_str()
        );
        assert_eq!(event(&log, name, "finished")["commit"], commits[i].as_str());
        let from = &event(&log, name, "swapped")["from"];
        match i {
            0 => assert!(from.is_null(), "{from}"),
            _ => assert_eq!(from, names[i - 1].as_str()),
        }
        assert_eq!(event(&log, name, "created")["user"], "tester");
    }
    // Release 0 and 1 were removed by the deploys that made room (6 and 7 good releases).
    let removed: Vec<&str> = log
        .iter()
        .filter(|e| e["event"] == "removed")
        .map(|e| e["release"].as_str().unwrap())
        .collect();
    assert_eq!(removed, [names[0].as_str(), names[1].as_str()]);

    // `zdd releases`: the table, exactly.
    let run = sandbox.run(&["releases", "app.rhai"]);
    run.success();
    assert_eq!(run.stderr, "");
    let mut expected = String::from("localhost\n");
    expected.push_str(
        "  RELEASE            STATUS       REF              COMMIT       CREATED              USER\n",
    );
    for i in 2..7 {
        let created = event(&log, &names[i], "created")["time"]
            .as_str()
            .unwrap()
            .to_string();
        let shown_ref = match i {
            3 => &commits[3][..12],
            _ => refs[i].as_str(),
        };
        expected.push_str(&format!(
            "{} {}   good         {shown_ref:<16} {} {}  tester\n",
            if i == 6 { "*" } else { " " },
            names[i],
            &commits[i][..12],
            &created[..19],
        ));
    }
    assert_eq!(run.stdout, expected);

    // `zdd releases --json`: one object per release, current marked.
    let run = sandbox.run(&["releases", "app.rhai", "--json"]);
    run.success();
    let lines = run.json_lines();
    assert_eq!(lines.len(), 5);
    for (line, i) in lines.iter().zip(2..7) {
        assert_eq!(line["host"], "localhost");
        assert_eq!(line["release"], names[i].as_str());
        assert_eq!(line["status"], "good");
        assert_eq!(line["ref"], refs[i].as_str());
        assert_eq!(line["commit"], commits[i].as_str());
        assert_eq!(line["user"], "tester");
        assert_eq!(line["current"], i == 6);
    }
}

#[test]
fn keep_releases_from_the_command_line() {
    let (sandbox, repo) = setup("");
    let mut names = Vec::new();
    for i in 0..4 {
        repo.commit(&[("index.html", format!("v{i}\n").as_str())], "change");
        names.push(deploy(&sandbox, &["-o", "keep_releases=2"]));
    }
    assert_eq!(sandbox.releases("app"), names[2..].to_vec());
    assert_eq!(sandbox.current("app").as_deref(), Some(names[3].as_str()));

    // Back to the default of five: nothing more is removed.
    names.push(deploy(&sandbox, &[]));
    assert_eq!(sandbox.releases("app"), names[2..].to_vec());
}

#[test]
fn rollback_twice_goes_back_two_good_releases_and_never_picks_them_again() {
    let (sandbox, repo) = setup("");
    let mut names = Vec::new();
    for i in 0..3 {
        repo.commit(&[("index.html", format!("v{i}\n").as_str())], "change");
        names.push(deploy(&sandbox, &[]));
    }

    let run = sandbox.run(&["rollback", "app.rhai"]);
    run.success();
    assert_eq!(
        scrub(&run.stderr),
        "[localhost] rolled back: current -> releases/[RELEASE] (was [RELEASE])\n\
         [localhost] rollback ... ok ([DURATION])\n\
         rollback: done on localhost in [DURATION]\n"
    );
    assert!(run.stderr.contains(&format!(
        "current -> releases/{} (was {})",
        names[1], names[2]
    )));
    assert_eq!(sandbox.current("app").as_deref(), Some(names[1].as_str()));
    assert_eq!(sandbox.read("app/current/index.html"), "v1\n");

    sandbox.run(&["rollback", "app.rhai"]).success();
    assert_eq!(sandbox.current("app").as_deref(), Some(names[0].as_str()));
    assert_eq!(sandbox.read("app/current/index.html"), "v0\n");
    assert!(!sandbox.path("app/.zdd/lock").exists());

    // The log records both, and the releases left are no longer good.
    let log = sandbox.log("app");
    let rollbacks: Vec<(&str, &str)> = log
        .iter()
        .filter(|e| e["event"] == "rollback")
        .map(|e| (e["release"].as_str().unwrap(), e["from"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rollbacks,
        [
            (names[1].as_str(), names[2].as_str()),
            (names[0].as_str(), names[1].as_str())
        ]
    );
    let statuses: Vec<(String, String, bool)> = sandbox
        .run(&["releases", "app.rhai", "--json"])
        .json_lines()
        .iter()
        .map(|l| {
            (
                l["release"].as_str().unwrap().to_string(),
                l["status"].as_str().unwrap().to_string(),
                l["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        statuses,
        [
            (names[0].clone(), "good".to_string(), true),
            (names[1].clone(), "rolled_back".to_string(), false),
            (names[2].clone(), "rolled_back".to_string(), false),
        ]
    );

    // A third rollback has nothing older to go to.
    let run = sandbox.run(&["rollback", "app.rhai", "-q"]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        format!(
            "error: task `rollback` failed on host `localhost`
  --> stdlib/deploy.rhai:55:5
   |
55 |     rollback();
   |     ^
Caused by: nothing to roll back to: no good release older than `{}`
now: on `localhost`, `current` points at releases/{}

hint: `zdd releases app.rhai` lists the releases and their status
",
            names[0], names[0]
        )
    );
    assert_eq!(sandbox.current("app").as_deref(), Some(names[0].as_str()));
    assert!(!sandbox.path("app/.zdd/lock").exists());

    // A new deploy, then a rollback: the rolled-back releases are skipped.
    repo.commit(&[("index.html", "v3\n")], "change");
    let fourth = deploy(&sandbox, &[]);
    assert_eq!(sandbox.read("app/current/index.html"), "v3\n");
    sandbox.run(&["rollback", "app.rhai"]).success();
    assert_eq!(sandbox.current("app").as_deref(), Some(names[0].as_str()));
    assert!(sandbox.releases("app").contains(&fourth));
}

#[test]
fn rollback_to_a_named_release() {
    let (sandbox, repo) = setup("");
    let mut names = Vec::new();
    for i in 0..3 {
        repo.commit(&[("index.html", format!("v{i}\n").as_str())], "change");
        names.push(deploy(&sandbox, &[]));
    }
    let run = sandbox.run(&["rollback", "app.rhai", "--to", &names[0], "-q"]);
    run.success();
    assert_eq!(
        run.stderr,
        format!(
            "[localhost] rolled back: current -> releases/{} (was {})\n",
            names[0], names[2]
        )
    );
    assert_eq!(sandbox.current("app").as_deref(), Some(names[0].as_str()));
    assert_eq!(sandbox.read("app/current/index.html"), "v0\n");

    // Already there.
    let run = sandbox.run(&["rollback", "app.rhai", "--to", &names[0], "-q"]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        format!(
            "error: task `rollback` failed on host `localhost`
  --> stdlib/deploy.rhai:55:5
   |
55 |     rollback();
   |     ^
Caused by: release `{0}` is already current
now: on `localhost`, `current` points at releases/{0}
",
            names[0]
        )
    );

    // No such release.
    let run = sandbox.run(&["rollback", "app.rhai", "--to", "20200101T000000Z", "-q"]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        format!(
            "error: task `rollback` failed on host `localhost`
  --> stdlib/deploy.rhai:55:5
   |
55 |     rollback();
   |     ^
Caused by: no release `20200101T000000Z` on this host
now: on `localhost`, `current` points at releases/{}

hint: `zdd releases app.rhai` lists the releases that can be picked
",
            names[0]
        )
    );

    // Forward again, to the newest.
    sandbox
        .run(&["rollback", "app.rhai", "--to", &names[2]])
        .success();
    assert_eq!(sandbox.read("app/current/index.html"), "v2\n");
    assert!(!sandbox.path("app/.zdd/lock").exists());
}

#[test]
fn rollback_with_nothing_to_roll_back_to_fails() {
    let (sandbox, repo) = setup("");
    repo.commit(&[("index.html", "v0\n")], "one");

    // Never deployed.
    let run = sandbox.run(&["rollback", "app.rhai", "-q"]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        "error: task `rollback` failed on host `localhost`
  --> stdlib/deploy.rhai:55:5
   |
55 |     rollback();
   |     ^
Caused by: nothing to roll back to: there is no release
now: on `localhost`, there is no `current` release

hint: `zdd releases app.rhai` lists the releases and their status
"
    );
    assert!(!sandbox.path("app/current").exists());
    assert!(!sandbox.path("app/.zdd/lock").exists());

    // One release only.
    let only = deploy(&sandbox, &[]);
    let before = sandbox.tree("app", &[".zdd/releases.jsonl"]);
    let run = sandbox.run(&["rollback", "app.rhai", "-q"]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        format!(
            "error: task `rollback` failed on host `localhost`
  --> stdlib/deploy.rhai:55:5
   |
55 |     rollback();
   |     ^
Caused by: nothing to roll back to: no good release older than `{only}`
now: on `localhost`, `current` points at releases/{only}

hint: `zdd releases app.rhai` lists the releases and their status
"
        )
    );
    assert_eq!(sandbox.tree("app", &[".zdd/releases.jsonl"]), before);
}

#[test]
fn deploys_in_the_same_second_get_distinct_sorted_names() {
    let (sandbox, repo) = setup("");
    repo.commit(&[("index.html", "v0\n")], "one");
    let started = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(deploy(&sandbox, &[]));
    }
    // A failed deploy's name is never given again either.
    sandbox.write(
        "failing.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            "after(\"deploy:update_code\", || { throw \"no\"; });\n",
        ),
    );
    sandbox.run(&["run", "failing.rhai", "-q"]).expect(1);
    let failed = sandbox
        .log("app")
        .iter()
        .rev()
        .find(|e| e["event"] == "failed")
        .map(|e| e["release"].as_str().unwrap().to_string())
        .expect("a failed release in the log");
    names.push(failed);
    names.push(deploy(&sandbox, &[]));

    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, names, "distinct and in deploy order");
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    for name in &names {
        assert!(is_release(name), "{name}");
        let at = time::PrimitiveDateTime::parse(name, format)
            .unwrap()
            .assume_utc()
            .unix_timestamp();
        // Names are UTC times: no earlier than the start, and bumped by at most a second each.
        assert!(at >= started - 1 && at <= started + 60, "{name}");
    }
    let mut on_disk = names.clone();
    on_disk.remove(3);
    assert_eq!(sandbox.releases("app"), on_disk);
}
