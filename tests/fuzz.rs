//! Fuzzing every decoder of untrusted bytes: aggregated stream records,
//! queue messages, the column checks of plugin output, fixture files and
//! pipeline.toml.
//!
//! Each target takes bytes and must return (a value or an error), never
//! panic, within a time budget and without an allocation out of proportion
//! to its input; where there is an encoder, decoding what it wrote gives
//! the value back. Two ways in, both in every `./x test`:
//!
//! - `corpus_replays_…`: every file under `tests/corpus/<target>/` (valid
//!   inputs, truncations, each distinct error found, past crashers);
//! - `fuzz_<target>`: proptest cases, raw bytes or a corpus file mutated
//!   (bit flips, cuts, repeats, tokens of the format), a bounded number
//!   per target so that the whole module takes seconds in a debug build.
//!   `PIPEHOST_FUZZ_CASES=N` runs N cases per target instead; with
//!   `PIPEHOST_FUZZ_SAVE=1` a case whose outcome (ok, or an error message
//!   with its numbers blanked) no corpus file has yet is saved to the corpus.
//!
//! The plugin column targets build the contract's column structs from the
//! bytes ([`Bytes`]): counts and offsets mostly near the lengths they index
//! (so the checks are passed often enough to reach the readers behind them),
//! sometimes past them or wild. `fuzz/` has the same targets for cargo-fuzz.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pipehost::fuzzing::{self, EventColumns, GeneratedColumns};
use pipehost::plugin::{BatchOutcome, EventBatch, GeneratedBatch};
use pipehost::runtime::aggregate;
use pipehost::runtime::message::{BatchMessage, MessageRecord};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

// ---------------------------------------------------------------------
// Allocation accounting: per thread, only while a target runs.

struct Counting;

thread_local! {
    static ACTIVE: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = ACTIVE.try_with(|a| {
        if a.get() {
            LARGEST.with(|l| l.set(l.get().max(size)));
            TOTAL.with(|t| t.set(t.get().saturating_add(size)));
        }
    });
}

// SAFETY: every call is passed to the system allocator unchanged; the
// accounting only reads the sizes, in const-initialised thread-locals
// that never allocate.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        note(layout.size());
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        note(layout.size());
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        note(new);
        unsafe { std::alloc::System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

// ---------------------------------------------------------------------
// The targets.

type Run = fn(&[u8]) -> Result<String, String>;

struct Target {
    name: &'static str,
    run: Run,
    /// Cases per `./x test` run.
    cases: u32,
    /// Longest raw input proptest makes.
    max_len: usize,
    /// Tokens a mutation may insert (text formats).
    tokens: &'static [&'static str],
    /// Of all bytes allocated while decoding, at most this many per input
    /// byte (plus 1 MiB); `None` where only single allocations are bounded.
    total_per_byte: Option<usize>,
}

const TOML_TOKENS: &[&str] = &[
    "\n",
    "=",
    "\"",
    "[",
    "]",
    "{",
    "}",
    ",",
    ".",
    "[[",
    "]]",
    "'''",
    "\"\"\"",
    "#",
    "0",
    "-1",
    "1e400",
    "nan",
    "inf",
    "true",
    "0s",
    "\"1ms\"",
    "\"99999999999h\"",
    "\"1.5GiB\"",
    "\"18446744073709551616\"",
    "\"..\"",
    "\"é\"",
    "\"{shard}\"",
    "\"{\"",
    "\"}\"",
    "\"\\u0000\"",
    "1979-05-27T07:32:00Z",
    "07:32:00",
    "1979-05-27",
    "9999-12-31T23:59:59.999999999-23:59",
    "4294967296",
    "9223372036854775807",
];

