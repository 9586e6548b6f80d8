//! The request log (the design's RDS): one row per request — time, client
//! address, method, path, status, latency, records accepted — in SQLite
//! (default, `requests.db` in the local data dir) or PostgreSQL (a
//! `postgres://` URL). Requests hand entries to a bounded channel with
//! `try_send` and never wait; one writer task inserts them in batches,
//! at most every 50 ms (`LINGER`) unless a batch is full.
//! When the channel is full the entry is dropped and counted
//! (`pipehost_request_log_dropped_total`). Each store applies its embedded,
//! versioned migrations at start, recorded in `schema_migrations`. The
//! SQLite store is the local backend's (`backend::local::requestlog`);
//! PostgreSQL's is here.

mod pgtls;
mod postgres;

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::backend::open_sqlite_request_log;
pub use crate::backend::requestlog::Entry;
use crate::backend::requestlog::Sink;
use crate::plan::RequestLogPlan;

/// Rows per insert.
const BATCH: usize = 1000;
/// Least time between two writes unless a batch is full. Without it an idle
/// writer woke for every entry and wrote a transaction per handful of
/// requests: at 33k requests/s that cost the ingest benchmark a fifth of its
/// throughput (CPU the request path shares), for rows nobody reads sooner.
const LINGER: std::time::Duration = std::time::Duration::from_millis(50);

/// The requests' side: cheap to clone, never blocks.
#[derive(Clone, Default)]
pub struct RequestLog {
    tx: Option<mpsc::Sender<Entry>>,
    /// The last write's error, if it failed.
    last_error: Arc<Mutex<Option<String>>>,
}

impl RequestLog {
    /// Hands an entry to the writer, or drops and counts it when full.
    pub fn record(&self, e: Entry) {
        if let Some(tx) = &self.tx
            && tx.try_send(e).is_err()
        {
            metrics::counter!("pipehost_request_log_dropped_total").increment(1);
        }
    }

    /// Ok while the last write worked (or nothing is logged).
    pub fn health(&self) -> Result<(), String> {
        match &*self.last_error.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(e) => Err(e.clone()),
        }
    }
}

/// `postgres://user:secret@host/db` as `postgres://user@host/db`, for messages.
pub fn redact(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    };
    // A password may also be a query parameter (`?password=…`).
    match url.split_once('?') {
        Some((head, query)) => {
            let query: Vec<&str> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => "password=***",
                    _ => kv,
                })
                .collect();
            format!("{head}?{}", query.join("&"))
        }
        None => url,
    }
}

/// Opens the store (applying migrations) and starts the writer. The
/// writer ends when every [`RequestLog`] clone is gone, after a last batch.
pub async fn open(
    plan: &RequestLogPlan,
    ca_file: Option<&std::path::Path>,
    queue: usize,
) -> anyhow::Result<(RequestLog, Option<JoinHandle<()>>)> {
    let plan = match plan {
        RequestLogPlan::FromEnv { var, base } => match std::env::var(var) {
            Ok(url) if !url.trim().is_empty() => RequestLogPlan::from_url(url.trim(), base),
            _ => {
                anyhow::bail!("web.request_log.url_env: the environment variable {var} is not set")
            }
        },
        other => other.clone(),
    };
    let sink: Box<dyn Sink> = match &plan {
        RequestLogPlan::Off => return Ok((RequestLog::default(), None)),
        RequestLogPlan::Sqlite(path) => open_sqlite_request_log(path).await?,
        RequestLogPlan::Postgres(url) => Box::new(postgres::PgSink::connect(url, ca_file).await?),
        RequestLogPlan::FromEnv { .. } => unreachable!("resolved above"),
    };
    let (tx, rx) = mpsc::channel(queue);
    let log = RequestLog {
        tx: Some(tx),
        last_error: Arc::default(),
    };
    let task = tokio::spawn(write_loop(sink, rx, log.last_error.clone()));
    Ok((log, Some(task)))
}

async fn write_loop(
    mut sink: Box<dyn Sink>,
    mut rx: mpsc::Receiver<Entry>,
    last_error: Arc<Mutex<Option<String>>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failures = 0u64;
    let mut last_write = tokio::time::Instant::now() - LINGER;
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let since = last_write.elapsed();
        if batch.len() < BATCH && since < LINGER {
            // Let more entries gather (the channel holds them; a full one
            // drops and counts, as always).
            tokio::time::sleep(LINGER - since).await;
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
        }
        last_write = tokio::time::Instant::now();
        let n = batch.len() as u64;
        let result = sink.write(&batch).await;
        batch.clear();
        match &result {
            Ok(()) => metrics::counter!("pipehost_request_log_written_total").increment(n),
            Err(e) => {
                metrics::counter!("pipehost_request_log_failed_total").increment(n);
                failures += 1;
                // The first failure and then one in a hundred.
                if failures % 100 == 1 {
                    tracing::warn!(
                        entries = n,
                        "request log: write failed, entries dropped: {e}"
                    );
                }
            }
        }
        *last_error.lock().unwrap_or_else(|p| p.into_inner()) = result.err().map(|e| e.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::local::requestlog::{MIGRATIONS, read};

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(redact("postgres://u:pw@h:5/db"), "postgres://u@h:5/db");
        assert_eq!(redact("postgres://h/db"), "postgres://h/db");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=require&password=pw&x=1"),
            "postgres://u@h/db?sslmode=require&password=***&x=1"
        );
    }

    #[tokio::test]
    async fn entries_reach_sqlite_in_batches_and_a_full_channel_drops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.db");
        let (log, task) = open(&RequestLogPlan::Sqlite(path.clone()), None, 4)
            .await
            .unwrap();
        let entry = |i: u64| Entry {
            at_ms: 1_795_420_800_000 + i as i64,
            client: "127.0.0.1:5000".into(),
            method: "POST".into(),
            path: "/v1/feeds/forex/records".into(),
            status: 202,
            latency_us: 120,
            records: i,
        };
        for i in 0..3 {
            log.record(entry(i));
        }
        drop(log);
        task.unwrap().await.unwrap();
        assert_eq!(read::statuses(&path).len(), 3);
        assert_eq!(read::schema_version(&path), MIGRATIONS.len() as i64);
        // Reopening applies nothing twice.
        let (_log, _task) = open(&RequestLogPlan::Sqlite(path), None, 4).await.unwrap();
    }
}
