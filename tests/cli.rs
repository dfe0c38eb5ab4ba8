//! The command line: `tasks`, `check`, `--plan`, `--json`, `-v`/`-q`, `--help`, and how a recipe
//! customises the stdlib (redefined tasks, local modules, `set`, `-o`, `{{key}}`).

use crate::support::{recipe, scrub, Repo, Sandbox};

fn setup(extra: &str) -> (Sandbox, Repo) {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n")], "one");
    sandbox.write("app.rhai", &recipe(&repo.str(), &sandbox.str("app"), extra));
    (sandbox, repo)
}

const STDLIB_TASKS: &str = "\
deploy              Deploy a new release
deploy:cleanup      Remove old releases, keeping keep_releases good ones
deploy:failed       Runs after a failed deploy was undone (current switched back); hook it to react
deploy:lock         Take the deploy lock, so two deploys never overlap
deploy:prepare      Create the directories of the deploy path (releases, shared, .zdd)
deploy:release      Create the new release directory
deploy:shared       Link shared_files and shared_dirs into the release
deploy:symlink      Point current at the new release (atomic rename)
deploy:unlock       Release the deploy lock
deploy:update_code  Fetch the repository cache and check {{branch}} out into the release
deploy:writable     Make writable_dirs writable for the web server
";

const STDLIB_PLAN: &str = "\
localhost
   1. deploy:prepare      stdlib/deploy.rhai:6:1
   2. deploy:lock         stdlib/deploy.rhai:9:1
   3. deploy:release      stdlib/deploy.rhai:12:1
   4. deploy:update_code  stdlib/deploy.rhai:15:1
   5. deploy:shared       stdlib/deploy.rhai:18:1
   6. deploy:writable     stdlib/deploy.rhai:21:1
   7. deploy:symlink      stdlib/deploy.rhai:24:1
   8. deploy:cleanup      stdlib/deploy.rhai:27:1
   9. deploy:unlock       stdlib/deploy.rhai:30:1
";

#[test]
fn tasks_lists_every_task_with_its_description() {
    let (sandbox, _repo) = setup(
        "desc(\"Warm the caches\");\ntask(\"warm\", || { run(\"true\"); });\ntask(\"release\", [\"deploy\", \"warm\"]);\ntask(\"quiet\", || {});\n",
    );
    let run = sandbox.run(&["tasks", "app.rhai"]);
    run.success();
    assert_eq!(run.stderr, "");
    let mut expected = String::new();
    for line in STDLIB_TASKS.lines() {
        expected.push_str(line);
        expected.push('\n');
        if line.starts_with("deploy:writable") {
            // Sorted by name.
            expected.push_str("quiet               \n");
            expected.push_str("release             deploy, warm\n");
            expected.push_str("rollback            Switch current back to the previous good release (or -o rollback_to=RELEASE)\n");
            expected.push_str("warm                Warm the caches\n");
        }
    }
    assert_eq!(run.stdout, expected);
    assert!(!sandbox.path("app").exists());
}

#[test]
fn check_validates_without_touching_the_host() {
    let (sandbox, _repo) = setup("");
    let run = sandbox.run(&["check", "app.rhai"]);
    run.success();
    assert_eq!(run.stdout, "app.rhai: ok (12 tasks, 1 host)\n");
    assert_eq!(run.stderr, "");
    assert!(!sandbox.path("app").exists());
}

