//! What the watcher saw (`zdd run --watch URL`): every answer of every watched URL during a
//! deploy, as samples, and what they sum up to per URL. Pure: the sampling itself is
//! `crate::run::watcher`'s; this file holds the data, the arithmetic (counts, percentiles,
//! answers from the old release after the swap, thresholds) and the compact form kept on each
//! host (`.zdd/watch/<release>.json`, read back by `zdd report`).
//!
//! Every time is in milliseconds from the start of the run, the time axis the report's task
//! bars use too.

use serde::{Deserialize, Serialize};

/// Which release answered a request, as far as the answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Served {
    /// The answer names no release (no `X-Release` header, no known name in the body).
    Unknown,
    /// A release other than the one this run deployed.
    Old,
    /// The release this run deployed.
    New,
}

impl Served {
    fn code(self) -> u8 {
        match self {
            Served::Unknown => 0,
            Served::Old => 1,
            Served::New => 2,
        }
    }

    fn from_code(code: u64) -> Served {
        match code {
            1 => Served::Old,
            2 => Served::New,
            _ => Served::Unknown,
        }
    }
}

/// One request of the watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Index into the watched URLs.
    pub url: usize,
    /// When it was sent (ms from the start of the run).
    pub at_ms: u64,
    /// The HTTP status; 0 when there was no answer (connection refused, reset, timeout).
    pub status: u16,
    /// From sending to the end of the answer (or the error).
    pub latency_ms: u64,
    pub served: Served,
}

impl Sample {
    /// Not a good answer: no answer, or a 5xx. A 4xx is the app's own answer (a page that
    /// needs a login, say) and is the same before and after a deploy.
    pub fn failed(&self) -> bool {
        self.status == 0 || self.status >= 500
    }
}

/// A failed request, as the summary and the error show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRequest {
    pub at_ms: u64,
    /// 0: no answer.
    pub status: u16,
    /// What went wrong (`HTTP 502`, `connection refused`, ...).
    pub error: String,
    /// The host whose swap was sent last before this request's answer ended, and how long
    /// before that end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_swap_of: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_swap_ms: Option<u64>,
}

/// One host's swap of `current`, on the run's time axis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swap {
    pub host: String,
    /// When the swap was sent, and when the host's answer said it was done.
    pub sent_ms: u64,
    pub done_ms: u64,
}

/// What one watched URL saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrlSummary {
    pub url: String,
    pub requests: u64,
    pub failed: u64,
    /// Answers from another release to requests sent after the last swap this URL waits for.
    pub stale: u64,
    /// Answers that named a release (the new or an old one): 0 means the app does not say.
    pub named: u64,
    pub p50_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
    /// p99 of the requests sent before the first swap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_p99_ms: Option<u64>,
    /// The first few failures (at most [`FIRST_FAILURES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub first_failures: Vec<FailedRequest>,
}

/// What the watcher saw in a run: kept in the release log, the `finished` event and the webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchSummary {
    /// Requests per second per URL.
    pub rate: f64,
    /// From the watcher's start (ms from the start of the run) to its end.
    pub from_ms: u64,
    pub to_ms: u64,
    pub urls: Vec<UrlSummary>,
}

/// How many failures the summary keeps as examples.
pub const FIRST_FAILURES: usize = 5;

/// A watched URL, and the hosts whose swap it waits for before an old release's answer counts
/// as stale (every host for a URL of the whole run, one host for a host's own URL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    pub url: String,
    pub hosts: Vec<String>,
}

