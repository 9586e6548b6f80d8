//! Values exchanged with the backends.

use std::collections::BTreeMap;

/// A record to append to the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// A record as stored in a shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub shard: String,
    pub sequence: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    pub arrival_ms: i64,
}

/// A shard and where it came from. Resharding closes a shard and opens
/// children; a consumer drains every parent before reading a child, so
/// records of one partition key stay in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardInfo {
    pub id: String,
    /// The shard(s) this one was split or merged from.
    pub parents: Vec<String>,
    /// Closed to writes (its records stay readable until they expire).
    pub closed: bool,
}

/// A producer's position, recorded with its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerMark {
    pub producer: String,
    /// The producer's next position (e.g. the next tick number).
    pub next: u64,
    /// Records the producer has put so far, these included.
    pub records: u64,
}

/// What a producer recorded last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProducerPosition {
    pub next: u64,
    pub records: u64,
}

/// How far a consumer has forwarded a source (e.g. a shard).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub consumer: String,
    pub source: String,
    pub position: String,
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    /// Deterministic id (e.g. shard + first sequence); sending the same id
    /// twice replaces the pending copy where the provider allows.
    pub id: String,
    pub body: String,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub id: String,
    pub receipt: String,
    pub body: String,
    pub receive_count: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    pub visible: u64,
    pub in_flight: u64,
}

impl QueueDepth {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight
    }
}

/// An object to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutObject {
    pub key: String,
    pub body: Vec<u8>,
    pub content_type: String,
    pub content_encoding: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    /// Hex MD5-free content hash (SHA-256 prefix) of the stored body.
    pub etag: String,
    pub modified_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    pub info: ObjectInfo,
    pub body: Vec<u8>,
    pub content_type: String,
    pub content_encoding: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

/// A notification: an S3-event-shaped body plus message attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub dedup_id: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
}
