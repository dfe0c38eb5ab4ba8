//! From Ansible's model to zdd's hosts. A host's variables are merged as Ansible merges them:
//! `all`, then its other groups from the shallowest to the deepest (a child group over its
//! parents; at one depth by `ansible_group_priority`, then by name), then the host's own. The
//! connection variables become zdd's settings:
//!
//! | Ansible                                              | zdd                    |
//! |------------------------------------------------------|------------------------|
//! | `ansible_host` (`ansible_ssh_host`)                  | `hostname`             |
//! | `ansible_port` (`ansible_ssh_port`), `host:port`     | `port`                 |
//! | `ansible_user` (`ansible_ssh_user`)                  | `remote_user`          |
//! | `ansible_ssh_private_key_file`                       | `identity_file`        |
//! | `ansible_ssh_common_args`, `ansible_ssh_extra_args`  | `ssh_arguments` (words)|
//! | `ansible_connection=local`                           | a local host           |
//!
//! Any other `ansible_*` variable is a warning naming where it is and the hosts it would
//! apply to; every other variable is a setting of the same name. The groups a host is in
//! (their parents too), but `all` and `ungrouped`, are its `roles`. Values a host cannot use
//! (a map, an encrypted value, a hostile host name or port) are errors naming the place.

use std::collections::{BTreeMap, HashMap, HashSet};

use rhai::{Array, Dynamic};

use super::{Inventory, InventoryError, Model, Place, Value};
use crate::primitives::host_context::COMPUTED_KEYS;
use crate::registry::Host;

