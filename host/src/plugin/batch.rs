//! The host's representation of a batch: the columns of contract `0.2.0`
//! (`wit/plugin.wit`), checked once, read through cheap views.
//!
//! An [`EventBatch`] is what a parser returns and a transform takes and
//! returns; the processor hands one from plugin to plugin without ever
//! building per-event structs, and writes its objects straight from the
//! last one. Everything a plugin returns is untrusted: [`EventBatch`],
//! [`Parsed`], [`Transformed`] and [`GeneratedBatch`] can only be made from
//! plugin output by the checks here (indices and spans in range, spans on
//! character boundaries, `fields-end` monotonic, counts adding up), so
//! every accessor afterwards is infallible and a hostile plugin cannot make
//! the host panic.
//!
//! The owned per-event types ([`Event`], [`RawRecord`], …) remain for
//! fixtures, tests and the compatibility calls
//! (a parser instance's `parse`, a transform instance's `transform`).

use std::collections::HashMap;
use std::ops::Range;

use pipehost_abi::{self as abi, Scalar, kind, outcome_kind, to_u32};

pub(crate) use super::bindings::pipehost::plugin::types as wit;
pub use wit::Tick;

/// A typed field value, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Text(String),
    TimestampMs(i64),
}

/// One named field of an event, owned.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub value: Value,
}

/// A structured event, owned (fixtures and tests; batches use views).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub dataset: String,
    pub partition_key: String,
    pub event_time_ms: i64,
    pub fields: Vec<Field>,
}

/// Where a raw record came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    pub feed: String,
    pub shard: String,
    pub sequence: String,
    pub partition_key: String,
    pub arrival_time_ms: i64,
}

/// A raw record, owned: bytes plus metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawRecord {
    pub data: Vec<u8>,
    pub source: Source,
}

/// What became of one input event of a transform, owned.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Keep(Event),
    Drop,
    Split(Vec<Event>),
    Fail(String),
}

/// A generated record, owned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Generated {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// A field value borrowed from a batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Text(&'a str),
    TimestampMs(i64),
}

impl ValueRef<'_> {
    pub fn to_value(self) -> Value {
        match self {
            ValueRef::Boolean(b) => Value::Boolean(b),
            ValueRef::Integer(i) => Value::Integer(i),
            ValueRef::Float(x) => Value::Float(x),
            ValueRef::Text(s) => Value::Text(s.to_string()),
            ValueRef::TimestampMs(ms) => Value::TimestampMs(ms),
        }
    }
}

impl<'a> From<&'a Value> for ValueRef<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Boolean(b) => ValueRef::Boolean(*b),
            Value::Integer(i) => ValueRef::Integer(*i),
            Value::Float(x) => ValueRef::Float(*x),
            Value::Text(s) => ValueRef::Text(s),
            Value::TimestampMs(ms) => ValueRef::TimestampMs(*ms),
        }
    }
}

/// Appends `s` to `text`; returns where it ends.
fn push_end(text: &mut String, s: &str) -> u32 {
    text.push_str(s);
    to_u32(text.len(), "text")
}

/// A batch of events in columns, checked. Cheap to read, cheap to pass to
/// the next plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct EventBatch {
    pub(crate) cols: wit::EventBatch,
}

impl Default for EventBatch {
    fn default() -> Self {
        Self {
            cols: empty_events(),
        }
    }
}

fn empty_events() -> wit::EventBatch {
    wit::EventBatch {
        names: Vec::new(),
        keys: String::new(),
        text: String::new(),
        event_dataset: Vec::new(),
        event_key_end: Vec::new(),
        event_time: Vec::new(),
        event_fields_end: Vec::new(),
        field_name: Vec::new(),
        field_kind: Vec::new(),
        field_bits: Vec::new(),
    }
}

