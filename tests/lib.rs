//! zdd's integration tests: one binary, the real `zdd` executable against real git
//! repositories, directories, and (in `laravel`) real php-fpm and nginx.

mod support;

mod smoke;
mod state;

mod deploy;
mod failures;
mod fault_support;
mod faults;
mod fleet;
mod fleet_attacks;

mod adoption;
mod adoption_fixtures;
mod adoption_support;
mod bad_input;
mod build_attacks;
mod build_once;
mod cli;
mod concurrency;
mod doctor;
mod gates;
mod inventory;
mod issue14_attacks;
mod laravel;
mod laravel_harness;
mod laravel_layouts;
mod laravel_layouts_support;
mod laravel_lifecycle;
mod laravel_support;
mod lock_wait;
mod login_shells;
mod notify;
mod output;
mod pipeline_attacks;
mod planned_deploy;
mod quickstart;
mod remote;
mod secrets;
mod services;
mod settings_checked;
mod settings_input;
mod shared_recipes;
mod ssh_harness;
mod ssh_support;
mod tcp_relay;
mod tls;
mod vendor_reuse;
mod watch;
mod watch_attacks;
