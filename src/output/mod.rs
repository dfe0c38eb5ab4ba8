//! What users read and how it stays safe: progress and JSON events (`reporter`), secrets
//! redacted (`secrets`), the recipe text an error points at (`sources`), "did you mean"
//! (`suggest`), why a step failed, as primitives report it (`failure`), what a fleet run did per host
//! (`fleet`), and a deploy drawn as one self-contained HTML page (`report_page`).

pub mod failure;
pub mod fleet;
pub mod report;
pub mod report_page;
pub mod reporter;
pub mod secrets;
pub mod sources;
pub mod suggest;
pub mod watch;
