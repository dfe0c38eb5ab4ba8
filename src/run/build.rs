//! The build phase (`build_on`): once per deploy, before any host is touched, the pinned commit
//! is checked out into a clean directory on zdd's machine, the build tasks run there (those a
//! recipe marks with `build("task")`: the Laravel recipe's `deploy:vendors`, `deploy:assets`
//! and `gate:audit`), and the result is packed into one archive (`crate::artifact`) that
//! `deploy:update_code` ships to every host (`primitives::ship`). A build failure stops the
//! deploy before any host is reached.
//!
//! The archive is kept in `$XDG_CACHE_HOME/zdd/artifacts/` (else `~/.cache/zdd/`), named by
//! what it was built from (the commit, the build's tasks and settings, the recipe and the
//! files it imports): deploying that again (a rollback forward, hosts brought up to date
//! later) reuses it, with the same hash, once it is checked against what its build recorded,
//! and a host that has it already is sent nothing. That cache holds the repository and its
//! builds: it is readable by its owner only. Runs building the same commit at once each
//! write their own file, and each ships the file it opened.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rhai::Dynamic;
use sha2::{Digest, Sha256};

use super::host_setup;
use super::runner::{run_step, RunError, Slot};
use super::step_caller::StepCaller;
use crate::artifact::{self, Links, Packed};
use crate::output::failure::Failure;
use crate::output::reporter::Reporter;
use crate::plan::Step;
use crate::primitives::host_context::{Deployment, HostContext, ReleaseState};
use crate::primitives::ship::{self, Artifact};
use crate::primitives::update_code;
use crate::registry::Registry;
use crate::system::interrupt;
use crate::transport::{git, Local, Transport};
use crate::values::config;
use crate::values::template::Mode;

/// The name the build goes by in progress lines and failures.
pub const BUILD_HOST: &str = "build";

/// Archives kept in the local cache (the newest; older ones are removed).
const KEPT_ARTIFACTS: usize = 10;

/// Where the build runs (`build_on`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildOn {
    /// Each host builds its own release, in the deploy's order (the default).
    Hosts,
    /// Once, on zdd's machine.
    Local,
    /// Once, on this host of the recipe (over SSH), and brought back to zdd's machine to pack.
    Host(String),
}

impl BuildOn {
    /// `build_on` from the run's settings (checked before the run: `settings`); an error
    /// names the value.
    pub fn read(
        config: &BTreeMap<String, Dynamic>,
        registry: &Registry,
    ) -> Result<BuildOn, String> {
        let Some(value) = config.get("build_on") else {
            return Ok(BuildOn::Hosts);
        };
        let text = config::text(value).map_err(|e| format!("`build_on`: {e}"))?;
        match text.as_str() {
            "hosts" => Ok(BuildOn::Hosts),
            "local" => Ok(BuildOn::Local),
            name if registry.hosts.iter().any(|h| h.name == name) => {
                Ok(BuildOn::Host(name.to_string()))
            }
            other => Err(format!(
                "`build_on` is `{other}`: not `hosts`, `local`, nor a host the recipe declares"
            )),
        }
    }
}

/// The steps of a run split for a build: those that run in the build (in order), and those
/// that run on the hosts.
pub fn split(steps: &[Step]) -> (Vec<Step>, Vec<Step>) {
    steps.iter().cloned().partition(|step| step.build)
}

/// `$XDG_CACHE_HOME/zdd` (else `~/.cache/zdd`).
pub fn cache_root() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|home| home.join(".cache"))
        })
        .map(|cache| cache.join("zdd"))
}

