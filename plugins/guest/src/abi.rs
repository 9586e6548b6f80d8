//! Batches in columns (the WIT types of [`crate::wit`]) ⇄ the plain Rust
//! types of [`crate::types`].
//!
//! A plugin's `lib.rs` calls [`parse`], [`transform`] or [`generate`] with
//! the batch it was handed and a closure running its logic; they decode the
//! input in one pass, run the logic, and encode its result in one pass.
//!
//! Every column of contract `0.2.0` is a `string` or a list of one primitive
//! type, so the bindings hand them over as plain `Vec`s and the host moves
//! each with one copy; the work left is here, and kept small:
//!
//! - decoding copies no raw bytes ([`RawRecord`] borrows from the batch)
//!   and makes one shared [`Name`] per distinct name of a batch, so a
//!   decoded field name is a reference-count increment, not an allocation;
//! - encoding interns datasets and field names with a tiny map (a pointer
//!   test first: names built from literals or decoded from the same batch
//!   share storage), appends partition keys and text values to their
//!   strings, and sizes every output column exactly before filling it, so
//!   each column is one allocation.
//!
//! (The output columns cannot be kept between calls and cleared: the
//! bindings take ownership of what an export returns and free it after the
//! host has copied it out.)
//!
//! The encoders and decoders are plain Rust and also run natively (the unit
//! tests round-trip them). Decoding checks what it reads — column lengths,
//! end offsets, spans, indices and codes — and reports a malformed batch
//! instead of panicking.

use std::collections::HashMap;

use pipehost_abi::{self as contract, FieldValue, Scalar, Span, same_lengths, to_u32};

use crate::types::{Event, Field, Generated, Name, Outcome, RawRecord, Source, Value};
use crate::wit;

/// The contract's codes and span packing, from [`pipehost_abi`] (the
/// crate the host checks batches with too).
pub use pipehost_abi::{kind, outcome_kind, pack_span, unpack_span};

/// Spare capacity of a decoded event's `fields`, for fields a transform adds.
const SPARE_FIELDS: usize = 4;

/// Most distinct names looked up by a linear scan; beyond, a hash map.
const LINEAR_NAMES: usize = 32;
/// Most name storages remembered for the pointer test.
const RECENT_NAMES: usize = 64;

/// Assigns each distinct name an index in a batch's `names`.
#[derive(Default)]
pub struct Interner {
    names: Vec<String>,
    /// Name storages seen, for the pointer test (kept alive by the clone,
    /// so an address cannot be reused by another name meanwhile).
    recent: Vec<(Name, u32)>,
    /// Content → index, once there are more than [`LINEAR_NAMES`] names.
    map: Option<HashMap<Box<str>, u32>>,
    /// The entry of `recent` after the last one found: events of a batch
    /// mostly repeat one field order, so the next name is usually there.
    guess: usize,
}

impl Interner {
    /// The index of `name`, adding it if new.
    pub fn intern(&mut self, name: &Name) -> u32 {
        if let Some((seen, index)) = self.recent.get(self.guess)
            && seen.same_storage(name)
        {
            self.guess += 1;
            return *index;
        }
        for (k, (seen, index)) in self.recent.iter().enumerate() {
            if seen.same_storage(name) {
                self.guess = k + 1;
                return *index;
            }
        }
        let index = self.intern_str(name);
        if self.recent.len() < RECENT_NAMES {
            self.recent.push((name.clone(), index));
            self.guess = self.recent.len();
        }
        index
    }

    /// The index of `name` by content, adding it if new.
    pub fn intern_str(&mut self, name: &str) -> u32 {
        if let Some(map) = &self.map {
            if let Some(&index) = map.get(name) {
                return index;
            }
        } else if let Some(i) = self.names.iter().position(|n| n == name) {
            return i as u32;
        }
        let index = to_u32(self.names.len(), "names");
        self.names.push(name.to_string());
        match &mut self.map {
            Some(map) => {
                map.insert(name.into(), index);
            }
            None if self.names.len() > LINEAR_NAMES => {
                self.map = Some(
                    self.names
                        .iter()
                        .enumerate()
                        .map(|(i, n)| (n.as_str().into(), i as u32))
                        .collect(),
                );
            }
            None => {}
        }
        index
    }

