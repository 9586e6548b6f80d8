//! News headlines in logfmt → `news` events.
//!
//! One article per line, e.g.
//! `ts=2026-11-23T08:00:00Z id=n-42-7 source=Reuters symbols=AAPL,MSFT headline="Apple beats estimates, shares jump" url="https://…"`
//! (see [`crate::logfmt`] for quoting). Required keys: `ts`, `id`, `source`,
//! `headline`; optional: `symbols` (comma-separated tickers, upper-cased,
//! duplicates removed) and `url`; other keys are ignored; a key given twice is
//! an error. A record may hold several lines (one event each).
//!
//! Event: dataset `news` (configurable), partition key = first symbol (or
//! `_none`), event time = ts, fields `id`, `source`, `headline`, `symbols`
//! (comma-joined, possibly empty) and `url` (only when present), all text.

use crate::logfmt::split_pairs;
use pipehost_guest::event::{event, text};
use pipehost_guest::names::is_ticker;
use pipehost_guest::record;
use pipehost_guest::time::parse_rfc3339;
use pipehost_guest::types::{Event, Name};
use pipehost_guest::{ParserPlugin, Plugin};
use serde::Deserialize;
use std::borrow::Cow;

/// The partition key of an article about no symbol.
pub const NO_SYMBOL: &str = "_none";

/// The parser's configuration (`config` table in pipeline.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Dataset of the produced events. Default `news`.
    #[serde(default = "default_dataset")]
    pub dataset: String,
}

fn default_dataset() -> String {
    "news".to_string()
}

/// The news parser, configured.
#[derive(Debug, Clone)]
pub struct Parser {
    config: Config,
    /// `config.dataset`, shared by every event (no allocation per event).
    dataset: Name,
}

/// Splits a `symbols` value: comma-separated, trimmed, empty entries
/// skipped, upper-cased, duplicates removed (first kept). Every entry must be
/// a ticker.
pub fn split_symbols(value: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for raw in value.split(',') {
        let raw = raw.trim();
        if raw.is_empty() {
            continue;
        }
        let symbol = raw.to_ascii_uppercase();
        if !is_ticker(&symbol) {
            return Err(format!("{raw:?} is not a ticker like AAPL"));
        }
        if !out.contains(&symbol) {
            out.push(symbol);
        }
    }
    Ok(out)
}

impl Parser {
    /// The dataset the events go to.
    pub fn dataset(&self) -> &str {
        &self.config.dataset
    }

    /// Parses one logfmt line into one event.
    pub fn parse_line(&self, line: &str) -> Result<Event, String> {
        let pairs = split_pairs(line)?;
        let mut ts = None;
        let mut id = None;
        let mut source = None;
        let mut headline = None;
        let mut symbols = None;
        let mut url = None;
        for (i, (key, value)) in pairs.iter().enumerate() {
            if pairs[..i].iter().any(|(k, _)| k == key) {
                return Err(format!("duplicate key `{key}`"));
            }
            let slot = match *key {
                "ts" => &mut ts,
                "id" => &mut id,
                "source" => &mut source,
                "headline" => &mut headline,
                "symbols" => &mut symbols,
                "url" => &mut url,
                _ => continue,
            };
            *slot = Some(value);
        }
        let required = |name: &str, v: Option<&Cow<'_, str>>| -> Result<String, String> {
            v.map(|v| v.to_string())
                .ok_or_else(|| format!("missing key `{name}`"))
        };
        let ts_text = required("ts", ts)?;
        let id = required("id", id)?;
        let source = required("source", source)?;
        let headline = required("headline", headline)?;
        let time = parse_rfc3339(&ts_text).map_err(|e| format!("key `ts`: {e}"))?;
        let symbols = match symbols {
            Some(v) => split_symbols(v).map_err(|e| format!("key `symbols`: {e}"))?,
            None => Vec::new(),
        };
        let key = symbols
            .first()
            .map_or(NO_SYMBOL, String::as_str)
            .to_string();
        let mut fields = vec![
            text("id", id),
            text("source", source),
            text("headline", headline),
            text("symbols", symbols.join(",")),
        ];
        if let Some(url) = url {
            fields.push(text("url", url.as_ref()));
        }
        Ok(event(self.dataset.clone(), key, time, fields))
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

    const T0: i64 = 1_795_420_800_000; // 2026-11-23T08:00:00Z
    const GOOD: &str = r#"ts=2026-11-23T08:00:00Z id=n-42-7 source=Reuters symbols=AAPL,MSFT headline="Apple beats estimates, shares jump" url="https://news.example.com/n-42-7""#;