/// Build once (`on`: zdd's machine or a named host): check the commit out into a clean
/// directory, run `steps` there, pack the result on zdd's machine. Returns the artifact.
pub fn build(
    recipe: &dyn StepCaller,
    on: &BuildOn,
    steps: &[Step],
    deployment: &Arc<Deployment>,
    reporter: &Arc<Reporter>,
) -> Result<Arc<Artifact>, RunError> {
    let setup = |message: String| RunError::Setup(vec![message]);
    let root = cache_root().ok_or_else(|| {
        setup("the build needs a cache directory: set HOME or XDG_CACHE_HOME".to_string())
    })?;
    private_directory(&root)
        .map_err(|e| setup(format!("cannot create `{}`: {e}", root.display())))?;
    for dir in ["build", "artifacts", "repos"] {
        std::fs::create_dir_all(root.join(dir))
            .map_err(|e| setup(format!("cannot create `{}`: {e}", root.join(dir).display())))?;
    }
    // A clean directory on zdd's machine: the local build's, or where a host's build comes
    // back; beside the last build of the same recipe and repository, whose `vendor/` and
    // `node_modules/` the local build starts from (`vendor_reuse`), as a host's release does.
    let group = root.join("build").join(group_of(recipe));
    std::fs::create_dir_all(&group)
        .map_err(|e| setup(format!("cannot create `{}`: {e}", group.display())))?;
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&group)
        .map_err(|e| setup(format!("cannot create a build directory: {e}")))?;
    let place = Place::open(recipe, on, &root, work.path(), deployment, reporter)?;
    let result = build_in(
        recipe,
        &place,
        steps,
        &root,
        work.path(),
        deployment,
        reporter,
    );
    place.close();
    let (artifact, fresh) = match result {
        Ok(built) => built,
        Err(e) => {
            remove_build_directory(work, reporter);
            return Err(e);
        }
    };
    if fresh && place_is_local(on) {
        keep_as_last(work);
    } else {
        remove_build_directory(work, reporter);
    }
    Ok(artifact)
}

/// Remove a build directory that is not kept; one that cannot be removed is a warning (a
/// process a build task left running may still be writing there).
fn remove_build_directory(work: tempfile::TempDir, reporter: &Reporter) {
    let shown = work.path().display().to_string();
    if let Err(e) = work.close() {
        reporter.event(crate::output::reporter::Event::Message {
            host: BUILD_HOST,
            level: "warning",
            text: &format!(
                "the build directory `{shown}` was not removed ({e}): a process the build \
                 started may still be writing there"
            ),
        });
    }
}

/// `root`, made if missing, readable by its owner only (it holds the repository and its
/// builds); an existing one is made so too.
fn private_directory(root: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)?;
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
}

fn place_is_local(on: &BuildOn) -> bool {
    matches!(on, BuildOn::Local)
}

/// Marks a local build directory whose build succeeded: the next build starts from it.
const COMPLETE: &str = "complete";

/// The builds of one recipe and repository share a directory (a hash of both).
fn group_of(recipe: &dyn StepCaller) -> String {
    let repository = host_setup::merged_config(recipe, None)
        .get("repository")
        .map(|v| v.to_string())
        .unwrap_or_default();
    let path = std::fs::canonicalize(recipe.path())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| recipe.path().to_string());
    artifact::sha256_text(&format!("{path}\n{repository}"))[..16].to_string()
}

/// The newest finished build beside `work` (its release directory), if any.
fn last_build(work: &Path) -> Option<PathBuf> {
    let group = work.parent()?;
    std::fs::read_dir(group)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|dir| dir != work)
        .filter_map(|dir| {
            let done = dir.join(COMPLETE).metadata().ok()?.modified().ok()?;
            Some((done, dir))
        })
        .max()
        .map(|(_, dir)| dir.join("releases/build"))
        .filter(|release| release.is_dir())
}