const TARGETS: &[Target] = &[
    Target {
        name: "aggregate",
        run: aggregate_target,
        cases: 3000,
        max_len: 600,
        tokens: &[],
        total_per_byte: Some(64),
    },
    Target {
        name: "message",
        run: message_target,
        cases: 1500,
        max_len: 600,
        tokens: &[
            "\"", "{", "}", "[", "]", ",", ":", "\"b64\"", "\"data\"", "null", "9PVQSEE",
        ],
        // Unpacking copies the record's key and sequence per line (issue
        // #14, item 9): only single allocations are bounded here.
        total_per_byte: None,
    },
    Target {
        name: "event-columns",
        run: event_columns_target,
        cases: 4000,
        max_len: 400,
        tokens: &[],
        total_per_byte: Some(256),
    },
    Target {
        name: "parsed",
        run: parsed_target,
        cases: 3000,
        max_len: 400,
        tokens: &[],
        total_per_byte: Some(256),
    },
    Target {
        name: "transformed",
        run: transformed_target,
        cases: 3000,
        max_len: 400,
        tokens: &[],
        total_per_byte: Some(256),
    },
    Target {
        name: "generated",
        run: generated_target,
        cases: 3000,
        max_len: 400,
        tokens: &[],
        total_per_byte: Some(64),
    },
    Target {
        name: "fixture",
        run: fixture_target,
        cases: 1000,
        max_len: 600,
        tokens: TOML_TOKENS,
        total_per_byte: Some(1024),
    },
    Target {
        name: "pipeline",
        run: pipeline_target,
        cases: 800,
        max_len: 600,
        tokens: TOML_TOKENS,
        total_per_byte: Some(1024),
    },
];

/// Stream records: `decode` must answer; lines packed by `pack` decode back.
fn aggregate_target(data: &[u8]) -> Result<String, String> {
    let lines_in = aggregate::lines_in(data);
    let decoded = aggregate::decode(data);
    if let Ok(lines) = &decoded {
        check(lines.len() == lines_in, "lines_in disagrees with decode")?;
    }
    // Round trip: the input split at 0x0a into lines, packed into records
    // of at most 16..=4111 bytes. (A line that starts with the magic is
    // never written: ingest takes UTF-8 only, which never does.)
    let max = 16 + usize::from(data.first().copied().unwrap_or(0)) * 16;
    let lines: Vec<&[u8]> = data
        .split(|b| *b == b'\n')
        .filter(|l| !aggregate::is_aggregate(l))
        .collect();
    let packed = aggregate::pack(lines.iter().copied(), data.len(), max);
    let mut back: Vec<&[u8]> = Vec::new();
    for p in &packed {
        if aggregate::is_aggregate(&p.data) {
            let got = aggregate::decode(&p.data).map_err(|e| format!("packed: {e}"))?;
            check(got.len() == p.lines, "packed line count")?;
            back.extend(got);
        } else {
            check(p.lines == 1, "a plain record holds one line")?;
            back.push(&p.data);
        }
    }
    check(back == lines, "decode(pack(lines)) != lines")?;
    // The framing behind the checksum: the bytes under a valid header.
    if data.len() < aggregate::HEADER_BYTES {
        return decoded
            .map(|l| format!("{} lines", l.len()))
            .map_err(|e| e.to_string());
    }
    let mut sealed = data.to_vec();
    sealed[..4].copy_from_slice(&aggregate::MAGIC);
    sealed[4] = aggregate::VERSION;
    let crc = crc32fast::hash(&sealed[9..]);
    sealed[5..9].copy_from_slice(&crc.to_le_bytes());
    let lines = aggregate::decode(&sealed).map_err(|e| e.to_string())?;
    check(aggregate::lines_in(&sealed) == lines.len(), "lines_in")?;
    Ok(format!("{} lines", lines.len()))
}

