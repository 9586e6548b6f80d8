//! pipehost parser plugin for the stock feed: CSV trades → `stock`
//! events. The logic lives in [`logic`] (plain Rust, callable natively);
//! this file only exports it as the `parser-plugin` world.

pub mod csv;
pub mod logic;

pub use logic::Parser;
pub use pipehost_guest::types::{Event, Field, RawRecord, Source, Value};

pipehost_guest::export_parser!(Parser);
