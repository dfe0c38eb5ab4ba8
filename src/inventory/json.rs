//! The JSON of `ansible-inventory --list` (and of dynamic inventory scripts): each group a key
//! (`{"hosts": [...], "vars": {...}, "children": [...]}`, or a list of hosts), the hosts'
//! variables in `_meta.hostvars`. Checked by `serde_json` (its errors name line and column),
//! then read as YAML (JSON is YAML) for the line of each value.

use super::yaml::{self, Entry, Kind, Node};
use super::{InventoryError, Model, Place, Value};

pub(super) fn parse(text: &str, file: &str) -> Result<Model, InventoryError> {
    let checked: serde_json::Value = serde_json::from_str(text).map_err(|e| InventoryError {
        line: Some(e.line()),
        column: Some(e.column()),
        ..InventoryError::in_file(file, format!("is not valid JSON: {e}"))
    }
    .hint("a dynamic inventory prints the JSON of `ansible-inventory --list` on its standard output"))?;
    let root = yaml::tree(text, file).unwrap_or_else(|_| from_json(&checked));
    let mut model = Model::new(file);
    let Kind::Map(entries) = &root.kind else {
        return Err(InventoryError::in_file(
            file,
            format!("is {}, not an inventory: it must be an object of groups", root.described()),
        )
        .hint("`ansible-inventory --list` prints `{\"_meta\": {\"hostvars\": ...}, \"all\": {\"children\": [...]}, ...}`"));
    };
    let place = |line: usize| Place::at(file, (line > 0).then_some(line));
    for entry in entries.iter().filter(|e| e.key != "_meta") {
        let name = &entry.key;
        let group_place = place(entry.line);
        model.group(name, &group_place);
        let (hosts, children) = match &entry.node.kind {
            Kind::List(_) => (Some(&entry.node), None),
            Kind::Map(_) => {
                let fields = ["hosts", "vars", "children"];
                if let Kind::Map(keys) = &entry.node.kind {
                    for other in keys.iter().filter(|e| !fields.contains(&e.key.as_str())) {
                        model.warnings.push(format!(
                            "{}: the group `{name}` has `{}`, which is not `hosts`, `vars` or `children`: not used by zdd",
                            place(other.line),
                            other.key
                        ));
                    }
                }
                if let Some(vars) = entry.node.get("vars") {
                    let context = format!("group `{name}` vars");
                    let vars = yaml::variables(
                        vars,
                        &place(vars.line),
                        Some(&context),
                        &format!("`vars` of the group `{name}`"),
                    )?;
                    model.group(name, &group_place).vars.extend(vars);
                }
                (entry.node.get("hosts"), entry.node.get("children"))
            }
            Kind::Scalar(Value::Null) => (None, None),
            _ => {
                return Err(InventoryError::new(
                    &group_place,
                    format!(
                        "the group `{name}` is {}: a group is an object of `hosts`, `vars` and `children`, or a list of hosts",
                        entry.node.described()
                    ),
                ))
            }
        };
        let listed = names(hosts, name, "hosts", file)?;
        let all: Vec<String> = listed.iter().map(|(host, _)| host.clone()).collect();
        model.room_for(&all, &group_place)?;
        for (host, line) in listed {
            model.host(&host, name, &place(line));
        }
        for (child, line) in names(children, name, "children", file)? {
            model.add_child(name, &child, &place(line));
        }
    }
    let hostvars = root.get("_meta").and_then(|meta| meta.get("hostvars"));
    if let Some(Node {
        kind: Kind::Map(hosts),
        ..
    }) = hostvars
    {
        for Entry { key, line, node } in hosts {
            let host_place = place(*line);
            let vars = yaml::variables(
                node,
                &host_place,
                None,
                &format!("`_meta.hostvars` of `{key}`"),
            )?;
            model.room_for(std::slice::from_ref(key), &host_place)?;
            let entry = match model.find_host(key) {
                Some(entry) => entry,
                None => model.host(key, "ungrouped", &host_place),
            };
            entry.vars.extend(vars);
        }
    }
    Ok(model)
}

