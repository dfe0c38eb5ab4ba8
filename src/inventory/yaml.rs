//! YAML read into a tree that keeps each node's line (`yaml-rust2`'s events and their marks),
//! scalars typed as Ansible's YAML loader types them; and Ansible's YAML inventory read from
//! that tree: top-level groups (`all:`), each with `hosts:` (host patterns, each with its
//! variables), `vars:` and `children:` (groups, nested).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::{expand_pattern, InventoryError, Model, Place, Value, Var};

/// A YAML node and the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    pub line: usize,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    Scalar(Value),
    List(Vec<Node>),
    /// Keys as text, in order; a key written twice keeps its last value.
    Map(Vec<Entry>),
}

/// A key of a map (as text, and its line) and its value.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Entry {
    pub key: String,
    pub line: usize,
    pub node: Node,
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.kind {
            Kind::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.node),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Scalar(Value::Null))
    }

    /// What the node is, for an error: "a list", "the text `x`".
    pub fn described(&self) -> String {
        match &self.kind {
            Kind::Scalar(Value::Null) => "empty".to_string(),
            Kind::Scalar(value) => format!("`{value}`"),
            Kind::List(_) => "a list".to_string(),
            Kind::Map(_) => "a map".to_string(),
        }
    }

    /// How many values it holds, itself included.
    fn size(&self) -> usize {
        match &self.kind {
            Kind::Scalar(_) => 1,
            Kind::List(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Kind::Map(entries) => 1 + entries.iter().map(|e| e.node.size()).sum::<usize>(),
        }
    }

    /// The node as a value (maps and lists included).
    pub fn value(&self) -> Value {
        match &self.kind {
            Kind::Scalar(value) => value.clone(),
            Kind::List(items) => Value::List(items.iter().map(Node::value).collect()),
            Kind::Map(entries) => Value::Map(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.node.value()))
                    .collect(),
            ),
        }
    }
}

/// How many values aliases may copy in all: far more than any inventory's anchors and `<<`
/// merges, far fewer than an "alias bomb" (anchors of lists of aliases of anchors ...), whose
/// copies would grow without bound in memory.
const MOST_COPIED: usize = 1_000_000;

/// Builds the tree from the parser's events.
#[derive(Default)]
struct Builder {
    /// Open collections: the node, and for a map the key waiting for its value.
    stack: Vec<(Node, Option<(String, usize)>)>,
    /// Each anchored node, and how many values it holds.
    anchors: HashMap<usize, (Node, usize)>,
    /// How many values aliases copied so far (at most [`MOST_COPIED`]).
    copied: usize,
    /// Anchor ids of the open collections.
    anchor_ids: Vec<usize>,
    root: Option<Node>,
    error: Option<(usize, String)>,
}

impl Builder {
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = node.size();
            self.anchors.insert(anchor, (node.clone(), size));
        }
        self.add(node);
    }

    /// The node an alias names, copied, unless the copies would pass [`MOST_COPIED`].
    fn alias(&mut self, anchor: usize, line: usize) {
        let Some((node, size)) = self.anchors.get(&anchor) else {
            self.fail(line, "an alias names an unknown anchor".to_string());
            return;
        };
        self.copied = self.copied.saturating_add(*size);
        if self.copied > MOST_COPIED {
            self.fail(
                line,
                format!(
                    "its aliases copy more than {MOST_COPIED} values: anchors of aliases nested \
                     this deep are refused (an \"alias bomb\")"
                ),
            );
            return;
        }
        let mut node = node.clone();
        node.line = line;
        self.add(node);
    }

    /// Keep the first error: the tree is not used once there is one.
    fn fail(&mut self, line: usize, message: String) {
        if self.error.is_none() {
            self.error = Some((line, message));
        }
    }

    /// A finished node goes into the open collection (as a key or a value), or is the root.
    fn add(&mut self, node: Node) {
        let Some((parent, key)) = self.stack.last_mut() else {
            if self.root.is_none() {
                self.root = Some(node);
            }
            return;
        };
        match &mut parent.kind {
            Kind::List(items) => items.push(node),
            Kind::Map(entries) => match key.take() {
                None => match &node.kind {
                    Kind::Scalar(value) => *key = Some((value.to_string(), node.line)),
                    _ => {
                        if self.error.is_none() {
                            self.error = Some((
                                node.line,
                                "a map key is itself a list or a map: keys are names".to_string(),
                            ));
                        }
                        *key = Some((String::new(), node.line));
                    }
                },
                Some((name, line)) => {
                    if name == "<<" {
                        merge_into(entries, node);
                    } else {
                        entries.retain(|e| e.key != name);
                        entries.push(Entry {
                            key: name,
                            line,
                            node,
                        });
                    }
                }
            },
            Kind::Scalar(_) => {}
        }
    }
}

