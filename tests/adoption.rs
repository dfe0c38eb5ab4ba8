//! zdd on deploy paths other tools made (issue 14): for each layout of `adoption_support`
//! (Capistrano and Mina real, over a loopback sshd; Deployer, Ansistrano, Envoyer, a script,
//! an in-place directory and a link elsewhere laid out as their sources do), zdd deploys,
//! rolls back to the release the other tool had live (exactly the `current` it had), deploys
//! seven times (cleanup keeps `keep_releases` across both tools and what another tool's
//! pointer names), and the old tool's own rollback still works where it can.

use crate::adoption_support::{self, version, Adopted, Layout};
use crate::ssh_support::SshHosts;
use crate::support::Sandbox;

const KEEP: usize = 3;

/// Where zdd reaches the deploy path.
enum Via<'a> {
    Local,
    Ssh(&'a SshHosts),
}

fn write_recipe(sandbox: &Sandbox, adopted: &Adopted, via: &Via) {
    let host = match via {
        Via::Local => "localhost();".to_string(),
        Via::Ssh(hosts) => format!("{};", hosts.recipe_host(1)),
    };
    sandbox.write(
        "app.rhai",
        &adoption_support::zdd_recipe(adopted, &host, KEEP, ""),
    );
}

fn names(adopted: &Adopted) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(adopted.deploy_path.join("releases"))
        .map(|dir| {
            dir.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn is_zdd_name(name: &str) -> bool {
    name.len() == 16 && name.as_bytes()[8] == b'T' && name.ends_with('Z')
}

/// What `current` is: its exact link text, or `dir:VERSION` for a directory.
fn current_is(adopted: &Adopted) -> String {
    let current = adopted.current();
    match std::fs::read_link(&current) {
        Ok(target) => target.display().to_string(),
        Err(_) => format!("dir:{}", version(&current)),
    }
}

/// The whole story on one deploy path; `tool_rollback` says whether the tool has one that
/// still works after zdd.
fn adopt(sandbox: &Sandbox, adopted: &mut Adopted, via: Via, tool_name: &str) {
    write_recipe(sandbox, adopted, &via);
    let live_before = current_is(adopted);
    let version_before = version(&adopted.current());
    let theirs: Vec<String> = names(adopted);

    // `zdd releases` shows what is there, made by whom, and which is live.
    let listed = sandbox.run(&["releases", "app.rhai"]);
    listed.expect(0);
    if !theirs.is_empty() {
        assert!(listed.stdout.contains("MADE BY"), "{}", listed.stdout);
        assert!(listed.stdout.contains(tool_name), "{}", listed.stdout);
        if let Some(live) = &adopted.live {
            assert!(
                listed.stdout.contains(&format!("* {live}")),
                "{}",
                listed.stdout
            );
        }
    }

    // The first zdd deploy.
    let (first, _) = adopted.source.next();
    sandbox.run(&["run", "app.rhai", "-q"]).expect(0);
    assert_eq!(version(&adopted.current()), first.to_string());
    let link = std::fs::read_link(adopted.current()).expect("current is a link now");
    let zdd_release = link.file_name().unwrap().to_string_lossy().into_owned();
    assert!(is_zdd_name(&zdd_release), "{}", link.display());
    // Cleanup counts both tools' releases: the live one (the rollback target) stays.
    if let Some(live) = adopted.live.clone().filter(|l| theirs.contains(l)) {
        assert!(
            adopted.deploy_path.join("releases").join(&live).is_dir(),
            "the first deploy removed releases/{live}, the other tool's live release"
        );
    }

    // A rollback lands on the release the other tool had live: exactly that `current`
    // (the same link text, or the directory itself), for releases in `releases/` the same
    // release.
    sandbox.run(&["rollback", "app.rhai", "-q"]).expect(0);
    assert_eq!(version(&adopted.current()), version_before);
    let after = current_is(adopted);
    match adopted.layout {
        Layout::InPlace | Layout::Outside => assert_eq!(after, live_before),
        _ => {
            let live = adopted.live.clone().unwrap();
            assert!(
                after
                    .trim_end_matches('/')
                    .ends_with(&format!("releases/{live}")),
                "{after} is not releases/{live}"
            );
        }
    }

    // Seven deploys: cleanup keeps KEEP good releases across both tools (zdd's newest here),
    // and never what another tool's pointer names.
    let mut made = Vec::new();
    for _ in 0..7 {
        let (number, _) = adopted.source.next();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        sandbox.run(&["run", "app.rhai", "-q"]).expect(0);
        assert_eq!(version(&adopted.current()), number.to_string());
        let link = std::fs::read_link(adopted.current()).unwrap();
        made.push(link.file_name().unwrap().to_string_lossy().into_owned());
    }
    let left = names(adopted);
    let zdd_left: Vec<&String> = left.iter().filter(|n| is_zdd_name(n)).collect();
    let newest: Vec<&String> = made.iter().rev().take(KEEP).collect();
    for name in &newest {
        assert!(left.contains(name), "cleanup removed {name}: {left:?}");
    }
    assert_eq!(zdd_left.len(), KEEP, "{left:?}");
    let pointed: Vec<String> = pointers(adopted);
    for name in &pointed {
        assert!(
            left.contains(name),
            "cleanup removed releases/{name}, which another tool's pointer names: {left:?}"
        );
    }
    let foreign_left: Vec<&String> = left
        .iter()
        .filter(|n| !is_zdd_name(n) && !pointed.contains(n))
        .collect();
    // Only KEEP good releases are kept: the other tool's (but what its pointers name) went.
    if adopted.layout != Layout::Script {
        assert!(foreign_left.is_empty(), "{left:?} (pointers {pointed:?})");
    }
}

/// The releases other tools' pointers name (Deployer's `release` link and
/// `.dep/latest_release`, Mina's `last_version`).
fn pointers(adopted: &Adopted) -> Vec<String> {
    let mut names = Vec::new();
    let path = &adopted.deploy_path;
    if let Ok(link) = std::fs::read_link(path.join("release")) {
        names.push(link.file_name().unwrap().to_string_lossy().into_owned());
    }
    for file in [".dep/latest_release", "last_version"] {
        if let Ok(text) = std::fs::read_to_string(path.join(file)) {
            names.push(text.trim().to_string());
        }
    }
    names
}

#[test]
fn a_deployer_path_is_adopted() {
    let sandbox = Sandbox::new();
    let mut adopted = adoption_support::deployer(&sandbox, &sandbox.path("app"), 3);
    adopt(&sandbox, &mut adopted, Via::Local, "deployer");
    // Deployer's own rollback picks from its log, which knows none of zdd's releases: it
    // refuses and changes nothing (zdd writes nothing into another tool's files); zdd's
    // rollback is the one that works here.
    let before = current_is(&adopted);
    let output = adopted.tool_rollback();
    assert!(!output.status.success(), "{output:?}");
    assert_eq!(current_is(&adopted), before);
    sandbox.run(&["rollback", "app.rhai", "-q"]).expect(0);
    assert!(adopted.current().join("VERSION").is_file());
    sandbox.run(&["run", "app.rhai", "-q"]).expect(0);
}

#[test]
fn a_failed_deployer_deploy_keeps_its_release_link() {
    let sandbox = Sandbox::new();
    let mut adopted = adoption_support::deployer_failed(&sandbox, &sandbox.path("app"), 3);
    let pointed = std::fs::read_link(sandbox.path("app/release")).unwrap();
    write_recipe(&sandbox, &adopted, &Via::Local);
    let doctor = sandbox.run(&["doctor", "app.rhai"]);
    assert!(
        doctor.stdout.contains("Deployer's `release` link names"),
        "{}",
        doctor.stdout
    );
    adopt(&sandbox, &mut adopted, Via::Local, "deployer");
    assert!(sandbox.path("app").join(&pointed).is_dir());
}

#[test]
fn an_ansistrano_path_is_adopted() {
    let sandbox = Sandbox::new();
    let mut adopted = adoption_support::ansistrano(&sandbox, &sandbox.path("app"), 3);
    adopt(&sandbox, &mut adopted, Via::Local, "ansistrano");
}

#[test]
fn an_envoyer_style_path_is_adopted() {
    let sandbox = Sandbox::new();
    let mut adopted = adoption_support::envoyer(&sandbox, &sandbox.path("app"), 3);
    adopt(&sandbox, &mut adopted, Via::Local, "timestamped");
}

#[test]
fn a_script_with_zdds_names_is_adopted() {
    let sandbox = Sandbox::new();
    let mut adopted = adoption_support::script(&sandbox, &sandbox.path("app"), 3);
    adopt(&sandbox, &mut adopted, Via::Local, "zdd-named");
}

#[test]
fn an_in_place_directory_is_adopted_atomically_and_put_back_exactly() {
    let sandbox = Sandbox::new();
    let mut adopted = adoption_support::in_place(&sandbox, &sandbox.path("app"), 2);
    write_recipe(&sandbox, &adopted, &Via::Local);
    let doctor = sandbox.run(&["doctor", "app.rhai"]);
    assert!(
        doctor
            .stdout
            .contains("`current` is a directory (an in-place deploy)"),
        "{}",
        doctor.stdout
    );
    adopt(&sandbox, &mut adopted, Via::Local, "before zdd");
}

#[test]
fn a_failed_first_deploy_puts_the_in_place_directory_back() {
    let sandbox = Sandbox::new();
    let mut adopted = adoption_support::in_place(&sandbox, &sandbox.path("app"), 2);
    write_recipe(&sandbox, &adopted, &Via::Local);
    let tree = sandbox.tree("app/current", &[]);
    let mut recipe = std::fs::read_to_string(sandbox.path("app.rhai")).unwrap();
    recipe.push_str("after(\"deploy:symlink\", || { throw \"the health check failed\"; });\n");
    sandbox.write("app.rhai", &recipe);
    adopted.source.next();
    let run = sandbox.run(&["run", "app.rhai", "-q"]);
    run.expect(1);
    let current = sandbox.path("app/current");
    assert!(
        std::fs::symlink_metadata(&current).unwrap().is_dir(),
        "current is a directory again"
    );
    crate::support::assert_same_tree(&tree, &sandbox.tree("app/current", &[]), "current");
    assert!(!sandbox
        .path("app/.zdd/adopted")
        .read_dir()
        .unwrap()
        .any(|_| true));
}

#[test]
fn a_link_outside_releases_is_adopted_and_put_back_exactly() {
    let sandbox = Sandbox::new();
    let mut adopted = adoption_support::outside(&sandbox, &sandbox.path("app"), 2);
    adopt(&sandbox, &mut adopted, Via::Local, "before zdd");
}

#[test]
fn a_capistrano_path_is_adopted_and_caps_rollback_still_works() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start_with(&sandbox, 1, &adoption_support::ruby_login());
    let mut adopted = adoption_support::capistrano(&sandbox, &hosts, 1, 3);
    adopt(&sandbox, &mut adopted, Via::Ssh(&hosts), "capistrano");
    // Capistrano deploys again after zdd, then rolls back by its own rules: zdd then
    // deploys over whatever it left.
    adopted.add_release();
    let output = adopted.tool_rollback();
    assert!(output.status.success(), "{output:?}");
    assert!(adopted.current().join("VERSION").is_file());
    let (number, _) = adopted.source.next();
    sandbox.run(&["run", "app.rhai", "-q"]).expect(0);
    assert_eq!(version(&adopted.current()), number.to_string());
}

#[test]
fn a_mina_path_is_adopted_and_minas_rollback_still_works() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 1);
    let mut adopted = adoption_support::mina(&sandbox, &hosts, 1, 3);
    adopt(&sandbox, &mut adopted, Via::Ssh(&hosts), "mina");
    let output = adopted.tool_rollback();
    assert!(output.status.success(), "{output:?}");
    assert!(adopted.current().join("VERSION").is_file());
    let (number, _) = adopted.source.next();
    sandbox.run(&["run", "app.rhai", "-q"]).expect(0);
    assert_eq!(version(&adopted.current()), number.to_string());
}

#[test]
fn a_rollback_to_an_outside_link_that_is_gone_is_refused_and_current_kept() {
    let sandbox = Sandbox::new();
    let mut adopted = adoption_support::outside(&sandbox, &sandbox.path("app"), 2);
    write_recipe(&sandbox, &adopted, &Via::Local);
    let old = std::fs::read_link(adopted.current()).unwrap();
    adopted.source.next();
    sandbox.run(&["run", "app.rhai", "-q"]).expect(0);
    let live = std::fs::read_link(adopted.current()).unwrap();
    std::fs::remove_dir_all(&old).unwrap();
    let run = sandbox.run(&["rollback", "app.rhai", "-q"]);
    run.expect(1);
    assert!(
        run.stderr.contains("which is no longer a directory"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_link(adopted.current()).unwrap(), live);
}
