//! Check: the deploy lock `{{deploy_path}}/.zdd/lock`, as `primitives::lock_state` decides it:
//! free, held by a deploy (a warning: wait for it), or stale (a problem: a process of this
//! machine that is gone left it, and every deploy is refused until it is cleared).

use super::finding::Finding;
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::primitives::lock_state::{self, LockState};

const CHECK: &str = "lock";

pub fn check(ctx: &HostContext) -> Result<Vec<Finding>, Failure> {
    let path = ctx.path(lock_state::LOCK)?;
    let text = ctx.transport.read_file(&path)?;
    let unlock = format!("zdd unlock {}", ctx.deployment.recipe);
    let finding = match lock_state::state(text.as_deref(), &ctx.deployment.machine) {
        LockState::Free => Finding::ok(CHECK, "the deploy lock is free"),
        LockState::Stale(holder) => Finding::problem(
            CHECK,
            format!(
                "the deploy lock is stale: held by {}, a process that is no longer running; every deploy is refused",
                holder.describe()
            ),
            format!("clear it with `{unlock}`"),
        ),
        LockState::Held { holder, .. } => Finding::warning(
            CHECK,
            format!("a deploy holds the lock: {}", holder.describe()),
            format!("wait for that deploy to finish; if it is gone, clear the lock with `{unlock}`"),
        ),
        LockState::Unreadable => Finding::warning(
            CHECK,
            format!("the deploy is locked: `{path}` exists but does not say by whom"),
            format!("if no deploy is running, clear it with `{unlock}`"),
        ),
    };
    Ok(vec![finding])
}
