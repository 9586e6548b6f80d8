//! `[notifications]` validated into a [`NotificationPlan`].

use super::{Checker, QueuePlan};
use crate::config::NotificationConfig;

/// The topic every stored object is announced on, and its subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationPlan {
    pub topic: String,
    /// Queues subscribed to the topic.
    pub subscribers: Vec<String>,
}

/// The topic defaults to `<pipeline>-objects`; no subscriber may be one of
/// the pipeline's own `queue`s.
pub(super) fn build(
    c: &mut Checker,
    pipeline: &str,
    queue: &QueuePlan,
    n: &NotificationConfig,
) -> NotificationPlan {
    c.given_name(&n.topic, "notifications.topic");
    for s in &n.subscribers {
        c.name(s, None, "notifications.subscribers");
        if s == &queue.name || s == &queue.dead_letter {
            c.err(
                None,
                "notifications.subscribers",
                format!("{s:?} is the pipeline's own queue"),
            );
        }
    }
    NotificationPlan {
        topic: n
            .topic
            .clone()
            .unwrap_or_else(|| format!("{pipeline}-objects")),
        subscribers: n.subscribers.clone(),
    }
}
