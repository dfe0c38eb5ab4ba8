//! Check: nginx passes `$realpath_root` to php-fpm (SCRIPT_FILENAME and DOCUMENT_ROOT), so
//! each request resolves `current` once and runs in one release.
//!
//! Which nginx: `nginx_config` when set; else the running masters whose config (includes
//! followed) serves `deploy_path`, i.e. has a `root`, `alias` or any other value under it in a
//! `server` (several nginx may run on one machine: the one that relates to this host's
//! deploy_path is the one checked); else, when no nginx runs, `/etc/nginx/nginx.conf` if it
//! serves deploy_path. When nothing relates, that is a warning naming the configs seen.

use super::finding::Finding;
use super::nginx_config::{self, Directive};
use super::processes::{Masters, NGINX_DEFAULT_CONFIG};
use crate::primitives::host_context::HostContext;
use crate::values::template::Mode;

const CHECK: &str = "nginx";

/// What the nginx check learned, for the checks after it.
#[derive(Debug, Clone, Default)]
pub struct NginxFacts {
    /// Whether the checked config(s) pass `$realpath_root`; `None` when none was checked.
    pub realpath_root: Option<bool>,
    /// Where the checked configs send PHP (`fastcgi_pass` values, upstreams resolved):
    /// `unix:/run/php/php8.2-fpm.sock`, `127.0.0.1:9000`.
    pub fastcgi_targets: Vec<String>,
}

