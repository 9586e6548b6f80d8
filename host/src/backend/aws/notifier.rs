//! The notifier on SNS: Publish with the S3-event-shaped body and message
//! attributes (`record_count` as a Number), so subscription filter
//! policies work. SNS standard topics do not deduplicate; pipehost keeps a
//! marker object per published notification and skips one it has a
//! marker for (a crash between publish and marker can still send one
//! twice: at least once).

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;
use tokio::sync::OnceCell;

use super::{Clients, sdk_err, sha256_hex};
use crate::backend::{BackendError, Notification, Notifier, Result};

pub struct AwsNotifier {
    clients: Arc<Clients>,
    topic: String,
    arn: OnceCell<String>,
}

/// Attributes that are numbers, for numeric filter policies.
const NUMBER_ATTRIBUTES: &[&str] = &["record_count"];

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
        if self.clients.state.exists(&marker).await? {
            return Ok(false);
        }
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
                    .map_err(|e| BackendError::failed("sns", e))?,
            );
        }
        req.send()
            .await
            .map_err(|e| sdk_err("sns", &format!("Publish to {}", self.topic), e))?;
        self.clients
            .state
            .put(&marker, notification.dedup_id.into_bytes(), "text/plain")
            .await?;
        Ok(true)
    }
}
