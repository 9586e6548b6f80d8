//! Deterministic news headlines, one logfmt line per record:
//! `ts=2026-11-23T08:00:00.000Z id=n-42-7 source=Reuters symbols=AAPL,MSFT headline="Apple beats estimates, shares jump" url="https://news.example.com/n-42-7"`.
//!
//! Record `i` of tick `n` is about symbol `(n * count + i) % symbols.len()`
//! (sometimes a second one too), has id `n-<n>-<i>`, happens at
//! `time_ms + i`, and draws its choices from a splitmix64 seeded with a hash
//! of `(seed, n, i)`: output is a pure function of the tick and the
//! configuration. Headlines come from positive, negative and neutral
//! templates; some carry a `$CASHTAG` (and then no `symbols` key), some quote
//! a phrase (exercising `\"` escapes); sources with spaces are quoted.
//!
//! With `malformed_rate` > 0 that fraction of records is deliberately broken
//! in one of four ways: an unterminated quote, a missing `id`, a duplicate
//! `source`, a timestamp that is not RFC 3339.

use crate::{Generated, Tick};
use pipehost_guest::generate::{check_rate, cycle_index, name_list};
use pipehost_guest::names::is_ticker;
use pipehost_guest::rng::{SplitMix64, record_rng};
use pipehost_guest::time::format_rfc3339_ms;
use pipehost_guest::{GeneratorPlugin, Plugin};
use serde::Deserialize;

/// The default symbols: the stock feed's ten large caps.
pub const DEFAULT_SYMBOLS: [&str; 10] = [
    "AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "XOM", "JNJ",
];

const COMPANIES: [(&str, &str); 10] = [
    ("AAPL", "Apple"),
    ("MSFT", "Microsoft"),
    ("GOOGL", "Alphabet"),
    ("AMZN", "Amazon"),
    ("NVDA", "Nvidia"),
    ("META", "Meta"),
    ("TSLA", "Tesla"),
    ("JPM", "JPMorgan"),
    ("XOM", "Exxon Mobil"),
    ("JNJ", "Johnson & Johnson"),
];

const SOURCES: [&str; 5] = ["Reuters", "Bloomberg", "Dow Jones", "AP", "MarketWatch"];

/// Headline templates: `{co}` is the company, `{co2}` a second company
/// (the record then lists both symbols), `{sym}` the ticker as a cashtag.
const TEMPLATES: [&str; 12] = [
    "{co} beats estimates, shares jump",
    "{co} shares surge after record quarter",
    "{co} raises guidance as demand stays strong",
    "{co} misses revenue forecast, stock falls",
    "{co} cuts outlook amid weak demand",
    "Regulators open probe into {co}",
    "{co} to present at investor conference",
    "{co} names new chief financial officer",
    "{co} and {co2} announce \"strategic partnership\"",
    "{co} and {co2} shares slump as tech sells off",
    "${sym} options activity picks up",
    "${sym} upgraded to \"buy\" at major broker",
];

/// The generator's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Symbols the headlines are about. Default: [`DEFAULT_SYMBOLS`].
    #[serde(default)]
    pub symbols: Option<Vec<String>>,
    /// Fraction (0.0–1.0) of records made deliberately malformed. Default 0.
    #[serde(default)]
    pub malformed_rate: f64,
}

struct Symbol {
    ticker: String,
    company: String,
}

/// The news generator, configured.
pub struct Generator {
    symbols: Vec<Symbol>,
    malformed_rate: f64,
}