/// `<<: *base`: the merged map's keys that the map does not set itself.
fn merge_into(entries: &mut Vec<Entry>, node: Node) {
    let sources = match node.kind {
        Kind::Map(_) => vec![node],
        Kind::List(items) => items,
        Kind::Scalar(_) => return,
    };
    for source in sources {
        if let Kind::Map(merged) = source.kind {
            for entry in merged {
                if !entries.iter().any(|e| e.key == entry.key) {
                    entries.push(entry);
                }
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(text, style, anchor, tag) => {
                let tag = tag.map(|t| t.suffix);
                let value = scalar(&text, style, tag.as_deref());
                self.push(
                    Node {
                        line,
                        kind: Kind::Scalar(value),
                    },
                    anchor,
                );
            }
            Event::SequenceStart(anchor, _) => {
                self.anchor_ids.push(anchor);
                self.stack.push((
                    Node {
                        line,
                        kind: Kind::List(Vec::new()),
                    },
                    None,
                ));
            }
            Event::MappingStart(anchor, _) => {
                self.anchor_ids.push(anchor);
                self.stack.push((
                    Node {
                        line,
                        kind: Kind::Map(Vec::new()),
                    },
                    None,
                ));
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((node, _)) = self.stack.pop() {
                    let anchor = self.anchor_ids.pop().unwrap_or(0);
                    self.push(node, anchor);
                }
            }
            Event::Alias(anchor) => self.alias(anchor, line),
            _ => {}
        }
    }
}

/// A scalar typed as Ansible's loader (YAML 1.1) types it: quoted is text; plain `yes`/`no`,
/// `true`/`false`, numbers, `~`/`null`/empty.
fn scalar(text: &str, style: TScalarStyle, tag: Option<&str>) -> Value {
    match tag {
        Some("vault") => return Value::Encrypted,
        Some("str") => return Value::Text(text.to_string()),
        _ => {}
    }
    if style != TScalarStyle::Plain {
        return Value::Text(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Value::Bool(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => {
            Value::Bool(false)
        }
        _ => {
            let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
            if let Some(hex) = digits.strip_prefix("0x") {
                if let Ok(n) = i64::from_str_radix(hex, 16) {
                    return Value::Int(if text.starts_with('-') { -n } else { n });
                }
            }
            super::ini::number(text).unwrap_or_else(|| Value::Text(text.to_string()))
        }
    }
}

/// Parse YAML text into a tree; a syntax error names its line and column.
pub(super) fn tree(text: &str, file: &str) -> Result<Node, InventoryError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser
        .load(&mut builder, false)
        .map_err(|e| InventoryError {
            line: Some(e.marker().line()),
            column: Some(e.marker().col() + 1),
            ..InventoryError::in_file(file, format!("is not valid YAML: {}", e.info()))
        })?;
    if let Some((line, message)) = builder.error {
        return Err(InventoryError {
            line: Some(line),
            ..InventoryError::in_file(file, message)
        });
    }
    Ok(builder.root.unwrap_or(Node {
        line: 1,
        kind: Kind::Scalar(Value::Null),
    }))
}

/// Ansible's YAML inventory.
pub(super) fn parse(root: &Node, file: &str) -> Result<Model, InventoryError> {
    let mut model = Model::new(file);
    let Kind::Map(groups) = &root.kind else {
        return Err(InventoryError {
            line: Some(root.line),
            ..InventoryError::in_file(
                file,
                format!(
                    "is {}, not an inventory: it must be a map of groups",
                    root.described()
                ),
            )
        }
        .hint(
            "an Ansible YAML inventory starts with `all:`, then `hosts:`, `vars:`, `children:`",
        ));
    };
    if let Some(plugin) = root.get("plugin") {
        return Err(InventoryError {
            line: Some(plugin.line),
            ..InventoryError::in_file(
                file,
                format!(
                    "configures the inventory plugin {}: zdd does not run plugins",
                    plugin.described()
                ),
            )
        }
        .hint(format!(
            "run it through Ansible: `-i '!ansible-inventory -i {file} --list'`"
        )));
    }
    for entry in groups {
        group(&mut model, &entry.key, entry.line, &entry.node, file)?;
    }
    Ok(model)
}

fn group(
    model: &mut Model,
    name: &str,
    line: usize,
    node: &Node,
    file: &str,
) -> Result<(), InventoryError> {
    let place = Place::at(file, Some(line));
    model.group(name, &place);
    if node.is_null() {
        return Ok(());
    }
    let Kind::Map(entries) = &node.kind else {
        return Err(InventoryError::new(
            &place,
            format!(
                "the group `{name}` is {}: a group is a map of `hosts`, `vars` and `children`",
                node.described()
            ),
        ));
    };
    for Entry {
        key,
        line,
        node: value,
    } in entries
    {
        let at = Place::at(file, Some(*line));
        match key.as_str() {
            "hosts" => {
                for Entry {
                    key: pattern,
                    line,
                    node: vars,
                } in shorthand_map(value, name, key, &at)?
                {
                    let host_place = Place::at(file, Some(line));
                    let (names, port) = expand_pattern(&pattern, &host_place)?;
                    model.room_for(&names, &host_place)?;
                    let mut defined = Vec::new();
                    if let Some(port) = port {
                        defined.push(Var {
                            key: "ansible_port".into(),
                            value: Value::Int(port.into()),
                            place: host_place.clone(),
                        });
                    }
                    defined.extend(variables(
                        &vars,
                        &host_place,
                        None,
                        &format!("host `{pattern}`"),
                    )?);
                    for host in names {
                        model
                            .host(&host, name, &host_place)
                            .vars
                            .extend(defined.iter().cloned());
                    }
                }
            }
            "vars" => {
                let context = format!("group `{name}` vars");
                let vars = variables(
                    value,
                    &at,
                    Some(&context),
                    &format!("`vars` of the group `{name}`"),
                )?;
                model.group(name, &at).vars.extend(vars);
            }
            "children" => {
                for child in shorthand_map(value, name, key, &at)? {
                    let child_place = Place::at(file, Some(child.line));
                    model.add_child(name, &child.key, &child_place);
                    group(model, &child.key, child.line, &child.node, file)?;
                }
            }
            other => {
                model.warnings.push(format!(
                    "{at}: the group `{name}` has `{other}`, which is not `hosts`, `vars` or `children`: not used by zdd"
                ));
            }
        }
    }
    Ok(())
}

/// A map (or a single name, which Ansible accepts for a map of one) of names to nodes.
fn shorthand_map(
    node: &Node,
    group: &str,
    key: &str,
    place: &Place,
) -> Result<Vec<Entry>, InventoryError> {
    match &node.kind {
        Kind::Map(entries) => Ok(entries.clone()),
        Kind::Scalar(Value::Null) => Ok(Vec::new()),
        Kind::Scalar(Value::Text(name)) => Ok(vec![Entry {
            key: name.clone(),
            line: node.line,
            node: Node {
                line: node.line,
                kind: Kind::Scalar(Value::Null),
            },
        }]),
        _ => Err(InventoryError::new(
            place,
            format!(
                "`{key}` of the group `{group}` is {}: it must be a map",
                node.described()
            ),
        )
        .hint(format!("write `{key}:` then one `name:` a line, indented"))),
    }
}

/// The variables of a map node (empty for null).
pub(super) fn variables(
    node: &Node,
    place: &Place,
    context: Option<&str>,
    what: &str,
) -> Result<Vec<Var>, InventoryError> {
    match &node.kind {
        Kind::Scalar(Value::Null) => Ok(Vec::new()),
        Kind::Map(entries) => Ok(entries
            .iter()
            .map(|entry| {
                let mut place = Place {
                    line: Some(entry.line),
                    ..place.clone()
                };
                place.context = context.map(str::to_string);
                Var {
                    key: entry.key.clone(),
                    value: entry.node.value(),
                    place,
                }
            })
            .collect()),
        _ => Err(InventoryError::new(
            place,
            format!(
                "{what} is {}: variables are a map of `name: value`",
                node.described()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Model {
        parse(&tree(text, "hosts.yml").unwrap(), "hosts.yml").unwrap()
    }

    #[test]
    fn the_tree_keeps_lines_and_types() {
        let root = tree("a: 1\nb:\n  - 'x'\n  - yes\nc: ~\nd: 0755\n", "t.yml").unwrap();
        assert_eq!(root.get("a").unwrap().kind, Kind::Scalar(Value::Int(1)));
        let b = root.get("b").unwrap();
        assert_eq!(b.line, 3);
        assert_eq!(
            b.value(),
            Value::List(vec![Value::Text("x".into()), Value::Bool(true)])
        );
        assert!(root.get("c").unwrap().is_null());
        assert_eq!(root.get("d").unwrap().value(), Value::Text("0755".into()));
    }

    #[test]
    fn anchors_and_merge_keys() {
        let root = tree(
            ".base: &base\n  port: 22\n  user: a\nh:\n  <<: *base\n  user: b\n",
            "t.yml",
        )
        .unwrap();
        let h = root.get("h").unwrap();
        assert_eq!(h.get("user").unwrap().value(), Value::Text("b".into()));
        assert_eq!(h.get("port").unwrap().value(), Value::Int(22));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let error = tree("all:\n  hosts:\n    web1: [\n", "hosts.yml").unwrap_err();
        assert_eq!(error.file, "hosts.yml");
        assert!(error.line.is_some());
        assert!(error.message.starts_with("is not valid YAML: "), "{error}");
        let error = tree("a: b: c\n", "hosts.yml").unwrap_err();
        assert_eq!(error.line, Some(1));
    }

    #[test]
    fn groups_hosts_vars_children() {
        let model = parsed(
            "all:\n  vars:\n    keep_releases: 3\n  hosts:\n    top1:\n  children:\n    web:\n      hosts:\n        web[1:2]:\n          http_port: 80\n        web3:2222:\n      vars:\n        deploy_path: /srv\n",
        );
        let names: Vec<&str> = model.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["top1", "web1", "web2", "web3"]);
        assert_eq!(model.hosts[1].groups, ["web"]);
        assert_eq!(model.hosts[1].vars[0].place.to_string(), "hosts.yml:10");
        assert_eq!(model.hosts[1].place.to_string(), "hosts.yml:9");
        let web = model.groups.iter().find(|g| g.name == "web").unwrap();
        assert_eq!(
            web.vars[0].place.to_string(),
            "hosts.yml:13 (group `web` vars)"
        );
        let all = model.groups.iter().find(|g| g.name == "all").unwrap();
        assert_eq!(all.children, ["web"]);
        assert_eq!(model.hosts[3].vars[0].value, Value::Int(2222));
    }

    #[test]
    fn unknown_shapes_are_errors() {
        let error = |text: &str| {
            parse(&tree(text, "hosts.yml").unwrap(), "hosts.yml")
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            error("- web1\n- web2\n"),
            "hosts.yml:1: is a list, not an inventory: it must be a map of groups"
        );
        assert_eq!(
            error("web: [web1, web2]\n"),
            "hosts.yml:1: the group `web` is a list: a group is a map of `hosts`, `vars` and `children`"
        );
        assert_eq!(
            error("all:\n  hosts:\n    - web1\n"),
            "hosts.yml:2: `hosts` of the group `all` is a list: it must be a map"
        );
        assert_eq!(
            error("plugin: aws_ec2\n"),
            "hosts.yml:1: configures the inventory plugin `aws_ec2`: zdd does not run plugins"
        );
    }

    #[test]
    fn an_alias_bomb_is_refused_before_it_fills_memory() {
        // Nine anchors, each a list of nine aliases of the one before: 9^9 values.
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let aliases = vec![format!("*a{}", level - 1); 9].join(", ");
            text.push_str(&format!("a{level}: &a{level} [{aliases}]\n"));
        }
        let error = tree(&text, "bomb.yml").unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "bomb.yml:7: its aliases copy more than {MOST_COPIED} values: anchors of aliases \
                 nested this deep are refused (an \"alias bomb\")"
            )
        );
        // The same anchors used a few times are read.
        let root = tree("a: &a [1, 2]\nb: [*a, *a]\n", "t.yml").unwrap();
        assert_eq!(root.get("b").unwrap().size(), 7);
    }
}
