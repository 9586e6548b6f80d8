//! pipehost transform plugin for the news feed: symbol extraction, a
//! sentiment tag, and one event per mentioned symbol. The logic lives in
//! [`logic`] (plain Rust, callable natively);
//! this file only exports it as the `transform-plugin` world.

pub mod logic;

pub use logic::Transform;
pub use pipehost_guest::types::{Event, Field, Outcome, Value};

pipehost_guest::export_transform!(Transform);
