//! The build as one file: a build directory packed into a deterministic tar.gz, with its sha256
//! and a `sha256sum` manifest of every regular file, and the way back (unpack, then verify the
//! tree against the manifest). Pure local file work: no hosts, no shell; the transports move
//! the archive and run the same checks where it lands.
//!
//! - [`exclude`]: which paths stay out (`build_exclude`, shared paths, `.git`).
//! - [`tree`]: the walk of the build directory: what goes in, sorted, names checked.
//! - [`link`]: what a symlink becomes: a link as stored, or the files it points at.
//! - [`pack`]: the archive itself, byte for byte the same for the same tree.
//! - [`manifest`]: sha256 of files and the manifest's lines.
//! - [`unpack`] and [`verify`]: the archive back into a directory, and the check of the result.
//! - [`inspect`]: what an archive holds, read back from its bytes (a cached archive is checked
//!   against what its build said before it is shipped again).

mod exclude;
mod inspect;
mod link;
mod manifest;
mod pack;
mod tree;
mod unpack;
mod verify;

#[cfg(test)]
mod tests;

pub use exclude::check_excludes;
pub use inspect::inspect;
pub use link::Links;
pub use manifest::{hex, link_list, parse_link_list, sha256_file, sha256_text};
pub use pack::{pack, pack_build, DEFAULT_LEVEL};
pub use unpack::unpack;
pub use verify::verify_tree;

/// What [`pack`] made: the archive's identity and what a host checks after unpacking it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Packed {
    /// Lowercase hex sha256 of the archive file's bytes.
    pub sha256: String,
    /// The archive's size in bytes.
    pub bytes: u64,
    /// How many regular files the archive holds.
    pub files: usize,
    /// The symlinks kept as links: (`./a/b`, the target as stored), sorted by path.
    pub links: Vec<(String, String)>,
    /// `sha256sum` text for every regular file, `<hex>  ./rel/path\n`, sorted by path (byte
    /// order): `cd release && sha256sum -c --quiet --strict MANIFEST` checks a release with it.
    pub manifest: String,
}
