//! `GET /healthz` (the process answers), `GET /readyz` (the backends
//! answer: the stream lists its shards and their last records, the queue
//! its depth, and the request log's last write worked) and `GET /metrics`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Shared;

/// How long each readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

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

pub async fn readyz(State(s): State<Shared>) -> Response {
    let stream = s.backend.stream.clone();
    let stream_check = check(async move {
        for shard in stream.shards().await? {
            stream.latest(&shard).await?;
        }
        Ok(())
    });
    let (stream, queue) = tokio::join!(stream_check, check(s.backend.queue.depth()));
    let log = s.log.health();
    let mut checks = serde_json::Map::new();
    let mut ready = true;
    for (name, r) in [("stream", stream), ("queue", queue), ("request_log", log)] {
        ready &= r.is_ok();
        checks.insert(
            name.into(),
            json!(r.err().unwrap_or_else(|| "ok".to_string())),
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({ "ready": ready, "checks": checks }))).into_response()
}

pub async fn metrics(State(s): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::runtime::metrics::render(&s.stats),
    )
        .into_response()
}
