//! `check_disk()`: refuse when the free space under `deploy_path` is below `disk_min_free_mb`
//! (default: twice the size of the current release), so a deploy never fills the disk the
//! running release writes sessions and logs to.
//!
//! [`measure`] is the one reading of disk use under a deploy path: this gate and
//! `zdd doctor`'s disk check both call it.

use std::path::Path;

use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::values::quote::{self, Joiner};

pub fn check_disk(ctx: &HostContext) -> Result<(), Failure> {
    let deploy_path = ctx.deploy_path()?;
    let (needed, current) = match ctx.value("disk_min_free_mb")? {
        Some(value) => {
            let mb = crate::values::config::count(&value)
                .map_err(|e| Failure::message(format!("`disk_min_free_mb`: {e}")))?;
            (Some(mb), None)
        }
        None => (None, Some(ctx.path("current")?)),
    };
    let usage = measure(ctx, current.as_deref())?;
    let free_kb = usage.free_kb;
    let (needed_kb, why) = match (needed, usage.release_kb) {
        (Some(mb), _) => (mb * 1024, format!("disk_min_free_mb = {mb}")),
        (None, Some(used)) => (
            used * 2,
            format!("twice the size of the current release, {} MB", used / 1024),
        ),
        (None, None) => {
            ctx.info(&format!(
                "disk: {} MB free (no current release to compare with)",
                free_kb / 1024
            ));
            return Ok(());
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

/// Disk use under a deploy path, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskUse {
    /// Free space on the file system of `deploy_path` (of its nearest existing parent when it
    /// does not exist yet).
    pub free_kb: u64,
    /// The size of the release `current` points at; `None` when there is none (or it cannot
    /// be measured).
    pub release_kb: Option<u64>,
}

/// Measure the free space under `deploy_path` (`df -Pk`) and, when `current` is given, the size
/// of the release it points at (`du -skP`), in one round trip.
pub fn measure(ctx: &HostContext, current: Option<&str>) -> Result<DiskUse, Failure> {
    let deploy_path = ctx.deploy_path()?;
    let output = ctx.exec_in(&script(&deploy_path, current)?, None)?;
    let mut lines = output.stdout.lines();
    let free_kb = lines
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| {
            Failure::message(format!(
                "cannot read the free space under `{deploy_path}` from `df`: {}",
                output.stdout.trim()
            ))
        })?;
    let release_kb = lines.next().and_then(|line| line.trim().parse().ok());
    Ok(DiskUse {
        free_kb,
        release_kb,
    })
}

/// The shell line of [`measure`]: its first line of output is the free KiB, its second (when
/// `current` is given and exists) the size of the release.
fn script(deploy_path: &str, current: Option<&str>) -> Result<String, quote::QuoteError> {
    // deploy_path may not exist yet: df is given it and every parent, and the first line it
    // prints (after its header) is the nearest that exists. Those that do not exist only
    // write to stderr; the status of a pipeline is its last command's.
    let mut df = vec!["df".to_string(), "-Pk".into(), "--".into()];
    df.extend(
        Path::new(deploy_path)
            .ancestors()
            .map(|p| p.to_string_lossy().into_owned())
            .filter(|p| !p.is_empty()),
    );
    let mut lines = vec![quote::join(
        &[
            quote::command(&df)?,
            quote::command(&["awk", "NR==2 {print $4}"])?,
        ],
        Joiner::Pipe,
    )];
    if let Some(current) = current {
        // The trailing slash follows `current`; -P keeps du from following links inside
        // (shared). A missing `current` prints nothing.
        lines.push(quote::join(
            &[
                quote::command(&["du", "-skP", "--", &format!("{current}/")])?,
                quote::command(&["cut", "-f1"])?,
            ],
            Joiner::Pipe,
        ));
    }
    Ok(quote::join(&lines, Joiner::Then))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(out.status.success(), "{script}");
        String::from_utf8(out.stdout).unwrap()
    }

    #[test]
    fn a_missing_deploy_path_is_measured_at_its_nearest_parent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let missing = format!("{root}/not yet/app");
        let output = run(&script(&missing, Some(&format!("{missing}/current"))).unwrap());
        let lines: Vec<&str> = output.lines().collect();
        assert_eq!(lines.len(), 1, "{output}");
        assert!(lines[0].parse::<u64>().is_ok(), "{output}");
    }

    #[test]
    fn the_release_current_points_at_is_measured() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        std::fs::create_dir_all(format!("{root}/releases/1")).unwrap();
        std::fs::write(format!("{root}/releases/1/big"), vec![1u8; 64 * 1024]).unwrap();
        std::os::unix::fs::symlink("releases/1", format!("{root}/current")).unwrap();
        let output = run(&script(&root, Some(&format!("{root}/current"))).unwrap());
        let lines: Vec<u64> = output.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(lines.len(), 2, "{output}");
        assert!(lines[1] >= 64, "{output}");
    }
}
