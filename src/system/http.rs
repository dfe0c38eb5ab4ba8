//! The one HTTP client: the health gate and the webhooks get their agent here, so every request
//! zdd makes is made the same way (no redirects, any status read as an answer, a time limit) and
//! `https://` is verified the same way, by rustls.
//!
//! Trusted certificate authorities, as OpenSSL (so curl and git) finds them on Debian: the
//! system's bundle (the first of [`SYSTEM_BUNDLES`] that exists), plus the certificates in the
//! file `SSL_CERT_FILE` names and in the files of the directory `SSL_CERT_DIR` names. Both add to
//! the system's bundle, never replace it, so a private CA does not cost Slack. With no bundle
//! and neither variable, the Mozilla list built into zdd (webpki-roots) stands in.
//!
//! A failed request is explained in zdd's words ([`RequestError`]): a certificate that is not
//! trusted names the URL, the reason, and what to do.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::system::environment;

/// Where Linux distributions keep the system's bundle of certificate authorities (the list
/// openssl-probe and Go's crypto/x509 read): Debian and Ubuntu first.
const SYSTEM_BUNDLES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
];

/// An agent for requests to `url` that give up after `timeout`. For an `https://` URL the
/// trusted authorities are read now; an `SSL_CERT_FILE` or `SSL_CERT_DIR` that cannot be read
/// is an error before anything is sent.
pub fn agent(url: &str, timeout: Duration) -> Result<ureq::Agent, RequestError> {
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("zdd/", env!("CARGO_PKG_VERSION")));
    if is_https(url) {
        let roots = trusted(&|name| std::env::var_os(name), &SYSTEM_BUNDLES).map_err(|cause| {
            RequestError {
                cause,
                hint: None,
                tls: true,
            }
        })?;
        config = config.tls_config(TlsConfig::builder().root_certs(roots).build());
    }
    Ok(config.build().into())
}

/// Whether `url` can be requested: `http://` or `https://`, a host, a port that is a port, no
/// space or control character. `Err` says what is wrong, in zdd's words.
pub fn check_url(url: &str) -> Result<(), &'static str> {
    let lower = url.to_ascii_lowercase();
    if !lower.starts_with("http://") && !lower.starts_with("https://") {
        return Err("it must start with http:// or https://");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("it must not contain spaces or control characters");
    }
    let uri: ureq::http::Uri = url.parse().map_err(|_| "it is not a URL zdd can request")?;
    let authority = uri.authority().ok_or("it names no host")?;
    if authority.host().is_empty() {
        return Err("it names no host");
    }
    // After the user and password, if any: `host`, `host:port`, `[v6]` or `[v6]:port`.
    let host_port = authority.as_str().rsplit('@').next().unwrap_or_default();
    let port = match host_port.rsplit_once(':') {
        Some((_, port)) if !port.ends_with(']') => Some(port),
        _ => None,
    };
    if port.is_some_and(|port| port.parse::<u16>().map_or(true, |p| p == 0)) {
        return Err("its port is not a port number");
    }
    Ok(())
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// The certificate authorities to trust: the first system bundle of `system` that exists, and
/// those of `SSL_CERT_FILE` and `SSL_CERT_DIR` as `env` reads them.
fn trusted(env: &dyn Fn(&str) -> Option<OsString>, system: &[&str]) -> Result<RootCerts, String> {
    let mut certificates = Vec::new();
    if let Some(bundle) = system.iter().map(Path::new).find(|path| path.is_file()) {
        // The system's own bundle: a damaged one is not the user's doing, and the
        // variables may still name what is needed.
        if let Ok(found) = read_bundle(bundle) {
            certificates.extend(found);
        }
    }
    let mut named = false;
    if let Some(file) = env(environment::SSL_CERT_FILE).filter(|v| !v.is_empty()) {
        named = true;
        let file = PathBuf::from(file);
        let found = read_bundle(&file)
            .map_err(|e| format!("`{}` names {e}", environment::SSL_CERT_FILE))?;
        if found.is_empty() {
            return Err(format!(
                "`{}` names `{}`, which holds no PEM certificate",
                environment::SSL_CERT_FILE,
                file.display()
            ));
        }
        certificates.extend(found);
    }
    if let Some(dir) = env(environment::SSL_CERT_DIR).filter(|v| !v.is_empty()) {
        named = true;
        // OpenSSL's form: directories separated by `:`.
        for dir in std::env::split_paths(&dir) {
            let entries = std::fs::read_dir(&dir).map_err(|e| {
                format!(
                    "`{}` names `{}`, which cannot be read: {}",
                    environment::SSL_CERT_DIR,
                    dir.display(),
                    io_words(&e)
                )
            })?;
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths.iter().filter(|p| p.is_file()) {
                // Not every file in a certificate directory is PEM (c_rehash keeps others).
                certificates.extend(read_bundle(path).unwrap_or_default());
            }
        }
    }
    if certificates.is_empty() && !named {
        return Ok(RootCerts::WebPki);
    }
    Ok(RootCerts::from(certificates))
}

