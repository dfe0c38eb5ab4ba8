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
/// and protect nothing.
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
        if let Ok(quoted) = crate::quote::word(value) {
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

    /// The values of every secret key of `config` (text values, and the text items of lists).
    pub fn learn(&self, config: &BTreeMap<String, Dynamic>) {
        for (key, value) in config {
            if self.is_secret(key) {
                for text in texts(value) {
                    self.add(&text);
                }
            }
        }
    }

    /// The values of a `.env` file (see [`env_values`]).
    pub fn learn_env_file(&self, text: &str) {
        for value in env_values(text) {
            self.add(&value);
        }
    }

    /// `text` with every secret value replaced by `[secret]`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Cow::Borrowed(text);
        for value in &inner.values {
            if out.contains(value.as_str()) {
                out = Cow::Owned(out.replace(value.as_str(), REDACTED));
            }
        }
        out
    }

    /// A serialized JSON document with every secret taken out of its strings. Escaping cannot
    /// hide a value: when one appears (as it is, or JSON-escaped) the document is parsed, its
    /// strings redacted and serialized again; otherwise it is returned unchanged, field order
    /// and all.
    pub fn redact_serialized<'a>(&self, json: &'a str) -> Cow<'a, str> {
        let appears = {
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

/// The values of a `.env` file that must never be shown: every value of [`MIN_LENGTH`] or more,
/// as written and unquoted, except plainly public ones ([`looks_public`]: `production`,
/// `127.0.0.1`, `http://localhost:8080`, `/srv/app/database.sqlite`) under a key whose name is
/// not secret (by the naming rule, or containing `key` like `APP_KEY`): those would be taken out
/// of every line that mentions them and hide nothing.
pub fn env_values(text: &str) -> Vec<String> {
    let mut values = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let raw = raw.trim();
        let unquoted = unquote(raw);
        let secret_key = secret_by_name(key) || key.to_ascii_lowercase().contains("key");
        if !secret_key && looks_public(unquoted) {
            continue;
        }
        for value in [raw, unquoted] {
            if value.chars().count() >= MIN_LENGTH && !values.iter().any(|v| v == value) {
                values.push(value.to_string());
            }
        }
    }
    values
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

/// A `.env` value without its quotes, or without a trailing ` # comment` when unquoted.
fn unquote(raw: &str) -> &str {
    for quote in ['"', '\''] {
        if raw.len() >= 2 && raw.starts_with(quote) && raw.ends_with(quote) {
            return &raw[1..raw.len() - 1];
        }
    }
    match raw.find(" #") {
        Some(index) => raw[..index].trim_end(),
        None => raw,
    }
}

/// The secret values of one host: its secret keys expanded, and every value of the shared
/// `.env` files the recipe links (`shared_files` entries named `.env`).
pub fn learn_from_host(ctx: &crate::context::HostContext) {
    let secrets = ctx.reporter.secrets();
    for key in ctx.config.keys().filter(|key| secrets.is_secret(key)) {
        if let Ok(Some(value)) = ctx.value(key) {
            if value.is_string() {
                if let Ok(expanded) = ctx.expand(&value.to_string(), crate::template::Mode::Plain) {
                    secrets.add(&expanded);
                }
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
        let quoted = crate::quote::word("it's s3cret").unwrap();
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
                    STRIPE_KEY=pk-live-public\nOTHER=sk_live_12345\nEMPTY=\n";
        assert_eq!(
            env_values(text),
            [
                "base64:abcdef==",
                "\"hunter2 quoted\"",
                "hunter2 quoted",
                "plainword",
                "redis.internal:6379",
                "redis://user:pa55@cache:6379/0",
                "http://x.test/a?token=abc",
                "pk-live-public",
                "sk_live_12345",
            ]
        );
    }
}
