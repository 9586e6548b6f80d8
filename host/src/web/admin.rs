//! The admin routes of a running pipeline, on the address in
//! `[admin] listen`, served by the same accept loop ([`super::server`]) and
//! key check ([`super::auth`]) as the web routes:
//!
//! - `GET /healthz` — liveness;
//! - `GET /metrics` — the pipeline's counters in Prometheus text format;
//! - `POST /admin/reload` — reload now (as a changed file or SIGHUP would)
//!   and answer with the outcome; needs `Authorization: Bearer <key>`, keys
//!   from the environment variable named by `[admin] keys_env` (comma-
//!   separated) or the file `[admin] keys_file` (one per line), compared in
//!   constant time.
//!
//! The accept loop gives a header deadline, a connection cap (503 past it)
//! and a shutdown that no slow client holds up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::auth::{Keys, Realm};
use super::{ApiError, health, server};
use crate::plan::AdminPlan;
use crate::telemetry::stats::Stats;

/// The admin server's bounds, on the web server's accept loop: a request
/// head of 16 KiB within 10 s, 64 connections, and 5 s for a request in
/// flight (a reload) at shutdown — a half-sent request holds up nothing.
const LIMITS: server::Limits = server::Limits {
    name: "admin API",
    header_bytes: 16 << 10,
    header_timeout: Duration::from_secs(10),
    grace: Duration::from_secs(5),
    max_connections: 64,
};

/// A reload asked for. `reply`, when someone waits, gets `Ok` with what
/// changed (or "nothing changed"), `Err` with why it was refused.
pub struct ReloadRequest {
    pub why: String,
    pub reply: Option<oneshot::Sender<Result<String, String>>>,
}

struct AdminState {
    stats: Arc<Stats>,
    keys: Keys,
    reload: mpsc::Sender<ReloadRequest>,
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    health::metrics_text(&s.stats)
}

fn shutting_down() -> Response {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
}

async fn reload(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Err(refusal) = s.keys.check(&headers) {
        return refusal.into_response();
    }
    let (tx, rx) = oneshot::channel();
    let req = ReloadRequest {
        why: "HTTP POST /admin/reload".into(),
        reply: Some(tx),
    };
    if s.reload.send(req).await.is_err() {
        return shutting_down();
    }
    match rx.await {
        Ok(Ok(message)) => (
            StatusCode::OK,
            Json(json!({"applied": true, "message": message})),
        )
            .into_response(),
        Ok(Err(message)) => (
            StatusCode::CONFLICT,
            Json(json!({"applied": false, "message": message})),
        )
            .into_response(),
        Err(_) => shutting_down(),
    }
}

fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(reload))
        .with_state(state)
}

/// The running admin API.
pub struct AdminServer {
    /// The bound address (the real port when `listen` asked for port 0).
    pub addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl AdminServer {
    /// Binds `[admin] listen` and serves until [`AdminServer::stop`] or
    /// until `cancel` is cancelled.
    pub async fn start(
        plan: &AdminPlan,
        stats: Arc<Stats>,
        reload: mpsc::Sender<ReloadRequest>,
        cancel: CancellationToken,
    ) -> anyhow::Result<Self> {
        let keys = Keys::load(Realm::Admin, &plan.keys_env, plan.keys_file.as_deref())?;
        let listener = tokio::net::TcpListener::bind(plan.listen)
            .await
            .with_context(|| format!("admin.listen {}", plan.listen))?;
        let addr = listener.local_addr()?;
        eprintln!("pipehost: admin API on http://{addr}");
        if keys.is_empty() {
            tracing::warn!(
                "no admin keys (set {}): POST /admin/reload is refused",
                plan.keys_env
            );
        }
        let state = Arc::new(AdminState {
            stats,
            keys,
            reload,
        });
        let task = tokio::spawn(server::serve(
            listener,
            None,
            router(state),
            LIMITS,
            cancel.clone(),
        ));
        Ok(Self { addr, cancel, task })
    }

    /// Stops accepting and lets a reload in flight finish (up to 5 s).
    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.task.await.context("the admin API panicked")?
    }
}
