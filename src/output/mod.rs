//! What users read and how it stays safe: progress and JSON events (`reporter`), secrets
//! redacted (`secrets`), the recipe text an error points at (`sources`), "did you mean"
//! (`suggest`), and why a step failed, as primitives report it (`failure`).

pub mod failure;
pub mod reporter;
pub mod secrets;
pub mod sources;
pub mod suggest;
