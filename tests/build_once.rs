//! Build once, ship to many (`build_on = "local"`): the build runs once on zdd's machine, its
//! archive goes to every host over the SSH connection zdd already has, and each host unpacks
//! and checks it. Real sshd hosts whose PATH has `git`, `composer` and `npm` that fail and
//! record their call; a TCP relay (`tcp_relay`) cuts or pauses a transfer at an exact byte.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::ssh_support::{rhai_string, Login, SshHosts};
use crate::support::{Repo, Run, Sandbox};
use crate::tcp_relay::Relay;

/// sshd's default PATH for root, behind a directory of programs the hosts must never run.
fn denied_path(sandbox: &Sandbox) -> String {
    let bin = sandbox.path("denied-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let marker = sandbox.path("denied-calls");
    for program in ["git", "composer", "npm", "node"] {
        let path = bin.join(program);
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\necho \"{program} $*\" >> '{}'\nexit 97\n",
                marker.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        bin.display()
    )
}

/// What the hosts ran of the denied programs (empty: none).
fn denied_calls(sandbox: &Sandbox) -> String {
    std::fs::read_to_string(sandbox.path("denied-calls")).unwrap_or_default()
}

/// A repository whose build task (`app:build`, marked `build()`) writes `vendor/built.txt`
/// from `VERSION`: what a host can only have from the build.
fn repo_with_version(sandbox: &Sandbox, version: &str) -> Repo {
    let repo = sandbox.repo("repo");
    repo.commit(
        &[
            ("VERSION", &format!("{version}\n")),
            ("public/index.php", "<?php echo 'hi';\n"),
            ("storage/.gitignore", "*\n"),
            (".env.example", "APP_KEY=\n"),
        ],
        version,
    );
    repo
}

/// The stdlib deploy built once: `app:build` runs after the checkout, in the build.
fn recipe(repo: &Repo, hosts: &str, extra: &str) -> String {
    format!(
        r#"import "deploy";
set("repository", {repo});
set("shared_dirs", ["storage"]);
set("build_on", "local");
desc("Build the app");
task("app:build", || {{
    run("mkdir -p {{{{release_path}}}}/vendor && echo built-$(cat {{{{release_path}}}}/VERSION) > {{{{release_path}}}}/vendor/built.txt");
}});
build("app:build");
after("deploy:update_code", "app:build");
{extra}
{hosts}"#,
        repo = rhai_string(&repo.str()),
    )
}

/// `zdd run app.rhai --json ARGS`, bounded in time.
fn deploy(sandbox: &Sandbox, args: &[&str]) -> Run {
    let mut all = vec!["run", "app.rhai", "--json"];
    all.extend_from_slice(args);
    sandbox.run(&all)
}

/// The `finished` event of a `--json` run.
fn finished(run: &Run) -> serde_json::Value {
    run.json_lines()
        .into_iter()
        .find(|e| e["event"] == "finished")
        .unwrap_or_else(|| panic!("no finished event\n{}", run.stdout))
}

/// `zdd releases --json`: (host, release, artifact) of each release.
fn releases(sandbox: &Sandbox) -> Vec<(String, String, Option<String>)> {
    releases_with(sandbox, &[])
}

/// [`releases`] with more arguments (`--roles web`).
fn releases_with(sandbox: &Sandbox, args: &[&str]) -> Vec<(String, String, Option<String>)> {
    let mut all = vec!["releases", "app.rhai", "--json"];
    all.extend_from_slice(args);
    let run = sandbox.run(&all);
    run.success();
    run.json_lines()
        .into_iter()
        .map(|line| {
            (
                line["host"].as_str().unwrap().to_string(),
                line["release"].as_str().unwrap().to_string(),
                line["artifact"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Whether `condition` holds within `limit` (polled).
fn eventually(limit: Duration, condition: impl Fn() -> bool) -> bool {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    condition()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Files under `.zdd/artifacts` of a deploy path.
fn artifacts(deploy_path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(deploy_path.join(".zdd/artifacts"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Three hosts without git, composer or npm get one build: the same archive (same hash in
/// `zdd releases`), each release holding what only the build made, the shared paths linked
/// and not shipped, and no denied program ever run on a host.
#[test]
fn one_build_is_shipped_to_three_hosts_without_git() {
    let sandbox = Sandbox::new();
    let login = Login {
        path: Some(denied_path(&sandbox)),
        ..Login::default()
    };
    let hosts = SshHosts::start_with(&sandbox, 3, &login);
    let repo = repo_with_version(&sandbox, "v1");
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), ""));
    let first = deploy(&sandbox, &[]);
    first.success();
    repo.commit(&[("VERSION", "v2\n")], "v2");
    let second = deploy(&sandbox, &[]);
    second.success();
    assert_eq!(denied_calls(&sandbox), "", "{}", second.stderr);
    // The build ran once, on zdd's machine, for the three hosts.
    let built: Vec<String> = second
        .json_lines()
        .into_iter()
        .filter(|e| e["event"] == "task_finished" && e["task"] == "app:build")
        .map(|e| e["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(built, vec!["build".to_string()], "{}", second.stdout);

    let listed = releases(&sandbox);
    let release = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    let of_release: Vec<&(String, String, Option<String>)> =
        listed.iter().filter(|(_, r, _)| *r == release).collect();
    assert_eq!(of_release.len(), 3, "{listed:?}");
    let hash = of_release[0].2.clone().expect("an artifact hash");
    assert_eq!(hash.len(), 64, "{hash}");
    for (host, _, artifact) in &of_release {
        assert_eq!(
            artifact.as_deref(),
            Some(hash.as_str()),
            "{host}: {listed:?}"
        );
    }
    // The first deploy's releases have their own, different build.
    assert!(listed
        .iter()
        .any(|(_, r, a)| *r != release && a.as_deref().is_some_and(|a| a != hash)));
    for i in 1..=3 {
        let deploy_path = hosts.deploy_path(i);
        assert_eq!(sandbox.current(&hosts.deploy_rel(i)).unwrap(), release);
        let current = deploy_path.join("current");
        assert_eq!(read(&current.join("vendor/built.txt")), "built-v2\n");
        assert_eq!(
            read(&current.join("REVISION")),
            format!("{}\n", repo_commit(&repo))
        );
        // `storage` is shared: linked on the host, never in the archive.
        assert!(std::fs::symlink_metadata(current.join("storage"))
            .unwrap()
            .file_type()
            .is_symlink());
        // The host keeps the archives of its releases, named by their hash.
        assert!(artifacts(deploy_path).contains(&format!("{hash}.tar.gz")));
        // The release's files are the build's, checked against its manifest.
        let manifest = read(&deploy_path.join(format!(".zdd/artifacts/{hash}.manifest")));
        assert!(manifest.contains("  ./vendor/built.txt\n"), "{manifest}");
        assert!(!manifest.contains("./storage"), "{manifest}");
    }
    // What `zdd releases` prints shows the hash too.
    let table = sandbox.run(&["releases", "app.rhai"]);
    table.success();
    assert!(table.stdout.contains("ARTIFACT"), "{}", table.stdout);
    assert!(table.stdout.contains(&hash[..12]), "{}", table.stdout);
}

fn repo_commit(repo: &Repo) -> String {
    crate::support::git(&repo.path, &["rev-parse", "HEAD"])
        .trim()
        .to_string()
}

/// A commit deployed again (v1, v2, then v1) is not built again and not shipped again: the
/// build is reused from zdd's cache (same hash) and the host already has its archive.
#[test]
fn a_commit_deployed_again_is_neither_built_nor_shipped_again() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo_with_version(&sandbox, "v1");
    // Big enough that shipping it shows in the bytes sent.
    let blob: String = (0..200_000u32)
        .map(|i| format!("{:08x}", i.wrapping_mul(2654435761)))
        .collect();
    repo.commit(&[("blob.txt", &blob)], "blob");
    let v1 = repo_commit(&repo);
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), ""));
    let first = deploy(&sandbox, &[]);
    first.success();
    let first_sent = finished(&first)["bytes_sent"].as_u64().unwrap();
    repo.commit(&[("VERSION", "v2\n")], "v2");
    deploy(&sandbox, &[]).success();
    let again = deploy(&sandbox, &["-o", &format!("branch={v1}")]);
    again.success();
    assert!(
        again.stdout.contains("was built before"),
        "{}",
        again.stdout
    );
    assert!(
        again
            .stdout
            .contains("on the host already, nothing shipped"),
        "{}",
        again.stdout
    );
    assert!(
        !again.stdout.contains("\"task\":\"app:build\""),
        "built again: {}",
        again.stdout
    );
    let again_sent = finished(&again)["bytes_sent"].as_u64().unwrap();
    assert!(
        again_sent * 4 < first_sent,
        "shipped again? {again_sent} bytes sent, the first deploy {first_sent}"
    );
    let listed = releases(&sandbox);
    let hashes: Vec<Option<String>> = listed.iter().map(|(_, _, a)| a.clone()).collect();
    assert_eq!(hashes.len(), 3, "{listed:?}");
    assert_eq!(hashes[0], hashes[2], "the same build: {listed:?}");
    assert_ne!(hashes[0], hashes[1], "{listed:?}");
    let current = hosts.deploy_path(1).join("current");
    assert_eq!(read(&current.join("vendor/built.txt")), "built-v1\n");
    // `build_cache=false`: built again (its tasks run, an audit would), into the same bytes
    // (the archive is deterministic), so the host still has it.
    let rebuilt = deploy(
        &sandbox,
        &["-o", &format!("branch={v1}"), "-o", "build_cache=false"],
    );
    rebuilt.success();
    assert!(
        rebuilt.stdout.contains("\"task\":\"app:build\""),
        "not built again: {}",
        rebuilt.stdout
    );
    assert!(
        rebuilt
            .stdout
            .contains("on the host already, nothing shipped"),
        "{}",
        rebuilt.stdout
    );
    let listed = releases(&sandbox);
    assert_eq!(listed.last().unwrap().2, hashes[0], "{listed:?}");
}

/// The build fails: nothing on any host was touched (no deploy path made, no lock), and the
/// message names the build, the task, the recipe line and the exit status.
#[test]
fn a_build_failure_stops_before_any_host_is_touched() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 2);
    let repo = repo_with_version(&sandbox, "v1");
    let failing = r#"task("app:build", || { run("echo the build broke >&2; exit 3"); });"#;
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), failing));
    let run = sandbox.run(&["run", "app.rhai"]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("task `app:build` failed on host `build`"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("app.rhai:"), "{}", run.stderr);
    assert!(
        run.stderr.contains("exited with status 3"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("the build broke"), "{}", run.stderr);
    for i in 1..=2 {
        assert!(
            !hosts.deploy_path(i).exists(),
            "host {i} was touched: {}",
            run.stderr
        );
    }
}

/// One host through a relay that cuts the connection in the middle of the archive: the deploy
/// fails naming the host, `current` is untouched, the host removes the half-shipped archive and
/// the new release itself, shared data stays, and the next deploy goes through.
#[test]
fn a_transfer_cut_in_the_middle_leaves_no_release() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo_with_version(&sandbox, "v1");
    let relay = Relay::start(hosts.port(1));
    let through = |relay: &Relay| {
        hosts.recipe_host(1).replace(
            &format!(".set(\"port\", {})", hosts.port(1)),
            &format!(".set(\"port\", {})", relay.port),
        ) + ";\n"
    };
    sandbox.write("app.rhai", &recipe(&repo, &through(&relay), ""));
    deploy(&sandbox, &[]).success();
    let deploy_path = hosts.deploy_path(1).to_path_buf();
    std::fs::write(deploy_path.join("shared/storage/keep.txt"), "sessions\n").unwrap();
    let live = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    // An archive of a few MB that does not compress.
    let noise = noise(3_000_000);
    repo.commit(&[("noise.bin", &noise)], "v2");
    relay.cut_at(relay.up() + 1_500_000);
    let cut = sandbox.run(&["run", "app.rhai"]);
    cut.expect(1);
    assert!(relay.was_cut(), "the relay never cut: {}", cut.stderr);
    assert!(cut.stderr.contains("web1"), "{}", cut.stderr);
    assert!(cut.stderr.contains("deploy:update_code"), "{}", cut.stderr);
    assert_eq!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), live);
    // The host's remote shell ended with the connection and took the half-done work with it.
    let clean = eventually(Duration::from_secs(15), || {
        sandbox.releases(&hosts.deploy_rel(1)) == vec![live.clone()]
            && artifacts(&deploy_path).iter().all(|n| !n.contains(".tmp."))
    });
    if !clean {
        eprintln!(
            "{}",
            String::from_utf8_lossy(
                &std::process::Command::new("ps")
                    .args(["-ef", "--forest"])
                    .output()
                    .unwrap()
                    .stdout
            )
        );
    }
    assert!(
        clean,
        "left on the host: releases {:?}, artifacts {:?}",
        sandbox.releases(&hosts.deploy_rel(1)),
        artifacts(&deploy_path)
    );
    assert_eq!(
        read(&deploy_path.join("shared/storage/keep.txt")),
        "sessions\n"
    );
    // The lock names the zdd that lost its connection: `zdd unlock` (as the hint says), and
    // the next deploy, on a whole connection, goes through.
    assert!(cut.stderr.contains("zdd unlock app.rhai") || deploy_path.join(".zdd/lock").exists());
    let relay = Relay::start(hosts.port(1));
    sandbox.write("app.rhai", &recipe(&repo, &through(&relay), ""));
    sandbox.run(&["unlock", "app.rhai"]).success();
    let next = deploy(&sandbox, &[]);
    next.success();
    assert_ne!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), live);
    assert_eq!(
        read(&deploy_path.join("current/noise.bin")).len(),
        noise.len()
    );
}

