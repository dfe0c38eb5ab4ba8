//! The watcher (`zdd run --watch URL`) and `zdd report`, attacked: servers that never answer,
//! drip their answer, send 12 MB, redirect in a loop or answer 500 from the start; URLs that
//! carry a password or are no URL at all; Ctrl-C in the middle; release names that are paths;
//! hand-edited release logs and damaged recordings. Every server is a std `TcpListener` in the
//! test, every deploy the stdlib's, on this machine.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{assert_same_tree, recipe, wait_at_most, Repo, Run, Sandbox};

// ---------------------------------------------------------------------------------------------
// A test HTTP server: one thread per connection, keep-alive, counts requests and connections.

/// What a handler is told of one request.
struct Request {
    head: String,
}

type Handler = Arc<dyn Fn(&Request, &mut TcpStream, &AtomicBool) -> bool + Send + Sync>;

struct Server {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Serve with `handler`: it writes the answer and says whether the connection stays open.
fn serve(
    handler: impl Fn(&Request, &mut TcpStream, &AtomicBool) -> bool + Send + Sync + 'static,
) -> Server {
    let handler: Handler = Arc::new(handler);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let connections = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (r, c, s) = (requests.clone(), connections.clone(), stop.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if s.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { return };
            c.fetch_add(1, Ordering::SeqCst);
            let (r, s, handler) = (r.clone(), s.clone(), handler.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    r.fetch_add(1, Ordering::SeqCst);
                    if !handler(&Request { head }, &mut writer, &s) {
                        return;
                    }
                }
            });
        }
    });
    Server {
        addr,
        requests,
        connections,
        stop,
    }
}

/// An answer with `status`, extra header lines and `body`, on a connection kept open.
fn answer(stream: &mut TcpStream, status: &str, headers: &str, body: &str) -> bool {
    let text = format!(
        "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).is_ok()
}

fn ok_server() -> Server {
    serve(|_, stream, _| answer(stream, "200 OK", "", "ok\n"))
}

/// Sleep until the server stops (or `most` passed).
fn idle(stop: &AtomicBool, most: Duration) {
    let until = Instant::now() + most;
    while !stop.load(Ordering::SeqCst) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------------------------
// The deploy.

const DEPLOY: &str = "app";

/// A repository, the stdlib deploy of it with `extra` lines, and a first deploy (not watched)
/// with `first` options: returns the release it made `current`.
fn setup(extra: &str, first: &[&str]) -> (Sandbox, Repo, String) {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "v1\n")], "v1");
    sandbox.write(
        "app.rhai",
        &recipe(&repo.str(), &sandbox.str(DEPLOY), extra),
    );
    let mut args = vec!["run", "app.rhai", "-q"];
    args.extend_from_slice(first);
    sandbox.run(&args).success();
    let current = sandbox.current(DEPLOY).expect("a first release");
    (sandbox, repo, current)
}

/// `zdd ARGS`, killed (and the test failed) after `limit`; returns what it said and how long it
/// took.
fn run_bounded(sandbox: &Sandbox, args: &[&str], limit: Duration) -> (Run, Duration) {
    let out = sandbox.path("zdd.out");
    let err = sandbox.path("zdd.err");
    let started = Instant::now();
    let mut child = sandbox
        .zdd(args)
        .stdout(Stdio::from(File::create(&out).unwrap()))
        .stderr(Stdio::from(File::create(&err).unwrap()))
        .spawn()
        .unwrap();
    let status = wait_at_most(&mut child, limit);
    let took = started.elapsed();
    let run = Run {
        code: status.code(),
        stdout: sandbox.normalize(&std::fs::read_to_string(&out).unwrap()),
        stderr: sandbox.normalize(&std::fs::read_to_string(&err).unwrap()),
    };
    (run, took)
}

/// `zdd run app.rhai ARGS` (at most a minute).
fn deploy(sandbox: &Sandbox, args: &[&str]) -> (Run, Duration) {
    let mut all = vec!["run", "app.rhai"];
    all.extend_from_slice(args);
    run_bounded(sandbox, &all, Duration::from_secs(60))
}

/// The last line of the release log with `event`.
fn last_line(sandbox: &Sandbox, event: &str) -> Value {
    sandbox
        .log(DEPLOY)
        .into_iter()
        .rev()
        .find(|e| e["event"] == event)
        .unwrap_or_else(|| panic!("no `{event}` line in {:#?}", sandbox.log(DEPLOY)))
}

fn recording(sandbox: &Sandbox, release: &str) -> Value {
    let path = sandbox.path(&format!("{DEPLOY}/.zdd/watch/{release}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn u64_of(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a count: {value}"))
}

/// The recording's `[url, at_ms, status, latency_ms, served]` arrays.
fn samples(recording: &Value) -> Vec<[u64; 5]> {
    recording["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let s: Vec<u64> = s.as_array().unwrap().iter().map(u64_of).collect();
            [s[0], s[1], s[2], s[3], s[4]]
        })
        .collect()
}

/// Every file under the deploy path but the repository cache.
fn snapshot(sandbox: &Sandbox) -> std::collections::BTreeMap<String, String> {
    sandbox.tree(DEPLOY, &["repo.git"])
}