/// Keep this build's directory for the next build to start from, and remove the older ones.
fn keep_as_last(work: tempfile::TempDir) {
    let work = work.keep();
    if std::fs::write(work.join(COMPLETE), "").is_err() {
        let _ = std::fs::remove_dir_all(&work);
        return;
    }
    let Some(group) = work.parent() else {
        return;
    };
    for entry in std::fs::read_dir(group).into_iter().flatten().flatten() {
        let dir = entry.path();
        if dir != work && dir.join(COMPLETE).exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Where a build runs: its host's slot (`build`, or the named host's), its repository cache.
struct Place {
    slot: Slot,
    /// The repository's bare cache there.
    cache: String,
    /// The build's directory on a named host, removed when the build is over.
    remote: Option<(String, Arc<crate::transport::Ssh>, tempfile::TempDir)>,
}

impl Place {
    fn open(
        recipe: &dyn StepCaller,
        on: &BuildOn,
        root: &Path,
        work: &Path,
        deployment: &Arc<Deployment>,
        reporter: &Arc<Reporter>,
    ) -> Result<Place, RunError> {
        let setup = |message: String| RunError::Setup(vec![message]);
        let release = || ReleaseState {
            name: "build".into(),
            ..Default::default()
        };
        match on {
            BuildOn::Host(name) => {
                let host = recipe
                    .registry()
                    .hosts
                    .iter()
                    .find(|h| &h.name == name)
                    .ok_or_else(|| setup(format!("`build_on`: no host `{name}`")))?;
                let control = crate::transport::ssh::control_directory()
                    .map_err(|e| setup(format!("{e:#}")))?;
                let connected = host_setup::connect(
                    recipe,
                    host,
                    0,
                    control.path(),
                    reporter.clone(),
                    deployment.clone(),
                    true,
                )
                .map_err(|e| setup(format!("the build host `{name}`: {e}")))?;
                let mut ctx = connected.context;
                let home = ctx.deploy_path().map_err(|e| {
                    setup(format!(
                        "the build host `{name}` needs a `deploy_path` (its builds go under `.zdd/build` there): {e}"
                    ))
                })?;
                let unique = work
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "build".into());
                let dir = format!("{home}/.zdd/build/{unique}");
                ctx.config
                    .insert("deploy_path".into(), Dynamic::from(dir.clone()));
                ctx.release = Some(release());
                let ssh = connected.ssh.ok_or_else(|| {
                    setup(format!(
                        "the build host `{name}` is this machine: use `build_on = \"local\"`"
                    ))
                })?;
                Ok(Place {
                    slot: Slot::new(name, ctx),
                    cache: format!("{home}/.zdd/build/repo.git"),
                    remote: Some((dir, ssh, control)),
                })
            }
            _ => {
                let mut config = host_setup::merged_config(recipe, None);
                config.insert(
                    "deploy_path".into(),
                    Dynamic::from(work.display().to_string()),
                );
                let transport: Arc<dyn Transport> =
                    Arc::new(Local::new().map_err(|e| setup(format!("{e:#}")))?);
                let mut ctx = HostContext::new(
                    BUILD_HOST.to_string(),
                    transport,
                    config,
                    deployment.clone(),
                    reporter.clone(),
                );
                ctx.release = Some(release());
                // The last build, as this build's previous release (`releases/previous`).
                if let Some(last) = last_build(work) {
                    let link = work.join("releases/previous");
                    let linked = std::fs::create_dir_all(work.join("releases"))
                        .and_then(|()| std::os::unix::fs::symlink(&last, &link));
                    if linked.is_ok() {
                        if let Some(release) = ctx.release.as_mut() {
                            release.previous = Some("previous".into());
                        }
                    }
                }
                let cache = {
                    let repository = ctx
                        .expand(&ctx.text("repository").unwrap_or_default(), Mode::Plain)
                        .unwrap_or_default();
                    let name = artifact::sha256_text(&repository)[..16].to_string();
                    root.join("repos").join(format!("{name}.git"))
                };
                Ok(Place {
                    slot: Slot::new(BUILD_HOST, ctx),
                    cache: cache.display().to_string(),
                    remote: None,
                })
            }
        }
    }

    fn name(&self) -> &str {
        &self.slot.name
    }

    /// The build is over: a host's build directory goes, its connection closes.
    fn close(self) {
        if let Some((dir, ssh, _control)) = &self.remote {
            let ctx = self.slot.context.lock().unwrap_or_else(|e| e.into_inner());
            let _ = ctx.transport.remove_dir_all(dir);
            drop(ctx);
            ssh.close();
        }
    }
}

