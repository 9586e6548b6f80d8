//! Feeds: each generator plugin ticks on its interval and its records go on
//! the stream, with the feed's position (next tick, records so far) stored
//! with them, so a restart resumes at the next tick — nothing skipped,
//! nothing repeated.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::backend::{ProducerMark, Stream, StreamRecord};
use crate::event::format_ms;
use crate::plan::GeneratorPlan;
use crate::plugin::{GeneratedBatch, GeneratorInstance, GeneratorPlugin, PluginError, Tick};
use crate::telemetry::stats::Stats;
use crate::util::backoff::RETRY;
use crate::wire::aggregate;
use crate::wire::message::stream_key;

/// A feed's cap on records generated (its share of `--max-records`).
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

/// `--max-records` shared out among the generating feeds: what is left of
/// the total after earlier runs is split in proportion to each feed's
/// rate (records per tick / interval), so that the feeds use their shares
/// up together and a bounded run lasts as long as the total takes at the
/// configured rates (the first feeds take one more while a remainder is
/// left). Shares are fixed up front so that how the feeds' tasks happen to
/// be scheduled decides nothing: a slow feed is never starved by a fast
/// one, and a bounded run of N records generates N in all, across runs. A
/// feed added later by a reload gets no share.
#[derive(Debug)]
pub struct Budgets {
    per_feed: Option<HashMap<String, Arc<Budget>>>,
}

impl Budgets {
    /// No cap: every feed runs until stopped.
    pub fn unlimited() -> Self {
        Self { per_feed: None }
    }

    /// `total` shared among `feeds`, in order.
    pub fn shared(total: Option<u64>, feeds: &[FeedShare]) -> Self {
        let Some(total) = total else {
            return Self::unlimited();
        };
        let left = total.saturating_sub(feeds.iter().map(|f| f.done).sum());
        let shares = apportion(left, &feeds.iter().map(|f| f.rate).collect::<Vec<_>>());
        let per_feed = feeds
            .iter()
            .zip(shares)
            .map(|(f, share)| (f.name.clone(), Arc::new(Budget::new(Some(share)))))
            .collect();
        Self {
            per_feed: Some(per_feed),
        }
    }

    /// The budget of one feed.
    pub fn of(&self, feed: &str) -> Arc<Budget> {
        match &self.per_feed {
            None => Arc::new(Budget::new(None)),
            Some(m) => m
                .get(feed)
                .cloned()
                .unwrap_or_else(|| Arc::new(Budget::new(Some(0)))),
        }
    }
}

/// A generating feed, for [`Budgets::shared`].
#[derive(Debug, Clone)]
pub struct FeedShare {
    pub name: String,
    /// Records it generated in earlier runs.
    pub done: u64,
    /// Its rate, in records per 1,000 s ([`FeedShare::rate_of`]).
    pub rate: u64,
}

impl FeedShare {
    /// A generator's rate in records per 1,000 s (whole numbers, at least 1).
    pub fn rate_of(records: u32, interval: Duration) -> u64 {
        let per_ks = u128::from(records) * 1_000_000_000 / interval.as_micros().max(1);
        u64::try_from(per_ks).unwrap_or(u64::MAX).max(1)
    }
}

/// `left` split in proportion to `weights` (all equal when they sum to 0);
/// the shares sum to `left`, the first ones one more while a remainder is
/// left.
fn apportion(left: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    let weight = |w: u64| if sum == 0 { 1 } else { u128::from(w) };
    let sum = if sum == 0 { weights.len() as u128 } else { sum };
    let mut shares: Vec<u64> = weights
        .iter()
        .map(|&w| (u128::from(left) * weight(w) / sum.max(1)) as u64)
        .collect();
    let mut rest = left - shares.iter().sum::<u64>();
    for s in shares.iter_mut() {
        if rest == 0 {
            break;
        }
        *s += 1;
        rest -= 1;
    }
    shares
}

pub fn producer_name(feed: &str) -> String {
    format!("feed:{feed}")
}

