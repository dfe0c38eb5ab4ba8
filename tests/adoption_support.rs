//! Deploy paths made by other deploy tools, for the adoption tests (issue 14): each function
//! here builds one the way that tool leaves it after N deploys of a small git repository, and
//! returns an [`Adopted`] describing what is there.
//!
//! - Capistrano 3.17 and Mina 0.3.7 are the real tools (Debian packages `capistrano`, `mina`),
//!   deploying over SSH to a loopback sshd of `ssh_support` (start it with [`ruby_login`]:
//!   Ruby's net-ssh has no curve25519 here).
//! - Deployer 7, Ansistrano, Envoyer, a bash script, an in-place clone and a `current` outside
//!   the deploy path are written by bash scripts that run the exact commands those tools run
//!   (Deployer's recipe/deploy/*.php at v7.5.12, ansistrano.deploy 4.4.0 and
//!   ansistrano.rollback tasks/*.yml), on this machine's filesystem.
//!
//! The source: a bare repository served by a `file://` URL, branch `main`; release `n`
//! (1-based, in the tool's order) is the n-th commit, and its `VERSION` file holds `n` and a
//! newline, so `cat current/VERSION` says which release is live.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::ssh_support::{Login, SshHosts};
use crate::support::{git, Repo, Sandbox};

/// Which tool made the deploy path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Capistrano,
    Mina,
    Deployer,
    Ansistrano,
    /// Envoyer-style: `releases/%Y%m%d%H%M%S`, `current` -> absolute path.
    Envoyer,
    /// A bash deploy script with zdd's seed names `releases/%Y%m%dT%H%M%SZ`, `current` ->
    /// relative `releases/NAME`.
    Script,
    /// `current` is a real directory: a git clone updated in place.
    InPlace,
    /// `current` -> an absolute path outside the deploy path (a sibling `app-vN` directory).
    Outside,
}

/// The repository the tools deploy: a work tree that commits and a bare repository it
/// pushes to, cloned by the tools through [`Source::url`].
pub struct Source {
    pub work: Repo,
    pub bare: PathBuf,
    /// `file://<bare>`.
    pub url: String,
    /// Commits made so far, oldest first; the n-th has `VERSION` = n.
    pub commits: Vec<String>,
}

impl Source {
    /// A new source repository under `<sandbox>/<name>` (work) and `<sandbox>/<name>.git`.
    pub fn new(sandbox: &Sandbox, name: &str) -> Source {
        let work = sandbox.repo(name);
        let bare = sandbox.path(&format!("{name}.git"));
        let output = Command::new("git")
            .args(["init", "-q", "--bare", "-b", "main"])
            .arg(&bare)
            .output()
            .expect("git runs");
        assert!(output.status.success(), "git init --bare failed");
        git(
            &work.path,
            &["remote", "add", "origin", &bare.display().to_string()],
        );
        let url = format!("file://{}", bare.display());
        Source {
            work,
            bare,
            url,
            commits: Vec::new(),
        }
    }

    /// Commit release number `commits.len() + 1` (its `VERSION`) and push it to `main`;
    /// returns (number, commit).
    pub fn next(&mut self) -> (usize, String) {
        let number = self.commits.len() + 1;
        let commit = self.work.commit(
            &[
                ("VERSION", &format!("{number}\n")),
                ("index.html", &format!("<p>release {number}</p>\n")),
            ],
            &format!("release {number}"),
        );
        git(&self.work.path, &["push", "-q", "origin", "main"]);
        self.commits.push(commit.clone());
        (number, commit)
    }
}

/// A deploy path some tool made.
pub struct Adopted {
    pub layout: Layout,
    pub deploy_path: PathBuf,
    /// Release names in the tool's order, oldest first (the directory names under
    /// `releases/`; for [`Layout::Outside`] the sibling directory names; empty for
    /// [`Layout::InPlace`]).
    pub releases: Vec<String>,
    /// The commit each release holds, in the order of `releases` (for [`Layout::InPlace`]:
    /// every commit deployed, the last one is in `current`).
    pub commits: Vec<String>,
    /// The release `current` names, `None` when `current` is a directory.
    pub live: Option<String>,
    /// `readlink current`, exactly (`None` when `current` is a directory).
    pub current_link: Option<String>,
    pub source: Source,
    /// The tool's project directory (Capfile / config/deploy.rb) for Capistrano and Mina.
    pub project: Option<PathBuf>,
    sandbox_root: PathBuf,
}

