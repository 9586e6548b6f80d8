//! The layer around every route: the request timeout (408), HTTP metrics,
//! and one request-log entry per request (handed off, never awaited).

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ingest::Accepted;
use super::requestlog::Entry;
use super::{ApiError, Shared};

/// The peer address, put on each request by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The method as a metric label: the standard methods by name, anything
/// else `other`, so a client cannot mint label series (the route is the
/// matched template or `unmatched`, never the path as sent).
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

pub async fn access(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let at_ms = chrono::Utc::now().timestamp_millis();
    let method = req.method().to_string();
    let method_label = method_label(req.method());
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let client = req
        .extensions()
        .get::<ClientAddr>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let resp = match tokio::time::timeout(s.request_timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the request did not complete within web.request_timeout ({:?})",
                s.request_timeout
            ),
        )
        .into_response(),
    };
    let latency = started.elapsed();
    let status = resp.status().as_u16();
    let records = resp.extensions().get::<Accepted>().map_or(0, |a| a.0);
    metrics::counter!("pipehost_http_requests_total", "method" => method_label, "route" => route.clone(), "status" => status.to_string()).increment(1);
    metrics::histogram!("pipehost_http_request_seconds", "route" => route)
        .record(latency.as_secs_f64());
    s.log.record(Entry {
        at_ms,
        client,
        method,
        path,
        status,
        latency_us: latency.as_micros() as u64,
        records,
    });
    resp
}
