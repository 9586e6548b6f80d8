//! Errors of the plugin host: load-time refusals and call-time failures.
//!
//! Every variant names the plugin (its file) so a user can tell which one is
//! at fault. Load errors are final for that file; call errors leave the
//! plugin loaded (the instance that failed is replaced on the next call).

use std::path::PathBuf;
use std::time::Duration;

/// Most bytes of plugin-supplied text (an `init` or `generate` refusal, a
/// trap's stderr tail) kept in an error; the text is also escaped
/// (`guest_log::guest_text`), since errors reach logs and HTTP bodies.
pub(crate) const GUEST_ERROR_BYTES: usize = 2048;

/// Why a plugin could not be loaded or a call into it failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{path}: cannot read plugin: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "{path}: not a WebAssembly component ({detail}); build plugins for the \
         wasm32-wasip2 target, which emits a component"
    )]
    NotAComponent { path: PathBuf, detail: String },

    #[error("{path}: invalid component: {detail}")]
    Invalid { path: PathBuf, detail: String },

    #[error("{path}: expected a {expected} plugin (export `{export}`), found {found}")]
    WrongWorld {
        path: PathBuf,
        expected: &'static str,
        export: String,
        found: String,
    },

    #[error("{path}: the plugin needs imports this host does not provide: {detail}")]
    Link { path: PathBuf, detail: String },

    #[error("{plugin}: refused its configuration: {reason}")]
    InitRejected { plugin: String, reason: String },

    #[error("{plugin}: stopped after exceeding its {limit:?} call deadline")]
    Timeout { plugin: String, limit: Duration },

    #[error(
        "{plugin}: stopped after exceeding its memory cap of {cap} bytes (asked for {wanted} bytes)"
    )]
    MemoryCap {
        plugin: String,
        cap: usize,
        wanted: usize,
    },

    #[error("{plugin}: trapped: {trap}{}", stderr_suffix(.stderr))]
    Trap {
        plugin: String,
        trap: String,
        /// The tail of what the guest wrote to stderr (a Rust panic message).
        stderr: String,
    },

    #[error("{plugin}: returned too much output: {detail}")]
    OutputTooLarge { plugin: String, detail: String },

    #[error("{plugin}: broke the contract: {detail}")]
    Contract { plugin: String, detail: String },

    #[error("{plugin}: generate failed: {reason}")]
    GenerateFailed { plugin: String, reason: String },

    #[error(
        "{plugin}: quarantined after {failures} consecutive failed calls; \
         next attempt in {retry_in:?}"
    )]
    Quarantined {
        plugin: String,
        failures: u32,
        retry_in: Duration,
    },

    #[error("{plugin}: cannot instantiate: {detail}")]
    Instantiate { plugin: String, detail: String },
}

fn stderr_suffix(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(" (guest stderr: {s})")
    }
}

impl PluginError {
    /// A short stable name of the kind of error, for metrics and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Read { .. } => "read",
            Self::NotAComponent { .. } => "not_a_component",
            Self::Invalid { .. } => "invalid",
            Self::WrongWorld { .. } => "wrong_world",
            Self::Link { .. } => "link",
            Self::InitRejected { .. } => "init_rejected",
            Self::Timeout { .. } => "timeout",
            Self::MemoryCap { .. } => "memory_cap",
            Self::Trap { .. } => "trap",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::Contract { .. } => "contract",
            Self::GenerateFailed { .. } => "generate_failed",
            Self::Quarantined { .. } => "quarantined",
            Self::Instantiate { .. } => "instantiate",
        }
    }
}
