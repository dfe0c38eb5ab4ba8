//! A deploy that fails, wherever it fails, leaves the host as it was: `current` unchanged (or
//! switched back), the lock released, exit code 1, and a message that says what failed where.
//! A release that failed before the swap is removed at once; one that failed after it (requests
//! may still be running on it) is marked failed and removed by the next deploy.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::support::{assert_same_tree, recipe, scrub, Repo, Sandbox};

/// Every step of the stdlib `deploy` group, in order.
const STEPS: [&str; 9] = [
    "deploy:prepare",
    "deploy:lock",
    "deploy:release",
    "deploy:update_code",
    "deploy:shared",
    "deploy:writable",
    "deploy:symlink",
    "deploy:cleanup",
    "deploy:unlock",
];

/// A good deploy (with a shared dir, a shared file and a writable dir) to fail on top of.
fn deployed() -> (Sandbox, Repo, String) {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(
        &[("index.html", "good\n"), ("storage/seed.txt", "seed\n")],
        "good",
    );
    sandbox.write("app/shared/.env", "APP_KEY=secret\n");
    sandbox.write(
        "app.rhai",
        &recipe(&repo.str(), &sandbox.str("app"), CONFIG),
    );
    sandbox.run(&["run", "app.rhai"]).success();
    sandbox.write("app/shared/storage/upload.txt", "kept\n");
    // The failing deploys would deploy this commit.
    repo.commit(&[("index.html", "bad\n")], "bad");
    let current = sandbox.current("app").unwrap();
    (sandbox, repo, current)
}

