//! The four services the pipeline stages see — a stream (Kinesis role), a
//! queue (SQS), an object store (S3) and a notifier (SNS) — as traits, with
//! one implementation per provider. Stages hold `Arc<dyn …>` and never name
//! a provider; only [`open`] does.
//!
//! Delivery contract (every implementation):
//! - `Stream::put` with a [`ProducerMark`] records the producer's position;
//!   where the provider can, in the same step as the records (local: one
//!   transaction), so a restarted producer neither skips nor repeats.
//! - `Queue::send` with a [`Checkpoint`] records how far the sender has read
//!   its source; local: in the same transaction as the messages; aws: after
//!   them, with the position recorded as `Queue::sending` before them.
//! - A received message stays invisible for the visibility timeout; one not
//!   deleted comes back; past `max_receives` it moves to the dead-letter queue.
//! - `ObjectStore::put` replaces an object whole (atomic per key).
//! - `Notifier::publish` is idempotent per `dedup_id` where the provider
//!   allows it (local: yes).

pub mod aws;
mod error;
pub mod local;
pub mod requestlog;
mod types;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use error::{BackendError, Class, Source};
pub use types::*;

use crate::plan::{BackendPlan, Plan};

pub type Result<T> = std::result::Result<T, BackendError>;

/// The SQLite request log at `path` (created, migrated): the local
/// backend's store, opened here so that the web server names no backend.
pub async fn open_sqlite_request_log(
    path: &std::path::Path,
) -> anyhow::Result<Box<dyn requestlog::Sink>> {
    Ok(Box::new(local::requestlog::SqliteSink::open(path).await?))
}

/// The Kinesis role: ordered records in shards chosen by partition key.
#[async_trait]
pub trait Stream: Send + Sync {
    /// The shard ids, in order.
    async fn shards(&self) -> Result<Vec<String>>;
    /// Appends records (shards chosen by partition key), recording the
    /// producer's next position if given.
    async fn put(&self, records: Vec<StreamRecord>, mark: Option<ProducerMark>) -> Result<()>;
    /// The position a producer recorded last.
    async fn producer_position(&self, producer: &str) -> Result<Option<ProducerPosition>>;
    /// Up to `limit` records of `shard` after sequence `after` (from the start
    /// when `None`), in order.
    async fn read(
        &self,
        shard: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>>;
    /// The last sequence number in `shard`, where the provider can tell
    /// (Kinesis cannot: `None`).
    async fn latest(&self, shard: &str) -> Result<Option<String>>;
    /// True when `shard` may hold records after `checkpoint` — the bridge
    /// has not forwarded everything yet.
    async fn pending(&self, shard: &str, checkpoint: Option<&str>) -> Result<bool> {
        Ok(match (self.latest(shard).await?, checkpoint) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(latest), Some(c)) => seq_after(&latest, c),
        })
    }
    /// Every shard still readable, with its parents, in order. Providers
    /// that never reshard list their shards, open and parentless.
    async fn lineage(&self) -> Result<Vec<ShardInfo>> {
        Ok(self
            .shards()
            .await?
            .into_iter()
            .map(|id| ShardInfo {
                id,
                parents: Vec::new(),
                closed: false,
            })
            .collect())
    }
    /// True once `shard` is closed and every record of it after `after` has
    /// been read: the consumer may move on to its children.
    async fn ended(&self, _shard: &str, _after: Option<&str>) -> Result<bool> {
        Ok(false)
    }
    /// Writes out anything buffered (e.g. a producer position saved
    /// lazily). Called when producers stop.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// Drops records that arrived before `before_ms` (the retention window),
    /// always keeping each shard's last record and every record the bridge
    /// has not forwarded yet (past its checkpoint). Returns how many went.
    /// Providers that expire records themselves (Kinesis) do nothing.
    async fn trim(&self, _before_ms: i64) -> Result<u64> {
        Ok(0)
    }
}

