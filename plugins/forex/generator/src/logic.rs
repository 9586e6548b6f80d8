//! Deterministic forex quotes, one JSON line per record:
//! `{"pair":"EUR/USD","bid":1.08412,"ask":1.08431,"ts":"2026-11-23T08:00:00.123Z","venue":"EBS"}`.
//!
//! Record `i` of a tick is about pair `(number * count + i) % pairs.len()`,
//! happens at `time_ms + i`, and draws its noise from a splitmix64 seeded
//! with a hash of `(seed, number, i)`: output is a pure function of the tick
//! and the configuration. Prices are a per-pair base (known majors, or one
//! derived from the pair's name), a slow one-hour triangle-wave drift
//! (±0.2 %) and a little noise, written with 5 decimals (3 when the price is
//! 20 or more, as for JPY pairs); spreads are 0.2–2.5 pips.
//!
//! With `malformed_rate` > 0 that fraction of records is deliberately broken
//! in one of four ways: truncated JSON, a mistyped `bid`, a pair without the
//! slash, a timestamp that is not RFC 3339.

use crate::{Generated, Tick};
use pipehost_guest::generate::{check_rate, cycle_index, fixed_decimal, name_list, to_units, wave};
use pipehost_guest::names::is_currency_pair;
use pipehost_guest::rng::{fnv1a64, record_rng};
use pipehost_guest::time::format_rfc3339_ms;
use pipehost_guest::{GeneratorPlugin, Plugin};
use serde::Deserialize;

/// The default pairs: eight majors.
pub const DEFAULT_PAIRS: [&str; 8] = [
    "EUR/USD", "USD/JPY", "GBP/USD", "USD/CHF", "AUD/USD", "USD/CAD", "NZD/USD", "EUR/GBP",
];

/// Base mid prices of the pairs the generator knows.
const BASES: [(&str, f64); 8] = [
    ("EUR/USD", 1.0850),
    ("USD/JPY", 151.20),
    ("GBP/USD", 1.2650),
    ("USD/CHF", 0.8820),
    ("AUD/USD", 0.6560),
    ("USD/CAD", 1.3580),
    ("NZD/USD", 0.5970),
    ("EUR/GBP", 0.8580),
];

const VENUES: [&str; 5] = ["EBS", "Reuters", "Currenex", "Hotspot", "LMAX"];

/// The generator's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Pairs to cycle through (`AAA/BBB`). Default: [`DEFAULT_PAIRS`].
    #[serde(default)]
    pub pairs: Option<Vec<String>>,
    /// Fraction (0.0–1.0) of records made deliberately malformed. Default 0.
    #[serde(default)]
    pub malformed_rate: f64,
}

struct Pair {
    name: String,
    base: f64,
    decimals: u32,
    phase_ms: u64,
}

/// The forex generator, configured.
pub struct Generator {
    pairs: Vec<Pair>,
    malformed_rate: f64,
}

impl Plugin for Generator {
    type Config = Config;

    /// Builds the generator from a decoded configuration.
    fn new(config: Config) -> Result<Self, String> {
        check_rate("malformed_rate", config.malformed_rate)?;
        let names = name_list(
            "pairs",
            config.pairs,
            &DEFAULT_PAIRS,
            is_currency_pair,
            "a currency pair like EUR/USD",
        )?;
        let pairs = names
            .into_iter()
            .map(|name| {
                let hash = fnv1a64(name.as_bytes());
                let base = BASES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, b)| *b)
                    // Unknown pair: a base between 0.5 and 20.5, from its name.
                    .unwrap_or_else(|| 0.5 + (hash % 2000) as f64 / 100.0);
                let decimals = if base >= 20.0 { 3 } else { 5 };
                Pair {
                    name,
                    base,
                    decimals,
                    phase_ms: hash,
                }
            })
            .collect();
        Ok(Generator {
            pairs,
            malformed_rate: config.malformed_rate,
        })
    }

    /// A one-line summary for the log.
    fn describe(&self) -> String {
        format!(
            "{} pair(s), malformed_rate {}",
            self.pairs.len(),
            self.malformed_rate
        )
    }
}

