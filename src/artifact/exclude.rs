//! Which paths of a build directory stay out of its archive: each pattern is a path relative to
//! the build directory (`storage`, `.env`, `public/hot`), whose components may hold `*` (any run
//! of characters) and `?` (one character). A pattern matches paths with as many components as
//! it has; an excluded directory takes everything under it along. `.git` (at any depth: the
//! repository and those of path packages) is always out.

use std::ffi::OsStr;

/// The name that is excluded wherever it appears.
const GIT: &str = ".git";

/// Refuse the patterns a build could not use (an empty one, a `..` component, a NUL byte),
/// naming the first, so that a recipe's settings fail before anything runs.
pub fn check_excludes(excludes: &[String]) -> anyhow::Result<()> {
    Excludes::parse(excludes).map(|_| ())
}

/// Patterns checked and split into components.
#[derive(Debug, Clone, Default)]
pub struct Excludes {
    patterns: Vec<Vec<String>>,
}

impl Excludes {
    /// Split each pattern into components, dropping a leading `/` or `./`, a trailing `/` and
    /// empty or `.` components; refuse what cannot name a path inside the build directory.
    pub fn parse(excludes: &[String]) -> anyhow::Result<Excludes> {
        let mut patterns = Vec::with_capacity(excludes.len());
        for pattern in excludes {
            if pattern.contains('\0') {
                anyhow::bail!(
                    "build exclude `{}` holds a NUL byte: a pattern names a path inside the \
                     build directory",
                    pattern.escape_debug()
                );
            }
            let components: Vec<String> = pattern
                .split('/')
                .filter(|component| !component.is_empty() && *component != ".")
                .map(str::to_string)
                .collect();
            if components.iter().any(|component| component == "..") {
                anyhow::bail!(
                    "build exclude `{pattern}` has a `..` component: a pattern names a path \
                     inside the build directory"
                );
            }
            if components.is_empty() {
                anyhow::bail!(
                    "build exclude `{pattern}` is empty: name a path inside the build directory \
                     (`storage`, `*.log`, `tests/*`)"
                );
            }
            patterns.push(components);
        }
        Ok(Excludes { patterns })
    }

    /// Whether the entry at `path` (its components from the build directory down) stays out:
    /// its last component is `.git`, or a pattern matches it component for component.
    /// Ancestors are not looked at: the walk never enters an excluded directory.
    pub fn excludes(&self, path: &[&OsStr]) -> bool {
        if path.last().is_some_and(|name| *name == GIT) {
            return true;
        }
        self.patterns.iter().any(|pattern| {
            pattern.len() == path.len()
                && pattern
                    .iter()
                    .zip(path)
                    .all(|(pattern, name)| matches(pattern, &name.to_string_lossy()))
        })
    }

    /// Whether `relative` (`a/b/c`, from the build directory) or one of its ancestors is
    /// excluded: for a symlink's target, which the walk reaches from elsewhere.
    pub fn excludes_path(&self, relative: &str) -> bool {
        let components: Vec<&OsStr> = relative
            .split('/')
            .filter(|c| !c.is_empty())
            .map(OsStr::new)
            .collect();
        (1..=components.len()).any(|length| self.excludes(&components[..length]))
    }
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters (none
/// included) and `?` for exactly one; every other character stands for itself.
fn matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut p, mut n) = (0, 0);
    // Where the last `*` was, and the position in `name` it has taken up to so far.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(c) if *c == '?' || *c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    star = Some((star_p, star_n + 1));
                    p = star_p + 1;
                    n = star_n + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excludes(patterns: &[&str]) -> Excludes {
        Excludes::parse(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn path(relative: &str) -> Vec<&OsStr> {
        relative.split('/').map(OsStr::new).collect()
    }

    #[test]
    fn wildcards_stand_for_characters_within_one_component() {
        assert!(matches("*.log", "laravel.log"));
        assert!(matches("*.log", ".log"));
        assert!(!matches("*.log", "laravel.log.1"));
        assert!(matches("*", "anything"));
        assert!(matches("a*b*c", "aXbYbZc"));
        assert!(!matches("a*b*c", "aXbYbZ"));
        assert!(matches("?.php", "é.php"));
        assert!(!matches("?.php", "ab.php"));
        assert!(matches("hot", "hot"));
        assert!(!matches("hot", "hots"));
        assert!(!matches("[ab]", "a"));
        assert!(matches("[ab]", "[ab]"));
    }

    #[test]
    fn a_pattern_matches_paths_with_as_many_components() {
        let ex = excludes(&[
            "storage",
            "/public/hot",
            "./.env",
            "node_modules/",
            "tests/*",
        ]);
        assert!(ex.excludes(&path("storage")));
        assert!(!ex.excludes(&path("app/storage")));
        assert!(ex.excludes(&path("public/hot")));
        assert!(!ex.excludes(&path("public")));
        assert!(ex.excludes(&path(".env")));
        assert!(!ex.excludes(&path(".env.example")));
        assert!(ex.excludes(&path("node_modules")));
        assert!(ex.excludes(&path("tests/Unit")));
        assert!(!ex.excludes(&path("tests")));
        assert!(!ex.excludes(&path("tests/Unit/ExampleTest.php")));
    }

    #[test]
    fn git_is_out_at_every_depth_without_a_pattern() {
        let ex = excludes(&[]);
        assert!(ex.excludes(&path(".git")));
        assert!(ex.excludes(&path("vendor/acme/pkg/.git")));
        assert!(!ex.excludes(&path(".gitignore")));
        assert!(!ex.excludes(&path(".github")));
    }

    #[test]
    fn a_path_under_an_excluded_directory_is_excluded() {
        let ex = excludes(&["storage"]);
        assert!(ex.excludes_path("storage/app/public"));
        assert!(ex.excludes_path("storage"));
        assert!(!ex.excludes_path("public/storage"));
        assert!(ex.excludes_path("vendor/.git/HEAD"));
    }

    #[test]
    fn bad_patterns_are_refused_naming_them() {
        let refused = |pattern: &str| {
            check_excludes(&["storage".to_string(), pattern.to_string()])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            refused("../secrets"),
            "build exclude `../secrets` has a `..` component: a pattern names a path inside \
             the build directory"
        );
        assert_eq!(
            refused("a/../../b"),
            "build exclude `a/../../b` has a `..` component: a pattern names a path inside \
             the build directory"
        );
        assert_eq!(
            refused(""),
            "build exclude `` is empty: name a path inside the build directory (`storage`, \
             `*.log`, `tests/*`)"
        );
        assert_eq!(
            refused("./"),
            "build exclude `./` is empty: name a path inside the build directory (`storage`, \
             `*.log`, `tests/*`)"
        );
        assert_eq!(
            refused("a\0b"),
            "build exclude `a\\0b` holds a NUL byte: a pattern names a path inside the build \
             directory"
        );
        assert!(check_excludes(&["storage".into(), "*.log".into(), "a//b/".into()]).is_ok());
    }
}