/// One byte of the archive flipped on the host while it arrives: the hash refuses it, nothing
/// switches, and the damaged file is not kept.
#[test]
fn a_flipped_byte_is_refused_by_the_hash() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo_with_version(&sandbox, "v1");
    let relay = Relay::start(hosts.port(1));
    let host = hosts.recipe_host(1).replace(
        &format!(".set(\"port\", {})", hosts.port(1)),
        &format!(".set(\"port\", {})", relay.port),
    ) + ";\n";
    sandbox.write("app.rhai", &recipe(&repo, &host, ""));
    deploy(&sandbox, &[]).success();
    let deploy_path = hosts.deploy_path(1).to_path_buf();
    let live = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    repo.commit(&[("noise.bin", &noise(3_000_000))], "v2");
    relay.pause_at(relay.up() + 1_500_000);
    let child = sandbox
        .zdd(&["run", "app.rhai"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        relay.wait_paused(Duration::from_secs(60)),
        "the transfer never reached the pause"
    );
    // The part that arrived, once it stops growing.
    let partial = || {
        artifacts(&deploy_path)
            .into_iter()
            .find(|n| n.contains(".tmp."))
            .map(|n| deploy_path.join(".zdd/artifacts").join(n))
    };
    let mut size = 0;
    let started = Instant::now();
    let file = loop {
        if let Some(file) = partial() {
            let now = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            if now > 100_000 && now == size {
                break file;
            }
            size = now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no partial archive on the host"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    {
        use std::io::{Read, Seek, SeekFrom, Write};
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&file)
            .unwrap();
        let mut byte = [0u8; 1];
        f.seek(SeekFrom::Start(50_000)).unwrap();
        f.read_exact(&mut byte).unwrap();
        f.seek(SeekFrom::Start(50_000)).unwrap();
        f.write_all(&[byte[0] ^ 0x01]).unwrap();
    }
    relay.resume();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot ship the build's archive"),
        "{stderr}"
    );
    assert!(stderr.contains("arrived with sha256"), "{stderr}");
    assert_eq!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), live);
    assert_eq!(sandbox.releases(&hosts.deploy_rel(1)), vec![live.clone()]);
    // Only the live release's archive is kept; nothing half-shipped.
    let kept = artifacts(&deploy_path);
    assert_eq!(
        kept.iter().filter(|n| n.ends_with(".tar.gz")).count(),
        1,
        "{kept:?}"
    );
    assert!(kept.iter().all(|n| !n.contains(".tmp.")), "{kept:?}");
}

