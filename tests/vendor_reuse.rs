//! `vendor_reuse`: the shipped Laravel recipe's `composer install` starts from the previous
//! release's `vendor/` (hard links for the packages, copies for what composer rewrites), and
//! its `npm ci` reuses the previous `node_modules/` when nothing it depends on changed. Real
//! composer (offline: the fixture requires packages from a local `path` repository) and real
//! npm (a dependency from a tarball in the repository); over SSH too.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::laravel_support::{fixture_repo, shared_env, FixtureRepo};
use crate::ssh_support::SshHosts;
use crate::support::{Run, Sandbox};

const DEPLOY: &str = "app";
const GREETER: &str = "vendor/zdd/hello/src/Greeter.php";

/// `zdd run recipes/laravel.rhai` deploying `main` of `fixture` to `DEPLOY`, without php-fpm,
/// health check or audit (nothing here needs them), with `extra` `-o` options.
fn deploy(sandbox: &Sandbox, fixture: &FixtureRepo, extra: &[&str]) -> Run {
    let recipe = format!("{}/recipes/laravel.rhai", env!("CARGO_MANIFEST_DIR"));
    deploy_with(sandbox, &recipe, fixture, extra)
}

fn deploy_with(sandbox: &Sandbox, recipe: &str, fixture: &FixtureRepo, extra: &[&str]) -> Run {
    let repository = format!("repository={}", fixture.str());
    let deploy_path = format!("deploy_path={}", sandbox.str(DEPLOY));
    let mut args = vec!["run", recipe];
    for option in [
        repository.as_str(),
        deploy_path.as_str(),
        "fpm_reload=none",
        "health_url=",
        "audit=false",
    ]
    .iter()
    .chain(extra)
    {
        args.extend(["-o", option]);
    }
    sandbox.run(&args)
}

/// The newest release of `DEPLOY` (names sort in deploy order).
fn newest(sandbox: &Sandbox) -> String {
    sandbox.releases(DEPLOY).pop().expect("a release")
}

fn release(sandbox: &Sandbox, name: &str) -> PathBuf {
    sandbox.path(&format!("{DEPLOY}/releases/{name}"))
}

fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .ino()
}

/// Writes the composer package `zdd/NAME` at `VERSION` into `pkgs/NAME` of the sandbox (its
/// one class says its version).
fn package(sandbox: &Sandbox, name: &str, version: &str) {
    sandbox.write(
        &format!("pkgs/{name}/composer.json"),
        &format!(
            "{{\"name\": \"zdd/{name}\", \"version\": \"{version}\", \
             \"autoload\": {{\"psr-4\": {{\"Zdd\\\\{name}\\\\\": \"src/\"}}}}}}\n"
        ),
    );
    sandbox.write(
        &format!("pkgs/{name}/src/Greeter.php"),
        &format!("<?php\n\nnamespace Zdd\\{name};\n\nclass Greeter\n{{\n    const VERSION = '{version}';\n}}\n"),
    );
}

