//! PHP that zdd runs inside the app (the queued-jobs probe, the swap that signals the workers),
//! booted exactly the way the app's own `artisan` boots it: zdd prepends its probe to the
//! app's `artisan` (`php -d auto_prepend_file=… artisan --version`), so whatever autoloader
//! and bootstrap files that `artisan` requires are loaded, and the probe runs in the booted
//! app when `artisan` exits (see `stdlib/php/boot.php`). When the app does not boot, the
//! failure says why, with the tail of `artisan`'s output, instead of a PHP stack trace.

use serde_json::Value;

use super::artisan::app_path;
use super::programs::php;
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::system::process::quoted_tail;
use crate::transport::temporary_path;
use crate::values::quote::{self, Joiner, Line};

const PRELUDE: &str = include_str!("../../stdlib/php/boot.php");
const MARKER: &str = "zdd-probe-result";
const STATUS: &str = "zdd-artisan-exit";
/// The status the probe's shell line reports when the app has no `artisan`.
const NO_ARTISAN: &str = "no-artisan";

/// A probe: a PHP file defining `zdd_probe(): array`, run in the booted app.
pub struct Probe {
    /// Names the temporary file (`.zdd/.probe-NAME.php.tmp.PID` in the deploy path) and the
    /// probe in messages.
    pub name: &'static str,
    pub source: &'static str,
    /// The boolean setting that switches off the step running the probe, named in the hint
    /// when the app does not boot.
    pub setting: &'static str,
}

/// Runs `probe` in the app this run acts on, with `env` in its environment, and returns the
/// array `zdd_probe()` returned. A `{"error": …}` result is returned as is: the caller words it.
pub fn run(ctx: &HostContext, probe: &Probe, env: &[(&str, &str)]) -> Result<Value, Failure> {
    let dir = app_path(ctx)?;
    // In zdd's own directory, not in the release: the release stays as the repository made it,
    // and a probe left by a killed run is swept with zdd's other temporary files.
    let file = temporary_path(
        &ctx.path(&format!(".zdd/probe-{}.php", probe.name.replace(' ', "-")))?,
        "tmp",
    );
    let body = probe.source.trim_start().trim_start_matches("<?php");
    // One request: the probe written, the check for `artisan`, the probe run, its removal,
    // and artisan's status.
    let write = Line::shell("printf '%s'")
        .arg(&format!("{PRELUDE}\n{body}"))?
        .text(">")
        .arg(&file)?
        .text("|| exit 1");
    let mut probe_line = Line::default();
    for (key, value) in env {
        probe_line = probe_line.assign(key, value)?;
    }
    let probe_line = probe_line
        .text(php(ctx)?.as_str())
        .text("-d")
        .arg(&format!("auto_prepend_file={file}"))?
        .text("artisan --version 2>&1");
    let line = quote::join(
        &[
            Line::shell("if [ -f artisan ]; then").text(probe_line.as_str()),
            Line::shell("s=$?"),
            Line::shell("else").assign("s", NO_ARTISAN)?,
            Line::shell("fi"),
            Line::command(&["rm", "-f", "--", &file])?,
            Line::shell(format!("printf '\\n{STATUS} %s\\n' \"$s\"")),
        ],
        Joiner::Then,
    );
    let script = quote::join(&[write.as_str(), line.as_str()], Joiner::Then);
    let output = ctx.exec_shown(&script, &line, Some(&dir))?;
    read_result(probe, &dir, &output.stdout)
}

const BATCH: &str = include_str!("../../stdlib/php/artisan_batch.php");

/// Runs the artisan `commands` in one PHP start, in order, inside the booted app; stops at the
/// first that fails and fails naming it, with its status and output. The same start reads
/// `artisan list` for [`artisan::has_command`](super::artisan::has_command). Returns the
/// commands run.
/// `setting` switches the step off (named when the app does not boot).
pub fn run_commands(
    ctx: &mut HostContext,
    commands: &[String],
    setting: &'static str,
) -> Result<Vec<String>, Failure> {
    for command in commands {
        if command.is_empty() || command.contains('\n') {
            return Err(Failure::message(format!(
                "not an artisan command: `{command}`"
            )));
        }
    }
    let batch = Probe {
        name: "artisan",
        source: BATCH,
        setting,
    };
    let result = run(ctx, &batch, &[("ZDD_COMMANDS", &commands.join("\n"))])?;
    if let Some(json) = result["listing"].as_str() {
        super::artisan::remember_listing(ctx, json)?;
    }
    let mut ran = Vec::new();
    for item in result["commands"].as_array().into_iter().flatten() {
        let command = item["command"].as_str().unwrap_or("").to_string();
        let status = item["status"].as_i64().unwrap_or(1);
        if status != 0 {
            return Err(Failure::message(format!(
                "`artisan {command}` failed with status {status}:{}",
                quoted_tail(item["output"].as_str().unwrap_or(""))
            )));
        }
        ran.push(command);
    }
    if ran.len() != commands.len() {
        return Err(Failure::message(format!(
            "artisan batch: ran {} of {} commands and returned `{result}`",
            ran.len(),
            commands.len()
        )));
    }
    Ok(ran)
}

