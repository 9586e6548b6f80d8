//! A deliberately hostile generator plugin, for the host's tests only.
//!
//! The tick's `count` picks the misbehaviour of `generate`:
//!
//! | count | what the plugin does                                          |
//! |-------|---------------------------------------------------------------|
//! | 7     | fails with a 10 MiB reason full of newlines and ANSI escapes  |
//! | 8     | `std::thread::sleep` for an hour (waits in the host)          |
//! | other | behaves: one record `ok` under key `k`                        |
//!
//! The plugin config `{"init": "sleep"}` sleeps an hour in `init`, and
//! `{"init": "huge-error"}` refuses it with the same 10 MiB reason.

wit_bindgen::generate!({
    path: "../../../wit/plugin.wit",
    world: "generator-plugin",
});

use exports::pipehost::plugin::generator::Guest;
use pipehost::plugin::host;
use pipehost::plugin::types::{GeneratedBatch, Tick};

/// A 10 MiB message built to forge log lines and terminal output.
fn huge_error() -> String {
    let forged =
        "hostile: refused\n2026-01-01T00:00:00Z ERROR pipehost: FORGED \x1b[31mred\x1b[0m\r\0";
    forged.repeat((10 << 20) / forged.len() + 1)
}

fn sleep_an_hour() {
    std::thread::sleep(std::time::Duration::from_secs(3600));
}

struct HostileGenerator;

impl Guest for HostileGenerator {
    fn init() -> Result<(), String> {
        let config = host::config();
        if config.contains("\"init\":\"sleep\"") {
            sleep_an_hour();
        }
        if config.contains("\"init\":\"huge-error\"") {
            return Err(huge_error());
        }
        Ok(())
    }

    fn generate(tick: Tick) -> Result<GeneratedBatch, String> {
        match tick.count {
            7 => Err(huge_error()),
            8 => {
                sleep_an_hour();
                Err("woke up".into())
            }
            _ => Ok(GeneratedBatch {
                keys: vec!["k".into()],
                data: b"ok".to_vec(),
                record_key: vec![0],
                record_data_end: vec![2],
            }),
        }
    }
}

export!(HostileGenerator);
