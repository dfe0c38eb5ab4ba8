//! Secret values, and the one place they are taken out of what zdd prints and sends.
//!
//! A key is secret when the recipe says so (`secret("slack_webhook")`) or when its name says so
//! (it contains `password`, `secret`, `token`, `webhook`, `api_key` or `private_key`, in any
//! case). The values of secret keys, and the values of the shared `.env`, are replaced with
//! `[secret]` in progress lines, commands, command output, `--json` events, error messages and
//! notifications: the reporter and the error renderer both go through [`Secrets::redact`].

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::RwLock;

use rhai::Dynamic;

/// What a secret value is replaced with.
pub const REDACTED: &str = "[secret]";

/// Shorter values are not redacted: replacing every `root` or `true` would garble the output
/// and protect nothing. A secret of fewer characters (a 4-digit PIN) is therefore shown; the
/// README says so. The same holds for each line of a multi-line value.
pub const MIN_LENGTH: usize = 6;

/// A key whose name contains one of these (case-insensitive) is secret.
const SECRET_WORDS: [&str; 6] = [
    "password",
    "secret",
    "token",
    "webhook",
    "api_key",
    "private_key",
];

/// Whether `key`'s name makes it secret.
pub fn secret_by_name(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|word| key.contains(word))
}

/// The secret keys and values of one zdd command. Shared by every host of a run.
#[derive(Default)]
pub struct Secrets {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Keys declared with `secret()`.
    declared: BTreeSet<String>,
    /// Every value to take out, longest first (a value that contains another goes first).
    values: Vec<String>,
}

impl Secrets {
    /// `secret("key")`: the key is secret from now on, whatever its name.
    pub fn declare(&self, key: &str) {
        self.inner
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .declared
            .insert(key.to_string());
    }

    /// Whether `key` is secret, by declaration or by name.
    pub fn is_secret(&self, key: &str) -> bool {
        secret_by_name(key)
            || self
                .inner
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .declared
                .contains(key)
    }

    /// Never show `value`: as it is, as a shell word (commands show values quoted), and each of
    /// its lines (command output comes line by line). Values shorter than [`MIN_LENGTH`] are
    /// ignored.
    pub fn add(&self, value: &str) {
        let mut forms: Vec<String> = Vec::new();
        let mut push = |text: &str| {
            if text.chars().count() >= MIN_LENGTH && !forms.iter().any(|f| f == text) {
                forms.push(text.to_string());
            }
        };
        push(value);
        if let Ok(quoted) = crate::values::quote::word(value) {
            push(&quoted);
        }
        for line in value.lines() {
            push(line.trim());
        }
        if forms.is_empty() {
            return;
        }
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        for form in forms {
            if !inner.values.contains(&form) {
                inner.values.push(form);
            }
        }
        inner
            .values
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    }

    /// The values of every secret key of `config` (text values, and the text items of lists),
    /// and the password of every URL in any value (`repository` =
    /// `https://user:token@host/repo.git`).
    pub fn learn(&self, config: &BTreeMap<String, Dynamic>) {
        for (key, value) in config {
            self.learn_value(key, value);
        }
    }

    /// One value of `key` (see [`Secrets::learn`]).
    pub fn learn_value(&self, key: &str, value: &Dynamic) {
        let secret = self.is_secret(key);
        for text in texts(value) {
            if secret {
                self.add(&text);
            }
            for password in url_passwords(&text) {
                self.add(password);
            }
        }
    }

    /// The values of a `.env` file (see [`env_values`]).
    pub fn learn_env_file(&self, text: &str) {
        for value in env_values(text) {
            self.add(&value);
        }
    }

    /// `text` with every secret value, and the password of every URL
    /// (`scheme://user:password@host`), replaced by `[secret]`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Cow::Borrowed(text);
        for value in &inner.values {
            if out.contains(value.as_str()) {
                out = Cow::Owned(out.replace(value.as_str(), REDACTED));
            }
        }
        match redact_url_passwords(&out) {
            Cow::Borrowed(_) => out,
            Cow::Owned(redacted) => Cow::Owned(redacted),
        }
    }

    /// A serialized JSON document with every secret taken out of its strings. Escaping cannot
    /// hide a value: when one appears (as it is, or JSON-escaped) the document is parsed, its
    /// strings redacted and serialized again; otherwise it is returned unchanged, field order
    /// and all.
    pub fn redact_serialized<'a>(&self, json: &'a str) -> Cow<'a, str> {
        let appears = !url_password_ranges(json).is_empty() || {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            inner.values.iter().any(|value| {
                json.contains(value.as_str())
                    || serde_json::to_string(value)
                        .is_ok_and(|quoted| json.contains(&quoted[1..quoted.len() - 1]))
            })
        };
        if !appears {
            return Cow::Borrowed(json);
        }
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(mut value) => {
                self.redact_json(&mut value);
                Cow::Owned(value.to_string())
            }
            Err(_) => self.redact(json),
        }
    }

    /// Every string in a JSON value, redacted (before it is serialized, so escaping cannot hide
    /// a value).
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(text) => {
                if let Cow::Owned(redacted) = self.redact(text) {
                    *text = redacted;
                }
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|item| self.redact_json(item))
            }
            serde_json::Value::Object(map) => {
                map.values_mut().for_each(|item| self.redact_json(item))
            }
            _ => {}
        }
    }
}