    /// The names, in index order.
    pub fn into_names(self) -> Vec<String> {
        self.names
    }
}

/// Builds an `event-batch` from plain events, one event at a time.
#[derive(Default)]
pub struct EventEncoder {
    names: Interner,
    keys: String,
    text: String,
    dataset: Vec<u32>,
    key_end: Vec<u32>,
    time: Vec<i64>,
    fields_end: Vec<u32>,
    field_name: Vec<u32>,
    field_kind: Vec<u8>,
    field_bits: Vec<i64>,
}

impl EventEncoder {
    /// An encoder with room for exactly what `events` will need.
    pub fn sized_for<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let (mut n, mut fields, mut keys, mut text) = (0, 0, 0, 0);
        for e in events {
            n += 1;
            fields += e.fields.len();
            keys += e.partition_key.len();
            for f in &e.fields {
                if let Value::Text(s) = &f.value {
                    text += s.len();
                }
            }
        }
        EventEncoder {
            names: Interner::default(),
            keys: String::with_capacity(keys),
            text: String::with_capacity(text),
            dataset: Vec::with_capacity(n),
            key_end: Vec::with_capacity(n),
            time: Vec::with_capacity(n),
            fields_end: Vec::with_capacity(n),
            field_name: Vec::with_capacity(fields),
            field_kind: Vec::with_capacity(fields),
            field_bits: Vec::with_capacity(fields),
        }
    }

    /// Appends one event.
    pub fn push(&mut self, e: &Event) {
        self.dataset.push(self.names.intern(&e.dataset));
        self.keys.push_str(&e.partition_key);
        self.key_end.push(to_u32(self.keys.len(), "keys"));
        self.time.push(e.event_time_ms);
        for f in &e.fields {
            self.field_name.push(self.names.intern(&f.name));
            let (k, bits) = match &f.value {
                Value::Boolean(b) => Scalar::Boolean(*b),
                Value::Integer(i) => Scalar::Integer(*i),
                Value::Float(x) => Scalar::Float(*x),
                Value::Text(s) => {
                    let start = to_u32(self.text.len(), "text");
                    self.text.push_str(s);
                    let end = to_u32(self.text.len(), "text");
                    Scalar::Text(Span { start, end })
                }
                Value::TimestampMs(ms) => Scalar::TimestampMs(*ms),
            }
            .encode();
            self.field_kind.push(k);
            self.field_bits.push(bits);
        }
        self.fields_end
            .push(to_u32(self.field_name.len(), "fields"));
    }

    /// Events pushed so far.
    pub fn len(&self) -> usize {
        self.dataset.len()
    }

    /// Whether no event was pushed.
    pub fn is_empty(&self) -> bool {
        self.dataset.is_empty()
    }

    /// The finished batch.
    pub fn finish(self) -> wit::EventBatch {
        wit::EventBatch {
            names: self.names.into_names(),
            keys: self.keys,
            text: self.text,
            event_dataset: self.dataset,
            event_key_end: self.key_end,
            event_time: self.time,
            event_fields_end: self.fields_end,
            field_name: self.field_name,
            field_kind: self.field_kind,
            field_bits: self.field_bits,
        }
    }
}

/// Encodes plain events as an `event-batch`.
pub fn encode_events(events: &[Event]) -> wit::EventBatch {
    let mut enc = EventEncoder::sized_for(events);
    for e in events {
        enc.push(e);
    }
    enc.finish()
}

