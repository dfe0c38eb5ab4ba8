//! The layers of zdd, as one table ([`LAYERS`]), and the tests that hold the source to it: a
//! file may use its own layer and the layers below it, never one above; and Rhai's engine is
//! named only in the layers that run it (cli, script). ARCHITECTURE.md describes this table.
//!
//! The tests read every file under `src/`, find each path that starts with `crate::` or
//! `super::` (in `use` items, `use` groups included, and in code), and name the file, the line
//! and the path of each import that goes up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// From the top. Each layer lists its modules: a module path names a file (`settings`) or a
/// directory of files (`primitives`); the longest match wins (`primitives::lock_state` is in
/// `state`, the rest of `primitives` in `primitives`).
const LAYERS: &[(&str, &[&str])] = &[
    // The command line (`cli`: arguments, one function per subcommand, how a command ends), the
    // crate roots, and `doctor` (a subcommand with checks of its own). `layers` is this file
    // (tests only).
    ("cli", &["main", "lib", "cli", "doctor", "layers"]),
    // The Rhai engine: the recipe API, the bindings, modules, and a script's errors in words.
    ("script", &["script"]),
    // Shared recipes: import strings read, repositories fetched into the cache on this
    // machine and every file checked, `zdd.lock`. The module resolver uses them.
    ("recipes", &["recipes"]),
    // Runs a plan on hosts. Calls steps through `StepCaller`, which the script implements.
    ("runner", &["run"]),
    // The settings zdd reads, checked before anything runs.
    ("settings", &["settings"]),
    // Pure: registry + task -> ordered steps.
    ("plan", &["plan"]),
    // Inventories (Ansible's INI, YAML and JSON, Deployer's hosts.yml) read into hosts.
    ("inventory", &["inventory"]),
    // What the recipe declared.
    ("registry", &["registry"]),
    // One host during a run and the typed operations on it.
    ("primitives", &["primitives"]),
    // Pure: what a release and a lock file say, and what other tools left on a deploy path.
    (
        "state",
        &[
            "primitives::release_state",
            "primitives::lock_state",
            "primitives::foreign_layout",
        ],
    ),
    // Where commands and file operations happen, git included.
    ("transport", &["transport"]),
    // What every layer may use: values and quoting, child processes, Ctrl-C, the environment,
    // the HTTP client, progress, secrets, failures.
    ("base", &["values", "system", "output", "artifact"]),
];

/// Imports that go up today, each with the reason it is allowed for now. An entry that no
/// longer matches anything fails the test too: the list only shrinks.
const EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// What of Rhai a layer below `script` may name: values (a setting's value, a list) and a
/// task's body as data. Calling into the engine (`Engine`, `AST`, `EvalAltResult`, ...) is the
/// script layer's alone.
const RHAI_BELOW_SCRIPT: &[&str] = &["Dynamic", "Array", "FnPtr"];

/// A path that a file names.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Reference {
    line: usize,
    /// As written, groups expanded: `crate::primitives::lock`.
    text: String,
    /// Resolved from the crate root: `["primitives", "lock"]` (for `rhai::X`: `["X"]`).
    path: Vec<String>,
}

/// The rank of a layer: 0 is the top.
fn rank(layer: &str) -> usize {
    LAYERS
        .iter()
        .position(|(name, _)| *name == layer)
        .expect("a layer of the table")
}

/// The layer of a module path: the longest module of the table it starts with.
fn layer_of(path: &[String]) -> Option<&'static str> {
    let mut best: Option<(usize, &'static str)> = None;
    for (layer, modules) in LAYERS {
        for module in modules.iter() {
            let parts: Vec<&str> = module.split("::").collect();
            let matches = parts.len() <= path.len() && parts.iter().zip(path).all(|(a, b)| a == b);
            if matches && best.is_none_or(|(length, _)| parts.len() > length) {
                best = Some((parts.len(), layer));
            }
        }
    }
    best.map(|(_, layer)| layer)
}

