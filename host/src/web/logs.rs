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
//!
//! At most [`MAX_CONCURRENT`] requests call one feed's generator at once,
//! each on its own instance; one more is answered 503 with `Retry-After`
//! at once, so `/logs` cannot take the plugin instances workers need. The
//! idle instances kept for reuse are bounded by the same number.

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
use crate::plugin::{GeneratedBatch, PluginError, Tick};
use crate::telemetry::stats::Stats;
use crate::wire::message::stream_key;

/// Mixed into the feed's seed for `/logs` ticks.
const LOGS_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Most `/logs` calls into one feed's generator at once (and most idle
/// instances kept for it).
pub(super) const MAX_CONCURRENT: usize = 4;

/// Seconds a client is told to wait when every slot is taken.
const RETRY_AFTER_SECS: &str = "1";

/// Why one feed's tick failed.
#[derive(Debug, thiserror::Error)]
enum GenerateError {
    /// Every slot of the feed's generator is taken.
    #[error("every slot of the generator is taken")]
    Busy,
    /// The plugin failed (its kind: [`PluginError::kind`]).
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("the call panicked: {0}")]
    Panicked(#[from] tokio::task::JoinError),
}

#[derive(Debug, Deserialize)]
pub struct LogsQuery {
    feed: Option<String>,
    records: Option<u32>,
}

/// One tick of `g` through a pooled instance, off the async threads.
async fn generate(
    g: &Generator,
    count: u32,
    time_ms: i64,
) -> Result<GeneratedBatch, GenerateError> {
    let Ok(_slot) = g.slots.try_acquire() else {
        return Err(GenerateError::Busy);
    };
    generate_in_slot(g, count, time_ms).await
}

async fn generate_in_slot(
    g: &Generator,
    count: u32,
    time_ms: i64,
) -> Result<GeneratedBatch, GenerateError> {
    let instance = g.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
    let mut instance = match instance {
        Some(i) => i,
        None => {
            let (plugin, config) = (g.plugin.clone(), g.plan.plugin.config_json.clone());
            tokio::task::spawn_blocking(move || plugin.instantiate(&config)).await??
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
    .await?;
    crate::telemetry::metrics::plugin_call("generator", "logs", started);
    let mut idle = g.idle.lock().unwrap_or_else(|p| p.into_inner());
    if idle.len() < MAX_CONCURRENT {
        idle.push(instance);
    }
    drop(idle);
    Ok(result?)
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
        let generated = match generate(g, count, time_ms).await {
            Ok(generated) => generated,
            Err(GenerateError::Busy) => return Ok(busy(name)),
            Err(e) => {
                Stats::add(&s.stats.plugin_failures, 1);
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("feeds.{name}.generator failed: {e}"),
                ));
            }
        };
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

/// 503 with `Retry-After`: every slot of the feed's generator is taken.
fn busy(feed: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECS)],
        Json(json!({ "error": format!(
            "feeds.{feed}.generator is busy: {MAX_CONCURRENT} GET /logs requests are running \
             on it; retry in {RETRY_AFTER_SECS} s"
        ) })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::MAX_CONCURRENT;
    use crate::backend::local::{LocalBackend, Names};
    use crate::plan::{GeneratorPlan, Origin, PluginPlan, RequestLogPlan, SyncMode, WebPlan};
    use crate::plugin::{EngineSettings, Generator, PluginEngine, PluginSettings};
    use crate::telemetry::stats::Stats;
    use crate::web::{FeedSet, WebServer};

    fn hostile_generator() -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let path = target.join("wasm32-wasip2/release/hostile_generator.wasm");
        assert!(path.is_file(), "{}: run ./x build-plugins", path.display());
        path
    }

    /// Status and the whole response of one `Connection: close` request.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Api-Key: k\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let status = out.split_whitespace().nth(1).unwrap().parse().unwrap();
        (status, out)
    }

    /// More concurrent `/logs` requests than a generator has slots: the
    /// extra ones are answered 503 with Retry-After at once, and the slots
    /// free up again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[allow(unsafe_code, reason = "std::env::set_var (unsafe since edition 2024)")]
    async fn logs_beyond_the_generators_slots_get_503_with_retry_after() {
        let dir = tempfile::tempdir().unwrap();
        let names = Names::for_tests(1);
        let backend = LocalBackend::open(dir.path(), SyncMode::Normal, &names)
            .unwrap()
            .backend();
        // SAFETY: set before the server reads it, in this test's own variable.
        unsafe { std::env::set_var("PIPEHOST_WEB_LOGS_UNIT_KEYS", "k") };
        let plan = WebPlan {
            listen: "127.0.0.1:0".parse().unwrap(),
            keys_env: "PIPEHOST_WEB_LOGS_UNIT_KEYS".into(),
            keys_file: None,
            body_limit: 1024,
            header_limit: 8192,
            request_timeout: Duration::from_secs(30),
            max_logs_records: 10,
            max_request_lines: 100,
            max_aggregate_lines: 10,
            max_connections: 16,
            tls: None,
            request_log: RequestLogPlan::Sqlite(dir.path().join("requests.db")),
            request_log_ca_file: None,
            request_log_queue: 100,
        };
        let settings = PluginSettings {
            timeout: Duration::from_secs(3),
            ..PluginSettings::default()
        };
        let engine = PluginEngine::new(EngineSettings {
            max_instances: 16,
            cache_dir: None,
            ..EngineSettings::default()
        })
        .unwrap();
        let path = hostile_generator();
        let plugin = engine.load::<Generator>(&path, settings.clone()).unwrap();
        let generator = GeneratorPlan {
            plugin: PluginPlan {
                path,
                config_json: "{}".into(),
                settings,
                origin: Origin {
                    line: None,
                    key: "feeds.h.generator".into(),
                },
            },
            interval: Duration::from_secs(1),
            records: 1,
            seed: 1,
            aggregate: false,
        };
        let mut feeds = FeedSet::default();
        feeds.add("h", Some((plugin, generator)));
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
        assert_eq!(get(addr, "/logs?feed=h").await.0, 200);

        // `records=8`: the hostile generator sleeps to its 3 s deadline.
        // One request more than there are slots: that one is refused at
        // once, the others end at the plugin's deadline.
        let requests: Vec<_> = (0..=MAX_CONCURRENT)
            .map(|_| {
                tokio::spawn(async move {
                    let started = Instant::now();
                    let (status, response) = get(addr, "/logs?feed=h&records=8").await;
                    (status, response, started.elapsed())
                })
            })
            .collect();
        let mut busy = Vec::new();
        for request in requests {
            let (status, response, took) = request.await.unwrap();
            if status == 503 {
                assert!(response.contains("retry-after: 1\r\n"), "{response}");
                assert!(response.contains("feeds.h.generator is busy"), "{response}");
                assert!(took < Duration::from_secs(3), "refused at once: {took:?}");
                busy.push(response);
            } else {
                assert_eq!(status, 500, "{response}");
                assert!(response.contains("call deadline"), "{response}");
            }
        }
        assert_eq!(busy.len(), 1, "exactly the extra request is refused");
        assert_eq!(get(addr, "/logs?feed=h").await.0, 200, "slots free again");
        server.stop().await.unwrap();
    }
}
