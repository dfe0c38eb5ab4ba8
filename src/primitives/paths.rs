//! Checks on the relative paths a recipe lists (`shared_dirs`, `writable_dirs`, ...).

use crate::failure::Failure;

/// A path inside the release: relative, no `..`, no empty parts.
pub fn inside_release(setting: &str, path: &str) -> Result<String, Failure> {
    let trimmed = path.trim_end_matches('/');
    let bad = trimmed.is_empty()
        || trimmed.starts_with('/')
        || trimmed
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(Failure::message(format!(
            "`{setting}` entry `{path}` must be a relative path inside the release, without `..`"
        )));
    }
    Ok(trimmed.to_string())
}

/// The parent directory of a path, if it has one.
pub fn parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(parent, _)| parent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_inside_the_release() {
        assert_eq!(
            inside_release("shared_dirs", "storage/").unwrap(),
            "storage"
        );
        for bad in ["/etc", "../x", "a/../../b", "", "a//b"] {
            assert!(inside_release("shared_dirs", bad).is_err(), "{bad}");
        }
    }
}
