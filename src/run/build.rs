//! The build phase (`build_on`): once per deploy, before any host is touched, the pinned commit
//! is checked out into a clean directory on zdd's machine, the build tasks run there (those a
//! recipe marks with `build("task")`: the Laravel recipe's `deploy:vendors`, `deploy:assets`
//! and `gate:audit`), and the result is packed into one archive (`crate::artifact`) that
//! `deploy:update_code` ships to every host (`primitives::ship`). A build failure stops the
//! deploy before any host is reached.
//!
//! The archive is kept in `$XDG_CACHE_HOME/zdd/artifacts/` (else `~/.cache/zdd/`), named by
//! what it was built from (the commit, the build's tasks and settings, the recipe): deploying
//! that again (a rollback forward, hosts brought up to date later) reuses it, with the same
//! hash, and a host that has it already is sent nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::Dynamic;
use sha2::{Digest, Sha256};

use super::host_setup;
use super::runner::{run_step, RunError, Slot};
use super::step_caller::StepCaller;
use crate::artifact::{self, Packed};
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
/// directory, run `steps` there, pack the result on zdd's machine.
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
    for dir in ["build", "artifacts", "repos"] {
        std::fs::create_dir_all(root.join(dir))
            .map_err(|e| setup(format!("cannot create `{}`: {e}", root.join(dir).display())))?;
    }
    // A clean directory on zdd's machine: the local build's, or where a host's build comes back.
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(root.join("build"))
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
    result
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
                let cache = {
                    let repository = ctx
                        .expand(&ctx.text("repository").unwrap_or_default(), Mode::Plain)
                        .unwrap_or_default();
                    let name = hex(&Sha256::digest(repository.as_bytes()))[..16].to_string();
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
) -> Result<Arc<Artifact>, RunError> {
    let slot = &place.slot;
    let fail = |task: &str, failure: Failure| {
        RunError::Step(Box::new(Slot::failure_outside_steps(
            place.name(),
            task,
            recipe,
            failure,
        )))
    };
    let (commit, reference, release_path) = {
        let mut ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        check_out(&mut ctx, &place.cache).map_err(|failure| fail(CHECKOUT, failure))?
    };
    *deployment.commit.lock().unwrap_or_else(|e| e.into_inner()) = Some(commit.clone());
    let (excludes, config) = {
        let ctx = slot.context.lock().unwrap_or_else(|e| e.into_inner());
        let excludes = excludes(&ctx).map_err(|failure| fail(PACK, failure))?;
        (excludes, ctx.config.clone())
    };
    let key = cache_key(recipe, place.name(), steps, &config, &commit, &excludes);
    let archive = root.join("artifacts").join(format!("{key}.tar.gz"));
    if let Some(packed) = cached(root, &key) {
        say(
            reporter,
            place.name(),
            &format!(
                "commit {} was built before: artifact {} reused, nothing built",
                &commit[..12.min(commit.len())],
                &packed.sha256[..12]
            ),
        );
        return Ok(Arc::new(Artifact {
            archive,
            packed,
            commit,
            reference,
        }));
    }
    for step in steps {
        if interrupt::should_stop() {
            return Err(fail(
                &step.task,
                Failure::message("interrupted before the build was done"),
            ));
        }
        run_step(recipe, step, slot, reporter).map_err(RunError::Step)?;
    }
    // What the steps sent without waiting is done (or its failure is the step's).
    super::runner::settle(slot, reporter).map_err(RunError::Step)?;
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
    let partial = root
        .join("artifacts")
        .join(format!(".{key}.tar.gz.partial"));
    let packed = artifact::pack(&tree, &excludes, mtime.max(0) as u64, &partial).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        fail(PACK, Failure::from(e))
    })?;
    std::fs::rename(&partial, &archive).map_err(|e| {
        fail(
            PACK,
            Failure::message(format!("cannot keep the archive: {e}")),
        )
    })?;
    remember(root, &key, &packed);
    prune(&root.join("artifacts"));
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
    Ok(Arc::new(Artifact {
        archive,
        packed,
        commit,
        reference,
    }))
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
    let repository = ctx.expand(&ctx.text("repository")?, Mode::Plain)?;
    let catch_up = ctx
        .deployment
        .catch_up
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let reference = match catch_up {
        Some(commit) => commit,
        None => ctx.expand(&ctx.text("branch")?, Mode::Plain)?,
    };
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

/// What names a build: zdd's version, where it ran, the commit, the build's steps (task and where each was
/// declared), the settings, the excludes and the recipe's text. Anything else differs, it is
/// built again.
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
    // `branch` only picks the commit, which is in the key already.
    for (key, value) in config {
        if !matches!(key.as_str(), "deploy_path" | "branch") {
            add(&format!("{key}={value:?}"));
        }
    }
    for exclude in excludes {
        add(exclude);
    }
    add(&std::fs::read_to_string(recipe.path()).unwrap_or_default());
    hex(&hasher.finalize())[..32].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The archive built earlier under `key`, when it is there whole (its hash checked).
fn cached(root: &Path, key: &str) -> Option<Packed> {
    let artifacts = root.join("artifacts");
    let text = std::fs::read_to_string(artifacts.join(format!("{key}.json"))).ok()?;
    let packed: Packed = serde_json::from_str(&text).ok()?;
    let found = artifact::sha256_file(&artifacts.join(format!("{key}.tar.gz"))).ok()?;
    (found == packed.sha256).then_some(packed)
}

/// Keep what `key` packed beside its archive (for [`cached`]); losing it only costs a build.
fn remember(root: &Path, key: &str, packed: &Packed) {
    let artifacts = root.join("artifacts");
    let Ok(text) = serde_json::to_string(packed) else {
        return;
    };
    let temp = artifacts.join(format!(".{key}.json.partial"));
    if std::fs::write(&temp, text).is_ok() {
        let _ = std::fs::rename(&temp, artifacts.join(format!("{key}.json")));
    }
}

/// Remove all but the newest archives of the local cache.
fn prune(artifacts: &Path) {
    let Ok(entries) = std::fs::read_dir(artifacts) else {
        return;
    };
    let mut archives: Vec<(std::time::SystemTime, PathBuf)> = entries
        .flatten()
        .map(|e| e.path())
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
