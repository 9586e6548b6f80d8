//! The column contract of pipehost plugins, `pipehost:plugin@0.2.0`
//! (`wit/plugin.wit`), written once for both sides of it: the host
//! (`host/src/plugin/batch/`) and the guest SDK
//! (`plugins/guest/src/abi.rs`).
//!
//! The WIT types carry a batch in columns of primitives; what the types
//! cannot say is here:
//!
//! - the codes: [`kind`] of a field value, [`outcome_kind`] of a transform's
//!   outcome, and how a field's 64 `bits` hold its value ([`Scalar`]);
//! - span packing: a text value is a `start..end` of the batch's `text`,
//!   packed into its 64 bits ([`pack_span`], [`unpack_span`]);
//! - the checks each side runs on columns it did not build: parallel
//!   columns of one length ([`same_lengths`]), indices in range
//!   ([`index`]), end-offset columns that never decrease nor pass their
//!   data ([`run`]), spans in range and on character boundaries
//!   ([`span`]), nothing left over ([`all_used`]), and outcome counts
//!   ([`outcome_events`]), and the records of a `generated-batch`
//!   ([`check_generated`]);
//! - the one walk over an `event-batch` that runs them all ([`EventWalk`]):
//!   the host checks a plugin's output with it, the guest SDK decodes the
//!   host's input with it.
//!
//! Each check is one comparison or two on the success path, `#[inline]`, and
//! builds its message (the part after the caller's `event 3: ` prefix) only
//! on failure, so a caller can run them in its one pass per column.
//!
//! No dependencies: it builds natively and for `wasm32-wasip2`.

use std::ops::Range;

mod events;
#[cfg(test)]
mod tests;

pub use events::{EventColumns, EventEntry, EventWalk, FieldValue};

/// The [`EventColumns`] of an `event-batch` as a binding generated it (the
/// host's and the guest SDK's bindings each have their own type, with the
/// same fields).
#[macro_export]
macro_rules! event_columns {
    ($batch:expr) => {{
        let b = $batch;
        $crate::EventColumns {
            names: &b.names,
            keys: &b.keys,
            text: &b.text,
            event_dataset: &b.event_dataset,
            event_key_end: &b.event_key_end,
            event_time: &b.event_time,
            event_fields_end: &b.event_fields_end,
            field_name: &b.field_name,
            field_kind: &b.field_kind,
            field_bits: &b.field_bits,
        }
    }};
}

/// `field-kind` codes: what a field's `field-bits` hold.
pub mod kind {
    /// `0` or `1`.
    pub const BOOLEAN: u8 = 0;
    /// The integer itself.
    pub const INTEGER: u8 = 1;
    /// The IEEE 754 bits of an `f64`.
    pub const FLOAT: u8 = 2;
    /// A packed span of the batch's `text` ([`crate::pack_span`]).
    pub const TEXT: u8 = 3;
    /// Milliseconds since the epoch.
    pub const TIMESTAMP: u8 = 4;
}

/// `outcome-kind` codes: what became of a transform's input event.
pub mod outcome_kind {
    /// Kept (possibly changed): yields 1 output event.
    pub const KEEP: u8 = 0;
    /// Filtered out on purpose: yields none.
    pub const DROP: u8 = 1;
    /// Replaced by `n` events (possibly none).
    pub const SPLIT: u8 = 2;
    /// Rejected, with the next reason: yields none.
    pub const FAIL: u8 = 3;
    /// The outcomes' names, by code.
    pub const NAMES: [&str; 4] = ["keep", "drop", "split", "fail"];
}

/// A field value as the columns carry it: a [`kind`] code and 64 bits; a
/// text value is its [`Span`] in the batch's `text`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    Boolean(bool),
    Integer(i64),
    Float(f64),
    Text(Span),
    TimestampMs(i64),
}

impl Scalar {
    /// The `(field-kind, field-bits)` of the value.
    #[inline]
    pub fn encode(self) -> (u8, i64) {
        match self {
            Scalar::Boolean(b) => (kind::BOOLEAN, i64::from(b)),
            Scalar::Integer(i) => (kind::INTEGER, i),
            Scalar::Float(x) => (kind::FLOAT, x.to_bits() as i64),
            Scalar::Text(span) => (kind::TEXT, span.pack()),
            Scalar::TimestampMs(ms) => (kind::TIMESTAMP, ms),
        }
    }