/// The probe's result from what `artisan` printed, or why the app did not boot.
fn read_result(probe: &Probe, dir: &str, stdout: &str) -> Result<Value, Failure> {
    let name = probe.name;
    let (printed, status) = match stdout.trim_end().rsplit_once(&format!("\n{STATUS} ")) {
        Some((printed, status)) => (printed, status.trim().to_string()),
        None => (stdout, "unknown".to_string()),
    };
    if status == NO_ARTISAN {
        return Err(Failure::message(format!(
            "{name}: the app has no `artisan` in {dir}: zdd boots the app through it"
        ))
        .with_hint(format!(
            "deploy a Laravel app (with `artisan` at its root), or switch the step off with `-o {}=false`",
            probe.setting
        )));
    }
    let (before, result) = match printed.rsplit_once(&format!("\n{MARKER}\n")) {
        Some((before, result)) => (before, result.lines().next().unwrap_or("")),
        None => (printed, ""),
    };
    let tail = quoted_tail;
    let switch_off = format!(
        "or deploy without this step with `-o {}=false`",
        probe.setting
    );
    let value: Value = match serde_json::from_str(result) {
        Ok(value) => value,
        Err(_) => {
            return Err(Failure::message(format!(
                "{name}: the app did not boot: `php artisan --version` exited with status {status} and zdd's PHP never ran; it printed:{}",
                tail(printed)
            ))
            .with_hint(format!(
                "run `php artisan --version` in the release to see why the app does not start, {switch_off}"
            )))
        }
    };
    if let Some(reason) = value.get("not_booted") {
        // The first line of PHP's last error: the rest is its stack trace, shown in the tail.
        let reason = reason.as_str().unwrap_or("").lines().next().unwrap_or("");
        let how = match (reason.is_empty(), status.as_str()) {
            (true, "0") => "with status 0 without booting Laravel".to_string(),
            (true, _) => format!("with status {status} before Laravel booted"),
            (false, _) => format!("with status {status} before Laravel booted: {reason}"),
        };
        let missing_vendor =
            reason.contains("Failed opening required '") && reason.contains("vendor/autoload.php'");
        let hint = if missing_vendor {
            format!(
                "the release has no `vendor/`: zdd runs its PHP in the app as its `artisan` boots it, so the app's dependencies must be installed first (`composer = true`, the default), {switch_off}"
            )
        } else {
            format!(
                "zdd runs its PHP in the app as its `artisan` boots it: `php artisan --version` in the release must boot Laravel (require the autoloader and bootstrap files, make the console kernel and handle the command); fix `artisan`, {switch_off}"
            )
        };
        return Err(Failure::message(format!(
            "{name}: the app did not boot: `php artisan --version` exited {how}; it printed:{}",
            tail(before)
        ))
        .with_hint(hint));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::{read_result, Probe};

    const PROBE: Probe = Probe {
        name: "queued jobs",
        source: "",
        setting: "check_queued_jobs",
    };

    #[test]
    fn reads_the_result_after_the_marker_and_explains_a_failed_boot() {
        let out =
            "Laravel Framework 8.83.26\n\nzdd-probe-result\n{\"a\":1}\n\nzdd-artisan-exit 0\n";
        assert_eq!(read_result(&PROBE, "/app", out).unwrap()["a"], 1);

        let out = "PHP Fatal error:  Uncaught Error: Class \"X\" not found\n\nzdd-probe-result\n{\"not_booted\":\"Uncaught Error: Class \\\"X\\\" not found in /app/artisan:9\\nStack trace:\\n#0 {main} in /app/artisan:9\"}\n\nzdd-artisan-exit 255\n";
        let error = read_result(&PROBE, "/app", out).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("queued jobs: the app did not boot: `php artisan --version` exited with status 255 before Laravel booted: Uncaught Error: Class \"X\" not found in /app/artisan:9; it printed:\n  | PHP Fatal error:  Uncaught Error: Class \"X\" not found"),
            "{text}"
        );
        assert!(!text.contains("Stack trace"), "{text}");

        let out = "exec php bin/console \"$@\"\n\nzdd-probe-result\n{\"not_booted\":\"\"}\n\nzdd-artisan-exit 0\n";
        let text = read_result(&PROBE, "/app", out).unwrap_err().to_string();
        assert!(
            text.contains("exited with status 0 without booting Laravel; it printed:\n  | exec php bin/console"),
            "{text}"
        );

        let text = read_result(&PROBE, "/app", "\nzdd-artisan-exit no-artisan\n")
            .unwrap_err()
            .to_string();
        assert!(
            text.contains(
                "queued jobs: the app has no `artisan` in /app: zdd boots the app through it"
            ),
            "{text}"
        );

        let out = "Segmentation fault\n\nzdd-artisan-exit 139\n";
        let text = read_result(&PROBE, "/app", out).unwrap_err().to_string();
        assert!(
            text.contains("`php artisan --version` exited with status 139 and zdd's PHP never ran; it printed:\n  | Segmentation fault"),
            "{text}"
        );
    }
}
