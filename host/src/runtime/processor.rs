//! The processor (the Lambda role): a fetcher takes batches off the queue
//! into a bounded channel; workers parse and transform them with their own
//! plugin instances, store the objects, publish one notification per
//! object, and only then delete the message. A batch that fails is not
//! deleted: it comes back after the visibility timeout and, past
//! `max_receives`, lands in the dead-letter queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use arc_swap::ArcSwap;

use super::message::BatchMessage;
use super::process::{FeedPlugins, Layout, OutputObject, ProcessedBatch, process};
use super::reload::Chains;
use super::stats::Stats;
use crate::backend::{Backend, Notification, ObjectInfo, Received};
use crate::event::format_ms;
use crate::plugin::Plugin;

/// The plugins of one feed, loaded once; each worker instantiates its own.
#[derive(Clone)]
pub struct FeedChain {
    pub parser: (Plugin, String),
    pub transforms: Vec<(Plugin, String)>,
}

pub struct ProcessorSettings {
    pub workers: usize,
    pub receive_batch: usize,
    pub visibility: Duration,
    /// Longest wait on an empty queue (long polling).
    pub receive_wait: Duration,
    pub layout: Layout,
}

/// Messages received but not yet deleted or given up on.
#[derive(Debug, Default)]
pub struct InFlight(AtomicU64);

impl InFlight {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
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
) -> Result<(), String> {
    let bucket = backend.store.bucket().to_string();
    for obj in &batch.objects {
        let info = backend
            .store
            .put(obj.put.clone())
            .await
            .map_err(|e| format!("storing {}: {e}", obj.put.key))?;
        Stats::add(&stats.objects, 1);
        let fresh = backend
            .notifier
            .publish(notification(&bucket, obj, &info))
            .await
            .map_err(|e| format!("notifying {}: {e}", info.key))?;
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
async fn deliver(
    backend: &Backend,
    received: &Received,
    batch: ProcessedBatch,
    stats: &Stats,
) -> Result<(), String> {
    store_and_notify(backend, &batch, stats).await?;
    backend
        .queue
        .delete(std::slice::from_ref(&received.receipt))
        .await
        .map_err(|e| format!("deleting the message: {e}"))?;
    count_processed(&batch, stats);
    Ok(())
}

/// A worker's own instances of every feed's chain.
pub fn instantiate(chains: &Chains) -> anyhow::Result<HashMap<String, FeedPlugins>> {
    chains
        .feeds
        .iter()
        .map(|(name, c)| {
            let parser = c.parser.0.instantiate(&c.parser.1)?;
            let transforms = c
                .transforms
                .iter()
                .map(|(p, cfg)| p.instantiate(cfg))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((name.clone(), FeedPlugins { parser, transforms }))
        })
        .collect()
}

async fn worker(
    id: usize,
    chains: Arc<ArcSwap<Chains>>,
    jobs: Arc<Mutex<mpsc::Receiver<Received>>>,
    backend: Backend,
    settings: Arc<ProcessorSettings>,
    stats: Arc<Stats>,
    in_flight: Arc<InFlight>,
) -> anyhow::Result<()> {
    let current = chains.load_full();
    let mut generation = current.generation;
    let mut feeds: Option<HashMap<String, FeedPlugins>> =
        Some(super::blocking(|| instantiate(&current))?);
    loop {
        let job = { jobs.lock().await.recv().await };
        let Some(received) = job else { break };
        // A batch boundary: pick up a reloaded plugin set. The batch in
        // hand and every later one run on it; earlier ones finished on the
        // set they started with.
        let latest = chains.load_full();
        if latest.generation != generation {
            match super::blocking(|| instantiate(&latest)) {
                Ok(f) => {
                    feeds = Some(f);
                    generation = latest.generation;
                    tracing::debug!(
                        worker = id,
                        generation,
                        "worker switched to the reloaded plugins"
                    );
                }
                Err(e) => tracing::error!(
                    worker = id,
                    "cannot instantiate the reloaded plugins; keeping the old ones: {e}"
                ),
            }
        }
        // Keep the message invisible while this worker holds it.
        let heartbeat = {
            let queue = backend.queue.clone();
            let receipt = received.receipt.clone();
            let vis = settings.visibility;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(vis / 2).await;
                    if let Err(e) = queue.extend_visibility(&receipt, vis).await {
                        tracing::warn!("extending visibility failed: {e}");
                    }
                }
            })
        };
        let outcome = match BatchMessage::decode(&received.body) {
            Err(e) => Err(format!("undecodable message: {e}")),
            Ok(msg) => {
                let mut f = feeds.take().expect("plugins are returned after each batch");
                let layout = settings.layout.clone();
                let (f, result) = tokio::task::spawn_blocking(move || {
                    let r = process(&msg, &mut f, &layout);
                    (f, r)
                })
                .await?;
                feeds = Some(f);
                match result {
                    Ok(batch) => deliver(&backend, &received, batch, &stats).await,
                    Err(e) => {
                        Stats::add(&stats.plugin_failures, 1);
                        Err(e.to_string())
                    }
                }
            }
        };
        heartbeat.abort();
        if let Err(e) = outcome {
            Stats::add(&stats.failed_batches, 1);
            tracing::warn!(
                worker = id,
                message = %received.id,
                receives = received.receive_count,
                "batch failed; it will be redelivered (dead-letter queue after the configured receives): {e}"
            );
            // Let it come back after the visibility timeout rather than at
            // once: a crashing plugin must not spin.
        }
        in_flight.0.fetch_sub(1, Ordering::AcqRel);
    }
    Ok(())
}