/// Bytes that do not compress (a linear congruential sequence, as hex would compress): the
/// archive is about as big as they are.
fn noise(len: usize) -> String {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Printable: the repository helper writes text.
            (b'!' + ((state >> 33) % 90) as u8) as char
        })
        .collect()
}

/// Bad build settings are refused before anything runs: exit 2, nothing touched.
#[test]
fn bad_build_settings_are_refused_before_anything_runs() {
    let sandbox = Sandbox::new();
    let repo = repo_with_version(&sandbox, "v1");
    let deploy_path = sandbox.str("app");
    let host = format!(
        "localhost().set(\"deploy_path\", {});\n",
        rhai_string(&deploy_path)
    );
    sandbox.write("app.rhai", &recipe(&repo, &host, ""));
    for (setting, words) in [
        ("build_on=elsewhere", "`build_on`"),
        ("build_exclude=../outside", "`build_exclude`"),
    ] {
        let run = sandbox.run(&["run", "app.rhai", "-o", setting]);
        run.expect(2);
        assert!(run.stderr.contains(words), "{setting}: {}", run.stderr);
        assert!(!sandbox.path("app").exists(), "{setting}");
    }
}

/// Built once and shipped on this machine (a `localhost()` host: the local transport copies and
/// unpacks the archive, with the same checks).
#[test]
fn a_local_host_gets_the_build_too() {
    let sandbox = Sandbox::new();
    let repo = repo_with_version(&sandbox, "v1");
    let host = format!(
        "localhost().set(\"deploy_path\", {});\n",
        rhai_string(&sandbox.str("app"))
    );
    sandbox.write("app.rhai", &recipe(&repo, &host, ""));
    let run = deploy(&sandbox, &[]);
    run.success();
    assert_eq!(sandbox.read("app/current/vendor/built.txt"), "built-v1\n");
    let listed = releases(&sandbox);
    assert!(listed[0].2.is_some(), "{listed:?}");
}

