//! The bridge (stream → queue): one task per shard reads records after its
//! checkpoint, cuts them into batches at the rollover bounds (records,
//! bytes, age), and sends each batch as one queue message together with the
//! new checkpoint. A batch therefore always starts right after the last
//! checkpoint, which makes its id — and every object key derived from it —
//! a function of the stream alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::message::{BatchMessage, MessageRecord, VERSION};
use super::stats::Stats;
use crate::backend::{Checkpoint, OutMessage, Queue, StoredRecord, Stream};
use crate::plan::Rollover;

pub struct BridgeSettings {
    pub stream_name: String,
    pub consumer: String,
    pub rollover: Rollover,
    pub poll_interval: Duration,
}

struct Open {
    records: Vec<StoredRecord>,
    bytes: usize,
    since: Instant,
}

async fn flush(
    shard: &str,
    open: &mut Open,
    settings: &BridgeSettings,
    queue: &Arc<dyn Queue>,
    stats: &Stats,
    cancel: &CancellationToken,
) -> bool {
    if open.records.is_empty() {
        return true;
    }
    let msg = BatchMessage {
        v: VERSION,
        stream: settings.stream_name.clone(),
        shard: shard.to_string(),
        first_seq: open.records[0].sequence.clone(),
        last_seq: open.records.last().expect("not empty").sequence.clone(),
        records: open
            .records
            .iter()
            .map(MessageRecord::from_stored)
            .collect(),
    };
    let out = OutMessage {
        id: msg.id(),
        body: msg.encode(),
    };
    let checkpoint = Checkpoint {
        consumer: settings.consumer.clone(),
        source: shard.to_string(),
        position: msg.last_seq.clone(),
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        match queue
            .send(vec![out.clone()], Some(checkpoint.clone()))
            .await
        {
            Ok(()) => break,
            Err(e) => {
                Stats::add(&stats.backend_errors, 1);
                tracing::warn!(shard, "queue send failed, retrying in {backoff:?}: {e}");
                if cancel.is_cancelled() && backoff > Duration::from_secs(2) {
                    return false;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    Stats::add(&stats.bridged, open.records.len() as u64);
    Stats::add(&stats.messages, 1);
    open.records.clear();
    open.bytes = 0;
    true
}

/// Forwards one shard until cancelled; flushes the open batch on the way out.
pub async fn run_shard(
    shard: String,
    live: Arc<ArcSwap<BridgeSettings>>,
    stream: Arc<dyn Stream>,
    queue: Arc<dyn Queue>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let consumer = live.load().consumer.clone();
    let mut read_pos = queue.checkpoint(&consumer, &shard).await?;
    let mut open = Open {
        records: Vec::new(),
        bytes: 0,
        since: Instant::now(),
    };
    loop {
        // Rollover bounds and the poll interval can change live.
        let settings = live.load_full();
        let r = &settings.rollover;
        if cancel.is_cancelled() {
            flush(&shard, &mut open, &settings, &queue, &stats, &cancel).await;
            return Ok(());
        }
        let room = r
            .records
            .saturating_sub(open.records.len())
            .clamp(1, 10_000);
        let records = match stream.read(&shard, read_pos.as_deref(), room).await {
            Ok(r) => r,
            Err(e) => {
                Stats::add(&stats.backend_errors, 1);
                tracing::warn!(shard, "stream read failed: {e}");
                Vec::new()
            }
        };
        let idle = records.is_empty();
        for rec in records {
            if open.records.is_empty() {
                open.since = Instant::now();
            }
            read_pos = Some(rec.sequence.clone());
            open.bytes += rec.data.len() + rec.partition_key.len() + 40;
            open.records.push(rec);
            if open.records.len() >= r.records || open.bytes >= r.bytes {
                flush(&shard, &mut open, &settings, &queue, &stats, &cancel).await;
            }
        }
        if !open.records.is_empty() && open.since.elapsed() >= r.age {
            flush(&shard, &mut open, &settings, &queue, &stats, &cancel).await;
        }
        if idle {
            let wait = if open.records.is_empty() {
                settings.poll_interval
            } else {
                settings
                    .poll_interval
                    .min(r.age.saturating_sub(open.since.elapsed()))
            };
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}
