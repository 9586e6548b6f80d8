//! The HTTP server of the process: the web routes (issue #5, the design's
//! first deliverable: market-data log lines into the stream over HTTP, plus
//! health and metrics) on `[web] listen`, and the admin routes ([`admin`]:
//! health, metrics, `POST /admin/reload`) on `[admin] listen`. Both listen
//! through one accept loop ([`server`]), answer `/healthz` and `/metrics`
//! with the same handlers ([`health`]) and check keys with one [`auth`].
//!
//! | route | auth | what |
//! |---|---|---|
//! | `GET /logs` | key | one batch per feed from its generator plugin, now: put on the stream and returned as JSON ([`logs`]) |
//! | `POST /v1/feeds/{feed}/records` | key | raw log lines (one, or newline-delimited) onto the stream; 202 with counts once stored ([`ingest`]) |
//! | `GET /healthz` | — | liveness |
//! | `GET /readyz` | — | the stream, the queue and the request log answer: coarse states, checked at most once a second ([`health`]) |
//! | `GET /metrics` | — | Prometheus text ([`crate::telemetry::metrics`]) |
//!
//! Writes take `Authorization: Bearer <key>` or `X-Api-Key: <key>` (401
//! without, 403 when wrong), keys compared in constant time ([`auth`]).
//! Errors are JSON, `{"error": "…"}`, naming what is wrong.
//!
//! ```text
//! accept (TCP, TLS; connection cap) ─▶ hyper http/1 (header limit, header timeout)
//!   ─▶ access layer (request timeout, metrics, request log ─try_send─▶ writer ─▶ SQLite / PostgreSQL)
//!   ─▶ handler ─put─▶ producer (one task: every pending put in one stream.put) ─▶ stream
//! ```
//!
//! The web server talks to the backends only through the traits
//! ([`crate::backend`]) and to plugins only through [`crate::plugin`].
//! `pipehost run` starts it when `[web]` is configured; `pipehost serve`
//! runs it with the feeds' schedules and nothing downstream of the stream.

mod access;
pub mod admin;
mod auth;
mod health;
mod ingest;
mod logs;
mod producer;
pub mod requestlog;
pub(crate) mod server;
#[cfg(test)]
mod tests;
mod tls;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::plan::{GeneratorPlan, WebPlan};
use crate::plugin::{GeneratorInstance, GeneratorPlugin};
use crate::telemetry::stats::Stats;

/// An error answer: a status and a JSON body naming the problem.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// A feed as the web server sees it.
pub struct WebFeed {
    /// `None` for a feed fed only by ingest.
    generator: Option<Generator>,
    /// `pipehost_ingest_records_total{feed}`, registered once rather than
    /// looked up by label on every request.
    ingested: metrics::Counter,
}

/// A feed's generator for `GET /logs`, with idle instances to reuse.
struct Generator {
    plugin: GeneratorPlugin,
    plan: GeneratorPlan,
    idle: Mutex<Vec<GeneratorInstance>>,
    /// Bounds `/logs` calls into this generator (`logs::MAX_CONCURRENT`).
    slots: tokio::sync::Semaphore,
    /// `/logs` ticks are numbered apart from the schedule's (see [`logs`]).
    next: std::sync::atomic::AtomicU64,
}

/// The feeds the server accepts, swapped whole when a reload changes them.
#[derive(Default)]
pub struct FeedSet {
    feeds: BTreeMap<String, WebFeed>,
}

impl FeedSet {
    /// Adds a feed; `generator` is its loaded plugin and plan, if it has one.
    pub fn add(&mut self, name: &str, generator: Option<(GeneratorPlugin, GeneratorPlan)>) {
        let generator = generator.map(|(plugin, plan)| Generator {
            plugin,
            plan,
            idle: Mutex::new(Vec::new()),
            slots: tokio::sync::Semaphore::new(logs::MAX_CONCURRENT),
            next: std::sync::atomic::AtomicU64::new(chrono::Utc::now().timestamp_millis() as u64),
        });
        let ingested =
            metrics::counter!("pipehost_ingest_records_total", "feed" => name.to_string());
        self.feeds.insert(
            name.to_string(),
            WebFeed {
                generator,
                ingested,
            },
        );
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.feeds.keys().map(String::as_str).collect();
        names.join(", ")
    }