impl Adopted {
    pub fn current(&self) -> PathBuf {
        self.deploy_path.join("current")
    }

    /// The `VERSION` the live `current` serves (the release number, 1-based).
    pub fn live_version(&self) -> String {
        std::fs::read_to_string(self.current().join("VERSION"))
            .unwrap_or_else(|e| panic!("{}/VERSION: {e}", self.current().display()))
            .trim()
            .to_string()
    }

    /// Deploy one more commit with the old tool, as after zdd has deployed there
    /// (Capistrano and Mina run again); `releases`, `commits`, `live` and `current_link`
    /// are updated.
    pub fn add_release(&mut self) {
        match self.layout {
            Layout::Capistrano => {
                self.source.next();
                cap(self.project.as_ref().unwrap(), &["production", "deploy"]);
            }
            Layout::Mina => {
                self.source.next();
                mina_run(self.project.as_ref().unwrap(), &["deploy"]);
            }
            Layout::Deployer => {
                self.source.next();
                deployer_deploy(&self.deploy_path, &self.source, false);
            }
            Layout::Ansistrano => {
                self.source.next();
                ansistrano_deploy(&self.deploy_path, &self.source, &name_now("%Y%m%d%H%M%SZ"));
            }
            Layout::Envoyer => {
                self.source.next();
                script_deploy(
                    &self.deploy_path,
                    &self.source,
                    &name_now("%Y%m%d%H%M%S"),
                    true,
                );
            }
            Layout::Script => {
                self.source.next();
                script_deploy(
                    &self.deploy_path,
                    &self.source,
                    &name_now("%Y%m%dT%H%M%SZ"),
                    false,
                );
            }
            Layout::InPlace => {
                self.source.next();
                bash(
                    &format!(
                        "cd {} && git pull -q --ff-only origin main",
                        sh(&self.current())
                    ),
                    &[],
                );
            }
            Layout::Outside => {
                let (number, _) = self.source.next();
                outside_deploy(&self.sandbox_root, &self.deploy_path, &self.source, number);
            }
        }
        self.refresh();
    }

    /// Run the old tool's own rollback (Capistrano's `cap production deploy:rollback`, Mina's
    /// `mina deploy:rollback`; for Deployer and Ansistrano the commands of their rollback
    /// task). Returns its output (a test checks success); `live`/`current_link` are updated.
    /// Panics for layouts whose tool has no rollback.
    pub fn tool_rollback(&mut self) -> Output {
        let output = match self.layout {
            Layout::Capistrano => run_tool(
                Command::new("cap")
                    .args(["production", "deploy:rollback"])
                    .current_dir(self.project.as_ref().unwrap()),
            ),
            Layout::Mina => run_tool(
                Command::new("mina")
                    .args(["deploy:rollback"])
                    .current_dir(self.project.as_ref().unwrap()),
            ),
            Layout::Deployer => run_bash(
                DEPLOYER_ROLLBACK,
                &[
                    ("D", &self.deploy_path.display().to_string()),
                    ("TIMESTAMP", &iso8601_now()),
                    ("DEP_USER", DEPLOYER_USER),
                ],
            ),
            Layout::Ansistrano => run_bash(
                ANSISTRANO_ROLLBACK,
                &[("D", &self.deploy_path.display().to_string())],
            ),
            other => panic!("{other:?} has no rollback of its own"),
        };
        self.refresh();
        output
    }

    /// Re-read `current` and the tool's release list from disk.
    pub fn refresh(&mut self) {
        let link = std::fs::read_link(self.current())
            .ok()
            .map(|t| t.display().to_string());
        self.live = link.as_ref().map(|l| {
            Path::new(l.trim_end_matches('/'))
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        });
        self.current_link = link;
        match self.layout {
            Layout::InPlace => {
                self.releases.clear();
                self.commits = self.source.commits.clone();
            }
            Layout::Outside => {
                self.releases = (1..=self.source.commits.len())
                    .map(|n| format!("app-v{n}"))
                    .collect();
                self.commits = self.source.commits.clone();
            }
            Layout::Deployer => {
                // Deployer's order is its log: `.dep/releases_log`, oldest line first.
                let log = std::fs::read_to_string(self.deploy_path.join(".dep/releases_log"))
                    .unwrap_or_default();
                self.releases = log
                    .lines()
                    .map(|line| {
                        let value: serde_json::Value = serde_json::from_str(line).unwrap();
                        value["release_name"].as_str().unwrap().to_string()
                    })
                    .filter(|name| self.deploy_path.join("releases").join(name).is_dir())
                    .collect();
                self.commits = self.revisions("REVISION");
            }
            Layout::Mina => {
                let mut names = dir_names(&self.deploy_path.join("releases"));
                names.sort_by_key(|n| n.parse::<u64>().unwrap_or(u64::MAX));
                self.releases = names;
                self.commits = self.revisions(".mina_git_revision");
            }
            _ => {
                // Names that sort in time order: by name.
                let mut names = dir_names(&self.deploy_path.join("releases"));
                names.sort();
                self.releases = names;
                self.commits = self.revisions("REVISION");
            }
        }
    }

