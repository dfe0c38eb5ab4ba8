//! The one place an engine is built: configured, then never changed.

use std::sync::Arc;

use rhai::{Dynamic, Engine};

use super::modules::RecipeModules;
use super::{primitive_bindings, recipe_api, value_bindings, Runtime};
use crate::output::reporter::Event;
use crate::system::interrupt;

/// Enough for any recipe; a runaway loop stops with an error instead of hanging a deploy.
const MAX_OPERATIONS: u64 = 500_000_000;
const MAX_CALL_LEVELS: usize = 64;
const MAX_EXPRESSION_DEPTH: usize = 128;
const MAX_STRING_SIZE: usize = 64 * 1024 * 1024;
/// More memory than any recipe needs; checked every `MEMORY_CHECK_EVERY` operations.
const MAX_MEMORY_BYTES: u64 = 256 << 20;
const MEMORY_CHECK_EVERY: u64 = 100_000;
/// A list or map that grows past this stops with an error instead of exhausting memory.
const MAX_ARRAY_SIZE: usize = 10_000;
const MAX_MAP_SIZE: usize = 10_000;

pub fn build(runtime: Arc<Runtime>) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true)
        .set_max_operations(MAX_OPERATIONS)
        .set_max_call_levels(MAX_CALL_LEVELS)
        .set_max_expr_depths(MAX_EXPRESSION_DEPTH, MAX_EXPRESSION_DEPTH)
        .set_max_string_size(MAX_STRING_SIZE)
        .set_max_array_size(MAX_ARRAY_SIZE)
        .set_max_map_size(MAX_MAP_SIZE)
        .disable_symbol("eval");
    engine.on_progress(|operations| {
        if interrupt::should_stop() {
            return Some(Dynamic::from("interrupted"));
        }
        // Rhai checks a map's size when a function returns it, not when `m[key] = v` adds a key:
        // a recipe filling a map without end is stopped by the memory it takes instead.
        if operations % MEMORY_CHECK_EVERY == 0 && resident_bytes() > MAX_MEMORY_BYTES {
            return Some(Dynamic::from(format!(
                "the recipe uses more than {} MB of memory",
                MAX_MEMORY_BYTES >> 20
            )));
        }
        None
    });
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
    value_bindings::register(&mut engine, runtime.clone());
    primitive_bindings::register(&mut engine, runtime);
    engine
}

/// This process's resident memory, from `/proc/self/status` (0 where it cannot be read).
fn resident_bytes() -> u64 {
    let kilobytes = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .unwrap_or(0);
    kilobytes * 1024
}

#[cfg(test)]
mod tests {
    #[test]
    fn resident_memory_is_read() {
        let bytes = super::resident_bytes();
        assert!(
            bytes > 1 << 20 && bytes < super::MAX_MEMORY_BYTES,
            "{bytes}"
        );
    }
}
