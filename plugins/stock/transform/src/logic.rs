//! Stock trade enrichment.
//!
//! For each event (a trade with `price`, `prev_close` and `volume`): a
//! missing or mistyped field, `price <= 0`, `prev_close <= 0` or a negative
//! volume fails; a trade with `volume < min_volume` is dropped. Every kept
//! trade gets
//! `pct_change = (price - prev_close) / prev_close * 100` and
//! `batch_vwap` = Σ(price·volume) / Σ(volume) over the kept trades of the
//! same symbol (partition key) in this batch; when those trades have no
//! volume at all, their mean price.

use crate::Outcome;
use pipehost_guest::config::key_error;
use pipehost_guest::event::{field_f64, field_i64, float, set_field};
use pipehost_guest::types::Event;
use pipehost_guest::{Plugin, TransformPlugin};
use serde::Deserialize;
use std::collections::HashMap;

/// The transform's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Trades with a smaller volume are dropped. Default 0 (keep all).
    #[serde(default)]
    pub min_volume: i64,
}

/// The stock transform, configured.
#[derive(Debug, Clone)]
pub struct Transform {
    min_volume: i64,
}

/// A trade's numbers, once checked.
struct Trade {
    price: f64,
    volume: i64,
    prev_close: f64,
}

#[derive(Default)]
struct Totals {
    notional: f64,
    volume: f64,
    price_sum: f64,
    trades: u32,
}

impl Totals {
    fn vwap(&self) -> f64 {
        if self.volume > 0.0 {
            self.notional / self.volume
        } else {
            self.price_sum / f64::from(self.trades)
        }
    }
}

impl Transform {
    fn check(&self, event: &Event) -> Result<Option<Trade>, String> {
        let price = field_f64(event, "price")?;
        let volume = field_i64(event, "volume")?;
        let prev_close = field_f64(event, "prev_close")?;
        if !(price > 0.0 && price.is_finite()) {
            return Err(format!("non-positive price {price}"));
        }
        if !(prev_close > 0.0 && prev_close.is_finite()) {
            return Err(format!("non-positive prev_close {prev_close}"));
        }
        if volume < 0 {
            return Err(format!("negative volume {volume}"));
        }
        if volume < self.min_volume {
            return Ok(None);
        }
        Ok(Some(Trade {
            price,
            volume,
            prev_close,
        }))
    }
}

impl Plugin for Transform {
    type Config = Config;

    /// Builds the transform from a decoded configuration.
    fn new(config: Config) -> Result<Self, String> {
        if config.min_volume < 0 {
            return Err(key_error(
                "min_volume",
                format_args!("must not be negative, got {}", config.min_volume),
            ));
        }
        Ok(Transform {
            min_volume: config.min_volume,
        })
    }

    /// A one-line summary for the log.
    fn describe(&self) -> String {
        format!("min_volume {}", self.min_volume)
    }
}

