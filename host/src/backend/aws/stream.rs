//! The stream on Kinesis Data Streams.
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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_kinesis::primitives::{Blob, DateTime};
use aws_sdk_kinesis::types::{PutRecordsRequestEntry, ShardIteratorType};

use super::retry::Budget;
use super::{Clients, build_err, code_of, sdk_err, sha256_hex};
use crate::backend::{
    BackendError, ProducerMark, ProducerPosition, Result, ShardInfo, StoredRecord, Stream,
    StreamRecord, seq_after,
};
use crate::plan::StartPosition;
use crate::util::backoff::RETRY;

/// Kinesis limits.
pub const MAX_RECORDS_PER_CALL: usize = 500;
pub const MAX_BYTES_PER_CALL: usize = 5 * 1024 * 1024;
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
const MAX_PARTITION_KEY_BYTES: usize = 256;
/// GetRecords: five calls a second per shard.
const MIN_READ_SPACING: Duration = Duration::from_millis(200);

#[derive(Default, Clone)]
struct Reader {
    /// The sequence the cached iterator continues after (`None`: the start).
    after: Option<String>,
    iterator: Option<String>,
    /// The shard is closed and everything after `after` was read.
    ended: bool,
    last_call: Option<Instant>,
    /// The last sequence seen while reading at the tip of the shard.
    tip: Option<String>,
    at_tip: bool,
}

struct Mark {
    mark: ProducerMark,
    saved: Option<Instant>,
    dirty: bool,
}

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

/// One PutRecords entry and where it came from.
struct Entry {
    index: usize,
    key: String,
    explicit_hash: Option<String>,
    data: Vec<u8>,
}

impl Entry {
    fn size(&self) -> usize {
        self.key.len() + self.data.len()
    }
}

/// Keys over Kinesis's 256 bytes keep their prefix (the feed) and hash the
/// whole key into an explicit hash key, so one key still maps to one shard.
fn partition_key(key: &str) -> (String, Option<String>) {
    if !key.is_empty() && key.len() <= MAX_PARTITION_KEY_BYTES {
        return (key.to_string(), None);
    }
    let mut cut = MAX_PARTITION_KEY_BYTES.min(key.len());
    while !key.is_char_boundary(cut) {
        cut -= 1;
    }
    let short = if key.is_empty() { "-" } else { &key[..cut] };
    let hex = sha256_hex(key);
    let hash = u128::from_str_radix(&hex[..32], 16).expect("hex");
    (short.to_string(), Some(hash.to_string()))
}

