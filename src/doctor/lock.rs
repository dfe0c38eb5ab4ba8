//! Check: the deploy lock `{{deploy_path}}/.zdd/lock` (`primitives::lock`): free, held by a
//! deploy (a warning: wait for it), or stale (a problem: a process of this machine that is
//! gone left it, and every deploy is refused until it is cleared).

use super::finding::Finding;
use crate::context::HostContext;
use crate::failure::Failure;
use crate::primitives::lock::{self, LockInfo};

const CHECK: &str = "lock";

pub fn check(ctx: &HostContext) -> Result<Vec<Finding>, Failure> {
    let path = ctx.path(lock::LOCK)?;
    let Some(text) = ctx.transport.read_file(&path)? else {
        return Ok(vec![Finding::ok(CHECK, "the deploy lock is free")]);
    };
    let unlock = format!("zdd unlock {}", ctx.deployment.recipe);
    let finding = match serde_json::from_str::<LockInfo>(&text) {
        Ok(holder) if holder.machine == ctx.deployment.machine && !lock::alive(holder.pid) => {
            Finding::problem(
                CHECK,
                format!(
                    "the deploy lock is stale: held by {}, a process that is no longer running; every deploy is refused",
                    holder.describe()
                ),
                format!("clear it with `{unlock}`"),
            )
        }
        Ok(holder) => Finding::warning(
            CHECK,
            format!("a deploy holds the lock: {}", holder.describe()),
            format!("wait for that deploy to finish; if it is gone, clear the lock with `{unlock}`"),
        ),
        Err(_) => Finding::warning(
            CHECK,
            format!("the deploy is locked: `{path}` exists but does not say by whom"),
            format!("if no deploy is running, clear it with `{unlock}`"),
        ),
    };
    Ok(vec![finding])
}
