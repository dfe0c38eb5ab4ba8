//! The artifact from end to end: a Laravel-shaped build directory packed, unpacked by zdd and by
//! GNU tar, and checked; what must never pass (a truncated or altered archive or release)
//! doesn't.

use std::fs::{self, File, FileTimes};
use std::io::Read;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use super::*;

const MTIME: u64 = 1_700_000_000;

/// A directory nested deep enough that its paths need GNU long names (over 100 bytes).
const DEEP: &str = "resources/views/vendor/a-package-with-a-long-name/components/forms/\
                    inputs/with-a-long-name-too";

/// Bytes gzip cannot shrink, so that an archive cut in the middle is cut inside a file.
fn noise(length: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn write(root: &Path, relative: &str, contents: &[u8]) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

/// A build directory as a Laravel deploy has it, with the things zdd must leave out.
fn build(root: &Path) {
    write(root, "app/Http/Kernel.php", b"<?php // kernel\n");
    write(root, "app/Models/User.php", b"<?php // user\n");
    write(root, "artisan", b"#!/usr/bin/env php\n<?php\n");
    fs::set_permissions(root.join("artisan"), fs::Permissions::from_mode(0o755)).unwrap();
    write(root, "bootstrap/app.php", b"<?php return 1;\n");
    fs::create_dir_all(root.join("bootstrap/cache")).unwrap();
    write(root, "public/index.php", b"<?php // front\n");
    write(root, "public/build/app.js", &noise(300_000, 7));
    symlink("../storage/app/public", root.join("public/storage")).unwrap();
    write(root, "storage/app/public/.gitignore", b"*\n");
    write(root, "storage/logs/laravel.log", b"log\n");
    write(root, ".env", b"APP_KEY=secret\n");
    write(root, ".git/HEAD", b"ref: refs/heads/main\n");
    write(root, "node_modules/x/index.js", b"x\n");
    write(root, "tests/Unit/ExampleTest.php", b"<?php\n");
    write(root, "vendor/autoload.php", b"<?php // autoload\n");
    write(root, &format!("{DEEP}/text.blade.php"), b"<input>\n");
    symlink(
        format!("../../../../../../../../{DEEP}/text.blade.php"),
        root.join(format!("{DEEP}/alias.blade.php")),
    )
    .unwrap();
}

/// What a deploy leaves out.
fn excludes() -> Vec<String> {
    ["storage", "/.env", "node_modules/", "tests/*", "*.log"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Every path under `root` (files, directories, symlinks), sorted.
fn every_path(root: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for child in fs::read_dir(&dir).unwrap() {
            let child = child.unwrap();
            paths.push(child.path());
            if child.file_type().unwrap().is_dir() {
                stack.push(child.path());
            }
        }
    }
    paths.sort();
    paths
}

/// Each tar entry's path, in archive order.
fn entry_paths(archive: &Path) -> Vec<String> {
    let decoder = flate2::read::GzDecoder::new(File::open(archive).unwrap());
    let mut archive = tar::Archive::new(decoder);
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// A packed build in a temp dir: (temp dir, build root, archive, what pack said).
fn packed() -> (tempfile::TempDir, PathBuf, PathBuf, Packed) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("build");
    build(&root);
    let archive = dir.path().join("build.tar.gz");
    let packed = pack(&root, &excludes(), MTIME, &archive).unwrap();
    (dir, root, archive, packed)
}

/// A new empty directory under `dir`.
fn empty(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    fs::create_dir(&path).unwrap();
    path
}

#[test]
fn the_same_tree_packs_to_the_same_bytes_whatever_its_mtimes_and_owners() {
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    build(&first);
    build(&second);
    // The second copy was touched a day later and belongs to someone else.
    let later = SystemTime::UNIX_EPOCH + Duration::from_secs(MTIME + 86_400);
    for path in every_path(&second) {
        if !path.is_symlink() {
            File::open(&path)
                .unwrap()
                .set_times(FileTimes::new().set_modified(later))
                .unwrap();
        }
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::lchown(&path, Some(1234), Some(1234)).unwrap();
        }
    }
    let one = pack(&first, &excludes(), MTIME, &dir.path().join("1.tar.gz")).unwrap();
    let two = pack(&second, &excludes(), MTIME, &dir.path().join("2.tar.gz")).unwrap();
    let again = pack(&first, &excludes(), MTIME, &dir.path().join("3.tar.gz")).unwrap();
    assert_eq!(one, two);
    assert_eq!(one, again);
    let bytes = fs::read(dir.path().join("1.tar.gz")).unwrap();
    assert_eq!(bytes, fs::read(dir.path().join("2.tar.gz")).unwrap());
    assert_eq!(one.bytes, bytes.len() as u64);
    assert_eq!(
        one.sha256,
        sha256_file(&dir.path().join("1.tar.gz")).unwrap()
    );
    // The mtime given is what goes in.
    let other = pack(&first, &excludes(), MTIME + 1, &dir.path().join("4.tar.gz")).unwrap();
    assert_ne!(other.sha256, one.sha256);
}

#[test]
fn headers_carry_nothing_of_the_machine() {
    let (_dir, _root, archive, _packed) = packed();
    let bytes = fs::read(&archive).unwrap();
    // gzip: no flags (no file name), mtime 0.
    assert_eq!(bytes[..4], [0x1f, 0x8b, 8, 0]);
    assert_eq!(bytes[4..8], [0, 0, 0, 0]);
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(&bytes[..]));
    let mut paths = Vec::new();
    for entry in tar.entries().unwrap() {
        let entry = entry.unwrap();
        let header = entry.header();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        assert_eq!(header.uid().unwrap(), 0, "{path}");
        assert_eq!(header.gid().unwrap(), 0, "{path}");
        assert_eq!(header.username().unwrap(), Some(""), "{path}");
        assert_eq!(header.groupname().unwrap(), Some(""), "{path}");
        assert_eq!(header.mtime().unwrap(), MTIME, "{path}");
        let mode = header.mode().unwrap();
        assert_eq!(mode & !0o777, 0, "{path}");
        if path == "artisan" {
            assert_eq!(mode, 0o755);
        }
        paths.push(path);
    }
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted);
    // Relative, with no `./`, and no entry for the root itself.
    assert!(paths
        .iter()
        .all(|p| !p.is_empty() && !p.starts_with("./") && !p.starts_with('/')));
}

