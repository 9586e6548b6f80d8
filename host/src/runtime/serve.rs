//! `pipehost serve`: a producer-only process — the feeds' scheduled
//! generation and the web server, nothing downstream of the stream (a
//! `pipehost run` elsewhere, or the AWS pipeline, consumes it): a
//! [`Pipeline`] of [`Stages::PRODUCER`].
//!
//! Feeds tick as in `run` (no overlap of slow ticks, retry with backoff
//! while the stream is unavailable); shutdown stops the web server first
//! (requests in flight finish), then the feeds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::triggers::shutdown_signal;
use super::{Pipeline, RunReport, Stages, StartOptions};
use crate::plan::Plan;
use crate::telemetry::metrics;

/// Runs feeds and the web server until a signal or `duration`.
pub async fn serve(plan: Arc<Plan>, duration: Option<Duration>) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let signal = shutdown_signal();
    metrics::handle();
    if plan.fixed.web.is_none() {
        anyhow::bail!(
            "{}: `pipehost serve` needs a [web] section (and not `enabled = false`)",
            plan.file.display()
        );
    }
    let start = StartOptions {
        stages: Stages::PRODUCER,
        max_records: None,
        reloads: None,
    };
    let mut pipeline = Pipeline::start(plan, start).await?;
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(signal, deadline);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut signal => {
                tracing::info!("shutting down: signal");
                break;
            }
            _ = &mut deadline => break,
            _ = tick.tick() => {
                pipeline.check_stages().await?;
                pipeline.refresh_gauges().await;
            }
        }
    }
    Ok(RunReport {
        stats: pipeline.stop().await?,
        elapsed: started.elapsed(),
        drained: false,
    })
}
