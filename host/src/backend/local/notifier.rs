//! The local notifier (SNS role): records each notification once (by dedup
//! id) and delivers it to every subscribed queue in the same transaction,
//! wrapped in an SNS-style envelope (`Type = "Notification"`, the original
//! text in `Message`, attributes in `MessageAttributes`).

use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{TransactionBehavior, params};
use serde_json::json;

use super::db::{Db, now_ms};
use crate::backend::{Notification, Notifier, Result};

pub struct LocalNotifier {
    db: Arc<Db>,
    topic: String,
}

impl LocalNotifier {
    pub fn new(db: Arc<Db>, topic: &str) -> Self {
        Self {
            db,
            topic: topic.to_string(),
        }
    }
}

#[async_trait]
impl Notifier for LocalNotifier {
    fn topic(&self) -> &str {
        &self.topic
    }

    async fn publish(&self, n: Notification) -> Result<bool> {
        let topic = self.topic.clone();
        let inserted = self
            .db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = now_ms();
                let attributes = serde_json::to_string(&n.attributes).unwrap_or_else(|_| "{}".into());
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO notifications (topic, dedup_id, body, attributes, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![topic, n.dedup_id, n.body, attributes, now],
                )? == 1;
                if inserted {
                    let envelope = json!({
                        "Type": "Notification",
                        "MessageId": n.dedup_id,
                        "TopicArn": format!("arn:aws:sns:local:000000000000:{topic}"),
                        "Message": n.body,
                        "Timestamp": crate::event::format_ms(now),
                        "MessageAttributes": n.attributes.iter().map(|(k, v)| {
                            (k.clone(), json!({"Type": "String", "Value": v}))
                        }).collect::<serde_json::Map<_, _>>(),
                    })
                    .to_string();
                    let queues: Vec<String> = tx
                        .prepare_cached("SELECT queue FROM subscriptions WHERE topic = ?1")?
                        .query_map([&topic], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?;
                    for q in queues {
                        tx.execute(
                            "INSERT OR IGNORE INTO queue_messages (queue, id, body, visible_at_ms, sent_ms)
                             VALUES (?1, ?2, ?3, 0, ?4)",
                            params![q, n.dedup_id, envelope, now],
                        )?;
                    }
                }
                tx.commit()?;
                Ok(inserted)
            })
            .await?;
        if inserted {
            self.db.sent.notify_waiters();
        }
        Ok(inserted)
    }
}
