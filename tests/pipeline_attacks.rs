//! Attacks on the pipelined checkout and shared links over real SSH (commit a98ede2): hostile
//! `shared_dirs`/`shared_files` entries and branches, the framing of batched answers, and
//! faults in the middle of a request nobody waited for. Each test says what it tries and
//! asserts zdd's own words and what is left on the host.

use std::path::Path;

use crate::ssh_support::{rhai_string, SshHosts};
use crate::support::{Repo, Sandbox};

/// The stdlib deploy of `repo` to every host, plus `extra` recipe lines.
fn recipe(sandbox: &Sandbox, hosts: &SshHosts, repo: &Repo, extra: &str) {
    sandbox.write(
        "app.rhai",
        &format!(
            "import \"deploy\";\nset(\"repository\", {});\n{}{extra}",
            rhai_string(&repo.str()),
            hosts.recipe_hosts()
        ),
    );
}

fn repo(sandbox: &Sandbox) -> Repo {
    let repo = sandbox.repo("repo");
    repo.commit(
        &[
            ("index.html", "one\n"),
            ("storage/logs/app.log", "from the repo\n"),
        ],
        "one",
    );
    repo
}

fn run(sandbox: &Sandbox, args: &[&str]) -> (i32, String) {
    let output = sandbox.zdd(args).output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        sandbox.normalize(&String::from_utf8_lossy(&output.stderr)),
    )
}

/// Release directories on host `i`.
fn releases(hosts: &SshHosts, i: usize) -> usize {
    std::fs::read_dir(hosts.deploy_path(i).join("releases"))
        .map(|entries| entries.count())
        .unwrap_or(0)
}

fn lock_free(hosts: &SshHosts, i: usize) -> bool {
    !hosts.deploy_path(i).join(".zdd/lock").exists()
}

fn current(hosts: &SshHosts, i: usize) -> Option<String> {
    std::fs::read_link(hosts.deploy_path(i).join("current"))
        .ok()
        .map(|t| t.display().to_string())
}

/// Every line of host `i`'s release log, parsed (each must be JSON).
fn log(hosts: &SshHosts, i: usize) -> Vec<serde_json::Value> {
    std::fs::read_to_string(hosts.deploy_path(i).join(".zdd/releases.jsonl"))
        .unwrap()
        .lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
        })
        .collect()
}

/// A canary file a value that ran as a command would create.
fn pwned(sandbox: &Sandbox, hosts: &SshHosts) -> bool {
    sandbox.path("PWNED").exists()
        || hosts.home(1).join("PWNED").exists()
        || Path::new("/root/PWNED").exists()
        || hosts.deploy_path(1).join("PWNED").exists()
}

