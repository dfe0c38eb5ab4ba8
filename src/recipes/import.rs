//! Pure: an import string read as a shared recipe (`git+SCHEME://REPOSITORY@PIN/PATH`), and a
//! module path inside a repository. Everything hostile is refused here, before any fetch.

use std::fmt;

/// `import "git+https://git.example.com/acme/recipes.git@<commit>/laravel-acme"`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedImport {
    /// The repository as written, `git+` included: what errors and the lock file show.
    pub url: String,
    /// What git fetches: `url` without `git+`.
    pub fetch_url: String,
    pub pin: Pin,
    /// The module inside the repository, `/`-separated, never `..` or absolute.
    pub path: String,
}

/// What an import pins the repository to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pin {
    /// 40 hex digits (lowercase).
    Commit(String),
    /// A branch or tag: allowed only with an entry in `zdd.lock`.
    Ref(String),
}

impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pin::Commit(text) | Pin::Ref(text) => f.write_str(text),
        }
    }
}

/// The schemes a shared recipe may be fetched with.
const SCHEMES: [&str; 3] = ["https://", "ssh://", "file://"];

/// Whether `text` is meant as a shared recipe (starts with `git+`): such a string is either
/// read by [`parse`] or refused, never looked up as a file.
pub fn is_shared(text: &str) -> bool {
    text.starts_with("git+")
}

/// `text` read as a shared import; the error says what is wrong with it.
pub fn parse(text: &str) -> Result<SharedImport, String> {
    if let Some(bad) = text.chars().find(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "it contains {}: an import is one line without spaces",
            describe(bad)
        ));
    }
    let Some(rest) = text.strip_prefix("git+") else {
        return Err("a shared recipe starts with `git+`".to_string());
    };
    let Some(scheme) = SCHEMES.iter().find(|s| rest.starts_with(**s)) else {
        return Err(
            "the repository must be a `git+https://`, `git+ssh://` or `git+file://` URL"
                .to_string(),
        );
    };
    let after_scheme = &rest[scheme.len()..];
    let Some(at) = after_scheme.rfind('@') else {
        return Err(missing_pin());
    };
    let (repository, pinned) = (&after_scheme[..at], &after_scheme[at + 1..]);
    // `ssh://git@host/x.git/module` without a pin: the `@` found is the user's.
    if !repository.contains('/') {
        return Err(missing_pin());
    }
    let host = &repository[..repository.find('/').unwrap_or(repository.len())];
    let host = host.rsplit('@').next().unwrap_or(host);
    if *scheme == "file://" {
        if !host.is_empty() && host != "localhost" {
            return Err(
                "a `git+file://` URL names a path on this machine: `git+file:///path/to/repo.git`"
                    .to_string(),
            );
        }
    } else if host.is_empty() || host.starts_with('-') {
        return Err(format!("`{host}` is not a host name"));
    }
    let repository_path = &repository[host_end(repository)..];
    if repository_path.split('/').any(|part| part == "..") {
        return Err("the repository's path has a `..`".to_string());
    }
    let Some((pin, path)) = pinned.split_once('/') else {
        return Err(format!(
            "no module after `@{pinned}`: write `@{pinned}/NAME` (the module's path in the repository)"
        ));
    };
    let pin = read_pin(pin)?;
    let path = module_path(path)?;
    Ok(SharedImport {
        url: format!("git+{scheme}{repository}"),
        fetch_url: format!("{scheme}{repository}"),
        pin,
        path,
    })
}

/// Where the host part of `repository` (after the scheme) ends.
fn host_end(repository: &str) -> usize {
    repository.find('/').unwrap_or(repository.len())
}

fn missing_pin() -> String {
    "no `@COMMIT/` or `@TAG/` after the repository: a shared recipe is pinned, as in `git+https://host/recipes.git@<40-hex commit>/NAME`".to_string()
}

fn describe(c: char) -> String {
    match c {
        '\n' => "a newline".to_string(),
        ' ' => "a space".to_string(),
        c => format!("the character {:?}", c),
    }
}

/// 40 hex digits are a commit; a shorter or longer run of hex digits is refused (an abbreviated
/// commit pins nothing); anything else is a branch or tag, checked as git checks ref names.
fn read_pin(pin: &str) -> Result<Pin, String> {
    let hex = !pin.is_empty() && pin.chars().all(|c| c.is_ascii_hexdigit());
    if hex && pin.len() == 40 {
        return Ok(Pin::Commit(pin.to_ascii_lowercase()));
    }
    if hex && pin.len() >= 7 {
        return Err(format!(
            "`{pin}` is not a full commit id: a commit is pinned by all 40 hex digits"
        ));
    }
    let bad = pin.is_empty()
        || pin.starts_with('-')
        || pin.starts_with('.')
        || pin.ends_with('.')
        || pin.ends_with(".lock")
        || pin.contains("..")
        || pin.contains("@{")
        || pin.chars().any(|c| "~^:?*[\\".contains(c));
    if bad {
        return Err(format!(
            "`{pin}` is neither a commit id nor a branch or tag name"
        ));
    }
    Ok(Pin::Ref(pin.to_string()))
}

