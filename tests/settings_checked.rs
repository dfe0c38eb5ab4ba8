//! The settings read once for the whole run (`parallel`, `rollout_batch`, `rollout_stagger`,
//! `cutover_task`, the notifications) are checked with the others, before anything runs: a bad
//! value is exit 2 from `zdd run` and is reported by `zdd check`, and nothing changes on disk.
//! The runner reads them from the recipe and `-o`, never from a host, so a host's good value
//! does not hide the recipe's bad one.

use crate::support::{assert_same_tree, basic_recipe, Sandbox};

/// A sandbox with one good deploy of `app`, and a recipe `bad.rhai` of it with `extra` before
/// its host line `host`.
fn deployed(extra: &str, host: &str) -> Sandbox {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n")], "one");
    let good = basic_recipe(&repo.str(), &sandbox.str("app"));
    sandbox.write("app.rhai", &good);
    sandbox.run(&["run", "app.rhai", "-q"]).success();
    let bad = good.replace("localhost();\n", &format!("{extra}{host}\n"));
    sandbox.write("bad.rhai", &bad);
    sandbox
}

/// `zdd check` and `zdd run` of `bad.rhai` with `options`: both exit 2 with `expected` on
/// stderr and nothing on stdout, and the sandbox is as it was.
#[track_caller]
fn refused(sandbox: &Sandbox, options: &[&str], expected: &str) {
    let current = sandbox.current("app");
    for command in [&["check", "bad.rhai"][..], &["run", "bad.rhai", "-q"][..]] {
        let before = sandbox.tree("", &[]);
        let args: Vec<&str> = command.iter().chain(options).copied().collect();
        let run = sandbox.run(&args);
        run.expect(2);
        assert_eq!(run.stderr, expected, "{args:?}");
        assert_eq!(run.stdout, "", "{args:?}");
        assert_same_tree(&before, &sandbox.tree("", &[]), &args.join(" "));
        assert_eq!(sandbox.current("app"), current, "{args:?}");
    }
}

const SOON: &str = "error: `rollout_stagger` is `soon`: it must be a number of seconds from 0 to 3600

hint: set it in the recipe with `set(\"rollout_stagger\", 10)` or on the command line with `-o rollout_stagger=10`
";

#[test]
fn a_bad_rollout_stagger_is_refused_before_anything_runs() {
    let sandbox = deployed("", "localhost();");
    refused(&sandbox, &["-o", "rollout_stagger=soon"], SOON);
}

#[test]
fn a_hosts_good_value_does_not_hide_the_recipes_bad_one() {
    // The runner reads the recipe's `rollout_stagger`; the host's is not what it uses.
    let sandbox = deployed(
        "set(\"rollout_stagger\", \"soon\");\n",
        "localhost().set(\"rollout_stagger\", 1);",
    );
    refused(&sandbox, &[], SOON);
    let sandbox = deployed(
        "set(\"parallel\", \"many\");\n",
        "localhost().set(\"parallel\", 2);",
    );
    refused(
        &sandbox,
        &[],
        "error: `parallel` is `many`: it must be a whole number from 1 to 1000

hint: set it in the recipe with `set(\"parallel\", 50)` or on the command line with `-o parallel=50`
",
    );
}

#[test]
fn a_cutover_task_the_recipe_does_not_declare_is_refused() {
    // Without its cutover step a deploy would switch every host at once, unstaggered.
    let sandbox = deployed("", "localhost();");
    refused(
        &sandbox,
        &["-o", "cutover_task=deploy:symlnk"],
        "error: `cutover_task` is `deploy:symlnk`: the recipe declares no task of that name

hint: did you mean `deploy:symlink`?
",
    );
    let run = sandbox.run(&["check", "bad.rhai", "-o", "cutover_task=deploy:symlink"]);
    run.success();
    assert_eq!(run.stdout, "bad.rhai: ok (12 tasks, 1 host)\n");
}
