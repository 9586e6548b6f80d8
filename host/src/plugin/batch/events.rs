//! The checked columns of events ([`EventBatch`]) and the view of one
//! event ([`EventView`]) every accessor reads through without copying.

use std::ops::Range;

use pipehost_abi::{self as abi, Scalar, kind};

use super::owned::{Event, Field};
use super::value::ValueRef;
use super::wit;

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
    /// [`crate::plugin::PluginError::Contract`].
    pub(crate) fn check(cols: wit::EventBatch) -> Result<Self, String> {
        abi::EventWalk::check(abi::event_columns!(&cols))?;
        Ok(Self { cols })
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
