//! The deploy paths of `adoption_support` are what the other tools leave (issue 14): each test
//! builds one and checks names, `current`, and the tool's own files, so the adoption tests
//! stand on real layouts. Capistrano and Mina are the real tools over a loopback sshd.

use std::path::Path;

use crate::adoption_support::{self, Adopted, DEPLOYER_USER};
use crate::ssh_support::SshHosts;
use crate::support::Sandbox;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn link(path: &Path) -> String {
    std::fs::read_link(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .display()
        .to_string()
}

fn all_digits(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| b.is_ascii_digit())
}

/// Every release holds its own commit and VERSION (1..=N in order).
#[track_caller]
fn releases_hold_their_commits(adopted: &Adopted, revision_file: &str) {
    assert_eq!(adopted.releases.len(), adopted.commits.len());
    for (n, (name, commit)) in adopted.releases.iter().zip(&adopted.commits).enumerate() {
        let dir = adopted.deploy_path.join("releases").join(name);
        assert_eq!(read(&dir.join("VERSION")), format!("{}\n", n + 1), "{name}");
        assert_eq!(read(&dir.join(revision_file)).trim(), commit, "{name}");
        assert_eq!(commit, &adopted.source.commits[n], "{name}");
    }
}

#[test]
fn capistrano_deploys_three_timestamped_releases_and_rolls_back_by_mtime() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start_with(&sandbox, 1, &adoption_support::ruby_login());
    let mut adopted = adoption_support::capistrano(&sandbox, &hosts, 1, 3);
    let deploy = adopted.deploy_path.clone();

    assert_eq!(adopted.releases.len(), 3);
    assert!(adopted.releases.iter().all(|n| all_digits(n, 14)));
    releases_hold_their_commits(&adopted, "REVISION");
    // current -> the absolute release path.
    let newest = adopted.releases[2].clone();
    assert_eq!(
        link(&deploy.join("current")),
        deploy.join("releases").join(&newest).display().to_string()
    );
    assert_eq!(adopted.live_version(), "3");
    // revisions.log: one line per deploy, naming the release and the commit.
    let log = read(&deploy.join("revisions.log"));
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 3, "{log}");
    for (line, (name, commit)) in lines
        .iter()
        .zip(adopted.releases.iter().zip(&adopted.commits))
    {
        assert!(line.starts_with("Branch main (at "), "{line}");
        assert!(line.contains(&format!("(at {commit})")), "{line}");
        assert!(
            line.contains(&format!("deployed as release {name} by ")),
            "{line}"
        );
    }
    assert!(deploy.join("repo/HEAD").is_file(), "the mirror");
    assert!(deploy.join("shared").is_dir());

    // Capistrano's own rollback: the second newest by mtime; the newest is archived and removed.
    let output = adopted.tool_rollback();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(adopted.live.as_deref(), Some(adopted.releases[1].as_str()));
    assert_eq!(adopted.live_version(), "2");
    assert!(!deploy.join("releases").join(&newest).exists());
    assert!(deploy
        .join(format!("rolled-back-release-{newest}.tar.gz"))
        .is_file());
    let log = read(&deploy.join("revisions.log"));
    assert!(
        log.lines().last().unwrap().ends_with(&format!(
            "tester rolled back to release {}",
            adopted.releases[1]
        )),
        "{log}"
    );

    // One more deploy with Capistrano.
    adopted.add_release();
    assert_eq!(adopted.releases.len(), 3);
    assert_eq!(adopted.live_version(), "4");
}

#[test]
fn mina_deploys_numbered_releases_with_last_version_and_rolls_back_by_name() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let mut adopted = adoption_support::mina(&sandbox, &hosts, 1, 3);
    let deploy = adopted.deploy_path.clone();

    assert_eq!(adopted.releases, ["1", "2", "3"]);
    releases_hold_their_commits(&adopted, ".mina_git_revision");
    assert_eq!(read(&deploy.join("last_version")), "3\n");
    assert_eq!(adopted.current_link.as_deref(), Some("releases/3"));
    assert_eq!(adopted.live_version(), "3");
    assert!(deploy.join("scm/HEAD").is_file(), "the bare clone");
    assert!(!deploy.join("deploy.lock").exists());

    // Mina's rollback: the second by `sort` (by name); the last by name is deleted.
    let output = adopted.tool_rollback();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        adopted.current_link.as_deref(),
        Some(&*format!("{}/releases/2", deploy.display()))
    );
    assert_eq!(adopted.releases, ["1", "2"]);
    assert_eq!(read(&deploy.join("last_version")), "3\n", "not rewound");

    // The next Mina deploy is number 4 (last_version + 1).
    adopted.add_release();
    assert_eq!(adopted.releases, ["1", "2", "4"]);
    assert_eq!(adopted.current_link.as_deref(), Some("releases/4"));
    assert_eq!(adopted.live_version(), "4");
}

