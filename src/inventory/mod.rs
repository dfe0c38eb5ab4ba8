//! Inventories teams already keep, read as their own tools read them: Ansible's INI and YAML,
//! the JSON of `ansible-inventory --list` (from a file, or printed by a command: `!COMMAND`),
//! and Deployer's `hosts.yml`. Each format is parsed into one [`Model`] (groups, their vars
//! and children, hosts and their vars, each with the place it was written), and `mapping`
//! turns that into the registry's hosts: variables merged with Ansible's precedence
//! (`all` < parent group < child group < host), groups become roles, `ansible_*` connection
//! variables become zdd's settings, every other `ansible_*` variable is a warning. Every host
//! setting keeps where it came from (`Host::sources`).
//!
//! No side effects but reading the file, or running the dynamic inventory's command.

mod deployer;
mod ini;
mod json;
mod mapping;
mod yaml;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::registry::Host;
use crate::system::interrupt;
use crate::system::process::{self, Invocation};

/// The hosts an inventory describes, and what zdd did not use of it.
#[derive(Debug, Default)]
pub struct Inventory {
    pub hosts: Vec<Host>,
    /// "hosts.ini:3 ([all:vars]): `ansible_python_interpreter` is not used by zdd (...)".
    pub warnings: Vec<String>,
}

impl Inventory {
    /// Add `other`'s hosts: a host both name gets `other`'s settings over its own, and the
    /// roles of both (several `-i`, as Ansible merges several inventories).
    pub fn merge(&mut self, other: Inventory) {
        let mut index: HashMap<String, usize> = self
            .hosts
            .iter()
            .enumerate()
            .map(|(at, host)| (host.name.clone(), at))
            .collect();
        for host in other.hosts {
            match index.get(&host.name) {
                Some(at) => merge_host(&mut self.hosts[*at], host),
                None => {
                    index.insert(host.name.clone(), self.hosts.len());
                    self.hosts.push(host);
                }
            }
        }
        self.warnings.extend(other.warnings);
    }
}

/// `into`, with `host`'s settings over its own and the roles of both.
pub fn merge_host(into: &mut Host, host: Host) {
    let mut roles = into.roles();
    for role in host.roles() {
        if !roles.contains(&role) {
            roles.push(role);
        }
    }
    into.local = into.local || host.local;
    into.config.extend(host.config);
    into.sources.extend(host.sources);
    if !roles.is_empty() {
        let list: rhai::Array = roles.into_iter().map(rhai::Dynamic::from).collect();
        into.config
            .insert("roles".to_string(), rhai::Dynamic::from_array(list));
    }
}

/// Why an inventory could not be read: the file (or `!command`), the line and column where
/// that is known, what is wrong (naming the value), and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryError {
    pub file: String,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    pub hint: Option<String>,
}

impl InventoryError {
    fn new(place: &Place, message: impl Into<String>) -> InventoryError {
        InventoryError {
            file: place.file.clone(),
            line: place.line,
            column: None,
            message: message.into(),
            hint: None,
        }
    }

    fn in_file(file: &str, message: impl Into<String>) -> InventoryError {
        InventoryError {
            file: file.to_string(),
            line: None,
            column: None,
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> InventoryError {
        self.hint = Some(hint.into());
        self
    }

    /// `file:line:column`, as far as known.
    pub fn location(&self) -> String {
        match (self.line, self.column) {
            (Some(line), Some(column)) => format!("{}:{line}:{column}", self.file),
            (Some(line), None) => format!("{}:{line}", self.file),
            _ => self.file.clone(),
        }
    }
}

impl fmt::Display for InventoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location(), self.message)
    }
}

impl std::error::Error for InventoryError {}