/// `recipes/laravel.rhai` built once (`-o build_on=local`) for three hosts with real php-fpm
/// and nginx, whose PATH has `git`, `composer` and `npm` that fail: each serves the new
/// version, from releases with one artifact hash, and no host ran a denied program.
#[test]
fn the_laravel_recipe_built_once_serves_the_new_version_on_three_hosts() {
    use crate::laravel_support::{fixture_repo, shared_env, Stack, StackOptions};

    let sandbox = Sandbox::new();
    let login = Login {
        path: Some(denied_path(&sandbox)),
        ..Login::default()
    };
    let hosts = SshHosts::start_with(&sandbox, 3, &login);
    let fixture = fixture_repo(&sandbox, "repo");
    let stacks: Vec<Stack> = (1..=3)
        .map(|i| {
            shared_env(&sandbox, hosts.deploy_path(i));
            Stack::start(
                &sandbox,
                hosts.deploy_path(i),
                StackOptions {
                    process_control_timeout: Some(10),
                    document_root: false,
                },
            )
        })
        .collect();
    let mut lines = String::new();
    for (i, stack) in (1..=3).zip(&stacks) {
        lines.push_str(&format!(
            "{}.set(\"roles\", [\"web\"]).set(\"health_url\", {}).set(\"fpm_pid_file\", {}).set(\"fpm_socket\", {});\n",
            hosts.recipe_host(i),
            rhai_string(&stack.url("/health")),
            rhai_string(&stack.fpm_pid_file.display().to_string()),
            rhai_string(&stack.fpm_socket.display().to_string()),
        ));
    }
    let recipe = format!("{}/recipes/laravel", env!("CARGO_MANIFEST_DIR"));
    sandbox.write(
        "app.rhai",
        &format!(
            "import {};\nset(\"repository\", {});\nset(\"build_on\", \"local\");\n{lines}",
            rhai_string(&recipe),
            rhai_string(&fixture.str())
        ),
    );
    let run = |branch: &str| {
        let run = sandbox.run(&[
            "run",
            "app.rhai",
            "--roles",
            "web",
            "-o",
            &format!("branch={branch}"),
            "-o",
            "health_checks=2",
            "-o",
            "health_interval=0.1",
            "-o",
            "health_expect_release=true",
            "-o",
            "audit_offline=warn",
        ]);
        run.success();
        run
    };
    run("v1");
    let second = run("v2");
    assert_eq!(denied_calls(&sandbox), "", "{}", second.stderr);
    assert!(
        second.stderr.contains("[build] deploy:vendors"),
        "{}",
        second.stderr
    );
    assert!(
        !second.stderr.contains("[web1] deploy:vendors"),
        "{}",
        second.stderr
    );
    let release = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    let listed = releases_with(&sandbox, &["--roles", "web"]);
    let hashes: Vec<Option<String>> = listed
        .iter()
        .filter(|(_, r, _)| *r == release)
        .map(|(_, _, a)| a.clone())
        .collect();
    assert_eq!(hashes.len(), 3, "{listed:?}");
    assert!(hashes[0].is_some(), "{listed:?}");
    assert!(hashes.iter().all(|h| *h == hashes[0]), "{listed:?}");
    for (i, stack) in (1..=3).zip(&stacks) {
        assert_eq!(sandbox.current(&hosts.deploy_rel(i)).unwrap(), release);
        let current = hosts.deploy_path(i).join("current");
        assert!(
            current.join("vendor/autoload.php").is_file(),
            "built vendor/"
        );
        assert_eq!(
            read(&current.join("REVISION")),
            format!("{}\n", fixture.commit_of("v2"))
        );
        let (_, _, body) = stack.get("/version");
        assert_eq!(body.trim(), format!("v2 {release}"), "host {i}");
    }
}

