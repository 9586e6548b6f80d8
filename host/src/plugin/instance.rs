//! A live plugin instance: one Store, reused across batches.
//!
//! Every call runs under the plugin's deadline (epoch) and memory cap. When a
//! call fails (trap, deadline, memory cap, broken contract) the Store is
//! dropped — a trapped instance is poisoned — and the next call gets a fresh
//! one from the pre-linked component, transparently. A plugin that fails
//! many calls in a row is quarantined with exponential backoff so a crash
//! loop cannot eat the host. Instances are also recycled after a number of
//! calls or past a memory high-water mark, since linear memory never shrinks.
//!
//! [`PluginInstance`] is generic over the plugin's role; the calls a role
//! has (and their conversion at each contract version) are in the role's
//! file, built on [`PluginInstance::call`] here.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;

use super::PluginSettings;
use super::batch;
use super::deadline::DeadlineExceeded;
use super::engine::EPOCH_TICK;
use super::error::{GUEST_ERROR_BYTES, PluginError};
use super::guest_log::{GuestLog, guest_text};
use super::role::Plugin;
use super::role::Role;
use super::state::HostState;
use crate::util::backoff::Backoff;

/// Failed calls in a row before the plugin is quarantined.
const QUARANTINE_AFTER: u32 = 5;
/// Quarantine periods: 500 ms, doubling per further failure, up to 60 s
/// (the ceilings of the crate's one backoff policy, without jitter: a
/// quarantine is a fixed rest, not a retry race).
const QUARANTINE: Backoff = Backoff {
    first: Duration::from_millis(500),
    cap: Duration::from_secs(60),
};

struct Live<G> {
    store: Store<HostState>,
    guest: G,
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

/// A plugin of the role `R` bound to its configuration, with a live
/// instance. Its calls are the role's (`parser.rs`, `transform.rs`,
/// `generator.rs`); everything around a call is here.
pub struct PluginInstance<R: Role> {
    plugin: Plugin<R>,
    config: Arc<str>,
    live: Option<Live<R::Guest>>,
    consecutive_failures: u32,
    quarantined_until: Option<Instant>,
    stats: InstanceStats,
}

impl<R: Role> std::fmt::Debug for PluginInstance<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginInstance")
            .field("plugin", &self.plugin)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<R: Role> Plugin<R> {
    /// Instantiates the plugin with its configuration (a JSON object) and
    /// calls its `init`. A refused configuration, or a plugin that traps in
    /// `init`, is an error here — the load-time gate.
    pub fn instantiate(&self, config_json: &str) -> Result<PluginInstance<R>, PluginError> {
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

impl<R: Role> PluginInstance<R> {
    pub fn plugin(&self) -> &Plugin<R> {
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
    fn ensure_live(&mut self) -> Result<&mut Live<R::Guest>, PluginError> {
        if self.live.is_none() {
            let live = self.new_live()?;
            self.live = Some(live);
        }
        Ok(self.live.as_mut().expect("just set"))
    }

    fn new_live(&mut self) -> Result<Live<R::Guest>, PluginError> {
        let info = &self.plugin.info;
        let settings = &info.settings;
        let log = GuestLog::new(info.name.clone(), settings.log);
        let state = HostState::new(self.config.clone(), settings.memory_cap, log);
        let mut store = Store::new(info.engine.engine(), state);
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(self.deadline_ticks());
        store.data_mut().start_call(settings.timeout);
        self.stats.instantiations += 1;

        let instance = match info.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => return Err(self.classify(&mut store, e)),
        };
        let guest = R::guest(&self.plugin.exports, &mut store, &instance).map_err(|e| {
            PluginError::Instantiate {
                plugin: self.name(),
                detail: format!("{e:#}"),
            }
        })?;
        store.set_epoch_deadline(self.deadline_ticks());
        store.data_mut().start_call(settings.timeout);
        let init = R::init(&guest, &mut store);
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

    /// Runs one call on a live instance with all the policies around it:
    /// `f` makes the call, `check` holds its answer to the output caps.
    pub(super) fn call<A>(
        &mut self,
        f: impl FnOnce(&mut Store<HostState>, &R::Guest) -> wasmtime::Result<A>,
        check: impl FnOnce(&A, &PluginSettings) -> Result<(), String>,
    ) -> Result<A, PluginError> {
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
            let backoff = QUARANTINE.ceiling(self.consecutive_failures - QUARANTINE_AFTER);
            self.quarantined_until = Some(Instant::now() + backoff);
            tracing::error!(
                plugin = self.plugin.name(),
                "plugin quarantined for {backoff:?} after {} consecutive failures",
                self.consecutive_failures
            );
        }
    }

    fn retire(&mut self, live: Live<R::Guest>) {
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

    /// Fails the call for an answer that breaks the contract: the
    /// instance is replaced like after a trap.
    pub(super) fn contract(&mut self, detail: String) -> PluginError {
        let err = PluginError::Contract {
            plugin: self.name(),
            detail,
        };
        self.on_failure(&err);
        err
    }
}

fn flush_log(store: &Store<HostState>) {
    if let Ok(mut log) = store.data().log.lock() {
        log.flush();
    }
}

/// The output caps for a 0.2.0 answer: the events its columns claim, and
/// their bytes plus the reasons'.
pub(super) fn check_columns(
    events: &batch::wit::EventBatch,
    reasons: &[String],
    s: &PluginSettings,
) -> Result<(), String> {
    let reasons: usize = reasons.iter().map(String::len).sum();
    let bytes = batch::approx_bytes(events) + reasons;
    check_output(batch::claimed_events(events), "events", bytes, s)
}

/// The output caps: at most `max_output_records` `what` (events or
/// records) and `max_output_bytes` bytes in one answer.
pub(super) fn check_output(
    n: usize,
    what: &str,
    bytes: usize,
    s: &PluginSettings,
) -> Result<(), String> {
    if n > s.max_output_records {
        Err(format!(
            "{n} {what}, over the cap of {}",
            s.max_output_records
        ))
    } else if bytes > s.max_output_bytes {
        Err(format!(
            "{bytes} bytes, over the cap of {}",
            s.max_output_bytes
        ))
    } else {
        Ok(())
    }
}
