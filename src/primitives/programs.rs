//! The programs a primitive starts (`php`, `composer`, `npm`): `bin/NAME` when the recipe sets
//! it, otherwise found on the host's PATH. Missing is an error naming the setting.

use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::transport::Op;
use crate::values::quote::Line;
use crate::values::template::Mode;

pub fn program(ctx: &HostContext, name: &str) -> Result<String, Failure> {
    let setting = format!("bin/{name}");
    if ctx.value(&setting)?.is_some() {
        let path = ctx.expand(&ctx.text(&setting)?, Mode::Plain)?;
        let found = if path.contains('/') {
            remembered(ctx, &path, |ctx| {
                Ok(ctx.transport.exists(&path)?.then_some(path.clone()))
            })?
        } else {
            remembered(ctx, &path, |ctx| Ok(ctx.transport.find_program(&path)?))?
        };
        return found.ok_or_else(|| {
            Failure::message(format!(
                "`{setting}` is `{path}`, which does not exist on host `{}`",
                ctx.host
            ))
            .with_hint(format!(
                "fix `{setting}` (e.g. `-o {setting}=/usr/bin/{name}`)"
            ))
        });
    }
    remembered(ctx, name, |ctx| Ok(ctx.transport.find_program(name)?))?.ok_or_else(|| {
        Failure::message(format!(
            "`{name}` is not installed on host `{}` (not on PATH)",
            ctx.host
        ))
        .with_hint(format!(
            "install it, or set `{setting}` to its path (e.g. `-o {setting}=/usr/bin/{name}`)"
        ))
    })
}

/// Look `names` up on the host's PATH in one wait (those not known yet, and not set by a
/// `bin/NAME` setting), so that a command starting several programs waits once for them.
pub fn find(ctx: &HostContext, names: &[&str]) -> Result<(), Failure> {
    let mut unknown = Vec::new();
    for name in names {
        let known = ctx
            .programs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(*name);
        if !known && ctx.value(&format!("bin/{name}"))?.is_none() {
            unknown.push(name.to_string());
        }
    }
    if unknown.len() < 2 {
        return Ok(());
    }
    let ops = unknown.iter().cloned().map(Op::FindProgram).collect();
    let answers = ctx.transport.query(ops)?;
    let mut programs = ctx.programs.lock().unwrap_or_else(|e| e.into_inner());
    for (name, answer) in unknown.into_iter().zip(answers) {
        programs.insert(name, answer.text());
    }
    Ok(())
}

/// Where `program` is on the host: looked up once per run (a round trip each time over SSH,
/// and php alone is started six to ten times per deploy).
fn remembered(
    ctx: &HostContext,
    program: &str,
    look_up: impl FnOnce(&HostContext) -> Result<Option<String>, Failure>,
) -> Result<Option<String>, Failure> {
    let known = ctx
        .programs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(program)
        .cloned();
    if let Some(found) = known {
        return Ok(found);
    }
    let found = look_up(ctx)?;
    ctx.programs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(program.to_string(), found.clone());
    Ok(found)
}

/// Where PHP keeps compiled scripts between zdd's PHP starts (`php_file_cache`).
pub const PHP_FILE_CACHE: &str = ".zdd/opcache";

/// `bin/php` as shell words, with OPcache's file cache in the deploy path when `php_file_cache`
/// is true (the default): a deploy starts PHP six to ten times (artisan, composer, zdd's
/// probes), each compiling the same framework; with the cache each start after the first
/// loads it compiled (measured: `artisan --version` 0.17 s -> 0.09 s). OPcache checks the
/// files' times, and skips files changed in the last two seconds, so a rewritten file is never
/// served stale. Without the directory (made by `prepare()`) PHP runs without the cache.
pub fn php(ctx: &HostContext) -> Result<Line, Failure> {
    let binary = Line::command(&[program(ctx, "php")?])?;
    if !ctx.boolean("php_file_cache", true)? {
        return Ok(binary);
    }
    let Ok(dir) = ctx.path(PHP_FILE_CACHE) else {
        return Ok(binary);
    };
    Ok(binary
        .text("-d opcache.enable_cli=1 -d")
        .arg(&format!("opcache.file_cache={dir}"))?)
}
