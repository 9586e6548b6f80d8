//! Feeds: each generator plugin ticks on its interval and its records go on
//! the stream, with the feed's position (next tick, records so far) stored
//! with them, so a restart resumes at the next tick — nothing skipped,
//! nothing repeated.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::message::stream_key;
use super::stats::Stats;
use crate::backend::{ProducerMark, Stream, StreamRecord};
use crate::event::format_ms;
use crate::plan::GeneratorPlan;
use crate::plugin::{Plugin, PluginInstance, Tick};

/// A shared cap on records generated (from `--max-records`).
#[derive(Debug)]
pub struct Budget {
    remaining: Option<AtomicU64>,
}

impl Budget {
    pub fn new(limit: Option<u64>) -> Self {
        Self {
            remaining: limit.map(AtomicU64::new),
        }
    }

    /// Takes up to `want` records from the budget.
    pub fn claim(&self, want: u64) -> u64 {
        let Some(r) = &self.remaining else {
            return want;
        };
        let mut got = 0;
        let _ = r.fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
            got = left.min(want);
            Some(left - got)
        });
        got
    }

    /// Returns records not used (a failed tick).
    pub fn give_back(&self, n: u64) {
        if let Some(r) = &self.remaining {
            r.fetch_add(n, Ordering::AcqRel);
        }
    }
}

pub fn producer_name(feed: &str) -> String {
    format!("feed:{feed}")
}

/// Runs one feed until cancelled or out of budget.
#[allow(clippy::too_many_arguments)]
pub async fn run_feed(
    feed: String,
    plan: GeneratorPlan,
    plugin: Plugin,
    stream: Arc<dyn Stream>,
    stats: Arc<Stats>,
    budget: Arc<Budget>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let producer = producer_name(&feed);
    let position = stream
        .producer_position(&producer)
        .await?
        .unwrap_or_default();
    let (mut number, mut total) = (position.next, position.records);
    let mut instance: Option<PluginInstance> = Some(super::blocking(|| {
        plugin.instantiate(&plan.plugin.config_json)
    })?);
    let mut ticker = tokio::time::interval(plan.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    tracing::info!(feed, tick = number, "feed starts");
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let count = budget.claim(u64::from(plan.records));
        if count == 0 {
            tracing::info!(feed, "record budget used up; feed stops");
            break;
        }
        let tick = Tick {
            seed: plan.seed,
            number,
            time_ms: chrono::Utc::now().timestamp_millis(),
            count: count as u32,
        };
        let mut inst = instance
            .take()
            .expect("instance is returned after each tick");
        let started = std::time::Instant::now();
        let (inst, result) = tokio::task::spawn_blocking(move || {
            let r = inst.generate(tick);
            (inst, r)
        })
        .await?;
        super::metrics::plugin_call("generator", &feed, started);
        instance = Some(inst);
        let records = match result {
            Ok(r) => r,
            Err(e) => {
                budget.give_back(count);
                Stats::add(&stats.plugin_failures, 1);
                tracing::error!(feed, tick = number, "generator failed; tick skipped: {e}");
                number += 1;
                continue;
            }
        };
        let n = records.len() as u64;
        if n < count {
            budget.give_back(count - n);
        }
        let records: Vec<StreamRecord> = records
            .iter()
            .map(|(key, data)| StreamRecord {
                partition_key: stream_key(&feed, key),
                data: data.to_vec(),
            })
            .collect();
        let mark = ProducerMark {
            producer: producer.clone(),
            next: number + 1,
            records: total + n,
        };
        // At-least-once into the stream: retry until stored or shut down.
        let mut backoff = Duration::from_millis(50);
        loop {
            match stream.put(records.clone(), Some(mark.clone())).await {
                Ok(()) => break,
                Err(e) => {
                    Stats::add(&stats.backend_errors, 1);
                    tracing::warn!(
                        feed,
                        tick = number,
                        "stream put failed, retrying in {backoff:?}: {e}"
                    );
                    tokio::select! {
                        _ = cancel.cancelled() => {
                            tracing::warn!(feed, tick = number, at = %format_ms(tick.time_ms), "shut down before the tick was stored; it will be generated again");
                            return Ok(());
                        }
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        Stats::add(&stats.generated, n);
        number += 1;
        total += n;
    }
    Ok(())
}