/// `composer ARGS` in `dir`, offline, with the sandbox as HOME; panics with its output.
fn composer(sandbox: &Sandbox, dir: &Path, args: &[&str]) {
    let output = Command::new("composer")
        .args(args)
        .args(["--no-interaction", "--no-scripts"])
        .current_dir(dir)
        .env("HOME", sandbox.root())
        .env("COMPOSER_HOME", sandbox.path(".composer"))
        .env("COMPOSER_ALLOW_SUPERUSER", "1")
        .stdin(Stdio::null())
        .output()
        .expect("composer runs");
    assert!(
        output.status.success(),
        "composer {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The fixture requiring `zdd/hello` 1.0.0 from the path repository `pkgs/*` (packagist off),
/// its lock committed.
fn fixture_with_hello(sandbox: &Sandbox) -> FixtureRepo {
    let fixture = fixture_repo(sandbox, "repo");
    shared_env(sandbox, DEPLOY);
    package(sandbox, "hello", "1.0.0");
    let file = fixture.path().join("composer.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    json["require"] = serde_json::json!({ "zdd/hello": "*" });
    json["repositories"] = serde_json::json!([
        { "type": "path", "url": sandbox.str("pkgs/*"), "options": { "symlink": false } },
        { "packagist.org": false },
    ]);
    std::fs::write(&file, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    composer(sandbox, fixture.path(), &["update", "--no-install"]);
    fixture.version("hello-1", &[]);
    fixture
}

/// `zdd/hello` 2.0.0 in the path repository and in the fixture's lock (committed).
fn hello_2(sandbox: &Sandbox, fixture: &FixtureRepo) {
    package(sandbox, "hello", "2.0.0");
    composer(
        sandbox,
        fixture.path(),
        &["update", "zdd/hello", "--no-install"],
    );
    fixture.version("hello-2", &[]);
}

#[test]
fn composer_install_starts_from_the_previous_vendor_and_never_changes_it() {
    let sandbox = Sandbox::new();
    let fixture = fixture_with_hello(&sandbox);

    // The first deploy has no previous release: composer installs from scratch.
    let run = deploy(&sandbox, &fixture, &[]);
    run.success();
    assert!(!run.stderr.contains("composer: vendor/"), "{}", run.stderr);
    let first = newest(&sandbox);

    fixture.version("second", &[("second.txt", "2\n")]);
    let run = deploy(&sandbox, &fixture, &[]);
    run.success();
    let second = newest(&sandbox);
    assert!(
        run.stderr.contains(&format!(
            "[localhost] composer: vendor/ from releases/{first} (hard links)\n"
        )),
        "{}",
        run.stderr
    );
    let (a, b) = (release(&sandbox, &first), release(&sandbox, &second));
    // The package's files are the first release's; what composer rewrites is the release's own.
    assert_eq!(inode(&a.join(GREETER)), inode(&b.join(GREETER)));
    for rewritten in ["vendor/autoload.php", "vendor/composer/installed.json"] {
        assert_ne!(
            inode(&a.join(rewritten)),
            inode(&b.join(rewritten)),
            "{rewritten}"
        );
    }
    assert!(!b.join(".zdd-reuse-vendor").exists());
    // Writing the new release's autoloader leaves the previous release's as it was.
    let autoloader = "vendor/composer/autoload_real.php";
    let before = std::fs::read(a.join(autoloader)).unwrap();
    let mut changed = std::fs::read(b.join(autoloader)).unwrap();
    changed.extend_from_slice(b"\n// changed in the new release\n");
    std::fs::write(b.join(autoloader), &changed).unwrap();
    assert_eq!(std::fs::read(a.join(autoloader)).unwrap(), before);

    // A new version of the package: the new release has it, the previous keeps the old one.
    hello_2(&sandbox, &fixture);
    let run = deploy(&sandbox, &fixture, &[]);
    run.success();
    let third = newest(&sandbox);
    assert!(
        run.stderr.contains(&format!(
            "[localhost] composer: vendor/ from releases/{second} (hard links)\n"
        )),
        "{}",
        run.stderr
    );
    let c = release(&sandbox, &third);
    let greeter = |dir: &Path| std::fs::read_to_string(dir.join(GREETER)).unwrap();
    assert!(greeter(&c).contains("'2.0.0'"), "{}", greeter(&c));
    assert!(greeter(&b).contains("'1.0.0'"), "{}", greeter(&b));
    assert!(greeter(&a).contains("'1.0.0'"), "{}", greeter(&a));
}

#[test]
fn copy_shares_no_file_and_false_installs_from_scratch() {
    let sandbox = Sandbox::new();
    let fixture = fixture_with_hello(&sandbox);
    deploy(&sandbox, &fixture, &[]).success();
    let first = newest(&sandbox);

    fixture.version("second", &[]);
    let run = deploy(&sandbox, &fixture, &["vendor_reuse=copy"]);
    run.success();
    let second = newest(&sandbox);
    assert!(
        run.stderr.contains(&format!(
            "[localhost] composer: vendor/ from releases/{first} (copied)\n"
        )),
        "{}",
        run.stderr
    );
    let (a, b) = (release(&sandbox, &first), release(&sandbox, &second));
    assert_ne!(inode(&a.join(GREETER)), inode(&b.join(GREETER)));
    assert_eq!(
        std::fs::read(a.join(GREETER)).unwrap(),
        std::fs::read(b.join(GREETER)).unwrap()
    );

    fixture.version("third", &[]);
    let run = deploy(&sandbox, &fixture, &["vendor_reuse=false"]);
    run.success();
    assert!(!run.stderr.contains("composer: vendor/"), "{}", run.stderr);
    let c = release(&sandbox, &newest(&sandbox));
    assert!(c.join(GREETER).is_file());
    assert_ne!(inode(&b.join(GREETER)), inode(&c.join(GREETER)));
}

#[test]
fn a_previous_release_without_vendor_is_no_obstacle() {
    let sandbox = Sandbox::new();
    let fixture = fixture_with_hello(&sandbox);
    deploy(&sandbox, &fixture, &[]).success();
    // A release made without composer (its vendor/ elsewhere, or made by hand).
    let first = release(&sandbox, &newest(&sandbox));
    std::fs::remove_dir_all(first.join("vendor")).unwrap();

    fixture.version("second", &[]);
    let run = deploy(&sandbox, &fixture, &[]);
    run.success();
    assert!(!run.stderr.contains("composer: vendor/"), "{}", run.stderr);
    assert!(release(&sandbox, &newest(&sandbox)).join(GREETER).is_file());
}

#[test]
fn an_unknown_vendor_reuse_is_refused_before_anything_runs() {
    let sandbox = Sandbox::new();
    let fixture = fixture_with_hello(&sandbox);
    let run = deploy(&sandbox, &fixture, &["vendor_reuse=hardlinks"]);
    run.expect(2);
    assert!(
        run.stderr.contains("`vendor_reuse`") && run.stderr.contains("hardlinks"),
        "{}",
        run.stderr
    );
    assert!(sandbox.releases(DEPLOY).is_empty());
}

// ---------------------------------------------------------------------------------------------
// npm
// ---------------------------------------------------------------------------------------------

/// Writes the npm package `greet` at `version` as a tarball in the fixture
/// (`npm-packages/greet-VERSION.tgz`), and a `package.json` depending on it with a `build`
/// script that writes `public/greeting.txt`; then the lock, made offline by npm itself.
fn npm_app(sandbox: &Sandbox, fixture: &FixtureRepo, version: &str) {
    let staging = sandbox.path(&format!("npm-staging/{version}/package"));
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(
        staging.join("package.json"),
        format!("{{\"name\": \"greet\", \"version\": \"{version}\", \"main\": \"index.js\"}}\n"),
    )
    .unwrap();
    std::fs::write(
        staging.join("index.js"),
        format!("module.exports = 'greet {version}';\n"),
    )
    .unwrap();
    let packages = fixture.path().join("npm-packages");
    std::fs::create_dir_all(&packages).unwrap();
    let tarball = packages.join(format!("greet-{version}.tgz"));
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(staging.parent().unwrap())
        .arg("package")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(
        fixture.path().join("package.json"),
        format!(
            "{{\"name\": \"fixture\", \"private\": true, \
             \"dependencies\": {{\"greet\": \"file:npm-packages/greet-{version}.tgz\"}}, \
             \"scripts\": {{\"build\": \"node -e \\\"require('fs').writeFileSync('public/greeting.txt', require('greet'))\\\"\"}}}}\n"
        ),
    )
    .unwrap();
    let output = Command::new("npm")
        .args([
            "install",
            "--package-lock-only",
            "--offline",
            "--no-audit",
            "--no-fund",
        ])
        .current_dir(fixture.path())
        .env("HOME", sandbox.root())
        .stdin(Stdio::null())
        .output()
        .expect("npm runs");
    assert!(
        output.status.success(),
        "npm install --package-lock-only failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `bin/npm`: a stub that appends its arguments to `npm.log`, then runs the real npm
/// (offline, no audit).
fn npm_stub(sandbox: &Sandbox) -> String {
    let real = Command::new("sh")
        .args(["-c", "command -v npm"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    assert!(!real.is_empty(), "npm is not installed");
    let stub = sandbox.write(
        "bin/npm",
        &format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\n\
             export npm_config_audit=false npm_config_fund=false npm_config_offline=true \
             npm_config_update_notifier=false\nexec '{real}' \"$@\"\n",
            log = sandbox.str("npm.log"),
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    format!("bin/npm={}", stub.display())
}

/// The npm commands the stub saw since the last call (and forgets them).
fn npm_calls(sandbox: &Sandbox) -> Vec<String> {
    let log = sandbox.path("npm.log");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    text.lines().map(str::to_string).collect()
}

#[test]
fn npm_ci_is_skipped_when_the_lock_is_unchanged_and_runs_when_it_changed() {
    let sandbox = Sandbox::new();
    let fixture = fixture_with_hello(&sandbox);
    npm_app(&sandbox, &fixture, "1.0.0");
    fixture.version("npm-1", &[]);
    let stub = npm_stub(&sandbox);
    let module = "node_modules/greet/index.js";

    deploy(&sandbox, &fixture, &[&stub]).success();
    let first = newest(&sandbox);
    assert_eq!(npm_calls(&sandbox), ["ci --omit=dev", "run build"]);

    fixture.version("second", &[]);
    let run = deploy(&sandbox, &fixture, &[&stub]);
    run.success();
    let second = newest(&sandbox);
    assert_eq!(npm_calls(&sandbox), ["run build"]);
    assert!(
        run.stderr.contains(&format!(
            "[localhost] npm: node_modules/ from releases/{first} (hard links); \
             `npm ci` not run: package.json and its lock are unchanged\n"
        )),
        "{}",
        run.stderr
    );
    let (a, b) = (release(&sandbox, &first), release(&sandbox, &second));
    assert_eq!(inode(&a.join(module)), inode(&b.join(module)));
    assert_eq!(
        std::fs::read_to_string(b.join("public/greeting.txt")).unwrap(),
        "greet 1.0.0"
    );

    npm_app(&sandbox, &fixture, "1.1.0");
    fixture.version("npm-2", &[]);
    let run = deploy(&sandbox, &fixture, &[&stub]);
    run.success();
    let c = release(&sandbox, &newest(&sandbox));
    assert_eq!(npm_calls(&sandbox), ["ci --omit=dev", "run build"]);
    assert!(
        run.stderr.contains(&format!(
            "[localhost] npm: node_modules/ of releases/{second} not reused"
        )),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_to_string(c.join("public/greeting.txt")).unwrap(),
        "greet 1.1.0"
    );
    assert_eq!(
        std::fs::read_to_string(b.join(module)).unwrap(),
        "module.exports = 'greet 1.0.0';\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Over SSH
// ---------------------------------------------------------------------------------------------

#[test]
fn over_ssh_the_new_vendor_starts_from_the_previous_one() {
    let sandbox = Sandbox::new();
    let fixture = fixture_with_hello(&sandbox);
    let hosts = SshHosts::start(&sandbox, 1);
    shared_env(&sandbox, hosts.deploy_path(1));
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/laravel.rhai"))
            .unwrap();
    assert!(shipped.contains("\nlocalhost();\n"));
    let recipe = sandbox.write(
        "laravel-ssh.rhai",
        &shipped.replace("\nlocalhost();\n", &format!("\n{}", hosts.recipe_hosts())),
    );
    let recipe = recipe.display().to_string();
    let deploy = || {
        let repository = format!("repository={}", fixture.str());
        let mut args = vec!["run", recipe.as_str()];
        for option in [
            repository.as_str(),
            "fpm_reload=none",
            "health_url=",
            "audit=false",
        ] {
            args.extend(["-o", option]);
        }
        let run = sandbox.run(&args);
        run.success();
        let deploy = hosts.deploy_rel(1);
        let name = sandbox.releases(&deploy).pop().unwrap();
        (
            run,
            sandbox.path(&format!("{deploy}/releases/{name}")),
            name,
        )
    };
    let (_, a, first) = deploy();
    fixture.version("second", &[]);
    let (run, b, _) = deploy();
    assert!(
        run.stderr.contains(&format!(
            "[{}] composer: vendor/ from releases/{first} (hard links)\n",
            hosts.name(1)
        )),
        "{}",
        run.stderr
    );
    assert_eq!(inode(&a.join(GREETER)), inode(&b.join(GREETER)));
    assert_ne!(
        inode(&a.join("vendor/autoload.php")),
        inode(&b.join("vendor/autoload.php"))
    );
}
