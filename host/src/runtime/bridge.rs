//! The bridge (stream → queue): one task per shard reads records after its
//! checkpoint, cuts them into batches at the rollover bounds (records,
//! bytes, age), and sends each batch as one queue message together with the
//! new checkpoint. A batch therefore always starts right after the last
//! checkpoint, which makes its id — and every object key derived from it —
//! a function of the stream alone.
//!
//! An aggregated record (many ingested lines in one stream record, see
//! [`crate::wire::aggregate`]) is forwarded whole — checkpoints and batch ids stay
//! at stream-record granularity — but counts as its lines for the rollover
//! bounds and the `bridged` counter, so batches hold about as many lines
//! as they would unaggregated.
//!
//! A re-send is the same batch. Where the queue cannot commit a send and
//! its checkpoint together (aws), it records where the batch ends before
//! sending ([`Queue::sending`]); a bridge that finds that position after
//! its checkpoint cuts its first batch to end exactly there, whatever the
//! rollover bounds, the age or the read sizes are now — so the message is
//! byte for byte the one that may have gone out, and both map to the same
//! objects with the same content.
//!
//! Resharding: [`run`] lists the shards with their parents now and then and
//! starts a task for each new one; a child waits until all its parents are
//! drained (checkpoint [`SHARD_END`]), so one key's records stay in order.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::backend::{Checkpoint, OutMessage, Queue, ShardInfo, StoredRecord, Stream, seq_after};
use crate::plan::{BridgePlan, Rollover, StreamPlan};
use crate::telemetry::stats::Stats;
use crate::util::backoff::RETRY;
use crate::wire::aggregate;
use crate::wire::message::{BatchMessage, MessageRecord, VERSION};

/// The checkpoint of a shard that is closed and fully forwarded.
pub const SHARD_END: &str = "SHARD_END";

/// How often the shard list is read again to find resharded children.
const LINEAGE_REFRESH: Duration = Duration::from_secs(10);

/// The plan's sections the bridge runs on; swapped whole on reload (only
/// `bridge` may change).
pub struct BridgeSettings {
    pub stream: StreamPlan,
    pub bridge: BridgePlan,
}

struct Open {
    records: Vec<StoredRecord>,
    /// Lines in `records` (an aggregated record holds many).
    lines: usize,
    bytes: usize,
    since: Instant,
}

impl Open {
    fn empty() -> Self {
        Self {
            records: Vec::new(),
            lines: 0,
            bytes: 0,
            since: Instant::now(),
        }
    }
}

/// Sizes the next read from the records of the last one, so a read of
/// aggregated records (up to 1 MiB and thousands of lines each) asks for
/// about what fits the open batch rather than `rollover.records` records.
struct ReadSize {
    lines_per_record: usize,
    bytes_per_record: usize,
}

impl ReadSize {
    /// Until a read says otherwise, records are taken for 64 KiB each: a
    /// first read of large aggregates stays small, one of plain lines
    /// grows to full size at the next read.
    const FIRST_GUESS_BYTES: usize = 64 * 1024;

    fn new() -> Self {
        Self {
            lines_per_record: 1,
            bytes_per_record: Self::FIRST_GUESS_BYTES,
        }
    }

    /// Records to ask for: what the open batch still has room for, in
    /// lines and in bytes, at least one.
    fn room(&self, open: &Open, r: &Rollover) -> usize {
        let lines = r.records.saturating_sub(open.lines) / self.lines_per_record;
        let bytes = r.bytes.saturating_sub(open.bytes) / self.bytes_per_record;
        lines.min(bytes).clamp(1, 10_000)
    }

    fn learn(&mut self, records: usize, lines: usize, bytes: usize) {
        if records > 0 {
            self.lines_per_record = lines.div_ceil(records).max(1);
            self.bytes_per_record = bytes.div_ceil(records).max(1);
        }
    }
}

