//! The running pipeline as one object, after Vector's `RunningTopology`:
//! [`Pipeline::start`] loads every plugin, opens the backend and starts the
//! stages this process runs; [`Pipeline::reload`] applies a new plan live,
//! or refuses it with the reason while the running version keeps serving;
//! [`Pipeline::stop`] drains front to back. It owns one cancellation tree:
//!
//! ```text
//! root ─┬─ admin API
//!       ├─ web server
//!       ├─ feeds ── one child per feed generator
//!       ├─ bridge
//!       ├─ processor
//!       └─ the caller's (SIGHUP, --dev): Pipeline::child_token
//! ```
//!
//! `stop` cancels the branches one at a time, each stage finishing what it
//! holds; dropping a pipeline that was not stopped cancels the root.

use std::sync::Arc;

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::chains::Chains;
use super::feed_tasks::FeedTasks;
use super::reload::{PluginCache, ReloadError};
use super::{Stages, blocking, bridge, engine, feeds, process, processor, reload};
use crate::backend::{self, Backend};
use crate::plan::Plan;
use crate::plugin::Generator;
use crate::telemetry::stats::{Snapshot, Stats};
use crate::web::admin::{AdminServer, ReloadRequest};
use crate::web::{FeedSet, WebServer};

/// What [`Pipeline::reload`] did.
#[derive(Debug)]
pub enum ReloadOutcome {
    /// Published as plugin generation `generation`; `changes` says what
    /// changed, `; `-separated.
    Applied { generation: u64, changes: String },
    /// The new plan runs as the running one did: nothing to publish.
    Unchanged,
    /// Not applied; the running version keeps serving.
    Refused(ReloadError),
}

impl ReloadOutcome {
    /// The admin API's answer: what changed, or why it was refused.
    pub fn reply(&self) -> Result<String, String> {
        match self {
            Self::Applied { changes, .. } => Ok(changes.clone()),
            Self::Unchanged => Ok("nothing changed".into()),
            Self::Refused(e) => Err(e.to_string()),
        }
    }

    /// Logs the outcome of a reload triggered by `why` and counts it.
    pub fn report(&self, why: &str, stats: &Stats) {
        match self {
            Self::Applied {
                generation,
                changes,
            } => {
                Stats::add(&stats.reloads, 1);
                let msg = format!("reloaded ({why}): {changes}");
                tracing::info!(generation, "{msg}");
                stats.set_note(msg);
            }
            Self::Unchanged => tracing::debug!("reload ({why}): nothing changed"),
            Self::Refused(e) => {
                Stats::add(&stats.reload_failures, 1);
                let msg = format!("reload refused ({why}); the running version keeps serving: {e}");
                tracing::error!("{msg}");
                stats.set_note(msg);
            }
        }
    }
}

/// What [`Pipeline::start`] starts, besides the plan.
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    pub stages: Stages,
    /// Generate this many records in total, across runs: what is left
    /// after earlier runs is shared among the generating feeds in
    /// proportion to their rates (a feed stops when its share is used up).
    pub max_records: Option<u64>,
    /// Where reload requests go, when the pipeline takes reloads (`run`):
    /// every plugin is loaded at start, those of stages it does not run
    /// too, to compare and swap later, and the admin API (`[admin]`) sends
    /// its requests here. `None` (`serve`): no reloads, no admin API.
    pub reloads: Option<mpsc::Sender<ReloadRequest>>,
}

/// A stage's task and its branch of the cancellation tree.
struct StageTask {
    handle: JoinHandle<anyhow::Result<()>>,
    cancel: CancellationToken,
}

impl StageTask {
    async fn stop(self, what: &'static str) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.handle.await?.context(what)
    }
}

/// A running pipeline: its plan, plugins, backend, counters and stages.
pub struct Pipeline {
    plan: Arc<Plan>,
    stages: Stages,
    /// Started to take reloads ([`StartOptions::reloads`]).
    reloadable: bool,
    cache: PluginCache,
    backend: Backend,
    stats: Arc<Stats>,
    /// The plugins workers use; a reload swaps in a new generation.
    chains: Arc<ArcSwap<Chains>>,
    /// The bridge's live settings (rollover, poll interval).
    bridge_live: Arc<ArcSwap<bridge::BridgeSettings>>,
    in_flight: Arc<processor::InFlight>,
    feeds: FeedTasks,
    admin: Option<AdminServer>,
    web: Option<WebServer>,
    bridge: Option<StageTask>,
    processor: Option<StageTask>,
    root: CancellationToken,
    /// Cancels the whole tree if the pipeline is dropped without `stop`.
    _root_guard: DropGuard,
}