#[test]
fn excludes_git_and_wildcards_leave_out_what_they_name() {
    let (_dir, _root, archive, packed) = packed();
    let components: Vec<&str> = DEEP.split('/').collect();
    let deep = (1..=components.len()).map(|length| components[..length].join("/"));
    let mut expected: Vec<String> = [
        "app",
        "app/Http",
        "app/Http/Kernel.php",
        "app/Models",
        "app/Models/User.php",
        "artisan",
        "bootstrap",
        "bootstrap/app.php",
        "bootstrap/cache",
        "public",
        "public/build",
        "public/build/app.js",
        "public/index.php",
        "public/storage",
        "tests",
        "vendor",
        "vendor/autoload.php",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(deep)
    .chain([
        format!("{DEEP}/alias.blade.php"),
        format!("{DEEP}/text.blade.php"),
    ])
    .collect();
    expected.sort();
    assert_eq!(entry_paths(&archive), expected);
    assert_eq!(packed.files, 8);
    let manifest_paths: Vec<&str> = packed
        .manifest
        .lines()
        .map(|line| line.split_once("  ").unwrap().1)
        .collect();
    assert_eq!(
        manifest_paths,
        [
            "./app/Http/Kernel.php".to_string(),
            "./app/Models/User.php".into(),
            "./artisan".into(),
            "./bootstrap/app.php".into(),
            "./public/build/app.js".into(),
            "./public/index.php".into(),
            format!("./{DEEP}/text.blade.php"),
            "./vendor/autoload.php".into(),
        ]
    );
}

#[test]
fn links_inside_stay_links_and_links_outside_become_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("build");
    build(&root);
    let package = dir.path().join("packages/pkg");
    write(&package, "src/Service.php", b"<?php // service\n");
    write(&package, "composer.json", b"{}\n");
    write(&package, ".git/HEAD", b"x\n");
    fs::set_permissions(package.join("src"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::create_dir_all(root.join("vendor/acme")).unwrap();
    symlink(&package, root.join("vendor/acme/pkg")).unwrap();
    symlink(
        package.join("composer.json"),
        root.join("vendor/acme/pkg.json"),
    )
    .unwrap();
    // Absolute, inside: made relative.
    symlink(root.join("app/Models"), root.join("vendor/models")).unwrap();
    let archive = dir.path().join("a.tar.gz");
    let packed = pack(&root, &excludes(), MTIME, &archive).unwrap();
    assert_eq!(
        packed.links,
        [
            (
                "./public/storage".to_string(),
                "../storage/app/public".to_string()
            ),
            (
                format!("./{DEEP}/alias.blade.php"),
                format!("../../../../../../../../{DEEP}/text.blade.php")
            ),
            ("./vendor/models".into(), "../app/Models".into()),
        ]
    );
    assert_eq!(packed.files, 11);
    for path in [
        "./vendor/acme/pkg.json",
        "./vendor/acme/pkg/composer.json",
        "./vendor/acme/pkg/src/Service.php",
    ] {
        assert!(packed.manifest.contains(&format!("  {path}\n")), "{path}");
    }
    assert!(!packed.manifest.contains(".git/"));
    let destination = empty(dir.path(), "release");
    unpack(&archive, &destination).unwrap();
    verify_tree(&destination, &packed.manifest, packed.files, &packed.links).unwrap();
    let pkg = fs::symlink_metadata(destination.join("vendor/acme/pkg")).unwrap();
    assert!(pkg.is_dir());
    let src = fs::metadata(destination.join("vendor/acme/pkg/src")).unwrap();
    assert_eq!(src.permissions().mode() & 0o777, 0o750);
    assert_eq!(
        fs::read(destination.join("vendor/models/User.php")).unwrap(),
        b"<?php // user\n"
    );
}

#[test]
fn a_dangling_link_and_a_fifo_are_refused_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("build");
    build(&root);
    symlink("../missing.php", root.join("public/gone.php")).unwrap();
    let archive = dir.path().join("a.tar.gz");
    assert_eq!(
        pack(&root, &excludes(), MTIME, &archive)
            .unwrap_err()
            .to_string(),
        "cannot pack `public/gone.php`: it is a symlink to `../missing.php`, which does not \
         exist"
    );
    assert!(!archive.exists());
    fs::remove_file(root.join("public/gone.php")).unwrap();
    nix::unistd::mkfifo(&root.join("bootstrap/queue"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    assert_eq!(
        pack(&root, &excludes(), MTIME, &archive)
            .unwrap_err()
            .to_string(),
        "cannot pack `bootstrap/queue`: it is a FIFO (named pipe); an archive holds files, \
         directories and symlinks only"
    );
    fs::remove_file(root.join("bootstrap/queue")).unwrap();
    symlink("/dev/null", root.join("public/null")).unwrap();
    assert_eq!(
        pack(&root, &excludes(), MTIME, &archive)
            .unwrap_err()
            .to_string(),
        "cannot pack `public/null`: it is a symlink to a character device; an archive holds \
         files, directories and symlinks only"
    );
}

#[test]
fn a_name_with_a_newline_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("build");
    build(&root);
    write(&root, "public/two\nlines.css", b"x");
    assert_eq!(
        pack(&root, &excludes(), MTIME, &dir.path().join("a.tar.gz"))
            .unwrap_err()
            .to_string(),
        "cannot pack `public/two\\nlines.css`: its name holds a newline, which a sha256sum \
         manifest cannot carry"
    );
}

#[test]
fn bad_excludes_stop_pack_before_it_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("build");
    build(&root);
    let archive = dir.path().join("a.tar.gz");
    assert_eq!(
        pack(&root, &["../shared".into()], MTIME, &archive)
            .unwrap_err()
            .to_string(),
        "build exclude `../shared` has a `..` component: a pattern names a path inside the \
         build directory"
    );
    assert!(!archive.exists());
}

#[test]
fn a_round_trip_gives_back_the_tree_with_its_modes_and_mtime() {
    let (dir, root, archive, packed) = packed();
    let destination = empty(dir.path(), "release");
    unpack(&archive, &destination).unwrap();
    verify_tree(&destination, &packed.manifest, packed.files, &packed.links).unwrap();
    for relative in ["artisan", "public/build/app.js", DEEP] {
        assert_eq!(
            fs::read(root.join(relative)).ok(),
            fs::read(destination.join(relative)).ok(),
            "{relative}"
        );
        let metadata = fs::metadata(destination.join(relative)).unwrap();
        assert_eq!(
            metadata.modified().unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(MTIME),
            "{relative}"
        );
        assert_eq!(
            metadata.permissions().mode() & 0o777,
            fs::metadata(root.join(relative))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            "{relative}"
        );
    }
    assert!(fs::metadata(destination.join("bootstrap/cache"))
        .unwrap()
        .is_dir());
    assert_eq!(
        fs::read_link(destination.join("public/storage")).unwrap(),
        Path::new("../storage/app/public")
    );
    assert_eq!(
        fs::read(destination.join(format!("{DEEP}/alias.blade.php"))).unwrap(),
        b"<input>\n"
    );
    for absent in [".git", ".env", "storage", "node_modules", "tests/Unit"] {
        assert!(!destination.join(absent).exists(), "{absent}");
    }
}

#[test]
fn verify_tree_names_the_first_path_that_differs() {
    let (dir, _root, archive, packed) = packed();
    let check = |change: &dyn Fn(&Path)| {
        let destination = tempfile::tempdir_in(dir.path()).unwrap();
        unpack(&archive, destination.path()).unwrap();
        change(destination.path());
        verify_tree(
            destination.path(),
            &packed.manifest,
            packed.files,
            &packed.links,
        )
        .unwrap_err()
        .to_string()
    };
    assert_eq!(
        check(&|d| fs::remove_file(d.join("bootstrap/app.php")).unwrap()),
        "`./bootstrap/app.php` is missing"
    );
    let flipped = check(&|d| {
        let path = d.join("public/build/app.js");
        let mut bytes = fs::read(&path).unwrap();
        bytes[150_000] ^= 1;
        fs::write(&path, bytes).unwrap();
    });
    assert!(
        flipped.starts_with("`./public/build/app.js` differs from the build: its sha256 is "),
        "{flipped}"
    );
    assert_eq!(
        check(&|d| fs::write(d.join("app/Http/Extra.php"), "x").unwrap()),
        "`./app/Http/Extra.php` is there, and not in the build's manifest"
    );
    assert_eq!(
        check(&|d| fs::write(d.join("zz.php"), "x").unwrap()),
        "`./zz.php` is there, and not in the build's manifest"
    );
    assert_eq!(
        check(&|d| {
            fs::remove_file(d.join("public/storage")).unwrap();
            symlink("/tmp", d.join("public/storage")).unwrap();
        }),
        "`./public/storage` points to `/tmp`, the build's link to `../storage/app/public`"
    );
    assert_eq!(
        check(&|d| fs::remove_file(d.join("public/storage")).unwrap()),
        "`./public/storage` is not there as a symlink to `../storage/app/public`"
    );
    assert_eq!(
        check(&|d| {
            fs::remove_file(d.join("artisan")).unwrap();
            fs::create_dir(d.join("artisan")).unwrap();
        }),
        "`./artisan` is a directory, not a file"
    );
    // A manifest and a count that disagree.
    let destination = empty(dir.path(), "count");
    unpack(&archive, &destination).unwrap();
    assert_eq!(
        verify_tree(
            &destination,
            &packed.manifest,
            packed.files + 1,
            &packed.links
        )
        .unwrap_err()
        .to_string(),
        "the manifest lists 8 files, the archive holds 9"
    );
}

#[test]
fn a_cut_or_altered_archive_never_passes() {
    let (dir, _root, archive, packed) = packed();
    let bytes = fs::read(&archive).unwrap();
    let length = bytes.len();
    let mut cuts: Vec<usize> = (1..16).map(|i| length * i / 16).collect();
    cuts.extend([10, 512, length - 9, length - 8, length - 4, length - 1]);
    for cut in cuts {
        let cut_archive = dir.path().join(format!("cut-{cut}.tar.gz"));
        fs::write(&cut_archive, &bytes[..cut]).unwrap();
        let destination = empty(dir.path(), &format!("cut-{cut}"));
        let unpacked = unpack(&cut_archive, &destination);
        let error = unpacked.unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "the archive `{}` is damaged or cut short",
                cut_archive.display()
            ),
            "cut at {cut} of {length}"
        );
        // Cut before the last file's bytes, the check catches what was unpacked too (cut
        // in the gzip trailer, every file may be whole: the archive is refused all the same).
        if cut <= length * 15 / 16 {
            assert!(
                verify_tree(&destination, &packed.manifest, packed.files, &packed.links).is_err(),
                "cut at {cut} of {length}"
            );
        }
    }
    for at in [length / 3, length / 2, length - 6] {
        let mut altered = bytes.clone();
        altered[at] ^= 0x10;
        let altered_archive = dir.path().join(format!("altered-{at}.tar.gz"));
        fs::write(&altered_archive, &altered).unwrap();
        let destination = empty(dir.path(), &format!("altered-{at}"));
        let passed = unpack(&altered_archive, &destination).is_ok()
            && verify_tree(&destination, &packed.manifest, packed.files, &packed.links).is_ok();
        assert!(!passed, "a byte flipped at {at} of {length}");
        assert_ne!(sha256_file(&altered_archive).unwrap(), packed.sha256);
    }
}

