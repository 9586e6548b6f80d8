//! The queue message the bridge sends: one batch of stream records from
//! one shard, `[first_seq, last_seq]`. Its id is derived from the batch's
//! start, so everything downstream can be keyed deterministically.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

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
    /// The stream partition key, `<feed>:<key>`.
    pub key: String,
    /// Arrival time on the stream, ms since the epoch.
    pub t: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b64: Option<String>,
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
            key: r.partition_key.clone(),
            t: r.arrival_ms,
            data,
            b64,
        }
    }

    /// The payload bytes.
    pub fn bytes(&self) -> Result<Vec<u8>, String> {
        match (&self.data, &self.b64) {
            (Some(s), None) => Ok(s.as_bytes().to_vec()),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .map_err(|e| format!("record {}: bad base64: {e}", self.seq)),
            _ => Err(format!(
                "record {}: needs exactly one of `data` or `b64`",
                self.seq
            )),
        }
    }

    /// `(feed, key)` from the stream partition key `<feed>:<key>`.
    pub fn feed_and_key(&self) -> (&str, &str) {
        match self.key.split_once(':') {
            Some((feed, key)) => (feed, key),
            None => ("", self.key.as_str()),
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

    pub fn decode(body: &str) -> Result<Self, String> {
        let m: BatchMessage =
            serde_json::from_str(body).map_err(|e| format!("not a pipehost batch message: {e}"))?;
        if m.v != VERSION {
            return Err(format!(
                "batch message version {} (this host reads {VERSION})",
                m.v
            ));
        }
        if m.records.is_empty() {
            return Err("batch message has no records".into());
        }
        Ok(m)
    }
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
}
