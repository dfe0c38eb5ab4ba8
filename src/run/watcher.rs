//! The watcher (`zdd run --watch URL`, the `watch` setting): while a deploy goes on, zdd itself
//! requests each watched URL at a steady rate and records what users would have got.
//!
//! One thread per URL, one request at a time on one keep-alive connection (a browser's way: a
//! watcher never adds more than `watch_rate` requests per second per URL to the app, however
//! slow it gets; a request that is late is not made up for). Each answer is a
//! [`Sample`]: when it was sent, its status (0: none), its latency and which release served it
//! (the `X-Release` header, else a known release name in the body, as the health gate reads
//! it). The runner tells the watcher when each host's swap was sent and done
//! ([`Watcher::swapped`]) and stops it after the cutover and a tail (`watch_tail`); what the
//! samples sum up to is `crate::output::watch`'s arithmetic.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rhai::Dynamic;

use crate::output::watch::{self, Limits, Recording, Sample, Served, Swap, WatchSummary, Watched};
use crate::primitives::host_context::Deployment;
use crate::system::http;
use crate::values::config;

/// How the watcher runs (`watch_rate`, `watch_timeout`).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Requests per second per URL.
    pub rate: u64,
    pub timeout: Duration,
}

/// What the URL threads share with the runner.
#[derive(Default)]
struct Seen {
    samples: Mutex<Vec<Sample>>,
    /// `(url, at_ms, error)` of each request that got no answer, in words.
    errors: Mutex<Vec<(usize, u64, String)>>,
    swaps: Mutex<Vec<Swap>>,
}

pub struct Watcher {
    watched: Vec<Watched>,
    pace: Pace,
    /// The start of the run: every time is counted from it.
    origin: Instant,
    started_ms: u64,
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
    threads: Vec<JoinHandle<()>>,
}

impl Watcher {
    /// Start watching. `old` are the releases the hosts serve now (an answer that names one
    /// of them, or any release but the new one, is from the old release); the new release's
    /// name is read from `deployment` once the run has made it.
    pub fn start(
        watched: Vec<Watched>,
        pace: Pace,
        origin: Instant,
        deployment: Arc<Deployment>,
        old: Vec<String>,
    ) -> Result<Watcher, String> {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let old = Arc::new(old);
        let mut agents = Vec::new();
        for url in &watched {
            let agent = http::agent(&url.url, pace.timeout)
                .map_err(|e| format!("watch {}: {}", url.url, e.cause))?;
            agents.push(agent);
        }
        // Before the first request can be sent: the window holds every sample.
        let started_ms = origin.elapsed().as_millis() as u64;
        let mut threads = Vec::new();
        for (index, (url, agent)) in watched.iter().zip(agents).enumerate() {
            let url = url.url.clone();
            let stop = stop.clone();
            let seen = seen.clone();
            let deployment = deployment.clone();
            let old = old.clone();
            threads.push(std::thread::spawn(move || {
                let names = Names {
                    deployment: &deployment,
                    old: &old,
                };
                watch_url(index, &url, &agent, pace, origin, &stop, &seen, &names);
            }));
        }
        Ok(Watcher {
            watched,
            pace,
            origin,
            started_ms,
            stop,
            seen,
            threads,
        })
    }

    /// Milliseconds from the start of the run.
    pub fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    /// `host`'s swap was sent at `sent_ms` and is done now.
    pub fn swapped(&self, host: &str, sent_ms: u64) -> Swap {
        let swap = Swap {
            host: host.to_string(),
            sent_ms,
            done_ms: self.now_ms(),
        };
        lock(&self.seen.swaps).push(swap.clone());
        swap
    }

    /// What the samples so far sum up to.
    pub fn summary(&self) -> WatchSummary {
        let samples = lock(&self.seen.samples).clone();
        let errors = lock(&self.seen.errors).clone();
        let swaps = lock(&self.seen.swaps).clone();
        watch::summarize(
            &self.watched,
            &samples,
            &swaps,
            &errors,
            self.pace.rate as f64,
            (self.started_ms, self.now_ms()),
        )
    }

