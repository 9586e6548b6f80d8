//! Object key templates, e.g.
//! `dataset={dataset}/date={date}/hour={hour}/{shard}-{first_seq}`.
//!
//! Placeholders: `{dataset}`, `{date}` (YYYY-MM-DD of the event time, UTC),
//! `{hour}` (HH), `{shard}` and `{first_seq}` (the stream position the batch
//! starts at). `{shard}` and `{first_seq}` are required: they make a key a
//! function of its input, so a redelivered batch overwrites its own object
//! instead of writing a second one. The writer appends `.jsonl` or
//! `.jsonl.gz`.

use chrono::{DateTime, Datelike, Timelike, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Dataset,
    Date,
    Hour,
    Shard,
    FirstSeq,
}

/// A parsed key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    pieces: Vec<Piece>,
}

/// The values a key is rendered from.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    pub dataset: &'a str,
    pub event_time_ms: i64,
    pub shard: &'a str,
    pub first_seq: &'a str,
}

pub const DEFAULT_TEMPLATE: &str = "dataset={dataset}/date={date}/hour={hour}/{shard}-{first_seq}";

impl Default for KeyTemplate {
    fn default() -> Self {
        Self::parse(DEFAULT_TEMPLATE).expect("the default template is valid")
    }
}

impl KeyTemplate {
    /// The finest time unit a key depends on (`{hour}`): events whose times
    /// fall in the same hour (counted from the epoch) of the same dataset
    /// get the same key.
    pub const GRANULARITY_MS: i64 = 3_600_000;

    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Literal(rest[..open].to_string()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("unclosed '{{' in {text:?}"))?
                + open;
            let piece = match &rest[open + 1..close] {
                "dataset" => Piece::Dataset,
                "date" => Piece::Date,
                "hour" => Piece::Hour,
                "shard" => Piece::Shard,
                "first_seq" => Piece::FirstSeq,
                other => {
                    return Err(format!(
                        "unknown placeholder {{{other}}}; use {{dataset}}, {{date}}, {{hour}}, {{shard}}, {{first_seq}}"
                    ));
                }
            };
            pieces.push(piece);
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Literal(rest.to_string()));
        }
        for (needed, name) in [(Piece::Shard, "{shard}"), (Piece::FirstSeq, "{first_seq}")] {
            if !pieces.contains(&needed) {
                return Err(format!(
                    "{text:?} lacks {name}: keys must be derived from their input so a retry overwrites"
                ));
            }
        }
        if text.starts_with('/') || text.contains("//") {
            return Err(format!("{text:?}: no leading '/' or empty path segments"));
        }
        Ok(Self { pieces })
    }

    /// The fixed text before the first placeholder.
    pub fn literal_prefix(&self) -> &str {
        match self.pieces.first() {
            Some(Piece::Literal(s)) => s,
            _ => "",
        }
    }

    pub fn render(&self, parts: &KeyParts<'_>) -> String {
        let t = DateTime::<Utc>::from_timestamp_millis(parts.event_time_ms).unwrap_or_default();
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Literal(s) => out.push_str(s),
                Piece::Dataset => out.push_str(parts.dataset),
                Piece::Date => {
                    out.push_str(&format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()))
                }
                Piece::Hour => out.push_str(&format!("{:02}", t.hour())),
                Piece::Shard => out.push_str(parts.shard),
                Piece::FirstSeq => out.push_str(parts.first_seq),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_partitions_from_event_time() {
        let k = KeyTemplate::default();
        let key = k.render(&KeyParts {
            dataset: "forex",
            event_time_ms: 1_795_420_800_123,
            shard: "shard-0001",
            first_seq: "00000000000000000042",
        });
        assert_eq!(
            key,
            "dataset=forex/date=2026-11-23/hour=08/shard-0001-00000000000000000042"
        );
    }

    #[test]
    fn refuses_templates_that_break_determinism() {
        assert!(
            KeyTemplate::parse("dataset={dataset}/{date}")
                .unwrap_err()
                .contains("{shard}")
        );
        assert!(
            KeyTemplate::parse("{shard}-{first_seq}-{uuid}")
                .unwrap_err()
                .contains("unknown placeholder")
        );
        assert!(KeyTemplate::parse("{shard").is_err());
    }
}
