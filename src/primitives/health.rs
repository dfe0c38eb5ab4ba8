//! `health_gate(url)`: N consecutive 2xx responses before the deploy counts as done. A check that
//! passes while the old code still answers proves nothing, so with `health_expect_release` the
//! response (body or `X-Release` header) must also name the new release or its commit.
//!
//! Settings: `health_checks` (20), `health_interval` (1 s, fractions allowed), `health_timeout`
//! (5 s per request), `health_expect` (text the body must contain), `health_expect_release`
//! (`auto`, the default: when an answer names a release, in an `X-Release` header or by the
//! name of the new or the previous release in its body, it must name the new one; when none
//! does, one warning says how to make the app say; `true`: every answer must name the new
//! release directory; `false`: not checked),
//! `health_expect_commit` (false: they must name the new commit — weaker, since redeploying a
//! commit makes old and new answers alike), `health_host` (a Host header), `health_retries` (5:
//! answers from another release tolerated before giving up). A non-2xx answer or a connection
//! error fails at once. `https://` URLs are verified as [`crate::system::http`] says (the system's
//! certificate authorities and `SSL_CERT_FILE`).

use std::time::Duration;

use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::system::http;
use crate::values::template::Mode;

/// One answer of the health URL.
#[derive(Debug, Clone)]
struct Answer {
    status: u16,
    release_header: Option<String>,
    body: String,
}

impl Answer {
    fn describe(&self) -> String {
        let body: String = self.body.trim().chars().take(200).collect();
        format!("HTTP {} `{}`", self.status, body.replace('\n', " "))
    }
}

/// `memo` key: the warning that the health URL names no release was given (once per run).
const UNNAMED_WARNED: &str = "health: unnamed release warned";

fn seconds(ctx: &HostContext, key: &str, default: f64) -> Result<Duration, Failure> {
    match ctx.value(key)? {
        Some(value) => crate::values::config::seconds(&value)
            .map_err(|e| Failure::message(format!("`{key}`: {e}"))),
        None => Ok(Duration::from_secs_f64(default)),
    }
}

pub fn gate(ctx: &mut HostContext, url: &str) -> Result<u64, Failure> {
    let url = ctx.expand(url, Mode::Plain)?;
    let lower = url.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return Err(Failure::message(format!(
            "health URL `{url}` must start with http:// or https://"
        )));
    }
    let checks = ctx.count("health_checks", 20)?.max(1);
    let retries = ctx.count("health_retries", 5)?;
    let interval = seconds(ctx, "health_interval", 1.0)?;
    let timeout = seconds(ctx, "health_timeout", 5.0)?;
    let expect = ctx.text_or("health_expect", "")?;
    // `auto`: an answer that names a release (an `X-Release` header, or the new or the
    // previous release's name in its body) must name the new one; the app's answers say.
    let auto = ctx
        .text_or("health_expect_release", "auto")?
        .eq_ignore_ascii_case("auto");
    let expect_release = !auto && ctx.boolean("health_expect_release", false)?;
    let expect_commit = ctx.boolean("health_expect_commit", false)?;
    let host_header = ctx.text_or("health_host", "")?;
    let wanted = expect_release || expect_commit;
    if expect_commit {
        // A checkout sent without waiting names its commit now.
        super::update_code::settle(ctx)?;
    }
    let (release, commit) = match (&ctx.release, wanted) {
        (Some(r), true) => (
            Some(r.name.clone()).filter(|_| expect_release),
            r.commit.clone().filter(|_| expect_commit),
        ),
        (None, true) => return Err(Failure::message(
            "`health_expect_release` or `health_expect_commit` is on but this run made no release",
        )),
        _ => (None, None),
    };
    let expected = release.clone().or_else(|| commit.clone());
    let auto_names = ctx
        .release
        .as_ref()
        .filter(|_| auto && !wanted)
        .map(|r| (r.name.clone(), r.previous.clone()));
    let mut named_any = false;

    let failed = |error: http::RequestError, good: u64| {
        let message = if error.tls {
            // The cause names the URL.
            format!("health check failed: {}", error.cause)
        } else {
            format!(
                "health check failed: GET {url}: {} (after {good} good response{})",
                error.cause,
                if good == 1 { "" } else { "s" }
            )
        };
        match error.hint {
            Some(hint) => Failure::message(message).with_hint(hint),
            None => Failure::message(message),
        }
    };
    let agent = http::agent(&url, timeout).map_err(|e| failed(e, 0))?;
    let mut good = 0;
    let mut stale = 0;
    loop {
        let mut request = agent.get(&url);
        if !host_header.is_empty() {
            request = request.header("Host", &host_header);
        }
        let answer = match request.call() {
            Ok(mut response) => Answer {
                status: response.status().as_u16(),
                release_header: response
                    .headers()
                    .get("x-release")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                body: response
                    .body_mut()
                    .with_config()
                    .limit(64 * 1024)
                    .read_to_string()
                    .unwrap_or_default(),
            },
            Err(e) => return Err(failed(http::explain(e, &url, timeout), good)),
        };
        if !(200..300).contains(&answer.status) {
            return Err(Failure::message(format!(
                "health check failed: GET {url} answered {} (after {good} good response{})",
                answer.describe(),
                if good == 1 { "" } else { "s" }
            )));
        }
        if !expect.is_empty() && !answer.body.contains(&expect) {
            return Err(Failure::message(format!(
                "health check failed: GET {url} answered {} without the expected text `{expect}`",
                answer.describe()
            )));
        }
        let names_release = |a: &Answer, release: Option<&str>| {
            let names = |text: &str| {
                release.is_none_or(|r| text.contains(r))
                    && commit.as_deref().is_none_or(|c| text.contains(c))
            };
            a.release_header.as_deref().is_some_and(names) || names(&a.body)
        };
        let auto_expected = auto_names.as_ref().and_then(|(new, previous)| {
            let named = answer.release_header.is_some()
                || answer.body.contains(new.as_str())
                || previous.as_deref().is_some_and(|p| answer.body.contains(p));
            named.then_some(new.as_str())
        });
        named_any |= auto_expected.is_some();
        let required = expected.as_deref().or(auto_expected);
        let wrong_release = match (&expected, auto_expected) {
            (Some(_), _) => !names_release(&answer, release.as_deref()),
            (None, Some(new)) => !names_release(&answer, Some(new)),
            (None, None) => false,
        };
        if wrong_release {
            stale += 1;
            good = 0;
            if stale > retries {
                return Err(Failure::message(format!(
                    "health check failed: GET {url} still answers from another release, not `{}`: {}",
                    required.unwrap_or_default(),
                    answer.describe()
                ))
                .with_hint("nginx must pass `$realpath_root` (not `$document_root`) to php-fpm, or php-fpm must be reloaded, for the new release to be served"));
            }
        } else {
            good += 1;
        }
        if good >= checks {
            if auto_names.is_some() && !named_any && !ctx.memo.contains_key(UNNAMED_WARNED) {
                ctx.memo.insert(UNNAMED_WARNED.to_string(), String::new());
                ctx.warn(&format!(
                    "health: GET {url} does not say which release answered, so a check the old code passes would pass too; \
                     have the app send the release directory's name in an `X-Release` header (README: \"Which release answered\")"
                ));
            }
            ctx.info(&format!(
                "health: {good} good responses from {url} (last: HTTP {})",
                answer.status
            ));
            return Ok(good);
        }
        std::thread::sleep(interval);
    }
}