impl Pipeline {
    /// Loads the plugins (the load-time gate: nothing starts unless each
    /// compiles, targets its world and accepts its config), opens the
    /// backend and starts the stages: the feeds' generators, the bridge,
    /// the processor, the admin API (when reloadable and `[admin]` is
    /// configured) and (with the feeds, when `[web]` is configured) the
    /// web server.
    pub async fn start(plan: Arc<Plan>, options: StartOptions) -> anyhow::Result<Self> {
        let StartOptions {
            stages,
            max_records,
            reloads,
        } = options;
        let reloadable = reloads.is_some();
        let mut cache = engine::cache_for(&plan, stages)?;
        let initial = engine::load_all(&mut cache, &plan, stages, reloadable)?;
        let chains = Arc::new(ArcSwap::from_pointee(Chains {
            generation: 0,
            feeds: initial,
        }));
        let backend = backend::open(&plan).await?;
        let stats = Arc::new(Stats::default());
        let budgets = Arc::new(budgets(&plan, &backend, max_records).await?);
        let root = CancellationToken::new();
        let feeds = FeedTasks::new(
            stages.feeds,
            backend.stream.clone(),
            stats.clone(),
            budgets,
            root.child_token(),
        );
        let mut pipeline = Self {
            bridge_live: Arc::new(ArcSwap::from_pointee(bridge_settings(&plan))),
            plan,
            stages,
            reloadable,
            cache,
            backend,
            stats,
            chains,
            in_flight: Arc::new(processor::InFlight::default()),
            feeds,
            admin: None,
            web: None,
            bridge: None,
            processor: None,
            _root_guard: root.clone().drop_guard(),
            root,
        };
        pipeline.start_stages(reloads).await?;
        Ok(pipeline)
    }

    async fn start_stages(
        &mut self,
        reloads: Option<mpsc::Sender<ReloadRequest>>,
    ) -> anyhow::Result<()> {
        let plan = self.plan.clone();
        if self.stages.feeds {
            for feed in &plan.live.feeds {
                self.feeds.start(&plan, &feed.name, &mut self.cache)?;
            }
        }
        if self.stages.bridge {
            let cancel = self.root.child_token();
            let handle = tokio::spawn(bridge::run(
                self.bridge_live.clone(),
                self.backend.stream.clone(),
                self.backend.queue.clone(),
                self.stats.clone(),
                cancel.clone(),
            ));
            self.bridge = Some(StageTask { handle, cancel });
        }
        if self.stages.processor {
            let cancel = self.root.child_token();
            let handle = tokio::spawn(processor::run(
                self.chains.clone(),
                self.backend.clone(),
                processor_settings(&plan, &self.backend),
                self.stats.clone(),
                self.in_flight.clone(),
                cancel.clone(),
            ));
            self.processor = Some(StageTask { handle, cancel });
        }
        if let (Some(tx), Some(a)) = (reloads, &plan.fixed.admin) {
            let (stats, cancel) = (self.stats.clone(), self.root.child_token());
            self.admin = Some(AdminServer::start(a, stats, tx, cancel).await?);
        }
        if self.stages.feeds
            && let Some(w) = &plan.fixed.web
        {
            let feeds = web_feeds(&plan, &mut self.cache)?;
            let cancel = self.root.child_token();
            let (backend, stats) = (self.backend.clone(), self.stats.clone());
            self.web = Some(WebServer::start(w, feeds, backend, stats, cancel).await?);
        }
        Ok(())
    }

    /// The plan running now (the last one applied).
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// A new branch of the pipeline's cancellation tree, for work the
    /// caller runs beside it (SIGHUP, `--dev`).
    pub fn child_token(&self) -> CancellationToken {
        self.root.child_token()
    }

    /// Applies `new_plan` if it can run live and its plugins validate: the
    /// new plugin generation is published in one swap (a batch in flight
    /// finishes on the version it started with), the bridge's live settings
    /// are swapped, changed generators restart and the web server's feeds
    /// are replaced. Otherwise nothing changes. `Err` only when a stage
    /// failed while being restarted, or the pipeline was not started
    /// to take them ([`StartOptions::reloads`]).
    pub async fn reload(&mut self, new_plan: Plan) -> anyhow::Result<ReloadOutcome> {
        anyhow::ensure!(self.reloadable, "this pipeline was started without reloads");
        let current = self.chains.load_full();
        let cache = &mut self.cache;
        let prepared = blocking(|| reload::prepare(cache, &self.plan, new_plan, &current));
        let (new_plan, new_chains, applied) = match prepared {
            Ok(p) => p,
            Err(e) => return Ok(ReloadOutcome::Refused(e)),
        };
        let new_plan = Arc::new(new_plan);
        if applied.changes.is_empty() {
            self.plan = new_plan;
            return Ok(ReloadOutcome::Unchanged);
        }
        let generation = current.generation + 1;
        self.chains.store(Arc::new(Chains {
            generation,
            feeds: new_chains,
        }));
        self.bridge_live.store(Arc::new(bridge_settings(&new_plan)));
        for name in &applied.feeds_to_restart {
            self.feeds.stop(name).await?;
            self.feeds.start(&new_plan, name, &mut self.cache)?;
        }
        if let Some(w) = &self.web {
            w.set_feeds(web_feeds(&new_plan, &mut self.cache)?);
        }
        self.plan = new_plan;
        Ok(ReloadOutcome::Applied {
            generation,
            changes: applied.changes.join("; "),
        })
    }

