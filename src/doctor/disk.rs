//! Check: free disk under deploy_path against the size of the current release, as the disk
//! gate measures them (`primitives::gates::disk::measure`): a problem below twice that size,
//! since the next release needs room next to the ones kept.

use super::finding::Finding;
use crate::output::failure::Failure;
use crate::primitives::gates::disk;
use crate::primitives::host_context::HostContext;

const CHECK: &str = "disk";

pub fn check(ctx: &HostContext) -> Result<Vec<Finding>, Failure> {
    let deploy_path = ctx.deploy_path()?;
    let usage = disk::measure(ctx, Some(&ctx.path("current")?))?;
    Ok(vec![verdict(&deploy_path, usage.free_kb, usage.release_kb)])
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
