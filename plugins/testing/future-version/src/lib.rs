//! A transform plugin built against contract version 0.3.0 (the copy of the
//! WIT in `wit/` next to this crate), which this host does not speak: the
//! loader must refuse it, naming the version.

wit_bindgen::generate!({
    path: "wit/plugin.wit",
    world: "transform-plugin",
});

use exports::pipehost::plugin::transformer::Guest;
use pipehost::plugin::types::{EventBatch, Outcome, Transformed};

struct Future;

impl Guest for Future {
    fn init() -> Result<(), String> {
        Ok(())
    }
    fn transform(batch: EventBatch) -> Transformed {
        let outcomes = vec![Outcome::Keep; batch.events.len()];
        Transformed {
            events: batch,
            outcomes,
        }
    }
}

export!(Future);
