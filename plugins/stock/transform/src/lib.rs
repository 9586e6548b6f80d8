//! pipehost transform plugin for the stock feed: rejects bad prices, filters
//! small trades, derives `pct_change` and `batch_vwap`. The logic lives in
//! [`logic`] (plain Rust, callable natively); this file only binds the
//! `transform-plugin` world to it.

pub mod logic;

pub use logic::Transform;
pub use pipehost_guest::types::{Event, Field, Outcome, Value};

use pipehost_guest::{Instance, abi, host, log, wit};
use std::sync::Arc;

wit_bindgen::generate!({
    path: "../../../wit/plugin.wit",
    world: "transform-plugin",
    with: {
        "pipehost:plugin/types@0.2.0": pipehost_guest::wit,
        "pipehost:plugin/host@0.2.0": pipehost_guest::host,
    },
});

static INSTANCE: Instance<Transform> = Instance::new();

fn instance() -> Result<Arc<Transform>, String> {
    INSTANCE.get_or_try_init(|| Transform::from_config_json(&host::config()))
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Component;

impl exports::pipehost::plugin::transformer::Guest for Component {
    fn init() -> Result<(), String> {
        let transform = Transform::from_config_json(&host::config())?;
        log::debug(&format!("stock transform ready: {}", transform.describe()));
        INSTANCE.set(transform);
        Ok(())
    }

    fn transform(batch: wit::EventBatch) -> wit::Transformed {
        abi::transform(batch, |events| match instance() {
            Ok(transform) => transform.transform(events),
            Err(reason) => events
                .iter()
                .map(|_| Outcome::Fail(reason.clone()))
                .collect(),
        })
    }
}

// Natively the crate is an rlib for tests and benchmarks; exporting the
// component symbols there would clash between plugins linked together.
#[cfg(target_arch = "wasm32")]
export!(Component);
