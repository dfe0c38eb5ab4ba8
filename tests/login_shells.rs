//! The remote shell starts in the SSH command itself, with the run's first request in it
//! (`RemoteShell::start`): a host's login shell runs that command, so it must reach `sh`
//! unchanged whatever the login shell is, and the shell reads the rest of its input in a way
//! that works whatever `/bin/sh` is. Real sshd on loopback (`ssh_support`), with the login
//! shell swapped by `ForceCommand` (`fish -c "$SSH_ORIGINAL_COMMAND"` is what sshd runs for a
//! user whose shell is fish) and `sh` swapped by the session's `PATH`.

use crate::planned_deploy::after_the_last_name;
use crate::remote::{recipe, repo, round_trips};
use crate::ssh_support::{Login, SshHosts};
use crate::support::{Repo, Sandbox};

/// A `PATH` whose `sh` is bash (as on Red Hat's family), in the sandbox.
fn bash_as_sh(sandbox: &Sandbox) -> String {
    let bin = sandbox.path("bash-as-sh");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(which::which("bash").unwrap(), bin.join("sh")).unwrap();
    format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display())
}

/// Two deploys and a rollback to a host started with `login`: each lands where it should,
/// waiting for the host as often as on a default host (2, then 1 when planned, 1).
fn deploy_deploy_rollback(sandbox: &Sandbox, hosts: &SshHosts, repo: &Repo, what: &str) {
    let rel = hosts.deploy_rel(1);
    let mut trips = Vec::new();
    let mut live = Vec::new();
    for text in ["two\n", "three\n"] {
        repo.commit(&[("index.html", text)], text);
        after_the_last_name(sandbox, hosts);
        trips.push(round_trips(sandbox, &["run", "app.rhai", "--json"]));
        let current = sandbox.current(&rel).unwrap();
        assert_eq!(
            sandbox.read(&format!("{rel}/releases/{current}/index.html")),
            text,
            "{what}"
        );
        live.push(current);
    }
    trips.push(round_trips(sandbox, &["rollback", "app.rhai", "--json"]));
    assert_eq!(sandbox.current(&rel).unwrap(), live[0], "{what}");
    assert_eq!(trips, [2, 1, 1], "round trips, {what}");
    assert!(!hosts.deploy_path(1).join(".zdd/lock").exists(), "{what}");
}

/// fish, tcsh and zsh as the login shell: each gets the command, with the first request (the
/// lock's) in it, and hands it to `sh` unchanged. .ci/run installs the three.
#[test]
fn the_first_request_reaches_sh_through_any_login_shell() {
    for shell in ["fish", "tcsh", "zsh"] {
        let path = which::which(shell)
            .unwrap_or_else(|_| panic!("{shell} is not installed (.ci/run installs it)"));
        let sandbox = Sandbox::new();
        let seen = sandbox.path("commands");
        let login = Login {
            force_command: Some(format!(
                "printf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> {}; exec {} -c \"$SSH_ORIGINAL_COMMAND\"",
                seen.display(),
                path.display()
            )),
            ..Login::default()
        };
        let hosts = SshHosts::start_with(&sandbox, 1, &login);
        let repo = repo(&sandbox);
        recipe(&sandbox, &hosts, &repo, "");
        deploy_deploy_rollback(&sandbox, &hosts, &repo, &format!("login shell {shell}"));

        let commands = std::fs::read_to_string(&seen).unwrap();
        let lock = format!("{}/.zdd/lock", hosts.deploy_str(1));
        let runs: Vec<&str> = commands.lines().collect();
        assert_eq!(runs.len(), 3, "one connection per run: {commands}");
        for command in runs {
            assert!(command.starts_with("sh -c 'eval "), "{command}");
            assert!(
                command.contains(&lock),
                "the lock's request travels in the command: {command}"
            );
        }
    }
}

/// `sh` that is bash (as on Red Hat's family): bash reads a sourced file whole, so the
/// command does not source its input there; it starts a fresh `sh` that reads the input,
/// which carries the set-up and the first request again. Nothing runs twice (the lock would
/// be found taken), nothing waits forever.
#[test]
fn a_host_whose_sh_is_bash_reads_its_requests_from_the_input() {
    let sandbox = Sandbox::new();
    let login = Login {
        path: Some(bash_as_sh(&sandbox)),
        ..Login::default()
    };
    let hosts = SshHosts::start_with(&sandbox, 1, &login);
    assert_eq!(
        hosts.ssh_ok(1, "command -v sh").trim(),
        sandbox.path("bash-as-sh/sh").display().to_string()
    );
    let repo = repo(&sandbox);
    recipe(&sandbox, &hosts, &repo, "");
    deploy_deploy_rollback(&sandbox, &hosts, &repo, "sh is bash");
}

