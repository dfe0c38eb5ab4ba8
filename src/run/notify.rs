//! Notifications at the end of a run: a Slack-compatible incoming webhook (`slack_webhook`) and a
//! generic JSON webhook (`webhook_url`), for the tasks in `notify_tasks` (`deploy` and
//! `rollback` by default), on success and on failure.
//!
//! A notification never changes the outcome of a deploy: a webhook that cannot be reached, that
//! answers anything but 2xx or that does not answer within `webhook_timeout` seconds (5) is
//! reported as a warning and a `notification_failed` event. Bodies go through the run's
//! [`Secrets`] like everything else zdd prints. Requests go through [`crate::system::http`] (`https://`
//! verified against the system's certificate authorities and `SSL_CERT_FILE`); a webhook's URL is
//! a secret, so an error names only its origin (`https://hooks.slack.com`).

use std::collections::BTreeMap;
use std::time::Duration;

use rhai::Dynamic;
use serde::Serialize;

use crate::output::reporter::{format_duration, Event, Reporter};
use crate::output::secrets::Secrets;
use crate::system::http;
use crate::values::config;

/// At most this many lines of `git log --oneline` in a notification.
pub const COMMIT_LIMIT: usize = 50;

/// The tasks that notify unless `notify_tasks` says otherwise.
const DEFAULT_TASKS: [&str; 2] = ["deploy", "rollback"];

/// How long a webhook may take, unless `webhook_timeout` says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `webhook_timeout`.
const MAX_TIMEOUT: Duration = Duration::from_secs(600);

/// Where notifications go, from the recipe's settings.
pub struct Settings {
    targets: Vec<Target>,
    /// `application`, when set.
    application: Option<String>,
    tasks: Vec<String>,
    timeout: Duration,
}

struct Target {
    /// The setting that names it, as messages call it (its URL is a secret).
    setting: &'static str,
    url: String,
    kind: Kind,
}

#[derive(Clone, Copy)]
enum Kind {
    Slack,
    Generic,
}

impl Settings {
    /// The notification settings of a run; `None` when no webhook is set. A setting of the
    /// wrong type is an error before anything runs.
    pub fn read(config: &BTreeMap<String, Dynamic>) -> Result<Option<Settings>, String> {
        let text = |key: &str| -> Result<Option<String>, String> {
            match config.get(key) {
                None => Ok(None),
                Some(value) if value.is_unit() => Ok(None),
                Some(value) => config::text(value)
                    .map(|t| Some(t.trim().to_string()).filter(|t| !t.is_empty()))
                    .map_err(|e| format!("`{key}`: {e}")),
            }
        };
        let mut targets = Vec::new();
        for (setting, kind) in [
            ("slack_webhook", Kind::Slack),
            ("webhook_url", Kind::Generic),
        ] {
            if let Some(url) = text(setting)? {
                targets.push(Target { setting, url, kind });
            }
        }
        if targets.is_empty() {
            return Ok(None);
        }
        let tasks = match config.get("notify_tasks") {
            None => DEFAULT_TASKS.iter().map(|t| t.to_string()).collect(),
            Some(value) => config::list(value).map_err(|e| format!("`notify_tasks`: {e}"))?,
        };
        let timeout = match config.get("webhook_timeout") {
            None => DEFAULT_TIMEOUT,
            Some(value) => config::seconds(value)
                .ok()
                .filter(|s| !s.is_zero() && *s <= MAX_TIMEOUT)
                .ok_or_else(|| {
                    format!("`webhook_timeout` must be seconds between 0 and 600, not `{value}`")
                })?,
        };
        Ok(Some(Settings {
            targets,
            application: text("application")?,
            tasks,
            timeout,
        }))
    }

    /// Whether a run of `task` notifies.
    pub fn wants(&self, task: &str) -> bool {
        self.tasks.iter().any(|t| t == task)
    }

    /// The application's name: `application`, else the repository's base name without `.git`,
    /// else `fallback`.
    pub fn application(&self, repository: Option<&str>, fallback: &str) -> String {
        if let Some(name) = &self.application {
            return name.clone();
        }
        repository
            .map(|r| {
                let base = r
                    .trim_end_matches('/')
                    .rsplit(['/', ':'])
                    .next()
                    .unwrap_or_default();
                base.strip_suffix(".git").unwrap_or(base).to_string()
            })
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| fallback.to_string())
    }
}

