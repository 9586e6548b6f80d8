//! `pipehost lambda`: the processing stage as an AWS Lambda function (custom
//! runtime `provided.al2023`), triggered by an SQS event source mapping.
//!
//! The function does per invocation what a processor worker does per
//! message: decode the bridge's batch message, parse and transform it with
//! the same plugins, store the objects and publish one notification each.
//! It does not delete messages: with `ReportBatchItemFailures` the event
//! source mapping deletes every message the response does not list, so the
//! response lists exactly the messages that failed (undecodable, a plugin
//! trap or deadline, a storage or publish error), and SQS redelivers those
//! and, past `maxReceiveCount`, moves them to the dead-letter queue.
//!
//! The plugins are compiled and instantiated once per execution environment
//! (the cold start) and reused by every invocation it serves. The Lambda
//! Runtime API and the SQS event types are `backend::aws::lambda`'s; this
//! module sees an invocation as plain messages and answers the failed ids.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::sync::Mutex;

use super::chains::Chains;
use super::process::{FeedPlugins, Layout, process};
use super::processor::{BatchError, GaveUp, StepError};
use super::{blocking, processor, reload};
use crate::backend::aws::lambda::{Invocation, QueueMessage};
use crate::backend::{self, Backend};
use crate::plan::Plan;
use crate::telemetry::stats::Stats;
use crate::wire::message::BatchMessage;

/// Messages are not started with less than this left before the
/// invocation's deadline: they are reported as failed and come back.
const DEADLINE_MARGIN: Duration = Duration::from_secs(2);

/// What one execution environment keeps between invocations.
struct Function {
    backend: Backend,
    layout: Layout,
    /// One set of plugin instances: Lambda sends one event at a time to
    /// an execution environment. `None` after a panic took them; the next
    /// message instantiates fresh ones from `chains`.
    feeds: Mutex<Option<HashMap<String, FeedPlugins>>>,
    chains: Chains,
    stats: Stats,
}

impl Function {
    /// The ids of the messages that failed (SQS redelivers those).
    async fn handle(&self, invocation: Invocation) -> Vec<String> {
        let deadline = invocation.deadline;
        let mut failed = Vec::new();
        let total = invocation.messages.len();
        for (i, m) in invocation.messages.iter().enumerate() {
            let id = m.id.clone();
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            if left < DEADLINE_MARGIN {
                tracing::warn!(
                    message_id = %id,
                    "{} of {total} messages not started: {left:?} left before the function's deadline; they will be redelivered",
                    total - i
                );
                for rest in &invocation.messages[i..] {
                    failed.push(rest.id.clone());
                }
                break;
            }
            if let Err(e) = self.handle_message(m).await {
                Stats::add(&self.stats.failed_batches, 1);
                Stats::add(&self.stats.plugin_failures, e.plugin_failures());
                tracing::warn!(
                    message_id = %id,
                    kind = e.kind(),
                    receives = m.receive_count.as_deref().unwrap_or("?"),
                    "batch failed; SQS redelivers it (dead-letter queue after maxReceiveCount): {e}"
                );
                failed.push(id);
            }
        }
        tracing::info!(
            messages = total,
            failed = failed.len(),
            request_id = %invocation.request_id,
            "invocation done"
        );
        failed
    }

    async fn handle_message(&self, m: &QueueMessage) -> Result<(), BatchError> {
        let body = m
            .body
            .clone()
            .ok_or_else(|| BatchError::Undecodable("the SQS record has no body".into()))?;
        let body = self
            .backend
            .queue
            .resolve_body(body)
            .await
            .map_err(|source| StepError {
                step: "fetching the message payload".into(),
                why: GaveUp::NotRetried,
                source,
            })?;
        let msg =
            BatchMessage::decode(&body).map_err(|e| BatchError::Undecodable(e.to_string()))?;
        let mut batch = {
            let mut guard = self.feeds.lock().await;
            let mut feeds = match guard.take() {
                Some(f) => f,
                None => blocking(|| processor::instantiate(&self.chains))
                    .map_err(BatchError::Instantiate)?,
            };
            let layout = self.layout.clone();
            let (feeds, result) = tokio::task::spawn_blocking(move || {
                processor::crash_point("process");
                let r = process(&msg, &mut feeds, &layout);
                (feeds, r)
            })
            .await
            .map_err(|e| BatchError::Panicked(e.to_string()))?;
            *guard = Some(feeds);
            result.map_err(|e| BatchError::Plugins(vec![e]))?
        };
        let retry = processor::Retry::Never;
        let failed = BatchError::Plugins(std::mem::take(&mut batch.failed));
        if let Err(e) =
            processor::store_and_notify(&self.backend, &batch, &self.stats, &retry).await
        {
            Stats::add(&self.stats.plugin_failures, failed.plugin_failures());
            return Err(e.into());
        }
        if failed.plugin_failures() > 0 {
            // The healthy feeds' objects are stored; the message comes back
            // for the failed feed's records.
            return Err(failed);
        }
        processor::count_processed(&batch, &self.stats);
        Ok(())
    }
}

/// Serves invocations until the runtime stops the process. The caller has
/// checked the environment (`backend::aws::lambda::check_environment`).
pub async fn run(plan: Arc<Plan>) -> anyhow::Result<()> {
    crate::telemetry::metrics::handle();
    let mut cache = super::engine::cache_for_lambda(&plan)?;
    let chains =
        blocking(|| reload::build_chains(&mut cache, &plan)).context("loading the plugins")?;
    let chains = Chains {
        generation: 0,
        feeds: chains,
    };
    let feeds =
        blocking(|| processor::instantiate(&chains)).context("instantiating the plugins")?;
    let backend = backend::open(&plan).await?;
    let function = Arc::new(Function {
        backend,
        layout: Layout::of(&plan.fixed.store),
        feeds: Mutex::new(Some(feeds)),
        chains,
        stats: Stats::default(),
    });
    tracing::info!(
        pipeline = %plan.fixed.name,
        feeds = plan.live.feeds.len(),
        bucket = %plan.fixed.store.bucket,
        topic = %plan.fixed.notifications.topic,
        "pipehost lambda ready"
    );
    crate::backend::aws::lambda::serve(move |invocation| {
        let f = function.clone();
        async move { f.handle(invocation).await }
    })
    .await
}
