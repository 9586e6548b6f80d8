//! The local stream (Kinesis role): shards chosen by a stable hash of the
//! partition key, per-shard sequence numbers, producer positions recorded
//! in the same transaction as the records. Retention never trims a record
//! the bridge has not forwarded ([`LocalStream::trim`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::db::{Db, now_ms};
use crate::backend::{
    BackendError, ProducerMark, ProducerPosition, Result, StoredRecord, Stream, StreamRecord,
};

pub struct LocalStream {
    db: Arc<Db>,
    name: String,
    shards: u32,
    /// The queue the bridge forwards to: its checkpoints bound trimming.
    queue: String,
}

/// Shard ids look like `shard-0003`.
pub fn shard_id(index: u32) -> String {
    format!("shard-{index:04}")
}

fn shard_index(id: &str) -> Result<u32> {
    id.strip_prefix("shard-")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| BackendError::NotFound {
            service: "stream",
            what: format!("shard {id:?}"),
        })
}

/// Sequence numbers are zero-padded so they sort as text.
pub fn sequence(n: i64) -> String {
    format!("{n:020}")
}

/// FNV-1a: stable across runs and platforms.
pub fn shard_for(partition_key: &str, shards: u32) -> u32 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in partition_key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    (h % u64::from(shards)) as u32
}

impl LocalStream {
    pub fn new(db: Arc<Db>, name: &str, shards: u32, queue: &str) -> Self {
        Self {
            db,
            name: name.to_string(),
            shards,
            queue: queue.to_string(),
        }
    }
}

/// The last sequence of `shard` that trimming may drop: before the shard's
/// last record, and no further than the slowest consumer's checkpoint on
/// `queue` (`SHARD_END`: all of it). 0 when nothing may go.
fn trim_bound(
    tx: &rusqlite::Transaction<'_>,
    stream: &str,
    queue: &str,
    shard: u32,
) -> rusqlite::Result<i64> {
    let last: i64 = tx.query_row(
        "SELECT COALESCE(MAX(seq), 0) FROM stream_records WHERE stream = ?1 AND shard = ?2",
        params![stream, shard],
        |r| r.get(0),
    )?;
    let checkpoint: Option<i64> = tx.query_row(
        "SELECT MIN(CASE WHEN position = 'SHARD_END' THEN ?3 ELSE CAST(position AS INTEGER) END)
         FROM checkpoints WHERE queue = ?1 AND source = ?2",
        params![queue, shard_id(shard), i64::MAX],
        |r| r.get(0),
    )?;
    Ok(checkpoint.unwrap_or(0).min(last - 1).max(0))
}

#[async_trait]
impl Stream for LocalStream {
    async fn shards(&self) -> Result<Vec<String>> {
        Ok((0..self.shards).map(shard_id).collect())
    }

    async fn put(&self, records: Vec<StreamRecord>, mark: Option<ProducerMark>) -> Result<()> {
        let name = self.name.clone();
        let shards = self.shards;
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = now_ms();
                let mut next: BTreeMap<u32, i64> = BTreeMap::new();
                {
                    let mut max = tx.prepare_cached(
                        "SELECT COALESCE(MAX(seq), 0) FROM stream_records WHERE stream = ?1 AND shard = ?2",
                    )?;
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO stream_records (stream, shard, seq, partition_key, data, arrival_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?;
                    for r in &records {
                        let shard = shard_for(&r.partition_key, shards);
                        let seq = match next.get(&shard) {
                            Some(s) => *s,
                            None => max.query_row(params![name, shard], |row| row.get::<_, i64>(0))? + 1,
                        };
                        insert.execute(params![name, shard, seq, r.partition_key, r.data, now])?;
                        next.insert(shard, seq + 1);
                    }
                }
                if let Some(m) = mark {
                    tx.execute(
                        "INSERT INTO producers (stream, producer, next, records) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (stream, producer) DO UPDATE SET next = ?3, records = ?4",
                        params![name, m.producer, m.next as i64, m.records as i64],
                    )?;
                }
                tx.commit()
            })
            .await
    }

    async fn producer_position(&self, producer: &str) -> Result<Option<ProducerPosition>> {
        let name = self.name.clone();
        let producer = producer.to_string();
        self.db
            .call(move |c| {
                c.query_row(
                    "SELECT next, records FROM producers WHERE stream = ?1 AND producer = ?2",
                    params![name, producer],
                    |r| {
                        Ok(ProducerPosition {
                            next: r.get::<_, i64>(0)? as u64,
                            records: r.get::<_, i64>(1)? as u64,
                        })
                    },
                )
                .optional()
            })
            .await
    }

    async fn read(
        &self,
        shard: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        let index = shard_index(shard)?;
        let after: i64 = match after {
            Some(s) => s
                .parse()
                .map_err(|_| BackendError::permanent("stream", format!("bad sequence {s:?}")))?,
            None => 0,
        };
        let name = self.name.clone();
        let shard = shard.to_string();
        self.db
            .call(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT seq, partition_key, data, arrival_ms FROM stream_records
                     WHERE stream = ?1 AND shard = ?2 AND seq > ?3 ORDER BY seq LIMIT ?4",
                )?;
                let rows = st.query_map(params![name, index, after, limit as i64], |r| {
                    Ok(StoredRecord {
                        shard: shard.clone(),
                        sequence: sequence(r.get(0)?),
                        partition_key: r.get(1)?,
                        data: r.get(2)?,
                        arrival_ms: r.get(3)?,
                    })
                })?;
                rows.collect()
            })
            .await
    }

    /// Never past what the bridge forwarded: a record goes only once it is
    /// older than `before_ms`, not the shard's last, and at or before the
    /// slowest checkpoint recorded for its shard on the bridge's queue (no
    /// checkpoint: nothing of the shard goes). Records past the retention
    /// that are kept for the bridge are logged.
    async fn trim(&self, before_ms: i64) -> Result<u64> {
        let (name, queue, shards) = (self.name.clone(), self.queue.clone(), self.shards);
        let (trimmed, held) = self
            .db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let (mut trimmed, mut held) = (0u64, 0u64);
                for shard in 0..shards {
                    let bound = trim_bound(&tx, &name, &queue, shard)?;
                    trimmed += tx.execute(
                        "DELETE FROM stream_records WHERE stream = ?1 AND shard = ?2 AND seq <= ?3
                         AND arrival_ms < ?4",
                        params![name, shard, bound, before_ms],
                    )? as u64;
                    held += tx.query_row(
                        "SELECT COUNT(*) FROM stream_records WHERE stream = ?1 AND shard = ?2
                         AND seq > ?3 AND arrival_ms < ?4",
                        params![name, shard, bound, before_ms],
                        |r| r.get::<_, i64>(0),
                    )? as u64;
                }
                tx.commit()?;
                Ok((trimmed, held))
            })
            .await?;
        if held > 0 {
            tracing::warn!(
                stream = %self.name,
                records = held,
                "records older than the stream retention are kept: the bridge has not forwarded them yet"
            );
        }
        Ok(trimmed)
    }

    async fn latest(&self, shard: &str) -> Result<Option<String>> {
        let index = shard_index(shard)?;
        let name = self.name.clone();
        self.db
            .call(move |c| {
                c.query_row(
                    "SELECT MAX(seq) FROM stream_records WHERE stream = ?1 AND shard = ?2",
                    params![name, index],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .map(|o| o.map(sequence))
            })
            .await
    }
}