/// Queue message bodies: `decode` and `unpack` must answer; a message made
/// from the bytes survives `encode` then `decode`.
fn message_target(data: &[u8]) -> Result<String, String> {
    let body = String::from_utf8_lossy(data);
    let decoded = BatchMessage::decode(&body);
    if let Ok(m) = &decoded {
        let _ = m.id();
        for r in &m.records {
            let _ = r.bytes();
            let _ = r.feed_and_key();
            if let Ok(Some(lines)) = r.unpack() {
                check(lines.len() >= 2, "an aggregate unpacks into 2 or more")?;
            }
        }
        check(
            BatchMessage::decode(&m.encode()).as_ref() == Ok(m),
            "decode(encode(decoded)) differs",
        )?;
    }
    // Round trip of a message built from the bytes, aggregates included.
    let mut b = Bytes::new(data);
    let mut records = Vec::new();
    let mut sent: Vec<Vec<Vec<u8>>> = Vec::new();
    for i in 0..=b.count(3) {
        let lines: Vec<Vec<u8>> = (0..b.count(4))
            .map(|_| (0..b.count(6)).map(|_| b.byte()).collect())
            .collect();
        let payload = if lines.len() >= 2 {
            let refs = lines.iter().map(Vec::as_slice);
            aggregate::pack(refs, 64, aggregate::MAX_RECORD_BYTES)
                .remove(0)
                .data
        } else {
            lines.concat()
        };
        records.push(MessageRecord::from_stored(
            &pipehost::backend::StoredRecord {
                shard: b.text(4),
                sequence: format!("{i}{}", b.text(3)),
                partition_key: b.text(8),
                data: payload,
                arrival_ms: b.i64(),
            },
        ));
        sent.push(lines);
    }
    let m = BatchMessage {
        v: pipehost::runtime::message::VERSION,
        stream: b.text(6),
        shard: b.text(6),
        first_seq: records[0].seq.clone(),
        last_seq: records[records.len() - 1].seq.clone(),
        records,
    };
    let back = BatchMessage::decode(&m.encode())?;
    check(back == m, "decode(encode(message)) != message")?;
    for (r, lines) in back.records.iter().zip(&sent) {
        if let Some(subs) = r.unpack()? {
            let got: Vec<Vec<u8>> = subs.iter().map(|s| s.bytes().unwrap()).collect();
            check(&got == lines, "unpacked lines differ from the packed ones")?;
        }
    }
    decoded
        .map(|m| format!("{} records", m.records.len()))
        .map_err(|e| e.to_string())
}

/// A parser's or transform's events: `check` must answer; a checked batch
/// reads without panics and writes its JSON Lines as `serde_json` does.
fn event_columns_target(data: &[u8]) -> Result<String, String> {
    let batch = fuzzing::check_events(event_columns(&mut Bytes::new(data)))?;
    read_events(&batch)?;
    Ok(format!("{} events", batch.len()))
}

/// Reads every event of a checked batch the ways the host does, and checks
/// that it survives being rebuilt from its owned events.
fn read_events(batch: &EventBatch) -> Result<(), String> {
    let events = batch.to_events();
    let mut writer = pipehost::event::LineWriter::new(batch);
    let mut written = 0;
    for (view, owned) in batch.iter().zip(&events) {
        let mut line = Vec::new();
        writer.write_event(&mut line, &view);
        line.push(b'}');
        written += line.len();
        let expected = serde_json::to_vec(&pipehost::event::event_to_json(owned)).unwrap();
        check(
            line == expected,
            &format!(
                "LineWriter wrote {} where serde_json gives {}",
                String::from_utf8_lossy(&line),
                String::from_utf8_lossy(&expected)
            ),
        )?;
        let _ = view.field("a");
    }
    check(
        written <= written_bound(batch),
        &format!(
            "{written} bytes written for a batch the output cap weighs at {}",
            batch.approx_bytes()
        ),
    )?;
    let again = fuzzing::check_events(fuzzing::event_columns(&EventBatch::from_events(&events)))
        .map_err(|e| format!("a rebuilt batch fails its check: {e}"))?;
    check(
        format!("{:?}", again.to_events()) == format!("{events:?}"),
        "events differ after from_events",
    )
}

/// The most bytes of JSON Lines a batch may come to, given what the output
/// cap (`max_output_bytes`) weighs it at: every byte of it escaped (at most
/// 6 bytes for one), and the fixed parts of each line.
fn written_bound(batch: &EventBatch) -> usize {
    6 * batch.approx_bytes() + 128 * batch.len()
}