    /// Stop every URL's thread (a request in flight ends within `watch_timeout`) and return
    /// the summary and the recording.
    pub fn finish(mut self) -> (WatchSummary, Recording) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let summary = self.summary();
        let mut samples = lock(&self.seen.samples).clone();
        samples.sort_by_key(|s| (s.at_ms, s.url));
        let recording = Recording::new(
            self.watched.iter().map(|w| w.url.clone()).collect(),
            lock(&self.seen.swaps).clone(),
            &samples,
        );
        (summary, recording)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The release names an answer is compared with.
struct Names<'a> {
    deployment: &'a Deployment,
    old: &'a [String],
}

impl Names<'_> {
    fn served(&self, header: Option<&str>, body: &str) -> Served {
        let new = lock(&self.deployment.release_name).clone();
        if let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) {
            // An app that names its release in a header names it in every answer.
            return match &new {
                Some(new) if header.contains(new.as_str()) => Served::New,
                _ => Served::Old,
            };
        }
        if new.as_deref().is_some_and(|new| body.contains(new)) {
            Served::New
        } else if self.old.iter().any(|old| body.contains(old.as_str())) {
            Served::Old
        } else {
            Served::Unknown
        }
    }
}

/// How much of a body is read to find a release's name in it.
const BODY_LIMIT: u64 = 64 * 1024;

/// Request `url` every 1/rate seconds until told to stop.
#[allow(clippy::too_many_arguments)]
fn watch_url(
    index: usize,
    url: &str,
    agent: &ureq::Agent,
    pace: Pace,
    origin: Instant,
    stop: &AtomicBool,
    seen: &Seen,
    names: &Names,
) {
    let interval = Duration::from_secs_f64(1.0 / pace.rate.max(1) as f64);
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        if next > now {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        // Late (a slow answer): the next request goes now, and the pace starts again from it.
        next = if now - next > interval {
            now + interval
        } else {
            next + interval
        };
        let sent = Instant::now();
        let at_ms = sent.duration_since(origin).as_millis() as u64;
        let (status, served, error) = match agent.get(url).call() {
            Ok(mut response) => {
                let header = response
                    .headers()
                    .get("x-release")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = response
                    .body_mut()
                    .with_config()
                    .limit(BODY_LIMIT)
                    .read_to_string();
                match body {
                    Ok(body) => (
                        response.status().as_u16(),
                        names.served(header.as_deref(), &body),
                        None,
                    ),
                    // A body longer than what is read is an answer: its status says how it went.
                    Err(ureq::Error::BodyExceedsLimit(_)) => (
                        response.status().as_u16(),
                        names.served(header.as_deref(), ""),
                        None,
                    ),
                    Err(e) => (
                        0,
                        Served::Unknown,
                        Some(http::explain(e, url, pace.timeout).cause),
                    ),
                }
            }
            Err(e) => (
                0,
                Served::Unknown,
                Some(http::explain(e, url, pace.timeout).cause),
            ),
        };
        let latency_ms = sent.elapsed().as_millis() as u64;
        if let Some(error) = error {
            lock(&seen.errors).push((index, at_ms, error));
        }
        lock(&seen.samples).push(Sample {
            url: index,
            at_ms,
            status,
            latency_ms,
            served,
        });
    }
}

/// The watcher's settings, read once for the run: the URLs (`watch`, and `--watch`), the pace,
/// the tail and the limits.
pub struct Plan {
    pub watched: Vec<Watched>,
    pub pace: Pace,
    /// How long to keep watching after the last host's cutover.
    pub tail: Duration,
    pub limits: Limits,
}

