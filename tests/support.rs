//! Test harness: a sandbox directory with git repositories and recipes, and `zdd` run in it
//! with a clean environment.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::CommandCargoExt;
use tempfile::TempDir;

/// A temporary directory holding everything one test touches.
pub struct Sandbox {
    pub dir: TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("zdd-test-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// The sandbox path as a string (for recipes).
    pub fn str(&self, relative: &str) -> String {
        self.path(relative).display().to_string()
    }

    pub fn write(&self, relative: &str, contents: &str) -> PathBuf {
        let path = self.path(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    pub fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path(relative)).unwrap()
    }

    /// A new git repository at `relative` on branch `main`.
    pub fn repo(&self, relative: &str) -> Repo {
        let path = self.path(relative);
        std::fs::create_dir_all(&path).unwrap();
        git(&path, &["init", "-q", "-b", "main"]);
        Repo { path }
    }

    /// `zdd ARGS` run in the sandbox, with a private HOME and no colour.
    pub fn zdd(&self, args: &[&str]) -> Command {
        let mut command = Command::cargo_bin("zdd").unwrap();
        command
            .args(args)
            .current_dir(self.root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.root())
            .env("USER", "tester")
            .env("NO_COLOR", "1");
        command
    }

    /// Replace the sandbox path with `[SANDBOX]` so output can be compared exactly.
    pub fn normalize(&self, text: &str) -> String {
        text.replace(&self.root().display().to_string(), "[SANDBOX]")
    }

    /// Release directory names under `deploy`/releases, sorted.
    pub fn releases(&self, deploy: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path(&format!("{deploy}/releases")))
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// The release `deploy`/current points at.
    pub fn current(&self, deploy: &str) -> Option<String> {
        std::fs::read_link(self.path(&format!("{deploy}/current")))
            .ok()
            .map(|t| t.file_name().unwrap().to_string_lossy().into_owned())
    }
}

/// A git repository made by a test.
pub struct Repo {
    pub path: PathBuf,
}

impl Repo {
    /// Write files and commit them; returns the commit id.
    pub fn commit(&self, files: &[(&str, &str)], message: &str) -> String {
        for (name, contents) in files {
            let path = self.path.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).unwrap();
            }
            std::fs::write(path, contents).unwrap();
        }
        git(&self.path, &["add", "-A"]);
        git(
            &self.path,
            &[
                "-c",
                "user.name=Test",
                "-c",
                "user.email=test@example.com",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                message,
            ],
        );
        git(&self.path, &["rev-parse", "HEAD"]).trim().to_string()
    }

    pub fn tag(&self, name: &str) {
        git(&self.path, &["tag", name]);
    }

    pub fn branch(&self, name: &str) {
        git(&self.path, &["branch", name]);
    }

    pub fn str(&self) -> String {
        self.path.display().to_string()
    }
}

/// Run git; panics with its output when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The five-line recipe of the README: the stdlib deploy of `repository` into `deploy_path`.
pub fn basic_recipe(repository: &str, deploy_path: &str) -> String {
    format!(
        "import \"deploy\";\nset(\"repository\", \"{repository}\");\nset(\"deploy_path\", \"{deploy_path}\");\nlocalhost();\n"
    )
}

/// What one run of `zdd` did: exit code, and its output with the sandbox path replaced.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panic with the whole output unless zdd exited with `code`.
    #[track_caller]
    pub fn expect(&self, code: i32) -> &Run {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit code {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        assert!(
            !self.stderr.contains("panicked"),
            "zdd panicked:\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn success(&self) -> &Run {
        self.expect(0)
    }

    /// The JSON objects of stdout, one per line (each line must be JSON).
    #[track_caller]
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| {
                serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"))
            })
            .collect()
    }
}

impl Sandbox {
    /// Run `zdd ARGS` to completion; output normalized with [`Sandbox::normalize`].
    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.zdd(args).output().expect("zdd runs");
        Run {
            code: output.status.code(),
            stdout: self.normalize(&String::from_utf8_lossy(&output.stdout)),
            stderr: self.normalize(&String::from_utf8_lossy(&output.stderr)),
        }
    }

    /// Every file, directory and symlink under `relative` (recursively, symlinks not followed),
    /// with file contents and link targets: two snapshots are equal when nothing changed.
    /// Paths under `relative` that start with one of `skip` are left out.
    pub fn tree(&self, relative: &str, skip: &[&str]) -> BTreeMap<String, String> {
        fn walk(root: &Path, dir: &Path, skip: &[&str], out: &mut BTreeMap<String, String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let name = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                if skip.iter().any(|s| name.starts_with(s)) {
                    continue;
                }
                let meta = std::fs::symlink_metadata(&path).unwrap();
                if meta.file_type().is_symlink() {
                    let target = std::fs::read_link(&path).unwrap();
                    out.insert(name, format!("-> {}", target.display()));
                } else if meta.is_dir() {
                    out.insert(name, "dir".to_string());
                    walk(root, &path, skip, out);
                } else {
                    let bytes = std::fs::read(&path).unwrap();
                    out.insert(name, String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
        let root = self.path(relative);
        let mut out = BTreeMap::new();
        walk(&root, &root, skip, &mut out);
        out
    }

    /// The events of `deploy`/.zdd/releases.jsonl, parsed (every line must be JSON).
    pub fn log(&self, deploy: &str) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.path(&format!("{deploy}/.zdd/releases.jsonl")))
            .unwrap_or_default();
        text.lines()
            .map(|line| serde_json::from_str(line).expect("a JSON line"))
            .collect()
    }
}