/// Decodes an `event-batch` into plain events, checking it on the way
/// (with the host's own walk, [`contract::EventWalk`]).
pub fn decode_events(batch: &wit::EventBatch) -> Result<Vec<Event>, String> {
    let mut walk = contract::EventWalk::new(contract::event_columns!(batch))?;
    let names: Vec<Name> = batch
        .names
        .iter()
        .map(|n| Name::from(n.as_str().to_string()))
        .collect();
    let mut out = Vec::with_capacity(walk.len());
    while let Some(e) = walk.next_event()? {
        // Room for a few more: transforms typically add derived fields,
        // and a reallocation per event costs more than the spare slots.
        let mut fields = Vec::with_capacity(e.fields.len() + SPARE_FIELDS);
        for j in e.fields.clone() {
            let (name, value) = walk.field(&e, j)?;
            fields.push(Field {
                name: names[name].clone(),
                value: match value {
                    FieldValue::Boolean(b) => Value::Boolean(b),
                    FieldValue::Integer(i) => Value::Integer(i),
                    FieldValue::Float(x) => Value::Float(x),
                    FieldValue::Text(s) => Value::Text(s.to_string()),
                    FieldValue::TimestampMs(ms) => Value::TimestampMs(ms),
                },
            });
        }
        out.push(Event {
            dataset: names[e.dataset].clone(),
            partition_key: e.partition_key.to_string(),
            event_time_ms: e.event_time_ms,
            fields,
        });
    }
    walk.finish()?;
    Ok(out)
}

// The host's direction of the codec (it checks batches itself, in
// host/src/plugin/batch/): here only for the round-trip tests.
#[cfg(test)]
/// Encodes raw records as a `raw-batch` (what the host sends a parser; the
/// feed and shard are taken from the first record).
pub fn encode_raw(records: &[RawRecord<'_>]) -> wit::RawBatch {
    let first = records.first().map(|r| r.source).unwrap_or_default();
    let n = records.len();
    let mut b = wit::RawBatch {
        feed: first.feed.to_string(),
        shard: first.shard.to_string(),
        data: Vec::with_capacity(records.iter().map(|r| r.data.len()).sum()),
        text: String::with_capacity(
            records
                .iter()
                .map(|r| r.source.sequence.len() + r.source.partition_key.len())
                .sum(),
        ),
        record_data_end: Vec::with_capacity(n),
        record_sequence_end: Vec::with_capacity(n),
        record_key_end: Vec::with_capacity(n),
        record_arrival_time: Vec::with_capacity(n),
    };
    for r in records {
        b.data.extend_from_slice(r.data);
        b.record_data_end.push(to_u32(b.data.len(), "data"));
        b.text.push_str(r.source.sequence);
        b.record_sequence_end.push(to_u32(b.text.len(), "text"));
        b.text.push_str(r.source.partition_key);
        b.record_key_end.push(to_u32(b.text.len(), "text"));
        b.record_arrival_time.push(r.source.arrival_time_ms);
    }
    b
}

/// Decodes a `raw-batch` into records that borrow from it.
pub fn raw_records(batch: &wit::RawBatch) -> Result<Vec<RawRecord<'_>>, String> {
    let n = same_lengths(
        "record",
        &[
            ("record-data-end", batch.record_data_end.len()),
            ("record-sequence-end", batch.record_sequence_end.len()),
            ("record-key-end", batch.record_key_end.len()),
            ("record-arrival-time", batch.record_arrival_time.len()),
        ],
    )?;
    let text = batch.text.as_str();
    let mut out = Vec::with_capacity(n);
    let (mut start, mut text_start) = (0usize, 0usize);
    for i in 0..n {
        let at = |p| format!("record {i}: {p}");
        let data_end = batch.record_data_end[i];
        let data =
            contract::run("data-end", start, data_end, batch.data.len(), "bytes").map_err(at)?;
        let seq_end = batch.record_sequence_end[i] as usize;
        let sequence = contract::span(text, "text", text_start, seq_end)
            .map_err(|p| at(format!("sequence {p}")))?;
        let key_end = batch.record_key_end[i] as usize;
        let partition_key = contract::span(text, "text", seq_end, key_end)
            .map_err(|p| at(format!("partition key {p}")))?;
        start = data.end;
        text_start = key_end;
        out.push(RawRecord {
            data: &batch.data[data],
            source: Source {
                feed: &batch.feed,
                shard: &batch.shard,
                sequence,
                partition_key,
                arrival_time_ms: batch.record_arrival_time[i],
            },
        });
    }
    Ok(out)
}

