//! A live plugin instance: one Store, reused across batches.
//!
//! Every call runs under the plugin's deadline (epoch) and memory cap. When a
//! call fails (trap, deadline, memory cap, broken contract) the Store is
//! dropped — a trapped instance is poisoned — and the next call gets a fresh
//! one from the pre-linked component, transparently. A plugin that fails
//! many calls in a row is quarantined with exponential backoff so a crash
//! loop cannot eat the host. Instances are also recycled after a number of
//! calls or past a memory high-water mark, since linear memory never shrinks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::batch::{
    self, Event, EventBatch, GeneratedBatch, Outcome, Parsed, RawBatch, RawRecord, Tick,
    Transformed,
};
use super::bindings::exports::pipehost::plugin::{generator, parser, transformer};
use super::bindings_v0_1::exports::pipehost::plugin::{
    generator as generator_v0_1, parser as parser_v0_1, transformer as transformer_v0_1,
};
use super::deadline::DeadlineExceeded;
use super::engine::EPOCH_TICK;
use super::error::{GUEST_ERROR_BYTES, PluginError};
use super::guest_log::{GuestLog, guest_text};
use super::legacy;
use super::load::{Exports, Plugin};
use super::state::HostState;

/// Failed calls in a row before the plugin is quarantined.
const QUARANTINE_AFTER: u32 = 5;
/// First quarantine period; doubles per further failure, up to the maximum.
const QUARANTINE_BASE: Duration = Duration::from_millis(500);
const QUARANTINE_MAX: Duration = Duration::from_secs(60);

enum Guest {
    Generator(generator::Guest),
    Parser(parser::Guest),
    Transformer(transformer::Guest),
    GeneratorV0_1(generator_v0_1::Guest),
    ParserV0_1(parser_v0_1::Guest),
    TransformerV0_1(transformer_v0_1::Guest),
}

struct Live {
    store: Store<HostState>,
    guest: Guest,
    calls: u64,
}

/// Counters over an instance handle's life (across replacements).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct InstanceStats {
    pub calls: u64,
    pub failures: u64,
    /// Fresh instances created (the first one included).
    pub instantiations: u64,
    /// Instances replaced after a failure.
    pub replacements: u64,
    /// Instances retired by the recycling policy.
    pub recycled: u64,
    pub log_messages_dropped: u64,
}

/// A plugin bound to its configuration, with a live instance.
pub struct PluginInstance {
    plugin: Plugin,
    config: Arc<str>,
    live: Option<Live>,
    consecutive_failures: u32,
    quarantined_until: Option<Instant>,
    stats: InstanceStats,
}

impl std::fmt::Debug for PluginInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field("plugin", &self.plugin)
            .field("stats", &self.stats)
            .finish()
    }
}

impl Plugin {
    /// Instantiates the plugin with its configuration (a JSON object) and
    /// calls its `init`. A refused configuration, or a plugin that traps in
    /// `init`, is an error here — the load-time gate.
    pub fn instantiate(&self, config_json: &str) -> Result<PluginInstance, PluginError> {
        let mut instance = PluginInstance {
            plugin: self.clone(),
            config: Arc::from(config_json),
            live: None,
            consecutive_failures: 0,
            quarantined_until: None,
            stats: InstanceStats::default(),
        };
        instance.ensure_live()?;
        Ok(instance)
    }
}

impl PluginInstance {
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// Counters so far, including the live instance's dropped log messages.
    pub fn stats(&self) -> InstanceStats {
        let mut stats = self.stats.clone();
        if let Some(live) = &self.live
            && let Ok(log) = live.store.data().log.lock()
        {
            stats.log_messages_dropped += log.dropped_total;
        }
        stats
    }

    /// True when a live instance is ready (none after a failure or recycling
    /// until the next call creates one).
    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    fn name(&self) -> String {
        self.plugin.name().to_string()
    }

