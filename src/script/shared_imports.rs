//! The shared recipes a recipe imports (`import "git+...@PIN/NAME"`), as the module resolver
//! finds them: the pin read (a commit, or a ref through `zdd.lock`), the tree taken from the
//! cache (fetched only when it lacks it, never with `--offline`), the file checked, and the
//! name it gets in errors: `URL@COMMIT/PATH`. A module of a shared recipe imports relative
//! names from the same repository at the same commit.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use crate::recipes::cache::{Cache, Tree};
use crate::recipes::import::{self, Pin};
use crate::recipes::lock::{self, LockFile, Locked};
use crate::recipes::Problem;

/// How branch and tag imports get their commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Pins {
    /// From `zdd.lock`; an import it lacks is an error (every command but `zdd recipes`).
    #[default]
    Locked,
    /// From `zdd.lock`; those it lacks are resolved now (`zdd recipes lock`).
    Lock,
    /// Resolved now for the entries `NAME` names (all when none), the rest as `Lock`
    /// (`zdd recipes update`).
    Update(Option<String>),
}

/// What loading a recipe may do for its shared imports.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// A fetch is an error instead.
    pub offline: bool,
    pub pins: Pins,
}

/// A file of a shared recipe that was loaded: where its relative imports are looked up.
struct Loaded {
    tree: Arc<Tree>,
    path: String,
    /// The ref its import asked for, if not a commit (its files are recorded for the lock).
    reference: Option<String>,
}

pub struct SharedImports {
    options: Options,
    /// The recipe as the user named it (for hints).
    recipe: String,
    lock_path: PathBuf,
    lock: OnceLock<Result<LockFile, Problem>>,
    cache: OnceLock<Result<Arc<Cache>, Problem>>,
    /// (URL, ref) -> commit, once per load: every module of one repository at one ref agrees.
    resolved: Mutex<HashMap<(String, String), String>>,
    trees: Mutex<HashMap<(String, String), Arc<Tree>>>,
    /// By source name.
    loaded: Mutex<HashMap<String, Loaded>>,
    /// What a branch or tag import used: the lock entries this load makes.
    used: Mutex<BTreeMap<(String, String), Locked>>,
}

impl SharedImports {
    pub fn new(recipe: &std::path::Path, options: Options) -> SharedImports {
        SharedImports {
            options,
            recipe: recipe.display().to_string(),
            lock_path: lock::beside(recipe),
            lock: OnceLock::new(),
            cache: OnceLock::new(),
            resolved: Mutex::new(HashMap::new()),
            trees: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
            used: Mutex::new(BTreeMap::new()),
        }
    }

    /// The lock entries of the branch and tag imports this load used (their commits and the
    /// files read from them).
    pub fn used(&self) -> Vec<Locked> {
        let used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        used.values()
            .cloned()
            .map(|mut entry| {
                entry.sha256 = lock::files_sha256(&entry.files);
                entry
            })
            .collect()
    }

    /// The recipe cache (for `zdd recipes update`'s diff).
    pub fn cache(&self) -> Result<Arc<Cache>, Problem> {
        self.cache
            .get_or_init(|| Cache::open().map(Arc::new))
            .clone()
    }

