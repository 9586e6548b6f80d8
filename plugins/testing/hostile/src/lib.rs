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
//! | `sleep`         | `std::thread::sleep` for an hour (waits in the host)  |
//! | `poll`          | `poll` on a clock subscription an hour ahead          |
//! | `forge-log`     | logs and prints lines with newlines and ANSI escapes  |
//! | `alias`         | 200,000 `reasons` that all alias one 16 MiB buffer    |
//! | other           | behaves: keeps every event unchanged                  |
//!
//! The plugin config `{"init": "error"}` makes `init` refuse, `{"init":
//! "trap"}` makes it panic, `{"init": "sleep"}` sleeps an hour in it, and
//! `{"init": "huge-error"}` refuses with [`huge_error`].

wit_bindgen::generate!({
    path: "../../../wit/plugin.wit",
    world: "transform-plugin",
});

use exports::pipehost::plugin::transformer::Guest;
use pipehost::plugin::host::{self, Level};
use pipehost::plugin::types::{EventBatch, Transformed};

/// Direct imports of the WASI functions that wait (see `wit/world.wit`).
mod waits {
    wit_bindgen::generate!({ path: "wit", world: "hostile:wasi/waits", generate_all });
}
use waits::wasi::clocks::monotonic_clock;
use waits::wasi::io::poll;

/// An hour, in nanoseconds.
const HOUR_NS: u64 = 3600 * 1_000_000_000;

/// A 10 MiB message built to forge log lines and terminal output: newlines
/// followed by text that looks like a host log line, ANSI escapes, a NUL.
pub fn huge_error() -> String {
    let forged =
        "hostile: refused\n2026-01-01T00:00:00Z ERROR pipehost: FORGED \x1b[31mred\x1b[0m\r\0";
    forged.repeat((10 << 20) / forged.len() + 1)
}

/// 200,000 strings that all point at one 16 MiB buffer: 3.2 TB to copy if
/// the host took each at its word.
#[allow(unsafe_code, reason = "the aliasing is the attack this plugin makes")]
fn aliased_reasons() -> Vec<String> {
    let mut buf = std::mem::ManuallyDrop::new(vec![b'x'; 16 << 20]);
    let (ptr, len) = (buf.as_mut_ptr(), buf.len());
    (0..200_000)
        // SAFETY: deliberately unsound — the strings alias. The host must
        // refuse the answer before anything frees them.
        .map(|_| unsafe { String::from_raw_parts(ptr, len, len) })
        .collect()
}

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
        if config.contains("\"init\":\"sleep\"") {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
        if config.contains("\"init\":\"huge-error\"") {
            return Err(huge_error());
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
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                keep_all(batch)
            }
            "poll" => {
                let later = monotonic_clock::subscribe_instant(monotonic_clock::now() + HOUR_NS);
                let soon = monotonic_clock::subscribe_duration(HOUR_NS);
                poll::poll(&[&later, &soon]);
                keep_all(batch)
            }
            "forge-log" => {
                let forged = "ok\n2026-01-01T00:00:00Z ERROR pipehost: FORGED \x1b[31mred\x1b[0m";
                host::log(Level::Warn, forged);
                println!("{forged}\r");
                keep_all(batch)
            }
            "alias" => {
                let mut out = keep_all(batch);
                out.reasons = aliased_reasons();
                out
            }
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
