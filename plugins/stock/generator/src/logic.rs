//! Deterministic stock trades, one CSV row per record:
//! `2026-11-23T08:00:00.123Z,AAPL,189.23,300,187.50,"NASDAQ"`.
//!
//! Record `i` of a tick is about symbol `(number * count + i) % symbols.len()`,
//! happens at `time_ms + i`, and draws its noise from a splitmix64 seeded
//! with a hash of `(seed, number, i)`: output is a pure function of the tick
//! and the configuration. `prev_close` is the symbol's base price moved by up
//! to ±1 % per UTC day (a hash of symbol and day); `price` moves around it
//! with a two-hour triangle wave (±1 %) and ±0.3 % noise. Volumes are mostly
//! round lots (100–5000), sometimes odd lots (1–99).
//!
//! With `malformed_rate` > 0 that fraction of records is deliberately broken
//! in one of four ways: a missing column, a non-numeric price, a negative
//! volume, an unterminated quote.

use crate::{Generated, Tick};
use pipehost_guest::generate::{check_rate, cycle_index, fixed_decimal, name_list, to_units, wave};
use pipehost_guest::names::is_ticker;
use pipehost_guest::rng::{fnv1a64, hash_u64s, record_rng};
use pipehost_guest::time::format_rfc3339_ms;
use pipehost_guest::{GeneratorPlugin, Plugin};
use serde::Deserialize;

/// The default symbols: ten large caps.
pub const DEFAULT_SYMBOLS: [&str; 10] = [
    "AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "XOM", "JNJ",
];

/// Base prices and listing exchanges of the symbols the generator knows.
const KNOWN: [(&str, f64, &str); 10] = [
    ("AAPL", 189.50, "NASDAQ"),
    ("MSFT", 378.90, "NASDAQ"),
    ("GOOGL", 141.80, "NASDAQ"),
    ("AMZN", 146.10, "NASDAQ"),
    ("NVDA", 467.70, "NASDAQ"),
    ("META", 334.70, "NASDAQ"),
    ("TSLA", 234.30, "NASDAQ"),
    ("JPM", 154.10, "NYSE"),
    ("XOM", 104.20, "NYSE"),
    ("JNJ", 152.40, "NYSE"),
];

/// The generator's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Symbols to cycle through. Default: [`DEFAULT_SYMBOLS`].
    #[serde(default)]
    pub symbols: Option<Vec<String>>,
    /// Fraction (0.0–1.0) of records made deliberately malformed. Default 0.
    #[serde(default)]
    pub malformed_rate: f64,
}

struct Symbol {
    name: String,
    hash: u64,
    base: f64,
    exchange: &'static str,
}

/// The stock generator, configured.
pub struct Generator {
    symbols: Vec<Symbol>,
    malformed_rate: f64,
}

impl Plugin for Generator {
    type Config = Config;

    /// Builds the generator from a decoded configuration.
    fn new(config: Config) -> Result<Self, String> {
        check_rate("malformed_rate", config.malformed_rate)?;
        let names = name_list(
            "symbols",
            config.symbols,
            &DEFAULT_SYMBOLS,
            is_ticker,
            "a ticker like AAPL",
        )?;
        let symbols = names
            .into_iter()
            .map(|name| {
                let hash = fnv1a64(name.as_bytes());
                let (base, exchange) = KNOWN
                    .iter()
                    .find(|(n, _, _)| *n == name)
                    .map(|(_, b, x)| (*b, *x))
                    // Unknown symbol: a base between 10 and 500, from its name.
                    .unwrap_or_else(|| {
                        let exchange = if hash.is_multiple_of(2) {
                            "NYSE"
                        } else {
                            "NASDAQ"
                        };
                        (10.0 + (hash % 49_000) as f64 / 100.0, exchange)
                    });
                Symbol {
                    name,
                    hash,
                    base,
                    exchange,
                }
            })
            .collect();
        Ok(Generator {
            symbols,
            malformed_rate: config.malformed_rate,
        })
    }

    /// A one-line summary for the log.
    fn describe(&self) -> String {
        format!(
            "{} symbol(s), malformed_rate {}",
            self.symbols.len(),
            self.malformed_rate
        )
    }
}