// ---------------------------------------------------------------------------------------------
// Servers that do not answer as they should.

#[test]
fn a_server_that_accepts_and_stays_silent_fails_the_deploy_in_bounded_time() {
    let (sandbox, _repo, before) = setup("", &[]);
    let silent = serve(|_, _, stop| {
        idle(stop, Duration::from_secs(120));
        false
    });
    let url = silent.url();
    let (run, took) = deploy(
        &sandbox,
        &[
            "--watch",
            &url,
            "-o",
            "watch_timeout=1",
            "-o",
            "watch_tail=0.5",
        ],
    );
    run.expect(1);
    // One request in flight at most ends within the timeout; the tail is half a second.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert!(
        run.stderr.contains(&format!(
            "error: task `watch` failed on host `localhost`\nCaused by: watch {url}: "
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("(`watch_max_failures` is 0): +0.0")
            && run.stderr.contains(" s no answer within 1 s"),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.current(DEPLOY).unwrap(), before, "switched back");
    assert!(!sandbox.path("app/.zdd/lock").exists(), "lock released");
    let failed = last_line(&sandbox, "failed");
    let watched = &failed["watch"]["urls"][0];
    assert_eq!(watched["url"], url.as_str());
    assert!(u64_of(&watched["requests"]) >= 1, "{watched}");
    assert_eq!(watched["failed"], watched["requests"], "{watched}");
    // Each request gave up after its second.
    assert!(u64_of(&watched["max_ms"]) < 2_000, "{watched}");
    assert!(u64_of(&watched["max_ms"]) >= 900, "{watched}");
}

#[test]
fn answers_that_drip_byte_by_byte_are_cut_off_by_the_timeout() {
    let (sandbox, _repo, before) = setup("", &[]);
    // The headers at once, then a body of 100000 bytes, one byte every 100 ms.
    let body = serve(|_, stream, stop| {
        if stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
            .is_err()
        {
            return false;
        }
        while !stop.load(Ordering::SeqCst) {
            if stream.write_all(b"x").is_err() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    // The status line itself, one byte every 100 ms (slowloris the other way round).
    let head = serve(|_, stream, stop| {
        for byte in b"HTTP/1.1 200 OK\r\nX-Padding: "
            .iter()
            .chain([b'a'; 4096].iter())
        {
            if stop.load(Ordering::SeqCst) || stream.write_all(&[*byte]).is_err() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    });
    let (body_url, head_url) = (body.url(), head.url());
    let (run, took) = deploy(
        &sandbox,
        &[
            "--watch",
            &body_url,
            "--watch",
            &head_url,
            "-o",
            "watch_timeout=1",
            "-o",
            "watch_tail=0.5",
        ],
    );
    run.expect(1);
    assert!(took < Duration::from_secs(8), "took {took:?}");
    assert_eq!(sandbox.current(DEPLOY).unwrap(), before);
    let failed = last_line(&sandbox, "failed");
    for url in [&body_url, &head_url] {
        let watched = failed["watch"]["urls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["url"] == url.as_str())
            .unwrap_or_else(|| panic!("{url} not in {failed}"));
        assert!(u64_of(&watched["requests"]) >= 1, "{watched}");
        assert_eq!(watched["failed"], watched["requests"], "{watched}");
        assert!(u64_of(&watched["max_ms"]) < 2_000, "{watched}");
        assert_eq!(
            watched["first_failures"][0]["error"], "no answer within 1 s",
            "{watched}"
        );
    }
}

#[test]
fn a_twelve_megabyte_answer_is_an_answer_read_only_in_part() {
    let (sandbox, _repo, _) = setup("", &[]);
    const SIZE: usize = 12 * 1024 * 1024;
    let big = serve(|_, stream, _| {
        if stream
            .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes())
            .is_err()
        {
            return false;
        }
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..SIZE / chunk.len() {
            if stream.write_all(&chunk).is_err() {
                return false;
            }
        }
        true
    });
    let url = big.url();
    let (run, took) = deploy(&sandbox, &["--watch", &url, "-o", "watch_tail=1"]);
    run.success();
    assert!(took < Duration::from_secs(20), "took {took:?}");
    let release = sandbox.current(DEPLOY).unwrap();
    let finished = last_line(&sandbox, "finished");
    let watched = &finished["watch"]["urls"][0];
    assert!(u64_of(&watched["requests"]) >= 3, "{watched}");
    assert_eq!(watched["failed"], 0, "{watched}");
    for sample in samples(&recording(&sandbox, &release)) {
        assert_eq!(sample[2], 200, "{sample:?}");
    }
    assert!(
        run.stderr.contains(&format!("watch {url}: ")),
        "{}",
        run.stderr
    );
}

#[test]
fn redirects_are_answers_and_are_never_followed() {
    let (sandbox, _repo, _) = setup("", &[]);
    // A loop: every answer sends the client back to the same URL.
    let looping = serve(|request, stream, _| {
        let path = request
            .head
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        answer(
            stream,
            "301 Moved Permanently",
            &format!("Location: {path}\r\n"),
            "",
        )
    });
    let url = looping.url();
    let (run, _) = deploy(&sandbox, &["--watch", &url, "-o", "watch_tail=1"]);
    run.success();
    let release = sandbox.current(DEPLOY).unwrap();
    let finished = last_line(&sandbox, "finished");
    let watched = &finished["watch"]["urls"][0];
    // One request of the watcher is one request to the server: no redirect is followed.
    assert_eq!(
        u64_of(&watched["requests"]) as usize,
        looping.requests(),
        "{watched}"
    );
    assert_eq!(watched["failed"], 0, "{watched}");
    let recorded = samples(&recording(&sandbox, &release));
    assert!(!recorded.is_empty());
    assert!(recorded.iter().all(|s| s[2] == 301), "{recorded:?}");
}

#[test]
fn a_url_that_answers_500_from_the_start_fails_the_deploy_unless_the_limit_allows() {
    let (sandbox, _repo, before) = setup("", &[]);
    let broken = serve(|_, stream, _| answer(stream, "500 Internal Server Error", "", "boom\n"));
    let url = broken.url();
    let (run, _) = deploy(&sandbox, &["--watch", &url, "-o", "watch_tail=0.5"]);
    run.expect(1);
    assert!(
        run.stderr.contains(&format!(
            "error: task `watch` failed on host `localhost`\nCaused by: watch {url}: "
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("(`watch_max_failures` is 0): +0.0")
            && run.stderr.contains(" s HTTP 500"),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.current(DEPLOY).unwrap(), before);

    // With room for them, the same failures are reported, not held against the deploy.
    let (run, _) = deploy(
        &sandbox,
        &[
            "--watch",
            &url,
            "-o",
            "watch_tail=0.5",
            "-o",
            "watch_max_failures=1000",
        ],
    );
    run.success();
    let finished = last_line(&sandbox, "finished");
    let watched = &finished["watch"]["urls"][0];
    assert!(u64_of(&watched["failed"]) >= 1, "{watched}");
    assert_eq!(watched["failed"], watched["requests"], "{watched}");
    assert_ne!(sandbox.current(DEPLOY).unwrap(), before);
}

#[test]
fn the_watcher_never_goes_faster_than_its_rate_on_one_connection() {
    // The cutover waits 2 s: the watcher asks all that time.
    let (sandbox, _repo, _) = setup(
        "before(\"deploy:symlink\", || { run(\"sleep {{nap}}\"); });\n",
        &["-o", "nap=0"],
    );
    let server = ok_server();
    let url = server.url();
    let (run, _) = deploy(
        &sandbox,
        &[
            "--watch",
            &url,
            "-o",
            "nap=2",
            "-o",
            "watch_rate=5",
            "-o",
            "watch_tail=1",
        ],
    );
    run.success();
    let finished = last_line(&sandbox, "finished");
    let watch = &finished["watch"];
    let window = (u64_of(&watch["to_ms"]) - u64_of(&watch["from_ms"])) as f64 / 1000.0;
    assert!(window >= 3.0, "{watch}");
    let served = server.requests() as f64;
    assert_eq!(u64_of(&watch["urls"][0]["requests"]) as f64, served);
    assert!(
        served <= 5.0 * window + 1.0,
        "{served} requests in {window} s"
    );
    assert!(
        served >= 5.0 * window - 3.0,
        "{served} requests in {window} s"
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 1, "keep-alive");

    // At the most a recipe may ask for, the server still gets at most that.
    let server = ok_server();
    let url = server.url();
    let (run, _) = deploy(
        &sandbox,
        &[
            "--watch",
            &url,
            "-o",
            "nap=0",
            "-o",
            "watch_rate=100",
            "-o",
            "watch_tail=1",
        ],
    );
    run.success();
    let watch = &last_line(&sandbox, "finished")["watch"];
    let window = (u64_of(&watch["to_ms"]) - u64_of(&watch["from_ms"])) as f64 / 1000.0;
    let served = server.requests() as f64;
    assert!(
        served <= 100.0 * window + 1.0,
        "{served} requests in {window} s"
    );
    assert!(served >= 20.0 * window, "{served} requests in {window} s");
}

#[test]
fn a_slow_app_fails_the_deploy_over_watch_max_p99() {
    let (sandbox, _repo, before) = setup("", &[]);
    let slow = serve(|_, stream, _| {
        std::thread::sleep(Duration::from_millis(300));
        answer(stream, "200 OK", "", "ok\n")
    });
    let url = slow.url();
    let (run, _) = deploy(
        &sandbox,
        &[
            "--watch",
            &url,
            "-o",
            "watch_tail=0.5",
            "-o",
            "watch_max_p99=100",
        ],
    );
    run.expect(1);
    assert!(
        run.stderr.contains(" ms (`watch_max_p99` is 100 ms)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(&format!("Caused by: watch {url}: p99 ")),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.current(DEPLOY).unwrap(), before);
    let watched = &last_line(&sandbox, "failed")["watch"]["urls"][0];
    assert!(u64_of(&watched["p99_ms"]) >= 300, "{watched}");
    // Under a limit it keeps to, the same app passes.
    let (run, _) = deploy(
        &sandbox,
        &[
            "--watch",
            &url,
            "-o",
            "watch_tail=0.5",
            "-o",
            "watch_max_p99=5000",
        ],
    );
    run.success();
}

// ---------------------------------------------------------------------------------------------
// Which release answered.

/// A server that names in `X-Release` the release `current` points at when asked, or always
/// `fixed` when it is given.
fn release_server(sandbox: &Sandbox, fixed: Option<String>) -> Server {
    let current = sandbox.path("app/current");
    serve(move |_, stream, _| {
        let name = fixed.clone().unwrap_or_else(|| {
            std::fs::read_link(&current)
                .ok()
                .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_default()
        });
        answer(stream, "200 OK", &format!("X-Release: {name}\r\n"), "ok\n")
    })
}

#[test]
fn an_app_that_follows_current_is_never_stale() {
    let (sandbox, _repo, before) = setup("", &[]);
    let server = release_server(&sandbox, None);
    let url = server.url();
    let (run, _) = deploy(&sandbox, &["--watch", &url, "-o", "watch_tail=1"]);
    run.success();
    let release = sandbox.current(DEPLOY).unwrap();
    assert_ne!(release, before);
    let watched = &last_line(&sandbox, "finished")["watch"]["urls"][0];
    assert_eq!(watched["stale"], 0, "{watched}");
    assert_eq!(watched["named"], watched["requests"], "{watched}");
    let recording = recording(&sandbox, &release);
    let recorded = samples(&recording);
    // Old before the swap was sent, new once it was done (the deploy may be so quick that
    // no request went before it).
    let swap = &recording["swaps"][0];
    let (sent, done) = (
        swap["sent_ms"].as_u64().unwrap(),
        swap["done_ms"].as_u64().unwrap(),
    );
    assert!(
        recorded.iter().filter(|s| s[1] < sent).all(|s| s[4] == 1),
        "{recorded:?}"
    );
    assert!(
        recorded.iter().filter(|s| s[1] >= done).all(|s| s[4] == 2),
        "{recorded:?}"
    );
    assert!(recorded.iter().any(|s| s[4] == 2), "{recorded:?}");
    assert!(
        run.stderr.contains(&format!("watch {url}: ")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains(" 0 from the old release after the swap, "),
        "{}",
        run.stderr
    );
}

#[test]
fn an_app_still_serving_the_old_release_after_the_swap_fails_the_deploy() {
    let (sandbox, _repo, before) = setup("", &[]);
    let server = release_server(&sandbox, Some(before.clone()));
    let url = server.url();
    let (run, _) = deploy(&sandbox, &["--watch", &url, "-o", "watch_tail=1"]);
    run.expect(1);
    assert!(
        run.stderr.contains(&format!(
            "error: task `watch` failed on host `localhost`\nCaused by: watch {url}: "
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("from the old release after the swap (`watch_max_stale` is 0)"),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.current(DEPLOY).unwrap(), before);
    let watched = &last_line(&sandbox, "failed")["watch"]["urls"][0];
    assert!(u64_of(&watched["stale"]) >= 3, "{watched}");

    // Allowed as many as it got, the same app passes.
    let (run, _) = deploy(
        &sandbox,
        &[
            "--watch",
            &url,
            "-o",
            "watch_tail=1",
            "-o",
            "watch_max_stale=1000",
        ],
    );
    run.success();
}

// ---------------------------------------------------------------------------------------------
// Secrets.

#[test]
fn a_password_in_a_watched_url_is_never_written_anywhere() {
    const PASSWORD: &str = "s3cretpw";
    let (sandbox, _repo, _) = setup("", &[]);
    let status = Arc::new(AtomicU16::new(200));
    let answers = status.clone();
    let server = serve(move |request, stream, _| {
        let code = answers.load(Ordering::SeqCst);
        let words = if code == 200 { "OK" } else { "Bad Gateway" };
        answer(
            stream,
            &format!("{code} {words}"),
            "",
            // An app that echoes the request line: the URL's path and query come back.
            request.head.lines().next().unwrap_or(""),
        )
    });
    let url = format!("http://watcher:{PASSWORD}@{}/?token=x", server.addr);
    let mut everything = String::new();

    // A good deploy with --json, then one the watcher fails.
    let (run, _) = deploy(
        &sandbox,
        &["--watch", &url, "-o", "watch_tail=0.5", "--json"],
    );
    run.success();
    let good = sandbox.current(DEPLOY).unwrap();
    everything.push_str(&run.stdout);
    everything.push_str(&run.stderr);
    assert!(run.stdout.contains("watcher:[secret]@"), "{}", run.stdout);
    status.store(502, Ordering::SeqCst);
    let (run, _) = deploy(&sandbox, &["--watch", &url, "-o", "watch_tail=0.5"]);
    run.expect(1);
    assert!(
        run.stderr.contains(&format!(
            "watch http://watcher:[secret]@{}/?token=x: ",
            server.addr
        )),
        "{}",
        run.stderr
    );
    everything.push_str(&run.stdout);
    everything.push_str(&run.stderr);
    let bad = last_line(&sandbox, "failed")["release"]
        .as_str()
        .unwrap()
        .to_string();

    // A URL refused before anything runs says it with the password hidden too.
    let (run, _) = deploy(
        &sandbox,
        &["--watch", &format!("ftp://watcher:{PASSWORD}@host/")],
    );
    run.expect(2);
    everything.push_str(&run.stderr);

    // The report of each, as a page and as JSON.
    for release in [&good, &bad] {
        let page = sandbox.str(&format!("{release}.html"));
        let (run, _) = run_bounded(
            &sandbox,
            &["report", "app.rhai", release, "--output", &page],
            Duration::from_secs(30),
        );
        run.success();
        everything.push_str(&run.stdout);
        everything.push_str(&run.stderr);
        let html = std::fs::read_to_string(&page).unwrap();
        assert!(
            html.contains("watcher:[secret]@"),
            "{release}: the URL is drawn"
        );
        everything.push_str(&html);
        let (run, _) = run_bounded(
            &sandbox,
            &["report", "app.rhai", release, "--json"],
            Duration::from_secs(30),
        );
        run.success();
        everything.push_str(&run.stdout);
        everything.push_str(&run.stderr);
    }

    // What is kept on the host.
    everything.push_str(&sandbox.read("app/.zdd/releases.jsonl"));
    for entry in std::fs::read_dir(sandbox.path("app/.zdd/watch")).unwrap() {
        everything.push_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
    }
    assert!(
        sandbox.path(&format!("app/.zdd/watch/{bad}.json")).exists(),
        "the failed release's recording is kept"
    );
    assert!(
        !everything.contains(PASSWORD),
        "the password leaked:\n{everything}"
    );
}

// ---------------------------------------------------------------------------------------------
// URLs that are not URLs, and settings out of range: refused before anything changes.

/// `zdd run app.rhai ARGS` must exit 2 saying `error`, and change nothing.
#[track_caller]
fn assert_refused(sandbox: &Sandbox, args: &[&str], error: &str) {
    let before = snapshot(sandbox);
    let (run, _) = deploy(sandbox, args);
    run.expect(2);
    assert!(
        run.stderr.starts_with(&format!("error: {error}")),
        "{args:?}: expected `{error}`, got:\n{}",
        run.stderr
    );
    assert_same_tree(&before, &snapshot(sandbox), &format!("{args:?}"));
}

#[test]
fn watched_urls_that_are_not_http_are_refused_before_anything_changes() {
    let (sandbox, _repo, _) = setup("", &[]);
    for url in [
        "ftp://127.0.0.1/",
        "javascript:alert(1)",
        "/health",
        "http://127.0.0.1/a b",
        "http://127.0.0.1/\nwatch http://127.0.0.1/: 0 failed",
        "http://127.0.0.1/\r",
        "http://127.0.0.1/\t",
    ] {
        assert_refused(&sandbox, &["--watch", url], "`watch` entry `");
    }
    // The same from the recipe, for the run and for one host.
    for line in [
        "set(\"watch\", [\"http://127.0.0.1/ x\"]);\n",
        "host(\"localhost\").set(\"watch\", [\"gopher://127.0.0.1/\"]);\n",
    ] {
        let text = sandbox.read("app.rhai");
        sandbox.write("app.rhai", &format!("{text}{line}"));
        assert_refused(&sandbox, &[], "`watch` entry `");
        sandbox.write("app.rhai", &text);
    }
}

#[test]
fn watched_urls_that_cannot_be_requested_are_refused_before_anything_changes() {
    let (sandbox, _repo, _) = setup("", &[]);
    for url in [
        "http://",
        "https://",
        "http://[::1",
        "http://127.0.0.1:99999/",
        "http:///path",
    ] {
        assert_refused(&sandbox, &["--watch", url], "`watch` entry `");
    }
}

#[test]
fn watch_settings_out_of_range_are_refused_before_anything_changes() {
    let (sandbox, _repo, _) = setup("", &[]);
    let url = "http://127.0.0.1:9/";
    for (option, error) in [
        ("watch_tail=-1", "`watch_tail` is `-1`"),
        ("watch_tail=100000000000", "`watch_tail` is `100000000000`"),
        ("watch_tail=inf", "`watch_tail` is `inf`"),
        ("watch_tail=NaN", "`watch_tail` is `NaN`"),
        ("watch_timeout=-1", "`watch_timeout` is `-1`"),
        ("watch_timeout=1e400", "`watch_timeout` is `1e400`"),
        ("watch_rate=1000000", "`watch_rate` is `1000000`"),
        ("watch_rate=-5", "`watch_rate` is `-5`"),
        ("watch_rate=2.5", "`watch_rate` is `2.5`"),
        ("watch_max_p99=0", "`watch_max_p99` is `0`"),
        ("watch_max_stale=-1", "`watch_max_stale` is `-1`"),
    ] {
        assert_refused(&sandbox, &["--watch", url, "-o", option], error);
    }
}

// ---------------------------------------------------------------------------------------------
// Interrupted, and failed for another reason.

fn wait_for_file(path: &std::path::Path, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !path.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("zdd ended ({status}) before {} appeared", path.display());
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn interrupt(child: &Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
}

#[test]
fn ctrl_c_in_a_watched_deploy_switches_back_and_releases_the_lock_at_once() {
    let (sandbox, _repo, before) = setup(
        "before(\"deploy:symlink\", || { run(\"touch {{deploy_path}}/../napping; exec sleep {{nap}}\"); });\n",
        &["-o", "nap=0"],
    );
    std::fs::remove_file(sandbox.path("napping")).unwrap();
    let server = ok_server();
    let url = server.url();
    let mut zdd = sandbox
        .zdd(&[
            "run",
            "app.rhai",
            "--watch",
            &url,
            "-o",
            "nap=30",
            "-o",
            "watch_tail=30",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_file(&sandbox.path("napping"), &mut zdd);
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    interrupt(&zdd);
    let status = wait_at_most(&mut zdd, Duration::from_secs(20));
    let took = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut zdd.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(5), "took {took:?}\n{stderr}");
    assert!(stderr.contains("Caused by: interrupted"), "{stderr}");
    assert_eq!(sandbox.current(DEPLOY).unwrap(), before);
    assert!(!sandbox.path("app/.zdd/lock").exists(), "lock released");
    assert!(server.requests() >= 1);
    let failed = last_line(&sandbox, "failed");
    assert!(
        u64_of(&failed["watch"]["urls"][0]["requests"]) >= 1,
        "the failed line says what the watcher saw: {failed}"
    );
}

#[test]
fn ctrl_c_in_the_watch_tail_is_not_a_success() {
    let (sandbox, _repo, before) = setup("", &[]);
    let server = ok_server();
    let url = server.url();
    let mut zdd = sandbox
        .zdd(&["run", "app.rhai", "--watch", &url, "-o", "watch_tail=30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // In the tail: the swap is done, the watcher goes on.
    let deadline = Instant::now() + Duration::from_secs(20);
    while sandbox.current(DEPLOY).unwrap() == before {
        assert!(Instant::now() < deadline, "never swapped");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let started = Instant::now();
    interrupt(&zdd);
    let status = wait_at_most(&mut zdd, Duration::from_secs(40));
    let took = started.elapsed();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut zdd.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(took < Duration::from_secs(5), "took {took:?}\n{stderr}");
    assert!(!sandbox.path("app/.zdd/lock").exists(), "lock released");
    // The user stopped the run before the watcher had its say: not a success.
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert_eq!(sandbox.current(DEPLOY).unwrap(), before, "{stderr}");
}

#[test]
fn a_failed_health_gate_keeps_what_the_watcher_saw() {
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (sandbox, _repo, before) = setup(
        &format!(
            "task(\"health\", || {{ if get(\"gate\") == \"on\" {{ health_gate(\"http://{closed}/\", #{{checks: 2, interval: 0.05}}); }} }});\nafter(\"deploy:symlink\", \"health\");\n"
        ),
        &["-o", "gate=off"],
    );
    let server = ok_server();
    let url = server.url();
    let (run, _) = deploy(
        &sandbox,
        &["--watch", &url, "-o", "gate=on", "-o", "watch_tail=0.5"],
    );
    run.expect(1);
    assert!(
        run.stderr
            .contains("error: task `health` failed on host `localhost`"),
        "{}",
        run.stderr
    );
    assert_eq!(sandbox.current(DEPLOY).unwrap(), before);
    let failed = last_line(&sandbox, "failed");
    let release = failed["release"].as_str().unwrap();
    let watched = &failed["watch"]["urls"][0];
    assert_eq!(watched["url"], url.as_str());
    assert!(u64_of(&watched["requests"]) >= 1, "{failed}");
    assert_eq!(watched["failed"], 0, "{failed}");
    assert!(!failed["tasks"].as_array().unwrap().is_empty(), "{failed}");
    // The release was swapped before the gate failed: its evidence is kept, and drawn.
    assert!(!samples(&recording(&sandbox, release)).is_empty());
    let page = sandbox.str("failed.html");
    run_bounded(
        &sandbox,
        &["report", "app.rhai", release, "--output", &page],
        Duration::from_secs(30),
    )
    .0
    .success();
    assert!(std::fs::read_to_string(&page)
        .unwrap()
        .contains("class=\"strip\""));
    // The summary line is printed for a failed run too.
    assert!(
        run.stderr.contains(&format!("watch {url}: ")),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// Cleanup.

#[test]
fn cleanup_removes_a_release_s_recording_with_it() {
    let (sandbox, _repo, first) = setup("set(\"keep_releases\", 1);\n", &[]);
    let server = ok_server();
    let url = server.url();
    let broken = serve(|_, stream, _| answer(stream, "503 Service Unavailable", "", ""));
    let broken_url = broken.url();
    let mut made = Vec::new();
    for round in 0..3 {
        // The second deploy fails after its swap: its recording is kept for now.
        let watched = if round == 1 { &broken_url } else { &url };
        let (run, _) = deploy(
            &sandbox,
            &["-q", "--watch", watched, "-o", "watch_tail=0.2"],
        );
        if round == 1 {
            run.expect(1);
            made.push(
                last_line(&sandbox, "failed")["release"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        } else {
            run.success();
            made.push(sandbox.current(DEPLOY).unwrap());
        }
        // Releases of a second share a name: the next deploy waits for the next second.
        std::thread::sleep(Duration::from_millis(1100));
    }
    let current = sandbox.current(DEPLOY).unwrap();
    assert_eq!(current, made[2]);
    // Cleanup ran in the last deploy: the first release and the failed one are gone (one good
    // release is kept besides the new one).
    let on_disk = sandbox.releases(DEPLOY);
    assert_eq!(
        on_disk,
        vec![made[0].clone(), made[2].clone()],
        "first {first}"
    );
    let mut kept: Vec<String> = std::fs::read_dir(sandbox.path("app/.zdd/watch"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    // Every release left has its recording, and no removed one.
    assert_eq!(
        kept,
        on_disk
            .iter()
            .map(|r| format!("{r}.json"))
            .collect::<Vec<_>>(),
        "made {made:?}"
    );
    // One more deploy: the recording of the release it removes goes too.
    let (run, _) = deploy(&sandbox, &["-q", "--watch", &url, "-o", "watch_tail=0.2"]);
    run.success();
    assert!(!sandbox
        .path(&format!("app/.zdd/watch/{}.json", made[0]))
        .exists());
    assert!(!sandbox.path(&format!("app/releases/{}", made[0])).exists());
}

// ---------------------------------------------------------------------------------------------
// `zdd report`: names that are paths, logs edited by hand, recordings damaged.

/// A watched deploy to report on; returns its release.
fn watched_deploy(sandbox: &Sandbox) -> String {
    let server = ok_server();
    let url = server.url();
    deploy(sandbox, &["-q", "--watch", &url, "-o", "watch_tail=0.5"])
        .0
        .success();
    sandbox.current(DEPLOY).unwrap()
}

#[test]
fn zdd_report_refuses_release_names_that_are_paths_or_options() {
    let (sandbox, _repo, _) = setup("", &[]);
    let release = watched_deploy(&sandbox);
    // Something a path could reach, were a name taken as one.
    sandbox.write("app/.zdd/watch/outside.json", "{}");
    let skip = ["app/repo.git", "zdd.out", "zdd.err"];
    let before = sandbox.tree("", &skip);
    for name in [
        "../../etc/passwd",
        "../watch/outside",
        "..",
        ".",
        "",
        ".hidden",
        "a/b",
        "-x",
        "--help",
        "/etc/passwd",
    ] {
        let (run, _) = run_bounded(
            &sandbox,
            &["report", "app.rhai", "--", name],
            Duration::from_secs(30),
        );
        run.expect(2);
        assert_eq!(
            run.stderr,
            format!(
                "error: `{name}` is not the name of a release\n\nhint: `zdd releases app.rhai` lists the releases\n"
            ),
            "{name:?}"
        );
        assert_same_tree(&before, &sandbox.tree("", &skip), name);
    }
    // A name that is a release's shape but not one of them.
    let (run, _) = run_bounded(
        &sandbox,
        &["report", "app.rhai", "20000101T000000Z"],
        Duration::from_secs(30),
    );
    run.expect(1);
    assert!(
        run.stderr
            .starts_with("error: no host has a record of a deploy of release `20000101T000000Z`"),
        "{}",
        run.stderr
    );
    // And the real one.
    run_bounded(
        &sandbox,
        &["report", "app.rhai", &release, "--output", "r.html"],
        Duration::from_secs(30),
    )
    .0
    .success();
}

/// `zdd report app.rhai ARGS --output r.html`: succeeds within 30 s; returns the page.
fn report_page(sandbox: &Sandbox, args: &[&str]) -> String {
    let page = sandbox.path("r.html");
    let _ = std::fs::remove_file(&page);
    let mut all = vec!["report", "app.rhai"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--output", "r.html"]);
    let (run, took) = run_bounded(sandbox, &all, Duration::from_secs(30));
    run.success();
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(run.stdout, "r.html\n");
    std::fs::read_to_string(&page).unwrap()
}

#[test]
fn the_report_page_escapes_what_a_hand_edited_log_says() {
    let (sandbox, _repo, _) = setup("", &[]);
    let release = watched_deploy(&sandbox);
    let log = sandbox.path("app/.zdd/releases.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let last = lines.len() - 1;
    let mut line: Value = serde_json::from_str(&lines[last]).unwrap();
    assert_eq!(line["event"], "finished");
    let evil = |n: u32| format!("<script>alert({n})</script><img src=x onerror=alert({n})>\"'&");
    line["tasks"][0]["task"] = evil(1).into();
    line["tasks"][1]["outcome"] = evil(2).into();
    line["event"] = "failed".into();
    line["message"] = evil(3).into();
    line["commit"] = evil(4).into();
    line["started"] = evil(5).into();
    line["swap"]["host"] = evil(6).into();
    line["watch"]["urls"][0]["url"] = "http://x/\"><script>alert(7)</script>".into();
    line["watch"]["urls"][0]["first_failures"] = serde_json::json!([
        {"at_ms": 1, "status": 0, "error": evil(8), "after_swap_of": evil(9), "after_swap_ms": 1}
    ]);
    lines[last] = line.to_string();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let html = report_page(&sandbox, &[&release]);
    for raw in ["<script", "<img", "<b>"] {
        assert!(!html.contains(raw), "`{raw}` is in the page:\n{html}");
    }
    // Each was drawn, escaped.
    for n in [1, 3, 6, 7] {
        assert!(
            html.contains(&format!("&lt;script&gt;alert({n})&lt;/script&gt;")),
            "alert({n}) is not in the page"
        );
    }
}

#[test]
fn a_damaged_recording_leaves_the_report_without_samples_and_never_panics() {
    let (sandbox, _repo, _) = setup("", &[]);
    let release = watched_deploy(&sandbox);
    let path = sandbox.path(&format!("app/.zdd/watch/{release}.json"));
    let good = std::fs::read_to_string(&path).unwrap();
    assert!(report_page(&sandbox, &[]).contains("data-requests="));
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good.as_bytes()[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("not UTF-8", vec![0xff, 0xfe, 0x00, 0x80, b'{']),
        (
            "another shape",
            b"{\"version\": \"x\", \"samples\": 7}".to_vec(),
        ),
        ("a list", b"[1, 2, 3]".to_vec()),
    ];
    for (what, bytes) in damaged {
        std::fs::write(&path, &bytes).unwrap();
        let html = report_page(&sandbox, &[&release]);
        assert!(!html.contains("data-requests="), "{what}: no samples drawn");
        // The release log's summary is still there.
        assert!(html.contains("What users got"), "{what}");
        let (run, _) = run_bounded(
            &sandbox,
            &["report", "app.rhai", "--json"],
            Duration::from_secs(30),
        );
        run.success();
        let report: Value = serde_json::from_str(&run.stdout).unwrap();
        assert!(report.get("samples").is_none(), "{what}: {report}");
    }
    // A directory where the file was.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let (run, _) = run_bounded(
        &sandbox,
        &["report", "app.rhai", "--output", "r.html"],
        Duration::from_secs(30),
    );
    assert!(matches!(run.code, Some(0) | Some(1)), "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    std::fs::remove_dir(&path).unwrap();
}

#[test]
fn a_recording_with_hostile_numbers_is_drawn_in_bounded_time() {
    let (sandbox, _repo, _) = setup("", &[]);
    let release = watched_deploy(&sandbox);
    let path = sandbox.path(&format!("app/.zdd/watch/{release}.json"));
    let max = u64::MAX;
    for (what, samples) in [
        (
            "a URL index out of range",
            "[[99, 10, 200, 5, 2]]".to_string(),
        ),
        (
            "the end of time",
            format!("[[0, {max}, 200, {max}, 2], [0, 0, 200, 5, 1]]"),
        ),
        ("a status past u16", format!("[[0, 10, {max}, 5, 9]]")),
        ("a million samples in one bin", {
            let one = "[0,5,503,7,1],";
            let mut many = String::from("[");
            many.push_str(&one.repeat(200_000));
            many.push_str("[0,5,503,7,1]]");
            many
        }),
    ] {
        std::fs::write(
            &path,
            format!("{{\"version\":1,\"urls\":[\"http://a/\"],\"swaps\":[{{\"host\":\"localhost\",\"sent_ms\":{max},\"done_ms\":0}}],\"samples\":{samples}}}"),
        )
        .unwrap();
        let html = report_page(&sandbox, &[&release]);
        assert!(html.contains("What users got"), "{what}");
        let (run, _) = run_bounded(
            &sandbox,
            &["report", "app.rhai", "--json"],
            Duration::from_secs(30),
        );
        run.success();
    }
}

#[test]
fn a_release_name_from_a_hand_edited_log_reaches_no_file_outside_the_deploy() {
    let (sandbox, _repo, _) = setup("", &[]);
    let release = watched_deploy(&sandbox);
    // A recording outside `.zdd/watch`, that the log's release name points at.
    let outside =
        std::fs::read_to_string(sandbox.path(&format!("app/.zdd/watch/{release}.json"))).unwrap();
    sandbox.write("planted.json", &outside);
    let log = sandbox.path("app/.zdd/releases.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    let mut line: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    line["release"] = "../../../planted".into();
    line["time"] = "2999-01-01T00:00:00Z".into();
    std::fs::write(&log, format!("{text}{line}\n")).unwrap();
    // The newest deploy the log names is that one.
    let (run, _) = run_bounded(
        &sandbox,
        &["report", "app.rhai", "--json"],
        Duration::from_secs(30),
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    if run.code == Some(0) {
        let report: Value = serde_json::from_str(&run.stdout).unwrap();
        // The name is skipped: the report is of the deploy before it.
        assert_eq!(report["release"], release.as_str(), "{report}");
    }
    // The page is written in the directory the user is in, never through the name: here the
    // name would lead from `a/b` to `a`.
    std::fs::create_dir_all(sandbox.path("a/b/zdd-report-..")).unwrap();
    let recipe_path = sandbox.str("app.rhai");
    let output = sandbox
        .zdd(&["report", &recipe_path])
        .current_dir(sandbox.path("a/b"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !sandbox.path("a/planted.html").exists(),
        "the page was written outside the directory zdd was run in"
    );
}
