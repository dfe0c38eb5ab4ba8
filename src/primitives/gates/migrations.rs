//! `check_migrations()`: `artisan migrate --pretend` first, and refuse destructive statements
//! (DROP TABLE, DROP COLUMN, RENAME) unless `allow_destructive_migrations` is true: until the
//! swap, the old code still runs against the new schema, so a table or column it uses must not
//! disappear. Drop it a release after the code stopped using it.

use crate::context::HostContext;
use crate::failure::Failure;
use crate::primitives::artisan::artisan;

/// The statements of `--pretend` output that remove or rename something.
pub fn destructive(pretend_output: &str) -> Vec<String> {
    pretend_output
        .lines()
        .map(str::trim)
        .filter(|line| {
            let sql = line.to_ascii_lowercase();
            let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
            sql.contains("drop table")
                || sql.contains("drop column")
                || sql.contains(" rename to ")
                || sql.contains(" rename column ")
                || sql.starts_with("rename table")
                || sql.contains(": rename table")
        })
        .map(str::to_string)
        .collect()
}

pub fn check_migrations(ctx: &HostContext) -> Result<(), Failure> {
    let output = artisan(ctx, "migrate --pretend --force --no-interaction")?;
    let found = destructive(&output);
    if found.is_empty() {
        let pending = output
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("Nothing to migrate"))
            .count();
        ctx.info(&format!(
            "migrations: {pending} statement(s) pending, none destructive"
        ));
        return Ok(());
    }
    if ctx.boolean("allow_destructive_migrations", false)? {
        ctx.warn(&format!(
            "migrations: {} destructive statement(s) allowed by allow_destructive_migrations",
            found.len()
        ));
        return Ok(());
    }
    let list = found
        .iter()
        .map(|s| format!("\n  | {s}"))
        .collect::<String>();
    Err(Failure::message(format!(
        "the migrations drop or rename what the running release still uses:{list}"
    ))
    .with_hint(
        "ship the code that stops using it first and drop it in a later release, or allow it with `-o allow_destructive_migrations=true`",
    ))
}

#[cfg(test)]
mod tests {
    use super::destructive;

    #[test]
    fn finds_drops_and_renames() {
        let output = "CreatePosts: create table \"posts\" (\"id\" integer)\n\
                      DropLegacy: drop table \"legacy\"\n\
                      RenameUsers: alter table \"users\" rename to \"people\"\n\
                      TrimPosts: alter table \"posts\" drop column \"body\"\n\
                      Indexes: create index \"x\" on \"posts\" (\"id\")\n";
        assert_eq!(
            destructive(output),
            [
                "DropLegacy: drop table \"legacy\"",
                "RenameUsers: alter table \"users\" rename to \"people\"",
                "TrimPosts: alter table \"posts\" drop column \"body\"",
            ]
        );
    }
}