/// A list of names (`hosts`, `children`), with their lines.
fn names(
    node: Option<&Node>,
    group: &str,
    field: &str,
    file: &str,
) -> Result<Vec<(String, usize)>, InventoryError> {
    let Some(node) = node else {
        return Ok(Vec::new());
    };
    let wrong = |what: String| {
        InventoryError::new(
            &Place::at(file, (node.line > 0).then_some(node.line)),
            format!("`{field}` of the group `{group}` {what}: it must be a list of names"),
        )
    };
    match &node.kind {
        Kind::Scalar(Value::Null) => Ok(Vec::new()),
        Kind::List(items) => items
            .iter()
            .map(|item| match &item.kind {
                Kind::Scalar(Value::Text(name)) => Ok((name.clone(), item.line)),
                _ => Err(wrong(format!("holds {}", item.described()))),
            })
            .collect(),
        _ => Err(wrong(format!("is {}", node.described()))),
    }
}

/// The tree of a JSON value the YAML reader did not take, without lines.
fn from_json(value: &serde_json::Value) -> Node {
    let kind = match value {
        serde_json::Value::Null => Kind::Scalar(Value::Null),
        serde_json::Value::Bool(b) => Kind::Scalar(Value::Bool(*b)),
        serde_json::Value::Number(n) => Kind::Scalar(match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().unwrap_or_default()),
        }),
        serde_json::Value::String(s) => Kind::Scalar(Value::Text(s.clone())),
        serde_json::Value::Array(items) => Kind::List(items.iter().map(from_json).collect()),
        serde_json::Value::Object(map) => Kind::Map(
            map.iter()
                .map(|(key, value)| Entry {
                    key: key.clone(),
                    line: 0,
                    node: from_json(value),
                })
                .collect(),
        ),
    };
    Node { line: 0, kind }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansible_inventory_list_output() {
        let text = r#"{
    "_meta": {
        "hostvars": {
            "web1": {"ansible_host": "10.0.0.1", "deploy_path": "/srv/a"},
            "db1": {}
        }
    },
    "all": {"children": ["ungrouped", "web", "db"]},
    "web": {"hosts": ["web1"], "vars": {"keep_releases": 3}},
    "db": ["db1"]
}"#;
        let model = parse(text, "inventory.json").unwrap();
        let names: Vec<&str> = model.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web1", "db1"]);
        assert_eq!(model.hosts[0].groups, ["web"]);
        assert_eq!(model.hosts[1].groups, ["db"]);
        assert_eq!(model.hosts[0].vars[0].place.to_string(), "inventory.json:4");
        assert_eq!(model.hosts[0].vars[1].value, Value::Text("/srv/a".into()));
        let web = model.groups.iter().find(|g| g.name == "web").unwrap();
        assert_eq!(web.vars[0].value, Value::Int(3));
        assert_eq!(
            web.vars[0].place.to_string(),
            "inventory.json:9 (group `web` vars)"
        );
    }

    #[test]
    fn a_host_only_in_hostvars_is_ungrouped() {
        let model = parse(r#"{"_meta": {"hostvars": {"h": {"x": 1}}}}"#, "i.json").unwrap();
        assert_eq!(model.hosts[0].name, "h");
        assert_eq!(model.hosts[0].groups, ["ungrouped"]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let error = parse(
            "{\n  \"all\": {\n    \"hosts\": [\"a\",]\n  }\n}\n",
            "i.json",
        )
        .unwrap_err();
        assert_eq!(error.line, Some(3));
        assert!(error.message.starts_with("is not valid JSON"), "{error}");
        let error = parse("[1, 2]", "i.json").unwrap_err().to_string();
        assert_eq!(
            error,
            "i.json: is a list, not an inventory: it must be an object of groups"
        );
        let error = parse("{\"web\": {\"hosts\": [1]}}", "i.json")
            .unwrap_err()
            .to_string();
        assert_eq!(
            error,
            "i.json:1: `hosts` of the group `web` holds `1`: it must be a list of names"
        );
    }
}