/// What a stream record weighs against the rollover bounds: its lines, and
/// the bytes it would take as that many plain records in a message.
fn weight(rec: &StoredRecord) -> (usize, usize) {
    let lines = aggregate::lines_in(&rec.data);
    (
        lines,
        rec.data.len() + (rec.partition_key.len() + 40) * lines,
    )
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
        stream: settings.stream.name.clone(),
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
        consumer: settings.stream.consumer.clone(),
        source: shard.to_string(),
        position: msg.last_seq.clone(),
    };
    let mut waits = RETRY.waits();
    loop {
        match queue
            .send(vec![out.clone()], Some(checkpoint.clone()))
            .await
        {
            Ok(()) => break,
            Err(e) => {
                Stats::add(&stats.backend_errors, 1);
                let ceiling = waits.ceiling();
                let wait = waits.next_delay();
                if e.is_retryable() {
                    tracing::warn!(shard, "queue send failed, retrying in {wait:?}: {e}");
                } else {
                    tracing::error!(
                        shard,
                        "queue send failed, and will until the cause is fixed; retrying in {wait:?}: {e}"
                    );
                }
                if cancel.is_cancelled() && ceiling > Duration::from_secs(2) {
                    return false;
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
    Stats::add(&stats.bridged, open.lines as u64);
    Stats::add(&stats.messages, 1);
    open.records.clear();
    open.lines = 0;
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
    let consumer = live.load().stream.consumer.clone();
    let mut task = ShardTask {
        shard: info.id.clone(),
        stream,
        queue,
        stats,
        cancel,
        read_pos: None,
        resend_to: None,
        open: Open::empty(),
        read_size: ReadSize::new(),
    };
    if !task.resume(&consumer).await? {
        return Ok(());
    }
    if !info.parents.is_empty()
        && !wait_for_parents(&info, &consumer, &task.stream, &task.queue, &task.cancel).await?
    {
        return Ok(());
    }
    loop {
        // Rollover bounds and the poll interval can change live.
        let settings = live.load_full();
        if task.cancel.is_cancelled() {
            // Half a re-sent batch would be another batch under the same
            // id: leave it to the next start.
            if task.resend_to.is_none() {
                task.flush(&settings).await;
            }
            return Ok(());
        }
        let idle = task.read(&settings).await;
        if task.resend_to.is_none()
            && !task.open.records.is_empty()
            && task.open.since.elapsed() >= settings.bridge.rollover.age
        {
            task.flush(&settings).await;
        }
        if idle
            && task
                .stream
                .ended(&task.shard, task.read_pos.as_deref())
                .await
                .unwrap_or(false)
        {
            return task.finish_closed(&settings).await;
        }
        if idle {
            task.wait_idle(&settings).await;
        }
    }
}

/// One shard's forwarding state: where reading goes on from, the open
/// batch, and where a batch to re-send ends, if there is one.
struct ShardTask {
    shard: String,
    stream: Arc<dyn Stream>,
    queue: Arc<dyn Queue>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
    read_pos: Option<String>,
    resend_to: Option<String>,
    open: Open,
    read_size: ReadSize,
}

impl ShardTask {
    /// Reads the checkpoint (and the end of a batch that may have gone out
    /// without it); false when the shard is drained already.
    async fn resume(&mut self, consumer: &str) -> anyhow::Result<bool> {
        let shard = &self.shard;
        self.read_pos = self.queue.checkpoint(consumer, shard).await?;
        if self.read_pos.as_deref() == Some(SHARD_END) {
            return Ok(false);
        }
        // A batch that may have been sent without its checkpoint: cut again
        // exactly up to where it ended.
        let read_pos = self.read_pos.as_deref();
        self.resend_to = self
            .queue
            .sending(consumer, shard)
            .await?
            .filter(|end| read_pos.is_none_or(|p| seq_after(end, p)));
        if let Some(end) = &self.resend_to {
            tracing::info!(shard, after = ?read_pos, end, "re-sending the batch sent before the last stop");
        }
        Ok(true)
    }

    /// Reads the records after `read_pos` that the open batch has room for
    /// and takes each in; true when the read found none (or failed).
    async fn read(&mut self, settings: &BridgeSettings) -> bool {
        let r = &settings.bridge.rollover;
        let room = match self.resend_to {
            // Read on at full size until the end of the re-sent batch.
            Some(_) => self.read_size.room(&Open::empty(), r),
            None => self.read_size.room(&self.open, r),
        };
        let read = self
            .stream
            .read(&self.shard, self.read_pos.as_deref(), room)
            .await;
        let records = match read {
            Ok(r) => r,
            Err(e) => {
                Stats::add(&self.stats.backend_errors, 1);
                let shard = &self.shard;
                tracing::warn!(shard, "stream read failed: {e}");
                Vec::new()
            }
        };
        let idle = records.is_empty();
        let (n, mut read_lines, mut read_bytes) = (records.len(), 0, 0);
        for rec in records {
            let (lines, bytes) = self.take(rec, settings).await;
            (read_lines, read_bytes) = (read_lines + lines, read_bytes + bytes);
        }
        self.read_size.learn(n, read_lines, read_bytes);
        idle
    }

    /// Adds one record to the open batch and sends the batch where it ends:
    /// at the re-sent batch's end, or else at the rollover bounds. Returns
    /// the record's weight.
    async fn take(&mut self, rec: StoredRecord, settings: &BridgeSettings) -> (usize, usize) {
        if self
            .resend_to
            .as_deref()
            .is_some_and(|end| seq_after(&rec.sequence, end))
        {
            // The end record is gone (expired): send what there is.
            self.resend_to = None;
            self.flush(settings).await;
        }
        let open = &mut self.open;
        if open.records.is_empty() {
            open.since = Instant::now();
        }
        self.read_pos = Some(rec.sequence.clone());
        let (lines, bytes) = weight(&rec);
        open.lines += lines;
        open.bytes += bytes;
        let r = &settings.bridge.rollover;
        let cut = match &self.resend_to {
            Some(end) => *end == rec.sequence,
            None => open.lines >= r.records || open.bytes >= r.bytes,
        };
        open.records.push(rec);
        if cut {
            self.resend_to = None;
            self.flush(settings).await;
        }
        (lines, bytes)
    }

    /// Sends the open batch with its checkpoint; false when cancelled
    /// before it could be sent.
    async fn flush(&mut self, settings: &BridgeSettings) -> bool {
        flush(
            &self.shard,
            &mut self.open,
            settings,
            &self.queue,
            &self.stats,
            &self.cancel,
        )
        .await
    }

    /// Closed and read to the end: forward the rest and let the
    /// children start.
    async fn finish_closed(&mut self, settings: &BridgeSettings) -> anyhow::Result<()> {
        if !self.flush(settings).await {
            return Ok(());
        }
        let end = Checkpoint {
            consumer: settings.stream.consumer.clone(),
            source: self.shard.clone(),
            position: SHARD_END.to_string(),
        };
        self.queue.send(Vec::new(), Some(end)).await?;
        let shard = &self.shard;
        tracing::info!(shard, "closed shard drained");
        Ok(())
    }

    /// Nothing to read: waits a poll interval, or until the open batch is
    /// due, or until cancelled.
    async fn wait_idle(&self, settings: &BridgeSettings) {
        let wait = if self.open.records.is_empty() {
            settings.bridge.poll_interval
        } else {
            settings.bridge.poll_interval.min(
                settings
                    .bridge
                    .rollover
                    .age
                    .saturating_sub(self.open.since.elapsed()),
            )
        };
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(data: Vec<u8>) -> StoredRecord {
        StoredRecord {
            shard: "shard-0000".into(),
            sequence: "1".into(),
            partition_key: "forex:0123abcd".into(),
            data,
            arrival_ms: 0,
        }
    }

    #[test]
    fn aggregates_weigh_as_their_lines_and_size_the_next_read() {
        let line = [b'q'; 90];
        let packed = aggregate::pack(std::iter::repeat_n(&line[..], 100), 9100, 1 << 20).remove(0);
        let (lines, bytes) = weight(&stored(packed.data.clone()));
        assert_eq!(lines, 100);
        assert!(bytes >= 100 * (90 + 14 + 40), "{bytes}");
        assert_eq!(weight(&stored(line.to_vec())), (1, 90 + 14 + 40));

        let rollover = Rollover {
            records: 5000,
            bytes: 4 << 20,
            age: Duration::from_secs(1),
        };
        let mut open = Open {
            records: Vec::new(),
            lines: 0,
            bytes: 0,
            since: Instant::now(),
        };
        let mut size = ReadSize::new();
        assert_eq!(size.room(&open, &rollover), 64, "a cautious first read");
        size.learn(10, 1000, 10 * bytes);
        assert_eq!(
            size.room(&open, &rollover),
            50,
            "5000 lines at 100 a record"
        );
        open.lines = 4990;
        assert_eq!(size.room(&open, &rollover), 1, "always at least one");
        size.learn(100, 100, 100 * 144);
        open.lines = 0;
        assert_eq!(
            size.room(&open, &rollover),
            5000,
            "plain lines: the record bound"
        );
    }
}