    /// Re-reads the running plan's file and reloads it; the outcome is
    /// logged and counted (triggered by `why`: a file change, SIGHUP, the
    /// admin API).
    pub async fn reload_file(&mut self, why: &str) -> anyhow::Result<ReloadOutcome> {
        let file = self.plan.file.clone();
        let outcome = match blocking(|| reload::read_plan(&file)) {
            Ok(new_plan) => self.reload(new_plan).await?,
            Err(e) => ReloadOutcome::Refused(e),
        };
        outcome.report(why, &self.stats);
        Ok(outcome)
    }

    /// Checks on the stages: feeds that ended on their own (their budget
    /// used up) are reaped; true when the bridge or the processor ended.
    pub async fn check_stages(&mut self) -> anyhow::Result<bool> {
        self.feeds.reap().await?;
        let ended = |t: &Option<StageTask>| t.as_ref().is_some_and(|t| t.handle.is_finished());
        Ok(ended(&self.bridge) || ended(&self.processor))
    }

    /// True when every generator has ended, the bridge has forwarded every
    /// stream record and the queue and the processor hold nothing.
    pub async fn drained(&self) -> anyhow::Result<bool> {
        Ok(self.feeds.is_empty() && drained(&self.plan, &self.backend, &self.in_flight).await?)
    }

    /// Drops stream records older than the retention.
    pub async fn trim_stream(&self) {
        let before =
            chrono::Utc::now().timestamp_millis() - self.plan.live.retention.as_millis() as i64;
        match self.backend.stream.trim(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(records = n, "trimmed records past the stream retention"),
            Err(e) => tracing::warn!("trimming the stream failed: {e}"),
        }
    }

    /// Refreshes the gauges of the stages this process runs.
    pub async fn refresh_gauges(&self) {
        refresh_gauges(&self.backend, &self.stats, self.stages).await;
    }

    /// Stops front to back, each stage finishing what it holds: the admin
    /// API (a reload in flight finishes), the web server (requests in flight finish), the feeds, the bridge (its open
    /// batches flushed), the processor (the batches it holds). Returns the
    /// final counters.
    pub async fn stop(mut self) -> anyhow::Result<Snapshot> {
        if let Some(admin) = self.admin.take()
            && let Err(e) = admin.stop().await
        {
            tracing::warn!("admin API stopped: {e:#}");
        }
        if let Some(w) = self.web.take() {
            w.stop().await.context("the web server")?;
        }
        self.feeds.stop_all().await?;
        if let Some(t) = self.bridge.take() {
            t.stop("the bridge failed").await?;
        }
        if let Some(t) = self.processor.take() {
            t.stop("the processor failed").await?;
        }
        self.refresh_gauges().await;
        Ok(self.stats.snapshot())
    }
}

/// The feeds' shares of `max_records`, less what earlier runs generated.
async fn budgets(
    plan: &Plan,
    backend: &Backend,
    max_records: Option<u64>,
) -> anyhow::Result<feeds::Budgets> {
    if max_records.is_none() {
        return Ok(feeds::Budgets::unlimited());
    }
    let mut generating = Vec::new();
    for feed in plan.live.feeds.iter().filter(|f| f.generator.is_some()) {
        let done = backend
            .stream
            .producer_position(&feeds::producer_name(&feed.name))
            .await?
            .map_or(0, |p| p.records);
        let g = feed.generator.as_ref().expect("filtered on generators");
        generating.push(feeds::FeedShare {
            name: feed.name.clone(),
            done,
            rate: feeds::FeedShare::rate_of(g.records, g.interval),
        });
    }
    Ok(feeds::Budgets::shared(max_records, &generating))
}

fn bridge_settings(plan: &Plan) -> bridge::BridgeSettings {
    bridge::BridgeSettings {
        stream: plan.fixed.stream.clone(),
        bridge: plan.live.bridge.clone(),
    }
}

