//! Attacks on build once, ship to many (`build_on`), from a hostile repository, a careless
//! user and a hostile or broken machine: names a shell would run, symlinks that lead to the
//! deployer's files, a build that writes into the shared paths, excludes that leave nothing,
//! a damaged cache on zdd's machine or archive on a host, two runs building at once, a full
//! disk, Ctrl-C. Real sshd hosts (`ssh_support`); each test says what zdd must do and checks
//! it in zdd's own words and on the hosts' disks.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::fault_support::MountGuard;
use crate::ssh_support::{rhai_string, SshHosts};
use crate::support::{Repo, Run, Sandbox};
use crate::tcp_relay::Relay;

/// A repository with an app's first files.
fn repository(sandbox: &Sandbox) -> Repo {
    let repo = sandbox.repo("repo");
    repo.commit(
        &[
            ("public/index.php", "<?php echo 'v1';\n"),
            ("storage/.gitignore", "*\n"),
        ],
        "v1",
    );
    repo
}

/// The stdlib deploy built once on zdd's machine, `storage` and `.env` shared, with `extra`
/// recipe lines and `hosts`.
fn recipe(repo: &Repo, hosts: &str, extra: &str) -> String {
    format!(
        r#"import "deploy";
set("repository", {repo});
set("shared_dirs", ["storage"]);
set("shared_files", [".env"]);
set("build_on", "local");
{extra}
{hosts}"#,
        repo = rhai_string(&repo.str()),
    )
}

/// A build task (`app:build`, marked `build()`, after the checkout) running `script`.
fn build_task(script: &str) -> String {
    format!(
        "task(\"app:build\", || {{ run({}); }});\nbuild(\"app:build\");\nafter(\"deploy:update_code\", \"app:build\");\n",
        rhai_string(script)
    )
}

/// Each host's `shared/.env` (zdd never creates an empty one).
fn shared_env(hosts: &SshHosts) {
    for i in 1..=hosts.len() {
        let shared = hosts.deploy_path(i).join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        std::fs::write(shared.join(".env"), "APP_KEY=host\n").unwrap();
    }
}

fn deploy(sandbox: &Sandbox, args: &[&str]) -> Run {
    let mut all = vec!["run", "app.rhai"];
    all.extend_from_slice(args);
    sandbox.run(&all)
}

/// Add the symlink `path` -> `target` to the repository's work tree (committed by the next
/// `commit`).
fn link(repo: &Repo, path: &str, target: &str) {
    let at = repo.path.join(path);
    std::fs::create_dir_all(at.parent().unwrap()).unwrap();
    symlink(target, at).unwrap();
}

/// Every entry under `root` but `skip` (top-level names), symlinks not followed: a file's
/// bytes, a link's target, or `dir`.
fn tree(root: &Path, skip: &[&str]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<Vec<u8>, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let relative = path.strip_prefix(root).unwrap();
            if skip.iter().any(|s| relative == Path::new(s)) {
                continue;
            }
            let name = relative.as_os_str().as_bytes().to_vec();
            let metadata = std::fs::symlink_metadata(&path).unwrap();
            if metadata.file_type().is_symlink() {
                let target = std::fs::read_link(&path).unwrap();
                out.insert(name, [b"-> ", target.as_os_str().as_bytes()].concat());
            } else if metadata.is_dir() {
                out.insert(name, b"dir".to_vec());
                walk(root, &path, skip, out);
            } else {
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, skip, &mut out);
    out
}

/// The files under `root` (recursively) named `name`.
fn found_named(root: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_name() == name {
                found.push(path.clone());
            }
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(path);
            }
        }
    }
    found
}

