//! pipehost parser plugin for the stock feed: CSV trades → `stock`
//! events. The logic lives in [`logic`] (plain Rust, callable natively);
//! this file only binds the `parser-plugin` world to it.

pub mod csv;
pub mod logic;

pub use logic::Parser;
pub use pipehost_guest::types::{Event, Field, RawRecord, Source, Value};

use pipehost_guest::{Instance, abi, host, log, wit};
use std::sync::Arc;

wit_bindgen::generate!({
    path: "../../../wit/plugin.wit",
    world: "parser-plugin",
    with: {
        "pipehost:plugin/types@0.2.0": pipehost_guest::wit,
        "pipehost:plugin/host@0.2.0": pipehost_guest::host,
    },
});

static INSTANCE: Instance<Parser> = Instance::new();

fn instance() -> Result<Arc<Parser>, String> {
    INSTANCE.get_or_try_init(|| Parser::from_config_json(&host::config()))
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
struct Component;

impl exports::pipehost::plugin::parser::Guest for Component {
    fn init() -> Result<(), String> {
        let parser = Parser::from_config_json(&host::config())?;
        log::debug(&format!(
            "stock parser ready, dataset `{}`",
            parser.dataset()
        ));
        INSTANCE.set(parser);
        Ok(())
    }

    fn parse(batch: wit::RawBatch) -> wit::Parsed {
        abi::parse(batch, |records| match instance() {
            Ok(parser) => parser.parse(records),
            Err(reason) => records.iter().map(|_| Err(reason.clone())).collect(),
        })
    }
}

// Natively the crate is an rlib for tests and benchmarks; exporting the
// component symbols there would clash between plugins linked together.
#[cfg(target_arch = "wasm32")]
export!(Component);