#[test]
fn plan_lists_the_steps_with_where_they_were_declared() {
    let (sandbox, _repo) = setup(
        "task(\"migrate\", || { run(\"true\"); });\nbefore(\"deploy:symlink\", \"migrate\");\nafter(\"deploy\", || { info(\"done\"); });\n",
    );
    let run = sandbox.run(&["run", "app.rhai", "--plan"]);
    run.success();
    assert_eq!(run.stderr, "");
    assert_eq!(
        run.stdout,
        "\
localhost
   1. deploy:prepare      stdlib/deploy.rhai:6:1
   2. deploy:lock         stdlib/deploy.rhai:9:1
   3. deploy:release      stdlib/deploy.rhai:12:1
   4. deploy:update_code  stdlib/deploy.rhai:15:1
   5. deploy:shared       stdlib/deploy.rhai:18:1
   6. deploy:writable     stdlib/deploy.rhai:21:1
   7. migrate             app.rhai:5:1
   8. deploy:symlink      stdlib/deploy.rhai:24:1
   9. deploy:cleanup      stdlib/deploy.rhai:27:1
  10. deploy:unlock       stdlib/deploy.rhai:30:1
  11. after deploy        app.rhai:7:1
"
    );
    assert!(!sandbox.path("app").exists(), "--plan runs nothing");

    // The same plan as JSON.
    let run = sandbox.run(&["run", "app.rhai", "--plan", "--json"]);
    run.success();
    let lines = run.json_lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["host"], "localhost");
    let steps: Vec<(String, String)> = lines[0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["task"].as_str().unwrap().to_string(),
                s["declared"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(steps.len(), 11);
    assert_eq!(
        steps[6],
        ("migrate".to_string(), "app.rhai:5:1".to_string())
    );
    assert_eq!(
        steps[10],
        ("after deploy".to_string(), "app.rhai:7:1".to_string())
    );

    // A single task's plan.
    let run = sandbox.run(&["run", "app.rhai", "migrate", "--plan"]);
    run.success();
    assert_eq!(run.stdout, "localhost\n   1. migrate  app.rhai:5:1\n");
}

#[test]
fn json_is_one_event_per_line_in_order() {
    let (sandbox, repo) = setup("after(\"deploy:update_code\", || { run(\"echo built\"); });\n");
    let commit = crate::support::git(&repo.path, &["rev-parse", "HEAD"]);
    let run = sandbox.run(&["run", "app.rhai", "--json"]);
    run.success();
    assert_eq!(run.stderr, "", "progress is not mixed into --json");
    let events = run.json_lines();
    let release = sandbox.current("app").unwrap();
    let summary: Vec<String> = events
        .iter()
        .map(|e| {
            let kind = e["event"].as_str().unwrap();
            match kind {
                "task_started" | "task_finished" => {
                    format!("{kind} {}", e["task"].as_str().unwrap())
                }
                "command" => format!("command {}", e["command"].as_str().unwrap()),
                "message" => format!("message {}", e["text"].as_str().unwrap()),
                "release_created" | "swapped" => {
                    format!("{kind} {}", e["release"].as_str().unwrap())
                }
                "finished" => format!("finished {} {}", e["task"], e["status"]),
                other => other.to_string(),
            }
        })
        .collect();
    let expected = [
        "task_started deploy:prepare".to_string(),
        "task_finished deploy:prepare".to_string(),
        "task_started deploy:lock".to_string(),
        "task_finished deploy:lock".to_string(),
        "task_started deploy:release".to_string(),
        format!("release_created {release}"),
        "task_finished deploy:release".to_string(),
        "task_started deploy:update_code".to_string(),
        format!("message checked out `HEAD` at {}", &commit[..12]),
        "task_finished deploy:update_code".to_string(),
        "task_started after deploy:update_code".to_string(),
        "command echo built".to_string(),
        "task_finished after deploy:update_code".to_string(),
        "task_started deploy:shared".to_string(),
        "task_finished deploy:shared".to_string(),
        "task_started deploy:writable".to_string(),
        "task_finished deploy:writable".to_string(),
        "task_started deploy:symlink".to_string(),
        format!("swapped {release}"),
        "task_finished deploy:symlink".to_string(),
        "task_started deploy:cleanup".to_string(),
        "task_finished deploy:cleanup".to_string(),
        "task_started deploy:unlock".to_string(),
        "task_finished deploy:unlock".to_string(),
        "finished \"deploy\" \"success\"".to_string(),
    ];
    assert_eq!(summary, expected);
    for event in &events {
        if event["event"] != "finished" {
            assert_eq!(event["host"], "localhost", "{event}");
        }
        if event["event"] == "task_finished" || event["event"] == "finished" {
            assert!(event["duration_ms"].is_u64(), "{event}");
        }
    }
    assert!(events[18]["previous"].is_null());

    // A failed deploy ends with a failed task and a failed run.
    sandbox.write(
        "fails.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            "after(\"deploy:symlink\", || { run(\"exit 4\"); });\n",
        ),
    );
    let run = sandbox.run(&["run", "fails.rhai", "--json"]);
    run.expect(1);
    let events = run.json_lines();
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    // The runner switches back (and says the release is marked failed) before the fail hook
    // `deploy:failed` starts.
    assert_eq!(
        kinds[kinds.len() - 7..],
        [
            "command",
            "task_failed",
            "switched_back",
            "message",
            "task_started",
            "task_finished",
            "finished",
        ]
    );
    assert_eq!(events[events.len() - 3]["task"], "deploy:failed");
    let failed = &events[events.len() - 6];
    assert_eq!(failed["task"], "after deploy:symlink");
    assert_eq!(failed["error"], "command `exit 4` exited with status 4");
    assert_eq!(events[events.len() - 1]["status"], "failed");
    // The error itself still goes to stderr, for people.
    assert!(run
        .stderr
        .starts_with("error: task `after deploy:symlink` failed on host `localhost`\n"));
}

#[test]
fn verbose_shows_commands_and_quiet_shows_nothing() {
    let (sandbox, _repo) = setup(
        "task(\"hello\", || {\n    run(\"echo hello; echo oops >&2\");\n    info(\"said hello\");\n});\n",
    );
    let normal = sandbox.run(&["run", "app.rhai", "hello"]);
    normal.success();
    assert_eq!(normal.stdout, "");
    assert_eq!(
        scrub(&normal.stderr),
        "[localhost] said hello\n[localhost] hello ... ok ([DURATION])\nhello: done on localhost in [DURATION]\n"
    );

    let verbose = sandbox.run(&["run", "app.rhai", "hello", "-v"]);
    verbose.success();
    assert_eq!(
        scrub(&verbose.stderr),
        "[localhost] hello\n[localhost] $ echo hello; echo oops >&2\n[localhost] said hello\n[localhost] hello ... ok ([DURATION])\nhello: done on localhost in [DURATION]\n"
    );

    let output = sandbox.run(&["run", "app.rhai", "hello", "-vv"]);
    output.success();
    let stderr = scrub(&output.stderr);
    assert!(
        stderr.starts_with("[localhost] hello\n[localhost] $ echo hello; echo oops >&2\n"),
        "{stderr}"
    );
    // The two streams arrive in either order.
    assert!(stderr.contains("[localhost]   hello\n"), "{stderr}");
    assert!(stderr.contains("[localhost]   oops\n"), "{stderr}");

    let quiet = sandbox.run(&["run", "app.rhai", "hello", "-q"]);
    quiet.success();
    assert_eq!(quiet.stdout, "");
    assert_eq!(quiet.stderr, "");

    // A whole deploy, quietly.
    let quiet = sandbox.run(&["run", "app.rhai", "-q"]);
    quiet.success();
    assert_eq!((quiet.stdout.as_str(), quiet.stderr.as_str()), ("", ""));
    assert!(sandbox.current("app").is_some());
}

#[test]
fn help_documents_the_exit_codes() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&["--help"]);
    run.success();
    assert!(
        run.stdout.ends_with(
            "Exit codes:
  0  success
  1  the deploy failed (nothing was switched, or it was switched back)
  2  usage or recipe error (nothing ran)
  3  the deploy is locked by someone else
  4  deployed with exceptions: hosts left behind on their old release (within `max_fail`),
     each named
"
        ),
        "{}",
        run.stdout
    );
    for command in ["run", "rollback", "releases", "tasks", "check", "unlock"] {
        assert!(run.stdout.contains(&format!("\n  {command} ")), "{command}");
    }
    // No arguments at all is a usage error.
    let run = sandbox.run(&[]);
    assert_eq!(run.code, Some(2));
}

