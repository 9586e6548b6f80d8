//! pipehost transform plugin for the stock feed: rejects bad prices, filters
//! small trades, derives `pct_change` and `batch_vwap`. The logic lives in
//! [`logic`] (plain Rust, callable natively);
//! this file only exports it as the `transform-plugin` world.

pub mod logic;

pub use logic::Transform;
pub use pipehost_guest::types::{Event, Field, Outcome, Value};

pipehost_guest::export_transform!(Transform);
