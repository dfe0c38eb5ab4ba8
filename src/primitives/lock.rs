//! `deploy:lock` / `deploy:unlock`: `{{deploy_path}}/.zdd/lock`, created atomically with who
//! holds it. A second deploy is refused (exit 3) naming the holder; a lock left by a process of
//! this machine that is gone is called stale, with the command that clears it.
//!
//! A run holds the lock from its first change of the deploy path to its last: every primitive
//! that changes the deploy path takes it ([`hold`]) if the run does not hold it yet, and only
//! the runner releases it ([`release`]), once the release is recorded and old releases are
//! removed, or once a failed run is undone. `unlock()` in a recipe says the recipe is done
//! with the lock; the runner releases it when the run ends.
//!
//! Waiting for the lock (`lock_wait`, `zdd run --lock-wait 5m`; 0, the default, waits for
//! nothing): a lock held by another run is tried again about every second (give or take a
//! tenth, so that runs queued together do not ask in step) until it is taken or the time is
//! up, then refused as without waiting, exit 3, saying how long it waited and naming the last
//! holder. Each try is the one request that takes the lock and reads the host's state; the
//! deploy the last run planned goes behind the first only. The run says once that it waits,
//! and how long it waited when it has the lock; a holder that changes meanwhile (another
//! queued run got it first) is waited for in the same way; Ctrl-C stops the wait at once.
//! Never waited on: a stale lock (nothing will ever release it: refused at once, as without
//! waiting), and a lock file that does not say who holds it. zdd writes its lock whole
//! (link(2) of a complete file, on every transport), so such a file is never a run that is
//! still starting: it was damaged or written by hand, and no run will remove it either.

use std::time::{Duration, Instant};

use super::lock_state::LockState;
use super::{host_state, next_deploy, next_rollback, release_log};
use crate::output::failure::{Failure, FailureKind};
use crate::output::reporter::format_duration;
use crate::primitives::host_context::HostContext;
use crate::system::interrupt;
use crate::transport::Op;
use crate::values::config;

pub use super::lock_state::{alive, LockInfo, LOCK};

/// Where the context keeps what this run wrote into the lock file.
const LOCK_CONTENTS: &str = "lock_contents";

/// How many times a lock that vanished while we looked at it is tried again.
const ATTEMPTS: usize = 3;

/// The setting that says how long a held lock is waited for.
const LOCK_WAIT: &str = "lock_wait";

/// How often a held lock is tried again while `lock_wait` lasts ...
const POLL: Duration = Duration::from_secs(1);
/// ... give or take up to this much.
const JITTER: Duration = Duration::from_millis(100);

/// Take the lock for this run, unless it holds it already.
pub fn lock(ctx: &mut HostContext) -> Result<(), Failure> {
    hold(ctx)
}

/// What every primitive that changes the deploy path calls first.
pub fn hold(ctx: &mut HostContext) -> Result<(), Failure> {
    let mut wall = Wall::start(ctx.deployment.clone());
    hold_with(ctx, &mut wall)
}

/// [`hold`], with the time of the wait passing on `clock`.
fn hold_with(ctx: &mut HostContext, clock: &mut dyn Clock) -> Result<(), Failure> {
    if ctx.holds_lock {
        return Ok(());
    }
    let path = ctx.path(LOCK)?;
    let limit = wait_limit(ctx)?;
    let mut first = true;
    let mut announced = false;
    let mut last_holder = None;
    loop {
        // Written anew at each try: the lock says since when it is held, not since when it
        // was waited for.
        let contents = record(ctx)?;
        let text = match attempt(ctx, &path, &contents, &mut first)? {
            Tried::Taken(found) => {
                if announced {
                    ctx.info(&format!(
                        "lock taken after {}",
                        format_duration(clock.waited())
                    ));
                }
                return taken(ctx, *found, contents);
            }
            Tried::Held(text) => text,
        };
        let state = super::lock_state::state(text.as_deref(), &ctx.deployment.machine);
        if let LockState::Held { holder, .. } = &state {
            last_holder = Some(holder.clone());
        }
        let waited = clock.waited();
        if !keeps_waiting(&state, waited, limit) {
            let waited = (limit > Duration::ZERO).then_some(limit);
            return Err(refusal(&Refused {
                host: &ctx.host,
                recipe: &ctx.deployment.recipe,
                path: &path,
                state,
                waited,
                last_holder,
            }));
        }
        if !announced {
            announced = true;
            let held_by = last_holder
                .as_ref()
                .map(|holder| format!(", held by {}", holder.describe()))
                .unwrap_or_default();
            ctx.info(&format!(
                "waiting up to {} for the lock of `{}`{held_by}",
                in_words(limit),
                ctx.host
            ));
        }
        let pause = pause_for(waited, limit, clock.jitter());
        if !clock.pause(pause) {
            return Err(Failure {
                kind: FailureKind::Interrupted,
                hint: None,
            });
        }
    }
}