#[test]
fn gnu_tar_unpacks_it_and_sha256sum_accepts_the_manifest() {
    let (dir, _root, archive, packed) = packed();
    let destination = empty(dir.path(), "release");
    let manifest = dir.path().join("MANIFEST");
    fs::write(&manifest, &packed.manifest).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&destination)
        .arg("--no-same-owner")
        .status()
        .unwrap();
    assert!(status.success());
    let check = || {
        Command::new("sha256sum")
            .args(["-c", "--quiet", "--strict"])
            .arg(&manifest)
            .current_dir(&destination)
            .output()
            .unwrap()
    };
    let checked = check();
    assert!(checked.status.success(), "{checked:?}");
    // zdd's own check agrees, and both catch a change.
    verify_tree(&destination, &packed.manifest, packed.files, &packed.links).unwrap();
    assert!(fs::metadata(destination.join("bootstrap/cache"))
        .unwrap()
        .is_dir());
    assert_eq!(
        fs::metadata(destination.join("artisan"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    fs::write(
        destination.join("vendor/autoload.php"),
        "<?php // changed\n",
    )
    .unwrap();
    assert!(!check().status.success());
    assert!(verify_tree(&destination, &packed.manifest, packed.files, &packed.links).is_err());
}

/// A tar.gz holding one entry whose header names `path` as written (no checks), of `kind`.
fn raw_archive(dir: &Path, name: &str, entries: &[(&[u8], tar::EntryType, &[u8])]) -> PathBuf {
    let path = dir.join(name);
    let encoder = flate2::write::GzEncoder::new(File::create(&path).unwrap(), Default::default());
    let mut builder = tar::Builder::new(encoder);
    for (entry_path, kind, contents) in entries {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..entry_path.len()].copy_from_slice(entry_path);
        header.set_entry_type(*kind);
        header.set_mode(0o644);
        if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
            header
                .set_link_name(std::str::from_utf8(contents).unwrap())
                .unwrap();
            header.set_size(0);
            header.set_cksum();
            builder.append(&header, &[][..]).unwrap();
        } else {
            header.set_size(contents.len() as u64);
            header.set_cksum();
            builder.append(&header, *contents).unwrap();
        }
    }
    builder.into_inner().unwrap().finish().unwrap();
    path
}