/// A first request whose encoding would make the SSH command longer than
/// `MAX_COMMAND` (64 KiB) goes in the input instead, whole: here a task whose first command
/// is 30,000 single quotes (five bytes each once encoded), on a default host and on one whose
/// `sh` is bash. The command then carries only the set-up.
#[test]
fn a_first_request_too_long_for_the_command_goes_in_the_input() {
    let quotes = "'".repeat(30_000);
    for sh_is_bash in [false, true] {
        let sandbox = Sandbox::new();
        let seen = sandbox.path("commands");
        let mut login = Login {
            force_command: Some(format!(
                "printf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> {}; exec bash -c \"$SSH_ORIGINAL_COMMAND\"",
                seen.display()
            )),
            ..Login::default()
        };
        if sh_is_bash {
            login.path = Some(bash_as_sh(&sandbox));
        }
        let hosts = SshHosts::start_with(&sandbox, 1, &login);
        let repo = repo(&sandbox);
        let out = sandbox.path("quotes.txt");
        recipe(
            &sandbox,
            &hosts,
            &repo,
            &format!(
                "task(\"big\", || run(\"printf %s \\\"{quotes}\\\" > {}\"));\n",
                out.display()
            ),
        );
        let run = sandbox.run(&["run", "app.rhai", "big"]);
        run.success();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), quotes);
        let commands = std::fs::read_to_string(&seen).unwrap();
        assert_eq!(commands.lines().count(), 1, "{commands}");
        assert!(
            commands.len() < 2048,
            "the first request stayed out of the command: {} bytes",
            commands.len()
        );
    }
}

/// The SSH command is there for every user of the host to read (`ps`) while the remote shell
/// runs; its input is not. A first request that holds a secret (here the repository, declared
/// secret; a URL with a user in it is kept out the same way, see `secrets::names_url_user`)
/// goes in the input, and the deploy works the same.
#[test]
fn a_first_request_that_holds_a_secret_stays_out_of_the_command() {
    for declared in [false, true] {
        let sandbox = Sandbox::new();
        let seen = sandbox.path("commands");
        let login = Login {
            force_command: Some(format!(
                "printf '%s\\n' \"$SSH_ORIGINAL_COMMAND\" >> {}; exec bash -c \"$SSH_ORIGINAL_COMMAND\"",
                seen.display()
            )),
            ..Login::default()
        };
        let hosts = SshHosts::start_with(&sandbox, 1, &login);
        let repo = repo(&sandbox);
        let extra = if declared {
            "secret(\"repository\");\n"
        } else {
            ""
        };
        recipe(&sandbox, &hosts, &repo, extra);
        sandbox.run(&["run", "app.rhai"]).success();
        let live = sandbox.current(&hosts.deploy_rel(1)).unwrap();
        assert_eq!(
            sandbox.read(&format!(
                "{}/releases/{live}/index.html",
                hosts.deploy_rel(1)
            )),
            "one\n"
        );
        let command = std::fs::read_to_string(&seen).unwrap();
        assert_eq!(
            command.contains(&repo.str()),
            !declared,
            "secret repository: {declared}; the command: {command}"
        );
    }
}

/// The remote shell's own variables come from zdd, never from the host's environment: a
/// session that starts with `zdd_stage` naming a directory (the shell removes its stage at
/// exit), `zdd_command=1` (the input's set-up would be skipped) and `zdd_leave=1`, on a host
/// whose `sh` is dash and on one whose `sh` is bash, deploys and rolls back as any other, and
/// the directory is still there.
#[test]
fn the_hosts_environment_cannot_set_the_remote_shells_variables() {
    for sh_is_bash in [false, true] {
        let sandbox = Sandbox::new();
        let precious = sandbox.path("precious");
        std::fs::create_dir_all(&precious).unwrap();
        std::fs::write(precious.join("data"), "keep\n").unwrap();
        let mut login = Login {
            environment: ["zdd_stage", "zdd_command", "zdd_leave", "zdd_plan"]
                .iter()
                .map(|name| {
                    let value = if *name == "zdd_stage" {
                        precious.display().to_string()
                    } else {
                        "1".to_string()
                    };
                    (name.to_string(), value)
                })
                .collect(),
            ..Login::default()
        };
        if sh_is_bash {
            login.path = Some(bash_as_sh(&sandbox));
        }
        let hosts = SshHosts::start_with(&sandbox, 1, &login);
        assert_eq!(
            hosts.ssh_ok(1, "printf %s \"$zdd_stage\""),
            precious.display().to_string()
        );
        let repo = repo(&sandbox);
        recipe(&sandbox, &hosts, &repo, "");
        deploy_deploy_rollback(
            &sandbox,
            &hosts,
            &repo,
            &format!("sh is bash: {sh_is_bash}"),
        );
        assert_eq!(
            std::fs::read_to_string(precious.join("data")).unwrap(),
            "keep\n"
        );
    }
}
