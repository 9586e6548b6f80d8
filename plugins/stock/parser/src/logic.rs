//! Stock trades in CSV → `stock` events.
//!
//! One trade per row, columns `ts,symbol,price,volume,prev_close,exchange`,
//! RFC 4180 quoting (see [`crate::csv`]), e.g.
//! `2026-11-23T08:00:00.123Z,AAPL,189.23,300,187.50,"NASDAQ"`. A record may
//! hold several rows (one event each); blank lines and a header row
//! (`ts,symbol,…`) are skipped. Event: dataset `stock` (configurable),
//! partition key = symbol, event time = ts, fields `price`, `prev_close`
//! (float), `volume` (integer), `exchange` (text).

use crate::csv::split_rows;
use pipehost_guest::event::{event, float, integer, text};
use pipehost_guest::names::is_ticker;
use pipehost_guest::record;
use pipehost_guest::time::parse_rfc3339;
use pipehost_guest::types::{Event, Name};
use pipehost_guest::{ParserPlugin, Plugin};
use serde::Deserialize;
use std::borrow::Cow;

/// The column names, in order.
pub const COLUMNS: [&str; 6] = ["ts", "symbol", "price", "volume", "prev_close", "exchange"];

/// The parser's configuration (`config` table in pipeline.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Dataset of the produced events. Default `stock`.
    #[serde(default = "default_dataset")]
    pub dataset: String,
}

fn default_dataset() -> String {
    "stock".to_string()
}

/// The stock parser, configured.
#[derive(Debug, Clone)]
pub struct Parser {
    config: Config,
    /// `config.dataset`, shared by every event (no allocation per event).
    dataset: Name,
}

fn column_name(index: usize) -> Cow<'static, str> {
    match COLUMNS.get(index) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("{}", index + 1)),
    }
}

fn number(column: &str, value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!(
            "column `{column}`: expected a number, got {value:?}"
        )),
    }
}

impl Parser {
    /// The dataset the events go to.
    pub fn dataset(&self) -> &str {
        &self.config.dataset
    }

