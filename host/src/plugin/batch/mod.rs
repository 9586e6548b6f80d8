//! The host's representation of a batch: the columns of contract `0.2.0`
//! (`wit/plugin.wit`), checked once, read through cheap views.
//!
//! An [`EventBatch`] is what a parser returns and a transform takes and
//! returns; the processor hands one from plugin to plugin without ever
//! building per-event structs, and writes its objects straight from the
//! last one. Everything a plugin returns is untrusted: [`EventBatch`],
//! [`Parsed`], [`Transformed`] and [`GeneratedBatch`] can only be made from
//! plugin output by the checks here (indices and spans in range, spans on
//! character boundaries, `fields-end` monotonic, counts adding up), so
//! every accessor afterwards is infallible and a hostile plugin cannot make
//! the host panic.
//!
//! The owned per-event types ([`Event`], [`RawRecord`], …) remain for
//! fixtures, tests and the compatibility calls
//! (a parser instance's `parse`, a transform instance's `transform`).
//!
//! One file each: `value.rs` (a field's value, owned or borrowed),
//! `owned.rs` (the owned types), `events.rs` (event columns and views),
//! `builder.rs` (building event columns on the host), `raw.rs` (a parser's
//! input), `parsed.rs` / `transformed.rs` (a parser's / a transform's
//! answer), `generated.rs` (a generator's records).

mod builder;
mod events;
mod generated;
mod owned;
mod parsed;
mod raw;
mod transformed;
mod value;

#[cfg(test)]
mod tests;

use pipehost_abi::to_u32;

pub(crate) use super::bindings::pipehost::plugin::types as wit;
pub use wit::Tick;

pub use builder::EventBatchBuilder;
pub use events::{EventBatch, EventView};
pub(crate) use events::{approx_bytes, claimed_events};
pub use generated::GeneratedBatch;
pub use owned::{Event, Field, Generated, Outcome, RawRecord, Source};
pub use parsed::Parsed;
pub use raw::{RawBatch, RawView};
pub use transformed::{BatchOutcome, Transformed};
pub use value::{Value, ValueRef};

/// Appends `s` to `text`; returns where it ends.
#[inline]
fn push_end(text: &mut String, s: &str) -> u32 {
    text.push_str(s);
    to_u32(text.len(), "text")
}
