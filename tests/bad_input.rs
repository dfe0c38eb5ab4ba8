//! A corpus of bad input. Each case is asserted exactly (exit code and the whole stderr, with
//! the sandbox path as `[SANDBOX]`), and each leaves the disk as it was: zdd never panics, never
//! half-deploys, and never runs a value as a command.

use std::collections::BTreeMap;

use crate::support::{assert_same_tree, basic_recipe, recipe, Repo, Sandbox};

/// One bad input: the recipe (`HEADER` stands for the four lines of the basic recipe), the
/// arguments (`RECIPE` stands for its path), and what zdd must answer.
struct Case {
    name: &'static str,
    recipe: &'static str,
    args: &'static [&'static str],
    code: i32,
    stderr: &'static str,
}

const CHECK: &[&str] = &["check", "RECIPE"];
const DEPLOY: &[&str] = &["run", "RECIPE", "-q"];

/// Errors found before anything runs: exit 2, and the deploy path never created.
const STATIC: &[Case] = &[
    Case {
        name: "syntax error: unclosed call",
        recipe: "HEADER\nset(\"keep_releases\", 3\n",
        args: CHECK,
        code: 2,
        stderr: "error: syntax error: Expecting ')' to close the arguments list of this function call 'set'
 --> bad.rhai:6:1
",
    },
    Case {
        name: "syntax error: missing expression",
        recipe: "HEADER\nlet releases = ;\n",
        args: CHECK,
        code: 2,
        stderr: "error: syntax error: Unexpected ';'
 --> bad.rhai:5:16
  |
5 | let releases = ;
  |                ^
",
    },
    Case {
        name: "syntax error: unterminated string",
        recipe: "HEADER\nset(\"branch\", \"main);\n",
        args: CHECK,
        code: 2,
        stderr: "error: syntax error: Open string is not terminated
 --> bad.rhai:5:15
  |
5 | set(\"branch\", \"main);
  |               ^
",
    },
    Case {
        name: "eval is disabled",
        recipe: "HEADER\neval(\"set(1, 2)\");\n",
        args: CHECK,
        code: 2,
        stderr: "error: syntax error: reserved keyword 'eval' is disabled
 --> bad.rhai:5:1
  |
5 | eval(\"set(1, 2)\");
  | ^
",
    },
    Case {
        name: "unknown function, did you mean",
        recipe: "HEADER\nsett(\"keep_releases\", 3);\n",
        args: CHECK,
        code: 2,
        stderr: "error: unknown function `sett`
 --> bad.rhai:5:1
  |
5 | sett(\"keep_releases\", 3);
  | ^

hint: did you mean `set`?
",
    },
    Case {
        name: "unknown function, no suggestion",
        recipe: "HEADER\nfrobnicate();\n",
        args: CHECK,
        code: 2,
        stderr: "error: unknown function `frobnicate`
 --> bad.rhai:5:1
  |
5 | frobnicate();
  | ^

hint: the recipe functions are listed in the README
",
    },
    Case {
        name: "known function, wrong arguments",
        recipe: "HEADER\nset(1, 2);\n",
        args: CHECK,
        code: 2,
        stderr: "error: `set` cannot take these arguments: `set (i64, i64)`
 --> bad.rhai:5:1
  |
5 | set(1, 2);
  | ^

hint: the README lists each function with its arguments
",
    },
    Case {
        name: "unknown variable",
        recipe: "HEADER\nset(\"branch\", main);\n",
        args: CHECK,
        code: 2,
        stderr: "error: unknown variable `main`
 --> bad.rhai:5:15
  |
5 | set(\"branch\", main);
  |               ^

hint: declare variables with `let` before using them
",
    },
    Case {
        name: "unknown variable inside a task",
        recipe: "HEADER\ntask(\"hello\", || {\n    print(greeting);\n});\n",
        args: CHECK,
        code: 2,
        stderr: "error: unknown variable `greeting`
 --> bad.rhai:6:11
  |
6 |     print(greeting);
  |           ^

hint: declare variables with `let` before using them
",
    },
    Case {
        name: "a computed key cannot be set",
        recipe: "HEADER\nset(\"release_path\", \"/tmp\");\n",
        args: CHECK,
        code: 2,
        stderr: "error: `release_path` is computed by zdd and cannot be set
 --> bad.rhai:5:1
  |
5 | set(\"release_path\", \"/tmp\");
  | ^
",
    },
    Case {
        name: "run() outside a task",
        recipe: "HEADER\nrun(\"rm -rf {{deploy_path}}\");\n",
        args: CHECK,
        code: 2,
        stderr: "error: `run()` runs on a host, so it can only be called inside a task
 --> bad.rhai:5:1
  |
5 | run(\"rm -rf {{deploy_path}}\");
  | ^
",
    },
    Case {
        name: "unknown task on the command line",
        recipe: "HEADER",
        args: &["run", "RECIPE", "migrate"],
        code: 2,
        stderr: "error: unknown task `migrate` on the command line

hint: `zdd tasks RECIPE` lists the tasks the recipe defines
",
    },
    Case {
        name: "unknown task on the command line, did you mean",
        recipe: "HEADER",
        args: &["run", "RECIPE", "deploy:symlnk"],
        code: 2,
        stderr: "error: unknown task `deploy:symlnk` on the command line

hint: did you mean `deploy:symlink`?
",
    },
    Case {
        name: "unknown task in a group",
        recipe: "HEADER\ntask(\"release\", [\"deploy\", \"deploy:cleanp\"]);\n",
        args: CHECK,
        code: 2,
        stderr: "error: unknown task `deploy:cleanp` in group `release`
 --> bad.rhai:5:1
  |
5 | task(\"release\", [\"deploy\", \"deploy:cleanp\"]);
  | ^

hint: did you mean `deploy:cleanup`?
",
    },
    Case {
        name: "a group lists something that is not a name",
        recipe: "HEADER\ntask(\"release\", [\"deploy\", 42]);\n",
        args: CHECK,
        code: 2,
        stderr: "error: group `release` lists `42`, which is not a task name: a group is a list of task names in quotes
 --> bad.rhai:5:1
  |
5 | task(\"release\", [\"deploy\", 42]);
  | ^
",
    },
    Case {
        name: "hook on an unknown task",
        recipe: "HEADER\nafter(\"deploy:symlnk\", \"deploy:unlock\");\n",
        args: CHECK,
        code: 2,
        stderr: "error: unknown task `deploy:symlnk` in an `after` hook
 --> bad.rhai:5:1
  |
5 | after(\"deploy:symlnk\", \"deploy:unlock\");
  | ^

hint: did you mean `deploy:symlink`?
",
    },
    Case {
        name: "hook running an unknown task",
        recipe: "HEADER\ntask(\"migrate\", || {});\nbefore(\"deploy:symlink\", \"migrte\");\n",
        args: CHECK,
        code: 2,
        stderr: "error: unknown task `migrte` in `before` hook of `deploy:symlink`
 --> bad.rhai:6:1
  |
6 | before(\"deploy:symlink\", \"migrte\");
  | ^

hint: did you mean `migrate`?
",
    },
    Case {
        name: "fail hook running an unknown task",
        recipe: "HEADER\nfail(\"deploy\", \"deploy:faild\");\n",
        args: CHECK,
        code: 2,
        stderr: "error: unknown task `deploy:faild` in a `fail` hook
 --> bad.rhai:5:1
  |
5 | fail(\"deploy\", \"deploy:faild\");
  | ^

hint: did you mean `deploy:failed`?
",
    },
    Case {
        name: "task cycle through groups",
        recipe: "HEADER\ntask(\"a\", [\"b\"]);\ntask(\"b\", [\"a\"]);\n",
        args: CHECK,
        code: 2,
        stderr: "error: task cycle: a -> b -> a
 --> bad.rhai:6:1
  |
6 | task(\"b\", [\"a\"]);
  | ^

hint: a task cannot run itself through a group or a hook
",
    },
    Case {
        name: "task cycle through a hook",
        recipe: "HEADER\nafter(\"deploy:symlink\", \"deploy\");\n",
        args: &["run", "RECIPE"],
        code: 2,
        stderr: "error: task cycle: deploy -> deploy:symlink -> deploy
 --> bad.rhai:5:1
  |
5 | after(\"deploy:symlink\", \"deploy\");
  | ^

hint: a task cannot run itself through a group or a hook
",
    },
    Case {
        name: "unknown module, did you mean",
        recipe: "import \"deplyo\";\nlocalhost();\n",
        args: CHECK,
        code: 2,
        stderr: "error: unknown module `deplyo`
 --> bad.rhai:1:8
  |
1 | import \"deplyo\";
  |        ^

hint: did you mean `deploy`?
",
    },
    Case {
        name: "unknown module",
        recipe: "import \"capistrano\";\nlocalhost();\n",
        args: CHECK,
        code: 2,
        stderr: "error: unknown module `capistrano`
 --> bad.rhai:1:8
  |
1 | import \"capistrano\";
  |        ^

hint: a module is a `.rhai` file next to the recipe, or one of zdd's: deploy
",
    },
    Case {
        name: "no hosts declared (check)",
        recipe: "import \"deploy\";\nset(\"deploy_path\", \"/srv/app\");\n",
        args: CHECK,
        code: 2,
        stderr: "error: `bad.rhai` declares no host

hint: add `localhost();` (or `host(\"name\")`) to the recipe
",
    },
    Case {
        name: "no hosts declared (run)",
        recipe: "task(\"hello\", || { print(\"hi\"); });\n",
        args: &["run", "RECIPE", "hello"],
        code: 2,
        stderr: "error: `bad.rhai` declares no host

hint: add `localhost();` (or `host(\"name\")`) to the recipe
",
    },
    Case {
        name: "no hosts declared (deploy)",
        recipe: "import \"deploy\";\n",
        args: DEPLOY,
        code: 2,
        stderr: "error: `bad.rhai` declares no host

hint: add `localhost();` (or `host(\"name\")`) to the recipe
",
    },
    Case {
        name: "-o without =",
        recipe: "HEADER",
        args: &["run", "RECIPE", "-o", "branch"],
        code: 2,
        stderr: "error: invalid `-o branch`: `branch` is not KEY=VALUE

hint: write options as `-o key=value`, e.g. `-o branch=main`
",
    },
    Case {
        name: "-o without a key",
        recipe: "HEADER",
        args: &["run", "RECIPE", "-o", "=main"],
        code: 2,
        stderr: "error: invalid `-o =main`: `=main` has no key before `=`

hint: write options as `-o key=value`, e.g. `-o branch=main`
",
    },
    Case {
        name: "--hosts names no host",
        recipe: "HEADER",
        args: &["run", "RECIPE", "--hosts", "nosuch"],
        code: 2,
        stderr: "error: no host `nosuch` in `bad.rhai`

hint: the hosts are: localhost
",
    },
    Case {
        name: "--hosts with a typo",
        recipe: "HEADER",
        args: &["run", "RECIPE", "--hosts", "localhots"],
        code: 2,
        stderr: "error: no host `localhots` in `bad.rhai`

hint: did you mean `localhost`?
",
    },
    Case {
        name: "--roles no host has",
        recipe: "HEADER",
        args: &["run", "RECIPE", "--roles", "nosuch"],
        code: 2,
        stderr: "error: no host has the role `nosuch`

hint: set roles on hosts with `.set(\"roles\", [\"web\"])`
",
    },
    Case {
        name: "unknown subcommand",
        recipe: "HEADER",
        args: &["deploy", "RECIPE"],
        code: 2,
        stderr: "error: unrecognized subcommand 'deploy'

Usage: zdd <COMMAND>

For more information, try '--help'.
",
    },
];

fn header(sandbox: &Sandbox, repo: &Repo) -> String {
    basic_recipe(&repo.str(), &sandbox.str("app"))
}

/// The arguments of `case`, with `RECIPE` replaced by the recipe's path.
fn arguments<'a>(args: &[&'a str], recipe: &'a str) -> Vec<&'a str> {
    args.iter()
        .map(|a| if *a == "RECIPE" { recipe } else { *a })
        .collect()
}

#[test]
fn errors_found_before_anything_runs() {
    let mut failures = Vec::new();
    for case in STATIC {
        let sandbox = Sandbox::new();
        let repo = sandbox.repo("repo");
        repo.commit(&[("index.html", "one\n")], "one");
        let text = case
            .recipe
            .replace("HEADER", header(&sandbox, &repo).trim_end());
        sandbox.write("bad.rhai", &text);
        let before = sandbox.tree("", &[]);

        let run = sandbox.run(&arguments(case.args, "bad.rhai"));
        if run.code != Some(case.code) || run.stderr != case.stderr {
            failures.push(format!(
                "case `{}`: exit {:?} (expected {})\n--- stderr\n{}--- expected\n{}",
                case.name, run.code, case.code, run.stderr, case.stderr
            ));
        }
        assert!(!run.stderr.contains("panicked"), "{}", case.name);
        assert_eq!(run.stdout, "", "{}", case.name);
        assert!(
            !sandbox.path("app").exists(),
            "{}: deploy path created",
            case.name
        );
        assert_eq!(
            sandbox.tree("", &[]),
            before,
            "{}: files changed",
            case.name
        );
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn a_recipe_that_does_not_exist() {
    let sandbox = Sandbox::new();
    let run = sandbox.run(&["check", "nosuch.rhai"]);
    run.expect(2);
    assert_eq!(
        run.stderr,
        "error: cannot read recipe `nosuch.rhai`: No such file or directory (os error 2)\n"
    );
    assert_eq!(sandbox.tree("", &[]), BTreeMap::new());
}

/// A small deterministic generator, so "random" input is the same on every run.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn random_bytes_are_an_error_not_a_crash() {
    let sandbox = Sandbox::new();
    let mut noise = Noise(0x5eed);
    let mut bytes: Vec<u8> = (0..512).map(|_| noise.next() as u8).collect();
    bytes[0] = 0xff; // never valid UTF-8
    std::fs::write(sandbox.path("noise.rhai"), &bytes).unwrap();
    for command in ["check", "tasks", "run", "releases", "rollback", "unlock"] {
        let run = sandbox.run(&[command, "noise.rhai"]);
        run.expect(2);
        assert_eq!(
            run.stderr, "error: `noise.rhai` is not UTF-8 text: a recipe is a Rhai script\n",
            "{command}"
        );
    }
    assert_eq!(sandbox.tree("", &["noise.rhai"]), BTreeMap::new());
}

#[test]
fn random_text_is_an_error_not_a_crash() {
    let sandbox = Sandbox::new();
    let alphabet: Vec<char> = "{}()[];:,.\"'`$|&!#=<>+-*/\\ \n\tabcxyz019_éλ✓🚀\u{0}"
        .chars()
        .collect();
    // One exact case...
    sandbox.write("garbage.rhai", "}{ let ✓ = \"🚀\n");
    let run = sandbox.run(&["check", "garbage.rhai"]);
    run.expect(2);
    assert_eq!(
        run.stderr,
        "error: syntax error: Unexpected '}'
 --> garbage.rhai:1:1
  |
1 | }{ let ✓ = \"🚀
  | ^
"
    );
    // ...and many: each an error with exit code 2, never a panic.
    let mut noise = Noise(42);
    for round in 0..150 {
        let length = 1 + (noise.next() % 200) as usize;
        let text: String = (0..length)
            .map(|_| alphabet[(noise.next() % alphabet.len() as u64) as usize])
            .collect();
        sandbox.write("garbage.rhai", &text);
        let run = sandbox.run(&["check", "garbage.rhai"]);
        assert!(
            !run.stderr.contains("panicked"),
            "round {round}: {text:?}\n{}",
            run.stderr
        );
        assert_eq!(run.code, Some(2), "round {round}: {text:?}\n{}", run.stderr);
        assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    }
    assert_eq!(sandbox.tree("", &["garbage.rhai"]), BTreeMap::new());
}

/// A good deploy to throw runtime errors at.
fn deployed() -> (Sandbox, Repo, String) {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n")], "one");
    sandbox.write("app.rhai", &basic_recipe(&repo.str(), &sandbox.str("app")));
    sandbox.run(&["run", "app.rhai", "-q"]).success();
    let current = sandbox.current("app").unwrap();
    (sandbox, repo, current)
}

/// Everything but the release log and the repository cache (which a fetch may update).
fn snapshot(sandbox: &Sandbox) -> BTreeMap<String, String> {
    sandbox.tree("", &["app/.zdd/releases.jsonl", "app/repo.git"])
}

/// Errors found while a deploy runs: exit 1, and the host as it was.
#[test]
fn errors_found_while_deploying() {
    let (sandbox, repo, current) = deployed();
    let now = format!("now: on `localhost`, `current` points at releases/{current}\n");
    let cases: Vec<(&str, String, Vec<&str>, String)> = vec![
        (
            "unknown {{key}} in run(), did you mean",
            "task(\"show\", || { run(\"echo {{releas_path}}\"); });\n".to_string(),
            vec!["run", "RECIPE", "show", "-q"],
            format!(
                "error: task `show` failed on host `localhost`
 --> bad.rhai:5:19
  |
5 | task(\"show\", || {{ run(\"echo {{{{releas_path}}}}\"); }});
  |                   ^
Caused by: unknown key `{{{{releas_path}}}}` (did you mean `release_path`?)
{now}"
            ),
        ),
        (
            "unknown {{key}} in a hook of the deploy",
            "after(\"deploy:update_code\", || { run(\"composer install --no-dev {{composer_flags}}\"); });\n".to_string(),
            vec!["run", "RECIPE", "-q"],
            format!(
                "error: task `after deploy:update_code` failed on host `localhost`
 --> bad.rhai:5:34
  |
5 | after(\"deploy:update_code\", || {{ run(\"composer install --no-dev {{{{composer_flags}}}}\"); }});
  |                                  ^
Caused by: unknown key `{{{{composer_flags}}}}`
{now}"
            ),
        ),
        (
            "unclosed {{ in run()",
            "task(\"show\", || { run(\"echo {{branch\"); });\n".to_string(),
            vec!["run", "RECIPE", "show", "-q"],
            format!(
                "error: task `show` failed on host `localhost`
 --> bad.rhai:5:19
  |
5 | task(\"show\", || {{ run(\"echo {{{{branch\"); }});
  |                   ^
Caused by: `{{{{` without a closing `}}}}` in `echo {{{{branch`
{now}"
            ),
        ),
        (
            "unknown ref",
            String::new(),
            vec!["run", "RECIPE", "-q", "-o", "branch=v9.9.9"],
            unknown_ref("v9.9.9", &now),
        ),
        (
            "missing repository",
            "set(\"repository\", \"[SANDBOX]/nowhere\");\n".to_string(),
            vec!["run", "RECIPE", "-q"],
            format!(
                "error: task `deploy:update_code` failed on host `localhost`
  --> stdlib/deploy.rhai:15:33
   |
15 | task(\"deploy:update_code\", || {{ clone(); }});
   |                                 ^
Caused by: repository `[SANDBOX]/nowhere` does not exist
{now}
hint: set `repository` to a git URL or the path of a git repository on this host
"
            ),
        ),
        (
            "a directory that is not a repository",
            "set(\"repository\", \"[SANDBOX]/app/shared\");\n".to_string(),
            vec!["run", "RECIPE", "-q"],
            format!(
                "error: task `deploy:update_code` failed on host `localhost`
  --> stdlib/deploy.rhai:15:33
   |
15 | task(\"deploy:update_code\", || {{ clone(); }});
   |                                 ^
Caused by: cannot fetch `[SANDBOX]/app/shared`: could not find repository at '[SANDBOX]/app/shared'
{now}
hint: set `repository` to a git URL or the path of a git repository on this host
"
            ),
        ),
        (
            "missing shared file",
            "set(\"shared_files\", [\".env\"]);\n".to_string(),
            vec!["run", "RECIPE", "-q"],
            format!(
                "error: task `deploy:shared` failed on host `localhost`
  --> stdlib/deploy.rhai:18:26
   |
18 | task(\"deploy:shared\", || link_shared());
   |                          ^
Caused by: shared file `.env` is missing: `[SANDBOX]/app/shared/.env` does not exist
{now}
hint: create `[SANDBOX]/app/shared/.env` on host `localhost` before deploying (zdd never creates an empty one)
"
            ),
        ),
        (
            "a shared dir outside the release",
            "set(\"shared_dirs\", [\"../../etc\"]);\n".to_string(),
            vec!["run", "RECIPE", "-q"],
            format!(
                "error: task `deploy:shared` failed on host `localhost`
  --> stdlib/deploy.rhai:18:26
   |
18 | task(\"deploy:shared\", || link_shared());
   |                          ^
Caused by: `shared_dirs` entry `../../etc` must be a relative path inside the release, without `..`
{now}"
            ),
        ),
        (
            "an unknown writable_mode",
            String::new(),
            vec!["run", "RECIPE", "-q", "-o", "writable_dirs=cache", "-o", "writable_mode=sideways"],
            format!(
                "error: task `deploy:writable` failed on host `localhost`
  --> stdlib/deploy.rhai:21:28
   |
21 | task(\"deploy:writable\", || writable());
   |                            ^
Caused by: `writable_mode` is `sideways`; it must be one of chmod, acl, chown, skip
{now}"
            ),
        ),
    ];
    let root = sandbox.root().display().to_string();
    for (name, extra, args, expected) in cases {
        let text = recipe(
            &repo.str(),
            &sandbox.str("app"),
            &extra.replace("[SANDBOX]", &root),
        );
        sandbox.write("bad.rhai", &text);
        let before = snapshot(&sandbox);
        let run = sandbox.run(&arguments(&args, "bad.rhai"));
        run.expect(1);
        let stderr = scrub_new(&run.stderr, &current);
        assert_eq!(stderr, expected, "case `{name}`");
        assert_same_tree(&before, &snapshot(&sandbox), name);
        assert_eq!(sandbox.current("app").as_deref(), Some(current.as_str()));
        assert!(!sandbox.path("app/.zdd/lock").exists(), "{name}");
    }
}

/// Release names other than `current` (the release of the failed run) as `[NEW]`.
fn scrub_new(text: &str, current: &str) -> String {
    crate::support::replace_release_names(&text.replace(current, "<current>"))
        .replace("[RELEASE]", "[NEW]")
        .replace("<current>", current)
}

fn unknown_ref(value: &str, now: &str) -> String {
    format!(
        "error: task `deploy:update_code` failed on host `localhost`
  --> stdlib/deploy.rhai:15:33
   |
15 | task(\"deploy:update_code\", || {{ clone(); }});
   |                                 ^
Caused by: unknown ref `{value}`: no branch, tag or commit of that name in the repository
{now}
hint: set `branch` to a branch, tag or commit of `[SANDBOX]/repo`, e.g. `-o branch=main`
"
    )
}

/// Values that a shell would run if they were pasted into a command.
const HOSTILE: [&str; 7] = [
    "x; touch PWNED",
    "$(touch PWNED)",
    "`touch PWNED`",
    "it's \"quoted\"; touch PWNED",
    "line one\ntouch PWNED",
    "-o PWNED",
    "x && touch PWNED || touch PWNED",
];

/// Whether a file named PWNED appeared anywhere in the sandbox.
fn pwned(sandbox: &Sandbox) -> bool {
    sandbox.tree("", &[]).keys().any(|k| k.contains("PWNED"))
}

#[test]
fn a_hostile_branch_is_one_argument_and_an_unknown_ref() {
    let (sandbox, _repo, current) = deployed();
    let now = format!("now: on `localhost`, `current` points at releases/{current}\n");
    for value in HOSTILE {
        let before = snapshot(&sandbox);
        let option = format!("branch={value}");
        let run = sandbox.run(&["run", "app.rhai", "-q", "-o", &option]);
        run.expect(1);
        assert_eq!(run.stderr, unknown_ref(value, &now), "{value:?}");
        assert_same_tree(&before, &snapshot(&sandbox), value);
        assert!(!pwned(&sandbox), "{value:?} ran");
        assert!(!sandbox.path("app/.zdd/lock").exists());
    }
}

#[test]
fn hostile_values_in_a_command_are_printed_literally() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "show.rhai",
        &format!(
            "set(\"deploy_path\", \"{}\");\nlocalhost();\ntask(\"show\", || {{\n    print(run(\"printf '%s' {{{{branch}}}}\"));\n    run(\"printf '%s' {{{{branch}}}} > shown.txt\");\n}});\n",
            sandbox.str("app")
        ),
    );
    for value in HOSTILE {
        let option = format!("branch={value}");
        let run = sandbox.run(&["run", "show.rhai", "show", "--json", "-o", &option]);
        run.success();
        assert_eq!(run.stderr, "");
        let events = run.json_lines();
        let commands: Vec<&str> = events
            .iter()
            .filter(|e| e["event"] == "command")
            .map(|e| e["command"].as_str().unwrap())
            .collect();
        assert_eq!(commands.len(), 2);
        let printed: Vec<&str> = events
            .iter()
            .filter(|e| e["event"] == "message")
            .map(|e| e["text"].as_str().unwrap())
            .collect();
        assert_eq!(printed, [value], "{value:?}: {commands:?}");
        assert_eq!(sandbox.read("shown.txt"), value);
        assert!(!pwned(&sandbox), "{value:?} ran: {commands:?}");
    }
    // The same values set in the recipe itself.
    sandbox.write(
        "set.rhai",
        &format!(
            "set(\"deploy_path\", \"{}\");\nset(\"branch\", \"$(touch PWNED)`touch PWNED`\");\nlocalhost();\ntask(\"show\", || {{ run(\"echo {{{{branch}}}} > shown.txt\"); }});\n",
            sandbox.str("app")
        ),
    );
    sandbox.run(&["run", "set.rhai", "show", "-q"]).success();
    assert_eq!(sandbox.read("shown.txt"), "$(touch PWNED)`touch PWNED`\n");
    assert!(!pwned(&sandbox));
    assert!(
        !sandbox.path("app").exists(),
        "the task touched no deploy path"
    );
}
