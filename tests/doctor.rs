//! `zdd doctor`: against a real php-fpm + nginx (a good and a bad config of each, found from
//! the running masters and from `nginx_config`/`fpm_config`), and for a missing shared file,
//! held and stale locks, and an unreachable SSH host. Doctor changes nothing on a host.

use std::path::Path;

use crate::laravel_support::{Stack, StackOptions};
use crate::ssh_support::{rhai_string, SshHosts};
use crate::support::{assert_same_tree, hostname, their_words, Run, Sandbox};

const DEPLOY: &str = "app";
const RELEASE: &str = "20260101T000000Z";

/// A deploy path with one release (`public/index.php`, `storage/`) as `current` and a shared
/// `.env`, and a recipe `doctor.rhai` for it that lists `.env` and `storage`, plus `extra`.
fn app(sandbox: &Sandbox, extra: &str) {
    sandbox.write(
        &format!("{DEPLOY}/releases/{RELEASE}/public/index.php"),
        "<?php echo 'hello';\n",
    );
    std::fs::create_dir_all(sandbox.path(&format!("{DEPLOY}/releases/{RELEASE}/storage"))).unwrap();
    std::os::unix::fs::symlink(
        format!("releases/{RELEASE}"),
        sandbox.path(&format!("{DEPLOY}/current")),
    )
    .unwrap();
    sandbox.write(&format!("{DEPLOY}/shared/.env"), "APP_KEY=base64:x\n");
    sandbox.write(
        "doctor.rhai",
        &format!(
            "set(\"deploy_path\", {});\nset(\"shared_files\", [\".env\"]);\nset(\"writable_dirs\", [\"storage\"]);\n{extra}localhost();\n",
            rhai_string(&sandbox.str(DEPLOY))
        ),
    );
}

/// Sizes change from machine to machine: `123 MB` and `under 1 MB` become `[SIZE]`.
fn sizes(text: &str) -> String {
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let mut rest = line;
        let mut cleaned = String::new();
        while let Some(index) = rest.find(" MB") {
            let before = &rest[..index];
            let start = if before.ends_with("under 1") {
                index - "under 1".len()
            } else {
                before
                    .rfind(|c: char| !c.is_ascii_digit())
                    .map(|i| i + 1)
                    .unwrap_or(0)
            };
            cleaned.push_str(&rest[..start]);
            cleaned.push_str("[SIZE]");
            rest = &rest[index + " MB".len()..];
        }
        cleaned.push_str(rest);
        out.push_str(&cleaned);
    }
    out
}

fn doctor(sandbox: &Sandbox, args: &[&str]) -> Run {
    let mut all = vec!["doctor", "doctor.rhai"];
    all.extend_from_slice(args);
    let mut run = sandbox.run(&all);
    run.stdout = sizes(&run.stdout);
    run
}

/// `-o nginx_config=.. -o fpm_config=..` of a stack.
fn settings(stack: &Stack) -> Vec<String> {
    vec![
        "-o".into(),
        format!("nginx_config={}", stack.nginx_config.display()),
        "-o".into(),
        format!("fpm_config={}", stack.fpm_config.display()),
    ]
}

/// The line number of the first line of `file` that contains `needle`.
fn line_of(file: &Path, needle: &str) -> usize {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no `{needle}` in {}", file.display()))
        + 1
}

/// The tail every report of [`app`] ends with when all is well.
const WELL_KEPT: &str = "  ok       shared files exist in `[SANDBOX]/app/shared`: `.env`
  ok       writable dirs are writable in the current release: `storage`
  ok       [SIZE] free under `[SANDBOX]/app` (the current release takes [SIZE])
  ok       zdd's layout
  ok       the deploy lock is free
";