    /// The value a `(field-kind, field-bits)` pair holds. Refuses a code
    /// that is no kind and a boolean other than 0 or 1; a text span is not
    /// checked against any text here (see [`span`]).
    #[inline]
    pub fn decode(code: u8, bits: i64) -> Result<Scalar, String> {
        Ok(match code {
            kind::BOOLEAN => match bits {
                0 | 1 => Scalar::Boolean(bits == 1),
                _ => return Err(bad_boolean(bits)),
            },
            kind::INTEGER => Scalar::Integer(bits),
            kind::FLOAT => Scalar::Float(f64::from_bits(bits as u64)),
            kind::TEXT => Scalar::Text(Span::unpack(bits)),
            kind::TIMESTAMP => Scalar::TimestampMs(bits),
            other => return Err(bad_kind(other)),
        })
    }

    /// [`Self::decode`] of a pair already checked: an unknown code reads as
    /// a timestamp and any non-zero boolean as `true`, never a panic.
    #[inline]
    pub fn decode_checked(code: u8, bits: i64) -> Scalar {
        match code {
            kind::BOOLEAN => Scalar::Boolean(bits != 0),
            kind::INTEGER => Scalar::Integer(bits),
            kind::FLOAT => Scalar::Float(f64::from_bits(bits as u64)),
            kind::TEXT => Scalar::Text(Span::unpack(bits)),
            _ => Scalar::TimestampMs(bits),
        }
    }
}

#[cold]
#[inline(never)]
fn bad_boolean(bits: i64) -> String {
    format!("boolean bits {bits} are neither 0 nor 1")
}

#[cold]
#[inline(never)]
fn bad_kind(code: u8) -> String {
    format!("kind {code} is not a field kind (0 to 4)")
}

/// A `start..end` of a batch's `text`, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// Start in the low 32 bits, end in the high 32.
    #[inline]
    pub fn pack(self) -> i64 {
        pack_span(self.start, self.end)
    }

    #[inline]
    pub fn unpack(bits: i64) -> Span {
        let (start, end) = unpack_span(bits);
        Span { start, end }
    }

    /// As a range of `usize`.
    #[inline]
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// A packed span: `start` in the low 32 bits, `end` in the high 32.
#[inline]
pub fn pack_span(start: u32, end: u32) -> i64 {
    (u64::from(start) | (u64::from(end) << 32)) as i64
}

/// The `(start, end)` of a packed span.
#[inline]
pub fn unpack_span(bits: i64) -> (u32, u32) {
    let bits = bits as u64;
    (bits as u32, (bits >> 32) as u32)
}

/// `n` as a column entry. Batches live in (or come from) a 32-bit linear
/// memory, so a count or offset past `u32::MAX` is a bug: it panics, naming
/// `what`.
#[inline]
pub fn to_u32(n: usize, what: &str) -> u32 {
    match u32::try_from(n) {
        Ok(n) => n,
        Err(_) => too_big(what),
    }
}

#[cold]
#[inline(never)]
fn too_big(what: &str) -> ! {
    panic!("batch {what} over 4 GiB")
}

/// The one length of columns meant to be parallel, e.g. `("event-time",
/// 3)`; `what` names their entries (`event`).
#[inline]
pub fn same_lengths(what: &str, cols: &[(&str, usize)]) -> Result<usize, String> {
    let n = cols[0].1;
    match cols[1..].iter().find(|(_, len)| *len != n) {
        None => Ok(n),
        Some((name, len)) => Err(format!(
            "{what} columns differ in length: {} has {n} entries but {name} has {len}",
            cols[0].0
        )),
    }
}

/// `index` as a position among `count` entries (`unit`, e.g. `names`);
/// `what` says whose index it is (`dataset`).
#[inline]
pub fn index(what: &str, index: u32, count: usize, unit: &str) -> Result<usize, String> {
    let i = index as usize;
    if i < count {
        Ok(i)
    } else {
        Err(bad_index(what, index, count, unit))
    }
}

