//! A new release's `vendor/` (and `node_modules/`) starts from the previous release's
//! (setting `vendor_reuse`): `composer install` then finds its packages installed and only
//! writes what changed, instead of unpacking every package again (measured on Deployer's
//! recipes, copying vendor cut a deploy from 47 s to 19 s: deployphp/recipes #42).
//!
//! The copy is made on the host, in the same command as the tool, so it costs no round trip:
//! [`prelude`] is shell text that goes before `composer install` (or in place of `npm ci`) and
//! prints one [`MARKER`] line saying what it did, which [`outcome`] reads back. Nothing here
//! touches a file itself: the text runs through the host's transport, over SSH or locally.
//!
//! `hardlink` (the default) links every file of the previous tree into a new tree (`cp -al`):
//! new directories, the same file contents. That is safe because the tools never write into
//! a package's files: composer replaces a changed package by removing its directory and
//! unpacking the new one (dist installs, the shipped recipe's `--prefer-dist`), and deleting
//! a link in one tree leaves the other's. The files a tool rewrites in place on every run
//! ([`Dependencies::rewritten`]: composer's autoloader, `vendor/composer/`, `vendor/bin/`;
//! npm's and the bundlers' caches under `node_modules`) are real copies, so writing them in
//! the new release never changes the previous one. Across filesystems (or where the kernel
//! refuses links to another user's files) `cp -al` fails and the tree is copied whole
//! (`cp -a`), as with `copy`. A copy that fails leaves nothing behind: the tool then
//! installs from scratch, as without reuse; reuse never fails a deploy.

use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::values::quote::{word, QuoteError};

/// The words `vendor_reuse` takes.
pub const WORDS: [&str; 4] = ["hardlink", "copy", "true", "false"];

/// The first word of the line [`prelude`] prints: no tool prints it, and it is taken out of
/// the tool's output before anyone reads it.
pub const MARKER: &str = "zdd-vendor-reuse";

/// How a new release gets the previous release's dependencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    /// Hard links for the packages, copies for what the tools rewrite (`hardlink`, `true`).
    HardLinks,
    /// A whole copy (`copy`): nothing shared, more disk and time.
    Copy,
    /// Every release installs from scratch (`false`).
    Off,
}

impl Reuse {
    /// A value of the setting; `None` for anything else.
    pub fn parse(value: &str) -> Option<Reuse> {
        match value {
            "hardlink" | "true" => Some(Reuse::HardLinks),
            "copy" => Some(Reuse::Copy),
            "false" => Some(Reuse::Off),
            _ => None,
        }
    }
}

/// `vendor_reuse` on this host (`hardlink` when unset). `settings::validate` refuses a value
/// zdd does not know before the run starts; this refuses it again, named, before the tool runs
/// (a value set inside a task).
pub fn setting(ctx: &HostContext) -> Result<Reuse, Failure> {
    let value = ctx.text_or("vendor_reuse", "hardlink")?;
    Reuse::parse(&value).ok_or_else(|| {
        Failure::message(format!(
            "`vendor_reuse` is `{}`: it must be one of {}",
            value.escape_debug(),
            WORDS.join(", ")
        ))
        .with_hint(
            "`-o vendor_reuse=copy` copies the previous release's vendor/ whole; \
             `-o vendor_reuse=false` installs from scratch",
        )
    })
}

/// A directory of installed dependencies that a tool fills in a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dependencies {
    /// The tool, as zdd's messages name it (`composer`).
    pub tool: &'static str,
    /// The directory, relative to the release (`vendor`).
    pub dir: &'static str,
    /// Paths under `dir` that the tool (or a build after it) rewrites in place: real copies
    /// in the new tree, never links.
    pub rewritten: &'static [&'static str],
    /// What else a reuse means, said after it (npm: the install does not run).
    pub reused_note: &'static str,
}

