//! "Did you mean" for names the user mistyped.

/// The closest of `candidates` to `name`, if one is close enough to be a likely typo.
pub fn closest<'a, I: IntoIterator<Item = &'a str>>(name: &str, candidates: I) -> Option<String> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, candidate)| {
            *distance <= 1 + name.len().max(candidate.len()) / 4 && *distance < name.len()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_typos_and_ignores_strangers() {
        let names = ["deploy:symlink", "deploy:shared", "rollback"];
        assert_eq!(
            super::closest("deploy:symlnik", names).as_deref(),
            Some("deploy:symlink")
        );
        assert_eq!(super::closest("frobnicate", names), None);
    }
}
