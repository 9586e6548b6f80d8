//! pipehost generator plugin for the news feed: deterministic logfmt
//! headlines. The logic lives in [`logic`] (plain Rust, callable natively);
//! this file only exports it as the `generator-plugin` world.

pub mod logic;

pub use logic::Generator;
pub use pipehost_guest::types::{Generated, Tick};

pipehost_guest::export_generator!(Generator);