/// What an inventory variable is to zdd.
#[derive(Debug, PartialEq, Eq)]
enum Meaning {
    /// The setting of this name.
    Setting(&'static str),
    /// A setting of the variable's own name.
    Own,
    /// Read here: `ansible_connection`, the ssh arguments.
    Special,
    /// Read while merging (`ansible_group_priority`).
    Used,
    /// An `ansible_*` variable zdd has no use for.
    Unused,
}

fn meaning(key: &str) -> Meaning {
    match key {
        "ansible_host" | "ansible_ssh_host" => Meaning::Setting("hostname"),
        "ansible_port" | "ansible_ssh_port" => Meaning::Setting("port"),
        "ansible_user" | "ansible_ssh_user" => Meaning::Setting("remote_user"),
        "ansible_ssh_private_key_file" | "ansible_private_key_file" => {
            Meaning::Setting("identity_file")
        }
        "ansible_ssh_common_args" | "ansible_ssh_extra_args" | "ansible_connection" => {
            Meaning::Special
        }
        "ansible_group_priority" => Meaning::Used,
        key if key.starts_with("ansible_") => Meaning::Unused,
        _ => Meaning::Own,
    }
}

/// A merged variable: its value, where it was set, and the name it was set under.
struct Merged {
    value: Value,
    place: Place,
    written: String,
}

pub(super) fn hosts(model: Model) -> Result<Inventory, InventoryError> {
    let depths = depths(&model)?;
    let parents = parents(&model);
    let priority = |group: &str| -> i64 {
        model
            .find_group(group)
            .and_then(|g| {
                g.vars
                    .iter()
                    .rev()
                    .find(|v| v.key == "ansible_group_priority")
            })
            .and_then(|v| match &v.value {
                Value::Int(i) => Some(*i),
                Value::Text(t) => t.parse().ok(),
                _ => None,
            })
            .unwrap_or(1)
    };
    let mut unused: BTreeMap<(Place, String), Vec<String>> = BTreeMap::new();
    let mut hosts = Vec::new();
    for entry in &model.hosts {
        // Its groups and their ancestors.
        let mut groups: Vec<String> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut queue: Vec<String> = entry.groups.clone();
        while let Some(group) = queue.pop() {
            if !seen.insert(group.clone()) {
                continue;
            }
            queue.extend(parents.get(&group).cloned().unwrap_or_default());
            groups.push(group);
        }
        if groups.iter().any(|g| g != "ungrouped" && g != "all") {
            groups.retain(|g| g != "ungrouped");
        }
        if !groups.iter().any(|g| g == "all") {
            groups.push("all".to_string());
        }
        groups.sort_by_key(|g| (depths.get(g).copied().unwrap_or(1), priority(g), g.clone()));

        let mut merged: BTreeMap<String, Merged> = BTreeMap::new();
        let definitions = groups
            .iter()
            .filter_map(|g| model.find_group(g))
            .flat_map(|g| g.vars.iter())
            .chain(entry.vars.iter());
        for var in definitions {
            check_key(&var.key, &var.place)?;
            let key = match meaning(&var.key) {
                Meaning::Setting(setting) => setting.to_string(),
                Meaning::Own | Meaning::Special => var.key.clone(),
                Meaning::Used => continue,
                Meaning::Unused => {
                    unused
                        .entry((var.place.clone(), var.key.clone()))
                        .or_default()
                        .push(entry.name.clone());
                    continue;
                }
            };
            merged.insert(
                key,
                Merged {
                    value: var.value.clone(),
                    place: var.place.clone(),
                    written: var.key.clone(),
                },
            );
        }
        hosts.push(host(entry, &groups, merged)?);
    }
    let mut warnings = model.warnings;
    for ((place, key), names) in unused {
        let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
        let more = match names.len().saturating_sub(3) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        warnings.push(format!(
            "{place}: `{key}` is not used by zdd (host{} {}{more})",
            if names.len() == 1 { "" } else { "s" },
            shown.join(", ")
        ));
    }
    Ok(Inventory { hosts, warnings })
}

/// One host from its merged variables.
fn host(
    entry: &super::HostEntry,
    groups: &[String],
    mut merged: BTreeMap<String, Merged>,
) -> Result<Host, InventoryError> {
    check_name(&entry.name, "host name", &entry.place)?;
    let mut local = false;
    if let Some(connection) = merged.remove("ansible_connection") {
        match connection.value.to_string().as_str() {
            "local" => local = true,
            "ssh" | "smart" | "paramiko" => {}
            other => {
                return Err(InventoryError::new(
                    &connection.place,
                    format!(
                        "the host `{}` has `ansible_connection={other}`: zdd connects over SSH, or locally (`local`)",
                        entry.name
                    ),
                ))
            }
        }
    }
    let mut config: BTreeMap<String, Dynamic> = BTreeMap::new();
    let mut sources: BTreeMap<String, String> = BTreeMap::new();

    // `ssh_arguments`: the file's own, then the common arguments, then the extra ones.
    let mut arguments: Option<(Vec<String>, Vec<String>)> = None;
    for key in [
        "ssh_arguments",
        "ansible_ssh_common_args",
        "ansible_ssh_extra_args",
    ] {
        let Some(found) = merged.remove(key) else {
            continue;
        };
        let words = match &found.value {
            Value::List(items) => items.iter().map(Value::to_string).collect(),
            Value::Null => Vec::new(),
            Value::Text(text) => shlex::split(text).ok_or_else(|| {
                InventoryError::new(
                    &found.place,
                    format!(
                        "`{key}` of `{}` has an unclosed quote: `{text}`",
                        entry.name
                    ),
                )
            })?,
            other => vec![other.to_string()],
        };
        let (all, places) = arguments.get_or_insert_with(Default::default);
        all.extend(words);
        places.push(source(&found));
    }
    if let Some((words, places)) = arguments {
        let list: Array = words.into_iter().map(Dynamic::from).collect();
        config.insert("ssh_arguments".into(), Dynamic::from_array(list));
        sources.insert("ssh_arguments".into(), places.join(", "));
    }

    let mut roles: Vec<String> = groups
        .iter()
        .filter(|g| *g != "all" && *g != "ungrouped")
        .cloned()
        .collect();
    // Parents after the groups the host is listed in, each in the order the file declares.
    roles.sort_by_key(|g| !entry.groups.contains(g));
    if let Some(extra) = merged.remove("roles") {
        let names = match &extra.value {
            Value::List(items) => items.iter().map(Value::to_string).collect(),
            other => vec![other.to_string()],
        };
        for name in names {
            if !roles.contains(&name) {
                roles.push(name);
            }
        }
    }
    if !roles.is_empty() {
        let listed: Vec<String> = entry
            .listed
            .iter()
            .filter(|(g, _)| g != "ungrouped")
            .map(|(_, place)| place.to_string())
            .collect();
        sources.insert("roles".into(), listed.join(", "));
        let list: Array = roles.into_iter().map(Dynamic::from).collect();
        config.insert("roles".into(), Dynamic::from_array(list));
    }

    for (key, found) in merged {
        let place = &found.place;
        if COMPUTED_KEYS.contains(&key.as_str()) {
            return Err(InventoryError::new(
                place,
                format!(
                    "`{key}` is computed by zdd and cannot be set (host `{}`)",
                    entry.name
                ),
            )
            .hint("zdd computes it from `deploy_path` and the release it makes"));
        }
        let value = match (key.as_str(), &found.value) {
            (_, Value::Null) => continue,
            ("port", value) => {
                let port = match value {
                    Value::Int(i) => Some(*i),
                    Value::Text(t) => t.trim().parse().ok(),
                    _ => None,
                };
                match port.filter(|p| (1..=65535).contains(p)) {
                    Some(port) => Dynamic::from(port),
                    None => {
                        return Err(InventoryError::new(
                            place,
                            format!(
                                "the port of `{}` is `{value}`: a port is a number from 1 to 65535",
                                entry.name
                            ),
                        ))
                    }
                }
            }
            ("hostname", value) => {
                let text = value.to_string();
                check_name(&text, "hostname", place)?;
                Dynamic::from(text)
            }
            ("remote_user", value) => {
                let text = value.to_string();
                let plain = !text.is_empty()
                    && !text.starts_with('-')
                    && text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c));
                if !plain {
                    return Err(InventoryError::new(
                        place,
                        format!("the user of `{}` is `{}`: a user name is letters, digits, `.`, `_`, `-`, `@`, not starting with `-`", entry.name, text.escape_debug()),
                    ));
                }
                Dynamic::from(text)
            }
            ("identity_file", value) => {
                let text = value.to_string();
                if text.starts_with('-') || text.chars().any(char::is_control) {
                    return Err(InventoryError::new(
                        place,
                        format!("the key file of `{}` is `{}`: a path cannot start with `-` or hold control characters", entry.name, text.escape_debug()),
                    ));
                }
                Dynamic::from(text)
            }
            (_, value) => dynamic(&key, value, place, &entry.name)?,
        };
        sources.insert(key.clone(), source(&found));
        config.insert(key, value);
    }
    Ok(Host {
        name: entry.name.clone(),
        local,
        config,
        sources,
    })
}

