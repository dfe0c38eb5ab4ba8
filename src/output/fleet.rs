//! What a run did on each host of a fleet, in words: the hosts left behind on their old
//! release (within `max_fail`) and why, and the final table of hosts x outcome. Pure.

use serde::{Deserialize, Serialize};

/// A host the deploy went on without: it stays on its old release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftBehind {
    pub host: String,
    pub reason: String,
}

/// How a run ended on one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The new release is live.
    Switched,
    /// The run had no cutover; every step ran.
    Done,
    /// Left on its old release within the failure budget.
    LeftBehind,
    /// The run failed; this host was switched to the new release, then back.
    SwitchedBack,
    /// The run failed before this host switched: it is as it was.
    Unchanged,
}

impl Outcome {
    pub fn words(self) -> &'static str {
        match self {
            Outcome::Switched => "switched",
            Outcome::Done => "done",
            Outcome::LeftBehind => "left behind",
            Outcome::SwitchedBack => "switched back",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// One row of the final table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostOutcome {
    pub host: String,
    pub outcome: Outcome,
    /// Why, for a host left behind (or the failure, on the host that failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The final table, one host per line, the reason cut to one line:
///
/// ```text
/// host    outcome      why
/// web01   switched
/// web20   left behind  unreachable: ssh: connect to host 10.0.0.20 port 22: Connection refused
/// ```
pub fn table(rows: &[HostOutcome]) -> String {
    let width = rows.iter().map(|r| r.host.len()).max().unwrap_or(0).max(4);
    let outcome_width = rows
        .iter()
        .map(|r| r.outcome.words().len())
        .max()
        .unwrap_or(0)
        .max(7);
    let mut text = format!("{:<width$}  {:<outcome_width$}  why", "host", "outcome");
    for row in rows {
        let reason = row.reason.as_deref().map(one_line).unwrap_or_default();
        let line = format!(
            "\n{:<width$}  {:<outcome_width$}  {reason}",
            row.host,
            row.outcome.words()
        );
        text.push_str(line.trim_end());
    }
    text
}

/// A count of each outcome: `19 switched, 1 left behind`.
pub fn counts(rows: &[HostOutcome]) -> String {
    let mut counts: Vec<(Outcome, usize)> = Vec::new();
    for row in rows {
        match counts.iter_mut().find(|(o, _)| *o == row.outcome) {
            Some((_, n)) => *n += 1,
            None => counts.push((row.outcome, 1)),
        }
    }
    counts
        .iter()
        .map(|(outcome, n)| format!("{n} {}", outcome.words()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The first line of `text`, at most 160 characters.
fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() > 160 {
        let cut: String = line.chars().take(157).collect();
        format!("{cut}...")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(host: &str, outcome: Outcome, reason: Option<&str>) -> HostOutcome {
        HostOutcome {
            host: host.to_string(),
            outcome,
            reason: reason.map(str::to_string),
        }
    }

    #[test]
    fn the_table_has_one_line_per_host_and_the_reason_on_it() {
        let rows = [
            row("web01", Outcome::Switched, None),
            row(
                "web20",
                Outcome::LeftBehind,
                Some("unreachable: refused\nmore"),
            ),
        ];
        assert_eq!(
            table(&rows),
            "host   outcome      why\nweb01  switched\nweb20  left behind  unreachable: refused"
        );
        assert_eq!(counts(&rows), "1 switched, 1 left behind");
    }

    #[test]
    fn long_reasons_are_cut() {
        let long = "x".repeat(500);
        let text = table(&[row("a", Outcome::LeftBehind, Some(&long))]);
        assert!(text.lines().nth(1).unwrap().len() < 200);
        assert!(text.ends_with("..."));
    }
}