/// The decompressed bytes of a tar.gz.
fn gunzip(archive: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(archive).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The files of a directory, sorted (none when it does not exist).
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
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

/// Nothing of a deploy on the host: no release, no lock, no archive (its `shared/` only).
#[track_caller]
fn untouched(hosts: &SshHosts, i: usize, said: &str) {
    let deploy_path = hosts.deploy_path(i);
    assert_eq!(
        names(deploy_path),
        if deploy_path.join("shared").exists() {
            vec!["shared".to_string()]
        } else {
            vec![]
        },
        "the host was touched: {said}"
    );
}

/// Names a shell would run or split, names that begin with `-`, with spaces, tabs, quotes, a
/// terminal escape, UTF-8, and paths and link targets longer than a tar header holds: the
/// hosts get exactly the repository's tree, and nothing the names say is ever run.
#[test]
fn hostile_names_ship_as_they_are_and_nothing_they_say_runs() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    let long = "l".repeat(120);
    let deep = format!("{long}/{long}/{long}");
    let files: Vec<(String, &str)> = vec![
        ("public/$(touch PWNED1)/x.php".into(), "1"),
        ("public/`touch PWNED2`.php".into(), "2"),
        ("a'b\"c;touch PWNED3;".into(), "3"),
        ("$(touch${IFS}PWNED4)".into(), "4"),
        ("-rf".into(), "5"),
        ("--help".into(), "6"),
        (" leading and trailing ".into(), "7"),
        ("*".into(), "8"),
        ("tab\tname".into(), "9"),
        ("esc\u{1b}[31mred".into(), "10"),
        ("café ☕.php".into(), "11"),
        ("a  ./b".into(), "12"),
        (format!("{deep}/deep.php"), "13"),
    ];
    let borrowed: Vec<(&str, &str)> = files.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    repo.commit(&borrowed, "hostile names");
    link(&repo, "-L", "./-rf");
    link(&repo, "deep-link", &format!("{deep}/deep.php"));
    link(&repo, "$(touch PWNED5)", "a'b\"c;touch PWNED3;");
    repo.commit(&[], "hostile links");
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), ""));
    let run = deploy(&sandbox, &[]);
    run.success();
    let current = hosts.deploy_path(1).join("current");
    let shipped = tree(&current, &["REVISION", "storage", ".env"]);
    let committed = tree(&repo.path, &[".git", "storage"]);
    assert_eq!(
        shipped
            .keys()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>(),
        committed
            .keys()
            .map(|k| String::from_utf8_lossy(k))
            .collect::<Vec<_>>()
    );
    assert!(shipped == committed, "the release differs from the commit");
    for marker in ["PWNED1", "PWNED2", "PWNED3", "PWNED4", "PWNED5"] {
        assert_eq!(
            found_named(sandbox.root(), marker),
            Vec::<PathBuf>::new(),
            "a name was run as a command: {marker}"
        );
    }
}

/// What a sha256sum manifest or a host's `readlink` cannot carry (a newline in a name or in a
/// link's target, a name that is not UTF-8) is refused while packing, named, before any host
/// is touched: never shipped to be refused by every host.
#[test]
fn names_a_host_cannot_check_are_refused_before_any_host_is_touched() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), ""));
    // Each case makes its bad entry in the work tree and says where it is.
    type Make = fn(&Repo) -> PathBuf;
    let cases: [(Make, &str); 3] = [
        (
            |repo| {
                let path = repo.path.join("new\nline.php");
                std::fs::write(&path, "x").unwrap();
                path
            },
            "cannot pack `new\\nline.php`: its name holds a newline, which a sha256sum \
             manifest cannot carry",
        ),
        (
            |repo| {
                let path = repo.path.join(OsStr::from_bytes(b"caf\xe9.php"));
                std::fs::write(&path, "x").unwrap();
                path
            },
            "cannot pack `caf\u{fffd}.php`: its name is not UTF-8, which a sha256sum manifest \
             cannot carry",
        ),
        (
            // Under a shared path: never resolved, packed as a link.
            |repo| {
                link(repo, "public/up", "../storage/x\n");
                repo.path.join("public/up")
            },
            "cannot pack `public/up`: it is a symlink whose target `../storage/x\\n` holds a \
             newline, which a host cannot read back to check it",
        ),
    ];
    for (make, said) in cases {
        let bad = make(&repo);
        repo.commit(&[], "bad name");
        let run = deploy(&sandbox, &[]);
        run.expect(1);
        assert!(
            run.stderr
                .contains("task `build:pack` failed on host `build`"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains(said), "{said}\n{}", run.stderr);
        untouched(&hosts, 1, &run.stderr);
        std::fs::remove_file(bad).unwrap();
        repo.commit(&[], "fixed");
    }
    // Once the names are gone, the same recipe deploys.
    deploy(&sandbox, &[]).success();
}