    fn parser() -> Parser {
        Parser::from_config_json("{}").unwrap()
    }

    fn one(line: &str) -> Result<Event, String> {
        parser().parse_line(line)
    }

    #[test]
    fn well_formed_article() {
        assert_eq!(
            one(GOOD).unwrap(),
            event(
                "news",
                "AAPL",
                T0,
                vec![
                    text("id", "n-42-7"),
                    text("source", "Reuters"),
                    text("headline", "Apple beats estimates, shares jump"),
                    text("symbols", "AAPL,MSFT"),
                    text("url", "https://news.example.com/n-42-7"),
                ]
            )
        );
    }

    #[test]
    fn optional_and_unknown_keys() {
        let e = one(r#"lang=en ts=2026-11-23T09:00:00.250+01:00 id=1 source="Dow Jones" headline="Markets \"calm\", C:\\temp" extra"#)
            .unwrap();
        assert_eq!(e.partition_key, NO_SYMBOL);
        assert_eq!(e.event_time_ms, T0 + 250);
        assert_eq!(
            e.fields,
            vec![
                text("id", "1"),
                text("source", "Dow Jones"),
                text("headline", r#"Markets "calm", C:\temp"#),
                text("symbols", ""),
            ]
        );
        let e =
            one("symbols=msft,,AAPL,MSFT, ts=2026-11-23T08:00:00Z id=2 source=AP headline=Short")
                .unwrap();
        assert_eq!(e.partition_key, "MSFT");
        assert_eq!(e.fields[3], text("symbols", "MSFT,AAPL"));
        assert_eq!(e.fields[2], text("headline", "Short"));
        let e = one(r#"ts=2026-11-23T08:00:00Z id=3 source=AP headline="""#).unwrap();
        assert_eq!(e.fields[2], text("headline", ""));
    }

    #[test]
    fn several_lines() {
        let data = format!("{GOOD}\n{}\n", GOOD.replace("n-42-7", "n-42-8"));
        let events = parser().parse_record(data.as_bytes()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].fields[0], text("id", "n-42-8"));
    }

    #[test]
    fn rejections_name_the_key() {
        let cases = [
            (
                r#"ts=2026-11-23T08:00:00Z id=1 source=AP headline="Apple beats"#,
                "unterminated quote in the value of `headline`",
            ),
            (
                r#"ts=2026-11-23T08:00:00Z source=AP headline=x"#,
                "missing key `id`",
            ),
            (
                r#"ts=2026-11-23T08:00:00Z id=1 headline=x"#,
                "missing key `source`",
            ),
            (
                r#"ts=2026-11-23T08:00:00Z id=1 source=AP"#,
                "missing key `headline`",
            ),
            (r#"id=1 source=AP headline=x"#, "missing key `ts`"),
            (
                r#"ts=2026-11-23T08:00:00Z id=1 source=AP source=Reuters headline=x"#,
                "duplicate key `source`",
            ),
            (
                r#"ts=2026-11-23T08:00:00Z id=1 source=AP headline=x foo=1 foo=2"#,
                "duplicate key `foo`",
            ),
            (
                r#"ts=yesterday id=1 source=AP headline=x"#,
                "key `ts`: invalid RFC 3339",
            ),
            (
                r#"ts="2026-11-23T08:00:00" id=1 source=AP headline=x"#,
                "key `ts`: invalid RFC 3339",
            ),
            (
                r#"ts=2026-11-23T08:00:00Z id=1 source=AP headline=x symbols="AAPL,not a ticker""#,
                "key `symbols`: \"not a ticker\" is not a ticker",
            ),
            (
                r#"ts=2026-11-23T08:00:00Z id=1 source="AP"x headline=x"#,
                "text after the closing quote of `source`",
            ),
        ];
        for (line, want) in cases {
            let err = one(line).unwrap_err();
            assert!(err.contains(want), "{line}\n  got: {err}\n want: {want}");
        }
        assert_eq!(parser().parse_record(b"  \n").unwrap_err(), "empty record");
        assert!(
            parser()
                .parse_record(b"\xc3")
                .unwrap_err()
                .contains("UTF-8")
        );
    }

    #[test]
    fn config() {
        let p = Parser::from_config_json(r#"{"dataset":"headlines"}"#).unwrap();
        assert_eq!(p.parse_line(GOOD).unwrap().dataset, "headlines");
        assert!(
            Parser::from_config_json(r#"{"strict":true}"#)
                .unwrap_err()
                .contains("unknown field `strict`")
        );
    }
}
