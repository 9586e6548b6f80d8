//! Producer positions: each producer's mark kept in memory and saved to
//! the state objects at most once per `mark_interval` (and on flush).

use std::time::Instant;

use super::AwsStream;
use crate::backend::{BackendError, ProducerMark, ProducerPosition, Result};

/// A producer's last mark and when it was saved.
pub(super) struct Mark {
    mark: ProducerMark,
    saved: Option<Instant>,
    dirty: bool,
}

impl AwsStream {
    /// Takes a producer's new mark, saving it if the last save is older
    /// than `mark_interval`.
    pub(super) async fn note_mark(&self, mark: ProducerMark) -> Result<()> {
        let mut marks = self.marks.lock().await;
        let m = marks.entry(mark.producer.clone()).or_insert(Mark {
            mark: mark.clone(),
            saved: None,
            dirty: true,
        });
        m.mark = mark;
        m.dirty = true;
        if m.saved.is_none_or(|t| t.elapsed() >= self.mark_interval) {
            let (name, mark) = (m.mark.producer.clone(), m.mark.clone());
            self.save_mark(&name, &mark).await?;
            m.saved = Some(Instant::now());
            m.dirty = false;
        }
        Ok(())
    }

    /// Saves every mark not saved since it last changed.
    pub(super) async fn save_dirty_marks(&self) -> Result<()> {
        let mut marks = self.marks.lock().await;
        for (name, m) in marks.iter_mut() {
            if m.dirty {
                self.save_mark(name, &m.mark).await?;
                m.saved = Some(Instant::now());
                m.dirty = false;
            }
        }
        Ok(())
    }

    /// A producer's saved position, if it has one.
    pub(super) async fn saved_position(&self, producer: &str) -> Result<Option<ProducerPosition>> {
        let Some(text) = self
            .clients
            .state
            .get(&format!("producers/{producer}"))
            .await?
        else {
            return Ok(None);
        };
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            BackendError::permanent(
                "s3",
                format!(
                    "{}: not a producer position: {e}",
                    self.clients.state.key(&format!("producers/{producer}"))
                ),
            )
        })?;
        Ok(Some(ProducerPosition {
            next: v["next"].as_u64().unwrap_or(0),
            records: v["records"].as_u64().unwrap_or(0),
        }))
    }

    async fn save_mark(&self, name: &str, mark: &ProducerMark) -> Result<()> {
        let body = serde_json::json!({ "next": mark.next, "records": mark.records });
        self.clients
            .state
            .put(
                &format!("producers/{name}"),
                body.to_string().into_bytes(),
                "application/json",
            )
            .await
    }
}
