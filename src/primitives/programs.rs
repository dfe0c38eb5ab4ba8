//! The programs a primitive starts (`php`, `composer`, `npm`): `bin/NAME` when the recipe sets
//! it, otherwise found on the host's PATH. Missing is an error naming the setting.

use crate::context::HostContext;
use crate::failure::Failure;
use crate::template::Mode;

pub fn program(ctx: &HostContext, name: &str) -> Result<String, Failure> {
    let setting = format!("bin/{name}");
    if ctx.value(&setting)?.is_some() {
        let path = ctx.expand(&ctx.text(&setting)?, Mode::Plain)?;
        let found = if path.contains('/') {
            ctx.transport.exists(&path)?.then_some(path.clone())
        } else {
            ctx.transport.find_program(&path)?
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
    ctx.transport.find_program(name)?.ok_or_else(|| {
        Failure::message(format!(
            "`{name}` is not installed on host `{}` (not on PATH)",
            ctx.host
        ))
        .with_hint(format!(
            "install it, or set `{setting}` to its path (e.g. `-o {setting}=/usr/bin/{name}`)"
        ))
    })
}