/// Every file under `dir`, with its contents (symlinks as `-> target`), to compare before and
/// after a run.
fn files(dir: &Path) -> Vec<(String, String)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let kind = entry.file_type().unwrap();
            if kind.is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.push((name, format!("-> {}", target.display())));
            } else if kind.is_dir() {
                out.push((name, "/".into()));
                walk(root, &path, out);
            } else {
                out.push((name, std::fs::read_to_string(&path).unwrap_or_default()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A first good deploy with `storage` shared (its logs seeded from the repository).
fn deployed(sandbox: &Sandbox, hosts: &SshHosts, repo: &Repo) -> String {
    recipe(
        sandbox,
        hosts,
        repo,
        "set(\"shared_dirs\", [\"storage\"]);\n",
    );
    let (code, stderr) = run(sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    current(hosts, 1).unwrap()
}

/// A task may set `shared_dirs` after the settings were checked: an entry inside another one
/// would be linked through the other's new link, into `shared/` (found: `rm -rf` through the
/// link removed `shared/storage/logs` and a link out of the deploy path took its place). It
/// is refused before anything is sent, in the words of the settings check.
#[test]
fn a_shared_entry_inside_another_set_by_a_task_is_refused() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    let live = deployed(&sandbox, &hosts, &repo);
    let shared = hosts.deploy_path(1).join("shared");
    let before = files(&shared);
    assert!(before.contains(&("storage/logs/app.log".into(), "from the repo\n".into())));

    repo.commit(&[("index.html", "two\n")], "two");
    recipe(
        &sandbox,
        &hosts,
        &repo,
        "set(\"shared_dirs\", [\"storage\"]);\nbefore(\"deploy:shared\", || { set(\"shared_dirs\", [\"storage\", \"storage/logs\"]); });\n",
    );
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("error: task `deploy:shared` failed on host `web1`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("Caused by: `shared_dirs` entry `storage/logs` is inside `shared_dirs` entry `storage`: it is already shared through `storage`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("hint: remove `storage/logs` from `shared_dirs`: everything under a shared entry is shared with it"),
        "{stderr}"
    );
    assert_eq!(files(&shared), before, "shared/ is untouched");
    assert_eq!(current(&hosts, 1).unwrap(), live);
    assert!(lock_free(&hosts, 1));
    assert_eq!(releases(&hosts, 1), 1);

    // The same entry twice is harmless: linked once, then linked again.
    recipe(
        &sandbox,
        &hosts,
        &repo,
        "set(\"shared_dirs\", [\"storage\"]);\nbefore(\"deploy:shared\", || { set(\"shared_dirs\", [\"storage\", \"storage\"]); });\n",
    );
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(files(&shared), before);
    assert_eq!(
        std::fs::read_link(hosts.deploy_path(1).join("current/storage")).unwrap(),
        Path::new("../../shared/storage")
    );
}

/// What is in `shared/` already must be what the entry is: a shared dir that is a file, or a
/// symlink to nothing, was linked into the release as it was (found: the deploy succeeded with
/// `storage` a link to a file). Refused on the host before anything changes.
#[test]
fn a_shared_path_of_the_wrong_kind_is_refused_before_anything_changes() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    let live = deployed(&sandbox, &hosts, &repo);
    let storage = hosts.deploy_path(1).join("shared/storage");
    std::fs::rename(&storage, hosts.deploy_path(1).join("storage.aside")).unwrap();
    repo.commit(&[("index.html", "two\n")], "two");
    for label in ["a file", "a symlink to nothing"] {
        if label == "a file" {
            std::fs::write(&storage, "a file").unwrap();
        } else {
            std::os::unix::fs::symlink("/nonexistent/zdd-attack", &storage).unwrap();
        }
        let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
        assert_eq!(code, 1, "{label}: {stderr}");
        assert!(
            stderr.contains("error: task `deploy:shared` failed on host `web1`"),
            "{stderr}"
        );
        assert!(
            stderr.contains("Caused by: `shared_dirs` entry `storage`: `[SANDBOX]/host1/app/shared/storage` is not a directory"),
            "{stderr}"
        );
        assert!(
            stderr.contains("hint: on host `web1`, move `[SANDBOX]/host1/app/shared/storage` aside (zdd seeds a missing one from the release)"),
            "{stderr}"
        );
        assert_eq!(current(&hosts, 1).unwrap(), live);
        assert!(lock_free(&hosts, 1));
        assert_eq!(releases(&hosts, 1), 1);
        if label == "a file" {
            assert_eq!(std::fs::read_to_string(&storage).unwrap(), "a file");
        }
        std::fs::remove_file(&storage).unwrap();
    }
    assert!(!Path::new("/nonexistent/zdd-attack").exists());
}

/// Hostile entry names are data on the host: each is one path, linked under its own name.
#[test]
fn hostile_shared_entries_are_one_path_each() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let long = "l".repeat(200);
    let dirs = [
        "-rf",
        "--help",
        "a b/c  d",
        "$(touch PWNED)",
        "`touch PWNED`",
        "x;touch PWNED;",
        "q'u\"o\\te",
        "ünï/çødé",
        "*",
        long.as_str(),
    ];
    let repo = sandbox.repo("repo");
    let mut committed: Vec<(String, String)> = dirs
        .iter()
        .map(|d| (format!("{d}/kept"), format!("{d}\n")))
        .collect();
    committed.push(("-env".into(), "from the repo\n".into()));
    committed.push(("index.html".into(), "one\n".into()));
    let refs: Vec<(&str, &str)> = committed
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    repo.commit(&refs, "hostile names");
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|d| rhai_string(d))
            .collect::<Vec<_>>()
            .join(", ")
    };
    recipe(
        &sandbox,
        &hosts,
        &repo,
        &format!(
            "set(\"shared_dirs\", [{}]);\nset(\"shared_files\", [\"-env\"]);\n",
            list(&dirs)
        ),
    );
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    let deploy = hosts.deploy_path(1);
    for dir in dirs {
        let link = deploy.join("current").join(dir);
        assert!(link.is_symlink(), "{dir}");
        assert_eq!(
            std::fs::read_to_string(deploy.join("shared").join(dir).join("kept")).unwrap(),
            format!("{dir}\n"),
            "{dir} seeded from the release"
        );
        assert_eq!(
            std::fs::read_to_string(link.join("kept")).unwrap(),
            format!("{dir}\n")
        );
    }
    assert!(deploy.join("current/-env").is_symlink());
    assert_eq!(
        std::fs::read_to_string(deploy.join("shared/-env")).unwrap(),
        "from the repo\n"
    );
    assert!(!pwned(&sandbox, &hosts), "a value was executed");
    // Only the entries were made in shared/ (no `a`, `c  d` or `*` expanded elsewhere).
    let mut top: Vec<String> = std::fs::read_dir(deploy.join("shared"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    let mut expected: Vec<String> = dirs
        .iter()
        .map(|d| d.split('/').next().unwrap().to_string())
        .chain(["-env".to_string()])
        .collect();
    expected.sort();
    expected.dedup();
    assert_eq!(top, expected);

    // Paths that leave the release, or are not one path, are refused before anything runs.
    let before = files(deploy);
    for bad in [
        "..",
        "../outside",
        "storage/../../x",
        "/etc",
        "./storage",
        "a/./b",
        "a//b",
        "",
        "a\nb",
    ] {
        recipe(
            &sandbox,
            &hosts,
            &repo,
            &format!("set(\"shared_dirs\", [{}]);\n", rhai_string(bad)),
        );
        let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
        assert_eq!(code, 2, "{bad:?}: {stderr}");
        assert!(stderr.contains("`shared_dirs`"), "{bad:?}: {stderr}");
        assert_eq!(files(deploy), before, "{bad:?} changed the host");
    }
}

/// An entry the repository brings as a symlink (to a directory or a file outside) is replaced
/// as a link, never followed: nothing outside is read, made or removed.
#[test]
fn a_shared_entry_that_is_a_symlink_in_the_repository_is_never_followed() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let outside = sandbox.path("outside");
    std::fs::create_dir_all(outside.join("dir")).unwrap();
    std::fs::write(outside.join("dir/precious"), "outside\n").unwrap();
    std::fs::write(outside.join("env"), "OUTSIDE=1\n").unwrap();
    let repo = sandbox.repo("repo");
    std::os::unix::fs::symlink(outside.join("dir"), repo.path.join("storage")).unwrap();
    std::os::unix::fs::symlink(outside.join("env"), repo.path.join(".env")).unwrap();
    repo.commit(&[("index.html", "one\n")], "links");
    let before = files(&outside);
    recipe(
        &sandbox,
        &hosts,
        &repo,
        "set(\"shared_dirs\", [\"storage\"]);\nset(\"shared_files\", [\".env\"]);\n",
    );
    // No shared `.env` yet, and the release's is a link: nothing to seed it from.
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("Caused by: shared file `.env` is missing: `[SANDBOX]/host1/app/shared/.env` does not exist"),
        "{stderr}"
    );
    assert!(current(&hosts, 1).is_none());
    assert!(lock_free(&hosts, 1));
    assert_eq!(files(&outside), before);

    std::fs::write(hosts.deploy_path(1).join("shared/.env"), "SHARED=1\n").unwrap();
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    let deploy = hosts.deploy_path(1);
    assert_eq!(
        std::fs::read_to_string(deploy.join("current/.env")).unwrap(),
        "SHARED=1\n"
    );
    assert!(deploy.join("shared/storage").is_dir());
    assert!(!deploy.join("shared/storage").is_symlink());
    assert_eq!(
        std::fs::read_dir(deploy.join("shared/storage"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(files(&outside), before, "nothing outside changed");
}

/// Branch names git accepts may hold quotes, `$`, backticks and zdd's own placeholder: the
/// checkout's log line stays one JSON object with the ref as given and the commit it names.
#[test]
fn a_hostile_branch_keeps_the_release_log_true() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    recipe(
        &sandbox,
        &hosts,
        &repo,
        "set(\"shared_dirs\", [\"storage\"]);\n",
    );
    for (n, branch) in [
        "a\"commit\"b",
        "x@zdd-commit@y",
        "@zdd-commit@",
        "q'uo\"te$x`touch${IFS}PWNED`$(touch${IFS}PWNED)",
        "{\"commit\"}",
    ]
    .into_iter()
    .enumerate()
    {
        crate::support::git(&repo.path, &["checkout", "-q", "-b", branch, "main"]);
        let commit = repo.commit(&[("index.html", &format!("{n}\n"))], "branch");
        crate::support::git(&repo.path, &["checkout", "-q", "main"]);
        let (code, stderr) = run(
            &sandbox,
            &["run", "app.rhai", "-o", &format!("branch={branch}")],
        );
        assert_eq!(code, 0, "{branch}: {stderr}");
        let line = log(&hosts, 1)
            .into_iter()
            .rfind(|l| l["event"] == "checked_out")
            .unwrap();
        assert_eq!(line["ref"], branch, "{line}");
        assert_eq!(line["commit"], commit.as_str(), "{line}");
        assert_eq!(
            std::fs::read_to_string(hosts.deploy_path(1).join("current/REVISION")).unwrap(),
            format!("{commit}\n")
        );
        assert_eq!(
            std::fs::read_to_string(hosts.deploy_path(1).join("current/index.html")).unwrap(),
            format!("{n}\n")
        );
    }
    // JSON itself is no ref name: refused before anything runs.
    let (code, stderr) = run(
        &sandbox,
        &[
            "run",
            "app.rhai",
            "-o",
            "branch=\"commit\":\"@zdd-commit@\"",
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.starts_with("error: `branch` is `"), "{stderr}");
    assert!(!pwned(&sandbox, &hosts));
}

/// A secret as short as `commit` was redacted out of the checkout's placeholder (found: zdd
/// panicked, a release build failed the checkout). A commit id is not secret.
#[test]
fn a_secret_that_is_part_of_the_placeholder_leaves_the_commit_in_the_log() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    let commit = crate::support::git(&repo.path, &["rev-parse", "HEAD"]);
    recipe(
        &sandbox,
        &hosts,
        &repo,
        "set(\"db_password\", \"commit\");\n",
    );
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    let line = log(&hosts, 1)
        .into_iter()
        .find(|l| l["event"] == "checked_out")
        .unwrap();
    assert_eq!(line["commit"], commit.trim(), "{line}");
}

/// Answers that look like the framing, are large, empty or not UTF-8, and a release log of
/// hundreds of KB with such lines in it: the reply stream never slips.
#[test]
fn big_binary_and_marker_like_answers_keep_the_replies_in_step() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    deployed(&sandbox, &hosts, &repo);
    let path = hosts.deploy_path(1).join(".zdd/releases.jsonl");
    let mut text = Vec::new();
    for i in 0..4000 {
        text.extend_from_slice(
            format!(
                "{{\"event\":\"note\",\"release\":\"x{i}\",\"message\":\"{}\"}}\n",
                "y".repeat(100)
            )
            .as_bytes(),
        );
    }
    text.extend_from_slice(b"ZDD-1-2 0 5 5\nZDD-1-2 skip\n\xff\xfe\x00binary\n");
    text.extend_from_slice(&std::fs::read(&path).unwrap());
    std::fs::write(&path, &text).unwrap();
    assert!(text.len() > 400_000);

    repo.commit(&[("index.html", "two\n")], "two");
    recipe(
        &sandbox,
        &hosts,
        &repo,
        "set(\"shared_dirs\", [\"storage\"]);\nset(\"writable_dirs\", [\"storage\", \"cache\"]);\n\
         after(\"deploy:update_code\", || {\n\
           let big = run(\"head -c 300000 /dev/zero | tr '\\\\0' x\");\n\
           if big.len() != 300000 { throw `big: ${big.len()}`; }\n\
           let fake = run(\"printf 'ZDD-1-1 0 99 99\\\\nZDD-1-1 skip\\\\n'; printf '\\\\377\\\\376' >&2\");\n\
           if !fake.starts_with(\"ZDD-1-1 0 99 99\") { throw `fake: ${fake}`; }\n\
           let empty = run(\"true\");\n\
           if empty != \"\" { throw `empty: ${empty}`; }\n\
           let after = run(\"echo after\");\n\
           if after != \"after\" { throw `after: ${after}`; }\n\
         });\n",
    );
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("[web1] warning: `[SANDBOX]/host1/app/.zdd/releases.jsonl`: lines 4001, 4002, 4003 cannot be read and were skipped"),
        "{stderr}"
    );
    let two = current(&hosts, 1).unwrap();
    assert_eq!(
        std::fs::read_to_string(hosts.deploy_path(1).join("current/index.html")).unwrap(),
        "two\n"
    );
    let (code, stderr) = run(&sandbox, &["rollback", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    assert_ne!(current(&hosts, 1).unwrap(), two);
    assert!(lock_free(&hosts, 1));

    // A lock held by someone else fails the request that takes it, in the middle of the
    // query that reads the host's state: zdd's words, and the next run is in step.
    let lock = hosts.deploy_path(1).join(".zdd/lock");
    std::fs::write(&lock, b"\xff\xfe ZDD-1-1 0 1 1\n").unwrap();
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("Caused by: deploy to `web1` is locked (`[SANDBOX]/host1/app/.zdd/lock` exists but does not say by whom)"),
        "{stderr}"
    );
    std::fs::remove_file(&lock).unwrap();
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
}

