//! Helpers for the plugins' native unit tests: ticks at a fixed time,
//! generated records as a parser receives them, and the checks every
//! generator must pass. Plain Rust (no WIT import), so they run natively.

use crate::GeneratorPlugin;
use crate::types::{Generated, RawRecord, Source, Tick};

/// 2026-11-23T08:00:00Z, the time of every [`tick`].
pub const T0: i64 = 1_795_420_800_000;

/// Tick `number` of `seed`, asking for `count` records, at [`T0`].
pub fn tick(seed: u64, number: u64, count: u32) -> Tick {
    Tick {
        seed,
        number,
        time_ms: T0,
        count,
    }
}

/// Generated records as a parser of `feed` receives them.
pub fn raw_records<'a>(feed: &'a str, records: &'a [Generated]) -> Vec<RawRecord<'a>> {
    records
        .iter()
        .map(|g| RawRecord {
            data: &g.data,
            source: Source {
                feed,
                partition_key: &g.partition_key,
                ..Source::default()
            },
        })
        .collect()
}

/// A generated record's bytes as text (panics if they are not UTF-8).
pub fn text(g: &Generated) -> &str {
    std::str::from_utf8(&g.data).expect("generated records are UTF-8")
}

/// Each record as `(partition key, text)`.
pub fn lines(records: &[Generated]) -> Vec<(&str, &str)> {
    records
        .iter()
        .map(|g| (g.partition_key.as_str(), text(g)))
        .collect()
}

/// Asserts what every generator promises, with the configuration `config`:
/// a tick gives exactly `count` records, the same ones again (also from a
/// fresh instance), other ones for another seed or tick number; a tick of
/// none gives none, and one past the limit fails.
pub fn assert_replayable<G: GeneratorPlugin>(config: &str) {
    let g = G::from_config_json(config).expect("the configuration is valid");
    let a = g.generate(&tick(7, 3, 50)).unwrap();
    assert_eq!(a.len(), 50);
    assert_eq!(a, g.generate(&tick(7, 3, 50)).unwrap());
    let fresh = G::from_config_json(config).unwrap();
    assert_eq!(a, fresh.generate(&tick(7, 3, 50)).unwrap());
    assert_ne!(a, g.generate(&tick(8, 3, 50)).unwrap());
    assert_ne!(a, g.generate(&tick(7, 4, 50)).unwrap());
    assert!(g.generate(&tick(1, 0, 0)).unwrap().is_empty());
    let err = g.generate(&tick(1, 0, 100_001)).unwrap_err();
    assert!(err.contains("exceeds the limit"), "{err}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Plugin;

    #[derive(serde::Deserialize)]
    struct Config {
        #[serde(default)]
        constant: bool,
    }

    /// Records `seed:number:index`, or always `x` when `constant`.
    struct Counter {
        constant: bool,
    }

    impl Plugin for Counter {
        type Config = Config;

        fn new(config: Config) -> Result<Self, String> {
            Ok(Counter {
                constant: config.constant,
            })
        }
    }

    impl GeneratorPlugin for Counter {
        fn record(&self, tick: &Tick, index: u32) -> Generated {
            let data = match self.constant {
                true => "x".to_string(),
                false => format!("{}:{}:{index}", tick.seed, tick.number),
            };
            Generated {
                partition_key: format!("k{}", index % 2),
                data: data.into_bytes(),
            }
        }
    }

    #[test]
    fn a_replayable_generator_passes() {
        assert_replayable::<Counter>("{}");
    }

    #[test]
    #[should_panic(expected = "assertion `left != right` failed")]
    fn a_generator_that_ignores_the_seed_fails() {
        assert_replayable::<Counter>(r#"{"constant": true}"#);
    }

    #[test]
    fn records_read_as_a_parser_and_a_person_see_them() {
        let out = Counter::from_config_json("{}")
            .unwrap()
            .generate(&tick(1, 2, 2))
            .unwrap();
        assert_eq!(lines(&out), [("k0", "1:2:0"), ("k1", "1:2:1")]);
        let raw = raw_records("feed", &out);
        assert_eq!(raw[1].data, b"1:2:1");
        assert_eq!(
            (raw[1].source.feed, raw[1].source.partition_key),
            ("feed", "k1")
        );
        assert_eq!(tick(1, 2, 3).time_ms, T0);
    }
}
