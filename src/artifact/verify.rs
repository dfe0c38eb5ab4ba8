//! The check of an unpacked release against its build: every file of the manifest there with
//! its sha256, no regular file that the manifest does not list, as many regular files as the
//! archive held, and every kept symlink there with its target. The first path that differs
//! (in path order) is named; a truncated or altered transfer cannot pass.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use anyhow::Context;

use super::manifest::{self, sha256_file};

/// Check the tree at `destination` against `packed_manifest` (from [`super::Packed`]), its
/// `files` count and its `links`.
pub fn verify_tree(
    destination: &Path,
    packed_manifest: &str,
    files: usize,
    links: &[(String, String)],
) -> anyhow::Result<()> {
    let expected = manifest::parse(packed_manifest)?;
    if expected.len() != files {
        anyhow::bail!(
            "the manifest lists {} files, the archive holds {files}",
            expected.len()
        );
    }
    let mut found = BTreeSet::new();
    regular_files(destination, "", &mut found)?;
    let mut found = found.into_iter().peekable();
    for (path, sha256) in &expected {
        // Files there that sort before this one are not in the manifest.
        if let Some(extra) = found.next_if(|there| there < path) {
            anyhow::bail!("`./{extra}` is there, and not in the build's manifest");
        }
        if found.next_if(|there| there == path).is_none() {
            let what = match fs::symlink_metadata(destination.join(path)) {
                Ok(metadata) if metadata.is_dir() => "a directory, not a file",
                Ok(metadata) if metadata.is_symlink() => "a symlink, not a file",
                Ok(_) => "not a regular file",
                Err(_) => "missing",
            };
            anyhow::bail!("`./{path}` is {what}");
        }
        let there = sha256_file(&destination.join(path))
            .with_context(|| format!("cannot read `./{path}` to check it"))?;
        if there != *sha256 {
            anyhow::bail!(
                "`./{path}` differs from the build: its sha256 is {there}, the manifest says \
                 {sha256}"
            );
        }
    }
    if let Some(extra) = found.next() {
        anyhow::bail!("`./{extra}` is there, and not in the build's manifest");
    }
    for (path, target) in links {
        let relative = path.strip_prefix("./").unwrap_or(path);
        match fs::read_link(destination.join(relative)) {
            Ok(there) if there.as_os_str() == target.as_str() => {}
            Ok(there) => anyhow::bail!(
                "`./{relative}` points to `{}`, the build's link to `{target}`",
                there.display()
            ),
            Err(_) => anyhow::bail!("`./{relative}` is not there as a symlink to `{target}`"),
        }
    }
    Ok(())
}

/// The regular files under `directory` (packed at `relative`), as paths from the destination,
/// without following symlinks.
fn regular_files(
    directory: &Path,
    relative: &str,
    found: &mut BTreeSet<String>,
) -> anyhow::Result<()> {
    let shown = if relative.is_empty() {
        directory.display().to_string()
    } else {
        format!("./{relative}")
    };
    let read = || format!("cannot read the directory `{shown}` to check it");
    for child in fs::read_dir(directory).with_context(read)? {
        let child = child.with_context(read)?;
        let name = child.file_name().to_string_lossy().into_owned();
        let path = if relative.is_empty() {
            name
        } else {
            format!("{relative}/{name}")
        };
        let file_type = child.file_type().with_context(read)?;
        if file_type.is_dir() {
            regular_files(&child.path(), &path, found)?;
        } else if file_type.is_file() {
            found.insert(path);
        }
    }
    Ok(())
}
