//! `pipehost serve`: a producer-only process — the feeds' scheduled
//! generation and the web server, nothing downstream of the stream (a
//! `pipehost run` elsewhere, or the AWS pipeline, consumes it).
//!
//! Feeds tick as in `run` (no overlap of slow ticks, retry with backoff
//! while the stream is unavailable); shutdown stops the web server first
//! (requests in flight finish), then the feeds.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::reload::PluginCache;
use super::stats::Stats;
use super::{Feeds, RunReport, feeds, refresh_gauges, shutdown_signal, start_web};
use crate::backend;
use crate::plan::Plan;
use crate::plugin::{EngineSettings, PluginEngine};

/// Runs feeds and the web server until a signal or `duration`.
pub async fn serve(plan: Arc<Plan>, duration: Option<Duration>) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let signal = shutdown_signal();
    super::metrics::handle();
    if plan.web.is_none() {
        anyhow::bail!(
            "{}: `pipehost serve` needs a [web] section (and not `enabled = false`)",
            plan.file.display()
        );
    }
    let engine = PluginEngine::new(EngineSettings {
        max_instances: plan.plugins().count() as u32 * 8 + 32,
        ..EngineSettings::default()
    })?;
    let mut cache = PluginCache::new(engine);
    let backend = backend::open(&plan).await?;
    let stats = Arc::new(Stats::default());
    let mut feeds = Feeds {
        enabled: true,
        tasks: HashMap::new(),
        stream: backend.stream.clone(),
        stats: stats.clone(),
        budgets: Arc::new(feeds::Budgets::unlimited()),
    };
    let web = start_web(&plan, &mut cache, &backend, &stats)
        .await?
        .expect("checked above");
    for f in &plan.feeds {
        feeds.start(&plan, &f.name, &mut cache)?;
    }
    tokio::pin!(signal);
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut signal => {
                tracing::info!("shutting down: signal");
                break;
            }
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => break,
            _ = tick.tick() => {
                feeds.reap().await?;
                refresh_gauges(&backend, &stats, false).await;
            }
        }
    }
    web.stop().await.context("the web server")?;
    feeds.stop_all().await?;
    Ok(RunReport {
        stats: stats.snapshot(),
        elapsed: started.elapsed(),
        drained: false,
    })
}