/// `zdd` output with what changes from run to run replaced: release names
/// (`20261126T130003Z` -> `[RELEASE]`) and durations (`(12 ms)` -> `([DURATION])`,
/// `in 1.25 s` -> `in [DURATION]`).
pub fn scrub(text: &str) -> String {
    let text = replace_release_names(text);
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    // A duration is digits (maybe with a decimal part), a space and `ms` or `s`.
    while let Some(start) = rest.find(|c: char| c.is_ascii_digit()) {
        let before_is_word = rest[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '.' || c == '_');
        let digits = rest[start..]
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .map(|n| start + n)
            .unwrap_or(rest.len());
        let after = &rest[digits..];
        let unit = [" ms", " s"].into_iter().find(|u| {
            after.starts_with(u)
                && !after[u.len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphanumeric())
        });
        match unit {
            Some(unit) if !before_is_word => {
                out.push_str(&rest[..start]);
                out.push_str("[DURATION]");
                rest = &after[unit.len()..];
            }
            _ => {
                out.push_str(&rest[..digits]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Replace every `YYYYMMDDTHHMMSSZ` with `[RELEASE]`.
pub fn replace_release_names(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    while i + 16 <= bytes.len() {
        let candidate = &bytes[i..i + 16];
        if is_release_name(candidate) {
            out.push_str(&text[copied..i]);
            out.push_str("[RELEASE]");
            i += 16;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

fn is_release_name(bytes: &[u8]) -> bool {
    bytes.len() == 16
        && bytes[..8].iter().all(u8::is_ascii_digit)
        && bytes[8] == b'T'
        && bytes[9..15].iter().all(u8::is_ascii_digit)
        && bytes[15] == b'Z'
}

/// Whether `name` looks like a release name (`20261126T130003Z`).
pub fn is_release(name: &str) -> bool {
    is_release_name(name.as_bytes())
}

/// This machine's name, as zdd records it in the lock.
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// A recipe: the stdlib deploy of `repository` into `deploy_path`, then `extra` lines.
pub fn recipe(repository: &str, deploy_path: &str, extra: &str) -> String {
    format!("{}{extra}", basic_recipe(repository, deploy_path))
}

/// Panic with the entries that differ unless two [`Sandbox::tree`] snapshots are equal.
#[track_caller]
pub fn assert_same_tree(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    context: &str,
) {
    if before == after {
        return;
    }
    let mut differences = Vec::new();
    for (path, old) in before {
        match after.get(path) {
            None => differences.push(format!("  removed: {path}")),
            Some(new) if new != old => differences.push(format!("  changed: {path}")),
            _ => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        differences.push(format!("  added:   {path}"));
    }
    panic!("{context}: files changed\n{}", differences.join("\n"));
}

/// Wait for `child` at most `limit`; kill it and panic when it takes longer.
#[track_caller]
pub fn wait_at_most(
    child: &mut std::process::Child,
    limit: std::time::Duration,
) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("zdd did not end within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// A pid that is not running: a child that has ended and been reaped.
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// `text` with another program's words replaced by `[THEIRS]`: every span that starts right
/// after `after` and ends right before the next `before` (ssh's reason, the kernel's errno
/// text, composer's error). Their wording changes from one machine to the next (versions,
/// locales, how the network is missing), so a test compares zdd's own words around them
/// exactly and only checks that the reason was passed on: an empty span panics, and so does
/// `text` without `after`.
#[track_caller]
pub fn their_words(text: &str, after: &str, before: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut found = false;
    while let Some(start) = rest.find(after) {
        let span = &rest[start + after.len()..];
        let Some(end) = span.find(before) else {
            panic!("`{after}` is not followed by `{before}` in:\n{text}");
        };
        assert!(
            !span[..end].trim().is_empty(),
            "nothing between `{after}` and `{before}` in:\n{text}"
        );
        out.push_str(&rest[..start + after.len()]);
        out.push_str("[THEIRS]");
        rest = &span[end..];
        found = true;
    }
    assert!(found, "`{after}` is not in:\n{text}");
    out.push_str(rest);
    out
}
