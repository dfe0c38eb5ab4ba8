//! `audit()`: `composer audit` (and `npm audit --omit=dev` when the release has a
//! package-lock.json) before the swap; refuse advisories at or above `audit_severity`
//! (default: critical), listing them. When an audit cannot run (no advisory database reachable)
//! it says so plainly and follows `audit_offline`: `warn` (default) or `fail`. Never silent.

use serde_json::Value;

use crate::output::failure::Failure;
use crate::primitives::artisan::app_path;
use crate::primitives::host_context::HostContext;
use crate::primitives::programs::{php, program};
use crate::values::quote::{self, Joiner, Line};

/// Severity ranks, lowest first (`moderate` is npm's `medium`).
fn rank(severity: &str) -> Option<u8> {
    match severity.to_ascii_lowercase().as_str() {
        "info" | "none" => Some(0),
        "low" => Some(1),
        "medium" | "moderate" => Some(2),
        "high" => Some(3),
        "critical" => Some(4),
        _ => None,
    }
}

/// One advisory that affects the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advisory {
    pub tool: &'static str,
    pub package: String,
    pub severity: String,
    pub title: String,
    pub reference: String,
}

/// What an audit said.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Advisories(Vec<Advisory>),
    NothingToAudit,
    /// It could not run; the reason, in the tool's words.
    Unavailable(String),
}

/// Parse `composer audit --format=json` output (stdout, stderr, exit status).
pub fn parse_composer(stdout: &str, stderr: &str, status: i32) -> Outcome {
    if stdout.contains("No packages - skipping audit")
        || stderr.contains("No packages - skipping audit")
    {
        return Outcome::NothingToAudit;
    }
    let Ok(json) = serde_json::from_str::<Value>(stdout.trim()) else {
        let said = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        return Outcome::Unavailable(summarize(said, status));
    };
    let mut found = Vec::new();
    if let Some(packages) = json.get("advisories").and_then(Value::as_object) {
        for (package, list) in packages {
            for advisory in list.as_array().into_iter().flatten() {
                let text = |key: &str| {
                    advisory
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let reference = [text("cve"), text("link"), text("advisoryId")]
                    .into_iter()
                    .find(|s| !s.is_empty())
                    .unwrap_or_default();
                found.push(Advisory {
                    tool: "composer",
                    package: package.clone(),
                    severity: Some(text("severity"))
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "unknown".into()),
                    title: text("title"),
                    reference,
                });
            }
        }
    }
    Outcome::Advisories(found)
}

/// Parse `npm audit --json` output.
pub fn parse_npm(stdout: &str, stderr: &str, status: i32) -> Outcome {
    let Ok(json) = serde_json::from_str::<Value>(stdout.trim()) else {
        let said = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        return Outcome::Unavailable(summarize(said, status));
    };
    if let Some(error) = json.get("error") {
        let summary = error.get("summary").and_then(Value::as_str).unwrap_or("");
        let code = error.get("code").and_then(Value::as_str).unwrap_or("");
        return Outcome::Unavailable(format!("{code} {summary}").trim().to_string());
    }
    let mut found = Vec::new();
    if let Some(packages) = json.get("vulnerabilities").and_then(Value::as_object) {
        for (package, entry) in packages {
            let severity = entry
                .get("severity")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            let via = entry.get("via").and_then(Value::as_array);
            let first = via.and_then(|v| v.iter().find(|x| x.is_object()));
            let text = |key: &str| {
                first
                    .and_then(|x| x.get(key))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            };
            found.push(Advisory {
                tool: "npm",
                package: package.clone(),
                severity: severity.to_string(),
                title: text("title"),
                reference: text("url"),
            });
        }
    }
    Outcome::Advisories(found)
}

/// The terminal width composer is told it has (`COLUMNS`). Composer (Symfony Console) prints an
/// error in a box whose lines are cut to fit the terminal; left to itself it asks `stty`, so the
/// cut would depend on where zdd runs. Told this width, it cuts only lines longer than
/// `COLUMNS - 5` characters, and [`unwrap_box`] knows where the cuts are.
const COLUMNS: usize = 1000;