/// A command that leaves a process writing to its output in the background (`nohup worker &`
/// writes to the output file it was given): its words went into the answers of the requests
/// after it (found: `run("echo a")` answered `ti`). Each request now writes to new files.
#[test]
fn a_background_process_never_writes_into_a_later_answer() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo(&sandbox);
    recipe(
        &sandbox,
        &hosts,
        &repo,
        "after(\"deploy:update_code\", || {\n\
           run(\"(sleep 0.2; end=$(($(date +%s)+2)); while [ $(date +%s) -lt $end ]; do echo tick; done) &\");\n\
           run(\"sleep 0.3\");\n\
           for i in 0..20 { let x = run(\"echo a\"); if x != \"a\" { throw `got ${x}`; } }\n\
         });\n",
    );
    let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
    assert_eq!(code, 0, "{stderr}");
    // The writer stops on its own; let it end before the sandbox goes.
    std::thread::sleep(std::time::Duration::from_secs(2));
}

/// A hook in the host's git config (`uploadpack.packObjectsHook`, read from the remote HOME)
/// that kills `victim` while the checkout's fetch runs: the remote shell (`$pid`) or the
/// connection's sshd (`$parent`). A fetch with no sshd above it any more (the connection is
/// gone) just fails: the walk up the process tree stops at init.
pub(crate) fn kill_during_fetch(sandbox: &Sandbox, hosts: &SshHosts, victim: &str) {
    let hook = sandbox.write(
        "hook.sh",
        &format!(
            "#!/bin/sh\npid=$$\ni=0\nwhile :; do\n  i=$((i+1)); [ \"$i\" -lt 50 ] || exit 1\n  parent=$(awk '{{print $4}}' /proc/$pid/stat 2>/dev/null)\n  [ -n \"$parent\" ] && [ \"$parent\" -gt 1 ] || exit 1\n  case $(cat /proc/$parent/comm) in sshd*) break;; esac\n  pid=$parent\ndone\nkill -9 {victim}\nexit 1\n"
        ),
    );
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        hosts.home(1).join(".gitconfig"),
        format!("[uploadpack]\n\tpackObjectsHook = {}\n", hook.display()),
    )
    .unwrap();
}