/// The `q`-quantile (0..=1) of `values`, nearest rank; 0 for none.
pub fn percentile(values: &mut [u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

/// Sum up the samples of each watched URL.
pub fn summarize(
    watched: &[Watched],
    samples: &[Sample],
    swaps: &[Swap],
    errors: &[(usize, u64, String)],
    rate: f64,
    window: (u64, u64),
) -> WatchSummary {
    let first_swap = swaps.iter().map(|s| s.sent_ms).min();
    let urls = watched
        .iter()
        .enumerate()
        .map(|(index, url)| {
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.url == index).collect();
            // An old release may answer until the last swap this URL waits for is done.
            let last_swap = swaps
                .iter()
                .filter(|s| url.hosts.contains(&s.host))
                .map(|s| s.done_ms)
                .max();
            let stale = match last_swap {
                Some(done) if swaps_cover(url, swaps) => mine
                    .iter()
                    .filter(|s| s.at_ms >= done && s.served == Served::Old && !s.failed())
                    .count() as u64,
                _ => 0,
            };
            let mut latencies: Vec<u64> = mine.iter().map(|s| s.latency_ms).collect();
            let mut before: Vec<u64> = mine
                .iter()
                .filter(|s| first_swap.is_none_or(|first| s.at_ms < first))
                .map(|s| s.latency_ms)
                .collect();
            let first_failures = mine
                .iter()
                .filter(|s| s.failed())
                .take(FIRST_FAILURES)
                .map(|s| {
                    let error = errors
                        .iter()
                        .find(|(u, at, _)| *u == index && *at == s.at_ms)
                        .map(|(_, _, e)| e.clone())
                        .unwrap_or_else(|| format!("HTTP {}", s.status));
                    // A request sent just before a swap may be cut by what follows it (a
                    // reload): the swap it is put after is the last one sent before its
                    // answer ended.
                    let ended = s.at_ms.saturating_add(s.latency_ms);
                    let swap = swaps
                        .iter()
                        .filter(|w| w.sent_ms <= ended)
                        .max_by_key(|w| w.sent_ms);
                    FailedRequest {
                        at_ms: s.at_ms,
                        status: s.status,
                        error,
                        after_swap_of: swap.map(|w| w.host.clone()),
                        after_swap_ms: swap.map(|w| ended - w.sent_ms),
                    }
                })
                .collect();
            UrlSummary {
                url: url.url.clone(),
                requests: mine.len() as u64,
                failed: mine.iter().filter(|s| s.failed()).count() as u64,
                stale,
                named: mine.iter().filter(|s| s.served != Served::Unknown).count() as u64,
                p50_ms: percentile(&mut latencies, 0.50),
                p99_ms: percentile(&mut latencies, 0.99),
                max_ms: latencies.iter().copied().max().unwrap_or(0),
                before_p99_ms: (first_swap.is_some() && !before.is_empty())
                    .then(|| percentile(&mut before, 0.99)),
                first_failures,
            }
        })
        .collect();
    WatchSummary {
        rate,
        from_ms: window.0,
        to_ms: window.1,
        urls,
    }
}

/// Every host the URL waits for has swapped.
fn swaps_cover(url: &Watched, swaps: &[Swap]) -> bool {
    url.hosts
        .iter()
        .all(|host| swaps.iter().any(|s| &s.host == host))
}

/// The limits a deploy is held to (`watch_max_failures`, `watch_max_stale`, `watch_max_p99`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_failures: u64,
    pub max_stale: u64,
    /// Milliseconds.
    pub max_p99: Option<u64>,
}

impl UrlSummary {
    /// What goes over `limits`, in words; `None` when the URL is within them.
    pub fn over(&self, limits: &Limits) -> Option<String> {
        let mut problems = Vec::new();
        if self.failed > limits.max_failures {
            let mut text = format!(
                "{} failed request{} (`watch_max_failures` is {})",
                self.failed,
                plural(self.failed),
                limits.max_failures
            );
            let examples: Vec<String> = self.first_failures.iter().map(describe_failure).collect();
            if !examples.is_empty() {
                text.push_str(&format!(": {}", examples.join("; ")));
            }
            problems.push(text);
        }
        if self.stale > limits.max_stale {
            problems.push(format!(
                "{} answer{} from the old release after the swap (`watch_max_stale` is {})",
                self.stale,
                plural(self.stale),
                limits.max_stale
            ));
        }
        if let Some(max) = limits.max_p99 {
            if self.p99_ms > max {
                problems.push(format!(
                    "p99 {} ms (`watch_max_p99` is {max} ms)",
                    self.p99_ms
                ));
            }
        }
        (!problems.is_empty()).then(|| format!("watch {}: {}", self.url, problems.join(", ")))
    }

