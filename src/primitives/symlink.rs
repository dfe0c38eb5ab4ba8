//! `deploy:symlink`: `current` moves to the new release by rename(2) of a temporary link, then is
//! read back. Never unlink-then-create: at no moment is there no `current`.

use super::lock;
use super::release_log::{self, Entry};
use crate::context::HostContext;
use crate::failure::Failure;
use crate::reporter::Event;

pub fn swap(ctx: &mut HostContext) -> Result<(), Failure> {
    lock::hold(ctx)?;
    let release = ctx.release()?.clone();
    let release_dir = ctx.path(&format!("releases/{}", release.name))?;
    if !ctx.transport.is_dir(&release_dir)? {
        return Err(Failure::message(format!(
            "release `{}` is not a directory: refusing to point `current` at it",
            release.name
        )));
    }
    ctx.transport
        .replace_symlink(&format!("releases/{}", release.name), &ctx.path("current")?)?;
    if let Some(state) = ctx.release.as_mut() {
        state.swapped = true;
    }
    release_log::record(
        ctx,
        Entry {
            event: "swapped".into(),
            release: release.name.clone(),
            from: release.previous.clone(),
            ..Default::default()
        },
    )?;
    ctx.reporter.event(Event::Swapped {
        host: &ctx.host,
        release: &release.name,
        previous: release.previous.as_deref(),
    });
    Ok(())
}
