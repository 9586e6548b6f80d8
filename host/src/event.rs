//! Host-side helpers for plugin events: time conversion, JSON rendering (the
//! JSON Lines form objects are written in), a type-revealing text form for
//! diffs, and comparison with float tolerance.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value as Json};

use crate::plugin::{Event, Field, Value};

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn format_ms(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => format!("<invalid time {ms} ms>"),
    }
}

/// Parses RFC 3339 text (with an offset) into milliseconds since the epoch.
pub fn parse_rfc3339_ms(text: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("`{text}` is not an RFC 3339 time with an offset: {e}"))
}

/// The JSON form of a value: timestamps become RFC 3339 strings.
pub fn value_to_json(v: &Value) -> Json {
    match v {
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Json::Number)
            .unwrap_or(Json::Null),
        Value::Text(s) => Json::String(s.clone()),
        Value::TimestampMs(ms) => Json::String(format_ms(*ms)),
    }
}

/// The JSON Lines form of an event:
/// `{"dataset":…,"partition_key":…,"event_time":…,"fields":{…}}`.
pub fn event_to_json(e: &Event) -> Json {
    let mut fields = Map::new();
    for f in &e.fields {
        fields.insert(f.name.clone(), value_to_json(&f.value));
    }
    let mut obj = Map::new();
    obj.insert("dataset".into(), Json::String(e.dataset.clone()));
    obj.insert(
        "partition_key".into(),
        Json::String(e.partition_key.clone()),
    );
    obj.insert(
        "event_time".into(),
        Json::String(format_ms(e.event_time_ms)),
    );
    obj.insert("fields".into(), Json::Object(fields));
    Json::Object(obj)
}

/// A value in TOML-like notation that shows its type: `1` integer, `1.0`
/// float, `"x"` text, `true`, and bare RFC 3339 for a timestamp.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::Boolean(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Float(f) => {
            let s = format!("{f:?}");
            if s.contains(['.', 'e', 'E', 'N', 'i']) {
                s
            } else {
                format!("{s}.0")
            }
        }
        Value::Text(s) => format!("{s:?}"),
        Value::TimestampMs(ms) => format_ms(*ms),
    }
}

/// Multi-line text form of an event, fields sorted by name, for diffs.
pub fn render_event(e: &Event, indent: &str) -> String {
    let mut out = format!(
        "{indent}event dataset={:?} partition_key={:?} event_time={}\n",
        e.dataset,
        e.partition_key,
        format_ms(e.event_time_ms)
    );
    let mut fields: Vec<&Field> = e.fields.iter().collect();
    fields.sort_by(|a, b| a.name.cmp(&b.name));
    for f in fields {
        out.push_str(&format!(
            "{indent}  {} = {}\n",
            f.name,
            render_value(&f.value)
        ));
    }
    out
}

fn floats_match(a: f64, b: f64) -> bool {
    if a == b || (a.is_nan() && b.is_nan()) {
        return true;
    }
    let diff = (a - b).abs();
    diff <= 1e-12 || diff <= 1e-9 * a.abs().max(b.abs())
}

/// Value equality, floats within a relative 1e-9.
pub fn values_match(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float(x), Value::Float(y)) => floats_match(*x, *y),
        (Value::Boolean(x), Value::Boolean(y)) => x == y,
        (Value::Integer(x), Value::Integer(y)) => x == y,
        (Value::Text(x), Value::Text(y)) => x == y,
        (Value::TimestampMs(x), Value::TimestampMs(y)) => x == y,
        _ => false,
    }
}

/// Event equality: same header, same set of fields (order ignored), values
/// per [`values_match`].
pub fn events_match(a: &Event, b: &Event) -> bool {
    if a.dataset != b.dataset
        || a.partition_key != b.partition_key
        || a.event_time_ms != b.event_time_ms
        || a.fields.len() != b.fields.len()
    {
        return false;
    }
    a.fields.iter().all(|fa| {
        b.fields
            .iter()
            .find(|fb| fb.name == fa.name)
            .is_some_and(|fb| values_match(&fa.value, &fb.value))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(fields: Vec<(&str, Value)>) -> Event {
        Event {
            dataset: "forex".into(),
            partition_key: "EUR/USD".into(),
            event_time_ms: 1_795_420_800_123,
            fields: fields
                .into_iter()
                .map(|(n, v)| Field {
                    name: n.into(),
                    value: v,
                })
                .collect(),
        }
    }

    #[test]
    fn time_round_trips() {
        let ms = parse_rfc3339_ms("2026-11-23T08:00:00.123Z").unwrap();
        assert_eq!(format_ms(ms), "2026-11-23T08:00:00.123Z");
        assert_eq!(
            parse_rfc3339_ms("2026-11-23T09:00:00.123+01:00").unwrap(),
            ms
        );
        assert!(parse_rfc3339_ms("2026-11-23 08:00").is_err());
    }

    #[test]
    fn field_order_is_ignored_and_floats_have_tolerance() {
        let a = ev(vec![("bid", Value::Float(1.1)), ("ask", Value::Float(0.3))]);
        let b = ev(vec![
            ("ask", Value::Float(0.1 + 0.2)),
            ("bid", Value::Float(1.1)),
        ]);
        assert!(events_match(&a, &b));
        let c = ev(vec![
            ("ask", Value::Float(0.31)),
            ("bid", Value::Float(1.1)),
        ]);
        assert!(!events_match(&a, &c));
    }

    #[test]
    fn types_are_distinguished() {
        let a = ev(vec![("n", Value::Integer(1))]);
        let b = ev(vec![("n", Value::Float(1.0))]);
        assert!(!events_match(&a, &b));
        assert_eq!(render_value(&Value::Float(1.0)), "1.0");
        assert_eq!(render_value(&Value::Integer(1)), "1");
    }

    #[test]
    fn json_form() {
        let e = ev(vec![
            ("t", Value::TimestampMs(0)),
            ("x", Value::Text("y".into())),
        ]);
        let j = event_to_json(&e);
        assert_eq!(j["fields"]["t"], "1970-01-01T00:00:00.000Z");
        assert_eq!(j["event_time"], "2026-11-23T08:00:00.123Z");
    }
}