impl EventBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks columns a plugin returned, each index, end offset, span and
    /// code once. The error says what is wrong, for a
    /// [`super::PluginError::Contract`].
    pub(crate) fn check(cols: wit::EventBatch) -> Result<Self, String> {
        abi::EventWalk::check(abi::event_columns!(&cols))?;
        Ok(Self { cols })
    }

    /// Builds a batch from owned events.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut b = EventBatchBuilder::default();
        for e in events {
            b.push_event(e);
        }
        b.finish()
    }

    /// Every event, owned.
    pub fn to_events(&self) -> Vec<Event> {
        self.iter().map(|e| e.to_event()).collect()
    }

    pub fn len(&self) -> usize {
        self.cols.event_dataset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.event_dataset.is_empty()
    }

    fn view(&self, index: usize, key_start: u32, first_field: u32) -> EventView<'_> {
        EventView {
            batch: self,
            index,
            key_start,
            first_field,
        }
    }

    /// Event `index` (panics past the end, like a slice).
    pub fn get(&self, index: usize) -> EventView<'_> {
        let _ = self.cols.event_dataset[index];
        let (key_start, first_field) = match index {
            0 => (0, 0),
            _ => (
                self.cols.event_key_end[index - 1],
                self.cols.event_fields_end[index - 1],
            ),
        };
        self.view(index, key_start, first_field)
    }

    /// The events in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventView<'_>> + '_ {
        let (mut key_start, mut first_field) = (0u32, 0u32);
        (0..self.len()).map(move |i| {
            let v = self.view(i, key_start, first_field);
            key_start = self.cols.event_key_end[i];
            first_field = self.cols.event_fields_end[i];
            v
        })
    }

    /// Datasets and field names, each once (a name index is a position here).
    pub fn names(&self) -> &[String] {
        &self.cols.names
    }

    /// Total fields of all events.
    pub fn field_count(&self) -> usize {
        self.cols.field_name.len()
    }

    /// Approximate payload size, for the output-size cap: names and text
    /// once as copied, then as written out — each event's dataset name,
    /// each field's name and text value every time it is used (spans and
    /// names may be shared) — and 8 bytes per event and per field.
    pub fn approx_bytes(&self) -> usize {
        approx_bytes(&self.cols)
    }
}

/// [`EventBatch::approx_bytes`] of columns not checked yet: an index or
/// span out of range counts as empty (the check refuses it later).
pub(crate) fn approx_bytes(cols: &wit::EventBatch) -> usize {
    let name = |i: &u32| cols.names.get(*i as usize).map_or(0, String::len);
    let text = |k: &u8, bits: &i64| match *k {
        kind::TEXT => {
            let (start, end) = abi::unpack_span(*bits);
            (end.saturating_sub(start) as usize).min(cols.text.len())
        }
        _ => 0,
    };
    let fields = cols
        .field_name
        .iter()
        .map(name)
        .chain((cols.field_kind.iter().zip(&cols.field_bits)).map(|(k, bits)| text(k, bits)));
    let written = (cols.event_dataset.iter().map(name))
        .chain(fields)
        .fold(0usize, usize::saturating_add);
    cols.names.iter().map(String::len).sum::<usize>()
        + cols.keys.len()
        + cols.text.len()
        + 8 * cols.event_dataset.len()
        + 8 * cols.field_name.len()
        + written
}

/// How many events a returned batch claims (its longest event column, so
/// the output cap holds before the columns are checked).
pub(crate) fn claimed_events(cols: &wit::EventBatch) -> usize {
    cols.event_dataset
        .len()
        .max(cols.event_key_end.len())
        .max(cols.event_time.len())
        .max(cols.event_fields_end.len())
}

/// One event of a batch. `Copy`; every accessor borrows from the batch.
#[derive(Clone, Copy)]
pub struct EventView<'a> {
    batch: &'a EventBatch,
    index: usize,
    /// Where its partition key starts in the batch's keys.
    key_start: u32,
    /// This event's run of the batch's fields.
    first_field: u32,
}

impl std::fmt::Debug for EventView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventView")
            .field("dataset", &self.dataset())
            .field("partition_key", &self.partition_key())
            .field("event_time_ms", &self.event_time_ms())
            .field("fields", &self.fields().collect::<Vec<_>>())
            .finish()
    }
}

impl<'a> EventView<'a> {
    fn field_range(&self) -> Range<usize> {
        self.first_field as usize..self.batch.cols.event_fields_end[self.index] as usize
    }

