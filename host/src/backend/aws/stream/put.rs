//! The put path: records cut into PutRecords calls within Kinesis's limits,
//! refused entries retried on one request budget, records Kinesis can never
//! take written to the error prefix instead.

use std::collections::HashMap;

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::{AwsStream, MAX_BYTES_PER_CALL, MAX_RECORD_BYTES, MAX_RECORDS_PER_CALL};
use crate::backend::aws::retry::Budget;
use crate::backend::aws::{build_err, sdk_err, sha256_hex};
use crate::backend::{BackendError, Result, StreamRecord, seq_after};
use crate::util::backoff::RETRY;

const MAX_PARTITION_KEY_BYTES: usize = 256;

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
    /// Writes `records` in order, in as few PutRecords calls as the limits
    /// allow; a record over Kinesis's size limit is rejected to the bucket.
    pub(super) async fn put_records(&self, records: &[StreamRecord]) -> Result<()> {
        let mut entries = Vec::with_capacity(records.len());
        for (index, r) in records.iter().enumerate() {
            let (key, explicit_hash) = partition_key(&r.partition_key);
            if r.data.len() + key.len() > MAX_RECORD_BYTES {
                let reason = format!(
                    "{} bytes with its partition key: Kinesis takes at most {MAX_RECORD_BYTES} bytes per record",
                    r.data.len() + key.len()
                );
                self.reject(r, &reason).await?;
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
        Ok(())
    }

    /// Records Kinesis can never accept go to the error prefix, with why.
    async fn reject(&self, record: &StreamRecord, reason: &str) -> Result<()> {
        let body = serde_json::json!({
            "stage": "stream",
            "reason": reason,
            "source": { "stream": self.name, "partition_key": record.partition_key },
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