/// Runs the fetcher and the workers until cancelled; in-flight batches are
/// finished before it returns.
pub async fn run(
    chains: Arc<ArcSwap<Chains>>,
    backend: Backend,
    settings: ProcessorSettings,
    stats: Arc<Stats>,
    in_flight: Arc<InFlight>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let settings = Arc::new(settings);
    let (tx, rx) = mpsc::channel::<Received>(settings.workers);
    let rx = Arc::new(Mutex::new(rx));
    let mut workers = Vec::new();
    for id in 0..settings.workers {
        workers.push(tokio::spawn(worker(
            id,
            chains.clone(),
            rx.clone(),
            backend.clone(),
            settings.clone(),
            stats.clone(),
            in_flight.clone(),
        )));
    }
    let mut backoff = Duration::from_millis(50);
    'fetch: while !cancel.is_cancelled() {
        // Receive only what the workers can take now: a message waiting in
        // our buffer would burn its visibility timeout.
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = tx.reserve() => p?,
        };
        let capacity = tx.capacity() + 1;
        // A short wait is not raced against the cancel token: a receive
        // dropped halfway may already have made messages invisible, which
        // would strand them until their visibility timeout; what arrives is
        // handed to the workers, who finish it before shutting down. A long
        // poll (SQS, up to 20 s) is raced: shutting down promptly is worth
        // the rare message that comes back after its visibility timeout.
        let receive = backend
            .queue
            .receive(settings.receive_batch.min(capacity), settings.receive_wait);
        let got = if settings.receive_wait > Duration::from_secs(1) {
            tokio::select! {
                _ = cancel.cancelled() => break,
                got = receive => got,
            }
        } else {
            receive.await
        };
        let messages = match got {
            Ok(m) => {
                backoff = Duration::from_millis(50);
                m
            }
            Err(e) => {
                Stats::add(&stats.backend_errors, 1);
                tracing::warn!("queue receive failed, retrying in {backoff:?}: {e}");
                drop(permit);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let mut permit = Some(permit);
        for m in messages {
            in_flight.0.fetch_add(1, Ordering::AcqRel);
            match permit.take() {
                Some(p) => p.send(m),
                None => {
                    if tx.send(m).await.is_err() {
                        break 'fetch;
                    }
                }
            }
        }
    }
    drop(tx);
    for w in workers {
        w.await??;
    }
    Ok(())
}
