//! A deliberately hostile transform plugin, for the host's tests only.
//!
//! The partition key of the first event of a batch (in any case, so parsers
//! that upper-case their keys can route to it) picks the misbehaviour:
//!
//! | key     | what the plugin does                                    |
//! |---------|---------------------------------------------------------|
//! | `loop`  | spins forever                                           |
//! | `alloc` | allocates memory until something stops it               |
//! | `trap`  | panics (a Rust panic is a wasm `unreachable` trap)      |
//! | `huge`  | returns 1,000 events for every input event              |
//! | `flood` | writes 100,000 log messages and 100,000 stdout lines    |
//! | other   | behaves: keeps every event unchanged                    |
//!
//! The plugin config `{"init": "error"}` makes `init` refuse, and
//! `{"init": "trap"}` makes it panic.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "transform-plugin",
});

use exports::pipehost::plugin::transformer::{Event, Guest, Outcome};
use pipehost::plugin::host::{self, Level};

struct Hostile;

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

    fn transform(batch: Vec<Event>) -> Vec<Outcome> {
        let mode = batch
            .first()
            .map(|e| e.partition_key.to_ascii_lowercase())
            .unwrap_or_default();
        match mode.as_str() {
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
            "huge" => batch
                .into_iter()
                .map(|e| Outcome::Split(vec![e; 1000]))
                .collect(),
            "flood" => {
                for i in 0..100_000 {
                    host::log(Level::Info, &format!("flood message {i}"));
                    println!("flood line {i}");
                }
                batch.into_iter().map(Outcome::Keep).collect()
            }
            _ => batch.into_iter().map(Outcome::Keep).collect(),
        }
    }
}

export!(Hostile);
