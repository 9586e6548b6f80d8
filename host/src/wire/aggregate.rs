//! Aggregated stream records (KPL-style): many lines in one stream record,
//! so that HTTP ingest puts one record per request instead of one per line,
//! and a feed one record per partition key and tick (`runtime::feeds`).
//!
//! Inserting a stream record costs about the same whatever its size (a
//! SQLite row on the local backend, a PutRecords entry on Kinesis), so a
//! request of 100 lines as one record is ~100x cheaper to store. The
//! processor unpacks it again before parsing ([`super::message`]), so
//! parsers, error records and audits still see one record per line, each
//! named by a sub-sequence `<sequence>:<i>`.
//!
//! The format, version 1 (integers little-endian):
//!
//! ```text
//! offset  size  what
//! 0       4     magic F5 50 48 41 ("\xF5PHA") — 0xF5 never occurs in UTF-8
//! 4       1     version (1)
//! 5       4     CRC-32 (IEEE) of everything from offset 9 on
//! 9       4     n, the number of lines (at least 1; 1 only for a lone
//!               line that itself starts with the magic)
//! 13      …     n × (length as LEB128, the line's bytes)
//! ```
//!
//! A record is an aggregate exactly when it starts with the magic. Lines
//! posted to the web server are UTF-8, so a plain line can never start with
//! it. A lone line that does start with it (a binary generator's record)
//! is written wrapped, as an aggregate of one line, so it is never unpacked
//! into lines nobody sent; a foreign producer's record that starts with it
//! is read as an aggregate, and lands under the error prefix when corrupt.
//! The magic is our own rather than the KPL's (`F3 89 9A C2`), so a KPL
//! record on a shared stream is never misread as ours. The checksum turns
//! truncation or a flipped bit into a named error instead of wrong lines.

use std::fmt::Write as _;

/// The first bytes of every aggregated record.
pub const MAGIC: [u8; 4] = [0xF5, b'P', b'H', b'A'];
/// The format version this host writes and reads.
pub const VERSION: u8 = 1;
/// Magic, version, checksum, line count.
pub const HEADER_BYTES: usize = 13;
/// The largest aggregated record written: Kinesis takes at most 1 MiB per
/// record *including* its partition key (at most 256 bytes).
pub const MAX_RECORD_BYTES: usize = 1024 * 1024 - 256;
/// The most lines an aggregated record holds. [`pack`] never writes more,
/// and the processor unpacks no more ([`super::message`]): an aggregate
/// past it (written by an older version) goes to the error prefix whole,
/// so the memory one record can take when unpacked stays bounded however
/// short its lines are. `web.max_aggregate_lines` may only lower it.
pub const MAX_LINES: usize = crate::plan::MAX_AGGREGATE_LINES as usize;
/// The longest partition key a stream record may carry: Kinesis' limit.
/// The web server refuses longer ones, and the processor does not unpack
/// an aggregate under a longer key (it would be copied to every line).
pub const MAX_KEY_BYTES: usize = 256;

/// Why an aggregated record cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    #[error("aggregated record of {len} bytes is shorter than its {HEADER_BYTES}-byte header")]
    ShortHeader { len: usize },
    #[error("not an aggregated record (no magic prefix)")]
    NoMagic,
    #[error("aggregated record version {0} (this host reads version {VERSION})")]
    Version(u8),
    #[error(
        "aggregated record is corrupt: checksum {computed:08x} does not match the stored {stored:08x}"
    )]
    Checksum { stored: u32, computed: u32 },
    #[error("aggregated record claims {0} lines (an aggregate holds at least 1)")]
    TooFewLines(u32),
    #[error("aggregated record is truncated: line {line} of {count} {what}")]
    Truncated { line: u32, count: u32, what: String },
    #[error("aggregated record has {0} bytes after its last line")]
    Trailing(usize),
}

/// One record to put on the stream: an aggregate of several lines, or a
/// lone line as a plain record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packed {
    pub data: Vec<u8>,
    /// Lines it holds.
    pub lines: usize,
    /// CRC-32 of its lines (of the lone line itself for a plain record): a
    /// content hash for partition keys, computed once.
    pub checksum: u32,
}

impl Packed {
    /// The checksum as a partition key: 8 hex digits.
    pub fn content_key(&self) -> String {
        let mut s = String::with_capacity(8);
        let _ = write!(s, "{:08x}", self.checksum);
        s
    }
}