/// The module path of a file under `src/`: `primitives/gates/mod.rs` -> `primitives::gates`.
/// The crate roots are named after their files (`lib`, `main`), so the table can place them.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().map(String::as_str) == Some("mod") {
        parts.pop();
    }
    parts
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    /// `::`
    PathSeparator,
    Punct(char),
}

/// Rust source as tokens with their lines: identifiers, `::` and punctuation. Comments,
/// strings, characters and lifetimes are skipped (a path in a doc comment is not an import).
fn tokens(source: &str) -> Vec<(usize, Token)> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let count_lines = |from: usize, to: usize, line: &mut usize| {
        *line += chars[from..to].iter().filter(|c| **c == '\n').count();
    };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let start = i;
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            count_lines(start, i, &mut line);
        } else if c == '"' {
            let start = i;
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            count_lines(start, i.min(chars.len()), &mut line);
        } else if c == '\'' {
            // A character ('x', '\n', '\'') or a lifetime ('a).
            if next == Some('\\') {
                i += 3;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
            }
        } else if c.is_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            // Raw strings (r"..", r#".."#, br".."), byte strings and bytes (b"..", b'x').
            let raw = (word == "r" || word == "br")
                && matches!(chars.get(i), Some('"') | Some('#'))
                && chars[i..].iter().find(|c| **c != '#') == Some(&'"');
            if raw {
                let hashes = chars[i..].iter().take_while(|c| **c == '#').count();
                let body = i + hashes + 1;
                let closing: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                let mut end = body;
                while end < chars.len() && !chars[end..].starts_with(&closing) {
                    end += 1;
                }
                count_lines(i, end.min(chars.len()), &mut line);
                i = end + closing.len();
            } else if word == "b" && matches!(chars.get(i), Some('"') | Some('\'')) {
                // The quote is read as a string or a character next.
            } else {
                out.push((line, Token::Ident(word)));
            }
        } else if c.is_ascii_digit() {
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
        } else if c == ':' && next == Some(':') {
            out.push((line, Token::PathSeparator));
            i += 2;
        } else {
            out.push((line, Token::Punct(c)));
            i += 1;
        }
    }
    out
}

/// The paths a path tree names, from `tokens[at]` (just after a `::`): `a::b`, `a::{b, c::d}`,
/// `self`, `*`. Returns the paths (relative to the tree's start) and where the tree ends.
fn tree(tokens: &[(usize, Token)], mut at: usize) -> (Vec<Vec<String>>, usize) {
    let mut prefix: Vec<String> = Vec::new();
    loop {
        match tokens.get(at).map(|(_, t)| t) {
            Some(Token::Ident(name)) => {
                if name != "self" {
                    prefix.push(name.clone());
                }
                at += 1;
                if tokens.get(at).map(|(_, t)| t) == Some(&Token::PathSeparator) {
                    at += 1;
                    continue;
                }
                return (vec![prefix], at);
            }
            Some(Token::Punct('{')) => {
                let mut paths = Vec::new();
                at += 1;
                loop {
                    match tokens.get(at).map(|(_, t)| t) {
                        Some(Token::Punct('}')) | None => {
                            return (paths, at + 1);
                        }
                        Some(Token::Punct(',')) => at += 1,
                        _ => {
                            let (inner, end) = tree(tokens, at);
                            paths.extend(inner.into_iter().map(|path| {
                                prefix.iter().cloned().chain(path).collect::<Vec<_>>()
                            }));
                            at = end;
                            // `a as b`
                            if tokens.get(at).map(|(_, t)| t) == Some(&Token::Ident("as".into())) {
                                at += 2;
                            }
                        }
                    }
                }
            }
            // `*`, `<` of a turbofish, or the end of a path.
            _ => return (vec![prefix], at),
        }
    }
}