    fn deadline_ticks(&self) -> u64 {
        let timeout = self.plugin.settings().timeout;
        (timeout.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64 + 1
    }

    /// Creates the Store and instance and runs `init`.
    fn ensure_live(&mut self) -> Result<&mut Live, PluginError> {
        if self.live.is_none() {
            let live = self.new_live()?;
            self.live = Some(live);
        }
        Ok(self.live.as_mut().expect("just set"))
    }

    fn new_live(&mut self) -> Result<Live, PluginError> {
        let inner = &self.plugin.inner;
        let settings = &inner.settings;
        let log = GuestLog::new(inner.name.clone(), settings.log);
        let state = HostState::new(self.config.clone(), settings.memory_cap, log);
        let mut store = Store::new(inner.engine.engine(), state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(self.deadline_ticks());
        store.data_mut().start_call(settings.timeout);
        self.stats.instantiations += 1;

        let instance = match inner.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => return Err(self.classify(&mut store, e)),
        };
        let loaded = match &inner.exports {
            Exports::Generator(ix) => ix.load(&mut store, &instance).map(Guest::Generator),
            Exports::Parser(ix) => ix.load(&mut store, &instance).map(Guest::Parser),
            Exports::Transformer(ix) => ix.load(&mut store, &instance).map(Guest::Transformer),
            Exports::GeneratorV0_1(ix) => ix.load(&mut store, &instance).map(Guest::GeneratorV0_1),
            Exports::ParserV0_1(ix) => ix.load(&mut store, &instance).map(Guest::ParserV0_1),
            Exports::TransformerV0_1(ix) => {
                ix.load(&mut store, &instance).map(Guest::TransformerV0_1)
            }
        };
        let guest = loaded.map_err(|e| PluginError::Instantiate {
            plugin: self.name(),
            detail: format!("{e:#}"),
        })?;
        store.set_epoch_deadline(self.deadline_ticks());
        store.data_mut().start_call(settings.timeout);
        let init = match &guest {
            Guest::Generator(g) => g.call_init(&mut store),
            Guest::Parser(g) => g.call_init(&mut store),
            Guest::Transformer(g) => g.call_init(&mut store),
            Guest::GeneratorV0_1(g) => g.call_init(&mut store),
            Guest::ParserV0_1(g) => g.call_init(&mut store),
            Guest::TransformerV0_1(g) => g.call_init(&mut store),
        };
        flush_log(&store);
        match init {
            Ok(Ok(())) => Ok(Live {
                store,
                guest,
                calls: 0,
            }),
            Ok(Err(reason)) => Err(PluginError::InitRejected {
                plugin: self.name(),
                reason: guest_text(&reason, GUEST_ERROR_BYTES),
            }),
            Err(e) => Err(self.classify(&mut store, e)),
        }
    }

    /// Turns a wasmtime error into the most specific [`PluginError`].
    fn classify(&self, store: &mut Store<HostState>, e: wasmtime::Error) -> PluginError {
        let plugin = self.name();
        let state = store.data_mut();
        if state.timed_out || e.downcast_ref::<DeadlineExceeded>().is_some() {
            return PluginError::Timeout {
                plugin,
                limit: self.plugin.settings().timeout,
            };
        }
        if let Some(wanted) = state.memory.refused {
            return PluginError::MemoryCap {
                plugin,
                cap: state.memory.cap,
                wanted,
            };
        }
        let stderr = state
            .log
            .lock()
            .map(|mut l| {
                l.flush();
                guest_text(l.take_stderr_tail().trim(), GUEST_ERROR_BYTES)
            })
            .unwrap_or_default();
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => PluginError::Timeout {
                plugin,
                limit: self.plugin.settings().timeout,
            },
            Some(trap) => PluginError::Trap {
                plugin,
                trap: trap.to_string(),
                stderr,
            },
            None => PluginError::Trap {
                plugin,
                trap: guest_text(&e.root_cause().to_string(), GUEST_ERROR_BYTES),
                stderr,
            },
        }
    }

