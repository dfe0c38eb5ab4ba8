//! The nginx and php-fpm master processes running on a host, and the config file each runs
//! with, read from `/proc/PID/cmdline` (one command on the host; nothing is changed).
//!
//! nginx titles its master `nginx: master process /usr/sbin/nginx -p PREFIX -c FILE`; php-fpm
//! titles its `php-fpm: master process (FILE)`.

use crate::output::failure::Failure;
use crate::primitives::host_context::HostContext;
use crate::primitives::php_fpm;

/// nginx's config when its master was started without `-c` (Debian's path).
pub const NGINX_DEFAULT_CONFIG: &str = "/etc/nginx/nginx.conf";

/// What a relative `-c` is relative to when there is no `-p` (Debian's `--prefix`).
const NGINX_DEFAULT_PREFIX: &str = "/usr/share/nginx";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Master {
    pub pid: u32,
    /// The config file it runs with, when its command line says.
    pub config: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Masters {
    pub nginx: Vec<Master>,
    pub php_fpm: Vec<Master>,
}

/// Lists the masters: grep finds the few command lines that match, then each is printed as
/// `PID<TAB>ARGS` with its NUL separators turned into \x01.
/// A constant: no value (of the recipe, the host or a path) goes into it, so nothing is quoted.
const SCAN: &str = r#"for f in $(grep -a -s -l -e '^nginx: master process' -e '^php-fpm: master process' /proc/[0-9]*/cmdline); do
  p=${f#/proc/}; p=${p%/cmdline}
  c=$(tr '\000' '\001' < "$f" 2>/dev/null) || continue
  printf '%s\t%s\n' "$p" "$c"
done
exit 0"#;

pub fn scan(ctx: &HostContext) -> Result<Masters, Failure> {
    let output = ctx
        .transport
        .exec(SCAN, None, "list nginx and php-fpm masters", None)?;
    Ok(parse(&output.stdout))
}

/// The masters in the output of [`SCAN`].
pub fn parse(output: &str) -> Masters {
    let mut masters = Masters::default();
    for line in output.lines() {
        let Some((pid, command_line)) = line.split_once('\t') else {
            continue;
        };
        let Ok(pid) = pid.trim().parse::<u32>() else {
            continue;
        };
        let args: Vec<&str> = command_line
            .split('\u{1}')
            .filter(|a| !a.is_empty())
            .collect();
        let Some(first) = args.first() else {
            continue;
        };
        if first.starts_with("nginx: master process") {
            masters.nginx.push(Master {
                pid,
                config: Some(nginx_config(&args)),
            });
        } else if first.starts_with("php-fpm: master process") {
            masters.php_fpm.push(Master {
                pid,
                config: php_fpm::config_from_command_line(&args),
            });
        }
    }
    masters
}

/// The config an nginx master runs with: `-c FILE` (relative to `-p PREFIX`, as nginx reads
/// it), else
/// [`NGINX_DEFAULT_CONFIG`]. nginx writes its whole command line into the title, so the
/// words are split again.
fn nginx_config(args: &[&str]) -> String {
    let joined = args.join(" ");
    let words: Vec<&str> = joined
        .trim_start_matches("nginx: master process")
        .split_whitespace()
        .collect();
    let mut prefix: Option<&str> = None;
    let mut config: Option<&str> = None;
    let mut index = 1;
    while index < words.len() {
        let word = words[index];
        let value = |flag: &str| -> Option<(&str, usize)> {
            if word == flag {
                words.get(index + 1).map(|v| (*v, 2))
            } else {
                word.strip_prefix(flag)
                    .filter(|v| !v.is_empty())
                    .map(|v| (v, 1))
            }
        };
        if let Some((v, step)) = value("-c") {
            config = Some(v);
            index += step;
        } else if let Some((v, step)) = value("-p") {
            prefix = Some(v);
            index += step;
        } else {
            index += 1;
        }
    }
    match (config, prefix) {
        (Some(config), _) if config.starts_with('/') => config.to_string(),
        (Some(config), Some(prefix)) => format!("{}/{config}", prefix.trim_end_matches('/')),
        (Some(config), None) => format!("{NGINX_DEFAULT_PREFIX}/{config}"),
        (None, _) => NGINX_DEFAULT_CONFIG.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_masters_and_their_configs() {
        let output =
            "12\tnginx: master process /usr/sbin/nginx -p /s/ -e /s/e.log -c /s/nginx.conf\n\
                      13\tnginx: master process /usr/sbin/nginx\n\
                      14\tnginx: master process nginx -p /srv/ -c conf/n.conf\n\
                      20\tphp-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)\u{1}\u{1}\u{1}\n";
        assert_eq!(
            parse(output),
            Masters {
                nginx: vec![
                    Master {
                        pid: 12,
                        config: Some("/s/nginx.conf".into())
                    },
                    Master {
                        pid: 13,
                        config: Some("/etc/nginx/nginx.conf".into())
                    },
                    Master {
                        pid: 14,
                        config: Some("/srv/conf/n.conf".into())
                    },
                ],
                php_fpm: vec![Master {
                    pid: 20,
                    config: Some("/etc/php/8.2/fpm/php-fpm.conf".into())
                }],
            }
        );
    }
}