/// A value as an inventory wrote it, before it becomes a setting.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<Value>),
    Map(Vec<(String, Value)>),
    /// `!vault |`: encrypted with ansible-vault; zdd cannot read it.
    Encrypted,
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Text(t) => f.write_str(t),
            Value::List(items) => {
                let items: Vec<String> = items.iter().map(Value::to_string).collect();
                write!(f, "[{}]", items.join(", "))
            }
            Value::Map(entries) => {
                let entries: Vec<String> =
                    entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                write!(f, "{{{}}}", entries.join(", "))
            }
            Value::Encrypted => f.write_str("!vault"),
        }
    }
}

/// Where something was written: `hosts.ini:12 ([web:vars])`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Place {
    pub file: String,
    pub line: Option<usize>,
    /// The section or group it belongs to, when that is not the host's own line.
    pub context: Option<String>,
}

impl Place {
    fn at(file: &str, line: Option<usize>) -> Place {
        Place {
            file: file.to_string(),
            line,
            context: None,
        }
    }

    fn within(mut self, context: impl Into<String>) -> Place {
        self.context = Some(context.into());
        self
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(context) = &self.context {
            write!(f, " ({context})")?;
        }
        Ok(())
    }
}

/// One variable definition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Var {
    pub key: String,
    pub value: Value,
    pub place: Place,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Group {
    pub name: String,
    pub vars: Vec<Var>,
    pub children: Vec<String>,
    pub place: Place,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostEntry {
    pub name: String,
    pub vars: Vec<Var>,
    /// The groups it is listed in (not their parents).
    pub groups: Vec<String>,
    /// Where it was first listed.
    pub place: Place,
    /// Every place it was listed (a group's line, for its role's source).
    pub listed: Vec<(String, Place)>,
}

/// What every format is parsed into: Ansible's model of groups and hosts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Model {
    pub file: String,
    /// In the order they were declared; `all` and `ungrouped` are always there.
    pub groups: Vec<Group>,
    /// In the order they were first listed.
    pub hosts: Vec<HostEntry>,
    pub warnings: Vec<String>,
    /// Where each group and host is in `groups` and `hosts`: an inventory of thousands of
    /// each is read in linear time.
    group_index: HashMap<String, usize>,
    host_index: HashMap<String, usize>,
}

/// The most hosts one inventory may name (ranges included): a hundred times the fleets zdd is
/// measured with, and a bound on what a typo (`web[0:9999]` on every line) costs to read.
pub(crate) const MOST_HOSTS: usize = 10_000;

impl Model {
    fn new(file: &str) -> Model {
        let group = |name: &str| Group {
            name: name.to_string(),
            vars: Vec::new(),
            children: Vec::new(),
            place: Place::at(file, None),
        };
        Model {
            file: file.to_string(),
            groups: vec![group("all"), group("ungrouped")],
            hosts: Vec::new(),
            warnings: Vec::new(),
            group_index: HashMap::from([("all".to_string(), 0), ("ungrouped".to_string(), 1)]),
            host_index: HashMap::new(),
        }
    }

    /// The group `name`, if it is declared.
    pub fn find_group(&self, name: &str) -> Option<&Group> {
        self.group_index.get(name).map(|at| &self.groups[*at])
    }

    /// The host `name`, if it is listed.
    fn find_host(&mut self, name: &str) -> Option<&mut HostEntry> {
        self.host_index.get(name).map(|at| &mut self.hosts[*at])
    }

    /// Whether `names` may be listed at `place`: an error once the inventory would name more
    /// than [`MOST_HOSTS`] hosts.
    fn room_for(&self, names: &[String], place: &Place) -> Result<(), InventoryError> {
        let new = names
            .iter()
            .filter(|name| !self.host_index.contains_key(*name))
            .count();
        if self.hosts.len() + new <= MOST_HOSTS {
            return Ok(());
        }
        Err(InventoryError::new(
            place,
            format!("the inventory names more than {MOST_HOSTS} hosts"),
        )
        .hint("check its ranges (`web[01:20]`); split a larger fleet into several inventories and deploy each with `-i`"))
    }

