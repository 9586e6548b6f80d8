//! pipehost's own small state on S3: objects under `aws.state_prefix` in
//! the pipeline's bucket (checkpoints, producer positions, large-message
//! payloads, notification markers; see the module docs of `aws`).
//!
//! Besides plain get/put, conditional writes — `If-None-Match: *` to create
//! an object only if it is absent, `If-Match: <etag>` to replace only the
//! version read — make a marker a lock that two workers cannot both take
//! (S3 has honoured both since 2024; moto 5.2 too).

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;

use super::{code_of, sdk_err};
use crate::backend::{BackendError, Class, Result};

/// pipehost's own small state, as objects under a prefix of the bucket.
pub struct StateStore {
    pub(super) s3: aws_sdk_s3::Client,
    pub(super) bucket: String,
    pub(super) prefix: String,
}

/// A state object with the version (ETag) it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tagged {
    pub body: String,
    pub etag: String,
}

/// True for S3's answer to a condition that does not hold (412).
fn precondition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    code_of(e) == Some("PreconditionFailed")
}

impl StateStore {
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// The object's body, or `None` when there is none.
    pub async fn get(&self, name: &str) -> Result<Option<String>> {
        Ok(self.get_tagged(name).await?.map(|t| t.body))
    }

    /// The object's body and ETag, or `None` when there is none.
    pub async fn get_tagged(&self, name: &str) -> Result<Option<Tagged>> {
        let key = self.key(name);
        match self
            .s3
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or("").to_string();
                let body = out.body.collect().await.map_err(|e| {
                    let message = format!("reading s3://{}/{key}: {e}", self.bucket);
                    BackendError::new("s3", message, Class::Retryable, Some(Box::new(e)))
                })?;
                Ok(Some(Tagged {
                    body: String::from_utf8_lossy(&body.into_bytes()).into_owned(),
                    etag,
                }))
            }
            Err(e) if code_of(&e) == Some("NoSuchKey") => Ok(None),
            Err(e) => Err(sdk_err(
                "s3",
                &format!("GetObject s3://{}/{key}", self.bucket),
                e,
            )),
        }
    }

    /// Writes `body`.
    pub async fn put(&self, name: &str, body: Vec<u8>, content_type: &str) -> Result<()> {
        self.write(name, body, content_type, Condition::None)
            .await
            .map(|_| ())
    }

    /// Creates the object only if there is none (`If-None-Match: *`):
    /// its ETag, or `None` when one exists already.
    pub async fn create(&self, name: &str, body: Vec<u8>) -> Result<Option<String>> {
        self.write(name, body, "application/json", Condition::Absent)
            .await
    }

    /// Replaces the object only if it is still at `etag` (`If-Match`): its
    /// new ETag, or `None` when it changed (or went) meanwhile.
    pub async fn replace(&self, name: &str, body: Vec<u8>, etag: &str) -> Result<Option<String>> {
        self.write(name, body, "application/json", Condition::At(etag))
            .await
    }

    async fn write(
        &self,
        name: &str,
        body: Vec<u8>,
        content_type: &str,
        condition: Condition<'_>,
    ) -> Result<Option<String>> {
        let key = self.key(name);
        let mut req = self
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type(content_type)
            .body(ByteStream::from(body));
        req = match condition {
            Condition::None => req,
            Condition::Absent => req.if_none_match("*"),
            Condition::At(etag) => req.if_match(etag),
        };
        // A transient failure (5xx, throttling, no answer, the 409 of two
        // conditional writes racing) is retried by the SDK (see `retry`).
        match req.send().await {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or("").to_string())),
            // moto answers a failed If-Match on a missing key with
            // NoSuchKey, S3 with 412: either way, not ours to write.
            Err(e)
                if !matches!(condition, Condition::None)
                    && (precondition_failed(&e) || code_of(&e) == Some("NoSuchKey")) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_err(
                "s3",
                &format!("PutObject s3://{}/{key}", self.bucket),
                e,
            )),
        }
    }
}

/// What a state write requires of the object already there.
#[derive(Clone, Copy)]
enum Condition<'a> {
    None,
    Absent,
    At(&'a str),
}