impl GeneratorPlugin for Generator {
    fn record(&self, tick: &Tick, index: u32) -> Generated {
        let mut rng = record_rng(tick.seed, tick.number, u64::from(index));
        let malformed = rng.chance(self.malformed_rate);
        let pair = &self.pairs[cycle_index(tick.number, tick.count, index, self.pairs.len())];
        let time = tick.time_ms.wrapping_add(i64::from(index));

        let drift = 0.002 * wave(time, 3_600_000, pair.phase_ms);
        let noise = rng.range_f64(-0.0002, 0.0002);
        let mid = pair.base * (1.0 + drift + noise);
        // A pip is 10 units of the last decimal; spreads of 0.2–2.5 pips.
        let spread_units = rng.range_i64(2, 25);
        let bid_units = (to_units(mid, pair.decimals) - spread_units / 2).max(1);
        let ask_units = bid_units + spread_units;
        let bid = fixed_decimal(bid_units, pair.decimals);
        let ask = fixed_decimal(ask_units, pair.decimals);
        let ts = format_rfc3339_ms(time);
        let venue = rng.pick(&VENUES);
        let name = &pair.name;

        let line = if malformed {
            match rng.below(4) {
                0 => {
                    let full = format!(
                        r#"{{"pair":"{name}","bid":{bid},"ask":{ask},"ts":"{ts}","venue":"{venue}"}}"#
                    );
                    full[..full.len() / 2].to_string()
                }
                1 => format!(
                    r#"{{"pair":"{name}","bid":"n/a","ask":{ask},"ts":"{ts}","venue":"{venue}"}}"#
                ),
                2 => format!(
                    r#"{{"pair":"{}","bid":{bid},"ask":{ask},"ts":"{ts}","venue":"{venue}"}}"#,
                    name.replace('/', "")
                ),
                _ => format!(
                    r#"{{"pair":"{name}","bid":{bid},"ask":{ask},"ts":"{}","venue":"{venue}"}}"#,
                    ts.replace('T', " ").trim_end_matches('Z')
                ),
            }
        } else {
            format!(r#"{{"pair":"{name}","bid":{bid},"ask":{ask},"ts":"{ts}","venue":"{venue}"}}"#)
        };
        Generated {
            partition_key: pair.name.clone(),
            data: line.into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipehost_guest::ParserPlugin;
    use pipehost_guest::event::field_f64;
    use pipehost_guest::testing::{T0, assert_replayable, lines, raw_records, text, tick};

    fn gen_default() -> Generator {
        Generator::from_config_json("{}").unwrap()
    }

    #[test]
    fn golden_output() {
        let out = gen_default().generate(&tick(42, 0, 3)).unwrap();
        assert_eq!(
            lines(&out),
            vec![
                ("EUR/USD", GOLDEN[0]),
                ("USD/JPY", GOLDEN[1]),
                ("GBP/USD", GOLDEN[2]),
            ]
        );
    }

    const GOLDEN: [&str; 3] = [
        r#"{"pair":"EUR/USD","bid":1.08408,"ask":1.08429,"ts":"2026-11-23T08:00:00.000Z","venue":"Currenex"}"#,
        r#"{"pair":"USD/JPY","bid":151.096,"ask":151.114,"ts":"2026-11-23T08:00:00.001Z","venue":"EBS"}"#,
        r#"{"pair":"GBP/USD","bid":1.26551,"ask":1.26564,"ts":"2026-11-23T08:00:00.002Z","venue":"EBS"}"#,
    ];

    #[test]
    fn deterministic_and_seed_sensitive() {
        assert_replayable::<Generator>("{}");
    }

    #[test]
    fn cycles_pairs_and_times() {
        let out = gen_default().generate(&tick(1, 0, 16)).unwrap();
        for (i, g) in out.iter().enumerate() {
            assert_eq!(g.partition_key, DEFAULT_PAIRS[i % 8]);
        }
        let next = gen_default().generate(&tick(1, 1, 3)).unwrap();
        assert_eq!(next[0].partition_key, DEFAULT_PAIRS[3]);
    }

    #[test]
    fn output_parses_cleanly_and_is_plausible() {
        let parser = forex_parser::Parser::from_config_json("{}").unwrap();
        let g =
            Generator::from_config_json(r#"{"pairs":["EUR/USD","USD/JPY","XAU/USD","ABC/DEF"]}"#)
                .unwrap();
        for number in 0..20 {
            let out = g
                .generate(&Tick {
                    seed: 99,
                    number,
                    time_ms: T0 + number as i64 * 997_000,
                    count: 100,
                })
                .unwrap();
            let batch: Vec<_> = raw_records("forex", &out);
            for (i, (res, g)) in parser.parse(&batch).into_iter().zip(&out).enumerate() {
                let events = res.unwrap_or_else(|e| panic!("{}: {e}", text(g)));
                assert_eq!(events.len(), 1);
                let e = &events[0];
                assert_eq!(e.partition_key, g.partition_key);
                assert_eq!(e.event_time_ms, T0 + number as i64 * 997_000 + i as i64);
                let (bid, ask) = (field_f64(e, "bid").unwrap(), field_f64(e, "ask").unwrap());
                assert!(bid > 0.0 && ask > bid, "{}", text(g));
                if e.partition_key == "EUR/USD" {
                    assert!((1.08..1.09).contains(&bid), "{bid}");
                }
                if e.partition_key == "USD/JPY" {
                    assert!((150.0..152.5).contains(&bid), "{bid}");
                }
            }
        }
    }

    #[test]
    fn malformed_records_are_rejected() {
        let parser = forex_parser::Parser::from_config_json("{}").unwrap();
        let all_bad = Generator::from_config_json(r#"{"malformed_rate":1.0}"#).unwrap();
        let out = all_bad.generate(&tick(5, 0, 200)).unwrap();
        let batch: Vec<_> = raw_records("forex", &out);
        let mut reasons = std::collections::BTreeSet::new();
        for (res, g) in parser.parse(&batch).into_iter().zip(&out) {
            let reason = res.expect_err(text(g));
            reasons.insert(reason.split(':').next().unwrap().to_string());
        }
        assert_eq!(reasons.len(), 4, "all four kinds appear: {reasons:?}");

        let some_bad = Generator::from_config_json(r#"{"malformed_rate":0.25}"#).unwrap();
        let out = some_bad.generate(&tick(5, 0, 1000)).unwrap();
        let batch: Vec<_> = raw_records("forex", &out);
        let rejected = parser.parse(&batch).iter().filter(|r| r.is_err()).count();
        assert!((180..320).contains(&rejected), "{rejected}");
    }

    #[test]
    fn config_errors_name_the_key() {
        for (json, key) in [
            (r#"{"pairs":[]}"#, "key `pairs`"),
            (r#"{"pairs":["EURUSD"]}"#, "key `pairs`"),
            (r#"{"malformed_rate":1.5}"#, "key `malformed_rate`"),
            (r#"{"malformed_rate":-0.1}"#, "key `malformed_rate`"),
            (r#"{"malformed_rate":"lots"}"#, "key `malformed_rate`"),
            (r#"{"symbols":["EUR/USD"]}"#, "unknown field `symbols`"),
        ] {
            let err = Generator::from_config_json(json).err().expect(json);
            assert!(err.contains(key), "{json}: {err}");
        }
    }
}