    /// The feed, or a 400 naming the feeds there are.
    fn get(&self, name: &str) -> Result<&WebFeed, ApiError> {
        self.feeds.get(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown feed {name:?}; this pipeline's feeds are: {}",
                self.names()
            ))
        })
    }
}

/// What every handler shares.
struct AppState {
    feeds: Arc<ArcSwap<FeedSet>>,
    keys: auth::Keys,
    producer: producer::Producer,
    backend: Backend,
    stats: Arc<Stats>,
    log: requestlog::RequestLog,
    body_limit: usize,
    request_timeout: Duration,
    max_logs_records: u32,
    max_request_lines: usize,
    max_aggregate_lines: usize,
    readiness: health::Readiness,
}

type Shared = Arc<AppState>;

fn router(state: Shared) -> Router {
    Router::new()
        .route("/logs", get(logs::logs))
        .route("/v1/feeds/{feed}/records", post(ingest::ingest))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::access,
        ))
        .with_state(state)
}

/// A running web server.
pub struct WebServer {
    /// The bound address (the real port when `listen` asked for port 0).
    pub addr: SocketAddr,
    feeds: Arc<ArcSwap<FeedSet>>,
    cancel: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
    producer: JoinHandle<()>,
    log_writer: Option<JoinHandle<()>>,
}

impl WebServer {
    /// Binds, opens the request log and serves until [`WebServer::stop`]
    /// (or until `cancel` is cancelled; `stop` then still drains).
    pub async fn start(
        plan: &WebPlan,
        feeds: FeedSet,
        backend: Backend,
        stats: Arc<Stats>,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        crate::telemetry::metrics::handle();
        let keys = auth::Keys::load(auth::Realm::Web, &plan.keys_env, plan.keys_file.as_deref())?;
        if keys.is_empty() {
            tracing::warn!(
                "no API keys (set {} or web.keys_file): POST /v1/feeds/… and GET /logs are refused",
                plan.keys_env
            );
        }
        let tls = plan.tls.as_ref().map(tls::acceptor).transpose()?;
        let (log, log_writer) = requestlog::open(
            &plan.request_log,
            plan.request_log_ca_file.as_deref(),
            plan.request_log_queue,
        )
        .await?;
        let listener = tokio::net::TcpListener::bind(plan.listen)
            .await
            .with_context(|| format!("web.listen {}", plan.listen))?;
        let addr = listener.local_addr()?;
        let (producer, producer_task) = producer::Producer::start(backend.stream.clone());
        let feeds = Arc::new(ArcSwap::from_pointee(feeds));
        let state = Arc::new(AppState {
            feeds: feeds.clone(),
            keys,
            producer,
            backend,
            stats,
            log,
            body_limit: plan.body_limit,
            request_timeout: plan.request_timeout,
            max_logs_records: plan.max_logs_records,
            max_request_lines: plan.max_request_lines,
            max_aggregate_lines: plan.max_aggregate_lines,
            readiness: health::Readiness::default(),
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        eprintln!("pipehost: web server on {scheme}://{addr}");
        let server = tokio::spawn(server::serve(
            listener,
            tls,
            router(state),
            server::Limits {
                name: "web server",
                header_bytes: plan.header_limit,
                header_timeout: plan.request_timeout,
                grace: plan.request_timeout,
                max_connections: plan.max_connections,
            },
            cancel.clone(),
        ));
        Ok(Self {
            addr,
            feeds,
            cancel,
            server,
            producer: producer_task,
            log_writer,
        })
    }

    /// Replaces the feeds (after a reload).
    pub fn set_feeds(&self, feeds: FeedSet) {
        self.feeds.store(Arc::new(feeds));
    }

    /// Stops accepting, lets requests in flight finish, then drains the
    /// producer and the request log.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        let served = self.server.await.context("the web server panicked")?;
        // The router (and so every sender) is gone: the writers drain and end.
        self.producer
            .await
            .context("the ingest producer panicked")?;
        if let Some(w) = self.log_writer {
            w.await.context("the request-log writer panicked")?;
        }
        served
    }
}