    pub fn dataset(&self) -> &'a str {
        &self.batch.cols.names[self.dataset_index() as usize]
    }

    /// The names of the batch the event belongs to ([`EventBatch::names`]).
    pub fn names(&self) -> &'a [String] {
        &self.batch.cols.names
    }

    /// The dataset's index in [`EventBatch::names`].
    pub fn dataset_index(&self) -> u32 {
        self.batch.cols.event_dataset[self.index]
    }

    pub fn partition_key(&self) -> &'a str {
        // Checked when the batch was made.
        &self.batch.cols.keys
            [self.key_start as usize..self.batch.cols.event_key_end[self.index] as usize]
    }

    pub fn event_time_ms(&self) -> i64 {
        self.batch.cols.event_time[self.index]
    }

    /// How many fields the event has.
    pub fn field_count(&self) -> usize {
        self.field_range().len()
    }

    /// The fields in the plugin's order, as `(name, value)`.
    pub fn fields(&self) -> impl ExactSizeIterator<Item = (&'a str, ValueRef<'a>)> + 'a {
        let batch = self.batch;
        self.field_range().map(move |j| {
            (
                batch.cols.names[batch.cols.field_name[j] as usize].as_str(),
                value(batch, j),
            )
        })
    }

    /// The fields as `(name index, value)`; name indices refer to
    /// [`EventBatch::names`].
    pub fn indexed_fields(&self) -> impl ExactSizeIterator<Item = (u32, ValueRef<'a>)> + 'a {
        let batch = self.batch;
        self.field_range()
            .map(move |j| (batch.cols.field_name[j], value(batch, j)))
    }

    /// Field `k` of the event (in the plugin's order) as `(name index,
    /// value)`; panics past [`Self::field_count`], like a slice.
    pub fn indexed_field(&self, k: usize) -> (u32, ValueRef<'a>) {
        let j = self.field_range().nth(k).expect("field index in range");
        (self.batch.cols.field_name[j], value(self.batch, j))
    }

    /// The value of the first field named `name`.
    pub fn field(&self, name: &str) -> Option<ValueRef<'a>> {
        self.fields().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The event, owned.
    pub fn to_event(&self) -> Event {
        Event {
            dataset: self.dataset().to_string(),
            partition_key: self.partition_key().to_string(),
            event_time_ms: self.event_time_ms(),
            fields: self
                .fields()
                .map(|(name, v)| Field {
                    name: name.to_string(),
                    value: v.to_value(),
                })
                .collect(),
        }
    }
}

/// Field `j` of a checked batch.
#[inline]
fn value(batch: &EventBatch, j: usize) -> ValueRef<'_> {
    match Scalar::decode_checked(batch.cols.field_kind[j], batch.cols.field_bits[j]) {
        Scalar::Boolean(b) => ValueRef::Boolean(b),
        Scalar::Integer(i) => ValueRef::Integer(i),
        Scalar::Float(x) => ValueRef::Float(x),
        // Checked when the batch was made.
        Scalar::Text(span) => ValueRef::Text(&batch.cols.text[span.range()]),
        Scalar::TimestampMs(ms) => ValueRef::TimestampMs(ms),
    }
}

/// Builds an [`EventBatch`] one event at a time, each name once.
pub struct EventBatchBuilder {
    cols: wit::EventBatch,
    names: HashMap<String, u32>,
}

impl Default for EventBatchBuilder {
    fn default() -> Self {
        Self {
            cols: empty_events(),
            names: HashMap::new(),
        }
    }
}

impl EventBatchBuilder {
    fn name(&mut self, name: &str) -> u32 {
        if let Some(&i) = self.names.get(name) {
            return i;
        }
        let i = to_u32(self.cols.names.len(), "names");
        self.cols.names.push(name.to_string());
        self.names.insert(name.to_string(), i);
        i
    }

    pub(crate) fn push_fields<'v>(
        &mut self,
        dataset: &str,
        partition_key: &str,
        event_time_ms: i64,
        fields: impl Iterator<Item = (impl AsRef<str>, ValueRef<'v>)>,
    ) {
        let dataset = self.name(dataset);
        let key_end = push_end(&mut self.cols.keys, partition_key);
        for (name, v) in fields {
            let name = self.name(name.as_ref());
            let (k, bits) = match v {
                ValueRef::Boolean(b) => Scalar::Boolean(b),
                ValueRef::Integer(i) => Scalar::Integer(i),
                ValueRef::Float(x) => Scalar::Float(x),
                ValueRef::Text(s) => {
                    let start = to_u32(self.cols.text.len(), "text");
                    Scalar::Text(abi::Span {
                        start,
                        end: push_end(&mut self.cols.text, s),
                    })
                }
                ValueRef::TimestampMs(ms) => Scalar::TimestampMs(ms),
            }
            .encode();
            self.cols.field_name.push(name);
            self.cols.field_kind.push(k);
            self.cols.field_bits.push(bits);
        }
        self.cols.event_dataset.push(dataset);
        self.cols.event_key_end.push(key_end);
        self.cols.event_time.push(event_time_ms);
        self.cols
            .event_fields_end
            .push(to_u32(self.cols.field_name.len(), "fields"));
    }

    /// Appends an owned event.
    pub fn push_event(&mut self, e: &Event) {
        self.push_fields(
            &e.dataset,
            &e.partition_key,
            e.event_time_ms,
            e.fields
                .iter()
                .map(|f| (f.name.as_str(), ValueRef::from(&f.value))),
        );
    }

    /// Appends an event of another batch.
    pub fn push_view(&mut self, e: &EventView<'_>) {
        self.push_fields(
            e.dataset(),
            e.partition_key(),
            e.event_time_ms(),
            e.fields(),
        );
    }

