//! The running pipeline: one task per stage, joined by the durable stream
//! and queue and by bounded channels inside the processor.
//!
//! ```text
//! feeds (1 task per generator) ─put─▶ stream ─read─▶ bridge (1 task per shard)
//!   ─send+checkpoint─▶ queue ─receive─▶ fetcher ─bounded channel─▶ workers
//!   ─▶ object store ─▶ notifier ─▶ delete message
//! ```
//!
//! Shutdown (Ctrl-C, SIGTERM, `--duration`) runs front to back: feeds stop
//! ticking, the bridge flushes its open batches, the processor finishes the
//! batches it holds. With `--max-records`, the run ends once that many
//! records were generated and every one of them has left the queue.

pub mod admin;
pub mod aggregate;
pub mod bridge;
pub mod dev;
pub mod feeds;
pub mod lambda;
pub mod message;
pub mod metrics;
pub mod process;
pub mod processor;
pub mod reload;
mod serve;
pub mod stats;

pub use serve::serve;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backend::{self, Backend};
use crate::plan::Plan;
use crate::plugin::{EngineSettings, PluginEngine, PluginKind};
use reload::{Chains, PluginCache};
use stats::{Snapshot, Stats, StatusLine};

/// How long to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop (gracefully) after this long.
    pub duration: Option<Duration>,
    /// Generate this many records in total, then stop once all are processed.
    pub max_records: Option<u64>,
    /// Draw the status line (only on a terminal).
    pub status: bool,
    /// Reload when pipeline.toml or a plugin file changes (SIGHUP always does).
    pub watch: bool,
    /// Also watch the plugins' source crates and rebuild them on change.
    pub dev: bool,
    /// Which stages this process runs (all by default). On AWS, stages can
    /// run in separate processes: the feeds and web server in one service,
    /// the bridge (one instance) in another, processors where convenient.
    pub stages: Stages,
}

/// The stages of `pipehost run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stages {
    /// The generators' schedules and the web server.
    pub feeds: bool,
    pub bridge: bool,
    pub processor: bool,
}

