//! The group-committing producer: one task takes every put waiting in a
//! bounded channel and stores them with one `Stream::put` (on the local
//! backend, one SQLite transaction), then answers each request. A request
//! is answered only once its records are stored, so a 202 never loses
//! anything; a failed commit fails every request in it (503, to retry).
//!
//! A commit takes whatever is waiting, up to [`MAX_COMMIT_RECORDS`] and
//! [`MAX_COMMIT_BYTES`], and nothing waits on purpose: under load the
//! requests that arrive during one commit make the next, so commits grow
//! with the load and a request waits about two commits at most. A request
//! is usually one aggregated record ([`crate::runtime::aggregate`]), so the
//! bounds are about requests and bytes more than lines.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::backend::{BackendError, Stream, StreamRecord};

/// Puts waiting for the writer; past that, requests wait to enqueue (and
/// the request timeout bounds the wait).
const PENDING_PUTS: usize = 4096;
/// Records per commit at most (a bigger first put still goes alone).
const MAX_COMMIT_RECORDS: usize = 50_000;
/// Bytes per commit at most, so one commit (and the wait of the requests
/// behind it) stays short when bodies are large (a bigger first put still
/// goes alone).
const MAX_COMMIT_BYTES: usize = 16 << 20;

struct Put {
    records: Vec<StreamRecord>,
    reply: oneshot::Sender<Result<(), PutError>>,
}

/// Why records were not stored.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PutError {
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The commit failed (every request in it gets the same error).
    #[error(transparent)]
    Stream(Arc<BackendError>),
}

#[derive(Clone)]
pub struct Producer {
    tx: mpsc::Sender<Put>,
}

impl Producer {
    /// Starts the writer; it ends once every `Producer` clone is dropped
    /// and the puts already queued are stored.
    pub fn start(stream: Arc<dyn Stream>) -> (Self, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(PENDING_PUTS);
        (Self { tx }, tokio::spawn(run(stream, rx)))
    }

    /// Stores `records` on the stream (with whatever else is pending).
    pub async fn put(&self, records: Vec<StreamRecord>) -> Result<(), PutError> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Put { records, reply })
            .await
            .map_err(|_| PutError::ShuttingDown)?;
        done.await.map_err(|_| PutError::ShuttingDown)?
    }
}

async fn run(stream: Arc<dyn Stream>, mut rx: mpsc::Receiver<Put>) {
    let mut puts: Vec<Put> = Vec::new();
    let size = |p: &Put| p.records.iter().map(|r| r.data.len()).sum::<usize>();
    while let Some(first) = rx.recv().await {
        let mut n = first.records.len();
        let mut bytes = size(&first);
        puts.push(first);
        while n < MAX_COMMIT_RECORDS && bytes < MAX_COMMIT_BYTES {
            match rx.try_recv() {
                Ok(p) => {
                    n += p.records.len();
                    bytes += size(&p);
                    puts.push(p);
                }
                Err(_) => break,
            }
        }
        let mut all = Vec::with_capacity(n);
        for p in &mut puts {
            all.append(&mut p.records);
        }
        let started = std::time::Instant::now();
        let result = stream
            .put(all, None)
            .await
            .map_err(|e| PutError::Stream(Arc::new(e)));
        metrics::histogram!("pipehost_ingest_commit_records").record(n as f64);
        metrics::histogram!("pipehost_ingest_commit_seconds")
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            metrics::counter!("pipehost_ingest_commit_failures_total").increment(1);
            tracing::warn!(records = n, "ingest commit failed: {e}");
        }
        for p in puts.drain(..) {
            let _ = p.reply.send(result.clone());
        }
    }
}