/// The remote shell killed, or the connection dropped, after the checkout was sent and before
/// it was answered (found: the run said `deploy: release ...` and exited 0, with `current`
/// never switched, an empty release and the lock left). The run fails as the step that sent
/// the oldest request left unanswered (the fetch runs on the host from the lock on, so the
/// kill can land before the host has answered what deploy:prepare or deploy:release sent, or
/// while the checkout waits for the fetch), names the host and what failed, says the lock is
/// left, and claims nothing about `current` it could not see. The next run finds the stale
/// lock and says how to clear it; once cleared, the host deploys.
#[test]
fn a_connection_lost_before_the_checkout_is_answered_fails_the_run() {
    for victim in ["$pid", "$parent"] {
        let sandbox = Sandbox::new();
        let hosts = SshHosts::start(&sandbox, 1);
        let repo = repo(&sandbox);
        let live = deployed(&sandbox, &hosts, &repo);
        let shared = files(&hosts.deploy_path(1).join("shared"));
        repo.commit(&[("index.html", "two\n")], "two");
        kill_during_fetch(&sandbox, &hosts, victim);
        // The deploy that reads the state first (the one the last run planned travels whole
        // with the lock: tests/planned_deploy.rs loses its connection).
        let _ = std::fs::remove_file(hosts.deploy_path(1).join(".zdd/next-run"));
        let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
        assert_eq!(code, 1, "{victim}: {stderr}");
        assert!(
            ["deploy:prepare", "deploy:release", "deploy:update_code"]
                .iter()
                .any(|task| stderr.contains(&format!("error: task `{task}` failed on host `web1`"))),
            "{stderr}"
        );
        assert!(
            stderr.contains("Caused by: cannot reach host `web1`: "),
            "{stderr}"
        );
        assert!(
            stderr.contains(
                "also: could not release the lock on host `web1`: cannot reach host `web1`: "
            ),
            "{stderr}"
        );
        assert!(!stderr.contains("deploy: release"), "{stderr}");
        assert!(!stderr.contains("now: on `web1`"), "{stderr}");
        assert_eq!(current(&hosts, 1).unwrap(), live);
        assert_eq!(files(&hosts.deploy_path(1).join("shared")), shared);
        assert!(!lock_free(&hosts, 1), "the lock is left, and said so");

        std::fs::remove_file(hosts.home(1).join(".gitconfig")).unwrap();
        let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
        assert_eq!(code, 3, "{victim}: {stderr}");
        assert!(
            stderr.contains("hint: clear the stale lock with `zdd unlock app.rhai`"),
            "{stderr}"
        );
        let (code, stderr) = run(&sandbox, &["unlock", "app.rhai"]);
        assert_eq!(code, 0, "{stderr}");
        let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
        assert_eq!(code, 0, "{victim}: {stderr}");
        assert_eq!(
            std::fs::read_to_string(hosts.deploy_path(1).join("current/index.html")).unwrap(),
            "two\n"
        );
        assert!(lock_free(&hosts, 1));
    }
}