/// composer's `vendor/`: `composer install` writes the autoloader (`autoload.php`, the files
/// of `composer/`, `installed.json`) and the `bin/` proxies in place on every run.
pub const VENDOR: Dependencies = Dependencies {
    tool: "composer",
    dir: "vendor",
    rewritten: &["autoload.php", "composer", "bin"],
    reused_note: "",
};

/// What [`node_modules`](NODE_MODULES) keeps of the `npm ci` that made it: its arguments and
/// node's version (a package built for another node must be built again).
pub const NPM_STAMP: &str = ".zdd-npm-ci";

/// npm's `node_modules/`: npm's own lock copy and the caches bundlers keep there (vite,
/// babel, terser, eslint) are written in place by builds.
pub const NODE_MODULES: Dependencies = Dependencies {
    tool: "npm",
    dir: "node_modules",
    rewritten: &[
        ".package-lock.json",
        ".cache",
        ".vite",
        ".vite-temp",
        NPM_STAMP,
    ],
    reused_note: "; `npm ci` not run: package.json and its lock are unchanged",
};

/// What the host did, as the [`MARKER`] line says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Hard links for the packages (`hardlink`).
    HardLinked,
    /// A whole copy, as asked (`copy`).
    Copied,
    /// A whole copy because hard links failed (another filesystem, another owner's files).
    CopiedWithoutLinks,
    /// The copy failed; nothing is left of it and the tool installs from scratch.
    Failed,
    /// npm only: the previous `node_modules/` does not match (package files, `npm ci`'s
    /// arguments or node's version differ): `npm ci` installs anew.
    Changed,
}

impl Outcome {
    fn from_word(word: &str) -> Option<Outcome> {
        match word {
            "hardlink" => Some(Outcome::HardLinked),
            "copy" => Some(Outcome::Copied),
            "nolinks" => Some(Outcome::CopiedWithoutLinks),
            "failed" => Some(Outcome::Failed),
            "changed" => Some(Outcome::Changed),
            _ => None,
        }
    }

    /// The line for the host's progress, and whether it is a warning.
    pub fn describe(self, deps: &Dependencies, previous: &str) -> (String, bool) {
        let Dependencies {
            tool,
            dir,
            reused_note,
            ..
        } = deps;
        let from = format!("{tool}: {dir}/ from releases/{previous}");
        match self {
            Outcome::HardLinked => (format!("{from} (hard links){reused_note}"), false),
            Outcome::Copied => (format!("{from} (copied){reused_note}"), false),
            Outcome::CopiedWithoutLinks => (
                format!("{from} (copied: no hard links possible there){reused_note}"),
                false,
            ),
            Outcome::Failed => (
                format!(
                    "{tool}: {dir}/ of releases/{previous} could not be copied; \
                     {tool} installs it from scratch"
                ),
                true,
            ),
            Outcome::Changed => (
                format!(
                    "{tool}: {dir}/ of releases/{previous} not reused (package.json, its lock, \
                     `npm ci`'s options or node's version changed): `npm ci` installs it"
                ),
                false,
            ),
        }
    }
}

/// The command that runs `composer install` (`line`, already quoted) in the new release,
/// started from `previous/vendor` when there is one to start from (see [`prelude`]).
pub fn composer_install(
    reuse: Reuse,
    previous: Option<&str>,
    line: &str,
) -> Result<String, QuoteError> {
    match previous {
        Some(previous) if reuse != Reuse::Off => Ok(format!(
            "{}{line}",
            prelude(&VENDOR, reuse, previous, false)?
        )),
        _ => Ok(line.to_string()),
    }
}

