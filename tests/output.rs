//! What a run prints: the summary at the end, GitHub Actions folding and annotations, no colour,
//! and secrets (`secret()`, the naming rule, the shared `.env`) taken out of everything: stderr
//! at every verbosity, `--json`, errors, the release log and the webhooks.

use crate::notify::{Answer, Server};
use crate::support::{recipe, scrub, Run, Sandbox};

fn setup(extra: &str) -> (Sandbox, String) {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    let commit = repo.commit(&[("index.html", "v1\n")], "first");
    sandbox.write("app.rhai", &recipe(&repo.str(), &sandbox.str("app"), extra));
    (sandbox, commit)
}

/// `zdd ARGS` with `GITHUB_ACTIONS=true`.
fn in_github_actions(sandbox: &Sandbox, args: &[&str]) -> Run {
    sandbox.run_with(args, &[("GITHUB_ACTIONS", "true")])
}

#[test]
fn a_deploy_ends_with_its_summary() {
    let (sandbox, commit) = setup("");
    let run = sandbox.run(&["run", "app.rhai"]);
    run.success();
    assert_eq!(
        scrub(&run.stderr),
        format!(
            "[localhost] deploy:prepare ... ok ([DURATION])
[localhost] deploy:lock ... ok ([DURATION])
[localhost] deploy:release ... ok ([DURATION])
[localhost] checked out `HEAD` at {short}
[localhost] deploy:update_code ... ok ([DURATION])
[localhost] deploy:shared ... ok ([DURATION])
[localhost] deploy:writable ... ok ([DURATION])
[localhost] current -> releases/[RELEASE]
[localhost] deploy:symlink ... ok ([DURATION])
[localhost] deploy:cleanup ... ok ([DURATION])
[localhost] deploy:unlock ... ok ([DURATION])
deploy: release [RELEASE] (commit {short}) on localhost in [DURATION]
  preparation [DURATION], cutover [DURATION]
",
            short = &commit[..12]
        )
    );
    let release = sandbox.current("app").unwrap();
    assert!(run
        .stderr
        .contains(&format!("deploy: release {release} (commit")));

    // `--json`: the last event says what was deployed.
    let run = sandbox.run(&["run", "app.rhai", "--json"]);
    run.success();
    let events = run.json_lines();
    let finished = events.last().unwrap();
    assert_eq!(finished["event"], "finished");
    assert_eq!(finished["status"], "success");
    assert_eq!(finished["commit"], commit.as_str());
    assert_eq!(
        finished["release"],
        sandbox.current("app").unwrap().as_str()
    );
    assert!(finished["duration_ms"].is_u64());
}