/// Undo the box composer (Symfony Console's `renderThrowable`) draws around an error, printed
/// for a terminal `columns` wide: each line of the message is cut every `columns - 5`
/// characters, wherever that falls (in the middle of a word, or just before or after a space),
/// and every piece is printed indented by two spaces and padded with spaces to the box's width.
/// The pieces of one line are put back together as they were: a word cut in two is whole again,
/// and a space that fell at the start of a piece is kept. Each line of the message is one
/// paragraph (a piece that ends in a space ends one too: see below). Lines outside a box (a title, a usage line) are paragraphs of their own.
fn unwrap_box(text: &str, columns: usize) -> Vec<String> {
    let piece = columns.saturating_sub(5).max(1);
    let mut paragraphs = Vec::new();
    let mut current: Option<String> = None;
    fn finish(current: &mut Option<String>, paragraphs: &mut Vec<String>) {
        if let Some(text) = current.take() {
            let text = text.trim();
            if !text.is_empty() {
                paragraphs.push(text.to_string());
            }
        }
    }
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        let Some(body) = line.strip_prefix("  ").filter(|_| !line.trim().is_empty()) else {
            finish(&mut current, &mut paragraphs);
            if !line.trim().is_empty() {
                paragraphs.push(line.trim().to_string());
            }
            continue;
        };
        // Cut: the piece fills the box to its last character. A piece that ends in a space
        // looks like the padded end of a line, and is taken as one: the text reads the same
        // (one space between the two), only as two paragraphs.
        let cut = body.chars().nth(piece - 1).is_some_and(|c| c != ' ')
            && body.chars().skip(piece).all(|c| c == ' ');
        let target = current.get_or_insert_with(String::new);
        if cut {
            // A whole piece: the line goes on in the next one, exactly where this one stops.
            target.extend(body.chars().take(piece));
        } else {
            target.push_str(body.trim_end());
            finish(&mut current, &mut paragraphs);
        }
    }
    finish(&mut current, &mut paragraphs);
    paragraphs
}

/// What a tool said when it could not audit, in a few words: its first lines, without
/// composer's title (`In File.php line N:`) and usage lines.
fn summarize(text: &str, status: i32) -> String {
    let lines: Vec<String> = unwrap_box(text, COLUMNS)
        .into_iter()
        .filter(|l| !l.starts_with("In ") && !l.starts_with("audit ["))
        .take(3)
        .collect();
    if lines.is_empty() {
        format!("it exited with status {status} without a report")
    } else {
        lines.join(" ")
    }
}

/// Run `line` in `dir`, whatever its status: (stdout, stderr, status).
fn capture(ctx: &HostContext, line: &str, dir: &str) -> Result<(String, String, i32), Failure> {
    let wrapped = quote::join(&[line, "printf '\\nzdd-status=%s\\n' \"$?\""], Joiner::Then);
    let output = ctx.exec_in(&wrapped, Some(dir))?;
    let (body, status) = match output.stdout.rsplit_once("\nzdd-status=") {
        Some((body, status)) => (body.to_string(), status.trim().parse().unwrap_or(-1)),
        None => (output.stdout.clone(), -1),
    };
    Ok((body, output.stderr, status))
}

