//! Notifications: a Slack-compatible webhook and a generic JSON webhook, received by a local
//! HTTP server that records every request, on success, failure and rollback; and webhooks that
//! fail (an error status, a closed port, a connection closed without an answer, no answer, a
//! URL that is not http:// or https://) never fail the deploy and are reported. The same server
//! speaks https for `tls.rs`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{recipe, replace_release_names, scrub, Repo, Sandbox};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Request {
    /// The body as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// How the server answers.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    /// This status, with the body `boom` unless 2xx.
    Status(u16),
    /// Read the request, then close the connection without a word.
    Close,
    /// Read the request and never answer (until the client gives up).
    Silent,
}

/// A local HTTP server on 127.0.0.1 in a thread: it records each request and answers as told.
/// Stopped when dropped.
pub struct Server {
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    /// `http` or `https`.
    scheme: &'static str,
}

impl Server {
    pub fn start(answer: Answer) -> Server {
        Server::listen(answer, None)
    }

    /// The same server speaking https with `tls` (a client that refuses the certificate
    /// leaves no request).
    pub fn start_tls(answer: Answer, tls: Arc<rustls::ServerConfig>) -> Server {
        Server::listen(answer, Some(tls))
    }

    fn listen(answer: Answer, tls: Option<Arc<rustls::ServerConfig>>) -> Server {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (recorded, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let recorded = recorded.clone();
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve(stream, answer, &recorded),
                    Some(config) => {
                        let connection = rustls::ServerConnection::new(config).unwrap();
                        serve(
                            rustls::StreamOwned::new(connection, stream),
                            answer,
                            &recorded,
                        )
                    }
                });
            }
        });
        Server {
            port,
            requests,
            stop,
            scheme,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://127.0.0.1:{}{path}", self.scheme, self.port)
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests to `path`, emptied.
    pub fn take(&self, path: &str) -> Vec<Request> {
        let mut all = self.requests.lock().unwrap();
        let (taken, kept) = all.drain(..).partition(|r| r.path == path);
        *all = kept;
        taken
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: impl Read + Write, answer: Answer, recorded: &Mutex<Vec<Request>>) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.trim_end().split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let mut body = Vec::new();
    if let Some(length) = headers.get("content-length") {
        body.resize(length.parse().unwrap(), 0);
        reader.read_exact(&mut body).unwrap();
    } else if headers.get("transfer-encoding").map(String::as_str) == Some("chunked") {
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    recorded.lock().unwrap().push(Request {
        method,
        path,
        headers,
        body: String::from_utf8(body).unwrap(),
    });
    let stream = reader.get_mut();
    match answer {
        Answer::Status(status) => {
            let body = if (200..300).contains(&status) {
                ""
            } else {
                "boom"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.flush();
        }
        Answer::Close => {}
        Answer::Silent => std::thread::sleep(Duration::from_secs(10)),
    }
}

/// A port nothing listens on.
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The generic payload with what changes from run to run replaced: `duration_ms` is 0 and
/// release names are `[RELEASE]`.
pub fn normalized(request: &Request) -> Value {
    let mut value = request.json();
    value["duration_ms"] = json!(0);
    serde_json::from_str(&replace_release_names(&value.to_string())).unwrap()
}

/// The Slack text with release names and durations replaced.
pub fn slack_text(request: &Request) -> String {
    let value = request.json();
    assert_eq!(
        value.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["text"],
        "a Slack message is `{{\"text\": ...}}`"
    );
    scrub(value["text"].as_str().unwrap())
}

/// A sandbox with a repository (one commit, `first`) and a recipe that notifies `server`.
pub fn setup(server: &Server, extra: &str) -> (Sandbox, Repo, String) {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("shop");
    let first = repo.commit(&[("index.html", "v1\n")], "first");
    let settings = format!(
        "set(\"slack_webhook\", \"{}\");\nset(\"webhook_url\", \"{}\");\n{extra}",
        server.url("/slack"),
        server.url("/hook")
    );
    sandbox.write(
        "app.rhai",
        &recipe(&repo.str(), &sandbox.str("app"), &settings),
    );
    (sandbox, repo, first)
}

#[test]
fn webhooks_tell_success_failure_and_rollback() {
    let server = Server::start(Answer::Status(200));
    let (sandbox, repo, first) = setup(&server, "");

    // The first deploy: no previous release, the whole history.
    let run = sandbox.run(&["run", "app.rhai"]);
    run.success();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
    let first_release = sandbox.current("app").unwrap();
    let hooks = server.take("/hook");
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0].method, "POST");
    assert_eq!(hooks[0].headers["content-type"], "application/json");
    assert_eq!(hooks[0].headers["user-agent"], "zdd/0.1.0");
    assert_eq!(
        hooks[0].body.split('"').nth(1),
        Some("event"),
        "fields keep their order"
    );
    assert_eq!(
        normalized(&hooks[0]),
        json!({
            "event": "deploy_succeeded",
            "app": "shop",
            "task": "deploy",
            "hosts": ["localhost"],
            "ref": "HEAD",
            "commit": first,
            "previous_commit": null,
            "commits": [format!("{} first", &first[..7])],
            "commits_truncated": false,
            "duration_ms": 0,
            "user": "tester",
            "release": "[RELEASE]",
            "previous_release": null,
        })
    );
    let slack = server.take("/slack");
    assert_eq!(slack.len(), 1);
    assert_eq!(slack[0].method, "POST");
    assert_eq!(slack[0].headers["content-type"], "application/json");
    assert_eq!(
        slack_text(&slack[0]),
        format!(
            "shop: tester deployed `HEAD` ({}) to localhost as release [RELEASE] in [DURATION]\nCommits:\n• {} first",
            &first[..12],
            &first[..7]
        )
    );

    // Two more commits: the range from the previous release's commit.
    let second = repo.commit(&[("index.html", "v2\n")], "second & <more>");
    let third = repo.commit(&[("index.html", "v3\n")], "third");
    sandbox
        .run(&["run", "app.rhai", "-o", "branch=main"])
        .success();
    let second_release = sandbox.current("app").unwrap();
    let hook = &server.take("/hook")[0];
    assert_eq!(hook.json()["release"], second_release.as_str());
    assert_eq!(hook.json()["previous_release"], first_release.as_str());
    assert_eq!(
        normalized(hook),
        json!({
            "event": "deploy_succeeded",
            "app": "shop",
            "task": "deploy",
            "hosts": ["localhost"],
            "ref": "main",
            "commit": third,
            "previous_commit": first,
            "commits": [
                format!("{} third", &third[..7]),
                format!("{} second & <more>", &second[..7]),
            ],
            "commits_truncated": false,
            "duration_ms": 0,
            "user": "tester",
            "release": "[RELEASE]",
            "previous_release": "[RELEASE]",
        })
    );
    assert_eq!(
        slack_text(&server.take("/slack")[0]),
        format!(
            "shop: tester deployed `main` ({}) to localhost as release [RELEASE] in [DURATION]\n\
             Commits:\n• {} third\n• {} second &amp; &lt;more&gt;",
            &third[..12],
            &third[..7],
            &second[..7]
        )
    );

    // A failed deploy: the release it tried, no commit, the error.
    let run = sandbox.run(&["run", "app.rhai", "-o", "branch=nope"]);
    run.expect(1);
    let hook = &server.take("/hook")[0];
    assert_eq!(
        normalized(hook),
        json!({
            "event": "deploy_failed",
            "app": "shop",
            "task": "deploy",
            "hosts": ["localhost"],
            "ref": "nope",
            "commit": null,
            "previous_commit": third,
            "commits": [],
            "commits_truncated": false,
            "duration_ms": 0,
            "user": "tester",
            "release": "[RELEASE]",
            "previous_release": "[RELEASE]",
            "error": "task `deploy:update_code` failed on host `localhost`: unknown ref `nope`: no branch, tag or commit of that name in the repository",
        })
    );
    assert_eq!(
        slack_text(&server.take("/slack")[0]),
        "shop: `deploy` by tester failed on localhost after [DURATION]\n```\n\
         task `deploy:update_code` failed on host `localhost`: unknown ref `nope`: no branch, tag or commit of that name in the repository\n```"
    );

    // A rollback: back to the first release; the commits it takes out.
    sandbox.run(&["rollback", "app.rhai"]).success();
    assert_eq!(sandbox.current("app").unwrap(), first_release);
    let hook = &server.take("/hook")[0];
    assert_eq!(hook.json()["release"], first_release.as_str());
    assert_eq!(hook.json()["previous_release"], second_release.as_str());
    assert_eq!(
        normalized(hook),
        json!({
            "event": "rolled_back",
            "app": "shop",
            "task": "rollback",
            "hosts": ["localhost"],
            "ref": "HEAD",
            "commit": first,
            "previous_commit": third,
            "commits": [
                format!("{} third", &third[..7]),
                format!("{} second & <more>", &second[..7]),
            ],
            "commits_truncated": false,
            "duration_ms": 0,
            "user": "tester",
            "release": "[RELEASE]",
            "previous_release": "[RELEASE]",
        })
    );
    assert_eq!(
        slack_text(&server.take("/slack")[0]),
        format!(
            "shop: tester rolled back localhost to release [RELEASE] ({}), was [RELEASE] in [DURATION]\n\
             Commits taken out:\n• {} third\n• {} second &amp; &lt;more&gt;",
            &first[..12],
            &third[..7],
            &second[..7]
        )
    );

    // A rollback that fails (nothing older than the first release).
    sandbox.run(&["rollback", "app.rhai"]).expect(1);
    let hook = &server.take("/hook")[0];
    assert_eq!(hook.json()["event"], "rollback_failed");
    assert_eq!(hook.json()["release"], Value::Null);
    assert_eq!(
        hook.json()["error"],
        format!(
            "task `rollback` failed on host `localhost`: nothing to roll back to: no good release older than `{first_release}`"
        )
    );
    server.take("/slack");

    // Other tasks do not notify, unless `notify_tasks` names them.
    sandbox.write(
        "app.rhai",
        &format!(
            "{}task(\"hello\", || info(\"hi\"));\n",
            sandbox.read("app.rhai")
        ),
    );
    sandbox.run(&["run", "app.rhai", "hello"]).success();
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    sandbox
        .run(&[
            "run",
            "app.rhai",
            "hello",
            "-o",
            "notify_tasks=hello,deploy",
        ])
        .success();
    let hook = &server.take("/hook")[0];
    assert_eq!(
        normalized(hook),
        json!({
            "event": "deploy_succeeded",
            "app": "shop",
            "task": "hello",
            "hosts": ["localhost"],
            "ref": "HEAD",
            "commit": null,
            "previous_commit": first,
            "commits": [],
            "commits_truncated": false,
            "duration_ms": 0,
            "user": "tester",
            "release": null,
            "previous_release": "[RELEASE]",
        })
    );
    assert_eq!(
        slack_text(&server.take("/slack")[0]),
        "shop: tester ran `hello` on localhost in [DURATION]"
    );
}