const TASKS: &str = "task(\"hello\", || {
    run(\"echo hello\");
    info(\"said hello\");
});
task(\"silent\", || {});
task(\"both\", [\"hello\", \"silent\"]);
task(\"broken\", || {
    run(\"echo about to fail; exit 3\");
});
";

#[test]
fn github_actions_folds_each_task_and_annotates_the_error() {
    let (sandbox, commit) = setup(TASKS);

    // Each task's lines in a group; a task that printed nothing has none.
    let run = in_github_actions(&sandbox, &["run", "app.rhai", "both", "-vv"]);
    run.success();
    assert_eq!(
        scrub(&run.stderr),
        "::group::[localhost] hello
[localhost] $ echo hello
[localhost]   hello
[localhost] said hello
::endgroup::
[localhost] hello ... ok ([DURATION])
[localhost] silent ... ok ([DURATION])
both: done on localhost in [DURATION]
"
    );

    // A whole deploy.
    let run = in_github_actions(&sandbox, &["run", "app.rhai"]);
    run.success();
    assert_eq!(
        scrub(&run.stderr),
        format!(
            "[localhost] deploy:prepare ... ok ([DURATION])
[localhost] deploy:lock ... ok ([DURATION])
[localhost] deploy:release ... ok ([DURATION])
::group::[localhost] deploy:update_code
[localhost] checked out `HEAD` at {short}
::endgroup::
[localhost] deploy:update_code ... ok ([DURATION])
[localhost] deploy:shared ... ok ([DURATION])
[localhost] deploy:writable ... ok ([DURATION])
::group::[localhost] deploy:symlink
[localhost] current -> releases/[RELEASE]
::endgroup::
[localhost] deploy:symlink ... ok ([DURATION])
[localhost] deploy:cleanup ... ok ([DURATION])
[localhost] deploy:unlock ... ok ([DURATION])
deploy: release [RELEASE] (commit {short}) on localhost in [DURATION]
  preparation [DURATION], cutover [DURATION]
",
            short = &commit[..12]
        )
    );

    // A failure: the group, the error, then the error again as one annotation.
    let run = in_github_actions(&sandbox, &["run", "app.rhai", "broken", "-v"]);
    run.expect(1);
    assert_eq!(
        scrub(&run.stderr),
        "::group::[localhost] broken
[localhost] $ echo about to fail; exit 3
::endgroup::
[localhost] broken ... failed
error: task `broken` failed on host `localhost`
  --> app.rhai:12:5
   |
12 |     run(\"echo about to fail; exit 3\");
   |     ^
Caused by: command `echo about to fail; exit 3` exited with status 3
stdout (last lines):
  | about to fail
now: on `localhost`, `current` points at releases/[RELEASE]
::error::task `broken` failed on host `localhost`%0A  --> app.rhai:12:5%0A   |%0A12 |     run(\"echo about to fail; exit 3\");%0A   |     ^%0ACaused by: command `echo about to fail; exit 3` exited with status 3%0Astdout (last lines):%0A  | about to fail%0Anow: on `localhost`, `current` points at releases/[RELEASE]
"
    );

    // An error before anything runs is annotated too.
    let run = in_github_actions(&sandbox, &["run", "app.rhai", "nope"]);
    run.expect(2);
    let last = run.stderr.lines().last().unwrap();
    assert!(last.starts_with("::error::unknown task `nope`"), "{last}");

    // Only `GITHUB_ACTIONS=true` folds.
    let output = sandbox
        .zdd(&["run", "app.rhai", "hello"])
        .env("GITHUB_ACTIONS", "false")
        .output()
        .unwrap();
    assert_eq!(
        scrub(&String::from_utf8_lossy(&output.stderr)),
        "[localhost] said hello\n[localhost] hello ... ok ([DURATION])\nhello: done on localhost in [DURATION]\n"
    );
}

#[test]
fn no_colour_with_or_without_no_color() {
    let (sandbox, _) = setup(TASKS);
    for no_color in [true, false] {
        let mut command = sandbox.zdd(&["run", "app.rhai", "-vv"]);
        if !no_color {
            command.env_remove("NO_COLOR");
        }
        let output = command.output().unwrap();
        assert!(output.status.success());
        assert!(!output.stderr.is_empty());
        for stream in [&output.stdout, &output.stderr] {
            assert!(!stream.contains(&0x1b), "an escape sequence in the output");
        }
    }
}

/// Values that must never be seen, in every form a test might find them.
const SECRETS: [&str; 6] = [
    // `db_password`: secret by name, with a quote so the command shows it shell-quoted.
    "hunter2 it's-secret",
    // `deploy_key`: declared with `secret()`.
    "k3y-declared-value",
    // `api_token`: given with `-o`.
    "t0ken-from-the-cli",
    // The shared `.env`.
    "base64:c2VjcmV0LWtleQ==",
    "env pass phrase",
    "postgres://app:pw-in-url@db/app",
];

const LEAKY: &str = "set(\"shared_files\", [\".env\"]);
set(\"db_password\", \"hunter2 it's-secret\");
set(\"deploy_key\", \"k3y-declared-value\");
secret(\"deploy_key\");
task(\"leak\", || {
    run(\"echo {{db_password}}\");
    run(\"echo {{deploy_key}} {{api_token}} >&2\");
    info(`the key is ${get(\"deploy_key\")}`);
    run(\"cat {{deploy_path}}/shared/.env; exit 1\");
});
after(\"deploy:shared\", || {
    if get(\"leak_in_deploy\", false) {
        run(\"cat {{release_path}}/.env; exit 1\");
    }
});
";

const ENV: &str = "APP_KEY=base64:c2VjcmV0LWtleQ==
DB_PASSWORD=\"env pass phrase\"
DATABASE_URL=postgres://app:pw-in-url@db/app
APP_ENV=production
";

#[track_caller]
fn assert_no_secret(text: &str, what: &str) {
    for secret in SECRETS {
        let escaped = serde_json::to_string(secret).unwrap();
        let escaped = &escaped[1..escaped.len() - 1];
        assert!(
            !text.contains(secret) && !text.contains(escaped),
            "{what} shows `{secret}`:\n{text}"
        );
    }
    for part in ["hunter2", "it's-secret", "pw-in-url"] {
        assert!(!text.contains(part), "{what} shows `{part}`:\n{text}");
    }
}

#[test]
fn secrets_never_show() {
    let server = Server::start(Answer::Status(200));
    let (sandbox, _) = setup(&format!(
        "{LEAKY}set(\"webhook_url\", \"{}\");\nset(\"slack_webhook\", \"{}\");\nset(\"notify_tasks\", [\"deploy\", \"leak\"]);\n",
        server.url("/hook"),
        server.url("/slack")
    ));
    sandbox.write("app/shared/.env", ENV);
    let token = "api_token=t0ken-from-the-cli";

    // -vv on stderr, exactly.
    let run = sandbox.run(&["run", "app.rhai", "leak", "-vv", "-o", token]);
    run.expect(1);
    let stderr = run.stderr.clone();
    // The two streams of the second command may come in either order.
    assert!(
        stderr.contains("[localhost]   [secret] [secret]\n"),
        "{stderr}"
    );
    assert_eq!(
        stderr.replace("[localhost]   [secret] [secret]\n", ""),
        "[localhost] leak
[localhost] $ echo [secret]
[localhost]   [secret]
[localhost] $ echo [secret] [secret] >&2
[localhost] the key is [secret]
[localhost] $ cat [SANDBOX]/app/shared/.env; exit 1
[localhost]   APP_KEY=[secret]
[localhost]   DB_PASSWORD=[secret]
[localhost]   DATABASE_URL=[secret]
[localhost]   APP_ENV=production
[localhost] leak ... failed
notified `slack_webhook` (HTTP 200)
notified `webhook_url` (HTTP 200)
error: task `leak` failed on host `localhost`
  --> app.rhai:13:5
   |
13 |     run(\"cat {{deploy_path}}/shared/.env; exit 1\");
   |     ^
Caused by: command `cat [SANDBOX]/app/shared/.env; exit 1` exited with status 1
stdout (last lines):
  | APP_KEY=[secret]
  | DB_PASSWORD=[secret]
  | DATABASE_URL=[secret]
  | APP_ENV=production
now: on `localhost`, there is no `current` release
"
    );
    let mut seen = vec![run];

    // --json, GitHub Actions, -v.
    seen.push(sandbox.run(&["run", "app.rhai", "leak", "-vv", "--json", "-o", token]));
    seen.push(in_github_actions(
        &sandbox,
        &["run", "app.rhai", "leak", "-vv", "-o", token],
    ));
    seen.push(sandbox.run(&["run", "app.rhai", "leak", "-v", "-o", token]));
    // A deploy that prints the `.env` and fails after the release was made.
    seen.push(sandbox.run(&[
        "run",
        "app.rhai",
        "-vv",
        "-o",
        "leak_in_deploy=true",
        "-o",
        token,
    ]));
    seen.push(sandbox.run(&[
        "run",
        "app.rhai",
        "--json",
        "-vv",
        "-o",
        "leak_in_deploy=true",
    ]));
    for run in &seen {
        run.expect(1);
        assert_no_secret(&run.stdout, "stdout");
        assert_no_secret(&run.stderr, "stderr");
        assert!(
            run.stdout.contains("[secret]") || run.stderr.contains("[secret]"),
            "{run:?}"
        );
    }
    let json = &seen[1];
    assert!(json
        .json_lines()
        .iter()
        .any(|e| e["event"] == "output" && e["line"] == "DB_PASSWORD=[secret]"));

    // The release log keeps why the deploy failed, without the secrets.
    let log = sandbox.read("app/.zdd/releases.jsonl");
    assert!(log.contains("DB_PASSWORD=[secret]"), "{log}");
    assert_no_secret(&log, "the release log");

    // The webhooks heard of each failure, without the secrets.
    let requests = server.requests();
    assert_eq!(requests.len(), 2 * seen.len());
    for request in &requests {
        assert_no_secret(&request.body, "a webhook");
        assert!(request.body.contains("DB_PASSWORD=[secret]"), "{request:?}");
    }
}