/// What this run writes into the lock file, now.
fn record(ctx: &HostContext) -> Result<String, Failure> {
    let info = LockInfo {
        user: ctx.deployment.user.clone(),
        machine: ctx.deployment.machine.clone(),
        pid: std::process::id(),
        time: release_log::now(),
        reference: ctx.text_or("branch", "")?,
    };
    serde_json::to_string(&info).map_err(|e| Failure::message(e.to_string()))
}

/// What one try at the lock found.
enum Tried {
    /// (Boxed: the state it read is much larger than a holder's text.)
    Taken(Box<host_state::Taken>),
    /// Another run holds it: what the lock file says (`None`: it vanished each time it was
    /// read, [`ATTEMPTS`] times).
    Held(Option<String>),
}

/// Try to take the lock: one round trip, which also reads the host's state (`host_state`).
/// The holder may release the lock between our attempt and our reading of it: then the lock is
/// free, and we try again (a few times: each retry means another run just ended).
fn attempt(
    ctx: &mut HostContext,
    path: &str,
    contents: &str,
    first: &mut bool,
) -> Result<Tried, Failure> {
    let mut text = None;
    for _ in 0..ATTEMPTS {
        // The deploy the last run planned is sent behind the lock's request (the first
        // attempt only: a lock held by another run means no plan holds anyway).
        let deploy = if std::mem::take(first) {
            next_deploy::request(ctx, path, contents)?
        } else {
            None
        };
        let found = host_state::take_lock_and_read(ctx, path, contents, deploy)?;
        if found.taken {
            return Ok(Tried::Taken(Box::new(found)));
        }
        text = found.holder;
        if text.is_some() {
            break;
        }
    }
    Ok(Tried::Held(text))
}

/// The lock is this run's: keep what the request read, and settle what it did as the last run
/// planned.
fn taken(ctx: &mut HostContext, found: host_state::Taken, contents: String) -> Result<(), Failure> {
    ctx.state = Some(found.state);
    if let Some((answer, record)) = found.planned {
        // The host rolled back and released the lock, and the remote shell is gone:
        // nothing is left to send.
        return next_rollback::settle(ctx, &answer, record);
    }
    ctx.holds_lock = true;
    ctx.memo.insert(LOCK_CONTENTS.into(), contents);
    if let Some((request, answer, kept)) = found.deploying {
        // The host is deploying as planned, up to the lock's release: the steps
        // only decide (leftovers of killed runs wait for a run without a plan).
        return next_deploy::settle(ctx, request, &answer, kept);
    }
    remove_leftovers(ctx)
}

/// How long this run waits for a lock another run holds: `lock_wait` (checked with the run's
/// settings before anything runs), none when unset.
fn wait_limit(ctx: &HostContext) -> Result<Duration, Failure> {
    match ctx.config.get(LOCK_WAIT).filter(|value| !value.is_unit()) {
        None => Ok(Duration::ZERO),
        Some(value) => {
            config::seconds(value).map_err(|e| Failure::message(format!("`{LOCK_WAIT}`: {e}")))
        }
    }
}