#[test]
fn a_recipe_task_replaces_the_stdlib_task_of_the_same_name() {
    let (sandbox, repo) = setup(
        "task(\"deploy:cleanup\", || { run(\"echo {{release_name}} >> {{deploy_path}}/cleanups\"); });\n",
    );
    let mut names = Vec::new();
    for i in 0..3 {
        repo.commit(&[("index.html", format!("v{i}\n").as_str())], "change");
        sandbox
            .run(&["run", "app.rhai", "-q", "-o", "keep_releases=1"])
            .success();
        names.push(sandbox.current("app").unwrap());
    }
    // The stdlib cleanup would have kept one release (and the rollback target); this one keeps all.
    assert_eq!(sandbox.releases("app"), names);
    assert_eq!(
        sandbox.read("app/cleanups"),
        names.iter().map(|n| format!("{n}\n")).collect::<String>()
    );
    let plan = sandbox.run(&["run", "app.rhai", "--plan"]);
    assert_eq!(
        plan.stdout,
        STDLIB_PLAN.replace(
            "deploy:cleanup      stdlib/deploy.rhai:27:1",
            "deploy:cleanup      app.rhai:5:1"
        )
    );
    // The description of the task it replaced is kept.
    let tasks = sandbox.run(&["tasks", "app.rhai"]);
    assert!(tasks
        .stdout
        .contains("deploy:cleanup      Remove old releases, keeping keep_releases good ones\n"));
}

#[test]
fn a_module_next_to_the_recipe_wins_over_the_stdlib_one() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "deploy.rhai",
        "desc(\"The local deploy\");\ntask(\"deploy\", || { run(\"echo local > {{deploy_path}}\"); });\n",
    );
    sandbox.write(
        "app.rhai",
        &format!(
            "import \"deploy\";\nset(\"deploy_path\", \"{}\");\nlocalhost();\n",
            sandbox.str("marker")
        ),
    );
    let tasks = sandbox.run(&["tasks", "app.rhai"]);
    tasks.success();
    assert_eq!(tasks.stdout, "deploy  The local deploy\n");
    let plan = sandbox.run(&["run", "app.rhai", "--plan"]);
    assert_eq!(plan.stdout, "localhost\n   1. deploy  deploy.rhai:2:1\n");
    sandbox.run(&["run", "app.rhai", "-q"]).success();
    assert_eq!(sandbox.read("marker"), "local\n");

    // Also when the module is named with its extension.
    sandbox.write(
        "app.rhai",
        &format!(
            "import \"deploy.rhai\";\nset(\"deploy_path\", \"{}\");\nlocalhost();\n",
            sandbox.str("marker")
        ),
    );
    assert_eq!(
        sandbox.run(&["tasks", "app.rhai"]).stdout,
        "deploy  The local deploy\n"
    );
}