/// The command that runs `npm ci` (`line`, already quoted; `arguments` as expanded) in the
/// new release, unless `previous/node_modules` is reused (see [`prelude`]): `npm ci` always
/// removes `node_modules` first, so the tree is reused only when it is exactly what `npm ci`
/// would make, and then `npm ci` does not run. Each `npm ci` leaves its [`NPM_STAMP`] (its
/// arguments and node's version) in the tree it made, for the next deploy to compare.
pub fn npm_ci(
    reuse: Reuse,
    previous: Option<&str>,
    arguments: &str,
    line: &str,
) -> Result<String, QuoteError> {
    if reuse == Reuse::Off {
        return Ok(line.to_string());
    }
    let mut script = format!(
        "zdd_stamp=$(printf '%s\\n' {}; node --version 2>/dev/null); zdd_reused=\n",
        word(arguments)?
    );
    if let Some(previous) = previous {
        script.push_str(&prelude(&NODE_MODULES, reuse, previous, true)?);
    }
    script.push_str(&format!(
        "if [ \"$zdd_reused\" = yes ]; then :; else {line} && \
         {{ {{ [ ! -d node_modules ] || printf '%s\\n' \"$zdd_stamp\" > node_modules/{stamp}; }} \
         2>/dev/null || :; }}; fi",
        stamp = word(NPM_STAMP)?
    ));
    Ok(script)
}

/// Shell text, run in the new release, that copies `previous/DIR` (the previous release's
/// directory, an absolute path) to `DIR` when the release has no `DIR` and the previous one
/// has a real directory there (not a link: a shared directory must stay shared, not be copied
/// or linked into). It goes through a temporary name renamed into place, so `DIR` exists only
/// whole. It prints `MARKER DIR WORD` on stdout when it tried, and always ends with status 0;
/// the shell variable `zdd_reused` is `yes` after it when the tree is in place.
///
/// With `npm`, the copy is made only when the previous tree's [`NPM_STAMP`] is the shell
/// variable `zdd_stamp` and `package.json`, `package-lock.json` and `npm-shrinkwrap.json` are
/// byte for byte the same in both releases (a lock must be there); otherwise it prints
/// `changed`.
fn prelude(
    deps: &Dependencies,
    reuse: Reuse,
    previous: &str,
    npm: bool,
) -> Result<String, QuoteError> {
    let dir = word(deps.dir)?;
    let from = word(&format!("{previous}/{}", deps.dir))?;
    let temp = word(&format!(".zdd-reuse-{}", deps.dir))?;
    let mut script = format!(
        "zdd_reused=; zdd_from={from}; zdd_temp={temp}\n\
         if [ -d \"$zdd_from\" ] && [ ! -L \"$zdd_from\" ] && [ ! -e {dir} ] && [ ! -L {dir} ]; then\n\
         zdd_how=try\n"
    );
    if npm {
        let previous = word(previous)?;
        script.push_str(&format!(
            "zdd_how=changed\n\
             if [ \"$(cat \"$zdd_from\"/{stamp_file} 2>/dev/null)\" = \"$zdd_stamp\" ] \
             && {{ [ -f package-lock.json ] || [ -f npm-shrinkwrap.json ]; }}; then\n\
             zdd_how=try\n\
             for zdd_f in package.json package-lock.json npm-shrinkwrap.json; do\n\
             if [ -e \"$zdd_f\" ] || [ -e {previous}/\"$zdd_f\" ]; then \
             cmp -s \"$zdd_f\" {previous}/\"$zdd_f\" || zdd_how=changed; fi\n\
             done\n\
             fi\n",
            stamp_file = word(NPM_STAMP)?,
        ));
    }
    script.push_str("if [ \"$zdd_how\" = try ]; then\nzdd_how=failed\nrm -rf -- \"$zdd_temp\"\n");
    if reuse == Reuse::HardLinks {
        let rewritten: Vec<String> = deps
            .rewritten
            .iter()
            .map(|p| word(p))
            .collect::<Result<_, _>>()?;
        script.push_str(&format!(
            "if cp -al -- \"$zdd_from\" \"$zdd_temp\" 2>/dev/null; then\n\
             zdd_how=hardlink\n\
             for zdd_p in {}; do\n\
             if [ -e \"$zdd_temp/$zdd_p\" ] || [ -L \"$zdd_temp/$zdd_p\" ]; then \
             {{ rm -rf -- \"$zdd_temp/$zdd_p\" && cp -a -- \"$zdd_from/$zdd_p\" \"$zdd_temp/$zdd_p\"; }} \
             2>/dev/null || zdd_how=failed; fi\n\
             done\n\
             fi\n\
             if [ \"$zdd_how\" = failed ]; then\n\
             rm -rf -- \"$zdd_temp\"\n\
             cp -a -- \"$zdd_from\" \"$zdd_temp\" 2>/dev/null && zdd_how=nolinks\n\
             fi\n",
            rewritten.join(" ")
        ));
    } else {
        script.push_str("cp -a -- \"$zdd_from\" \"$zdd_temp\" 2>/dev/null && zdd_how=copy\n");
    }
    script.push_str(&format!(
        "if [ \"$zdd_how\" != failed ] && mv -- \"$zdd_temp\" {dir} 2>/dev/null; then zdd_reused=yes; \
         else rm -rf -- \"$zdd_temp\" 2>/dev/null; zdd_how=failed; fi\n\
         fi\n\
         echo {MARKER} {dir} \"$zdd_how\"\n\
         fi\n"
    ));
    Ok(script)
}