/// Every `crate::` and `super::` path in `source` (of the file whose module is `module`),
/// resolved from the crate root; and every `rhai::` path, as the names it takes from Rhai.
fn references(source: &str, module: &[String]) -> (Vec<Reference>, Vec<Reference>) {
    let tokens = tokens(source);
    let mut internal = Vec::new();
    let mut rhai = Vec::new();
    // Inline modules (`mod tests { .. }`) the scan is in: their names and brace depth.
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0;
    let mut at = 0;
    while at < tokens.len() {
        let (line, token) = &tokens[at];
        let starts_path = tokens.get(at + 1).map(|(_, t)| t) == Some(&Token::PathSeparator)
            && !matches!(
                at.checked_sub(1).map(|i| &tokens[i].1),
                Some(Token::PathSeparator)
            );
        match token {
            Token::Ident(word) if word == "mod" => {
                if let (Some((_, Token::Ident(name))), Some((_, Token::Punct('{')))) =
                    (tokens.get(at + 1), tokens.get(at + 2))
                {
                    depth += 1;
                    inline.push((name.clone(), depth));
                    at += 3;
                    continue;
                }
            }
            Token::Ident(word) if starts_path && (word == "crate" || word == "super") => {
                let mut base: Vec<String> = match word.as_str() {
                    "crate" => Vec::new(),
                    _ => module
                        .iter()
                        .cloned()
                        .chain(inline.iter().map(|(name, _)| name.clone()))
                        .collect(),
                };
                let mut shown = word.clone();
                if word == "super" {
                    base.pop();
                }
                // `super::super::..`
                let mut next = at + 2;
                while tokens.get(next).map(|(_, t)| t) == Some(&Token::Ident("super".into()))
                    && tokens.get(next + 1).map(|(_, t)| t) == Some(&Token::PathSeparator)
                {
                    base.pop();
                    shown.push_str("::super");
                    next += 2;
                }
                let (paths, end) = tree(&tokens, next);
                for path in paths {
                    internal.push(Reference {
                        line: *line,
                        text: std::iter::once(shown.clone())
                            .chain(path.iter().cloned())
                            .collect::<Vec<_>>()
                            .join("::"),
                        path: base.iter().cloned().chain(path).collect(),
                    });
                }
                at = end;
                continue;
            }
            Token::Ident(word) if starts_path && word == "rhai" => {
                let (paths, end) = tree(&tokens, at + 2);
                for path in paths {
                    rhai.push(Reference {
                        line: *line,
                        text: format!("rhai::{}", path.join("::")),
                        path,
                    });
                }
                at = end;
                continue;
            }
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                if inline.last().is_some_and(|(_, d)| *d == depth) {
                    inline.pop();
                }
                depth = depth.saturating_sub(1);
            }
            _ => {}
        }
        at += 1;
    }
    (internal, rhai)
}

/// Every `.rs` file under `dir`, sorted.
fn source_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ can be listed") {
            let path = entry.expect("src/ can be listed").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// What breaks the rules in the files `(path under src/, source)`: one line per problem.
fn problems(files: &[(String, String)]) -> Vec<String> {
    problems_with(files, EXCEPTIONS)
}

/// [`problems`], with `exceptions` allowed.
fn problems_with(files: &[(String, String)], exceptions: &[(&str, &str, &str)]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut used: BTreeMap<(&str, &str), bool> = exceptions
        .iter()
        .map(|(f, p, _)| ((*f, *p), false))
        .collect();
    for (file, source) in files {
        let module = module_of(Path::new(file));
        let Some(layer) = layer_of(&module) else {
            problems.push(format!(
                "src/{file}: in no layer: add `{}` to LAYERS in src/layers.rs",
                module.join("::")
            ));
            continue;
        };
        let (internal, rhai) = references(source, &module);
        for reference in internal {
            let Some(target) = layer_of(&reference.path) else {
                problems.push(format!(
                    "src/{file}:{}: `{}` names no module of LAYERS in src/layers.rs",
                    reference.line, reference.text
                ));
                continue;
            };
            if rank(target) >= rank(layer) {
                continue;
            }
            let exception = exceptions
                .iter()
                .find(|(f, p, _)| *f == file.as_str() && *p == reference.text);
            if let Some((f, p, _)) = exception {
                used.insert((f, p), true);
                continue;
            }
            problems.push(format!(
                "src/{file}:{}: `{}`: the {layer} layer uses the {target} layer, which is above it",
                reference.line, reference.text
            ));
        }
        if rank(layer) > rank("script") {
            for reference in rhai {
                let name = reference.path.first().map(String::as_str).unwrap_or("");
                if !RHAI_BELOW_SCRIPT.contains(&name) {
                    problems.push(format!(
                        "src/{file}:{}: `{}`: below the script layer, Rhai is named only for {}",
                        reference.line,
                        reference.text,
                        RHAI_BELOW_SCRIPT.join(", ")
                    ));
                }
            }
        }
    }
    for ((file, path), was_used) in used {
        if !was_used {
            problems.push(format!(
                "src/{file}: no longer uses `{path}`: remove it from EXCEPTIONS in src/layers.rs"
            ));
        }
    }
    problems
}