    /// Parses one CSV row (already split into fields) into one event.
    pub fn parse_row<S: AsRef<str>>(&self, row: &[S]) -> Result<Event, String> {
        if row.len() != COLUMNS.len() {
            return Err(format!(
                "expected {} columns ({}), got {}",
                COLUMNS.len(),
                COLUMNS.join(","),
                row.len()
            ));
        }
        let [ts, symbol, price, volume, prev_close, exchange] =
            [0, 1, 2, 3, 4, 5].map(|i| row[i].as_ref());
        let time = parse_rfc3339(ts).map_err(|e| format!("column `ts`: {e}"))?;
        if !is_ticker(symbol) {
            return Err(format!(
                "column `symbol`: expected a ticker like AAPL, got {symbol:?}"
            ));
        }
        let price = number("price", price)?;
        let volume: i64 = volume
            .parse()
            .map_err(|_| format!("column `volume`: expected an integer, got {volume:?}"))?;
        if volume < 0 {
            return Err(format!("column `volume`: negative volume {volume}"));
        }
        let prev_close = number("prev_close", prev_close)?;
        Ok(event(
            self.dataset.clone(),
            symbol,
            time,
            vec![
                float("price", price),
                integer("volume", volume),
                float("prev_close", prev_close),
                text("exchange", exchange),
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
        let text = record::text(data)?;
        let rows = split_rows(text).map_err(|e| {
            format!(
                "{}column `{}`: {}",
                if e.row() > 1 {
                    format!("row {}: ", e.row())
                } else {
                    String::new()
                },
                column_name(e.column()),
                e.message()
            )
        })?;
        let rows: Vec<_> = rows
            .into_iter()
            .filter(|r| !(r.len() == COLUMNS.len() && r[0] == "ts" && r[1] == "symbol"))
            .collect();
        match rows.len() {
            0 => Err("empty record".to_string()),
            1 => Ok(vec![self.parse_row(&rows[0])?]),
            _ => rows
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    self.parse_row(row)
                        .map_err(|e| format!("row {}: {e}", i + 1))
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_795_420_800_000; // 2026-11-23T08:00:00Z
    const GOOD: &str = r#"2026-11-23T08:00:00.123Z,AAPL,189.23,300,187.50,"NASDAQ""#;

    fn parser() -> Parser {
        Parser::from_config_json("{}").unwrap()
    }

    fn parse(text: &str) -> Result<Vec<Event>, String> {
        parser().parse_record(text.as_bytes())
    }

    fn trade(sym: &str, time: i64, price: f64, volume: i64, prev: f64, exch: &str) -> Event {
        event(
            "stock",
            sym,
            time,
            vec![
                float("price", price),
                integer("volume", volume),
                float("prev_close", prev),
                text("exchange", exch),
            ],
        )
    }

    #[test]
    fn well_formed_trade() {
        assert_eq!(
            parse(GOOD),
            Ok(vec![trade("AAPL", T0 + 123, 189.23, 300, 187.5, "NASDAQ")])
        );
        assert_eq!(
            parse("2026-11-23T08:00:00Z,BRK.B,1,0,2,NYSE\r\n"),
            Ok(vec![trade("BRK.B", T0, 1.0, 0, 2.0, "NYSE")])
        );
    }

    #[test]
    fn quoting_edge_cases() {
        let e = parse(r#"2026-11-23T08:00:00Z,MSFT,1,5,2,"NYSE" Arca"#).unwrap_err();
        assert!(
            e.contains("column `exchange`: text after the closing quote"),
            "{e}"
        );
        let events =
            parse(r#""2026-11-23T09:00:00+01:00","MSFT","1e2",5,"99.5","NYSE Arca, ""Inc.""""#)
                .unwrap();
        assert_eq!(
            events,
            vec![trade("MSFT", T0, 100.0, 5, 99.5, r#"NYSE Arca, "Inc.""#)]
        );
        let events = parse("2026-11-23T08:00:00Z,X,1,1,1,\"multi\nline\"").unwrap();
        assert_eq!(events[0].fields[3], text("exchange", "multi\nline"));
        let events = parse("2026-11-23T08:00:00Z,X,1,1,1,").unwrap();
        assert_eq!(events[0].fields[3], text("exchange", ""));
    }

    #[test]
    fn several_rows_and_header() {
        let data = format!("ts,symbol,price,volume,prev_close,exchange\n{GOOD}\n\n{GOOD}\n");
        assert_eq!(parse(&data).unwrap().len(), 2);
        let err = parse(&format!("{GOOD}\n2026-11-23T08:00:00Z,AAPL,x,1,1,N\n")).unwrap_err();
        assert!(err.starts_with("row 2: column `price`"), "{err}");
        let err = parse(&format!("{GOOD}\n2026-11-23T08:00:00Z,AAPL,1,1,1,\"N\n")).unwrap_err();
        assert!(
            err.starts_with("row 2: column `exchange`: unterminated"),
            "{err}"
        );
        assert_eq!(
            parse("ts,symbol,price,volume,prev_close,exchange\n").unwrap_err(),
            "empty record"
        );
    }

    #[test]
    fn rejections_name_the_column() {
        let cases = [
            (
                "2026-11-23T08:00:00Z,AAPL,189.23,300,187.50",
                "expected 6 columns",
            ),
            (
                "2026-11-23T08:00:00Z,AAPL,189.23,300,187.50,NASDAQ,extra",
                "got 7",
            ),
            (
                "2026-11-23T08:00:00Z,AAPL,189.2x,300,187.50,NASDAQ",
                "column `price`: expected a number",
            ),
            (
                "2026-11-23T08:00:00Z,AAPL,,300,187.50,NASDAQ",
                "column `price`",
            ),
            (
                "2026-11-23T08:00:00Z,AAPL,NaN,300,187.50,NASDAQ",
                "column `price`",
            ),
            (
                "2026-11-23T08:00:00Z,AAPL,inf,300,187.50,NASDAQ",
                "column `price`",
            ),
            (
                "2026-11-23T08:00:00Z,AAPL,189.23,3e2,187.50,NASDAQ",
                "column `volume`: expected an integer",
            ),
            (
                "2026-11-23T08:00:00Z,AAPL,189.23,30.5,187.50,NASDAQ",
                "column `volume`",
            ),
            (
                "2026-11-23T08:00:00Z,AAPL,189.23,-300,187.50,NASDAQ",
                "column `volume`: negative volume -300",
            ),
            (
                "2026-11-23T08:00:00Z,AAPL,189.23,300,abc,NASDAQ",
                "column `prev_close`",
            ),
            (
                "2026-11-23T08:00:00Z,aapl,189.23,300,187.50,NASDAQ",
                "column `symbol`",
            ),
            (
                "2026-11-23T08:00:00Z,,189.23,300,187.50,NASDAQ",
                "column `symbol`",
            ),
            (
                "2026-11-23T08:00:00Z,TOOLONGSYMBOL,189.23,300,187.50,NASDAQ",
                "column `symbol`",
            ),
            (
                "2026-11-23 08:00:00,AAPL,189.23,300,187.50,NASDAQ",
                "column `ts`: invalid RFC 3339",
            ),
            (
                "2026-11-23T08:00:00Z,AAPL,189.23,300,187.50,\"NASDAQ",
                "column `exchange`: unterminated quoted field",
            ),
            (
                "2026-11-23T08:00:00Z,AA\"PL,189.23,300,187.50,NASDAQ",
                "column `symbol`: quote inside an unquoted field",
            ),
            ("", "empty record"),
        ];
        for (line, want) in cases {
            let err = parse(line).unwrap_err();
            assert!(err.contains(want), "{line}\n  got: {err}\n want: {want}");
        }
        assert!(
            parser()
                .parse_record(b"\xff,a")
                .unwrap_err()
                .contains("UTF-8")
        );
    }

    #[test]
    fn config() {
        let p = Parser::from_config_json(r#"{"dataset":"equities"}"#).unwrap();
        assert_eq!(
            p.parse_record(GOOD.as_bytes()).unwrap()[0].dataset,
            "equities"
        );
        assert!(
            Parser::from_config_json(r#"{"delimiter":";"}"#)
                .unwrap_err()
                .contains("unknown field `delimiter`")
        );
    }
}