/// What [`prelude`] said it did for `deps`, and the tool's own output without that line.
pub fn outcome(stdout: &str, deps: &Dependencies) -> (Option<Outcome>, String) {
    let mut found = None;
    let mut rest = Vec::new();
    for line in stdout.lines() {
        match read_marker(line, deps) {
            Some(outcome) if found.is_none() => found = Some(outcome),
            _ => rest.push(line),
        }
    }
    (found, rest.join("\n"))
}

fn read_marker(line: &str, deps: &Dependencies) -> Option<Outcome> {
    let mut words = line.split(' ');
    if words.next()? != MARKER || words.next()? != deps.dir {
        return None;
    }
    let outcome = Outcome::from_word(words.next()?)?;
    words.next().is_none().then_some(outcome)
}

/// The previous release's path on this host, when this run makes a release and `current`
/// pointed at another release before it.
pub fn previous_release(ctx: &HostContext) -> Result<Option<(String, String)>, Failure> {
    let Some(release) = &ctx.release else {
        return Ok(None);
    };
    match &release.previous {
        Some(previous) if *previous != release.name => {
            let path = ctx.path(&format!("releases/{previous}"))?;
            Ok(Some((previous.clone(), path)))
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;
    use std::process::Command;

    fn run(dir: &Path, script: &str) -> String {
        let output = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    }

    fn inode(path: &Path) -> u64 {
        std::fs::symlink_metadata(path).unwrap().ino()
    }

    /// A previous release with a vendor/ and an empty new release beside it.
    fn releases() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let previous = root.path().join("releases/A b'c");
        let new = root.path().join("releases/B");
        for dir in ["vendor/acme/lib", "vendor/composer", "vendor/bin"] {
            std::fs::create_dir_all(previous.join(dir)).unwrap();
        }
        std::fs::write(previous.join("vendor/acme/lib/Lib.php"), "lib").unwrap();
        std::fs::write(previous.join("vendor/autoload.php"), "autoload").unwrap();
        std::fs::write(previous.join("vendor/composer/installed.json"), "{}").unwrap();
        std::os::unix::fs::symlink("../acme/lib/Lib.php", previous.join("vendor/bin/lib")).unwrap();
        std::fs::create_dir_all(&new).unwrap();
        (root, previous, new)
    }

    #[test]
    fn the_setting_takes_its_words_and_nothing_else() {
        assert_eq!(Reuse::parse("hardlink"), Some(Reuse::HardLinks));
        assert_eq!(Reuse::parse("true"), Some(Reuse::HardLinks));
        assert_eq!(Reuse::parse("copy"), Some(Reuse::Copy));
        assert_eq!(Reuse::parse("false"), Some(Reuse::Off));
        assert_eq!(Reuse::parse("hardlinks"), None);
        assert_eq!(Reuse::parse(""), None);
    }

    #[test]
    fn hard_links_for_packages_and_copies_for_what_composer_rewrites() {
        let (_root, previous, new) = releases();
        let script = prelude(&VENDOR, Reuse::HardLinks, previous.to_str().unwrap(), false).unwrap();
        let stdout = run(&new, &script);
        assert_eq!(
            outcome(&stdout, &VENDOR),
            (Some(Outcome::HardLinked), String::new())
        );
        let lib = "vendor/acme/lib/Lib.php";
        assert_eq!(inode(&previous.join(lib)), inode(&new.join(lib)));
        for rewritten in ["vendor/autoload.php", "vendor/composer/installed.json"] {
            assert_ne!(
                inode(&previous.join(rewritten)),
                inode(&new.join(rewritten))
            );
            std::fs::write(new.join(rewritten), "changed").unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(previous.join("vendor/autoload.php")).unwrap(),
            "autoload"
        );
        assert_eq!(
            std::fs::read_link(new.join("vendor/bin/lib")).unwrap(),
            Path::new("../acme/lib/Lib.php")
        );
        assert!(!new.join(".zdd-reuse-vendor").exists());
    }

    #[test]
    fn copy_shares_nothing() {
        let (_root, previous, new) = releases();
        let script = prelude(&VENDOR, Reuse::Copy, previous.to_str().unwrap(), false).unwrap();
        let stdout = run(&new, &script);
        assert_eq!(outcome(&stdout, &VENDOR).0, Some(Outcome::Copied));
        let lib = "vendor/acme/lib/Lib.php";
        assert_ne!(inode(&previous.join(lib)), inode(&new.join(lib)));
        assert_eq!(std::fs::read_to_string(new.join(lib)).unwrap(), "lib");
    }

    #[test]
    fn nothing_happens_when_the_release_has_its_own_or_the_previous_has_none() {
        let (_root, previous, new) = releases();
        std::fs::create_dir_all(new.join("vendor")).unwrap();
        let script = prelude(&VENDOR, Reuse::HardLinks, previous.to_str().unwrap(), false).unwrap();
        assert_eq!(run(&new, &script), "");
        assert_eq!(std::fs::read_dir(new.join("vendor")).unwrap().count(), 0);

        let empty = tempfile::tempdir().unwrap();
        let fresh = tempfile::tempdir().unwrap();
        let script = prelude(
            &VENDOR,
            Reuse::HardLinks,
            empty.path().to_str().unwrap(),
            false,
        )
        .unwrap();
        assert_eq!(run(fresh.path(), &script), "");
        assert!(!fresh.path().join("vendor").exists());
    }

    #[test]
    fn a_shared_vendor_link_is_never_copied() {
        let (root, previous, new) = releases();
        let shared = root.path().join("shared-vendor");
        std::fs::rename(previous.join("vendor"), &shared).unwrap();
        std::os::unix::fs::symlink(&shared, previous.join("vendor")).unwrap();
        let script = prelude(&VENDOR, Reuse::HardLinks, previous.to_str().unwrap(), false).unwrap();
        assert_eq!(run(&new, &script), "");
        assert!(std::fs::symlink_metadata(new.join("vendor")).is_err());
    }

    #[test]
    fn a_copy_that_fails_leaves_nothing() {
        let (root, previous, new) = releases();
        // A `cp` that copies, then fails (as on a full disk): whatever it left goes.
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let cp = bin.join("cp");
        std::fs::write(&cp, "#!/bin/sh\n/bin/cp \"$@\"\nexit 1\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cp, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        for reuse in [Reuse::HardLinks, Reuse::Copy] {
            let script = prelude(&VENDOR, reuse, previous.to_str().unwrap(), false).unwrap();
            let script = format!("PATH={}\n{script}", word(&path).unwrap());
            let stdout = run(&new, &script);
            assert_eq!(outcome(&stdout, &VENDOR).0, Some(Outcome::Failed));
            assert!(!new.join("vendor").exists());
            assert!(!new.join(".zdd-reuse-vendor").exists());
        }
    }

    #[test]
    fn where_hard_links_are_refused_the_tree_is_copied_whole() {
        let (root, previous, new) = releases();
        // A `cp` that cannot link (another filesystem, another user's files).
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let cp = bin.join("cp");
        std::fs::write(
            &cp,
            "#!/bin/sh\ncase \"$1\" in -al) exit 1;; esac\nexec /bin/cp \"$@\"\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cp, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        let script = prelude(&VENDOR, Reuse::HardLinks, previous.to_str().unwrap(), false).unwrap();
        let stdout = run(&new, &format!("PATH={}\n{script}", word(&path).unwrap()));
        assert_eq!(
            outcome(&stdout, &VENDOR).0,
            Some(Outcome::CopiedWithoutLinks)
        );
        let lib = "vendor/acme/lib/Lib.php";
        assert_ne!(inode(&previous.join(lib)), inode(&new.join(lib)));
        assert_eq!(std::fs::read_to_string(new.join(lib)).unwrap(), "lib");
    }

    #[test]
    fn node_modules_only_from_the_same_package_files_options_and_node() {
        let root = tempfile::tempdir().unwrap();
        let release = |name: &str, lock: &str| {
            let dir = root.path().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("package.json"), "{}").unwrap();
            std::fs::write(dir.join("package-lock.json"), lock).unwrap();
            dir
        };
        // `npm ci` stands for itself: it makes node_modules and says so.
        let ci = "mkdir node_modules && echo v1 > node_modules/index.js && echo ran";
        let script = |previous: Option<&Path>, arguments: &str| {
            let previous = previous.map(|p| p.to_str().unwrap());
            npm_ci(Reuse::HardLinks, previous, arguments, ci).unwrap()
        };
        let first = release("A", "{\"v\":1}");
        assert_eq!(run(&first, &script(None, "ci")), "ran\n");
        assert!(first.join("node_modules").join(NPM_STAMP).is_file());

        let same = release("B", "{\"v\":1}");
        assert_eq!(
            run(&same, &script(Some(&first), "ci")),
            "zdd-vendor-reuse node_modules hardlink\n"
        );
        let file = |dir: &Path, name: &str| inode(&dir.join("node_modules").join(name));
        assert_eq!(file(&first, "index.js"), file(&same, "index.js"));
        assert_ne!(file(&first, NPM_STAMP), file(&same, NPM_STAMP));

        let other_options = release("C", "{\"v\":1}");
        assert_eq!(
            run(&other_options, &script(Some(&first), "ci --omit=dev")),
            "zdd-vendor-reuse node_modules changed\nran\n"
        );
        let other_lock = release("D", "{\"v\":2}");
        assert_eq!(
            run(&other_lock, &script(Some(&first), "ci")),
            "zdd-vendor-reuse node_modules changed\nran\n"
        );
        let off = release("E", "{\"v\":1}");
        let line = npm_ci(Reuse::Off, first.to_str(), "ci", ci).unwrap();
        assert_eq!(line, ci);
        assert_eq!(run(&off, &line), "ran\n");
    }

    #[test]
    fn the_marker_is_read_and_taken_out() {
        let stdout = "zdd-vendor-reuse vendor hardlink\n> @php artisan package:discover\nok";
        assert_eq!(
            outcome(stdout, &VENDOR),
            (
                Some(Outcome::HardLinked),
                "> @php artisan package:discover\nok".to_string()
            )
        );
        assert_eq!(outcome(stdout, &NODE_MODULES).0, None);
        assert_eq!(outcome("zdd-vendor-reuse vendor maybe", &VENDOR).0, None);
    }
}
