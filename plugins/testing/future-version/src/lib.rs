//! A transform plugin built against contract version 0.2.0, which this host
//! does not speak: the loader must refuse it, naming both versions.

wit_bindgen::generate!({
    inline: r#"
        package pipehost:plugin@0.2.0;

        interface transformer {
            record event { dataset: string, partition-key: string }
            init: func() -> result<_, string>;
            transform: func(batch: list<event>) -> list<event>;
        }

        world transform-plugin {
            export transformer;
        }
    "#,
    world: "transform-plugin",
});

use exports::pipehost::plugin::transformer::{Event, Guest};

struct Future;

impl Guest for Future {
    fn init() -> Result<(), String> {
        Ok(())
    }
    fn transform(batch: Vec<Event>) -> Vec<Event> {
        batch
    }
}

export!(Future);
