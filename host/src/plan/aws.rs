//! The `[aws]` section, validated into an [`AwsPlan`].

use std::time::Duration;

use toml::Spanned;

use super::Checker;
use crate::config::AwsConfig;

/// Where the bridge starts a shard it has no checkpoint for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartPosition {
    TrimHorizon,
    Latest,
    /// ms since the epoch.
    AtTimestamp(i64),
}

/// Per-service endpoints; `None` leaves the SDK's own resolution
/// (`AWS_ENDPOINT_URL_<SERVICE>`, `AWS_ENDPOINT_URL`, then the region's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsEndpoints {
    pub kinesis: Option<String>,
    pub sqs: Option<String>,
    pub s3: Option<String>,
    pub sns: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsPlan {
    pub region: Option<String>,
    pub profile: Option<String>,
    pub endpoints: AwsEndpoints,
    pub s3_force_path_style: bool,
    /// Send S3 checksums only where the operation requires them.
    pub s3_checksums_when_required: bool,
    pub start: StartPosition,
    /// Ends with '/'.
    pub state_prefix: String,
    pub max_message_bytes: usize,
    pub receive_wait: Duration,
    pub producer_mark_interval: Duration,
    /// The topic's ARN when given (`aws.topic_arn`, `PIPEHOST_TOPIC_ARN`).
    pub topic_arn: Option<String>,
}

/// SQS's own ceiling on a message (and on a whole SendMessageBatch).
pub const SQS_MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// What every SQS-compatible server accepts (the limit before August 2025).
pub const SQS_CLASSIC_MESSAGE_BYTES: usize = 256 * 1024;

fn endpoint(c: &mut Checker, v: &Option<Spanned<String>>, key: &str) -> Option<String> {
    let v = v.as_ref()?;
    let url = v.get_ref().trim_end_matches('/');
    let ok = (url.starts_with("http://") || url.starts_with("https://"))
        && url.split("://").nth(1).is_some_and(|h| !h.is_empty());
    if !ok {
        let line = c.line(v);
        c.err(
            line,
            key,
            format!("{url:?} is not an endpoint URL: expected http://host[:port] or https://…"),
        );
    }
    Some(url.to_string())
}

fn start_position(c: &mut Checker, v: &Option<Spanned<String>>) -> StartPosition {
    match v.as_ref() {
        None => StartPosition::TrimHorizon,
        Some(v) => match v.get_ref().as_str() {
            "trim_horizon" => StartPosition::TrimHorizon,
            "latest" => StartPosition::Latest,
            other => match chrono::DateTime::parse_from_rfc3339(other) {
                Ok(t) => StartPosition::AtTimestamp(t.timestamp_millis()),
                Err(_) => {
                    let line = c.line(v);
                    c.err(
                        line,
                        "aws.start_position",
                        format!(
                            "{other:?}: expected \"trim_horizon\", \"latest\" or an RFC 3339 time like \"2026-11-23T09:00:00Z\""
                        ),
                    );
                    StartPosition::TrimHorizon
                }
            },
        },
    }
}

pub(super) fn plan(c: &mut Checker, aws: &AwsConfig) -> AwsPlan {
    let common = endpoint(c, &aws.endpoint, "aws.endpoint");
    let e = &aws.endpoints;
    let endpoints = AwsEndpoints {
        kinesis: endpoint(c, &e.kinesis, "aws.endpoints.kinesis").or(common.clone()),
        sqs: endpoint(c, &e.sqs, "aws.endpoints.sqs").or(common.clone()),
        s3: endpoint(c, &e.s3, "aws.endpoints.s3").or(common.clone()),
        sns: endpoint(c, &e.sns, "aws.endpoints.sns").or(common),
    };
    let s3_checksums_when_required = match aws.s3_checksums.as_ref() {
        None => false,
        Some(v) => match v.get_ref().as_str() {
            "when_supported" => false,
            "when_required" => true,
            other => {
                let line = c.line(v);
                c.err(
                    line,
                    "aws.s3_checksums",
                    format!("{other:?}: expected \"when_supported\" or \"when_required\""),
                );
                false
            }
        },
    };
    let start = start_position(c, &aws.start_position);
    let state_prefix = c.prefix(&aws.state_prefix, "aws.state_prefix", "_pipehost/");
    let max_message_bytes = c.size(
        &aws.max_message_bytes,
        "aws.max_message_bytes",
        SQS_CLASSIC_MESSAGE_BYTES,
    );
    if aws.max_message_bytes.is_some()
        && !(1024..=SQS_MAX_MESSAGE_BYTES).contains(&max_message_bytes)
    {
        c.err_at(
            aws.max_message_bytes.as_ref(),
            "aws.max_message_bytes",
            format!("{max_message_bytes} bytes: SQS takes 1KiB to 1MiB"),
        );
    }
    let receive_wait = c.duration(
        &aws.receive_wait,
        "aws.receive_wait",
        Duration::from_secs(20),
        Duration::from_secs(1),
    );
    if receive_wait > Duration::from_secs(20) || receive_wait.subsec_nanos() != 0 {
        c.err_at(
            aws.receive_wait.as_ref(),
            "aws.receive_wait",
            format!("{receive_wait:?}: SQS long polling takes whole seconds, 1s to 20s"),
        );
    }
    let producer_mark_interval = c.duration(
        &aws.producer_mark_interval,
        "aws.producer_mark_interval",
        Duration::from_secs(1),
        Duration::ZERO,
    );
    let topic_arn = aws.topic_arn.as_ref().map(|a| {
        let arn = a.get_ref().trim().to_string();
        if !(arn.starts_with("arn:") && arn.split(':').count() == 6) {
            c.err_at(
                Some(a),
                "aws.topic_arn",
                format!("{arn:?} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)"),
            );
        }
        arn
    });
    AwsPlan {
        region: aws.region.clone(),
        profile: aws.profile.clone(),
        endpoints,
        s3_force_path_style: aws.s3_force_path_style.unwrap_or(false),
        s3_checksums_when_required,
        start,
        state_prefix,
        max_message_bytes: max_message_bytes.min(SQS_MAX_MESSAGE_BYTES),
        receive_wait: receive_wait.min(Duration::from_secs(20)),
        producer_mark_interval,
        topic_arn,
    }
}

/// SQS takes whole seconds for the visibility timeout, up to 12 hours.
pub(super) fn check_visibility(c: &mut Checker, v: &Option<Spanned<String>>, d: Duration) {
    if d.subsec_nanos() != 0 || d < Duration::from_secs(1) || d > Duration::from_secs(12 * 3600) {
        c.err_at(
            v.as_ref(),
            "queue.visibility_timeout",
            format!("{d:?}: SQS takes whole seconds, 1s to 12h"),
        );
    }
}
