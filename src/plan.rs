//! Pure: registry + task name -> the ordered steps each host runs. Groups and hooks are
//! expanded here, unknown names and cycles are rejected here, before anything runs.

use std::fmt;

use rhai::FnPtr;

use crate::output::suggest;
use crate::registry::{HookKind, HookTarget, Origin, Registry, TaskBody};

/// One closure to call on a host.
#[derive(Clone, Debug)]
pub struct Step {
    /// The task this step is (or, for a hook closure, a label like `after deploy:symlink`).
    pub task: String,
    pub body: FnPtr,
    /// Where the task or hook was declared.
    pub origin: Origin,
    /// The tasks this step runs inside, outermost first, ending with `task`. Fail hooks of each
    /// of them fire when this step fails.
    pub ancestry: Vec<String>,
    /// Run on one host only.
    pub once: bool,
    /// Part of the build: its task, or a task it runs inside, was marked with `build()`.
    pub build: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    UnknownTask {
        name: String,
        /// Who referred to it: `the command line`, `group \`deploy\``, `after hook`.
        referrer: String,
        origin: Option<Origin>,
        suggestion: Option<String>,
    },
    Cycle {
        chain: Vec<String>,
        origin: Origin,
    },
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlanError::UnknownTask { name, referrer, .. } if referrer == "the command line" => {
                write!(f, "unknown task `{name}` on the command line")
            }
            PlanError::UnknownTask { name, referrer, .. } => {
                write!(f, "unknown task `{name}` in {referrer}")
            }
            PlanError::Cycle { chain, .. } => {
                write!(f, "task cycle: {}", chain.join(" -> "))
            }
        }
    }
}

impl PlanError {
    pub fn hint(&self) -> Option<String> {
        match self {
            PlanError::UnknownTask {
                suggestion: Some(s),
                ..
            } => Some(format!("did you mean `{s}`?")),
            PlanError::UnknownTask { .. } => {
                Some("`zdd tasks RECIPE` lists the tasks the recipe defines".to_string())
            }
            PlanError::Cycle { .. } => {
                Some("a task cannot run itself through a group or a hook".to_string())
            }
        }
    }

    pub fn origin(&self) -> Option<&Origin> {
        match self {
            PlanError::UnknownTask { origin, .. } => origin.as_ref(),
            PlanError::Cycle { origin, .. } => Some(origin),
        }
    }
}

struct Expander<'a> {
    registry: &'a Registry,
    steps: Vec<Step>,
    stack: Vec<String>,
}

impl Expander<'_> {
    /// Whether the step being expanded is part of the build: a task on the stack was marked.
    fn in_build(&self) -> bool {
        self.stack
            .iter()
            .any(|name| self.registry.tasks.get(name).is_some_and(|t| t.build))
    }

    fn unknown(&self, name: &str, referrer: String, origin: Option<Origin>) -> PlanError {
        PlanError::UnknownTask {
            name: name.to_string(),
            referrer,
            origin,
            suggestion: suggest::closest(name, self.registry.tasks.keys().map(String::as_str)),
        }
    }

    fn task(
        &mut self,
        name: &str,
        referrer: &str,
        origin: Option<&Origin>,
    ) -> Result<(), PlanError> {
        let Some(task) = self.registry.tasks.get(name) else {
            return Err(self.unknown(name, referrer.to_string(), origin.cloned()));
        };
        if self.stack.iter().any(|n| n == name) {
            let mut chain = self.stack.clone();
            chain.push(name.to_string());
            return Err(PlanError::Cycle {
                chain,
                origin: origin.cloned().unwrap_or_else(|| task.origin.clone()),
            });
        }
        self.stack.push(name.to_string());
        self.hooks(HookKind::Before, name)?;
        match &task.body {
            TaskBody::Closure(body) => self.steps.push(Step {
                task: name.to_string(),
                body: body.clone(),
                origin: task.origin.clone(),
                ancestry: self.stack.clone(),
                once: task.once,
                build: self.in_build(),
            }),
            TaskBody::Group(members) => {
                for member in members {
                    self.task(member, &format!("group `{name}`"), Some(&task.origin))?;
                }
            }
        }
        self.hooks(HookKind::After, name)?;
        self.stack.pop();
        Ok(())
    }

    fn hooks(&mut self, kind: HookKind, name: &str) -> Result<(), PlanError> {
        for target in self.registry.hooks(kind, name) {
            self.target(kind, name, target)?;
        }
        Ok(())
    }

    fn target(&mut self, kind: HookKind, name: &str, target: &HookTarget) -> Result<(), PlanError> {
        match target {
            HookTarget::Task {
                name: target,
                origin,
            } => self.task(target, &format!("`{kind}` hook of `{name}`"), Some(origin)),
            HookTarget::Closure { body, origin } => {
                let label = format!("{kind} {name}");
                let mut ancestry = self.stack.clone();
                ancestry.push(label.clone());
                self.steps.push(Step {
                    task: label,
                    body: body.clone(),
                    origin: origin.clone(),
                    ancestry,
                    once: false,
                    build: self.in_build(),
                });
                Ok(())
            }
        }
    }
}

/// The steps of `task`, hooks included.
pub fn steps(registry: &Registry, task: &str) -> Result<Vec<Step>, PlanError> {
    let mut expander = Expander {
        registry,
        steps: Vec::new(),
        stack: Vec::new(),
    };
    expander.task(task, "the command line", None)?;
    Ok(expander.steps)
}

