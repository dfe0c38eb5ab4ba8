//! Environment variables zdd reads: the twins of command-line options, and those of the
//! places zdd runs in.

/// Same as `--json`: one JSON event per line on stdout.
pub const JSON: &str = "ZDD_JSON";
/// Same as `--hosts`: a comma list of host names.
pub const HOSTS: &str = "ZDD_HOSTS";
/// Same as `--roles`: a comma list of roles.
pub const ROLES: &str = "ZDD_ROLES";
/// Same as `-q`.
pub const QUIET: &str = "ZDD_QUIET";
/// Same as `--offline`: a shared recipe the cache lacks is an error, never a fetch.
pub const OFFLINE: &str = "ZDD_OFFLINE";
/// A `tracing` filter for zdd's own diagnostics (`debug`, `zdd=trace`); off by default.
pub const LOG: &str = "ZDD_LOG";
/// Set to `true` by GitHub Actions: each task's lines are folded into a `::group::[host] task`
/// ... `::endgroup::` block on stderr, and the error is repeated as an `::error::` annotation.
pub const GITHUB_ACTIONS: &str = "GITHUB_ACTIONS";
/// The `NO_COLOR` convention (no-color.org). zdd prints no colour at all, so there is nothing to
/// turn off; should colour ever be added, it must check this first and never carry meaning alone.
#[allow(dead_code)]
pub const NO_COLOR: &str = "NO_COLOR";

/// A PEM file of certificate authorities that `https://` requests (health gate, webhooks) trust
/// besides the system's, as OpenSSL reads it (curl, git).
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// Directories (`:`-separated) whose PEM files hold more certificate authorities to trust.
pub const SSL_CERT_DIR: &str = "SSL_CERT_DIR";

/// Whether zdd runs in GitHub Actions.
pub fn github_actions() -> bool {
    std::env::var(GITHUB_ACTIONS).is_ok_and(|value| value == "true")
}