impl Plan {
    /// The URLs to watch: the run's own (`set("watch", [...])`, `-o watch=`, `--watch`) wait
    /// for every host's swap; a host's own (`host(..).set("watch", [...])`) for that host's.
    /// `None` when nothing is watched.
    pub fn read(
        global: &BTreeMap<String, Dynamic>,
        hosts: &[(String, Option<Dynamic>)],
    ) -> Result<Option<Plan>, String> {
        let urls = |value: &Dynamic| -> Result<Vec<String>, String> {
            config::list(value)
                .map_err(|e| format!("`watch`: {e}"))
                .map(|urls| urls.into_iter().filter(|u| !u.trim().is_empty()).collect())
        };
        let names: Vec<String> = hosts.iter().map(|(name, _)| name.clone()).collect();
        let mut watched: Vec<Watched> = Vec::new();
        let mut add =
            |url: String, for_hosts: &[String]| match watched.iter_mut().find(|w| w.url == url) {
                Some(known) => {
                    for host in for_hosts {
                        if !known.hosts.contains(host) {
                            known.hosts.push(host.clone());
                        }
                    }
                }
                None => watched.push(Watched {
                    url,
                    hosts: for_hosts.to_vec(),
                }),
            };
        if let Some(value) = global.get("watch") {
            for url in urls(value)? {
                add(url, &names);
            }
        }
        for (host, own) in hosts {
            if let Some(value) = own {
                for url in urls(value)? {
                    add(url, std::slice::from_ref(host));
                }
            }
        }
        if watched.is_empty() {
            return Ok(None);
        }
        for url in &watched {
            http::check_url(&url.url)
                .map_err(|why| format!("watch URL `{}` cannot be requested: {why}", url.url))?;
        }
        let count = |key: &str, default: u64| -> Result<u64, String> {
            global
                .get(key)
                .filter(|v| !v.is_unit())
                .map(|v| config::count(v).map_err(|e| format!("`{key}`: {e}")))
                .unwrap_or(Ok(default))
        };
        let seconds = |key: &str, default: f64| -> Result<Duration, String> {
            match global.get(key).filter(|v| !v.is_unit()) {
                None => Ok(Duration::from_secs_f64(default)),
                Some(v) => config::seconds(v).map_err(|e| format!("`{key}`: {e}")),
            }
        };
        let max_p99 = match global.get("watch_max_p99").filter(|v| !v.is_unit()) {
            None => None,
            Some(v) if v.to_string().trim().is_empty() => None,
            Some(v) => Some(config::count(v).map_err(|e| format!("`watch_max_p99`: {e}"))?),
        };
        Ok(Some(Plan {
            watched,
            pace: Pace {
                rate: count("watch_rate", DEFAULT_RATE)?.clamp(1, MAX_RATE),
                timeout: seconds("watch_timeout", 2.0)?,
            },
            tail: seconds("watch_tail", 2.0)?,
            limits: Limits {
                max_failures: count("watch_max_failures", 0)?,
                max_stale: count("watch_max_stale", 0)?,
                max_p99,
            },
        }))
    }
}

