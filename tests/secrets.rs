//! Secrets never show, attacked from every side: a shared `.env` read as Laravel reads it
//! (multi-line PEM key, quoted values followed by a comment, `export` lines), a repository URL
//! with credentials that fails to fetch, values set inside a task and used by the next command,
//! and values printed by the recipe before any host is known.

use crate::support::{recipe, Sandbox};

/// The lines of a private key, each a secret of its own (output arrives line by line).
const PEM_LINES: [&str; 4] = [
    "-----BEGIN PRIVATE KEY-----",
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7pem",
    "l1neTw0oFsecretBase64Material+/AbCdEfGh",
    "-----END PRIVATE KEY-----",
];

/// Parts of the `.env` values that must never be seen.
const ENV_SECRETS: [&str; 6] = [
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7pem",
    "l1neTw0oFsecretBase64Material",
    "quoted pass phrase",
    "sk_live_exported",
    "say \"cheese\" please",
    "say \\\"cheese\\\" please",
];

fn env_file() -> String {
    format!(
        "# the shared .env\nAPP_ENV=production\n\
         export JWT_PRIVATE_KEY=\"{}\"\n\
         DB_PASSWORD=\"quoted pass phrase\" # rotated in May\n\
         export STRIPE_SECRET=sk_live_exported\n\
         MAIL_PASSWORD=\"say \\\"cheese\\\" please\"\n\
         APP_NAME=shop\n",
        PEM_LINES.join("\n")
    )
}

/// A sandbox with `app.rhai`: the stdlib deploy of a local repository into `app`, then `extra`.
fn setup(extra: &str) -> Sandbox {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "v1\n")], "first");
    sandbox.write("app.rhai", &recipe(&repo.str(), &sandbox.str("app"), extra));
    sandbox
}

#[track_caller]
fn assert_absent(text: &str, secrets: &[&str], what: &str) {
    for secret in secrets {
        assert!(!text.contains(secret), "{what} shows `{secret}`:\n{text}");
    }
}

#[test]
fn shared_env_values_never_show() {
    let sandbox = setup(
        "set(\"shared_files\", [\".env\"]);
task(\"show\", || {
    run(\"cat {{deploy_path}}/shared/.env\");
    run(\"set -a; . {{deploy_path}}/shared/.env; printf '%s\\\\n' \\\"$JWT_PRIVATE_KEY\\\" \\\"$DB_PASSWORD\\\" \\\"$STRIPE_SECRET\\\" \\\"$MAIL_PASSWORD\\\" \\\"$APP_NAME\\\"\");
});
",
    );
    sandbox.write("app/shared/.env", &env_file());

    let run = sandbox.run(&["run", "app.rhai", "show", "-vv"]);
    run.success();
    assert_absent(&run.stderr, &ENV_SECRETS, "-vv");
    // The file as written: each line of the key, the quoted value before its comment.
    // Then each value as the app reads it (the shell reads this `.env` as dotenv does).
    let shown: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.starts_with("[localhost]   "))
        .collect();
    assert_eq!(
        shown,
        [
            "[localhost]   # the shared .env",
            "[localhost]   APP_ENV=production",
            "[localhost]   export JWT_PRIVATE_KEY=[secret]",
            "[localhost]   [secret]",
            "[localhost]   [secret]",
            "[localhost]   [secret]",
            "[localhost]   DB_PASSWORD=[secret] # rotated in May",
            "[localhost]   export STRIPE_SECRET=[secret]",
            "[localhost]   MAIL_PASSWORD=[secret]",
            "[localhost]   APP_NAME=shop",
            "[localhost]   [secret]",
            "[localhost]   [secret]",
            "[localhost]   [secret]",
            "[localhost]   [secret]",
            "[localhost]   [secret]",
            "[localhost]   [secret]",
            "[localhost]   [secret]",
            "[localhost]   shop",
        ],
        "{}",
        run.stderr
    );

    let json = sandbox.run(&["run", "app.rhai", "show", "-vv", "--json"]);
    json.success();
    assert_absent(&json.stdout, &ENV_SECRETS, "--json");
    let lines: Vec<String> = json
        .json_lines()
        .iter()
        .filter(|event| event["event"] == "output")
        .map(|event| event["line"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        lines.contains(&"DB_PASSWORD=[secret] # rotated in May".to_string()),
        "{lines:?}"
    );
}

/// A repository whose URL carries a password, on a port where nothing answers.
const LEAKY_URL: &str = "http://deployer:s3cr3tT0ken@127.0.0.1:9/repo.git";

#[test]
fn a_password_in_the_repository_url_never_shows() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "app.rhai",
        &recipe(
            LEAKY_URL,
            &sandbox.str("app"),
            "set(\"branch\", \"main\");\n",
        ),
    );
    let redacted = "http://deployer:[secret]@127.0.0.1:9/repo.git";

    let runs = [
        sandbox.run(&["run", "app.rhai"]),
        sandbox.run(&["run", "app.rhai", "-vv"]),
        sandbox.run(&["run", "app.rhai", "-vv", "--json"]),
    ];
    for run in &runs {
        run.expect(1);
        assert_absent(&run.stdout, &["s3cr3tT0ken"], "stdout");
        assert_absent(&run.stderr, &["s3cr3tT0ken"], "stderr");
        assert!(
            run.stderr
                .contains("error: task `deploy:update_code` failed on host `localhost`"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains(redacted), "{}", run.stderr);
    }
    // `--json`: the failure event names the URL, without its password.
    let failed = runs[2]
        .json_lines()
        .into_iter()
        .find(|event| event["event"] == "task_failed")
        .expect("a task_failed event");
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or_default()
            .contains(redacted),
        "{failed}"
    );

    // The release log outlives the run: the failure is there, the password is not.
    let log = sandbox.read("app/.zdd/releases.jsonl");
    assert!(log.contains("\"event\":\"failed\""), "{log}");
    assert!(log.contains(redacted), "{log}");
    assert_absent(&log, &["s3cr3tT0ken"], "the release log");
}

