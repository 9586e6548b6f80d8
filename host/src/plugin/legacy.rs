//! Plugins built against the frozen contract `0.1.0`: their per-record
//! batches converted to and from the columns of `0.2.0`, so the rest of the
//! host — and the next plugin of a chain — never knows which version a
//! plugin speaks.

use super::batch::{
    BatchOutcome, EventBatch, EventBatchBuilder, GeneratedBatch, Parsed, RawBatch, Tick,
    Transformed, ValueRef,
};
use super::bindings_v0_1::exports::pipehost::plugin::{generator, transformer};
use super::bindings_v0_1::pipehost::plugin::types as v1;

pub(crate) fn tick(t: Tick) -> generator::Tick {
    generator::Tick {
        seed: t.seed,
        number: t.number,
        time_ms: t.time_ms,
        count: t.count,
    }
}

pub(crate) fn raw_records(batch: &RawBatch) -> Vec<v1::RawRecord> {
    batch
        .iter()
        .map(|r| v1::RawRecord {
            data: r.data.to_vec(),
            source: v1::Source {
                feed: batch.feed().to_string(),
                shard: batch.shard().to_string(),
                sequence: r.sequence.to_string(),
                partition_key: r.partition_key.to_string(),
                arrival_time_ms: r.arrival_time_ms,
            },
        })
        .collect()
}

pub(crate) fn events(batch: &EventBatch) -> Vec<v1::Event> {
    batch
        .iter()
        .map(|e| v1::Event {
            dataset: e.dataset().to_string(),
            partition_key: e.partition_key().to_string(),
            event_time_ms: e.event_time_ms(),
            fields: e
                .fields()
                .map(|(name, v)| v1::Field {
                    name: name.to_string(),
                    value: match v {
                        ValueRef::Boolean(b) => v1::Value::Boolean(b),
                        ValueRef::Integer(i) => v1::Value::Integer(i),
                        ValueRef::Float(x) => v1::Value::Float(x),
                        ValueRef::Text(s) => v1::Value::Text(s.to_string()),
                        ValueRef::TimestampMs(ms) => v1::Value::TimestampMs(ms),
                    },
                })
                .collect(),
        })
        .collect()
}

fn value(v: &v1::Value) -> ValueRef<'_> {
    match v {
        v1::Value::Boolean(b) => ValueRef::Boolean(*b),
        v1::Value::Integer(i) => ValueRef::Integer(*i),
        v1::Value::Float(x) => ValueRef::Float(*x),
        v1::Value::Text(s) => ValueRef::Text(s),
        v1::Value::TimestampMs(ms) => ValueRef::TimestampMs(*ms),
    }
}

fn push(b: &mut EventBatchBuilder, e: &v1::Event) {
    b.push_fields(
        &e.dataset,
        &e.partition_key,
        e.event_time_ms,
        e.fields.iter().map(|f| (f.name.as_str(), value(&f.value))),
    );
}

/// A 0.1.0 parser's results as columns, checked like a 0.2.0 answer (one
/// result per record of the `n` in the batch).
pub(crate) fn parsed(out: Vec<Result<Vec<v1::Event>, String>>, n: usize) -> Result<Parsed, String> {
    let mut b = EventBatchBuilder::default();
    let results = out
        .into_iter()
        .map(|r| {
            r.map(|events| {
                for e in &events {
                    push(&mut b, e);
                }
                events.len() as u32
            })
        })
        .collect();
    Parsed::check(b.finish(), results, n)
}

/// A 0.1.0 transform's outcomes as columns, checked like a 0.2.0 answer
/// (one outcome per event of the `n` in the batch).
pub(crate) fn transformed(out: Vec<transformer::Outcome>, n: usize) -> Result<Transformed, String> {
    let mut b = EventBatchBuilder::default();
    let outcomes = out
        .into_iter()
        .map(|o| match o {
            transformer::Outcome::Keep(e) => {
                push(&mut b, &e);
                BatchOutcome::Keep
            }
            transformer::Outcome::Split(events) => {
                for e in &events {
                    push(&mut b, e);
                }
                BatchOutcome::Split(events.len() as u32)
            }
            transformer::Outcome::Drop => BatchOutcome::Drop,
            transformer::Outcome::Fail(reason) => BatchOutcome::Fail(reason),
        })
        .collect();
    Transformed::check(b.finish(), outcomes, n)
}

/// A 0.1.0 generator's records as columns.
pub(crate) fn generated(out: Vec<generator::Generated>) -> GeneratedBatch {
    let records: Vec<super::batch::Generated> = out
        .into_iter()
        .map(|g| super::batch::Generated {
            partition_key: g.partition_key,
            data: g.data,
        })
        .collect();
    GeneratedBatch::from_records(&records)
}

/// The size of a 0.1.0 parser's answer for the output caps: its events,
/// and their bytes plus the reasons'.
pub(crate) fn parsed_size(out: &[Result<Vec<v1::Event>, String>]) -> (usize, usize) {
    let events = out.iter().map(|r| r.as_ref().map_or(0, Vec::len)).sum();
    let bytes = out
        .iter()
        .map(|r| match r {
            Ok(evs) => evs.iter().map(event_bytes).sum(),
            Err(reason) => reason.len(),
        })
        .sum();
    (events, bytes)
}

/// The size of a 0.1.0 transform's answer for the output caps: its output
/// events, and their bytes plus the reasons'.
pub(crate) fn transformed_size(out: &[transformer::Outcome]) -> (usize, usize) {
    use transformer::Outcome;
    let events = out
        .iter()
        .map(|o| match o {
            Outcome::Keep(_) => 1,
            Outcome::Split(evs) => evs.len(),
            Outcome::Drop | Outcome::Fail(_) => 0,
        })
        .sum();
    let bytes = out
        .iter()
        .map(|o| match o {
            Outcome::Keep(e) => event_bytes(e),
            Outcome::Split(evs) => evs.iter().map(event_bytes).sum(),
            Outcome::Fail(reason) => reason.len(),
            Outcome::Drop => 0,
        })
        .sum();
    (events, bytes)
}

/// The size of a 0.1.0 generator's answer for the output caps: its
/// records and their bytes.
pub(crate) fn generated_size(out: &[generator::Generated]) -> (usize, usize) {
    let bytes = out
        .iter()
        .map(|r| r.data.len() + r.partition_key.len())
        .sum();
    (out.len(), bytes)
}

/// Approximate heap size of a 0.1.0 event, for the output-size cap.
fn event_bytes(e: &v1::Event) -> usize {
    e.dataset.len()
        + e.partition_key.len()
        + 8
        + e.fields
            .iter()
            .map(|f| {
                f.name.len()
                    + match &f.value {
                        v1::Value::Text(s) => s.len(),
                        _ => 8,
                    }
            })
            .sum::<usize>()
}