/// Where a merged value came from: its place, and the variable it was written as when that is
/// not the setting's name (`hosts.ini:3 ([web:vars]), ansible_user`).
fn source(found: &Merged) -> String {
    let mapped = meaning(&found.written) != Meaning::Own;
    match (&found.place.context, mapped) {
        (_, false) => found.place.to_string(),
        (Some(context), true) => Place {
            context: Some(format!("{context}, {}", found.written)),
            ..found.place.clone()
        }
        .to_string(),
        (None, true) => Place {
            context: Some(found.written.clone()),
            ..found.place.clone()
        }
        .to_string(),
    }
}

/// A value as a setting: text, numbers, booleans, lists of them.
fn dynamic(key: &str, value: &Value, place: &Place, host: &str) -> Result<Dynamic, InventoryError> {
    Ok(match value {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => Dynamic::from(*b),
        Value::Int(i) => Dynamic::from(*i),
        Value::Float(x) => Dynamic::from(*x),
        Value::Text(t) => Dynamic::from(t.clone()),
        Value::List(items) => {
            let list: Result<Array, _> = items
                .iter()
                .map(|item| dynamic(key, item, place, host))
                .collect();
            Dynamic::from_array(list?)
        }
        Value::Map(_) => {
            return Err(InventoryError::new(
                place,
                format!("`{key}` of `{host}` is a map (`{value}`): zdd's settings are text, numbers, booleans or lists"),
            )
            .hint("set it in the recipe instead, or as separate variables"))
        }
        Value::Encrypted => {
            return Err(InventoryError::new(
                place,
                format!("`{key}` of `{host}` is encrypted with ansible-vault: zdd cannot read it"),
            )
            .hint(format!("give it to zdd another way: `-o {key}=...` from your secret store")))
        }
    })
}

/// A host name or hostname: letters, digits, `.`, `-`, `_`, `:` (IPv6), `%` (a zone), not
/// starting with `-` (ssh would read an option).
fn check_name(text: &str, what: &str, place: &Place) -> Result<(), InventoryError> {
    let plain = !text.is_empty()
        && !text.starts_with('-')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:%".contains(c));
    if plain {
        return Ok(());
    }
    Err(InventoryError::new(
        place,
        format!(
            "the {what} `{}` is not a plain name: letters, digits, `.`, `-`, `_`, `:`, not starting with `-`",
            text.escape_debug()
        ),
    )
    .hint("a name with spaces, quotes or shell characters, or one that starts with `-`, is refused before anything runs"))
}

fn check_key(key: &str, place: &Place) -> Result<(), InventoryError> {
    if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InventoryError::new(
            place,
            format!("`{}` is not a variable name", key.escape_debug()),
        ));
    }
    Ok(())
}

/// Each group's parents (a group no one lists is a child of `all`).
fn parents(model: &Model) -> HashMap<String, Vec<String>> {
    let mut parents: HashMap<String, Vec<String>> = HashMap::new();
    for group in &model.groups {
        for child in &group.children {
            parents
                .entry(child.clone())
                .or_default()
                .push(group.name.clone());
        }
    }
    for group in &model.groups {
        if group.name != "all" {
            parents
                .entry(group.name.clone())
                .or_insert_with(|| vec!["all".to_string()]);
        }
    }
    parents
}