/// Cuts entries into PutRecords calls within the count and byte limits.
fn chunks(entries: Vec<Entry>) -> Vec<Vec<Entry>> {
    let mut out: Vec<Vec<Entry>> = Vec::new();
    let mut bytes = 0;
    for e in entries {
        let size = e.size();
        let full = out
            .last()
            .is_none_or(|c| c.len() >= MAX_RECORDS_PER_CALL || bytes + size > MAX_BYTES_PER_CALL);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        out.last_mut().expect("pushed").push(e);
    }
    out
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

    /// Records Kinesis can never accept go to the error prefix, with why.
    async fn reject(&self, record: &StreamRecord, reason: &str) -> Result<()> {
        let body = serde_json::json!({
            "stage": "stream",
            "stream": self.name,
            "reason": reason,
            "partition_key": record.partition_key,
            "bytes": record.data.len(),
            "data": String::from_utf8_lossy(&record.data),
        });
        let name = format!(
            "{}stream/{}.json",
            self.error_prefix,
            &sha256_hex(&format!(
                "{}\n{}",
                record.partition_key,
                String::from_utf8_lossy(&record.data)
            ))[..32]
        );
        self.clients
            .s3
            .put_object()
            .bucket(&self.clients.bucket)
            .key(&name)
            .content_type("application/json")
            .body(body.to_string().into_bytes().into())
            .send()
            .await
            .map_err(|e| sdk_err("s3", &format!("PutObject {name}"), e))?;
        tracing::error!(
            stream = %self.name,
            key = %record.partition_key,
            object = %name,
            "record rejected: {reason}"
        );
        Ok(())
    }

    /// One PutRecords call's entries, retrying the ones refused (the
    /// call as a whole is retried by the SDK), all on one [`Budget`].
    async fn put_chunk(&self, mut pending: Vec<Entry>) -> Result<()> {
        let budget = Budget::default();
        let mut waits = RETRY.waits();
        loop {
            let records = pending
                .iter()
                .map(|e| {
                    PutRecordsRequestEntry::builder()
                        .partition_key(&e.key)
                        .set_explicit_hash_key(e.explicit_hash.clone())
                        .data(Blob::new(e.data.clone()))
                        .build()
                        .map_err(|err| build_err("kinesis", err))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .clients
                .kinesis
                .put_records()
                .stream_name(&self.name)
                .set_records(Some(records))
                .customize()
                .interceptor(budget.clone())
                .config_override(
                    aws_sdk_kinesis::config::Builder::default().retry_config(budget.round_config()),
                )
                .send()
                .await
                .map_err(|e| sdk_err("kinesis", &format!("PutRecords to {}", self.name), e))?;
            let mut failed = Vec::new();
            let mut reasons: HashMap<String, usize> = HashMap::new();
            for (entry, result) in pending.into_iter().zip(out.records()) {
                match result.error_code() {
                    Some(code) => {
                        *reasons.entry(code.to_string()).or_default() += 1;
                        failed.push(entry);
                    }
                    None => self.note_written(result.shard_id(), result.sequence_number()),
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            if budget.remaining() == 0 {
                // Throttled entries: the shard is over its write limit.
                return Err(BackendError::retryable(
                    "kinesis",
                    format!(
                        "PutRecords to {}: {} records still failing after {} requests ({reasons:?})",
                        self.name,
                        failed.len(),
                        budget.used()
                    ),
                ));
            }
            tracing::debug!(stream = %self.name, failed = failed.len(), ?reasons, "retrying failed PutRecords entries");
            tokio::time::sleep(waits.next_delay()).await;
            pending = failed;
        }
    }

    /// Remembers the highest sequence this process put in a shard.
    fn note_written(&self, shard: Option<&str>, seq: Option<&str>) {
        if let (Some(shard), Some(seq)) = (shard, seq) {
            let mut w = self.written.lock().expect("not poisoned");
            let e = w.entry(shard.to_string()).or_default();
            if e.is_empty() || seq_after(seq, e) {
                *e = seq.to_string();
            }
        }
    }

    async fn save_mark(&self, name: &str, mark: &ProducerMark) -> Result<()> {
        let body = serde_json::json!({ "next": mark.next, "records": mark.records });
        self.clients
            .state
            .put(
                &format!("producers/{name}"),
                body.to_string().into_bytes(),
                "application/json",
            )
            .await
    }

    async fn is_child(&self, shard: &str) -> Result<bool> {
        if let Some(c) = self.children.lock().expect("not poisoned").get(shard) {
            return Ok(*c);
        }
        self.lineage().await?;
        Ok(self
            .children
            .lock()
            .expect("not poisoned")
            .get(shard)
            .copied()
            .unwrap_or(false))
    }

    async fn iterator(&self, shard: &str, after: Option<&str>) -> Result<Option<String>> {
        let mut req = self
            .clients
            .kinesis
            .get_shard_iterator()
            .stream_name(&self.name)
            .shard_id(shard);
        req = match after {
            Some(seq) => req
                .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                .starting_sequence_number(seq),
            None if self.is_child(shard).await? => {
                req.shard_iterator_type(ShardIteratorType::TrimHorizon)
            }
            None => match self.start {
                StartPosition::TrimHorizon => {
                    req.shard_iterator_type(ShardIteratorType::TrimHorizon)
                }
                StartPosition::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
                StartPosition::AtTimestamp(ms) => req
                    .shard_iterator_type(ShardIteratorType::AtTimestamp)
                    .timestamp(DateTime::from_millis(ms)),
            },
        };
        let out = req.send().await.map_err(|e| {
            sdk_err(
                "kinesis",
                &format!("GetShardIterator {}/{shard}", self.name),
                e,
            )
        })?;
        Ok(out.shard_iterator().map(str::to_string))
    }
}

#[async_trait]
impl Stream for AwsStream {
    async fn shards(&self) -> Result<Vec<String>> {
        Ok(self.lineage().await?.into_iter().map(|s| s.id).collect())
    }

    async fn lineage(&self) -> Result<Vec<ShardInfo>> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.clients.kinesis.list_shards();
            req = match &token {
                Some(t) => req.next_token(t),
                None => req.stream_name(&self.name),
            };
            let out = req
                .send()
                .await
                .map_err(|e| sdk_err("kinesis", &format!("ListShards {}", self.name), e))?;
            for s in out.shards() {
                let parents: Vec<String> = [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                    .into_iter()
                    .flatten()
                    .map(str::to_string)
                    .collect();
                let ending = s
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number());
                if let Some(end) = ending {
                    self.endings
                        .lock()
                        .expect("not poisoned")
                        .insert(s.shard_id().to_string(), end.to_string());
                }
                let closed = ending.is_some();
                shards.push(ShardInfo {
                    id: s.shard_id().to_string(),
                    parents,
                    closed,
                });
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        shards.sort_by(|a, b| a.id.cmp(&b.id));
        // A child starts at its beginning even when its parents have
        // expired: whatever it holds came after them.
        let mut children = self.children.lock().expect("not poisoned");
        for s in &shards {
            children.insert(s.id.clone(), !s.parents.is_empty());
        }
        Ok(shards)
    }

    async fn ended(&self, shard: &str, after: Option<&str>) -> Result<bool> {
        let readers = self.readers.lock().expect("not poisoned");
        Ok(readers
            .get(shard)
            .is_some_and(|r| r.ended && r.after.as_deref() == after))
    }

    async fn put(&self, records: Vec<StreamRecord>, mark: Option<ProducerMark>) -> Result<()> {
        let mut entries = Vec::with_capacity(records.len());
        for (index, r) in records.iter().enumerate() {
            let (key, explicit_hash) = partition_key(&r.partition_key);
            if r.data.len() + key.len() > MAX_RECORD_BYTES {
                self.reject(
                    r,
                    &format!(
                        "{} bytes with its partition key: Kinesis takes at most {MAX_RECORD_BYTES} bytes per record",
                        r.data.len() + key.len()
                    ),
                )
                .await?;
                continue;
            }
            entries.push(Entry {
                index,
                key,
                explicit_hash,
                data: r.data.clone(),
            });
        }
        // Calls go in order, so a partition key's records keep their order
        // unless a partial failure retries some of them later.
        for chunk in chunks(entries) {
            debug_assert!(chunk.windows(2).all(|w| w[0].index < w[1].index));
            self.put_chunk(chunk).await?;
        }
        if let Some(mark) = mark {
            let mut marks = self.marks.lock().await;
            let m = marks.entry(mark.producer.clone()).or_insert(Mark {
                mark: mark.clone(),
                saved: None,
                dirty: true,
            });
            m.mark = mark;
            m.dirty = true;
            if m.saved.is_none_or(|t| t.elapsed() >= self.mark_interval) {
                let (name, mark) = (m.mark.producer.clone(), m.mark.clone());
                self.save_mark(&name, &mark).await?;
                m.saved = Some(Instant::now());
                m.dirty = false;
            }
        }
        Ok(())
    }

    async fn flush(&self) -> Result<()> {
        let mut marks = self.marks.lock().await;
        for (name, m) in marks.iter_mut() {
            if m.dirty {
                self.save_mark(name, &m.mark).await?;
                m.saved = Some(Instant::now());
                m.dirty = false;
            }
        }
        Ok(())
    }

    async fn producer_position(&self, producer: &str) -> Result<Option<ProducerPosition>> {
        let Some(text) = self
            .clients
            .state
            .get(&format!("producers/{producer}"))
            .await?
        else {
            return Ok(None);
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            BackendError::permanent(
                "s3",
                format!(
                    "{}: not a producer position: {e}",
                    self.clients.state.key(&format!("producers/{producer}"))
                ),
            )
        })?;
        Ok(Some(ProducerPosition {
            next: v["next"].as_u64().unwrap_or(0),
            records: v["records"].as_u64().unwrap_or(0),
        }))
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

impl AwsStream {
    async fn read_with(
        &self,
        r: &mut Reader,
        shard: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        if r.after.as_deref() != after || (r.iterator.is_none() && !r.ended) {
            r.after = after.map(str::to_string);
            r.ended = false;
            r.at_tip = false;
            r.iterator = self.iterator(shard, after).await?;
            if r.iterator.is_none() {
                r.ended = true;
            }
        }
        if r.ended {
            return Ok(Vec::new());
        }
        for renewed in [false, true] {
            if let Some(t) = r.last_call {
                let wait = MIN_READ_SPACING.saturating_sub(t.elapsed());
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
            }
            r.last_call = Some(Instant::now());
            let iterator = r.iterator.clone().expect("checked above");
            let result = self
                .clients
                .kinesis
                .get_records()
                .shard_iterator(iterator)
                .limit(limit.clamp(1, 10_000) as i32)
                .send()
                .await;
            let out = match result {
                Ok(out) => out,
                Err(e) if !renewed && code_of(&e) == Some("ExpiredIteratorException") => {
                    r.iterator = self.iterator(shard, r.after.as_deref()).await?;
                    if r.iterator.is_none() {
                        r.ended = true;
                        return Ok(Vec::new());
                    }
                    continue;
                }
                Err(e) if code_of(&e) == Some("ProvisionedThroughputExceededException") => {
                    // Shared read throughput is spent: back off this shard.
                    r.last_call = Some(Instant::now() + Duration::from_secs(1));
                    tracing::debug!(shard, "GetRecords throttled; backing off");
                    return Ok(Vec::new());
                }
                Err(e) => {
                    return Err(sdk_err(
                        "kinesis",
                        &format!("GetRecords {}/{shard}", self.name),
                        e,
                    ));
                }
            };
            let records: Vec<StoredRecord> = out
                .records()
                .iter()
                .map(|k| StoredRecord {
                    shard: shard.to_string(),
                    sequence: k.sequence_number().to_string(),
                    partition_key: k.partition_key().unwrap_or("").to_string(),
                    data: k.data().as_ref().to_vec(),
                    arrival_ms: k
                        .approximate_arrival_timestamp()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                })
                .collect();
            if let Some(last) = records.last() {
                r.after = Some(last.sequence.clone());
            }
            r.iterator = out.next_shard_iterator().map(str::to_string);
            // Closed shards end where their range ends (some servers keep
            // handing out iterators past it).
            let ending = self
                .endings
                .lock()
                .expect("not poisoned")
                .get(shard)
                .cloned();
            let past_end = match (&ending, &r.after) {
                (Some(end), Some(after)) => !seq_after(end, after),
                _ => false,
            };
            r.ended = r.iterator.is_none() || (past_end && records.len() < limit);
            let caught_up = out.millis_behind_latest().unwrap_or(0) == 0;
            r.at_tip = caught_up && records.len() < limit;
            if r.at_tip {
                r.tip = r.after.clone();
            }
            return Ok(records);
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: usize, bytes: usize) -> Entry {
        Entry {
            index,
            key: "k".into(),
            explicit_hash: None,
            data: vec![b'x'; bytes],
        }
    }

    #[test]
    fn calls_stay_within_500_records_and_5_mib() {
        let many: Vec<Entry> = (0..1201).map(|i| entry(i, 10)).collect();
        let sizes: Vec<usize> = chunks(many).iter().map(Vec::len).collect();
        assert_eq!(sizes, [500, 500, 201]);
        let big: Vec<Entry> = (0..12).map(|i| entry(i, 1024 * 1024 - 1)).collect();
        let c = chunks(big);
        assert_eq!(c.len(), 3, "five records of ~1 MiB per call");
        assert!(
            c.iter()
                .all(|c| c.iter().map(Entry::size).sum::<usize>() <= MAX_BYTES_PER_CALL)
        );
        let order: Vec<usize> = c.iter().flatten().map(|e| e.index).collect();
        assert_eq!(order, (0..12).collect::<Vec<_>>());
    }

    #[test]
    fn long_partition_keys_keep_their_feed_and_one_shard() {
        let (k, h) = partition_key("forex:EUR/USD");
        assert_eq!((k.as_str(), h), ("forex:EUR/USD", None));
        let long = format!("news:{}", "é".repeat(200));
        let (k, h) = partition_key(&long);
        assert!(k.len() <= 256 && k.starts_with("news:"));
        let h = h.expect("an explicit hash key");
        assert!(h.parse::<u128>().is_ok());
        assert_eq!(partition_key(&long).1.unwrap(), h, "stable");
    }
}