    /// The group `name`, declared at `place` if it is new.
    fn group(&mut self, name: &str, place: &Place) -> &mut Group {
        let index = match self.group_index.get(name) {
            Some(index) => *index,
            None => {
                self.group_index.insert(name.to_string(), self.groups.len());
                self.groups.push(Group {
                    name: name.to_string(),
                    vars: Vec::new(),
                    children: Vec::new(),
                    place: place.clone(),
                });
                self.groups.len() - 1
            }
        };
        &mut self.groups[index]
    }

    fn add_child(&mut self, parent: &str, child: &str, place: &Place) {
        self.group(child, place);
        let group = self.group(parent, place);
        if !group.children.iter().any(|c| c == child) {
            group.children.push(child.to_string());
        }
    }

    /// The host `name`, listed in `group` at `place`.
    fn host(&mut self, name: &str, group: &str, place: &Place) -> &mut HostEntry {
        let index = match self.host_index.get(name) {
            Some(index) => *index,
            None => {
                self.host_index.insert(name.to_string(), self.hosts.len());
                self.hosts.push(HostEntry {
                    name: name.to_string(),
                    vars: Vec::new(),
                    groups: Vec::new(),
                    place: place.clone(),
                    listed: Vec::new(),
                });
                self.hosts.len() - 1
            }
        };
        self.group(group, place);
        let host = &mut self.hosts[index];
        if !host.groups.iter().any(|g| g == group) {
            host.groups.push(group.to_string());
            host.listed.push((group.to_string(), place.clone()));
        }
        host
    }
}

/// The formats zdd reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Ini,
    /// Ansible's YAML, or Deployer's (told apart by the content).
    Yaml,
    Json,
}

/// Read the inventory `spec`: a file (relative to `base_dir`), or `!COMMAND ARGS` (a dynamic
/// inventory run in `base_dir`, printing the JSON of `ansible-inventory --list`).
pub fn load(spec: &str, base_dir: &Path) -> Result<Inventory, InventoryError> {
    let model = if let Some(command) = spec.strip_prefix('!') {
        let (name, output) = run_command(command.trim(), base_dir)?;
        json::parse(&output, &name)?
    } else {
        let (name, text) = read_file(spec, base_dir)?;
        let model = match format_of(&name, &text) {
            Format::Ini => ini::parse(&text, &name)?,
            Format::Json => json::parse(&text, &name)?,
            Format::Yaml => {
                let tree = yaml::tree(&text, &name)?;
                if deployer::is_deployer(&tree) {
                    deployer::parse(&tree, &name)?
                } else {
                    yaml::parse(&tree, &name)?
                }
            }
        };
        let mut model = model;
        let beside = resolve(spec, base_dir);
        if let Some(dir) = beside.parent() {
            for vars in ["group_vars", "host_vars"] {
                if dir.join(vars).is_dir() {
                    model.warnings.push(format!(
                        "{name}: `{vars}/` beside it is not read by zdd: put those variables in the inventory"
                    ));
                }
            }
        }
        model
    };
    mapping::hosts(model)
}

/// Several inventories (`-i A -i B`) as one: later ones' settings win for a host in both.
pub fn load_all(specs: &[String], base_dir: &Path) -> Result<Inventory, InventoryError> {
    let mut all = Inventory::default();
    for spec in specs {
        all.merge(load(spec, base_dir)?);
    }
    Ok(all)
}

fn resolve(spec: &str, base_dir: &Path) -> PathBuf {
    let path = Path::new(spec);
    if path.is_absolute() || base_dir.as_os_str().is_empty() || base_dir == Path::new(".") {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    }
}

