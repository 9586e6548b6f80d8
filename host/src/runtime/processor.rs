//! The processor (the Lambda role): a fetcher takes batches off the queue
//! into a bounded channel; workers parse and transform them with their own
//! plugin instances, store the objects, publish one notification per
//! object, and only then delete the message. A batch that fails is not
//! deleted: it comes back after the visibility timeout and, past
//! `max_receives`, lands in the dead-letter queue.
//!
//! A message is held from the moment it is received ([`Held`]): its
//! visibility is extended until it is deleted or given up on, and dropping
//! it — also while a panic unwinds — stops the extension and counts it out
//! of [`InFlight`]. A panic while processing fails that batch only; the
//! worker goes on with fresh plugin instances. Backend errors are waited
//! out, not charged to the batch (see [`deliver`]).

mod deliver;
mod error;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use arc_swap::ArcSwap;

pub use deliver::{GaveUp, Outage, Retry, StepError, count_processed, s3_event, store_and_notify};
pub use error::BatchError;

use super::chains::Chains;
use super::process::{FeedPlugins, Layout, process};
use crate::backend::{Backend, BackendError, Received};
use crate::telemetry::stats::Stats;
use crate::util::backoff::RETRY;
use crate::wire::message::BatchMessage;

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

/// A received message this process holds: its visibility is extended
/// every half timeout from the moment it is received (so one waiting in the
/// channel or behind a backend outage does not come back), until it is
/// dropped — done, failed, or dropped by a panic unwinding.
pub struct Held {
    received: Received,
    heartbeat: JoinHandle<()>,
    in_flight: Arc<InFlight>,
}