/// The output cap bounds what the host writes: a batch whose fields or
/// events share one long text span, field name or dataset weighs what it
/// writes, not what it copies. (It weighed each string once: a parser
/// could return a million fields spanning 1 MiB of text, or a million
/// events of a 1 MiB dataset name, pass the 256 MiB cap, and have the
/// processor write a terabyte.)
#[test]
fn shared_spans_and_names_count_toward_the_output_cap_each_time() {
    let long = "x".repeat(1000);
    let n = 1000;
    let span = (1000u64 << 32) as i64;
    let shapes = [
        // One event, n fields of distinct names, each spanning all the text.
        EventColumns {
            names: (0..=n).map(|i| format!("f{i}")).collect(),
            keys: String::new(),
            text: long.clone(),
            event_dataset: vec![0],
            event_key_end: vec![0],
            event_time: vec![0],
            event_fields_end: vec![n],
            field_name: (1..=n).collect(),
            field_kind: vec![3; n as usize],
            field_bits: vec![span; n as usize],
        },
        // n events, one field each, named by one long name.
        EventColumns {
            names: vec!["d".into(), long.clone()],
            keys: String::new(),
            text: String::new(),
            event_dataset: vec![0; n as usize],
            event_key_end: vec![0; n as usize],
            event_time: vec![0; n as usize],
            event_fields_end: (1..=n).collect(),
            field_name: vec![1; n as usize],
            field_kind: vec![1; n as usize],
            field_bits: vec![0; n as usize],
        },
        // n events of one long dataset name.
        EventColumns {
            names: vec![long.clone()],
            keys: String::new(),
            text: String::new(),
            event_dataset: vec![0; n as usize],
            event_key_end: vec![0; n as usize],
            event_time: vec![0; n as usize],
            event_fields_end: vec![0; n as usize],
            field_name: Vec::new(),
            field_kind: Vec::new(),
            field_bits: Vec::new(),
        },
    ];
    for (i, cols) in shapes.into_iter().enumerate() {
        let batch = fuzzing::check_events(cols).unwrap();
        let written = written_len(&batch);
        assert!(written >= 1_000_000, "shape {i}: {written}");
        assert!(
            written <= written_bound(&batch),
            "shape {i}: {written} bytes written for a batch the output cap weighs at {}",
            batch.approx_bytes()
        );
    }
}

/// The JSON Lines of a batch's events, as the processor writes them.
fn written_len(batch: &EventBatch) -> usize {
    let mut writer = pipehost::event::LineWriter::new(batch);
    let mut line = Vec::new();
    batch
        .iter()
        .map(|view| {
            line.clear();
            writer.write_event(&mut line, &view);
            line.len() + 1
        })
        .sum()
}

/// A parser's answer: events, then per-record counts and rejections.
fn parsed_target(data: &[u8]) -> Result<String, String> {
    let mut b = Bytes::new(data);
    let events = fuzzing::check_events(event_columns(&mut b))?;
    let records = b.count(6);
    let (record_events, rejected) = if b.byte().is_multiple_of(4) {
        let counts = (0..b.skewed(records)).map(|_| b.index(3)).collect();
        (counts, (0..b.count(3)).map(|_| b.index(records)).collect())
    } else {
        // Counts that add up, rejections among the records that have none.
        let mut counts = vec![0u32; records];
        for _ in 0..events.len() {
            if let Some(c) = counts.get_mut(b.count(records.saturating_sub(1))) {
                *c += 1;
            }
        }
        let rejected: Vec<u32> = (0..records as u32)
            .filter(|&i| counts[i as usize] == 0 && b.byte().is_multiple_of(2))
            .collect();
        (counts, rejected)
    };
    let reasons = (0..b.skewed(rejected.len())).map(|_| b.text(4)).collect();
    let p = fuzzing::parsed(events, record_events, rejected, reasons, records)?;
    let mut seen = 0;
    for r in p.ranges().flatten() {
        check(r.start == seen && r.end <= p.events.len(), "ranges")?;
        seen = r.end;
    }
    check(seen == p.events.len(), "ranges cover the events")?;
    let _ = p.to_results();
    // Round trip: the results as columns again.
    let counts = p
        .results
        .iter()
        .map(|r| *r.as_ref().unwrap_or(&0))
        .collect();
    let (rejected, reasons): (Vec<u32>, Vec<String>) = (p.results.iter().enumerate())
        .filter_map(|(i, r)| r.as_ref().err().map(|e| (i as u32, e.clone())))
        .unzip();
    let again = fuzzing::parsed(p.events.clone(), counts, rejected, reasons, records)?;
    check(again == p, "parsed columns do not round-trip")?;
    Ok(format!("{records} records"))
}