pub fn audit(ctx: &HostContext) -> Result<(), Failure> {
    if !ctx.boolean("audit", true)? {
        ctx.info("audit: skipped (audit = false)");
        return Ok(());
    }
    let threshold_name = ctx.text_or("audit_severity", "critical")?;
    let threshold = rank(&threshold_name).ok_or_else(|| {
        Failure::message(format!(
            "`audit_severity` is `{threshold_name}`; it must be low, medium, high or critical"
        ))
    })?;
    let offline = ctx.text_or("audit_offline", "warn")?;
    if offline != "warn" && offline != "fail" {
        return Err(Failure::message(format!(
            "`audit_offline` is `{offline}`; it must be warn or fail"
        )));
    }
    let dir = app_path(ctx)?;
    let mut outcomes: Vec<(&str, Outcome)> = Vec::new();
    if ctx.transport.exists(&format!("{dir}/composer.lock"))? {
        let line = Line::default()
            .assign("COLUMNS", &COLUMNS.to_string())?
            .text(php(ctx)?.as_str())
            .arg(&program(ctx, "composer")?)?
            .text("audit --format=json --no-interaction --locked --no-dev");
        let (stdout, stderr, status) = capture(ctx, line.as_str(), &dir)?;
        outcomes.push(("composer audit", parse_composer(&stdout, &stderr, status)));
    } else if ctx.transport.exists(&format!("{dir}/composer.json"))? {
        ctx.warn("audit: composer.json without composer.lock: composer audit needs the lock file");
    }
    if ctx.transport.exists(&format!("{dir}/package-lock.json"))? {
        let line = Line::command(&[program(ctx, "npm")?])?.text("audit --omit=dev --json");
        let (stdout, stderr, status) = capture(ctx, line.as_str(), &dir)?;
        outcomes.push(("npm audit", parse_npm(&stdout, &stderr, status)));
    }

    let mut blocking = Vec::new();
    for (tool, outcome) in outcomes {
        match outcome {
            Outcome::NothingToAudit => ctx.info(&format!("audit: {tool}: no packages to audit")),
            Outcome::Unavailable(reason) => {
                let text = format!("{tool} could not check for advisories: {reason}");
                if offline == "fail" {
                    return Err(Failure::message(text).with_hint(
                        "make the advisory database reachable, or deploy with `-o audit_offline=warn`",
                    ));
                }
                ctx.warn(&format!(
                    "audit: {text} (deploying anyway: audit_offline = warn)"
                ));
            }
            Outcome::Advisories(list) => {
                let (above, below): (Vec<_>, Vec<_>) = list
                    .into_iter()
                    .partition(|a| rank(&a.severity).is_none_or(|r| r >= threshold));
                if !below.is_empty() {
                    ctx.warn(&format!(
                        "audit: {tool}: {} advisor{} below {threshold_name}",
                        below.len(),
                        if below.len() == 1 { "y" } else { "ies" }
                    ));
                }
                if above.is_empty() {
                    ctx.info(&format!(
                        "audit: {tool}: nothing at or above {threshold_name}"
                    ));
                }
                blocking.extend(above);
            }
        }
    }
    if blocking.is_empty() {
        return Ok(());
    }
    let list: String = blocking
        .iter()
        .map(|a| {
            format!(
                "\n  | {} {}: {} {}{}",
                a.tool,
                a.package,
                a.severity,
                a.title,
                if a.reference.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", a.reference)
                }
            )
        })
        .collect();
    Err(Failure::message(format!(
        "{} advisor{} at or above {threshold_name} affect the release:{list}",
        blocking.len(),
        if blocking.len() == 1 { "y" } else { "ies" }
    ))
    .with_hint("update the packages, or set `audit_severity` higher (or `-o audit=false`) to deploy anyway"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composer_reports_are_read() {
        let json = r#"{"advisories":{"monolog/monolog":[{"advisoryId":"PKSA-1","packageName":"monolog/monolog","title":"Header injection","cve":"CVE-2020-1","link":"https://x","severity":"high"}]}}"#;
        assert_eq!(
            parse_composer(json, "", 1),
            Outcome::Advisories(vec![Advisory {
                tool: "composer",
                package: "monolog/monolog".into(),
                severity: "high".into(),
                title: "Header injection".into(),
                reference: "CVE-2020-1".into(),
            }])
        );
        assert_eq!(
            parse_composer("", "No packages - skipping audit.", 0),
            Outcome::NothingToAudit
        );
        assert!(matches!(
            parse_composer("", "In RemoteFilesystem.php line 476:\n  The \"https://repo.packagist.org/packages.json\" file could not be downloaded\n", 1),
            Outcome::Unavailable(reason) if reason.starts_with("The \"https://repo.packagist.org/packages.json\" file could not be downloaded")
        ));
    }

    /// Composer's stderr offline, as it printed it for a terminal `columns` wide (Debian's
    /// composer 2.5, Symfony Console 6.2): `"  "` + piece + `"  "`, padded to the box.
    fn boxed(columns: usize, pieces: &[&str]) -> String {
        let width = columns - 1;
        let blank = " ".repeat(width);
        let mut text = format!("\nIn RemoteFilesystem.php line 476:\n{blank}\n");
        for piece in pieces {
            text.push_str(&format!("  {piece:<0$}\n", width - 2));
        }
        text.push_str(&format!(
            "{blank}\n\naudit [--no-dev] [-f|--format FORMAT] [--locked]\n\n"
        ));
        text
    }

    const DOWNLOAD: &str = "The \"https://repo.packagist.org/packages.json\" file could not be downloaded: php_network_getaddresses: getaddrinfo for repo.packagist.org failed: Name or service not known";
    const STREAM: &str = "Failed to open stream: php_network_getaddresses: getaddrinfo for repo.packagist.org failed: Name or service not known";

    #[test]
    fn a_boxed_error_is_unwrapped_where_composer_cut_it() {
        // 80 columns (composer's default): cut mid-word (`repo.packa|gist.org`), just before a
        // space (`Name| or`) and just before punctuation (`downloaded|:`).
        let eighty = boxed(
            80,
            &[
                "The \"https://repo.packagist.org/packages.json\" file could not be downloaded",
                ": php_network_getaddresses: getaddrinfo for repo.packagist.org failed: Name",
                " or service not known",
                "Failed to open stream: php_network_getaddresses: getaddrinfo for repo.packa",
                "gist.org failed: Name or service not known",
            ],
        );
        assert!(eighty.contains(
            "  The \"https://repo.packagist.org/packages.json\" file could not be downloaded  \n"
        ));
        assert!(eighty.contains(
            "\n   or service not known                                                        \n"
        ));
        let paragraphs = vec![
            "In RemoteFilesystem.php line 476:".to_string(),
            DOWNLOAD.to_string(),
            STREAM.to_string(),
            "audit [--no-dev] [-f|--format FORMAT] [--locked]".to_string(),
        ];
        assert_eq!(unwrap_box(&eighty, 80), paragraphs);
        // 57 columns: a piece that ends with a space (`file |could`), words cut everywhere.
        let narrow = boxed(
            57,
            &[
                "The \"https://repo.packagist.org/packages.json\" file ",
                "could not be downloaded: php_network_getaddresses: g",
                "etaddrinfo for repo.packagist.org failed: Name or se",
                "rvice not known",
                "Failed to open stream: php_network_getaddresses: get",
                "addrinfo for repo.packagist.org failed: Name or serv",
                "ice not known",
            ],
        );
        let mut cut_after_a_space = paragraphs.clone();
        cut_after_a_space.splice(
            1..2,
            [
                "The \"https://repo.packagist.org/packages.json\" file".to_string(),
                DOWNLOAD[52..].to_string(),
            ],
        );
        assert_eq!(unwrap_box(&narrow, 57), cut_after_a_space);
        assert!(unwrap_box(&narrow, 57)
            .join(" ")
            .contains(&format!("{DOWNLOAD} {STREAM}")));
        // curl's wording, cut in `Could`.
        let curl = boxed(
            80,
            &[
                "curl error 6 while downloading https://repo.packagist.org/packages.json: Co",
                "uld not resolve host: repo.packagist.org",
            ],
        );
        assert_eq!(
            unwrap_box(&curl, 80)[1],
            "curl error 6 while downloading https://repo.packagist.org/packages.json: Could not resolve host: repo.packagist.org"
        );
        // A line as wide as the box but shorter than a cut is whole: the next line is another.
        let whole = boxed(1000, &[DOWNLOAD, STREAM]);
        assert_eq!(unwrap_box(&whole, 1000), paragraphs);
        // Told a width, composer cuts nowhere; the summary is its first two lines, whole.
        assert_eq!(
            parse_composer("", &whole, 1),
            Outcome::Unavailable(format!("{DOWNLOAD} {STREAM}"))
        );
        assert_eq!(
            parse_composer("", "", 1),
            Outcome::Unavailable("it exited with status 1 without a report".into())
        );
    }

    #[test]
    fn npm_reports_are_read() {
        let json = r#"{"vulnerabilities":{"minimist":{"severity":"critical","via":[{"title":"Prototype Pollution","url":"https://gh/1"}]}}}"#;
        assert_eq!(
            parse_npm(json, "", 1),
            Outcome::Advisories(vec![Advisory {
                tool: "npm",
                package: "minimist".into(),
                severity: "critical".into(),
                title: "Prototype Pollution".into(),
                reference: "https://gh/1".into(),
            }])
        );
        let offline = r#"{"error":{"code":"ENOTFOUND","summary":"request failed"}}"#;
        assert_eq!(
            parse_npm(offline, "", 1),
            Outcome::Unavailable("ENOTFOUND request failed".into())
        );
    }
}
