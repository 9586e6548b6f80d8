//! The queue on SQS (standard queues).
//!
//! Sends go in SendMessageBatch calls of at most 10 entries and
//! `aws.max_message_bytes` in all; a failed entry is retried alone (a
//! sender fault is an error naming the message). A body bigger than one
//! message is stored in the bucket and a pointer sent instead, in the
//! format of the SQS extended client libraries, so their consumers can
//! read our messages too. Receives long-poll; deletes go in batches with
//! per-entry failure handling; a message's stream checkpoint is written to
//! the state store after the send, and where it will be (`sending/`) before.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
    QueueAttributeName, SendMessageBatchRequestEntry,
};
use tokio::sync::OnceCell;

use super::retry::Budget;
use super::{Clients, build_err, code_of, sdk_err, sha256_hex};
use crate::backend::{
    BackendError, Checkpoint, Class, OutMessage, Queue, QueueDepth, Received, Result,
};
use crate::util::backoff::RETRY;

/// The message attribute carrying pipehost's deterministic message id.
const ID_ATTRIBUTE: &str = "pipehost-id";
/// The extended clients' pointer class and size attribute.
const POINTER_CLASS: &str = "software.amazon.payloadoffloading.PayloadS3Pointer";
const SIZE_ATTRIBUTE: &str = "ExtendedPayloadSize";

pub struct AwsQueue {
    clients: Arc<Clients>,
    name: String,
    url: OnceCell<String>,
}

/// A message ready to send: body (maybe a pointer) and attributes.
struct Prepared {
    id: String,
    body: String,
    pointer_size: Option<usize>,
}

impl Prepared {
    /// What SQS counts: the body plus attribute names, types and values.
    fn size(&self) -> usize {
        let mut n = self.body.len() + ID_ATTRIBUTE.len() + "String".len() + self.id.len();
        if let Some(s) = self.pointer_size {
            n += SIZE_ATTRIBUTE.len() + "Number".len() + s.to_string().len();
        }
        n
    }
}

