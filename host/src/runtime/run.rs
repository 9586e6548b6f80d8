//! `pipehost run`: starts the [`Pipeline`], then waits — for a signal, the
//! `--duration`, a stage that ended, or (with `--max-records`) every record
//! processed — running reloads as their triggers fire, keeping the stream
//! trimmed and the status line drawn; then stops front to back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::triggers::{Hangups, Triggers, shutdown_signal};
use super::{Pipeline, RunOptions, RunReport, StartOptions};
use crate::plan::Plan;
use crate::telemetry::metrics;
use crate::telemetry::stats::StatusLine;

/// How often the loop looks at the stages.
const TICK: Duration = Duration::from_millis(100);
/// How often gauges and the status line are refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(1);
/// How often records past the stream's retention are trimmed.
const TRIM_EVERY: Duration = Duration::from_secs(60);

/// Runs the pipeline of `plan`.
pub async fn run(plan: Arc<Plan>, opts: RunOptions) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let signal = shutdown_signal();
    metrics::handle();
    // Reload requests: file changes, SIGHUP and the admin API.
    let hangups = Hangups::catch()?;
    // `--dev` finds what it watches first: nothing to watch stops the run
    // before anything starts.
    let dev = match opts.dev {
        true => Some(super::dev::prepare(&plan_dir(&plan), &plugin_files(&plan)).await?),
        false => None,
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let start = StartOptions {
        stages: opts.stages,
        max_records: opts.max_records,
        reloads: Some(tx.clone()),
    };
    let mut pipeline = Pipeline::start(plan, start).await?;
    let mut triggers = Triggers::start(&pipeline, &opts, (tx, rx), hangups, dev)?;
    let mut status = StatusLine::new(opts.status);
    let deadline = opts.duration.map(|d| started + d);
    let ended = supervise(
        &mut pipeline,
        &mut triggers,
        &mut status,
        &opts,
        deadline,
        signal,
    );
    let drained = ended.await?;
    triggers.stop().await;
    let stats = pipeline.stop().await?;
    status.finish();
    Ok(RunReport {
        stats,
        elapsed: started.elapsed(),
        drained,
    })
}

/// The folder of the pipeline file (`.` for a bare file name).
fn plan_dir(plan: &Plan) -> std::path::PathBuf {
    plan.file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| ".".into(), |p| p.to_owned())
}

fn plugin_files(plan: &Plan) -> Vec<std::path::PathBuf> {
    plan.plugins().map(|p| p.path.clone()).collect()
}

/// Runs reloads and housekeeping until the run should end (a reload is
/// never cut short by a signal); true when it ends because everything
/// asked for was processed.
async fn supervise(
    pipeline: &mut Pipeline,
    triggers: &mut Triggers,
    status: &mut StatusLine,
    opts: &RunOptions,
    deadline: Option<Instant>,
    signal: impl std::future::Future<Output = ()>,
) -> anyhow::Result<bool> {
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(TICK);
    let mut last_status = Instant::now() - STATUS_EVERY;
    let mut last_trim = Instant::now();
    loop {
        tokio::select! {
            _ = &mut signal => {
                tracing::info!("shutting down: signal");
                return Ok(false);
            }
            reload = triggers.next() => {
                triggers.apply(reload, pipeline).await?;
                continue;
            }
            _ = tick.tick() => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) || pipeline.check_stages().await? {
            return Ok(false);
        }
        if opts.max_records.is_some() && pipeline.drained().await? {
            return Ok(true);
        }
        if last_trim.elapsed() >= TRIM_EVERY {
            last_trim = Instant::now();
            pipeline.trim_stream().await;
        }
        if last_status.elapsed() >= STATUS_EVERY {
            last_status = Instant::now();
            pipeline.refresh_gauges().await;
            let stats = pipeline.stats();
            status.draw(&stats.snapshot(), stats.note());
        }
    }
}
