//! The queue message the bridge sends: one batch of stream records from
//! one shard, `[first_seq, last_seq]`. Its id is derived from the batch's
//! start, so everything downstream can be keyed deterministically.
//!
//! The message carries stream records as they are on the stream, aggregated
//! ones included (base64, like any binary payload); [`MessageRecord::unpack`]
//! turns an aggregate back into one record per line for the processor.
//! The lines of an aggregate share its partition key (an `Arc<str>`), and
//! an aggregate is unpacked only within [`aggregate::MAX_LINES`] lines and
//! [`aggregate::MAX_KEY_BYTES`] of key, so unpacking one record costs
//! about its own size whatever its lines and key are.

use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::aggregate;
use crate::backend::StoredRecord;

pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchMessage {
    pub v: u32,
    pub stream: String,
    pub shard: String,
    pub first_seq: String,
    pub last_seq: String,
    pub records: Vec<MessageRecord>,
}

/// One stream record. `data` holds UTF-8 payloads as text; anything else
/// travels base64-encoded in `b64`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub seq: String,
    /// The stream partition key, `<feed>:<key>`, shared by the lines of an
    /// aggregate.
    #[serde(serialize_with = "ser_key", deserialize_with = "de_key")]
    pub key: Arc<str>,
    /// Arrival time on the stream, ms since the epoch.
    pub t: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64: Option<String>,
}

fn ser_key<S: serde::Serializer>(key: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(key)
}

fn de_key<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
    String::deserialize(d).map(Arc::from)
}

impl MessageRecord {
    pub fn from_stored(r: &StoredRecord) -> Self {
        let (data, b64) = match std::str::from_utf8(&r.data) {
            Ok(s) => (Some(s.to_string()), None),
            Err(_) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(&r.data)),
            ),
        };
        Self {
            seq: r.sequence.clone(),
            key: r.partition_key.as_str().into(),
            t: r.arrival_ms,
            data,
            b64,
        }
    }

    /// The payload bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, RecordError> {
        match (&self.data, &self.b64) {
            (Some(s), None) => Ok(s.as_bytes().to_vec()),
            (None, Some(b)) => {
                base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|source| RecordError::Base64 {
                        seq: self.seq.clone(),
                        source,
                    })
            }
            _ => Err(RecordError::Payload {
                seq: self.seq.clone(),
            }),
        }
    }

    /// The records this one stands for when it is an aggregate: one per
    /// line, each with the sub-sequence `<seq>:<i>` (`i` from 0) and this
    /// record's partition key and arrival time. `Ok(None)` for a plain
    /// record (text never is an aggregate: the magic is not UTF-8); an
    /// aggregate that cannot be read, or past [`aggregate::MAX_LINES`]
    /// lines or [`aggregate::MAX_KEY_BYTES`] of key (an older version
    /// wrote it), is an error naming the record: it goes to the error
    /// prefix whole.
    pub fn unpack(&self) -> Result<Option<Vec<MessageRecord>>, RecordError> {
        if self.data.is_some() {
            return Ok(None);
        }
        // Undecodable base64 is not ours to report here: the processor
        // reports it as it does for any record.
        let Ok(bytes) = self.bytes() else {
            return Ok(None);
        };
        if !aggregate::is_aggregate(&bytes) {
            return Ok(None);
        }
        // Checked before decoding: the line count is read from the header.
        let claimed = aggregate::lines_in(&bytes);
        if claimed > aggregate::MAX_LINES {
            return Err(RecordError::TooManyLines {
                seq: self.seq.clone(),
                claimed,
            });
        }
        if self.key.len() > aggregate::MAX_KEY_BYTES {
            return Err(RecordError::KeyTooLong {
                seq: self.seq.clone(),
                bytes: self.key.len(),
            });
        }
        let lines = aggregate::decode(&bytes).map_err(|source| RecordError::Aggregate {
            seq: self.seq.clone(),
            source,
        })?;
        Ok(Some(
            lines
                .into_iter()
                .enumerate()
                .map(|(i, line)| {
                    let (data, b64) = match std::str::from_utf8(line) {
                        Ok(s) => (Some(s.to_string()), None),
                        Err(_) => (
                            None,
                            Some(base64::engine::general_purpose::STANDARD.encode(line)),
                        ),
                    };
                    MessageRecord {
                        seq: format!("{}:{i}", self.seq),
                        key: self.key.clone(),
                        t: self.t,
                        data,
                        b64,
                    }
                })
                .collect(),
        ))
    }

    /// `(feed, key)` from the stream partition key `<feed>:<key>`.
    pub fn feed_and_key(&self) -> (&str, &str) {
        match self.key.split_once(':') {
            Some((feed, key)) => (feed, key),
            None => ("", &self.key),
        }
    }
}

