//! `check_disk()`: refuse when the free space under `deploy_path` is below `disk_min_free_mb`
//! (default: twice the size of the current release), so a deploy never fills the disk the
//! running release writes sessions and logs to.

use crate::context::HostContext;
use crate::failure::Failure;
use crate::quote;

pub fn check_disk(ctx: &HostContext) -> Result<(), Failure> {
    let deploy_path = ctx.deploy_path()?;
    let free_kb = free_kb(ctx, &deploy_path)?;
    let (needed_kb, why) = match ctx.value("disk_min_free_mb")? {
        Some(value) => {
            let mb = crate::config::count(&value)
                .map_err(|e| Failure::message(format!("`disk_min_free_mb`: {e}")))?;
            (mb * 1024, format!("disk_min_free_mb = {mb}"))
        }
        None => {
            let current = ctx.path("current")?;
            if !ctx.transport.exists(&current)? {
                ctx.info(&format!(
                    "disk: {} MB free (no current release to compare with)",
                    free_kb / 1024
                ));
                return Ok(());
            }
            let used = used_kb(ctx, &current)?;
            (
                used * 2,
                format!("twice the size of the current release, {} MB", used / 1024),
            )
        }
    };
    if free_kb < needed_kb {
        return Err(Failure::message(format!(
            "not enough disk space: {} MB free under `{deploy_path}`, {} MB needed ({why})",
            free_kb / 1024,
            needed_kb / 1024
        ))
        .with_hint("free some space (old releases, logs), or set `disk_min_free_mb`"));
    }
    ctx.info(&format!(
        "disk: {} MB free, {} MB needed",
        free_kb / 1024,
        needed_kb / 1024
    ));
    Ok(())
}

fn number(output: &str, what: &str) -> Result<u64, Failure> {
    output
        .trim()
        .parse()
        .map_err(|_| Failure::message(format!("cannot read {what}: `{}`", output.trim())))
}

fn free_kb(ctx: &HostContext, path: &str) -> Result<u64, Failure> {
    let line = format!(
        "df -Pk -- {} | awk 'NR==2 {{print $4}}'",
        quote::word(path)?
    );
    number(&ctx.exec_in(&line, None)?.stdout, "the free disk space")
}

fn used_kb(ctx: &HostContext, path: &str) -> Result<u64, Failure> {
    // The trailing slash follows `current`; -P keeps du from following links inside (shared).
    let line = format!("du -skP -- {}/ | cut -f1", quote::word(path)?);
    number(
        &ctx.exec_in(&line, None)?.stdout,
        "the size of the current release",
    )
}