/// A symlink the repository holds that leads out of the build directory (to the deployer's
/// keys, by an absolute path or by climbing) is shipped as the link it is, as a checkout on
/// the host would have it: never as the files of zdd's machine it points at. A link the build
/// makes to a package outside (composer's path repositories) is still shipped as files.
#[test]
fn links_of_the_commit_that_leave_the_build_never_ship_the_deployers_files() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let secret = "-----BEGIN OPENSSH PRIVATE KEY----- zdd-test-secret";
    sandbox.write("deployer/.ssh/id_ed25519", secret);
    let keys = sandbox.str("deployer/.ssh");
    let climbing = format!("{}{keys}/id_ed25519", "../".repeat(40));
    let repo = repository(&sandbox);
    link(&repo, "public/key.txt", &format!("{keys}/id_ed25519"));
    link(&repo, "public/keys", &keys);
    link(&repo, "public/climb.txt", &climbing);
    repo.commit(&[], "links out");
    sandbox.write("pkgs/acme/src/Acme.php", "<?php // acme\n");
    let package = sandbox.str("pkgs/acme");
    let build = build_task(&format!(
        "mkdir -p {{{{release_path}}}}/vendor && ln -s {} {{{{release_path}}}}/vendor/acme",
        rhai_string(&package).trim_matches('"')
    ));
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), &build));
    deploy(&sandbox, &[]).success();
    let current = hosts.deploy_path(1).join("current");
    for (path, target) in [
        ("public/key.txt", format!("{keys}/id_ed25519")),
        ("public/keys", keys.clone()),
        ("public/climb.txt", climbing.clone()),
    ] {
        let metadata = std::fs::symlink_metadata(current.join(path)).unwrap();
        assert!(metadata.file_type().is_symlink(), "{path} is not a link");
        assert_eq!(
            std::fs::read_link(current.join(path)).unwrap(),
            PathBuf::from(&target),
            "{path}"
        );
    }
    // The build's own link to a package outside is shipped as the package's files.
    let acme = current.join("vendor/acme/src/Acme.php");
    assert!(std::fs::symlink_metadata(&acme).unwrap().is_file());
    assert_eq!(std::fs::read_to_string(&acme).unwrap(), "<?php // acme\n");
    // Neither the host's archive nor zdd's cached one holds the key.
    let mut archives: Vec<PathBuf> = names(&hosts.deploy_path(1).join(".zdd/artifacts"))
        .into_iter()
        .filter(|n| n.ends_with(".tar.gz"))
        .map(|n| hosts.deploy_path(1).join(".zdd/artifacts").join(n))
        .collect();
    archives.extend(
        names(&sandbox.path(".cache/zdd/artifacts"))
            .into_iter()
            .filter(|n| n.ends_with(".tar.gz"))
            .map(|n| sandbox.path(".cache/zdd/artifacts").join(n)),
    );
    assert_eq!(archives.len(), 2, "{archives:?}");
    for archive in archives {
        assert!(
            !contains(&gunzip(&archive), b"zdd-test-secret"),
            "{} holds the deployer's key",
            archive.display()
        );
    }
}

/// A build that writes into the shared paths (`storage`, `.env`) never reaches the host's
/// shared data: those paths stay out of the archive and the release links the host's own.
#[test]
fn a_build_writing_into_shared_paths_never_touches_the_hosts_data() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let shared = hosts.deploy_path(1).join("shared");
    std::fs::create_dir_all(shared.join("storage/framework/sessions")).unwrap();
    std::fs::write(
        shared.join("storage/framework/sessions/s1"),
        "user session\n",
    )
    .unwrap();
    let repo = repository(&sandbox);
    let build = build_task(
        "mkdir -p {{release_path}}/storage/framework/sessions && \
         echo from-the-build > {{release_path}}/storage/framework/sessions/s1 && \
         echo APP_KEY=from-the-build > {{release_path}}/.env",
    );
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), &build));
    deploy(&sandbox, &[]).success();
    repo.commit(&[("public/index.php", "<?php echo 'v2';\n")], "v2");
    deploy(&sandbox, &[]).success();
    assert_eq!(
        std::fs::read_to_string(shared.join("storage/framework/sessions/s1")).unwrap(),
        "user session\n"
    );
    assert_eq!(
        std::fs::read_to_string(shared.join(".env")).unwrap(),
        "APP_KEY=host\n"
    );
    let current = hosts.deploy_path(1).join("current");
    for path in ["storage", ".env"] {
        assert!(
            std::fs::symlink_metadata(current.join(path))
                .unwrap()
                .file_type()
                .is_symlink(),
            "{path}"
        );
    }
    for manifest in names(&hosts.deploy_path(1).join(".zdd/artifacts"))
        .iter()
        .filter(|n| n.ends_with(".manifest"))
    {
        let text =
            std::fs::read_to_string(hosts.deploy_path(1).join(".zdd/artifacts").join(manifest))
                .unwrap();
        assert!(!text.contains("./storage/"), "{text}");
        assert!(!text.contains("./.env\n"), "{text}");
    }
}