/// A transform's answer: events, then per-input outcome kinds and counts.
fn transformed_target(data: &[u8]) -> Result<String, String> {
    let mut b = Bytes::new(data);
    let events = fuzzing::check_events(event_columns(&mut b))?;
    let inputs = b.count(6);
    let (kinds, counts, fails): (Vec<u8>, Vec<u32>, usize) = if b.byte().is_multiple_of(4) {
        let kinds = (0..b.skewed(inputs)).map(|_| b.byte() % 5).collect();
        (
            kinds,
            (0..b.skewed(inputs)).map(|_| b.index(3)).collect(),
            b.count(3),
        )
    } else {
        // Outcomes that consume exactly the events returned.
        let (mut kinds, mut counts, mut left) = (Vec::new(), Vec::new(), events.len() as u32);
        for i in 0..inputs {
            let (k, n) = match b.byte() % 4 {
                _ if i + 1 == inputs => (2, left),
                0 if left > 0 => (0, 1),
                2 => (2, left.min(u32::from(b.byte() % 3))),
                k @ (1 | 3) => (k, 0),
                _ => (1, 0),
            };
            left -= n;
            kinds.push(k);
            counts.push(n);
        }
        let fails = kinds.iter().filter(|&&k| k == 3).count();
        (kinds, counts, fails)
    };
    let reasons = (0..b.skewed(fails)).map(|_| b.text(4)).collect();
    let t = fuzzing::transformed(events, kinds, counts, reasons, inputs)?;
    let mut seen = 0;
    for (r, _) in t.ranges() {
        check(r.start == seen && r.end <= t.events.len(), "ranges")?;
        seen = r.end;
    }
    check(seen == t.events.len(), "ranges cover the events")?;
    let _ = t.to_outcomes();
    // Round trip: the outcomes as columns again.
    let (mut kinds, mut counts, mut reasons) = (Vec::new(), Vec::new(), Vec::new());
    for o in &t.outcomes {
        let (k, n) = match o {
            BatchOutcome::Keep => (0, 1),
            BatchOutcome::Drop => (1, 0),
            BatchOutcome::Split(n) => (2, *n),
            BatchOutcome::Fail(r) => {
                reasons.push(r.clone());
                (3, 0)
            }
        };
        kinds.push(k);
        counts.push(n);
    }
    let again = fuzzing::transformed(t.events.clone(), kinds, counts, reasons, inputs)?;
    check(again == t, "transformed columns do not round-trip")?;
    Ok(format!("{inputs} outcomes"))
}

/// A generator's records: `check` must answer; checked records read back
/// and survive `from_records`.
fn generated_target(data: &[u8]) -> Result<String, String> {
    let mut b = Bytes::new(data);
    let keys: Vec<String> = (0..b.count(3)).map(|_| b.text(6)).collect();
    let bytes: Vec<u8> = (0..b.count(40)).map(|_| b.byte()).collect();
    let n = b.count(6);
    let cols = GeneratedColumns {
        record_key: (0..b.skewed(n)).map(|_| b.index(keys.len())).collect(),
        record_data_end: b.skewed_ends(n, bytes.len()),
        keys,
        data: bytes,
    };
    let batch = fuzzing::check_generated(cols)?;
    let records = batch.to_vec();
    check(records.len() == batch.len(), "len")?;
    check(
        records.iter().map(|r| r.data.len()).sum::<usize>() == batch.data_bytes(),
        "data_bytes",
    )?;
    let again = fuzzing::check_generated(fuzzing::generated_columns(
        &GeneratedBatch::from_records(&records),
    ))?;
    check(
        again.to_vec() == records,
        "records differ after from_records",
    )?;
    Ok(format!("{} records", batch.len()))
}

/// Fixture files: checked into cases or refused with a message.
fn fixture_target(data: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(data);
    let f = pipehost::fixture::spec::parse_fixture(
        &text,
        Path::new("fuzz/fixtures/case.toml"),
        Path::new("plugins"),
    )?;
    Ok(format!("{} {} cases", f.cases.len(), f.kind))
}