    pub fn len(&self) -> usize {
        self.cols.event_dataset.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.event_dataset.is_empty()
    }

    /// The batch (valid by construction).
    pub fn finish(self) -> EventBatch {
        EventBatch { cols: self.cols }
    }
}

/// A batch of raw records for a parser, all of one feed and shard.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBatch {
    pub(crate) cols: wit::RawBatch,
}

/// One record of a [`RawBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawView<'a> {
    pub data: &'a [u8],
    pub sequence: &'a str,
    pub partition_key: &'a str,
    pub arrival_time_ms: i64,
}

impl RawBatch {
    /// An empty batch of `feed`'s records from `shard`.
    pub fn new(feed: &str, shard: &str) -> Self {
        Self::with_capacity(feed, shard, 0, 0)
    }

    /// Like [`Self::new`], with room for `records` records of `bytes` bytes
    /// in all.
    pub fn with_capacity(feed: &str, shard: &str, records: usize, bytes: usize) -> Self {
        Self {
            cols: wit::RawBatch {
                feed: feed.to_string(),
                shard: shard.to_string(),
                data: Vec::with_capacity(bytes),
                text: String::with_capacity(records * 16),
                record_data_end: Vec::with_capacity(records),
                record_sequence_end: Vec::with_capacity(records),
                record_key_end: Vec::with_capacity(records),
                record_arrival_time: Vec::with_capacity(records),
            },
        }
    }

    /// Appends a record.
    pub fn push(&mut self, data: &[u8], sequence: &str, partition_key: &str, arrival_time_ms: i64) {
        let c = &mut self.cols;
        c.data.extend_from_slice(data);
        c.record_data_end.push(to_u32(c.data.len(), "data"));
        c.record_sequence_end.push(push_end(&mut c.text, sequence));
        c.record_key_end.push(push_end(&mut c.text, partition_key));
        c.record_arrival_time.push(arrival_time_ms);
    }

    /// Batches of owned records: one per run of records sharing feed and
    /// shard (a raw batch has one of each), in order.
    pub fn from_records(records: &[RawRecord]) -> Vec<RawBatch> {
        let mut out: Vec<RawBatch> = Vec::new();
        for r in records {
            let same = out
                .last()
                .is_some_and(|b| b.feed() == r.source.feed && b.shard() == r.source.shard);
            if !same {
                out.push(RawBatch::new(&r.source.feed, &r.source.shard));
            }
            out.last_mut().expect("just pushed").push(
                &r.data,
                &r.source.sequence,
                &r.source.partition_key,
                r.source.arrival_time_ms,
            );
        }
        out
    }

    pub fn feed(&self) -> &str {
        &self.cols.feed
    }

    pub fn shard(&self) -> &str {
        &self.cols.shard
    }

    pub fn len(&self) -> usize {
        self.cols.record_data_end.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.record_data_end.is_empty()
    }

    /// The records in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = RawView<'_>> + '_ {
        let c = &self.cols;
        let (mut data_start, mut text_start) = (0usize, 0usize);
        (0..self.len()).map(move |i| {
            let data_end = c.record_data_end[i] as usize;
            let seq_end = c.record_sequence_end[i] as usize;
            let key_end = c.record_key_end[i] as usize;
            let view = RawView {
                data: &c.data[data_start..data_end],
                sequence: &c.text[text_start..seq_end],
                partition_key: &c.text[seq_end..key_end],
                arrival_time_ms: c.record_arrival_time[i],
            };
            data_start = data_end;
            text_start = key_end;
            view
        })
    }
}

/// A parser's answer to a [`RawBatch`], checked: one result per record,
/// the `ok` counts adding up to `events.len()`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    pub events: EventBatch,
    /// Per input record: `Ok(n)`, it yielded the next `n` events; or why it
    /// was rejected.
    pub results: Vec<Result<u32, String>>,
}

impl Parsed {
    /// Checks the columns of `parsed` (counts per record, rejections)
    /// against the `records` sent and the events returned.
    pub(crate) fn from_columns(
        events: EventBatch,
        record_events: Vec<u32>,
        rejected: Vec<u32>,
        reasons: Vec<String>,
        records: usize,
    ) -> Result<Self, String> {
        if record_events.len() != records {
            return Err(format!(
                "parse returned {} results for {records} records (must be one per record)",
                record_events.len()
            ));
        }
        if rejected.len() != reasons.len() {
            return Err(format!(
                "parse rejected {} records but gave {} reasons (must be one per rejection)",
                rejected.len(),
                reasons.len()
            ));
        }
        let mut results: Vec<Result<u32, String>> = record_events.into_iter().map(Ok).collect();
        let mut next = 0usize;
        for (index, reason) in rejected.into_iter().zip(reasons) {
            let i = index as usize;
            if i < next || i >= records {
                return Err(format!(
                    "rejected record {index} is out of order or out of range ({records} records)"
                ));
            }
            if results[i] != Ok(0) {
                return Err(format!(
                    "rejected record {index} claims {} events (a rejected record yields none)",
                    results[i].as_ref().unwrap_or(&0)
                ));
            }
            results[i] = Err(reason);
            next = i + 1;
        }
        Self::check(events, results, records)
    }

