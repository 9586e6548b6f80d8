//! Shard listing and resharding: the stream's shards with their parents,
//! closed shards' last sequences, and which shards are children.

use super::AwsStream;
use crate::backend::aws::sdk_err;
use crate::backend::{Result, ShardInfo};

impl AwsStream {
    /// Every shard, sorted, with its parents; remembers closed shards'
    /// endings and which shards are children of a resharding.
    pub(super) async fn list_shards(&self) -> Result<Vec<ShardInfo>> {
        let mut shards = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut req = self.clients.kinesis.list_shards();
            req = match &token {
                Some(t) => req.next_token(t),
                None => req.stream_name(&self.name),
            };
            let out = req
                .send()
                .await
                .map_err(|e| sdk_err("kinesis", &format!("ListShards {}", self.name), e))?;
            for s in out.shards() {
                let parents: Vec<String> = [s.parent_shard_id(), s.adjacent_parent_shard_id()]
                    .into_iter()
                    .flatten()
                    .map(str::to_string)
                    .collect();
                let ending = s
                    .sequence_number_range()
                    .and_then(|r| r.ending_sequence_number());
                if let Some(end) = ending {
                    self.endings
                        .lock()
                        .expect("not poisoned")
                        .insert(s.shard_id().to_string(), end.to_string());
                }
                let closed = ending.is_some();
                shards.push(ShardInfo {
                    id: s.shard_id().to_string(),
                    parents,
                    closed,
                });
            }
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        shards.sort_by(|a, b| a.id.cmp(&b.id));
        // A child starts at its beginning even when its parents have
        // expired: whatever it holds came after them.
        let mut children = self.children.lock().expect("not poisoned");
        for s in &shards {
            children.insert(s.id.clone(), !s.parents.is_empty());
        }
        Ok(shards)
    }

    /// Whether `shard` has parents (lists the shards if it is not known yet).
    pub(super) async fn is_child(&self, shard: &str) -> Result<bool> {
        if let Some(c) = self.children.lock().expect("not poisoned").get(shard) {
            return Ok(*c);
        }
        self.list_shards().await?;
        Ok(self
            .children
            .lock()
            .expect("not poisoned")
            .get(shard)
            .copied()
            .unwrap_or(false))
    }
}
