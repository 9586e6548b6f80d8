//! Building events and reading their fields.
//!
//! Field names are [`Name`]s: a literal (`float("bid", x)`) costs nothing,
//! and a name decoded from a batch is shared by every event of the batch.

use crate::types::{Event, Field, Name, Value};

/// A new event.
pub fn event(
    dataset: impl Into<Name>,
    partition_key: impl Into<String>,
    event_time_ms: i64,
    fields: Vec<Field>,
) -> Event {
    Event {
        dataset: dataset.into(),
        partition_key: partition_key.into(),
        event_time_ms,
        fields,
    }
}

/// A field with any value.
pub fn field(name: impl Into<Name>, value: Value) -> Field {
    Field {
        name: name.into(),
        value,
    }
}

/// A `float` field.
pub fn float(name: impl Into<Name>, value: f64) -> Field {
    field(name, Value::Float(value))
}

/// An `integer` field.
pub fn integer(name: impl Into<Name>, value: i64) -> Field {
    field(name, Value::Integer(value))
}

/// A `text` field.
pub fn text(name: impl Into<Name>, value: impl Into<String>) -> Field {
    field(name, Value::Text(value.into()))
}

/// A `boolean` field.
pub fn boolean(name: impl Into<Name>, value: bool) -> Field {
    field(name, Value::Boolean(value))
}

/// A `timestamp-ms` field.
pub fn timestamp(name: impl Into<Name>, ms: i64) -> Field {
    field(name, Value::TimestampMs(ms))
}

/// The WIT name of a value's type, for messages.
pub fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Boolean(_) => "boolean",
        Value::Integer(_) => "integer",
        Value::Float(_) => "float",
        Value::Text(_) => "text",
        Value::TimestampMs(_) => "timestamp-ms",
    }
}

/// The value of field `name`, if the event has one.
pub fn get<'a>(event: &'a Event, name: &str) -> Option<&'a Value> {
    event
        .fields
        .iter()
        .find(|f| f.name == name)
        .map(|f| &f.value)
}

fn require<'a>(event: &'a Event, name: &str) -> Result<&'a Value, String> {
    get(event, name).ok_or_else(|| format!("missing field `{name}`"))
}

fn mistyped(name: &str, expected: &str, got: &Value) -> String {
    format!("field `{name}` must be {expected}, got {}", type_name(got))
}

/// Field `name` as a number: a `float`, or an `integer` converted to `f64`.
pub fn field_f64(event: &Event, name: &str) -> Result<f64, String> {
    match require(event, name)? {
        Value::Float(v) => Ok(*v),
        Value::Integer(v) => Ok(*v as f64),
        other => Err(mistyped(name, "a number", other)),
    }
}

/// Field `name` as an `integer`.
pub fn field_i64(event: &Event, name: &str) -> Result<i64, String> {
    match require(event, name)? {
        Value::Integer(v) => Ok(*v),
        other => Err(mistyped(name, "an integer", other)),
    }
}

/// Field `name` as `text`.
pub fn field_str<'a>(event: &'a Event, name: &str) -> Result<&'a str, String> {
    match require(event, name)? {
        Value::Text(v) => Ok(v),
        other => Err(mistyped(name, "text", other)),
    }
}

/// Field `name` as a `boolean`.
pub fn field_bool(event: &Event, name: &str) -> Result<bool, String> {
    match require(event, name)? {
        Value::Boolean(v) => Ok(*v),
        other => Err(mistyped(name, "a boolean", other)),
    }
}

/// Field `name` as a `timestamp-ms`.
pub fn field_timestamp(event: &Event, name: &str) -> Result<i64, String> {
    match require(event, name)? {
        Value::TimestampMs(v) => Ok(*v),
        other => Err(mistyped(name, "a timestamp", other)),
    }
}

/// Sets a field: replaces the value of an existing field of that name (in
/// place, keeping the order) or appends a new one.
pub fn set_field(event: &mut Event, new: Field) {
    match event.fields.iter_mut().find(|f| f.name == new.name) {
        Some(existing) => existing.value = new.value,
        None => event.fields.push(new),
    }
}

/// Removes field `name`, returning its value.
pub fn remove_field(event: &mut Event, name: &str) -> Option<Value> {
    let index = event.fields.iter().position(|f| f.name == name)?;
    Some(event.fields.remove(index).value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Event {
        event(
            "forex",
            "EUR/USD",
            5,
            vec![
                float("bid", 1.5),
                integer("volume", 300),
                text("venue", "EBS"),
                boolean("firm", true),
                timestamp("sent", 9),
            ],
        )
    }

    #[test]
    fn builds() {
        let e = sample();
        assert_eq!(e.dataset, "forex");
        assert_eq!(e.partition_key, "EUR/USD");
        assert_eq!(e.event_time_ms, 5);
        assert_eq!(e.fields.len(), 5);
        assert_eq!(e.fields[0], field("bid", Value::Float(1.5)));
    }

    #[test]
    fn typed_getters() {
        let e = sample();
        assert_eq!(field_f64(&e, "bid"), Ok(1.5));
        assert_eq!(field_f64(&e, "volume"), Ok(300.0));
        assert_eq!(field_i64(&e, "volume"), Ok(300));
        assert_eq!(field_str(&e, "venue"), Ok("EBS"));
        assert_eq!(field_bool(&e, "firm"), Ok(true));
        assert_eq!(field_timestamp(&e, "sent"), Ok(9));
        assert!(get(&e, "nope").is_none());
    }

    #[test]
    fn getter_errors_name_the_field() {
        let e = sample();
        assert_eq!(field_f64(&e, "ask").unwrap_err(), "missing field `ask`");
        assert_eq!(
            field_f64(&e, "venue").unwrap_err(),
            "field `venue` must be a number, got text"
        );
        assert_eq!(
            field_i64(&e, "bid").unwrap_err(),
            "field `bid` must be an integer, got float"
        );
        assert!(field_str(&e, "bid").unwrap_err().contains("`bid`"));
        assert!(field_bool(&e, "bid").unwrap_err().contains("`bid`"));
        assert!(field_timestamp(&e, "bid").unwrap_err().contains("`bid`"));
    }

    #[test]
    fn set_and_remove() {
        let mut e = sample();
        set_field(&mut e, float("bid", 2.0));
        assert_eq!(e.fields.len(), 5);
        assert_eq!(e.fields[0], float("bid", 2.0));
        set_field(&mut e, float("mid", 3.0));
        assert_eq!(e.fields.len(), 6);
        assert_eq!(e.fields[5], float("mid", 3.0));
        assert_eq!(
            remove_field(&mut e, "venue"),
            Some(Value::Text("EBS".into()))
        );
        assert_eq!(remove_field(&mut e, "venue"), None);
        assert_eq!(e.fields.len(), 5);
    }
}
