//! `[stream]`, `[bridge]` and `[store.rollover]` validated: the stream's
//! names (fixed while running) and the bridge's batch bounds and polling
//! (live: a reload may change them).

use std::time::Duration;

use super::Checker;
use crate::config::{BridgeConfig, RolloverConfig, StreamConfig};

/// The stream and the bridge's place on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamPlan {
    pub name: String,
    pub shards: u32,
    /// The name the bridge keeps its checkpoints under (`bridge.consumer`).
    pub consumer: String,
}

/// How the bridge cuts and polls; changes apply live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgePlan {
    /// How long to wait before polling an idle shard again.
    pub poll_interval: Duration,
    pub rollover: Rollover,
}

/// When a batch (and so an object) is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollover {
    pub records: usize,
    pub bytes: usize,
    pub age: Duration,
}

/// The stream; its name defaults to the pipeline's.
pub(super) fn stream(
    c: &mut Checker,
    pipeline: &str,
    s: &StreamConfig,
    b: &BridgeConfig,
) -> StreamPlan {
    let shards = c.range(&s.shards, "stream.shards", 1, 1024);
    c.given_name(&s.name, "stream.name");
    StreamPlan {
        name: s.name.clone().unwrap_or_else(|| pipeline.to_string()),
        shards,
        consumer: b.consumer.clone().unwrap_or_else(|| "bridge".into()),
    }
}

/// Records older than this are dropped from the (local) stream.
pub(super) fn retention(c: &mut Checker, s: &StreamConfig) -> Duration {
    c.duration(
        &s.retention,
        "stream.retention",
        Duration::from_secs(24 * 3600),
        Duration::from_secs(60),
    )
}

pub(super) fn bridge(c: &mut Checker, b: &BridgeConfig, r: &RolloverConfig) -> BridgePlan {
    let poll_interval = c.duration(
        &b.poll_interval,
        "bridge.poll_interval",
        Duration::from_millis(20),
        Duration::from_millis(1),
    );
    let rollover = Rollover {
        records: c.opt_range(&r.records, "store.rollover.records", 5000, 1, 1_000_000) as usize,
        bytes: c.size(&r.bytes, "store.rollover.bytes", 4 << 20),
        age: c.duration(
            &r.age,
            "store.rollover.age",
            Duration::from_secs(1),
            Duration::from_millis(1),
        ),
    };
    BridgePlan {
        poll_interval,
        rollover,
    }
}
