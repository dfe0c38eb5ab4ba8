//! Ansible's INI inventory, as its `ini` plugin reads it: `[group]` sections of host lines
//! (`host key=value ...`, words split as a shell would, `#` comments), `[group:vars]`
//! (`key=value`, one a line), `[group:children]` (group names); lines before any section are
//! `ungrouped` hosts; `#` and `;` start comment lines. Values are typed as Python's
//! `literal_eval` types them (Ansible's `_parse_value`): `22` a number, `True`/`true` a
//! boolean, `'quoted'` a string, anything else the text as written.

use super::{expand_pattern, InventoryError, Model, Place, Value, Var};

/// The kinds of section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Hosts,
    Vars,
    Children,
}

pub(super) fn parse(text: &str, file: &str) -> Result<Model, InventoryError> {
    let mut model = Model::new(file);
    let mut group = "ungrouped".to_string();
    let mut section = Section::Hosts;
    // Groups named before they are declared: `[x:vars]` and `[y:children]` entries, checked
    // at the end (as Ansible does: a group is declared by `[x]` or `[x:children]`).
    let mut pending: Vec<(String, Place, &'static str)> = Vec::new();
    let mut declared: std::collections::HashSet<String> =
        ["all".to_string(), "ungrouped".to_string()].into();

    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        let place = Place::at(file, Some(number));
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let error = |message: String| InventoryError::new(&place, message);
        if let Some((name, kind)) = section_header(line).map_err(|why| {
            error(why).hint("a section is `[group]`, `[group:vars]` or `[group:children]`")
        })? {
            group = name;
            section = kind;
            if kind != Section::Vars {
                declared.insert(group.clone());
            }
            let context = match kind {
                Section::Hosts => format!("[{group}]"),
                Section::Vars => format!("[{group}:vars]"),
                Section::Children => format!("[{group}:children]"),
            };
            if kind == Section::Vars {
                pending.push((group.clone(), place.clone().within(context), "vars"));
            }
            model.group(&group, &place);
            continue;
        }
        match section {
            Section::Hosts => host_line(&mut model, line, &group, &place)?,
            Section::Vars => {
                let Some((key, value)) = line.split_once('=') else {
                    return Err(error(format!("`{line}` is not `key=value`")).hint(format!(
                        "a `[{group}:vars]` line sets one variable: `key=value`"
                    )));
                };
                let key = checked_key(key.trim(), &place)?;
                let place = place.clone().within(format!("[{group}:vars]"));
                model.group(&group, &place).vars.push(Var {
                    key,
                    value: value_of(value.trim()),
                    place,
                });
            }
            Section::Children => {
                let child = line.split(['#', ';']).next().unwrap_or("").trim();
                if child.is_empty() || child.contains(char::is_whitespace) || child.contains(':') {
                    return Err(error(format!("`{line}` is not a group name"))
                        .hint(format!("a `[{group}:children]` line names one group")));
                }
                let child_place = place.clone().within(format!("[{group}:children]"));
                pending.push((child.to_string(), child_place.clone(), "children"));
                model.add_child(&group, child, &child_place);
            }
        }
    }
    for (name, place, kind) in pending {
        if declared.contains(&name) {
            continue;
        }
        let message = match kind {
            "vars" => format!(
                "`[{name}:vars]` sets variables of the group `{name}`, which is not declared"
            ),
            _ => format!("the group `{name}` is listed as a child but not declared"),
        };
        return Err(InventoryError::new(&place, message).hint(format!(
            "declare it with a `[{name}]` section (it may be empty), as Ansible requires"
        )));
    }
    Ok(model)
}

/// `[name]`, `[name:vars]`, `[name:children]`; `Ok(None)` for a line that is not a section
/// (a host line, `[::1]:22` included).
fn section_header(line: &str) -> Result<Option<(String, Section)>, String> {
    let Some(inside) = line.strip_prefix('[') else {
        return Ok(None);
    };
    let Some(close) = inside.find(']') else {
        return Err(format!("the section `{line}` has no closing `]`"));
    };
    let (name, rest) = (&inside[..close], inside[close + 1..].trim());
    let (group, kind) = match name.split_once(':') {
        Some((group, kind)) => (group, Some(kind)),
        None => (name, None),
    };
    // An IPv6 address (`[::1]:22`) is a host line.
    if group.is_empty() && kind.is_some_and(|k| k.starts_with(':') || k.contains(':')) {
        return Ok(None);
    }
    if !rest.is_empty() && !rest.starts_with('#') && !rest.starts_with(';') {
        return Err(format!("the section `{line}` has text after its `]`"));
    }
    if group.is_empty() || group.contains(char::is_whitespace) {
        return Err(format!(
            "the section `{line}` must name a group without spaces"
        ));
    }
    let kind = match kind {
        None | Some("hosts") => Section::Hosts,
        Some("vars") => Section::Vars,
        Some("children") => Section::Children,
        Some(other) => {
            return Err(format!(
                "the section `{line}` has the unknown type `{other}`"
            ))
        }
    };
    Ok(Some((group.to_string(), kind)))
}

