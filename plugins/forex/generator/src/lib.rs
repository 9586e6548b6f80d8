//! pipehost generator plugin for the forex feed: deterministic JSON Lines
//! quotes. The logic lives in [`logic`] (plain Rust, callable natively);
//! this file only binds the `generator-plugin` world to it.

pub mod logic;

pub use logic::Generator;
pub use pipehost_guest::types::{Generated, Tick};

use pipehost_guest::{Instance, abi, host, log, wit};
use std::sync::Arc;

wit_bindgen::generate!({
    path: "../../../wit/plugin.wit",
    world: "generator-plugin",
    with: {
        "pipehost:plugin/types@0.2.0": pipehost_guest::wit,
        "pipehost:plugin/host@0.2.0": pipehost_guest::host,
    },
});

static INSTANCE: Instance<Generator> = Instance::new();

fn instance() -> Result<Arc<Generator>, String> {
    INSTANCE.get_or_try_init(|| Generator::from_config_json(&host::config()))
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Component;

impl exports::pipehost::plugin::generator::Guest for Component {
    fn init() -> Result<(), String> {
        let generator = Generator::from_config_json(&host::config())?;
        log::debug(&format!("forex generator ready: {}", generator.describe()));
        INSTANCE.set(generator);
        Ok(())
    }

    fn generate(tick: Tick) -> Result<wit::GeneratedBatch, String> {
        abi::generate(tick, |tick| instance()?.generate(tick))
    }
}

// Natively the crate is an rlib for tests and benchmarks; exporting the
// component symbols there would clash between plugins linked together.
#[cfg(target_arch = "wasm32")]
export!(Component);
