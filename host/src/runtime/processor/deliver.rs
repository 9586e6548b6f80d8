//! Storing a processed batch — objects, notifications, then the delete —
//! through backend outages. A backend error that may clear on its own
//! ([`BackendError::is_retryable`]: I/O, a full disk, a busy database, a
//! service that does not answer) is not the batch's fault: the worker keeps
//! the message (its visibility keeps being extended), backs off and retries
//! the step that failed, and the fetcher receives nothing new until the
//! backend answers again ([`Outage`]). So an outage spends none of a
//! message's receives and dead-letters nothing; only plugin failures and
//! permanent errors fail a batch.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::super::process::{OutputObject, ProcessedBatch};
use crate::backend::{self, Backend, Notification, ObjectInfo, Received};
use crate::event::format_ms;
use crate::telemetry::stats::Stats;

/// First and longest wait between two tries of a failing backend call.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one step is retried before the batch is failed after all (an
/// error classed retryable that never clears must not pin a worker).
const GIVE_UP_AFTER: Duration = Duration::from_secs(600);

/// Workers currently waiting out a backend error; while any is, the
/// fetcher receives nothing.
#[derive(Debug, Default)]
pub struct Outage {
    waiting: AtomicUsize,
    cleared: Notify,
}

impl Outage {
    pub fn is_down(&self) -> bool {
        self.waiting.load(Ordering::Acquire) > 0
    }

    /// Returns once no worker is waiting out a backend error (or on cancel).
    pub async fn wait_clear(&self, cancel: &CancellationToken) {
        while self.is_down() && !cancel.is_cancelled() {
            let cleared = self.cleared.notified();
            if !self.is_down() {
                break;
            }
            tokio::select! {
                _ = cleared => {}
                _ = cancel.cancelled() => {}
            }
        }
    }

    fn enter(&self) -> OutageGuard<'_> {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        OutageGuard(self)
    }
}

struct OutageGuard<'a>(&'a Outage);

impl Drop for OutageGuard<'_> {
    fn drop(&mut self) {
        if self.0.waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.cleared.notify_waiters();
        }
    }
}

/// How a caller rides out retryable backend errors.
pub enum Retry<'a> {
    /// Give up at the first error (`pipehost lambda`: SQS redelivers).
    Never,
    /// Retry with backoff until the call succeeds or `cancel` fires.
    Until {
        outage: &'a Outage,
        cancel: &'a CancellationToken,
    },
}

impl Retry<'_> {
    /// Runs `call` until it succeeds, fails for good, or retrying ends.
    /// `what` names the step for the error and the log.
    async fn run<T, F, Fut>(&self, stats: &Stats, what: &str, mut call: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = backend::Result<T>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut guard = None;
        let started = std::time::Instant::now();
        loop {
            let e = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let Retry::Until { outage, cancel } = self else {
                return Err(format!("{what}: {e}"));
            };
            if !e.is_retryable() || cancel.is_cancelled() {
                return Err(format!("{what}: {e}"));
            }
            if started.elapsed() >= GIVE_UP_AFTER {
                return Err(format!(
                    "{what}: {e} (still failing after {GIVE_UP_AFTER:?})"
                ));
            }
            Stats::add(&stats.backend_errors, 1);
            guard.get_or_insert_with(|| outage.enter());
            tracing::warn!(
                "{what} failed, retrying in {backoff:?} (the batch is kept, not failed): {e}"
            );
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = cancel.cancelled() => return Err(format!("{what}: {e} (shutting down)")),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// The S3-event-shaped notification body for a stored object.
pub fn s3_event(bucket: &str, info: &ObjectInfo) -> String {
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "pipehost:s3",
            "awsRegion": "local",
            "eventTime": format_ms(info.modified_ms),
            "eventName": "ObjectCreated:Put",
            "s3": {
                "s3SchemaVersion": "1.0",
                "bucket": { "name": bucket, "arn": format!("arn:aws:s3:::{bucket}") },
                "object": { "key": info.key, "size": info.size, "eTag": info.etag },
            },
        }]
    })
    .to_string()
}

fn notification(bucket: &str, obj: &OutputObject, info: &ObjectInfo) -> Notification {
    let mut attributes = BTreeMap::new();
    attributes.insert("dataset".to_string(), obj.dataset.clone());
    attributes.insert("record_count".to_string(), obj.records.to_string());
    attributes.insert("plugin_versions".to_string(), obj.plugin_versions.clone());
    attributes.insert("kind".to_string(), obj.kind.as_str().to_string());
    Notification {
        // One notification per object version: a redelivered batch that
        // rewrites the same bytes does not notify twice.
        dedup_id: format!("{}#{}", info.key, info.etag),
        body: s3_event(bucket, info),
        attributes,
    }
}

/// Stores a processed batch's objects and publishes one notification per
/// object. Every key is derived from the batch, so doing it again after a
/// failure overwrites, and the notifier skips versions it already announced.
pub async fn store_and_notify(
    backend: &Backend,
    batch: &ProcessedBatch,
    stats: &Stats,
    retry: &Retry<'_>,
) -> Result<(), String> {
    let bucket = backend.store.bucket().to_string();
    for obj in &batch.objects {
        let info = retry
            .run(stats, &format!("storing {}", obj.put.key), || {
                backend.store.put(obj.put.clone())
            })
            .await?;
        Stats::add(&stats.objects, 1);
        super::crash_point("after-store");
        let n = notification(&bucket, obj, &info);
        let fresh = retry
            .run(stats, &format!("notifying {}", info.key), || {
                backend.notifier.publish(n.clone())
            })
            .await?;
        if fresh {
            Stats::add(&stats.notifications, 1);
        }
    }
    Ok(())
}

/// Counts a batch that is done.
pub fn count_processed(batch: &ProcessedBatch, stats: &Stats) {
    Stats::add(&stats.processed, batch.records_in as u64);
    Stats::add(&stats.events, batch.events_out as u64);
    Stats::add(&stats.dropped, batch.dropped as u64);
    Stats::add(&stats.error_records, batch.error_records as u64);
}

/// Stores a processed batch, notifies, then deletes the message.
pub async fn deliver(
    backend: &Backend,
    received: &Received,
    batch: &ProcessedBatch,
    stats: &Stats,
    retry: &Retry<'_>,
) -> Result<(), String> {
    store_and_notify(backend, batch, stats, retry).await?;
    super::crash_point("before-delete");
    let receipts = std::slice::from_ref(&received.receipt);
    retry
        .run(stats, "deleting the message", || {
            backend.queue.delete(receipts)
        })
        .await?;
    count_processed(batch, stats);
    Ok(())
}