/// A `build_exclude` that leaves out everything (`*`) would ship an empty release: refused
/// while packing, in zdd's words, before any host is touched; one that names a path outside
/// the build is refused before anything runs.
#[test]
fn excludes_that_leave_nothing_or_leave_the_build_are_refused() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), ""));
    let run = deploy(&sandbox, &["-o", "build_exclude=*"]);
    run.expect(1);
    assert!(
        run.stderr.contains(
            "the build's archive would hold no file: the shared paths and `build_exclude` \
             leave out everything the build made"
        ),
        "{}",
        run.stderr
    );
    untouched(&hosts, 1, &run.stderr);
    for outside in ["..", "/", "a/../../b"] {
        let run = deploy(&sandbox, &["-o", &format!("build_exclude={outside}")]);
        run.expect(2);
        assert!(run.stderr.contains("`build_exclude`"), "{}", run.stderr);
        untouched(&hosts, 1, &run.stderr);
    }
}

/// The archive and its record in zdd's cache (`~/.cache/zdd/artifacts`), damaged or edited
/// since they were built: read back and compared before they are used, built again (said as
/// a warning), never shipped to fail on every host. The cache is its owner's only.
#[test]
fn a_damaged_cache_is_built_again_never_shipped() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), ""));
    deploy(&sandbox, &[]).success();
    let cache = sandbox.path(".cache/zdd");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the cache is readable by others: {mode:o}");
    let artifacts = cache.join("artifacts");
    let record = names(&artifacts)
        .into_iter()
        .find(|n| n.ends_with(".json"))
        .map(|n| artifacts.join(n))
        .unwrap();
    let archive = record.with_extension("tar.gz");
    // The record's manifest edited (one hash digit): the archive's hash still matches it.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    let manifest = json["manifest"].as_str().unwrap().to_string();
    let flipped = if manifest.starts_with('0') { "1" } else { "0" };
    json["manifest"] = format!("{flipped}{}", &manifest[1..]).into();
    std::fs::write(&record, json.to_string()).unwrap();
    let again = deploy(&sandbox, &[]);
    again.success();
    assert!(
        again
            .stderr
            .contains("is damaged (it holds other files than its build recorded): built again"),
        "{}",
        again.stderr
    );
    // The archive's bytes changed (another archive in its place).
    let other = sandbox.path("other.tar.gz");
    let status = std::process::Command::new("tar")
        .args([
            "-czf",
            other.to_str().unwrap(),
            "-C",
            repo.path.to_str().unwrap(),
            "public",
        ])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::copy(&other, &archive).unwrap();
    let again = deploy(&sandbox, &[]);
    again.success();
    assert!(
        again.stderr.contains("is damaged (its sha256 is "),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("built again"), "{}", again.stderr);
    let current = hosts.deploy_path(1).join("current");
    assert_eq!(
        std::fs::read_to_string(current.join("public/index.php")).unwrap(),
        "<?php echo 'v1';\n"
    );
    // Repaired: the next deploy reuses it.
    let reused = deploy(&sandbox, &[]);
    reused.success();
    assert!(
        reused.stderr.contains("was built before"),
        "{}",
        reused.stderr
    );
}