/// pipeline.toml: parsed, then validated into a plan, or refused.
fn pipeline_target(data: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("pipeline.toml");
    let file = pipehost::config::parse(path, &text).map_err(|e| e.to_string())?;
    let plan =
        pipehost::plan::build(path, &text, &file).map_err(|errors| match errors.first() {
            Some(e) => e.to_string(),
            None => panic!("property broken: refused without an error"),
        })?;
    Ok(format!("plan with {} feeds", plan.feeds.len()))
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        // A broken property, not a decode error: the case fails.
        panic!("property broken: {what}")
    }
}

// ---------------------------------------------------------------------
// Bytes into column structs.

/// Reads values off fuzz bytes; past the end, every byte is 0.
struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

const ALPHABET: [char; 12] = [
    'a',
    'b',
    'Z',
    ' ',
    ',',
    '"',
    '\\',
    '\n',
    'é',
    '漢',
    '\u{10FFFF}',
    '\0',
];

impl<'a> Bytes<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data, at: 0 }
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    /// 0..=max.
    fn count(&mut self, max: usize) -> usize {
        usize::from(self.byte()) % (max + 1)
    }

    /// Usually `n`, sometimes one more or one less: parallel columns.
    fn skewed(&mut self, n: usize) -> usize {
        match self.byte() {
            0xf0..=0xf7 => n + 1,
            0xf8..=0xff => n.saturating_sub(1),
            _ => n,
        }
    }

    /// An index meant for something `n` long: mostly `0..n`, sometimes
    /// `n` or `n + 1`, rarely wild.
    fn index(&mut self, n: usize) -> u32 {
        match self.byte() {
            0xff => u32::MAX,
            0xfe => u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()]),
            b @ 0..0xf0 if n > 0 => (usize::from(b) % n) as u32,
            b => (usize::from(b) % (n + 2)) as u32,
        }
    }

    /// An offset into `text`: mostly on a character boundary.
    fn offset(&mut self, text: &str) -> u32 {
        match self.byte() {
            0..0xe0 => {
                let at = self.count(text.len());
                (0..=at)
                    .rev()
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0) as u32
            }
            _ => self.index(text.len() + 1),
        }
    }

    fn i64(&mut self) -> i64 {
        match self.byte() {
            0xff => i64::MIN,
            0xfe => i64::MAX,
            0xfd => i64::from_le_bytes(std::array::from_fn(|_| self.byte())),
            b => i64::from(b) * 86_400_000_000 - 1,
        }
    }

    fn text(&mut self, max: usize) -> String {
        (0..self.count(max))
            .map(|_| ALPHABET[usize::from(self.byte()) % ALPHABET.len()])
            .collect()
    }

    /// [`Self::ends`] of a [`Self::skewed`] count.
    fn skewed_ends(&mut self, n: usize, total: usize) -> Vec<u32> {
        let n = self.skewed(n);
        self.ends(n, total)
    }

    /// End offsets of `n` pieces of `text`: mostly in order, on character
    /// boundaries and covering it.
    fn text_ends(&mut self, n: usize, text: &str) -> Vec<u32> {
        let n = self.skewed(n);
        if self.byte().is_multiple_of(4) {
            return self.ends(n, text.len());
        }
        let mut ends: Vec<u32> = (0..n).map(|_| self.offset(text)).collect();
        ends.sort_unstable();
        if let Some(last) = ends.last_mut() {
            *last = text.len() as u32;
        }
        ends
    }

    /// End offsets of `n` pieces of something `total` long: in order and
    /// covering it when the next byte is even, as the bytes say otherwise.
    fn ends(&mut self, n: usize, total: usize) -> Vec<u32> {
        let in_order = self.byte().is_multiple_of(2);
        let mut ends: Vec<u32> = (0..n).map(|_| self.index(total)).collect();
        if in_order {
            ends.sort_unstable();
            if let Some(last) = ends.last_mut() {
                *last = total as u32;
            }
        }
        ends
    }
}

