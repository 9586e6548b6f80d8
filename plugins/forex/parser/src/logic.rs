//! Forex quotes in JSON Lines → `forex` events.
//!
//! One quote per line:
//! `{"pair":"EUR/USD","bid":1.08412,"ask":1.08431,"ts":"2026-11-23T08:00:00.123Z","venue":"EBS"}`.
//! A record may hold several lines (one event each); blank lines are skipped.
//! Unknown JSON keys are ignored. Event: dataset `forex` (configurable),
//! partition key = pair, event time = ts, fields `bid`, `ask` (float) and
//! `venue` (text).

use pipehost_guest::event::{event, float, text};
use pipehost_guest::names::is_currency_pair;
use pipehost_guest::time::parse_rfc3339;
use pipehost_guest::types::{Event, Name};
use pipehost_guest::{ParserPlugin, Plugin};
use pipehost_guest::{json, record};
use serde::Deserialize;
use std::borrow::Cow;

/// The parser's configuration (`config` table in pipeline.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Dataset of the produced events. Default `forex`.
    #[serde(default = "default_dataset")]
    pub dataset: String,
}

fn default_dataset() -> String {
    "forex".to_string()
}

/// The forex parser, configured.
#[derive(Debug, Clone)]
pub struct Parser {
    config: Config,
    /// `config.dataset`, shared by every event (no allocation per event).
    dataset: Name,
}

#[derive(Deserialize)]
struct Quote<'a> {
    #[serde(borrow)]
    pair: Cow<'a, str>,
    bid: f64,
    ask: f64,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(borrow)]
    venue: Cow<'a, str>,
}

impl Parser {
    /// The dataset the events go to.
    pub fn dataset(&self) -> &str {
        &self.config.dataset
    }

    /// Parses one JSON line into one event.
    pub fn parse_line(&self, line: &str) -> Result<Event, String> {
        let q: Quote = json::decode_object(line)?;
        if !is_currency_pair(&q.pair) {
            return Err(format!(
                "field `pair`: expected a currency pair like EUR/USD, got {:?}",
                q.pair
            ));
        }
        for (name, v) in [("bid", q.bid), ("ask", q.ask)] {
            if !v.is_finite() {
                return Err(format!("field `{name}`: not a finite number"));
            }
        }
        let time = parse_rfc3339(&q.ts).map_err(|e| format!("field `ts`: {e}"))?;
        Ok(event(
            self.dataset.clone(),
            q.pair.into_owned(),
            time,
            vec![
                float("bid", q.bid),
                float("ask", q.ask),
                text("venue", q.venue.into_owned()),
            ],
        ))
    }
}

impl Plugin for Parser {
    type Config = Config;

    /// Builds the parser from a decoded configuration.
    fn new(config: Config) -> Result<Self, String> {
        Ok(Parser {
            dataset: pipehost_guest::config::dataset_name(&config.dataset)?,
            config,
        })
    }

    fn describe(&self) -> String {
        format!("dataset `{}`", self.dataset())
    }
}

