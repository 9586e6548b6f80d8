//! The admin HTTP API of a running pipeline (axum), on the address in
//! `[admin] listen`:
//!
//! - `GET /healthz` — liveness;
//! - `GET /metrics` — the pipeline's counters in Prometheus text format;
//! - `POST /admin/reload` — reload now (as a changed file or SIGHUP would)
//!   and answer with the outcome; needs `Authorization: Bearer <key>`, keys
//!   from the environment variable named by `[admin] keys_env` (comma-
//!   separated) or the file `[admin] keys_file` (one per line), compared in
//!   constant time.
//!
//! Served by the web server's accept loop ([`crate::web::server`]): a
//! header deadline, a connection cap (503 past it) and a shutdown that no
//! slow client holds up.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::telemetry::stats::Stats;

/// The admin server's bounds, on the web server's accept loop: a request
/// head of 16 KiB within 10 s, 64 connections, and 5 s for a request in
/// flight (a reload) at shutdown — a half-sent request holds up nothing.
const LIMITS: crate::web::server::Limits = crate::web::server::Limits {
    name: "admin API",
    header_bytes: 16 << 10,
    header_timeout: Duration::from_secs(10),
    grace: Duration::from_secs(5),
    max_connections: 64,
};

/// A reload asked for; `reply` gets the outcome when the caller waits.
pub struct ReloadRequest {
    pub why: String,
    pub reply: Option<oneshot::Sender<Result<String, String>>>,
}

struct AdminState {
    stats: Arc<Stats>,
    keys: Vec<String>,
    reload: mpsc::Sender<ReloadRequest>,
}

pub use crate::web::auth::load_keys;

/// `Err` is the refusal to send: a status and a JSON reason.
fn authorized(
    keys: &[String],
    headers: &HeaderMap,
) -> Result<(), (StatusCode, Json<serde_json::Value>)> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing `Authorization: Bearer <key>`"})),
        ));
    };
    // Check every key without stopping early, so timing reveals nothing.
    let mut ok = subtle::Choice::from(0u8);
    for k in keys {
        ok |= k.as_bytes().ct_eq(given.as_bytes());
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err((
            StatusCode::FORBIDDEN,
            Json(json!({"error": "invalid admin key"})),
        ))
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics::render(&s.stats),
    )
        .into_response()
}

async fn reload(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Err(refusal) = authorized(&s.keys, &headers) {
        return refusal.into_response();
    }
    let (tx, rx) = oneshot::channel();
    let req = ReloadRequest {
        why: "HTTP POST /admin/reload".into(),
        reply: Some(tx),
    };
    if s.reload.send(req).await.is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "shutting down"})),
        )
            .into_response();
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
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "shutting down"})),
        )
            .into_response(),
    }
}

/// Serves the admin API on `listener` until cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    stats: Arc<Stats>,
    keys: Vec<String>,
    reload_tx: mpsc::Sender<ReloadRequest>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let state = Arc::new(AdminState {
        stats,
        keys,
        reload: reload_tx,
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(reload))
        .with_state(state);
    crate::web::server::serve(listener, None, app, LIMITS, cancel).await
}