/// `build_on` naming a host of the recipe: the build runs there over SSH (git and composer
/// are on that host, not on the others), comes back to zdd's machine, and is shipped to the
/// hosts deployed to; the build directory on the build host is removed afterwards.
#[test]
fn a_named_build_host_builds_for_the_others() {
    let sandbox = Sandbox::new();
    let login = Login {
        path: Some(denied_path(&sandbox)),
        ..Login::default()
    };
    let hosts = SshHosts::start_with(&sandbox, 2, &login);
    let builder_sandbox = Sandbox::new();
    let builder = SshHosts::start(&builder_sandbox, 1);
    let builder_line = builder
        .recipe_host(1)
        .replacen("host(\"web1\")", "host(\"builder\")", 1);
    assert!(
        builder_line.starts_with("host(\"builder\")"),
        "{builder_line}"
    );
    let repo = repo_with_version(&sandbox, "v1");
    let lines = format!(
        "{}{builder_line};\nset(\"build_on\", \"builder\");\n",
        hosts.recipe_hosts()
    );
    sandbox.write("app.rhai", &recipe(&repo, &lines, ""));
    let run = deploy(&sandbox, &["--hosts", "web1,web2"]);
    run.success();
    assert_eq!(denied_calls(&sandbox), "", "{}", run.stdout);
    let built: Vec<String> = run
        .json_lines()
        .into_iter()
        .filter(|e| e["event"] == "task_finished" && e["task"] == "app:build")
        .map(|e| e["host"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(built, vec!["builder".to_string()], "{}", run.stdout);
    let listed = releases_with(&sandbox, &["--hosts", "web1,web2"]);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed[0].2.is_some() && listed[0].2 == listed[1].2,
        "{listed:?}"
    );
    for i in 1..=2 {
        assert_eq!(
            read(&hosts.deploy_path(i).join("current/vendor/built.txt")),
            "built-v1\n"
        );
    }
    // Only the build host's repository cache stays there; nothing was deployed to it.
    let build_dir = builder.deploy_path(1).join(".zdd/build");
    let left: Vec<String> = std::fs::read_dir(&build_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["repo.git".to_string()], "{}", run.stdout);
    assert!(!builder.deploy_path(1).join("current").exists());
}

/// `--plan` shows the build's steps apart: once, under `build`, and not on the hosts.
#[test]
fn the_plan_shows_the_build_apart_from_the_hosts() {
    let sandbox = Sandbox::new();
    let repo = repo_with_version(&sandbox, "v1");
    let host = format!(
        "localhost(\"web1\").set(\"deploy_path\", {});\nlocalhost(\"web2\").set(\"deploy_path\", {});\n",
        rhai_string(&sandbox.str("app1")),
        rhai_string(&sandbox.str("app2"))
    );
    sandbox.write("app.rhai", &recipe(&repo, &host, ""));
    let run = sandbox.run(&["run", "app.rhai", "--plan"]);
    run.success();
    let text = &run.stdout;
    assert!(
        text.starts_with("build (built once, shipped to every host)\n   1. app:build"),
        "{text}"
    );
    assert_eq!(text.matches("app:build").count(), 1, "{text}");
    assert!(text.contains("web1\n"), "{text}");
    assert!(text.contains("web2\n"), "{text}");
    let hosts_built = sandbox.run(&["run", "app.rhai", "--plan", "-o", "build_on=hosts"]);
    hosts_built.success();
    assert_eq!(
        hosts_built.stdout.matches("app:build").count(),
        2,
        "each host builds: {}",
        hosts_built.stdout
    );
    assert!(!sandbox.path("app1").exists());
}

/// The local build starts from the last build of the same recipe, as a host's release starts
/// from the previous release (`vendor_reuse`): the second build's `composer install` begins
/// with the first build's `vendor/` (hard links), and only the last build is kept.
#[test]
fn the_local_build_starts_from_the_last_build() {
    use crate::laravel_support::{fixture_repo, shared_env};

    let sandbox = Sandbox::new();
    let fixture = fixture_repo(&sandbox, "repo");
    shared_env(&sandbox, "app");
    let recipe = format!("{}/recipes/laravel", env!("CARGO_MANIFEST_DIR"));
    sandbox.write(
        "app.rhai",
        &format!(
            "import {};\nset(\"repository\", {});\nset(\"deploy_path\", {});\nset(\"build_on\", \"local\");\n",
            rhai_string(&recipe),
            rhai_string(&fixture.str()),
            rhai_string(&sandbox.str("app")),
        ),
    );
    let run = |branch: &str| {
        let run = sandbox.run(&[
            "run",
            "app.rhai",
            "-v",
            "-o",
            &format!("branch={branch}"),
            "-o",
            "fpm_reload=none",
            "-o",
            "audit_offline=warn",
        ]);
        run.success();
        run
    };
    let first = run("v1");
    assert!(
        !first.stderr.contains("composer: vendor/ from"),
        "{}",
        first.stderr
    );
    let second = run("v2");
    assert!(
        second
            .stderr
            .contains("[build] composer: vendor/ from releases/previous (hard links)"),
        "{}",
        second.stderr
    );
    assert!(sandbox.path("app/current/vendor/autoload.php").is_file());
    // One finished build is kept per recipe, to start the next from.
    let groups: Vec<_> = std::fs::read_dir(sandbox.path(".cache/zdd/build"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(groups.len(), 1);
    let builds = std::fs::read_dir(groups[0].path()).unwrap().count();
    assert_eq!(builds, 1, "only the last build is kept");
}

/// A host whose `tar` unpacks something other than the archive (run on the host's PATH ahead
/// of the real one: it unpacks, then changes what `tamper-mode` says): the release is checked
/// against the build's manifest and link list, refused, and nothing is left of it; once the
/// host's tar is honest again, the same build ships again and deploys. 3 000 links of the
/// build are checked in one pass, not one process per link.
#[test]
fn a_release_unlike_the_build_is_refused_by_the_manifest_and_the_link_list() {
    let sandbox = Sandbox::new();
    let bin = sandbox.path("tamper-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let mode = sandbox.path("tamper-mode");
    std::fs::write(&mode, "none").unwrap();
    // Called as `tar -xzf ARCHIVE -C RELEASE --no-same-owner`.
    let tar = bin.join("tar");
    std::fs::write(
        &tar,
        format!(
            "#!/bin/sh\n/bin/tar \"$@\" || exit $?\ncase \"$(cat '{}')\" in\n\
             link) ln -sfn ../../../../etc/passwd \"$4/links/7\" ;;\n\
             file) echo more >> \"$4/vendor/built.txt\" ;;\n\
             extra) ln -s VERSION \"$4/links/extra\" ;;\nesac\n",
            mode.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&tar, std::fs::Permissions::from_mode(0o755)).unwrap();
    let login = Login {
        path: Some(format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display())),
        ..Login::default()
    };
    let hosts = SshHosts::start_with(&sandbox, 1, &login);
    let repo = repo_with_version(&sandbox, "v1");
    let links = r#"task("app:links", || {
    run("mkdir -p {{release_path}}/links && cd {{release_path}}/links && for i in $(seq 1 3000); do ln -s ../VERSION $i; done");
});
build("app:links");
after("app:build", "app:links");"#;
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), links));
    deploy(&sandbox, &[]).success();
    let deploy_path = hosts.deploy_path(1).to_path_buf();
    let live = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    let current = deploy_path.join("current");
    assert_eq!(
        std::fs::read_link(current.join("links/3000")).unwrap(),
        Path::new("../VERSION")
    );
    let kept = artifacts(&deploy_path);
    let list = kept.iter().find(|n| n.ends_with(".links")).unwrap();
    let list = read(&deploy_path.join(".zdd/artifacts").join(list));
    assert_eq!(list.lines().count(), 3000);
    assert!(list.contains("./links/7\\../VERSION\n"), "{list}");

    repo.commit(&[("VERSION", "v2\n")], "v2");
    for (tamper, words) in [
        ("link", "its symlinks differ from the build's"),
        ("extra", "its symlinks differ from the build's"),
        ("file", "files differ from the build"),
    ] {
        std::fs::write(&mode, tamper).unwrap();
        let refused = deploy(&sandbox, &[]);
        refused.expect(1);
        assert!(
            refused
                .stderr
                .contains("does not match the build's archive"),
            "{tamper}: {}",
            refused.stderr
        );
        assert!(
            refused.stderr.contains(words),
            "{tamper}: {}",
            refused.stderr
        );
        assert!(refused.stderr.contains("on `web1`"), "{}", refused.stderr);
        assert_eq!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), live);
        assert_eq!(sandbox.releases(&hosts.deploy_rel(1)), vec![live.clone()]);
        assert!(!deploy_path.join(".zdd/lock").exists(), "{tamper}");
        // Only the live release's build is kept on the host: the refused one's archive,
        // manifest and link list went with it.
        assert_eq!(artifacts(&deploy_path), kept, "{tamper}");
    }
    std::fs::write(&mode, "none").unwrap();
    let honest = deploy(&sandbox, &[]);
    honest.success();
    assert!(honest.stdout.contains("shipping"), "{}", honest.stdout);
    assert_eq!(read(&current.join("vendor/built.txt")), "built-v2\n");
}