impl Held {
    fn new(received: Received, backend: &Backend, vis: Duration, in_flight: Arc<InFlight>) -> Self {
        in_flight.0.fetch_add(1, Ordering::AcqRel);
        let queue = backend.queue.clone();
        let receipt = received.receipt.clone();
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::time::sleep(vis / 2).await;
                if let Err(e) = queue.extend_visibility(&receipt, vis).await {
                    tracing::warn!("extending visibility failed: {e}");
                }
            }
        });
        Self {
            received,
            heartbeat,
            in_flight,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.heartbeat.abort();
        self.in_flight.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Test-only fault points. With `PIPEHOST_CRASH_AT=<point>` the process
/// aborts (SIGABRT: as abrupt as a SIGKILL, no unwinding, no flushing) the
/// first time it reaches `<point>`, so crash tests land exactly there; with
/// `PIPEHOST_PANIC_AT=<point>` it panics there once. Points: `after-store`
/// (an object stored, not yet notified), `before-delete` (a batch stored
/// and notified, its message not deleted), `process` (panic while
/// processing a batch).
/// Unset, each check is one load of a cached value.
pub(crate) fn crash_point(point: &str) {
    static CRASH: OnceLock<Option<String>> = OnceLock::new();
    static PANIC: OnceLock<Option<String>> = OnceLock::new();
    static PANICKED: AtomicBool = AtomicBool::new(false);
    let var = |name| std::env::var(name).ok().filter(|v: &String| !v.is_empty());
    if CRASH.get_or_init(|| var("PIPEHOST_CRASH_AT")).as_deref() == Some(point) {
        tracing::error!("PIPEHOST_CRASH_AT={point}: killing the process here");
        std::process::abort();
    }
    if PANIC.get_or_init(|| var("PIPEHOST_PANIC_AT")).as_deref() == Some(point)
        && !PANICKED.swap(true, Ordering::AcqRel)
    {
        panic!("PIPEHOST_PANIC_AT={point}: panicking here once");
    }
}

/// What a worker shares with the fetcher and its fellows.
struct WorkerContext {
    chains: Arc<ArcSwap<Chains>>,
    jobs: Arc<Mutex<mpsc::Receiver<Held>>>,
    backend: Backend,
    settings: Arc<ProcessorSettings>,
    stats: Arc<Stats>,
    outage: Arc<Outage>,
    cancel: CancellationToken,
}

/// A worker's plugin instances and the plugin generation they are of;
/// `None` after a panic took them, until re-instantiated.
struct Instances {
    feeds: Option<HashMap<String, FeedPlugins>>,
    generation: u64,
}

impl Instances {
    /// The instances for the next batch: the reloaded plugin set when there
    /// is one (a batch boundary), fresh ones when a panic took the old.
    async fn refresh(&mut self, id: usize, chains: &ArcSwap<Chains>) -> Result<(), BatchError> {
        let latest = chains.load_full();
        if self.feeds.is_some() && latest.generation == self.generation {
            return Ok(());
        }
        match super::blocking(|| instantiate(&latest)) {
            Ok(f) => {
                self.feeds = Some(f);
                self.generation = latest.generation;
                tracing::debug!(
                    worker = id,
                    generation = self.generation,
                    "worker instantiated its plugins"
                );
                Ok(())
            }
            Err(e) if self.feeds.is_some() => {
                tracing::error!(
                    worker = id,
                    "cannot instantiate the reloaded plugins; keeping the old ones: {e}"
                );
                Ok(())
            }
            Err(e) => Err(BatchError::Instantiate(e)),
        }
    }
}

async fn worker(id: usize, cx: Arc<WorkerContext>) -> anyhow::Result<()> {
    let current = cx.chains.load_full();
    let mut instances = Instances {
        feeds: Some(super::blocking(|| instantiate(&current))?),
        generation: current.generation,
    };
    loop {
        let job = { cx.jobs.lock().await.recv().await };
        let Some(held) = job else { break };
        // A batch boundary: pick up a reloaded plugin set. The batch in
        // hand and every later one run on it; earlier ones finished on the
        // set they started with.
        let outcome = match instances.refresh(id, &cx.chains).await {
            Ok(()) => handle(&cx, &mut instances, &held).await,
            Err(e) => Err(e),
        };
        if let Err(e) = outcome {
            Stats::add(&cx.stats.failed_batches, 1);
            Stats::add(&cx.stats.plugin_failures, e.plugin_failures());
            tracing::warn!(
                worker = id,
                message = %held.received.id,
                receives = held.received.receive_count,
                kind = e.kind(),
                "batch failed; it will be redelivered (dead-letter queue after the configured receives): {e}"
            );
            // Let it come back after the visibility timeout rather than at
            // once: a crashing plugin must not spin.
        }
        drop(held);
    }
    Ok(())
}

/// One message: process, store, notify, delete. A panic while processing
/// fails this batch and drops the instances it held (rebuilt for the next).
async fn handle(
    cx: &WorkerContext,
    instances: &mut Instances,
    held: &Held,
) -> Result<(), BatchError> {
    let msg = BatchMessage::decode(&held.received.body)
        .map_err(|e| BatchError::Undecodable(e.to_string()))?;
    let mut f = instances
        .feeds
        .take()
        .expect("instances are refreshed before each batch");
    let layout = cx.settings.layout.clone();
    let joined = tokio::task::spawn_blocking(move || {
        crash_point("process");
        let r = process(&msg, &mut f, &layout);
        (f, r)
    })
    .await;
    let (f, result) = joined.map_err(|e| BatchError::Panicked(panic_text(e)))?;
    instances.feeds = Some(f);
    let mut batch = result.map_err(|e| BatchError::Plugins(vec![e]))?;
    let retry = Retry::Until {
        outage: &cx.outage,
        cancel: &cx.cancel,
    };
    if batch.failed.is_empty() {
        return Ok(deliver::deliver(&cx.backend, &held.received, &batch, &cx.stats, &retry).await?);
    }
    // Some feed's plugin failed: store what the healthy feeds made (a
    // redelivery rewrites the same objects, notified once), keep the
    // message for the failed feed's records.
    let failed = BatchError::Plugins(std::mem::take(&mut batch.failed));
    if let Err(e) = store_and_notify(&cx.backend, &batch, &cx.stats, &retry).await {
        // The plugin failures count all the same.
        Stats::add(&cx.stats.plugin_failures, failed.plugin_failures());
        return Err(e.into());
    }
    Err(failed)
}

/// The message of a panic, or what ended the task.
fn panic_text(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let p = e.into_panic();
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

/// Receives up to `capacity` messages (at most a receive batch); `None`
/// when cancelled during a long poll.
///
/// A short wait is not raced against the cancel token: a receive dropped
/// halfway may already have made messages invisible, which would strand
/// them until their visibility timeout; what arrives is handed to the
/// workers, who finish it before shutting down. A long poll (SQS, up to
/// 20 s) is raced: shutting down promptly is worth the rare message that
/// comes back after its visibility timeout.
async fn receive(
    backend: &Backend,
    settings: &ProcessorSettings,
    capacity: usize,
    cancel: &CancellationToken,
) -> Option<Result<Vec<Received>, BackendError>> {
    let receive = backend
        .queue
        .receive(settings.receive_batch.min(capacity), settings.receive_wait);
    if settings.receive_wait > Duration::from_secs(1) {
        tokio::select! {
            _ = cancel.cancelled() => None,
            got = receive => Some(got),
        }
    } else {
        Some(receive.await)
    }
}

/// Hands received messages to the workers: the first on the permit
/// reserved for it, each other one as a worker takes it; false when the
/// workers are gone.
async fn hand_out(
    held: impl Iterator<Item = Held>,
    permit: mpsc::Permit<'_, Held>,
    tx: &mpsc::Sender<Held>,
) -> bool {
    let mut permit = Some(permit);
    for m in held {
        match permit.take() {
            Some(p) => p.send(m),
            None => {
                if tx.send(m).await.is_err() {
                    return false;
                }
            }
        }
    }
    true
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
    let (tx, rx) = mpsc::channel::<Held>(settings.workers);
    let outage = Arc::new(Outage::default());
    let cx = Arc::new(WorkerContext {
        chains,
        jobs: Arc::new(Mutex::new(rx)),
        backend: backend.clone(),
        settings: settings.clone(),
        stats: stats.clone(),
        outage: outage.clone(),
        cancel: cancel.clone(),
    });
    let workers: Vec<_> = (0..settings.workers)
        .map(|id| tokio::spawn(worker(id, cx.clone())))
        .collect();
    drop(cx);
    let mut waits = RETRY.waits();
    while !cancel.is_cancelled() {
        // A worker is waiting out a backend error: receive nothing until
        // it clears, so no message is received only to wait.
        outage.wait_clear(&cancel).await;
        if cancel.is_cancelled() {
            break;
        }
        // Receive only what the workers can take now: a message waiting in
        // our buffer would burn its visibility timeout.
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            p = tx.reserve() => p?,
        };
        if outage.is_down() {
            drop(permit);
            continue;
        }
        let capacity = tx.capacity() + 1;
        let Some(got) = receive(&backend, &settings, capacity, &cancel).await else {
            break;
        };
        let messages = match got {
            Ok(m) => {
                waits.reset();
                m
            }
            Err(e) => {
                Stats::add(&stats.backend_errors, 1);
                let wait = waits.next_delay();
                if e.is_retryable() {
                    tracing::warn!("queue receive failed, retrying in {wait:?}: {e}");
                } else {
                    tracing::error!(
                        "queue receive failed, and will until the cause is fixed; retrying in {wait:?}: {e}"
                    );
                }
                drop(permit);
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let held = messages
            .into_iter()
            .map(|m| Held::new(m, &backend, settings.visibility, in_flight.clone()));
        if !hand_out(held, permit, &tx).await {
            break;
        }
    }
    drop(tx);
    for w in workers {
        w.await??;
    }
    Ok(())
}
