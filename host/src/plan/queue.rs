//! `[queue]` and `[processor]` validated into a [`QueuePlan`] and a
//! [`ProcessorPlan`].

use std::time::Duration;

use super::{BackendPlan, Checker, aws};
use crate::config::{ProcessorConfig, QueueConfig};

/// The batch queue and its dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuePlan {
    pub name: String,
    pub dead_letter: String,
    pub visibility_timeout: Duration,
    /// Receives before a message moves to the dead-letter queue.
    pub max_receives: u32,
}

/// The processing stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessorPlan {
    /// Batches processed at once.
    pub workers: usize,
    /// Messages taken per receive.
    pub receive_batch: usize,
}

/// The queues; their names default to `<pipeline>-batches` and `<queue>-dlq`.
pub(super) fn queue(
    c: &mut Checker,
    pipeline: &str,
    backend: &BackendPlan,
    q: &QueueConfig,
) -> QueuePlan {
    let name = q
        .name
        .clone()
        .unwrap_or_else(|| format!("{pipeline}-batches"));
    let dead_letter = q
        .dead_letter
        .clone()
        .unwrap_or_else(|| format!("{name}-dlq"));
    c.given_name(&q.name, "queue.name");
    c.given_name(&q.dead_letter, "queue.dead_letter");
    let visibility_timeout = c.duration(
        &q.visibility_timeout,
        "queue.visibility_timeout",
        Duration::from_secs(30),
        Duration::from_millis(100),
    );
    if matches!(backend, BackendPlan::Aws(_)) {
        aws::check_visibility(c, &q.visibility_timeout, visibility_timeout);
    }
    QueuePlan {
        name,
        dead_letter,
        visibility_timeout,
        max_receives: c.opt_range(&q.max_receives, "queue.max_receives", 5, 1, 1000),
    }
}

pub(super) fn processor(c: &mut Checker, p: &ProcessorConfig) -> ProcessorPlan {
    ProcessorPlan {
        workers: c.opt_range(&p.workers, "processor.workers", 2, 1, 64) as usize,
        receive_batch: c.opt_range(&p.receive_batch, "processor.receive_batch", 10, 1, 10) as usize,
    }
}
