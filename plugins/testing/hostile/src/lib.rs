//! A deliberately hostile transform plugin, for the host's tests only.
//!
//! It speaks contract `0.2.0` without the guest SDK, building its columns
//! by hand, so it can also break the columnar rules the SDK never breaks.
//! The partition key of the first event of a batch (in any case, so parsers
//! that upper-case their keys can route to it) picks the misbehaviour:
//!
//! | key             | what the plugin does                                  |
//! |-----------------|-------------------------------------------------------|
//! | `loop`          | spins forever                                         |
//! | `alloc`         | allocates memory until something stops it             |
//! | `trap`          | panics (a Rust panic is a wasm `unreachable` trap)    |
//! | `huge`          | returns 1,000 events for every input event            |
//! | `flood`         | writes 100,000 log messages and 100,000 stdout lines  |
//! | `bad-name`      | keeps every event, with a dataset index out of range  |
//! | `bad-span`      | keeps every event, with a partition key past the text |
//! | `bad-utf8-span` | a span that ends inside a multi-byte character        |
//! | `bad-fields`    | `fields-end` running backwards                        |
//! | `bad-count`     | one `keep` too many for the events returned           |
//! | other           | behaves: keeps every event unchanged                  |
//!
//! The plugin config `{"init": "error"}` makes `init` refuse, and
//! `{"init": "trap"}` makes it panic.

wit_bindgen::generate!({
    path: "../../../wit/plugin.wit",
    world: "transform-plugin",
});

use exports::pipehost::plugin::transformer::Guest;
use pipehost::plugin::host::{self, Level};
use pipehost::plugin::types::{Event, EventBatch, Outcome, Span, Transformed};

struct Hostile;

fn mode(batch: &EventBatch) -> String {
    batch
        .events
        .first()
        .and_then(|e| {
            batch
                .text
                .get(e.partition_key.start as usize..e.partition_key.end as usize)
        })
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn keep_all(batch: EventBatch) -> Transformed {
    let outcomes = vec![Outcome::Keep; batch.events.len()];
    Transformed {
        events: batch,
        outcomes,
    }
}

/// Every event `copies` times (fields and all).
fn replicate(batch: EventBatch, copies: u32) -> Transformed {
    let mut events = Vec::new();
    let mut fields = Vec::new();
    let mut start = 0usize;
    for e in &batch.events {
        let own = &batch.fields[start..e.fields_end as usize];
        start = e.fields_end as usize;
        for _ in 0..copies {
            fields.extend_from_slice(own);
            events.push(Event {
                fields_end: fields.len() as u32,
                ..*e
            });
        }
    }
    let outcomes = vec![Outcome::Split(copies); batch.events.len()];
    Transformed {
        events: EventBatch {
            events,
            fields,
            ..batch
        },
        outcomes,
    }
}

impl Guest for Hostile {
    fn init() -> Result<(), String> {
        let config = host::config();
        if config.contains("\"init\":\"error\"") {
            return Err("hostile: this config is refused on purpose".into());
        }
        if config.contains("\"init\":\"trap\"") {
            panic!("hostile: panicking in init on purpose");
        }
        Ok(())
    }

    fn transform(batch: EventBatch) -> Transformed {
        match mode(&batch).as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![0xAB; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("hostile: panicking on purpose"),
            "huge" => replicate(batch, 1000),
            "flood" => {
                for i in 0..100_000 {
                    host::log(Level::Info, &format!("flood message {i}"));
                    println!("flood line {i}");
                }
                keep_all(batch)
            }
            "bad-name" => {
                let mut out = keep_all(batch);
                let past = out.events.names.len() as u32 + 7;
                out.events.events[0].dataset = past;
                out
            }
            "bad-span" => {
                let mut out = keep_all(batch);
                let past = out.events.text.len() as u32 + 100;
                out.events.events[0].partition_key = Span {
                    start: 2,
                    end: past,
                };
                out
            }
            "bad-utf8-span" => {
                let mut out = keep_all(batch);
                let start = out.events.text.len() as u32;
                out.events.text.push('€');
                out.events.events[0].partition_key = Span {
                    start,
                    end: start + 1,
                };
                out
            }
            "bad-fields" => {
                let mut out = keep_all(batch);
                let n = out.events.events.len();
                out.events.events[n - 1].fields_end = 0;
                if n == 1 {
                    out.events.events[0].fields_end = out.events.fields.len() as u32 + 1;
                }
                out
            }
            "bad-count" => {
                let mut out = keep_all(batch);
                out.outcomes[0] = Outcome::Split(2);
                out
            }
            _ => keep_all(batch),
        }
    }
}

export!(Hostile);
