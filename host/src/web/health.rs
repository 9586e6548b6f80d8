//! `GET /healthz` (the process answers), `GET /readyz` (the backends
//! answer: the stream lists its shards and their last records, the queue
//! its depth, and the request log's last write worked) and `GET /metrics`;
//! `/healthz` and `/metrics` answer on the admin routes too.
//!
//! `/readyz` is unauthenticated, so it answers coarse states only —
//! `{"status": "ready"|"degraded", "checks": {"stream": "ok"|"unavailable",
//! …}}` — and logs the details (paths, URLs and backend messages stay out
//! of the body). The checks run at most once per [`CACHE_FOR`] whatever the
//! request rate: the queue's depth is a count on the local backend.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Shared;
use crate::telemetry::stats::Stats;

/// How long each readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one round of checks answers `/readyz`.
pub const CACHE_FOR: Duration = Duration::from_secs(1);

/// The last round of readiness checks.
#[derive(Default)]
pub struct Readiness {
    last: tokio::sync::Mutex<Option<(Instant, serde_json::Value)>>,
}

pub async fn healthz() -> &'static str {
    "ok\n"
}

async fn check<F, T>(f: F) -> Result<(), String>
where
    F: std::future::Future<Output = crate::backend::Result<T>>,
{
    match tokio::time::timeout(CHECK_TIMEOUT, f).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

/// One round of checks: the coarse answer; details go to the log.
async fn checks(s: &Shared) -> serde_json::Value {
    let stream = s.backend.stream.clone();
    let stream_check = check(async move {
        for shard in stream.shards().await? {
            stream.latest(&shard).await?;
        }
        Ok(())
    });
    let (stream, queue) = tokio::join!(stream_check, check(s.backend.queue.depth()));
    let log = s.log.health();
    let mut states = serde_json::Map::new();
    let mut ready = true;
    for (name, r) in [("stream", stream), ("queue", queue), ("request_log", log)] {
        let state = match r {
            Ok(()) => "ok",
            Err(e) => {
                tracing::warn!("readiness: {name} is unavailable: {e}");
                ready = false;
                "unavailable"
            }
        };
        states.insert(name.into(), json!(state));
    }
    let status = if ready { "ready" } else { "degraded" };
    json!({ "status": status, "checks": states })
}

pub async fn readyz(State(s): State<Shared>) -> Response {
    let mut last = s.readiness.last.lock().await;
    let fresh = last
        .as_ref()
        .filter(|(at, _)| at.elapsed() < CACHE_FOR)
        .map(|(_, v)| v.clone());
    let answer = match fresh {
        Some(v) => v,
        None => {
            let v = checks(&s).await;
            *last = Some((Instant::now(), v.clone()));
            v
        }
    };
    drop(last);
    let status = if answer["status"] == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(answer)).into_response()
}

/// `GET /metrics` of the web routes.
pub async fn metrics(State(s): State<Shared>) -> Response {
    metrics_text(&s.stats)
}

/// The Prometheus text answer, for the web and the admin routes alike.
pub fn metrics_text(stats: &Stats) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::metrics::render(stats),
    )
        .into_response()
}