/// `host[:port] key=value ...`
fn host_line(
    model: &mut Model,
    line: &str,
    group: &str,
    place: &Place,
) -> Result<(), InventoryError> {
    let words = shlex::split(line).ok_or_else(|| {
        InventoryError::new(place, format!("`{line}` has an unclosed quote"))
            .hint("close the quote, or quote the value as a whole: `key=\"a b\"`")
    })?;
    let Some((pattern, assignments)) = words.split_first() else {
        return Ok(());
    };
    if pattern == "---" {
        return Err(
            InventoryError::new(place, "`---` starts a YAML document, not an INI line")
                .hint("name a YAML inventory `.yml` or `.yaml`"),
        );
    }
    let (names, port) = expand_pattern(pattern, place)?;
    model.room_for(&names, place)?;
    let mut vars = Vec::new();
    if let Some(port) = port {
        vars.push(Var {
            key: "ansible_port".to_string(),
            value: Value::Int(port.into()),
            place: place.clone(),
        });
    }
    for word in assignments {
        let Some((key, value)) = word.split_once('=') else {
            return Err(InventoryError::new(
                place,
                format!("`{word}` after the host `{pattern}` is not `key=value`"),
            )
            .hint(
                "a host line is `host key=value ...`; quote a value with spaces: `key=\"a b\"`",
            ));
        };
        vars.push(Var {
            key: checked_key(key, place)?,
            value: value_of(value),
            place: place.clone(),
        });
    }
    for name in names {
        model
            .host(&name, group, place)
            .vars
            .extend(vars.iter().cloned());
    }
    Ok(())
}

fn checked_key(key: &str, place: &Place) -> Result<String, InventoryError> {
    if key.is_empty() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(
            InventoryError::new(place, format!("`{key}` is not a variable name"))
                .hint("a variable is `name=value`, the name without spaces"),
        );
    }
    Ok(key.to_string())
}

/// A value as Python's `literal_eval` reads it, else the text as written. A `#` comment after
/// a literal is dropped (as Python's tokenizer does); after plain text it is kept, as Ansible
/// keeps it.
pub(super) fn value_of(text: &str) -> Value {
    if let Some(value) = literal(text) {
        return value;
    }
    let mut quote = None;
    for (at, c) in text.char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') => {
                if let Some(value) = literal(text[..at].trim()) {
                    return value;
                }
                break;
            }
            _ => {}
        }
    }
    Value::Text(text.to_string())
}

fn literal(text: &str) -> Option<Value> {
    let text = text.trim();
    match text {
        "True" | "true" => return Some(Value::Bool(true)),
        "False" | "false" => return Some(Value::Bool(false)),
        "None" => return Some(Value::Null),
        _ => {}
    }
    if let Some(inner) = quoted(text) {
        return Some(Value::Text(inner));
    }
    if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
        let items = split_items(inner)?;
        return items
            .iter()
            .map(|item| literal(item))
            .collect::<Option<Vec<_>>>()
            .map(Value::List);
    }
    number(text)
}

/// A decimal number as Python writes one: `01` is not one (Python refuses it).
pub(super) fn number(text: &str) -> Option<Value> {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() {
        return None;
    }
    if digits.chars().all(|c| c.is_ascii_digit()) {
        if digits.len() > 1 && digits.starts_with('0') {
            return None;
        }
        return text.trim_start_matches('+').parse().ok().map(Value::Int);
    }
    let float_chars = digits
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'));
    if float_chars && digits.chars().any(|c| c.is_ascii_digit()) {
        return text
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite())
            .map(Value::Float);
    }
    None
}

/// `'text'` or `"text"`, with `\\`, `\'`, `\"`, `\n`, `\t` unescaped.
fn quoted(text: &str) -> Option<String> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = text.strip_prefix(quote)?.strip_suffix(quote)?;
    if text.len() < 2 {
        return None;
    }
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                other => out.push(other),
            },
            c if c == quote => return None,
            c => out.push(c),
        }
    }
    Some(out)
}