/// Encodes a parser's per-record results as `parsed`.
pub fn encode_parsed(results: &[Result<Vec<Event>, String>]) -> wit::Parsed {
    let mut enc = EventEncoder::sized_for(results.iter().flat_map(|r| r.iter().flatten()));
    let mut record_events = Vec::with_capacity(results.len());
    let (mut rejected, mut reasons) = (Vec::new(), Vec::new());
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(events) => {
                for e in events {
                    enc.push(e);
                }
                record_events.push(to_u32(events.len(), "events"));
            }
            Err(reason) => {
                record_events.push(0);
                rejected.push(to_u32(i, "records"));
                reasons.push(reason.clone());
            }
        }
    }
    wit::Parsed {
        events: enc.finish(),
        record_events,
        rejected,
        reasons,
    }
}

// The host's direction of the codec (it checks batches itself, in
// host/src/plugin/batch/): here only for the round-trip tests.
#[cfg(test)]
/// Decodes `parsed` back into per-record results, checking the counts.
pub fn decode_parsed(parsed: &wit::Parsed) -> Result<Vec<Result<Vec<Event>, String>>, String> {
    if parsed.rejected.len() != parsed.reasons.len() {
        return Err(format!(
            "{} rejected records but {} reasons",
            parsed.rejected.len(),
            parsed.reasons.len()
        ));
    }
    let mut events = decode_events(&parsed.events)?.into_iter();
    let mut rejected = parsed.rejected.iter().zip(&parsed.reasons).peekable();
    let mut out = Vec::with_capacity(parsed.record_events.len());
    for (i, n) in parsed.record_events.iter().enumerate() {
        if let Some((_, reason)) = rejected.next_if(|(r, _)| **r as usize == i) {
            if *n != 0 {
                return Err(format!("result {i}: rejected but claims {n} events"));
            }
            out.push(Err((*reason).clone()));
            continue;
        }
        let evs: Vec<Event> = events.by_ref().take(*n as usize).collect();
        if evs.len() != *n as usize {
            return Err(format!("result {i} claims {n} events past the end"));
        }
        out.push(Ok(evs));
    }
    if let Some((r, _)) = rejected.next() {
        return Err(format!("rejected record {r} is out of order or range"));
    }
    match events.len() {
        0 => Ok(out),
        left => Err(format!("{left} events belong to no result")),
    }
}

/// Encodes a transform's outcomes as `transformed`.
pub fn encode_transformed(outcomes: &[Outcome]) -> wit::Transformed {
    let mut enc = EventEncoder::sized_for(outcomes.iter().flat_map(|o| match o {
        Outcome::Keep(e) => std::slice::from_ref(e),
        Outcome::Split(evs) => evs.as_slice(),
        Outcome::Drop | Outcome::Fail(_) => &[],
    }));
    let mut kinds = Vec::with_capacity(outcomes.len());
    let mut counts = Vec::with_capacity(outcomes.len());
    let mut reasons = Vec::new();
    for o in outcomes {
        let (k, n) = match o {
            Outcome::Keep(e) => {
                enc.push(e);
                (outcome_kind::KEEP, 1)
            }
            Outcome::Split(evs) => {
                for e in evs {
                    enc.push(e);
                }
                (outcome_kind::SPLIT, to_u32(evs.len(), "events"))
            }
            Outcome::Drop => (outcome_kind::DROP, 0),
            Outcome::Fail(reason) => {
                reasons.push(reason.clone());
                (outcome_kind::FAIL, 0)
            }
        };
        kinds.push(k);
        counts.push(n);
    }
    wit::Transformed {
        events: enc.finish(),
        outcome_kind: kinds,
        outcome_events: counts,
        reasons,
    }
}

// The host's direction of the codec (it checks batches itself, in
// host/src/plugin/batch/): here only for the round-trip tests.
#[cfg(test)]
/// Decodes `transformed` back into outcomes, checking the counts.
pub fn decode_transformed(t: &wit::Transformed) -> Result<Vec<Outcome>, String> {
    let n = same_lengths(
        "outcome",
        &[
            ("outcome-kind", t.outcome_kind.len()),
            ("outcome-events", t.outcome_events.len()),
        ],
    )?;
    let mut events = decode_events(&t.events)?.into_iter();
    let mut reasons = t.reasons.iter();
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let at = |p| format!("outcome {i}: {p}");
        let (k, count) = (t.outcome_kind[i], t.outcome_events[i]);
        contract::outcome_events(k, count).map_err(at)?;
        let evs: Vec<Event> = events.by_ref().take(count as usize).collect();
        if evs.len() != count as usize {
            return Err(at(format!("{count} events past the last")));
        }
        out.push(match k {
            outcome_kind::KEEP => Outcome::Keep(evs.into_iter().next().expect("one event")),
            outcome_kind::SPLIT => Outcome::Split(evs),
            outcome_kind::DROP => Outcome::Drop,
            _ => Outcome::Fail(
                reasons
                    .next()
                    .ok_or_else(|| at("a fail without a reason".into()))?
                    .clone(),
            ),
        });
    }
    contract::all_used(0, events.len(), "events", "outcome")?;
    contract::all_used(0, reasons.len(), "reasons", "fail outcome")?;
    Ok(out)
}