/// An archive on the host with the right name and other bytes (another build's, or a file
/// planted there), and its manifest edited: the host's copy is checked by its hash, shipped
/// again, and the release is the build's.
#[test]
fn an_archive_on_the_host_with_the_right_name_and_other_bytes_is_shipped_again() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    let v1 = crate::support::git(&repo.path, &["rev-parse", "HEAD"])
        .trim()
        .to_string();
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), ""));
    deploy(&sandbox, &[]).success();
    let artifacts = hosts.deploy_path(1).join(".zdd/artifacts");
    let first = names(&artifacts);
    repo.commit(&[("public/index.php", "<?php echo 'v2';\n")], "v2");
    deploy(&sandbox, &[]).success();
    let second: Vec<String> = names(&artifacts)
        .into_iter()
        .filter(|n| !first.contains(n))
        .collect();
    let (v1_archive, v1_manifest) = (
        artifacts.join(first.iter().find(|n| n.ends_with(".tar.gz")).unwrap()),
        artifacts.join(first.iter().find(|n| n.ends_with(".manifest")).unwrap()),
    );
    let v2_archive = artifacts.join(second.iter().find(|n| n.ends_with(".tar.gz")).unwrap());
    let v2_manifest = artifacts.join(second.iter().find(|n| n.ends_with(".manifest")).unwrap());
    std::fs::copy(&v2_archive, &v1_archive).unwrap();
    std::fs::copy(&v2_manifest, &v1_manifest).unwrap();
    let again = deploy(&sandbox, &["-o", &format!("branch={v1}")]);
    again.success();
    assert!(again.stderr.contains("shipping"), "{}", again.stderr);
    let current = hosts.deploy_path(1).join("current");
    assert_eq!(
        std::fs::read_to_string(current.join("public/index.php")).unwrap(),
        "<?php echo 'v1';\n"
    );
    // A link planted in its place is replaced, not written through.
    std::fs::remove_file(&v1_archive).unwrap();
    let planted = sandbox.write("planted", "do not overwrite\n");
    symlink(&planted, &v1_archive).unwrap();
    deploy(&sandbox, &["-o", &format!("branch={v1}")]).success();
    assert_eq!(
        std::fs::read_to_string(&planted).unwrap(),
        "do not overwrite\n"
    );
    assert!(std::fs::symlink_metadata(&v1_archive).unwrap().is_file());
}

/// A build task declared in a file the recipe imports, changed: the same commit is built
/// again, never served from the cache of the task as it was.
#[test]
fn a_build_task_changed_in_an_imported_file_is_built_again() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    sandbox.write(
        "app.rhai",
        &recipe(&repo, &hosts.recipe_hosts(), "import \"tasks\";"),
    );
    let tasks = |text: &str| {
        sandbox.write(
            "tasks.rhai",
            &build_task(&format!("echo {text} > {{{{release_path}}}}/built.txt")),
        )
    };
    tasks("one");
    deploy(&sandbox, &[]).success();
    tasks("two");
    let again = deploy(&sandbox, &[]);
    again.success();
    assert!(
        !again.stderr.contains("was built before"),
        "{}",
        again.stderr
    );
    assert_eq!(
        std::fs::read_to_string(hosts.deploy_path(1).join("current/built.txt")).unwrap(),
        "two\n"
    );
}

/// A module that declares no task, only a function a build task calls, changed: built
/// again too (every module the recipe loaded is in the build's name).
#[test]
fn a_helper_changed_in_an_imported_module_is_built_again() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    let task = r#"import "helpers";
task("app:build", || { run("echo " + word() + " > {{release_path}}/built.txt"); });
build("app:build");
after("deploy:update_code", "app:build");"#;
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), task));
    let helper =
        |word: &str| sandbox.write("helpers.rhai", &format!("fn word() {{ \"{word}\" }}\n"));
    let built = || std::fs::read_to_string(hosts.deploy_path(1).join("current/built.txt")).unwrap();
    helper("one");
    deploy(&sandbox, &[]).success();
    assert_eq!(built(), "one\n");
    helper("two");
    let again = deploy(&sandbox, &[]);
    again.success();
    assert!(
        !again.stderr.contains("was built before"),
        "{}",
        again.stderr
    );
    assert_eq!(built(), "two\n");
}

/// Two runs build the same commit with the same recipe at once (for two hosts, `--hosts`):
/// both pack at the same time, and both deploy.
#[test]
fn two_runs_building_the_same_commit_at_once_both_deploy() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 2);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    repo.commit(&[("noise.txt", &noise(6_000_000))], "big");
    let barrier = sandbox.path("barrier");
    std::fs::create_dir_all(&barrier).unwrap();
    // Each build waits for the other: they pack together.
    let build = build_task(&format!(
        "touch {b}/$$; n=0; while [ \"$(ls {b} | wc -l)\" -lt 2 ] && [ $n -lt 300 ]; do sleep 0.05; n=$((n+1)); done",
        b = barrier.display()
    ));
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), &build));
    let start = |host: &str| {
        sandbox
            .zdd(&["run", "app.rhai", "--hosts", host])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (one, two) = (start("web1"), start("web2"));
    for (i, child) in [(1, one), (2, two)] {
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(0),
            "web{i}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            std::fs::read(hosts.deploy_path(i).join("current/noise.txt"))
                .unwrap()
                .len(),
            6_000_000
        );
    }
    // Nothing half-written is left in the cache.
    let left: Vec<String> = names(&sandbox.path(".cache/zdd/artifacts"))
        .into_iter()
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

