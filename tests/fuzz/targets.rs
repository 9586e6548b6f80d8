//! The fuzz targets: bytes in, a value's description or an error out; a
//! broken property panics (see `check`).

use std::path::Path;

use pipehost::fuzzing::{self, EventColumns, GeneratedColumns};
use pipehost::plugin::{BatchOutcome, EventBatch, GeneratedBatch};
use pipehost::wire::aggregate;
use pipehost::wire::message::{BatchMessage, MessageRecord};

use super::columns::{Bytes, event_columns};

/// Stream records: `decode` must answer; lines packed by `pack` decode back.
pub(super) fn aggregate_target(data: &[u8]) -> Result<String, String> {
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
pub(super) fn message_target(data: &[u8]) -> Result<String, String> {
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
            BatchMessage::decode(&m.encode()).is_ok_and(|back| back == *m),
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
        v: pipehost::wire::message::VERSION,
        stream: b.text(6),
        shard: b.text(6),
        first_seq: records[0].seq.clone(),
        last_seq: records[records.len() - 1].seq.clone(),
        records,
    };
    let back = BatchMessage::decode(&m.encode()).map_err(|e| e.to_string())?;
    check(back == m, "decode(encode(message)) != message")?;
    for (r, lines) in back.records.iter().zip(&sent) {
        if let Some(subs) = r.unpack().map_err(|e| e.to_string())? {
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
pub(super) fn event_columns_target(data: &[u8]) -> Result<String, String> {
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
pub(super) fn parsed_target(data: &[u8]) -> Result<String, String> {
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
pub(super) fn transformed_target(data: &[u8]) -> Result<String, String> {
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
pub(super) fn generated_target(data: &[u8]) -> Result<String, String> {
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
pub(super) fn fixture_target(data: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(data);
    let f = pipehost::fixture::spec::parse_fixture(
        &text,
        Path::new("fuzz/fixtures/case.toml"),
        Path::new("plugins"),
    )?;
    Ok(format!("{} {} cases", f.cases.len(), f.kind))
}

/// pipeline.toml: parsed, then validated into a plan, or refused.
pub(super) fn pipeline_target(data: &[u8]) -> Result<String, String> {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("pipeline.toml");
    let file = pipehost::config::parse(path, &text).map_err(|e| e.to_string())?;
    let plan =
        pipehost::plan::build(path, &text, &file).map_err(|errors| match errors.first() {
            Some(e) => e.to_string(),
            None => panic!("property broken: refused without an error"),
        })?;
    Ok(format!("plan with {} feeds", plan.live.feeds.len()))
}

fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        // A broken property, not a decode error: the case fails.
        panic!("property broken: {what}")
    }
}