impl ParserPlugin for Parser {
    /// Parses one raw record into its events, or the reason it is rejected.
    fn parse_record(&self, data: &[u8]) -> Result<Vec<Event>, String> {
        record::parse_lines(data, |line| self.parse_line(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipehost_guest::types::RawRecord;
    use pipehost_guest::types::Source;

    const T0: i64 = 1_795_420_800_000; // 2026-11-23T08:00:00Z

    fn parser() -> Parser {
        Parser::from_config_json("{}").unwrap()
    }

    fn one(line: &str) -> Result<Event, String> {
        parser().parse_line(line)
    }

    const GOOD: &str = r#"{"pair":"EUR/USD","bid":1.08412,"ask":1.08431,"ts":"2026-11-23T08:00:00.123Z","venue":"EBS"}"#;

    #[test]
    fn well_formed_quote() {
        let e = one(GOOD).unwrap();
        assert_eq!(
            e,
            event(
                "forex",
                "EUR/USD",
                T0 + 123,
                vec![
                    float("bid", 1.08412),
                    float("ask", 1.08431),
                    text("venue", "EBS")
                ]
            )
        );
    }

    #[test]
    fn batch_keeps_order_and_isolates_bad_records() {
        let rec = |data: &'static str| RawRecord {
            data: data.as_bytes(),
            source: Source {
                feed: "forex",
                ..Source::default()
            },
        };
        let out = parser().parse(&[rec(GOOD), rec("{"), rec(GOOD)]);
        assert_eq!(out.len(), 3);
        assert!(out[0].is_ok());
        assert!(out[1].as_ref().unwrap_err().starts_with("invalid JSON"));
        assert!(out[2].is_ok());
    }

    #[test]
    fn several_lines_per_record_and_integers_and_offsets() {
        let data = format!(
            "{GOOD}\n\n{}\n",
            r#"{"venue":"Reuters","ts":"2026-11-23T09:00:00+01:00","ask":2,"bid":1,"pair":"GBP/USD","extra":{"x":[1]}}"#
        );
        let events = parser().parse_record(data.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].partition_key, "GBP/USD");
        assert_eq!(events[1].event_time_ms, T0);
        assert_eq!(events[1].fields[0], float("bid", 1.0));
        let err = parser()
            .parse_record(format!("{GOOD}\n{{\"pair\":1}}").as_bytes())
            .unwrap_err();
        assert!(err.starts_with("line 2: field `pair`"), "{err}");
    }

    #[test]
    fn escaped_strings() {
        let e = one(
            r#"{"pair":"EUR\/USD","bid":1,"ask":2,"ts":"2026-11-23T08:00:00Z","venue":"A \"B\""}"#,
        )
        .unwrap();
        assert_eq!(e.partition_key, "EUR/USD");
        assert_eq!(e.fields[2], text("venue", "A \"B\""));
    }

    #[test]
    fn rejections_name_the_field() {
        let cases = [
            (
                r#"{"pair":"EUR/USD","bid":1.08412,"ask":1.0"#,
                "invalid JSON",
            ),
            ("not json", "invalid JSON: expected an object"),
            (r#"[1,2,3,4,5]"#, "invalid JSON: expected an object"),
            (
                r#"{"pair":"EUR/USD","ask":1.2,"ts":"2026-11-23T08:00:00Z","venue":"EBS"}"#,
                "missing field `bid`",
            ),
            (
                r#"{"pair":"EUR/USD","bid":"1.1","ask":1.2,"ts":"2026-11-23T08:00:00Z","venue":"EBS"}"#,
                "field `bid`: invalid type",
            ),
            (
                r#"{"pair":"EUR/USD","bid":1.1,"ask":null,"ts":"2026-11-23T08:00:00Z","venue":"EBS"}"#,
                "field `ask`: invalid type",
            ),
            (
                r#"{"pair":"EUR/USD","bid":1.1,"ask":1.2,"ts":"2026-11-23T08:00:00Z","venue":7}"#,
                "field `venue`: invalid type",
            ),
            (
                r#"{"pair":"EURUSD","bid":1.1,"ask":1.2,"ts":"2026-11-23T08:00:00Z","venue":"EBS"}"#,
                "field `pair`: expected a currency pair",
            ),
            (
                r#"{"pair":"EUR/USD","bid":1.1,"ask":1.2,"ts":"yesterday","venue":"EBS"}"#,
                "field `ts`: invalid RFC 3339",
            ),
            (
                r#"{"pair":"EUR/USD","bid":1e999,"ask":1.2,"ts":"2026-11-23T08:00:00Z","venue":"EBS"}"#,
                "bid",
            ),
            (
                r#"{"pair":"EUR/USD","bid":1.1,"bid":1.1,"ask":1.2,"ts":"2026-11-23T08:00:00Z","venue":"EBS"}"#,
                "duplicate field `bid`",
            ),
            (
                r#"{"pair":"EUR/USD","bid":NaN,"ask":1.2,"ts":"2026-11-23T08:00:00Z","venue":"EBS"}"#,
                "invalid JSON",
            ),
        ];
        for (line, want) in cases {
            let err = one(line).unwrap_err();
            assert!(err.contains(want), "{line}\n  got: {err}\n want: {want}");
        }
    }

    #[test]
    fn empty_and_non_utf8_records() {
        assert_eq!(parser().parse_record(b"").unwrap_err(), "empty record");
        assert!(
            parser()
                .parse_record(b"\xff\xfe")
                .unwrap_err()
                .contains("UTF-8")
        );
    }

    #[test]
    fn config() {
        let p = Parser::from_config_json(r#"{"dataset":"fx"}"#).unwrap();
        assert_eq!(p.parse_line(GOOD).unwrap().dataset, "fx");
        assert!(
            Parser::from_config_json(r#"{"datasets":"fx"}"#)
                .unwrap_err()
                .contains("unknown field `datasets`")
        );
        assert!(
            Parser::from_config_json(r#"{"dataset":""}"#)
                .unwrap_err()
                .contains("key `dataset`")
        );
    }
}