/// Whether a lock in `state`, found after `waited` of at most `limit`, is tried again. A
/// stale lock and one that does not say who holds it are never waited for (see the module's
/// doc); `Free` is a lock that changed hands each time it was read: busy, as a held one.
fn keeps_waiting(state: &LockState, waited: Duration, limit: Duration) -> bool {
    match state {
        LockState::Stale(_) | LockState::Unreadable => false,
        LockState::Held { .. } | LockState::Free => waited < limit,
    }
}

/// The pause before the next try: [`POLL`] changed by `jitter` (within [`JITTER`]), never
/// past the limit, so that the last try is made when the time is up.
fn pause_for(waited: Duration, limit: Duration, jitter: Duration) -> Duration {
    let poll = POLL - JITTER + jitter.min(JITTER * 2);
    poll.min(limit.saturating_sub(waited))
}

/// A duration as `lock_wait` takes it: `5m`, `1h`, `90s`, `1.5s`.
fn in_words(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    let whole = duration.subsec_nanos() == 0;
    let secs = duration.as_secs();
    if whole && secs > 0 && secs % 3600 == 0 {
        format!("{}h", secs / 3600)
    } else if whole && secs > 0 && secs % 60 == 0 {
        format!("{}m", secs / 60)
    } else {
        format!("{seconds}s")
    }
}

/// Everything the refusal of a lock says.
struct Refused<'a> {
    host: &'a str,
    /// The recipe as the user named it (for the `zdd unlock` hint).
    recipe: &'a str,
    /// The lock file.
    path: &'a str,
    /// What the last try found.
    state: LockState,
    /// How long this run waited: `None` when it was not to wait.
    waited: Option<Duration>,
    /// The last run seen holding the lock.
    last_holder: Option<LockInfo>,
}

/// Why the lock was not taken (exit 3), and what to do.
fn refusal(refused: &Refused) -> Failure {
    let (host, path) = (refused.host, refused.path);
    let unlock = format!("zdd unlock {}", refused.recipe);
    let locked = |message: String, hint: String| Failure {
        kind: FailureKind::Locked(message),
        hint: Some(hint),
    };
    let finish =
        format!("wait for that deploy to finish; if it is gone, clear the lock with `{unlock}`");
    let held = match (&refused.state, &refused.last_holder) {
        (LockState::Stale(holder), _) => {
            return locked(
                format!(
                    "deploy to `{host}` is locked by a process that is no longer running: {} (stale lock)",
                    holder.describe()
                ),
                format!("clear the stale lock with `{unlock}`"),
            );
        }
        (LockState::Held { holder, .. }, _) => Some(holder),
        (LockState::Free, Some(holder)) if refused.waited.is_some() => Some(holder),
        _ => None,
    };
    match (held, refused.waited) {
        (Some(holder), None) => locked(
            format!("deploy to `{host}` is locked by {}", holder.describe()),
            finish,
        ),
        (Some(holder), Some(waited)) => locked(
            format!(
                "deploy to `{host}` is still locked after waiting {}: held by {}",
                in_words(waited),
                holder.describe()
            ),
            format!(
                "wait longer for that deploy (`--lock-wait`, `-o {LOCK_WAIT}=`); if it is gone, clear the lock with `{unlock}`"
            ),
        ),
        (None, Some(waited)) if refused.state == LockState::Free => locked(
            format!(
                "deploy to `{host}` is still locked after waiting {}: `{path}` was taken again each time it was released",
                in_words(waited)
            ),
            format!("wait longer for the runs ahead of this one (`--lock-wait`, `-o {LOCK_WAIT}=`)"),
        ),
        (None, _) => locked(
            format!("deploy to `{host}` is locked (`{path}` exists but does not say by whom)"),
            format!("if no deploy is running, clear it with `{unlock}`"),
        ),
    }
}

