//! One task per feed generator, each under its own child of the feeds'
//! cancellation token: started, restarted on a reload, reaped when its
//! budget is used up, stopped together at shutdown.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::reload::PluginCache;
use super::{blocking, feeds};
use crate::backend;
use crate::plan::Plan;
use crate::plugin::Generator;
use crate::telemetry::stats::Stats;

/// A running feed generator.
struct FeedTask {
    handle: JoinHandle<anyhow::Result<()>>,
    cancel: CancellationToken,
}

pub(super) struct FeedTasks {
    /// False when this process runs no feeds (`--stages` without them).
    enabled: bool,
    tasks: HashMap<String, FeedTask>,
    stream: Arc<dyn backend::Stream>,
    stats: Arc<Stats>,
    budgets: Arc<feeds::Budgets>,
    /// The parent of every feed's token.
    cancel: CancellationToken,
}

impl FeedTasks {
    pub fn new(
        enabled: bool,
        stream: Arc<dyn backend::Stream>,
        stats: Arc<Stats>,
        budgets: Arc<feeds::Budgets>,
        cancel: CancellationToken,
    ) -> Self {
        Self {
            enabled,
            tasks: HashMap::new(),
            stream,
            stats,
            budgets,
            cancel,
        }
    }

    /// True when no generator is running (all ended, or none started).
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Starts feed `name`'s generator, if this process runs feeds and the
    /// feed has one.
    pub fn start(
        &mut self,
        plan: &Plan,
        name: &str,
        cache: &mut PluginCache,
    ) -> anyhow::Result<()> {
        if !self.enabled {
            return Ok(());
        }
        let Some(feed) = plan.feed(name) else {
            return Ok(());
        };
        let Some(g) = &feed.generator else {
            return Ok(());
        };
        let plugin = blocking(|| cache.get::<Generator>(&g.plugin))?;
        let cancel = self.cancel.child_token();
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

    pub async fn stop(&mut self, name: &str) -> anyhow::Result<()> {
        if let Some(t) = self.tasks.remove(name) {
            t.cancel.cancel();
            t.handle.await?.with_context(|| format!("feed {name}"))?;
        }
        Ok(())
    }

    pub async fn stop_all(&mut self) -> anyhow::Result<()> {
        let names: Vec<String> = self.tasks.keys().cloned().collect();
        self.cancel.cancel();
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
    pub async fn reap(&mut self) -> anyhow::Result<()> {
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
