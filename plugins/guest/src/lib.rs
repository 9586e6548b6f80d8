//! Guest SDK for pipehost plugins.
//!
//! This crate binds the `plugin-base` world of `wit/plugin.wit`
//! (`pipehost:plugin@0.2.0`) once, so that every plugin crate shares one set
//! of WIT types ([`wit`]) and host functions ([`host`]).
//!
//! A plugin is its logic — a plain Rust type implementing [`Plugin`] and
//! one role, [`ParserPlugin`], [`TransformPlugin`] or [`GeneratorPlugin`]
//! — and one line in its `lib.rs` that exports it as a component:
//!
//! ```ignore
//! pub mod logic;
//! pub use logic::Parser;
//!
//! pipehost_guest::export_parser!(Parser);
//! ```
//!
//! ([`export_transform!`] and [`export_generator!`] for the other roles;
//! see [`plugin`]). The WIT types carry a batch in columns (every string
//! once per batch, every per-event, per-field and per-record column a list
//! of one primitive type, under the contract of [`pipehost_abi`], which the
//! host checks with too); plugin logic never sees them: it works with the
//! plain Rust types of [`types`] — [`types::Event`], [`types::Field`],
//! [`types::Value`], [`types::RawRecord`], [`types::Outcome`],
//! [`types::Generated`] — and [`abi`] converts in one pass each way.
//!
//! Everything else here is plain Rust that runs natively too: configuration
//! decoding ([`config`]), RFC 3339 timestamps ([`time`]), a deterministic PRNG
//! and a stable hash ([`rng`]), event builders and getters ([`event`]),
//! JSON and line splitting for parsers ([`json`], [`record`]), generator
//! arithmetic ([`generate`]),
//! name checks shared by the feeds ([`names`]) and helpers for the plugins'
//! native tests ([`testing`]).
//!
//! **Native pitfall:** calling a WIT import ([`host::log`], [`host::config`])
//! from natively compiled code aborts the process. Only the thin binding
//! layer of a plugin may call [`load_config`] or the [`log`] helpers; plugin
//! logic takes its configuration as an argument.

mod bindings {
    wit_bindgen::generate!({
        path: "../../wit/plugin.wit",
        world: "plugin-base",
        additional_derives: [PartialEq],
    });
}

pub use bindings::pipehost::plugin::host;

/// Every plugin built with the SDK allocates through size classes (see
/// [`allocator`]); natively the tests keep the standard allocator.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: allocator::SizeClasses = allocator::SizeClasses::new();
/// The WIT types of `pipehost:plugin/types@0.2.0`: batches in columns.
pub use bindings::pipehost::plugin::types as wit;

pub mod abi;
pub mod allocator;
pub mod config;
pub mod event;
pub mod generate;
pub mod json;
mod name;
pub mod names;
pub mod plugin;
pub mod record;
pub mod rng;
pub mod testing;
pub mod time;
pub mod types;

pub use config::{config, load_config};
pub use plugin::{GeneratorPlugin, ParserPlugin, Plugin, TransformPlugin};

/// What the export macros expand to needs, reachable from any plugin crate.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;
}

use std::sync::{Arc, Mutex};

/// Levelled logging through the host. **Wasm only**: these call the
/// `host.log` import, which aborts when called from native code.
pub mod log {
    use crate::host::{self, Level};

    /// Logs `message` at `level`.
    pub fn log(level: Level, message: &str) {
        host::log(level, message);
    }
    /// Logs at `trace` level.
    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    /// Logs at `debug` level.
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    /// Logs at `info` level.
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    /// Logs at `warn` level.
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    /// Logs at `error` level.
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The configured plugin instance, kept in a `static` between calls.
///
/// `init` stores the instance with [`Instance::set`]; every later call gets
/// it with [`Instance::get_or_try_init`], which builds it lazily (with the same
/// constructor) if the host never called `init`.
pub struct Instance<T> {
    slot: Mutex<Option<Arc<T>>>,
}

impl<T> Instance<T> {
    /// An empty slot, usable in a `static`.
    pub const fn new() -> Self {
        Instance {
            slot: Mutex::new(None),
        }
    }

    /// Stores `value`, replacing any earlier instance.
    pub fn set(&self, value: T) {
        *self.lock() = Some(Arc::new(value));
    }

    /// The stored instance, built with `init` first if there is none. An error
    /// from `init` is returned and nothing is stored, so a later call retries.
    pub fn get_or_try_init(
        &self,
        init: impl FnOnce() -> Result<T, String>,
    ) -> Result<Arc<T>, String> {
        let mut slot = self.lock();
        if let Some(value) = slot.as_ref() {
            return Ok(Arc::clone(value));
        }
        let value = Arc::new(init()?);
        *slot = Some(Arc::clone(&value));
        Ok(value)
    }

    /// Whether an instance is stored.
    pub fn is_set(&self) -> bool {
        self.lock().is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Arc<T>>> {
        // A panic while holding the lock cannot leave the Option torn.
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T> Default for Instance<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_initialises_lazily_once() {
        static SLOT: Instance<u32> = Instance::new();
        assert!(!SLOT.is_set());
        assert_eq!(
            SLOT.get_or_try_init(|| Err("bad".into())).unwrap_err(),
            "bad"
        );
        assert!(!SLOT.is_set());
        assert_eq!(*SLOT.get_or_try_init(|| Ok(7)).unwrap(), 7);
        assert_eq!(*SLOT.get_or_try_init(|| Ok(8)).unwrap(), 7);
        SLOT.set(9);
        assert_eq!(*SLOT.get_or_try_init(|| Ok(10)).unwrap(), 9);
    }

    #[test]
    fn types_compare_with_partial_eq() {
        let a = types::Field {
            name: "bid".into(),
            value: types::Value::Float(1.5),
        };
        assert_eq!(a.clone(), a);
    }
}