/// How the wait passes time: [`Wall`] in a run, a test's own in unit tests.
trait Clock {
    /// The time since the first try.
    fn waited(&self) -> Duration;
    /// Up to `2 * JITTER`, different from one call (and one run) to the next.
    fn jitter(&mut self) -> Duration;
    /// Let `duration` pass; `false` when the user pressed Ctrl-C meanwhile (at once).
    fn pause(&mut self, duration: Duration) -> bool;
}

/// The real clock; the wait also ends when the run fails on another host.
struct Wall {
    started: Instant,
    deployment: std::sync::Arc<crate::primitives::host_context::Deployment>,
}

impl Wall {
    fn start(deployment: std::sync::Arc<crate::primitives::host_context::Deployment>) -> Wall {
        Wall {
            started: Instant::now(),
            deployment,
        }
    }
}

impl Clock for Wall {
    fn waited(&self) -> Duration {
        self.started.elapsed()
    }

    fn jitter(&mut self) -> Duration {
        // The clock's nanoseconds and the pid: enough to keep queued runs out of step.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let spread = (JITTER * 2).as_millis() as u64;
        Duration::from_millis((u64::from(nanos) + u64::from(std::process::id())) % (spread + 1))
    }

    fn pause(&mut self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        loop {
            let failed_elsewhere = self
                .deployment
                .stopping
                .load(std::sync::atomic::Ordering::SeqCst);
            if interrupt::should_stop() || failed_elsewhere {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }
}

/// `unlock()` in a recipe: the recipe is done with the lock. The runner releases it when the
/// run ends, after its last change (the release recorded, old releases removed).
pub fn unlock(_ctx: &mut HostContext) -> Result<(), Failure> {
    Ok(())
}

/// The runner, at the very end of a run: release the lock if this run holds it; never someone
/// else's (after `zdd unlock --force`, another run may have taken it meanwhile).
pub fn release(ctx: &mut HostContext) -> Result<(), Failure> {
    if !ctx.holds_lock {
        return Ok(());
    }
    ctx.holds_lock = false;
    let path = ctx.path(LOCK)?;
    // Kept: when a failure skips this request, the runner holds the lock again
    // (`runner::finish_all`) and its undo releases it with these contents.
    let Some(contents) = ctx.memo.get(LOCK_CONTENTS).cloned() else {
        return Ok(());
    };
    // Removed only when it still says what this run wrote: sent without waiting, and when
    // someone else holds it now, that failure says so.
    ctx.send(Op::RemoveIfHolds { path, contents })
}

/// Temporary files left in the deploy path by zdd runs that were killed (a lock being taken, a
/// swap, a file being written, a checkout being staged): removed by the next run that holds the lock. Only files whose
/// process is gone from this machine; nothing that is not a zdd temporary name.
fn remove_leftovers(ctx: &mut HostContext) -> Result<(), Failure> {
    let own = std::process::id();
    let Some(state) = &ctx.state else {
        return Ok(());
    };
    let mut doomed = Vec::new();
    for (dir, names) in [
        (ctx.deploy_path()?, &state.root_names),
        (ctx.path(".zdd")?, &state.zdd_names),
    ] {
        for name in names {
            match crate::transport::leftover_pid(name) {
                Some(pid) if pid != own && !alive(pid) => doomed.push(format!("{dir}/{name}")),
                _ => {}
            }
        }
    }
    for path in doomed {
        let name = path.rsplit('/').next().unwrap_or_default();
        if crate::transport::leftover_is_dir(name) {
            ctx.send(Op::RemoveDirAll(path))?;
        } else {
            ctx.send(Op::RemoveFile(path))?;
        }
    }
    Ok(())
}

/// `zdd unlock`: remove the lock; says whose it was. A lock held by a process of this machine
/// that is still running is a deploy in progress: it is refused (exit 3) unless `force`.
pub fn force_unlock(ctx: &mut HostContext, force: bool) -> Result<Option<String>, Failure> {
    let path = ctx.path(LOCK)?;
    let Some(text) = ctx.transport.read_file(&path)? else {
        return Ok(None);
    };
    let holder: Option<LockInfo> = serde_json::from_str(&text).ok();
    if let Some(holder) = &holder {
        if !force && holder.machine == ctx.deployment.machine && alive(holder.pid) {
            return Err(Failure {
                kind: FailureKind::Locked(format!(
                    "the lock of `{}` is held by a run that is still going: {}",
                    ctx.host,
                    holder.describe()
                )),
                hint: Some(format!(
                    "wait for it to finish (it releases the lock itself), or stop it; `zdd unlock --force {}` removes the lock anyway",
                    ctx.deployment.recipe
                )),
            });
        }
    }
    ctx.transport.remove_file(&path)?;
    ctx.holds_lock = false;
    Ok(Some(
        holder
            .map(|h| h.describe())
            .unwrap_or_else(|| "an unknown holder".to_string()),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use rhai::Dynamic;

    use super::*;
    use crate::output::reporter::Reporter;
    use crate::primitives::host_context::Deployment;
    use crate::transport::counting::Counting;
    use crate::transport::Transport;

    fn holder(machine: &str, pid: u32) -> LockInfo {
        LockInfo {
            user: "alice".into(),
            machine: machine.into(),
            pid,
            time: "2026-01-01T00:00:00Z".into(),
            reference: "v2".into(),
        }
    }

    fn held(machine: &str) -> LockState {
        LockState::Held {
            holder: holder(machine, 42),
            running_here: false,
        }
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_held_lock_is_waited_for_until_the_limit_a_stale_or_unreadable_one_never() {
        let hour = Duration::from_secs(3600);
        assert!(keeps_waiting(&held("web2"), Duration::ZERO, hour));
        assert!(keeps_waiting(&LockState::Free, SECOND, hour));
        assert!(!keeps_waiting(&held("web2"), hour, hour));
        assert!(!keeps_waiting(
            &held("web2"),
            Duration::ZERO,
            Duration::ZERO
        ));
        assert!(!keeps_waiting(
            &LockState::Stale(holder("here", 7)),
            Duration::ZERO,
            hour
        ));
        assert!(!keeps_waiting(&LockState::Unreadable, Duration::ZERO, hour));
    }

    #[test]
    fn the_pause_is_about_a_second_and_ends_at_the_limit() {
        let limit = Duration::from_secs(5);
        assert_eq!(
            pause_for(Duration::ZERO, limit, Duration::ZERO),
            Duration::from_millis(900)
        );
        assert_eq!(pause_for(Duration::ZERO, limit, JITTER), SECOND);
        // A jitter out of range is kept in it.
        assert_eq!(
            pause_for(Duration::ZERO, limit, Duration::from_secs(9)),
            Duration::from_millis(1100)
        );
        assert_eq!(
            pause_for(Duration::from_millis(4700), limit, JITTER),
            Duration::from_millis(300)
        );
        assert_eq!(pause_for(limit, limit, JITTER), Duration::ZERO);
        assert_eq!(pause_for(limit * 2, limit, JITTER), Duration::ZERO);
    }

    #[test]
    fn durations_in_the_words_lock_wait_takes() {
        let words = |seconds: f64| in_words(Duration::from_secs_f64(seconds));
        assert_eq!(words(300.0), "5m");
        assert_eq!(words(60.0), "1m");
        assert_eq!(words(3600.0), "1h");
        assert_eq!(words(7200.0), "2h");
        assert_eq!(words(90.0), "90s");
        assert_eq!(words(1.0), "1s");
        assert_eq!(words(1.5), "1.5s");
        assert_eq!(words(5400.0), "90m");
        for text in ["5m", "1h", "90s", "1.5s", "0.25s"] {
            let parsed = config::seconds(&Dynamic::from(text.to_string())).unwrap();
            assert_eq!(in_words(parsed), text, "read back");
        }
    }

    fn refused(state: LockState, waited: Option<Duration>, last: Option<LockInfo>) -> String {
        let failure = refusal(&Refused {
            host: "web1",
            recipe: "app.rhai",
            path: "/srv/app/.zdd/lock",
            state,
            waited,
            last_holder: last,
        });
        assert!(failure.is_locked(), "{failure}");
        format!(
            "{failure}\nhint: {}",
            failure.hint.clone().unwrap_or_default()
        )
    }

    #[test]
    fn a_refusal_says_how_long_it_waited_and_names_the_holder() {
        let alice = "alice on web2 (pid 42, since 2026-01-01T00:00:00Z, deploying `v2`)";
        // Not waiting: the words of a run without `lock_wait`.
        assert_eq!(
            refused(held("web2"), None, None),
            format!("deploy to `web1` is locked by {alice}\nhint: wait for that deploy to finish; if it is gone, clear the lock with `zdd unlock app.rhai`")
        );
        assert_eq!(
            refused(held("web2"), Some(Duration::from_secs(300)), Some(holder("web2", 42))),
            format!("deploy to `web1` is still locked after waiting 5m: held by {alice}\nhint: wait longer for that deploy (`--lock-wait`, `-o lock_wait=`); if it is gone, clear the lock with `zdd unlock app.rhai`")
        );
        // The lock changed hands at the last try: the last holder seen is named.
        assert_eq!(
            refused(LockState::Free, Some(SECOND), Some(holder("web2", 42))),
            format!("deploy to `web1` is still locked after waiting 1s: held by {alice}\nhint: wait longer for that deploy (`--lock-wait`, `-o lock_wait=`); if it is gone, clear the lock with `zdd unlock app.rhai`")
        );
        assert_eq!(
            refused(LockState::Free, Some(SECOND), None),
            "deploy to `web1` is still locked after waiting 1s: `/srv/app/.zdd/lock` was taken again each time it was released\nhint: wait longer for the runs ahead of this one (`--lock-wait`, `-o lock_wait=`)"
        );
        // Stale and unreadable: never waited for, the same words whatever the limit.
        for waited in [None, Some(Duration::from_secs(3600))] {
            assert_eq!(
                refused(LockState::Stale(holder("here", 7)), waited, None),
                "deploy to `web1` is locked by a process that is no longer running: alice on here (pid 7, since 2026-01-01T00:00:00Z, deploying `v2`) (stale lock)\nhint: clear the stale lock with `zdd unlock app.rhai`"
            );
            assert_eq!(
                refused(LockState::Unreadable, waited, None),
                "deploy to `web1` is locked (`/srv/app/.zdd/lock` exists but does not say by whom)\nhint: if no deploy is running, clear it with `zdd unlock app.rhai`"
            );
        }
    }

    /// A clock for tests: time passes only when paused; `on_pause` runs at each pause with
    /// its number (the first is 1) and says whether to go on (`false`: Ctrl-C).
    struct Manual<F: FnMut(usize) -> bool> {
        now: Duration,
        pauses: usize,
        on_pause: F,
    }

    impl<F: FnMut(usize) -> bool> Clock for Manual<F> {
        fn waited(&self) -> Duration {
            self.now
        }

        fn jitter(&mut self) -> Duration {
            JITTER
        }

        fn pause(&mut self, duration: Duration) -> bool {
            self.pauses += 1;
            self.now += duration;
            (self.on_pause)(self.pauses)
        }
    }

    fn manual<F: FnMut(usize) -> bool>(on_pause: F) -> Manual<F> {
        Manual {
            now: Duration::ZERO,
            pauses: 0,
            on_pause,
        }
    }

    /// A deploy path whose lock `lock` holds (written as a run writes it), and a host of this
    /// machine with `lock_wait` set to `wait`, on the counting transport.
    struct Host {
        _temp: tempfile::TempDir,
        lock: std::path::PathBuf,
        counting: Arc<Counting>,
        ctx: HostContext,
    }

    fn host(lock: &LockInfo, wait: &str) -> Host {
        let temp = tempfile::tempdir().unwrap();
        let root = temp.path().join("app");
        std::fs::create_dir_all(root.join(".zdd")).unwrap();
        let path = root.join(LOCK);
        std::fs::write(&path, serde_json::to_string(lock).unwrap()).unwrap();
        let counting = Arc::new(Counting::new().unwrap());
        let config = BTreeMap::from([
            (
                "deploy_path".to_string(),
                Dynamic::from(root.display().to_string()),
            ),
            (LOCK_WAIT.to_string(), Dynamic::from(wait.to_string())),
        ]);
        let ctx = HostContext::new(
            "web1".into(),
            counting.clone(),
            config,
            Arc::new(Deployment::new("app.rhai")),
            Arc::new(Reporter::silent()),
        );
        Host {
            _temp: temp,
            lock: path,
            counting,
            ctx,
        }
    }

    #[test]
    fn each_try_is_one_round_trip_until_the_lock_is_released() {
        let mut host = host(&holder("web2", 42), "1m");
        let lock = host.lock.clone();
        let mut clock = manual(|pause| {
            match pause {
                // Another queued run takes the lock from the first holder: waited for too.
                2 => std::fs::write(&lock, serde_json::to_string(&holder("web3", 9)).unwrap())
                    .unwrap(),
                4 => std::fs::remove_file(&lock).unwrap(),
                _ => {}
            }
            true
        });
        hold_with(&mut host.ctx, &mut clock).unwrap();
        assert!(host.ctx.holds_lock);
        assert_eq!(clock.pauses, 4);
        assert_eq!(clock.now, SECOND * 4);
        assert_eq!(host.counting.round_trips(), 5, "one per try");
        let ours = LockInfo::parse(&std::fs::read_to_string(&host.lock).unwrap()).unwrap();
        assert_eq!(ours.pid, std::process::id());
        assert!(host.ctx.state.is_some(), "read with the lock");
    }

    #[test]
    fn the_time_is_up_with_the_last_try_at_the_limit() {
        let mut host = host(&holder("web2", 42), "2.5s");
        let mut clock = manual(|_| true);
        let refused = hold_with(&mut host.ctx, &mut clock).unwrap_err();
        assert!(refused.is_locked(), "{refused}");
        assert!(
            refused.to_string().starts_with(
                "deploy to `web1` is still locked after waiting 2.5s: held by alice on web2"
            ),
            "{refused}"
        );
        // Tries at 0, 1, 2 and 2.5 s.
        assert_eq!(clock.pauses, 3);
        assert_eq!(clock.now, Duration::from_millis(2500));
        assert_eq!(host.counting.round_trips(), 4);
        assert!(!host.ctx.holds_lock);
    }

    #[test]
    fn a_stale_lock_is_refused_at_once_whatever_the_limit() {
        let this = Deployment::new("app.rhai").machine;
        // A process that has ended and been reaped.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = holder(&this, pid);
        let mut host = host(&gone, "1h");
        let mut clock = manual(|_| panic!("a stale lock was waited for"));
        let refused = hold_with(&mut host.ctx, &mut clock).unwrap_err();
        assert!(refused.to_string().ends_with("(stale lock)"), "{refused}");
        assert_eq!(host.counting.round_trips(), 1);
    }

    #[test]
    fn ctrl_c_ends_the_wait() {
        let mut host = host(&holder("web2", 42), "1h");
        let mut clock = manual(|pause| pause < 3);
        let stopped = hold_with(&mut host.ctx, &mut clock).unwrap_err();
        assert!(
            matches!(stopped.kind, FailureKind::Interrupted),
            "{stopped}"
        );
        assert_eq!(host.counting.round_trips(), 3);
        assert!(!host.ctx.holds_lock);
    }

    #[test]
    fn without_lock_wait_a_held_lock_is_refused_at_once() {
        for wait in ["0", "0s"] {
            let mut host = host(&holder("web2", 42), wait);
            let mut clock = manual(|_| panic!("waited"));
            let refused = hold_with(&mut host.ctx, &mut clock).unwrap_err();
            assert!(
                refused
                    .to_string()
                    .starts_with("deploy to `web1` is locked by alice on web2"),
                "{refused}"
            );
            assert_eq!(host.counting.round_trips(), 1);
        }
    }
}