/// An event batch's columns as a plugin might return them.
fn event_columns(b: &mut Bytes<'_>) -> EventColumns {
    let names: Vec<String> = (0..b.count(4)).map(|_| b.text(5)).collect();
    let keys = b.text(16);
    let text = b.text(24);
    let events = b.count(5);
    let fields = b.count(10);
    let (mut field_name, mut field_kind, mut field_bits) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..fields {
        field_name.push(b.index(names.len()));
        let kind = match b.byte() {
            k @ 0..0xf0 => k % 5,
            k => k,
        };
        field_kind.push(kind);
        field_bits.push(match kind {
            0 => i64::from(b.byte() % 2 + u8::from(b.byte() == 0xff) * 2),
            3 if !b.byte().is_multiple_of(8) => {
                let (x, y) = (b.offset(&text), b.offset(&text));
                let (start, end) = if !b.byte().is_multiple_of(8) {
                    (x.min(y), x.max(y))
                } else {
                    (x, y)
                };
                (u64::from(start) | u64::from(end) << 32) as i64
            }
            2 => f64::to_bits(match b.byte() {
                0xff => f64::NAN,
                0xfe => f64::NEG_INFINITY,
                0xfd => -0.0,
                0xfc => f64::MAX,
                x => f64::from(x) / 7.0 - 9.0,
            }) as i64,
            _ => b.i64(),
        });
    }
    EventColumns {
        event_dataset: (0..b.skewed(events))
            .map(|_| b.index(names.len()))
            .collect(),
        event_key_end: b.text_ends(events, &keys),
        event_time: (0..b.skewed(events)).map(|_| b.i64()).collect(),
        event_fields_end: b.skewed_ends(events, fields),
        field_name,
        field_kind,
        field_bits,
        names,
        keys,
        text,
    }
}

// ---------------------------------------------------------------------
// Running a target: budgets, corpus, proptest.

/// Runs `target` on `data` within its budgets; the outcome's class.
fn run_bounded(target: &Target, data: &[u8]) -> String {
    LARGEST.with(|l| l.set(0));
    TOTAL.with(|t| t.set(0));
    ACTIVE.with(|a| a.set(true));
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (target.run)(data)));
    let elapsed = started.elapsed();
    ACTIVE.with(|a| a.set(false));
    let outcome = match outcome {
        Ok(o) => o,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    let (largest, total) = (LARGEST.with(Cell::get), TOTAL.with(Cell::get));
    let shown = || String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
    assert!(
        elapsed < Duration::from_secs(2),
        "{}: {elapsed:?} for {} bytes: {:?}",
        target.name,
        data.len(),
        shown()
    );
    assert!(
        largest <= (1 << 20) + 64 * data.len(),
        "{}: one allocation of {largest} bytes for {} bytes of input: {:?}",
        target.name,
        data.len(),
        shown()
    );
    if let Some(per_byte) = target.total_per_byte {
        assert!(
            total <= (1 << 20) + per_byte * data.len(),
            "{}: {total} bytes allocated for {} bytes of input: {:?}",
            target.name,
            data.len(),
            shown()
        );
    }
    class(&outcome)
}

/// An outcome with its numbers blanked: `ok` or the error's words.
fn class(outcome: &Result<String, String>) -> String {
    match outcome {
        Ok(what) if what.starts_with("0 ") => "ok-empty".into(),
        Ok(_) => "ok".into(),
        Err(e) => {
            // A TOML error quotes the source; its last line says what.
            let e = e.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
            // Quoted input and hex digits are not part of the class.
            let (mut words, mut quote) = (String::new(), None);
            for c in e.chars() {
                match quote {
                    Some(q) if c == q => quote = None,
                    Some(_) => {}
                    None if matches!(c, '"' | '`' | '\'') => quote = Some(c),
                    None if c.is_ascii_lowercase() => words.push(c),
                    None => words.push('-'),
                }
            }
            let hex = |w: &str| w.bytes().all(|b| b.is_ascii_hexdigit());
            let mut words: Vec<&str> = (words.split('-'))
                .filter(|w| w.len() > 2 && !hex(w))
                .collect();
            words.truncate(6);
            words.join("-").to_lowercase()
        }
    }
}

fn corpus_dir(target: &Target) -> PathBuf {
    crate::util::root()
        .join("tests")
        .join("corpus")
        .join(target.name)
}

fn corpus(target: &Target) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let data = std::fs::read(&p).unwrap();
            (p, data)
        })
        .collect();
    files.sort();
    files
}