/// Groups prepared messages into batches of at most 10 and `limit` bytes.
fn batches(messages: Vec<Prepared>, limit: usize) -> Vec<Vec<Prepared>> {
    let mut out: Vec<Vec<Prepared>> = Vec::new();
    let mut bytes = 0;
    for m in messages {
        let size = m.size();
        if out
            .last()
            .is_none_or(|b| b.len() >= 10 || bytes + size > limit)
        {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        out.last_mut().expect("pushed").push(m);
    }
    out
}

/// The SendMessageBatch entry of a prepared message, named `m<i>`.
fn send_entry(i: usize, m: &Prepared) -> Result<SendMessageBatchRequestEntry> {
    let attribute = |data_type: &str, value: String| {
        MessageAttributeValue::builder()
            .data_type(data_type)
            .string_value(value)
            .build()
            .map_err(|e| build_err("sqs", e))
    };
    let mut e = SendMessageBatchRequestEntry::builder()
        .id(format!("m{i}"))
        .message_body(&m.body)
        .message_attributes(ID_ATTRIBUTE, attribute("String", m.id.clone())?);
    if let Some(size) = m.pointer_size {
        e = e.message_attributes(SIZE_ATTRIBUTE, attribute("Number", size.to_string())?);
    }
    e.build().map_err(|e| build_err("sqs", e))
}

/// The bucket and key of an extended-client pointer body.
fn parse_pointer(body: &str) -> Option<(String, String)> {
    if !body.starts_with('[') || !body.contains(POINTER_CLASS) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let arr = v.as_array()?;
    if arr.first()?.as_str()? != POINTER_CLASS {
        return None;
    }
    let p = arr.get(1)?;
    Some((
        p["s3BucketName"].as_str()?.to_string(),
        p["s3Key"].as_str()?.to_string(),
    ))
}

impl AwsQueue {
    pub fn new(clients: Arc<Clients>, name: &str) -> Self {
        Self {
            clients,
            name: name.to_string(),
            url: OnceCell::new(),
        }
    }

    pub async fn url(&self) -> Result<&str> {
        self.url
            .get_or_try_init(|| async {
                let out = self
                    .clients
                    .sqs
                    .get_queue_url()
                    .queue_name(&self.name)
                    .send()
                    .await
                    .map_err(|e| sdk_err("sqs", &format!("GetQueueUrl {}", self.name), e))?;
                out.queue_url().map(str::to_string).ok_or_else(|| {
                    BackendError::permanent("sqs", format!("GetQueueUrl {}: no URL", self.name))
                })
            })
            .await
            .map(String::as_str)
    }

    /// Stores a body too big for a message; the key follows the message
    /// id, so a re-send overwrites rather than adds.
    async fn offload(&self, m: &OutMessage) -> Result<Prepared> {
        let key = format!("payloads/{}/{}", self.name, sha256_hex(&m.id));
        self.clients
            .state
            .put(&key, m.body.clone().into_bytes(), "application/json")
            .await?;
        let pointer = serde_json::json!([
            POINTER_CLASS,
            { "s3BucketName": self.clients.bucket, "s3Key": self.clients.state.key(&key) }
        ]);
        Ok(Prepared {
            id: m.id.clone(),
            body: pointer.to_string(),
            pointer_size: Some(m.body.len()),
        })
    }

    /// One SendMessageBatch call's entries, retrying the ones refused
    /// for a reason on the service's side (the call as a whole is retried
    /// by the SDK), all on one [`Budget`]; a sender fault fails at once.
    async fn send_batch(&self, url: &str, batch: Vec<Prepared>) -> Result<()> {
        let mut pending: Vec<(usize, Prepared)> = batch.into_iter().enumerate().collect();
        let budget = Budget::default();
        let mut waits = RETRY.waits();
        loop {
            let entries = pending
                .iter()
                .map(|(i, m)| send_entry(*i, m))
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .clients
                .sqs
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .customize()
                .interceptor(budget.clone())
                .config_override(
                    aws_sdk_sqs::config::Builder::default().retry_config(budget.round_config()),
                )
                .send()
                .await
                .map_err(|e| sdk_err("sqs", &format!("SendMessageBatch to {}", self.name), e))?;
            if out.failed().is_empty() {
                return Ok(());
            }
            let failed: HashMap<&str, _> = out.failed().iter().map(|f| (f.id(), f)).collect();
            if let Some(f) = out.failed().iter().find(|f| f.sender_fault()) {
                let idx: usize = f.id()[1..].parse().unwrap_or(0);
                let id = pending
                    .iter()
                    .find(|(i, _)| *i == idx)
                    .map(|(_, m)| m.id.as_str())
                    .unwrap_or("?");
                return Err(BackendError::permanent(
                    "sqs",
                    format!(
                        "SendMessageBatch to {}: message {id} refused: {} {}",
                        self.name,
                        f.code(),
                        f.message().unwrap_or("")
                    ),
                ));
            }
            if budget.remaining() == 0 {
                return Err(BackendError::retryable(
                    "sqs",
                    format!(
                        "SendMessageBatch to {}: {} entries still failing after {} requests",
                        self.name,
                        failed.len(),
                        budget.used()
                    ),
                ));
            }
            pending.retain(|(i, _)| failed.contains_key(format!("m{i}").as_str()));
            tokio::time::sleep(waits.next_delay()).await;
        }
    }

    async fn receive_raw(
        &self,
        max: usize,
        wait: Duration,
        visibility: Option<Duration>,
    ) -> Result<Vec<Received>> {
        let url = self.url().await?.to_string();
        let secs = wait.as_secs_f64().ceil().clamp(0.0, 20.0) as i32;
        let mut req = self
            .clients
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All");
        if let Some(v) = visibility {
            req = req.visibility_timeout(v.as_secs() as i32);
        }
        let out = req
            .send()
            .await
            .map_err(|e| sdk_err("sqs", &format!("ReceiveMessage from {}", self.name), e))?;
        let mut received = Vec::new();
        for m in out.messages() {
            let id = m
                .message_attributes()
                .and_then(|a| a.get(ID_ATTRIBUTE))
                .and_then(|v| v.string_value())
                .or(m.message_id())
                .unwrap_or("")
                .to_string();
            let mut body = m.body().unwrap_or("").to_string();
            if let Some((bucket, key)) = parse_pointer(&body) {
                body = self.fetch_payload(&bucket, &key).await?;
            }
            let receive_count = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1);
            received.push(Received {
                id,
                receipt: m.receipt_handle().unwrap_or("").to_string(),
                body,
                receive_count,
            });
        }
        Ok(received)
    }

    async fn fetch_payload(&self, bucket: &str, key: &str) -> Result<String> {
        match self
            .clients
            .s3
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let bytes = out.body.collect().await.map_err(|e| {
                    BackendError::new(
                        "s3",
                        format!("reading payload s3://{bucket}/{key}: {e}"),
                        Class::Retryable,
                        Some(Box::new(e)),
                    )
                })?;
                Ok(String::from_utf8_lossy(&bytes.into_bytes()).into_owned())
            }
            // A payload that is gone makes the message undecodable: it is
            // handed on as is and fails visibly (then dead-letters) rather
            // than blocking every receive.
            Err(e) if code_of(&e) == Some("NoSuchKey") => {
                tracing::error!(queue = %self.name, "message payload s3://{bucket}/{key} is missing");
                Ok(format!("{{\"missing_payload\":\"s3://{bucket}/{key}\"}}"))
            }
            Err(e) => Err(sdk_err("s3", &format!("GetObject s3://{bucket}/{key}"), e)),
        }
    }

    /// One DeleteMessageBatch call's entries, retrying the ones refused
    /// for a reason on the service's side (the call as a whole is retried
    /// by the SDK), all on one [`Budget`]. A stale receipt is no error.
    async fn delete_batch(&self, url: &str, chunk: &[String]) -> Result<()> {
        let mut pending: Vec<(usize, &String)> = chunk.iter().enumerate().collect();
        let budget = Budget::default();
        let mut waits = RETRY.waits();
        while !pending.is_empty() {
            let entries = pending
                .iter()
                .map(|(i, r)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(format!("d{i}"))
                        .receipt_handle(r.as_str())
                        .build()
                        .map_err(|e| build_err("sqs", e))
                })
                .collect::<Result<Vec<_>>>()?;
            let out = self
                .clients
                .sqs
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .customize()
                .interceptor(budget.clone())
                .config_override(
                    aws_sdk_sqs::config::Builder::default().retry_config(budget.round_config()),
                )
                .send()
                .await
                .map_err(|e| sdk_err("sqs", &format!("DeleteMessageBatch on {}", self.name), e))?;
            let mut retry = Vec::new();
            for f in out.failed() {
                let idx: usize = f.id()[1..].parse().unwrap_or(usize::MAX);
                if f.code() == "ReceiptHandleIsInvalid" {
                    // Already deleted, or the receipt is stale: the
                    // message will come back and be processed again,
                    // overwriting the same objects.
                    tracing::warn!(queue = %self.name, "delete: stale receipt ({})", f.message().unwrap_or(""));
                    continue;
                }
                if f.sender_fault() || budget.remaining() == 0 {
                    let message = format!(
                        "DeleteMessageBatch on {}: {} {}",
                        self.name,
                        f.code(),
                        f.message().unwrap_or("")
                    );
                    return Err(if f.sender_fault() {
                        BackendError::permanent("sqs", message)
                    } else {
                        BackendError::retryable("sqs", message)
                    });
                }
                if let Some(p) = pending.iter().find(|(i, _)| *i == idx) {
                    retry.push(*p);
                }
            }
            pending = retry;
            if !pending.is_empty() {
                tokio::time::sleep(waits.next_delay()).await;
            }
        }
        Ok(())
    }

    async fn attribute_counts(&self) -> Result<HashMap<QueueAttributeName, String>> {
        let url = self.url().await?.to_string();
        let out = self
            .clients
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| sdk_err("sqs", &format!("GetQueueAttributes {}", self.name), e))?;
        Ok(out.attributes().cloned().unwrap_or_default())
    }
}