/// True when `data` is an aggregated record (starts with [`MAGIC`]).
pub fn is_aggregate(data: &[u8]) -> bool {
    data.starts_with(&MAGIC)
}

/// How many lines a stream record stands for, reading only the header: its
/// line count for an aggregate, 1 for a plain record or an unreadable
/// header (an unreadable aggregate becomes one error record).
pub fn lines_in(data: &[u8]) -> usize {
    if !is_aggregate(data) || data.len() < HEADER_BYTES || data[4] != VERSION {
        return 1;
    }
    let n = u32::from_le_bytes(data[9..13].try_into().expect("4 bytes"));
    (n as usize).max(1)
}

fn varint_len(mut n: usize) -> usize {
    let mut len = 1;
    while n >= 0x80 {
        n >>= 7;
        len += 1;
    }
    len
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Reads a LEB128 length at `*at`; `None` when the bytes run out or it
/// does not fit a `usize`.
fn get_varint(data: &[u8], at: &mut usize) -> Option<usize> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*at)?;
        *at += 1;
        n |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return usize::try_from(n).ok();
        }
    }
    None
}

/// A record being filled: the header (count and checksum patched at the
/// end), then the lines.
struct Filling {
    data: Vec<u8>,
    lines: usize,
}

impl Filling {
    fn new(capacity: usize) -> Self {
        let mut data = Vec::with_capacity(capacity.max(HEADER_BYTES + 16));
        data.extend_from_slice(&MAGIC);
        data.push(VERSION);
        data.extend_from_slice(&[0; 8]); // checksum and count, patched
        Self { data, lines: 0 }
    }

    fn push(&mut self, line: &[u8]) {
        put_varint(&mut self.data, line.len());
        self.data.extend_from_slice(line);
        self.lines += 1;
    }

    /// The finished record: an aggregate, or its lone line as is — unless
    /// that line itself starts with [`MAGIC`]: the processor would take it
    /// for an aggregate and unpack lines nobody sent, so such a line stays
    /// wrapped, an aggregate of one line.
    fn finish(mut self) -> Packed {
        let mut at = HEADER_BYTES;
        get_varint(&self.data, &mut at).expect("written above");
        if self.lines == 1 && !is_aggregate(&self.data[at..]) {
            let line = self.data.split_off(at);
            let checksum = crc32fast::hash(&line);
            return Packed {
                data: line,
                lines: 1,
                checksum,
            };
        }
        self.data[9..13].copy_from_slice(&(self.lines as u32).to_le_bytes());
        let checksum = crc32fast::hash(&self.data[9..]);
        self.data[5..9].copy_from_slice(&checksum.to_le_bytes());
        Packed {
            data: self.data,
            lines: self.lines,
            checksum,
        }
    }
}

/// Packs lines, in order, into as few records as fit `max_bytes` each
/// (and [`MAX_LINES`] lines): an aggregated record per run of lines, a lone line (one that would not fit
/// with another, or the last one left) as a plain record. A single line
/// over `max_bytes` goes alone, as is: the stream decides what to do with
/// it (Kinesis: the error prefix, naming its size).
///
/// `expected` is about how many bytes the lines take (a request body's
/// length): a record is allocated once at its final size, not grown.
pub fn pack<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    expected: usize,
    max_bytes: usize,
) -> Vec<Packed> {
    pack_bounded(lines, expected, max_bytes, MAX_LINES)
}

/// [`pack`] with at most `max_lines` lines per record (clamped to
/// `2..=`[`MAX_LINES`]).
pub fn pack_bounded<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
    expected: usize,
    max_bytes: usize,
    max_lines: usize,
) -> Vec<Packed> {
    let max_lines = max_lines.clamp(2, MAX_LINES);
    // A length prefix takes no more room than the '\n' it replaces, up to
    // 127-byte lines; past that one byte more per line of 128 or more.
    let mut left = HEADER_BYTES + expected + expected / 128;
    let mut out = Vec::new();
    let mut open: Option<Filling> = None;
    for line in lines {
        let size = varint_len(line.len()) + line.len();
        if let Some(f) = open.take_if(|f| f.data.len() + size > max_bytes || f.lines == max_lines) {
            left = left.saturating_sub(f.data.len());
            out.push(f.finish());
        }
        open.get_or_insert_with(|| Filling::new(left.min(max_bytes)))
            .push(line);
    }
    out.extend(open.map(Filling::finish));
    out
}