fn read_file(spec: &str, base_dir: &Path) -> Result<(String, String), InventoryError> {
    if spec.trim().is_empty() {
        return Err(
            InventoryError::in_file(spec, "the inventory's path is empty").hint(
                "name an inventory file: `hosts.ini`, `hosts.yml`, or `!COMMAND` for a dynamic one",
            ),
        );
    }
    let path = resolve(spec, base_dir);
    let name = path.display().to_string();
    if path.is_dir() {
        return Err(
            InventoryError::in_file(&name, "is a directory: zdd reads one inventory file")
                .hint("name the file: `-i inventory/hosts.ini` (several `-i` are merged)"),
        );
    }
    let bytes = std::fs::read(&path).map_err(|e| {
        InventoryError::in_file(&name, format!("cannot read the inventory: {e}"))
            .hint("paths in a recipe are relative to the recipe's directory; `-i` to the current directory")
    })?;
    // A byte order mark (Windows editors write one) is not part of the first line.
    let bytes = match bytes.strip_prefix(b"\xef\xbb\xbf") {
        Some(rest) => rest.to_vec(),
        None => bytes,
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        InventoryError {
            line: Some(line),
            ..InventoryError::in_file(&name, "is not UTF-8 text")
        }
    })?;
    Ok((name, text))
}

fn format_of(name: &str, text: &str) -> Format {
    let extension = Path::new(name)
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    match extension.as_deref() {
        Some("yml" | "yaml") => Format::Yaml,
        Some("json") => Format::Json,
        Some("ini") => Format::Ini,
        _ => {
            let start = text.trim_start();
            if start.starts_with('{') {
                Format::Json
            } else if start.starts_with("---") {
                Format::Yaml
            } else {
                Format::Ini
            }
        }
    }
}

/// Run a dynamic inventory: no shell, its words split as a shell would (`shlex`).
fn run_command(command: &str, base_dir: &Path) -> Result<(String, String), InventoryError> {
    let name = format!("!{command}");
    let words = shlex::split(command).ok_or_else(|| {
        InventoryError::in_file(&name, "the command has an unclosed quote")
            .hint("quote arguments as a shell would: `!./inventory.py --list`")
    })?;
    let Some((program, args)) = words.split_first() else {
        return Err(InventoryError::in_file(&name, "names no command")
            .hint("write `!COMMAND ARGS`, e.g. `!ansible-inventory -i aws_ec2.yml --list`"));
    };
    let program_path = if program.contains('/') {
        // Absolute: the command runs in `base_dir`, and a relative path would be taken from there
        // twice.
        let path = resolve(program, base_dir);
        match std::env::current_dir() {
            Ok(cwd) if path.is_relative() => cwd.join(path),
            _ => path,
        }
    } else {
        process::find_program(program).map_err(|_| {
            InventoryError::in_file(&name, format!("`{program}` is not found on PATH"))
                .hint("install it, or name it by its path: `!./inventory.py`")
        })?
    };
    let invocation = Invocation {
        program: program_path,
        args: args.iter().map(Into::into).collect(),
        cwd: Some(if base_dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base_dir.to_path_buf()
        }),
        display: command.to_string(),
        ..Invocation::default()
    };
    // The command runs in a process group of its own, which a Ctrl-C at the terminal does not
    // reach: zdd's handler stops it (a cloud inventory that hangs is not left running).
    interrupt::install();
    let output = process::run(&invocation, None).map_err(|e| {
        if interrupt::interrupted() {
            return InventoryError::in_file(
                &name,
                "interrupted (Ctrl-C): the dynamic inventory was stopped",
            );
        }
        InventoryError::in_file(&name, format!("the dynamic inventory failed: {e}"))
            .hint("it must exit 0 and print the JSON of `ansible-inventory --list`")
    })?;
    Ok((name, output.stdout))
}

