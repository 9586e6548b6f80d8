//! What a plugin implements, and how it becomes a component.
//!
//! A plugin's logic is a plain Rust type that implements [`Plugin`] (built
//! from its configuration) and one role: [`ParserPlugin`],
//! [`TransformPlugin`] or [`GeneratorPlugin`]. Its `lib.rs` then exports it
//! with one line — [`export_parser!`](crate::export_parser),
//! [`export_transform!`](crate::export_transform) or
//! [`export_generator!`](crate::export_generator):
//!
//! ```ignore
//! pub mod logic;
//! pub use logic::Parser;
//!
//! pipehost_guest::export_parser!(Parser);
//! ```
//!
//! The macro binds the role's world of `wit/plugin.wit` in the plugin crate
//! and implements its exports with the functions below: `init` builds the
//! instance from the host's configuration and keeps it; each call reuses it
//! (building it first if the host never called `init`), converts the batch
//! with [`crate::abi`] and runs the logic. Natively (unit tests,
//! benchmarks) nothing is exported, so plugins can be linked together.

use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::abi;
use crate::types::{Event, Generated, Outcome, RawRecord, Tick};
use crate::{Instance, wit};

/// A plugin's logic, built from its configuration.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// The configuration (`config` in `pipeline.toml`), decoded from the
    /// JSON the host hands over (`{}` when there is none): a serde struct,
    /// normally `#[serde(deny_unknown_fields)]`.
    type Config: DeserializeOwned;

    /// Builds the logic from its configuration; an error says which key is
    /// wrong ([`crate::config::key_error`]) and fails `init`.
    fn new(config: Self::Config) -> Result<Self, String>;

    /// Builds the logic from configuration JSON, decoded with
    /// [`crate::config()`] (errors name the key).
    fn from_config_json(json: &str) -> Result<Self, String> {
        Self::new(crate::config(json)?)
    }

    /// A one-line summary for the log when `init` succeeds (empty: none).
    fn describe(&self) -> String {
        String::new()
    }
}

/// A parser: raw records of one feed into events.
pub trait ParserPlugin: Plugin {
    /// One raw record's events (possibly none), or why it is rejected (a
    /// bad record never fails the batch).
    fn parse_record(&self, data: &[u8]) -> Result<Vec<Event>, String>;

    /// One result per record, in order: by default each record on its own.
    fn parse(&self, batch: &[RawRecord<'_>]) -> Vec<Result<Vec<Event>, String>> {
        batch.iter().map(|r| self.parse_record(r.data)).collect()
    }
}

/// A transform: per event, keep (possibly changed), drop, split or fail.
pub trait TransformPlugin: Plugin {
    /// One outcome per input event, in order.
    fn transform(&self, batch: Vec<Event>) -> Vec<Outcome>;
}

/// A generator: a tick's worth of synthetic records.
pub trait GeneratorPlugin: Plugin {
    /// Record `index` of `tick`: a pure function of the tick, the index and
    /// the configuration, so runs can be replayed.
    fn record(&self, tick: &Tick, index: u32) -> Generated;