fn build_in(
    recipe: &dyn StepCaller,
    place: &Place,
    steps: &[Step],
    root: &Path,
    work: &Path,
    deployment: &Arc<Deployment>,
    reporter: &Arc<Reporter>,
) -> Result<(Arc<Artifact>, bool), RunError> {
    let slot = &place.slot;
    let fail = |task: &str, failure: Failure| {
        RunError::Step(Box::new(Slot::failure_outside_steps(
            place.name(),
            task,
            recipe,
            failure,
        )))
    };
    let (commit, reference, release_path, committed) = {
        // The repository cache on this machine is shared by the runs of every recipe that
        // deploys the repository: one run at a time fetches into it.
        let _cache = match &place.remote {
            None => Some(lock_cache(&place.cache).map_err(|failure| fail(CHECKOUT, failure))?),
            Some(_) => None,
        };
        let mut ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        let (commit, reference, release_path) =
            check_out(&mut ctx, &place.cache).map_err(|failure| fail(CHECKOUT, failure))?;
        let committed =
            committed_links(&ctx, &release_path).map_err(|failure| fail(CHECKOUT, failure))?;
        (commit, reference, release_path, committed)
    };
    *deployment.commit.lock().unwrap_or_else(|e| e.into_inner()) = Some(commit.clone());
    let (excludes, config) = {
        let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        let excludes = excludes(&ctx).map_err(|failure| fail(PACK, failure))?;
        (excludes, ctx.config.clone())
    };
    let key = cache_key(recipe, place.name(), steps, &config, &commit, &excludes);
    let artifacts = root.join("artifacts");
    let archive = artifacts.join(format!("{key}.tar.gz"));
    // `build_cache = false`: built again (the audit run again), kept under the same key.
    let reuse = config
        .get("build_cache")
        .is_none_or(|value| config::boolean(value).unwrap_or(true));
    let found = if reuse {
        cached(root, &key)
    } else {
        Cached::Missing
    };
    match found {
        Cached::Found(packed, file) => {
            say(
                reporter,
                place.name(),
                &format!(
                    "commit {} was built before: artifact {} reused, nothing built",
                    &commit[..12.min(commit.len())],
                    &packed.sha256[..12]
                ),
            );
            return Ok((
                Arc::new(Artifact {
                    archive,
                    file: Arc::new(file),
                    packed,
                    commit,
                    reference,
                }),
                false,
            ));
        }
        Cached::Damaged(why) => reporter.event(crate::output::reporter::Event::Message {
            host: place.name(),
            level: "warning",
            text: &format!(
                "the build of commit {} kept in `{}` is damaged ({why}): built again",
                &commit[..12.min(commit.len())],
                archive.display()
            ),
        }),
        Cached::Missing => {}
    }
    let interrupted = |task: &str, when: &str| {
        fail(
            task,
            Failure::message(format!("interrupted {when}: no host was touched")),
        )
    };
    for step in steps {
        if interrupt::should_stop() {
            return Err(interrupted(&step.task, "before the build was done"));
        }
        run_step(recipe, step, slot, reporter).map_err(RunError::Step)?;
    }
    // What the steps sent without waiting is done (or its failure is the step's).
    super::runner::settle(slot, reporter).map_err(RunError::Step)?;
    if interrupt::should_stop() {
        return Err(interrupted(PACK, "before the build was packed"));
    }
    let (tree, mtime) = {
        let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        match &place.remote {
            None => {
                let mtime = git::commit_time(Path::new(&place.cache), &commit)
                    .map_err(|e| fail(PACK, Failure::from(e)))?;
                (PathBuf::from(&release_path), mtime)
            }
            Some((dir, _, _)) => fetch_tree(&ctx, dir, &release_path, &place.cache, &commit, work)
                .map_err(|e| fail(PACK, Failure::from(e)))?,
        }
    };
    // This run's own file: another run packing the same key at once writes its own.
    let partial = tempfile::Builder::new()
        .prefix(&format!(".{key}."))
        .suffix(PARTIAL)
        .tempfile_in(&artifacts)
        .map_err(|e| {
            fail(
                PACK,
                Failure::message(format!(
                    "cannot create the archive in `{}`: {e}",
                    artifacts.display()
                )),
            )
        })?
        .into_temp_path();
    let links = Links {
        committed,
        // What a link of a build host's points at is there, not on this machine.
        follow_outside: place.remote.is_none(),
    };
    let packed = artifact::pack_build(
        &tree,
        &excludes,
        mtime.max(0) as u64,
        &partial,
        artifact::DEFAULT_LEVEL,
        &links,
    )
    .map_err(|e| fail(PACK, Failure::from(e)))?;
    if packed.files == 0 {
        return Err(fail(
            PACK,
            Failure::message(
                "the build's archive would hold no file: the shared paths and `build_exclude` \
                 leave out everything the build made",
            )
            .with_hint(
                "`build_exclude` names what stays out (`node_modules`, `tests`), not what goes in",
            ),
        ));
    }
    if interrupt::should_stop() {
        return Err(interrupted(PACK, "once the build was packed"));
    }
    let kept = |e: std::io::Error| {
        fail(
            PACK,
            Failure::message(format!(
                "cannot keep the archive `{}`: {e}",
                archive.display()
            )),
        )
    };
    // Opened before it takes its name: what this run ships is what it packed.
    let file = File::open(&partial).map_err(kept)?;
    partial.persist(&archive).map_err(|e| kept(e.error))?;
    remember(root, &key, &packed);
    prune(&artifacts);
    say(
        reporter,
        place.name(),
        &format!(
            "packed {} files, {}: artifact {}",
            packed.files,
            ship::size(packed.bytes),
            &packed.sha256[..12]
        ),
    );
    Ok((
        Arc::new(Artifact {
            archive,
            file: Arc::new(file),
            packed,
            commit,
            reference,
        }),
        true,
    ))
}

