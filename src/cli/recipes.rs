//! `zdd recipes lock|update`: the commits of the shared recipes a recipe imports by branch or
//! tag, pinned in `zdd.lock` beside it. An update prints the diff of the recipe files it brings
//! in: that code runs shell on the servers, and the diff is its review.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use crate::cli::arguments::{Common, RecipesCommand};
use crate::cli::error::Error;
use crate::cli::subcommand::load_pinned;
use crate::output::secrets::Secrets;
use crate::output::sources::Sources;
use crate::recipes::import;
use crate::recipes::lock::{self, LockFile, Locked};
use crate::recipes::Problem;
use crate::script::shared_imports::Pins;

pub fn execute(
    command: RecipesCommand,
    sources: &Sources,
    secrets: &Arc<Secrets>,
) -> Result<(), Error> {
    match command {
        RecipesCommand::Lock { recipe, common } => {
            pin(&recipe, &common, None, Pins::Lock, sources, secrets)
        }
        RecipesCommand::Update {
            recipe,
            name,
            common,
        } => {
            let pins = Pins::Update(name.clone());
            pin(&recipe, &common, name.as_deref(), pins, sources, secrets)
        }
    }
}

fn usage(problem: Problem) -> Error {
    Error::Usage {
        message: problem.message,
        hint: problem.hint,
    }
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}

fn pin(
    recipe: &Path,
    common: &Common,
    name: Option<&str>,
    pins: Pins,
    sources: &Sources,
    secrets: &Arc<Secrets>,
) -> Result<(), Error> {
    let path = lock::beside(recipe);
    let old = LockFile::read(&path).map_err(usage)?;
    if let Some(name) = name {
        if !old.imports.iter().any(|entry| entry.answers_to(name)) {
            let names: BTreeSet<&str> = old
                .imports
                .iter()
                .map(|e| lock::repository_name(&e.url))
                .collect();
            return Err(Error::Usage {
                message: format!("`{}` pins no repository `{name}`", path.display()),
                hint: Some(match names.is_empty() {
                    true => format!(
                        "`zdd recipes lock {}` pins the imports first",
                        recipe.display()
                    ),
                    false => format!(
                        "it pins: {}",
                        names.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                }),
            });
        }
    }
    let loaded = load_pinned(recipe, common, Vec::new(), sources, secrets, pins)?;
    let used = loaded.runtime.shared.used();
    if used.is_empty() {
        println!(
            "{}: no import by branch or tag: nothing to pin",
            recipe.display()
        );
        return Ok(());
    }
    let mut new = old.clone();
    for entry in &used {
        new.imports
            .retain(|e| !(e.url == entry.url && e.reference == entry.reference));
        new.imports.push(entry.clone());
    }
    if new != old {
        new.write(&path).map_err(usage)?;
    }
    for entry in &used {
        report(entry, old.find(&entry.url, &entry.reference), &loaded)?;
    }
    Ok(())
}

/// One entry's line, and when its commit moved, the diff of its files.
fn report(
    entry: &Locked,
    before: Option<&Locked>,
    loaded: &crate::script::Recipe,
) -> Result<(), Error> {
    let name = format!("{}@{}", entry.url, entry.reference);
    match before {
        None => println!("{name}: pinned at {}", entry.commit),
        Some(before) if before.commit == entry.commit => {
            println!("{name}: at {} (unchanged)", short(&entry.commit))
        }
        Some(before) => {
            println!(
                "{name}: {} -> {}",
                short(&before.commit),
                short(&entry.commit)
            );
            let files: Vec<String> = before
                .files
                .keys()
                .chain(entry.files.keys())
                .cloned()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let fetch_url = import::parse(&format!("{name}/m"))
                .map(|read| read.fetch_url)
                .map_err(|why| usage(Problem::new(why)))?;
            let cache = loaded.runtime.shared.cache().map_err(usage)?;
            let diff = cache
                .diff(&fetch_url, &before.commit, &entry.commit, &files)
                .map_err(usage)?;
            if diff.is_empty() {
                println!("  (the recipe files used are the same)");
            } else {
                print!("{diff}");
            }
        }
    }
    Ok(())
}
