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
use super::super::stats::Stats;
use crate::backend::{self, Backend, BackendError, Notification, ObjectInfo, Received};
use crate::event::format_ms;
use crate::util::backoff::RETRY;

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

/// Why retrying a step ended without success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GaveUp {
    /// The error is permanent, or the caller does not retry.
    NotRetried,
    /// Still failing after [`GIVE_UP_AFTER`].
    TimedOut,
    /// Shutting down.
    ShuttingDown,
}

/// A step of delivering a batch (a store, a publish, the delete) that
/// failed and is not retried (any more).
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}{}", match why {
    GaveUp::NotRetried => String::new(),
    GaveUp::TimedOut => format!(" (still failing after {GIVE_UP_AFTER:?})"),
    GaveUp::ShuttingDown => " (shutting down)".to_string(),
})]
pub struct StepError {
    pub step: String,
    pub why: GaveUp,
    #[source]
    pub source: BackendError,
}

impl Retry<'_> {
    /// Runs `call` until it succeeds, fails for good (the error's class
    /// says), or retrying ends. `what` names the step for the error and
    /// the log.
    async fn run<T, F, Fut>(&self, stats: &Stats, what: &str, mut call: F) -> Result<T, StepError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = backend::Result<T>>,
    {
        let mut waits = RETRY.waits();
        let mut guard = None;
        let started = std::time::Instant::now();
        let fail = |why, source| StepError {
            step: what.to_string(),
            why,
            source,
        };
        loop {
            let e = match call().await {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let Retry::Until { outage, cancel } = self else {
                return Err(fail(GaveUp::NotRetried, e));
            };
            if !e.is_retryable() || cancel.is_cancelled() {
                return Err(fail(GaveUp::NotRetried, e));
            }
            if started.elapsed() >= GIVE_UP_AFTER {
                return Err(fail(GaveUp::TimedOut, e));
            }
            Stats::add(&stats.backend_errors, 1);
            guard.get_or_insert_with(|| outage.enter());
            let wait = waits.next_delay();
            tracing::warn!(
                "{what} failed, retrying in {wait:?} (the batch is kept, not failed): {e}"
            );
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = cancel.cancelled() => return Err(fail(GaveUp::ShuttingDown, e)),
            }
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
) -> Result<(), StepError> {
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
) -> Result<(), StepError> {
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    /// Runs `Retry::Until` over a call that fails with `errors` in turn,
    /// then succeeds: the result and the calls made.
    async fn retried(errors: Vec<BackendError>) -> (Result<(), StepError>, u32, u64) {
        let (outage, cancel, stats) = (
            Outage::default(),
            CancellationToken::new(),
            Stats::default(),
        );
        let retry = Retry::Until {
            outage: &outage,
            cancel: &cancel,
        };
        let calls = AtomicU32::new(0);
        let errors = std::sync::Mutex::new(errors.into_iter());
        let result = retry
            .run(&stats, "storing k", || {
                calls.fetch_add(1, Ordering::AcqRel);
                let next = errors.lock().unwrap().next();
                async move { next.map_or(Ok(()), Err) }
            })
            .await;
        assert!(!outage.is_down(), "the outage ends with the step");
        let waited = stats.backend_errors.load(Ordering::Acquire);
        (result, calls.load(Ordering::Acquire), waited)
    }

    #[tokio::test]
    async fn an_error_that_may_clear_is_waited_out() {
        let errors = vec![
            BackendError::retryable("s3", "throttled"),
            BackendError::retryable("s3", "503"),
        ];
        let (result, calls, waited) = retried(errors).await;
        assert!(result.is_ok());
        assert_eq!((calls, waited), (3, 2));
    }

    #[tokio::test]
    async fn a_permanent_error_fails_the_step_at_once() {
        let (result, calls, waited) =
            retried(vec![BackendError::permanent("s3", "AccessDenied")]).await;
        let e = result.unwrap_err();
        assert_eq!((e.why, calls, waited), (GaveUp::NotRetried, 1, 0));
        assert!(!e.source.is_retryable());
        assert_eq!(e.to_string(), "storing k: s3: AccessDenied");
    }

    #[tokio::test]
    async fn never_retrying_gives_up_at_the_first_error() {
        let stats = Stats::default();
        let result: Result<(), StepError> = Retry::Never
            .run(&stats, "deleting the message", || async {
                Err(BackendError::retryable("sqs", "no answer"))
            })
            .await;
        assert_eq!(result.unwrap_err().why, GaveUp::NotRetried);
    }
}
