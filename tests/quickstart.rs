//! `scripts/quickstart` finds the zdd that cargo built wherever cargo put it. The real script
//! runs in a copy of the source tree's layout where everything around the binary is a stand-in:
//! `cargo` (it puts a recording `zdd` where real cargo would, under `CARGO_TARGET_DIR` when
//! that is set, and says so in its build messages), `scripts/setup` and `examples/stack`. No
//! release build, no servers: the whole run takes a fraction of a second.
//! (`laravel::readme_quickstart_deploys_and_deploys_again` runs it for real, with `ZDD_BIN`.)

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::Sandbox;

fn executable(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A source tree at `root` with the real `scripts/quickstart` and the example app, and stand-ins
/// for everything else the script calls; a stand-in `cargo` in `bin/`. Calls are logged in
/// `log/`.
fn tree(sandbox: &Sandbox) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = sandbox.path("root");
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::copy(
        source.join("scripts/quickstart"),
        root.join("scripts/quickstart"),
    )
    .unwrap();
    executable(&root.join("scripts/setup"), "#!/bin/sh\nexit 0\n");
    std::fs::create_dir_all(root.join("examples")).unwrap();
    std::os::unix::fs::symlink(
        source.join("examples/laravel-app"),
        root.join("examples/laravel-app"),
    )
    .unwrap();
    let log = sandbox.str("log");
    std::fs::create_dir_all(&log).unwrap();
    executable(
        &root.join("examples/stack/start"),
        &format!("#!/bin/sh\necho \"stack $*\" >> {log}/calls\necho fpm_pid_file=$1/php-fpm.pid\n"),
    );
    // cargo's own layout and build messages (cargo 1.95): a dependency's artifact, then zdd's.
    executable(
        &sandbox.path("bin/cargo"),
        &format!(
            r#"#!/bin/sh
echo "cargo $* (in $PWD)" >> {log}/calls
[ "$1" = build ] || exit 0
target="${{CARGO_TARGET_DIR:-$PWD/target}}"
mkdir -p "$target/release"
printf '#!/bin/sh\necho "zdd $0 $*" >> {log}/calls\n' > "$target/release/zdd"
chmod +x "$target/release/zdd"
echo '{{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#libc@0.2.172","manifest_path":"/r/libc/Cargo.toml","target":{{"kind":["lib"],"crate_types":["lib"],"name":"libc","src_path":"/r/libc/src/lib.rs","edition":"2021","doc":true,"doctest":true,"test":false}},"profile":{{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false}},"features":[],"filenames":["'"$target"'/release/deps/liblibc.rlib"],"executable":null,"fresh":true}}'
echo '{{"reason":"compiler-artifact","package_id":"path+file://'"$PWD"'#zdd@0.1.0","manifest_path":"'"$PWD"'/Cargo.toml","target":{{"kind":["bin"],"crate_types":["bin"],"name":"zdd","src_path":"'"$PWD"'/src/main.rs","edition":"2021","doc":true,"doctest":false,"test":false}},"profile":{{"opt_level":"3","debuginfo":0,"debug_assertions":false,"overflow_checks":false,"test":false}},"features":[],"filenames":["'"$target"'/release/zdd"],"executable":"'"$target"'/release/zdd","fresh":false}}'
echo '{{"reason":"build-finished","success":true}}'
"#
        ),
    );
}

/// `scripts/quickstart` in the tree, with `target_dir` as CARGO_TARGET_DIR (or none): its
/// stdout and stderr, and the calls logged.
fn quickstart(sandbox: &Sandbox, target_dir: Option<&Path>) -> (String, String) {
    let path = format!(
        "{}:{}",
        sandbox.str("bin"),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new(sandbox.path("root/scripts/quickstart"));
    command
        .env_clear()
        .env("PATH", path)
        .env("HOME", sandbox.root())
        .env("ZDD_QUICKSTART_DIR", sandbox.path("state"))
        .env("PORT", crate::laravel_support::free_port().to_string());
    if let Some(dir) = target_dir {
        command.env("CARGO_TARGET_DIR", dir);
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("deployed v1 to "), "{stdout}");
    (stdout, sandbox.normalize(&sandbox.read("log/calls")))
}

#[test]
fn quickstart_runs_the_zdd_cargo_built_under_cargo_target_dir() {
    let sandbox = Sandbox::new();
    tree(&sandbox);
    let (_, calls) = quickstart(&sandbox, Some(&sandbox.path("elsewhere")));
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(
        lines[0],
        "cargo build --release --quiet --bin zdd --message-format=json-render-diagnostics (in [SANDBOX]/root)"
    );
    assert!(
        lines[1].starts_with("stack [SANDBOX]/state/stack "),
        "{calls}"
    );
    assert!(
        lines[2].starts_with(
            "zdd [SANDBOX]/elsewhere/release/zdd run [SANDBOX]/root/recipes/laravel.rhai -o repository=[SANDBOX]/state/repo "
        ),
        "{calls}"
    );
    // Then the same zdd draws the deploy.
    assert!(
        lines[3].starts_with(
            "zdd [SANDBOX]/elsewhere/release/zdd report [SANDBOX]/root/recipes/laravel.rhai -o deploy_path=[SANDBOX]/state/app --output [SANDBOX]/state/report.html"
        ),
        "{calls}"
    );
    assert_eq!(lines.len(), 4, "{calls}");
    assert!(!sandbox.path("root/target").exists());
}

#[test]
fn quickstart_runs_the_zdd_cargo_built_in_its_default_target_dir() {
    let sandbox = Sandbox::new();
    tree(&sandbox);
    let (_, calls) = quickstart(&sandbox, None);
    assert!(
        calls.contains("\nzdd [SANDBOX]/root/target/release/zdd run "),
        "{calls}"
    );
}
