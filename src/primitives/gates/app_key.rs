//! `check_app_key()`: a changed APP_KEY logs every user out and breaks every encrypted cookie
//! and payload. Each release remembers a hash of the APP_KEY it was built with (never the key)
//! in `.zdd-app-key`; the gate refuses when the shared `.env` now holds another key than the
//! running release used, unless `allow_key_rotation` is true.

use crate::output::failure::Failure;
use crate::output::reporter::Event;
use crate::primitives::artisan::app_path;
use crate::primitives::host_context::HostContext;
use crate::transport::{Answer, Op};
use crate::values::quote::Line;

const RECORD: &str = ".zdd-app-key";

/// One wait: whether the shared `.env` is there, the hash of its key and the running
/// release's record are asked at once; the new release's record is sent.
pub fn check_app_key(ctx: &mut HostContext) -> Result<(), Failure> {
    let env_file = ctx.path("shared/.env")?;
    let line = key_hash_line(&env_file)?;
    ctx.reporter.event(Event::Command {
        host: &ctx.host,
        command: line.as_str(),
    });
    let mut answers = ctx
        .transport
        .query(vec![
            Op::Exists(env_file.clone()),
            Op::Exec {
                script: line.as_str().to_string(),
                cwd: None,
                display: line.as_str().to_string(),
            },
            Op::ReadFile(format!("{}/{RECORD}", ctx.path("current")?)),
        ])?
        .into_iter();
    let exists = answers.next().is_some_and(Answer::flag);
    let hash = match answers.next() {
        Some(Answer::Output(output)) => output.stdout.trim().to_string(),
        _ => String::new(),
    };
    let running = answers
        .next()
        .and_then(Answer::text)
        .map(|t| t.trim().to_string());
    if !exists {
        ctx.info("app key: skipped (no shared .env)");
        return Ok(());
    }
    let Some(new) = Some(hash).filter(|h| !h.is_empty()) else {
        return Err(
            Failure::message(format!("`{env_file}` sets no APP_KEY")).with_hint(
                "set APP_KEY in the shared .env (`php artisan key:generate --show` makes one)",
            ),
        );
    };
    let release = app_path(ctx)?;
    // Written by renaming a new file into place: a symlink the repository brought under this
    // name is replaced, never written through.
    ctx.send(Op::WriteFile {
        path: format!("{release}/{RECORD}"),
        contents: format!("{new}\n"),
    })?;
    match running {
        Some(old) if old != new => {
            if ctx.boolean("allow_key_rotation", false)? {
                ctx.warn("app key: APP_KEY changed (allowed by allow_key_rotation): every user will be logged out");
                return Ok(());
            }
            Err(Failure::message(
                "APP_KEY in the shared .env differs from the one the running release uses: deploying would log every user out and break encrypted data",
            )
            .with_hint("put the old APP_KEY back, or rotate on purpose with `-o allow_key_rotation=true`"))
        }
        Some(_) => {
            ctx.info("app key: unchanged");
            Ok(())
        }
        None => {
            ctx.info("app key: recorded (the running release has no record to compare with)");
            Ok(())
        }
    }
}

/// The shell line of [`key_hash`] up to the `.env` file it reads...
const READ_KEY: &str = "key=$(sed -n 's/^[[:space:]]*APP_KEY[[:space:]]*=[[:space:]]*//p' --";
/// ...and after it: the last APP_KEY line's value, unquoted, hashed (nothing when it is empty).
const HASH_KEY: &str =
    "| tail -n 1 | tr -d '\\r' | sed 's/^\"\\(.*\\)\"$/\\1/; s/^'\"'\"'\\(.*\\)'\"'\"'$/\\1/'); \
     [ -n \"$key\" ] || exit 0; printf '%s' \"$key\" | sha256sum | cut -d' ' -f1";

/// The shell line that prints the sha256 of the APP_KEY value in `env_file`, computed on the
/// host: the key never leaves it (nothing when there is no key).
fn key_hash_line(env_file: &str) -> Result<Line, Failure> {
    Ok(Line::shell(READ_KEY).arg(env_file)?.text(HASH_KEY))
}
