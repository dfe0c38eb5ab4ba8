//! `check_queued_jobs()`: before the swap, read the jobs waiting in the app's queue (database
//! driver: the `jobs` table; Redis driver: the queue lists) and refuse when a job's class does
//! not exist in the new release: a worker on the new code would fail every one of them. The
//! check runs a small PHP probe (embedded in zdd) inside the new release, booted the way its
//! `artisan` boots it (see `app_php`), so `class_exists` answers for the new code, with the
//! queue configuration the app itself uses. Redis queues other than the connection's default
//! one are read when listed in `queue_names`.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::output::failure::Failure;
use crate::primitives::app_php::{self, Probe};
use crate::primitives::gates::migrations;
use crate::primitives::host_context::HostContext;

const PROBE: Probe = Probe {
    name: "queued jobs",
    source: include_str!("../../../stdlib/php/queued_jobs.php"),
    setting: "check_queued_jobs",
};

#[derive(Debug, Deserialize)]
struct Report {
    #[serde(default)]
    driver: String,
    #[serde(default)]
    classes: BTreeMap<String, u64>,
    #[serde(default)]
    missing: BTreeMap<String, u64>,
    #[serde(default)]
    error: Option<String>,
}

pub fn check_queued_jobs(ctx: &mut HostContext) -> Result<(), Failure> {
    if !ctx.boolean("check_queued_jobs", true)? {
        ctx.info("queued jobs: skipped (check_queued_jobs = false)");
        return Ok(());
    }
    // The database driver's table holds every queue; Redis keeps one list per queue, so the
    // probe reads the connection's default queue and the `queue_names` listed.
    let queues = ctx.list("queue_names")?.join(",");
    // The migrations gate comes next: its `migrate --pretend` runs in this same PHP start.
    let pretend = ctx.boolean("migrate", true)? && ctx.boolean("check_migrations", true)?;
    let result = app_php::run(
        ctx,
        &PROBE,
        &[
            ("ZDD_QUEUES", &queues),
            ("ZDD_PRETEND", if pretend { "1" } else { "0" }),
        ],
    )?;
    if let Some(output) = result.get("pretend").and_then(|p| p.as_str()) {
        migrations::remember_pretend(ctx, output)?;
    }
    let report: Report = serde_json::from_value(result.clone()).map_err(|_| {
        Failure::message(format!(
            "cannot read the queue: the check returned `{result}`"
        ))
    })?;
    if let Some(error) = report.error {
        return Err(Failure::message(format!("cannot read the queue: {error}")).with_hint(
            "fix the queue connection, or deploy without this check with `-o check_queued_jobs=false`",
        ));
    }
    let waiting: u64 = report.classes.values().sum();
    if report.missing.is_empty() {
        ctx.info(&format!(
            "queued jobs: {waiting} waiting ({} queue), every class exists in the new release",
            report.driver
        ));
        return Ok(());
    }
    let list: String = report
        .missing
        .iter()
        .map(|(class, count)| {
            format!(
                "\n  | {class}: {count} job{}",
                if *count == 1 { "" } else { "s" }
            )
        })
        .collect();
    Err(Failure::message(format!(
        "jobs waiting in the queue use classes the new release does not have:{list}"
    ))
    .with_hint(
        "rename a job class in two releases: first add the new class and keep the old one \
         (e.g. extending the new one) so queued jobs still run; remove the old class in a later \
         release, once the queue has drained",
    ))
}