/// `chattr +i` on a path, undone when dropped (even when the test fails); `None` where the
/// file system cannot.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: std::path::PathBuf) -> Option<Immutable> {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Immutable(path))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// A write refused in the middle of the pipeline (the `cp -a` that seeds `shared/`, the
/// release directory, the deploy path itself), one scenario a line: the step that sent it is
/// named with the host and zdd's words, `current`, `shared/` and the releases are as they
/// were, and the lock is released.
#[test]
fn a_write_refused_in_the_middle_leaves_the_host_as_it_was() {
    // (frozen path, failing step, zdd's words, whether `shared/storage` was seeded before)
    let scenarios: [(&str, &str, &str, bool); 3] = [
        (
            "shared",
            "deploy:shared",
            "Caused by: cannot link the shared entries on `web1`: ",
            false,
        ),
        (
            "releases",
            "deploy:release",
            "Caused by: cannot create directory `[SANDBOX]/host1/app/releases/",
            false,
        ),
        (
            ".",
            "deploy:symlink",
            "Caused by: cannot switch `[SANDBOX]/host1/app/current` on `web1`: ",
            true,
        ),
    ];
    for (frozen, task, words, seeded) in scenarios {
        let sandbox = Sandbox::new();
        let hosts = SshHosts::start(&sandbox, 1);
        let repo = repo(&sandbox);
        let live = deployed(&sandbox, &hosts, &repo);
        // A missing shared dir is seeded with `cp -a` from the release.
        std::fs::remove_dir_all(hosts.deploy_path(1).join("shared/storage")).unwrap();
        let shared = files(&hosts.deploy_path(1).join("shared"));
        repo.commit(&[("index.html", "two\n")], "two");
        let Some(_frozen) = Immutable::set(hosts.deploy_path(1).join(frozen)) else {
            eprintln!("chattr +i is not available here: skipped");
            return;
        };
        let (code, stderr) = run(&sandbox, &["run", "app.rhai"]);
        drop(_frozen);
        assert_eq!(code, 1, "{frozen}: {stderr}");
        assert!(
            stderr.contains(&format!("error: task `{task}` failed on host `web1`")),
            "{frozen}: {stderr}"
        );
        assert!(stderr.contains(words), "{frozen}: {stderr}");
        assert!(
            stderr.contains(&format!("now: on `web1`, `current` points at {live}")),
            "{frozen}: {stderr}"
        );
        assert_eq!(current(&hosts, 1).unwrap(), live);
        let now = files(&hosts.deploy_path(1).join("shared"));
        if seeded {
            // Shared data seeded from the release before the failure is kept.
            assert!(now.contains(&("storage/logs/app.log".into(), "from the repo\n".into())));
        } else {
            assert_eq!(now, shared, "{frozen}");
        }
        assert!(lock_free(&hosts, 1), "{frozen}");
        assert_eq!(releases(&hosts, 1), 1, "{frozen}");
    }
}