    /// Checks counts against the `records` sent and the events returned.
    pub(crate) fn check(
        events: EventBatch,
        results: Vec<Result<u32, String>>,
        records: usize,
    ) -> Result<Self, String> {
        if results.len() != records {
            return Err(format!(
                "parse returned {} results for {records} records (must be one per record)",
                results.len()
            ));
        }
        let claimed: u64 = results
            .iter()
            .map(|r| *r.as_ref().unwrap_or(&0) as u64)
            .sum();
        if claimed != events.len() as u64 {
            return Err(format!(
                "parse results account for {claimed} events but {} were returned",
                events.len()
            ));
        }
        Ok(Self { events, results })
    }

    /// Per record, the range of its events in `events` (or its reason).
    pub fn ranges(&self) -> impl ExactSizeIterator<Item = Result<Range<usize>, &str>> + '_ {
        let mut next = 0usize;
        self.results.iter().map(move |r| match r {
            Ok(n) => {
                let range = next..next + *n as usize;
                next = range.end;
                Ok(range)
            }
            Err(reason) => Err(reason.as_str()),
        })
    }

    /// Per record, its events owned, or its reason.
    pub fn to_results(&self) -> Vec<Result<Vec<Event>, String>> {
        self.ranges()
            .map(|r| match r {
                Ok(range) => Ok(range.map(|i| self.events.get(i).to_event()).collect()),
                Err(reason) => Err(reason.to_string()),
            })
            .collect()
    }
}

/// What became of one input event, in a [`Transformed`] batch: `Keep` and
/// `Split(n)` consume the next 1 and `n` events of its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOutcome {
    Keep,
    Drop,
    Split(u32),
    Fail(String),
}

/// A transform's answer to an [`EventBatch`], checked: one outcome per
/// input event, `keep`s and `split`s consuming exactly `events`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transformed {
    pub events: EventBatch,
    pub outcomes: Vec<BatchOutcome>,
}

impl Transformed {
    /// Checks the columns of `transformed` (a code and a count per input
    /// event, a reason per failure) and turns them into outcomes.
    pub(crate) fn from_columns(
        events: EventBatch,
        kinds: Vec<u8>,
        counts: Vec<u32>,
        reasons: Vec<String>,
        inputs: usize,
    ) -> Result<Self, String> {
        if kinds.len() != inputs || counts.len() != inputs {
            return Err(format!(
                "transform returned {} outcome kinds and {} counts for {inputs} events (must be one each per event)",
                kinds.len(),
                counts.len()
            ));
        }
        let mut reasons = reasons.into_iter();
        let mut outcomes = Vec::with_capacity(inputs);
        for (i, (k, n)) in kinds.into_iter().zip(counts).enumerate() {
            abi::outcome_events(k, n).map_err(|p| format!("outcome {i}: {p}"))?;
            outcomes.push(match k {
                outcome_kind::KEEP => BatchOutcome::Keep,
                outcome_kind::DROP => BatchOutcome::Drop,
                outcome_kind::SPLIT => BatchOutcome::Split(n),
                _ => BatchOutcome::Fail(reasons.next().ok_or_else(|| {
                    format!("outcome {i}: a fail without a reason (too few reasons)")
                })?),
            });
        }
        abi::all_used(0, reasons.len(), "reasons", "fail outcome")?;
        Self::check(events, outcomes, inputs)
    }

    pub(crate) fn check(
        events: EventBatch,
        outcomes: Vec<BatchOutcome>,
        inputs: usize,
    ) -> Result<Self, String> {
        if outcomes.len() != inputs {
            return Err(format!(
                "transform returned {} outcomes for {inputs} events (must be one per event)",
                outcomes.len()
            ));
        }
        let claimed: u64 = outcomes.iter().map(|o| outcome_events(o) as u64).sum();
        if claimed != events.len() as u64 {
            return Err(format!(
                "transform outcomes account for {claimed} events but {} were returned",
                events.len()
            ));
        }
        Ok(Self { events, outcomes })
    }