#[test]
fn the_application_name_and_a_long_history() {
    let server = Server::start(Answer::Status(204));
    let (sandbox, repo, first) = setup(&server, "set(\"application\", \"Shop & Co\");\n");
    sandbox.run(&["run", "app.rhai", "-q"]).success();
    server.take("/slack");
    assert_eq!(server.take("/hook")[0].json()["app"], "Shop & Co");

    let mut commits = Vec::new();
    for i in 0..55 {
        commits.push(repo.commit(&[("index.html", &format!("{i}\n"))], &format!("change {i}")));
    }
    sandbox.run(&["run", "app.rhai", "-q"]).success();
    let hook = server.take("/hook")[0].json();
    assert_eq!(hook["previous_commit"], first.as_str());
    let listed: Vec<&str> = hook["commits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    let expected: Vec<String> = commits
        .iter()
        .enumerate()
        .rev()
        .take(50)
        .map(|(i, c)| format!("{} change {i}", &c[..7]))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(hook["commits_truncated"], true);
    let text = slack_text(&server.take("/slack")[0]);
    assert!(text.starts_with("Shop &amp; Co: tester deployed"), "{text}");
    assert!(text.ends_with("• ..."), "{text}");
}

/// Deploy with webhooks that fail in `answer` ways: the deploy succeeds and says so.
fn deploy_despite(slack: &str, hook: &str, extra: &str, args: &[&str]) -> crate::support::Run {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("shop");
    repo.commit(&[("index.html", "v1\n")], "first");
    let settings =
        format!("set(\"slack_webhook\", \"{slack}\");\nset(\"webhook_url\", \"{hook}\");\n{extra}");
    sandbox.write(
        "app.rhai",
        &recipe(&repo.str(), &sandbox.str("app"), &settings),
    );
    let mut all = vec!["run", "app.rhai"];
    all.extend_from_slice(args);
    let run = sandbox.run(&all);
    run.success();
    assert!(sandbox.current("app").is_some());
    run
}

#[test]
fn failing_webhooks_never_fail_the_deploy() {
    let failing = Server::start(Answer::Status(500));
    let refused = format!("http://127.0.0.1:{}/slack", closed_port());
    let run = deploy_despite(&refused, &failing.url("/hook"), "", &[]);
    assert_eq!(
        scrub(&run.stderr),
        "[localhost] deploy:prepare ... ok ([DURATION])
[localhost] deploy:lock ... ok ([DURATION])
[localhost] deploy:release ... ok ([DURATION])
[localhost] checked out `HEAD` at [COMMIT]
[localhost] deploy:update_code ... ok ([DURATION])
[localhost] deploy:shared ... ok ([DURATION])
[localhost] deploy:writable ... ok ([DURATION])
[localhost] current -> releases/[RELEASE]
[localhost] deploy:symlink ... ok ([DURATION])
[localhost] deploy:cleanup ... ok ([DURATION])
[localhost] deploy:unlock ... ok ([DURATION])
warning: notification to `slack_webhook` failed: connection refused
warning: notification to `webhook_url` failed: the server answered HTTP 500: boom
deploy: release [RELEASE] (commit [COMMIT]) on localhost in [DURATION]
  preparation [DURATION], cutover [DURATION]
"
        .replace("[COMMIT]", &commit_in(&run.stderr))
    );
    assert_eq!(failing.requests().len(), 1);

    // Quiet: the warnings still show.
    let run = deploy_despite(&refused, &failing.url("/hook"), "", &["-q"]);
    assert_eq!(
        run.stderr,
        "warning: notification to `slack_webhook` failed: connection refused
warning: notification to `webhook_url` failed: the server answered HTTP 500: boom
"
    );

    // JSON: an event each, before `finished`; nothing on stderr.
    let run = deploy_despite(&refused, &failing.url("/hook"), "", &["--json"]);
    assert_eq!(run.stderr, "");
    let events = run.json_lines();
    let n = events.len();
    assert_eq!(
        events[n - 3..],
        [
            json!({"event": "notification_failed", "setting": "slack_webhook", "error": "connection refused"}),
            json!({"event": "notification_failed", "setting": "webhook_url", "error": "the server answered HTTP 500: boom"}),
            events[n - 1].clone(),
        ]
    );
    assert_eq!(events[n - 1]["event"], "finished");
    assert_eq!(events[n - 1]["status"], "success");

    // -v: delivered notifications are listed too.
    let ok = Server::start(Answer::Status(200));
    let run = deploy_despite(&ok.url("/slack"), &failing.url("/hook"), "", &["-v"]);
    let stderr = scrub(&run.stderr);
    assert!(
        stderr.ends_with(
            "notified `slack_webhook` (HTTP 200)
warning: notification to `webhook_url` failed: the server answered HTTP 500: boom
deploy: release [RELEASE] (commit [COMMIT]) on localhost in [DURATION]
  preparation [DURATION], cutover [DURATION]
"
            .replace("[COMMIT]", &commit_in(&run.stderr))
            .as_str()
        ),
        "{stderr}"
    );
}

#[test]
fn closed_connections_silence_and_other_schemes_are_reported() {
    let closing = Server::start(Answer::Close);
    let silent = Server::start(Answer::Silent);
    let run = deploy_despite(
        &closing.url("/slack"),
        &silent.url("/hook"),
        "set(\"webhook_timeout\", 1);\n",
        &["-q"],
    );
    assert_eq!(
        run.stderr,
        "warning: notification to `slack_webhook` failed: the server closed the connection without an answer
warning: notification to `webhook_url` failed: no answer within 1 s
"
    );
    assert_eq!(closing.requests().len(), 1);
    assert_eq!(silent.requests().len(), 1);

    // A URL that is neither http:// nor https:// is not sent.
    let run = deploy_despite("ftp://127.0.0.1/slack", "", "", &["-q"]);
    assert_eq!(
        run.stderr,
        "warning: notification to `slack_webhook` failed: not sent: the URL must start with http:// or https://\n"
    );
}

#[test]
fn an_unreachable_host_is_a_failed_deploy_too() {
    let server = Server::start(Answer::Status(200));
    let sandbox = Sandbox::new();
    sandbox.write(
        "app.rhai",
        &format!(
            "import \"deploy\";\nset(\"repository\", \"/nowhere/shop.git\");\nset(\"deploy_path\", \"/srv/shop\");\n\
             set(\"webhook_url\", \"{}\");\nhost(\"web1\").set(\"hostname\", \"127.0.0.1\").set(\"port\", {});\n",
            server.url("/hook"),
            closed_port()
        ),
    );
    sandbox.run(&["run", "app.rhai", "-q"]).expect(1);
    let hook = &server.take("/hook")[0];
    let mut value = normalized(hook);
    let error = value["error"].take();
    assert!(
        error.as_str().unwrap().starts_with("nothing was changed: "),
        "{error}"
    );
    assert_eq!(
        value,
        json!({
            "event": "deploy_failed",
            "app": "shop",
            "task": "deploy",
            "hosts": ["web1"],
            "ref": "HEAD",
            "commit": null,
            "previous_commit": null,
            "commits": [],
            "commits_truncated": false,
            "duration_ms": 0,
            "user": "tester",
            "release": null,
            "previous_release": null,
            "error": null,
        })
    );
}

/// The 12-digit commit the output names (`at abc...` in the checkout line).
fn commit_in(stderr: &str) -> String {
    stderr
        .split("checked out `HEAD` at ")
        .nth(1)
        .map(|rest| rest[..12].to_string())
        .unwrap_or_default()
}

#[test]
fn over_ssh_the_commits_come_from_the_remote_cache() {
    use crate::ssh_support::{rhai_string, SshHosts};

    let server = Server::start(Answer::Status(200));
    let sandbox = Sandbox::new();
    let hosts = SshHosts::start(&sandbox, 2);
    let repo = sandbox.repo("shop");
    let first = repo.commit(&[("index.html", "v1\n")], "first");
    let password = "over-ssh-pa55word";
    sandbox.write(
        "app.rhai",
        &format!(
            "import \"deploy\";\nset(\"repository\", {});\nset(\"rollout_stagger\", 0);\n\
             set(\"shared_files\", [\".env\"]);\nset(\"webhook_url\", \"{}\");\n{}\
             task(\"show\", || run(\"cat {{{{deploy_path}}}}/shared/.env\"));\n",
            rhai_string(&repo.str()),
            server.url("/hook"),
            hosts.recipe_hosts()
        ),
    );
    for i in 1..=2 {
        sandbox.write(
            &format!("{}/shared/.env", hosts.deploy_rel(i)),
            &format!("DB_PASSWORD={password}\n"),
        );
    }
    sandbox.run(&["run", "app.rhai", "-q"]).success();
    let second = repo.commit(&[("index.html", "v2\n")], "second");
    let third = repo.commit(&[("index.html", "v3\n")], "third");
    sandbox.run(&["run", "app.rhai", "-q"]).success();
    let hooks = server.take("/hook");
    assert_eq!(hooks.len(), 2);
    assert_eq!(
        normalized(&hooks[1]),
        json!({
            "event": "deploy_succeeded",
            "app": "shop",
            "task": "deploy",
            "hosts": ["web1", "web2"],
            "ref": "HEAD",
            "commit": third,
            "previous_commit": first,
            "commits": [
                format!("{} third", &third[..7]),
                format!("{} second", &second[..7]),
            ],
            "commits_truncated": false,
            "duration_ms": 0,
            "user": "tester",
            "release": "[RELEASE]",
            "previous_release": "[RELEASE]",
        })
    );

    sandbox.run(&["rollback", "app.rhai", "-q"]).success();
    let hook = &server.take("/hook")[0];
    assert_eq!(hook.json()["event"], "rolled_back");
    assert_eq!(hook.json()["commit"], first.as_str());
    assert_eq!(
        hook.json()["commits"],
        json!([
            format!("{} third", &third[..7]),
            format!("{} second", &second[..7]),
        ])
    );

    // The remote `.env` is read when the run starts on each host.
    let run = sandbox.run(&["run", "app.rhai", "show", "-vv"]);
    run.success();
    assert!(
        run.stderr.contains("[web2]   DB_PASSWORD=[secret]\n"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(password), "{}", run.stderr);
    drop(hosts);
}
