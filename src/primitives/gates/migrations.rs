//! `check_migrations()`: `artisan migrate --pretend` first, and refuse destructive statements
//! (DROP TABLE, DROP COLUMN, RENAME) unless `allow_destructive_migrations` is true: until the
//! swap, the old code still runs against the new schema, so a table or column it uses must not
//! disappear. Drop it a release after the code stopped using it.

use crate::output::failure::Failure;
use crate::primitives::artisan::{app_path, artisan};
use crate::primitives::host_context::HostContext;

/// The lines of `--pretend` output (`Migration: sql`, one line per query) with a statement that
/// removes or renames a table or a column, in the SQL each of Laravel's schema grammars prints:
/// `drop table` (all), `drop column` (PostgreSQL, SQLite, SQL Server), MySQL's and MariaDB's
/// `alter table t drop c` (no `column`), `rename table` (MySQL), `alter table ... rename to`
/// (PostgreSQL, SQLite), `rename column`, MySQL's `change old new` (a rename through Doctrine
/// DBAL), and SQL Server's `sp_rename` (of a table or column). Dropping an index, a key, a
/// foreign key, a constraint, a check or a default, and renaming an index, remove nothing the
/// old code reads: they pass.
pub fn destructive(pretend_output: &str) -> Vec<String> {
    pretend_output
        .lines()
        .map(str::trim)
        .filter(|line| {
            let sql = match line.split_once(": ") {
                Some((_, sql)) => sql,
                None => line,
            };
            let sql = sql
                .to_ascii_lowercase()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            split_top_level(&sql, ';')
                .iter()
                .any(|statement| statement_is_destructive(statement.trim()))
        })
        .map(str::to_string)
        .collect()
}

/// One SQL statement, lower case, whitespace collapsed.
fn statement_is_destructive(sql: &str) -> bool {
    if let Some(rest) = sql.strip_prefix("alter table ") {
        return split_top_level(after_table_name(rest), ',')
            .iter()
            .any(|action| action_is_destructive(action.trim()));
    }
    if sql.starts_with("sp_rename ") || sql.starts_with("exec sp_rename ") {
        // Tables and columns; SQL Server's index renames say N'INDEX'.
        return !sql.contains("n'index'") && !sql.contains("'index'");
    }
    if sql.starts_with("rename table ") {
        return true;
    }
    // `drop table` may follow SQL Server's `if exists (...)`; a temporary table of Doctrine's
    // SQLite rebuild (`__temp__name`) holds nothing the old code reads.
    for word in ["drop table ", "drop view ", "drop database "] {
        if let Some(index) = sql.find(word) {
            let before = &sql[..index];
            let starts = before.is_empty() || before.ends_with(") ");
            let name = sql[index + word.len()..].trim_start_matches("if exists ");
            let temporary = name
                .trim_start_matches(['"', '`', '['])
                .starts_with("__temp__");
            if starts && !temporary {
                return true;
            }
        }
    }
    false
}

/// What follows `alter table`: the actions after the (possibly quoted, qualified) table name.
fn after_table_name(rest: &str) -> &str {
    let mut rest = rest;
    for prefix in ["if exists ", "only "] {
        rest = rest.strip_prefix(prefix).unwrap_or(rest);
    }
    let mut quote: Option<char> = None;
    for (index, c) in rest.char_indices() {
        match quote {
            Some(close) if c == close => quote = None,
            Some(_) => {}
            None => match c {
                '"' => quote = Some('"'),
                '`' => quote = Some('`'),
                '[' => quote = Some(']'),
                ' ' => return &rest[index + 1..],
                _ => {}
            },
        }
    }
    ""
}

/// One action of `alter table`.
fn action_is_destructive(action: &str) -> bool {
    const HARMLESS_DROPS: &[&str] = &[
        "index",
        "key",
        "foreign",
        "primary",
        "constraint",
        "check",
        "default",
        "unique",
        "fulltext",
        "spatial",
        "partition",
        "trigger",
        "period",
        "system",
    ];
    const HARMLESS_RENAMES: &[&str] = &["index", "key", "constraint"];
    let mut words = action.split(' ');
    match words.next() {
        // `drop column c`, MySQL's `drop c` and `drop if exists c`; not `drop index` & co.
        Some("drop") => !words.next().is_some_and(|w| HARMLESS_DROPS.contains(&w)),
        // `rename to t`, `rename as t`, `rename column a to b`, PostgreSQL's `rename a to b`.
        Some("rename") => !words.next().is_some_and(|w| HARMLESS_RENAMES.contains(&w)),
        // MySQL's `change [column] old new definition`: a rename when the names differ.
        Some("change") => {
            let mut names = words.skip_while(|w| *w == "column");
            let unquote = |w: &str| w.trim_matches(['`', '"']).to_string();
            match (names.next(), names.next()) {
                (Some(old), Some(new)) => unquote(old) != unquote(new),
                _ => false,
            }
        }
        _ => false,
    }
}