const CONFIG: &str = "set(\"shared_dirs\", [\"storage\"]);
set(\"shared_files\", [\".env\"]);
set(\"writable_dirs\", [\"storage\"]);
";

/// The releases the log marks failed.
fn failed_releases(sandbox: &Sandbox) -> Vec<String> {
    sandbox
        .log("app")
        .iter()
        .filter(|e| e["event"] == "failed")
        .map(|e| e["release"].as_str().unwrap().to_string())
        .collect()
}

/// The deploy path, without what a failed deploy may change: the release log, the repository
/// cache, and the directories of failed releases (one that failed after it was swapped in stays
/// until the next deploy's cleanup, since requests that started on it may still be running).
fn snapshot(sandbox: &Sandbox) -> BTreeMap<String, String> {
    let failed = failed_releases(sandbox);
    sandbox
        .tree("app", &[".zdd/releases.jsonl", "repo.git"])
        .into_iter()
        .filter(|(path, _)| {
            !failed.iter().any(|name| {
                let dir = format!("releases/{name}");
                *path == dir || path.starts_with(&format!("{dir}/"))
            })
        })
        .collect()
}

/// The host is as before: same files, same `current`, no lock; the release the failed run
/// created is recorded as failed, never current, and gone unless it had been swapped in.
#[track_caller]
fn assert_untouched(
    sandbox: &Sandbox,
    before: &BTreeMap<String, String>,
    current: &str,
    log_before: usize,
    swapped: bool,
    context: &str,
) {
    assert_same_tree(before, &snapshot(sandbox), context);
    assert_eq!(
        sandbox.current("app").as_deref(),
        Some(current),
        "{context}"
    );
    assert!(!sandbox.path("app/.zdd/lock").exists(), "{context}");
    assert_eq!(sandbox.read("app/current/index.html"), "good\n");
    assert_eq!(sandbox.read("app/current/storage/upload.txt"), "kept\n");
    let log = sandbox.log("app");
    let new: Vec<&Value> = log[log_before..].iter().collect();
    let listed = sandbox
        .run(&["releases", "app.rhai", "--json"])
        .json_lines();
    for created in new.iter().filter(|e| e["event"] == "created") {
        let name = created["release"].as_str().unwrap();
        assert!(
            new.iter()
                .any(|e| e["event"] == "failed" && e["release"] == name),
            "{context}: release {name} is not recorded as failed: {new:#?}"
        );
        let dir = sandbox.path(&format!("app/releases/{name}"));
        assert_eq!(dir.exists(), swapped, "{context}: {}", dir.display());
        if swapped {
            let line = listed
                .iter()
                .find(|l| l["release"] == name)
                .expect("listed");
            assert_eq!(line["status"], "failed", "{context}");
            assert_eq!(line["current"], false, "{context}");
        }
    }
    for e in &new {
        let event = e["event"].as_str().unwrap();
        assert!(
            ["created", "checked_out", "swapped", "failed", "removed"].contains(&event),
            "{context}: unexpected event {e}"
        );
    }
}

#[test]
fn a_failure_before_or_after_any_step_leaves_the_host_as_it_was() {
    let (sandbox, _repo, current) = deployed();
    let before = snapshot(&sandbox);
    for (index, step) in STEPS.iter().enumerate() {
        for hook in ["before", "after"] {
            let file = format!("{hook}-{}.rhai", step.replace(':', "-"));
            sandbox.write(
                &file,
                &recipe(
                    &_repo.str(),
                    &sandbox.str("app"),
                    &format!(
                        "{CONFIG}task(\"boom\", || {{ run(\"echo out; echo err >&2; exit 3\"); }});\n{hook}(\"{step}\", \"boom\");\n"
                    ),
                ),
            );
            let log_before = sandbox.log("app").len();
            let run = sandbox.run(&["run", &file, "-q"]);
            run.expect(1);

            // Once `current` was swapped, it is switched back (and says so, even with -q).
            let swapped = index > 6 || (index == 6 && hook == "after");
            let switched_back = if swapped {
                format!(
                    "[localhost] switched back: current -> releases/{current} (was [RELEASE])\n"
                )
            } else {
                String::new()
            };
            let expected = format!(
                "{switched_back}error: task `boom` failed on host `localhost`
 --> {file}:8:19
  |
8 | task(\"boom\", || {{ run(\"echo out; echo err >&2; exit 3\"); }});
  |                   ^
Caused by: command `echo out; echo err >&2; exit 3` exited with status 3
stdout (last lines):
  | out
stderr (last lines):
  | err
now: on `localhost`, `current` points at releases/{current}
"
            );
            assert_eq!(
                scrub_except(&run.stderr, &current),
                expected,
                "{hook} {step}"
            );
            let context = format!("{hook} {step}");
            assert_untouched(&sandbox, &before, &current, log_before, swapped, &context);
        }
    }
    // After all that, a deploy still works, and its cleanup removes the failed releases.
    assert!(!failed_releases(&sandbox).is_empty());
    sandbox.run(&["run", "app.rhai", "-q"]).success();
    assert_eq!(sandbox.read("app/current/index.html"), "bad\n");
    assert_eq!(sandbox.read("app/current/storage/upload.txt"), "kept\n");
    let new = sandbox.current("app").unwrap();
    assert_eq!(sandbox.releases("app"), [current, new]);
}

#[test]
fn a_task_that_throws_fails_the_deploy() {
    let (sandbox, repo, current) = deployed();
    let before = snapshot(&sandbox);
    let log_before = sandbox.log("app").len();
    sandbox.write(
        "throws.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            &format!(
                "{CONFIG}after(\"deploy:symlink\", || {{\n    throw \"the health check said no\";\n}});\n"
            ),
        ),
    );
    let run = sandbox.run(&["run", "throws.rhai"]);
    let failed = sandbox
        .log("app")
        .last()
        .map(|e| e["release"].as_str().unwrap().to_string())
        .unwrap();
    run.expect(1);
    assert_eq!(
        scrub(&run.stderr),
        format!(
            "[localhost] deploy:prepare ... ok ([DURATION])
[localhost] deploy:lock ... ok ([DURATION])
[localhost] deploy:release ... ok ([DURATION])
[localhost] checked out `HEAD` at {}
[localhost] deploy:update_code ... ok ([DURATION])
[localhost] deploy:shared ... ok ([DURATION])
[localhost] deploy:writable ... ok ([DURATION])
[localhost] current -> releases/[RELEASE]
[localhost] deploy:symlink ... ok ([DURATION])
[localhost] after deploy:symlink ... failed
[localhost] switched back: current -> releases/[RELEASE] (was [RELEASE])
[localhost] releases/[RELEASE] is marked failed; the next deploy removes it (requests that started on it may still be running)
[localhost] deploy:failed ... ok ([DURATION])
error: task `after deploy:symlink` failed on host `localhost`
 --> throws.rhai:9:5
  |
9 |     throw \"the health check said no\";
  |     ^
Caused by: the health check said no
now: on `localhost`, `current` points at releases/[RELEASE]
",
            &repo_head(&repo)[..12]
        )
    );
    assert!(run.stderr.contains(&format!(
        "switched back: current -> releases/{current} (was {failed})\n[localhost] releases/{failed} is marked failed"
    )));
    assert_untouched(&sandbox, &before, &current, log_before, true, "throw");
}

/// [`scrub`], except that release `keep` keeps its name.
fn scrub_except(text: &str, keep: &str) -> String {
    scrub(&text.replace(keep, "<keep>")).replace("<keep>", keep)
}

fn repo_head(repo: &Repo) -> String {
    crate::support::git(&repo.path, &["rev-parse", "HEAD"])
        .trim()
        .to_string()
}

#[test]
fn a_missing_shared_file_fails_before_the_swap_and_names_the_file() {
    let (sandbox, repo, current) = deployed();
    let before = snapshot(&sandbox);
    let log_before = sandbox.log("app").len();
    sandbox.write(
        "more-shared.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            &format!("{CONFIG}add(\"shared_files\", [\"config/app.ini\"]);\n"),
        ),
    );
    let run = sandbox.run(&["run", "more-shared.rhai", "-q"]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        format!(
            "error: task `deploy:shared` failed on host `localhost`
  --> stdlib/deploy.rhai:18:26
   |
18 | task(\"deploy:shared\", || link_shared());
   |                          ^
Caused by: shared file `config/app.ini` is missing: `[SANDBOX]/app/shared/config/app.ini` does not exist
now: on `localhost`, `current` points at releases/{current}

hint: create `[SANDBOX]/app/shared/config/app.ini` on host `localhost` before deploying (zdd never creates an empty one)
"
        )
    );
    assert_untouched(&sandbox, &before, &current, log_before, false, "");
    assert!(!sandbox.path("app/shared/config").exists());
}

#[test]
fn an_unknown_ref_fails_and_leaves_nothing_behind() {
    let (sandbox, _repo, current) = deployed();
    let before = snapshot(&sandbox);
    let log_before = sandbox.log("app").len();
    let run = sandbox.run(&["run", "app.rhai", "-q", "-o", "branch=nope"]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        format!(
            "error: task `deploy:update_code` failed on host `localhost`
  --> stdlib/deploy.rhai:15:33
   |
15 | task(\"deploy:update_code\", || {{ clone(); }});
   |                                 ^
Caused by: unknown ref `nope`: no branch, tag or commit of that name in the repository
now: on `localhost`, `current` points at releases/{current}

hint: set `branch` to a branch, tag or commit of `[SANDBOX]/repo`, e.g. `-o branch=main`
"
        )
    );
    assert_untouched(&sandbox, &before, &current, log_before, false, "");
}

#[test]
fn a_missing_repository_fails_and_leaves_nothing_behind() {
    let (sandbox, _repo, current) = deployed();
    let before = snapshot(&sandbox);
    let log_before = sandbox.log("app").len();
    let missing = sandbox.str("gone");
    let option = format!("repository={missing}");
    let run = sandbox.run(&["run", "app.rhai", "-q", "-o", &option]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        format!(
            "error: task `deploy:update_code` failed on host `localhost`
  --> stdlib/deploy.rhai:15:33
   |
15 | task(\"deploy:update_code\", || {{ clone(); }});
   |                                 ^
Caused by: repository `[SANDBOX]/gone` does not exist
now: on `localhost`, `current` points at releases/{current}

hint: set `repository` to a git URL or the path of a git repository on this host
"
        )
    );
    assert_untouched(&sandbox, &before, &current, log_before, false, "");
}

#[test]
fn the_first_deploy_failing_after_the_swap_leaves_no_current_and_no_target() {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n")], "one");
    sandbox.write(
        "app.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            "task(\"boom\", || { run(\"exit 3\"); });\nafter(\"deploy:symlink\", \"boom\");\n",
        ),
    );
    let run = sandbox.run(&["run", "app.rhai", "-q"]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        "error: task `boom` failed on host `localhost`
 --> app.rhai:5:19
  |
5 | task(\"boom\", || { run(\"exit 3\"); });
  |                   ^
Caused by: command `exit 3` exited with status 3
now: on `localhost`, there is no `current` release
"
    );
    assert!(std::fs::symlink_metadata(sandbox.path("app/current")).is_err());
    assert!(!sandbox.path("app/.zdd/lock").exists());
    let log = sandbox.log("app");
    let events: Vec<&str> = log.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["created", "checked_out", "swapped", "failed"]);
    // The release that was `current` for a moment stays, marked failed, for the next deploy.
    let failed = log[0]["release"].as_str().unwrap().to_string();
    assert_eq!(sandbox.releases("app"), std::slice::from_ref(&failed));
    let listed = sandbox
        .run(&["releases", "app.rhai", "--json"])
        .json_lines();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["status"], "failed");
    assert_eq!(listed[0]["current"], false);

    // `rollback` has nothing to go back to: a failed release is never a target.
    let run = sandbox.run(&["rollback", "app.rhai", "-q"]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("Caused by: nothing to roll back to: there is no release\n"),
        "{}",
        run.stderr
    );
    assert!(std::fs::symlink_metadata(sandbox.path("app/current")).is_err());

    // The next good deploy removes it.
    sandbox.write("good.rhai", &recipe(&repo.str(), &sandbox.str("app"), ""));
    sandbox.run(&["run", "good.rhai", "-q"]).success();
    let good = sandbox.current("app").unwrap();
    assert_eq!(sandbox.releases("app"), [good]);
}

#[test]
fn a_deploy_failing_after_cleanup_never_pushes_a_good_release_out() {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    sandbox.write("app.rhai", &recipe(&repo.str(), &sandbox.str("app"), ""));
    sandbox.write(
        "late.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            "after(\"deploy:cleanup\", || { run(\"exit 1\"); });\n",
        ),
    );
    let mut good = Vec::new();
    for i in 0..2 {
        repo.commit(&[("index.html", format!("v{i}\n").as_str())], "change");
        sandbox
            .run(&["run", "app.rhai", "-q", "-o", "keep_releases=2"])
            .success();
        good.push(sandbox.current("app").unwrap());
    }
    sandbox
        .run(&["run", "late.rhai", "-q", "-o", "keep_releases=2"])
        .expect(1);
    assert_eq!(sandbox.current("app").as_ref(), good.last());
    // Both good releases are still there, and a rollback still has somewhere to go.
    for name in &good {
        assert!(sandbox.releases("app").contains(name), "{name} was removed");
    }
    sandbox.run(&["rollback", "app.rhai", "-q"]).success();
    assert_eq!(sandbox.current("app").as_ref(), good.first());
}

/// What a fail hook sees, as an `info` line: whether `current` was switched back, where it
/// points (`readlink`), and whether the lock is still held.
const OBSERVE: &str = "info(`NAME: switched_back=${switched_back()} current=${run(\"readlink {{deploy_path}}/current\")} locked=${test(\"[ -e {{deploy_path}}/.zdd/lock ]\")}`)";

fn observer(name: &str) -> String {
    format!(
        "task(\"{name}\", || {{ {} }});\n",
        OBSERVE.replace("NAME", name)
    )
}

/// The runner undoes a failed deploy before any fail hook runs, so the order fail hooks were
/// registered in does not matter: a hook registered before the stdlib's `deploy:failed` (here
/// even before `import "deploy"`), and one on the failing task itself (the innermost hooks run
/// first), both run on a host already switched back, with the lock still held; the lock is
/// released after them.
#[test]
fn fail_hooks_run_on_a_host_already_restored_whatever_their_order() {
    let (sandbox, repo, current) = deployed();
    let log_before = sandbox.log("app").len();
    let before = snapshot(&sandbox);
    sandbox.write(
        "order.rhai",
        &format!(
            "fail(\"deploy\", \"first\");\n{}{CONFIG}{}{}{}task(\"boom\", || {{ run(\"exit 3\"); }});\nafter(\"deploy:symlink\", \"boom\");\nfail(\"boom\", \"innermost\");\nafter(\"deploy:failed\", \"afterwards\");\n",
            crate::support::basic_recipe(&repo.str(), &sandbox.str("app")),
            observer("first"),
            observer("innermost"),
            observer("afterwards"),
        ),
    );
    let run = sandbox.run(&["run", "order.rhai"]);
    run.expect(1);
    let seen: Vec<&str> = run
        .stderr
        .lines()
        .filter(|line| line.contains("switched_back="))
        .collect();
    assert_eq!(
        seen,
        ["innermost", "first", "afterwards"].map(|hook| format!(
            "[localhost] {hook}: switched_back=true current=releases/{current} locked=true"
        )),
        "{}",
        run.stderr
    );
    // The switch back is reported before the first fail hook starts.
    let switched = run.stderr.find("switched back: current ->").unwrap();
    let first_hook = run.stderr.find("innermost: switched_back").unwrap();
    assert!(switched < first_hook, "{}", run.stderr);
    assert_untouched(&sandbox, &before, &current, log_before, true, "order");
}

/// A fail hook that throws is reported, the other hooks still run, and the host is restored
/// and unlocked all the same; a recipe's own `discard_release()` after the runner's undo
/// changes nothing (the release is recorded failed once).
#[test]
fn a_fail_hook_that_throws_leaves_the_host_restored_and_unlocked() {
    let (sandbox, repo, current) = deployed();
    let log_before = sandbox.log("app").len();
    let before = snapshot(&sandbox);
    sandbox.write(
        "throwing.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            &format!(
                "{CONFIG}task(\"explode\", || {{ throw \"the hook broke\"; }});\ntask(\"again\", || {{ discard_release(); discard_release(); }});\n{}task(\"boom\", || {{ run(\"exit 3\"); }});\nafter(\"deploy:symlink\", \"boom\");\nfail(\"boom\", \"explode\");\nfail(\"boom\", \"again\");\nfail(\"boom\", \"observe\");\n",
                observer("observe"),
            ),
        ),
    );
    let run = sandbox.run(&["run", "throwing.rhai"]);
    run.expect(1);
    assert!(
        run.stderr.contains(&format!(
            "[localhost] observe: switched_back=true current=releases/{current} locked=true\n"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "Caused by: command `exit 3` exited with status 3\nalso: fail hook `explode` also failed on host `localhost`: the hook broke\n"
        ),
        "{}",
        run.stderr
    );
    assert_untouched(&sandbox, &before, &current, log_before, true, "throwing");
    let log = sandbox.log("app");
    let failed: Vec<&Value> = log[log_before..]
        .iter()
        .filter(|e| e["event"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
}

/// A failure before the swap: the release is removed before the fail hooks run, `current`
/// never moved, so `switched_back()` is false and `current` is the good release.
#[test]
fn fail_hooks_after_a_failure_before_the_swap_see_the_release_gone() {
    let (sandbox, repo, current) = deployed();
    let log_before = sandbox.log("app").len();
    let before = snapshot(&sandbox);
    sandbox.write(
        "early.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            &format!(
                "{CONFIG}{}task(\"boom\", || {{ run(\"exit 3\"); }});\nafter(\"deploy:shared\", \"boom\");\nfail(\"boom\", \"observe\");\nafter(\"deploy:failed\", || {{ info(`releases: ${{run(\"ls {{{{deploy_path}}}}/releases\")}}`); }});\n",
                observer("observe"),
            ),
        ),
    );
    let run = sandbox.run(&["run", "early.rhai"]);
    run.expect(1);
    assert!(
        run.stderr.contains(&format!(
            "[localhost] observe: switched_back=false current=releases/{current} locked=true\n"
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("[localhost] releases: {current}\n")),
        "{}",
        run.stderr
    );
    assert_untouched(&sandbox, &before, &current, log_before, false, "early");
}