    /// Per input event, the range of its output events (empty for `drop`
    /// and `fail`) and its outcome.
    pub fn ranges(&self) -> impl ExactSizeIterator<Item = (Range<usize>, &BatchOutcome)> + '_ {
        let mut next = 0usize;
        self.outcomes.iter().map(move |o| {
            let range = next..next + outcome_events(o) as usize;
            next = range.end;
            (range, o)
        })
    }

    /// The outcomes, owned.
    pub fn to_outcomes(&self) -> Vec<Outcome> {
        self.ranges()
            .map(|(range, o)| match o {
                BatchOutcome::Keep => Outcome::Keep(self.events.get(range.start).to_event()),
                BatchOutcome::Split(_) => {
                    Outcome::Split(range.map(|i| self.events.get(i).to_event()).collect())
                }
                BatchOutcome::Drop => Outcome::Drop,
                BatchOutcome::Fail(reason) => Outcome::Fail(reason.clone()),
            })
            .collect()
    }
}

/// How many output events an outcome consumes.
pub(crate) fn outcome_events(o: &BatchOutcome) -> u32 {
    match o {
        BatchOutcome::Keep => 1,
        BatchOutcome::Split(n) => *n,
        BatchOutcome::Drop | BatchOutcome::Fail(_) => 0,
    }
}

/// A generator's records for one tick, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedBatch {
    pub(crate) cols: wit::GeneratedBatch,
}

impl GeneratedBatch {
    pub(crate) fn check(cols: wit::GeneratedBatch) -> Result<Self, String> {
        let (keys, data) = (cols.keys.len(), cols.data.len());
        abi::check_generated(keys, &cols.record_key, &cols.record_data_end, data)?;
        Ok(Self { cols })
    }

    /// Builds a batch from owned records.
    pub fn from_records(records: &[Generated]) -> Self {
        let mut keys: HashMap<&str, u32> = HashMap::new();
        let mut cols = wit::GeneratedBatch {
            keys: Vec::new(),
            data: Vec::new(),
            record_key: Vec::new(),
            record_data_end: Vec::new(),
        };
        for g in records {
            let key = *keys.entry(&g.partition_key).or_insert_with(|| {
                cols.keys.push(g.partition_key.clone());
                to_u32(cols.keys.len() - 1, "keys")
            });
            cols.data.extend_from_slice(&g.data);
            cols.record_key.push(key);
            cols.record_data_end.push(to_u32(cols.data.len(), "data"));
        }
        Self { cols }
    }

    pub fn len(&self) -> usize {
        self.cols.record_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.cols.record_key.is_empty()
    }

