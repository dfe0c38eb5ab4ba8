//! The text of every recipe and module that was loaded, by the name errors use for it, so an
//! error can show the line it points at.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Default, Clone)]
pub struct Sources {
    texts: Arc<Mutex<BTreeMap<String, Arc<str>>>>,
}

impl Sources {
    pub fn add(&self, name: &str, text: &str) {
        self.texts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_string(), Arc::from(text));
    }

    /// The text of every source loaded so far.
    pub fn texts(&self) -> Vec<Arc<str>> {
        self.texts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The text of source `name`.
    pub fn text(&self, name: &str) -> Option<Arc<str>> {
        let texts = self.texts.lock().unwrap_or_else(|e| e.into_inner());
        texts.get(name).cloned()
    }

    /// Line `line` (1-based) of source `name`.
    pub fn line(&self, name: &str, line: usize) -> Option<String> {
        let texts = self.texts.lock().unwrap_or_else(|e| e.into_inner());
        let text = texts.get(name)?;
        text.lines()
            .nth(line.checked_sub(1)?)
            .map(|l| l.to_string())
    }
}
