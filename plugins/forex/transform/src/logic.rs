//! Forex quote enrichment.
//!
//! For each event: a pair outside `allow` (when configured) is dropped; a
//! quote whose `bid` or `ask` is missing, not a number or not positive, or
//! whose `ask <= bid` (crossed or locked), fails. Otherwise the event is kept
//! with three fields added (or replaced):
//! `mid = (bid + ask) / 2`, `spread = ask - bid`,
//! `spread_bps = spread / mid * 10 000`.

use crate::Outcome;
use pipehost_guest::config::key_error;
use pipehost_guest::event::{field_f64, float, set_field};
use pipehost_guest::names::is_currency_pair;
use pipehost_guest::types::Event;
use pipehost_guest::{Plugin, TransformPlugin};
use serde::Deserialize;
use std::collections::BTreeSet;

/// The transform's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Pairs to keep (`AAA/BBB`); others are dropped. Absent: keep all.
    #[serde(default)]
    pub allow: Option<Vec<String>>,
}

/// The forex transform, configured.
#[derive(Debug, Clone)]
pub struct Transform {
    allow: Option<BTreeSet<String>>,
}

impl Transform {
    /// Transforms one event.
    pub fn transform_one(&self, mut event: Event) -> Outcome {
        if let Some(allow) = &self.allow
            && !allow.contains(&event.partition_key)
        {
            return Outcome::Drop;
        }
        let (bid, ask) = match (field_f64(&event, "bid"), field_f64(&event, "ask")) {
            (Ok(bid), Ok(ask)) => (bid, ask),
            (Err(e), _) | (_, Err(e)) => return Outcome::Fail(e),
        };
        if !(bid > 0.0 && ask > 0.0 && bid.is_finite() && ask.is_finite()) {
            return Outcome::Fail(format!("non-positive price: bid {bid}, ask {ask}"));
        }
        if ask < bid {
            return Outcome::Fail(format!("crossed quote: ask {ask} < bid {bid}"));
        }
        if ask == bid {
            return Outcome::Fail(format!("locked quote: ask {ask} == bid {bid}"));
        }
        let mid = (bid + ask) / 2.0;
        let spread = ask - bid;
        set_field(&mut event, float("mid", mid));
        set_field(&mut event, float("spread", spread));
        set_field(&mut event, float("spread_bps", spread / mid * 10_000.0));
        Outcome::Keep(event)
    }
}

impl Plugin for Transform {
    type Config = Config;

    /// Builds the transform from a decoded configuration.
    fn new(config: Config) -> Result<Self, String> {
        let allow = match config.allow {
            None => None,
            Some(pairs) => {
                if pairs.is_empty() {
                    return Err(key_error(
                        "allow",
                        "must not be empty (leave it out to allow every pair)",
                    ));
                }
                if let Some(bad) = pairs.iter().find(|p| !is_currency_pair(p)) {
                    return Err(key_error(
                        "allow",
                        format_args!("{bad:?} is not a currency pair like EUR/USD"),
                    ));
                }
                Some(pairs.into_iter().collect())
            }
        };
        Ok(Transform { allow })
    }

    /// A one-line summary for the log.
    fn describe(&self) -> String {
        match &self.allow {
            None => "all pairs".to_string(),
            Some(set) => format!("{} allowed pair(s)", set.len()),
        }
    }
}

