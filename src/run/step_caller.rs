//! How the runner reaches a recipe: [`StepCaller`], implemented by the script layer
//! (`script::Recipe`). The runner never sees the engine: it asks for what the recipe declared,
//! and hands it a step to call on a host; a step that fails comes back as a [`StepError`], the
//! script's error already dug down to the recipe line and the cause in zdd's words.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rhai::Dynamic;

use crate::plan::Step;
use crate::primitives::host_context::HostContext;
use crate::registry::{Origin, Registry};
use crate::run::step_failure::Cause;

/// A loaded recipe, as the runner uses it.
pub trait StepCaller: Sync {
    /// The recipe's path, as the user gave it.
    fn path(&self) -> &str;
    /// What the recipe declared: config, hosts, tasks, hooks.
    fn registry(&self) -> &Registry;
    /// The `-o KEY=VALUE` values, which win over every other setting.
    fn overrides(&self) -> &BTreeMap<String, Dynamic>;
    /// Whether `origin` is in a module zdd ships, unchanged (its tasks do what zdd's
    /// documentation says).
    fn is_stdlib(&self, origin: &Origin) -> bool;
    /// The text of the recipe and of every module it imported (stdlib ones too), in the order
    /// of their names.
    fn source_texts(&self) -> Vec<std::sync::Arc<str>>;
    /// Call `step`'s body on `host`, on this thread; returns when the body does.
    fn call(&self, step: &Step, host: &Arc<Mutex<HostContext>>) -> Result<(), StepError>;
}

/// Why a step's body failed, and where.
#[derive(Debug, Clone)]
pub struct StepError {
    /// The recipe or module line of the failing call, when the script knows it.
    pub location: Option<Origin>,
    pub cause: Cause,
}
