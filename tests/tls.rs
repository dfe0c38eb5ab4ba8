//! https: the health gate and the webhooks trust the certificate authorities of `SSL_CERT_FILE`
//! (and `SSL_CERT_DIR`) besides the system's, and say in zdd's words when a certificate is not
//! trusted. The authority and the server's certificate (for 127.0.0.1, an IP SAN) are made by
//! the `openssl` CLI; the server is the webhook receiver of `notify.rs` behind rustls.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::notify::{setup, Answer, Server};
use crate::support::{recipe, Sandbox};

/// A certificate authority of the test's own, and a server certificate it signed.
struct Authority {
    /// The authority's certificate (what `SSL_CERT_FILE` names).
    ca: PathBuf,
    /// A directory holding only the authority's certificate (for `SSL_CERT_DIR`).
    ca_dir: PathBuf,
    server: Arc<rustls::ServerConfig>,
}

impl Authority {
    /// Made under `dir` with `openssl`.
    fn new(dir: &Path) -> Authority {
        std::fs::create_dir_all(dir.join("cas")).unwrap();
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl (Debian package `openssl`) runs");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let key = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &key,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2"],
                &["-subj", "/CN=zdd test authority"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &key,
                &["-keyout", "server.key", "-out", "server.csr"],
                &["-subj", "/CN=127.0.0.1"],
            ]
            .concat(),
        );
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        std::fs::copy(dir.join("ca.pem"), dir.join("cas/ca.pem")).unwrap();

        let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Authority {
            ca: dir.join("ca.pem"),
            ca_dir: dir.join("cas"),
            server: Arc::new(server),
        }
    }

    fn ca(&self) -> &str {
        self.ca.to_str().unwrap()
    }
}

/// What zdd says of a certificate from an authority it does not know.
fn untrusted(url: &str) -> String {
    format!("the certificate of {url} is not trusted: issued by an unknown certificate authority")
}

const HINT: &str = "set SSL_CERT_FILE to a PEM bundle with your certificate authority (zdd trusts it besides the system's)";

#[test]
fn the_health_gate_trusts_ssl_cert_file_and_refuses_an_unknown_authority() {
    let sandbox = Sandbox::new();
    let authority = Authority::new(&sandbox.path("tls"));
    let server = Server::start_tls(Answer::Status(200), authority.server.clone());
    let repo = sandbox.repo("shop");
    repo.commit(&[("index.html", "v1\n")], "first");
    sandbox.write(
        "app.rhai",
        &recipe(
            &repo.str(),
            &sandbox.str("app"),
            "task(\"health\", || { health_gate(get(\"health_url\"), #{checks: 2, interval: 0.05}); });\n\
             after(\"deploy:symlink\", \"health\");\n",
        ),
    );
    let url = server.url("/health");
    let option = format!("health_url={url}");
    let deploy = ["run", "app.rhai", "-o", option.as_str()];

    // The authority trusted through SSL_CERT_FILE: the gate passes.
    let run = sandbox.run_with(&deploy, &[("SSL_CERT_FILE", authority.ca())]);
    run.success();
    assert!(
        run.stderr.contains(&format!(
            "health: 2 good responses from {url} (last: HTTP 200)"
        )),
        "{}",
        run.stderr
    );
    let requests = server.take("/health");
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.method == "GET"));
    let good = sandbox.current("app").unwrap();

    // ... and through SSL_CERT_DIR.
    repo.commit(&[("index.html", "v2\n")], "second");
    let dir = authority.ca_dir.to_str().unwrap();
    sandbox
        .run_with(&deploy, &[("SSL_CERT_DIR", dir)])
        .success();
    assert_eq!(server.take("/health").len(), 2);
    let good = {
        let now = sandbox.current("app").unwrap();
        assert_ne!(now, good);
        now
    };

    // Not trusted (only the system's authorities): the gate fails in zdd's words, nothing was
    // asked of the server, and `current` is switched back.
    repo.commit(&[("index.html", "v3\n")], "third");
    let run = sandbox.run(&deploy);
    run.expect(1);
    assert!(
        run.stderr.contains(&format!(
            "Caused by: health check failed: {}\n",
            untrusted(&url)
        )),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.ends_with(&format!("\nhint: {HINT}\n")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("switched back: current -> releases/"),
        "{}",
        run.stderr
    );
    assert!(server.requests().is_empty());
    assert_eq!(sandbox.current("app").unwrap(), good);
    assert_eq!(sandbox.read("app/current/index.html"), "v2\n");
}

#[test]
fn https_webhooks_are_sent_when_the_authority_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let authority = Authority::new(dir.path());
    let server = Server::start_tls(Answer::Status(200), authority.server.clone());
    let (sandbox, _repo, _first) = setup(&server, "");
    let origin = server.url("");

    let run = sandbox.run_with(
        &["run", "app.rhai", "-q"],
        &[("SSL_CERT_FILE", authority.ca())],
    );
    run.success();
    assert_eq!(run.stderr, "");
    assert_eq!(server.take("/slack").len(), 1);
    let hook = server.take("/hook");
    assert_eq!(hook.len(), 1);
    assert_eq!(hook[0].json()["event"], "deploy_succeeded");

    // Not trusted: not sent, in zdd's words naming the origin only (the URL is a secret), and
    // the deploy succeeds all the same.
    let run = sandbox.run(&["run", "app.rhai", "-q"]);
    run.success();
    assert_eq!(
        run.stderr,
        format!(
            "warning: notification to `slack_webhook` failed: {}; {HINT}\n\
             warning: notification to `webhook_url` failed: {}; {HINT}\n",
            untrusted(&origin),
            untrusted(&origin)
        )
    );
    assert!(server.requests().is_empty());

    // An SSL_CERT_FILE that names nothing readable is said, before anything is sent.
    let missing = sandbox.str("missing.pem");
    let run = sandbox.run_with(&["run", "app.rhai", "-q"], &[("SSL_CERT_FILE", &missing)]);
    run.success();
    let said =
        "`SSL_CERT_FILE` names `[SANDBOX]/missing.pem`, which cannot be read: it does not exist";
    assert_eq!(
        run.stderr,
        format!(
            "warning: notification to `slack_webhook` failed: {said}\n\
             warning: notification to `webhook_url` failed: {said}\n"
        )
    );
    assert!(server.requests().is_empty());
}
