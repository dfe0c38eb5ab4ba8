//! Inventories: the same fleet written as Ansible INI, Ansible YAML, the JSON of
//! `ansible-inventory --list` and Deployer's hosts.yml gives the same hosts (`zdd hosts`);
//! dynamic inventories run a command; malformed lines and hostile values end with exit 2,
//! naming the file and line, before anything runs; and a 20-host deploy over real SSH from an
//! INI inventory, then from a YAML one, puts every host on one release.

use std::os::unix::fs::PermissionsExt;

use crate::ssh_support::SshHosts;
use crate::support::Sandbox;

/// A recipe that declares no host: the inventory is the fleet.
const RECIPE: &str = "set(\"repository\", \"/nowhere\");\nset(\"keep_releases\", 4);\n";

const INI: &str = "\
# the fleet
[web]
web1 ansible_host=10.0.0.1
web2 ansible_host=10.0.0.2 ansible_port=2222

[db]
db1 ansible_host=10.0.0.9 ansible_ssh_private_key_file=/keys/db

[web:vars]
ansible_user=deploy
deploy_path=/srv/web

[all:vars]
deploy_path=/srv/app
php_version='8.2'
";

const YAML: &str = "\
all:
  vars:
    deploy_path: /srv/app
    php_version: '8.2'
  children:
    web:
      hosts:
        web1:
          ansible_host: 10.0.0.1
        web2:
          ansible_host: 10.0.0.2
          ansible_port: 2222
      vars:
        ansible_user: deploy
        deploy_path: /srv/web
    db:
      hosts:
        db1:
          ansible_host: 10.0.0.9
          ansible_ssh_private_key_file: /keys/db
";

/// As `ansible-inventory -i hosts.ini --list` prints it: group variables merged into each
/// host's.
const JSON: &str = r#"{
    "_meta": {
        "hostvars": {
            "db1": {"ansible_host": "10.0.0.9", "ansible_ssh_private_key_file": "/keys/db", "deploy_path": "/srv/app", "php_version": "8.2"},
            "web1": {"ansible_host": "10.0.0.1", "ansible_user": "deploy", "deploy_path": "/srv/web", "php_version": "8.2"},
            "web2": {"ansible_host": "10.0.0.2", "ansible_port": 2222, "ansible_user": "deploy", "deploy_path": "/srv/web", "php_version": "8.2"}
        }
    },
    "all": {"children": ["ungrouped", "web", "db"]},
    "web": {"hosts": ["web1", "web2"]},
    "db": {"hosts": ["db1"]}
}
"#;

const DEPLOYER: &str = "\
config:
  deploy_path: /srv/app
  php_version: '8.2'
hosts:
  .web: &web
    remote_user: deploy
    deploy_path: /srv/web
    roles: web
  web1:
    <<: *web
    hostname: 10.0.0.1
  web2:
    <<: *web
    hostname: 10.0.0.2
    port: 2222
  db1:
    hostname: 10.0.0.9
    identity_file: /keys/db
    roles: [db]
";

/// `zdd hosts --json` of the recipe with this inventory: each host's name, roles and settings
/// (their sources differ from one format to the next).
fn fleet(sandbox: &Sandbox, inventory: &str) -> Vec<serde_json::Value> {
    let run = sandbox.run(&["hosts", "recipe.rhai", "-i", inventory, "--json"]);
    run.success();
    run.json_lines()
        .into_iter()
        .map(|host| {
            serde_json::json!({
                "host": host["host"],
                "roles": host["roles"],
                "settings": host["settings"],
            })
        })
        .collect()
}

#[test]
fn the_same_fleet_in_every_format() {
    let sandbox = Sandbox::new();
    sandbox.write("recipe.rhai", RECIPE);
    sandbox.write("hosts.ini", INI);
    sandbox.write("hosts.yml", YAML);
    sandbox.write("inventory.json", JSON);
    sandbox.write("deployer.yml", DEPLOYER);
    let ini = fleet(&sandbox, "hosts.ini");
    assert_eq!(
        serde_json::to_string(&ini[1]).unwrap(),
        r#"{"host":"web2","roles":["web"],"settings":{"deploy_path":"/srv/web","hostname":"10.0.0.2","keep_releases":4,"php_version":"8.2","port":2222,"remote_user":"deploy","repository":"/nowhere"}}"#
    );
    let mut by_name = ini.clone();
    by_name.sort_by_key(|h| h["host"].as_str().unwrap().to_string());
    for other in ["hosts.yml", "inventory.json", "deployer.yml"] {
        let mut hosts = fleet(&sandbox, other);
        hosts.sort_by_key(|h| h["host"].as_str().unwrap().to_string());
        assert_eq!(hosts, by_name, "{other} and hosts.ini differ");
    }
}