#[cold]
#[inline(never)]
fn bad_index(what: &str, index: u32, count: usize, unit: &str) -> String {
    format!("{what} index {index} is out of range ({count} {unit})")
}

/// The run an entry of an end-offset column closes: `start..end`, where
/// `start` is where the previous run ended (0 for the first). `end` must
/// not fall below `start` nor pass `total` (`unit`s, e.g. `fields`);
/// `column` names it (`fields-end`).
#[inline]
pub fn run(
    column: &str,
    start: usize,
    end: u32,
    total: usize,
    unit: &str,
) -> Result<Range<usize>, String> {
    let end = end as usize;
    if start <= end && end <= total {
        Ok(start..end)
    } else {
        Err(bad_run(column, start, end, total, unit))
    }
}

#[cold]
#[inline(never)]
fn bad_run(column: &str, start: usize, end: usize, total: usize, unit: &str) -> String {
    format!(
        "{column} {end} is outside {start}..={total} (it must not decrease, nor pass the {total} {unit})"
    )
}

/// `text[start..end]`, if that is a range of `text` with both ends on
/// character boundaries; if not, what is wrong (`what` names the text,
/// e.g. `keys`).
#[inline]
pub fn span<'a>(text: &'a str, what: &str, start: usize, end: usize) -> Result<&'a str, String> {
    match text.get(start..end) {
        Some(s) => Ok(s),
        None => Err(bad_span(text, what, start, end)),
    }
}

#[cold]
#[inline(never)]
fn bad_span(text: &str, what: &str, start: usize, end: usize) -> String {
    if start > end || end > text.len() {
        format!(
            "span {start}..{end} is not a range of the batch's {what} ({} bytes)",
            text.len()
        )
    } else {
        format!("span {start}..{end} cuts a UTF-8 character of the batch's {what}")
    }
}

/// Whether runs ending at `used` cover all `total` entries (`unit`, e.g.
/// `bytes of keys`) of a column; if not, how many belong to no `owner`.
#[inline]
pub fn all_used(used: usize, total: usize, unit: &str, owner: &str) -> Result<(), String> {
    if used == total {
        Ok(())
    } else {
        Err(left_over(total.saturating_sub(used), unit, owner))
    }
}

#[cold]
#[inline(never)]
fn left_over(n: usize, unit: &str, owner: &str) -> String {
    format!("{n} {unit} belong to no {owner}")
}

/// Checks a `generated-batch`'s per-record columns: each `record-key` an
/// index among `keys` keys, each `record-data-end` closing the record's run
/// of the `data` bytes, and every byte belonging to a record.
pub fn check_generated(
    keys: usize,
    record_key: &[u32],
    record_data_end: &[u32],
    data: usize,
) -> Result<(), String> {
    let n = same_lengths(
        "record",
        &[
            ("record-key", record_key.len()),
            ("record-data-end", record_data_end.len()),
        ],
    )?;
    let mut start = 0;
    for i in 0..n {
        let at = |p| format!("record {i}: {p}");
        index("key", record_key[i], keys, "keys").map_err(at)?;
        start = run("data-end", start, record_data_end[i], data, "bytes")
            .map_err(at)?
            .end;
    }
    all_used(start, data, "bytes of data", "record")
}

/// How many output events an outcome of `code` claiming `count` yields:
/// `count` itself, once checked (a keep yields exactly 1, a drop and a
/// fail 0, a split any number).
#[inline]
pub fn outcome_events(code: u8, count: u32) -> Result<u32, String> {
    let expected = match code {
        outcome_kind::KEEP => 1,
        outcome_kind::DROP | outcome_kind::FAIL => 0,
        outcome_kind::SPLIT => return Ok(count),
        other => return Err(format!("kind {other} is not an outcome kind (0 to 3)")),
    };
    if count == expected {
        Ok(count)
    } else {
        Err(format!(
            "a {} yields {expected} events, not {count}",
            outcome_kind::NAMES[code as usize]
        ))
    }
}
