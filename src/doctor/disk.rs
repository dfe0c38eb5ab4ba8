//! Check: free disk under deploy_path (`df -Pk`) against the size of the current release
//! (`du -sk`): a problem below twice that size, since the next release needs room next to the
//! ones kept.

use super::finding::Finding;
use crate::context::HostContext;
use crate::failure::Failure;
use crate::quote;

const CHECK: &str = "disk";

pub fn check(ctx: &HostContext) -> Result<Vec<Finding>, Failure> {
    let deploy_path = ctx.deploy_path()?;
    let current = ctx.path("current")?;
    let has_current = ctx.current_release()?.is_some();
    let path = quote::word(&deploy_path)?;
    // deploy_path may not exist yet: measure the nearest directory that does.
    let mut script = format!(
        "p={path}; while [ ! -e \"$p\" ]; do p=$(dirname -- \"$p\"); done; df -Pk -- \"$p\" | tail -n 1"
    );
    if has_current {
        let current = quote::word(&format!("{current}/"))?;
        script.push_str(&format!(
            "; du -sk -- {current} 2>/dev/null | cut -f 1; true"
        ));
    }
    let output = ctx.transport.exec(&script, None, "df and du", None)?;
    let mut lines = output.stdout.lines();
    let free_kb = lines.next().and_then(available_kb).ok_or_else(|| {
        Failure::message(format!(
            "cannot read the free space under `{deploy_path}` from `df`: {}",
            output.stdout.trim()
        ))
    })?;
    let release_kb = lines.next().and_then(|l| l.trim().parse::<u64>().ok());
    Ok(vec![verdict(&deploy_path, free_kb, release_kb)])
}

/// The `Available` column (KiB) of a `df -Pk` line.
fn available_kb(line: &str) -> Option<u64> {
    line.split_whitespace().nth(3)?.parse().ok()
}

/// A size for people: whole MB, or "under 1 MB".
fn megabytes(kb: u64) -> String {
    if kb < 1024 {
        "under 1 MB".to_string()
    } else {
        format!("{} MB", kb / 1024)
    }
}

fn verdict(deploy_path: &str, free_kb: u64, release_kb: Option<u64>) -> Finding {
    let free = megabytes(free_kb);
    match release_kb {
        None => Finding::ok(
            CHECK,
            format!("{free} free under `{deploy_path}` (no current release to compare with)"),
        ),
        Some(size) if free_kb < size.saturating_mul(2) => Finding::problem(
            CHECK,
            format!(
                "only {free} free under `{deploy_path}`, less than twice the current release ({}): the next deploy may fill the disk",
                megabytes(size)
            ),
            "free space on that file system, or lower `keep_releases` so fewer old releases are kept",
        ),
        Some(size) => Finding::ok(
            CHECK,
            format!(
                "{free} free under `{deploy_path}` (the current release takes {})",
                megabytes(size)
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::finding::Status;

    #[test]
    fn twice_the_release_is_the_line() {
        assert_eq!(
            available_kb("/dev/sda1 1000000 400000 600000 40% /"),
            Some(600000)
        );
        assert_eq!(
            verdict("/a", 4096, Some(2048)).message,
            "4 MB free under `/a` (the current release takes 2 MB)"
        );
        let tight = verdict("/a", 4095, Some(2048));
        assert_eq!(tight.status, Status::Problem);
        assert_eq!(
            tight.message,
            "only 3 MB free under `/a`, less than twice the current release (2 MB): the next deploy may fill the disk"
        );
        assert_eq!(
            verdict("/a", 4096, Some(12)).message,
            "4 MB free under `/a` (the current release takes under 1 MB)"
        );
        assert_eq!(
            verdict("/a", 10240, None).message,
            "10 MB free under `/a` (no current release to compare with)"
        );
    }
}
