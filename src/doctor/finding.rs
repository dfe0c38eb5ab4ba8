//! One thing `zdd doctor` found on a host: which check, how bad, what it saw, how to fix it;
//! and how findings read (a table per host, or one JSON object per line).

use std::fmt::Write;

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Worth knowing; a deploy still keeps zero downtime (or doctor cannot tell).
    Warning,
    /// Zero downtime is at risk, or the next deploy will fail: exit code 1.
    Problem,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warning => "warning",
            Status::Problem => "problem",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Which check: `ssh`, `nginx`, `php-fpm`, `opcache`, `shared_files`, `writable_dirs`,
    /// `disk`, `lock`, `deploy_path`.
    pub check: &'static str,
    pub status: Status,
    pub message: String,
    /// How to fix it; `None` when ok.
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }

    pub fn warning(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            status: Status::Warning,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn problem(
        check: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            check,
            status: Status::Problem,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

/// A host's findings as text: the host's name, then one line per finding (status, message)
/// and, when there is a fix, a `fix:` line under the message.
pub fn render_text(host: &str, findings: &[Finding]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{host}");
    for finding in findings {
        let _ = writeln!(out, "  {:<8} {}", finding.status.as_str(), finding.message);
        if let Some(fix) = &finding.fix {
            let _ = writeln!(out, "  {:<8} fix: {fix}", "");
        }
    }
    out
}

/// A host's findings as JSON lines: `{host, check, status, message, fix}`.
pub fn render_json(host: &str, findings: &[Finding]) -> String {
    let mut out = String::new();
    #[derive(Serialize)]
    struct Line<'a> {
        host: &'a str,
        #[serde(flatten)]
        finding: &'a Finding,
    }
    for finding in findings {
        if let Ok(line) = serde_json::to_string(&Line { host, finding }) {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_puts_the_fix_under_the_message() {
        let findings = [
            Finding::ok("lock", "the deploy lock is free"),
            Finding::problem("php-fpm", "timeout is 0", "set it"),
        ];
        assert_eq!(
            render_text("web1", &findings),
            "web1\n  ok       the deploy lock is free\n  problem  timeout is 0\n           fix: set it\n"
        );
        assert_eq!(
            render_json("web1", &findings[..1]),
            "{\"host\":\"web1\",\"check\":\"lock\",\"status\":\"ok\",\"message\":\"the deploy lock is free\",\"fix\":null}\n"
        );
    }
}