/// Bytes that do not compress, printable.
fn noise(len: usize) -> String {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (b'!' + ((state >> 33) % 90) as u8) as char
        })
        .collect()
}

/// The host whose deploy path is a small tmpfs (3 MB), with its shared `.env`.
fn host_on_tmpfs(hosts: &SshHosts) -> MountGuard {
    let mount = MountGuard::tmpfs(hosts.deploy_path(1), "3m");
    shared_env(hosts);
    mount
}

/// The host's disk fills while the archive arrives: the deploy fails naming the host, the
/// half-written archive and the new release are gone, `current` is untouched, the release
/// log stays readable and the next deploy that fits goes through.
#[test]
fn a_disk_that_fills_during_the_transfer_leaves_nothing() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let _mount = host_on_tmpfs(&hosts);
    let repo = repository(&sandbox);
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), ""));
    deploy(&sandbox, &[]).success();
    let live = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    repo.commit(&[("noise.txt", &noise(4_000_000))], "too big");
    let full = deploy(&sandbox, &[]);
    full.expect(1);
    assert!(
        full.stderr.contains("cannot ship the build's archive to"),
        "{}",
        full.stderr
    );
    assert!(full.stderr.contains("on `web1`"), "{}", full.stderr);
    assert_eq!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), live);
    assert_eq!(sandbox.releases(&hosts.deploy_rel(1)), vec![live.clone()]);
    // The first deploy's archive, manifest and link list, nothing of the second.
    let artifacts = names(&hosts.deploy_path(1).join(".zdd/artifacts"));
    assert_eq!(artifacts.len(), 3, "{artifacts:?}");
    assert!(!hosts.deploy_path(1).join(".zdd/lock").exists());
    sandbox.log(&hosts.deploy_rel(1));
    repo.commit(&[("noise.txt", "small again\n")], "fits");
    deploy(&sandbox, &[]).success();
}

/// The archive fits the host's disk, its files do not: unpacking fails, and what the failed
/// deploy left (the half-filled release and the archive it shipped) is removed before the
/// failure is recorded, so the release log stays whole and the next deploy finds the space.
#[test]
fn a_disk_that_fills_while_unpacking_leaves_nothing() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let _mount = host_on_tmpfs(&hosts);
    let repo = repository(&sandbox);
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), ""));
    deploy(&sandbox, &[]).success();
    let live = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    let before = names(&hosts.deploy_path(1).join(".zdd/artifacts"));
    // 1.7 MB of archive, 2 MB of files: one fits in 3 MB, both do not.
    repo.commit(&[("noise.txt", &noise(2_000_000))], "fits once");
    for attempt in 1..=2 {
        let full = deploy(&sandbox, &[]);
        full.expect(1);
        assert!(
            full.stderr.contains("does not match the build's archive"),
            "attempt {attempt}: {}",
            full.stderr
        );
        assert_eq!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), live);
        assert_eq!(sandbox.releases(&hosts.deploy_rel(1)), vec![live.clone()]);
        assert_eq!(names(&hosts.deploy_path(1).join(".zdd/artifacts")), before);
        // Every line of the log is whole.
        sandbox.log(&hosts.deploy_rel(1));
        assert!(!full.stderr.contains("cannot be read"), "{}", full.stderr);
    }
}