#[test]
fn a_recipe_named_deploy_rhai_still_imports_the_stdlib() {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n")], "one");
    sandbox.write("deploy.rhai", &recipe(&repo.str(), &sandbox.str("app"), ""));
    let tasks = sandbox.run(&["tasks", "deploy.rhai"]);
    tasks.success();
    assert!(tasks.stdout.starts_with(STDLIB_TASKS), "{}", tasks.stdout);
    assert_eq!(
        sandbox.run(&["run", "deploy.rhai", "--plan"]).stdout,
        STDLIB_PLAN
    );
    // From another directory too: the module is found next to the recipe, not in the cwd.
    let mut command = sandbox.zdd(&["run", "../deploy.rhai", "-q"]);
    std::fs::create_dir(sandbox.path("elsewhere")).unwrap();
    command.current_dir(sandbox.path("elsewhere"));
    let output = command.output().unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(sandbox.read("app/current/index.html"), "one\n");
}

#[test]
fn set_in_a_task_and_o_over_set() {
    let (sandbox, _repo) = setup(
        "set(\"greeting\", \"from the recipe\");
task(\"greet\", || {
    run(\"echo {{greeting}} >> greetings\");
    set(\"greeting\", \"set in the task\");
    run(\"echo {{greeting}} >> greetings\");
    info(get(\"greeting\"));
});
task(\"greet_again\", || { run(\"echo {{greeting}} >> greetings\"); });
task(\"both\", [\"greet\", \"greet_again\"]);
",
    );
    sandbox.run(&["run", "app.rhai", "both", "-q"]).success();
    assert_eq!(
        sandbox.read("greetings"),
        "from the recipe\nset in the task\nset in the task\n"
    );
    std::fs::remove_file(sandbox.path("greetings")).unwrap();

    // -o overrides the recipe's set, but a task's own set still wins inside the run.
    let run = sandbox.run(&["run", "app.rhai", "both", "-o", "greeting=from -o"]);
    run.success();
    assert_eq!(
        sandbox.read("greetings"),
        "from -o\nset in the task\nset in the task\n"
    );
    assert!(run.stderr.contains("[localhost] set in the task\n"));

    // -o values are typed: a comma list is a list.
    sandbox.write(
        "lists.rhai",
        "localhost();\ntask(\"show\", || {\n    let dirs = get(\"dirs\");\n    info(`${type_of(dirs)} ${dirs.len()}`);\n    run(\"printf '%s|' {{dirs}} > dirs\");\n    info(`${type_of(get(\"count\"))}`);\n});\n",
    );
    let run = sandbox.run(&[
        "run",
        "lists.rhai",
        "show",
        "-o",
        "dirs=storage,bootstrap/cache",
        "-o",
        "count=3",
    ]);
    run.success();
    assert!(
        run.stderr.contains("[localhost] array 2\n"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("[localhost] i64\n"), "{}", run.stderr);
    assert_eq!(sandbox.read("dirs"), "storage|bootstrap/cache|");
}

#[test]
fn computed_keys_expand_inside_run() {
    let (sandbox, repo) = setup(
        "after(\"deploy:symlink\", || {
    run(\"echo {{release_path}} {{release_name}} {{current_path}} {{deploy_path}} > {{release_path}}/where\");
    if has(\"previous_release\") {
        run(\"echo {{previous_release}} > {{release_path}}/previous\");
    }
});
",
    );
    sandbox.run(&["run", "app.rhai", "-q"]).success();
    let first = sandbox.current("app").unwrap();
    let app = sandbox.str("app");
    assert_eq!(
        sandbox.read("app/current/where"),
        format!("{app}/releases/{first} {first} {app}/current {app}\n")
    );
    // No release before the first.
    assert!(!sandbox.path("app/current/previous").exists());

    repo.commit(&[("index.html", "two\n")], "two");
    sandbox.run(&["run", "app.rhai", "-q"]).success();
    let second = sandbox.current("app").unwrap();
    assert_ne!(first, second);
    assert_eq!(
        sandbox.read("app/current/where"),
        format!("{app}/releases/{second} {second} {app}/current {app}\n")
    );
    assert_eq!(
        sandbox.read("app/current/previous"),
        format!("{app}/releases/{first}\n")
    );
}
