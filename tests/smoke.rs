//! The shortest path through zdd: the five-line recipe deploys.

use crate::support::{basic_recipe, Sandbox};

#[test]
fn five_line_recipe_deploys() {
    let sandbox = Sandbox::new();
    let repo = sandbox.repo("repo");
    let commit = repo.commit(&[("index.html", "one\n")], "one");
    sandbox.write(
        "deploy.rhai",
        &basic_recipe(&repo.str(), &sandbox.str("app")),
    );

    let output = sandbox.zdd(&["run", "deploy.rhai"]).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let current = sandbox.current("app").expect("current is a link");
    assert_eq!(sandbox.releases("app"), vec![current.clone()]);
    assert_eq!(sandbox.read("app/current/index.html"), "one\n");
    assert_eq!(sandbox.read("app/current/REVISION"), format!("{commit}\n"));
    assert!(!sandbox.path("app/.zdd/lock").exists());
}