/// The SQS role.
#[async_trait]
pub trait Queue: Send + Sync {
    fn name(&self) -> &str;
    /// Sends messages; with a checkpoint, records it too.
    async fn send(&self, messages: Vec<OutMessage>, checkpoint: Option<Checkpoint>) -> Result<()>;
    /// The checkpoint `consumer` recorded for `source`.
    async fn checkpoint(&self, consumer: &str, source: &str) -> Result<Option<String>>;
    /// Where a provider that cannot commit messages and checkpoint
    /// together records, before sending, the position the checkpoint will
    /// take: if it is after the checkpoint, a send may have gone out
    /// unrecorded, and the sender re-sends exactly up to it. `None` when
    /// sends and checkpoints commit together (local).
    async fn sending(&self, _consumer: &str, _source: &str) -> Result<Option<String>> {
        Ok(None)
    }
    /// Up to `max` messages, waiting up to `wait` for the first (long poll).
    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>>;
    /// Deletes received messages by receipt.
    async fn delete(&self, receipts: &[String]) -> Result<()>;
    /// Keeps a received message invisible for `timeout` from now.
    async fn extend_visibility(&self, receipt: &str, timeout: Duration) -> Result<()>;
    async fn depth(&self) -> Result<QueueDepth>;
    /// Moves every message back to `to` (dead-letter redrive). Returns how many.
    async fn redrive(&self, to: &str) -> Result<usize>;
    /// Messages without receiving them (inspection).
    async fn peek(&self, max: usize) -> Result<Vec<Received>>;
    /// The body of a message that reached a consumer some other way than
    /// `receive` (an SQS event delivered to a Lambda function), as
    /// `receive` would have returned it: a payload the sender stored aside
    /// (a pointer message) is fetched.
    async fn resolve_body(&self, body: String) -> Result<String> {
        Ok(body)
    }
}

/// The S3 role.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    fn bucket(&self) -> &str;
    async fn put(&self, object: PutObject) -> Result<ObjectInfo>;
    async fn get(&self, key: &str) -> Result<Option<Object>>;
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
}

/// The SNS role.
#[async_trait]
pub trait Notifier: Send + Sync {
    fn topic(&self) -> &str;
    /// Publishes to the topic's subscribers. Returns false when a
    /// notification with the same `dedup_id` was already published.
    async fn publish(&self, notification: Notification) -> Result<bool>;
}

/// Opens another queue of the same provider by name.
type QueueOpener = Arc<dyn Fn(&str) -> Arc<dyn Queue> + Send + Sync>;

/// The services of one pipeline.
#[derive(Clone)]
pub struct Backend {
    pub stream: Arc<dyn Stream>,
    pub queue: Arc<dyn Queue>,
    pub dead_letter: Arc<dyn Queue>,
    pub store: Arc<dyn ObjectStore>,
    pub notifier: Arc<dyn Notifier>,
    opener: QueueOpener,
    /// How long a receive on an empty queue should wait (long polling).
    receive_wait: Duration,
}

impl Backend {
    /// How long the processor's receive on an empty queue waits: the
    /// provider's long poll (aws: `aws.receive_wait`; local: 500 ms).
    pub fn receive_wait(&self) -> Duration {
        self.receive_wait
    }

    /// Another queue of the same provider (e.g. a notification subscriber).
    pub fn queue_named(&self, name: &str) -> Arc<dyn Queue> {
        (self.opener)(name)
    }
}

/// Opens the backend a plan names — the one place that picks a provider.
pub async fn open(plan: &Plan) -> anyhow::Result<Backend> {
    match &plan.fixed.backend {
        BackendPlan::Local { data_dir, sync } => {
            let local =
                local::LocalBackend::open(data_dir, sync.clone(), &local::Names::from_plan(plan))?;
            Ok(local.backend())
        }
        BackendPlan::Aws(aws) => aws::open(plan, aws).await,
    }
}

/// Creates the plan's resources where missing (idempotent); returns a
/// line per thing checked or done.
pub async fn setup(plan: &Plan) -> anyhow::Result<Vec<String>> {
    match &plan.fixed.backend {
        BackendPlan::Local { data_dir, .. } => {
            open(plan).await?;
            Ok(vec![format!(
                "local backend ready in {} (stream, queues, bucket, topic and subscriptions are created on open)",
                data_dir.display()
            )])
        }
        BackendPlan::Aws(aws) => aws::setup(plan, aws).await,
    }
}

/// `a` comes after `b` in a shard: sequence numbers are decimal strings,
/// longer meaning larger.
pub fn seq_after(a: &str, b: &str) -> bool {
    (a.len(), a) > (b.len(), b)
}

/// Sleep-free helper for polling loops inside backends.
pub(crate) const POLL_STEP: Duration = Duration::from_millis(10);