/// What happened, as the generic webhook receives it (and the Slack text tells it).
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    /// `deploy_succeeded`, `deploy_failed`, `rolled_back` or `rollback_failed`.
    pub event: &'static str,
    pub app: String,
    pub task: String,
    pub hosts: Vec<String>,
    /// The branch, tag or commit asked for.
    #[serde(rename = "ref")]
    pub reference: Option<String>,
    /// The commit `current` has now (deployed, or rolled back to; the one tried on failure).
    pub commit: Option<String>,
    /// The commit `current` had before the run.
    pub previous_commit: Option<String>,
    /// `git log --oneline previous_commit..commit` (for a rollback, the commits taken out:
    /// `commit..previous_commit`), newest first, at most [`COMMIT_LIMIT`].
    pub commits: Vec<String>,
    /// More commits than [`COMMIT_LIMIT`] were in the range.
    pub commits_truncated: bool,
    pub duration_ms: u128,
    pub user: String,
    pub release: Option<String>,
    pub previous_release: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the watcher saw, when the run was watched.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<crate::output::watch::WatchSummary>,
    /// The hosts the deploy went on without (exit 4), each with why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_behind: Vec<crate::output::fleet::LeftBehind>,
}

/// The event name of a run of `task` that ended `succeeded` or not.
pub fn event_name(task: &str, succeeded: bool) -> &'static str {
    match (task == "rollback", succeeded) {
        (false, true) => "deploy_succeeded",
        (false, false) => "deploy_failed",
        (true, true) => "rolled_back",
        (true, false) => "rollback_failed",
    }
}

/// Send `notification` to every webhook, in parallel; report each outcome (in the order of the
/// settings). Never fails.
pub fn send(settings: &Settings, notification: &Notification, reporter: &Reporter) {
    let secrets = reporter.secrets();
    let outcomes: Vec<Result<u16, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = settings
            .targets
            .iter()
            .map(|target| {
                scope.spawn(move || {
                    let body = body(target.kind, notification, secrets);
                    post(&target.url, &body, settings.timeout)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the notification thread panicked".to_string()))
            })
            .collect()
    });
    for (target, outcome) in settings.targets.iter().zip(outcomes) {
        match outcome {
            Ok(status) => reporter.event(Event::NotificationSent {
                setting: target.setting,
                status,
            }),
            Err(error) => reporter.event(Event::NotificationFailed {
                setting: target.setting,
                error: &error,
            }),
        }
    }
}

/// The JSON body for a webhook, with every secret taken out.
fn body(kind: Kind, notification: &Notification, secrets: &Secrets) -> String {
    let json = match kind {
        Kind::Generic => serde_json::to_string(notification).unwrap_or_default(),
        Kind::Slack => serde_json::json!({ "text": slack_text(notification) }).to_string(),
    };
    secrets.redact_serialized(&json).into_owned()
}

/// The Slack message: one line saying what happened, the error, then the commits.
pub fn slack_text(n: &Notification) -> String {
    let hosts = n.hosts.join(", ");
    let took = format_duration(Duration::from_millis(n.duration_ms as u64));
    let short = |commit: &str| commit[..commit.len().min(12)].to_string();
    let (app, user, task) = (&n.app, &n.user, &n.task);
    let mut text = match n.event {
        "deploy_succeeded" => match (&n.release, &n.commit) {
            (Some(release), Some(commit)) => format!(
                "{app}: {user} deployed `{}` ({}) to {hosts} as release {release} in {took}",
                n.reference.as_deref().unwrap_or("HEAD"),
                short(commit)
            ),
            _ => format!("{app}: {user} ran `{task}` on {hosts} in {took}"),
        },
        "rolled_back" => {
            let mut line = format!("{app}: {user} rolled back {hosts}");
            if let Some(release) = &n.release {
                line.push_str(&format!(" to release {release}"));
            }
            if let Some(commit) = &n.commit {
                line.push_str(&format!(" ({})", short(commit)));
            }
            if let Some(previous) = &n.previous_release {
                line.push_str(&format!(", was {previous}"));
            }
            line.push_str(&format!(" in {took}"));
            line
        }
        _ => format!("{app}: `{task}` by {user} failed on {hosts} after {took}"),
    };
    if let Some(error) = &n.error {
        text.push_str(&format!("\n```\n{}\n```", error.trim_end()));
    }
    for url in n.watch.iter().flat_map(|watch| &watch.urls) {
        text.push_str(&format!("\n{}", url.line()));
    }
    for left in &n.left_behind {
        text.push_str(&format!(
            "\nleft behind on its old release: {}: {}",
            left.host, left.reason
        ));
    }
    if !n.commits.is_empty() {
        text.push_str(if n.event == "rolled_back" {
            "\nCommits taken out:"
        } else {
            "\nCommits:"
        });
        for line in &n.commits {
            text.push_str(&format!("\n• {line}"));
        }
        if n.commits_truncated {
            text.push_str("\n• ...");
        }
    }
    slack_escape(&text)
}