/// `deploy_paths`: deploy_path as configured and, when different, as the host resolves it.
pub fn check(
    ctx: &HostContext,
    masters: &Masters,
    deploy_paths: &[String],
) -> (Vec<Finding>, NginxFacts) {
    let mut facts = NginxFacts::default();
    let mut findings = Vec::new();
    let deploy_path = &deploy_paths[0];
    let transport = ctx.transport.as_ref();

    let explicit = match ctx.value("nginx_config") {
        Ok(Some(value)) => match crate::values::config::text(&value)
            .map_err(crate::output::failure::Failure::message)
            .and_then(|text| ctx.expand(&text, Mode::Plain))
        {
            Ok(path) => Some(path),
            Err(failure) => {
                findings.push(Finding::problem(
                    CHECK,
                    format!("`nginx_config`: {failure}"),
                    "set `nginx_config` to the path of the nginx.conf that serves this app",
                ));
                return (findings, facts);
            }
        },
        _ => None,
    };
    if let Some(path) = explicit {
        match nginx_config::load(transport, &path) {
            Ok(Some(tree)) => {
                findings.push(evaluate(&tree, &path, deploy_paths, &mut facts));
            }
            Ok(None) => findings.push(Finding::problem(
                CHECK,
                format!("`nginx_config` is `{path}`, which does not exist"),
                "set `nginx_config` to the nginx.conf the running nginx uses (`ps -o args -C nginx` shows it after `-c`)",
            )),
            Err(error) => findings.push(Finding::warning(
                CHECK,
                format!("cannot read nginx's config: {error}"),
                "check that the deploy user can read it, or fix the syntax error",
            )),
        }
        return (findings, facts);
    }

    let running = !masters.nginx.is_empty();
    let mut configs: Vec<String> = Vec::new();
    if running {
        for config in masters.nginx.iter().filter_map(|m| m.config.clone()) {
            if !configs.contains(&config) {
                configs.push(config);
            }
        }
    } else {
        configs.push(NGINX_DEFAULT_CONFIG.to_string());
    }
    let mut related = Vec::new();
    let mut seen = Vec::new();
    for path in &configs {
        match nginx_config::load(transport, path) {
            Ok(Some(tree)) if serves(&tree, deploy_paths) => related.push((path.clone(), tree)),
            Ok(Some(_)) => seen.push(path.clone()),
            Ok(None) | Err(_) => {}
        }
    }
    if related.is_empty() {
        let message = if running {
            format!(
                "no running nginx serves `{deploy_path}`: {}",
                if seen.is_empty() {
                    "their configs cannot be read".to_string()
                } else {
                    format!(
                        "no server in {} has a root under it",
                        seen.iter()
                            .map(|p| format!("`{p}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            )
        } else if seen.is_empty() {
            format!("nginx is not running and `{NGINX_DEFAULT_CONFIG}` does not exist")
        } else {
            format!(
                "nginx is not running and no server in `{NGINX_DEFAULT_CONFIG}` has a root under `{deploy_path}`"
            )
        };
        findings.push(Finding::warning(
            CHECK,
            message,
            "if nginx serves this app, set `nginx_config` to its nginx.conf",
        ));
        return (findings, facts);
    }
    for (path, tree) in &related {
        findings.push(evaluate(tree, path, deploy_paths, &mut facts));
    }
    (findings, facts)
}

/// Whether some `server` of the config has a value under one of `deploy_paths`.
fn serves(tree: &[Directive], deploy_paths: &[String]) -> bool {
    let (servers, http_root) = servers(tree, deploy_paths);
    http_root || servers.iter().any(|s| mentions(s, deploy_paths))
}

/// The `server` blocks (inside `http`, or at the top of a file that is one site), and whether
/// an `http`-level `root` is under deploy_path (servers inherit it).
fn servers<'a>(tree: &'a [Directive], deploy_paths: &[String]) -> (Vec<&'a Directive>, bool) {
    let mut found = Vec::new();
    let mut http_root = false;
    for directive in tree {
        match directive.name.as_str() {
            "server" if directive.block.is_some() => found.push(directive),
            "http" => {
                for child in directive.children() {
                    if child.name == "server" && child.block.is_some() {
                        found.push(child);
                    }
                    if child.name == "root" && child.args.iter().any(|a| under(a, deploy_paths)) {
                        http_root = true;
                    }
                }
            }
            _ => {}
        }
    }
    (found, http_root)
}

fn upstreams(tree: &[Directive]) -> Vec<&Directive> {
    let mut found = Vec::new();
    for directive in tree {
        match directive.name.as_str() {
            "upstream" => found.push(directive),
            "http" => found.extend(directive.children().iter().filter(|d| d.name == "upstream")),
            _ => {}
        }
    }
    found
}

fn mentions(directive: &Directive, deploy_paths: &[String]) -> bool {
    directive.args.iter().any(|a| under(a, deploy_paths))
        || directive
            .children()
            .iter()
            .any(|d| mentions(d, deploy_paths))
}

/// Whether `text` names a path under (or at) one of `deploy_paths`.
pub fn under(text: &str, deploy_paths: &[String]) -> bool {
    deploy_paths.iter().any(|path| {
        text.match_indices(path.as_str()).any(|(index, _)| {
            text[index + path.len()..]
                .chars()
                .next()
                .is_none_or(|c| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.')))
        })
    })
}

/// A location that hands requests to php-fpm, with the `fastcgi_param`s in force there.
struct PhpLocation<'a> {
    location: &'a Directive,
    pass: &'a Directive,
    params: Vec<&'a Directive>,
}

/// Walks `directives` (the inside of a server, location or `if`), with `inherited` the
/// `fastcgi_param`s of the level above: nginx inherits them only into levels that set none.
fn php_locations<'a>(
    block: &'a Directive,
    inherited: &[&'a Directive],
    out: &mut Vec<PhpLocation<'a>>,
) {
    let own: Vec<&Directive> = block
        .children()
        .iter()
        .filter(|d| d.name == "fastcgi_param")
        .collect();
    let params = if own.is_empty() {
        inherited.to_vec()
    } else {
        own
    };
    if let Some(pass) = block.children().iter().find(|d| d.name == "fastcgi_pass") {
        out.push(PhpLocation {
            location: block,
            pass,
            params: params.clone(),
        });
    }
    for child in block.children() {
        if matches!(child.name.as_str(), "location" | "if") && child.block.is_some() {
            php_locations(child, &params, out);
        }
    }
}

fn evaluate(
    tree: &[Directive],
    path: &str,
    deploy_paths: &[String],
    facts: &mut NginxFacts,
) -> Finding {
    let http_params: Vec<&Directive> = tree
        .iter()
        .filter(|d| d.name == "http")
        .flat_map(|d| d.children())
        .filter(|d| d.name == "fastcgi_param")
        .collect();
    let (all, http_root) = servers(tree, deploy_paths);
    let mut chosen: Vec<&Directive> = all
        .iter()
        .copied()
        .filter(|s| http_root || mentions(s, deploy_paths))
        .collect();
    if chosen.is_empty() {
        // `nginx_config` named a config that does not mention deploy_path: check all of it.
        chosen = all;
    }
    let mut locations = Vec::new();
    for server in chosen {
        php_locations(server, &http_params, &mut locations);
    }
    if locations.is_empty() {
        return Finding::warning(
            CHECK,
            format!("nginx sends no request to php-fpm (no `fastcgi_pass`) in `{path}`"),
            "if PHP runs behind this nginx, pass it with `fastcgi_pass` and `fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;`",
        );
    }
    let upstreams = upstreams(tree);
    let mut issues: Vec<String> = Vec::new();
    for php in &locations {
        if let Some(target) = php.pass.args.first() {
            let resolved: Vec<String> = upstreams
                .iter()
                .filter(|u| u.args.first() == Some(target))
                .flat_map(|u| u.children())
                .filter(|d| d.name == "server")
                .filter_map(|d| d.args.first().cloned())
                .collect();
            for target in if resolved.is_empty() {
                vec![target.clone()]
            } else {
                resolved
            } {
                if !facts.fastcgi_targets.contains(&target) {
                    facts.fastcgi_targets.push(target);
                }
            }
        }
        let last = |name: &str| {
            php.params
                .iter()
                .rev()
                .find(|d| d.args.first().map(String::as_str) == Some(name))
        };
        let value = |d: &Directive| d.args.get(1).cloned().unwrap_or_default();
        let issue = match last("SCRIPT_FILENAME") {
            None => Some(format!(
                "SCRIPT_FILENAME is not set for the PHP location at {}",
                php.location.location()
            )),
            Some(d) if !value(d).starts_with("$realpath_root") => Some(format!(
                "SCRIPT_FILENAME is `{}` ({})",
                value(d),
                d.location()
            )),
            Some(_) => None,
        };
        issues.extend(issue);
        if let Some(d) = last("DOCUMENT_ROOT") {
            if !value(d).starts_with("$realpath_root") {
                issues.push(format!(
                    "DOCUMENT_ROOT is `{}` ({})",
                    value(d),
                    d.location()
                ));
            }
        }
    }
    let mut unique: Vec<String> = Vec::new();
    for issue in issues {
        if !unique.contains(&issue) {
            unique.push(issue);
        }
    }
    let passes = unique.is_empty();
    facts.realpath_root = Some(facts.realpath_root.unwrap_or(true) && passes);
    if passes {
        Finding::ok(
            CHECK,
            format!("nginx passes $realpath_root to php-fpm ({path})"),
        )
    } else {
        Finding::problem(
            CHECK,
            format!(
                "nginx does not pass $realpath_root to php-fpm: {}; a request can then run in two releases, and OPcache keeps serving the old one",
                unique.join(", ")
            ),
            "in the PHP location write `fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;` and `fastcgi_param DOCUMENT_ROOT $realpath_root;` (after any include of fastcgi_params), then reload nginx",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(text: &str) -> (Finding, NginxFacts) {
        let tree = nginx_config::parse(text, "n.conf").unwrap();
        let mut facts = NginxFacts::default();
        let finding = evaluate(&tree, "n.conf", &["/srv/app".to_string()], &mut facts);
        (finding, facts)
    }

    #[test]
    fn paths_under_the_deploy_path() {
        let paths = ["/srv/app".to_string()];
        assert!(under("/srv/app/current/public", &paths));
        assert!(under("/srv/app", &paths));
        assert!(!under("/srv/app2/current", &paths));
        assert!(!under("/srv/apple", &paths));
    }

    #[test]
    fn params_are_inherited_only_into_levels_that_set_none() {
        let text = "http {\n fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;\n upstream php { server unix:/run/php.sock; }\n server {\n  root /srv/app/current/public;\n  location ~ \\.php$ {\n   fastcgi_pass php;\n  }\n  location /old {\n   fastcgi_param DOCUMENT_ROOT $document_root;\n   fastcgi_pass 127.0.0.1:9000;\n  }\n }\n}\n";
        let (finding, facts) = facts(text);
        assert_eq!(finding.status, super::super::finding::Status::Problem);
        assert_eq!(
            finding.message,
            "nginx does not pass $realpath_root to php-fpm: SCRIPT_FILENAME is not set for the PHP location at n.conf:9, DOCUMENT_ROOT is `$document_root` (n.conf:10); a request can then run in two releases, and OPcache keeps serving the old one"
        );
        assert_eq!(
            facts.fastcgi_targets,
            vec!["unix:/run/php.sock", "127.0.0.1:9000"]
        );
        assert_eq!(facts.realpath_root, Some(false));
    }

    #[test]
    fn the_last_param_wins() {
        let text = "server {\n root /srv/app/current/public;\n location ~ \\.php$ {\n  fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n  fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;\n  fastcgi_pass unix:/x.sock;\n }\n}\n";
        let (finding, facts) = facts(text);
        assert_eq!(
            finding,
            Finding::ok("nginx", "nginx passes $realpath_root to php-fpm (n.conf)")
        );
        assert_eq!(facts.realpath_root, Some(true));
    }
}
