//! `rollback`: `current` back to the previous good release (or `rollback_to`, which
//! `zdd rollback --to` sets), recorded in the release log so the release left is never picked
//! again.

use super::release_log::{self, Entry, Status};
use crate::context::HostContext;
use crate::failure::Failure;
use crate::reporter::Event;

pub fn rollback(ctx: &mut HostContext) -> Result<String, Failure> {
    let releases = release_log::on_disk(ctx)?;
    let current = ctx.current_release()?;
    let requested = ctx.text_or("rollback_to", "")?;
    let target = if requested.is_empty() {
        release_log::rollback_target(&releases, current.as_deref()).ok_or_else(|| {
            Failure::message(match &current {
                Some(c) => format!("nothing to roll back to: no good release older than `{c}`"),
                None => "nothing to roll back to: there is no release".to_string(),
            })
            .with_hint(format!(
                "`zdd releases {}` lists the releases and their status",
                ctx.deployment.recipe
            ))
        })?
    } else {
        let Some(found) = releases.iter().find(|r| r.name == requested) else {
            return Err(
                Failure::message(format!("no release `{requested}` on this host")).with_hint(
                    format!(
                        "`zdd releases {}` lists the releases that can be picked",
                        ctx.deployment.recipe
                    ),
                ),
            );
        };
        if matches!(found.status, Status::Failed | Status::Pending) {
            return Err(Failure::message(format!(
                "release `{requested}` is {} and cannot become current",
                found.status.as_str()
            )));
        }
        if current.as_deref() == Some(requested.as_str()) {
            return Err(Failure::message(format!(
                "release `{requested}` is already current"
            )));
        }
        requested
    };
    ctx.transport
        .replace_symlink(&format!("releases/{target}"), &ctx.path("current")?)?;
    release_log::record(
        ctx,
        Entry {
            event: "rollback".into(),
            release: target.clone(),
            from: current.clone(),
            ..Default::default()
        },
    )?;
    ctx.reporter.event(Event::RolledBack {
        host: &ctx.host,
        from: current.as_deref(),
        to: &target,
    });
    Ok(target)
}
