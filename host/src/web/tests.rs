//! The server in-process, with a stream that fails: `/readyz` says 503 and
//! "unavailable" (never the backend's message), ingest answers 503 (never
//! 202) and the request log records it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{FeedSet, WebServer};
use crate::backend::local::{LocalBackend, Names};
use crate::backend::{
    BackendError, ProducerMark, ProducerPosition, Result, StoredRecord, Stream, StreamRecord,
};
use crate::plan::{RequestLogPlan, SyncMode, WebPlan};
use crate::telemetry::stats::Stats;

/// A stream that fails while `down` is set.
struct Flaky {
    inner: Arc<dyn Stream>,
    down: Arc<AtomicBool>,
}

impl Flaky {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst) {
            Err(BackendError::retryable(
                "stream",
                "connection refused (test): admin@db.internal:5432, /var/lib/secret/pipehost.db",
            ))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Stream for Flaky {
    async fn shards(&self) -> Result<Vec<String>> {
        self.check()?;
        self.inner.shards().await
    }
    async fn put(&self, records: Vec<StreamRecord>, mark: Option<ProducerMark>) -> Result<()> {
        self.check()?;
        self.inner.put(records, mark).await
    }
    async fn producer_position(&self, producer: &str) -> Result<Option<ProducerPosition>> {
        self.inner.producer_position(producer).await
    }
    async fn read(
        &self,
        shard: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredRecord>> {
        self.inner.read(shard, after, limit).await
    }
    async fn latest(&self, shard: &str) -> Result<Option<String>> {
        self.check()?;
        self.inner.latest(shard).await
    }
}

async fn http(addr: std::net::SocketAddr, req: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, out.split_once("\r\n\r\n").unwrap().1.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(unsafe_code, reason = "std::env::set_var (unsafe since edition 2024)")]
async fn an_unreachable_stream_makes_readyz_and_ingest_answer_503() {
    let dir = tempfile::tempdir().unwrap();
    let names = Names::for_tests(2);
    let mut backend = LocalBackend::open(dir.path(), SyncMode::Normal, &names)
        .unwrap()
        .backend();
    let down = Arc::new(AtomicBool::new(false));
    backend.stream = Arc::new(Flaky {
        inner: backend.stream.clone(),
        down: down.clone(),
    });
    // SAFETY: set before the server reads it, in this test's own variable.
    unsafe { std::env::set_var("PIPEHOST_WEB_UNIT_KEYS", "k") };
    let plan = WebPlan {
        listen: "127.0.0.1:0".parse().unwrap(),
        keys_env: "PIPEHOST_WEB_UNIT_KEYS".into(),
        keys_file: None,
        body_limit: 1024,
        header_limit: 8192,
        request_timeout: Duration::from_secs(5),
        max_logs_records: 10,
        max_request_lines: 100,
        max_aggregate_lines: 10,
        max_connections: 16,
        tls: None,
        request_log: RequestLogPlan::Sqlite(dir.path().join("requests.db")),
        request_log_ca_file: None,
        request_log_queue: 100,
    };
    let mut feeds = FeedSet::default();
    feeds.add("forex", None);
    let server = WebServer::start(
        &plan,
        feeds,
        backend,
        Arc::new(Stats::default()),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    let addr = server.addr;
    let ingest = "POST /v1/feeds/forex/records HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Api-Key: k\r\nContent-Length: 4\r\n\r\nline";
    let readyz = "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    // `/readyz` checks at most once a second: wait for the answer to turn.
    let readiness = async |want: u16| {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = http(addr, readyz).await;
            if status == want || tokio::time::Instant::now() > deadline {
                return (status, body);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (status, body) = readiness(200).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"status": "ready", "checks":
            {"stream": "ok", "queue": "ok", "request_log": "ok"}})
    );
    assert_eq!(http(addr, ingest).await.0, 202);
    down.store(true, Ordering::SeqCst);
    let (status, body) = readiness(503).await;
    assert_eq!(status, 503, "{body}");
    // Coarse states only: no backend message, path or user@host.
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"status": "degraded", "checks":
            {"stream": "unavailable", "queue": "ok", "request_log": "ok"}})
    );
    let (status, body) = http(addr, ingest).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("did not store the records (retry)"), "{body}");
    down.store(false, Ordering::SeqCst);
    assert_eq!(readiness(200).await.0, 200);

    server.stop().await.unwrap();
    let statuses =
        crate::backend::local::requestlog::read::statuses(&dir.path().join("requests.db"));
    // The first and last /readyz, the 202 and the ingest 503 between.
    assert_eq!(statuses.first(), Some(&200), "stop flushes the log");
    assert_eq!(statuses.last(), Some(&200), "{statuses:?}");
    let ingests: Vec<i64> = statuses.iter().copied().filter(|s| *s == 202).collect();
    assert_eq!(ingests, [202], "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 503).count() >= 2,
        "{statuses:?}"
    );
}
