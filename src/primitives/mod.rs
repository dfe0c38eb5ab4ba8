//! Typed operations a recipe calls. Each keeps the on-disk contract of DESIGN.md on whichever
//! transport the host uses; the Rhai bindings in `script::primitive_bindings` are thin wrappers.
//! Beside them: what they read and change of one host (`host_context`, `host_state`), and the
//! pure state of a release and of a lock file (`release_state`, `lock_state`: the state layer).

pub mod app_php;
pub mod artisan;
pub mod cleanup;
pub mod command;
pub mod foreign_layout;
pub mod gates;
pub mod health;
pub mod host_context;
pub mod host_state;
pub mod lifecycle;
pub mod lock;
pub mod lock_state;
pub mod next_deploy;
pub mod next_rollback;
pub mod next_run;
pub mod octane;
pub mod package_managers;
pub mod paths;
pub mod php_fpm;
pub mod programs;
pub mod release;
pub mod release_log;
pub mod release_state;
pub mod rollback;
#[cfg(test)]
mod round_trips;
pub mod shared;
pub mod ship;
pub mod symlink;
pub mod update_code;
pub mod vendor_reuse;
pub mod writable;
