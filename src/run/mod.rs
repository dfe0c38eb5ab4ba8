//! Runs a plan on hosts: the runner, the build a deploy may make once for all hosts, how it reaches a recipe (`StepCaller`), a failed step,
//! a declared host becoming a connected context, what a host makes secret, and the run's
//! notification (what it says, and sending it).

pub mod build;
pub mod host_secrets;
pub mod host_setup;
pub mod left_behind;
pub mod notification;
pub mod notify;
pub mod runner;
pub mod step_caller;
pub mod step_failure;
pub mod watcher;