#[test]
fn doctor_passes_a_good_stack_found_from_its_masters_or_from_settings() {
    let sandbox = Sandbox::new();
    app(&sandbox, "");
    let stack = Stack::start(
        &sandbox,
        DEPLOY,
        StackOptions {
            process_control_timeout: Some(10),
            document_root: false,
        },
    );
    let before = sandbox.tree(DEPLOY, &[]);
    let expected = sandbox.normalize(&format!(
        "localhost
  ok       nginx passes $realpath_root to php-fpm ({nginx})
  ok       php-fpm process_control_timeout is 10 s: a reload lets requests in flight finish ({fpm})
  ok       OPcache is on and never re-checks files (validate_timestamps=0, pool `app`): a new release is served because nginx passes $realpath_root (its files have new paths)
{WELL_KEPT}",
        nginx = stack.nginx_config.display(),
        fpm = stack.fpm_config.display(),
    ));
    // Found from the running masters: the one whose root is under this deploy_path, among
    // whatever else runs on this machine.
    let found = doctor(&sandbox, &[]);
    found.success();
    assert_eq!(found.stdout, expected);
    assert_eq!(found.stderr, "");
    // Named by the settings.
    let settings = settings(&stack);
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    let named = doctor(&sandbox, &settings);
    named.success();
    assert_eq!(named.stdout, expected);

    let json = doctor(&sandbox, &["--json"]);
    json.success();
    let lines = json.json_lines();
    let checks: Vec<&str> = lines.iter().map(|l| l["check"].as_str().unwrap()).collect();
    assert_eq!(
        checks,
        [
            "nginx",
            "php-fpm",
            "opcache",
            "shared_files",
            "writable_dirs",
            "disk",
            "layout",
            "lock"
        ]
    );
    assert_eq!(
        lines[1],
        serde_json::json!({
            "host": "localhost",
            "check": "php-fpm",
            "status": "ok",
            "message": sandbox.normalize(&format!(
                "php-fpm process_control_timeout is 10 s: a reload lets requests in flight finish ({})",
                stack.fpm_config.display()
            )),
            "fix": null,
        })
    );
    assert_same_tree(&before, &sandbox.tree(DEPLOY, &[]), "doctor");
    stack.stop();
}

#[test]
fn doctor_finds_document_root_and_a_zero_process_control_timeout() {
    let sandbox = Sandbox::new();
    app(&sandbox, "");
    let stack = Stack::start(
        &sandbox,
        DEPLOY,
        StackOptions {
            document_root: true,
            ..StackOptions::default()
        },
    );
    let nginx = stack.nginx_config.display().to_string();
    let fpm = stack.fpm_config.display().to_string();
    let script_filename = line_of(&stack.nginx_config, "fastcgi_param SCRIPT_FILENAME");
    let document_root = line_of(&stack.nginx_config, "fastcgi_param DOCUMENT_ROOT");
    let expected = sandbox.normalize(&format!(
        "localhost
  problem  nginx does not pass $realpath_root to php-fpm: SCRIPT_FILENAME is `$document_root$fastcgi_script_name` ({nginx}:{script_filename}), DOCUMENT_ROOT is `$document_root` ({nginx}:{document_root}); a request can then run in two releases, and OPcache keeps serving the old one
           fix: in the PHP location write `fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;` and `fastcgi_param DOCUMENT_ROOT $realpath_root;` (after any include of fastcgi_params), then reload nginx
  problem  php-fpm process_control_timeout is 0: a reload cuts requests in flight ({fpm})
           fix: set `process_control_timeout = 10s` in the [global] section of {fpm} and reload php-fpm once; until then zdd skips reloads (fpm_reload = auto)
  warning  OPcache is on and never re-checks files (validate_timestamps=0, pool `app`): with neither $realpath_root from nginx nor a graceful php-fpm reload, php-fpm keeps serving the old release's code
           fix: pass $realpath_root from nginx, or set php-fpm's process_control_timeout above 0 so zdd reloads php-fpm after each deploy
{WELL_KEPT}"
    ));
    let settings = settings(&stack);
    let settings: Vec<&str> = settings.iter().map(String::as_str).collect();
    for args in [&[][..], &settings[..]] {
        let run = doctor(&sandbox, args);
        run.expect(1);
        assert_eq!(run.stdout, expected, "with {args:?}");
        assert_eq!(
            run.stderr, "error: doctor found 2 problems on `localhost`\n",
            "with {args:?}"
        );
    }
    stack.stop();
}