/// The text of a configuration value: a string, or the strings of a list. Numbers and booleans
/// are not secrets.
fn texts(value: &Dynamic) -> Vec<String> {
    if value.is_string() {
        return vec![value.to_string()];
    }
    if value.is_array() {
        return value
            .clone()
            .into_array()
            .unwrap_or_default()
            .iter()
            .flat_map(texts)
            .collect();
    }
    Vec::new()
}

/// One `KEY=value` entry of a `.env` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    /// The value Laravel reads: quotes removed, escapes resolved, comment dropped.
    pub value: String,
    /// The value as it stands in the file (quotes included; before a `#` comment that follows
    /// whitespace): what a command that prints the file shows.
    pub written: String,
}

/// The entries of a `.env` file, read the way Laravel's dotenv (vlucas/phpdotenv 5) reads them:
/// `KEY=value` and `export KEY=value`; blank lines and `#` comment lines skipped; an unquoted
/// value ends at a `#`; a single-quoted value is taken as it is; a double-quoted value resolves
/// `\"`, `\\`, `\$`, `\n`, `\r`, `\t`, `\f`, `\v`; a quoted value may span lines and may be
/// followed by a `# comment`; `${OTHER}` references are kept as written (dotenv resolves them,
/// but the value they stand for is an entry of its own). Where phpdotenv would refuse the file
/// (an unclosed quote, a space inside an unquoted value, a bad escape) this reads on and keeps
/// more, never less: the point is what must never be shown.
pub fn parse_env(text: &str) -> Vec<EnvEntry> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let chars: Vec<char> = text.chars().collect();
    let mut entries = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let start = at;
        while at < chars.len() && chars[at] != '=' && chars[at] != '\n' {
            at += 1;
        }
        let head: String = chars[start..at].iter().collect();
        let head = head.trim();
        if chars.get(at) != Some(&'=') || head.starts_with('#') || head.is_empty() {
            // A blank line, a comment, or a name without a value.
            skip_line(&chars, &mut at);
            continue;
        }
        at += 1;
        while matches!(chars.get(at), Some(' ' | '\t')) {
            at += 1;
        }
        let (value, written) = match chars.get(at) {
            Some('"') => double_quoted(&chars, &mut at),
            Some('\'') => single_quoted(&chars, &mut at),
            _ => unquoted(&chars, &mut at),
        };
        // After a closing quote: blanks and a comment (anything else phpdotenv refuses).
        skip_line(&chars, &mut at);
        entries.push(EnvEntry {
            key: env_key(head),
            value,
            written,
        });
    }
    entries
}

/// Past the end of the current line.
fn skip_line(chars: &[char], at: &mut usize) {
    while *at < chars.len() && chars[*at] != '\n' {
        *at += 1;
    }
    *at += 1;
}

/// A key without `export ` and without quotes.
fn env_key(head: &str) -> String {
    let key = match head.strip_prefix("export") {
        Some(rest) if rest.starts_with([' ', '\t']) => rest.trim_start(),
        _ => head,
    };
    for quote in ['"', '\''] {
        if key.len() >= 3 && key.starts_with(quote) && key.ends_with(quote) {
            return key[1..key.len() - 1].to_string();
        }
    }
    key.to_string()
}