/// `text` split at `separator` where it is outside quotes and parentheses.
fn split_top_level(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut quote, mut start) = (0usize, None::<char>, 0);
    for (index, c) in text.char_indices() {
        match quote {
            Some(close) if c == close => quote = None,
            Some(_) => {}
            None => match c {
                '\'' | '"' | '`' => quote = Some(c),
                '[' => quote = Some(']'),
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ if c == separator && depth == 0 => {
                    parts.push(&text[start..index]);
                    start = index + c.len_utf8();
                }
                _ => {}
            },
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The output of `migrate --pretend` that the queued-jobs probe ran in its PHP start.
pub fn remember_pretend(ctx: &mut HostContext, output: &str) -> Result<(), Failure> {
    let key = format!("migrate --pretend {}", app_path(ctx)?);
    ctx.memo.insert(key, output.to_string());
    Ok(())
}

pub fn check_migrations(ctx: &mut HostContext) -> Result<(), Failure> {
    let key = format!("migrate --pretend {}", app_path(ctx)?);
    let output = match ctx.memo.remove(&key) {
        Some(output) => output,
        None => artisan(ctx, "migrate --pretend --force --no-interaction")?,
    };
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

    /// Each statement as `migrate --pretend` prints it (`Name: sql`), in the forms of Laravel's
    /// schema grammars (`Illuminate/Database/Schema/Grammars`) and Doctrine DBAL's renames.
    #[test]
    fn finds_drops_and_renames_in_every_grammar() {
        let destructive_statements = [
            // SQLite and PostgreSQL
            "drop table \"legacy\"",
            "drop table if exists \"legacy\"",
            "alter table \"users\" rename to \"people\"",
            "alter table \"posts\" drop column \"body\"",
            "alter table \"posts\" drop column \"body\", drop column \"title\"",
            "alter table \"posts\" rename column \"body\" to \"text\"",
            "ALTER TABLE posts RENAME body TO text",
            "drop table \"a\",\"b\" cascade",
            // MySQL and MariaDB
            "alter table `posts` drop `body`",
            "alter table `posts` add `x` int not null, drop `body`",
            "alter table `posts` drop column `body`",
            "alter table `posts` rename column `body` to `text`",
            "ALTER TABLE posts CHANGE body text LONGTEXT NOT NULL",
            "rename table `users` to `people`",
            "drop table `legacy`",
            // SQL Server
            "DECLARE @sql NVARCHAR(MAX) = '';SELECT @sql += 'ALTER TABLE [dbo].[posts] DROP CONSTRAINT ' + OBJECT_NAME([default_object_id]) + ';' FROM sys.columns WHERE [object_id] = OBJECT_ID('[dbo].[posts]') AND [name] in ('body') AND [default_object_id] <> 0;EXEC(@sql);alter table \"posts\" drop column \"body\"",
            "if exists (select * from sys.sysobjects where id = object_id(N'legacy', 'U')) drop table \"legacy\"",
            "sp_rename \"users\", \"people\"",
            "sp_rename 'posts.body', 'text', 'COLUMN'",
        ];
        let harmless = [
            "create table \"posts\" (\"id\" integer primary key autoincrement not null, \"drop\" varchar)",
            "alter table \"posts\" add column \"body\" text",
            "create index \"x\" on \"posts\" (\"id\")",
            // PostgreSQL
            "drop index \"posts_title_index\"",
            "alter table \"posts\" drop constraint \"posts_pkey\"",
            "alter table \"posts\" drop constraint \"posts_user_id_foreign\"",
            "alter index \"a\" rename to \"b\"",
            "alter table \"posts\" alter column \"title\" drop default",
            "alter table \"posts\" alter column \"title\" drop not null",
            // MySQL and MariaDB
            "alter table `posts` drop index `posts_title_index`",
            "alter table `posts` drop index `posts_title_unique`",
            "alter table `posts` drop foreign key `posts_user_id_foreign`",
            "alter table `posts` drop primary key",
            "alter table `posts` rename index `a` to `b`",
            "alter table `posts` alter `title` drop default",
            "ALTER TABLE posts CHANGE title title VARCHAR(100) NOT NULL",
            "alter table `posts` drop check `c`",
            // SQL Server
            "drop index \"a\" on \"posts\"",
            "sp_rename N'\"posts\".\"a\"', \"b\", N'INDEX'",
            // Doctrine's SQLite rebuild keeps its data in a temporary table
            "DROP TABLE __temp__posts",
            "insert into \"notes\" (\"text\") values ('drop table x; alter table y drop z')",
        ];
        for sql in destructive_statements {
            let line = format!("2030_01_01_000000_change: {sql}");
            assert_eq!(destructive(&line), vec![line.clone()], "destructive: {sql}");
        }
        for sql in harmless {
            let line = format!("2030_01_01_000000_change: {sql}");
            assert!(destructive(&line).is_empty(), "harmless: {sql}");
        }
        let output = "CreatePosts: create table \"posts\" (\"id\" integer)\n\
                      DropLegacy: drop table \"legacy\"\n\
                      Indexes: create index \"x\" on \"posts\" (\"id\")\n";
        assert_eq!(destructive(output), ["DropLegacy: drop table \"legacy\""]);
    }
}