    /// The summary's line: `watch URL: 412 requests, 0 failed, 0 from the old release after
    /// the swap, p50 18 ms, p99 41 ms (before the deploy: p99 22 ms)`.
    pub fn line(&self) -> String {
        let mut text = format!(
            "watch {}: {} request{}, {} failed, ",
            self.url,
            self.requests,
            plural(self.requests),
            self.failed
        );
        if self.named == 0 && self.requests > 0 {
            text.push_str("release not named by the app, ");
        } else {
            text.push_str(&format!(
                "{} from the old release after the swap, ",
                self.stale
            ));
        }
        text.push_str(&format!("p50 {} ms, p99 {} ms", self.p50_ms, self.p99_ms));
        if let Some(before) = self.before_p99_ms {
            text.push_str(&format!(" (before the deploy: p99 {before} ms)"));
        }
        text
    }
}

/// `+4.21 s HTTP 502 (2 ms after web1's swap)`.
pub fn describe_failure(failure: &FailedRequest) -> String {
    let mut text = format!("+{:.2} s {}", failure.at_ms as f64 / 1000.0, failure.error);
    match (&failure.after_swap_of, failure.after_swap_ms) {
        (Some(host), Some(after)) => text.push_str(&format!(" ({after} ms after {host}'s swap)")),
        _ => text.push_str(" (before any swap)"),
    }
    text
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The samples as kept on the host, `.zdd/watch/<release>.json`: the URLs, the swaps and one
/// `[url, at_ms, status, latency_ms, served]` array per request (served: 0 unknown, 1 old,
/// 2 new), ~20 bytes a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recording {
    pub version: u32,
    pub urls: Vec<String>,
    pub swaps: Vec<Swap>,
    pub samples: Vec<[u64; 5]>,
}

impl Recording {
    pub fn new(urls: Vec<String>, swaps: Vec<Swap>, samples: &[Sample]) -> Recording {
        Recording {
            version: 1,
            urls,
            swaps,
            samples: samples
                .iter()
                .map(|s| {
                    [
                        s.url as u64,
                        s.at_ms,
                        s.status as u64,
                        s.latency_ms,
                        s.served.code() as u64,
                    ]
                })
                .collect(),
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples
            .iter()
            .map(|[url, at_ms, status, latency_ms, served]| Sample {
                url: *url as usize,
                at_ms: *at_ms,
                status: (*status).min(u16::MAX as u64) as u16,
                latency_ms: *latency_ms,
                served: Served::from_code(*served),
            })
            .collect()
    }
}

/// Where a release's recording is kept, relative to the deploy path.
pub fn recording_path(release: &str) -> String {
    format!(".zdd/watch/{release}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(url: usize, at_ms: u64, status: u16, latency_ms: u64, served: Served) -> Sample {
        Sample {
            url,
            at_ms,
            status,
            latency_ms,
            served,
        }
    }

    fn swap(host: &str, sent_ms: u64, done_ms: u64) -> Swap {
        Swap {
            host: host.into(),
            sent_ms,
            done_ms,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut values: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&mut values, 0.5), 50);
        assert_eq!(percentile(&mut values, 0.99), 99);
        assert_eq!(percentile(&mut [7], 0.99), 7);
        assert_eq!(percentile(&mut [], 0.99), 0);
    }

