//! The one walk over an `event-batch`'s columns that checks them: the host
//! runs it on what a plugin returns, the guest SDK on what the host sends,
//! so both refuse the same batches with the same words.

use std::ops::Range;

use crate::{Scalar, Span, all_used, index, kind, run, same_lengths, span};

/// The columns of an `event-batch`, borrowed (the WIT record's fields, in
/// its order).
#[derive(Debug, Clone, Copy)]
pub struct EventColumns<'a> {
    pub names: &'a [String],
    pub keys: &'a str,
    pub text: &'a str,
    pub event_dataset: &'a [u32],
    pub event_key_end: &'a [u32],
    pub event_time: &'a [i64],
    pub event_fields_end: &'a [u32],
    pub field_name: &'a [u32],
    pub field_kind: &'a [u8],
    pub field_bits: &'a [i64],
}

/// One event, checked but for its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventEntry<'a> {
    /// Its position in the batch.
    pub index: usize,
    /// Its dataset, a position in `names`.
    pub dataset: usize,
    pub partition_key: &'a str,
    pub event_time_ms: i64,
    /// Its run of the field columns; check each with [`EventWalk::field`].
    pub fields: Range<usize>,
}

/// A field value, checked; text borrowed from the batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldValue<'a> {
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Text(&'a str),
    TimestampMs(i64),
}

/// Walks an `event-batch`, checking each index, end offset, span and code
/// once: [`Self::next_event`] until `None`, [`Self::field`] for each field
/// of each event, then [`Self::finish`]. Every error names the event (and
/// field) at fault.
#[derive(Debug)]
pub struct EventWalk<'a> {
    cols: EventColumns<'a>,
    events: usize,
    fields: usize,
    next: usize,
    key_start: usize,
    first_field: usize,
}

impl<'a> EventWalk<'a> {
    /// Starts a walk, checking that the parallel columns have one length.
    pub fn new(cols: EventColumns<'a>) -> Result<Self, String> {
        let events = same_lengths(
            "event",
            &[
                ("event-dataset", cols.event_dataset.len()),
                ("event-key-end", cols.event_key_end.len()),
                ("event-time", cols.event_time.len()),
                ("event-fields-end", cols.event_fields_end.len()),
            ],
        )?;
        let fields = same_lengths(
            "field",
            &[
                ("field-name", cols.field_name.len()),
                ("field-kind", cols.field_kind.len()),
                ("field-bits", cols.field_bits.len()),
            ],
        )?;
        Ok(EventWalk {
            cols,
            events,
            fields,
            next: 0,
            key_start: 0,
            first_field: 0,
        })
    }

    /// How many events the batch holds.
    pub fn len(&self) -> usize {
        self.events
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The next event (its dataset index, partition key and field run
    /// checked), or `None` past the last.
    #[inline]
    pub fn next_event(&mut self) -> Result<Option<EventEntry<'a>>, String> {
        let i = self.next;
        if i == self.events {
            return Ok(None);
        }
        let c = &self.cols;
        let at = |p| format!("event {i}: {p}");
        let dataset = index("dataset", c.event_dataset[i], c.names.len(), "names").map_err(at)?;
        let key_end = c.event_key_end[i] as usize;
        let partition_key = span(c.keys, "keys", self.key_start, key_end)
            .map_err(|p| at(format!("partition key {p}")))?;
        let fields_end = c.event_fields_end[i];
        let fields = run(
            "fields-end",
            self.first_field,
            fields_end,
            self.fields,
            "fields",
        )
        .map_err(at)?;
        self.next = i + 1;
        self.key_start = key_end;
        self.first_field = fields.end;
        Ok(Some(EventEntry {
            index: i,
            dataset,
            partition_key,
            event_time_ms: c.event_time[i],
            fields,
        }))
    }

    /// Field `j` of `event` (`j` in `event.fields`): its name, a position
    /// in `names`, and its value.
    #[inline]
    pub fn field(
        &self,
        event: &EventEntry<'a>,
        j: usize,
    ) -> Result<(usize, FieldValue<'a>), String> {
        let c = &self.cols;
        let i = event.index;
        let name = index("name", c.field_name[j], c.names.len(), "names")
            .map_err(|p| format!("event {i}, field {}: {p}", j - event.fields.start))?;
        let at = |p| format!("event {i}, field `{}`: {p}", c.names[name]);
        let value = match Scalar::decode(c.field_kind[j], c.field_bits[j]).map_err(at)? {
            Scalar::Boolean(b) => FieldValue::Boolean(b),
            Scalar::Integer(n) => FieldValue::Integer(n),
            Scalar::Float(x) => FieldValue::Float(x),
            Scalar::TimestampMs(ms) => FieldValue::TimestampMs(ms),
            Scalar::Text(s) => FieldValue::Text(
                span(c.text, "text", s.start as usize, s.end as usize)
                    .map_err(|p| at(format!("text value {p}")))?,
            ),
        };
        Ok((name, value))
    }

    /// Ends the walk (after the last event): every field and every byte of
    /// the keys must belong to an event.
    pub fn finish(self) -> Result<(), String> {
        let used = self.first_field;
        all_used(used, self.fields, "fields", "event")
            .map_err(|p| format!("{p} (the last event's fields-end is {used})"))?;
        all_used(
            self.key_start,
            self.cols.keys.len(),
            "bytes of keys",
            "event",
        )
    }

    /// Walks the whole batch, checking it, for a side that only checks:
    /// [`Self::field`]'s checks without building the values, and on
    /// failure its very words (the hot path of the host, one pass).
    pub fn check(cols: EventColumns<'a>) -> Result<(), String> {
        let mut walk = EventWalk::new(cols)?;
        while let Some(event) = walk.next_event()? {
            for j in event.fields.clone() {
                if !walk.field_is_valid(j) {
                    walk.field(&event, j)?;
                }
            }
        }
        walk.finish()
    }

    /// Whether field `j` passes [`Self::field`]'s checks.
    #[inline]
    fn field_is_valid(&self, j: usize) -> bool {
        let c = &self.cols;
        let bits = c.field_bits[j];
        (c.field_name[j] as usize) < c.names.len()
            && match c.field_kind[j] {
                kind::BOOLEAN => matches!(bits, 0 | 1),
                kind::TEXT => {
                    let s = Span::unpack(bits);
                    c.text.get(s.range()).is_some()
                }
                k => k <= kind::TIMESTAMP,
            }
    }
}