/// Requests per second per URL, unless `watch_rate` says otherwise.
pub const DEFAULT_RATE: u64 = 5;
/// The most `watch_rate` may ask for: a watcher must never load the app it watches.
pub const MAX_RATE: u64 = 100;

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// A keep-alive HTTP server on loopback that answers every request with `X-Release:` the
    /// name in `release` (none when empty); counts connections and requests.
    struct Server {
        url: String,
        connections: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
        release: Arc<Mutex<String>>,
    }

    fn serve() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Mutex::new(String::new()));
        let (c, r, name) = (connections.clone(), requests.clone(), release.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                c.fetch_add(1, Ordering::SeqCst);
                let (r, name) = (r.clone(), name.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut writer = stream;
                    loop {
                        let mut line = String::new();
                        // The request line and headers, to the blank line.
                        loop {
                            line.clear();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                        }
                        r.fetch_add(1, Ordering::SeqCst);
                        let name = lock(&name).clone();
                        let header = if name.is_empty() {
                            String::new()
                        } else {
                            format!("X-Release: {name}\r\n")
                        };
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\n{header}Content-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n"
                        );
                        if writer.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Server {
            url,
            connections,
            requests,
            release,
        }
    }

    #[test]
    fn the_watcher_keeps_its_pace_on_one_connection_and_tells_releases_apart() {
        let server = serve();
        *lock(&server.release) = "20260101T000000Z".to_string();
        let deployment = Arc::new(Deployment::new("recipe.rhai"));
        let watcher = Watcher::start(
            vec![Watched {
                url: server.url.clone(),
                hosts: vec!["web1".into()],
            }],
            Pace {
                rate: 20,
                timeout: Duration::from_secs(2),
            },
            Instant::now(),
            deployment.clone(),
            vec!["20260101T000000Z".into()],
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(500));
        // The deploy makes its release, and swaps.
        *lock(&deployment.release_name) = Some("20260102T000000Z".into());
        let before_swap = watcher.now_ms();
        *lock(&server.release) = "20260102T000000Z".to_string();
        let sent = watcher.now_ms();
        watcher.swapped("web1", sent);
        std::thread::sleep(Duration::from_millis(500));
        // The old release answers again after the swap: stale.
        *lock(&server.release) = "20260101T000000Z".to_string();
        std::thread::sleep(Duration::from_millis(300));
        let (summary, recording) = watcher.finish();
        let url = &summary.urls[0];
        let requests = server.requests.load(Ordering::SeqCst) as u64;
        assert_eq!(url.requests, requests);
        // 20 a second for 1.3 s: never more than the pace allows, and not far below it.
        assert!((20..=28).contains(&requests), "{requests} requests");
        assert_eq!(
            server.connections.load(Ordering::SeqCst),
            1,
            "one keep-alive connection"
        );
        assert_eq!(url.failed, 0);
        assert!((4..=8).contains(&url.stale), "{url:?}");
        assert_eq!(url.named, requests);
        let samples = recording.samples();
        assert_eq!(samples.len() as u64, requests);
        assert!(samples.iter().any(|s| s.served == Served::New));
        // Answered before the server changed (times are whole milliseconds, rounded down: a
        // request in flight at the change may be answered by the new release).
        assert!(samples
            .iter()
            .filter(|s| s.at_ms + s.latency_ms + 2 < before_swap)
            .all(|s| s.served == Served::Old));
        assert!(samples.iter().any(|s| s.served == Served::Old));
    }

    #[test]
    fn a_url_that_does_not_answer_is_counted_failed() {
        // A port nothing listens on: refused at once, every time.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let watcher = Watcher::start(
            vec![Watched {
                url: url.clone(),
                hosts: vec!["web1".into()],
            }],
            Pace {
                rate: 10,
                timeout: Duration::from_secs(1),
            },
            Instant::now(),
            Arc::new(Deployment::new("recipe.rhai")),
            Vec::new(),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(450));
        let (summary, _) = watcher.finish();
        let url = &summary.urls[0];
        assert!(url.requests >= 3, "{url:?}");
        assert_eq!(url.failed, url.requests);
        assert_eq!(url.first_failures[0].status, 0);
        assert_eq!(url.first_failures[0].error, "connection refused");
        assert!(url
            .over(&Limits {
                max_failures: 0,
                max_stale: 0,
                max_p99: None
            })
            .is_some());
    }

    #[test]
    fn the_run_watches_its_urls_and_each_host_its_own() {
        let mut global = BTreeMap::new();
        global.insert(
            "watch".to_string(),
            Dynamic::from(vec![Dynamic::from("http://lb/".to_string())]),
        );
        let hosts = vec![
            (
                "web1".to_string(),
                Some(Dynamic::from(vec![Dynamic::from(
                    "http://web1/".to_string(),
                )])),
            ),
            ("web2".to_string(), None),
        ];
        let plan = Plan::read(&global, &hosts).unwrap().unwrap();
        assert_eq!(
            plan.watched,
            vec![
                Watched {
                    url: "http://lb/".into(),
                    hosts: vec!["web1".into(), "web2".into()],
                },
                Watched {
                    url: "http://web1/".into(),
                    hosts: vec!["web1".into()],
                },
            ]
        );
        assert_eq!(plan.pace.rate, DEFAULT_RATE);
        assert_eq!(plan.limits.max_failures, 0);
        assert!(Plan::read(&BTreeMap::new(), &[]).unwrap().is_none());
    }
}