/// Ctrl-C (SIGINT) while the build is being packed: the run stops once the archive is made,
/// before any host is touched (no lock, no release, no fail hook run there).
#[test]
fn ctrl_c_while_packing_stops_before_any_host_is_touched() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    repo.commit(&[("noise.txt", &noise(30_000_000))], "big");
    // The build's last task asks a helper to press Ctrl-C a moment after it ends: the
    // packing of 30 MB that does not compress is under way then.
    let build = build_task("(sleep 0.3; kill -INT $PPID) </dev/null >/dev/null 2>&1 &");
    sandbox.write("app.rhai", &recipe(&repo, &hosts.recipe_hosts(), &build));
    let run = deploy(&sandbox, &[]);
    run.expect(1);
    assert!(run.stderr.contains("interrupted"), "{}", run.stderr);
    assert!(!run.stderr.contains("[web1]"), "{}", run.stderr);
    untouched(&hosts, 1, &run.stderr);
    let left: Vec<String> = names(&sandbox.path(".cache/zdd/artifacts"))
        .into_iter()
        .filter(|n| n.ends_with(".partial"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

/// `host` through `relay` (its port replaced).
fn through(hosts: &SshHosts, relay: &Relay) -> String {
    hosts.recipe_host(1).replace(
        &format!(".set(\"port\", {})", hosts.port(1)),
        &format!(".set(\"port\", {})", relay.port),
    ) + ";\n"
}

/// Ctrl-C while the archive is on its way: the run ends failed, the lock is released, the new
/// release and the half-sent archive are gone, `current` is untouched.
#[test]
fn ctrl_c_during_the_transfer_releases_the_lock_and_leaves_nothing() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    let relay = Relay::start(hosts.port(1));
    sandbox.write("app.rhai", &recipe(&repo, &through(&hosts, &relay), ""));
    deploy(&sandbox, &[]).success();
    let live = sandbox.current(&hosts.deploy_rel(1)).unwrap();
    repo.commit(&[("noise.txt", &noise(3_000_000))], "v2");
    relay.pause_at(relay.up() + 1_500_000);
    let child = sandbox
        .zdd(&["run", "app.rhai"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        relay.wait_paused(Duration::from_secs(60)),
        "the transfer never reached the pause"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    relay.resume();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(sandbox.current(&hosts.deploy_rel(1)).unwrap(), live);
    assert!(!hosts.deploy_path(1).join(".zdd/lock").exists(), "{stderr}");
    let clean = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        sandbox.releases(&hosts.deploy_rel(1)) == vec![live.clone()]
            && names(&hosts.deploy_path(1).join(".zdd/artifacts"))
                .iter()
                .all(|n| !n.contains(".tmp."))
    });
    assert!(
        clean,
        "left: {:?} {:?}",
        sandbox.releases(&hosts.deploy_rel(1)),
        names(&hosts.deploy_path(1).join(".zdd/artifacts"))
    );
}

/// Ctrl-C while a big archive is on its way stops sending it: what goes up after the signal
/// is bounded (the pieces already written), not the rest of the archive.
#[test]
fn ctrl_c_during_the_transfer_stops_sending() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    let relay = Relay::start(hosts.port(1));
    sandbox.write("app.rhai", &recipe(&repo, &through(&hosts, &relay), ""));
    deploy(&sandbox, &[]).success();
    repo.commit(&[("noise.txt", &noise(12_000_000))], "v2");
    let before = relay.up();
    relay.pause_at(before + 1_500_000);
    let child = sandbox
        .zdd(&["run", "app.rhai"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(relay.wait_paused(Duration::from_secs(60)));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    relay.resume();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    // 12 MB of archive is 16 MB of base64: far less went up.
    let sent = relay.up() - before;
    assert!(sent < 6_000_000, "{sent} bytes sent after Ctrl-C");
}

/// With `keep_releases = 2`: after four build-once deploys, a rollback and one more deploy,
/// each host keeps exactly the archives of the releases it keeps (the live one and the one a
/// rollback would pick), and `zdd rollback` serves the previous build.
#[test]
fn cleanup_keeps_the_archives_of_the_releases_kept_and_rollback_works() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    sandbox.write(
        "app.rhai",
        &recipe(&repo, &hosts.recipe_hosts(), "set(\"keep_releases\", 2);"),
    );
    let artifacts = hosts.deploy_path(1).join(".zdd/artifacts");
    // The archives the releases on the host were unpacked from, as `zdd releases` says.
    let expected = |sandbox: &Sandbox| -> Vec<String> {
        let run = sandbox.run(&["releases", "app.rhai", "--json"]);
        run.success();
        let mut kept: Vec<String> = run
            .json_lines()
            .into_iter()
            .filter_map(|line| line["artifact"].as_str().map(str::to_string))
            .flat_map(|hash| [".links", ".manifest", ".tar.gz"].map(|kind| format!("{hash}{kind}")))
            .collect();
        kept.sort();
        kept.dedup();
        kept
    };
    for version in 1..=4 {
        repo.commit(
            &[("public/index.php", &format!("<?php echo 'v{version}';\n"))],
            &format!("v{version}"),
        );
        deploy(&sandbox, &[]).success();
        std::thread::sleep(Duration::from_millis(1100));
    }
    assert_eq!(sandbox.releases(&hosts.deploy_rel(1)).len(), 2);
    assert_eq!(names(&artifacts), expected(&sandbox));
    assert_eq!(names(&artifacts).len(), 6);
    sandbox.run(&["rollback", "app.rhai"]).success();
    let index =
        || std::fs::read_to_string(hosts.deploy_path(1).join("current/public/index.php")).unwrap();
    assert_eq!(index(), "<?php echo 'v3';\n");
    repo.commit(&[("public/index.php", "<?php echo 'v5';\n")], "v5");
    deploy(&sandbox, &[]).success();
    assert_eq!(index(), "<?php echo 'v5';\n");
    assert_eq!(names(&artifacts), expected(&sandbox));
    assert_eq!(names(&artifacts).len(), 6);
}

/// `build_on` naming a host that cannot be reached: the run fails naming it, and no host
/// deployed to is touched.
#[test]
fn an_unreachable_build_host_stops_before_any_host_is_touched() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&hosts);
    let repo = repository(&sandbox);
    let builder = format!(
        "host(\"builder\").set(\"hostname\", \"127.0.0.1\").set(\"port\", {}).set(\"remote_user\", \"root\").set(\"deploy_path\", {});\nset(\"build_on\", \"builder\");\n",
        crate::ssh_support::free_port(),
        rhai_string(&sandbox.str("builder")),
    );
    sandbox.write(
        "app.rhai",
        &recipe(&repo, &format!("{}{builder}", hosts.recipe_hosts()), ""),
    );
    let started = Instant::now();
    let run = deploy(&sandbox, &["--hosts", "web1"]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("the build host `builder`: cannot reach host `builder`"),
        "{}",
        run.stderr
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    untouched(&hosts, 1, &run.stderr);
}

