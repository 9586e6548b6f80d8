//! The process's Prometheus metrics, shared by the admin API and the web
//! server: one global recorder of the `metrics` crate family. Stages record
//! histograms and labelled counters directly; the pipeline's [`Stats`]
//! counters are copied in when `/metrics` is rendered.
//!
//! | metric | type | what |
//! |---|---|---|
//! | `pipehost_records_{generated,ingested,bridged,processed}_total` | counter | records per stage |
//! | `pipehost_events_stored_total`, `pipehost_objects_written_total`, `pipehost_notifications_sent_total` | counter | output |
//! | `pipehost_errors_total{kind}` | counter | plugin, backend, batch, rejected_record, reload |
//! | `pipehost_plugin_call_seconds{role,feed}` | histogram | one plugin call (a batch) |
//! | `pipehost_stream_lag_records`, `pipehost_queue_depth`, `pipehost_dead_letter_depth` | gauge | backlog (the stream lag only in a process that runs both the feeds and the bridge — records it put on the stream less those it bridged, including ingest; 0 elsewhere) |
//! | `pipehost_http_requests_total{method,route,status}`, `pipehost_http_request_seconds{route}` | counter, histogram | the web server; `method` is a standard method or `other`, `route` the matched template or `unmatched`, so clients cannot add series |
//! | `pipehost_http_connections_refused_total{server}` | counter | connections past the cap, answered 503 (web server, admin API) |
//! | `pipehost_ingest_commit_records` | histogram | records per group commit |
//! | `pipehost_request_log_{written,dropped,failed}_total` | counter | the request log |

use std::sync::OnceLock;
use std::time::Instant;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::stats::Stats;

/// Histogram buckets for every `*_seconds` metric: 50 µs to 10 s.
const SECONDS_BUCKETS: [f64; 17] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];
const RECORDS_BUCKETS: [f64; 10] = [
    1.0, 10.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0, 100000.0, 500000.0,
];

/// The process-wide recorder's handle, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_records".into()), &RECORDS_BUCKETS)
            })
            .expect("bucket lists are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only counters");
        }
        handle
    })
}

/// Records one plugin call's latency.
pub fn plugin_call(role: &'static str, feed: &str, started: Instant) {
    metrics::histogram!("pipehost_plugin_call_seconds", "role" => role, "feed" => feed.to_string())
        .record(started.elapsed().as_secs_f64());
}

/// The Prometheus text: the pipeline's counters and everything recorded.
pub fn render(stats: &Stats) -> String {
    let h = handle();
    let s = stats.snapshot();
    let counters = [
        ("pipehost_records_generated_total", s.generated),
        ("pipehost_records_ingested_total", s.ingested),
        ("pipehost_records_bridged_total", s.bridged),
        ("pipehost_batches_sent_total", s.messages),
        ("pipehost_records_processed_total", s.processed),
        ("pipehost_events_stored_total", s.events),
        ("pipehost_events_dropped_total", s.dropped),
        ("pipehost_error_records_total", s.error_records),
        ("pipehost_objects_written_total", s.objects),
        ("pipehost_notifications_sent_total", s.notifications),
        ("pipehost_batches_failed_total", s.failed_batches),
        ("pipehost_plugin_failures_total", s.plugin_failures),
        ("pipehost_backend_errors_total", s.backend_errors),
        ("pipehost_reloads_total", s.reloads),
        ("pipehost_reload_failures_total", s.reload_failures),
    ];
    for (name, v) in counters {
        metrics::counter!(name).absolute(v);
    }
    for (kind, v) in [
        ("plugin", s.plugin_failures),
        ("backend", s.backend_errors),
        ("batch", s.failed_batches),
        ("rejected_record", s.error_records),
        ("reload", s.reload_failures),
    ] {
        metrics::counter!("pipehost_errors_total", "kind" => kind).absolute(v);
    }
    metrics::gauge!("pipehost_queue_depth").set(s.queue_depth as f64);
    metrics::gauge!("pipehost_dead_letter_depth").set(s.dead_letters as f64);
    metrics::gauge!("pipehost_stream_lag_records").set(s.stream_lag as f64);
    h.render()
}
