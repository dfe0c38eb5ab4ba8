//! php-fpm's configuration as doctor needs it: the main file's text (for
//! `process_control_timeout`, read by `primitives::php_fpm` as `reload_fpm()` does) and its
//! pools (from the main file and its `include`s): where each listens and the PHP settings it
//! overrides (`php_admin_value[opcache.validate_timestamps] = 0`).

use std::collections::BTreeMap;

use super::include_files;
use crate::transport::Transport;

const MAX_INCLUDE_DEPTH: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FpmConfig {
    pub path: String,
    /// The main file.
    pub text: String,
    pub pools: Vec<Pool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    /// `listen`, with `$pool` replaced.
    pub listen: Option<String>,
    /// `php_value`, `php_flag`, `php_admin_value`, `php_admin_flag` by PHP setting name; the
    /// last one written wins.
    pub php_settings: BTreeMap<String, String>,
}

/// The config at `path` with its includes; `Ok(None)` when `path` does not exist. A relative
/// include is taken relative to the main file's directory (php-fpm uses its prefix; Debian's
/// includes are absolute).
pub fn load(transport: &dyn Transport, path: &str) -> Result<Option<FpmConfig>, String> {
    let Some(text) = transport.read_file(path).map_err(|e| format!("{e:#}"))? else {
        return Ok(None);
    };
    let base = path.rsplit_once('/').map(|(dir, _)| dir).unwrap_or(".");
    let mut pools = Vec::new();
    read_into(transport, &text, base, &mut pools, 0)?;
    Ok(Some(FpmConfig {
        path: path.to_string(),
        text,
        pools,
    }))
}

fn read_into(
    transport: &dyn Transport,
    text: &str,
    base: &str,
    pools: &mut Vec<Pool>,
    depth: usize,
) -> Result<(), String> {
    // A file included from a pool section continues in no section until it opens one.
    let mut current: Option<usize> = None;
    for (key, value) in entries(text) {
        if let Some(name) = key.strip_prefix('[') {
            current = if name == "global" {
                None
            } else {
                pools.push(Pool {
                    name: name.to_string(),
                    ..Pool::default()
                });
                Some(pools.len() - 1)
            };
            continue;
        }
        if key == "include" {
            if depth >= MAX_INCLUDE_DEPTH {
                continue;
            }
            let files =
                include_files::expand(transport, &value, base).map_err(|e| format!("{e:#}"))?;
            for file in files {
                if let Some(included) = transport.read_file(&file).map_err(|e| format!("{e:#}"))? {
                    read_into(transport, &included, base, pools, depth + 1)?;
                }
            }
            continue;
        }
        let Some(index) = current else {
            continue;
        };
        let pool = &mut pools[index];
        let value = value.replace("$pool", &pool.name);
        if key == "listen" {
            pool.listen = Some(value);
        } else if let Some(setting) = [
            "php_admin_value[",
            "php_admin_flag[",
            "php_value[",
            "php_flag[",
        ]
        .iter()
        .find_map(|prefix| key.strip_prefix(prefix))
        .and_then(|rest| rest.strip_suffix(']'))
        {
            pool.php_settings.insert(setting.to_string(), value);
        }
    }
    Ok(())
}

/// `(key, value)` per setting line, and `("[name", "")` per section header, comments removed.
fn entries(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.split_once(']')) {
            out.push((format!("[{}", name.0.trim()), String::new()));
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        out.push((key.trim().to_string(), unquote(strip_comment(value.trim()))));
    }
    out
}

/// A value without a trailing `; comment` (outside quotes).
fn strip_comment(value: &str) -> &str {
    let mut quoted = false;
    for (index, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return value[..index].trim_end(),
            _ => {}
        }
    }
    value
}

fn unquote(value: &str) -> String {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
        .to_string()
}

/// An address php-fpm listens on or nginx passes to, for comparing the two.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Address {
    Unix(String),
    Tcp { host: String, port: u16 },
}

fn address(text: &str) -> Option<Address> {
    let text = text.trim();
    if let Some(path) = text.strip_prefix("unix:") {
        return Some(Address::Unix(path.to_string()));
    }
    if text.starts_with('/') {
        return Some(Address::Unix(text.to_string()));
    }
    if let Ok(port) = text.parse::<u16>() {
        return Some(Address::Tcp {
            host: String::new(),
            port,
        });
    }
    let (host, port) = text.rsplit_once(':')?;
    Some(Address::Tcp {
        host: host.trim_matches(['[', ']']).to_string(),
        port: port.parse().ok()?,
    })
}

/// Whether php-fpm's `listen` and an nginx `fastcgi_pass` target are the same address.
pub fn same_address(listen: &str, target: &str) -> bool {
    let any = |h: &str| matches!(h, "" | "*" | "0.0.0.0" | "::");
    let loopback = |h: &str| matches!(h, "127.0.0.1" | "localhost" | "::1");
    match (address(listen), address(target)) {
        (Some(Address::Unix(a)), Some(Address::Unix(b))) => a == b,
        (Some(Address::Tcp { host: a, port: p }), Some(Address::Tcp { host: b, port: q })) => {
            p == q && (a == b || any(&a) || (loopback(&a) && loopback(&b)))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_their_listen_and_settings() {
        let text = "[global]\npid = /run/fpm.pid\n\n[www]\nlisten = /run/php/$pool.sock ; the socket\nphp_admin_value[opcache.validate_timestamps] = 0\nphp_flag[opcache.enable] = \"on\"\n;php_value[opcache.enable] = 0\n";
        let mut pools = Vec::new();
        let transport = crate::transport::Local::new().unwrap();
        read_into(&transport, text, "/nonexistent", &mut pools, 0).unwrap();
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].name, "www");
        assert_eq!(pools[0].listen.as_deref(), Some("/run/php/www.sock"));
        assert_eq!(
            pools[0].php_settings,
            BTreeMap::from([
                ("opcache.enable".to_string(), "on".to_string()),
                ("opcache.validate_timestamps".to_string(), "0".to_string()),
            ])
        );
    }

    #[test]
    fn addresses() {
        assert!(same_address("/run/php.sock", "unix:/run/php.sock"));
        assert!(!same_address("/run/php.sock", "unix:/run/other.sock"));
        assert!(same_address("9000", "127.0.0.1:9000"));
        assert!(same_address("127.0.0.1:9000", "localhost:9000"));
        assert!(!same_address("127.0.0.1:9000", "127.0.0.1:9001"));
        assert!(!same_address("10.0.0.1:9000", "127.0.0.1:9000"));
    }
}
