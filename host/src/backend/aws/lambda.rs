//! The AWS Lambda runtime adapter: the Runtime API client (`lambda_runtime`)
//! and the SQS event types (`aws_lambda_events`) stay here. An SQS event
//! becomes an [`Invocation`] of plain [`QueueMessage`]s; the ids the handler
//! returns become the `batchItemFailures` answer, so the event source
//! mapping (with `ReportBatchItemFailures`) deletes every other message.
//! What is done with the messages is `runtime::lambda`'s business.

use std::future::Future;
use std::time::SystemTime;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{LambdaEvent, service_fn};

/// The variables the Lambda runtime sets; without them this is not running
/// under Lambda (or an emulator of its Runtime API).
pub const RUNTIME_VARIABLES: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

/// One SQS record of an invocation.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    /// The SQS message id; empty when the event has none.
    pub id: String,
    /// The message body as SQS delivered it (a payload reference when the
    /// batch was too big for one message).
    pub body: Option<String>,
    /// `ApproximateReceiveCount`, for log lines.
    pub receive_count: Option<String>,
}

/// One invocation: the messages, in order, and when the function must answer.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub request_id: String,
    pub deadline: SystemTime,
    pub messages: Vec<QueueMessage>,
}

impl QueueMessage {
    fn of(m: SqsMessage) -> Self {
        Self {
            id: m.message_id.unwrap_or_default(),
            receive_count: m.attributes.get("ApproximateReceiveCount").cloned(),
            body: m.body,
        }
    }
}

impl Invocation {
    fn of(event: LambdaEvent<SqsEvent>) -> Self {
        Self {
            request_id: event.context.request_id.clone(),
            deadline: event.context.deadline(),
            messages: event
                .payload
                .records
                .into_iter()
                .map(QueueMessage::of)
                .collect(),
        }
    }
}

/// The answer listing the messages that failed (SQS redelivers those).
fn batch_item_failures(failed: Vec<String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for id in failed {
        response.add_failure(id);
    }
    response
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

/// Serves invocations until the runtime stops the process: each SQS event
/// is handed to `handle` as an [`Invocation`], and the ids it returns are
/// answered as `batchItemFailures`. The caller has checked the environment
/// ([`check_environment`]).
pub async fn serve<F, Fut>(handle: F) -> anyhow::Result<()>
where
    F: Fn(Invocation) -> Fut,
    Fut: Future<Output = Vec<String>>,
{
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let failed = handle(Invocation::of(event));
        async move { Ok::<_, lambda_runtime::Error>(batch_item_failures(failed.await)) }
    }))
    .await
    .map_err(|e| anyhow::anyhow!("the Lambda runtime stopped: {e}"))
}