#[test]
fn a_value_set_inside_a_task_is_secret_at_once() {
    let sandbox = setup(
        "task(\"token\", || {
    set(\"api_token\", \"t4sk-\" + \"made-value\");
    run(\"echo {{api_token}}\");
    run(\"echo \" + get(\"api_token\") + \" >&2\");
    info(`the token is ${get(\"api_token\")}`);
});
",
    );
    let run = sandbox.run(&["run", "app.rhai", "token", "-vv"]);
    run.success();
    assert_absent(&run.stderr, &["t4sk-made-value"], "-vv");
    let lines: Vec<&str> = run
        .stderr
        .lines()
        .take_while(|line| !line.starts_with("[localhost] token ... ok"))
        .collect();
    assert_eq!(
        lines,
        [
            "[localhost] token",
            "[localhost] $ echo [secret]",
            "[localhost]   [secret]",
            "[localhost] $ echo [secret] >&2",
            "[localhost]   [secret]",
            "[localhost] the token is [secret]",
        ],
        "{}",
        run.stderr
    );
}

#[test]
fn values_printed_before_any_host_is_known_never_show() {
    let sandbox = setup(
        "set(\"db_password\", \"t0p-level-pass\");
print(`recipe password: ${get(\"db_password\")}`);
print(`cli token: ${get(\"api_token\")}`);
print(`mirror: ${get(\"mirror\")}`);
task(\"nothing\", || {});
",
    );
    let run = sandbox.run(&[
        "run",
        "app.rhai",
        "nothing",
        "-o",
        "api_token=cl1-given-token",
        "-o",
        "mirror=https://ci:m1rr0r-pass@mirror.test/repo.git",
    ]);
    run.success();
    assert_absent(
        &run.stderr,
        &["t0p-level-pass", "cl1-given-token", "m1rr0r-pass"],
        "print()",
    );
    for line in [
        "[recipe] recipe password: [secret]\n",
        "[recipe] cli token: [secret]\n",
        "[recipe] mirror: https://ci:[secret]@mirror.test/repo.git\n",
    ] {
        assert!(run.stderr.contains(line), "{}", run.stderr);
    }
}

#[test]
fn the_release_log_keeps_no_secret() {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "v1\n")], "first");
    repo.branch("hotfix-s3cr3t-ref");
    sandbox.write(
        "app.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            "set(\"branch\", \"hotfix-s3cr3t-ref\");\nsecret(\"branch\");\n",
        ),
    );
    sandbox.run(&["run", "app.rhai"]).success();
    let log = sandbox.read("app/.zdd/releases.jsonl");
    assert!(log.contains("\"ref\":\"[secret]\""), "{log}");
    assert_absent(&log, &["s3cr3t"], "the release log");
}
