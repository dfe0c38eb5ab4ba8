//! Values and the text made from them: a setting's value (`config`), `{{key}}` expansion
//! (`template`), the fleet's waves and failure budget (`rollout`), and the one place values become shell words and lines (`quote`).

pub mod config;
pub mod quote;
pub mod rollout;
pub mod template;