/// The steps to run when a step with `ancestry` failed: the fail hooks of the failing task and of
/// every task it runs inside, innermost first, each task at most once.
pub fn fail_steps(registry: &Registry, ancestry: &[String]) -> Result<Vec<Step>, PlanError> {
    let mut expander = Expander {
        registry,
        steps: Vec::new(),
        stack: Vec::new(),
    };
    let mut seen: Vec<String> = Vec::new();
    for name in ancestry.iter().rev() {
        for target in registry.hooks(HookKind::Fail, name) {
            if let HookTarget::Task { name: target, .. } = target {
                if seen.contains(target) {
                    continue;
                }
                seen.push(target.clone());
            }
            expander.target(HookKind::Fail, name, target)?;
        }
    }
    Ok(expander.steps)
}

fn article(kind: HookKind) -> &'static str {
    match kind {
        HookKind::After => "an",
        HookKind::Before | HookKind::Fail => "a",
    }
}

/// Check every name in groups and hooks, and every task for cycles.
pub fn validate(registry: &Registry) -> Result<(), PlanError> {
    let probe = Expander {
        registry,
        steps: Vec::new(),
        stack: Vec::new(),
    };
    for ((kind, task), targets) in &registry.hooks {
        if !registry.tasks.contains_key(task) {
            let origin = targets.first().map(|t| t.origin().clone());
            return Err(probe.unknown(task, format!("{} `{kind}` hook", article(*kind)), origin));
        }
    }
    for name in registry.tasks.keys() {
        steps(registry, name)?;
    }
    for ((kind, _), targets) in &registry.hooks {
        if *kind == HookKind::Fail {
            for target in targets {
                if let HookTarget::Task { name, origin } = target {
                    steps(registry, name).map_err(|e| match e {
                        PlanError::UnknownTask {
                            name, suggestion, ..
                        } => PlanError::UnknownTask {
                            name,
                            referrer: "a `fail` hook".to_string(),
                            origin: Some(origin.clone()),
                            suggestion,
                        },
                        other => other,
                    })?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Origin {
        Origin {
            source: "recipe.rhai".into(),
            line: 1,
            column: 1,
        }
    }

    fn closure(registry: &mut Registry, name: &str) {
        registry.add_task(name, TaskBody::Closure(FnPtr::new("f").unwrap()), origin());
    }

    fn group(registry: &mut Registry, name: &str, members: &[&str]) {
        let members = members.iter().map(|m| m.to_string()).collect();
        registry.add_task(name, TaskBody::Group(members), origin());
    }

    fn hook(registry: &mut Registry, kind: HookKind, task: &str, target: &str) {
        registry.add_hook(
            kind,
            task,
            HookTarget::Task {
                name: target.into(),
                origin: origin(),
            },
        );
    }

    fn names(steps: &[Step]) -> Vec<&str> {
        steps.iter().map(|s| s.task.as_str()).collect()
    }

    #[test]
    fn groups_and_hooks_expand_in_order() {
        let mut r = Registry::default();
        for name in ["a", "b", "c", "x", "y"] {
            closure(&mut r, name);
        }
        group(&mut r, "deploy", &["a", "b"]);
        hook(&mut r, HookKind::Before, "b", "x");
        hook(&mut r, HookKind::After, "deploy", "y");
        hook(&mut r, HookKind::After, "a", "c");
        let steps = steps(&r, "deploy").unwrap();
        assert_eq!(names(&steps), ["a", "c", "x", "b", "y"]);
        assert_eq!(steps[2].ancestry, ["deploy", "b", "x"]);
    }

    #[test]
    fn cycles_are_rejected() {
        let mut r = Registry::default();
        group(&mut r, "a", &["b"]);
        group(&mut r, "b", &["a"]);
        let error = steps(&r, "a").unwrap_err();
        assert_eq!(error.to_string(), "task cycle: a -> b -> a");
    }

    #[test]
    fn unknown_names_suggest_the_closest() {
        let mut r = Registry::default();
        closure(&mut r, "deploy:symlink");
        group(&mut r, "deploy", &["deploy:symlnk"]);
        let error = validate(&r).unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown task `deploy:symlnk` in group `deploy`"
        );
        assert_eq!(error.hint().unwrap(), "did you mean `deploy:symlink`?");
    }

    #[test]
    fn fail_hooks_fire_innermost_first_once_each() {
        let mut r = Registry::default();
        for name in ["a", "cleanup", "inner"] {
            closure(&mut r, name);
        }
        group(&mut r, "deploy", &["a"]);
        hook(&mut r, HookKind::Fail, "deploy", "cleanup");
        hook(&mut r, HookKind::Fail, "a", "inner");
        hook(&mut r, HookKind::Fail, "a", "cleanup");
        let steps = fail_steps(&r, &["deploy".into(), "a".into()]).unwrap();
        assert_eq!(names(&steps), ["inner", "cleanup"]);
    }

    #[test]
    fn redefining_a_task_replaces_it() {
        let mut r = Registry::default();
        closure(&mut r, "a");
        group(&mut r, "a", &[]);
        assert!(steps(&r, "a").unwrap().is_empty());
    }
}