/// Encodes generated records as a `generated-batch`, each key once.
pub fn encode_generated(records: &[Generated]) -> wit::GeneratedBatch {
    let mut keys = Interner::default();
    let mut data = Vec::with_capacity(records.iter().map(|g| g.data.len()).sum());
    let mut record_key = Vec::with_capacity(records.len());
    let mut record_data_end = Vec::with_capacity(records.len());
    let mut last: Option<(&str, u32)> = None;
    for g in records {
        let key = match last {
            Some((k, index)) if k == g.partition_key => index,
            _ => keys.intern_str(&g.partition_key),
        };
        last = Some((&g.partition_key, key));
        data.extend_from_slice(&g.data);
        record_key.push(key);
        record_data_end.push(to_u32(data.len(), "data"));
    }
    wit::GeneratedBatch {
        keys: keys.into_names(),
        data,
        record_key,
        record_data_end,
    }
}

// The host's direction of the codec (it checks batches itself, in
// host/src/plugin/batch/): here only for the round-trip tests.
#[cfg(test)]
/// Decodes a `generated-batch` back into records, checking it.
pub fn decode_generated(batch: &wit::GeneratedBatch) -> Result<Vec<Generated>, String> {
    let (keys, data) = (batch.keys.len(), batch.data.len());
    contract::check_generated(keys, &batch.record_key, &batch.record_data_end, data)?;
    let starts = std::iter::once(0).chain(batch.record_data_end.iter().copied());
    let runs = starts.zip(&batch.record_data_end);
    Ok((batch.record_key.iter().zip(runs))
        .map(|(key, (start, end))| Generated {
            partition_key: batch.keys[*key as usize].clone(),
            data: batch.data[start as usize..*end as usize].to_vec(),
        })
        .collect())
}

/// The parser export: decodes `batch`, runs `logic` on its records and
/// encodes what it returns. A batch that does not decode (a host bug) gets
/// the reason as every record's error.
pub fn parse(
    batch: wit::RawBatch,
    logic: impl FnOnce(&[RawRecord<'_>]) -> Vec<Result<Vec<Event>, String>>,
) -> wit::Parsed {
    let results = match raw_records(&batch) {
        Ok(records) => logic(&records),
        Err(reason) => {
            let reason = format!("malformed raw batch: {reason}");
            batch
                .record_data_end
                .iter()
                .map(|_| Err(reason.clone()))
                .collect()
        }
    };
    drop(batch);
    encode_parsed(&results)
}

/// The transform export: decodes `batch`, runs `logic` on its events and
/// encodes the outcomes. A batch that does not decode fails every event.
pub fn transform(
    batch: wit::EventBatch,
    logic: impl FnOnce(Vec<Event>) -> Vec<Outcome>,
) -> wit::Transformed {
    let outcomes = match decode_events(&batch) {
        Ok(events) => {
            drop(batch);
            logic(events)
        }
        Err(reason) => {
            let reason = format!("malformed event batch: {reason}");
            batch
                .event_dataset
                .iter()
                .map(|_| Outcome::Fail(reason.clone()))
                .collect()
        }
    };
    encode_transformed(&outcomes)
}

/// The generator export: runs `logic` and encodes its records.
pub fn generate(
    tick: wit::Tick,
    logic: impl FnOnce(&wit::Tick) -> Result<Vec<Generated>, String>,
) -> Result<wit::GeneratedBatch, String> {
    logic(&tick).map(|records| encode_generated(&records))
}

#[cfg(test)]
mod tests;
