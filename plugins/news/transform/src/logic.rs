//! News enrichment: symbols, sentiment, one event per symbol.
//!
//! For each article event:
//! * `headline` missing, not text or blank → `fail`.
//! * Symbols = the `symbols` field (comma-separated, may be absent), then
//!   cashtags in the headline (`$AAPL`, any ticker), then headline words equal
//!   to one of `known_symbols` (case-sensitive); upper-cased, duplicates
//!   removed, in that order. The `symbols` field is rewritten with the merged
//!   list.
//! * Sentiment from a small word lexicon: `sentiment_score` =
//!   (positive − negative) / (positive + negative) over the headline's words,
//!   0 when none match; `sentiment` = `positive` (> 0), `negative` (< 0) or
//!   `neutral`.
//! * With `split_per_symbol` (default) an article about N ≥ 2 symbols becomes
//!   `split` into N events, one per symbol, partition key = that symbol; one
//!   symbol → `keep` with that key; none → `keep` with key `_none`. Without
//!   it, the article is kept once, keyed by its first symbol (or `_none`).

use crate::Outcome;
use pipehost_guest::config::key_error;
use pipehost_guest::event::{float, get, set_field, text};
use pipehost_guest::names::is_ticker;
use pipehost_guest::types::{Event, Value};
use pipehost_guest::{Plugin, TransformPlugin};
use serde::Deserialize;

/// The partition key of an article about no symbol.
pub const NO_SYMBOL: &str = "_none";

/// The default `known_symbols`: the stock feed's default large caps.
pub const DEFAULT_KNOWN_SYMBOLS: [&str; 10] = [
    "AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "XOM", "JNJ",
];

/// Words that make a headline more positive.
pub const POSITIVE_WORDS: &[&str] = &[
    "beat",
    "beats",
    "boost",
    "boosts",
    "bullish",
    "gain",
    "gains",
    "growth",
    "higher",
    "jump",
    "jumps",
    "outperform",
    "profit",
    "raises",
    "rallies",
    "rally",
    "record",
    "rise",
    "rises",
    "soar",
    "soars",
    "strong",
    "surge",
    "surges",
    "tops",
    "upgrade",
    "upgraded",
    "wins",
];

/// Words that make a headline more negative.
pub const NEGATIVE_WORDS: &[&str] = &[
    "bearish",
    "cut",
    "cuts",
    "decline",
    "declines",
    "downgrade",
    "downgraded",
    "drop",
    "drops",
    "fall",
    "falls",
    "fraud",
    "layoffs",
    "loss",
    "losses",
    "lower",
    "miss",
    "missed",
    "misses",
    "plunge",
    "plunges",
    "probe",
    "recall",
    "sink",
    "sinks",
    "slump",
    "slumps",
    "tumble",
    "tumbles",
    "warning",
    "warns",
    "weak",
];

/// The transform's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Tickers recognised as plain words in headlines. Default:
    /// [`DEFAULT_KNOWN_SYMBOLS`]; `[]` turns word matching off.
    #[serde(default)]
    pub known_symbols: Option<Vec<String>>,
    /// One event per mentioned symbol. Default `true`.
    #[serde(default = "default_true")]
    pub split_per_symbol: bool,
}

fn default_true() -> bool {
    true
}

/// The news transform, configured.
#[derive(Debug, Clone)]
pub struct Transform {
    known_symbols: Vec<String>,
    split_per_symbol: bool,
}

/// A headline's sentiment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sentiment {
    /// (positive − negative) / (positive + negative), or 0.
    pub score: f64,
}

impl Sentiment {
    /// `positive`, `negative` or `neutral`.
    pub fn label(&self) -> &'static str {
        if self.score > 0.0 {
            "positive"
        } else if self.score < 0.0 {
            "negative"
        } else {
            "neutral"
        }
    }
}

/// Scores a headline with the word lexicon (case-insensitive).
pub fn sentiment(headline: &str) -> Sentiment {
    let (mut pos, mut neg) = (0u32, 0u32);
    for word in headline
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_lowercase();
        if POSITIVE_WORDS.binary_search(&word.as_str()).is_ok() {
            pos += 1;
        } else if NEGATIVE_WORDS.binary_search(&word.as_str()).is_ok() {
            neg += 1;
        }
    }
    let total = pos + neg;
    let score = if total == 0 {
        0.0
    } else {
        (f64::from(pos) - f64::from(neg)) / f64::from(total)
    };
    Sentiment { score }
}

fn is_ticker_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '.' || c == '-'
}

fn push_unique(out: &mut Vec<String>, symbol: String) {
    if !out.contains(&symbol) {
        out.push(symbol);
    }
}