    fn revisions(&self, file: &str) -> Vec<String> {
        self.releases
            .iter()
            .map(|name| {
                std::fs::read_to_string(self.deploy_path.join("releases").join(name).join(file))
                    .map(|t| t.trim().to_string())
                    .unwrap_or_default()
            })
            .collect()
    }
}

fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap())
                .filter(|e| e.file_type().unwrap().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn new_adopted(sandbox: &Sandbox, layout: Layout, deploy_path: &Path, source: Source) -> Adopted {
    Adopted {
        layout,
        deploy_path: deploy_path.to_path_buf(),
        releases: Vec::new(),
        commits: Vec::new(),
        live: None,
        current_link: None,
        source,
        project: None,
        sandbox_root: sandbox.root().to_path_buf(),
    }
}

// ---------------------------------------------------------------------------------------------
// Capistrano (real)

/// The [`Login`] for hosts that Capistrano (Ruby net-ssh) and zdd both reach: sshd also
/// offers `ecdh-sha2-nistp256`. Start the hosts with `SshHosts::start_with(&sandbox, 1,
/// &ruby_login())`.
pub fn ruby_login() -> Login {
    Login {
        kex_algorithms: Some(
            "curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256".to_string(),
        ),
        ..Login::default()
    }
}

/// `count` real `cap production deploy` runs to host `i` of `hosts` (started with
/// [`ruby_login`]), from a Capistrano project in `<sandbox>/capistrano`: releases
/// `releases/%Y%m%d%H%M%S` (UTC), `current` -> the absolute release path, `revisions.log`,
/// `repo/` (a mirror), `shared/`. `keep_releases` is Capistrano's default, 5.
pub fn capistrano(sandbox: &Sandbox, hosts: &SshHosts, i: usize, count: usize) -> Adopted {
    let source = Source::new(sandbox, "cap-source");
    let project = sandbox.path("capistrano");
    std::fs::create_dir_all(project.join("config/deploy")).unwrap();
    std::fs::create_dir_all(sandbox.path("capistrano-tmp")).unwrap();
    std::fs::write(
        project.join("Capfile"),
        "require \"capistrano/setup\"\nrequire \"capistrano/deploy\"\nrequire \"capistrano/scm/git\"\ninstall_plugin Capistrano::SCM::Git\n",
    )
    .unwrap();
    std::fs::write(
        project.join("config/deploy.rb"),
        format!(
            "set :application, \"app\"\nset :repo_url, {url}\nset :branch, \"main\"\nset :deploy_to, {deploy}\nset :tmp_dir, {tmp}\nset :format, :pretty\nset :log_level, :info\n",
            url = ruby_string(&source.url),
            deploy = ruby_string(&hosts.deploy_str(i)),
            tmp = ruby_string(&sandbox.str("capistrano-tmp")),
        ),
    )
    .unwrap();
    std::fs::write(
        project.join("config/deploy/production.rb"),
        format!(
            "server \"127.0.0.1\", user: \"root\", roles: %w{{app}}, port: {port}\nset :ssh_options, {{ keys: [{key}], keys_only: true, port: {port}, user: \"root\", verify_host_key: :never, auth_methods: [\"publickey\"], config: false, non_interactive: true }}\n",
            port = hosts.port(i),
            key = ruby_string(&hosts.identity_file().display().to_string()),
        ),
    )
    .unwrap();
    let mut adopted = new_adopted(sandbox, Layout::Capistrano, hosts.deploy_path(i), source);
    adopted.project = Some(project.clone());
    for _ in 0..count {
        adopted.source.next();
        next_second_after(&adopted.deploy_path, "%Y%m%d%H%M%S");
        cap(&project, &["production", "deploy"]);
    }
    adopted.refresh();
    adopted
}

fn cap(project: &Path, args: &[&str]) -> Output {
    let output = run_tool(Command::new("cap").args(args).current_dir(project));
    assert_tool_ok("cap", args, &output);
    output
}

// ---------------------------------------------------------------------------------------------
// Mina (real)

/// `mina setup` and `count` real `mina deploy` runs to host `i` (over the system ssh with the
/// harness's ssh config), from `<sandbox>/mina/config/deploy.rb`: releases `releases/<n>`
/// (1, 2, ...), `last_version` holding the last n, `current` -> `releases/<n>` (relative),
/// `.mina_git_revision` in each release, `scm/` (bare clone), `shared/`, `tmp/`.
/// `keep_releases` is Mina's default, 5.
///
/// Debian's mina 0.3.7 looks for its deploy script template at
/// `/usr/lib/ruby/data/deploy.sh.erb`, which the package does not ship (it ships the same
/// template as `/usr/share/doc/mina/examples/deploy.sh.erb`): the deploy.rb here points
/// `Mina.root_path` at that copy.
pub fn mina(sandbox: &Sandbox, hosts: &SshHosts, i: usize, count: usize) -> Adopted {
    let template = Path::new("/usr/share/doc/mina/examples/deploy.sh.erb");
    assert!(
        template.is_file(),
        "{} is missing: is the Debian package mina installed (scripts/setup)?",
        template.display()
    );
    let source = Source::new(sandbox, "mina-source");
    let project = sandbox.path("mina");
    std::fs::create_dir_all(project.join("config")).unwrap();
    std::fs::write(
        project.join("config/deploy.rb"),
        format!(
            "require 'mina/git'\n\
             # Debian ships data/deploy.sh.erb as an example file only.\n\
             module Mina\n  def self.root_path(*a)\n    File.join('/usr/share/doc/mina/examples', File.basename(File.join(*a)))\n  end\nend\n\
             set :domain, {alias}\n\
             set :deploy_to, {deploy}\n\
             set :repository, {url}\n\
             set :branch, 'main'\n\
             set :ssh_options, {options}\n\
             set :term_mode, :system\n\
             task :environment do\nend\n\
             task :deploy => :environment do\n  deploy do\n    invoke :'git:clone'\n    invoke :'deploy:cleanup'\n  end\nend\n",
            alias = ruby_string(&hosts.alias(i)),
            deploy = ruby_string(&hosts.deploy_str(i)),
            url = ruby_string(&source.url),
            options = ruby_string(&format!("-F {}", hosts.config_file().display())),
        ),
    )
    .unwrap();
    let mut adopted = new_adopted(sandbox, Layout::Mina, hosts.deploy_path(i), source);
    adopted.project = Some(project.clone());
    mina_run(&project, &["setup"]);
    for _ in 0..count {
        adopted.source.next();
        mina_run(&project, &["deploy"]);
    }
    adopted.refresh();
    adopted
}

fn mina_run(project: &Path, args: &[&str]) -> Output {
    let output = run_tool(Command::new("mina").args(args).current_dir(project));
    assert_tool_ok("mina", args, &output);
    output
}

// ---------------------------------------------------------------------------------------------
// Deployer 7 (its commands, written by bash)

/// The `user` Deployer records (its default is `git config --get user.name`).
pub const DEPLOYER_USER: &str = "Test";

/// Deployer 7's `dep deploy` (recipe/common.php `deploy` = deploy:prepare + deploy:publish,
/// with the default `archive` update_code strategy, `branch` main, keep_releases 10) run
/// `count` times: `releases/1..N`, `.dep/latest_release`, `.dep/releases_log`, `.dep/repo`
/// (mirror), `shared/`, `current` -> `releases/N` (relative: `ln --relative`, then
/// `mv -T release current`).
pub fn deployer(sandbox: &Sandbox, deploy_path: &Path, count: usize) -> Adopted {
    let mut adopted = new_adopted(
        sandbox,
        Layout::Deployer,
        deploy_path,
        Source::new(sandbox, "deployer-source"),
    );
    for _ in 0..count {
        adopted.source.next();
        deployer_deploy(deploy_path, &adopted.source, false);
    }
    adopted.refresh();
    adopted
}

/// [`deployer`] with `count` good deploys, then one more that failed after deploy:update_code
/// (say in a migration): `releases/N+1` exists with its code and REVISION, `.dep/latest_release`
/// is N+1, `.dep/releases_log` has its line, the `release` symlink -> `releases/N+1` is left,
/// `.dep/deploy.lock` is left (Deployer's `deploy:failed` does nothing by default and
/// deploy:unlock is part of deploy:publish), `current` still -> `releases/N`. `releases` and
/// `commits` include the failed one (last); `live` is N.
pub fn deployer_failed(sandbox: &Sandbox, deploy_path: &Path, count: usize) -> Adopted {
    let mut adopted = deployer(sandbox, deploy_path, count);
    adopted.source.next();
    deployer_deploy(deploy_path, &adopted.source, true);
    adopted.refresh();
    adopted
}

/// One Deployer deploy; `fail` stops it after deploy:update_code, as a failing task would.
fn deployer_deploy(deploy_path: &Path, source: &Source, fail: bool) {
    bash(
        DEPLOYER_DEPLOY,
        &[
            ("D", &deploy_path.display().to_string()),
            ("REPO", &source.url),
            ("TARGET", "main"),
            ("DEP_USER", DEPLOYER_USER),
            ("TIMESTAMP", &iso8601_now()),
            ("FAIL", if fail { "1" } else { "" }),
            ("KEEP", "10"),
        ],
    );
}

/// The commands of Deployer v7.5.12's deploy tasks, in order (file:line of recipe/).
const DEPLOYER_DEPLOY: &str = r#"
set -e
# deploy:setup (deploy/setup.php:7)
[ -d "$D" ] || mkdir -p "$D"
cd "$D"
[ -d .dep ] || mkdir .dep
[ -d releases ] || mkdir releases
[ -d shared ] || mkdir shared
# deploy:lock (deploy/lock.php:9)
if [ -f "$D/.dep/deploy.lock" ]; then echo "Deploy locked by $(cat "$D/.dep/deploy.lock")." >&2; exit 1; fi
echo "$DEP_USER" > "$D/.dep/deploy.lock"
# deploy:release (deploy/release.php:87)
cd "$D"
if [ -h release ]; then rm release; fi
latest=$(cat .dep/latest_release 2>/dev/null || echo 0)
name=$((latest + 1))
if [ -d "releases/$name" ]; then echo "Release name \"$name\" already exists." >&2; exit 1; fi
echo $name > .dep/latest_release
# json_encode(['created_at', 'release_name', 'user', 'target']), single-quoted.
echo "{\"created_at\":\"$TIMESTAMP\",\"release_name\":\"$name\",\"user\":\"$DEP_USER\",\"target\":\"$TARGET\"}" >> .dep/releases_log
mkdir -p "releases/$name"
ln -nfs --relative "releases/$name" "$D/release"
release_path="$D/$(readlink "$D/release")"
# deploy:update_code, strategy archive (deploy/update_code.php:71)
bare="$D/.dep/repo"
[ -d "$bare" ] || mkdir -p "$bare"
[ -f "$bare/HEAD" ] || git clone -q --mirror "$REPO" "$bare" 2>&1
cd "$bare"
git remote update >/dev/null 2>&1
git archive "$TARGET" | tar -x -f - -C "$release_path" 2>&1
rev=$(git rev-list "$TARGET" -1)
echo "$rev" > "$release_path/REVISION"
# deploy:env, deploy:shared, deploy:writable: nothing with the defaults.
if [ -n "$FAIL" ]; then echo "a task after deploy:update_code failed" >&2; exit 0; fi
# deploy:symlink (deploy/symlink.php:11; mv supports -T here)
mv -T "$D/release" "$D/current"
# deploy:unlock (deploy/lock.php:21)
rm -f "$D/.dep/deploy.lock"
# deploy:cleanup (deploy/cleanup.php:9): releases_list is the log's names, newest first,
# that are directories under releases/ (deploy/release.php:32)
cd "$D" && if [ -e release ]; then rm release; fi
listed=$(cd releases && ls -t -1 -d */ | sed 's#/$##')
tail -n 300 .dep/releases_log | tac | sed -n 's/.*"release_name":"\([^"]*\)".*/\1/p' | while read -r r; do
    if printf '%s\n' "$listed" | grep -qxF "$r"; then echo "$r"; fi
done | tail -n +$((KEEP + 1)) | while read -r r; do rm -rf "$D/releases/$r"; done
"#;

/// Deployer v7.5.12's `dep rollback` (deploy/rollback.php): the candidate is the first release
/// after the current one in releases_list (log order, newest first) without BAD_RELEASE;
/// `ln -nfs --relative releases/<candidate> current`; the release rolled back from gets
/// `BAD_RELEASE` holding `<timestamp>,<user>`.
const DEPLOYER_ROLLBACK: &str = r#"
set -e
cd "$D"
current=$(basename "$(readlink "$D/current")")
listed=$(cd releases && ls -t -1 -d */ | sed 's#/$##')
candidate=""
found=""
for r in $(tail -n 300 .dep/releases_log | tac | sed -n 's/.*"release_name":"\([^"]*\)".*/\1/p'); do
    printf '%s\n' "$listed" | grep -qxF "$r" || continue
    if [ "$r" = "$current" ]; then found=1; continue; fi
    if [ -n "$found" ] && [ ! -f "$D/releases/$r/BAD_RELEASE" ]; then candidate=$r; break; fi
done
if [ -z "$candidate" ]; then echo "No more releases you can revert to." >&2; exit 1; fi
ln -nfs --relative "releases/$candidate" "$D/current"
echo "$TIMESTAMP,$DEP_USER" > "releases/$current/BAD_RELEASE"
"#;

// ---------------------------------------------------------------------------------------------
// Ansistrano (its commands, written by bash)

/// ansistrano.deploy 4.4.0 with `ansistrano_deploy_via: git`, branch main, defaults otherwise
/// (keep_releases 0: nothing removed), run `count` times: `releases/%Y%m%d%H%M%SZ` (UTC, a `Z`
/// suffix, 15 characters), `repo/` (a clone with a work tree), `shared/`, `REVISION` (the
/// commit, no newline), `current` -> `./releases/NAME` (relative, with `./`).
pub fn ansistrano(sandbox: &Sandbox, deploy_path: &Path, count: usize) -> Adopted {
    let mut adopted = new_adopted(
        sandbox,
        Layout::Ansistrano,
        deploy_path,
        Source::new(sandbox, "ansistrano-source"),
    );
    for n in 0..count {
        adopted.source.next();
        let name = name_ago("%Y%m%d%H%M%SZ", count - n);
        ansistrano_deploy(deploy_path, &adopted.source, &name);
    }
    adopted.refresh();
    adopted
}

fn ansistrano_deploy(deploy_path: &Path, source: &Source, name: &str) {
    bash(
        ANSISTRANO_DEPLOY,
        &[
            ("D", &deploy_path.display().to_string()),
            ("REPO", &source.url),
            ("BRANCH", "main"),
            ("V", name),
        ],
    );
}

/// tasks/setup.yml, update-code.yml + update-code/git.yml, symlink-shared.yml (nothing by
/// default), symlink.yml, cleanup.yml (keep 0: nothing) of ansistrano.deploy 4.4.0.
const ANSISTRANO_DEPLOY: &str = r#"
set -e
mkdir -p "$D" "$D/releases" "$D/shared"
# git module: repo "$D/repo", version main, update yes, force yes
if [ -d "$D/repo/.git" ]; then
    git -C "$D/repo" fetch -q origin
    git -C "$D/repo" checkout -q --force -B "$BRANCH" "origin/$BRANCH"
else
    git clone -q --branch "$BRANCH" "$REPO" "$D/repo"
fi
sha=$(git -C "$D/repo" rev-parse HEAD)
mkdir -p "$D/releases/$V"
# "Sync repo subtree to release path": the tracked files, copied (rsync -a --files-from)
cd "$D/repo"
git ls-files -z --with-tree="$BRANCH" | tar --null -T - -cf - | tar -xf - -C "$D/releases/$V"
# copy: content "{{ ansistrano_git_result.after }}": no newline
printf '%s' "$sha" > "$D/releases/$V/REVISION"
# symlink.yml: a directory at current is removed first; file state=link is atomic (rename)
cd "$D"
if [ -d current ] && [ ! -L current ]; then rm -rf current; fi
ln -s "./releases/$V" ".current.ansistrano"
mv -T ".current.ansistrano" current
"#;

/// ansistrano.rollback (tasks/setup.yml, symlink.yml, cleanup.yml): releases sorted by mtime,
/// newest first; the newest is taken as the current release and the second newest is the one
/// rolled back to; current -> `./releases/<second>`; the newest is removed
/// (ansistrano_remove_rolled_back: yes).
const ANSISTRANO_ROLLBACK: &str = r#"
set -e
cd "$D/releases"
set -- $(ls -1td */ | sed 's#/$##')
if [ $# -le 1 ]; then echo "Could not roll back the code because there is no prior release" >&2; exit 1; fi
newest=$1
previous=$2
cd "$D"
ln -s "./releases/$previous" ".current.ansistrano"
mv -T ".current.ansistrano" current
rm -rf "$D/releases/$newest"
"#;

// ---------------------------------------------------------------------------------------------
// Envoyer-style and a bash script with zdd's seed names

/// Envoyer-style: `count` releases `releases/%Y%m%d%H%M%S` (UTC, an hour apart in the past),
/// each the `git archive` of its commit with a `REVISION` file, `current` -> the absolute
/// release path (`ln -nfs`).
pub fn envoyer(sandbox: &Sandbox, deploy_path: &Path, count: usize) -> Adopted {
    scripted(
        sandbox,
        deploy_path,
        count,
        Layout::Envoyer,
        "%Y%m%d%H%M%S",
        true,
    )
}

/// A bash deploy script with zdd's seed names: `releases/%Y%m%dT%H%M%SZ` (UTC, an hour apart
/// in the past), `REVISION`, `current` -> `releases/NAME` (relative).
pub fn script(sandbox: &Sandbox, deploy_path: &Path, count: usize) -> Adopted {
    scripted(
        sandbox,
        deploy_path,
        count,
        Layout::Script,
        "%Y%m%dT%H%M%SZ",
        false,
    )
}

fn scripted(
    sandbox: &Sandbox,
    deploy_path: &Path,
    count: usize,
    layout: Layout,
    format: &str,
    absolute: bool,
) -> Adopted {
    let mut adopted = new_adopted(
        sandbox,
        layout,
        deploy_path,
        Source::new(sandbox, "script-source"),
    );
    for n in 0..count {
        adopted.source.next();
        let name = name_ago(format, count - n);
        script_deploy(deploy_path, &adopted.source, &name, absolute);
    }
    adopted.refresh();
    adopted
}

fn script_deploy(deploy_path: &Path, source: &Source, name: &str, absolute: bool) {
    bash(
        SCRIPT_DEPLOY,
        &[
            ("D", &deploy_path.display().to_string()),
            ("BARE", &source.bare.display().to_string()),
            ("NAME", name),
            ("ABSOLUTE", if absolute { "1" } else { "" }),
        ],
    );
}

const SCRIPT_DEPLOY: &str = r#"
set -e
mkdir -p "$D/releases" "$D/storage"
release="$D/releases/$NAME"
mkdir "$release"
git --git-dir="$BARE" archive main | tar -x -C "$release"
git --git-dir="$BARE" rev-parse main > "$release/REVISION"
if [ -n "$ABSOLUTE" ]; then
    ln -nfs "$release" "$D/current"
else
    cd "$D" && ln -nfs "releases/$NAME" current
fi
"#;

// ---------------------------------------------------------------------------------------------
// In-place and outside

/// An in-place deploy: `current` is a real directory, a git clone of the source (with its
/// `.git`) pulled `count` times (`git pull --ff-only`); no `releases/`.
pub fn in_place(sandbox: &Sandbox, deploy_path: &Path, count: usize) -> Adopted {
    let mut adopted = new_adopted(
        sandbox,
        Layout::InPlace,
        deploy_path,
        Source::new(sandbox, "inplace-source"),
    );
    adopted.source.next();
    std::fs::create_dir_all(deploy_path).unwrap();
    bash(
        "git clone -q --branch main \"$REPO\" \"$D/current\"",
        &[
            ("D", &deploy_path.display().to_string()),
            ("REPO", &adopted.source.url),
        ],
    );
    for _ in 1..count {
        adopted.add_release();
    }
    adopted.refresh();
    adopted
}

/// `current` -> an absolute path outside the deploy path: `count` directories `app-v1..N`
/// beside the deploy path (its parent directory), each the `git archive` of its commit;
/// `current` -> `<parent>/app-vN`; no `releases/`.
pub fn outside(sandbox: &Sandbox, deploy_path: &Path, count: usize) -> Adopted {
    let mut adopted = new_adopted(
        sandbox,
        Layout::Outside,
        deploy_path,
        Source::new(sandbox, "outside-source"),
    );
    for _ in 0..count {
        adopted.add_release();
    }
    adopted
}

fn outside_deploy(_sandbox: &Path, deploy_path: &Path, source: &Source, number: usize) {
    let parent = deploy_path.parent().unwrap();
    bash(
        "set -e\nmkdir -p \"$D\" \"$DIR\"\ngit --git-dir=\"$BARE\" archive main | tar -x -C \"$DIR\"\nln -nfs \"$DIR\" \"$D/current\"\n",
        &[
            ("D", &deploy_path.display().to_string()),
            ("DIR", &parent.join(format!("app-v{number}")).display().to_string()),
            ("BARE", &source.bare.display().to_string()),
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// A tool run: no colour, `USER=tester` (Capistrano's revisions.log names `$USER`), stdin
/// closed, 120 s at most.
fn run_tool(command: &mut Command) -> Output {
    command
        .env("USER", "tester")
        .env("NO_COLOR", "1")
        .env("TERM", "dumb")
        .stdin(Stdio::null());
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e} (scripts/setup installs it)"));
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || read_all(stdout));
    let err = std::thread::spawn(move || read_all(stderr));
    let status = crate::support::wait_at_most(&mut child, Duration::from_secs(120));
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn read_all(mut reader: impl std::io::Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = reader.read_to_end(&mut bytes);
    bytes
}

#[track_caller]
fn assert_tool_ok(tool: &str, args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "{tool} {args:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `bash -c SCRIPT` with these variables; panics with its output unless it exits 0.
#[track_caller]
fn bash(script: &str, vars: &[(&str, &str)]) -> Output {
    let output = run_bash(script, vars);
    assert_tool_ok("bash", &[script], &output);
    output
}

fn run_bash(script: &str, vars: &[(&str, &str)]) -> Output {
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("bash runs")
}

/// A path quoted for bash.
fn sh(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

fn ruby_string(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// Now (UTC) in `format` (strftime: %Y %m %d %H %M %S and literal characters).
fn name_now(format: &str) -> String {
    strftime(time::OffsetDateTime::now_utc(), format)
}

/// `hours` hours ago (UTC) in `format`.
fn name_ago(format: &str, hours: usize) -> String {
    strftime(
        time::OffsetDateTime::now_utc() - time::Duration::hours(hours as i64),
        format,
    )
}

fn strftime(at: time::OffsetDateTime, format: &str) -> String {
    format
        .replace("%Y", &format!("{:04}", at.year()))
        .replace("%m", &format!("{:02}", u8::from(at.month())))
        .replace("%d", &format!("{:02}", at.day()))
        .replace("%H", &format!("{:02}", at.hour()))
        .replace("%M", &format!("{:02}", at.minute()))
        .replace("%S", &format!("{:02}", at.second()))
}

/// PHP's `DateTime::ISO8601` of now in UTC: `2026-12-03T13:58:26+0000`.
fn iso8601_now() -> String {
    format!(
        "{}+0000",
        strftime(time::OffsetDateTime::now_utc(), "%Y-%m-%dT%H:%M:%S")
    )
}

/// Wait until now (UTC, in `format`) is later than every release name under
/// `<deploy>/releases`, so that the next timestamped release gets a new name.
fn next_second_after(deploy_path: &Path, format: &str) {
    let newest = dir_names(&deploy_path.join("releases")).into_iter().max();
    if let Some(newest) = newest {
        while name_now(format) <= newest {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A zdd recipe for `adopted`'s deploy path and repository (`branch` main), with `host` (a
/// recipe line such as `localhost();`), `keep_releases` and `extra` lines.
pub fn zdd_recipe(adopted: &Adopted, host: &str, keep: usize, extra: &str) -> String {
    format!(
        "import \"deploy\";\nset(\"repository\", {});\nset(\"branch\", \"main\");\nset(\"deploy_path\", {});\nset(\"keep_releases\", {keep});\n{host}\n{extra}",
        crate::ssh_support::rhai_string(&adopted.source.url),
        crate::ssh_support::rhai_string(&adopted.deploy_path.display().to_string()),
    )
}

/// The `VERSION` a release directory (or `current`) holds.
pub fn version(path: &Path) -> String {
    std::fs::read_to_string(path.join("VERSION"))
        .unwrap_or_else(|e| panic!("{}/VERSION: {e}", path.display()))
        .trim()
        .to_string()
}