    /// The records of one tick: by default `record` for each index below
    /// `tick.count`, after checking the count against the limit
    /// ([`crate::generate::check_count`]).
    fn generate(&self, tick: &Tick) -> Result<Vec<Generated>, String> {
        crate::generate::check_count(tick.count)?;
        Ok((0..tick.count).map(|i| self.record(tick, i)).collect())
    }
}

/// The `init` export: builds the logic from `config`, logs that `plugin`
/// (the crate's name) is ready and keeps the instance.
pub fn init<T: Plugin>(slot: &Instance<T>, plugin: &str, config: &str) -> Result<(), String> {
    let logic = T::from_config_json(config)?;
    crate::log::debug(&ready_message(plugin, &logic.describe()));
    slot.set(logic);
    Ok(())
}

fn ready_message(plugin: &str, detail: &str) -> String {
    match detail {
        "" => format!("{plugin} ready"),
        _ => format!("{plugin} ready: {detail}"),
    }
}

/// The instance in `slot`, built from the host's configuration if `init`
/// was never called.
fn instance<T: Plugin>(slot: &Instance<T>) -> Result<Arc<T>, String> {
    slot.get_or_try_init(|| T::from_config_json(&crate::host::config()))
}

/// The `parse` export. Without an instance, every record is rejected with
/// the reason.
pub fn parse<T: ParserPlugin>(slot: &Instance<T>, batch: wit::RawBatch) -> wit::Parsed {
    abi::parse(batch, |records| match instance(slot) {
        Ok(parser) => parser.parse(records),
        Err(reason) => records.iter().map(|_| Err(reason.clone())).collect(),
    })
}

/// The `transform` export. Without an instance, every event fails with the
/// reason.
pub fn transform<T: TransformPlugin>(
    slot: &Instance<T>,
    batch: wit::EventBatch,
) -> wit::Transformed {
    abi::transform(batch, |events| match instance(slot) {
        Ok(transform) => transform.transform(events),
        Err(reason) => events
            .iter()
            .map(|_| Outcome::Fail(reason.clone()))
            .collect(),
    })
}

/// The `generate` export. Without an instance, the tick fails.
pub fn generate<T: GeneratorPlugin>(
    slot: &Instance<T>,
    tick: Tick,
) -> Result<wit::GeneratedBatch, String> {
    abi::generate(tick, |tick| instance(slot)?.generate(tick))
}

/// Exports a [`ParserPlugin`] as the `parser-plugin` world:
/// `pipehost_guest::export_parser!(Parser);` in the plugin's `lib.rs`.
///
/// The WIT is looked up at `../../../wit/plugin.wit` from the plugin
/// crate's directory (`plugins/<feed>/<role>/`); a crate elsewhere names
/// it: `export_parser!(Parser, wit = "../wit/plugin.wit")`.
#[macro_export]
macro_rules! export_parser {
    ($logic:ty $(, wit = $wit:literal)? $(,)?) => {
        $crate::__export_plugin!(
            $logic, "parser-plugin", parser, parse,
            $crate::wit::RawBatch => $crate::wit::Parsed
            $(, $wit)?
        );
    };
}

/// Exports a [`TransformPlugin`] as the `transform-plugin` world:
/// `pipehost_guest::export_transform!(Transform);` (see
/// [`export_parser!`](crate::export_parser) for the WIT's path).
#[macro_export]
macro_rules! export_transform {
    ($logic:ty $(, wit = $wit:literal)? $(,)?) => {
        $crate::__export_plugin!(
            $logic, "transform-plugin", transformer, transform,
            $crate::wit::EventBatch => $crate::wit::Transformed
            $(, $wit)?
        );
    };
}

/// Exports a [`GeneratorPlugin`] as the `generator-plugin` world:
/// `pipehost_guest::export_generator!(Generator);` (see
/// [`export_parser!`](crate::export_parser) for the WIT's path).
#[macro_export]
macro_rules! export_generator {
    ($logic:ty $(, wit = $wit:literal)? $(,)?) => {
        $crate::__export_plugin!(
            $logic, "generator-plugin", generator, generate,
            $crate::wit::Tick => Result<$crate::wit::GeneratedBatch, String>
            $(, $wit)?
        );
    };
}

/// The body of the three export macros: the world's bindings, the instance
/// slot, the `Guest` impl calling [`crate::plugin`], and the export itself.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_plugin {
    ($logic:ty, $world:literal, $iface:ident, $call:ident, $in:ty => $out:ty) => {
        $crate::__export_plugin!($logic, $world, $iface, $call, $in => $out, "../../../wit/plugin.wit");
    };
    ($logic:ty, $world:literal, $iface:ident, $call:ident, $in:ty => $out:ty, $wit:literal) => {
        // Natively nothing is exported, so the slot and the impl go unused.
        #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
        #[doc(hidden)]
        mod __pipehost_export {
            use super::*;

            $crate::__private::wit_bindgen::generate!({
                path: $wit,
                world: $world,
                runtime_path: "pipehost_guest::__private::wit_bindgen::rt",
                with: {
                    "pipehost:plugin/types@0.2.0": pipehost_guest::wit,
                    "pipehost:plugin/host@0.2.0": pipehost_guest::host,
                },
            });

            static INSTANCE: $crate::Instance<$logic> = $crate::Instance::new();

            struct Component;

            impl exports::pipehost::plugin::$iface::Guest for Component {
                fn init() -> Result<(), String> {
                    let config = $crate::host::config();
                    $crate::plugin::init(&INSTANCE, env!("CARGO_PKG_NAME"), &config)
                }

                fn $call(input: $in) -> $out {
                    $crate::plugin::$call(&INSTANCE, input)
                }
            }

            // Natively the crate is an rlib for tests and benchmarks;
            // exporting the component's symbols there would clash between
            // plugins linked together.
            #[cfg(target_arch = "wasm32")]
            export!(Component);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{event, field_f64, float};

    /// A transform that doubles `x`, or refuses a negative factor.
    struct Double {
        factor: f64,
    }

    #[derive(serde::Deserialize)]
    struct Config {
        factor: f64,
    }

    impl Plugin for Double {
        type Config = Config;

        fn new(config: Config) -> Result<Self, String> {
            match config.factor {
                f if f < 0.0 => Err("factor: must not be negative".into()),
                factor => Ok(Double { factor }),
            }
        }

        fn describe(&self) -> String {
            format!("factor {}", self.factor)
        }
    }

    impl TransformPlugin for Double {
        fn transform(&self, batch: Vec<Event>) -> Vec<Outcome> {
            batch
                .into_iter()
                .map(|e| match field_f64(&e, "x") {
                    Ok(x) => Outcome::Keep(event("d", "k", 0, vec![float("x", x * self.factor)])),
                    Err(_) => Outcome::Drop,
                })
                .collect()
        }
    }

    #[test]
    fn the_transform_export_runs_the_kept_instance() {
        static SLOT: Instance<Double> = Instance::new();
        SLOT.set(Double::from_config_json(r#"{"factor": 2}"#).unwrap());
        let batch = abi::encode_events(&[
            event("d", "k", 0, vec![float("x", 1.5)]),
            event("d", "k", 0, vec![]),
        ]);
        let out = abi::decode_transformed(&transform(&SLOT, batch)).unwrap();
        assert_eq!(
            out,
            [
                Outcome::Keep(event("d", "k", 0, vec![float("x", 3.0)])),
                Outcome::Drop
            ]
        );
    }

    #[test]
    fn a_bad_configuration_fails_init_and_keeps_nothing() {
        static SLOT: Instance<Double> = Instance::new();
        let e = init(&SLOT, "double", r#"{"factor": -1}"#).unwrap_err();
        assert_eq!(e, "factor: must not be negative");
        assert!(!SLOT.is_set());
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoConfig {}

    /// Parses a record as one integer; generates `10 * tick + index`.
    struct Numbers;

    impl Plugin for Numbers {
        type Config = NoConfig;

        fn new(_: NoConfig) -> Result<Self, String> {
            Ok(Numbers)
        }
    }

    impl ParserPlugin for Numbers {
        fn parse_record(&self, data: &[u8]) -> Result<Vec<Event>, String> {
            let s = std::str::from_utf8(data).map_err(|e| e.to_string())?;
            let n: i64 = s.parse().map_err(|_| format!("not a number: {s:?}"))?;
            Ok(vec![event("n", "k", n, vec![])])
        }
    }

    impl GeneratorPlugin for Numbers {
        fn record(&self, tick: &Tick, index: u32) -> Generated {
            Generated {
                partition_key: "k".into(),
                data: (tick.number * 10 + u64::from(index))
                    .to_string()
                    .into_bytes(),
            }
        }
    }

    #[test]
    fn parsers_parse_each_record_and_generators_each_index_by_default() {
        let numbers = Numbers::from_config_json("{}").unwrap();
        let tick = Tick {
            seed: 0,
            number: 4,
            time_ms: 0,
            count: 3,
        };
        let data: Vec<Vec<u8>> = numbers
            .generate(&tick)
            .unwrap()
            .into_iter()
            .map(|g| g.data)
            .collect();
        assert_eq!(data, [b"40", b"41", b"42"]);
        let raw: Vec<RawRecord> = [b"7".as_slice(), b"x"]
            .into_iter()
            .map(|data| RawRecord {
                data,
                ..Default::default()
            })
            .collect();
        assert_eq!(
            numbers.parse(&raw),
            [
                Ok(vec![event("n", "k", 7, vec![])]),
                Err("not a number: \"x\"".to_string())
            ]
        );
        let too_many = Tick {
            count: 100_001,
            ..tick
        };
        assert!(numbers.generate(&too_many).unwrap_err().contains("limit"));
        let e = Numbers::from_config_json(r#"{"x": 1}"#).err().unwrap();
        assert!(e.contains("unknown field `x`"), "{e}");
    }

    #[test]
    fn the_ready_message_names_the_plugin() {
        assert_eq!(
            ready_message("double", "factor 2"),
            "double ready: factor 2"
        );
        assert_eq!(ready_message("double", ""), "double ready");
    }
}