#[test]
fn unpack_refuses_entries_that_would_land_outside() {
    use tar::EntryType::{Directory, Link, Regular, Symlink};
    let dir = tempfile::tempdir().unwrap();
    let refused = |name: &str, entries: &[(&[u8], tar::EntryType, &[u8])]| {
        let archive = raw_archive(dir.path(), name, entries);
        let destination = empty(dir.path(), &format!("{name}.d"));
        let error = unpack(&archive, &destination).unwrap_err().to_string();
        (error, destination)
    };
    let (error, destination) = refused("up", &[(b"../evil", Regular, b"x")]);
    assert_eq!(
        error,
        format!(
            "the archive's entry `../evil` would land outside `{}`: refused",
            destination.display()
        )
    );
    assert!(!dir.path().join("evil").exists());
    let (error, destination) = refused("absolute", &[(b"/tmp/zdd-evil", Regular, b"x")]);
    assert_eq!(
        error,
        format!(
            "the archive's entry `/tmp/zdd-evil` would land outside `{}`: refused",
            destination.display()
        )
    );
    let outside = empty(dir.path(), "outside");
    let target = outside.to_str().unwrap().as_bytes().to_vec();
    let (error, destination) = refused(
        "through",
        &[(b"a", Symlink, &target), (b"a/evil", Regular, b"x")],
    );
    assert_eq!(
        error,
        format!(
            "the archive's entry `a/evil` lies under the symlink `a`: refused, it could land \
             outside `{}`",
            destination.display()
        )
    );
    assert!(!outside.join("evil").exists());
    let (error, _) = refused("hard", &[(b"f", Regular, b"x"), (b"g", Link, b"f")]);
    assert_eq!(
        error,
        "cannot unpack `g`: it is a hard link, and an archive of zdd holds files, directories \
         and symlinks only"
    );
    let (error, _) = refused("twice", &[(b"d", Directory, b""), (b"d", Regular, b"x")]);
    assert_eq!(error, "cannot unpack `d`: the archive holds it twice");
}