/// The lines of an aggregated record, after checking its header, checksum
/// and framing.
pub fn decode(data: &[u8]) -> Result<Vec<&[u8]>, AggregateError> {
    if !is_aggregate(data) {
        return Err(AggregateError::NoMagic);
    }
    if data.len() < HEADER_BYTES {
        return Err(AggregateError::ShortHeader { len: data.len() });
    }
    if data[4] != VERSION {
        return Err(AggregateError::Version(data[4]));
    }
    let stored = u32::from_le_bytes(data[5..9].try_into().expect("4 bytes"));
    let computed = crc32fast::hash(&data[9..]);
    if stored != computed {
        return Err(AggregateError::Checksum { stored, computed });
    }
    let count = u32::from_le_bytes(data[9..13].try_into().expect("4 bytes"));
    if count < 1 {
        return Err(AggregateError::TooFewLines(count));
    }
    // Every line takes at least its length byte: a count past that is a lie
    // (and must not size an allocation).
    let mut lines = Vec::with_capacity((count as usize).min(data.len() - HEADER_BYTES));
    let mut at = HEADER_BYTES;
    for i in 0..count {
        let truncated = |what: String| AggregateError::Truncated {
            line: i,
            count,
            what,
        };
        let len =
            get_varint(data, &mut at).ok_or_else(|| truncated("has no complete length".into()))?;
        let left = data.len() - at;
        if len > left {
            return Err(truncated(format!("needs {len} bytes, {left} are left")));
        }
        lines.push(&data[at..at + len]);
        at += len;
    }
    if at != data.len() {
        return Err(AggregateError::Trailing(data.len() - at));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, width: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("{i:0width$}").into_bytes())
            .collect()
    }

    fn refs(v: &[Vec<u8>]) -> Vec<&[u8]> {
        v.iter().map(Vec::as_slice).collect()
    }

    #[test]
    fn lines_round_trip_through_one_aggregate() {
        let mut input = lines(100, 90);
        input.push(Vec::new()); // empty lines survive too
        input.push("é, 漢字 and a \r".as_bytes().to_vec());
        input.push(vec![b'x'; 300]); // a two-byte length
        let packed = pack(refs(&input), 0, MAX_RECORD_BYTES);
        assert_eq!(packed.len(), 1);
        let p = &packed[0];
        assert!(is_aggregate(&p.data));
        assert_eq!(p.lines, input.len());
        assert_eq!(lines_in(&p.data), input.len());
        assert_eq!(decode(&p.data).unwrap(), refs(&input));
        assert_eq!(p.content_key().len(), 8);
        assert_eq!(p.checksum, crc32fast::hash(&p.data[9..]));
    }

    #[test]
    fn one_line_stays_a_plain_record() {
        let packed = pack(
            [&b"ACME,2026-11-23T08:00:00Z,10.5,100"[..]],
            34,
            MAX_RECORD_BYTES,
        );
        assert_eq!(packed.len(), 1);
        assert_eq!(packed[0].data, b"ACME,2026-11-23T08:00:00Z,10.5,100");
        assert_eq!(packed[0].lines, 1);
        assert!(!is_aggregate(&packed[0].data));
        assert!(pack(std::iter::empty(), 0, MAX_RECORD_BYTES).is_empty());
    }

    #[test]
    fn a_body_past_the_cap_becomes_several_records_in_order() {
        let input = lines(1000, 99); // 100 bytes a line with its length
        let packed = pack(refs(&input), 100_000, 10_000);
        assert!(packed.iter().all(|p| p.data.len() <= 10_000));
        assert_eq!(
            packed.len(),
            11,
            "99 lines fit in 10,000 bytes with the header"
        );
        let back: Vec<&[u8]> = packed
            .iter()
            .flat_map(|p| {
                if is_aggregate(&p.data) {
                    decode(&p.data).unwrap()
                } else {
                    vec![p.data.as_slice()]
                }
            })
            .collect();
        assert_eq!(back, refs(&input));
        // The last line left over alone is a plain record.
        let packed = pack(refs(&lines(100, 99)), 9_900, 100 * 99 + HEADER_BYTES);
        assert_eq!(packed.iter().map(|p| p.lines).collect::<Vec<_>>(), [99, 1]);
        assert!(!is_aggregate(&packed[1].data));
        // A line too big for any aggregate goes alone, untouched.
        let big = vec![b'b'; 2000];
        let packed = pack([&b"a"[..], &big, &b"c"[..]], 2002, 1000);
        assert_eq!(packed.len(), 3);
        assert_eq!(packed[1].data, big);
    }

    #[test]
    fn aggregates_hold_at_most_max_lines() {
        let input = vec![b"ab".to_vec(); 25];
        let packed = pack_bounded(refs(&input), 50, MAX_RECORD_BYTES, 10);
        assert_eq!(
            packed.iter().map(|p| p.lines).collect::<Vec<_>>(),
            [10, 10, 5]
        );
        let many = vec![b"a".to_vec(); MAX_LINES + 3];
        let packed = pack(refs(&many), MAX_LINES + 3, MAX_RECORD_BYTES);
        assert_eq!(packed[0].lines, MAX_LINES);
        assert_eq!(lines_in(&packed[0].data), MAX_LINES);
        assert_eq!(packed[1].lines, 3);
    }

    #[test]
    fn plain_records_are_never_taken_for_aggregates() {
        for plain in [
            &b"{\"pair\":\"EUR/USD\"}"[..],
            b"",
            b"\xF5",
            b"\xF5PH",
            b"PHA\x01",
            "\u{10FFFF} text".as_bytes(),
        ] {
            assert!(!is_aggregate(plain), "{plain:?}");
            assert_eq!(lines_in(plain), 1);
            assert_eq!(decode(plain), Err(AggregateError::NoMagic));
        }
        // No UTF-8 text starts with the magic.
        assert!(std::str::from_utf8(std::hint::black_box(&MAGIC)).is_err());
    }

    #[test]
    fn corrupt_aggregates_give_errors_that_say_what_is_wrong() {
        let good = pack(refs(&lines(5, 20)), 100, MAX_RECORD_BYTES)
            .remove(0)
            .data;
        let err = |d: &[u8]| decode(d).unwrap_err().to_string();

        assert!(err(&good[..8]).contains("shorter than its 13-byte header"));
        let mut v2 = good.clone();
        v2[4] = 2;
        assert!(err(&v2).contains("version 2 (this host reads version 1)"));
        assert_eq!(
            lines_in(&v2),
            1,
            "an unreadable header counts as one record"
        );
        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(err(&flipped).contains("checksum"), "{}", err(&flipped));
        let cut = &good[..good.len() - 3];
        assert!(err(cut).contains("checksum"), "truncation is caught");

        // Framing errors behind a valid checksum (a buggy writer).
        let reseal = |mut d: Vec<u8>| {
            let c = crc32fast::hash(&d[9..]);
            d[5..9].copy_from_slice(&c.to_le_bytes());
            d
        };
        let short = reseal(good[..good.len() - 3].to_vec());
        assert_eq!(
            err(&short),
            "aggregated record is truncated: line 4 of 5 needs 20 bytes, 17 are left"
        );
        let mut long = good.clone();
        long.extend_from_slice(b"xy");
        assert_eq!(
            err(&reseal(long)),
            "aggregated record has 2 bytes after its last line"
        );
        let mut huge = good[..HEADER_BYTES].to_vec();
        huge[9..13].copy_from_slice(&u32::MAX.to_le_bytes());
        huge.push(0x80); // a length that never ends
        let e = err(&reseal(huge));
        assert!(
            e.contains("line 0 of 4294967295 has no complete length"),
            "{e}"
        );
        let mut none = good[..HEADER_BYTES].to_vec();
        none[9..13].copy_from_slice(&0u32.to_le_bytes());
        assert!(err(&reseal(none)).contains("claims 0 lines"));
    }

    #[test]
    fn a_lone_line_that_starts_with_the_magic_stays_wrapped() {
        // Plain bytes that happen to be a valid aggregate of three lines.
        let inner = pack(refs(&lines(3, 4)), 12, MAX_RECORD_BYTES)
            .remove(0)
            .data;
        let packed = pack([inner.as_slice()], inner.len(), MAX_RECORD_BYTES);
        assert_eq!(packed.len(), 1);
        assert_eq!(decode(&packed[0].data), Ok(vec![inner.as_slice()]));
        assert_eq!(lines_in(&packed[0].data), 1);
        // Any other lone line stays plain.
        let plain = pack([&b"a1"[..]], 2, MAX_RECORD_BYTES);
        assert_eq!(plain[0].data, b"a1");
    }
}
