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
//! | `bad-span`      | keeps every event, a partition key ending past `keys` |
//! | `bad-utf8-span` | a key that ends inside a multi-byte character         |
//! | `bad-text`      | a text field whose packed span passes the text        |
//! | `bad-kind`      | a field kind that is no kind (9)                      |
//! | `bad-columns`   | one `event-time` short of the events                  |
//! | `bad-fields`    | `event-fields-end` running backwards                  |
//! | `bad-count`     | `split(2)` for the first event: one event too many    |
//! | `bad-outcome`   | a `keep` that claims two events                       |
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
use pipehost::plugin::types::{EventBatch, Transformed};

/// `outcome-kind` codes.
const KEEP: u8 = 0;
const SPLIT: u8 = 2;
/// `field-kind` of text.
const TEXT: u8 = 3;

struct Hostile;

fn mode(batch: &EventBatch) -> String {
    batch
        .event_key_end
        .first()
        .and_then(|&end| batch.keys.get(..end as usize))
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn keep_all(batch: EventBatch) -> Transformed {
    let n = batch.event_dataset.len();
    Transformed {
        events: batch,
        outcome_kind: vec![KEEP; n],
        outcome_events: vec![1; n],
        reasons: Vec::new(),
    }
}

/// Every event `copies` times (fields and all).
fn replicate(batch: EventBatch, copies: u32) -> Transformed {
    let n = batch.event_dataset.len();
    let mut out = EventBatch {
        names: batch.names.clone(),
        keys: String::new(),
        text: batch.text.clone(),
        event_dataset: Vec::new(),
        event_key_end: Vec::new(),
        event_time: Vec::new(),
        event_fields_end: Vec::new(),
        field_name: Vec::new(),
        field_kind: Vec::new(),
        field_bits: Vec::new(),
    };
    let (mut first, mut key_start) = (0usize, 0usize);
    for i in 0..n {
        let end = batch.event_fields_end[i] as usize;
        let key_end = batch.event_key_end[i] as usize;
        let key = &batch.keys[key_start..key_end];
        for _ in 0..copies {
            out.field_name
                .extend_from_slice(&batch.field_name[first..end]);
            out.field_kind
                .extend_from_slice(&batch.field_kind[first..end]);
            out.field_bits
                .extend_from_slice(&batch.field_bits[first..end]);
            out.keys.push_str(key);
            out.event_dataset.push(batch.event_dataset[i]);
            out.event_key_end.push(out.keys.len() as u32);
            out.event_time.push(batch.event_time[i]);
            out.event_fields_end.push(out.field_name.len() as u32);
        }
        first = end;
        key_start = key_end;
    }
    Transformed {
        events: out,
        outcome_kind: vec![SPLIT; n],
        outcome_events: vec![copies; n],
        reasons: Vec::new(),
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
                out.events.event_dataset[0] = past;
                out
            }
            "bad-span" => {
                let mut out = keep_all(batch);
                let past = out.events.keys.len() as u32 + 100;
                out.events.event_key_end[0] = past;
                out
            }
            "bad-utf8-span" => {
                let mut out = keep_all(batch);
                out.events.keys.insert(0, '€');
                out.events.event_key_end[0] = 1;
                out
            }
            "bad-text" => {
                let mut out = keep_all(batch);
                let past = out.events.text.len() as i64 + 100;
                out.events.field_kind[0] = TEXT;
                out.events.field_bits[0] = past << 32;
                out
            }
            "bad-kind" => {
                let mut out = keep_all(batch);
                out.events.field_kind[0] = 9;
                out
            }
            "bad-columns" => {
                let mut out = keep_all(batch);
                out.events.event_time.pop();
                out
            }
            "bad-fields" => {
                let mut out = keep_all(batch);
                let n = out.events.event_fields_end.len();
                out.events.event_fields_end[n - 1] = 0;
                if n == 1 {
                    out.events.event_fields_end[0] = out.events.field_name.len() as u32 + 1;
                }
                out
            }
            "bad-count" => {
                let mut out = keep_all(batch);
                out.outcome_kind[0] = SPLIT;
                out.outcome_events[0] = 2;
                out
            }
            "bad-outcome" => {
                let mut out = keep_all(batch);
                out.outcome_events[0] = 2;
                out
            }
            _ => keep_all(batch),
        }
    }
}

export!(Hostile);
