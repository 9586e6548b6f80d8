//! `GET /logs`: the original design's endpoint. Every feed with a generator
//! makes one batch now; all of them go on the stream in one put, and the
//! answer is the batch as JSON:
//!
//! ```json
//! {"time": "2026-11-23T08:00:00.000Z",
//!  "feeds": {"forex": {"records": 2, "lines": ["{\"pair\":…}", "…"]}, …}}
//! ```
//!
//! `?feed=forex` limits it to one feed, `?records=N` sets the batch size
//! (default: the generator's `records`, at most `web.max_logs_records`).
//! These ticks use the feed's seed mixed with a constant and numbers from
//! the start time, so they never repeat the scheduled ticks' records.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::ingest::Accepted;
use super::{ApiError, Generator, Shared};
use crate::backend::StreamRecord;
use crate::event::format_ms;
use crate::plugin::{GeneratedBatch, Tick};
use crate::runtime::message::stream_key;
use crate::runtime::stats::Stats;

/// Mixed into the feed's seed for `/logs` ticks.
const LOGS_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    feed: Option<String>,
    records: Option<u32>,
}

/// One tick of `g` through a pooled instance, off the async threads.
async fn generate(g: &Generator, count: u32, time_ms: i64) -> Result<GeneratedBatch, String> {
    let instance = g.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let mut instance = match instance {
        Some(i) => i,
        None => {
            let (plugin, config) = (g.plugin.clone(), g.plan.plugin.config_json.clone());
            tokio::task::spawn_blocking(move || plugin.instantiate(&config))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?
        }
    };
    let tick = Tick {
        seed: g.plan.seed ^ LOGS_SEED,
        number: g.next.fetch_add(1, Ordering::Relaxed),
        time_ms,
        count,
    };
    let started = std::time::Instant::now();
    let (instance, result) = tokio::task::spawn_blocking(move || {
        let r = instance.generate(tick);
        (instance, r)
    })
    .await
    .map_err(|e| e.to_string())?;
    crate::runtime::metrics::plugin_call("generator", "logs", started);
    g.idle
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(instance);
    result.map_err(|e| e.to_string())
}

pub async fn logs(
    State(s): State<Shared>,
    Query(q): Query<LogsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    s.keys.check(&headers)?;
    let feeds = s.feeds.load_full();
    if let Some(n) = q.records
        && (n == 0 || n > s.max_logs_records)
    {
        return Err(ApiError::bad_request(format!(
            "records={n} is out of range: 1 to {} (web.max_logs_records)",
            s.max_logs_records
        )));
    }
    let chosen: Vec<(&String, &Generator)> = match &q.feed {
        Some(name) => {
            let feed = feeds.get(name)?;
            let Some(g) = &feed.generator else {
                return Err(ApiError::bad_request(format!(
                    "feed {name:?} has no generator (it takes records only through POST /v1/feeds/{name}/records)"
                )));
            };
            vec![(name, g)]
        }
        None => feeds
            .feeds
            .iter()
            .filter_map(|(n, f)| f.generator.as_ref().map(|g| (n, g)))
            .collect(),
    };
    let time_ms = chrono::Utc::now().timestamp_millis();
    let mut out = BTreeMap::new();
    let mut records = Vec::new();
    for (name, g) in chosen {
        let count = q.records.unwrap_or(g.plan.records);
        let generated = generate(g, count, time_ms).await.map_err(|e| {
            Stats::add(&s.stats.plugin_failures, 1);
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("feeds.{name}.generator failed: {e}"),
            )
        })?;
        let lines: Vec<String> = generated
            .iter()
            .map(|(_, data)| String::from_utf8_lossy(data).into_owned())
            .collect();
        out.insert(
            name.clone(),
            json!({ "records": lines.len(), "lines": lines }),
        );
        records.extend(generated.iter().map(|(key, data)| StreamRecord {
            partition_key: stream_key(name, key),
            data: data.to_vec(),
        }));
    }
    let n = records.len() as u64;
    if n > 0 {
        s.producer.put(records).await.map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the stream did not store the batch (retry): {e}"),
            )
        })?;
    }
    Stats::add(&s.stats.ingested, n);
    metrics::counter!("pipehost_logs_records_total").increment(n);
    let mut resp = (
        StatusCode::OK,
        Json(json!({ "time": format_ms(time_ms), "feeds": out })),
    )
        .into_response();
    resp.extensions_mut().insert(Accepted(n));
    Ok(resp)
}