/// nginx and php-fpm configs written by the test (no server runs them): a site included by
/// glob, Debian's `fastcgi.conf` included and then overridden with `$realpath_root`, and a
/// php-fpm pool with `process_control_timeout = 10s`. Returns the recipe lines naming them.
fn static_configs(sandbox: &Sandbox) -> String {
    sandbox.write(
        "conf/nginx.conf",
        "events {}\nhttp {\n    include sites/*.conf;\n}\n",
    );
    sandbox.write(
        "conf/fastcgi.conf",
        "fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\nfastcgi_param QUERY_STRING $query_string;\n",
    );
    sandbox.write(
        "conf/sites/app.conf",
        &format!(
            "server {{\n    listen 127.0.0.1:8999;\n    root {}/current/public;\n    location ~ \\.php$ {{\n        include fastcgi.conf;\n        fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;\n        fastcgi_param DOCUMENT_ROOT $realpath_root;\n        fastcgi_pass unix:{}/conf/php-fpm.sock;\n    }}\n}}\n",
            sandbox.str(DEPLOY),
            sandbox.root().display()
        ),
    );
    sandbox.write(
        "conf/php-fpm.conf",
        &format!(
            "[global]\nprocess_control_timeout = 10s\ninclude = {}/conf/pool.d/*.conf\n",
            sandbox.root().display()
        ),
    );
    sandbox.write(
        "conf/pool.d/www.conf",
        &format!(
            "[www]\nlisten = {}/conf/php-fpm.sock\nphp_admin_value[opcache.validate_timestamps] = 0\n",
            sandbox.root().display()
        ),
    );
    format!(
        "set(\"nginx_config\", {});\nset(\"fpm_config\", {});\n",
        rhai_string(&sandbox.str("conf/nginx.conf")),
        rhai_string(&sandbox.str("conf/php-fpm.conf"))
    )
}

/// The lines of `--json` output for one check, as `status: message / fix`.
fn findings_of(run: &Run, check: &str) -> Vec<String> {
    run.json_lines()
        .iter()
        .filter(|l| l["check"] == check)
        .map(|l| {
            format!(
                "{}: {}{}",
                l["status"].as_str().unwrap(),
                l["message"].as_str().unwrap(),
                l["fix"]
                    .as_str()
                    .map(|fix| format!(" / {fix}"))
                    .unwrap_or_default()
            )
        })
        .collect()
}

#[test]
fn doctor_reads_configs_named_by_settings_with_their_includes() {
    let sandbox = Sandbox::new();
    let settings = static_configs(&sandbox);
    app(&sandbox, &settings);
    let run = doctor(&sandbox, &["--json"]);
    run.success();
    assert_eq!(
        findings_of(&run, "nginx"),
        ["ok: nginx passes $realpath_root to php-fpm ([SANDBOX]/conf/nginx.conf)"]
    );
    assert_eq!(
        findings_of(&run, "php-fpm"),
        ["ok: php-fpm process_control_timeout is 10 s: a reload lets requests in flight finish ([SANDBOX]/conf/php-fpm.conf)"]
    );
    assert_eq!(
        findings_of(&run, "opcache"),
        ["ok: OPcache is on and never re-checks files (validate_timestamps=0, pool `www`): a new release is served because nginx passes $realpath_root (its files have new paths)"]
    );
}

#[test]
fn doctor_reports_a_missing_shared_file() {
    let sandbox = Sandbox::new();
    let settings = static_configs(&sandbox);
    app(
        &sandbox,
        &format!("{settings}set(\"shared_files\", [\".env\", \"config/auth.json\"]);\n"),
    );
    let run = doctor(&sandbox, &["--json"]);
    run.expect(1);
    assert_eq!(
        findings_of(&run, "shared_files"),
        [
            "ok: shared files exist in `[SANDBOX]/app/shared`: `.env`",
            "problem: shared file `config/auth.json` is missing: `[SANDBOX]/app/shared/config/auth.json` does not exist / create `[SANDBOX]/app/shared/config/auth.json` before the next deploy (zdd never creates an empty one)",
        ]
    );
    assert_eq!(run.stderr, "error: doctor found 1 problem on `localhost`\n");
}

