//! The running pipeline: one task per stage, joined by the durable stream
//! and queue and by bounded channels inside the processor.
//!
//! [`Pipeline`] (pipeline.rs) owns the stages and one cancellation tree:
//! `start`, `reload`, `stop`. `run` (run.rs) and `serve` (serve.rs) are its
//! callers: they start it, wait for signals and reload triggers
//! (triggers.rs), and stop it. engine.rs sizes the plugin engine and loads
//! every plugin before anything starts; feed_tasks.rs keeps one task per
//! feed generator.
//!
//! ```text
//! feeds (1 task per generator) ─put─▶ stream ─read─▶ bridge (1 task per shard)
//!   ─send+checkpoint─▶ queue ─receive─▶ fetcher ─bounded channel─▶ workers
//!   ─▶ object store ─▶ notifier ─▶ delete message
//! ```
//!
//! Shutdown (Ctrl-C, SIGTERM, `--duration`) runs front to back: feeds stop
//! ticking, the bridge flushes its open batches, the processor finishes the
//! batches it holds. With `--max-records`, the run ends once that many
//! records were generated and every one of them has left the queue.

pub mod bridge;
pub mod chains;
pub mod dev;
mod engine;
mod feed_tasks;
pub mod feeds;
pub mod lambda;
mod pipeline;
pub mod process;
pub mod processor;
pub mod reload;
mod run;
mod serve;
mod triggers;

pub use pipeline::{Pipeline, ReloadOutcome, StartOptions};
pub use run::run;
pub use serve::serve;

use std::time::Duration;

use crate::telemetry::stats::Snapshot;

/// How long to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Stop (gracefully) after this long.
    pub duration: Option<Duration>,
    /// Generate this many records in total, then stop once all are processed.
    pub max_records: Option<u64>,
    /// Draw the status line (only on a terminal).
    pub status: bool,
    /// Reload when pipeline.toml or a plugin file changes (SIGHUP always does).
    pub watch: bool,
    /// Also watch the plugins' source crates and rebuild them on change.
    pub dev: bool,
    /// Which stages this process runs (all by default). On AWS, stages can
    /// run in separate processes: the feeds and web server in one service,
    /// the bridge (one instance) in another, processors where convenient.
    pub stages: Stages,
}

/// The stages of `pipehost run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stages {
    /// The generators' schedules and the web server.
    pub feeds: bool,
    pub bridge: bool,
    pub processor: bool,
}

impl Stages {
    /// `pipehost serve`: the feeds and the web server, nothing downstream.
    pub const PRODUCER: Stages = Stages {
        feeds: true,
        bridge: false,
        processor: false,
    };
}

impl Default for Stages {
    fn default() -> Self {
        Self {
            feeds: true,
            bridge: true,
            processor: true,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub stats: Snapshot,
    pub elapsed: Duration,
    /// The run ended because everything asked for was processed.
    pub drained: bool,
}

/// Runs plugin work from async code. Plugin calls must never run on an
/// async worker thread: wasmtime-wasi's synchronous bindings block on a
/// future for every WASI call the guest makes, which panics there.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}