    #[test]
    fn old_answers_count_as_stale_only_after_the_last_swap_the_url_waits_for() {
        let watched = [
            Watched {
                url: "http://lb/".into(),
                hosts: vec!["web1".into(), "web2".into()],
            },
            Watched {
                url: "http://web1/".into(),
                hosts: vec!["web1".into()],
            },
        ];
        let samples = [
            // Before any swap: old is fine.
            sample(0, 100, 200, 10, Served::Old),
            // web1 swapped, web2 not yet: the load balancer may still answer from web2.
            sample(0, 1100, 200, 10, Served::Old),
            sample(1, 1100, 200, 10, Served::Old),
            // Both swapped.
            sample(0, 2100, 200, 10, Served::Old),
            sample(0, 2200, 200, 12, Served::New),
            sample(1, 2200, 502, 30, Served::Unknown),
        ];
        let swaps = [swap("web1", 900, 1000), swap("web2", 1900, 2000)];
        let summary = summarize(&watched, &samples, &swaps, &[], 5.0, (0, 3000));
        assert_eq!(summary.urls[0].requests, 4);
        assert_eq!(summary.urls[0].stale, 1);
        assert_eq!(summary.urls[0].failed, 0);
        assert_eq!(summary.urls[0].before_p99_ms, Some(10));
        assert_eq!(summary.urls[1].stale, 1);
        assert_eq!(summary.urls[1].failed, 1);
        let failure = &summary.urls[1].first_failures[0];
        assert_eq!(failure.after_swap_of.as_deref(), Some("web2"));
        assert_eq!(failure.after_swap_ms, Some(330));
        assert_eq!(
            describe_failure(failure),
            "+2.20 s HTTP 502 (330 ms after web2's swap)"
        );
    }

    #[test]
    fn a_host_that_never_swapped_makes_nothing_stale() {
        let watched = [Watched {
            url: "http://lb/".into(),
            hosts: vec!["web1".into(), "web2".into()],
        }];
        let samples = [sample(0, 2000, 200, 10, Served::Old)];
        let summary = summarize(
            &watched,
            &samples,
            &[swap("web1", 900, 1000)],
            &[],
            5.0,
            (0, 3000),
        );
        assert_eq!(summary.urls[0].stale, 0);
    }

    #[test]
    fn limits_name_what_went_over() {
        let watched = [Watched {
            url: "http://shop.test/".into(),
            hosts: vec!["web1".into()],
        }];
        let samples = [
            sample(0, 100, 200, 20, Served::New),
            sample(0, 1200, 0, 3, Served::Unknown),
        ];
        let errors = [(0, 1200, "connection refused".to_string())];
        let summary = summarize(
            &watched,
            &samples,
            &[swap("web1", 1000, 1100)],
            &errors,
            5.0,
            (0, 2000),
        );
        let url = &summary.urls[0];
        let limits = Limits {
            max_failures: 0,
            max_stale: 0,
            max_p99: Some(10),
        };
        assert_eq!(
            url.over(&limits).unwrap(),
            "watch http://shop.test/: 1 failed request (`watch_max_failures` is 0): +1.20 s connection refused (203 ms after web1's swap), p99 20 ms (`watch_max_p99` is 10 ms)"
        );
        let lenient = Limits {
            max_failures: 1,
            max_stale: 0,
            max_p99: None,
        };
        assert_eq!(url.over(&lenient), None);
        assert_eq!(
            url.line(),
            "watch http://shop.test/: 2 requests, 1 failed, 0 from the old release after the swap, p50 3 ms, p99 20 ms (before the deploy: p99 20 ms)"
        );
    }

    #[test]
    fn a_recording_reads_back_what_was_written() {
        let samples = vec![
            sample(0, 5, 200, 12, Served::New),
            sample(1, 9, 0, 2000, Served::Unknown),
            sample(0, 11, 503, 4, Served::Old),
        ];
        let recording = Recording::new(
            vec!["http://a/".into(), "http://b/".into()],
            vec![swap("web1", 7, 8)],
            &samples,
        );
        let text = serde_json::to_string(&recording).unwrap();
        let back: Recording = serde_json::from_str(&text).unwrap();
        assert_eq!(back.samples(), samples);
        assert_eq!(back.swaps, recording.swaps);
    }
}
