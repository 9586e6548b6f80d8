//! The sandboxed plugin host.
//!
//! Everything format-specific in pipehost — generating, parsing and
//! transforming records — runs as a WebAssembly component that targets one
//! of the worlds in `wit/plugin.wit`. This module is the only code that knows
//! wasmtime; it knows nothing of stream, queue or storage backends.
//!
//! ```text
//!  PluginEngine::new(EngineSettings)        one per process: Engine + Linker + epoch ticker
//!      └─ .load::<Parser>(path, PluginSettings) -> Plugin<Parser>  (= ParserPlugin)
//!             read → header check → compile (cache) → world/version check → link
//!             └─ .instantiate(config_json) -> PluginInstance<Parser>  (calls init)
//!                    └─ .parse_batch(raw)
//! ```
//!
//! The role is a type ([`Parser`], [`Transform`], [`Generator`]): a
//! [`ParserInstance`] has `parse_batch`, a [`TransformInstance`]
//! `transform_batch`, a [`GeneratorInstance`] `generate`, and asking one for
//! another's call does not compile. [`PluginEngine::load_any`] loads a plugin
//! whose role is known only at run time, as an [`AnyPlugin`].
//!
//! Files: `load.rs` (loading, [`Plugin`], [`PluginInfo`]), `instance.rs`
//! (what every call goes through: deadline, memory cap, output caps,
//! replacement after a failure, quarantine, recycling), `role.rs` and one
//! file per role (`parser.rs`, `transform.rs`, `generator.rs`: the role's
//! calls, dispatched on the contract version once per call), `legacy.rs`
//! (the `0.1.0` conversions).
//!
//! Batches cross the boundary in the columns of contract `0.2.0`
//! ([`batch`]): a [`RawBatch`] in, an [`EventBatch`] out of a parser and in
//! and out of every transform, checked once per call, read through views.
//! [`Chain`] runs a parser and its transforms over one batch without
//! building per-event structs in between. Plugins built against the frozen
//! `0.1.0` are converted inside this module (`legacy.rs`), so callers never
//! know which version a plugin speaks and a chain may mix them.
//! A parser instance's `parse` and a transform instance's `transform` take
//! and give owned events, for fixtures and tests.
//!
//! A `PluginInstance` is not `Sync`: give each worker its own. Calls cross the
//! boundary once per batch.

pub mod batch;
mod bindings;
mod bindings_v0_1;
mod cache;
mod chain;
mod deadline;
mod engine;
mod error;
mod generator;
mod guest_log;
mod instance;
mod legacy;
mod load;
mod parser;
mod role;
mod state;
mod transform;

use std::time::Duration;

pub use batch::{
    BatchOutcome, Event, EventBatch, EventBatchBuilder, EventView, Field, Generated,
    GeneratedBatch, Outcome, Parsed, RawBatch, RawRecord, RawView, Source, Tick, Transformed,
    Value, ValueRef,
};
pub use chain::{Chain, Rejected, Stage};
pub use engine::{EPOCH_TICK, EngineSettings, PluginEngine, default_cache_dir};
pub use error::PluginError;
pub use generator::{GeneratorInstance, GeneratorPlugin};
pub use guest_log::LogLimits;
pub use instance::{InstanceStats, PluginInstance};
pub use load::{
    CONTRACT_VERSION, CONTRACT_VERSIONS, Inspection, PACKAGE, content_hash, supported_contract,
};
pub use parser::{ParserInstance, ParserPlugin};
pub use role::{AnyPlugin, Generator, Parser, Plugin, PluginInfo, Role, Transform};
pub use transform::{TransformInstance, TransformPlugin};

/// The three plugin roles, one world each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    Generator,
    Parser,
    Transform,
}

impl PluginKind {
    pub const ALL: [PluginKind; 3] = [Self::Generator, Self::Parser, Self::Transform];

    /// The world a plugin of this kind targets.
    pub fn world(self) -> &'static str {
        match self {
            Self::Generator => "generator-plugin",
            Self::Parser => "parser-plugin",
            Self::Transform => "transform-plugin",
        }
    }

    /// The interface such a plugin exports.
    pub fn interface(self) -> &'static str {
        match self {
            Self::Generator => "generator",
            Self::Parser => "parser",
            Self::Transform => "transformer",
        }
    }

    /// The short name used in pipeline.toml and fixtures.
    pub fn name(self) -> &'static str {
        match self {
            Self::Generator => "generator",
            Self::Parser => "parser",
            Self::Transform => "transform",
        }
    }

    /// Parses the short name.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Which kind an export name like `pipehost:plugin/parser@0.2.0` is.
    pub fn from_export(export: &str) -> Option<Self> {
        let rest = export.strip_prefix(PACKAGE)?.strip_prefix('/')?;
        let iface = rest.split('@').next()?;
        Self::ALL.into_iter().find(|k| k.interface() == iface)
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Per-plugin limits (from pipeline.toml; the defaults suit most plugins).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSettings {
    /// Deadline for one call (one batch, or `init`). Enforced on wasm code by
    /// epoch interruption (rounded up to the next [`EPOCH_TICK`]) and on the
    /// blocking WASI calls (`poll`, sleeps, blocking stream I/O) by a timer.
    pub timeout: Duration,
    /// Most linear memory an instance may use, in bytes.
    pub memory_cap: usize,
    /// Most events (or generated records) one call may return.
    pub max_output_records: usize,
    /// Most bytes (approximate payload size) one call may return.
    pub max_output_bytes: usize,
    /// An instance is replaced by a fresh one after this many calls.
    pub recycle_after_calls: u64,
    /// Caps on the plugin's log output.
    pub log: LogLimits,
}

impl Default for PluginSettings {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            memory_cap: 64 << 20,
            max_output_records: 1_000_000,
            max_output_bytes: 256 << 20,
            recycle_after_calls: 100_000,
            log: LogLimits::default(),
        }
    }
}
