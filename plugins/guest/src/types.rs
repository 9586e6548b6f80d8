//! The plain Rust types plugin logic works with.
//!
//! These are not the WIT types: at the boundary a batch travels in columns
//! (see `wit/plugin.wit` and [`crate::wit`]), and the SDK's [`crate::abi`]
//! converts between the two in the thin binding layer. Logic builds and reads
//! these — natively in unit tests and benchmarks, the same in wasm.

pub use crate::name::Name;

/// The tick a generator is asked to produce records for (the WIT record,
/// which is plain data).
pub use crate::wit::Tick;

/// A typed field value. Timestamps are milliseconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Text(String),
    TimestampMs(i64),
}

/// One named field of an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: Name,
    pub value: Value,
}

/// A structured event: what parsers produce and transforms consume.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Logical dataset, e.g. `forex`.
    pub dataset: Name,
    /// The symbol or currency pair the event is about.
    pub partition_key: String,
    /// When the event happened, ms since the epoch.
    pub event_time_ms: i64,
    /// Typed payload fields, in the order the plugin chose.
    pub fields: Vec<Field>,
}

/// Where a raw record came from. Borrowed from the batch the host sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Source<'a> {
    /// The feed that produced the record, e.g. `forex`.
    pub feed: &'a str,
    /// The stream shard the record was read from (empty if none).
    pub shard: &'a str,
    /// The record's sequence number within its shard (empty if none).
    pub sequence: &'a str,
    /// The partition key the producer put the record under.
    pub partition_key: &'a str,
    /// When the stream accepted the record, ms since the epoch.
    pub arrival_time_ms: i64,
}

/// A raw log record: its bytes and where it came from, borrowed from the
/// batch the host sent (decoding a batch copies nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawRecord<'a> {
    pub data: &'a [u8],
    pub source: Source<'a>,
}

/// What became of one input event of a transform.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Kept, possibly changed.
    Keep(Event),
    /// Filtered out on purpose (not an error).
    Drop,
    /// Replaced by several events (possibly zero).
    Split(Vec<Event>),
    /// Rejected, with the reason; the event goes to the error prefix.
    Fail(String),
}

/// A generated record, ready for the stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Generated {
    /// Stream partition key (symbol / currency pair).
    pub partition_key: String,
    /// The raw bytes, in the feed's own wire format.
    pub data: Vec<u8>,
}