/// `vendor_reuse` (hard links, the default) when the previous release's `vendor/` is on
/// another filesystem (a mount): hard links cannot cross it, so the tree is copied whole
/// (and said so), the deploy goes through, and the new `vendor/` shares nothing with the old.
#[test]
fn vendor_reuse_from_another_filesystem_copies_the_tree() {
    use std::os::unix::fs::MetadataExt;

    let sandbox = Sandbox::new();
    let fixture = crate::laravel_support::fixture_repo(&sandbox, "repo");
    crate::laravel_support::shared_env(&sandbox, "app");
    let laravel = format!("{}/recipes/laravel.rhai", env!("CARGO_MANIFEST_DIR"));
    let run = || {
        let repository = format!("repository={}", fixture.str());
        let deploy_path = format!("deploy_path={}", sandbox.str("app"));
        let mut args = vec!["run", laravel.as_str()];
        for option in [
            repository.as_str(),
            deploy_path.as_str(),
            "fpm_reload=none",
            "health_url=",
            "audit=false",
        ] {
            args.extend(["-o", option]);
        }
        sandbox.run(&args)
    };
    run().success();
    let first = sandbox.releases("app").pop().unwrap();
    let vendor = sandbox.path(&format!("app/releases/{first}/vendor"));
    let aside = sandbox.path("vendor-aside");
    std::fs::rename(&vendor, &aside).unwrap();
    let _mount = MountGuard::tmpfs(&vendor, "64m");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(aside.join("."))
        .arg(&vendor)
        .status()
        .unwrap();
    assert!(copied.success());
    fixture.version("second", &[("second.txt", "2\n")]);
    let second = run();
    second.success();
    assert!(
        second.stderr.contains(&format!(
            "composer: vendor/ from releases/{first} (copied: no hard links possible there)"
        )),
        "{}",
        second.stderr
    );
    let newest = sandbox.releases("app").pop().unwrap();
    let new_vendor = sandbox.path(&format!("app/releases/{newest}/vendor"));
    assert!(new_vendor.join("autoload.php").is_file());
    assert!(!new_vendor.join("../.zdd-reuse-vendor").exists());
    let device = |path: &Path| std::fs::metadata(path).unwrap().dev();
    assert_ne!(device(&new_vendor), device(&vendor));
}

/// `build()` naming a task the recipe does not declare: a recipe error at its line, exit 2,
/// before anything is built or any host reached.
#[test]
fn build_naming_an_unknown_task_is_a_recipe_error() {
    let sandbox = Sandbox::new();
    let repo = repository(&sandbox);
    let host = format!(
        "localhost().set(\"deploy_path\", {});\n",
        rhai_string(&sandbox.str("app"))
    );
    sandbox.write("app.rhai", &recipe(&repo, &host, "build(\"app:nope\");"));
    let run = deploy(&sandbox, &[]);
    run.expect(2);
    assert!(
        run.stderr
            .contains("`build` names task `app:nope`, which is not defined yet"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("app.rhai:6:1"), "{}", run.stderr);
    assert!(!sandbox.path("app").exists());
    assert!(!sandbox.path(".cache/zdd/artifacts").exists());
}
