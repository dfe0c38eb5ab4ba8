//! Test harness: a sandbox directory with git repositories and recipes, and `zdd` run in it
//! with a clean environment.

#![allow(dead_code)]

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