#[test]
fn hosts_shows_each_setting_and_where_it_came_from() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "recipe.rhai",
        "set(\"repository\", \"/nowhere\");\nset(\"keep_releases\", 4);\ninventory(\"hosts.ini\");\nhost(\"web1\").set(\"api_token\", \"s3cr3t-value\");\n",
    );
    sandbox.write("hosts.ini", INI);
    let run = sandbox.run(&[
        "hosts",
        "recipe.rhai",
        "--roles",
        "web",
        "-o",
        "php_version=8.3",
    ]);
    run.success();
    assert_eq!(
        run.stdout,
        "\
web1  roles: web  (hosts.ini:3)
  hostname       10.0.0.1  hosts.ini:3 (ansible_host)
  remote_user    deploy    hosts.ini:10 ([web:vars], ansible_user)
  deploy_path    /srv/web  hosts.ini:11 ([web:vars])
  api_token      [secret]  recipe.rhai:4:14
  keep_releases  4         recipe.rhai:2:1 (set)
  php_version    8.3       -o
  repository     /nowhere  recipe.rhai:1:1 (set)
web2  roles: web  (hosts.ini:4)
  hostname       10.0.0.2  hosts.ini:4 (ansible_host)
  port           2222      hosts.ini:4 (ansible_port)
  remote_user    deploy    hosts.ini:10 ([web:vars], ansible_user)
  deploy_path    /srv/web  hosts.ini:11 ([web:vars])
  keep_releases  4         recipe.rhai:2:1 (set)
  php_version    8.3       -o
  repository     /nowhere  recipe.rhai:1:1 (set)
"
    );
}

#[test]
fn inventory_paths_in_a_recipe_are_relative_to_it() {
    let sandbox = Sandbox::new();
    sandbox.write("deploy/recipe.rhai", "inventory(\"fleet/hosts.yml\");\n");
    sandbox.write("deploy/fleet/hosts.yml", YAML);
    let run = sandbox.run(&["hosts", "deploy/recipe.rhai", "--hosts", "db1", "--json"]);
    run.success();
    let hosts = run.json_lines();
    assert_eq!(hosts.len(), 1);
    assert_eq!(
        hosts[0]["sources"]["identity_file"],
        "deploy/fleet/hosts.yml:20 (ansible_ssh_private_key_file)"
    );
}

