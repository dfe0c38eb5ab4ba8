//! The one place an engine is built: configured, then never changed.

use std::sync::Arc;

use rhai::{Dynamic, Engine};

use super::modules::RecipeModules;
use super::{primitive_bindings, recipe_api, Runtime};
use crate::interrupt;
use crate::reporter::Event;

/// Enough for any recipe; a runaway loop stops with an error instead of hanging a deploy.
const MAX_OPERATIONS: u64 = 500_000_000;
const MAX_CALL_LEVELS: usize = 64;
const MAX_EXPRESSION_DEPTH: usize = 128;
const MAX_STRING_SIZE: usize = 64 * 1024 * 1024;

pub fn build(runtime: Arc<Runtime>) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true)
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_DEPTH)
        .set_max_string_size(MAX_STRING_SIZE)
        .disable_symbol("eval");
    engine.on_progress(|_| interrupt::should_stop().then(|| Dynamic::from("interrupted")));
    let printer = runtime.clone();
    engine.on_print(move |text| {
        let host = printer
            .host()
            .map(|h| h.lock().unwrap_or_else(|e| e.into_inner()).host.clone())
            .unwrap_or_else(|| "recipe".to_string());
        printer.reporter.event(Event::Message {
            host: &host,
            level: "info",
            text,
        });
    });
    let debugger = runtime.clone();
    engine.on_debug(move |text, source, position| {
        let text = debugger.reporter.secrets().redact(text);
        tracing::debug!(source = source.unwrap_or(""), %position, "{text}");
    });
    engine.set_module_resolver(RecipeModules::new(runtime.clone()));
    recipe_api::register(&mut engine, runtime.clone());
    primitive_bindings::register(&mut engine, runtime);
    engine
}
