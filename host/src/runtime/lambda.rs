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
//! (the cold start) and reused by every invocation it serves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{LambdaEvent, service_fn};
use tokio::sync::Mutex;

use super::message::BatchMessage;
use super::process::{FeedPlugins, Layout, process};
use super::processor::{BatchError, GaveUp, StepError};
use super::reload::{Chains, PluginCache};
use super::stats::Stats;
use super::{blocking, processor, reload};
use crate::backend::{self, Backend};
use crate::plan::Plan;
use crate::plugin::{EngineSettings, PluginEngine};

/// The variables the Lambda runtime sets; without them this is not running
/// under Lambda (or an emulator of its Runtime API).
pub const RUNTIME_VARIABLES: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

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
    async fn handle(&self, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
        let deadline = event.context.deadline();
        let mut response = SqsBatchResponse::default();
        let total = event.payload.records.len();
        for (i, m) in event.payload.records.iter().enumerate() {
            let id = m.message_id.clone().unwrap_or_default();
            let left = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            if left < DEADLINE_MARGIN {
                tracing::warn!(
                    message_id = %id,
                    "{} of {total} messages not started: {left:?} left before the function's deadline; they will be redelivered",
                    total - i
                );
                for rest in &event.payload.records[i..] {
                    response.add_failure(rest.message_id.clone().unwrap_or_default());
                }
                break;
            }
            if let Err(e) = self.handle_message(m).await {
                Stats::add(&self.stats.failed_batches, 1);
                Stats::add(&self.stats.plugin_failures, e.plugin_failures());
                tracing::warn!(
                    message_id = %id,
                    kind = e.kind(),
                    receives = m.attributes.get("ApproximateReceiveCount").map(String::as_str).unwrap_or("?"),
                    "batch failed; SQS redelivers it (dead-letter queue after maxReceiveCount): {e}"
                );
                response.add_failure(id);
            }
        }
        tracing::info!(
            messages = total,
            failed = response.batch_item_failures.len(),
            request_id = %event.context.request_id,
            "invocation done"
        );
        response
    }

    async fn handle_message(&self, m: &SqsMessage) -> Result<(), BatchError> {
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
        let msg = BatchMessage::decode(&body).map_err(BatchError::Undecodable)?;
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

/// Checks that the Lambda runtime's variables are there (the runtime
/// client panics on a missing one).
pub fn check_environment() -> anyhow::Result<()> {
    let missing: Vec<&str> = RUNTIME_VARIABLES
        .iter()
        .copied()
        .filter(|v| std::env::var_os(v).is_none_or(|s| s.is_empty()))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "`pipehost lambda` runs under the AWS Lambda runtime (or an emulator of its Runtime API), which sets {}; missing: {}",
            RUNTIME_VARIABLES.join(", "),
            missing.join(", ")
        )
    }
}

/// Serves invocations until the runtime stops the process. The caller has
/// checked the environment ([`check_environment`]).
pub async fn run(plan: Arc<Plan>) -> anyhow::Result<()> {
    super::metrics::handle();
    let plugin_count = plan.plugins().count() as u32;
    let engine = PluginEngine::new(EngineSettings {
        max_instances: plugin_count * 2 + 8,
        ..EngineSettings::default()
    })?;
    let mut cache = PluginCache::new(engine);
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
        layout: Layout::of(&plan),
        feeds: Mutex::new(Some(feeds)),
        chains,
        stats: Stats::default(),
    });
    tracing::info!(
        pipeline = %plan.name,
        feeds = plan.feeds.len(),
        bucket = %plan.bucket,
        topic = %plan.topic,
        "pipehost lambda ready"
    );
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let f = function.clone();
        async move { Ok::<_, lambda_runtime::Error>(f.handle(event).await) }
    }))
    .await
    .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"))
}