    /// The records in order, as `(partition key, data)`.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        let mut start = 0usize;
        let c = &self.cols;
        (0..self.len()).map(move |i| {
            let end = c.record_data_end[i] as usize;
            let data = &c.data[start..end];
            start = end;
            (c.keys[c.record_key[i] as usize].as_str(), data)
        })
    }

    /// Total bytes of data.
    pub fn data_bytes(&self) -> usize {
        self.cols.data.len()
    }

    /// The records, owned.
    pub fn to_vec(&self) -> Vec<Generated> {
        self.iter()
            .map(|(k, d)| Generated {
                partition_key: k.to_string(),
                data: d.to_vec(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(key: &str, fields: Vec<(&str, Value)>) -> Event {
        Event {
            dataset: "forex".into(),
            partition_key: key.into(),
            event_time_ms: 7,
            fields: fields
                .into_iter()
                .map(|(n, v)| Field {
                    name: n.into(),
                    value: v,
                })
                .collect(),
        }
    }

    fn sample() -> Vec<Event> {
        vec![
            ev(
                "EUR/USD",
                vec![
                    ("bid", Value::Float(1.5)),
                    ("venue", Value::Text("EBS".into())),
                ],
            ),
            ev("ÄPL", vec![]),
            ev(
                "USD/JPY",
                vec![
                    ("venue", Value::Text("naïve".into())),
                    ("n", Value::Integer(3)),
                    ("ok", Value::Boolean(true)),
                    ("t", Value::TimestampMs(-1)),
                ],
            ),
        ]
    }

    #[test]
    fn round_trips_and_reads_without_copying() {
        let events = sample();
        let batch = EventBatch::from_events(&events);
        assert_eq!(batch.len(), 3);
        assert_eq!(batch.names(), ["forex", "bid", "venue", "n", "ok", "t"]);
        assert_eq!(batch.to_events(), events);
        let third = batch.get(2);
        assert_eq!(third.dataset(), "forex");
        assert_eq!(third.partition_key(), "USD/JPY");
        assert_eq!(third.field("venue"), Some(ValueRef::Text("naïve")));
        assert_eq!(third.field("nope"), None);
        assert_eq!(batch.get(1).fields().len(), 0);
        assert_eq!(
            batch.iter().map(|e| e.field_count()).collect::<Vec<_>>(),
            [2, 0, 4]
        );
        assert_eq!(EventBatch::check(batch.cols.clone()).unwrap(), batch);
    }

    fn broken(f: impl FnOnce(&mut wit::EventBatch)) -> String {
        let mut cols = EventBatch::from_events(&sample()).cols;
        f(&mut cols);
        EventBatch::check(cols).unwrap_err()
    }

    #[test]
    fn malformed_columns_are_refused_with_the_reason() {
        let e = broken(|c| c.event_dataset[1] = 6);
        assert_eq!(e, "event 1: dataset index 6 is out of range (6 names)");
        let e = broken(|c| c.field_name[3] = 99);
        assert!(e.starts_with("event 2, field 1: name index 99"), "{e}");
        let e = broken(|c| c.event_key_end[0] = 900);
        assert!(
            e.contains("event 0: partition key span 0..900 is not a range"),
            "{e}"
        );
        let e = broken(|c| c.event_key_end[1] = 3);
        assert!(e.contains("span 7..3"), "{e}");
        let e = broken(|c| c.event_key_end[0] = 8);
        assert!(e.contains("cuts a UTF-8 character"), "{e}");
        let e = broken(|c| c.field_bits[1] = abi::pack_span(0, 99));
        assert!(e.starts_with("event 0, field `venue`: text value"), "{e}");
        let e = broken(|c| c.field_kind[0] = 9);
        assert!(e.contains("kind 9 is not a field kind"), "{e}");
        let e = broken(|c| c.field_kind[0] = kind::BOOLEAN);
        assert!(e.contains("neither 0 nor 1"), "{e}");
        let e = broken(|c| c.event_fields_end[1] = 1);
        assert!(
            e.starts_with("event 1: fields-end 1 is outside 2..=6"),
            "{e}"
        );
        let e = broken(|c| c.event_fields_end[2] = 99);
        assert!(e.contains("fields-end 99"), "{e}");
        let e = broken(|c| c.event_fields_end[2] = 5);
        assert!(e.starts_with("1 fields belong to no event"), "{e}");
        let e = broken(|c| {
            c.event_time.pop();
        });
        assert!(e.contains("event-time has 2"), "{e}");
        let e = broken(|c| c.field_bits.push(0));
        assert!(e.contains("field-bits has 7"), "{e}");
        let e = broken(|c| {
            for col in [
                &mut c.event_dataset,
                &mut c.event_key_end,
                &mut c.event_fields_end,
            ] {
                col.clear();
            }
            c.event_time.clear();
        });
        assert!(e.starts_with("6 fields belong to no event"), "{e}");
        let e = broken(|c| c.keys.push('x'));
        assert!(e.contains("1 bytes of keys belong to no event"), "{e}");
    }

    #[test]
    fn parse_and_transform_columns_become_results_and_outcomes() {
        let batch = EventBatch::from_events(&sample());
        let p = Parsed::from_columns(batch.clone(), vec![2, 0, 1], vec![1], vec!["x".into()], 3)
            .unwrap();
        assert_eq!(p.results, vec![Ok(2), Err("x".into()), Ok(1)]);
        let e = Parsed::from_columns(batch.clone(), vec![2, 1, 0], vec![1], vec!["x".into()], 3)
            .unwrap_err();
        assert!(e.contains("rejected record 1 claims 1 events"), "{e}");
        let e = Parsed::from_columns(
            batch.clone(),
            vec![3, 0, 0],
            vec![2, 1],
            vec!["a".into(), "b".into()],
            3,
        )
        .unwrap_err();
        assert!(e.contains("out of order"), "{e}");
        let e = Parsed::from_columns(batch.clone(), vec![3, 0, 0], vec![1], vec![], 3).unwrap_err();
        assert!(e.contains("1 records but gave 0 reasons"), "{e}");

        use outcome_kind::*;
        let t = Transformed::from_columns(
            batch.clone(),
            vec![KEEP, DROP, SPLIT, FAIL],
            vec![1, 0, 2, 0],
            vec!["f".into()],
            4,
        )
        .unwrap();
        assert_eq!(
            t.outcomes,
            [
                BatchOutcome::Keep,
                BatchOutcome::Drop,
                BatchOutcome::Split(2),
                BatchOutcome::Fail("f".into())
            ]
        );
        let e = Transformed::from_columns(batch.clone(), vec![KEEP, 7], vec![1, 0], vec![], 2)
            .unwrap_err();
        assert!(e.contains("outcome 1: kind 7"), "{e}");
        let e = Transformed::from_columns(batch.clone(), vec![KEEP, DROP], vec![2, 0], vec![], 2)
            .unwrap_err();
        assert!(e.contains("a keep yields 1 events, not 2"), "{e}");
        let e =
            Transformed::from_columns(batch.clone(), vec![FAIL], vec![0], vec![], 1).unwrap_err();
        assert!(e.contains("without a reason"), "{e}");
        let e = Transformed::from_columns(batch, vec![SPLIT], vec![3], vec!["r".into()], 1)
            .unwrap_err();
        assert!(e.contains("1 reasons belong to no fail"), "{e}");
    }

    #[test]
    fn counts_must_add_up() {
        let batch = EventBatch::from_events(&sample());
        let ok = Parsed::check(batch.clone(), vec![Ok(2), Err("x".into()), Ok(1)], 3).unwrap();
        assert_eq!(
            ok.ranges().collect::<Vec<_>>(),
            [Ok(0..2), Err("x"), Ok(2..3)]
        );
        assert_eq!(ok.to_results()[2].as_ref().unwrap()[0], sample()[2]);
        let e = Parsed::check(batch.clone(), vec![Ok(2), Ok(1)], 3).unwrap_err();
        assert_eq!(
            e,
            "parse returned 2 results for 3 records (must be one per record)"
        );
        let e = Parsed::check(batch.clone(), vec![Ok(2), Ok(2), Ok(u32::MAX)], 3).unwrap_err();
        assert!(e.contains("account for 4294967299 events but 3"), "{e}");

        use BatchOutcome::*;
        let t = Transformed::check(
            batch.clone(),
            vec![Keep, Drop, Split(2), Fail("f".into())],
            4,
        )
        .unwrap();
        assert_eq!(
            t.to_outcomes(),
            vec![
                Outcome::Keep(sample()[0].clone()),
                Outcome::Drop,
                Outcome::Split(sample()[1..].to_vec()),
                Outcome::Fail("f".into())
            ]
        );
        let e = Transformed::check(batch.clone(), vec![Keep, Keep, Keep], 4).unwrap_err();
        assert!(e.contains("3 outcomes for 4 events"), "{e}");
        let e = Transformed::check(batch, vec![Keep, Keep, Keep, Keep], 4).unwrap_err();
        assert!(e.contains("account for 4 events but 3"), "{e}");
    }

    #[test]
    fn raw_batches_split_by_feed_and_shard() {
        let rec = |feed: &str, shard: &str, seq: &str| RawRecord {
            data: seq.as_bytes().to_vec(),
            source: Source {
                feed: feed.into(),
                shard: shard.into(),
                sequence: seq.into(),
                partition_key: format!("k{seq}"),
                arrival_time_ms: 1,
            },
        };
        let batches = RawBatch::from_records(&[
            rec("a", "s", "1"),
            rec("a", "s", "2"),
            rec("b", "s", "3"),
            rec("a", "s", "4"),
        ]);
        assert_eq!(batches.len(), 3);
        assert_eq!(batches[0].len(), 2);
        let views: Vec<_> = batches[0].iter().collect();
        assert_eq!(views[1].data, b"2");
        assert_eq!(views[1].sequence, "2");
        assert_eq!(views[1].partition_key, "k2");
        assert_eq!(batches[1].feed(), "b");
    }

    #[test]
    fn generated_batches_are_checked() {
        let records = vec![
            Generated {
                partition_key: "A".into(),
                data: b"one".to_vec(),
            },
            Generated {
                partition_key: "B".into(),
                data: b"".to_vec(),
            },
            Generated {
                partition_key: "A".into(),
                data: b"three".to_vec(),
            },
        ];
        let batch = GeneratedBatch::from_records(&records);
        assert_eq!(batch.cols.keys, ["A", "B"]);
        assert_eq!(
            GeneratedBatch::check(batch.cols.clone()).unwrap().to_vec(),
            records
        );
        let mut bad = batch.cols.clone();
        bad.record_key[2] = 2;
        assert!(
            GeneratedBatch::check(bad)
                .unwrap_err()
                .contains("key index 2")
        );
        let mut bad = batch.cols.clone();
        bad.record_data_end[1] = 1;
        assert!(
            GeneratedBatch::check(bad)
                .unwrap_err()
                .contains("data-end 1")
        );
        let mut bad = batch.cols;
        bad.data.push(0);
        assert!(GeneratedBatch::check(bad).unwrap_err().contains("1 bytes"));
    }
}
