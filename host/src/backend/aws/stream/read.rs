//! The read path: one cached shard iterator per shard, GetRecords at most
//! five times a second per shard, an expired iterator renewed from the last
//! sequence read, a closed shard ended where its range ends.

use std::time::{Duration, Instant};

use aws_sdk_kinesis::operation::get_records::GetRecordsOutput;
use aws_sdk_kinesis::primitives::DateTime;
use aws_sdk_kinesis::types::{Record, ShardIteratorType};

use super::AwsStream;
use crate::backend::aws::{code_of, sdk_err};
use crate::backend::{Result, StoredRecord, seq_after};
use crate::plan::StartPosition;

/// GetRecords: five calls a second per shard.
const MIN_READ_SPACING: Duration = Duration::from_millis(200);

/// Where the reading of one shard stands.
#[derive(Default, Clone)]
pub(super) struct Reader {
    /// The sequence the cached iterator continues after (`None`: the start).
    pub(super) after: Option<String>,
    iterator: Option<String>,
    /// The shard is closed and everything after `after` was read.
    pub(super) ended: bool,
    last_call: Option<Instant>,
    /// The last sequence seen while reading at the tip of the shard.
    pub(super) tip: Option<String>,
    pub(super) at_tip: bool,
}

/// What one GetRecords call came to.
enum Fetched {
    Records(GetRecordsOutput),
    /// The iterator expired: renew it and call again.
    Expired,
    /// The shard's read throughput is spent: nothing this time.
    Throttled,
}

impl AwsStream {
    /// Reads up to `limit` records of `shard` after `after`, with `r` the
    /// shard's reader (updated).
    pub(super) async fn read_with(
        &self,
        r: &mut Reader,
        shard: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        self.seek(r, shard, after).await?;
        if r.ended {
            return Ok(Vec::new());
        }
        for renewed in [false, true] {
            match self.get_records(r, shard, limit, !renewed).await? {
                Fetched::Records(out) => return Ok(self.take(r, shard, &out, limit)),
                Fetched::Expired => {
                    r.iterator = self.iterator(shard, r.after.as_deref()).await?;
                    if r.iterator.is_none() {
                        r.ended = true;
                        return Ok(Vec::new());
                    }
                }
                Fetched::Throttled => return Ok(Vec::new()),
            }
        }
        Ok(Vec::new())
    }

    /// A new iterator when the caller reads from elsewhere than the cached
    /// one continues, or there is none (and the shard has not ended).
    async fn seek(&self, r: &mut Reader, shard: &str, after: Option<&str>) -> Result<()> {
        if r.after.as_deref() != after || (r.iterator.is_none() && !r.ended) {
            r.after = after.map(str::to_string);
            r.ended = false;
            r.at_tip = false;
            r.iterator = self.iterator(shard, after).await?;
            if r.iterator.is_none() {
                r.ended = true;
            }
        }
        Ok(())
    }

    /// One GetRecords call on the reader's iterator, spaced from the last;
    /// an expired iterator is reported only when `may_renew`.
    async fn get_records(
        &self,
        r: &mut Reader,
        shard: &str,
        limit: usize,
        may_renew: bool,
    ) -> Result<Fetched> {
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
        match result {
            Ok(out) => Ok(Fetched::Records(out)),
            Err(e) if may_renew && code_of(&e) == Some("ExpiredIteratorException") => {
                Ok(Fetched::Expired)
            }
            Err(e) if code_of(&e) == Some("ProvisionedThroughputExceededException") => {
                // Shared read throughput is spent: back off this shard.
                r.last_call = Some(Instant::now() + Duration::from_secs(1));
                tracing::debug!(shard, "GetRecords throttled; backing off");
                Ok(Fetched::Throttled)
            }
            Err(e) => Err(sdk_err(
                "kinesis",
                &format!("GetRecords {}/{shard}", self.name),
                e,
            )),
        }
    }

    /// A GetRecords answer's records, the reader moved past them: its next
    /// iterator, whether the shard ended, whether it reads at the tip.
    fn take(
        &self,
        r: &mut Reader,
        shard: &str,
        out: &GetRecordsOutput,
        limit: usize,
    ) -> Vec<StoredRecord> {
        let records: Vec<StoredRecord> = out.records().iter().map(|k| stored(shard, k)).collect();
        if let Some(last) = records.last() {
            r.after = Some(last.sequence.clone());
        }
        r.iterator = out.next_shard_iterator().map(str::to_string);
        let past_end = self.past_end(shard, r.after.as_deref());
        r.ended = r.iterator.is_none() || (past_end && records.len() < limit);
        let caught_up = out.millis_behind_latest().unwrap_or(0) == 0;
        r.at_tip = caught_up && records.len() < limit;
        if r.at_tip {
            r.tip = r.after.clone();
        }
        records
    }

    /// Whether `after` is at or past a closed shard's last sequence (some
    /// servers keep handing out iterators past it).
    fn past_end(&self, shard: &str, after: Option<&str>) -> bool {
        let endings = self.endings.lock().expect("not poisoned");
        match (endings.get(shard), after) {
            (Some(end), Some(after)) => !seq_after(end, after),
            _ => false,
        }
    }

    /// An iterator after `after`, or, for a shard without one, at its
    /// beginning (a child of a resharding) or at the configured position.
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

/// A Kinesis record as the stream hands it out.
fn stored(shard: &str, k: &Record) -> StoredRecord {
    StoredRecord {
        shard: shard.to_string(),
        sequence: k.sequence_number().to_string(),
        partition_key: k.partition_key().unwrap_or("").to_string(),
        data: k.data().as_ref().to_vec(),
        arrival_ms: k
            .approximate_arrival_timestamp()
            .and_then(|t| t.to_millis().ok())
            .unwrap_or(0),
    }
}
