//! The stream on Kinesis Data Streams: this file the [`Stream`] trait's
//! face, `put.rs` the put path, `marks.rs` the producer positions,
//! `read.rs` the read path, `shards.rs` the shard listing and resharding.
//!
//! Writes: PutRecords in calls of at most 500 records and 5 MiB; a partial
//! failure (`FailedRecordCount`) retries only the failed entries, with
//! jittered backoff, on one request budget with the SDK's retries of the
//! whole call (see `retry`). A record Kinesis can never take (over 1 MiB) is written
//! to the error prefix of the bucket with the reason instead of blocking
//! the producer.
//!
//! Reads: one cached shard iterator per shard, GetRecords at most five
//! times a second per shard, an expired iterator renewed from the last
//! sequence read. A shard without a checkpoint starts at the configured
//! position, except a child of a resharding, which starts at its beginning
//! (its parents were drained first).

mod marks;
mod put;
mod read;
mod shards;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::Clients;
use crate::backend::{
    ProducerMark, ProducerPosition, Result, ShardInfo, StoredRecord, Stream, StreamRecord,
    seq_after,
};
use crate::plan::StartPosition;
use marks::Mark;
use read::Reader;

/// Kinesis limits.
pub const MAX_RECORDS_PER_CALL: usize = 500;
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

pub struct AwsStream {
    clients: Arc<Clients>,
    name: String,
    start: StartPosition,
    mark_interval: Duration,
    error_prefix: String,
    readers: Mutex<HashMap<String, Reader>>,
    /// The highest sequence this process put, per shard.
    written: Mutex<HashMap<String, String>>,
    marks: tokio::sync::Mutex<HashMap<String, Mark>>,
    /// Shards with parents (children of a resharding), from the last listing.
    children: Mutex<HashMap<String, bool>>,
    /// Closed shards' last sequence numbers, from the last listing.
    endings: Mutex<HashMap<String, String>>,
}

impl AwsStream {
    pub fn new(
        clients: Arc<Clients>,
        name: &str,
        start: StartPosition,
        mark_interval: Duration,
        error_prefix: &str,
    ) -> Self {
        Self {
            clients,
            name: name.to_string(),
            start,
            mark_interval,
            error_prefix: error_prefix.to_string(),
            readers: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            marks: tokio::sync::Mutex::new(HashMap::new()),
            children: Mutex::new(HashMap::new()),
            endings: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Stream for AwsStream {
    async fn shards(&self) -> Result<Vec<String>> {
        Ok(self.lineage().await?.into_iter().map(|s| s.id).collect())
    }

    async fn lineage(&self) -> Result<Vec<ShardInfo>> {
        self.list_shards().await
    }

    async fn ended(&self, shard: &str, after: Option<&str>) -> Result<bool> {
        let readers = self.readers.lock().expect("not poisoned");
        Ok(readers
            .get(shard)
            .is_some_and(|r| r.ended && r.after.as_deref() == after))
    }

    async fn put(&self, records: Vec<StreamRecord>, mark: Option<ProducerMark>) -> Result<()> {
        self.put_records(&records).await?;
        if let Some(mark) = mark {
            self.note_mark(mark).await?;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        self.save_dirty_marks().await
    }

    async fn producer_position(&self, producer: &str) -> Result<Option<ProducerPosition>> {
        self.saved_position(producer).await
    }

    async fn read(
        &self,
        shard: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        let mut state = {
            let mut readers = self.readers.lock().expect("not poisoned");
            // A copy: while this read is out, `pending` sees the last state.
            readers.entry(shard.to_string()).or_default().clone()
        };
        let result = self.read_with(&mut state, shard, after, limit).await;
        self.readers
            .lock()
            .expect("not poisoned")
            .insert(shard.to_string(), state);
        result
    }

    async fn latest(&self, _shard: &str) -> Result<Option<String>> {
        // Kinesis has no call for a shard's last sequence number.
        Ok(None)
    }

    async fn pending(&self, shard: &str, checkpoint: Option<&str>) -> Result<bool> {
        let written = self
            .written
            .lock()
            .expect("not poisoned")
            .get(shard)
            .cloned();
        let readers = self.readers.lock().expect("not poisoned");
        let Some(r) = readers.get(shard) else {
            // Never read in this process: it may hold anything.
            return Ok(true);
        };
        if !r.at_tip && !r.ended {
            return Ok(true);
        }
        let behind = |seq: &Option<String>| match (seq, checkpoint) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(s), Some(c)) => seq_after(s, c),
        };
        Ok(behind(&written) || behind(&r.tip))
    }
}
