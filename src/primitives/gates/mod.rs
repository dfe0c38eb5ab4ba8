//! Gates: checks that run before the swap and refuse a deploy that would hurt users. Each is a
//! task in the Laravel recipe with a setting that switches it off, and each refusal lists what
//! it found.

pub mod app_key;
pub mod audit;
pub mod disk;
pub mod migrations;
pub mod queued_jobs;
pub mod test_suite;
