//! The Rhai side: the engine factory, the recipe API, the bindings of the recipe's values and
//! of the primitives, and the module resolver. Loading a recipe runs its top level, which only
//! declares (config, hosts, tasks, hooks) into the registry.

pub mod diagnostic;
mod engine;
mod modules;
mod primitive_bindings;
mod recipe_api;
pub mod shared_imports;
mod step_error;
mod value_bindings;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use rhai::{Dynamic, Engine, EvalAltResult, AST};

use crate::output::failure::Failure;
use crate::output::reporter::Reporter;
use crate::output::sources::Sources;
use crate::plan::Step;
use crate::primitives::host_context::HostContext;
use crate::registry::Registry;
use crate::run::step_caller::{StepCaller, StepError};

pub use modules::EMBEDDED;
pub use step_error::classify;

/// What the engine's functions share: the registry being filled, the `-o` values, and the host
/// a task is running on right now.
pub struct Runtime {
    pub registry: Mutex<Registry>,
    pub overrides: BTreeMap<String, Dynamic>,
    /// The host each thread is running a task on (hosts run in parallel, one per thread).
    pub current: Mutex<HashMap<ThreadId, Arc<Mutex<HostContext>>>>,
    /// The functions of every imported module, so closures they declared can be called later.
    pub module_functions: Mutex<Vec<AST>>,
    pub sources: Sources,
    pub reporter: Arc<Reporter>,
    pub recipe_dir: PathBuf,
    /// The shared recipes imported (`import "git+..."`), and how their pins are read.
    pub shared: shared_imports::SharedImports,
}

impl Runtime {
    /// The host the running task is on, if this thread is running a task.
    pub fn host(&self) -> Option<Arc<Mutex<HostContext>>> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&std::thread::current().id())
            .cloned()
    }

    /// This thread runs tasks on `host` from now on.
    pub fn enter(&self, host: Arc<Mutex<HostContext>>) {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(std::thread::current().id(), host);
    }

    /// This thread is done with its host.
    pub fn leave(&self) {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&std::thread::current().id());
    }

    /// Run `f` on the current host, or fail naming the function that needs one.
    pub fn with_host<T>(
        &self,
        function: &str,
        f: impl FnOnce(&mut HostContext) -> Result<T, Failure>,
    ) -> Result<T, Box<EvalAltResult>> {
        let Some(host) = self.host() else {
            return Err(format!(
                "`{function}()` runs on a host, so it can only be called inside a task"
            )
            .into());
        };
        let mut ctx = host.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut ctx).map_err(into_script_error)
    }
}

/// Carry a primitive's failure through the script, position filled in by Rhai.
pub fn into_script_error(failure: Failure) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(Dynamic::from(failure), rhai::Position::NONE).into()
}

/// A compile error as a script error. Strict variables make an unknown variable a compile
/// error; it is reported as the unknown variable it is, not as a syntax error.
pub fn compile_error(error: rhai::ParseError) -> Box<EvalAltResult> {
    match *error.0 {
        rhai::ParseErrorType::VariableUndefined(name) => {
            Box::new(EvalAltResult::ErrorVariableNotFound(name, error.1))
        }
        kind => Box::new(EvalAltResult::ErrorParsing(kind, error.1)),
    }
}

/// A compiled and evaluated recipe.
pub struct Recipe {
    /// As the user gave it.
    pub path: String,
    pub engine: Engine,
    /// The functions of the recipe and all its modules: what task closures are called with.
    pub functions: AST,
    pub runtime: Arc<Runtime>,
    pub registry: Registry,
}

/// The runner calls a step's closure through this: the engine stays here.
impl StepCaller for Recipe {
    fn path(&self) -> &str {
        &self.path
    }

    fn source_texts(&self) -> Vec<Arc<str>> {
        self.runtime.sources.texts()
    }

    fn registry(&self) -> &Registry {
        &self.registry
    }

    fn overrides(&self) -> &BTreeMap<String, Dynamic> {
        &self.runtime.overrides
    }

    fn is_stdlib(&self, origin: &crate::registry::Origin) -> bool {
        let Some(text) = self.runtime.sources.text(&origin.source) else {
            return false;
        };
        EMBEDDED.iter().any(|(_, embedded)| **embedded == *text)
    }

    /// The closure runs with `host` as this thread's host: what the primitives it calls act on.
    fn call(&self, step: &Step, host: &Arc<Mutex<HostContext>>) -> Result<(), StepError> {
        self.runtime.enter(host.clone());
        let result: Result<Dynamic, Box<EvalAltResult>> =
            step.body.call(&self.engine, &self.functions, ());
        self.runtime.leave();
        result
            .map(|_| ())
            .map_err(|error| classify(&error, &step.origin.source))
    }
}

/// Why a recipe could not be loaded.
pub enum LoadError {
    Read { path: String, error: std::io::Error },
    Script(Box<EvalAltResult>),
}

/// Compile and run the recipe's top level.
pub fn load(
    path: &Path,
    overrides: BTreeMap<String, Dynamic>,
    reporter: Arc<Reporter>,
    sources: Sources,
    imports: shared_imports::Options,
) -> Result<Recipe, LoadError> {
    let display = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
        path: display.clone(),
        error,
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        LoadError::Script(
            format!("`{display}` is not UTF-8 text: a recipe is a Rhai script").into(),
        )
    })?;
    sources.add(&display, &text);
    let recipe_dir = path
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let runtime = Arc::new(Runtime {
        registry: Mutex::new(Registry::default()),
        overrides,
        current: Mutex::new(HashMap::new()),
        module_functions: Mutex::new(Vec::new()),
        sources,
        reporter,
        recipe_dir,
        shared: shared_imports::SharedImports::new(path, imports),
    });
    let engine = engine::build(runtime.clone());
    let mut ast = engine
        .compile(&text)
        .map_err(|e| LoadError::Script(compile_error(e)))?;
    ast.set_source(display.as_str());
    engine.run_ast(&ast).map_err(LoadError::Script)?;

    let mut functions = AST::empty();
    for module in runtime
        .module_functions
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        functions = functions.merge(module);
    }
    functions = functions.merge(&ast.clone_functions_only());
    let registry = runtime
        .registry
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(Recipe {
        path: display,
        engine,
        functions,
        runtime,
        registry,
    })
}