impl TransformPlugin for Transform {
    /// Transforms a batch: one outcome per event, in order.
    fn transform(&self, batch: Vec<Event>) -> Vec<Outcome> {
        batch.into_iter().map(|e| self.transform_one(e)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipehost_guest::event::{event, integer, text};
    use pipehost_guest::types::Value;

    fn quote(pair: &str, bid: f64, ask: f64) -> Event {
        event(
            "forex",
            pair,
            1000,
            vec![float("bid", bid), float("ask", ask), text("venue", "EBS")],
        )
    }

    fn get(e: &Event, name: &str) -> f64 {
        field_f64(e, name).unwrap()
    }

    fn all() -> Transform {
        Transform::from_config_json("{}").unwrap()
    }

    #[test]
    fn adds_mid_spread_and_bps() {
        let Outcome::Keep(e) = all().transform_one(quote("EUR/USD", 1.1, 1.1002)) else {
            panic!("not kept");
        };
        assert_eq!(e.fields.len(), 6);
        assert_eq!(e.fields[2], text("venue", "EBS"));
        assert!((get(&e, "mid") - 1.1001).abs() < 1e-12);
        assert!((get(&e, "spread") - 0.0002).abs() < 1e-12);
        assert!((get(&e, "spread_bps") - 0.0002 / 1.1001 * 1e4).abs() < 1e-9);
        assert_eq!(e.partition_key, "EUR/USD");
        assert_eq!(e.event_time_ms, 1000);
    }

    #[test]
    fn replaces_existing_derived_fields_and_accepts_integers() {
        let mut q = event(
            "forex",
            "USD/JPY",
            0,
            vec![integer("bid", 150), integer("ask", 151)],
        );
        q.fields.push(float("mid", -1.0));
        let Outcome::Keep(e) = all().transform_one(q) else {
            panic!("not kept")
        };
        assert_eq!(e.fields.len(), 5);
        assert_eq!(e.fields[2], float("mid", 150.5));
        assert_eq!(e.fields[0].value, Value::Integer(150));
    }

    #[test]
    fn allow_list_drops_others() {
        let t = Transform::from_config_json(r#"{"allow":["EUR/USD","GBP/USD"]}"#).unwrap();
        let out = t.transform(vec![
            quote("EUR/USD", 1.0, 1.1),
            quote("USD/JPY", 150.0, 150.1),
            quote("GBP/USD", 1.2, 1.3),
            quote("USD/JPY", 2.0, 1.0),
        ]);
        assert!(matches!(out[0], Outcome::Keep(_)));
        assert_eq!(out[1], Outcome::Drop);
        assert!(matches!(out[2], Outcome::Keep(_)));
        assert_eq!(out[3], Outcome::Drop, "dropped before it is checked");
    }

    #[test]
    fn failures() {
        let t = all();
        let fail = |e: Event| match t.transform_one(e) {
            Outcome::Fail(reason) => reason,
            other => panic!("expected fail, got {other:?}"),
        };
        assert_eq!(
            fail(quote("EUR/USD", 1.2, 1.1)),
            "crossed quote: ask 1.1 < bid 1.2"
        );
        assert_eq!(
            fail(quote("EUR/USD", 1.2, 1.2)),
            "locked quote: ask 1.2 == bid 1.2"
        );
        assert!(fail(quote("EUR/USD", 0.0, 1.2)).starts_with("non-positive price"));
        assert!(fail(quote("EUR/USD", -1.0, -0.5)).starts_with("non-positive price"));
        assert!(fail(quote("EUR/USD", f64::NAN, 1.0)).starts_with("non-positive price"));
        assert_eq!(
            fail(event("forex", "EUR/USD", 0, vec![float("ask", 1.0)])),
            "missing field `bid`"
        );
        assert_eq!(
            fail(event(
                "forex",
                "EUR/USD",
                0,
                vec![float("bid", 1.0), text("ask", "x")]
            )),
            "field `ask` must be a number, got text"
        );
    }

    #[test]
    fn config_errors() {
        assert!(
            Transform::from_config_json(r#"{"allow":[]}"#)
                .unwrap_err()
                .contains("key `allow`")
        );
        assert!(
            Transform::from_config_json(r#"{"allow":["EURUSD"]}"#)
                .unwrap_err()
                .contains("key `allow`")
        );
        assert!(
            Transform::from_config_json(r#"{"allow":"EUR/USD"}"#)
                .unwrap_err()
                .contains("key `allow`")
        );
        assert!(
            Transform::from_config_json(r#"{"deny":[]}"#)
                .unwrap_err()
                .contains("unknown field `deny`")
        );
    }
}