#[async_trait]
impl Queue for AwsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, messages: Vec<OutMessage>, checkpoint: Option<Checkpoint>) -> Result<()> {
        if let Some(c) = checkpoint.as_ref().filter(|_| !messages.is_empty()) {
            // Before the send: where these messages end, so that after a
            // crash before the checkpoint the sender re-cuts exactly them.
            self.clients
                .state
                .put(
                    &format!("sending/{}/{}", c.consumer, c.source),
                    c.position.clone().into_bytes(),
                    "text/plain",
                )
                .await?;
        }
        if !messages.is_empty() {
            let url = self.url().await?.to_string();
            let limit = self.clients.max_message_bytes;
            let mut prepared = Vec::with_capacity(messages.len());
            for m in &messages {
                let p = Prepared {
                    id: m.id.clone(),
                    body: m.body.clone(),
                    pointer_size: None,
                };
                prepared.push(if p.size() > limit {
                    self.offload(m).await?
                } else {
                    p
                });
            }
            for batch in batches(prepared, limit) {
                self.send_batch(&url, batch).await?;
            }
        }
        if let Some(c) = checkpoint {
            // After the send: a crash in between re-sends the same batch
            // (cut again up to `sending`: same id, same records, so the
            // same objects) rather than skipping it.
            self.clients
                .state
                .put(
                    &format!("checkpoints/{}/{}", c.consumer, c.source),
                    c.position.into_bytes(),
                    "text/plain",
                )
                .await?;
        }
        Ok(())
    }

    async fn checkpoint(&self, consumer: &str, source: &str) -> Result<Option<String>> {
        self.clients
            .state
            .get(&format!("checkpoints/{consumer}/{source}"))
            .await
    }

    async fn sending(&self, consumer: &str, source: &str) -> Result<Option<String>> {
        self.clients
            .state
            .get(&format!("sending/{consumer}/{source}"))
            .await
    }

    async fn resolve_body(&self, body: String) -> Result<String> {
        match parse_pointer(&body) {
            Some((bucket, key)) => self.fetch_payload(&bucket, &key).await,
            None => Ok(body),
        }
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>> {
        self.receive_raw(max, wait, None).await
    }

    async fn delete(&self, receipts: &[String]) -> Result<()> {
        let url = self.url().await?.to_string();
        for chunk in receipts.chunks(10) {
            self.delete_batch(&url, chunk).await?;
        }
        Ok(())
    }

    async fn extend_visibility(&self, receipt: &str, timeout: Duration) -> Result<()> {
        let url = self.url().await?.to_string();
        let secs = timeout.as_secs_f64().ceil().clamp(0.0, 43_200.0) as i32;
        self.clients
            .sqs
            .change_message_visibility()
            .queue_url(&url)
            .receipt_handle(receipt)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| {
                sdk_err(
                    "sqs",
                    &format!("ChangeMessageVisibility on {}", self.name),
                    e,
                )
            })?;
        Ok(())
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let a = self.attribute_counts().await?;
        let n = |k: QueueAttributeName| a.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(QueueDepth {
            visible: n(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        })
    }

    async fn redrive(&self, to: &str) -> Result<usize> {
        let target = AwsQueue::new(self.clients.clone(), to);
        let mut moved = 0;
        let mut empty = 0;
        // SQS samples its servers on a receive: stop only after two empty
        // long polls in a row.
        while empty < 2 {
            let got = self
                .receive_raw(10, Duration::from_secs(1), Some(Duration::from_secs(60)))
                .await?;
            if got.is_empty() {
                empty += 1;
                continue;
            }
            empty = 0;
            let out: Vec<OutMessage> = got
                .iter()
                .map(|m| OutMessage {
                    id: m.id.clone(),
                    body: m.body.clone(),
                })
                .collect();
            target.send(out, None).await?;
            let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
            self.delete(&receipts).await?;
            moved += got.len();
        }
        Ok(moved)
    }

    async fn peek(&self, max: usize) -> Result<Vec<Received>> {
        // SQS cannot look without receiving: receive with a zero
        // visibility timeout, so the messages stay available at once (their
        // receive counts do go up).
        let mut seen: HashMap<String, Received> = HashMap::new();
        for _ in 0..3 {
            for m in self
                .receive_raw(max.min(10), Duration::from_secs(1), Some(Duration::ZERO))
                .await?
            {
                seen.entry(m.id.clone()).or_insert(m);
            }
            if seen.len() >= max {
                break;
            }
        }
        let mut out: Vec<Received> = seen.into_values().collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out.truncate(max);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: &str, bytes: usize) -> Prepared {
        Prepared {
            id: id.into(),
            body: "x".repeat(bytes),
            pointer_size: None,
        }
    }

    #[test]
    fn batches_hold_ten_messages_within_the_byte_limit() {
        let sizes: Vec<usize> = batches((0..23).map(|i| p(&i.to_string(), 10)).collect(), 1 << 20)
            .iter()
            .map(Vec::len)
            .collect();
        assert_eq!(sizes, [10, 10, 3]);
        let big = batches(
            (0..4).map(|i| p(&i.to_string(), 100_000)).collect(),
            256 * 1024,
        );
        assert_eq!(big.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
    }

    #[test]
    fn extended_client_pointers_are_recognised() {
        let body = format!(
            r#"["{POINTER_CLASS}",{{"s3BucketName":"b","s3Key":"_pipehost/payloads/q/abc"}}]"#
        );
        assert_eq!(
            parse_pointer(&body),
            Some(("b".into(), "_pipehost/payloads/q/abc".into()))
        );
        assert_eq!(parse_pointer(r#"{"v":1}"#), None);
        assert_eq!(parse_pointer(r#"["other",{}]"#), None);
    }
}
