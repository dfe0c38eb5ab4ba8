//! `zdd report RECIPE [RELEASE]`: one deploy, read back from its hosts (each host's release log
//! line for the release: its tasks, its swap, what the watcher saw; the watcher's samples from
//! `.zdd/watch/<release>.json`), drawn as one self-contained HTML page
//! (`crate::output::report_page`) whose path is printed, or printed as JSON with `--json`.
//! Reads only: no lock, nothing changed.

use std::path::PathBuf;

use crate::cli::error::Error;
use crate::cli::subcommand::with_host_context;
use crate::output::failure::Failure;
use crate::output::report::{HostRow, Report};
use crate::output::report_page;
use crate::output::watch::{self, Recording};
use crate::primitives::host_context::HostContext;
use crate::primitives::release_log::{self, Entry};
use crate::registry::Host;
use crate::script::Recipe;

/// The events that end a deploy on a host, and carry its timeline.
const ENDINGS: &[&str] = &["finished", "prepared", "failed"];

/// What one host says of the deploy.
struct Seen {
    host: String,
    /// Its log's last ending of each release, oldest first.
    endings: Vec<Entry>,
    recording: Option<Recording>,
}

pub fn run(
    recipe: &Recipe,
    hosts: &[Host],
    release: Option<String>,
    output: Option<PathBuf>,
    json: bool,
) -> Result<(), Error> {
    if let Some(name) = &release {
        if !plain_name(name) {
            return Err(Error::Usage {
                message: format!("`{name}` is not the name of a release"),
                hint: Some(format!("`zdd releases {}` lists the releases", recipe.path)),
            });
        }
    }
    let mut seen = Vec::new();
    for host in hosts {
        let wanted = release.clone();
        seen.push(with_host_context(recipe, host, |ctx| {
            read_host(ctx, wanted.as_deref())
        })?);
    }
    let report = build(&seen, release.as_deref()).map_err(|message| Error::Failed {
        message,
        hint: Some(format!(
            "`zdd releases {}` lists the releases; a deploy's timeline is recorded by a run that is watched (`--watch URL`) or has more than the stdlib's deploy steps",
            recipe.path
        )),
    })?;
    if json {
        let text = serde_json::to_string(&report).map_err(|e| Error::Failed {
            message: e.to_string(),
            hint: None,
        })?;
        println!("{text}");
        return Ok(());
    }
    let path =
        output.unwrap_or_else(|| PathBuf::from(format!("zdd-report-{}.html", report.release)));
    std::fs::write(&path, report_page::render(&report)).map_err(|e| Error::Failed {
        message: format!("cannot write `{}`: {e}", path.display()),
        hint: None,
    })?;
    println!("{}", path.display());
    Ok(())
}

/// Read one host's endings, and the recording of the release asked for (else of its last).
fn read_host(ctx: &mut HostContext, release: Option<&str>) -> Result<Seen, Failure> {
    let log = release_log::read(ctx)?;
    let mut endings: Vec<Entry> = Vec::new();
    for entry in log.entries {
        // A name from a log edited by hand never becomes a path outside the deploy path.
        if ENDINGS.contains(&entry.event.as_str()) && plain_name(&entry.release) {
            endings.retain(|e| e.release != entry.release);
            endings.push(entry);
        }
    }
    let name = release
        .map(str::to_string)
        .or_else(|| endings.last().map(|e| e.release.clone()));
    let recording = match name {
        Some(name) => {
            let path = ctx.path(&watch::recording_path(&name))?;
            match ctx.transport.read_file(&path)? {
                Some(text) => serde_json::from_str::<Recording>(&text).ok(),
                None => None,
            }
        }
        None => None,
    };
    Ok(Seen {
        host: ctx.host.clone(),
        endings,
        recording,
    })
}

/// A release's name that can be part of a file name: not empty, no `/`, not hidden, not an
/// option.
fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && !name.contains('/')
        && !name.starts_with('.')
        && !name.starts_with('-')
        && !name.chars().any(char::is_control)
}

/// The report of `release` (else of the newest deploy any host ended) from what each host says.
fn build(seen: &[Seen], release: Option<&str>) -> Result<Report, String> {
    let name = match release {
        Some(name) => name.to_string(),
        None => seen
            .iter()
            .filter_map(|s| s.endings.last())
            .max_by(|a, b| a.time.cmp(&b.time))
            .map(|e| e.release.clone())
            .ok_or("no deploy is recorded on any host")?,
    };
    let mut rows = Vec::new();
    let mut first: Option<&Entry> = None;
    for host in seen {
        let Some(entry) = host.endings.iter().find(|e| e.release == name) else {
            continue;
        };
        first = first.or(Some(entry));
        rows.push(HostRow {
            host: host.host.clone(),
            outcome: entry.event.clone(),
            tasks: entry.tasks.clone(),
            swap: entry.swap.clone(),
            message: entry.message.clone(),
        });
    }
    let Some(first) = first else {
        return Err(format!(
            "no host has a record of a deploy of release `{name}`"
        ));
    };
    if rows.iter().all(|row| row.tasks.is_empty()) {
        return Err(format!(
            "release `{name}` was deployed without a recorded timeline"
        ));
    }
    let recording = seen
        .iter()
        .filter(|s| s.endings.iter().any(|e| e.release == name))
        .find_map(|s| s.recording.clone());
    let duration_ms = rows
        .iter()
        .flat_map(|row| &row.tasks)
        .map(|task| task.start_ms + task.duration_ms)
        .chain(first.watch.as_ref().map(|w| w.to_ms))
        .max()
        .unwrap_or(0);
    Ok(Report {
        release: name,
        commit: first.commit.clone(),
        started: first.started.clone().unwrap_or_default(),
        duration_ms,
        hosts: rows,
        watch: first.watch.clone(),
        urls: recording
            .as_ref()
            .map(|r| r.urls.clone())
            .unwrap_or_default(),
        samples: recording.map(|r| r.samples()).unwrap_or_default(),
    })
}