/// Writes a logfmt value: bare when it is non-empty and holds no space,
/// quote, `=` or backslash; otherwise quoted with `\"` and `\\` escapes.
pub fn logfmt_value(value: &str) -> String {
    let bare = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c == '\\');
    if bare {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Always-quoted variant of [`logfmt_value`].
fn quoted(value: &str) -> String {
    let v = logfmt_value(value);
    if v.starts_with('"') {
        v
    } else {
        format!("\"{v}\"")
    }
}

impl Generator {
    fn other_symbol(&self, rng: &mut SplitMix64, first: usize) -> Option<&Symbol> {
        let n = self.symbols.len();
        if n < 2 {
            return None;
        }
        let offset = 1 + rng.below(n as u64 - 1) as usize;
        Some(&self.symbols[(first + offset) % n])
    }
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
            .map(|ticker| {
                let company = COMPANIES
                    .iter()
                    .find(|(t, _)| *t == ticker)
                    .map_or_else(|| ticker.clone(), |(_, c)| c.to_string());
                Symbol { ticker, company }
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
        let first = cycle_index(tick.number, tick.count, index, self.symbols.len());
        let sym = &self.symbols[first];
        let time = tick.time_ms.wrapping_add(i64::from(index));
        let id = format!("n-{}-{}", tick.number, index);

        let mut template = *rng.pick(&TEMPLATES);
        let second = self.other_symbol(&mut rng, first);
        if template.contains("{co2}") && second.is_none() {
            template = TEMPLATES[0];
        }
        let mut headline = template
            .replace("{co}", &sym.company)
            .replace("{sym}", &sym.ticker);
        let mut symbols = vec![sym.ticker.as_str()];
        if let Some(other) = second.filter(|_| template.contains("{co2}")) {
            headline = headline.replace("{co2}", &other.company);
            symbols.push(&other.ticker);
        }
        // Cashtag headlines leave the symbols to the transform to find.
        let listed = if template.contains("{sym}") {
            None
        } else {
            Some(symbols.join(","))
        };
        let source = SOURCES[rng.below(SOURCES.len() as u64) as usize];
        let source = logfmt_value(source);
        let ts = format_rfc3339_ms(time);
        let headline_q = quoted(&headline);
        let url = quoted(&format!("https://news.example.com/{id}"));
        let symbols_kv = listed.map_or_else(String::new, |s| format!(" symbols={s}"));

        let line = if malformed {
            match rng.below(4) {
                0 => {
                    // Cut inside the quoted headline: the quote never closes.
                    let full = format!(
                        "ts={ts} id={id} source={source}{symbols_kv} headline={headline_q}"
                    );
                    let cut = full.len() - headline_q.len() + 1 + headline.len().min(8);
                    let cut = (0..=cut)
                        .rev()
                        .find(|c| full.is_char_boundary(*c))
                        .unwrap_or(0);
                    full[..cut].to_string()
                }
                1 => format!("ts={ts} source={source}{symbols_kv} headline={headline_q} url={url}"),
                2 => format!(
                    "ts={ts} id={id} source={source}{symbols_kv} headline={headline_q} source={source} url={url}"
                ),
                _ => format!(
                    "ts={} id={id} source={source}{symbols_kv} headline={headline_q} url={url}",
                    ts.replace('T', "_").trim_end_matches('Z')
                ),
            }
        } else {
            format!("ts={ts} id={id} source={source}{symbols_kv} headline={headline_q} url={url}")
        };
        Generated {
            partition_key: sym.ticker.clone(),
            data: line.into_bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipehost_guest::ParserPlugin;
    use pipehost_guest::event::field_str;
    use pipehost_guest::testing::{T0, assert_replayable, lines, raw_records, text, tick};

    fn gen_default() -> Generator {
        Generator::from_config_json("{}").unwrap()
    }

    const GOLDEN: [&str; 3] = [
        r#"ts=2026-11-23T08:00:00.000Z id=n-0-0 source="Dow Jones" symbols=AAPL,XOM headline="Apple and Exxon Mobil shares slump as tech sells off" url="https://news.example.com/n-0-0""#,
        r#"ts=2026-11-23T08:00:00.001Z id=n-0-1 source=Reuters symbols=MSFT headline="Microsoft beats estimates, shares jump" url="https://news.example.com/n-0-1""#,
        r#"ts=2026-11-23T08:00:00.002Z id=n-0-2 source=Reuters symbols=GOOGL headline="Regulators open probe into Alphabet" url="https://news.example.com/n-0-2""#,
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
    fn logfmt_quoting() {
        assert_eq!(logfmt_value("Reuters"), "Reuters");
        assert_eq!(logfmt_value("Dow Jones"), "\"Dow Jones\"");
        assert_eq!(logfmt_value(""), "\"\"");
        assert_eq!(logfmt_value(r#"a "b" \c"#), r#""a \"b\" \\c""#);
        assert_eq!(logfmt_value("a=b"), "\"a=b\"");
        assert_eq!(quoted("x"), "\"x\"");
    }

    #[test]
    fn deterministic_and_seed_sensitive() {
        assert_replayable::<Generator>("{}");
    }

    #[test]
    fn output_parses_cleanly() {
        let parser = news_parser::Parser::from_config_json("{}").unwrap();
        let mut escaped = 0;
        let mut cashtag = 0;
        for g in [
            gen_default(),
            Generator::from_config_json(r#"{"symbols":["BRK.B"]}"#).unwrap(),
        ] {
            for number in 0..10 {
                let out = g
                    .generate(&Tick {
                        seed: 11,
                        number,
                        time_ms: T0,
                        count: 100,
                    })
                    .unwrap();
                let batch: Vec<_> = raw_records("news", &out);
                for (i, (res, g)) in parser.parse(&batch).into_iter().zip(&out).enumerate() {
                    let events = res.unwrap_or_else(|e| panic!("{}: {e}", text(g)));
                    let e = &events[0];
                    assert_eq!(e.event_time_ms, T0 + i as i64);
                    assert_eq!(field_str(e, "id").unwrap(), format!("n-{number}-{i}"));
                    let headline = field_str(e, "headline").unwrap();
                    assert!(!headline.contains('{'), "{headline}");
                    escaped += usize::from(headline.contains('"'));
                    if headline.starts_with('$') {
                        cashtag += 1;
                        assert_eq!(e.partition_key, "_none");
                    } else {
                        assert_eq!(e.partition_key, g.partition_key);
                    }
                }
            }
        }
        assert!(escaped > 0 && cashtag > 0, "{escaped} {cashtag}");
    }

    #[test]
    fn malformed_records_are_rejected() {
        let parser = news_parser::Parser::from_config_json("{}").unwrap();
        let all_bad = Generator::from_config_json(r#"{"malformed_rate":1.0}"#).unwrap();
        let out = all_bad.generate(&tick(5, 0, 200)).unwrap();
        let batch: Vec<_> = raw_records("news", &out);
        let mut reasons = std::collections::BTreeSet::new();
        for (res, g) in parser.parse(&batch).into_iter().zip(&out) {
            let reason = res.expect_err(text(g));
            reasons.insert(reason.split(['`', ':']).next().unwrap().to_string());
        }
        assert_eq!(reasons.len(), 4, "all four kinds appear: {reasons:?}");

        let some_bad = Generator::from_config_json(r#"{"malformed_rate":0.5}"#).unwrap();
        let out = some_bad.generate(&tick(5, 0, 1000)).unwrap();
        let batch: Vec<_> = raw_records("news", &out);
        let rejected = parser.parse(&batch).iter().filter(|r| r.is_err()).count();
        assert!((420..580).contains(&rejected), "{rejected}");
    }

    #[test]
    fn config_errors_name_the_key() {
        for (json, key) in [
            (r#"{"symbols":[]}"#, "key `symbols`"),
            (r#"{"symbols":["$AAPL"]}"#, "key `symbols`"),
            (r#"{"malformed_rate":-1}"#, "key `malformed_rate`"),
            (r#"{"sources":["AP"]}"#, "unknown field `sources`"),
        ] {
            let err = Generator::from_config_json(json).err().expect(json);
            assert!(err.contains(key), "{json}: {err}");
        }
    }
}
