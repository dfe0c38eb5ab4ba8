//! What `zdd report` draws: one deploy, as each host's release log and the watcher's recording
//! tell it. Pure data, built by the `report` subcommand from what it reads on the hosts, drawn
//! by `report_page` (HTML with inline SVG) or printed as JSON (`zdd report --json`).
//!
//! Times are milliseconds from the start of the run (the release log's `started`), the axis
//! the task bars and the watcher's strip share.

use serde::{Deserialize, Serialize};

use crate::output::watch::{Sample, Swap, WatchSummary};

/// One task on one host, as the release log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskTiming {
    pub task: String,
    /// When it started, and how long it took (ms).
    pub start_ms: u64,
    pub duration_ms: u64,
    /// `ok` or `failed`.
    pub outcome: String,
}

/// One host's row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRow {
    pub host: String,
    /// How the deploy ended there: `finished`, `prepared` or `failed` (the release log's event).
    pub outcome: String,
    pub tasks: Vec<TaskTiming>,
    /// When `current` was swapped to the new release there (sent, done), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<Swap>,
    /// Why it failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A deploy, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub release: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// From the start of the run to the end of the last host's last task.
    pub duration_ms: u64,
    pub hosts: Vec<HostRow>,
    /// What the watcher saw, when the deploy was watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchSummary>,
    /// The watcher's requests (`urls` names them by index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "samples")]
    pub samples: Vec<Sample>,
}

/// Samples in the report's JSON as objects (`{"url":0,"at_ms":..}`), for tools that draw
/// their own.
mod samples {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::output::watch::{Sample, Served};

    #[derive(Serialize, Deserialize)]
    struct Object {
        url: usize,
        at_ms: u64,
        status: u16,
        latency_ms: u64,
        served: Served,
    }

    pub fn serialize<S: Serializer>(samples: &[Sample], serializer: S) -> Result<S::Ok, S::Error> {
        let objects: Vec<Object> = samples
            .iter()
            .map(|s| Object {
                url: s.url,
                at_ms: s.at_ms,
                status: s.status,
                latency_ms: s.latency_ms,
                served: s.served,
            })
            .collect();
        objects.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Sample>, D::Error> {
        let objects = Vec::<Object>::deserialize(deserializer)?;
        Ok(objects
            .into_iter()
            .map(|o| Sample {
                url: o.url,
                at_ms: o.at_ms,
                status: o.status,
                latency_ms: o.latency_ms,
                served: o.served,
            })
            .collect())
    }
}
