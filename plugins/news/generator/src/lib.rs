//! pipehost generator plugin for the news feed: deterministic logfmt
//! headlines. The logic lives in [`logic`] (plain Rust, callable natively);
//! this file only binds the `generator-plugin` world to it.

pub mod logic;

pub use exports::pipehost::plugin::generator::{Generated, Tick};
pub use logic::Generator;

use pipehost_guest::{Instance, host, log};
use std::sync::Arc;

wit_bindgen::generate!({
    path: "../../../wit",
    world: "generator-plugin",
    with: {
        "pipehost:plugin/host@0.1.0": pipehost_guest::host,
    },
    additional_derives: [PartialEq],
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
        log::debug(&format!("news generator ready: {}", generator.describe()));
        INSTANCE.set(generator);
        Ok(())
    }

    fn generate(tick: Tick) -> Result<Vec<Generated>, String> {
        instance()?.generate(&tick)
    }
}

// Natively the crate is an rlib for tests and benchmarks; exporting the
// component symbols there would clash between plugins linked together.
#[cfg(target_arch = "wasm32")]
export!(Component);