/// A host that has the build already (its archive, manifest and link list, checked by their
/// hashes) is sent none of them again; one whose manifest was changed by hand gets it again.
#[test]
fn a_host_with_the_build_is_sent_only_what_it_lacks() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let repo = repo_with_version(&sandbox, "v1");
    // Many files: the manifest is bigger than the archive.
    let files: Vec<(String, String)> = (0..400)
        .map(|i| (format!("app/F{i:03}.php"), format!("<?php // {i}\n")))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    repo.commit(&refs, "many files");
    let v1 = repo_commit(&repo);
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), ""));
    let first = deploy(&sandbox, &[]);
    first.success();
    let first_sent = finished(&first)["bytes_sent"].as_u64().unwrap();
    repo.commit(&[("VERSION", "v2\n")], "v2");
    deploy(&sandbox, &[]).success();
    let again = deploy(&sandbox, &["-o", &format!("branch={v1}")]);
    again.success();
    let again_sent = finished(&again)["bytes_sent"].as_u64().unwrap();
    // The manifest changed on the host: sent again (and the release checked against the
    // build's own), the archive not.
    let deploy_path = hosts.deploy_path(1);
    let manifest = artifacts(deploy_path)
        .into_iter()
        .find(|n| {
            n.ends_with(".manifest") && {
                read(&deploy_path.join(".zdd/artifacts").join(n)).contains("./app/F000.php")
            }
        })
        .unwrap();
    let manifest = deploy_path.join(".zdd/artifacts").join(manifest);
    let good = read(&manifest);
    // Neither the archive nor the manifest went again (the rest of a deploy's requests did).
    assert!(
        first_sent - again_sent > good.len() as u64,
        "{again_sent} bytes sent again, {first_sent} the first time, the manifest is {}",
        good.len()
    );
    std::fs::write(
        &manifest,
        good.replace("./app/F000.php\n", "./app/F001.php\n"),
    )
    .unwrap();
    deploy(&sandbox, &[]).success();
    let repaired = deploy(&sandbox, &["-o", &format!("branch={v1}")]);
    repaired.success();
    assert!(
        repaired
            .stdout
            .contains("on the host already, nothing shipped"),
        "{}",
        repaired.stdout
    );
    assert_eq!(read(&manifest), good);
}