#[test]
fn unpack_reads_what_gnu_tar_writes() {
    let (dir, _root, _archive, packed) = packed();
    // GNU tar's own archive of zdd's unpacked tree, `./` entries and all.
    let release = empty(dir.path(), "release");
    unpack(&dir.path().join("build.tar.gz"), &release).unwrap();
    let gnu = dir.path().join("gnu.tar.gz");
    let status = Command::new("tar")
        .arg("-czf")
        .arg(&gnu)
        .arg("-C")
        .arg(&release)
        .arg(".")
        .status()
        .unwrap();
    assert!(status.success());
    let again = empty(dir.path(), "again");
    unpack(&gnu, &again).unwrap();
    verify_tree(&again, &packed.manifest, packed.files, &packed.links).unwrap();
}

#[test]
fn reading_the_archive_back_gives_each_file_its_bytes() {
    let (_dir, root, archive, _packed) = packed();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(File::open(&archive).unwrap()));
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() == tar::EntryType::Regular {
            let path = root.join(entry.path().unwrap());
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).unwrap();
            assert_eq!(contents, fs::read(&path).unwrap(), "{}", path.display());
        }
    }
}

#[test]
fn inspect_reads_back_what_pack_said_and_nothing_else_passes() {
    let (dir, _root, archive, packed) = packed();
    let mut file = File::open(&archive).unwrap();
    assert_eq!(inspect(&mut file).unwrap(), packed);
    // Read again from wherever the file was left.
    assert_eq!(inspect(&mut file).unwrap(), packed);
    let bytes = fs::read(&archive).unwrap();
    let length = bytes.len();
    for at in [length / 3, length / 2, length - 6] {
        let mut altered = bytes.clone();
        altered[at] ^= 0x10;
        let altered_archive = dir.path().join(format!("altered-{at}.tar.gz"));
        fs::write(&altered_archive, &altered).unwrap();
        let found = inspect(&mut File::open(&altered_archive).unwrap());
        assert!(
            found.as_ref().map_or(true, |found| *found != packed),
            "a byte flipped at {at} of {length}"
        );
    }
    let cut = dir.path().join("cut.tar.gz");
    fs::write(&cut, &bytes[..length / 2]).unwrap();
    assert_eq!(
        inspect(&mut File::open(&cut).unwrap())
            .unwrap_err()
            .to_string(),
        "the archive is damaged or cut short"
    );
    // Bytes after the gzip stream are part of what ships: the hash says so.
    let trailing = dir.path().join("trailing.tar.gz");
    fs::write(&trailing, [bytes.as_slice(), b"x"].concat()).unwrap();
    let found = inspect(&mut File::open(&trailing).unwrap());
    assert!(found.map_or(true, |found| found.sha256 != packed.sha256));
}

