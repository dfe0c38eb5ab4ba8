//! A corpus of bad input. Each case is asserted exactly (exit code and the whole stderr, with
//! the sandbox path as `[SANDBOX]`), and each leaves the disk as it was: zdd never panics, never
//! half-deploys, and never runs a value as a command.

use std::collections::BTreeMap;

use crate::support::{assert_same_tree, basic_recipe, recipe, their_words, Repo, Sandbox};

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
        name: "a list that grows without end",
        recipe: "HEADER\nlet releases = [];\nloop { releases.push(1); }\n",
        args: CHECK,
        code: 2,
        stderr: "error: size of array/BLOB too large
 --> bad.rhai:6:17
  |
6 | loop { releases.push(1); }
  |                 ^
",
    },
    Case {
        name: "rollback --to an empty name",
        recipe: "HEADER",
        args: &["rollback", "RECIPE", "--to", ""],
        code: 2,
        stderr: "error: `--to` is empty: it must name a release

hint: `zdd releases bad.rhai` lists the releases; leave `--to` out to roll back to the previous one
",
    },
    Case {
        name: "-o a key nothing reads, close to a setting of the recipe",
        recipe: "HEADER\nset(\"greeting\", \"hi\");\n",
        args: &["run", "RECIPE", "-o", "greting=hello"],
        code: 2,
        stderr: "error: `-o greting`: no setting of that name is read by the recipe or zdd

hint: did you mean `greeting`?
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
    // The reason is the operating system's (its wording depends on the libc and the locale).
    assert_eq!(
        their_words(&run.stderr, "`nosuch.rhai`: ", "\n"),
        "error: cannot read recipe `nosuch.rhai`: [THEIRS]\n"
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
Caused by: cannot fetch `[SANDBOX]/app/shared`: [THEIRS]
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
        let mut stderr = scrub_new(&run.stderr, &current);
        // git's reason for refusing a repository is git's (libgit2's) wording, not zdd's.
        let fetch = "cannot fetch `[SANDBOX]/app/shared`: ";
        if stderr.contains(fetch) {
            stderr = their_words(&stderr, fetch, "\n");
        }
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

/// Values a shell would run, that are still valid git ref names (no spaces): they reach git as
/// one argument and are an unknown ref.
const HOSTILE_REFS: [&str; 4] = [
    "x;touch${IFS}PWNED",
    "$(touch${IFS}PWNED)",
    "`touch${IFS}PWNED`",
    "x&&touch${IFS}PWNED||touch${IFS}PWNED",
];

#[test]
fn a_hostile_branch_is_refused_or_one_argument_and_an_unknown_ref() {
    let (sandbox, _repo, current) = deployed();
    let now = format!("now: on `localhost`, `current` points at releases/{current}\n");
    for value in HOSTILE {
        let before = snapshot(&sandbox);
        let option = format!("branch={value}");
        let run = sandbox.run(&["run", "app.rhai", "-q", "-o", &option]);
        run.expect(2);
        let shown = value.replace('\n', "\\n");
        let why = if value.starts_with('-') {
            "it cannot start with `-`"
        } else {
            "a branch, tag or commit name has no spaces, control characters, `..`, `//`, `@{` or any of ~^:?*[\\"
        };
        assert_eq!(
            run.stderr,
            format!("error: `branch` is `{shown}`: {why}\n\nhint: set it in the recipe with `set(\"branch\", \"main\")` or on the command line with `-o branch=main`\n"),
            "{value:?}"
        );
        assert_same_tree(&before, &snapshot(&sandbox), value);
        assert!(!pwned(&sandbox), "{value:?} ran");
    }
    for value in HOSTILE_REFS {
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
            "set(\"deploy_path\", \"{}\");\nlocalhost();\ntask(\"show\", || {{\n    print(run(\"printf '%s' {{{{message}}}}\"));\n    run(\"printf '%s' {{{{message}}}} > shown.txt\");\n}});\n",
            sandbox.str("app")
        ),
    );
    for value in HOSTILE {
        let option = format!("message={value}");
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
            "set(\"deploy_path\", \"{}\");\nset(\"message\", \"$(touch PWNED)`touch PWNED`\");\nlocalhost();\ntask(\"show\", || {{ run(\"echo {{{{message}}}} > shown.txt\"); }});\n",
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

/// What follows the errors of a refused setting.
enum Hint {
    /// How to set this setting, as zdd words it for every setting.
    Set(&'static str),
    /// Any other hint.
    Text(&'static str),
}

/// A setting zdd refuses before anything runs: exit 2, the setting named, nothing created.
struct Refused {
    /// `-o KEY=VALUE`, or lines added to the recipe when it starts with `set(`, `host(` or `let`,
    /// or a whole recipe when it starts with `import`.
    input: &'static str,
    errors: &'static str,
    hint: Hint,
    /// The commands that must refuse it (each followed by `-o INPUT` for an option).
    commands: &'static [&'static [&'static str]],
}

const EVERY: &[&[&str]] = &[
    &["check", "RECIPE"],
    &["run", "RECIPE", "--plan"],
    &["run", "RECIPE", "-q"],
    &["rollback", "RECIPE", "-q"],
];
/// The commands that check code out (`repository` and `branch` matter).
const DEPLOYING: &[&[&str]] = &[
    &["check", "RECIPE"],
    &["run", "RECIPE", "--plan"],
    &["run", "RECIPE", "-q"],
];
const ROLLBACK: &[&[&str]] = &[&["rollback", "RECIPE", "-q"]];

/// The hint zdd gives for a setting: its example in the recipe and on the command line.
fn how_to_set(name: &str) -> String {
    let (in_recipe, example) = match name {
        "deploy_path" => ("\"/var/www/app\"", "/var/www/app"),
        "repository" => (
            "\"git@github.com:acme/shop.git\"",
            "git@github.com:acme/shop.git",
        ),
        "branch" => ("\"main\"", "main"),
        "keep_releases" => ("5", "5"),
        "shared_files" => ("[\".env\"]", ".env"),
        "shared_dirs" => ("[\"storage\"]", "storage"),
        "writable_dirs" => ("[\"bootstrap/cache\"]", "bootstrap/cache"),
        "writable_mode" => ("\"chmod\"", "chmod"),
        "writable_chmod_mode" => ("\"ug+rwX\"", "ug+rwX"),
        "writable_recursive" | "audit" | "check_queued_jobs" | "migrate" | "composer" => {
            ("true", "true")
        }
        "allow_key_rotation" | "forward_agent" => ("false", "false"),
        "http_user" => ("\"www-data\"", "www-data"),
        "rollback_to" => ("\"20260518T103000Z\"", "20260518T103000Z"),
        "bin/php" => ("\"/usr/bin/php\"", "/usr/bin/php"),
        "php_version" => ("\"8.2\"", "8.2"),
        "fpm_reload" | "npm" | "health_expect_release" => ("\"auto\"", "auto"),
        "watch" => (
            "[\"https://shop.example.com/\"]",
            "https://shop.example.com/",
        ),
        "watch_rate" => ("5", "5"),
        "watch_timeout" => ("2", "2"),
        "watch_max_failures" => ("0", "0"),
        "fpm_pid_file" => ("\"/run/php/php8.2-fpm.pid\"", "/run/php/php8.2-fpm.pid"),
        "fpm_reload_timeout" | "health_checks" => ("20", "20"),
        "health_url" => ("\"http://127.0.0.1/health\"", "http://127.0.0.1/health"),
        "health_retries" => ("5", "5"),
        "health_interval" => ("1", "1"),
        "health_timeout" => ("5", "5"),
        "audit_severity" => ("\"critical\"", "critical"),
        "audit_offline" => ("\"warn\"", "warn"),
        "disk_min_free_mb" => ("500", "500"),
        "parallel" => ("50", "50"),
        "rollout_batch" | "max_fail" => ("1", "1"),
        "max_concurrent_starts" => ("50", "50"),
        "rollout_stagger" | "webhook_timeout" => ("10", "10"),
        "port" => ("22", "22"),
        "hostname" => ("\"10.0.0.1\"", "10.0.0.1"),
        "notify_tasks" => ("[\"deploy\"]", "deploy"),
        "queue_names" => ("[\"emails\"]", "emails"),
        other => panic!("no hint known for `{other}`"),
    };
    format!("set it in the recipe with `set(\"{name}\", {in_recipe})` or on the command line with `-o {name}={example}`")
}

const REFUSED: &[Refused] = &[
    // keep_releases: a whole number from 1 to 1000, else cleanup fails after the swap.
    Refused { input: "keep_releases=abc", errors: "`keep_releases` is `abc`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "keep_releases=-1", errors: "`keep_releases` is `-1`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "keep_releases=1.5", errors: "`keep_releases` is `1.5`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "keep_releases=99999999999999999999999", errors: "`keep_releases` is `99999999999999999999999`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "keep_releases=9223372036854775807", errors: "`keep_releases` is `9223372036854775807`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "keep_releases=0", errors: "`keep_releases` is `0`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "keep_releases=1001", errors: "`keep_releases` is `1001`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "keep_releases=", errors: "`keep_releases` is empty: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "keep_releases=٣", errors: "`keep_releases` is `٣`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "keep_releases=5,6", errors: "`keep_releases` is `[\"5\", \"6\"]`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "set(\"keep_releases\", 2.0);", errors: "`keep_releases` is `2.0`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "set(\"keep_releases\", [5]);", errors: "`keep_releases` is `[5]`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "set(\"keep_releases\", #{ n: 5 });", errors: "`keep_releases` is `#{\"n\": 5}`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "set(\"keep_releases\", true);", errors: "`keep_releases` is `true`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    Refused { input: "host(\"web2\").set(\"keep_releases\", \"x\");", errors: "host `web2`: `keep_releases` is `x`: it must be a whole number from 1 to 1000", hint: Hint::Set("keep_releases"), commands: EVERY },
    // deploy_path: absolute, not `/`, once expanded.
    Refused { input: "deploy_path=", errors: "`deploy_path` is empty: it must be an absolute path, e.g. `/var/www/app`", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "deploy_path=/", errors: "`deploy_path` is `/`: it cannot be the root directory", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "deploy_path=///", errors: "`deploy_path` is `///`: it cannot be the root directory", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "deploy_path=app", errors: "`deploy_path` is `app`: it must be an absolute path (starting with `/`)", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "deploy_path=~/app", errors: "`deploy_path` is `~/app`: it must be an absolute path (starting with `/`)", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "deploy_path=../app", errors: "`deploy_path` is `../app`: it must be an absolute path (starting with `/`)", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "deploy_path=-rf", errors: "`deploy_path` is `-rf`: it must be an absolute path (starting with `/`)", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "deploy_path=/srv/../app", errors: "`deploy_path` is `/srv/../app`: it cannot contain `..`", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "deploy_path=/srv/app\n/etc", errors: "`deploy_path` is `/srv/app\\n/etc`: it cannot contain control characters (a newline, a tab)", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "deploy_path={{current_path}}", errors: "`deploy_path` refers to itself through `current_path`", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "deploy_path={{release_path}}/app", errors: "`deploy_path` refers to itself through `release_path`", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "deploy_path={{deploy_path}}/app", errors: "`deploy_path` refers to itself", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "deploy_path=/srv/{{nope}}", errors: "`deploy_path` is `/srv/{{nope}}`: it names `{{nope}}`, which is not set", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "set(\"base\", \"srv\");\nset(\"deploy_path\", \"{{base}}/app\");", errors: "`deploy_path` is `{{base}}/app` (expanded: `srv/app`): it must be an absolute path (starting with `/`)", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "set(\"deploy_path\", [\"/srv/a\", \"/srv/b\"]);", errors: "`deploy_path` is a list: it must be text", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "set(\"deploy_path\", #{ path: \"/srv/a\" });", errors: "`deploy_path` is a map: it must be text", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "set(\"deploy_path\", 42);", errors: "`deploy_path` is `42`: it must be an absolute path (starting with `/`)", hint: Hint::Set("deploy_path"), commands: EVERY },
    // Required settings, missing: refused before `releases/` and `shared/` exist.
    Refused { input: "import \"deploy\";\nset(\"repository\", \"[SANDBOX]/repo\");\nlocalhost();\n", errors: "`deploy_path` is not set: zdd needs the directory holding current, releases/ and shared/", hint: Hint::Set("deploy_path"), commands: EVERY },
    Refused { input: "import \"deploy\";\nset(\"deploy_path\", \"[SANDBOX]/app\");\nlocalhost();\n", errors: "`repository` is not set: the deploy needs the git repository to deploy, a URL or a path on the host", hint: Hint::Set("repository"), commands: DEPLOYING },
    Refused { input: "import \"deploy\";\nlocalhost();\n", errors: "`deploy_path` is not set: zdd needs the directory holding current, releases/ and shared/\nerror: `repository` is not set: the deploy needs the git repository to deploy, a URL or a path on the host", hint: Hint::Text("set it in the recipe with `set(\"deploy_path\", \"/var/www/app\")` or on the command line with `-o deploy_path=/var/www/app`\n\nhint: set it in the recipe with `set(\"repository\", \"git@github.com:acme/shop.git\")` or on the command line with `-o repository=git@github.com:acme/shop.git`"), commands: DEPLOYING },
    Refused { input: "repository=", errors: "`repository` is empty: it must be the git repository to deploy, a URL or a path on the host", hint: Hint::Set("repository"), commands: EVERY },
    Refused { input: "repository=--upload-pack=touch PWNED", errors: "`repository` is `--upload-pack=touch PWNED`: it cannot start with `-`", hint: Hint::Set("repository"), commands: EVERY },
    Refused { input: "repository=/srv/git\n/x", errors: "`repository` is `/srv/git\\n/x`: it cannot contain control characters (a newline, a tab)", hint: Hint::Set("repository"), commands: EVERY },
    // branch: a name git could have.
    Refused { input: "branch=", errors: "`branch` is empty: it must name a branch, tag or commit", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "branch=--upload-pack=touch PWNED", errors: "`branch` is `--upload-pack=touch PWNED`: it cannot start with `-`", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "branch=main\nmain", errors: "`branch` is `main\\nmain`: a branch, tag or commit name has no spaces, control characters, `..`, `//`, `@{` or any of ~^:?*[\\", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "set(\"branch\", \"main\\x00\");", errors: "`branch` is `main\\u{0}`: a branch, tag or commit name has no spaces, control characters, `..`, `//`, `@{` or any of ~^:?*[\\", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "branch=a..b", errors: "`branch` is `a..b`: a branch, tag or commit name has no spaces, control characters, `..`, `//`, `@{` or any of ~^:?*[\\", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "branch=HEAD~1", errors: "`branch` is `HEAD~1`: a branch, tag or commit name has no spaces, control characters, `..`, `//`, `@{` or any of ~^:?*[\\", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "branch=main:evil", errors: "`branch` is `main:evil`: a branch, tag or commit name has no spaces, control characters, `..`, `//`, `@{` or any of ~^:?*[\\", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "branch=@{-1}", errors: "`branch` is `@{-1}`: a branch, tag or commit name has no spaces, control characters, `..`, `//`, `@{` or any of ~^:?*[\\", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "branch=refs/heads/", errors: "`branch` is `refs/heads/`: a branch, tag or commit name has no spaces, control characters, `..`, `//`, `@{` or any of ~^:?*[\\", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "branch=feature.lock", errors: "`branch` is `feature.lock`: a branch, tag or commit name has no spaces, control characters, `..`, `//`, `@{` or any of ~^:?*[\\", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "branch=ma*n", errors: "`branch` is `ma*n`: a branch, tag or commit name has no spaces, control characters, `..`, `//`, `@{` or any of ~^:?*[\\", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "branch=main,dev", errors: "`branch` is a list: it must be text", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "set(\"branch\", #{ name: \"main\" });", errors: "`branch` is a map: it must be text", hint: Hint::Set("branch"), commands: EVERY },
    Refused { input: "branch=🚀 launch", errors: "`branch` is `🚀 launch`: a branch, tag or commit name has no spaces, control characters, `..`, `//`, `@{` or any of ~^:?*[\\", hint: Hint::Set("branch"), commands: EVERY },
    // shared and writable paths: inside the release; shared entries never inside each other.
    Refused { input: "shared_dirs=../../etc", errors: "`shared_dirs` entry `../../etc` must be a relative path inside the release, without `..`", hint: Hint::Set("shared_dirs"), commands: EVERY },
    Refused { input: "shared_dirs=/etc", errors: "`shared_dirs` entry `/etc` must be a relative path inside the release, without `..`", hint: Hint::Set("shared_dirs"), commands: EVERY },
    Refused { input: "shared_dirs=storage/../..", errors: "`shared_dirs` entry `storage/../..` must be a relative path inside the release, without `..`", hint: Hint::Set("shared_dirs"), commands: EVERY },
    Refused { input: "shared_dirs={{deploy_path}}/storage", errors: "`shared_dirs` entry `[SANDBOX]/app/storage` must be a relative path inside the release, without `..`", hint: Hint::Set("shared_dirs"), commands: EVERY },
    Refused { input: "shared_files=a//b", errors: "`shared_files` entry `a//b` must be a relative path inside the release, without `..`", hint: Hint::Set("shared_files"), commands: EVERY },
    Refused { input: "shared_files=.", errors: "`shared_files` entry `.` must be a relative path inside the release, without `..`", hint: Hint::Set("shared_files"), commands: EVERY },
    Refused { input: "shared_files=.env\nAPP_KEY", errors: "`shared_files` entry `.env\\nAPP_KEY` cannot contain control characters (a newline, a tab)", hint: Hint::Set("shared_files"), commands: EVERY },
    Refused { input: "set(\"shared_files\", #{ env: \".env\" });", errors: "`shared_files` is a map: it must be a list", hint: Hint::Set("shared_files"), commands: EVERY },
    Refused { input: "set(\"shared_dirs\", [[\"storage\"]]);", errors: "`shared_dirs` lists a list: its entries must be text", hint: Hint::Set("shared_dirs"), commands: EVERY },
    Refused { input: "set(\"shared_dirs\", [\"storage\", \"\"]);", errors: "`shared_dirs` entry `` must be a relative path inside the release, without `..`", hint: Hint::Set("shared_dirs"), commands: EVERY },
    Refused { input: "writable_dirs=../cache", errors: "`writable_dirs` entry `../cache` must be a relative path inside the release, without `..`", hint: Hint::Set("writable_dirs"), commands: EVERY },
    Refused { input: "writable_dirs=/var/www", errors: "`writable_dirs` entry `/var/www` must be a relative path inside the release, without `..`", hint: Hint::Set("writable_dirs"), commands: EVERY },
    Refused { input: "set(\"shared_dirs\", [\"storage\"]);\nset(\"shared_files\", [\"storage/oauth-private.key\"]);", errors: "`shared_files` entry `storage/oauth-private.key` is inside `shared_dirs` entry `storage`: it is already shared through `storage`", hint: Hint::Text("remove `storage/oauth-private.key` from `shared_files`: everything under a shared entry is shared with it"), commands: EVERY },
    Refused { input: "set(\"shared_dirs\", [\"storage\", \"storage/logs\"]);", errors: "`shared_dirs` entry `storage/logs` is inside `shared_dirs` entry `storage`: it is already shared through `storage`", hint: Hint::Text("remove `storage/logs` from `shared_dirs`: everything under a shared entry is shared with it"), commands: EVERY },
    Refused { input: "set(\"shared_dirs\", [\"storage/logs\", \"storage/\"]);", errors: "`shared_dirs` entry `storage/logs` is inside `shared_dirs` entry `storage`: it is already shared through `storage`", hint: Hint::Text("remove `storage/logs` from `shared_dirs`: everything under a shared entry is shared with it"), commands: EVERY },
    Refused { input: "set(\"shared_dirs\", [\"storage\", \"storage\"]);", errors: "`shared_dirs` lists `storage` twice", hint: Hint::Text("remove `storage` from `shared_dirs`: everything under a shared entry is shared with it"), commands: EVERY },
    Refused { input: "set(\"shared_dirs\", [\"storage\"]);\nset(\"shared_files\", [\"storage\"]);", errors: "`storage` is in both `shared_dirs` and `shared_files`", hint: Hint::Text("remove `storage` from `shared_files`: everything under a shared entry is shared with it"), commands: EVERY },
    // writable_*.
    Refused { input: "writable_mode=sideways", errors: "`writable_mode` is `sideways`: it must be one of chmod, acl, chown, skip", hint: Hint::Set("writable_mode"), commands: EVERY },
    Refused { input: "writable_mode=CHMOD", errors: "`writable_mode` is `CHMOD`: it must be one of chmod, acl, chown, skip", hint: Hint::Set("writable_mode"), commands: EVERY },
    Refused { input: "writable_mode=", errors: "`writable_mode` is empty: it must be one of chmod, acl, chown, skip", hint: Hint::Set("writable_mode"), commands: EVERY },
    Refused { input: "writable_mode=chmod,acl", errors: "`writable_mode` is `[\"chmod\", \"acl\"]`: it must be one of chmod, acl, chown, skip", hint: Hint::Set("writable_mode"), commands: EVERY },
    Refused { input: "writable_recursive=maybe", errors: "`writable_recursive` is `maybe`: it must be true or false", hint: Hint::Set("writable_recursive"), commands: EVERY },
    Refused { input: "writable_chmod_mode=-R 777", errors: "`writable_chmod_mode` is `-R 777`: it cannot start with `-`", hint: Hint::Set("writable_chmod_mode"), commands: EVERY },
    Refused { input: "http_user=-root", errors: "`http_user` is `-root`: it cannot start with `-`", hint: Hint::Set("http_user"), commands: EVERY },
    Refused { input: "http_user=", errors: "`http_user` is empty: it must be the web server's user (writable_mode acl or chown)", hint: Hint::Set("http_user"), commands: EVERY },
    // The rollout.
    Refused { input: "parallel=0", errors: "`parallel` is `0`: it must be a whole number from 1 to 1000", hint: Hint::Set("parallel"), commands: EVERY },
    Refused { input: "parallel=many", errors: "`parallel` is `many`: it must be a whole number from 1 to 1000", hint: Hint::Set("parallel"), commands: EVERY },
    Refused { input: "rollout_batch=0", errors: "`rollout_batch` is `0`: it must be a number of hosts (at least 1), a percentage (`25%`) or a list of waves (`[1, \"10%\", \"100%\"]`)", hint: Hint::Set("rollout_batch"), commands: EVERY },
    Refused { input: "rollout_batch=-3", errors: "`rollout_batch` is `-3`: it must be a number of hosts (at least 1), a percentage (`25%`) or a list of waves (`[1, \"10%\", \"100%\"]`)", hint: Hint::Set("rollout_batch"), commands: EVERY },
    Refused { input: "rollout_batch=1,0%", errors: "`rollout_batch` is `[\"1\", \"0%\"]`: its wave `0%` must be a number of hosts (at least 1) or a percentage from 1% to 100%", hint: Hint::Set("rollout_batch"), commands: EVERY },
    Refused { input: "set(\"rollout_batch\", []);", errors: "`rollout_batch` is `[]`: the list is empty: it must be a number of hosts (at least 1), a percentage (`25%`) or a list of waves (`[1, \"10%\", \"100%\"]`)", hint: Hint::Set("rollout_batch"), commands: EVERY },
    Refused { input: "max_fail=abc", errors: "`max_fail` is `abc`: it must be a number of hosts or a percentage (`10%`)", hint: Hint::Set("max_fail"), commands: EVERY },
    Refused { input: "max_fail=150%", errors: "`max_fail` is `150%`: it must be a number of hosts or a percentage (`10%`)", hint: Hint::Set("max_fail"), commands: EVERY },
    Refused { input: "max_concurrent_starts=0", errors: "`max_concurrent_starts` is `0`: it must be a whole number from 1 to 1000", hint: Hint::Set("max_concurrent_starts"), commands: EVERY },
    Refused { input: "rollout_stagger=forever", errors: "`rollout_stagger` is `forever`: it must be a number of seconds from 0 to 3600", hint: Hint::Set("rollout_stagger"), commands: EVERY },
    Refused { input: "rollout_stagger=-1", errors: "`rollout_stagger` is `-1`: it must be a number of seconds from 0 to 3600", hint: Hint::Set("rollout_stagger"), commands: EVERY },
    Refused { input: "rollout_stagger=3601", errors: "`rollout_stagger` is `3601`: it must be a number of seconds from 0 to 3600", hint: Hint::Set("rollout_stagger"), commands: EVERY },
    Refused { input: "rollout_stagger=NaN", errors: "`rollout_stagger` is `NaN`: it must be a number of seconds from 0 to 3600", hint: Hint::Set("rollout_stagger"), commands: EVERY },
    Refused { input: "rollout_stagger=inf", errors: "`rollout_stagger` is `inf`: it must be a number of seconds from 0 to 3600", hint: Hint::Set("rollout_stagger"), commands: EVERY },
    // The health gate.
    Refused { input: "health_checks=0", errors: "`health_checks` is `0`: it must be a whole number from 1 to 10000", hint: Hint::Set("health_checks"), commands: EVERY },
    Refused { input: "health_retries=lots", errors: "`health_retries` is `lots`: it must be a whole number from 0 to 10000", hint: Hint::Set("health_retries"), commands: EVERY },
    Refused { input: "health_interval=1e9", errors: "`health_interval` is `1e9`: it must be a number of seconds from 0 to 3600", hint: Hint::Set("health_interval"), commands: EVERY },
    Refused { input: "health_timeout=-5s", errors: "`health_timeout` is `-5s`: it must be a number of seconds from 0 to 3600", hint: Hint::Set("health_timeout"), commands: EVERY },
    Refused { input: "health_expect_release=perhaps", errors: "`health_expect_release` is `perhaps`: it must be one of auto, true, false", hint: Hint::Set("health_expect_release"), commands: EVERY },
    Refused { input: "health_url=ftp://x", errors: "`health_url` is `ftp://x`: it must be empty or a URL starting with http:// or https://", hint: Hint::Set("health_url"), commands: EVERY },
    Refused { input: "health_url=127.0.0.1/health", errors: "`health_url` is `127.0.0.1/health`: it must be empty or a URL starting with http:// or https://", hint: Hint::Set("health_url"), commands: EVERY },
    Refused { input: "health_url=https://example.com/he alth", errors: "`health_url` is `https://example.com/he alth`: it must be empty or a URL starting with http:// or https://", hint: Hint::Set("health_url"), commands: EVERY },
    // The watcher.
    Refused { input: "watch=ftp://x", errors: "`watch` entry `ftp://x` cannot be requested: it must start with http:// or https://", hint: Hint::Set("watch"), commands: EVERY },
    Refused { input: "watch_rate=1000", errors: "`watch_rate` is `1000`: it must be a whole number from 1 to 100", hint: Hint::Set("watch_rate"), commands: EVERY },
    Refused { input: "watch_rate=0", errors: "`watch_rate` is `0`: it must be a whole number from 1 to 100", hint: Hint::Set("watch_rate"), commands: EVERY },
    Refused { input: "watch_timeout=0", errors: "`watch_timeout` is `0`: it must be a number of seconds more than 0 to 60", hint: Hint::Set("watch_timeout"), commands: EVERY },
    Refused { input: "watch_max_failures=-1", errors: "`watch_max_failures` is `-1`: it must be a whole number from 0 to 1000000", hint: Hint::Set("watch_max_failures"), commands: EVERY },
    // Gates.
    Refused { input: "audit=sometimes", errors: "`audit` is `sometimes`: it must be true or false", hint: Hint::Set("audit"), commands: EVERY },
    Refused { input: "audit_severity=extreme", errors: "`audit_severity` is `extreme`: it must be one of low, medium, high, critical", hint: Hint::Set("audit_severity"), commands: EVERY },
    Refused { input: "audit_offline=ignore", errors: "`audit_offline` is `ignore`: it must be one of warn, fail", hint: Hint::Set("audit_offline"), commands: EVERY },
    Refused { input: "disk_min_free_mb=-1", errors: "`disk_min_free_mb` is `-1`: it must be a whole number from 0 to 1000000000", hint: Hint::Set("disk_min_free_mb"), commands: EVERY },
    Refused { input: "disk_min_free_mb=lots", errors: "`disk_min_free_mb` is `lots`: it must be a whole number from 0 to 1000000000", hint: Hint::Set("disk_min_free_mb"), commands: EVERY },
    Refused { input: "check_queued_jobs=nope", errors: "`check_queued_jobs` is `nope`: it must be true or false", hint: Hint::Set("check_queued_jobs"), commands: EVERY },
    Refused { input: "set(\"queue_names\", #{ emails: true });", errors: "`queue_names` is a map: it must be a list", hint: Hint::Set("queue_names"), commands: EVERY },
    Refused { input: "set(\"allow_key_rotation\", #{});", errors: "`allow_key_rotation` is `#{}`: it must be true or false", hint: Hint::Set("allow_key_rotation"), commands: EVERY },
    // php-fpm and programs.
    Refused { input: "fpm_reload=sometimes", errors: "`fpm_reload` is `sometimes`: it must be one of auto, signal, systemctl, none", hint: Hint::Set("fpm_reload"), commands: EVERY },
    Refused { input: "fpm_reload_timeout=0", errors: "`fpm_reload_timeout` is `0`: it must be a whole number from 1 to 3600", hint: Hint::Set("fpm_reload_timeout"), commands: EVERY },
    Refused { input: "php_version=8.2; rm -rf /", errors: "`php_version` is `8.2; rm -rf /`: it must be a version such as 8.2", hint: Hint::Set("php_version"), commands: EVERY },
    Refused { input: "php_version=", errors: "`php_version` is empty: it must be a version such as 8.2", hint: Hint::Set("php_version"), commands: EVERY },
    Refused { input: "bin/php=-i", errors: "`bin/php` is `-i`: it cannot start with `-`", hint: Hint::Set("bin/php"), commands: EVERY },
    Refused { input: "fpm_pid_file=", errors: "`fpm_pid_file` is empty: it must be php-fpm's master pid file", hint: Hint::Set("fpm_pid_file"), commands: EVERY },
    // Read by the Laravel recipe.
    Refused { input: "migrate=yes", errors: "`migrate` is `yes`: it must be true or false", hint: Hint::Set("migrate"), commands: EVERY },
    Refused { input: "composer=1", errors: "`composer` is `1`: it must be true or false", hint: Hint::Set("composer"), commands: EVERY },
    Refused { input: "npm=sometimes", errors: "`npm` is `sometimes`: it must be one of auto, true, false", hint: Hint::Set("npm"), commands: EVERY },
    // Hosts and notifications.
    Refused { input: "port=0", errors: "`port` is `0`: it must be a whole number from 1 to 65535", hint: Hint::Set("port"), commands: EVERY },
    Refused { input: "port=65536", errors: "`port` is `65536`: it must be a whole number from 1 to 65535", hint: Hint::Set("port"), commands: EVERY },
    Refused { input: "port=ssh", errors: "`port` is `ssh`: it must be a whole number from 1 to 65535", hint: Hint::Set("port"), commands: EVERY },
    Refused { input: "forward_agent=sure", errors: "`forward_agent` is `sure`: it must be true or false", hint: Hint::Set("forward_agent"), commands: EVERY },
    Refused { input: "hostname=-oProxyCommand=touch PWNED", errors: "`hostname` is `-oProxyCommand=touch PWNED`: it cannot start with `-`", hint: Hint::Set("hostname"), commands: EVERY },
    Refused { input: "set(\"notify_tasks\", #{ deploy: true });", errors: "`notify_tasks` is a map: it must be a list", hint: Hint::Set("notify_tasks"), commands: EVERY },
    Refused { input: "webhook_timeout=0", errors: "`webhook_timeout` is `0`: it must be a number of seconds more than 0 to 600", hint: Hint::Set("webhook_timeout"), commands: EVERY },
    Refused { input: "webhook_timeout=601", errors: "`webhook_timeout` is `601`: it must be a number of seconds more than 0 to 600", hint: Hint::Set("webhook_timeout"), commands: EVERY },
    // rollback_to (`--to`): a release name, never a path.
    Refused { input: "rollback_to=../../etc", errors: "`rollback_to` is `../../etc`: it must be the name of a release under `releases/`", hint: Hint::Set("rollback_to"), commands: ROLLBACK },
    Refused { input: "rollback_to=", errors: "`rollback_to` is empty: it must name a release (`zdd releases` lists them)", hint: Hint::Set("rollback_to"), commands: ROLLBACK },
    // `-o` keys read by nothing, and keys zdd computes.
    Refused { input: "branhc=main", errors: "`-o branhc`: no setting of that name is read by the recipe or zdd", hint: Hint::Text("did you mean `branch`?"), commands: EVERY },
    Refused { input: "keep_release=3", errors: "`-o keep_release`: no setting of that name is read by the recipe or zdd", hint: Hint::Text("did you mean `keep_releases`?"), commands: EVERY },
    Refused { input: "deploypath=/srv/app", errors: "`-o deploypath`: no setting of that name is read by the recipe or zdd", hint: Hint::Text("did you mean `deploy_path`?"), commands: EVERY },
    Refused { input: "release_path=/tmp", errors: "`-o release_path`: `release_path` is computed by zdd and cannot be set", hint: Hint::Text("zdd computes it from `deploy_path` and the release it makes"), commands: EVERY },
    Refused { input: "current_path=/", errors: "`-o current_path`: `current_path` is computed by zdd and cannot be set", hint: Hint::Text("zdd computes it from `deploy_path` and the release it makes"), commands: EVERY },
    Refused { input: "release_name=x", errors: "`-o release_name`: `release_name` is computed by zdd and cannot be set", hint: Hint::Text("zdd computes it from `deploy_path` and the release it makes"), commands: EVERY },
    Refused { input: "previous_release=x", errors: "`-o previous_release`: `previous_release` is computed by zdd and cannot be set", hint: Hint::Text("zdd computes it from `deploy_path` and the release it makes"), commands: EVERY },
];

/// Whether `input` is recipe text (else an `-o` option).
fn is_recipe_text(input: &str) -> bool {
    ["set(", "host(", "let ", "import "]
        .iter()
        .any(|start| input.starts_with(start))
}

#[test]
fn bad_settings_are_refused_before_anything_changes() {
    let mut failures = Vec::new();
    for case in REFUSED {
        let sandbox = Sandbox::new();
        let repo = sandbox.repo("repo");
        repo.commit(&[("index.html", "one\n")], "one");
        let root = sandbox.root().display().to_string();
        let text = if case.input.starts_with("import ") {
            case.input.replace("[SANDBOX]", &root)
        } else if is_recipe_text(case.input) {
            format!("{}{}\n", header(&sandbox, &repo), case.input)
        } else {
            header(&sandbox, &repo)
        };
        sandbox.write("bad.rhai", &text);
        let before = sandbox.tree("", &[]);
        let hint = match case.hint {
            Hint::Set(setting) => how_to_set(setting),
            Hint::Text(text) => text.to_string(),
        };
        let expected = format!("error: {}\n\nhint: {hint}\n", case.errors);
        for command in case.commands {
            let mut args = arguments(command, "bad.rhai");
            if !is_recipe_text(case.input) {
                args.extend(["-o", case.input]);
            }
            let run = sandbox.run(&args);
            if run.code != Some(2) || run.stderr != expected {
                failures.push(format!(
                    "case `{}` ({}): exit {:?}\n--- stderr\n{}--- expected\n{}",
                    case.input,
                    command.join(" "),
                    run.code,
                    run.stderr,
                    expected
                ));
            }
            assert_eq!(run.stdout, "", "{}", case.input);
            assert!(
                !sandbox.path("app").exists(),
                "{}: deploy path created",
                case.input
            );
            assert_eq!(
                sandbox.tree("", &[]),
                before,
                "{}: files changed",
                case.input
            );
            assert!(!pwned(&sandbox), "{}", case.input);
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