/// A host pattern as Ansible writes it: `web[01:20]:2222`, `[::1]:22`, `db-[a:c]`. Returns
/// the names and the port, if one was given.
pub(crate) fn expand_pattern(
    pattern: &str,
    place: &Place,
) -> Result<(Vec<String>, Option<u16>), InventoryError> {
    let bad = |message: String| InventoryError::new(place, message);
    let (host, port) = split_port(pattern).map_err(bad)?;
    let port = match port {
        None => None,
        Some(text) => Some(text.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
            bad(format!(
                "the port of `{pattern}` is `{text}`: a port is a number from 1 to 65535"
            ))
        })?),
    };
    let names = if !host.contains('[') && !host.contains(']') {
        vec![host]
    } else {
        let mut names = Vec::new();
        expand_ranges(&host, &mut names).map_err(|why| {
            bad(format!("the host range `{pattern}` {why}"))
                .hint("a range is `web[01:20]`, `web[a:f]` or `web[01:20:2]` (every second)")
        })?;
        names
    };
    Ok((names, port))
}

/// `host:port`, `[v6]:port`, `web[1:3]:port`: the host part and the port text.
fn split_port(pattern: &str) -> Result<(String, Option<String>), String> {
    if let Some(rest) = pattern.strip_prefix('[') {
        // `[::1]` or `[::1]:22`, but not a range at the start (`[a:c]-web`): an address has
        // two colons or more.
        if let Some(close) = rest.find(']') {
            if rest[..close].matches(':').count() >= 2 {
                let address = &rest[..close];
                return match &rest[close + 1..] {
                    "" => Ok((address.to_string(), None)),
                    tail => match tail.strip_prefix(':') {
                        Some(port) => Ok((address.to_string(), Some(port.to_string()))),
                        None => Err(format!("`{pattern}`: only `:PORT` may follow `[ADDRESS]`")),
                    },
                };
            }
        }
    }
    // Colons outside brackets.
    let mut depth = 0i32;
    let mut colons = Vec::new();
    for (at, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => colons.push(at),
            _ => {}
        }
    }
    match colons.as_slice() {
        [] => Ok((pattern.to_string(), None)),
        [at] => {
            let port = &pattern[at + 1..];
            if port.is_empty() {
                return Err(format!(
                    "the host `{pattern}` ends with `:`: write the port after it, or leave the `:` out"
                ));
            }
            Ok((pattern[..*at].to_string(), Some(port.to_string())))
        }
        // An IPv6 address without brackets: no port.
        _ => Ok((pattern.to_string(), None)),
    }
}