/// The items of a list literal, split at commas outside quotes.
fn split_items(inner: &str) -> Option<Vec<String>> {
    let mut items = Vec::new();
    let mut current = String::new();
    let mut quote = None;
    for c in inner.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                current.push(c);
            }
            (Some(q), c) if c == q => {
                quote = None;
                current.push(c);
            }
            (None, ',') => items.push(std::mem::take(&mut current)),
            (None, '[' | ']' | '{' | '}') => return None,
            _ => current.push(c),
        }
    }
    if quote.is_some() {
        return None;
    }
    // A trailing comma (`[1, 2,]`) adds no item.
    if !current.trim().is_empty() {
        items.push(current);
    }
    Some(items.into_iter().map(|i| i.trim().to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Model {
        parse(text, "hosts.ini").unwrap()
    }

    fn error(text: &str) -> String {
        parse(text, "hosts.ini").unwrap_err().to_string()
    }

    #[test]
    fn values_are_typed_as_python_literals() {
        assert_eq!(value_of("22"), Value::Int(22));
        assert_eq!(value_of("-3"), Value::Int(-3));
        assert_eq!(value_of("0755"), Value::Text("0755".into()));
        assert_eq!(value_of("1.5"), Value::Float(1.5));
        assert_eq!(value_of("true"), Value::Bool(true));
        assert_eq!(value_of("False"), Value::Bool(false));
        assert_eq!(value_of("'42'"), Value::Text("42".into()));
        assert_eq!(value_of("\"a b\""), Value::Text("a b".into()));
        assert_eq!(value_of("'03#pa33'"), Value::Text("03#pa33".into()));
        assert_eq!(value_of("8080 # the port"), Value::Int(8080));
        assert_eq!(
            value_of("plain text # kept"),
            Value::Text("plain text # kept".into())
        );
        assert_eq!(
            value_of("['a', 2]"),
            Value::List(vec![Value::Text("a".into()), Value::Int(2)])
        );
        assert_eq!(value_of("[a, b]"), Value::Text("[a, b]".into()));
        assert_eq!(
            value_of("/srv/{{alias}}"),
            Value::Text("/srv/{{alias}}".into())
        );
        assert_eq!(value_of("nan"), Value::Text("nan".into()));
    }

    #[test]
    fn sections_hosts_vars_and_children() {
        let model = parsed(
            "top1 ansible_host=10.0.0.9\n\
             ; a comment\n\
             [web]\n\
             web[1:2] http_port=80 # comment\n\
             web3:2222\n\
             [web:vars]\n\
             deploy_path = /srv/app dir\n\
             [prod:children]\n\
             web\n\
             [prod]\n",
        );
        let names: Vec<&str> = model.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["top1", "web1", "web2", "web3"]);
        assert_eq!(model.hosts[0].groups, ["ungrouped"]);
        assert_eq!(model.hosts[1].groups, ["web"]);
        assert_eq!(
            model.hosts[1].vars,
            [Var {
                key: "http_port".into(),
                value: Value::Int(80),
                place: Place::at("hosts.ini", Some(4)),
            }]
        );
        assert_eq!(model.hosts[3].vars[0].key, "ansible_port");
        assert_eq!(model.hosts[3].vars[0].value, Value::Int(2222));
        let web = model.groups.iter().find(|g| g.name == "web").unwrap();
        assert_eq!(web.vars[0].value, Value::Text("/srv/app dir".into()));
        assert_eq!(web.vars[0].place.to_string(), "hosts.ini:7 ([web:vars])");
        let prod = model.groups.iter().find(|g| g.name == "prod").unwrap();
        assert_eq!(prod.children, ["web"]);
    }

    #[test]
    fn malformed_lines_name_file_line_and_value() {
        assert_eq!(
            error("[web\nweb1\n"),
            "hosts.ini:1: the section `[web` has no closing `]`"
        );
        assert_eq!(
            error("[web]\nweb[01:x]\n"),
            "hosts.ini:2: the host range `web[01:x]` has `[01:x]`: `x` is neither a number nor a letter"
        );
        assert_eq!(
            error("[web]\nweb1 deploy_path\n"),
            "hosts.ini:2: `deploy_path` after the host `web1` is not `key=value`"
        );
        assert_eq!(
            error("[web:vars]\nkeep_releases\n[web]\n"),
            "hosts.ini:2: `keep_releases` is not `key=value`"
        );
        assert_eq!(
            error("[web:hosts2]\n"),
            "hosts.ini:1: the section `[web:hosts2]` has the unknown type `hosts2`"
        );
        assert_eq!(
            error("[web]\nweb1 key='open\n"),
            "hosts.ini:2: `web1 key='open` has an unclosed quote"
        );
        assert_eq!(
            error("[db:vars]\nx=1\n"),
            "hosts.ini:1: `[db:vars]` sets variables of the group `db`, which is not declared"
        );
        assert_eq!(
            error("[prod:children]\nweb\n"),
            "hosts.ini:2: the group `web` is listed as a child but not declared"
        );
    }

    #[test]
    fn ipv6_hosts_are_not_sections() {
        let model = parsed("[::1]:2200\n[web]\nfe80::1\n");
        assert_eq!(model.hosts[0].name, "::1");
        assert_eq!(model.hosts[0].vars[0].value, Value::Int(2200));
        assert_eq!(model.hosts[1].name, "fe80::1");
    }

    #[test]
    fn a_host_listed_twice_is_one_host_in_both_groups() {
        let model = parsed("[a]\nh1 x=1\n[b]\nh1 x=2 y=3\n");
        assert_eq!(model.hosts.len(), 1);
        assert_eq!(model.hosts[0].groups, ["a", "b"]);
        assert_eq!(model.hosts[0].vars.len(), 3);
    }
}