/// A double-quoted value starting at `chars[*at]` (the quote), up to its closing quote, lines
/// included.
fn double_quoted(chars: &[char], at: &mut usize) -> (String, String) {
    let (mut value, mut written) = (String::new(), String::from('"'));
    *at += 1;
    while let Some(&c) = chars.get(*at) {
        *at += 1;
        match c {
            '"' => {
                written.push(c);
                break;
            }
            '\\' => {
                let Some(&next) = chars.get(*at) else {
                    written.push(c);
                    value.push(c);
                    break;
                };
                *at += 1;
                written.push(c);
                written.push(next);
                match next {
                    '"' | '\\' | '$' => value.push(next),
                    'n' => value.push('\n'),
                    'r' => value.push('\r'),
                    't' => value.push('\t'),
                    'f' => value.push('\u{c}'),
                    'v' => value.push('\u{b}'),
                    other => {
                        value.push('\\');
                        value.push(other);
                    }
                }
            }
            other => {
                written.push(other);
                value.push(other);
            }
        }
    }
    (value, written)
}

/// A single-quoted value: everything up to the closing quote, as it is.
fn single_quoted(chars: &[char], at: &mut usize) -> (String, String) {
    let mut value = String::new();
    let mut closed = false;
    *at += 1;
    while let Some(&c) = chars.get(*at) {
        *at += 1;
        if c == '\'' {
            closed = true;
            break;
        }
        value.push(c);
    }
    let written = format!("'{value}{}", if closed { "'" } else { "" });
    (value, written)
}

/// An unquoted value: to the end of the line; Laravel's ends at the first `#`, the written one
/// at a `#` after whitespace.
fn unquoted(chars: &[char], at: &mut usize) -> (String, String) {
    let start = *at;
    while *at < chars.len() && chars[*at] != '\n' {
        *at += 1;
    }
    let line: String = chars[start..*at].iter().collect();
    let value = line.split('#').next().unwrap_or("").trim_end().to_string();
    let mut written = line.as_str();
    let mut previous = ' ';
    for (index, c) in line.char_indices() {
        if c == '#' && previous.is_whitespace() {
            written = &line[..index];
            break;
        }
        previous = c;
    }
    (value, written.trim_end().to_string())
}

/// The values of a `.env` file that must never be shown: every value of [`MIN_LENGTH`] or more
/// (see [`parse_env`]), as Laravel reads it, as written, and as written without its quotes,
/// except plainly public ones
/// ([`looks_public`]: `production`, `127.0.0.1`, `http://localhost:8080`,
/// `/srv/app/database.sqlite`) under a key whose name is not secret (by the naming rule, or
/// containing `key` like `APP_KEY`): those would be taken out of every line that mentions them
/// and hide nothing. A value made only of `${OTHER}` references is not a value of its own.
pub fn env_values(text: &str) -> Vec<String> {
    let mut values: Vec<String> = Vec::new();
    for entry in parse_env(text) {
        let secret_key =
            secret_by_name(&entry.key) || entry.key.to_ascii_lowercase().contains("key");
        if (!secret_key && looks_public(&entry.value)) || only_references(&entry.value) {
            continue;
        }
        let inner = ['"', '\''].iter().find_map(|quote| {
            entry
                .written
                .strip_prefix(*quote)
                .map(|rest| rest.strip_suffix(*quote).unwrap_or(rest).to_string())
        });
        for value in [Some(entry.value), Some(entry.written), inner]
            .into_iter()
            .flatten()
        {
            if value.chars().count() >= MIN_LENGTH && !values.contains(&value) {
                values.push(value);
            }
        }
    }
    values
}

/// Whether `value` is nothing but `${NAME}` references (and blanks).
fn only_references(value: &str) -> bool {
    let mut rest = value.trim();
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let Some(inner) = rest.strip_prefix("${") else {
            return false;
        };
        let Some((name, after)) = inner.split_once('}') else {
            return false;
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.'))
        {
            return false;
        }
        rest = after.trim_start();
    }
    true
}

/// Whether a value is plainly not a secret: a word (letters, `-`, `_`), a number or address
/// (digits and dots), an absolute path, or a URL without credentials, query or fragment.
fn looks_public(value: &str) -> bool {
    let path_chars = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
    };
    let word = value
        .chars()
        .all(|c| c.is_ascii_alphabetic() || matches!(c, '-' | '_'));
    let number = value.chars().all(|c| c.is_ascii_digit() || c == '.');
    let path = value.starts_with('/') && path_chars(value);
    let url = value.split_once("://").is_some_and(|(scheme, rest)| {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        !scheme.is_empty()
            && scheme.chars().all(|c| c.is_ascii_alphabetic())
            && authority
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'))
            && path_chars(path)
    });
    word || number || path || url
}