/// Cashtags in `headline`: `$` then a ticker (letters first, then letters,
/// digits, `.` or `-`; trailing `.`/`-` ignored), upper-cased, in order.
pub fn cashtags(headline: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = headline;
    while let Some(pos) = rest.find('$') {
        let after = &rest[pos + 1..];
        let end = after
            .find(|c: char| !is_ticker_char(c))
            .unwrap_or(after.len());
        let tag = after[..end]
            .trim_end_matches(['.', '-'])
            .to_ascii_uppercase();
        if is_ticker(&tag) {
            push_unique(&mut out, tag);
        }
        rest = after;
    }
    out
}

impl Transform {
    /// The article's symbols: the `symbols` field, then cashtags, then known
    /// symbols mentioned as words.
    pub fn symbols(&self, listed: &str, headline: &str) -> Vec<String> {
        let mut out = Vec::new();
        for s in listed.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            push_unique(&mut out, s.to_ascii_uppercase());
        }
        for tag in cashtags(headline) {
            push_unique(&mut out, tag);
        }
        for word in headline.split(|c: char| !(is_ticker_char(c) || c == '$')) {
            if word.starts_with('$') {
                continue;
            }
            let word = word.trim_matches(['.', '-']);
            if self.known_symbols.iter().any(|k| k == word) {
                push_unique(&mut out, word.to_string());
            }
        }
        out
    }

    /// Transforms one event.
    pub fn transform_one(&self, mut event: Event) -> Outcome {
        let headline = match get(&event, "headline") {
            Some(Value::Text(h)) if h.trim().is_empty() => {
                return Outcome::Fail("empty headline".to_string());
            }
            Some(Value::Text(h)) => h.clone(),
            Some(_) => return Outcome::Fail("field `headline` must be text".to_string()),
            None => return Outcome::Fail("missing field `headline`".to_string()),
        };
        let listed = match get(&event, "symbols") {
            Some(Value::Text(s)) => s.as_str(),
            Some(_) => return Outcome::Fail("field `symbols` must be text".to_string()),
            None => "",
        };
        let symbols = self.symbols(listed, &headline);
        let mood = sentiment(&headline);
        set_field(&mut event, text("symbols", symbols.join(",")));
        set_field(&mut event, text("sentiment", mood.label()));
        set_field(&mut event, float("sentiment_score", mood.score));
        match symbols.as_slice() {
            [] => {
                event.partition_key = NO_SYMBOL.to_string();
                Outcome::Keep(event)
            }
            [first, ..] if !self.split_per_symbol || symbols.len() == 1 => {
                event.partition_key = first.clone();
                Outcome::Keep(event)
            }
            _ => Outcome::Split(
                symbols
                    .iter()
                    .map(|s| {
                        let mut e = event.clone();
                        e.partition_key = s.clone();
                        e
                    })
                    .collect(),
            ),
        }
    }
}

impl Plugin for Transform {
    type Config = Config;

    /// Builds the transform from a decoded configuration.
    fn new(config: Config) -> Result<Self, String> {
        let known_symbols = match config.known_symbols {
            None => DEFAULT_KNOWN_SYMBOLS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            Some(list) => {
                if let Some(bad) = list.iter().find(|s| !is_ticker(s)) {
                    return Err(key_error(
                        "known_symbols",
                        format_args!("{bad:?} is not a ticker like AAPL"),
                    ));
                }
                list
            }
        };
        Ok(Transform {
            known_symbols,
            split_per_symbol: config.split_per_symbol,
        })
    }