/// Bytes from a proptest case: raw, or a corpus file mutated.
fn mutate(seeds: &[Vec<u8>], tokens: &[&str], case: &Case) -> Vec<u8> {
    let pick = case.seed.index(seeds.len() + 1);
    if pick == seeds.len() {
        return case.raw.clone();
    }
    let mut data = seeds[pick].clone();
    for (op, at, arg, other) in &case.edits {
        let at = at.index(data.len() + 1);
        let len = usize::from(*arg % 32);
        let end = (at + len).min(data.len());
        match op {
            0 => {
                if let Some(b) = data.get_mut(at) {
                    *b ^= 1 << (arg % 8);
                }
            }
            1 => {
                data.drain(at..end);
            }
            2 => data.truncate(at),
            3 => {
                let piece = data[at..end].to_vec();
                data.splice(at..at, piece);
            }
            4 if !tokens.is_empty() => {
                let token = tokens[other.index(tokens.len())].as_bytes();
                data.splice(at..at, token.iter().copied());
            }
            _ => data.insert(at, *arg),
        }
    }
    data
}

#[derive(Debug, Clone)]
struct Case {
    seed: Index,
    raw: Vec<u8>,
    edits: Vec<(u8, Index, u8, Index)>,
}

fn cases(max_len: usize) -> impl Strategy<Value = Case> {
    (
        any::<Index>(),
        proptest::collection::vec(any::<u8>(), 0..max_len),
        proptest::collection::vec((0u8..6, any::<Index>(), any::<u8>(), any::<Index>()), 0..6),
    )
        .prop_map(|(seed, raw, edits)| Case { seed, raw, edits })
}

fn fuzz(name: &str) {
    let target = TARGETS.iter().find(|t| t.name == name).expect("a target");
    let files = corpus(target);
    let seeds: Vec<Vec<u8>> = files.iter().map(|(_, d)| d.clone()).collect();
    let save = std::env::var_os("PIPEHOST_FUZZ_SAVE").is_some();
    let known: std::collections::HashSet<String> = if save {
        seeds.iter().map(|d| run_bounded(target, d)).collect()
    } else {
        Default::default()
    };
    let cases_n = std::env::var("PIPEHOST_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(target.cases);
    let config = Config {
        cases: cases_n,
        failure_persistence: None,
        ..Config::default()
    };
    let known = std::sync::Mutex::new(known);
    let seen = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let mut runner = TestRunner::new(config);
    let started = Instant::now();
    let result = runner.run(&cases(target.max_len), |case| {
        let data = mutate(&seeds, target.tokens, &case);
        let class = std::panic::catch_unwind(|| run_bounded(target, &data))
            .map_err(|p| TestCaseError::fail(panic_text(&p)))?;
        *seen.lock().unwrap().entry(class.clone()).or_insert(0u32) += 1;
        let mut known = known.lock().unwrap();
        if save && known.len() < 60 && known.insert(class.clone()) {
            let hash = crc32fast::hash(&data);
            let file = corpus_dir(target).join(format!("{class:.40}-{hash:08x}"));
            std::fs::write(file, &data).unwrap();
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
    let seen = seen.into_inner().unwrap();
    eprintln!(
        "fuzz {name}: {cases_n} cases in {:.1?}, {} outcomes, {} ok",
        started.elapsed(),
        seen.len(),
        seen.get("ok").copied().unwrap_or(0)
    );
}

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

#[test]
fn corpus_replays_without_panics_within_budgets() {
    for target in TARGETS {
        let files = corpus(target);
        assert!(!files.is_empty(), "{}: no corpus", target.name);
        for (path, data) in &files {
            if let Err(p) = std::panic::catch_unwind(|| run_bounded(target, data)) {
                panic!("{}: {}", path.display(), panic_text(&p));
            }
        }
    }
}

#[test]
fn fuzz_aggregate() {
    fuzz("aggregate");
}

#[test]
fn fuzz_message() {
    fuzz("message");
}

#[test]
fn fuzz_event_columns() {
    fuzz("event-columns");
}

#[test]
fn fuzz_parsed() {
    fuzz("parsed");
}

#[test]
fn fuzz_transformed() {
    fuzz("transformed");
}

#[test]
fn fuzz_generated() {
    fuzz("generated");
}

#[test]
fn fuzz_fixture() {
    fuzz("fixture");
}

#[test]
fn fuzz_pipeline() {
    fuzz("pipeline");
}