    fn lock_file(&self) -> Result<&LockFile, Problem> {
        self.lock
            .get_or_init(|| LockFile::read(&self.lock_path))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Whether the source `name` is a file of a shared recipe.
    pub fn is_shared_source(&self, name: &str) -> bool {
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }

    /// `import "git+..."`: its source name and text.
    pub fn find(&self, text: &str) -> Result<(String, String), Problem> {
        let read = import::parse(text)
            .map_err(|why| Problem::new(format!("import `{text}` is refused: {why}")))?;
        let (commit, reference) = match &read.pin {
            Pin::Commit(commit) => (commit.clone(), None),
            Pin::Ref(reference) => (
                self.commit_of(text, &read.url, &read.fetch_url, reference)?,
                Some(reference.clone()),
            ),
        };
        let tree = self.tree(text, &read.url, &read.fetch_url, &commit)?;
        let Some(path) = tree.find(&read.path) else {
            return Err(Problem::new(format!(
                "import `{text}`: no `{}` or `{}.rhai` in {}@{commit}",
                read.path,
                read.path.strip_suffix(".rhai").unwrap_or(&read.path),
                read.url
            )));
        };
        self.read(tree, &path, reference)
    }

    /// `import "name"` inside the shared recipe file `importer`: the file of the same
    /// repository at the same commit, `None` when it has none (the stdlib's may then serve).
    pub fn find_relative(
        &self,
        importer: &str,
        name: &str,
    ) -> Option<Result<(String, String), Problem>> {
        let (tree, from, reference) = {
            let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
            let file = loaded.get(importer)?;
            (file.tree.clone(), file.path.clone(), file.reference.clone())
        };
        let joined = match import::join_in_repository(&from, name) {
            Ok(joined) => joined,
            Err(why) => {
                return Some(Err(Problem::new(format!(
                    "import `{name}` in `{importer}` is refused: {why}"
                ))))
            }
        };
        let path = tree.find(&joined)?;
        Some(self.read(tree, &path, reference))
    }

    fn read(
        &self,
        tree: Arc<Tree>,
        path: &str,
        reference: Option<String>,
    ) -> Result<(String, String), Problem> {
        let read = tree.read(path)?;
        let source = tree.source_name(&read.path);
        if let Some(reference) = &reference {
            let key = (tree.url.clone(), reference.clone());
            let refreshing = self.refreshes(&tree.url, reference);
            if let Some(locked) = self.lock_file()?.find(&tree.url, reference) {
                let recorded = locked.files.get(&read.path);
                if !refreshing
                    && locked.commit == tree.commit
                    && recorded.is_some_and(|h| *h != read.sha256)
                {
                    return Err(Problem::new(format!(
                        "`{source}` is not the file `{}` pinned: its sha256 differs from the one recorded there",
                        self.lock_path.display()
                    ))
                    .with_hint(
                        "one of them was changed by hand: restore `zdd.lock` from version control, or remove the recipe cache (`zdd/recipes` in $XDG_CACHE_HOME or ~/.cache) to fetch it again",
                    ));
                }
            }
            let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
            let entry = used.entry(key).or_insert_with(|| Locked {
                url: tree.url.clone(),
                reference: reference.clone(),
                commit: tree.commit.clone(),
                sha256: String::new(),
                files: BTreeMap::new(),
            });
            entry.files.insert(read.path.clone(), read.sha256.clone());
        }
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                source.clone(),
                Loaded {
                    tree,
                    path: read.path,
                    reference,
                },
            );
        Ok((source, read.text))
    }

    /// Whether this load resolves `url`@`reference` afresh instead of taking the lock's.
    fn refreshes(&self, url: &str, reference: &str) -> bool {
        match &self.options.pins {
            Pins::Locked | Pins::Lock => false,
            Pins::Update(None) => true,
            Pins::Update(Some(name)) => Locked {
                url: url.to_string(),
                reference: reference.to_string(),
                commit: String::new(),
                sha256: String::new(),
                files: BTreeMap::new(),
            }
            .answers_to(name),
        }
    }

    /// The commit a branch or tag import stands for.
    fn commit_of(
        &self,
        text: &str,
        url: &str,
        fetch_url: &str,
        reference: &str,
    ) -> Result<String, Problem> {
        let key = (url.to_string(), reference.to_string());
        if let Some(commit) = self
            .resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(commit.clone());
        }
        let locked = self
            .lock_file()?
            .find(url, reference)
            .map(|entry| entry.commit.clone());
        let commit = match (locked, &self.options.pins) {
            (Some(commit), _) if !self.refreshes(url, reference) => commit,
            (None, Pins::Locked) => {
                return Err(Problem::new(format!(
                    "import `{text}` names `{reference}`, a branch or tag, and `{}` does not pin it to a commit",
                    self.lock_path.display()
                ))
                .with_hint(format!(
                    "run `zdd recipes lock {}` to pin it (or import at a 40-hex commit)",
                    self.recipe
                )))
            }
            _ => {
                if self.options.offline {
                    return Err(Problem::new(format!(
                        "import `{text}`: resolving `{reference}` needs a fetch of {url}, and --offline forbids it"
                    )));
                }
                self.cache()?.resolve(fetch_url, reference).map_err(|p| {
                    Problem::new(format!("import `{text}`: {}", p.message))
                })?
            }
        };
        self.resolved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, commit.clone());
        Ok(commit)
    }

    fn tree(
        &self,
        text: &str,
        url: &str,
        fetch_url: &str,
        commit: &str,
    ) -> Result<Arc<Tree>, Problem> {
        let key = (url.to_string(), commit.to_string());
        if let Some(tree) = self
            .trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(tree.clone());
        }
        let cache = self.cache()?;
        let tree = match cache.cached(url, commit)? {
            Some(tree) => tree,
            None if self.options.offline => {
                return Err(Problem::new(format!(
                    "import `{text}`: the recipe cache lacks {url}@{commit}, and --offline forbids fetching it"
                ))
                .with_hint("run once without --offline to fetch it into the cache"))
            }
            None => cache.tree(url, fetch_url, commit).map_err(|p| Problem {
                message: format!("import `{text}`: {}", p.message),
                hint: p.hint,
            })?,
        };
        let tree = Arc::new(tree);
        self.trees
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, tree.clone());
        Ok(tree)
    }
}