/// The stream partition key for a feed's record.
pub fn stream_key(feed: &str, key: &str) -> String {
    format!("{feed}:{key}")
}

impl BatchMessage {
    /// The message id: stream, shard and first sequence.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.stream, self.shard, self.first_seq)
    }

    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("a batch message serializes")
    }

    pub fn decode(body: &str) -> Result<Self, MessageError> {
        let m: BatchMessage = serde_json::from_str(body).map_err(MessageError::Json)?;
        if m.v != VERSION {
            return Err(MessageError::Version(m.v));
        }
        if m.records.is_empty() {
            return Err(MessageError::NoRecords);
        }
        Ok(m)
    }
}

/// Why a queue message is not a batch this host reads.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("not a pipehost batch message: {0}")]
    Json(#[source] serde_json::Error),
    #[error("batch message version {0} (this host reads {VERSION})")]
    Version(u32),
    #[error("batch message has no records")]
    NoRecords,
}

/// Why one record of a batch message cannot be read or unpacked; each
/// names the record's sequence.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("record {seq}: bad base64: {source}")]
    Base64 {
        seq: String,
        #[source]
        source: base64::DecodeError,
    },
    #[error("record {seq}: needs exactly one of `data` or `b64`")]
    Payload { seq: String },
    #[error(
        "record {seq}: aggregated record of {claimed} lines; this host unpacks at most {max}",
        max = aggregate::MAX_LINES
    )]
    TooManyLines { seq: String, claimed: usize },
    #[error(
        "record {seq}: aggregated record under a partition key of {bytes} bytes; \
         this host unpacks none under a key longer than {max} bytes",
        max = aggregate::MAX_KEY_BYTES
    )]
    KeyTooLong { seq: String, bytes: usize },
    #[error("record {seq}: {source}")]
    Aggregate {
        seq: String,
        #[source]
        source: aggregate::AggregateError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_payloads_survive_and_text_stays_readable() {
        let text = StoredRecord {
            shard: "shard-0000".into(),
            sequence: "1".into(),
            partition_key: "forex:EUR/USD".into(),
            data: b"hello".to_vec(),
            arrival_ms: 5,
        };
        let bin = StoredRecord {
            data: vec![0xff, 0x00, 0xfe],
            ..text.clone()
        };
        let m = BatchMessage {
            v: VERSION,
            stream: "s".into(),
            shard: "shard-0000".into(),
            first_seq: "1".into(),
            last_seq: "1".into(),
            records: vec![
                MessageRecord::from_stored(&text),
                MessageRecord::from_stored(&bin),
            ],
        };
        let back = BatchMessage::decode(&m.encode()).unwrap();
        assert_eq!(back.records[0].data.as_deref(), Some("hello"));
        assert_eq!(back.records[1].bytes().unwrap(), vec![0xff, 0x00, 0xfe]);
        assert_eq!(back.records[0].feed_and_key(), ("forex", "EUR/USD"));
        assert!(BatchMessage::decode("{not json").is_err());
    }

    fn aggregate_record(lines: usize, key: &str) -> MessageRecord {
        let line: &[u8] = b"x";
        let packed = aggregate::pack_bounded(
            std::iter::repeat_n(line, lines),
            lines,
            aggregate::MAX_RECORD_BYTES,
            usize::MAX,
        );
        MessageRecord::from_stored(&StoredRecord {
            shard: "shard-0000".into(),
            sequence: "7".into(),
            partition_key: key.into(),
            data: packed[0].data.clone(),
            arrival_ms: 1,
        })
    }

    #[test]
    fn unpacked_lines_share_the_key_and_oversized_aggregates_are_refused() {
        let r = aggregate_record(1000, "forex:k");
        let subs = r.unpack().unwrap().unwrap();
        assert_eq!(subs.len(), 1000);
        assert!(subs.iter().all(|s| Arc::ptr_eq(&s.key, &r.key)));

        // Written by an older version: more lines than unpacked, or a key
        // past Kinesis' limit copied to each line — refused by name.
        let mut many = aggregate_record(aggregate::MAX_LINES, "forex:k");
        let mut data = aggregate::pack_bounded(
            std::iter::repeat_n(&b"x"[..], aggregate::MAX_LINES + 1),
            0,
            aggregate::MAX_RECORD_BYTES,
            usize::MAX,
        );
        assert_eq!(data.len(), 2, "pack never writes more than MAX_LINES");
        // Forge an older, larger aggregate: the header and checksum patched.
        let mut big = data.remove(0).data;
        big.push(1);
        big.push(b'x');
        big[9..13].copy_from_slice(&(aggregate::MAX_LINES as u32 + 1).to_le_bytes());
        let crc = crc32fast::hash(&big[9..]);
        big[5..9].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            aggregate::decode(&big).unwrap().len(),
            aggregate::MAX_LINES + 1
        );
        many.b64 = Some(base64::engine::general_purpose::STANDARD.encode(&big));
        let e = many.unpack().unwrap_err();
        assert!(matches!(
            e,
            RecordError::TooManyLines { claimed: 65537, .. }
        ));
        assert_eq!(
            e.to_string(),
            "record 7: aggregated record of 65537 lines; this host unpacks at most 65536"
        );
        let long_key = format!("forex:{}", "k".repeat(300));
        let e = aggregate_record(3, &long_key)
            .unpack()
            .unwrap_err()
            .to_string();
        assert!(e.contains("partition key of 306 bytes"), "{e}");
        assert!(e.contains("longer than 256 bytes"), "{e}");
    }

    #[test]
    fn aggregates_travel_as_base64_and_unpack_into_sub_sequences() {
        let lines: [&[u8]; 3] = [b"one", b"two \xff", b"three"];
        let packed = aggregate::pack(lines, 16, aggregate::MAX_RECORD_BYTES).remove(0);
        let stored = StoredRecord {
            shard: "shard-0001".into(),
            sequence: "00000000000000000042".into(),
            partition_key: "forex:1a2b3c4d".into(),
            data: packed.data,
            arrival_ms: 7,
        };
        let m = BatchMessage {
            v: VERSION,
            stream: "s".into(),
            shard: "shard-0001".into(),
            first_seq: stored.sequence.clone(),
            last_seq: stored.sequence.clone(),
            records: vec![MessageRecord::from_stored(&stored)],
        };
        let r = &BatchMessage::decode(&m.encode()).unwrap().records[0];
        assert!(r.data.is_none() && r.b64.is_some(), "binary: base64");
        let subs = r.unpack().unwrap().expect("an aggregate");
        let seqs: Vec<&str> = subs.iter().map(|s| s.seq.as_str()).collect();
        assert_eq!(
            seqs,
            [
                "00000000000000000042:0",
                "00000000000000000042:1",
                "00000000000000000042:2"
            ]
        );
        assert!(subs.iter().all(|s| s.key == r.key && s.t == 7));
        assert_eq!(subs[0].data.as_deref(), Some("one"));
        assert_eq!(
            subs[1].bytes().unwrap(),
            b"two \xff",
            "a non-UTF-8 line stays bytes"
        );
        assert_eq!(subs[2].data.as_deref(), Some("three"));

        // Plain records, text or binary, are left alone.
        let plain = MessageRecord::from_stored(&StoredRecord {
            data: b"plain".to_vec(),
            ..stored.clone()
        });
        assert_eq!(plain.unpack().unwrap(), None);
        let binary = MessageRecord::from_stored(&StoredRecord {
            data: vec![0xff, 0],
            ..stored.clone()
        });
        assert_eq!(binary.unpack().unwrap(), None);
        // A corrupt aggregate names the record and what is wrong.
        let mut bad = stored.data.clone();
        bad.truncate(bad.len() - 1);
        let bad = MessageRecord::from_stored(&StoredRecord {
            data: bad,
            ..stored
        });
        let e = bad.unpack().unwrap_err().to_string();
        assert!(
            e.starts_with("record 00000000000000000042: aggregated record is corrupt: checksum"),
            "{e}"
        );
    }
}
