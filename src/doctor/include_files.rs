//! The files an `include` of nginx or php-fpm names: a path, or a glob (`sites-enabled/*`,
//! `pool.d/*.conf`) expanded on the host the way glob(3) does: sorted, no dot files unless the
//! pattern asks for them.

use crate::transport::Transport;

/// The files `pattern` names; a relative pattern is relative to `base` (a directory).
/// A pattern without wildcards names itself whether or not it exists.
pub fn expand(transport: &dyn Transport, pattern: &str, base: &str) -> anyhow::Result<Vec<String>> {
    let absolute = if pattern.starts_with('/') {
        pattern.to_string()
    } else {
        format!("{}/{pattern}", base.trim_end_matches('/'))
    };
    if !has_wildcard(&absolute) {
        return Ok(vec![absolute]);
    }
    let mut found = vec![String::new()];
    for part in absolute.split('/').filter(|p| !p.is_empty()) {
        let mut next = Vec::new();
        for dir in &found {
            if has_wildcard(part) {
                let listing = if dir.is_empty() { "/" } else { dir.as_str() };
                for name in transport.list_dir(listing)? {
                    if (!name.starts_with('.') || part.starts_with('.')) && matches(part, &name) {
                        next.push(format!("{dir}/{name}"));
                    }
                }
            } else {
                next.push(format!("{dir}/{part}"));
            }
        }
        found = next;
    }
    found.sort();
    Ok(found)
}

fn has_wildcard(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// Whether `name` matches the shell pattern `pattern` (`*`, `?`, `[abc]`, `[a-z]`, `[!a]`).
pub fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    matches_from(&pattern, &name)
}

fn matches_from(pattern: &[char], name: &[char]) -> bool {
    match pattern.first() {
        None => name.is_empty(),
        Some('*') => (0..=name.len()).any(|skip| matches_from(&pattern[1..], &name[skip..])),
        Some('?') => !name.is_empty() && matches_from(&pattern[1..], &name[1..]),
        Some('[') => {
            let Some(close) = pattern
                .iter()
                .skip(2)
                .position(|c| *c == ']')
                .map(|p| p + 2)
            else {
                return name.first() == Some(&'[') && matches_from(&pattern[1..], &name[1..]);
            };
            let Some(&c) = name.first() else {
                return false;
            };
            let mut set = &pattern[1..close];
            let negated = matches!(set.first(), Some('!' | '^'));
            if negated {
                set = &set[1..];
            }
            let mut hit = false;
            let mut index = 0;
            while index < set.len() {
                if index + 2 < set.len() && set[index + 1] == '-' {
                    hit |= set[index] <= c && c <= set[index + 2];
                    index += 3;
                } else {
                    hit |= set[index] == c;
                    index += 1;
                }
            }
            hit != negated && matches_from(&pattern[close + 1..], &name[1..])
        }
        Some(&literal) => name.first() == Some(&literal) && matches_from(&pattern[1..], &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_patterns() {
        assert!(matches("*.conf", "www.conf"));
        assert!(!matches("*.conf", "www.conf.bak"));
        assert!(matches("*", "default"));
        assert!(matches("site?", "site1"));
        assert!(matches("[a-c]*", "b.conf"));
        assert!(!matches("[!a-c]*", "b.conf"));
        assert!(matches("x[", "x["));
    }
}
