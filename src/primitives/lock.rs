//! `deploy:lock` / `deploy:unlock`: `{{deploy_path}}/.zdd/lock`, created atomically with who
//! holds it. A second deploy is refused (exit 3) naming the holder; a lock left by a process of
//! this machine that is gone is called stale, with the command that clears it.

use serde::{Deserialize, Serialize};

use super::release_log;
use crate::context::HostContext;
use crate::failure::{Failure, FailureKind};

pub const LOCK: &str = ".zdd/lock";

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct LockInfo {
    pub user: String,
    pub machine: String,
    pub pid: u32,
    pub time: String,
    #[serde(rename = "ref", default)]
    pub reference: String,
}

impl LockInfo {
    pub fn describe(&self) -> String {
        format!(
            "{} on {} (pid {}, since {}, deploying `{}`)",
            self.user, self.machine, self.pid, self.time, self.reference
        )
    }
}

pub fn lock(ctx: &mut HostContext) -> Result<(), Failure> {
    if ctx.holds_lock {
        return Ok(());
    }
    ctx.transport.create_dir_all(&ctx.path(".zdd")?)?;
    let path = ctx.path(LOCK)?;
    let info = LockInfo {
        user: ctx.deployment.user.clone(),
        machine: ctx.deployment.machine.clone(),
        pid: std::process::id(),
        time: release_log::now(),
        reference: ctx.text_or("branch", "")?,
    };
    let contents = serde_json::to_string(&info).map_err(|e| Failure::message(e.to_string()))?;
    if ctx.transport.create_exclusive(&path, &contents)? {
        ctx.holds_lock = true;
        return Ok(());
    }
    let holder: Option<LockInfo> = ctx
        .transport
        .read_file(&path)?
        .and_then(|text| serde_json::from_str(&text).ok());
    let unlock = format!("zdd unlock {}", ctx.deployment.recipe);
    let failure = match holder {
        Some(holder) if holder.machine == ctx.deployment.machine && !alive(holder.pid) => Failure {
            kind: FailureKind::Locked(format!(
                "deploy to `{}` is locked by a process that is no longer running: {} (stale lock)",
                ctx.host,
                holder.describe()
            )),
            hint: Some(format!("clear the stale lock with `{unlock}`")),
        },
        Some(holder) => Failure {
            kind: FailureKind::Locked(format!(
                "deploy to `{}` is locked by {}",
                ctx.host,
                holder.describe()
            )),
            hint: Some(format!(
                "wait for that deploy to finish; if it is gone, clear the lock with `{unlock}`"
            )),
        },
        None => Failure {
            kind: FailureKind::Locked(format!(
                "deploy to `{}` is locked (`{path}` exists but does not say by whom)",
                ctx.host
            )),
            hint: Some(format!("if no deploy is running, clear it with `{unlock}`")),
        },
    };
    Err(failure)
}

/// Release the lock if this run holds it; never someone else's.
pub fn unlock(ctx: &mut HostContext) -> Result<(), Failure> {
    if !ctx.holds_lock {
        return Ok(());
    }
    ctx.transport.remove_file(&ctx.path(LOCK)?)?;
    ctx.holds_lock = false;
    Ok(())
}

/// `zdd unlock`: remove the lock whoever holds it; says who did.
pub fn force_unlock(ctx: &mut HostContext) -> Result<Option<String>, Failure> {
    let path = ctx.path(LOCK)?;
    let Some(text) = ctx.transport.read_file(&path)? else {
        return Ok(None);
    };
    ctx.transport.remove_file(&path)?;
    ctx.holds_lock = false;
    let holder: Option<LockInfo> = serde_json::from_str(&text).ok();
    Ok(Some(
        holder
            .map(|h| h.describe())
            .unwrap_or_else(|| "an unknown holder".to_string()),
    ))
}

/// Whether process `pid` of this machine is running.
pub fn alive(pid: u32) -> bool {
    use nix::errno::Errno;
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) {
        Ok(()) => true,
        Err(Errno::EPERM) => true,
        Err(_) => false,
    }
}