#[test]
fn links_of_the_commit_are_packed_as_they_are_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("build");
    write(&root, "public/index.php", b"<?php\n");
    let secret = dir.path().join("home/.ssh");
    write(&secret, "id_ed25519", b"PRIVATE\n");
    let package = dir.path().join("packages/pkg");
    write(&package, "src/Service.php", b"<?php // service\n");
    symlink(&secret, root.join("public/keys")).unwrap();
    symlink("../../home/.ssh/id_ed25519", root.join("public/key.txt")).unwrap();
    symlink("../nothing/there", root.join("public/dangling")).unwrap();
    fs::create_dir_all(root.join("vendor")).unwrap();
    symlink(&package, root.join("vendor/pkg")).unwrap();
    let committed: std::collections::BTreeSet<String> =
        ["public/keys", "public/key.txt", "public/dangling"]
            .iter()
            .map(|s| s.to_string())
            .collect();
    let links = Links {
        committed: committed.clone(),
        follow_outside: true,
    };
    let archive = dir.path().join("a.tar.gz");
    let packed = pack_build(&root, &[], MTIME, &archive, DEFAULT_LEVEL, &links).unwrap();
    assert_eq!(
        packed.links,
        [
            (
                "./public/dangling".to_string(),
                "../nothing/there".to_string()
            ),
            (
                "./public/key.txt".to_string(),
                "../../home/.ssh/id_ed25519".to_string()
            ),
            ("./public/keys".to_string(), secret.display().to_string()),
        ]
    );
    assert!(!packed.manifest.contains("PRIVATE"));
    assert!(!packed.manifest.contains("./public/keys/"));
    // The build's own link out is still packed as what it points at.
    assert!(packed.manifest.contains("  ./vendor/pkg/src/Service.php\n"));
    assert!(!contains_bytes(&gunzip(&archive), b"PRIVATE"));
    // A build made on another host: its own links out cannot be followed from here.
    let elsewhere = Links {
        committed,
        follow_outside: false,
    };
    let error = pack_build(&root, &[], MTIME, &archive, DEFAULT_LEVEL, &elsewhere)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        format!(
            "cannot pack `vendor/pkg`: the build made it a symlink to `{}`, outside the build \
             directory on the build host, which zdd cannot follow from its own machine",
            package.display()
        )
    );
}

#[test]
fn a_link_target_a_host_cannot_read_back_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("build");
    write(&root, "public/index.php", b"<?php\n");
    symlink("../storage/x\n", root.join("public/s")).unwrap();
    let error = pack(
        &root,
        &["storage".into()],
        MTIME,
        &dir.path().join("a.tar.gz"),
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        error,
        "cannot pack `public/s`: it is a symlink whose target `../storage/x\\n` holds a \
         newline, which a host cannot read back to check it"
    );
}

fn gunzip(archive: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(File::open(archive).unwrap())
        .read_to_end(&mut bytes)
        .unwrap();
    bytes
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
