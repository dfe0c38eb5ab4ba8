//! `zdd.lock`, beside the recipe: the commit each branch or tag import resolved to, and the
//! sha256 of the files used from it. TOML, one `[[import]]` per repository and ref.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::import;
use super::Problem;
use crate::artifact::sha256_text;

pub const FILE_NAME: &str = "zdd.lock";

const HEADER: &str = "\
# zdd.lock: the commits the shared recipes imported by a branch or tag are pinned to.
# Written by `zdd recipes lock`, moved by `zdd recipes update`; commit it with the recipe.
";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFile {
    #[serde(default, rename = "import")]
    pub imports: Vec<Locked>,
}

/// One repository at one ref, pinned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Locked {
    /// As imported, `git+` included.
    pub url: String,
    /// The branch or tag the import asks for.
    #[serde(rename = "ref")]
    pub reference: String,
    /// What it resolved to.
    pub commit: String,
    /// Of the files below ([`files_sha256`]).
    pub sha256: String,
    /// The files used from the repository at that commit, each with its sha256.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

impl Locked {
    /// Whether `name` (given to `zdd recipes update`) names this entry: its URL with or
    /// without `git+`, `URL@REF`, or the repository's name (`recipes` for `.../recipes.git`).
    pub fn answers_to(&self, name: &str) -> bool {
        let bare = self.url.strip_prefix("git+").unwrap_or(&self.url);
        name == self.url
            || name == bare
            || name == format!("{}@{}", self.url, self.reference)
            || name == repository_name(&self.url)
    }
}

/// The last part of a repository's URL, without `.git`.
pub fn repository_name(url: &str) -> &str {
    let last = url.trim_end_matches('/').rsplit('/').next().unwrap_or(url);
    last.strip_suffix(".git").unwrap_or(last)
}

/// The sha256 of a set of files: of the `sha256sum` lines (`HASH  PATH`), sorted by path.
pub fn files_sha256(files: &BTreeMap<String, String>) -> String {
    let lines: String = files
        .iter()
        .map(|(path, hash)| format!("{hash}  {path}\n"))
        .collect();
    sha256_text(&lines)
}

/// `zdd.lock` beside `recipe`.
pub fn beside(recipe: &Path) -> PathBuf {
    match recipe.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.join(FILE_NAME),
        None => PathBuf::from(FILE_NAME),
    }
}

impl LockFile {
    /// The lock file at `path`, empty when there is none; one that does not hold together is
    /// refused (exit 2), naming what is wrong.
    pub fn read(path: &Path) -> Result<LockFile, Problem> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockFile::default()),
            Err(e) => {
                return Err(Problem::new(format!(
                    "cannot read `{}`: {e}",
                    path.display()
                )))
            }
        };
        let fix = format!(
            "fix it by hand or remove it and run `zdd recipes lock` again ({})",
            path.display()
        );
        let lock: LockFile = toml::from_str(&text).map_err(|e| {
            Problem::new(format!(
                "`{}` is not a lock file zdd can read: {}",
                path.display(),
                e.message()
            ))
            .with_hint(fix.clone())
        })?;
        for entry in &lock.imports {
            let sample = format!("{}@{}/m", entry.url, entry.reference);
            let problem = match import::parse(&sample) {
                Err(why) => Some(format!("`{}@{}`: {why}", entry.url, entry.reference)),
                Ok(read) if !matches!(read.pin, import::Pin::Ref(_)) => {
                    Some(format!("`{}`: the ref is a commit id", entry.reference))
                }
                Ok(_)
                    if entry.commit.len() != 40
                        || !entry.commit.chars().all(|c| c.is_ascii_hexdigit()) =>
                {
                    Some(format!("`{}`: the commit is not 40 hex digits", entry.url))
                }
                Ok(_) if files_sha256(&entry.files) != entry.sha256 => Some(format!(
                    "`{}@{}`: its sha256 is not that of its files",
                    entry.url, entry.reference
                )),
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                return Err(
                    Problem::new(format!("`{}`: {problem}", path.display())).with_hint(fix.clone())
                );
            }
        }
        Ok(lock)
    }

    /// The entry of `url` at `reference`.
    pub fn find(&self, url: &str, reference: &str) -> Option<&Locked> {
        self.imports
            .iter()
            .find(|e| e.url == url && e.reference == reference)
    }

    /// Write to `path` (a temporary file renamed over it).
    pub fn write(&self, path: &Path) -> Result<(), Problem> {
        let mut sorted = self.clone();
        sorted
            .imports
            .sort_by(|a, b| (&a.url, &a.reference).cmp(&(&b.url, &b.reference)));
        let body = toml::to_string(&sorted)
            .map_err(|e| Problem::new(format!("cannot write the lock file: {e}")))?;
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let failed =
            |e: std::io::Error| Problem::new(format!("cannot write `{}`: {e}", path.display()));
        let mut temporary = tempfile::NamedTempFile::new_in(dir).map_err(failed)?;
        use std::io::Write;
        temporary
            .write_all(format!("{HEADER}\n{body}").as_bytes())
            .map_err(failed)?;
        temporary.persist(path).map_err(|e| failed(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Locked {
        let files = BTreeMap::from([("a.rhai".to_string(), "ab".repeat(32))]);
        Locked {
            url: "git+file:///srv/recipes.git".into(),
            reference: "v1".into(),
            commit: "c".repeat(40),
            sha256: files_sha256(&files),
            files,
        }
    }

    #[test]
    fn written_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        assert_eq!(LockFile::read(&path).unwrap(), LockFile::default());
        let lock = LockFile {
            imports: vec![entry()],
        };
        lock.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("[[import]]") && text.contains("ref = \"v1\""),
            "{text}"
        );
        assert_eq!(LockFile::read(&path).unwrap(), lock);
        assert!(lock.find("git+file:///srv/recipes.git", "v1").is_some());
        let named = &lock.imports[0];
        for name in [
            "recipes",
            "file:///srv/recipes.git",
            "git+file:///srv/recipes.git@v1",
        ] {
            assert!(named.answers_to(name), "{name}");
        }
        assert!(!named.answers_to("other"));
    }

    #[test]
    fn a_lock_that_does_not_hold_together_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let mut bad = entry();
        bad.files.insert("b.rhai".into(), "cd".repeat(32));
        LockFile { imports: vec![bad] }.write(&path).unwrap();
        let problem = LockFile::read(&path).unwrap_err();
        assert!(
            problem
                .message
                .contains("its sha256 is not that of its files"),
            "{problem}"
        );
        let mut bad = entry();
        bad.url = "git+file:///srv/x\ny".into();
        LockFile { imports: vec![bad] }.write(&path).unwrap();
        assert!(LockFile::read(&path)
            .unwrap_err()
            .message
            .contains("newline"));
        std::fs::write(&path, "import = 3").unwrap();
        assert!(LockFile::read(&path)
            .unwrap_err()
            .message
            .contains("not a lock file"));
    }
}