/// The certificates of a PEM file (other PEM items, such as keys, are skipped).
fn read_bundle(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    let pem = std::fs::read(path).map_err(|e| {
        format!(
            "`{}`, which cannot be read: {}",
            path.display(),
            io_words(&e)
        )
    })?;
    Ok(ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(certificate)) => Some(certificate),
            _ => None,
        })
        .collect())
}

fn io_words(error: &std::io::Error) -> String {
    match error.kind() {
        ErrorKind::NotFound => "it does not exist".to_string(),
        ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => error.to_string(),
    }
}

/// Why a request got no answer, in zdd's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// What went wrong: `connection refused`, `the certificate of URL is not trusted: ...`.
    pub cause: String,
    /// What the user can do, when there is something to do.
    pub hint: Option<String>,
    /// The cause is TLS's (it names the URL itself).
    pub tls: bool,
}

impl RequestError {
    fn plain(cause: impl Into<String>) -> RequestError {
        RequestError {
            cause: cause.into(),
            hint: None,
            tls: false,
        }
    }
}

/// `error` of a request to `shown` (the URL, or as much of it as may be printed) that had
/// `timeout`, in words.
pub fn explain(error: ureq::Error, shown: &str, timeout: Duration) -> RequestError {
    let no_answer = || RequestError::plain(format!("no answer within {} s", timeout.as_secs_f64()));
    match error {
        ureq::Error::Timeout(_) => no_answer(),
        ureq::Error::HostNotFound => RequestError::plain("the host name does not resolve"),
        ureq::Error::BadUri(_) => RequestError::plain("the URL is not valid"),
        ureq::Error::Rustls(e) => tls(&e, shown),
        ureq::Error::Io(e) => {
            // rustls reports a failed handshake as an I/O error that carries its own.
            if let Some(e) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return tls(e, shown);
            }
            match e.kind() {
                ErrorKind::ConnectionRefused => RequestError::plain("connection refused"),
                ErrorKind::TimedOut | ErrorKind::WouldBlock => no_answer(),
                ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => {
                    RequestError::plain("the server closed the connection without an answer")
                }
                _ => RequestError::plain(format!("network error: {e}")),
            }
        }
        ureq::Error::Tls(e) => RequestError {
            cause: format!("no TLS connection to {shown}: {e}"),
            hint: None,
            tls: true,
        },
        ureq::Error::Protocol(_) => RequestError::plain("the server's answer is not HTTP"),
        other => RequestError::plain(other.to_string()),
    }
}

/// A TLS failure with `shown`, in words.
fn tls(error: &rustls::Error, shown: &str) -> RequestError {
    use rustls::CertificateError as C;
    let untrusted = |reason: &str, hint: Option<&str>| RequestError {
        cause: format!("the certificate of {shown} is not trusted: {reason}"),
        hint: hint.map(str::to_string),
        tls: true,
    };
    match error {
        rustls::Error::InvalidCertificate(certificate) => match certificate {
            C::UnknownIssuer => untrusted(
                "issued by an unknown certificate authority",
                Some(
                    "set SSL_CERT_FILE to a PEM bundle with your certificate authority \
                     (zdd trusts it besides the system's)",
                ),
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => untrusted(
                "it is for another host name",
                Some("the certificate must name the URL's host (an IP address needs an IP subject alternative name)"),
            ),
            C::Expired | C::ExpiredContext { .. } => untrusted("it has expired", None),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                untrusted("it is not valid yet (is this host's clock right?)", None)
            }
            C::Revoked => untrusted("it has been revoked", None),
            C::BadSignature => untrusted("its signature does not match", None),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                untrusted("it is not meant for a TLS server", None)
            }
            other => untrusted(&format!("{other:?}"), None),
        },
        rustls::Error::InvalidMessage(_) => RequestError {
            cause: format!("{shown} does not answer in TLS"),
            hint: Some("is the server's port http:// rather than https://?".to_string()),
            tls: true,
        },
        other => RequestError {
            cause: format!("the TLS handshake with {shown} failed: {other}"),
            hint: None,
            tls: true,
        },
    }
}

