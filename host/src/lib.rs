//! pipehost: a plugin-driven market-data pipeline host.
//!
//! See ARCHITECTURE.md at the repository root for the map. In short:
//! [`plugin`] is the sandboxed WebAssembly plugin host (the only module that
//! knows wasmtime), [`event`] renders and compares plugin events, [`fixture`]
//! is `pipehost test`, and [`cli`] is the command line.

#![deny(unsafe_code)]

pub mod backend;
pub mod cli;
pub mod config;
pub mod event;
pub mod fixture;
pub mod plan;
pub mod plugin;
pub mod runtime;
pub mod telemetry;
pub mod util;
pub mod web;
pub mod wire;

/// Entry points for the fuzz tests (`tests/fuzz.rs`, `fuzz/`): the checks
/// of plugin output, which take the contract's column structs and are
/// otherwise crate-private. Not an API.
#[doc(hidden)]
pub mod fuzzing {
    use crate::plugin::batch::wit;
    use crate::plugin::{EventBatch, GeneratedBatch, Parsed, Transformed};

    /// The columns of an event batch as a plugin returns them.
    pub use wit::EventBatch as EventColumns;
    /// The columns of a generator's records as a plugin returns them.
    pub use wit::GeneratedBatch as GeneratedColumns;

    pub fn check_events(cols: EventColumns) -> Result<EventBatch, String> {
        EventBatch::check(cols)
    }

    /// The columns of `events`, as a plugin would return them.
    pub fn event_columns(events: &EventBatch) -> EventColumns {
        events.cols.clone()
    }

    pub fn parsed(
        events: EventBatch,
        record_events: Vec<u32>,
        rejected: Vec<u32>,
        reasons: Vec<String>,
        records: usize,
    ) -> Result<Parsed, String> {
        Parsed::from_columns(events, record_events, rejected, reasons, records)
    }

    pub fn transformed(
        events: EventBatch,
        kinds: Vec<u8>,
        counts: Vec<u32>,
        reasons: Vec<String>,
        inputs: usize,
    ) -> Result<Transformed, String> {
        Transformed::from_columns(events, kinds, counts, reasons, inputs)
    }

    pub fn check_generated(cols: GeneratedColumns) -> Result<GeneratedBatch, String> {
        GeneratedBatch::check(cols)
    }

    /// The columns of `batch`, as a plugin would return them.
    pub fn generated_columns(batch: &GeneratedBatch) -> GeneratedColumns {
        batch.cols.clone()
    }
}