fn executable(sandbox: &Sandbox, relative: &str, text: &str) {
    let path = sandbox.write(relative, text);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_dynamic_inventory_runs_its_command() {
    let sandbox = Sandbox::new();
    sandbox.write("recipe.rhai", RECIPE);
    executable(
        &sandbox,
        "inventory.sh",
        &format!("#!/bin/sh\ntest \"$1\" = --list || exit 9\ncat <<'EOF'\n{JSON}EOF\n"),
    );
    sandbox.write("hosts.ini", INI);
    assert_eq!(
        fleet(&sandbox, "!./inventory.sh --list"),
        fleet(&sandbox, "hosts.ini")
    );
    // From a recipe, the command runs in the recipe's directory.
    executable(
        &sandbox,
        "deploy/cloud.sh",
        "#!/bin/sh\necho '{\"web\": [\"web7\"], \"_meta\": {\"hostvars\": {\"web7\": {\"deploy_path\": \"/srv\"}}}}'\n",
    );
    sandbox.write("deploy/recipe.rhai", "inventory(\"!./cloud.sh\");\n");
    let run = sandbox.run(&["hosts", "deploy/recipe.rhai"]);
    run.success();
    assert_eq!(
        run.stdout,
        "web7  roles: web  (!./cloud.sh:1)\n  deploy_path  /srv  !./cloud.sh:1\n"
    );
}

#[test]
fn a_failing_dynamic_inventory_is_named_with_its_status_and_stderr() {
    let sandbox = Sandbox::new();
    sandbox.write("recipe.rhai", RECIPE);
    executable(
        &sandbox,
        "cloud.sh",
        "#!/bin/sh\necho 'no cloud credentials' >&2\nexit 3\n",
    );
    let run = sandbox.run(&["run", "recipe.rhai", "-i", "!./cloud.sh --list"]);
    run.expect(2);
    assert_eq!(
        run.stderr,
        "\
error: inventory: !./cloud.sh --list: the dynamic inventory failed: command `./cloud.sh --list` exited with status 3
stderr (last lines):
  | no cloud credentials

hint: it must exit 0 and print the JSON of `ansible-inventory --list`
"
    );
    executable(&sandbox, "garbage.sh", "#!/bin/sh\necho 'not json'\n");
    let run = sandbox.run(&["hosts", "recipe.rhai", "-i", "!./garbage.sh"]);
    run.expect(2);
    assert!(
        run.stderr
            .starts_with("error: inventory: !./garbage.sh:1:2: is not valid JSON: "),
        "{}",
        run.stderr
    );
}

#[test]
fn a_malformed_line_is_exit_2_naming_file_and_line() {
    let sandbox = Sandbox::new();
    sandbox.write("recipe.rhai", RECIPE);
    sandbox.write("hosts.ini", "[web]\nweb1\nweb[01:x] ansible_user=root\n");
    let run = sandbox.run(&["run", "recipe.rhai", "-i", "hosts.ini"]);
    run.expect(2);
    assert_eq!(
        run.stderr,
        "\
error: inventory: hosts.ini:3: the host range `web[01:x]` has `[01:x]`: `x` is neither a number nor a letter

hint: a range is `web[01:20]`, `web[a:f]` or `web[01:20:2]` (every second)
"
    );
    // From the recipe: the inventory's line, and the recipe's.
    sandbox.write(
        "app.rhai",
        "set(\"repository\", \"/nowhere\");\ninventory(\"hosts.ini\");\n",
    );
    let run = sandbox.run(&["run", "app.rhai"]);
    run.expect(2);
    assert_eq!(
        run.stderr,
        "\
error: inventory `hosts.ini`: hosts.ini:3: the host range `web[01:x]` has `[01:x]`: `x` is neither a number nor a letter
 --> app.rhai:2:1
  |
2 | inventory(\"hosts.ini\");
  | ^

hint: a range is `web[01:20]`, `web[a:f]` or `web[01:20:2]` (every second)
"
    );
    for (file, text, expected) in [
        (
            "a.ini",
            "[web\nweb1\n",
            "a.ini:1: the section `[web` has no closing `]`",
        ),
        (
            "b.ini",
            "[web]\nweb1 deploy_path\n",
            "b.ini:2: `deploy_path` after the host `web1` is not `key=value`",
        ),
        (
            "c.yml",
            "all:\n  hosts:\n    web1:\n      port: [1,\n",
            "c.yml:5:1: is not valid YAML: ",
        ),
        (
            "d.yml",
            "- web1\n- web2\n",
            "d.yml:1: is a list, not an inventory: it must be a map of groups",
        ),
    ] {
        sandbox.write(file, text);
        let run = sandbox.run(&["hosts", "recipe.rhai", "-i", file]);
        run.expect(2);
        assert!(
            run.stderr
                .starts_with(&format!("error: inventory: {expected}")),
            "{file}: {}",
            run.stderr
        );
    }
}

#[test]
fn an_unknown_ansible_variable_is_a_warning_naming_it() {
    let sandbox = Sandbox::new();
    sandbox.write("recipe.rhai", RECIPE);
    sandbox.write(
        "hosts.ini",
        "[web]\nweb[1:5] ansible_become=true\n[web:vars]\nansible_python_interpreter=/usr/bin/python3\n",
    );
    let run = sandbox.run(&["hosts", "recipe.rhai", "-i", "hosts.ini"]);
    run.success();
    assert_eq!(
        run.stderr,
        "\
warning: hosts.ini:2: `ansible_become` is not used by zdd (hosts web1, web2, web3 and 2 more)
warning: hosts.ini:4 ([web:vars]): `ansible_python_interpreter` is not used by zdd (hosts web1, web2, web3 and 2 more)
"
    );
    assert!(!run.stdout.contains("ansible_"), "{}", run.stdout);
}

#[test]
fn hostile_values_are_refused_before_anything_runs() {
    let sandbox = Sandbox::new();
    sandbox.write("recipe.rhai", RECIPE);
    let marker = sandbox.path("pwned");
    let cases = [
        (
            "a.ini",
            format!(
                "web1 ansible_host=\"-oProxyCommand=touch {}\"\n",
                marker.display()
            ),
            "a.ini:1: the hostname `-oProxyCommand=touch [SANDBOX]/pwned` is not a plain name",
        ),
        (
            "b.ini",
            "web1 ansible_host='db;touch x'\n".to_string(),
            "b.ini:1: the hostname `db;touch x` is not a plain name",
        ),
        (
            "c.yml",
            "all:\n  hosts:\n    \"-oProxyCommand=x\":\n".to_string(),
            "c.yml:3: the host name `-oProxyCommand=x` is not a plain name",
        ),
        (
            "d.yml",
            "all:\n  hosts:\n    web1:\n      ansible_port: 99999\n".to_string(),
            "d.yml:4: the port of `web1` is `99999`: a port is a number from 1 to 65535",
        ),
        (
            "e.ini",
            "web1 ansible_user=\"root\nx\"\n".to_string(),
            "e.ini:1: `web1 ansible_user=\"root` has an unclosed quote",
        ),
        (
            "f.yml",
            "hosts:\n  web1:\n    hostname: \"a b\"\n".to_string(),
            "f.yml:3: the hostname `a b` is not a plain name",
        ),
    ];
    for (file, text, expected) in cases {
        sandbox.write(file, &text);
        let run = sandbox.run(&["run", "recipe.rhai", "-i", file]);
        run.expect(2);
        assert!(
            run.stderr
                .starts_with(&format!("error: inventory: {expected}")),
            "{file}: {}",
            run.stderr
        );
    }
    assert!(!marker.exists());
}

/// The commit a host's `current` release was made from (its release log says).
fn commit_of(sandbox: &Sandbox, deploy: &str, release: &str) -> String {
    sandbox
        .log(deploy)
        .iter()
        .rev()
        .find(|entry| entry["release"] == release && entry["commit"].is_string())
        .map(|entry| entry["commit"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no commit for {release} in {deploy}"))
}

/// Every host's `current` points at one release made from `commit`; returns its name.
fn one_release(sandbox: &Sandbox, commit: &str) -> String {
    let mut names = std::collections::BTreeSet::new();
    for n in 1..=20 {
        let deploy = format!("deploy/web{n:02}");
        let current = sandbox
            .current(&deploy)
            .unwrap_or_else(|| panic!("{deploy} has no current"));
        assert_eq!(commit_of(sandbox, &deploy, &current), commit, "{deploy}");
        names.insert(current);
    }
    assert_eq!(names.len(), 1, "{names:?}");
    names.into_iter().next().unwrap()
}

#[test]
fn twenty_hosts_from_an_ini_inventory_then_a_yaml_one() {
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 2);
    let repo = sandbox.repo("repo");
    let first = repo.commit(&[("index.html", "one\n")], "one");
    sandbox.write(
        "recipe.rhai",
        &format!(
            "import \"deploy\";\nset(\"repository\", {:?});\n",
            repo.str()
        ),
    );
    let key = hosts.identity_file().display().to_string();
    let config = hosts.config_file().display().to_string();
    let deploy = format!("{}/deploy/{{{{alias}}}}", sandbox.root().display());
    sandbox.write(
        "hosts.ini",
        &format!(
            "[web]\nweb[01:19:2] ansible_port={}\nweb[02:20:2] ansible_port={}\n\n[web:vars]\nansible_host=127.0.0.1\nansible_user=root\nansible_ssh_private_key_file={key}\nansible_ssh_common_args='-F {config}'\ndeploy_path={deploy}\n",
            hosts.port(1),
            hosts.port(2)
        ),
    );
    let yaml_hosts: String = (1..=20)
        .map(|n| {
            format!(
                "        web{n:02}:\n          ansible_port: {}\n",
                hosts.port(if n % 2 == 1 { 1 } else { 2 })
            )
        })
        .collect();
    sandbox.write(
        "hosts.yml",
        &format!(
            "all:\n  children:\n    web:\n      hosts:\n{yaml_hosts}      vars:\n        ansible_host: 127.0.0.1\n        ansible_user: root\n        ansible_ssh_private_key_file: {key}\n        ansible_ssh_common_args: -F {config}\n        deploy_path: {deploy}\n"
        ),
    );
    // Both describe one fleet.
    let settings = |inventory: &str| {
        let run = sandbox.run(&["hosts", "recipe.rhai", "-i", inventory, "--json"]);
        run.success();
        let mut hosts: Vec<_> = run
            .json_lines()
            .into_iter()
            .map(|h| {
                (
                    h["host"].to_string(),
                    h["roles"].clone(),
                    h["settings"].clone(),
                )
            })
            .collect();
        hosts.sort_by(|a, b| a.0.cmp(&b.0));
        hosts
    };
    assert_eq!(settings("hosts.ini"), settings("hosts.yml"));

    let run = sandbox.run(&[
        "run",
        "recipe.rhai",
        "-i",
        "hosts.ini",
        "-o",
        "rollout_stagger=0",
    ]);
    run.success();
    let release = one_release(&sandbox, &first);

    let second = repo.commit(&[("index.html", "two\n")], "two");
    let run = sandbox.run(&[
        "run",
        "recipe.rhai",
        "-i",
        "hosts.yml",
        "-o",
        "rollout_stagger=0",
    ]);
    run.success();
    let next = one_release(&sandbox, &second);
    assert_ne!(next, release);
    assert_eq!(
        std::fs::read_to_string(sandbox.path("deploy/web20/current/index.html")).unwrap(),
        "two\n"
    );
    drop(hosts);
}