fn processor_settings(plan: &Plan, backend: &Backend) -> processor::ProcessorSettings {
    processor::ProcessorSettings {
        workers: plan.fixed.processor.workers,
        receive_batch: plan.fixed.processor.receive_batch,
        visibility: plan.fixed.queue.visibility_timeout,
        receive_wait: backend.receive_wait(),
        layout: process::Layout::of(&plan.fixed.store),
    }
}

/// The feeds the web server accepts, with their generators for `/logs`.
fn web_feeds(plan: &Plan, cache: &mut PluginCache) -> anyhow::Result<FeedSet> {
    let mut set = FeedSet::default();
    for feed in &plan.live.feeds {
        let generator = match &feed.generator {
            Some(g) => Some((blocking(|| cache.get::<Generator>(&g.plugin))?, g.clone())),
            None => None,
        };
        set.add(&feed.name, generator);
    }
    Ok(set)
}

/// True when the bridge has forwarded every stream record and the queue and
/// the processor hold nothing.
async fn drained(
    plan: &Plan,
    backend: &Backend,
    in_flight: &processor::InFlight,
) -> anyhow::Result<bool> {
    let depth = backend.queue.depth().await?;
    if in_flight.get() > 0 || depth.total() > 0 {
        tracing::debug!(
            in_flight = in_flight.get(),
            ?depth,
            "not drained: batches queued or in flight"
        );
        return Ok(false);
    }
    for shard in backend.stream.shards().await? {
        let checkpoint = backend
            .queue
            .checkpoint(&plan.fixed.stream.consumer, &shard)
            .await?;
        if checkpoint.as_deref() == Some(bridge::SHARD_END) {
            continue;
        }
        if backend
            .stream
            .pending(&shard, checkpoint.as_deref())
            .await?
        {
            tracing::debug!(
                shard,
                ?checkpoint,
                "not drained: the shard has records to forward"
            );
            return Ok(false);
        }
    }
    Ok(in_flight.get() == 0 && backend.queue.depth().await?.total() == 0)
}

/// Queue depths, and the stream lag when `stages` include both the feeds and
/// the bridge: the lag is this process's records put on the stream less those
/// it bridged, so a process without the bridge would count every record it
/// generated as lag, and a bridge-only process, which generates nothing,
/// would always show 0. Elsewhere the gauge stays 0 (documented in
/// `telemetry/metrics.rs`).
async fn refresh_gauges(backend: &Backend, stats: &Stats, stages: Stages) {
    use std::sync::atomic::Ordering::Relaxed;
    if stages.feeds && stages.bridge {
        let s = stats.snapshot();
        stats.stream_lag.store(
            (s.generated + s.ingested).saturating_sub(s.bridged),
            Relaxed,
        );
    }
    if let Ok(d) = backend.queue.depth().await {
        stats.queue_depth.store(d.total(), Relaxed);
    }
    if let Ok(d) = backend.dead_letter.depth().await {
        stats.dead_letters.store(d.total(), Relaxed);
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::backend::local::{LocalBackend, Names};
    use crate::plan::SyncMode;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_stream_lag_is_counted_only_where_feeds_and_bridge_run_together() {
        let dir = tempfile::tempdir().unwrap();
        let names = Names::for_tests(1);
        let backend = LocalBackend::open(dir.path(), SyncMode::Normal, &names)
            .unwrap()
            .backend();
        let stats = Stats::default();
        Stats::add(&stats.generated, 5);
        Stats::add(&stats.ingested, 2);
        Stats::add(&stats.bridged, 3);
        let without_bridge = [
            Stages::PRODUCER,
            Stages {
                feeds: true,
                bridge: false,
                processor: true,
            },
            Stages {
                feeds: false,
                bridge: false,
                processor: true,
            },
            // A bridge-only process: its generated count is someone else's,
            // so it cannot say how far behind it is.
            Stages {
                feeds: false,
                bridge: true,
                processor: false,
            },
        ];
        for stages in without_bridge {
            refresh_gauges(&backend, &stats, stages).await;
            assert_eq!(stats.snapshot().stream_lag, 0, "{stages:?}");
        }
        let producing_and_bridging = Stages {
            feeds: true,
            bridge: true,
            processor: false,
        };
        for stages in [Stages::default(), producing_and_bridging] {
            stats
                .stream_lag
                .store(0, std::sync::atomic::Ordering::Relaxed);
            refresh_gauges(&backend, &stats, stages).await;
            assert_eq!(stats.snapshot().stream_lag, 4, "{stages:?}");
        }
    }
}
