//! Deployer's YAML (`hosts.yml`, or a `deploy.yaml` recipe): `hosts:` maps each alias
//! (`web[1:3]` ranges too; an alias starting with `.` is a template, skipped as Deployer
//! skips it) to its settings, whose names are zdd's already (`hostname`, `remote_user`,
//! `port`, `identity_file`, `deploy_path`, ...); `config:` is settings for every host of the
//! file. `local: true` is a local host. `roles:` (a name or a list) are roles; Deployer v7's
//! `labels:` (`{stage: prod}`) become roles `stage=prod`, so `--roles stage=prod` selects what
//! Deployer's `dep deploy stage=prod` does. What zdd does not read (`import`, `tasks`, hooks)
//! is a warning.

use super::yaml::{self, Entry, Kind, Node};
use super::{expand_pattern, InventoryError, Model, Place, Value, Var};

/// Keys of a Deployer host that say a `hosts:` map is Deployer's, not an Ansible group named
/// `hosts`.
const HOST_KEYS: &[&str] = &[
    "hostname",
    "remote_user",
    "port",
    "identity_file",
    "config_file",
    "deploy_path",
    "labels",
    "roles",
    "local",
    "forward_agent",
    "ssh_arguments",
    "ssh_multiplexing",
    "shell",
];

/// The top-level keys of a Deployer YAML recipe.
const RECIPE_KEYS: &[&str] = &["import", "config", "tasks", "before", "after", "fail"];

/// A map with `import:`/`config:`, or with `hosts:` whose entries use Deployer's keys.
pub(super) fn is_deployer(root: &Node) -> bool {
    if RECIPE_KEYS.iter().any(|key| root.get(key).is_some()) {
        return true;
    }
    let Some(Node {
        kind: Kind::Map(hosts),
        ..
    }) = root.get("hosts")
    else {
        return false;
    };
    hosts.iter().any(|host| match &host.node.kind {
        Kind::Map(keys) => keys.iter().any(|k| HOST_KEYS.contains(&k.key.as_str())),
        _ => false,
    })
}

pub(super) fn parse(root: &Node, file: &str) -> Result<Model, InventoryError> {
    let mut model = Model::new(file);
    let Kind::Map(entries) = &root.kind else {
        return Err(InventoryError::in_file(file, "is not a map"));
    };
    for Entry { key, line, node } in entries {
        let place = Place::at(file, Some(*line));
        match key.as_str() {
            "hosts" => hosts(&mut model, node, &place, file)?,
            "config" => {
                let vars = yaml::variables(node, &place, Some("config"), "`config`")?;
                model.group("all", &place).vars.extend(vars);
            }
            key if key.starts_with('.') => {}
            other => model.warnings.push(format!(
                "{place}: `{other}` is not used by zdd: it reads the `hosts` and `config` of a Deployer file"
            )),
        }
    }
    Ok(model)
}

fn hosts(model: &mut Model, node: &Node, place: &Place, file: &str) -> Result<(), InventoryError> {
    let entries = match &node.kind {
        Kind::Map(entries) => entries,
        Kind::Scalar(Value::Null) => return Ok(()),
        _ => {
            return Err(InventoryError::new(
                place,
                format!(
                    "`hosts` is {}: it must map each host to its settings",
                    node.described()
                ),
            ))
        }
    };
    for Entry {
        key: alias,
        line,
        node: settings,
    } in entries
    {
        if alias.starts_with('.') {
            continue;
        }
        let host_place = Place::at(file, Some(*line));
        let (names, _) = expand_pattern(alias, &host_place)?;
        model.room_for(&names, &host_place)?;
        let mut roles: Vec<(String, Place)> = Vec::new();
        let mut vars = Vec::new();
        for var in yaml::variables(settings, &host_place, None, &format!("the host `{alias}`"))? {
            match var.key.as_str() {
                "roles" => match &var.value {
                    Value::Text(role) => roles.push((role.clone(), var.place.clone())),
                    Value::List(items) => {
                        roles.extend(items.iter().map(|r| (r.to_string(), var.place.clone())))
                    }
                    other => return Err(InventoryError::new(
                        &var.place,
                        format!("`roles` of `{alias}` is `{other}`: it must be a name or a list of names"),
                    )),
                },
                "labels" => match &var.value {
                    Value::Map(labels) => roles.extend(
                        labels
                            .iter()
                            .map(|(k, v)| (format!("{k}={v}"), var.place.clone())),
                    ),
                    Value::Null => {}
                    other => return Err(InventoryError::new(
                        &var.place,
                        format!("`labels` of `{alias}` is `{other}`: it must be a map, `{{stage: prod}}`"),
                    )),
                },
                "local" => {
                    if var.value == Value::Bool(true) {
                        vars.push(Var {
                            key: "ansible_connection".to_string(),
                            value: Value::Text("local".into()),
                            place: var.place,
                        });
                    }
                }
                _ => vars.push(var),
            }
        }
        for name in names {
            let host = model.host(&name, "ungrouped", &host_place);
            host.vars.extend(vars.iter().cloned());
            for (role, role_place) in &roles {
                model.host(&name, role, role_place);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Model {
        let root = yaml::tree(text, "hosts.yml").unwrap();
        assert!(is_deployer(&root));
        parse(&root, "hosts.yml").unwrap()
    }

    #[test]
    fn told_apart_from_ansible() {
        let ansible = yaml::tree("all:\n  hosts:\n    web1:\n", "h.yml").unwrap();
        assert!(!is_deployer(&ansible));
        let group_named_hosts = yaml::tree("hosts:\n  hosts:\n    web1:\n", "h.yml").unwrap();
        assert!(!is_deployer(&group_named_hosts));
        let recipe = yaml::tree("import: recipe/laravel.php\n", "h.yml").unwrap();
        assert!(is_deployer(&recipe));
    }

    #[test]
    fn hosts_config_labels_roles() {
        let model = parsed(
            "import:\n  - recipe/laravel.php\nconfig:\n  keep_releases: 3\nhosts:\n  .base: &base\n    remote_user: deployer\n  web[1:2]:\n    <<: *base\n    deploy_path: /srv/app\n    labels:\n      stage: prod\n    roles: [web, app]\n  worker:\n    local: true\n",
        );
        let names: Vec<&str> = model.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web1", "web2", "worker"]);
        assert_eq!(
            model.hosts[0].groups,
            ["ungrouped", "stage=prod", "web", "app"]
        );
        let keys: Vec<&str> = model.hosts[0].vars.iter().map(|v| v.key.as_str()).collect();
        assert_eq!(keys, ["remote_user", "deploy_path"]);
        assert_eq!(model.hosts[2].vars[0].key, "ansible_connection");
        let all = model.groups.iter().find(|g| g.name == "all").unwrap();
        assert_eq!(all.vars[0].place.to_string(), "hosts.yml:4 (config)");
        assert_eq!(
            model.warnings,
            ["hosts.yml:1: `import` is not used by zdd: it reads the `hosts` and `config` of a Deployer file"]
        );
    }
}