/// `scheme://host:port` of `url`, without user, path or query: what may be printed of a URL
/// that is a secret.
pub fn origin(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let authority = &url[start..end];
    // `user:token@host`: the host only.
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{}{host}", &url[..start])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_that_cannot_be_requested_are_told_apart() {
        for good in [
            "http://127.0.0.1:8080/health",
            "https://shop.example.com/",
            "http://user:pass@host/",
            "http://[::1]/",
            "http://[::1]:8080/x?y=1",
            "HTTP://Example.com",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for (bad, why) in [
            ("http://", "it is not a URL zdd can request"),
            ("https://", "it is not a URL zdd can request"),
            ("http:///path", "it is not a URL zdd can request"),
            ("http://[::1", "it is not a URL zdd can request"),
            ("http://127.0.0.1:99999/", "its port is not a port number"),
            ("http://127.0.0.1:0/", "its port is not a port number"),
            (
                "http://x/ a",
                "it must not contain spaces or control characters",
            ),
            ("ftp://x", "it must start with http:// or https://"),
        ] {
            assert_eq!(check_url(bad), Err(why), "{bad}");
        }
    }

    /// Not a real certificate: parsing a PEM bundle does not look inside.
    const PEM: &str = "-----BEGIN CERTIFICATE-----\nAQIDBA==\n-----END CERTIFICATE-----\n";

    fn count(roots: &RootCerts) -> usize {
        match roots {
            RootCerts::Specific(certificates) => certificates.len(),
            _ => 0,
        }
    }

    #[test]
    fn ssl_cert_file_adds_to_the_system_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let system = dir.path().join("system.pem");
        std::fs::write(&system, PEM.repeat(3)).unwrap();
        let ours = dir.path().join("ours.pem");
        std::fs::write(
            &ours,
            format!("{PEM}-----BEGIN PRIVATE KEY-----\nAQID\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
        let system = system.to_str().unwrap();
        let missing = dir.path().join("missing.pem");
        let bundles = [missing.to_str().unwrap(), system];

        let none = |_: &str| None;
        assert_eq!(count(&trusted(&none, &bundles).unwrap()), 3);
        let file = |name: &str| (name == "SSL_CERT_FILE").then(|| ours.clone().into_os_string());
        assert_eq!(count(&trusted(&file, &bundles).unwrap()), 4);
        // No system bundle: only what the variable names.
        assert_eq!(count(&trusted(&file, &[]).unwrap()), 1);
        // Nothing at all: the built-in list.
        assert!(matches!(trusted(&none, &[]).unwrap(), RootCerts::WebPki));
    }

    #[test]
    fn ssl_cert_dir_reads_every_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.pem"), PEM).unwrap();
        std::fs::write(dir.path().join("1a2b3c4d.0"), PEM.repeat(2)).unwrap();
        std::fs::write(dir.path().join("README"), "not PEM").unwrap();
        let certs = dir.path().to_path_buf();
        let env =
            move |name: &str| (name == "SSL_CERT_DIR").then(|| certs.clone().into_os_string());
        assert_eq!(count(&trusted(&env, &[]).unwrap()), 3);
    }

    #[test]
    fn a_variable_naming_nothing_usable_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let env = |name: &str| (name == "SSL_CERT_FILE").then(|| missing.clone().into_os_string());
        assert_eq!(
            trusted(&env, &[]).err().unwrap(),
            format!(
                "`SSL_CERT_FILE` names `{}`, which cannot be read: it does not exist",
                missing.display()
            )
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let env = |name: &str| (name == "SSL_CERT_FILE").then(|| empty.clone().into_os_string());
        assert_eq!(
            trusted(&env, &[]).err().unwrap(),
            format!(
                "`SSL_CERT_FILE` names `{}`, which holds no PEM certificate",
                empty.display()
            )
        );
        let env = |name: &str| (name == "SSL_CERT_DIR").then(|| missing.clone().into_os_string());
        assert!(trusted(&env, &[])
            .err()
            .unwrap()
            .starts_with("`SSL_CERT_DIR` names `"));
    }

    #[test]
    fn certificate_errors_in_words() {
        let error = tls(
            &rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            "https://example.test/health",
        );
        assert_eq!(
            error.cause,
            "the certificate of https://example.test/health is not trusted: issued by an unknown certificate authority"
        );
        assert!(error
            .hint
            .unwrap()
            .starts_with("set SSL_CERT_FILE to a PEM bundle"));
        let error = explain(
            ureq::Error::Io(std::io::Error::new(
                ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::Expired),
            )),
            "https://example.test",
            Duration::from_secs(5),
        );
        assert_eq!(
            error.cause,
            "the certificate of https://example.test is not trusted: it has expired"
        );
        assert!(error.tls);
    }

    /// The invariant ARCHITECTURE.md states: no agent is built anywhere else, so no request
    /// escapes the trust settings above.
    #[test]
    fn agents_are_built_only_here() {
        fn walk(dir: &Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs")
                    && !path.ends_with("src/system/http.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    if [
                        "config_builder()",
                        "Agent::new",
                        "ureq::get",
                        "ureq::post",
                        "TlsConfig",
                    ]
                    .iter()
                    .any(|built| text.contains(built))
                    {
                        found.push(path.display().to_string());
                    }
                }
            }
        }
        let mut found = Vec::new();
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert_eq!(
            found,
            Vec::<String>::new(),
            "build the agent with `http::agent`"
        );
    }

    #[test]
    fn origins_keep_no_secret() {
        for (url, origin_of) in [
            (
                "https://hooks.slack.com/services/T0/B0/XXXX",
                "https://hooks.slack.com",
            ),
            (
                "https://127.0.0.1:8443/hook?token=x",
                "https://127.0.0.1:8443",
            ),
            ("https://user:token@example.com/hook", "https://example.com"),
            ("http://example.com", "http://example.com"),
        ] {
            assert_eq!(origin(url), origin_of);
        }
    }
}
