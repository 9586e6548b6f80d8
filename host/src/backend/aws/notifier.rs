//! The notifier on SNS: Publish with the S3-event-shaped body and message
//! attributes (`record_count` as a Number), so subscription filter
//! policies work.
//!
//! SNS standard topics do not deduplicate, and SQS may hand one batch to
//! two workers at once (a visibility timeout that ran out under load), so
//! pipehost keeps a marker object per notification (`_pipehost/notified/`)
//! and makes it a lock: a worker publishes only after it *created* the
//! marker (`If-None-Match: *`, which exactly one writer wins), and marks it
//! published after. A second worker finds the marker and skips (published)
//! or waits for the holder (publishing). A holder that failed releases the
//! marker; one that died is taken over once it has held the marker for
//! [`LEASE`] unchanged — the one case that can still send a notification
//! twice (a crash between Publish and the published mark): at least once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use tokio::sync::OnceCell;

use super::{Clients, build_err, sdk_err, sha256_hex};
use crate::backend::{BackendError, Notification, Notifier, Result};

pub struct AwsNotifier {
    clients: Arc<Clients>,
    topic: String,
    arn: OnceCell<String>,
}

/// Attributes that are numbers, for numeric filter policies.
const NUMBER_ATTRIBUTES: &[&str] = &["record_count"];

/// How long a marker may stay "publishing" unchanged before another worker
/// takes it over (its holder died): far above one Publish call.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often a worker waiting for another's publish looks again.
const WAIT_STEP: Duration = Duration::from_millis(100);

/// A notification marker's state, as its body says.
#[derive(Debug, PartialEq, Eq)]
enum Marker {
    /// Published (also every marker of earlier versions: the dedup id).
    Published,
    /// Being published by `owner`.
    Publishing { owner: String },
    /// Given up by a holder whose publish failed: free to take.
    Released,
}

impl Marker {
    fn body(state: &str, owner: &str, dedup_id: &str) -> Vec<u8> {
        serde_json::json!({ "state": state, "owner": owner, "dedup_id": dedup_id })
            .to_string()
            .into_bytes()
    }

    fn parse(body: &str) -> Self {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        match (v["state"].as_str(), v["owner"].as_str()) {
            (Some("publishing"), Some(owner)) => Self::Publishing {
                owner: owner.to_string(),
            },
            (Some("released"), _) => Self::Released,
            _ => Self::Published,
        }
    }
}

/// What a worker does next about a marker.
enum Step {
    /// Create it (there is none).
    Create,
    /// Replace the version read (released, or held too long).
    TakeOver(String),
    /// Look again after a pause (someone else is publishing).
    Wait,
}

impl AwsNotifier {
    /// `arn`, when known, is used as is; otherwise the topic is looked up
    /// by name on first use.
    pub fn new(clients: Arc<Clients>, topic: &str, arn: Option<&str>) -> Self {
        Self {
            clients,
            topic: topic.to_string(),
            arn: arn
                .map(|a| OnceCell::from(a.to_string()))
                .unwrap_or_default(),
        }
    }

    /// The topic's ARN, given or found by name (ListTopics needs no create
    /// rights).
    pub async fn arn(&self) -> Result<&str> {
        self.arn
            .get_or_try_init(|| async {
                let suffix = format!(":{}", self.topic);
                let mut token: Option<String> = None;
                loop {
                    let out = self
                        .clients
                        .sns
                        .list_topics()
                        .set_next_token(token.take())
                        .send()
                        .await
                        .map_err(|e| sdk_err("sns", "ListTopics", e))?;
                    if let Some(arn) = out
                        .topics()
                        .iter()
                        .filter_map(|t| t.topic_arn())
                        .find(|a| a.ends_with(&suffix))
                    {
                        return Ok(arn.to_string());
                    }
                    match out.next_token() {
                        Some(t) => token = Some(t.to_string()),
                        None => {
                            return Err(BackendError::NotFound {
                                service: "sns",
                                what: format!("topic {:?} (run `pipehost setup`?)", self.topic),
                            });
                        }
                    }
                }
            })
            .await
            .map(String::as_str)
    }
}

#[async_trait]
impl Notifier for AwsNotifier {
    fn topic(&self) -> &str {
        &self.topic
    }

