//! The bridge (stream → queue): one task per shard reads records after its
//! checkpoint, cuts them into batches at the rollover bounds (records,
//! bytes, age), and sends each batch as one queue message together with the
//! new checkpoint. A batch therefore always starts right after the last
//! checkpoint, which makes its id — and every object key derived from it —
//! a function of the stream alone.
//!
//! Resharding: [`run`] lists the shards with their parents now and then and
//! starts a task for each new one; a child waits until all its parents are
//! drained (checkpoint [`SHARD_END`]), so one key's records stay in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::message::{BatchMessage, MessageRecord, VERSION};
use super::stats::Stats;
use crate::backend::{Checkpoint, OutMessage, Queue, ShardInfo, StoredRecord, Stream};
use crate::plan::Rollover;

/// The checkpoint of a shard that is closed and fully forwarded.
pub const SHARD_END: &str = "SHARD_END";

/// How often the shard list is read again to find resharded children.
const LINEAGE_REFRESH: Duration = Duration::from_secs(10);

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

/// Runs the bridge: a task per shard, new shards picked up as the stream
/// reshards. Returns when cancelled and every shard task has flushed.
pub async fn run(
    live: Arc<ArcSwap<BridgeSettings>>,
    stream: Arc<dyn Stream>,
    queue: Arc<dyn Queue>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let mut tasks: std::collections::HashMap<String, tokio::task::JoinHandle<anyhow::Result<()>>> =
        std::collections::HashMap::new();
    let mut done = std::collections::HashSet::new();
    let mut first = true;
    loop {
        match stream.lineage().await {
            Ok(lineage) => {
                for info in lineage {
                    if tasks.contains_key(&info.id) || done.contains(&info.id) {
                        continue;
                    }
                    if !first {
                        tracing::info!(shard = %info.id, parents = ?info.parents, "new shard: the stream was resharded");
                    }
                    tasks.insert(
                        info.id.clone(),
                        tokio::spawn(run_shard(
                            info,
                            live.clone(),
                            stream.clone(),
                            queue.clone(),
                            stats.clone(),
                            cancel.clone(),
                        )),
                    );
                }
            }
            // At start the shard list is required; later a failed listing
            // only delays finding new shards.
            Err(e) if first => return Err(e.into()),
            Err(e) => {
                Stats::add(&stats.backend_errors, 1);
                tracing::warn!("listing the stream's shards failed: {e}");
            }
        }
        first = false;
        // A shard task ends early only when its shard is drained (Ok) or
        // on an error worth stopping for.
        let finished: Vec<String> = tasks
            .iter()
            .filter(|(_, t)| t.is_finished())
            .map(|(id, _)| id.clone())
            .collect();
        for id in finished {
            let t = tasks.remove(&id).expect("present");
            done.insert(id);
            t.await??;
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(LINEAGE_REFRESH) => {}
        }
    }
    for (_, t) in tasks {
        t.await??;
    }
    Ok(())
}

/// Waits until every parent of `info` is drained (or gone from the stream).
async fn wait_for_parents(
    info: &ShardInfo,
    consumer: &str,
    stream: &Arc<dyn Stream>,
    queue: &Arc<dyn Queue>,
    cancel: &CancellationToken,
) -> anyhow::Result<bool> {
    let mut logged = false;
    loop {
        let listed: Vec<String> = stream.shards().await?;
        let mut waiting = Vec::new();
        for p in &info.parents {
            if !listed.contains(p) {
                continue;
            }
            if queue.checkpoint(consumer, p).await?.as_deref() != Some(SHARD_END) {
                waiting.push(p.clone());
            }
        }
        if waiting.is_empty() {
            return Ok(true);
        }
        if !logged {
            tracing::info!(shard = %info.id, ?waiting, "waiting for the parent shards to drain");
            logged = true;
        }
        tokio::select! {
            _ = cancel.cancelled() => return Ok(false),
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Forwards one shard until cancelled or, for a closed shard, until it is
/// drained; flushes the open batch on the way out.
pub async fn run_shard(
    info: ShardInfo,
    live: Arc<ArcSwap<BridgeSettings>>,
    stream: Arc<dyn Stream>,
    queue: Arc<dyn Queue>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let shard = info.id.clone();
    let consumer = live.load().consumer.clone();
    let mut read_pos = queue.checkpoint(&consumer, &shard).await?;
    if read_pos.as_deref() == Some(SHARD_END) {
        return Ok(());
    }
    if !info.parents.is_empty()
        && !wait_for_parents(&info, &consumer, &stream, &queue, &cancel).await?
    {
        return Ok(());
    }
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
        if idle
            && stream
                .ended(&shard, read_pos.as_deref())
                .await
                .unwrap_or(false)
        {
            // Closed and read to the end: forward the rest and let the
            // children start.
            if !flush(&shard, &mut open, &settings, &queue, &stats, &cancel).await {
                return Ok(());
            }
            let end = Checkpoint {
                consumer: settings.consumer.clone(),
                source: shard.clone(),
                position: SHARD_END.to_string(),
            };
            queue.send(Vec::new(), Some(end)).await?;
            tracing::info!(shard, "closed shard drained");
            return Ok(());
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