impl GeneratorPlugin for Generator {
    fn record(&self, tick: &Tick, index: u32) -> Generated {
        let mut rng = record_rng(tick.seed, tick.number, u64::from(index));
        let malformed = rng.chance(self.malformed_rate);
        let sym = &self.symbols[cycle_index(tick.number, tick.count, index, self.symbols.len())];
        let time = tick.time_ms.wrapping_add(i64::from(index));

        // Yesterday's close: the base moved by up to ±1 %, fixed per UTC day.
        let day = time.div_euclid(86_400_000);
        let day_move = (hash_u64s(&[sym.hash, day as u64]) % 2001) as f64 / 1000.0 - 1.0;
        let prev_units = to_units(sym.base * (1.0 + 0.01 * day_move), 2).max(1);
        let prev_close = prev_units as f64 / 100.0;
        let drift = 0.01 * wave(time, 7_200_000, sym.hash);
        let noise = rng.range_f64(-0.003, 0.003);
        let price_units = to_units(prev_close * (1.0 + drift + noise), 2).max(1);
        let volume = if rng.chance(0.8) {
            rng.range_i64(1, 50) * 100
        } else {
            rng.range_i64(1, 99)
        };
        let ts = format_rfc3339_ms(time);
        let price = fixed_decimal(price_units, 2);
        let prev = fixed_decimal(prev_units, 2);
        let name = &sym.name;
        let exchange = sym.exchange;

        let line = if malformed {
            match rng.below(4) {
                0 => format!("{ts},{name},{price},{volume},{prev}"),
                1 => format!("{ts},{name},{price}x,{volume},{prev},\"{exchange}\""),
                2 => format!("{ts},{name},{price},-{volume},{prev},\"{exchange}\""),
                _ => format!("{ts},{name},{price},{volume},{prev},\"{exchange}"),
            }
        } else {
            format!("{ts},{name},{price},{volume},{prev},\"{exchange}\"")
        };
        Generated {
            partition_key: sym.name.clone(),
            data: line.into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipehost_guest::ParserPlugin;
    use pipehost_guest::event::{field_f64, field_i64};
    use pipehost_guest::testing::{T0, assert_replayable, lines, raw_records, text, tick};

    fn gen_default() -> Generator {
        Generator::from_config_json("{}").unwrap()
    }

    const GOLDEN: [&str; 3] = [
        r#"2026-11-23T08:00:00.000Z,AAPL,189.82,2200,187.86,"NASDAQ""#,
        r#"2026-11-23T08:00:00.001Z,MSFT,382.03,200,379.59,"NASDAQ""#,
        r#"2026-11-23T08:00:00.002Z,GOOGL,141.80,200,140.75,"NASDAQ""#,
    ];

    #[test]
    fn golden_output() {
        let out = gen_default().generate(&tick(42, 0, 3)).unwrap();
        assert_eq!(
            lines(&out),
            vec![
                ("AAPL", GOLDEN[0]),
                ("MSFT", GOLDEN[1]),
                ("GOOGL", GOLDEN[2])
            ]
        );
    }

    #[test]
    fn deterministic_and_seed_sensitive() {
        assert_replayable::<Generator>("{}");
    }

    #[test]
    fn cycles_symbols() {
        let out = gen_default().generate(&tick(1, 0, 20)).unwrap();
        for (i, g) in out.iter().enumerate() {
            assert_eq!(g.partition_key, DEFAULT_SYMBOLS[i % 10]);
        }
        let next = gen_default().generate(&tick(1, 1, 4)).unwrap();
        assert_eq!(next[0].partition_key, DEFAULT_SYMBOLS[4]);
    }

    #[test]
    fn output_parses_cleanly_and_is_plausible() {
        let parser = stock_parser::Parser::from_config_json("{}").unwrap();
        let g = Generator::from_config_json(r#"{"symbols":["AAPL","BRK.B","X","JNJ"]}"#).unwrap();
        for number in 0..20 {
            let time_ms = T0 + number as i64 * 3_599_000;
            let out = g
                .generate(&Tick {
                    seed: 3,
                    number,
                    time_ms,
                    count: 100,
                })
                .unwrap();
            let batch: Vec<_> = raw_records("stock", &out);
            for (i, (res, g)) in parser.parse(&batch).into_iter().zip(&out).enumerate() {
                let events = res.unwrap_or_else(|e| panic!("{}: {e}", text(g)));
                let e = &events[0];
                assert_eq!(e.partition_key, g.partition_key);
                assert_eq!(e.event_time_ms, time_ms + i as i64);
                let price = field_f64(e, "price").unwrap();
                let prev = field_f64(e, "prev_close").unwrap();
                let volume = field_i64(e, "volume").unwrap();
                assert!(price > 0.0 && prev > 0.0 && volume > 0, "{}", text(g));
                assert!((price / prev - 1.0).abs() < 0.0135, "{}", text(g));
                if e.partition_key == "AAPL" {
                    assert!((185.0..194.0).contains(&price), "{price}");
                }
            }
        }
    }

    #[test]
    fn malformed_records_are_rejected() {
        let parser = stock_parser::Parser::from_config_json("{}").unwrap();
        let all_bad = Generator::from_config_json(r#"{"malformed_rate":1.0}"#).unwrap();
        let out = all_bad.generate(&tick(5, 0, 200)).unwrap();
        let batch: Vec<_> = raw_records("stock", &out);
        let mut reasons = std::collections::BTreeSet::new();
        for (res, g) in parser.parse(&batch).into_iter().zip(&out) {
            let reason = res.expect_err(text(g));
            reasons.insert(reason.split(':').next().unwrap().to_string());
        }
        assert_eq!(reasons.len(), 4, "all four kinds appear: {reasons:?}");

        let some_bad = Generator::from_config_json(r#"{"malformed_rate":0.1}"#).unwrap();
        let out = some_bad.generate(&tick(5, 0, 1000)).unwrap();
        let batch: Vec<_> = raw_records("stock", &out);
        let rejected = parser.parse(&batch).iter().filter(|r| r.is_err()).count();
        assert!((60..140).contains(&rejected), "{rejected}");
    }

    #[test]
    fn config_errors_name_the_key() {
        for (json, key) in [
            (r#"{"symbols":[]}"#, "key `symbols`"),
            (r#"{"symbols":["aapl"]}"#, "key `symbols`"),
            (r#"{"symbols":"AAPL"}"#, "key `symbols`"),
            (r#"{"malformed_rate":2}"#, "key `malformed_rate`"),
            (r#"{"pairs":["AAPL"]}"#, "unknown field `pairs`"),
        ] {
            let err = Generator::from_config_json(json).err().expect(json);
            assert!(err.contains(key), "{json}: {err}");
        }
    }
}