    /// A one-line summary for the log.
    fn describe(&self) -> String {
        format!(
            "{} known symbol(s), split_per_symbol {}",
            self.known_symbols.len(),
            self.split_per_symbol
        )
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
    use pipehost_guest::event::{event, field_f64, field_str};

    fn article(key: &str, symbols: &str, headline: &str) -> Event {
        event(
            "news",
            key,
            1000,
            vec![
                text("id", "n-1"),
                text("source", "Reuters"),
                text("headline", headline),
                text("symbols", symbols),
            ],
        )
    }

    fn default() -> Transform {
        Transform::from_config_json("{}").unwrap()
    }

    #[test]
    fn lexicons_are_sorted_for_binary_search() {
        assert!(POSITIVE_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(NEGATIVE_WORDS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn sentiment_scores() {
        assert_eq!(sentiment("Apple beats estimates, shares jump").score, 1.0);
        assert_eq!(sentiment("Tesla MISSES forecast, stock falls").score, -1.0);
        assert_eq!(sentiment("Record profit but shares fall").score, 1.0 / 3.0);
        assert_eq!(sentiment("Meta to present at conference").score, 0.0);
        assert_eq!(
            sentiment("Meta to present at conference").label(),
            "neutral"
        );
        assert_eq!(sentiment("Gains").label(), "positive");
        assert_eq!(sentiment("probe").label(), "negative");
    }

    #[test]
    fn cashtag_extraction() {
        assert_eq!(
            cashtags("$aapl and $MSFT. also $BRK.B, $5 and US$ x"),
            vec!["AAPL", "MSFT", "BRK.B"]
        );
        assert_eq!(cashtags("$AAPL $AAPL"), vec!["AAPL"]);
        assert!(cashtags("no tags $ here $$").is_empty());
    }

    #[test]
    fn symbol_merge_order() {
        let t = default();
        assert_eq!(
            t.symbols("tsla, aapl", "AAPL and MSFT rally; $NFLX too, JPM."),
            vec!["TSLA", "AAPL", "NFLX", "MSFT", "JPM"]
        );
        // Known symbols are matched case-sensitively, as whole words.
        assert!(t.symbols("", "Apple and msft and AAPLX").is_empty());
        let none = Transform::from_config_json(r#"{"known_symbols":[]}"#).unwrap();
        assert_eq!(none.symbols("", "AAPL $MSFT"), vec!["MSFT"]);
    }

    #[test]
    fn splits_one_event_per_symbol() {
        let out =
            default().transform_one(article("AAPL", "AAPL", "Apple and $MSFT beat estimates"));
        let Outcome::Split(events) = out else {
            panic!("expected split, got {out:?}")
        };
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].partition_key, "AAPL");
        assert_eq!(events[1].partition_key, "MSFT");
        for e in &events {
            assert_eq!(field_str(e, "symbols"), Ok("AAPL,MSFT"));
            assert_eq!(field_str(e, "sentiment"), Ok("positive"));
            assert_eq!(field_f64(e, "sentiment_score"), Ok(1.0));
            assert_eq!(e.fields.len(), 6);
            assert_eq!(e.event_time_ms, 1000);
        }
    }

    #[test]
    fn one_or_no_symbol_is_kept() {
        let Outcome::Keep(e) =
            default().transform_one(article("_none", "", "Tesla cuts prices, TSLA falls"))
        else {
            panic!()
        };
        assert_eq!(e.partition_key, "TSLA");
        assert_eq!(field_str(&e, "sentiment"), Ok("negative"));
        let Outcome::Keep(e) = default().transform_one(article("X", "", "Markets quiet")) else {
            panic!()
        };
        assert_eq!(e.partition_key, "_none");
        assert_eq!(field_str(&e, "symbols"), Ok(""));
        assert_eq!(field_str(&e, "sentiment"), Ok("neutral"));
    }

    #[test]
    fn without_split_keeps_first_symbol() {
        let t = Transform::from_config_json(r#"{"split_per_symbol":false}"#).unwrap();
        let Outcome::Keep(e) = t.transform_one(article("MSFT", "MSFT,AAPL", "Big tech rallies"))
        else {
            panic!()
        };
        assert_eq!(e.partition_key, "MSFT");
        assert_eq!(field_str(&e, "symbols"), Ok("MSFT,AAPL"));
    }

    #[test]
    fn missing_symbols_field_is_fine() {
        let e = event("news", "", 0, vec![text("headline", "$AAPL soars")]);
        let Outcome::Keep(e) = default().transform_one(e) else {
            panic!()
        };
        assert_eq!(e.partition_key, "AAPL");
        assert_eq!(e.fields.len(), 4);
    }

    #[test]
    fn failures() {
        let t = default();
        assert_eq!(
            t.transform_one(article("A", "", "")),
            Outcome::Fail("empty headline".into())
        );
        assert_eq!(
            t.transform_one(article("A", "", "  ")),
            Outcome::Fail("empty headline".into())
        );
        assert_eq!(
            t.transform_one(event("news", "A", 0, vec![])),
            Outcome::Fail("missing field `headline`".into())
        );
        assert_eq!(
            t.transform_one(event("news", "A", 0, vec![float("headline", 1.0)])),
            Outcome::Fail("field `headline` must be text".into())
        );
        assert_eq!(
            t.transform_one(event(
                "news",
                "A",
                0,
                vec![text("headline", "x"), float("symbols", 1.0)]
            )),
            Outcome::Fail("field `symbols` must be text".into())
        );
    }

    #[test]
    fn config_errors() {
        assert!(
            Transform::from_config_json(r#"{"known_symbols":["aapl"]}"#)
                .unwrap_err()
                .contains("key `known_symbols`")
        );
        assert!(
            Transform::from_config_json(r#"{"split_per_symbol":"yes"}"#)
                .unwrap_err()
                .contains("key `split_per_symbol`")
        );
        assert!(
            Transform::from_config_json(r#"{"lexicon":[]}"#)
                .unwrap_err()
                .contains("unknown field `lexicon`")
        );
    }
}