/// Hold the local repository cache `cache` for this run: `cache.lock` locked (released when
/// the file returned is dropped). Two runs fetching into one cache at once would both write
/// it, and git's own lock files would fail one of them.
fn lock_cache(cache: &str) -> Result<nix::fcntl::Flock<File>, Failure> {
    use nix::fcntl::{Flock, FlockArg};
    let path = format!("{cache}.lock");
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Failure::message(format!("cannot open `{path}`: {e}")))?;
    loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => return Ok(locked),
            Err((back, nix::errno::Errno::EWOULDBLOCK)) => {
                if interrupt::should_stop() {
                    return Err(Failure::message(format!(
                        "interrupted while another run held the repository cache (`{path}`)"
                    )));
                }
                file = back;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err((_, e)) => return Err(Failure::message(format!("cannot lock `{path}`: {e}"))),
        }
    }
}

/// The symlinks of the commit as checked out at `release_path` (before any build step ran):
/// they are packed as links, never followed.
fn committed_links(ctx: &HostContext, release_path: &str) -> Result<BTreeSet<String>, Failure> {
    let find = crate::values::quote::command(&["find", ".", "-type", "l", "-print0"])?;
    let output = ctx.transport.exec(
        &find,
        Some(release_path),
        "list the symlinks of the commit",
        None,
    )?;
    Ok(output
        .stdout
        .split('\0')
        .filter(|path| !path.is_empty())
        .map(|path| path.strip_prefix("./").unwrap_or(path).to_string())
        .collect())
}

/// A build host's result brought to zdd's machine: its release directory as one tar.gz made
/// there, read back over the connection, unpacked into `work/tree`; and the commit's time.
fn fetch_tree(
    ctx: &HostContext,
    dir: &str,
    release_path: &str,
    cache: &str,
    commit: &str,
    work: &Path,
) -> anyhow::Result<(PathBuf, i64)> {
    let tarball = format!("{dir}/tree.tar.gz");
    let pack = crate::values::quote::command(&["tar", "-czf", &tarball, "-C", release_path, "."])?;
    ctx.transport
        .exec(&pack, None, "pack the build on the build host", None)?;
    let time = crate::values::quote::command(&[
        "git",
        "--git-dir",
        cache,
        "show",
        "-s",
        "--format=%ct",
        commit,
    ])?;
    let time: i64 = ctx
        .transport
        .exec(&time, None, "read the commit's time", None)?
        .stdout
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("cannot read the time of commit {commit}"))?;
    let local = work.join("tree.tar.gz");
    ctx.transport.download(&tarball, &local)?;
    let tree = work.join("tree");
    std::fs::create_dir_all(&tree)?;
    artifact::unpack(&local, &tree)?;
    let _ = std::fs::remove_file(&local);
    Ok((tree, time))
}

fn say(reporter: &Reporter, host: &str, text: &str) {
    reporter.event(crate::output::reporter::Event::Message {
        host,
        level: "info",
        text,
    });
}

/// The names failures outside the build's tasks go by.
const CHECKOUT: &str = "build:checkout";
const PACK: &str = "build:pack";

/// The commit the deploy asked for (a catch-up's, else `branch`), checked out from the
/// repository cache `cache` into the build's release directory with its `REVISION`: (commit,
/// reference, that directory).
fn check_out(ctx: &mut HostContext, cache: &str) -> Result<(String, String, String), Failure> {
    let (repository, reference) = update_code::wanted(ctx)?;
    let commit = ctx
        .transport
        .resolve(&repository, cache, &reference)
        .map_err(|e| update_code::ref_failure(e, &repository))?;
    let release_path = ctx.release_path()?;
    ctx.transport.create_dir_all(&release_path)?;
    ctx.transport.export(cache, &commit, &release_path)?;
    ctx.transport
        .write_file(&format!("{release_path}/REVISION"), &format!("{commit}\n"))?;
    ctx.info(&format!(
        "checked out `{reference}` at {}",
        &commit[..commit.len().min(12)]
    ));
    Ok((commit, reference, release_path))
}

/// What the archive leaves out: the shared paths (each host links its own), and
/// `build_exclude`.
fn excludes(ctx: &HostContext) -> Result<Vec<String>, Failure> {
    let mut excludes = ctx.list("shared_files")?;
    excludes.extend(ctx.list("shared_dirs")?);
    excludes.extend(ctx.list("build_exclude")?);
    artifact::check_excludes(&excludes).map_err(|e| Failure::message(format!("{e:#}")))?;
    Ok(excludes)
}

