//! Host-side helpers for plugin events: time conversion, JSON rendering (the
//! JSON Lines form objects are written in), a type-revealing text form for
//! diffs, and comparison with float tolerance.
//!
//! Objects are written straight from a batch by [`LineWriter`], byte for
//! byte what [`event_to_json`] serialized by `serde_json` gives (keys in
//! sorted order, a repeated field name keeping its last value, `serde_json`'s
//! number formatting and string escaping) without building a
//! `serde_json::Value` per event.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value as Json};

use crate::plugin::{Event, EventBatch, EventView, Field, Value, ValueRef};

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds.
pub fn format_ms(ms: i64) -> String {
    match DateTime::<Utc>::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::Millis, true),
        None => format!("<invalid time {ms} ms>"),
    }
}

/// 0000-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z: the range
/// [`write_ms`] formats itself (four-digit years, as chrono does).
const FAST_MS: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;

/// Appends `ms` as [`format_ms`] renders it, without allocating for years
/// 0000–9999.
pub fn write_ms(out: &mut Vec<u8>, ms: i64) {
    if !FAST_MS.contains(&ms) {
        out.extend_from_slice(format_ms(ms).as_bytes());
        return;
    }
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let mut buf = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut v: i64| {
        for i in (at..at + width).rev() {
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, in_day / 3_600_000);
    put(14, 2, in_day / 60_000 % 60);
    put(17, 2, in_day / 1000 % 60);
    put(20, 3, in_day % 1000);
    out.extend_from_slice(&buf);
}

/// Appends `s` as a JSON string (serde_json's escaping).
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    serde_json::to_writer(&mut *out, s).expect("writing to memory");
}