/// Processes that have `path` open (their `/proc/PID/fd` links to it).
fn holders(path: &Path) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|p| {
            std::fs::read_dir(p.path().join("fd"))
                .map(|fds| {
                    fds.flatten()
                        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == path))
                })
                .unwrap_or(false)
        })
        .count()
}

/// A build host's repository cache is fetched by any run that builds there, under no deploy
/// lock: a run waits while another fetches (holds the cache's fetch lock), and never removes
/// the git lock files of that fetch as if they were a dead run's; once the other is done, it
/// fetches and deploys.
#[test]
fn a_build_host_fetches_one_run_at_a_time() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let builder_sandbox = Sandbox::new();
    let builder = SshHosts::start(&builder_sandbox, 1);
    let builder_line = builder
        .recipe_host(1)
        .replacen("host(\"web1\")", "host(\"builder\")", 1);
    let repo = repo_with_version(&sandbox, "v1");
    let lines = format!(
        "{}{builder_line};\nset(\"build_on\", \"builder\");\n",
        hosts.recipe_hosts()
    );
    sandbox.write("app.rhai", &recipe(&repo, &lines, ""));
    deploy(&sandbox, &["--hosts", "web1"]).success();
    let cache = builder.deploy_path(1).join(".zdd/build/repo.git");
    let lock = cache.join("zdd-fetch.lock");
    assert!(lock.is_file());
    // Another run, fetching: it holds the lock, and git's lock file of a ref it updates.
    let planted = cache.join("refs/heads/master.lock");
    std::fs::create_dir_all(planted.parent().unwrap()).unwrap();
    std::fs::write(&planted, "").unwrap();
    let release = sandbox.path("release-fetch");
    let mut other = std::process::Command::new("flock")
        .arg(&lock)
        .arg("sh")
        .arg("-c")
        .arg(format!(
            "while [ ! -e '{}' ]; do sleep 0.05; done",
            release.display()
        ))
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || holders(&lock) >= 1));
    repo.commit(&[("VERSION", "v2\n")], "v2");
    let child = sandbox
        .zdd(&["run", "app.rhai", "--hosts", "web1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // This run's fetch waits on the lock too (the holder and this run's fetch have it open).
    let waited = eventually(Duration::from_secs(60), || holders(&lock) >= 3);
    let untouched = planted.exists();
    std::fs::remove_file(&planted).unwrap();
    std::fs::write(&release, "").unwrap();
    other.wait().unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(waited, "the run never waited for the other fetch: {stderr}");
    assert!(
        untouched,
        "the other run's git lock file was removed: {stderr}"
    );
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(
        read(&hosts.deploy_path(1).join("current/vendor/built.txt")),
        "built-v2\n"
    );
}