/// Runs one feed until cancelled or out of budget.
#[allow(clippy::too_many_arguments)]
pub async fn run_feed(
    feed: String,
    plan: GeneratorPlan,
    plugin: GeneratorPlugin,
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
    let instance = super::blocking(|| plugin.instantiate(&plan.plugin.config_json))?;
    let mut generator = Generator {
        feed: &feed,
        instance: Some(instance),
    };
    let task = TickStore {
        feed: &feed,
        producer,
        stream,
        stats,
        cancel,
    };
    let feed = task.feed;
    let mut ticker = tokio::time::interval(plan.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    tracing::info!(feed, tick = number, "feed starts");
    loop {
        tokio::select! {
            _ = task.cancel.cancelled() => break,
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
        let records = match generator.generate(tick).await? {
            Ok(r) => r,
            Err(e) => {
                budget.give_back(count);
                Stats::add(&task.stats.plugin_failures, 1);
                tracing::error!(feed, tick = number, "generator failed; tick skipped: {e}");
                number += 1;
                continue;
            }
        };
        let n = records.len() as u64;
        if n < count {
            budget.give_back(count - n);
        }
        let records = stream_records(feed, records.iter(), plan.aggregate);
        let mark = ProducerMark {
            producer: task.producer.clone(),
            next: number + 1,
            records: total + n,
        };
        if !task.put(&records, &mark, &tick).await {
            return Ok(());
        }
        Stats::add(&task.stats.generated, n);
        number += 1;
        total += n;
    }
    Ok(())
}

/// A feed's generator instance, taken out for each call on a blocking
/// thread and put back after.
struct Generator<'f> {
    feed: &'f str,
    instance: Option<GeneratorInstance>,
}

impl Generator<'_> {
    /// Calls the generator for one tick on a blocking thread.
    async fn generate(
        &mut self,
        tick: Tick,
    ) -> anyhow::Result<Result<GeneratedBatch, PluginError>> {
        let mut inst = self
            .instance
            .take()
            .expect("instance is returned after each tick");
        let started = std::time::Instant::now();
        let (inst, result) = tokio::task::spawn_blocking(move || {
            let r = inst.generate(tick);
            (inst, r)
        })
        .await?;
        crate::telemetry::metrics::plugin_call("generator", self.feed, started);
        self.instance = Some(inst);
        Ok(result)
    }
}

/// Where a feed's ticks go: the stream, under the feed's producer name.
struct TickStore<'f> {
    feed: &'f str,
    producer: String,
    stream: Arc<dyn Stream>,
    stats: Arc<Stats>,
    cancel: CancellationToken,
}