    /// Runs one call on a live instance with all the policies around it.
    fn call<R>(
        &mut self,
        f: impl FnOnce(&mut Store<HostState>, &Guest) -> wasmtime::Result<R>,
        check: impl FnOnce(&R, &PluginSettings) -> Result<(), String>,
    ) -> Result<R, PluginError> {
        if let Some(until) = self.quarantined_until {
            let now = Instant::now();
            if now < until {
                return Err(PluginError::Quarantined {
                    plugin: self.name(),
                    failures: self.consecutive_failures,
                    retry_in: until - now,
                });
            }
        }
        self.stats.calls += 1;
        let ticks = self.deadline_ticks();
        let timeout = self.plugin.settings().timeout;
        let out = match self.ensure_live() {
            Ok(live) => {
                live.calls += 1;
                live.store.set_epoch_deadline(ticks);
                live.store.data_mut().start_call(timeout);
                let out = f(&mut live.store, &live.guest);
                flush_log(&live.store);
                Ok(out)
            }
            Err(e) => Err(e),
        };
        let result = match out {
            Ok(Ok(value)) => match check(&value, self.plugin.settings()) {
                Ok(()) => Ok(value),
                Err(detail) => Err(PluginError::OutputTooLarge {
                    plugin: self.name(),
                    detail,
                }),
            },
            Ok(Err(e)) => {
                let mut live = self.live.take().expect("live");
                let err = self.classify(&mut live.store, e);
                self.retire(live);
                Err(err)
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(value) => {
                self.consecutive_failures = 0;
                self.quarantined_until = None;
                self.maybe_recycle();
                Ok(value)
            }
            Err(err) => {
                self.on_failure(&err);
                Err(err)
            }
        }
    }

    fn on_failure(&mut self, err: &PluginError) {
        if let Some(live) = self.live.take() {
            self.retire(live);
        }
        self.stats.failures += 1;
        self.stats.replacements += 1;
        self.consecutive_failures += 1;
        tracing::warn!(
            plugin = self.plugin.name(),
            kind = err.kind(),
            consecutive = self.consecutive_failures,
            "plugin call failed; the instance is discarded and will be replaced: {err}"
        );
        if self.consecutive_failures >= QUARANTINE_AFTER {
            let exp = (self.consecutive_failures - QUARANTINE_AFTER).min(16);
            let backoff = (QUARANTINE_BASE * 2u32.pow(exp)).min(QUARANTINE_MAX);
            self.quarantined_until = Some(Instant::now() + backoff);
            tracing::error!(
                plugin = self.plugin.name(),
                "plugin quarantined for {backoff:?} after {} consecutive failures",
                self.consecutive_failures
            );
        }
    }

    fn retire(&mut self, live: Live) {
        if let Ok(log) = live.store.data().log.lock() {
            self.stats.log_messages_dropped += log.dropped_total;
        }
    }

    fn maybe_recycle(&mut self) {
        let settings = self.plugin.settings();
        let Some(live) = &self.live else { return };
        let mem = &live.store.data().memory;
        let too_big = mem.high_water > settings.memory_cap / 4 * 3;
        if live.calls >= settings.recycle_after_calls || too_big {
            let live = self.live.take().expect("live");
            self.retire(live);
            self.stats.recycled += 1;
        }
    }

    fn is_current(&self) -> bool {
        matches!(
            self.plugin.inner.exports,
            Exports::Generator(_) | Exports::Parser(_) | Exports::Transformer(_)
        )
    }

    /// Generator: the records for one tick.
    pub fn generate(&mut self, tick: Tick) -> Result<GeneratedBatch, PluginError> {
        let out = if self.is_current() {
            let out = self.call(
                |store, guest| match guest {
                    Guest::Generator(g) => g.call_generate(store, tick),
                    _ => unreachable!("kind checked at load"),
                },
                |out, s| match out {
                    Ok(b) => check_len(
                        b.record_key.len().max(b.record_data_end.len()),
                        s.max_output_records,
                        "records",
                    )
                    .and_then(|_| {
                        let keys: usize = b.keys.iter().map(String::len).sum();
                        check_bytes(b.data.len() + keys, s.max_output_bytes)
                    }),
                    Err(_) => Ok(()),
                },
            )?;
            match out {
                Ok(cols) => Ok(GeneratedBatch::check(cols).map_err(|d| self.contract(d))?),
                Err(reason) => Err(reason),
            }
        } else {
            let out = self.call(
                |store, guest| match guest {
                    Guest::GeneratorV0_1(g) => g.call_generate(store, legacy::tick(tick)),
                    _ => unreachable!("kind checked at load"),
                },
                |out, s| match out {
                    Ok(records) => check_len(records.len(), s.max_output_records, "records")
                        .and_then(|_| {
                            let bytes: usize = records
                                .iter()
                                .map(|r| r.data.len() + r.partition_key.len())
                                .sum();
                            check_bytes(bytes, s.max_output_bytes)
                        }),
                    Err(_) => Ok(()),
                },
            )?;
            out.map(legacy::generated)
        };
        out.map_err(|reason| PluginError::GenerateFailed {
            plugin: self.name(),
            reason: guest_text(&reason, GUEST_ERROR_BYTES),
        })
    }

    /// Parser: one result per record of `batch`, in order, with the events
    /// in columns. The answer is checked (see [`Parsed`]); a plugin that
    /// breaks the contract fails the call with [`PluginError::Contract`].
    pub fn parse_batch(&mut self, batch: &RawBatch) -> Result<Parsed, PluginError> {
        let n = batch.len();
        if self.is_current() {
            let out = self.call(
                |store, guest| match guest {
                    Guest::Parser(g) => g.call_parse(store, &batch.cols),
                    _ => unreachable!("kind checked at load"),
                },
                |out, s| check_columns(&out.events, &out.reasons, s),
            )?;
            let events = EventBatch::check(out.events).map_err(|d| self.contract(d))?;
            Parsed::from_columns(events, out.record_events, out.rejected, out.reasons, n)
                .map_err(|d| self.contract(d))
        } else {
            let records = legacy::raw_records(batch);
            let out = self.call(
                |store, guest| match guest {
                    Guest::ParserV0_1(g) => g.call_parse(store, &records),
                    _ => unreachable!("kind checked at load"),
                },
                |out, s| {
                    let events: usize = out.iter().map(|r| r.as_ref().map_or(0, Vec::len)).sum();
                    check_len(events, s.max_output_records, "events")?;
                    let bytes: usize = out
                        .iter()
                        .map(|r| match r {
                            Ok(evs) => evs.iter().map(legacy::event_bytes).sum(),
                            Err(reason) => reason.len(),
                        })
                        .sum();
                    check_bytes(bytes, s.max_output_bytes)
                },
            )?;
            if out.len() != n {
                return Err(self.contract(format!(
                    "parse returned {} results for {n} records (must be one per record)",
                    out.len()
                )));
            }
            let (events, results) = legacy::parsed(out);
            Parsed::check(events, results, n).map_err(|d| self.contract(d))
        }
    }

    /// Transform: one outcome per event of `batch`, in order, with the
    /// output events in columns — ready to go into the next transform as
    /// they are. Checked like [`Self::parse_batch`].
    pub fn transform_batch(&mut self, batch: &EventBatch) -> Result<Transformed, PluginError> {
        let n = batch.len();
        if self.is_current() {
            let out = self.call(
                |store, guest| match guest {
                    Guest::Transformer(g) => g.call_transform(store, &batch.cols),
                    _ => unreachable!("kind checked at load"),
                },
                |out, s| check_columns(&out.events, &out.reasons, s),
            )?;
            let events = EventBatch::check(out.events).map_err(|d| self.contract(d))?;
            Transformed::from_columns(events, out.outcome_kind, out.outcome_events, out.reasons, n)
                .map_err(|d| self.contract(d))
        } else {
            let events = legacy::events(batch);
            let out = self.call(
                |store, guest| match guest {
                    Guest::TransformerV0_1(g) => g.call_transform(store, &events),
                    _ => unreachable!("kind checked at load"),
                },
                |out, s| {
                    use transformer_v0_1::Outcome;
                    let events: usize = out
                        .iter()
                        .map(|o| match o {
                            Outcome::Keep(_) => 1,
                            Outcome::Split(evs) => evs.len(),
                            Outcome::Drop | Outcome::Fail(_) => 0,
                        })
                        .sum();
                    check_len(events, s.max_output_records, "events")?;
                    let bytes: usize = out
                        .iter()
                        .map(|o| match o {
                            Outcome::Keep(e) => legacy::event_bytes(e),
                            Outcome::Split(evs) => evs.iter().map(legacy::event_bytes).sum(),
                            Outcome::Fail(reason) => reason.len(),
                            Outcome::Drop => 0,
                        })
                        .sum();
                    check_bytes(bytes, s.max_output_bytes)
                },
            )?;
            if out.len() != n {
                return Err(self.contract(format!(
                    "transform returned {} outcomes for {n} events (must be one per event)",
                    out.len()
                )));
            }
            let (events, outcomes) = legacy::transformed(out);
            Transformed::check(events, outcomes, n).map_err(|d| self.contract(d))
        }
    }

    /// Parser, on owned records: one result per record, in order. Records
    /// of different feeds or shards go in separate calls (a raw batch has
    /// one of each). For fixtures and tests; the processor uses
    /// [`Self::parse_batch`].
    pub fn parse(
        &mut self,
        records: &[RawRecord],
    ) -> Result<Vec<Result<Vec<Event>, String>>, PluginError> {
        let batches = RawBatch::from_records(records);
        if batches.is_empty() {
            // Still one call: an empty batch is a valid request.
            return Ok(self.parse_batch(&RawBatch::new("", ""))?.to_results());
        }
        let mut out = Vec::with_capacity(records.len());
        for b in &batches {
            out.extend(self.parse_batch(b)?.to_results());
        }
        Ok(out)
    }

    /// Transform, on owned events: one outcome per event, in order. For
    /// fixtures and tests; the processor uses [`Self::transform_batch`].
    pub fn transform(&mut self, events: &[Event]) -> Result<Vec<Outcome>, PluginError> {
        Ok(self
            .transform_batch(&EventBatch::from_events(events))?
            .to_outcomes())
    }

    fn contract(&mut self, detail: String) -> PluginError {
        let err = PluginError::Contract {
            plugin: self.name(),
            detail,
        };
        self.on_failure(&err);
        err
    }
}

use super::PluginSettings;

fn flush_log(store: &Store<HostState>) {
    if let Ok(mut log) = store.data().log.lock() {
        log.flush();
    }
}

/// The output caps for a 0.2.0 answer: the events its columns claim, and
/// their bytes plus the reasons'.
fn check_columns(
    events: &super::bindings::pipehost::plugin::types::EventBatch,
    reasons: &[String],
    s: &PluginSettings,
) -> Result<(), String> {
    check_len(
        batch::claimed_events(events),
        s.max_output_records,
        "events",
    )?;
    let reasons: usize = reasons.iter().map(String::len).sum();
    check_bytes(batch::approx_bytes(events) + reasons, s.max_output_bytes)
}

fn check_len(n: usize, max: usize, what: &str) -> Result<(), String> {
    if n > max {
        Err(format!("{n} {what}, over the cap of {max}"))
    } else {
        Ok(())
    }
}

fn check_bytes(n: usize, max: usize) -> Result<(), String> {
    if n > max {
        Err(format!("{n} bytes, over the cap of {max}"))
    } else {
        Ok(())
    }
}
