//! The manifest of an archive: one `sha256sum` line per regular file, `<hex>  ./rel/path`,
//! sorted by path, so that a host checks a release with `sha256sum -c --quiet --strict` and zdd
//! checks one with [`super::verify_tree`]. Hashes are computed from streams, never from a
//! whole file in memory.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

/// The size of the buffer files are read with.
pub const BUFFER: usize = 64 * 1024;

/// The sha256 of the file at `path` as lowercase hex, read in blocks.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; BUFFER];
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => hasher.update(&buffer[..read]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hex(&hasher.finalize()))
}

/// The sha256 of `text` as lowercase hex (what `sha256sum` says of a file holding it).
pub fn sha256_text(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[usize::from(byte >> 4)] as char);
        out.push(DIGITS[usize::from(byte & 0xf)] as char);
    }
    out
}

/// One line of the manifest for the file at `relative` (`app/X.php`, no `./`).
pub fn line(sha256: &str, relative: &str) -> String {
    format!("{sha256}  ./{relative}\n")
}

/// The list a host compares its release's symlinks with: one line `./path\\target` per link,
/// in byte order, as `find . -type l -printf '%p\\%l\n' | LC_ALL=C sort` prints them. Names
/// never hold a backslash or a newline, nor targets a newline (the packing refuses them), so
/// the first backslash of a line ends its path.
pub fn link_list(links: &[(String, String)]) -> String {
    let mut lines: Vec<String> = links
        .iter()
        .map(|(path, target)| format!("{path}\\{target}"))
        .collect();
    // Compared without their newlines, as sort compares them.
    lines.sort();
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// [`link_list`]'s text read back as (path, target); a line without its backslash is an
/// error naming its number.
pub fn parse_link_list(list: &str) -> anyhow::Result<Vec<(String, String)>> {
    list.lines()
        .enumerate()
        .map(|(index, line)| match line.split_once('\\') {
            Some((path, target)) => Ok((path.to_string(), target.to_string())),
            None => anyhow::bail!(
                "line {} of the build's link list is not `path\\target`",
                index + 1
            ),
        })
        .collect()
}

/// The manifest's lines as (path without `./`, sha256), sorted by path; a line that is not
/// `<64 hex digits>  ./path` is an error naming its number.
pub fn parse(manifest: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    for (index, line) in manifest.lines().enumerate() {
        let parsed = line.split_once("  ").and_then(|(sha256, path)| {
            let hex_digits = sha256.len() == 64
                && sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            let path = path.strip_prefix("./")?;
            (hex_digits && !path.is_empty()).then(|| (path.to_string(), sha256.to_string()))
        });
        match parsed {
            Some(file) => files.push(file),
            None => anyhow::bail!(
                "line {} of the manifest is not `<sha256>  ./path`: `{}`",
                index + 1,
                line.escape_debug()
            ),
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_hashes_as_sha256sum_says() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(
            sha256_file(&empty).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let abc = dir.path().join("abc");
        std::fs::write(&abc, b"abc").unwrap();
        assert_eq!(
            sha256_file(&abc).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        // Longer than one buffer.
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 1_000_000]).unwrap();
        assert_eq!(
            sha256_file(&big).unwrap(),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
        assert_eq!(sha256_text("abc"), sha256_file(&abc).unwrap());
        let missing = sha256_file(&dir.path().join("missing")).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn lines_are_read_back_sorted_and_bad_ones_named() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let manifest = format!("{}{}", line(&b, "z.php"), line(&a, "app/X.php"));
        assert_eq!(
            parse(&manifest).unwrap(),
            [
                ("app/X.php".to_string(), a.clone()),
                ("z.php".to_string(), b.clone())
            ]
        );
        let bad = format!("{}{} app/Y.php\n", line(&a, "x"), b);
        assert_eq!(
            parse(&bad).unwrap_err().to_string(),
            format!("line 2 of the manifest is not `<sha256>  ./path`: `{b} app/Y.php`")
        );
        let upper = format!("{}  ./x\n", "A".repeat(64));
        assert!(parse(&upper).is_err());
    }

    #[test]
    fn the_link_list_sorts_as_c_sort_does_and_reads_back() {
        let links = vec![
            ("./aB".to_string(), "z".to_string()),
            ("./a".to_string(), "y".to_string()),
            ("./a b".to_string(), "../x\\y".to_string()),
            ("./c".to_string(), "t\tu".to_string()),
            ("./c".to_string(), "t".to_string()),
        ];
        let list = link_list(&links);
        // What `find . -type l -printf '%p\\%l\n' | LC_ALL=C sort` prints for such links (the
        // two `./c` are one path twice only to show how sort orders a prefix).
        assert_eq!(list, "./a b\\../x\\y\n./aB\\z\n./a\\y\n./c\\t\n./c\\t\tu\n");
        let back = parse_link_list(&list).unwrap();
        assert_eq!(back[0], ("./a b".to_string(), "../x\\y".to_string()));
        assert_eq!(back.len(), 5);
        assert_eq!(link_list(&[]), "");
        assert_eq!(
            parse_link_list("./a\\y\n./b\n").unwrap_err().to_string(),
            "line 2 of the build's link list is not `path\\target`"
        );
    }
}
