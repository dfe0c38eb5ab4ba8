//! What a host makes secret, learned by the runner once every host is connected: read from the
//! host's context (its settings, expanded) and from its shared `.env` files, and handed to
//! [`Secrets`](crate::output::secrets::Secrets), which only keeps and redacts values.

use crate::primitives::host_context::HostContext;

/// The secret values of one host: its secret keys expanded, the passwords of the URLs in its
/// values, and every value of the shared `.env` files the recipe links (`shared_files` entries
/// named `.env`).
pub fn learn(ctx: &HostContext) {
    let secrets = ctx.reporter.secrets();
    for key in ctx.config.keys() {
        if let Ok(Some(value)) = ctx.expanded_value(key) {
            if value.is_string() {
                secrets.learn_value(key, &value);
            }
        }
    }
    let Ok(files) = ctx.list("shared_files") else {
        return;
    };
    for file in files {
        if file.trim_end_matches('/').rsplit('/').next() != Some(".env") {
            continue;
        }
        let Ok(path) = ctx.path(&format!("shared/{file}")) else {
            continue;
        };
        match ctx.transport.read_file(&path) {
            Ok(Some(text)) => secrets.learn_env_file(&text),
            Ok(None) => {}
            Err(e) => tracing::debug!("cannot read `{path}` for its secrets: {e:#}"),
        }
    }
}
