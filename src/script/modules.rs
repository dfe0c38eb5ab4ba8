//! `import "name"`: a file next to the recipe (`name` or `name.rhai`) wins; otherwise the module
//! of that name from `stdlib/`, embedded in the binary so zdd works from any directory. Each
//! module runs once per recipe, however often it is imported.
//!
//! `import "git+URL@PIN/NAME"` is a shared recipe (shared_imports.rs); inside one, a relative
//! name is a file of the same repository at the same commit, else a stdlib module.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

type SharedModule = Shared<Module>;

use super::Runtime;
use crate::output::failure::Failure;
use crate::recipes::import;
use crate::recipes::Problem;

/// The stdlib modules, by import name.
pub const EMBEDDED: &[(&str, &str)] = &[("deploy", include_str!("../../stdlib/deploy.rhai"))];

pub struct RecipeModules {
    runtime: Arc<Runtime>,
    loaded: Mutex<HashMap<String, SharedModule>>,
    /// Modules whose top level is running now (to refuse import cycles).
    loading: Mutex<Vec<String>>,
}

impl RecipeModules {
    pub fn new(runtime: Arc<Runtime>) -> RecipeModules {
        RecipeModules {
            runtime,
            loaded: Mutex::new(HashMap::new()),
            loading: Mutex::new(Vec::new()),
        }
    }

    /// The source name and text of module `path`. The importing file itself is never a
    /// candidate: a recipe named `deploy.rhai` that imports "deploy" gets the stdlib module.
    fn find(
        &self,
        importer: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<(String, String), Box<EvalAltResult>> {
        let shared = &self.runtime.shared;
        let refused = |problem: Problem| {
            let mut failure = Failure::message(problem.message);
            failure.hint = problem.hint;
            Box::new(EvalAltResult::ErrorRuntime(
                rhai::Dynamic::from(failure),
                pos,
            ))
        };
        if import::is_shared(path) {
            return shared.find(path).map_err(refused);
        }
        let name = path.strip_suffix(".rhai").unwrap_or(path);
        if let Some(importer) = importer.filter(|i| shared.is_shared_source(i)) {
            return match shared.find_relative(importer, path) {
                Some(found) => found.map_err(refused),
                None => match EMBEDDED.iter().find(|(embedded, _)| *embedded == name) {
                    Some((_, text)) => Ok((format!("stdlib/{name}.rhai"), text.to_string())),
                    None => Err(refused(Problem::new(format!(
                        "unknown module `{path}`: `{importer}` imports it, and its repository has no `{path}` or `{name}.rhai` at that commit"
                    )))),
                },
            };
        }
        let importer = importer.and_then(|i| std::fs::canonicalize(i).ok());
        let candidates = [
            self.runtime.recipe_dir.join(path),
            self.runtime.recipe_dir.join(format!("{name}.rhai")),
        ];
        for file in candidates {
            let is_importer = importer.is_some() && std::fs::canonicalize(&file).ok() == importer;
            if file.is_file() && !is_importer {
                let text = std::fs::read_to_string(&file).map_err(|e| {
                    Box::new(EvalAltResult::ErrorSystem(
                        format!("cannot read module `{}`", file.display()),
                        Box::new(e),
                    ))
                })?;
                // `./x.rhai` reads as `x.rhai`, the way the user named the recipe next to it.
                let shown = file.strip_prefix(".").unwrap_or(&file);
                return Ok((shown.display().to_string(), text));
            }
        }
        match EMBEDDED.iter().find(|(embedded, _)| *embedded == name) {
            Some((_, text)) => Ok((format!("stdlib/{name}.rhai"), text.to_string())),
            None => Err(Box::new(EvalAltResult::ErrorModuleNotFound(
                path.to_string(),
                pos,
            ))),
        }
    }
}

impl ModuleResolver for RecipeModules {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        // Loaded modules are kept by their source name: `import "common"` is another file in
        // a shared recipe than next to the recipe.
        let (source, text) = self.find(source, path, pos)?;
        if let Some(module) = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&source)
        {
            return Ok(module.clone());
        }
        {
            let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
            if loading.contains(&source) {
                return Err(format!(
                    "module `{path}` imports itself (through {})",
                    loading.join(" -> ")
                )
                .into());
            }
            loading.push(source.clone());
        }
        let result = self.load(engine, &source, &text, pos);
        self.loading
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|s| s != &source);
        let module = result?;
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(source, module.clone());
        Ok(module)
    }
}

impl RecipeModules {
    fn load(
        &self,
        engine: &Engine,
        source: &str,
        text: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        self.runtime.sources.add(source, text);
        let wrap = |error: Box<EvalAltResult>| {
            Box::new(EvalAltResult::ErrorInModule(source.to_string(), error, pos))
        };
        let mut ast = engine
            .compile(text)
            .map_err(|e| wrap(super::compile_error(e)))?;
        ast.set_source(source);
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(wrap)?;
        self.runtime
            .module_functions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ast.clone_functions_only());
        Ok(module.into())
    }
}