    async fn publish(&self, notification: Notification) -> Result<bool> {
        let marker = format!("notified/{}", sha256_hex(&notification.dedup_id));
        let owner = format!("{}-{:016x}", std::process::id(), fastrand::u64(..));
        let claim = Marker::body("publishing", &owner, &notification.dedup_id);
        let state = &self.clients.state;
        // The version of someone else's "publishing" marker, and since when
        // this worker has seen it unchanged.
        let mut held: Option<(String, Instant)> = None;
        let mut step = Step::Create;
        loop {
            let taken = match &step {
                Step::Create => state.create(&marker, claim.clone()).await?,
                Step::TakeOver(etag) => state.replace(&marker, claim.clone(), etag).await?,
                Step::Wait => {
                    tokio::time::sleep(WAIT_STEP).await;
                    None
                }
            };
            if let Some(etag) = taken {
                return self
                    .publish_held(&marker, &etag, &owner, notification)
                    .await;
            }
            let Some(found) = state.get_tagged(&marker).await? else {
                step = Step::Create;
                continue;
            };
            step = match Marker::parse(&found.body) {
                Marker::Published => return Ok(false),
                // Our own claim, whose answer was lost and retried.
                Marker::Publishing { owner: o } if o == owner => {
                    return self
                        .publish_held(&marker, &found.etag, &owner, notification)
                        .await;
                }
                Marker::Released => Step::TakeOver(found.etag),
                Marker::Publishing { .. } => match &held {
                    Some((etag, since)) if *etag == found.etag && since.elapsed() >= LEASE => {
                        tracing::warn!(
                            dedup_id = %notification.dedup_id,
                            "a notification marker was held for {LEASE:?} without a publish: taking it over"
                        );
                        Step::TakeOver(found.etag)
                    }
                    Some((etag, _)) if *etag == found.etag => Step::Wait,
                    _ => {
                        held = Some((found.etag, Instant::now()));
                        Step::Wait
                    }
                },
            };
        }
    }
}

impl AwsNotifier {
    /// Publishes under a marker this worker holds (at `etag`), then marks
    /// it published; on a failed publish releases it for the next try.
    async fn publish_held(
        &self,
        marker: &str,
        etag: &str,
        owner: &str,
        notification: Notification,
    ) -> Result<bool> {
        let state = &self.clients.state;
        if let Err(e) = self.send(&notification).await {
            let released = Marker::body("released", owner, &notification.dedup_id);
            if let Err(r) = state.replace(marker, released, etag).await {
                tracing::warn!("releasing notification marker {marker} failed: {r}");
            }
            return Err(e);
        }
        let published = Marker::body("published", owner, &notification.dedup_id);
        state.put(marker, published, "application/json").await?;
        Ok(true)
    }

    /// One SNS Publish of `notification`.
    async fn send(&self, notification: &Notification) -> Result<()> {
        let arn = self.arn().await?.to_string();
        let mut req = self
            .clients
            .sns
            .publish()
            .topic_arn(&arn)
            .message(&notification.body);
        // SNS refuses empty attribute values (e.g. the dataset of an error
        // record from an unknown feed): leave those out.
        for (k, v) in notification
            .attributes
            .iter()
            .filter(|(_, v)| !v.is_empty())
        {
            let kind = if NUMBER_ATTRIBUTES.contains(&k.as_str()) {
                "Number"
            } else {
                "String"
            };
            req = req.message_attributes(
                k,
                MessageAttributeValue::builder()
                    .data_type(kind)
                    .string_value(v)
                    .build()
                    .map_err(|e| build_err("sns", e))?,
            );
        }
        req.send()
            .await
            .map_err(|e| sdk_err("sns", &format!("Publish to {}", self.topic), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_of_every_version_parse() {
        let publishing = Marker::body("publishing", "7-ab", "k#e");
        assert_eq!(
            Marker::parse(std::str::from_utf8(&publishing).unwrap()),
            Marker::Publishing {
                owner: "7-ab".into()
            }
        );
        let released = Marker::body("released", "7-ab", "k#e");
        assert_eq!(
            Marker::parse(std::str::from_utf8(&released).unwrap()),
            Marker::Released
        );
        // Markers written before the lock held the dedup id as plain text.
        assert_eq!(
            Marker::parse("dataset=forex/x.jsonl.gz#abc"),
            Marker::Published
        );
    }
}
