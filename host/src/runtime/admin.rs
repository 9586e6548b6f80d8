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

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::stats::Stats;

/// A reload asked for; `reply` gets the outcome when the caller waits.
pub struct ReloadRequest {
    pub why: String,
    pub reply: Option<oneshot::Sender<Result<String, String>>>,
}

struct AdminState {
    stats: Arc<Stats>,
    keys: Vec<String>,
    reload: mpsc::Sender<ReloadRequest>,
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

/// Admin keys: from `env` (comma-separated) and `file` (one per line).
pub fn load_keys(env: &str, file: Option<&std::path::Path>) -> anyhow::Result<Vec<String>> {
    let mut keys: Vec<String> = std::env::var(env)
        .unwrap_or_default()
        .split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .map_err(|e| anyhow::anyhow!("cannot read admin keys from {}: {e}", f.display()))?;
        keys.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(String::from),
        );
    }
    Ok(keys)
}

fn authorized(keys: &[String], headers: &HeaderMap) -> Result<(), Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "missing `Authorization: Bearer <key>`"})),
        )
            .into_response());
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
        )
            .into_response())
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(s): State<Arc<AdminState>>) -> Response {
    let snap = s.stats.snapshot();
    metrics::with_local_recorder(&s.recorder, || {
        let counters = [
            ("pipehost_records_generated_total", snap.generated),
            ("pipehost_records_bridged_total", snap.bridged),
            ("pipehost_batches_sent_total", snap.messages),
            ("pipehost_records_processed_total", snap.processed),
            ("pipehost_events_stored_total", snap.events),
            ("pipehost_events_dropped_total", snap.dropped),
            ("pipehost_error_records_total", snap.error_records),
            ("pipehost_objects_written_total", snap.objects),
            ("pipehost_notifications_sent_total", snap.notifications),
            ("pipehost_batches_failed_total", snap.failed_batches),
            ("pipehost_plugin_failures_total", snap.plugin_failures),
            ("pipehost_backend_errors_total", snap.backend_errors),
            ("pipehost_reloads_total", snap.reloads),
            ("pipehost_reload_failures_total", snap.reload_failures),
        ];
        for (name, v) in counters {
            metrics::counter!(name).absolute(v);
        }
        metrics::gauge!("pipehost_queue_depth").set(snap.queue_depth as f64);
        metrics::gauge!("pipehost_dead_letter_depth").set(snap.dead_letters as f64);
    });
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.handle.render(),
    )
        .into_response()
}

async fn reload(State(s): State<Arc<AdminState>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&s.keys, &headers) {
        return r;
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
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let state = Arc::new(AdminState {
        stats,
        keys,
        reload: reload_tx,
        recorder,
        handle,
    });
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/admin/reload", post(reload))
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await?;
    Ok(())
}
