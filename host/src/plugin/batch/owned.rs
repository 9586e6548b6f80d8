//! The owned per-event types, for fixtures, tests and the compatibility
//! calls (a parser instance's `parse`, a transform instance's
//! `transform`); batches are read through views instead.

use super::value::Value;

/// One named field of an event, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub value: Value,
}

/// A structured event, owned (fixtures and tests; batches use views).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub dataset: String,
    pub partition_key: String,
    pub event_time_ms: i64,
    pub fields: Vec<Field>,
}

/// Where a raw record came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    pub feed: String,
    pub shard: String,
    pub sequence: String,
    pub partition_key: String,
    pub arrival_time_ms: i64,
}

/// A raw record, owned: bytes plus metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawRecord {
    pub data: Vec<u8>,
    pub source: Source,
}

/// What became of one input event of a transform, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Keep(Event),
    Drop,
    Split(Vec<Event>),
    Fail(String),
}

/// A generated record, owned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Generated {
    pub partition_key: String,
    pub data: Vec<u8>,
}
