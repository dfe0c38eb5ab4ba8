//! `check_queued_jobs()`: before the swap, read the jobs waiting in the app's queue (database
//! driver: the `jobs` table; Redis driver: the queue lists) and refuse when a job's class does
//! not exist in the new release: a worker on the new code would fail every one of them. The
//! check runs a small PHP script (embedded in zdd) inside the new release, so `class_exists`
//! answers for the new code, with the queue configuration the app itself uses.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::context::HostContext;
use crate::failure::Failure;
use crate::primitives::artisan::app_path;
use crate::primitives::programs::program;
use crate::quote;

const SCRIPT: &str = include_str!("../../../stdlib/php/queued_jobs.php");
const SCRIPT_NAME: &str = ".zdd-queued-jobs.php";

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

pub fn check_queued_jobs(ctx: &HostContext) -> Result<(), Failure> {
    if !ctx.boolean("check_queued_jobs", true)? {
        ctx.info("queued jobs: skipped (check_queued_jobs = false)");
        return Ok(());
    }
    let dir = app_path(ctx)?;
    let script = format!("{dir}/{SCRIPT_NAME}");
    ctx.transport.write_file(&script, SCRIPT)?;
    let line = format!(
        "{} {}",
        quote::word(&program(ctx, "php")?)?,
        quote::word(SCRIPT_NAME)?
    );
    let result = ctx.exec_in(&line, Some(&dir));
    ctx.transport.remove_file(&script)?;
    let output = result?;
    let report: Report = serde_json::from_str(output.stdout.trim()).map_err(|_| {
        Failure::message(format!(
            "cannot read the queue: the check printed `{}`",
            output.stdout.trim().chars().take(300).collect::<String>()
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
