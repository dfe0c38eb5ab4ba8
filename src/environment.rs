//! Environment variables zdd reads, each the twin of a command-line option.

/// Same as `--json`: one JSON event per line on stdout.
pub const JSON: &str = "ZDD_JSON";
/// Same as `--hosts`: a comma list of host names.
pub const HOSTS: &str = "ZDD_HOSTS";
/// Same as `--roles`: a comma list of roles.
pub const ROLES: &str = "ZDD_ROLES";
/// Same as `-q`.
pub const QUIET: &str = "ZDD_QUIET";
/// A `tracing` filter for zdd's own diagnostics (`debug`, `zdd=trace`); off by default.
pub const LOG: &str = "ZDD_LOG";