/// What names a build: zdd's version, where it ran, the commit, the build's steps (task and
/// where each was declared), the settings, the excludes, and the text of the recipe and of
/// every module it imports. Anything else differs, it is built again.
fn cache_key(
    recipe: &dyn StepCaller,
    place: &str,
    steps: &[Step],
    config: &BTreeMap<String, Dynamic>,
    commit: &str,
    excludes: &[String],
) -> String {
    let mut hasher = Sha256::new();
    let mut add = |text: &str| {
        hasher.update(text.len().to_le_bytes());
        hasher.update(text.as_bytes());
    };
    add(env!("CARGO_PKG_VERSION"));
    add(place);
    add(commit);
    for step in steps {
        add(&format!(
            "{}@{}:{}:{}",
            step.task, step.origin.source, step.origin.line, step.origin.column
        ));
    }
    // `branch` only picks the commit, which is in the key already; `build_cache` only says
    // whether the key is looked up.
    for (key, value) in config {
        if !matches!(key.as_str(), "deploy_path" | "branch" | "build_cache") {
            add(&format!("{key}={value:?}"));
        }
    }
    for exclude in excludes {
        add(exclude);
    }
    // The recipe and every module it imports, as they were loaded for this run: a build
    // task, or a function one calls, changed in any of them is a new build.
    for text in recipe.source_texts() {
        add(&text);
    }
    artifact::hex(&hasher.finalize())[..32].to_string()
}

/// The ending of the files a run is writing in the cache (a run killed meanwhile leaves one).
const PARTIAL: &str = ".partial";

/// What the cache holds for a key.
enum Cached {
    Missing,
    /// Its archive and its record disagree (said why): it is built again.
    Damaged(String),
    /// The archive, opened and read back whole, holds what its build recorded.
    Found(Packed, File),
}

/// The archive built earlier under `key`, when it is there and holds what its build recorded
/// (its hash, size, files and links, read back from its bytes).
fn cached(root: &Path, key: &str) -> Cached {
    let artifacts = root.join("artifacts");
    let (Ok(text), Ok(mut file)) = (
        std::fs::read_to_string(artifacts.join(format!("{key}.json"))),
        File::open(artifacts.join(format!("{key}.tar.gz"))),
    ) else {
        return Cached::Missing;
    };
    let recorded: Packed = match serde_json::from_str(&text) {
        Ok(packed) => packed,
        Err(e) => return Cached::Damaged(format!("its record cannot be read: {e}")),
    };
    match artifact::inspect(&mut file) {
        Ok(found) if found == recorded => Cached::Found(recorded, file),
        Ok(found) if found.sha256 != recorded.sha256 => Cached::Damaged(format!(
            "its sha256 is {}, its build recorded {}",
            found.sha256, recorded.sha256
        )),
        Ok(_) => Cached::Damaged("it holds other files than its build recorded".to_string()),
        Err(e) => Cached::Damaged(format!("{e:#}")),
    }
}

/// Keep what `key` packed beside its archive (for [`cached`]); losing it only costs a build.
fn remember(root: &Path, key: &str, packed: &Packed) {
    let artifacts = root.join("artifacts");
    let Ok(text) = serde_json::to_string(packed) else {
        return;
    };
    let Ok(mut temp) = tempfile::Builder::new()
        .prefix(&format!(".{key}."))
        .suffix(PARTIAL)
        .tempfile_in(&artifacts)
    else {
        return;
    };
    if std::io::Write::write_all(&mut temp, text.as_bytes()).is_ok() {
        let _ = temp.persist(artifacts.join(format!("{key}.json")));
    }
}

/// Remove all but the newest archives of the local cache.
fn prune(artifacts: &Path) {
    let Ok(entries) = std::fs::read_dir(artifacts) else {
        return;
    };
    let paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    // What runs killed while they wrote left, a day on.
    let day_ago = SystemTime::now() - Duration::from_secs(24 * 3600);
    for path in &paths {
        let stale = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.') && n.ends_with(PARTIAL))
            && path
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|modified| modified < day_ago);
        if stale {
            let _ = std::fs::remove_file(path);
        }
    }
    let mut archives: Vec<(SystemTime, PathBuf)> = paths
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "gz"))
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    archives.sort();
    let excess = archives.len().saturating_sub(KEPT_ARTIFACTS);
    for (_, path) in archives.into_iter().take(excess) {
        let _ = std::fs::remove_file(&path);
        if let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".tar.gz"))
        {
            let _ = std::fs::remove_file(artifacts.join(format!("{stem}.json")));
        }
    }
}