/// Ansible's `expand_hostname_range`: the first `[begin:end(:step)]`, then the rest.
fn expand_ranges(pattern: &str, out: &mut Vec<String>) -> Result<(), String> {
    const MOST: usize = 10_000;
    let Some(open) = pattern.find('[') else {
        if pattern.contains(']') {
            return Err("has a `]` without `[`".to_string());
        }
        out.push(pattern.to_string());
        return Ok(());
    };
    let close = pattern[open..]
        .find(']')
        .map(|at| at + open)
        .ok_or("has a `[` without `]`")?;
    let (head, range, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let bounds: Vec<&str> = range.split(':').collect();
    if bounds.len() != 2 && bounds.len() != 3 {
        return Err(format!(
            "has `[{range}]`: a range is `[begin:end]` or `[begin:end:step]`"
        ));
    }
    let begin = if bounds[0].is_empty() { "0" } else { bounds[0] };
    let end = bounds[1];
    if end.is_empty() {
        return Err(format!("has `[{range}]`, which has no end"));
    }
    let step: usize = match bounds.get(2) {
        None => 1,
        Some(step) => step
            .parse()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("has the step `{step}`: a step is a number from 1 up"))?,
    };
    let letters = |text: &str| {
        let mut chars = text.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
            _ => None,
        }
    };
    let items: Vec<String> = match (letters(begin), letters(end)) {
        (Some(from), Some(to)) => {
            const ALPHABET: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
            let (from, to) = (
                ALPHABET.find(from).unwrap_or(0),
                ALPHABET.find(to).unwrap_or(0),
            );
            if from > to {
                return Err(format!("has `[{range}]`, which goes down"));
            }
            ALPHABET[from..=to]
                .chars()
                .step_by(step)
                .map(String::from)
                .collect()
        }
        _ => {
            let number = |text: &str| {
                text.parse::<u64>().map_err(|_| {
                    format!("has `[{range}]`: `{text}` is neither a number nor a letter")
                })
            };
            let (from, to) = (number(begin)?, number(end)?);
            if from > to {
                return Err(format!("has `[{range}]`, which goes down"));
            }
            if (to - from) / step as u64 >= MOST as u64 {
                return Err(format!("has `[{range}]`: more than {MOST} hosts"));
            }
            let width = if begin.starts_with('0') && begin.len() > 1 {
                if begin.len() != end.len() {
                    return Err(format!(
                        "has `[{range}]`: a zero-padded range has a begin and end of one width"
                    ));
                }
                begin.len()
            } else {
                0
            };
            (from..=to)
                .step_by(step)
                .map(|n| format!("{n:0width$}"))
                .collect()
        }
    };
    for item in items {
        expand_ranges(&format!("{head}{item}{tail}"), out)?;
        if out.len() > MOST {
            return Err(format!("names more than {MOST} hosts"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place() -> Place {
        Place::at("hosts.ini", Some(3))
    }

    fn names(pattern: &str) -> Vec<String> {
        expand_pattern(pattern, &place()).unwrap().0
    }

    #[test]
    fn ranges_expand_as_ansible_does() {
        assert_eq!(names("web[1:3]"), ["web1", "web2", "web3"]);
        assert_eq!(
            names("web[01:03].example.com"),
            [
                "web01.example.com",
                "web02.example.com",
                "web03.example.com"
            ]
        );
        assert_eq!(names("db-[a:c]"), ["db-a", "db-b", "db-c"]);
        assert_eq!(names("web[01:09:4]"), ["web01", "web05", "web09"]);
        assert_eq!(names("r[1:2]n[a:b]"), ["r1na", "r1nb", "r2na", "r2nb"]);
        assert_eq!(names("web[:2]"), ["web0", "web1", "web2"]);
        assert_eq!(names("plain"), ["plain"]);
    }

    #[test]
    fn ports_follow_the_pattern() {
        assert_eq!(
            expand_pattern("web[1:2]:2222", &place()).unwrap(),
            (vec!["web1".to_string(), "web2".to_string()], Some(2222))
        );
        assert_eq!(
            expand_pattern("[::1]:22", &place()).unwrap(),
            (vec!["::1".to_string()], Some(22))
        );
        assert_eq!(
            expand_pattern("fe80::1", &place()).unwrap(),
            (vec!["fe80::1".to_string()], None)
        );
    }

    #[test]
    fn bad_patterns_name_the_value() {
        let error = |pattern: &str| expand_pattern(pattern, &place()).unwrap_err().to_string();
        assert_eq!(
            error("web[01:x]"),
            "hosts.ini:3: the host range `web[01:x]` has `[01:x]`: `x` is neither a number nor a letter"
        );
        assert_eq!(
            error("web[5:1]"),
            "hosts.ini:3: the host range `web[5:1]` has `[5:1]`, which goes down"
        );
        assert_eq!(
            error("web[01:100]"),
            "hosts.ini:3: the host range `web[01:100]` has `[01:100]`: a zero-padded range has a begin and end of one width"
        );
        assert_eq!(
            error("web[1:3"),
            "hosts.ini:3: the host range `web[1:3` has a `[` without `]`"
        );
        assert_eq!(
            error("web:99999"),
            "hosts.ini:3: the port of `web:99999` is `99999`: a port is a number from 1 to 65535"
        );
        assert_eq!(
            error("web:"),
            "hosts.ini:3: the host `web:` ends with `:`: write the port after it, or leave the `:` out"
        );
        assert!(error("web[1:100000]").contains("more than 10000 hosts"));
    }

    #[test]
    fn several_inventories_merge_later_over_earlier() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.ini"),
            "[web]\nweb1 deploy_path=/a keep_releases=3\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yml"),
            "all:\n  children:\n    app:\n      hosts:\n        web1:\n          deploy_path: /b\n        web2:\n",
        )
        .unwrap();
        let specs = ["a.ini".to_string(), "b.yml".to_string()];
        let inventory = load_all(&specs, dir.path()).unwrap();
        let names: Vec<&str> = inventory.hosts.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web1", "web2"]);
        let web1 = &inventory.hosts[0];
        assert_eq!(web1.roles(), ["web", "app"]);
        assert_eq!(web1.config["deploy_path"].to_string(), "/b");
        assert_eq!(web1.config["keep_releases"].to_string(), "3");
        let b = dir.path().join("b.yml").display().to_string();
        assert_eq!(web1.sources["deploy_path"], format!("{b}:6"));
    }

    #[test]
    fn json_indented_with_tabs_is_read() {
        let model = json::parse(
            "{\n\t\"web\": {\n\t\t\"hosts\": [\"a\"]\n\t}\n}\n",
            "i.json",
        )
        .unwrap();
        assert_eq!(model.hosts[0].name, "a");
        assert_eq!(model.hosts[0].groups, ["web"]);
    }

    #[test]
    fn formats_by_extension_then_content() {
        assert_eq!(format_of("hosts", "[web]\nweb1\n"), Format::Ini);
        assert_eq!(format_of("hosts.yml", "all:\n"), Format::Yaml);
        assert_eq!(format_of("inventory", "{\"all\": {}}"), Format::Json);
        assert_eq!(format_of("hosts.json", "{}"), Format::Json);
        assert_eq!(format_of("hosts", "---\nall:\n"), Format::Yaml);
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_line() {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in [
            ("hosts.ini", "[web]\nweb1\n"),
            (
                "hosts.yml",
                "all:\n  children:\n    web:\n      hosts:\n        web1:\n",
            ),
            ("hosts.json", "{\"web\": [\"web1\"]}\n"),
        ] {
            std::fs::write(dir.path().join(name), format!("\u{feff}{text}")).unwrap();
            let inventory = load(name, dir.path()).unwrap();
            assert_eq!(inventory.hosts.len(), 1, "{name}");
            assert_eq!(inventory.hosts[0].roles(), ["web"], "{name}");
        }
    }

    #[test]
    fn an_inventory_names_at_most_most_hosts() {
        let dir = tempfile::tempdir().unwrap();
        // Exactly the most: read (a host listed twice counts once).
        std::fs::write(
            dir.path().join("full.ini"),
            "[web]\nweb[0:9989]\n[db]\ndb[0:9]\nweb1\n",
        )
        .unwrap();
        assert_eq!(
            load("full.ini", dir.path()).unwrap().hosts.len(),
            MOST_HOSTS
        );
        std::fs::write(
            dir.path().join("over.ini"),
            "[web]\nweb[0:9999]\n[db]\ndb1\n",
        )
        .unwrap();
        let name = dir.path().join("over.ini").display().to_string();
        assert_eq!(
            load("over.ini", dir.path()).unwrap_err().to_string(),
            format!("{name}:4: the inventory names more than {MOST_HOSTS} hosts")
        );
        std::fs::write(
            dir.path().join("over.yml"),
            "all:\n  hosts:\n    a[0:5000]:\n    b[0:5000]:\n",
        )
        .unwrap();
        let error = load("over.yml", dir.path()).unwrap_err();
        assert_eq!(error.line, Some(4));
        let hosts: Vec<String> = (0..=MOST_HOSTS).map(|n| format!("\"h{n}\"")).collect();
        std::fs::write(
            dir.path().join("over.json"),
            format!("{{\"web\": [{}]}}", hosts.join(", ")),
        )
        .unwrap();
        let error = load("over.json", dir.path()).unwrap_err();
        assert!(error.message.contains("more than"), "{error}");
    }
}
