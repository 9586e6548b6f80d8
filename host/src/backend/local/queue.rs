//! The local queue (SQS role): visibility timeout, receive counts, a
//! dead-letter queue after `max_receives`, and sender checkpoints committed
//! with the messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, TransactionBehavior, params};

use super::db::{Db, now_ms};
use crate::backend::{Checkpoint, OutMessage, POLL_STEP, Queue, QueueDepth, Received, Result};

pub struct LocalQueue {
    db: Arc<Db>,
    name: String,
}

static RECEIPTS: AtomicU64 = AtomicU64::new(0);

impl LocalQueue {
    pub fn new(db: Arc<Db>, name: &str) -> Self {
        Self {
            db,
            name: name.to_string(),
        }
    }

    async fn try_receive(&self, max: usize) -> Result<Vec<Received>> {
        let name = self.name.clone();
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let (visibility_ms, max_receives, dead_letter): (i64, u32, Option<String>) = tx
                    .query_row(
                        "SELECT visibility_ms, max_receives, dead_letter FROM queues WHERE name = ?1",
                        [&name],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?
                    .unwrap_or((30_000, 0, None));
                let now = now_ms();
                let mut out = Vec::new();
                let mut moved = 0;
                {
                    let mut pick = tx.prepare_cached(
                        "SELECT seq, id, body, receive_count FROM queue_messages
                         WHERE queue = ?1 AND visible_at_ms <= ?2 ORDER BY seq LIMIT ?3",
                    )?;
                    let rows: Vec<(i64, String, String, u32)> = pick
                        .query_map(params![name, now, max as i64], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                        })?
                        .collect::<rusqlite::Result<_>>()?;
                    for (seq, id, body, count) in rows {
                        if let (Some(dlq), true) = (&dead_letter, max_receives > 0 && count >= max_receives) {
                            // Received max_receives times without a delete:
                            // a poison message. Move it, as SQS redrive does.
                            tx.execute(
                                "UPDATE OR REPLACE queue_messages SET queue = ?1, visible_at_ms = 0,
                                 receive_count = 0, receipt = NULL WHERE seq = ?2",
                                params![dlq, seq],
                            )?;
                            moved += 1;
                            continue;
                        }
                        let receipt = format!(
                            "{seq}-{}-{}",
                            count + 1,
                            RECEIPTS.fetch_add(1, Ordering::Relaxed)
                        );
                        tx.execute(
                            "UPDATE queue_messages SET receive_count = receive_count + 1,
                             visible_at_ms = ?1, receipt = ?2 WHERE seq = ?3",
                            params![now + visibility_ms, receipt, seq],
                        )?;
                        out.push(Received {
                            id,
                            receipt,
                            body,
                            receive_count: count + 1,
                        });
                    }
                }
                tx.commit()?;
                if moved > 0 {
                    tracing::warn!(queue = %name, moved, "messages moved to the dead-letter queue");
                }
                Ok(out)
            })
            .await
    }
}

#[async_trait]
impl Queue for LocalQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, messages: Vec<OutMessage>, checkpoint: Option<Checkpoint>) -> Result<()> {
        let name = self.name.clone();
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let now = now_ms();
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT OR IGNORE INTO queue_messages (queue, id, body, visible_at_ms, sent_ms)
                         VALUES (?1, ?2, ?3, 0, ?4)",
                    )?;
                    for m in &messages {
                        insert.execute(params![name, m.id, m.body, now])?;
                    }
                }
                if let Some(cp) = checkpoint {
                    tx.execute(
                        "INSERT INTO checkpoints (queue, consumer, source, position) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT (queue, consumer, source) DO UPDATE SET position = ?4",
                        params![name, cp.consumer, cp.source, cp.position],
                    )?;
                }
                tx.commit()
            })
            .await?;
        self.db.sent.notify_waiters();
        Ok(())
    }

    async fn checkpoint(&self, consumer: &str, source: &str) -> Result<Option<String>> {
        let (name, consumer, source) =
            (self.name.clone(), consumer.to_string(), source.to_string());
        self.db
            .call(move |c| {
                c.query_row(
                    "SELECT position FROM checkpoints WHERE queue = ?1 AND consumer = ?2 AND source = ?3",
                    params![name, consumer, source],
                    |r| r.get(0),
                )
                .optional()
            })
            .await
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Received>> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.db.sent.notified();
            let got = self.try_receive(max).await?;
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            // Woken by a send, or re-check (visibility timeouts expire on
            // their own) after a short step.
            let step = (deadline - now).min(POLL_STEP * 5);
            let _ = tokio::time::timeout(step, notified).await;
        }
    }

    async fn delete(&self, receipts: &[String]) -> Result<()> {
        let receipts = receipts.to_vec();
        self.db
            .call(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                {
                    let mut del =
                        tx.prepare_cached("DELETE FROM queue_messages WHERE receipt = ?1")?;
                    for r in &receipts {
                        del.execute([r])?;
                    }
                }
                tx.commit()
            })
            .await
    }

    async fn extend_visibility(&self, receipt: &str, timeout: Duration) -> Result<()> {
        let receipt = receipt.to_string();
        self.db
            .call(move |c| {
                c.execute(
                    "UPDATE queue_messages SET visible_at_ms = ?1 WHERE receipt = ?2",
                    params![now_ms() + timeout.as_millis() as i64, receipt],
                )
                .map(|_| ())
            })
            .await
    }

    async fn depth(&self) -> Result<QueueDepth> {
        let name = self.name.clone();
        self.db
            .call(move |c| {
                let now = now_ms();
                c.query_row(
                    "SELECT COALESCE(SUM(visible_at_ms <= ?2), 0), COALESCE(SUM(visible_at_ms > ?2), 0)
                     FROM queue_messages WHERE queue = ?1",
                    params![name, now],
                    |r| {
                        Ok(QueueDepth {
                            visible: r.get::<_, i64>(0)? as u64,
                            in_flight: r.get::<_, i64>(1)? as u64,
                        })
                    },
                )
            })
            .await
    }

    async fn redrive(&self, to: &str) -> Result<usize> {
        let (name, to) = (self.name.clone(), to.to_string());
        let n = self
            .db
            .call(move |c| {
                c.execute(
                    "UPDATE OR REPLACE queue_messages SET queue = ?2, visible_at_ms = 0,
                     receive_count = 0, receipt = NULL WHERE queue = ?1",
                    params![name, to],
                )
            })
            .await?;
        self.db.sent.notify_waiters();
        Ok(n)
    }

    async fn peek(&self, max: usize) -> Result<Vec<Received>> {
        let name = self.name.clone();
        self.db
            .call(move |c| {
                let mut st = c.prepare(
                    "SELECT id, body, receive_count FROM queue_messages WHERE queue = ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = st.query_map(params![name, max as i64], |r| {
                    Ok(Received {
                        id: r.get(0)?,
                        receipt: String::new(),
                        body: r.get(1)?,
                        receive_count: r.get(2)?,
                    })
                })?;
                rows.collect()
            })
            .await
    }
}