/// A module's path inside a repository: relative, plain parts, no `..`, `.` or empty part.
fn module_path(path: &str) -> Result<String, String> {
    if path.is_empty() {
        return Err("the module's name is empty".to_string());
    }
    for part in path.split('/') {
        match part {
            "" => {
                return Err(format!(
                    "`{path}` has an empty part: write `a/b`, not `a//b` or `a/`"
                ))
            }
            "." | ".." => {
                return Err(format!(
                    "`{path}` has a `{part}`: the module's path is inside the repository"
                ))
            }
            _ if part.contains('\\') => return Err(format!("`{path}` has a backslash")),
            _ => {}
        }
    }
    Ok(path.to_string())
}

/// Where `name`, imported by the module at `importer` (both inside one repository), is: next
/// to the importer, `..` allowed while it stays inside the repository.
pub fn join_in_repository(importer: &str, name: &str) -> Result<String, String> {
    if name.starts_with('/') {
        return Err(format!(
            "`{name}` is a path on this machine: a shared recipe imports only from its own repository"
        ));
    }
    if let Some(bad) = name.chars().find(|c| c.is_control() || *c == '\\') {
        return Err(format!("`{name}` contains {}", describe(bad)));
    }
    let mut parts: Vec<&str> = importer.split('/').collect();
    parts.pop();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("`{name}` leaves the repository"));
                }
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(format!("`{name}` names no file"));
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

    #[test]
    fn each_scheme_at_a_commit() {
        let read = parse(&format!(
            "git+https://git.example.com/acme/recipes.git@{COMMIT}/laravel-acme"
        ))
        .unwrap();
        assert_eq!(
            read,
            SharedImport {
                url: "git+https://git.example.com/acme/recipes.git".into(),
                fetch_url: "https://git.example.com/acme/recipes.git".into(),
                pin: Pin::Commit(COMMIT.into()),
                path: "laravel-acme".into(),
            }
        );
        let ssh = parse(&format!(
            "git+ssh://git@host:22/acme/r.git@{COMMIT}/a/b.rhai"
        ))
        .unwrap();
        assert_eq!(ssh.fetch_url, "ssh://git@host:22/acme/r.git");
        assert_eq!(ssh.path, "a/b.rhai");
        let file = parse(&format!("git+file:///tmp/x/recipes.git@{COMMIT}/m")).unwrap();
        assert_eq!(file.fetch_url, "file:///tmp/x/recipes.git");
        let upper = parse(&format!("git+file:///r@{}/m", COMMIT.to_uppercase())).unwrap();
        assert_eq!(upper.pin, Pin::Commit(COMMIT.into()));
    }

    #[test]
    fn a_branch_or_tag_is_a_ref() {
        let read = parse("git+ssh://git@host/acme/r.git@v1.2.0/laravel").unwrap();
        assert_eq!(read.pin, Pin::Ref("v1.2.0".into()));
        assert_eq!(read.url, "git+ssh://git@host/acme/r.git");
        assert_eq!(
            parse("git+file:///r.git@main/m").unwrap().pin,
            Pin::Ref("main".into())
        );
    }

    #[test]
    fn hostile_or_broken_strings_are_refused() {
        let refused = |text: &str| parse(text).expect_err(text);
        assert!(refused(&format!("git+file:///r@{COMMIT}/m\nx")).contains("a newline"));
        assert!(refused(&format!("git+file:///r@{COMMIT}/../etc/passwd")).contains("`..`"));
        assert!(refused(&format!("git+file:///r@{COMMIT}/a/../../b")).contains("`..`"));
        assert!(refused(&format!("git+file:///r@{COMMIT}/a//b")).contains("empty part"));
        assert!(refused(&format!("git+file:///r@{COMMIT}/")).contains("empty"));
        assert!(refused("git+file:///r@0123456789ab/m").contains("40 hex digits"));
        assert!(refused(&format!("git+file:///r@{COMMIT}0/m")).contains("40 hex digits"));
        assert!(refused("git+file:///r@-x/m").contains("neither"));
        assert!(refused("git+file:///r@a..b/m").contains("neither"));
        assert!(refused("git+file:///r.git/m").contains("no `@COMMIT/`"));
        assert!(refused("git+ssh://git@host/r.git/m").contains("no `@COMMIT/`"));
        assert!(refused(&format!("git+file:///r@{COMMIT}")).contains("no module"));
        assert!(refused(&format!("git+http://h/r@{COMMIT}/m")).contains("git+https://"));
        assert!(refused(&format!("git+ssh://-oProxyCommand=x/r@{COMMIT}/m")).contains("host"));
        assert!(refused(&format!("git+file://evil/r@{COMMIT}/m")).contains("this machine"));
        assert!(refused(&format!("git+file:///a/../r@{COMMIT}/m")).contains("`..`"));
        assert!(refused(&format!("git+file:///r @{COMMIT}/m")).contains("a space"));
    }

    #[test]
    fn names_inside_a_repository() {
        assert_eq!(
            join_in_repository("laravel.rhai", "common").unwrap(),
            "common"
        );
        assert_eq!(
            join_in_repository("sub/laravel.rhai", "common").unwrap(),
            "sub/common"
        );
        assert_eq!(
            join_in_repository("sub/laravel.rhai", "../lib/x").unwrap(),
            "lib/x"
        );
        assert!(join_in_repository("laravel.rhai", "../x")
            .unwrap_err()
            .contains("leaves the repository"));
        assert!(join_in_repository("a/b.rhai", "/etc/passwd")
            .unwrap_err()
            .contains("this machine"));
        assert!(join_in_repository("a/b.rhai", "..").is_err());
    }
}