/// The authority (`user:password@host:port`) of each URL in `text`, with where it starts.
fn url_authorities(text: &str) -> Vec<(usize, &str)> {
    let mut authorities = Vec::new();
    let mut from = 0;
    while let Some(found) = text[from..].find("://") {
        let scheme_end = from + found;
        let authority_start = scheme_end + 3;
        from = authority_start;
        let scheme_ok = text[..scheme_end]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'));
        if !scheme_ok {
            continue;
        }
        let rest = &text[authority_start..];
        let authority_len = rest
            .find(|c: char| {
                c.is_whitespace()
                    || matches!(c, '/' | '?' | '#' | '"' | '\'' | '`' | '<' | '>' | '\\')
            })
            .unwrap_or(rest.len());
        authorities.push((authority_start, &rest[..authority_len]));
        from = authority_start + authority_len;
    }
    authorities
}

/// Where the password of each URL in `text` that carries one (`scheme://user:password@host`)
/// lies: byte ranges, in order.
fn url_password_ranges(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    for (start, authority) in url_authorities(text) {
        let Some(at) = authority.rfind('@') else {
            continue;
        };
        let Some(colon) = authority[..at].find(':') else {
            continue;
        };
        let password = &authority[colon + 1..at];
        if !password.is_empty() && password != REDACTED {
            ranges.push(start + colon + 1..start + at);
        }
    }
    ranges
}

/// Whether a URL in `text` names a user (`scheme://user@host`, `https://TOKEN@host`): a
/// credential, or the name of one.
pub fn names_url_user(text: &str) -> bool {
    url_authorities(text)
        .into_iter()
        .any(|(_, authority)| authority.contains('@'))
}

/// The passwords of the URLs in `text` (`scheme://user:password@host`).
pub fn url_passwords(text: &str) -> Vec<&str> {
    url_password_ranges(text)
        .into_iter()
        .map(|range| &text[range])
        .collect()
}

