//! The aws backend: Kinesis, SQS, S3 and SNS through aws-sdk-rust — the only
//! module that imports `aws_*`.
//!
//! Credentials and region come from the standard chain (environment,
//! shared config and credentials files, SSO, container and instance
//! roles), endpoints from `[aws]` in pipeline.toml or the standard
//! `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` variables.
//!
//! Where state lives. Kinesis and SQS cannot commit a send and a
//! checkpoint together, so pipehost keeps its own small state as objects
//! in the pipeline's bucket, under `aws.state_prefix` (default `_pipehost/`):
//!
//! ```text
//! _pipehost/checkpoints/<consumer>/<shard>   the bridge's last forwarded sequence
//! _pipehost/sending/<consumer>/<shard>       where the batch being sent ends
//! _pipehost/producers/<producer>             a feed's next tick and record count
//! _pipehost/payloads/<queue>/<sha256>        batches too big for one SQS message
//! _pipehost/notified/<sha256>                notifications already published
//! ```
//!
//! The bridge records where a batch ends, sends, then checkpoints. A crash
//! before the checkpoint re-sends the same batch on restart — cut again up
//! to the recorded end: same id, same records, so the same objects,
//! overwritten with the same bytes — and the notifier publishes a
//! notification only under a marker it created (see `notifier`). One bridge process per stream is assumed: two would both
//! forward every shard (leasing shards across processes is later work).

mod notifier;
mod queue;
pub mod retry;
mod setup;
mod state;
mod store;
mod stream;

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{RequestChecksumCalculation, ResponseChecksumValidation};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

pub use notifier::AwsNotifier;
pub use queue::AwsQueue;
use retry::RetryableStatus;
pub use setup::setup;
pub use state::{StateStore, Tagged};
pub use store::AwsObjectStore;
pub use stream::AwsStream;

use super::{Backend, BackendError, Queue};
use crate::plan::{AwsPlan, Plan};

/// The four clients and the names of one pipeline.
pub struct Clients {
    pub kinesis: aws_sdk_kinesis::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub sns: aws_sdk_sns::Client,
    pub region: String,
    pub bucket: String,
    pub state: StateStore,
    pub max_message_bytes: usize,
}

/// Builds the clients for a plan's `[aws]` section.
pub async fn clients(plan: &Plan, aws: &AwsPlan) -> anyhow::Result<Arc<Clients>> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                // Above SQS's 20 s long poll.
                .operation_attempt_timeout(Duration::from_secs(40))
                .build(),
        )
        // Whole-call retries: the SDK's, set here only (see `retry`).
        .retry_config(retry::sdk_retry_config());
    if let Some(region) = &aws.region {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    if let Some(profile) = &aws.profile {
        loader = loader.profile_name(profile);
    }
    let sdk = loader.load().await;
    let Some(region) = sdk.region().map(|r| r.to_string()) else {
        anyhow::bail!(
            "{}: no AWS region: set `aws.region` or AWS_REGION (or a region in the AWS profile)",
            plan.file.display()
        );
    };
    let e = &aws.endpoints;
    let kinesis = {
        let mut b = aws_sdk_kinesis::config::Builder::from(&sdk).retry_classifier(RetryableStatus);
        if let Some(url) = &e.kinesis {
            b = b.endpoint_url(url);
        }
        aws_sdk_kinesis::Client::from_conf(b.build())
    };
    let sqs = {
        let mut b = aws_sdk_sqs::config::Builder::from(&sdk).retry_classifier(RetryableStatus);
        if let Some(url) = &e.sqs {
            b = b.endpoint_url(url);
        }
        aws_sdk_sqs::Client::from_conf(b.build())
    };
    let s3 = {
        let mut b = aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(aws.s3_force_path_style)
            .retry_classifier(RetryableStatus);
        if aws.s3_checksums_when_required {
            b = b
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
                .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        }
        if let Some(url) = &e.s3 {
            b = b.endpoint_url(url);
        }
        aws_sdk_s3::Client::from_conf(b.build())
    };
    let sns = {
        let mut b = aws_sdk_sns::config::Builder::from(&sdk).retry_classifier(RetryableStatus);
        if let Some(url) = &e.sns {
            b = b.endpoint_url(url);
        }
        aws_sdk_sns::Client::from_conf(b.build())
    };
    Ok(Arc::new(Clients {
        state: StateStore {
            s3: s3.clone(),
            bucket: plan.bucket.clone(),
            prefix: aws.state_prefix.clone(),
        },
        kinesis,
        sqs,
        s3,
        sns,
        region,
        bucket: plan.bucket.clone(),
        max_message_bytes: aws.max_message_bytes,
    }))
}

/// Opens the pipeline's services. Nothing is created here (`pipehost
/// setup` does that); a missing resource fails on first use, naming it.
pub async fn open(plan: &Plan, aws: &AwsPlan) -> anyhow::Result<Backend> {
    let clients = clients(plan, aws).await?;
    let stream = AwsStream::new(
        clients.clone(),
        &plan.stream_name,
        aws.start,
        aws.producer_mark_interval,
        &plan.error_prefix,
    );
    let queue = AwsQueue::new(clients.clone(), &plan.queue_name);
    let dead_letter = AwsQueue::new(clients.clone(), &plan.dead_letter_queue);
    let store = AwsObjectStore::new(clients.clone());
    let notifier = AwsNotifier::new(clients.clone(), &plan.topic, aws.topic_arn.as_deref());
    let opener_clients = clients.clone();
    Ok(Backend {
        stream: Arc::new(stream),
        queue: Arc::new(queue),
        dead_letter: Arc::new(dead_letter),
        store: Arc::new(store),
        notifier: Arc::new(notifier),
        opener: Arc::new(move |name: &str| {
            Arc::new(AwsQueue::new(opener_clients.clone(), name)) as Arc<dyn Queue>
        }),
    })
}

/// A failed SDK call, with the service's error code and message, classed
/// by [`retry::class_of`], the SDK error kept as its source.
pub(crate) fn sdk_err<E>(
    service: &'static str,
    op: &str,
    e: SdkError<E, HttpResponse>,
) -> BackendError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
{
    let code = e.code().unwrap_or("").to_string();
    let not_found = matches!(
        code.as_str(),
        "ResourceNotFoundException"
            | "AWS.SimpleQueueService.NonExistentQueue"
            | "QueueDoesNotExist"
            | "NoSuchBucket"
            | "NotFound"
    );
    if not_found {
        return BackendError::NotFound {
            service,
            what: format!("{op}: {} (run `pipehost setup`?)", DisplayErrorContext(&e)),
        };
    }
    let message = format!("{op}: {}", DisplayErrorContext(&e));
    BackendError::new(service, message, retry::class_of(&e), Some(Box::new(e)))
}

/// A request pipehost could not even build (a value the SDK refuses).
pub(crate) fn build_err(service: &'static str, e: impl std::fmt::Display) -> BackendError {
    BackendError::permanent(service, format_args!("building the request: {e}"))
}

/// The error code of an SDK error, if the service sent one.
pub(crate) fn code_of<E: ProvideErrorMetadata>(e: &E) -> Option<&str> {
    e.code()
}

/// Hex SHA-256, for fixed-length, key-safe names.
pub(crate) fn sha256_hex(s: &str) -> String {
    crate::util::hex::sha256(s.as_bytes())
}