#[test]
fn deployer_layout_has_its_log_latest_release_and_relative_current() {
    let sandbox = Sandbox::new();
    let deploy = sandbox.path("app");
    let mut adopted = adoption_support::deployer(&sandbox, &deploy, 3);

    assert_eq!(adopted.releases, ["1", "2", "3"]);
    releases_hold_their_commits(&adopted, "REVISION");
    assert_eq!(read(&deploy.join(".dep/latest_release")), "3\n");
    assert_eq!(adopted.current_link.as_deref(), Some("releases/3"));
    assert!(!deploy.join("release").exists() && deploy.join("release").symlink_metadata().is_err());
    assert!(!deploy.join(".dep/deploy.lock").exists());
    assert!(deploy.join(".dep/repo/HEAD").is_file());
    let log = read(&deploy.join(".dep/releases_log"));
    for (n, line) in log.lines().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "{line}");
        assert_eq!(value["release_name"], format!("{}", n + 1));
        assert_eq!(value["user"], DEPLOYER_USER);
        assert_eq!(value["target"], "main");
        let created = value["created_at"].as_str().unwrap();
        assert!(
            created.ends_with("+0000") && created.len() == 24,
            "{created}"
        );
        assert!(
            line.starts_with("{\"created_at\":"),
            "key order of json_encode: {line}"
        );
    }

    // Deployer's rollback: the previous in its log; the one left is marked BAD_RELEASE.
    let output = adopted.tool_rollback();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(adopted.current_link.as_deref(), Some("releases/2"));
    let bad = read(&deploy.join("releases/3/BAD_RELEASE"));
    assert!(
        bad.trim_end().ends_with(&format!(",{DEPLOYER_USER}")),
        "{bad}"
    );
    // Again: 1 (3 is bad and newer).
    adopted.tool_rollback();
    assert_eq!(adopted.current_link.as_deref(), Some("releases/1"));

    adopted.add_release();
    assert_eq!(adopted.releases, ["1", "2", "3", "4"]);
    assert_eq!(adopted.current_link.as_deref(), Some("releases/4"));
}

#[test]
fn deployer_failed_deploy_leaves_the_release_link_and_its_lock() {
    let sandbox = Sandbox::new();
    let deploy = sandbox.path("app");
    let adopted = adoption_support::deployer_failed(&sandbox, &deploy, 3);

    assert_eq!(adopted.releases, ["1", "2", "3", "4"]);
    assert_eq!(link(&deploy.join("release")), "releases/4");
    assert_eq!(adopted.current_link.as_deref(), Some("releases/3"));
    assert_eq!(adopted.live_version(), "3");
    assert_eq!(read(&deploy.join(".dep/latest_release")), "4\n");
    assert_eq!(read(&deploy.join(".dep/releases_log")).lines().count(), 4);
    assert_eq!(
        read(&deploy.join(".dep/deploy.lock")),
        format!("{DEPLOYER_USER}\n")
    );
    releases_hold_their_commits(&adopted, "REVISION");
}

#[test]
fn ansistrano_layout_has_z_names_dot_relative_current_and_revision_without_newline() {
    let sandbox = Sandbox::new();
    let deploy = sandbox.path("app");
    let mut adopted = adoption_support::ansistrano(&sandbox, &deploy, 3);

    assert_eq!(adopted.releases.len(), 3);
    for name in &adopted.releases {
        assert!(
            all_digits(&name[..14], 14) && name.ends_with('Z') && name.len() == 15,
            "{name}"
        );
    }
    releases_hold_their_commits(&adopted, "REVISION");
    let newest = adopted.releases[2].clone();
    assert_eq!(
        adopted.current_link.as_deref(),
        Some(&*format!("./releases/{newest}"))
    );
    assert!(!read(&deploy.join("releases").join(&newest).join("REVISION")).ends_with('\n'));
    assert!(deploy.join("repo/.git").is_dir());

    // Ansistrano's rollback: by mtime; the newest is removed.
    let output = adopted.tool_rollback();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(adopted.releases.len(), 2);
    assert!(!deploy.join("releases").join(&newest).exists());
    assert_eq!(adopted.live_version(), "2");
}

#[test]
fn envoyer_and_script_layouts_name_releases_by_time() {
    let sandbox = Sandbox::new();
    let envoyer = adoption_support::envoyer(&sandbox, &sandbox.path("envoyer"), 3);
    assert_eq!(envoyer.releases.len(), 3);
    assert!(envoyer.releases.iter().all(|n| all_digits(n, 14)));
    releases_hold_their_commits(&envoyer, "REVISION");
    assert_eq!(
        envoyer.current_link.as_deref(),
        Some(&*sandbox.str(&format!("envoyer/releases/{}", envoyer.releases[2])))
    );
    assert_eq!(envoyer.live_version(), "3");

    let sandbox = Sandbox::new();
    let mut script = adoption_support::script(&sandbox, &sandbox.path("app"), 3);
    assert_eq!(script.releases.len(), 3);
    assert!(script
        .releases
        .iter()
        .all(|n| crate::support::is_release(n)));
    releases_hold_their_commits(&script, "REVISION");
    assert_eq!(
        script.current_link.as_deref(),
        Some(&*format!("releases/{}", script.releases[2]))
    );
    script.add_release();
    assert_eq!(script.releases.len(), 4);
    assert_eq!(script.live_version(), "4");
}

#[test]
fn in_place_and_outside_layouts() {
    let sandbox = Sandbox::new();
    let deploy = sandbox.path("inplace/app");
    let adopted = adoption_support::in_place(&sandbox, &deploy, 3);
    let meta = std::fs::symlink_metadata(deploy.join("current")).unwrap();
    assert!(meta.is_dir() && !meta.file_type().is_symlink());
    assert!(deploy.join("current/.git").is_dir());
    assert!(!deploy.join("releases").exists());
    assert_eq!(adopted.live, None);
    assert_eq!(adopted.live_version(), "3");
    assert_eq!(adopted.commits.len(), 3);

    let deploy = sandbox.path("outside/app");
    let mut adopted = adoption_support::outside(&sandbox, &deploy, 3);
    assert_eq!(
        adopted.current_link.as_deref(),
        Some(&*sandbox.str("outside/app-v3"))
    );
    assert!(!deploy.join("releases").exists());
    assert_eq!(adopted.live_version(), "3");
    adopted.add_release();
    assert_eq!(adopted.live.as_deref(), Some("app-v4"));
}