fn read_sources() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    source_files(&src)
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&src).expect("under src/");
            let source = std::fs::read_to_string(&path).expect("a source file is UTF-8");
            (relative.to_string_lossy().into_owned(), source)
        })
        .collect()
}

#[test]
fn nothing_below_imports_what_is_above() {
    let problems = problems(&read_sources());
    assert!(
        problems.is_empty(),
        "imports that break the layers (see ARCHITECTURE.md):\n{}",
        problems.join("\n")
    );
}

/// An exception, for the tests.
#[cfg(test)]
const EXAMPLE: &[(&str, &str, &str)] = &[(
    "transport/ssh.rs",
    "crate::primitives::lock::alive",
    "an example",
)];

#[test]
fn an_import_that_goes_up_is_named_with_its_file_and_line() {
    let runner = "//! `crate::script` in a comment is no import\n\
                  use std::sync::Arc;\n\
                  use crate::{plan::Step, script::Recipe};\n\
                  fn f() { let s = \"crate::script::Recipe\"; crate::values::config::count(); }\n\
                  use rhai::{Dynamic, EvalAltResult};\n";
    let files = vec![
        ("run/runner.rs".to_string(), runner.to_string()),
        (
            "primitives/lock_state.rs".to_string(),
            "use super::lock::alive;\nmod tests { use super::*; use super::super::lock; }\n"
                .to_string(),
        ),
        ("brand_new.rs".to_string(), String::new()),
        (
            "transport/ssh.rs".to_string(),
            "fn f() { crate::primitives::lock::alive(1); }".to_string(),
        ),
    ];
    assert_eq!(
        problems_with(&files, EXAMPLE),
        [
            "src/run/runner.rs:3: `crate::script::Recipe`: the runner layer uses the script layer, which is above it",
            "src/run/runner.rs:5: `rhai::EvalAltResult`: below the script layer, Rhai is named only for Dynamic, Array, FnPtr",
            "src/primitives/lock_state.rs:1: `super::lock::alive`: the state layer uses the primitives layer, which is above it",
            "src/primitives/lock_state.rs:2: `super::super::lock`: the state layer uses the primitives layer, which is above it",
            "src/brand_new.rs: in no layer: add `brand_new` to LAYERS in src/layers.rs",
        ]
    );
}

#[test]
fn an_exception_that_no_longer_happens_is_named() {
    let files = vec![("transport/ssh.rs".to_string(), String::new())];
    assert_eq!(
        problems_with(&files, EXAMPLE),
        ["src/transport/ssh.rs: no longer uses `crate::primitives::lock::alive`: remove it from EXCEPTIONS in src/layers.rs"]
    );
}

#[test]
fn every_layer_of_the_table_is_in_architecture_md() {
    let architecture =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md");
    for (layer, _) in LAYERS {
        assert!(
            architecture
                .lines()
                .any(|line| line.trim_start().starts_with(&format!("{layer} "))),
            "ARCHITECTURE.md does not describe the `{layer}` layer"
        );
    }
}