/// Slack reads `&`, `<` and `>` as markup.
fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// POST `body` as JSON; the status when it is 2xx, else why not, in words.
fn post(url: &str, body: &str, timeout: Duration) -> Result<u16, String> {
    let lower = url.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return Err("not sent: the URL must start with http:// or https://".to_string());
    }
    // The URL is a secret: what is printed of it is its origin.
    let words = |e: http::RequestError| match e.hint {
        Some(hint) => format!("{}; {hint}", e.cause),
        None => e.cause,
    };
    let agent = http::agent(url, timeout).map_err(words)?;
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .map_err(|e| words(http::explain(e, &http::origin(url), timeout)))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(status);
    }
    let answer = response
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_string()
        .unwrap_or_default();
    let answer = answer.lines().next().unwrap_or_default().trim();
    Err(match answer {
        "" => format!("the server answered HTTP {status}"),
        _ => format!(
            "the server answered HTTP {status}: {}",
            answer.chars().take(200).collect::<String>()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, Dynamic)]) -> Result<Option<Settings>, String> {
        let config = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Settings::read(&config)
    }

    #[test]
    fn nothing_to_send_without_a_webhook() {
        assert!(settings(&[]).unwrap().is_none());
        assert!(settings(&[("webhook_url", Dynamic::from(""))])
            .unwrap()
            .is_none());
    }

    #[test]
    fn settings_are_checked() {
        let url = ("webhook_url", Dynamic::from("http://127.0.0.1:1/"));
        let read = settings(std::slice::from_ref(&url)).unwrap().unwrap();
        assert!(read.wants("deploy") && read.wants("rollback") && !read.wants("hello"));
        assert_eq!(read.timeout, DEFAULT_TIMEOUT);
        let tasks = (
            "notify_tasks",
            Dynamic::from_array(vec![Dynamic::from("hello")]),
        );
        let read = settings(&[url.clone(), tasks]).unwrap().unwrap();
        assert!(read.wants("hello") && !read.wants("deploy"));
        let error = settings(&[url.clone(), ("webhook_timeout", Dynamic::from("soon"))])
            .err()
            .unwrap();
        assert_eq!(
            error,
            "`webhook_timeout` must be seconds between 0 and 600, not `soon`"
        );
        // The forms `config::seconds` reads, as the settings check reads them.
        for (value, seconds) in [
            (Dynamic::from_int(2), 2.0),
            (Dynamic::from_float(0.5), 0.5),
            (Dynamic::from("1.5"), 1.5),
            (Dynamic::from("3s"), 3.0),
            (Dynamic::from_int(600), 600.0),
        ] {
            let read = settings(&[url.clone(), ("webhook_timeout", value.clone())])
                .unwrap()
                .unwrap();
            assert_eq!(read.timeout.as_secs_f64(), seconds, "{value}");
        }
        for value in [
            Dynamic::from_int(0),
            Dynamic::from_int(601),
            Dynamic::from("-1"),
            Dynamic::from("NaN"),
        ] {
            let error = settings(&[url.clone(), ("webhook_timeout", value.clone())])
                .err()
                .unwrap();
            assert_eq!(
                error,
                format!("`webhook_timeout` must be seconds between 0 and 600, not `{value}`")
            );
        }
    }

    #[test]
    fn application_names() {
        let read = settings(&[("slack_webhook", Dynamic::from("http://x/"))])
            .unwrap()
            .unwrap();
        for (repository, name) in [
            ("https://git.example.com/acme/shop.git", "shop"),
            ("git@git.example.com:shop.git", "shop"),
            ("/srv/git/shop/", "shop"),
        ] {
            assert_eq!(read.application(Some(repository), "app"), name);
        }
        assert_eq!(read.application(None, "app"), "app");
    }

    #[test]
    fn only_http_and_https_are_sent() {
        let error = post("ftp://hooks.example.com/x", "{}", DEFAULT_TIMEOUT).unwrap_err();
        assert_eq!(
            error,
            "not sent: the URL must start with http:// or https://"
        );
        // An https URL is tried, not refused: here nothing listens.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let error = post(
            &format!("https://127.0.0.1:{port}/x"),
            "{}",
            DEFAULT_TIMEOUT,
        )
        .unwrap_err();
        assert_eq!(error, "connection refused");
    }

    #[test]
    fn slack_text_escapes_markup() {
        let notification = Notification {
            event: "deploy_failed",
            app: "shop".into(),
            task: "deploy".into(),
            hosts: vec!["web1".into(), "web2".into()],
            reference: Some("main".into()),
            commit: None,
            previous_commit: None,
            commits: vec![],
            commits_truncated: false,
            duration_ms: 1500,
            user: "alice".into(),
            release: None,
            previous_release: None,
            error: Some("a <b> & c".into()),
            watch: None,
            left_behind: Vec::new(),
        };
        assert_eq!(
            slack_text(&notification),
            "shop: `deploy` by alice failed on web1, web2 after 1.50 s\n```\na &lt;b&gt; &amp; c\n```"
        );
    }
}