impl TickStore<'_> {
    /// Stores a tick's records together with the feed's new position.
    /// At-least-once into the stream: retries until stored, or returns
    /// false when shut down first.
    async fn put(&self, records: &[StreamRecord], mark: &ProducerMark, tick: &Tick) -> bool {
        let (feed, number) = (self.feed, tick.number);
        let mut waits = RETRY.waits();
        loop {
            match self.stream.put(records.to_vec(), Some(mark.clone())).await {
                Ok(()) => return true,
                Err(e) => {
                    Stats::add(&self.stats.backend_errors, 1);
                    let wait = waits.next_delay();
                    if e.is_retryable() {
                        tracing::warn!(
                            feed,
                            tick = number,
                            "stream put failed, retrying in {wait:?}: {e}"
                        );
                    } else {
                        tracing::error!(
                            feed,
                            tick = number,
                            "stream put failed, and will until the cause is fixed; retrying in {wait:?}: {e}"
                        );
                    }
                    tokio::select! {
                        _ = self.cancel.cancelled() => {
                            tracing::warn!(feed, tick = number, at = %format_ms(tick.time_ms), "shut down before the tick was stored; it will be generated again");
                            return false;
                        }
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// A tick's generated records as stream records. Aggregated (the default):
/// the records of each partition key, in order, as one aggregated record
/// (split at the stream's record size; a key with one record stays
/// plain). Inserting a stream record costs about the same whatever its
/// size — a SQLite row here, a PutRecords entry on Kinesis — so a tick of
/// 2,000 quotes over 10 pairs becomes 10 records instead of 2,000. Records
/// of one key stay in order and on one shard, as they would one by one;
/// the processor unpacks them before parsing, each named `<seq>:<i>`.
pub fn stream_records<'a>(
    feed: &str,
    generated: impl Iterator<Item = (&'a str, &'a [u8])>,
    aggregate: bool,
) -> Vec<StreamRecord> {
    if !aggregate {
        // One record each; `pack` of a single line keeps it as is, but
        // wraps one that starts with the aggregate magic, which the
        // processor would otherwise unpack into lines the plugin never
        // counted against its output cap.
        return generated
            .flat_map(|(key, data)| {
                let partition_key = stream_key(feed, key);
                aggregate::pack([data], data.len(), usize::MAX)
                    .into_iter()
                    .map(move |p| StreamRecord {
                        partition_key: partition_key.clone(),
                        data: p.data,
                    })
            })
            .collect();
    }
    // Keys in the order of their first record.
    let mut keys: Vec<(&str, Vec<&[u8]>, usize)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (key, data) in generated {
        let i = *index.entry(key).or_insert_with(|| {
            keys.push((key, Vec::new(), 0));
            keys.len() - 1
        });
        keys[i].1.push(data);
        keys[i].2 += data.len();
    }
    let mut out = Vec::with_capacity(keys.len());
    for (key, lines, bytes) in keys {
        let partition_key = stream_key(feed, key);
        for packed in aggregate::pack(lines, bytes, aggregate::MAX_RECORD_BYTES) {
            out.push(StreamRecord {
                partition_key: partition_key.clone(),
                data: packed.data,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated<'a>(key: &'a str, data: &'a str) -> (&'a str, &'a [u8]) {
        (key, data.as_bytes())
    }

    fn left(b: &Budgets, feed: &str) -> u64 {
        b.of(feed).claim(u64::MAX)
    }

    fn share(name: &str, done: u64, rate: u64) -> FeedShare {
        FeedShare {
            name: name.into(),
            done,
            rate,
        }
    }

    #[test]
    fn what_is_left_of_max_records_is_shared_by_rate() {
        let feeds = [share("a", 0, 1), share("b", 0, 1), share("c", 0, 1)];
        let b = Budgets::shared(Some(400), &feeds);
        assert_eq!(
            (left(&b, "a"), left(&b, "b"), left(&b, "c")),
            (134, 133, 133)
        );
        assert_eq!(left(&b, "a"), 0, "a claimed share is gone");
        assert_eq!(left(&b, "added-by-reload"), 0, "a later feed has no share");
        // The shipped pipeline's rates: 2,000 + 2,000 + 200 records per
        // 10 ms; the shares are used up together.
        let rate = |n| FeedShare::rate_of(n, Duration::from_millis(10));
        assert_eq!(rate(2000), 200_000_000);
        let feeds = [
            share("forex", 0, rate(2000)),
            share("stock", 0, rate(2000)),
            share("news", 0, rate(200)),
        ];
        let b = Budgets::shared(Some(1_000_000), &feeds);
        assert_eq!(
            (left(&b, "forex"), left(&b, "stock"), left(&b, "news")),
            (476_191, 476_190, 47_619)
        );
        // What earlier runs made counts against the total, not a feed.
        let before = [share("a", 250, 1), share("b", 100, 1)];
        let b = Budgets::shared(Some(400), &before);
        assert_eq!((left(&b, "a"), left(&b, "b")), (25, 25));
        let b = Budgets::shared(Some(400), &[share("a", 500, 1)]);
        assert_eq!(left(&b, "a"), 0);
        let b = Budgets::shared(None, &feeds);
        assert_eq!(left(&Budgets::unlimited(), "a"), u64::MAX);
        assert_eq!(left(&b, "z"), u64::MAX);
        assert_eq!(apportion(5, &[0, 0]), vec![3, 2]);
    }

    #[test]
    fn a_tick_is_one_aggregated_record_per_key_in_order() {
        let tick = vec![
            generated("EUR/USD", "a1"),
            generated("GBP/USD", "b1"),
            generated("EUR/USD", "a2"),
            generated("USD/JPY", "c1"),
            generated("EUR/USD", "a3"),
            generated("GBP/USD", "b2"),
        ];
        let out = stream_records("forex", tick.iter().copied(), true);
        let keys: Vec<_> = out.iter().map(|r| r.partition_key.as_str()).collect();
        assert_eq!(keys, ["forex:EUR/USD", "forex:GBP/USD", "forex:USD/JPY"]);
        let lines = |r: &StreamRecord| -> Vec<String> {
            match aggregate::decode(&r.data) {
                Ok(lines) => lines
                    .iter()
                    .map(|l| String::from_utf8(l.to_vec()).unwrap())
                    .collect(),
                Err(_) => vec![String::from_utf8(r.data.clone()).unwrap()],
            }
        };
        assert_eq!(lines(&out[0]), ["a1", "a2", "a3"]);
        assert_eq!(lines(&out[1]), ["b1", "b2"]);
        // A key with one record stays a plain record.
        assert!(!aggregate::is_aggregate(&out[2].data));
        assert_eq!(out[2].data, b"c1");

        let plain = stream_records("forex", tick.into_iter(), false);
        assert_eq!(plain.len(), 6);
        assert_eq!(plain[2].partition_key, "forex:EUR/USD");
        assert_eq!(plain[2].data, b"a2");
    }

    #[test]
    fn a_generated_record_that_looks_like_an_aggregate_is_delivered_as_one_line() {
        // A generator's record that is itself a valid aggregate of 1,000
        // lines: stored plain, the processor would unpack 1,000 lines.
        let lines: Vec<&[u8]> = vec![b"x"; 1000];
        let forged = aggregate::pack(lines, 1000, aggregate::MAX_RECORD_BYTES)
            .remove(0)
            .data;
        for aggregated in [true, false] {
            let out = stream_records("f", std::iter::once(("K", forged.as_slice())), aggregated);
            assert_eq!(out.len(), 1);
            let got = aggregate::decode(&out[0].data).expect("wrapped as an aggregate");
            assert_eq!(got, vec![forged.as_slice()], "aggregate = {aggregated}");
        }
        // An ordinary lone record stays plain.
        let out = stream_records("f", std::iter::once(("K", &b"a1"[..])), false);
        assert_eq!(out[0].data, b"a1");
    }

    #[test]
    fn an_aggregate_never_exceeds_the_stream_record_size() {
        let big = "x".repeat(300 * 1024);
        let tick: Vec<_> = (0..7).map(|_| generated("K", &big)).collect();
        let out = stream_records("news", tick.into_iter(), true);
        assert!(out.len() >= 3, "{} records", out.len());
        assert!(
            out.iter()
                .all(|r| r.data.len() <= aggregate::MAX_RECORD_BYTES)
        );
        let total: usize = out.iter().map(|r| aggregate::lines_in(&r.data)).sum();
        assert_eq!(total, 7);
    }
}