/// `text` with the password of every URL that carries one replaced by `[secret]`, whoever
/// the URL belongs to.
pub fn redact_url_passwords(text: &str) -> Cow<'_, str> {
    let ranges = url_password_ranges(text);
    if ranges.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for range in ranges {
        out.push_str(&text[last..range.start]);
        out.push_str(REDACTED);
        last = range.end;
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_make_keys_secret() {
        for key in [
            "db_password",
            "DB_PASSWORD",
            "slack_webhook",
            "webhook_url",
            "github_token",
            "app_secret",
            "stripe_api_key",
            "deploy_private_key",
        ] {
            assert!(secret_by_name(key), "{key}");
        }
        for key in [
            "deploy_path",
            "branch",
            "app_key",
            "keep_releases",
            "health_url",
        ] {
            assert!(!secret_by_name(key), "{key}");
        }
    }

    #[test]
    fn values_are_redacted_in_every_form() {
        let secrets = Secrets::default();
        secrets.add("it's s3cret");
        secrets.add("short");
        secrets.add("line-one-secret\nline-two-secret");
        let quoted = crate::values::quote::word("it's s3cret").unwrap();
        assert_eq!(secrets.redact(&format!("echo {quoted}")), "echo [secret]");
        assert_eq!(secrets.redact("value: it's s3cret"), "value: [secret]");
        assert_eq!(secrets.redact("short stays"), "short stays");
        assert_eq!(
            secrets.redact("  | line-two-secret"),
            "  | [secret]",
            "each line of a multi-line value"
        );
        let mut json = serde_json::json!({"a": ["x it's s3cret"], "b": 1});
        secrets.redact_json(&mut json);
        assert_eq!(json, serde_json::json!({"a": ["x [secret]"], "b": 1}));
        secrets.add("quote\"and\\slash");
        assert_eq!(
            secrets.redact_serialized(r#"{"z":"a quote\"and\\slash","a":1}"#),
            r#"{"a":1,"z":"a [secret]"}"#
        );
        assert_eq!(
            secrets.redact_serialized(r#"{"z":"nothing","a":1}"#),
            r#"{"z":"nothing","a":1}"#
        );
    }

    #[test]
    fn declared_keys_and_lists() {
        let secrets = Secrets::default();
        let mut config = BTreeMap::new();
        config.insert("deploy_key".to_string(), Dynamic::from("k3y-value"));
        config.insert("db_password".to_string(), Dynamic::from("pa55word"));
        config.insert(
            "api_tokens".to_string(),
            Dynamic::from_array(vec![Dynamic::from("token-one"), Dynamic::from_int(123456)]),
        );
        config.insert("branch".to_string(), Dynamic::from("main-branch"));
        secrets.declare("deploy_key");
        secrets.learn(&config);
        assert_eq!(
            secrets.redact("k3y-value pa55word token-one 123456 main-branch"),
            "[secret] [secret] [secret] 123456 main-branch"
        );
    }

    #[test]
    fn env_files() {
        let text = "# comment\nAPP_NAME=my-laravel_app\nAPP_ENV=production\nAPP_KEY=base64:abcdef==\n\
                    export DB_PASSWORD=\"hunter2 quoted\"\nDB_USERNAME=admin\nMAIL_PASSWORD=plainword\n\
                    DB_HOST=127.0.0.1 # local\nREDIS_URL=redis.internal:6379\n\
                    APP_URL=http://127.0.0.1:8080/app\nDB_DATABASE=/srv/app/database.sqlite\n\
                    CACHE_URL=redis://user:pa55@cache:6379/0\nHOOK=http://x.test/a?token=abc\n\
                    STRIPE_KEY=pk-live-public\nOTHER=sk_live_12345\nEMPTY=\n\
                    MAIL_FROM_NAME=\"${APP_NAME}\"\nESCAPED=\"say \\\"cheese\\\" now\"\n";
        assert_eq!(
            env_values(text),
            [
                "base64:abcdef==",
                "hunter2 quoted",
                "\"hunter2 quoted\"",
                "plainword",
                "redis.internal:6379",
                "redis://user:pa55@cache:6379/0",
                "http://x.test/a?token=abc",
                "pk-live-public",
                "sk_live_12345",
                "say \"cheese\" now",
                "\"say \\\"cheese\\\" now\"",
                "say \\\"cheese\\\" now",
            ]
        );
    }

    /// What Laravel's dotenv (vlucas/phpdotenv 5) reads from each `.env` text: key, value, and
    /// the value as written.
    #[test]
    fn env_parser() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----";
        /// Key, value and written value of each entry.
        type Entries<'a> = &'a [(&'a str, &'a str, &'a str)];
        let cases: &[(&str, Entries)] = &[
            ("FOO=bar", &[("FOO", "bar", "bar")]),
            ("  FOO = bar  ", &[("FOO", "bar", "bar")]),
            ("export FOO=bar", &[("FOO", "bar", "bar")]),
            ("export\tFOO=\"bar\"", &[("FOO", "bar", "\"bar\"")]),
            ("exported=1", &[("exported", "1", "1")]),
            ("\"FOO\"=bar", &[("FOO", "bar", "bar")]),
            ("# FOO=bar\n  # BAR=baz", &[]),
            ("FOO", &[]),
            ("FOO=bar # note", &[("FOO", "bar", "bar")]),
            ("FOO=bar#baz # note", &[("FOO", "bar", "bar#baz")]),
            ("FOO=#bar", &[("FOO", "", "")]),
            ("FOO=", &[("FOO", "", "")]),
            ("FOO=\"\"", &[("FOO", "", "\"\"")]),
            ("FOO=''", &[("FOO", "", "''")]),
            (
                "FOO=\"abc def\" # note",
                &[("FOO", "abc def", "\"abc def\"")],
            ),
            (
                "FOO='abc # def' # note",
                &[("FOO", "abc # def", "'abc # def'")],
            ),
            ("FOO=\"a # b\"", &[("FOO", "a # b", "\"a # b\"")]),
            (
                r#"FOO="a \"quoted\" \\ word""#,
                &[("FOO", r#"a "quoted" \ word"#, r#""a \"quoted\" \\ word""#)],
            ),
            (r"FOO='it\'s'", &[("FOO", r"it\", r"'it\'")]),
            (r#"FOO="one\ntwo""#, &[("FOO", "one\ntwo", r#""one\ntwo""#)]),
            (r#"FOO="\$HOME""#, &[("FOO", "$HOME", r#""\$HOME""#)]),
            ("FOO=${BAR}", &[("FOO", "${BAR}", "${BAR}")]),
            (
                "FOO=\"${BAR} and ${BAZ}\"",
                &[("FOO", "${BAR} and ${BAZ}", "\"${BAR} and ${BAZ}\"")],
            ),
            (
                "FOO=pgsql:host=localhost;dbname=test",
                &[(
                    "FOO",
                    "pgsql:host=localhost;dbname=test",
                    "pgsql:host=localhost;dbname=test",
                )],
            ),
            (
                "A=\"line one\nline two\" # note\nB=after",
                &[
                    ("A", "line one\nline two", "\"line one\nline two\""),
                    ("B", "after", "after"),
                ],
            ),
            (
                "A='line one\nline two'\nB=after",
                &[
                    ("A", "line one\nline two", "'line one\nline two'"),
                    ("B", "after", "after"),
                ],
            ),
            (
                "A=\"one\r\ntwo\"\r\nB=x\r\n",
                &[("A", "one\ntwo", "\"one\ntwo\""), ("B", "x", "x")],
            ),
            (
                "A=\"never closed\nB=x",
                &[("A", "never closed\nB=x", "\"never closed\nB=x")],
            ),
            ("A=abc def", &[("A", "abc def", "abc def")]),
        ];
        for (text, expected) in cases {
            let parsed: Vec<(String, String, String)> = parse_env(text)
                .into_iter()
                .map(|e| (e.key, e.value, e.written))
                .collect();
            let expected: Vec<(String, String, String)> = expected
                .iter()
                .map(|(k, v, w)| (k.to_string(), v.to_string(), w.to_string()))
                .collect();
            assert_eq!(parsed, expected, "{text:?}");
        }
        let file =
            format!("APP_ENV=production\nexport JWT_PRIVATE_KEY=\"{pem}\"\nAPP_DEBUG=false\n");
        let entries = parse_env(&file);
        assert_eq!(entries.len(), 3);
        assert_eq!(
            (entries[1].key.as_str(), entries[1].value.as_str()),
            ("JWT_PRIVATE_KEY", pem)
        );
        assert_eq!(entries[2].key, "APP_DEBUG");
    }

    #[test]
    fn multi_line_values_are_redacted_line_by_line() {
        let secrets = Secrets::default();
        secrets.learn_env_file(
            "JWT_PRIVATE_KEY=\"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n  BKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\"\n",
        );
        for line in [
            "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
            "  BKcwggSjAgEAAoIBAQC7",
            "-----END PRIVATE KEY-----",
        ] {
            assert!(!secrets.redact(line).contains("BAQ"), "{line}");
            assert!(secrets.redact(line).contains(REDACTED), "{line}");
        }
    }

    #[test]
    fn urls_that_name_a_user_are_told_apart() {
        for text in [
            "git fetch -- 'https://ghp_t0ken@github.com/org/repo.git'",
            "ssh://deploy@host/srv/repo.git",
            "x http://a:b@h/",
        ] {
            assert!(names_url_user(text), "{text}");
        }
        for text in [
            "git@github.com:org/repo.git",
            "https://github.com/org/repo.git",
            "/srv/repo.git user@host",
            "https://github.com/a/b@c",
        ] {
            assert!(!names_url_user(text), "{text}");
        }
    }

    #[test]
    fn url_passwords_are_always_redacted() {
        let secrets = Secrets::default();
        let cases = [
            (
                "cannot fetch `https://user:t0ken@github.com/org/repo.git`",
                "cannot fetch `https://user:[secret]@github.com/org/repo.git`",
            ),
            (
                "ssh://deploy:pass@host:22/srv",
                "ssh://deploy:[secret]@host:22/srv",
            ),
            ("redis://:pw@cache:6379", "redis://:[secret]@cache:6379"),
            (
                "postgres://u:p@ss@db/app?x=1",
                "postgres://u:[secret]@db/app?x=1",
            ),
            (
                "a http://a:b@x and git+ssh://c:d@y/",
                "a http://a:[secret]@x and git+ssh://c:[secret]@y/",
            ),
            (
                "https://token@github.com/r.git",
                "https://token@github.com/r.git",
            ),
            ("https://github.com/a:b/c@d", "https://github.com/a:b/c@d"),
            ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
            ("no url: a:b@c", "no url: a:b@c"),
            ("://x:y@z", "://x:y@z"),
            ("http://user:[secret]@host", "http://user:[secret]@host"),
        ];
        for (text, expected) in cases {
            assert_eq!(secrets.redact(text), expected, "{text}");
        }
        assert_eq!(
            secrets.redact_serialized(r#"{"error":"git clone http://u:s3cr3tT0ken@h/r.git"}"#),
            r#"{"error":"git clone http://u:[secret]@h/r.git"}"#
        );
        // The password is learned from any value, so it is taken out where it appears alone.
        let mut config = BTreeMap::new();
        config.insert(
            "repository".to_string(),
            Dynamic::from("http://user:s3cr3tT0ken@127.0.0.1:9/repo.git"),
        );
        secrets.learn(&config);
        assert_eq!(
            secrets.redact("password s3cr3tT0ken refused"),
            "password [secret] refused"
        );
    }
}