impl TransformPlugin for Transform {
    /// Transforms a batch: one outcome per event, in order.
    fn transform(&self, batch: Vec<Event>) -> Vec<Outcome> {
        // First pass: check every trade and total the kept ones per symbol.
        let checked: Vec<Result<Option<Trade>, String>> =
            batch.iter().map(|e| self.check(e)).collect();
        let mut totals: HashMap<&str, Totals> = HashMap::new();
        for (event, result) in batch.iter().zip(&checked) {
            if let Ok(Some(t)) = result {
                let s = totals.entry(event.partition_key.as_str()).or_default();
                s.notional += t.price * t.volume as f64;
                s.volume += t.volume as f64;
                s.price_sum += t.price;
                s.trades += 1;
            }
        }
        let vwaps: HashMap<String, f64> = totals
            .into_iter()
            .map(|(symbol, t)| (symbol.to_string(), t.vwap()))
            .collect();
        // Second pass: build the outcomes.
        batch
            .into_iter()
            .zip(checked)
            .map(|(mut event, result)| match result {
                Err(reason) => Outcome::Fail(reason),
                Ok(None) => Outcome::Drop,
                Ok(Some(t)) => {
                    let pct = (t.price - t.prev_close) / t.prev_close * 100.0;
                    let vwap = vwaps[&event.partition_key];
                    set_field(&mut event, float("pct_change", pct));
                    set_field(&mut event, float("batch_vwap", vwap));
                    Outcome::Keep(event)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipehost_guest::event::{event, integer, text};

    fn trade(sym: &str, price: f64, volume: i64, prev: f64) -> Event {
        event(
            "stock",
            sym,
            0,
            vec![
                float("price", price),
                integer("volume", volume),
                float("prev_close", prev),
                text("exchange", "NASDAQ"),
            ],
        )
    }

    fn kept(o: &Outcome) -> &Event {
        match o {
            Outcome::Keep(e) => e,
            other => panic!("expected keep, got {other:?}"),
        }
    }

    fn num(e: &Event, name: &str) -> f64 {
        field_f64(e, name).unwrap()
    }

    #[test]
    fn pct_change_and_vwap_per_symbol() {
        let t = Transform::from_config_json("{}").unwrap();
        let out = t.transform(vec![
            trade("AAPL", 100.0, 100, 80.0),
            trade("MSFT", 400.0, 10, 400.0),
            trade("AAPL", 110.0, 300, 80.0),
        ]);
        let a = kept(&out[0]);
        assert_eq!(a.fields.len(), 6);
        assert_eq!(num(a, "pct_change"), 25.0);
        // (100*100 + 110*300) / 400 = 107.5
        assert_eq!(num(a, "batch_vwap"), 107.5);
        assert_eq!(num(kept(&out[2]), "batch_vwap"), 107.5);
        assert!((num(kept(&out[2]), "pct_change") - 37.5).abs() < 1e-12);
        assert_eq!(num(kept(&out[1]), "pct_change"), 0.0);
        assert_eq!(num(kept(&out[1]), "batch_vwap"), 400.0);
    }

    #[test]
    fn min_volume_drops_and_excludes_from_vwap() {
        let t = Transform::from_config_json(r#"{"min_volume":100}"#).unwrap();
        let out = t.transform(vec![
            trade("AAPL", 100.0, 100, 100.0),
            trade("AAPL", 500.0, 99, 100.0),
            trade("AAPL", 200.0, 100, 100.0),
        ]);
        assert_eq!(out[1], Outcome::Drop);
        assert_eq!(num(kept(&out[0]), "batch_vwap"), 150.0);
    }

    #[test]
    fn failures_are_excluded_from_vwap() {
        let t = Transform::from_config_json("{}").unwrap();
        let out = t.transform(vec![
            trade("AAPL", 100.0, 10, 100.0),
            trade("AAPL", 0.0, 1000, 100.0),
            trade("AAPL", 100.0, 10, -1.0),
            trade("AAPL", 100.0, -10, 100.0),
            event(
                "stock",
                "AAPL",
                0,
                vec![float("price", 1.0), float("volume", 1.0)],
            ),
            event(
                "stock",
                "AAPL",
                0,
                vec![float("price", 1.0), integer("volume", 1)],
            ),
        ]);
        assert_eq!(num(kept(&out[0]), "batch_vwap"), 100.0);
        assert_eq!(out[1], Outcome::Fail("non-positive price 0".into()));
        assert_eq!(out[2], Outcome::Fail("non-positive prev_close -1".into()));
        assert_eq!(out[3], Outcome::Fail("negative volume -10".into()));
        assert_eq!(
            out[4],
            Outcome::Fail("field `volume` must be an integer, got float".into())
        );
        assert_eq!(out[5], Outcome::Fail("missing field `prev_close`".into()));
    }

    #[test]
    fn zero_volume_vwap_is_mean_price() {
        let t = Transform::from_config_json("{}").unwrap();
        let out = t.transform(vec![trade("X", 10.0, 0, 10.0), trade("X", 20.0, 0, 10.0)]);
        assert_eq!(num(kept(&out[0]), "batch_vwap"), 15.0);
        assert!(t.transform(vec![]).is_empty());
    }

    #[test]
    fn config_errors() {
        assert!(
            Transform::from_config_json(r#"{"min_volume":-1}"#)
                .unwrap_err()
                .contains("key `min_volume`")
        );
        assert!(
            Transform::from_config_json(r#"{"min_volume":1.5}"#)
                .unwrap_err()
                .contains("key `min_volume`")
        );
        assert!(
            Transform::from_config_json(r#"{"max_volume":1}"#)
                .unwrap_err()
                .contains("unknown field `max_volume`")
        );
    }
}