impl Default for Stages {
    fn default() -> Self {
        Self {
            feeds: true,
            bridge: true,
            processor: true,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub stats: Snapshot,
    pub elapsed: Duration,
    /// The run ended because everything asked for was processed.
    pub drained: bool,
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
            .checkpoint(&plan.bridge_consumer, &shard)
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

/// Waits for Ctrl-C or SIGTERM. The handlers are installed by this call,
/// not on the first poll, so a signal right after start is not missed.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs plugin work from async code. Plugin calls must never run on an
/// async worker thread: wasmtime-wasi's synchronous bindings block on a
/// future for every WASI call the guest makes, which panics there.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A running feed generator.
struct FeedTask {
    handle: JoinHandle<anyhow::Result<()>>,
    cancel: CancellationToken,
}

struct Feeds {
    /// False when this process runs no feeds (`--stages` without them).
    enabled: bool,
    tasks: HashMap<String, FeedTask>,
    stream: Arc<dyn backend::Stream>,
    stats: Arc<Stats>,
    budgets: Arc<feeds::Budgets>,
}

impl Feeds {
    fn start(&mut self, plan: &Plan, name: &str, cache: &mut PluginCache) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let Some(feed) = plan.feed(name) else {
            return Ok(());
        };
        let Some(g) = &feed.generator else {
            return Ok(());
        };
        let plugin = blocking(|| cache.get(&g.plugin, PluginKind::Generator))?;
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(feeds::run_feed(
            name.to_string(),
            g.clone(),
            plugin,
            self.stream.clone(),
            self.stats.clone(),
            self.budgets.of(name),
            cancel.clone(),
        ));
        self.tasks
            .insert(name.to_string(), FeedTask { handle, cancel });
        Ok(())
    }

    async fn stop(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(t) = self.tasks.remove(name) {
            t.cancel.cancel();
            t.handle.await?.with_context(|| format!("feed {name}"))?;
        }
        Ok(())
    }

    async fn stop_all(&mut self) -> anyhow::Result<()> {
        let names: Vec<String> = self.tasks.keys().cloned().collect();
        for t in self.tasks.values() {
            t.cancel.cancel();
        }
        for n in names {
            self.stop(&n).await?;
        }
        // Positions a provider saves lazily (aws) are written now.
        if let Err(e) = self.stream.flush().await {
            tracing::warn!(
                "saving the feeds' positions failed (a restart may generate some ticks again): {e}"
            );
        }
        Ok(())
    }

    /// Removes and checks feeds that ended on their own (budget used up).
    async fn reap(&mut self) -> anyhow::Result<()> {
        let done: Vec<String> = self
            .tasks
            .iter()
            .filter(|(_, t)| t.handle.is_finished())
            .map(|(n, _)| n.clone())
            .collect();
        for n in done {
            self.stop(&n).await?;
        }
        Ok(())
    }
}

/// The feeds the web server accepts, with their generators for `/logs`.
fn web_feeds(plan: &Plan, cache: &mut PluginCache) -> anyhow::Result<crate::web::FeedSet> {
    let mut set = crate::web::FeedSet::default();
    for feed in &plan.feeds {
        let generator = match &feed.generator {
            Some(g) => Some((
                blocking(|| cache.get(&g.plugin, PluginKind::Generator))?,
                g.clone(),
            )),
            None => None,
        };
        set.add(&feed.name, generator);
    }
    Ok(set)
}

/// Starts the web server when the plan has one.
async fn start_web(
    plan: &Plan,
    cache: &mut PluginCache,
    backend: &Backend,
    stats: &Arc<Stats>,
) -> anyhow::Result<Option<crate::web::WebServer>> {
    let Some(w) = &plan.web else { return Ok(None) };
    let feeds = web_feeds(plan, cache)?;
    Ok(Some(
        crate::web::WebServer::start(w, feeds, backend.clone(), stats.clone()).await?,
    ))
}

fn bridge_settings(plan: &Plan) -> bridge::BridgeSettings {
    bridge::BridgeSettings {
        stream_name: plan.stream_name.clone(),
        consumer: plan.bridge_consumer.clone(),
        rollover: plan.rollover.clone(),
        poll_interval: plan.poll_interval,
    }
}

/// Applies a reload if it validates; reports the outcome either way.
#[allow(clippy::too_many_arguments)]
async fn reload(
    why: &str,
    plan: &mut Arc<Plan>,
    cache: &mut PluginCache,
    chains: &ArcSwap<Chains>,
    bridge_live: &ArcSwap<bridge::BridgeSettings>,
    feeds: &mut Feeds,
    web: Option<&crate::web::WebServer>,
    stats: &Stats,
) -> anyhow::Result<Result<String, String>> {
    let current = chains.load_full();
    match blocking(|| reload::prepare(cache, plan, &current)) {
        Err(e) => {
            Stats::add(&stats.reload_failures, 1);
            let msg = format!("reload refused ({why}); the running version keeps serving: {e}");
            tracing::error!("{msg}");
            stats.set_note(msg);
            Ok(Err(e.to_string()))
        }
        Ok((new_plan, new_chains, applied)) => {
            if applied.changes.is_empty() {
                tracing::debug!("reload ({why}): nothing changed");
                *plan = Arc::new(new_plan);
                return Ok(Ok("nothing changed".into()));
            }
            chains.store(Arc::new(Chains {
                generation: current.generation + 1,
                feeds: new_chains,
            }));
            bridge_live.store(Arc::new(bridge_settings(&new_plan)));
            let new_plan = Arc::new(new_plan);
            for name in &applied.feeds_to_restart {
                feeds.stop(name).await?;
                feeds.start(&new_plan, name, cache)?;
            }
            if let Some(w) = web {
                w.set_feeds(web_feeds(&new_plan, cache)?);
            }
            *plan = new_plan;
            Stats::add(&stats.reloads, 1);
            let msg = format!("reloaded ({why}): {}", applied.changes.join("; "));
            tracing::warn!(generation = current.generation + 1, "{msg}");
            stats.set_note(msg);
            Ok(Ok(applied.changes.join("; ")))
        }
    }
}

/// Runs the pipeline of `plan`.
pub async fn run(plan: Arc<Plan>, opts: RunOptions) -> anyhow::Result<RunReport> {
    let started = Instant::now();
    let signal = shutdown_signal();
    metrics::handle();
    let mut plan = plan;
    let plugin_count = plan.plugins().count() as u32;
    let engine = PluginEngine::new(EngineSettings {
        // Room for each worker's set, a reloaded set beside it, and checks.
        max_instances: plugin_count * (2 * plan.workers as u32 + 4) + 32,
        ..EngineSettings::default()
    })?;
    let mut cache = PluginCache::new(engine);
    // The load-time gate: every plugin compiles, targets its world, and
    // accepts its config before anything starts.
    let initial = blocking(|| {
        for feed in &plan.feeds {
            if let Some(g) = &feed.generator {
                cache.get(&g.plugin, PluginKind::Generator)?;
            }
        }
        reload::build_chains(&mut cache, &plan)
    })?;
    let chains = Arc::new(ArcSwap::from_pointee(Chains {
        generation: 0,
        feeds: initial,
    }));

    let backend = backend::open(&plan).await?;
    let stats = Arc::new(Stats::default());

    // Records already generated by earlier runs count against each feed's share.
    let mut generating = Vec::new();
    for feed in plan.feeds.iter().filter(|f| f.generator.is_some()) {
        let done = backend
            .stream
            .producer_position(&feeds::producer_name(&feed.name))
            .await?
            .map_or(0, |p| p.records);
        generating.push((feed.name.clone(), done));
    }
    let budgets = Arc::new(feeds::Budgets::shared(opts.max_records, &generating));

    let bridge_cancel = CancellationToken::new();
    let proc_cancel = CancellationToken::new();
    let in_flight = Arc::new(processor::InFlight::default());

    let mut feeds = Feeds {
        enabled: true,
        tasks: HashMap::new(),
        stream: backend.stream.clone(),
        stats: stats.clone(),
        budgets: budgets.clone(),
    };
    let names: Vec<String> = plan.feeds.iter().map(|f| f.name.clone()).collect();
    if opts.stages.feeds {
        for name in &names {
            feeds.start(&plan, name, &mut cache)?;
        }
    } else {
        feeds.enabled = false;
    }
    let bridge_live = Arc::new(ArcSwap::from_pointee(bridge_settings(&plan)));
    let bridge_task = opts.stages.bridge.then(|| {
        tokio::spawn(bridge::run(
            bridge_live.clone(),
            backend.stream.clone(),
            backend.queue.clone(),
            stats.clone(),
            bridge_cancel.clone(),
        ))
    });
    let proc_task = opts.stages.processor.then(|| {
        tokio::spawn(processor::run(
            chains.clone(),
            backend.clone(),
            processor::ProcessorSettings {
                workers: plan.workers,
                receive_batch: plan.receive_batch,
                visibility: plan.visibility_timeout,
                receive_wait: match &plan.backend {
                    crate::plan::BackendPlan::Aws(aws) => aws.receive_wait,
                    crate::plan::BackendPlan::Local { .. } => Duration::from_millis(500),
                },
                layout: process::Layout::of(&plan),
            },
            stats.clone(),
            in_flight.clone(),
            proc_cancel.clone(),
        ))
    });

    // Reload triggers: file changes (debounced) and SIGHUP.
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<admin::ReloadRequest>(64);
    let mut watcher = if opts.watch {
        Some(reload::watch(
            &reload::watched_files(&plan),
            reload_tx.clone(),
        )?)
    } else {
        None
    };
    #[cfg(unix)]
    {
        let tx = reload_tx.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let _ = tx
                    .send(admin::ReloadRequest {
                        why: "SIGHUP".into(),
                        reply: None,
                    })
                    .await;
            }
        });
    }
    let admin_cancel = CancellationToken::new();
    let admin_task = match &plan.admin {
        Some(a) => {
            let keys = admin::load_keys(&a.keys_env, a.keys_file.as_deref())?;
            let listener = tokio::net::TcpListener::bind(a.listen)
                .await
                .with_context(|| format!("admin.listen {}", a.listen))?;
            eprintln!("pipehost: admin API on http://{}", listener.local_addr()?);
            if keys.is_empty() {
                tracing::warn!(
                    "no admin keys (set {}): POST /admin/reload is refused",
                    a.keys_env
                );
            }
            Some(tokio::spawn(admin::serve(
                listener,
                stats.clone(),
                keys,
                reload_tx.clone(),
                admin_cancel.clone(),
            )))
        }
        None => None,
    };
    let web = if opts.stages.feeds {
        start_web(&plan, &mut cache, &backend, &stats).await?
    } else {
        None
    };
    let dev_cancel = CancellationToken::new();
    let dev_task = opts.dev.then(|| {
        let dir = plan
            .file
            .parent()
            .map(|p| p.to_owned())
            .filter(|p| !p.as_os_str().is_empty());
        tokio::spawn(dev::run(
            dir.unwrap_or_else(|| ".".into()),
            plan.plugins().map(|p| p.path.clone()).collect(),
            dev_cancel.clone(),
        ))
    });
    let mut pending: Option<(Instant, String)> = None;
    const DEBOUNCE: Duration = Duration::from_millis(50);

    let mut status = StatusLine::new(opts.status);
    let deadline = opts.duration.map(|d| started + d);
    tokio::pin!(signal);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut drained_run = false;
    let mut last_status = Instant::now() - Duration::from_secs(1);
    let mut last_trim = Instant::now();
    loop {
        let debounce = async {
            match &pending {
                Some((at, _)) => tokio::time::sleep_until((*at).into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut signal => {
                tracing::info!("shutting down: signal");
                break;
            }
            req = reload_rx.recv() => {
                let Some(req) = req else { continue };
                match req.reply {
                    // Someone waits for the outcome: reload now.
                    Some(reply) => {
                        let outcome = reload(&req.why, &mut plan, &mut cache, &chains, &bridge_live, &mut feeds, web.as_ref(), &stats).await?;
                        let _ = reply.send(outcome);
                    }
                    // Editors and compilers write in several steps: wait
                    // until the files have been quiet for a moment.
                    None => pending = Some((Instant::now() + DEBOUNCE, req.why)),
                }
                continue;
            }
            _ = debounce => {
                let (_, why) = pending.take().expect("pending");
                // The outcome is logged and counted; nobody waits for it.
                let _ = reload(&why, &mut plan, &mut cache, &chains, &bridge_live, &mut feeds, web.as_ref(), &stats).await?;
                if opts.watch {
                    // Plugin paths may have changed: watch the new set.
                    watcher = Some(reload::watch(&reload::watched_files(&plan), reload_tx.clone())?);
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        feeds.reap().await?;
        let ended = |t: &Option<tokio::task::JoinHandle<anyhow::Result<()>>>| {
            t.as_ref().is_some_and(|t| t.is_finished())
        };
        if ended(&proc_task) || ended(&bridge_task) {
            break;
        }
        if opts.max_records.is_some()
            && feeds.tasks.is_empty()
            && drained(&plan, &backend, &in_flight).await?
        {
            drained_run = true;
            break;
        }
        if last_trim.elapsed() >= Duration::from_secs(60) {
            last_trim = Instant::now();
            let before = chrono::Utc::now().timestamp_millis() - plan.retention.as_millis() as i64;
            match backend.stream.trim(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(records = n, "trimmed records past the stream retention"),
                Err(e) => tracing::warn!("trimming the stream failed: {e}"),
            }
        }
        if last_status.elapsed() >= Duration::from_secs(1) {
            last_status = Instant::now();
            refresh_gauges(&backend, &stats, true).await;
            status.draw(&stats.snapshot(), stats.note());
        }
    }
    drop(watcher);
    admin_cancel.cancel();
    if let Some(t) = admin_task
        && let Err(e) = t.await?
    {
        tracing::warn!("admin API stopped: {e:#}");
    }
    dev_cancel.cancel();
    if let Some(t) = dev_task
        && let Err(e) = t.await?
    {
        tracing::warn!("--dev stopped: {e:#}");
    }

    // Front to back, each stage finishing what it holds.
    if let Some(w) = web {
        w.stop().await.context("the web server")?;
    }
    feeds.stop_all().await?;
    bridge_cancel.cancel();
    if let Some(t) = bridge_task {
        t.await?.context("the bridge failed")?;
    }
    proc_cancel.cancel();
    if let Some(t) = proc_task {
        t.await?.context("the processor failed")?;
    }
    refresh_gauges(&backend, &stats, true).await;
    status.finish();
    Ok(RunReport {
        stats: stats.snapshot(),
        elapsed: started.elapsed(),
        drained: drained_run,
    })
}

/// Queue depths, and the stream lag when this process runs the bridge.
async fn refresh_gauges(backend: &Backend, stats: &Stats, bridging: bool) {
    use std::sync::atomic::Ordering::Relaxed;
    if bridging {
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
