//! Retries on AWS, in one place.
//!
//! - A whole call that fails for a reason that may clear (throttling, a
//!   5xx, a timeout, no answer) is retried by the SDK itself: standard
//!   mode, at most [`ATTEMPTS`] requests, waits from the one backoff policy
//!   ([`RETRY`]), and the SDK's retry quota, so a storm of failures stops
//!   retrying instead of piling on. [`sdk_retry_config`] sets it on every
//!   client; [`RetryableStatus`] adds what the SDK does not retry by itself
//!   but pipehost's state writes need (S3's 409 for racing conditional
//!   writes, 408, 429).
//! - pipehost's own loops retry only the entries of a batch call that the
//!   service refused while the call succeeded (PutRecords,
//!   SendMessageBatch, DeleteMessageBatch). Such a loop runs on one
//!   [`Budget`] of requests: every round — the SDK's retries of it included
//!   — draws from it, so retries never multiply; a batch call makes at most
//!   [`BATCH_ATTEMPTS`] requests in all.
//! - [`class_of`] classes an SDK error for the callers above the backend
//!   (retryable or permanent), from its kind, HTTP status and error code.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::interceptors::{BeforeTransmitInterceptorContextRef, InterceptorContext};
use aws_sdk_s3::config::retry::{ClassifyRetry, RetryAction, RetryConfig};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, ProvideErrorMetadata, SdkError};

use crate::backend::Class;
use crate::util::backoff::RETRY;

/// Requests one call may make (the first and the SDK's retries).
pub const ATTEMPTS: u32 = 5;
/// Requests one batch call may make in all: its rounds of failed entries
/// and the SDK's retries of each.
pub const BATCH_ATTEMPTS: u32 = 10;

/// The SDK's retry settings for every client.
pub fn sdk_retry_config() -> RetryConfig {
    sdk_retry_config_with(ATTEMPTS)
}

fn sdk_retry_config_with(attempts: u32) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(attempts.max(1))
        .with_initial_backoff(RETRY.first)
        .with_max_backoff(RETRY.cap)
}

/// Error codes of throttling and of failures on the service's side that
/// may clear (the SDK's lists, plus a resource being updated and expired
/// credentials, which the credentials chain renews).
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "RequestTimeout",
    "RequestTimeoutException",
    "InternalError",
    "InternalFailure",
    "ServiceUnavailable",
    "KMSThrottlingException",
    // A stream being updated (resharding) answers calls on it for a while.
    "ResourceInUseException",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
];

/// HTTP statuses that may clear: a server error, a request timeout, a
/// conflict of two racing writes, too many requests.
fn retryable_status(status: u16) -> bool {
    status >= 500 || matches!(status, 408 | 409 | 429)
}

/// Whether a failed SDK call may succeed if tried again.
pub fn class_of<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Class {
    match e {
        SdkError::ConstructionFailure(_) => Class::Permanent,
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("");
            if RETRYABLE_CODES.contains(&code) || retryable_status(s.raw().status().as_u16()) {
                Class::Retryable
            } else {
                // A validation, permission or not-found answer.
                Class::Permanent
            }
        }
        // A timeout, no connection, a dropped or garbled answer.
        _ => Class::Retryable,
    }
}

/// Makes the SDK retry the statuses [`class_of`] calls retryable that its
/// own classifiers leave alone (it retries 500, 502, 503, 504 and the
/// throttling codes by itself).
#[derive(Debug, Clone, Copy)]
pub struct RetryableStatus;

impl ClassifyRetry for RetryableStatus {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match ctx.response().map(|r| r.status().as_u16()) {
            Some(status) if retryable_status(status) && status < 500 => {
                RetryAction::transient_error()
            }
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "pipehost: 408, 409 and 429 are transient"
    }
}

/// The requests one batch call may still make; counts every request the
/// SDK sends for it.
#[derive(Debug, Clone, Default)]
pub struct Budget {
    used: Arc<AtomicU32>,
}

impl Budget {
    /// Requests left of [`BATCH_ATTEMPTS`].
    pub fn remaining(&self) -> u32 {
        BATCH_ATTEMPTS.saturating_sub(self.used.load(Ordering::Acquire))
    }

    /// Requests made so far.
    pub fn used(&self) -> u32 {
        self.used.load(Ordering::Acquire)
    }

    /// The retry settings of the next round: what is left, at least one.
    pub fn round_config(&self) -> RetryConfig {
        sdk_retry_config_with(self.remaining().clamp(1, ATTEMPTS))
    }
}

impl Intercept for Budget {
    fn name(&self) -> &'static str {
        "pipehost: batch call request budget"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.used.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::error::ErrorMetadata;
    use aws_sdk_s3::operation::put_object::PutObjectError;
    use aws_sdk_s3::primitives::SdkBody;

    #[test]
    fn a_round_never_asks_for_more_than_the_budget_left() {
        let b = Budget::default();
        assert_eq!(b.round_config().max_attempts(), ATTEMPTS);
        b.used.store(BATCH_ATTEMPTS - 2, Ordering::Release);
        assert_eq!(b.round_config().max_attempts(), 2);
        b.used.store(BATCH_ATTEMPTS, Ordering::Release);
        assert_eq!(b.remaining(), 0);
        assert_eq!(b.round_config().max_attempts(), 1, "the SDK needs one");
        let c = sdk_retry_config();
        assert_eq!(
            (c.max_attempts(), c.initial_backoff(), c.max_backoff()),
            (ATTEMPTS, RETRY.first, RETRY.cap)
        );
    }

    fn answer(status: u16, code: &str) -> SdkError<PutObjectError, HttpResponse> {
        let meta = ErrorMetadata::builder().code(code).build();
        let raw = HttpResponse::new(status.try_into().unwrap(), SdkBody::empty());
        SdkError::service_error(PutObjectError::generic(meta), raw)
    }

    #[test]
    fn sdk_errors_are_classed_by_kind_status_and_code() {
        let retryable = [
            answer(503, "SlowDown"),
            answer(500, "InternalError"),
            answer(400, "ProvisionedThroughputExceededException"),
            answer(400, "RequestThrottled"),
            answer(409, "ConditionalRequestConflict"),
            answer(429, "TooManyRequests"),
            SdkError::timeout_error("no answer in time"),
        ];
        for e in &retryable {
            assert_eq!(class_of(e), Class::Retryable, "{e:?}");
        }
        let permanent = [
            answer(400, "ValidationException"),
            answer(403, "AccessDenied"),
            answer(400, "InvalidParameterValue"),
            SdkError::construction_failure("a request that cannot be built"),
        ];
        for e in &permanent {
            assert_eq!(class_of(e), Class::Permanent, "{e:?}");
        }
    }

    #[test]
    fn statuses_that_may_clear() {
        for s in [500, 503, 408, 409, 429] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [400, 403, 404, 412] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