fn write_lock(sandbox: &Sandbox, machine: &str, pid: u32) {
    sandbox.write(
        &format!("{DEPLOY}/.zdd/lock"),
        &serde_json::json!({
            "user": "alice",
            "machine": machine,
            "pid": pid,
            "time": "2026-01-01T00:00:00Z",
            "ref": "v2",
        })
        .to_string(),
    );
}

#[test]
fn doctor_reports_a_held_lock_and_a_stale_one() {
    let sandbox = Sandbox::new();
    let settings = static_configs(&sandbox);
    app(&sandbox, &settings);
    let machine = hostname();

    // Held by a process that runs (this test): a warning.
    write_lock(&sandbox, &machine, std::process::id());
    let run = doctor(&sandbox, &["--json"]);
    run.success();
    assert_eq!(
        findings_of(&run, "lock"),
        [format!(
            "warning: a deploy holds the lock: alice on {machine} (pid {}, since 2026-01-01T00:00:00Z, deploying `v2`) / wait for that deploy to finish; if it is gone, clear the lock with `zdd unlock doctor.rhai`",
            std::process::id()
        )]
    );

    // Held from another machine: doctor cannot tell whether it runs, so a warning too.
    write_lock(&sandbox, "elsewhere", 1);
    let run = doctor(&sandbox, &["--json"]);
    run.success();
    assert_eq!(
        findings_of(&run, "lock"),
        ["warning: a deploy holds the lock: alice on elsewhere (pid 1, since 2026-01-01T00:00:00Z, deploying `v2`) / wait for that deploy to finish; if it is gone, clear the lock with `zdd unlock doctor.rhai`"]
    );

    // Left by a process of this machine that is gone: stale, a problem.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    write_lock(&sandbox, &machine, gone);
    let run = doctor(&sandbox, &["--json"]);
    run.expect(1);
    assert_eq!(
        findings_of(&run, "lock"),
        [format!(
            "problem: the deploy lock is stale: held by alice on {machine} (pid {gone}, since 2026-01-01T00:00:00Z, deploying `v2`), a process that is no longer running; every deploy is refused / clear it with `zdd unlock doctor.rhai`"
        )]
    );
    assert!(
        sandbox.path(&format!("{DEPLOY}/.zdd/lock")).exists(),
        "doctor removed nothing"
    );
}

#[test]
fn doctor_over_ssh_reports_an_unreachable_host_and_checks_the_others() {
    let sandbox = Sandbox::new();
    let mut hosts = SshHosts::start(&sandbox, 2);
    let settings = static_configs(&sandbox);
    sandbox.write(
        "doctor.rhai",
        &format!("{settings}{}", hosts.recipe_hosts()),
    );
    hosts.stop(2);
    let (port1, port2) = (hosts.port(1), hosts.port(2));
    let run = doctor(&sandbox, &[]);
    run.expect(1);
    // Why ssh could not connect is ssh's wording: zdd passes it on between its own words.
    assert_eq!(
        their_words(&run.stdout, "cannot reach host `web2`: ", " (ssh root@"),
        format!(
            "web1
  ok       reachable over SSH (root@127.0.0.1:{port1})
  ok       nginx passes $realpath_root to php-fpm ([SANDBOX]/conf/nginx.conf)
  ok       php-fpm process_control_timeout is 10 s: a reload lets requests in flight finish ([SANDBOX]/conf/php-fpm.conf)
  ok       OPcache is on and never re-checks files (validate_timestamps=0, pool `www`): a new release is served because nginx passes $realpath_root (its files have new paths)
  ok       no shared_files are set
  ok       no writable_dirs are set
  ok       [SIZE] free under `[SANDBOX]/host1/app` (no current release to compare with)
  ok       no releases yet
  ok       the deploy lock is free
web2
  problem  cannot reach host `web2`: [THEIRS] (ssh root@127.0.0.1:{port2})
           fix: check the host's settings (hostname, port, remote_user, identity_file, config_file) and that `ssh` reaches it
"
        )
    );
    assert_eq!(run.stderr, "error: doctor found 1 problem on `web2`\n");
    assert!(
        !hosts.deploy_path(1).exists(),
        "doctor created nothing on web1"
    );
}
