//! What the recipe declared: configuration, hosts, tasks and hooks. Filled while the recipe's
//! top level runs; read-only afterwards. No side effects.

use std::collections::BTreeMap;
use std::fmt;

use rhai::{Dynamic, FnPtr};

/// Where something was declared in a recipe or module.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    pub source: String,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.column)
    }
}

/// What running a task means.
#[derive(Clone)]
pub enum TaskBody {
    /// A closure to call on each host.
    Closure(FnPtr),
    /// Other tasks, in order.
    Group(Vec<String>),
}

#[derive(Clone)]
pub struct Task {
    pub name: String,
    pub body: TaskBody,
    pub description: Option<String>,
    pub origin: Origin,
    /// Run on one host only (the first selected).
    pub once: bool,
    /// Part of the build (`build("task")`): with `build_on` other than `hosts`, it runs once,
    /// in the build directory, instead of on each host.
    pub build: bool,
}

/// What a hook runs: a task by name or a closure.
#[derive(Clone)]
pub enum HookTarget {
    Task { name: String, origin: Origin },
    Closure { body: FnPtr, origin: Origin },
}

impl HookTarget {
    pub fn origin(&self) -> &Origin {
        match self {
            HookTarget::Task { origin, .. } | HookTarget::Closure { origin, .. } => origin,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookKind {
    Before,
    After,
    Fail,
}

impl fmt::Display for HookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HookKind::Before => "before",
            HookKind::After => "after",
            HookKind::Fail => "fail",
        })
    }
}

/// A host the recipe declared.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    /// `localhost()`: commands run here, without SSH.
    pub local: bool,
    pub config: BTreeMap<String, Dynamic>,
    /// Where each setting of `config` was set, for `zdd hosts`: `recipe.rhai:4:20`,
    /// `hosts.ini:12 ([web:vars])`. A key missing here has no known place.
    pub sources: BTreeMap<String, String>,
}

impl Host {
    /// The roles this host has (`roles` set on it).
    pub fn roles(&self) -> Vec<String> {
        match self.config.get("roles") {
            Some(value) if value.is_array() => value
                .clone()
                .into_array()
                .unwrap_or_default()
                .into_iter()
                .map(|v| v.to_string())
                .collect(),
            Some(value) => vec![value.to_string()],
            None => Vec::new(),
        }
    }
}

/// `web[1:3]` is `web1`, `web2`, `web3`; `db[01:10].example.com` keeps the zero padding. A name
/// without brackets is itself.
pub fn expand_host_range(name: &str) -> Result<Vec<String>, String> {
    let (Some(open), Some(close)) = (name.find('['), name.find(']')) else {
        return Ok(vec![name.to_string()]);
    };
    let bad = || format!("host range `{name}` must look like `web[1:4]`");
    if close < open {
        return Err(bad());
    }
    let (prefix, rest) = (&name[..open], &name[close + 1..]);
    let (from, to) = name[open + 1..close].split_once(':').ok_or_else(bad)?;
    let width = if from.starts_with('0') { from.len() } else { 0 };
    let (from, to): (u32, u32) = (
        from.parse().map_err(|_| bad())?,
        to.parse().map_err(|_| bad())?,
    );
    if from > to || to - from >= 1000 {
        return Err(format!(
            "host range `{name}` must go up, and name at most 1000 hosts"
        ));
    }
    Ok((from..=to)
        .map(|n| format!("{prefix}{n:0width$}{rest}"))
        .collect())
}

/// Everything the recipe declared.
#[derive(Clone, Default)]
pub struct Registry {
    pub config: BTreeMap<String, Dynamic>,
    /// Where each key of `config` was last set (`recipe.rhai:3:1`).
    pub config_sources: BTreeMap<String, String>,
    pub hosts: Vec<Host>,
    pub tasks: BTreeMap<String, Task>,
    pub hooks: BTreeMap<(HookKind, String), Vec<HookTarget>>,
    /// Set by `desc()`, taken by the next `task()`.
    pub pending_description: Option<String>,
}

impl Registry {
    /// Declare (or replace) a task.
    pub fn add_task(&mut self, name: &str, body: TaskBody, origin: Origin) {
        let description = self.pending_description.take().or_else(|| {
            // Redefining a task keeps its description unless a new one was given.
            self.tasks.get(name).and_then(|t| t.description.clone())
        });
        let once = self.tasks.get(name).map(|t| t.once).unwrap_or(false);
        let build = self.tasks.get(name).map(|t| t.build).unwrap_or(false);
        self.tasks.insert(
            name.to_string(),
            Task {
                name: name.to_string(),
                body,
                description,
                origin,
                once,
                build,
            },
        );
    }

    pub fn add_hook(&mut self, kind: HookKind, task: &str, target: HookTarget) {
        self.hooks
            .entry((kind, task.to_string()))
            .or_default()
            .push(target);
    }

    pub fn hooks(&self, kind: HookKind, task: &str) -> &[HookTarget] {
        self.hooks
            .get(&(kind, task.to_string()))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Declare a host, or return the existing one of that name to change it.
    pub fn host_mut(&mut self, name: &str, local: bool) -> &mut Host {
        if let Some(index) = self.hosts.iter().position(|h| h.name == name) {
            return &mut self.hosts[index];
        }
        self.hosts.push(Host {
            name: name.to_string(),
            local,
            config: BTreeMap::new(),
            sources: BTreeMap::new(),
        });
        self.hosts.last_mut().expect("just pushed")
    }
}

#[cfg(test)]
mod tests {
    use super::expand_host_range;

    #[test]
    fn host_ranges_expand() {
        assert_eq!(expand_host_range("web1").unwrap(), ["web1"]);
        assert_eq!(
            expand_host_range("web[1:3]").unwrap(),
            ["web1", "web2", "web3"]
        );
        assert_eq!(
            expand_host_range("db[08:10].example.com").unwrap(),
            ["db08.example.com", "db09.example.com", "db10.example.com"]
        );
        assert!(expand_host_range("web[3:1]").is_err());
        assert!(expand_host_range("web[a:b]").is_err());
    }
}