/// Each group's depth: `all` 0, a group one more than its deepest parent. A cycle is an error.
/// Walked with a stack of its own, not by recursion: a chain of groups as long as the file
/// allows is read, not a stack overflow.
fn depths(model: &Model) -> Result<HashMap<String, usize>, InventoryError> {
    let parents = parents(model);
    let no_parents: Vec<String> = Vec::new();
    let mut depths: HashMap<String, usize> = HashMap::new();
    depths.insert("all".into(), 0);
    for group in &model.groups {
        if depths.contains_key(&group.name) {
            continue;
        }
        // The groups being visited, each with the index of its next parent to look at.
        let mut path: Vec<(&str, usize)> = vec![(group.name.as_str(), 0)];
        let mut on_path: HashSet<&str> = HashSet::from([group.name.as_str()]);
        while let Some((name, next)) = path.last().copied() {
            let of = parents.get(name).unwrap_or(&no_parents);
            match of.get(next) {
                None => {
                    let depth = of
                        .iter()
                        .map(|parent| depths.get(parent).copied().unwrap_or(0) + 1)
                        .max()
                        .unwrap_or(0);
                    depths.insert(name.to_string(), depth);
                    on_path.remove(name);
                    path.pop();
                }
                Some(parent) => {
                    if let Some(last) = path.last_mut() {
                        last.1 += 1;
                    }
                    if depths.contains_key(parent) {
                        continue;
                    }
                    if on_path.contains(parent.as_str()) {
                        let mut cycle: Vec<&str> = path.iter().map(|(g, _)| *g).collect();
                        cycle.push(parent);
                        return Err(InventoryError::new(
                            &group.place,
                            format!(
                                "the group `{}` is its own ancestor: {}",
                                group.name,
                                cycle.join(" is a child of ")
                            ),
                        ));
                    }
                    on_path.insert(parent);
                    path.push((parent, 0));
                }
            }
        }
    }
    Ok(depths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inventory(text: &str) -> Inventory {
        hosts(super::super::ini::parse(text, "hosts.ini").unwrap()).unwrap()
    }

    fn error(text: &str) -> String {
        hosts(super::super::ini::parse(text, "hosts.ini").unwrap())
            .unwrap_err()
            .to_string()
    }

    fn setting(inventory: &Inventory, host: &str, key: &str) -> String {
        let host = inventory.hosts.iter().find(|h| h.name == host).unwrap();
        host.config
            .get(key)
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into())
    }

    fn source(inventory: &Inventory, host: &str, key: &str) -> String {
        let host = inventory.hosts.iter().find(|h| h.name == host).unwrap();
        host.sources.get(key).cloned().unwrap_or_default()
    }

    const FLEET: &str = "\
[web]
web1 ansible_host=10.0.0.1 color=host
web2
[apache]
web2 ansible_port=2222
[web:children]
apache
[web:vars]
color=web
ansible_user=deploy
[apache:vars]
color=apache
[all:vars]
color=all
keep_releases=3
ansible_ssh_common_args='-F /etc/ssh/zdd -o ConnectTimeout=5'
ansible_ssh_extra_args=-v
ansible_python_interpreter=/usr/bin/python3
";

    #[test]
    fn variables_merge_with_ansible_precedence() {
        let inventory = inventory(FLEET);
        // host > child group > parent group > all
        assert_eq!(setting(&inventory, "web1", "color"), "host");
        assert_eq!(setting(&inventory, "web2", "color"), "apache");
        assert_eq!(setting(&inventory, "web1", "keep_releases"), "3");
        assert_eq!(source(&inventory, "web1", "color"), "hosts.ini:2");
        assert_eq!(
            source(&inventory, "web2", "color"),
            "hosts.ini:12 ([apache:vars])"
        );
    }

    #[test]
    fn ansible_variables_map_to_zdd_settings() {
        let inventory = inventory(FLEET);
        assert_eq!(setting(&inventory, "web1", "hostname"), "10.0.0.1");
        assert_eq!(
            source(&inventory, "web1", "hostname"),
            "hosts.ini:2 (ansible_host)"
        );
        assert_eq!(setting(&inventory, "web2", "port"), "2222");
        assert_eq!(setting(&inventory, "web2", "remote_user"), "deploy");
        assert_eq!(
            source(&inventory, "web2", "remote_user"),
            "hosts.ini:10 ([web:vars], ansible_user)"
        );
        assert_eq!(
            setting(&inventory, "web1", "ssh_arguments"),
            r#"["-F", "/etc/ssh/zdd", "-o", "ConnectTimeout=5", "-v"]"#
        );
        assert!(!inventory.hosts[0]
            .config
            .contains_key("ansible_python_interpreter"));
        assert_eq!(
            inventory.warnings,
            ["hosts.ini:18 ([all:vars]): `ansible_python_interpreter` is not used by zdd (hosts web1, web2)"]
        );
    }

    #[test]
    fn groups_and_their_parents_are_roles() {
        let inventory = inventory(FLEET);
        assert_eq!(setting(&inventory, "web1", "roles"), r#"["web"]"#);
        assert_eq!(setting(&inventory, "web2", "roles"), r#"["web", "apache"]"#);
        assert_eq!(
            source(&inventory, "web2", "roles"),
            "hosts.ini:3, hosts.ini:5"
        );
        let ungrouped = self::inventory("solo\n");
        assert_eq!(setting(&ungrouped, "solo", "roles"), "-");
    }

    #[test]
    fn local_connection() {
        let inventory = inventory("here ansible_connection=local\nthere ansible_connection=ssh\n");
        assert!(inventory.hosts[0].local);
        assert!(!inventory.hosts[1].local);
        assert_eq!(
            error("box ansible_connection=docker\n"),
            "hosts.ini:1: the host `box` has `ansible_connection=docker`: zdd connects over SSH, or locally (`local`)"
        );
    }

    #[test]
    fn hostile_values_are_refused() {
        assert_eq!(
            error("web1 ansible_host=-oProxyCommand=evil\n"),
            "hosts.ini:1: the hostname `-oProxyCommand=evil` is not a plain name: letters, digits, `.`, `-`, `_`, `:`, not starting with `-`"
        );
        assert_eq!(
            error("web1 ansible_host='a;b'\n"),
            "hosts.ini:1: the hostname `a;b` is not a plain name: letters, digits, `.`, `-`, `_`, `:`, not starting with `-`"
        );
        assert_eq!(
            error("-web1\n"),
            "hosts.ini:1: the host name `-web1` is not a plain name: letters, digits, `.`, `-`, `_`, `:`, not starting with `-`"
        );
        assert_eq!(
            error("web1 ansible_port=70000\n"),
            "hosts.ini:1: the port of `web1` is `70000`: a port is a number from 1 to 65535"
        );
        assert_eq!(
            error("web1 ansible_user='root -x'\n"),
            "hosts.ini:1: the user of `web1` is `root -x`: a user name is letters, digits, `.`, `_`, `-`, `@`, not starting with `-`"
        );
        assert_eq!(
            error("web1 release_path=/tmp\n"),
            "hosts.ini:1: `release_path` is computed by zdd and cannot be set (host `web1`)"
        );
    }

    #[test]
    fn a_cycle_of_groups_is_an_error() {
        assert_eq!(
            error("[a:children]\nb\n[b:children]\na\n"),
            "hosts.ini:1: the group `a` is its own ancestor: a is a child of b is a child of a"
        );
    }

    #[test]
    fn priority_orders_groups_of_one_depth() {
        let text = "[a]\nh\n[b]\nh\n[a:vars]\nx=a\n[b:vars]\nx=b\n";
        assert_eq!(setting(&inventory(text), "h", "x"), "b");
        let text = "[a]\nh\n[b]\nh\n[a:vars]\nx=a\nansible_group_priority=5\n[b:vars]\nx=b\n";
        assert_eq!(setting(&inventory(text), "h", "x"), "a");
    }

    #[test]
    fn a_long_chain_of_groups_is_walked_without_recursion() {
        // Deeper than a test thread's stack would allow one frame a group.
        const DEPTH: usize = 20_000;
        let mut text = String::from("[g0]\nh1\n");
        for n in 1..=DEPTH {
            text.push_str(&format!("[g{n}:children]\ng{}\n", n - 1));
        }
        text.push_str(&format!("[g{DEPTH}:vars]\nx=top\n[g0:vars]\nx=bottom\n"));
        let inventory = inventory(&text);
        assert_eq!(setting(&inventory, "h1", "x"), "bottom");
        let host = &inventory.hosts[0];
        assert_eq!(host.roles().len(), DEPTH + 1);
        assert_eq!(host.roles()[0], "g0");
        let cycle = format!("{text}[g0:children]\ng{DEPTH}\n");
        assert!(
            error(&cycle).contains("is its own ancestor"),
            "{}",
            error(&cycle)
        );
    }
}