/// Appends a value as [`value_to_json`] would serialize.
pub fn write_json_value(out: &mut Vec<u8>, v: ValueRef<'_>) {
    match v {
        ValueRef::Boolean(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        ValueRef::Integer(i) => {
            serde_json::to_writer(&mut *out, &i).expect("writing to memory");
        }
        // Non-finite floats are `null`, as `Number::from_f64` makes them.
        ValueRef::Float(x) => serde_json::to_writer(&mut *out, &x).expect("writing to memory"),
        ValueRef::Text(s) => write_json_str(out, s),
        ValueRef::TimestampMs(ms) => {
            out.push(b'"');
            write_ms(out, ms);
            out.push(b'"');
        }
    }
}

/// Writes the JSON Lines form of the events of one batch.
///
/// A line is `{"dataset":…,"event_time":…,"fields":{…},"partition_key":…`
/// and then what the caller adds (`,"source":{…}`) and `}`: the keys in the
/// order a `serde_json` map (a `BTreeMap`) keeps them. Fields are sorted by
/// name through ranks computed once per batch (equal names, equal ranks); of
/// repeated names the last value is kept, as a map insert does. Names are
/// escaped once per batch, and the order worked out for one event is reused
/// for the next while the names come in the same sequence (they usually do).
pub struct LineWriter {
    /// Per name index of the batch: its rank among the names, by content.
    ranks: Vec<u32>,
    /// Per name index: the name as a JSON string, quotes included.
    escaped: Vec<Vec<u8>>,
    /// The name indices of the event `plan` was made for.
    seen: Vec<u32>,
    /// Positions of the fields to write, in key order, repeats resolved.
    plan: Vec<u32>,
    order: Vec<u64>,
}

impl LineWriter {
    pub fn new(batch: &EventBatch) -> Self {
        let names = batch.names();
        let mut sorted: Vec<u32> = (0..names.len() as u32).collect();
        sorted.sort_unstable_by(|a, b| names[*a as usize].cmp(&names[*b as usize]));
        let mut ranks = vec![0u32; names.len()];
        let mut rank = 0u32;
        for (k, &i) in sorted.iter().enumerate() {
            if k > 0 && names[sorted[k - 1] as usize] != names[i as usize] {
                rank += 1;
            }
            ranks[i as usize] = rank;
        }
        let escaped = names
            .iter()
            .map(|n| {
                let mut out = Vec::with_capacity(n.len() + 2);
                write_json_str(&mut out, n);
                out
            })
            .collect();
        Self {
            ranks,
            escaped,
            seen: Vec::new(),
            plan: Vec::new(),
            order: Vec::new(),
        }
    }

    /// Works out which fields to write in which order for `e`'s names.
    fn plan(&mut self, e: &EventView<'_>) {
        self.seen.clear();
        self.order.clear();
        for (k, (name, _)) in e.indexed_fields().enumerate() {
            self.seen.push(name);
            self.order
                .push(u64::from(self.ranks[name as usize]) << 32 | k as u64);
        }
        self.order.sort_unstable();
        self.plan.clear();
        for (j, &key) in self.order.iter().enumerate() {
            // Of equal names the last one wins (the next entry has its rank).
            if self
                .order
                .get(j + 1)
                .is_some_and(|next| next >> 32 == key >> 32)
            {
                continue;
            }
            self.plan.push((key & 0xffff_ffff) as u32);
        }
    }

    /// Appends the event's line up to and including its `partition_key`
    /// value; the caller closes it.
    pub fn write_event(&mut self, out: &mut Vec<u8>, e: &EventView<'_>) {
        out.extend_from_slice(b"{\"dataset\":");
        out.extend_from_slice(&self.escaped[e.dataset_index() as usize]);
        out.extend_from_slice(b",\"event_time\":\"");
        write_ms(out, e.event_time_ms());
        out.extend_from_slice(b"\",\"fields\":{");
        let same = self.seen.len() == e.field_count()
            && e.indexed_fields()
                .map(|(name, _)| name)
                .eq(self.seen.iter().copied());
        if !same {
            self.plan(e);
        }
        for (j, &k) in self.plan.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            let (name, value) = e.indexed_field(k as usize);
            out.extend_from_slice(&self.escaped[name as usize]);
            out.push(b':');
            write_json_value(out, value);
        }
        out.extend_from_slice(b"},\"partition_key\":");
        write_json_str(out, e.partition_key());
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
    fn write_ms_is_format_ms() {
        let mut samples: Vec<i64> = vec![
            0,
            -1,
            1,
            999,
            -999,
            1_795_420_800_123,
            951_782_400_000, // 2000-02-29
            -62_167_219_200_000,
            -62_167_219_200_001,
            253_402_300_799_999,
            253_402_300_800_000,
            i64::MIN,
            i64::MAX,
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push((x % 320_000_000_000_000) as i64 - 64_000_000_000_000);
        }
        for ms in samples {
            let mut out = Vec::new();
            write_ms(&mut out, ms);
            assert_eq!(String::from_utf8(out).unwrap(), format_ms(ms), "{ms}");
        }
    }

    /// The old way: a `serde_json::Value` per line.
    fn via_value(e: &Event) -> Vec<u8> {
        let mut line = event_to_json(e);
        line["source"] =
            serde_json::json!({"feed": "f", "part": 2, "sequence": "9:1", "shard": "s"});
        serde_json::to_vec(&line).unwrap()
    }

    #[test]
    fn line_writer_writes_what_serde_json_wrote() {
        let events = vec![
            ev(vec![("bid", Value::Float(1.1)), ("ask", Value::Float(0.3))]),
            ev(vec![]),
            ev(vec![
                ("z", Value::Integer(i64::MIN)),
                ("a", Value::Integer(7)),
                ("a", Value::Text("dup, last wins".into())),
                ("m", Value::Float(f64::NAN)),
                ("inf", Value::Float(f64::NEG_INFINITY)),
                ("big", Value::Float(1e300)),
                ("tiny", Value::Float(-5e-324)),
                ("one", Value::Float(1.0)),
                ("t", Value::TimestampMs(-62_167_219_200_001)),
                ("u", Value::TimestampMs(1_795_420_800_123)),
                ("b", Value::Boolean(false)),
                (
                    "esc\"ape\n",
                    Value::Text("quote \" backslash \\ tab \t ctrl \u{1} é ✓ \u{2028}".into()),
                ),
                ("Ä", Value::Boolean(true)),
                ("", Value::Text(String::new())),
                ("a", Value::Integer(8)),
            ]),
            Event {
                dataset: "data\"set".into(),
                partition_key: "EUR/USD\u{7f}".into(),
                event_time_ms: i64::MAX,
                fields: vec![Field {
                    name: "x".into(),
                    value: Value::Integer(-1),
                }],
            },
        ];
        let batch = EventBatch::from_events(&events);
        let mut writer = LineWriter::new(&batch);
        for (e, view) in events.iter().zip(batch.iter()) {
            let mut out = Vec::new();
            writer.write_event(&mut out, &view);
            out.extend_from_slice(
                br#","source":{"feed":"f","part":2,"sequence":"9:1","shard":"s"}}"#,
            );
            assert_eq!(
                String::from_utf8(out).unwrap(),
                String::from_utf8(via_value(e)).unwrap()
            );
        }
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
