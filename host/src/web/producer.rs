//! The group-committing producer: one task takes every put waiting in a
//! bounded channel and stores them with one `Stream::put` (on the local
//! backend, one SQLite transaction), then answers each request. A request
//! is answered only once its records are stored, so a 202 never loses
//! anything; a failed commit fails every request in it (503, to retry).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::backend::{Stream, StreamRecord};

/// Puts waiting for the writer; past that, requests wait to enqueue (and
/// the request timeout bounds the wait).
const PENDING_PUTS: usize = 4096;
/// Records per commit at most (a bigger first put still goes alone).
const MAX_COMMIT_RECORDS: usize = 50_000;

struct Put {
    records: Vec<StreamRecord>,
    reply: oneshot::Sender<Result<(), String>>,
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
    pub async fn put(&self, records: Vec<StreamRecord>) -> Result<(), String> {
        let (reply, done) = oneshot::channel();
        self.tx
            .send(Put { records, reply })
            .await
            .map_err(|_| "the server is shutting down".to_string())?;
        done.await
            .map_err(|_| "the server is shutting down".to_string())?
    }
}

async fn run(stream: Arc<dyn Stream>, mut rx: mpsc::Receiver<Put>) {
    let mut puts: Vec<Put> = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut n = first.records.len();
        puts.push(first);
        while n < MAX_COMMIT_RECORDS {
            match rx.try_recv() {
                Ok(p) => {
                    n += p.records.len();
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
        let result = stream.put(all, None).await.map_err(|e| e.to_string());
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
