//! Input that is not bad, only unusual: full ref names, numbers that are text, `-o` keys read
//! by nothing (a warning), a value that refers to itself while a task runs, and `https://`
//! health URLs.

use crate::support::{basic_recipe, git, Sandbox};

#[test]
fn full_ref_names_and_numeric_branch_names_deploy() {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n")], "one");
    repo.tag("v1");
    repo.tag("007");
    repo.commit(&[("index.html", "two\n")], "two");
    sandbox.write("app.rhai", &basic_recipe(&repo.str(), &sandbox.str("app")));
    let branch = git(&repo.path, &["branch", "--show-current"])
        .trim()
        .to_string();
    for (reference, content) in [
        (format!("refs/heads/{branch}"), "two\n"),
        ("refs/tags/v1".to_string(), "one\n"),
        // `007` stays the text `007`, not the number 7.
        ("007".to_string(), "one\n"),
    ] {
        let option = format!("branch={reference}");
        let run = sandbox.run(&["run", "app.rhai", "-q", "-o", &option]);
        run.success();
        assert_eq!(
            sandbox.read("app/current/index.html"),
            content,
            "{reference}"
        );
    }
}

#[test]
fn an_https_health_url_is_accepted() {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n")], "one");
    sandbox.write("app.rhai", &basic_recipe(&repo.str(), &sandbox.str("app")));
    for url in [
        "https://example.com/health",
        "HTTPS://example.com/health",
        "http://127.0.0.1/health",
    ] {
        let option = format!("health_url={url}");
        let run = sandbox.run(&["check", "app.rhai", "-o", &option]);
        run.success();
        assert_eq!(run.stderr, "", "{url}");
    }
}

#[test]
fn an_override_nothing_reads_is_a_warning() {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    repo.commit(&[("index.html", "one\n")], "one");
    sandbox.write("app.rhai", &basic_recipe(&repo.str(), &sandbox.str("app")));
    let run = sandbox.run(&["check", "app.rhai", "-o", "frobnicate=1"]);
    run.success();
    assert_eq!(
        run.stderr,
        "warning: `-o frobnicate`: no setting of that name is read by the recipe or zdd\n"
    );
    assert_eq!(run.stdout, "app.rhai: ok (12 tasks, 1 host)\n");
    // A key the recipe names (here inside a task) is read.
    sandbox.write(
        "show.rhai",
        "localhost();\ntask(\"show\", || { info(get(\"greeting\")); });\n",
    );
    let run = sandbox.run(&["run", "show.rhai", "show", "-o", "greeting=hi"]);
    run.success();
    assert!(!run.stderr.contains("warning"), "{}", run.stderr);
}

#[test]
fn a_value_set_in_a_task_that_refers_to_itself_is_an_error_not_a_crash() {
    let sandbox = Sandbox::new();
    sandbox.write(
        "loop.rhai",
        &format!(
            "set(\"deploy_path\", \"{}\");\nlocalhost();\ntask(\"loop\", || {{\n    set(\"deploy_path\", \"{{{{current_path}}}}\");\n    run(\"echo {{{{current_path}}}}\");\n}});\n",
            sandbox.str("app")
        ),
    );
    let run = sandbox.run(&["run", "loop.rhai", "loop", "-q"]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("`{{current_path}}` expands into itself"),
        "{}",
        run.stderr
    );
    // Said once, not once per level of expansion.
    assert!(
        !run.stderr.contains("`{{current_path}}`: `{{"),
        "{}",
        run.stderr
    );
    assert!(!sandbox.path("app").exists());
}
