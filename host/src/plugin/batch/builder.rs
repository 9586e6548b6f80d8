//! Building an [`EventBatch`] on the host: one event at a time, each name
//! once (valid by construction, so never checked).

use std::collections::HashMap;

use pipehost_abi::{self as abi, Scalar, to_u32};

use super::events::{EventBatch, EventView};
use super::owned::Event;
use super::push_end;
use super::value::ValueRef;
use super::wit;

impl EventBatch {
    /// Builds a batch from owned events.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut b = EventBatchBuilder::default();
        for e in events {
            b.push_event(e);
        }
        b.finish()
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
            // The empty columns of an empty batch.
            cols: EventBatch::default().cols,
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
