//! `deploy:writable`: `writable_dirs` made writable for `http_user`, by `writable_mode`:
//! `chmod` (default, `writable_chmod_mode`), `acl` (setfacl), `chown`, or `skip`.

use super::{lock, paths};
use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::transport::Op;
use crate::values::quote;

pub fn make_writable(ctx: &mut HostContext) -> Result<(), Failure> {
    let dirs = ctx.list("writable_dirs")?;
    if dirs.is_empty() {
        return Ok(());
    }
    lock::hold(ctx)?;
    let mode = ctx.text("writable_mode")?;
    let recursive = ctx.boolean("writable_recursive", true)?;
    let release_path = ctx.release_path()?;
    let dirs = dirs
        .iter()
        .map(|dir| paths::inside_release("writable_dirs", dir))
        .collect::<Result<Vec<_>, _>>()?;
    let facts = paths::Facts::gather(ctx, &release_path, &dirs, &[])?;
    // `chmod -R dir/` acts on what `dir` points at: only a real directory of the release or a
    // shared dir's link, never a symlink the repository brought. All are checked first.
    for dir in &dirs {
        paths::check_whole(&facts, &release_path, "writable_dirs", dir)?;
    }
    for dir in dirs {
        let path = format!("{release_path}/{dir}");
        ctx.send(Op::CreateDirAll(path.clone()))?;
        // A trailing slash makes the tools follow a shared-dir symlink to its directory.
        let target = format!("{path}/");
        let mut argv: Vec<String> = match mode.as_str() {
            "skip" => return Ok(()),
            "chmod" => vec!["chmod".into(), ctx.text("writable_chmod_mode")?],
            "chown" => vec!["chown".into(), http_user(ctx)?],
            "acl" => {
                let user = http_user(ctx)?;
                vec![
                    "setfacl".into(),
                    "-L".into(),
                    "-m".into(),
                    format!("u:{user}:rwX"),
                    "-m".into(),
                    format!("d:u:{user}:rwX"),
                ]
            }
            other => {
                return Err(Failure::message(format!(
                    "`writable_mode` is `{other}`; it must be one of chmod, acl, chown, skip"
                )))
            }
        };
        if recursive {
            argv.insert(1, "-R".into());
        }
        if mode != "acl" {
            argv.push("--".into());
        }
        argv.push(target);
        let command = quote::command(&argv)?;
        ctx.send_command(command)?;
    }
    Ok(())
}

fn http_user(ctx: &HostContext) -> Result<String, Failure> {
    ctx.text("http_user").map_err(|f| {
        f.with_hint("`writable_mode` acl and chown need `http_user`, the user php-fpm runs as")
    })
}
