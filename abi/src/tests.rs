use super::*;

#[test]
fn spans_pack_and_unpack() {
    for (start, end) in [(0, 0), (3, 17), (0, u32::MAX), (u32::MAX, u32::MAX), (7, 3)] {
        let bits = pack_span(start, end);
        assert_eq!(unpack_span(bits), (start, end));
        assert_eq!(Span::unpack(bits), Span { start, end });
        assert_eq!(Span { start, end }.pack(), bits);
    }
    assert_eq!(pack_span(1, 2), 1 | (2 << 32));
    assert_eq!(Span { start: 2, end: 5 }.range(), 2..5);
}

#[test]
fn scalars_round_trip() {
    let values = [
        Scalar::Boolean(false),
        Scalar::Boolean(true),
        Scalar::Integer(i64::MIN),
        Scalar::Float(-1.5),
        Scalar::Float(f64::INFINITY),
        Scalar::Text(Span { start: 4, end: 9 }),
        Scalar::TimestampMs(-1),
    ];
    for v in values {
        let (code, bits) = v.encode();
        assert_eq!(Scalar::decode(code, bits), Ok(v));
        assert_eq!(Scalar::decode_checked(code, bits), v);
    }
    let (code, bits) = Scalar::Float(f64::NAN).encode();
    assert!(matches!(Scalar::decode(code, bits), Ok(Scalar::Float(x)) if x.is_nan()));
    assert_eq!(Scalar::Boolean(true).encode(), (kind::BOOLEAN, 1));
    assert_eq!(Scalar::TimestampMs(5).encode(), (kind::TIMESTAMP, 5));
}

#[test]
fn scalars_refuse_unknown_kinds_and_odd_booleans() {
    assert_eq!(
        Scalar::decode(9, 0),
        Err("kind 9 is not a field kind (0 to 4)".into())
    );
    assert_eq!(
        Scalar::decode(kind::BOOLEAN, 2),
        Err("boolean bits 2 are neither 0 nor 1".into())
    );
    assert_eq!(
        Scalar::decode(kind::BOOLEAN, -1),
        Err("boolean bits -1 are neither 0 nor 1".into())
    );
    // Checked pairs never panic, whatever they hold.
    assert_eq!(Scalar::decode_checked(9, 3), Scalar::TimestampMs(3));
    assert_eq!(
        Scalar::decode_checked(kind::BOOLEAN, 2),
        Scalar::Boolean(true)
    );
}

#[test]
fn parallel_columns_have_one_length() {
    assert_eq!(
        same_lengths("event", &[("a", 3), ("b", 3), ("c", 3)]),
        Ok(3)
    );
    assert_eq!(same_lengths("event", &[("a", 0)]), Ok(0));
    assert_eq!(
        same_lengths(
            "event",
            &[("event-dataset", 3), ("b", 3), ("event-time", 2)]
        ),
        Err(
            "event columns differ in length: event-dataset has 3 entries but event-time has 2"
                .into()
        )
    );
}

#[test]
fn indices_stay_in_range() {
    assert_eq!(index("dataset", 5, 6, "names"), Ok(5));
    assert_eq!(
        index("dataset", 6, 6, "names"),
        Err("dataset index 6 is out of range (6 names)".into())
    );
    assert_eq!(
        index("key", u32::MAX, 0, "keys"),
        Err("key index 4294967295 is out of range (0 keys)".into())
    );
}

#[test]
fn runs_never_decrease_nor_pass_the_total() {
    assert_eq!(run("fields-end", 2, 2, 6, "fields"), Ok(2..2));
    assert_eq!(run("fields-end", 2, 6, 6, "fields"), Ok(2..6));
    assert_eq!(
        run("fields-end", 2, 1, 6, "fields"),
        Err("fields-end 1 is outside 2..=6 (it must not decrease, nor pass the 6 fields)".into())
    );
    assert_eq!(
        run("data-end", 0, 7, 6, "bytes"),
        Err("data-end 7 is outside 0..=6 (it must not decrease, nor pass the 6 bytes)".into())
    );
}

#[test]
fn spans_stay_in_range_and_on_character_boundaries() {
    let text = "aÄb"; // `Ä` is bytes 1..3
    assert_eq!(span(text, "text", 0, 4), Ok("aÄb"));
    assert_eq!(span(text, "text", 1, 3), Ok("Ä"));
    assert_eq!(span(text, "text", 4, 4), Ok(""));
    assert_eq!(
        span(text, "keys", 0, 5),
        Err("span 0..5 is not a range of the batch's keys (4 bytes)".into())
    );
    assert_eq!(
        span(text, "keys", 3, 1),
        Err("span 3..1 is not a range of the batch's keys (4 bytes)".into())
    );
    assert_eq!(
        span(text, "text", 0, 2),
        Err("span 0..2 cuts a UTF-8 character of the batch's text".into())
    );
    assert_eq!(
        span(text, "text", 2, 3),
        Err("span 2..3 cuts a UTF-8 character of the batch's text".into())
    );
}

#[test]
fn nothing_is_left_over() {
    assert_eq!(all_used(5, 5, "fields", "event"), Ok(()));
    assert_eq!(
        all_used(3, 5, "bytes of keys", "event"),
        Err("2 bytes of keys belong to no event".into())
    );
}

#[test]
fn outcomes_yield_what_their_kind_says() {
    use outcome_kind::*;
    assert_eq!(outcome_events(KEEP, 1), Ok(1));
    assert_eq!(outcome_events(DROP, 0), Ok(0));
    assert_eq!(outcome_events(FAIL, 0), Ok(0));
    assert_eq!(outcome_events(SPLIT, 0), Ok(0));
    assert_eq!(outcome_events(SPLIT, u32::MAX), Ok(u32::MAX));
    assert_eq!(
        outcome_events(KEEP, 2),
        Err("a keep yields 1 events, not 2".into())
    );
    assert_eq!(
        outcome_events(DROP, 1),
        Err("a drop yields 0 events, not 1".into())
    );
    assert_eq!(
        outcome_events(FAIL, 3),
        Err("a fail yields 0 events, not 3".into())
    );
    assert_eq!(
        outcome_events(7, 0),
        Err("kind 7 is not an outcome kind (0 to 3)".into())
    );
}

#[test]
fn counts_fit_in_u32() {
    assert_eq!(to_u32(7, "text"), 7);
    assert_eq!(to_u32(u32::MAX as usize, "text"), u32::MAX);
}

#[test]
#[cfg(target_pointer_width = "64")]
#[should_panic(expected = "batch text over 4 GiB")]
fn counts_past_u32_panic() {
    to_u32(u32::MAX as usize + 1, "text");
}

/// Owned columns with the `event-batch` record's fields, as a binding has.
#[derive(Clone)]
struct Cols {
    names: Vec<String>,
    keys: String,
    text: String,
    event_dataset: Vec<u32>,
    event_key_end: Vec<u32>,
    event_time: Vec<i64>,
    event_fields_end: Vec<u32>,
    field_name: Vec<u32>,
    field_kind: Vec<u8>,
    field_bits: Vec<i64>,
}

/// Three events: `EUR/USD` with `bid` 1.5 and `venue` "EBS", `ÄPL` with no
/// fields, `USD/JPY` with `venue` "naïve", `n` 3, `ok` true, `t` -1.
fn sample() -> Cols {
    let f = |v: Scalar| v.encode();
    let fields = [
        (1, f(Scalar::Float(1.5))),
        (2, f(Scalar::Text(Span { start: 0, end: 3 }))),
        (2, f(Scalar::Text(Span { start: 3, end: 9 }))),
        (3, f(Scalar::Integer(3))),
        (4, f(Scalar::Boolean(true))),
        (5, f(Scalar::TimestampMs(-1))),
    ];
    Cols {
        names: ["forex", "bid", "venue", "n", "ok", "t"]
            .map(String::from)
            .to_vec(),
        keys: "EUR/USDÄPLUSD/JPY".into(),
        text: "EBSnaïve".into(),
        event_dataset: vec![0, 0, 0],
        event_key_end: vec![7, 11, 18],
        event_time: vec![7, 8, 9],
        event_fields_end: vec![2, 2, 6],
        field_name: fields.iter().map(|f| f.0).collect(),
        field_kind: fields.iter().map(|f| f.1.0).collect(),
        field_bits: fields.iter().map(|f| f.1.1).collect(),
    }
}

/// An event as `(dataset, key, time, fields)`.
type Walked<'a> = (usize, &'a str, i64, Vec<(usize, FieldValue<'a>)>);

/// Every event, walked.
fn walk(cols: &Cols) -> Result<Vec<Walked<'_>>, String> {
    let mut walk = EventWalk::new(event_columns!(cols))?;
    let mut out = Vec::new();
    while let Some(e) = walk.next_event()? {
        let fields = e
            .fields
            .clone()
            .map(|j| walk.field(&e, j))
            .collect::<Result<_, _>>()?;
        out.push((e.dataset, e.partition_key, e.event_time_ms, fields));
    }
    walk.finish()?;
    Ok(out)
}

#[test]
fn a_well_formed_batch_walks_event_by_event() {
    let cols = sample();
    let events = walk(&cols).unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[0],
        (
            0,
            "EUR/USD",
            7,
            vec![(1, FieldValue::Float(1.5)), (2, FieldValue::Text("EBS"))]
        )
    );
    assert_eq!(events[1], (0, "ÄPL", 8, vec![]));
    assert_eq!(
        events[2].3,
        [
            (2, FieldValue::Text("naïve")),
            (3, FieldValue::Integer(3)),
            (4, FieldValue::Boolean(true)),
            (5, FieldValue::TimestampMs(-1)),
        ]
    );
    assert_eq!(EventWalk::check(event_columns!(&cols)), Ok(()));
    let walker = EventWalk::new(event_columns!(&cols)).unwrap();
    assert_eq!((walker.len(), walker.is_empty()), (3, false));
}

#[test]
fn an_empty_batch_walks_to_nothing() {
    let mut cols = sample();
    for col in [
        &mut cols.event_dataset,
        &mut cols.event_key_end,
        &mut cols.event_fields_end,
    ] {
        col.clear();
    }
    cols.event_time.clear();
    cols.field_name.clear();
    cols.field_kind.clear();
    cols.field_bits.clear();
    cols.keys.clear();
    assert_eq!(walk(&cols).unwrap(), vec![]);
    assert!(EventWalk::new(event_columns!(&cols)).unwrap().is_empty());
}

/// A way to break the sample, and the reason the walk must give.
type Breakage = (fn(&mut Cols), &'static str);

fn refused(f: impl FnOnce(&mut Cols)) -> String {
    let mut cols = sample();
    f(&mut cols);
    let by_walk = walk(&cols).unwrap_err();
    assert_eq!(
        EventWalk::check(event_columns!(&cols)),
        Err(by_walk.clone())
    );
    by_walk
}

#[test]
fn every_malformed_batch_is_refused_naming_the_fault() {
    let cases: [Breakage; 15] = [
        (
            |c| c.event_dataset[1] = 6,
            "event 1: dataset index 6 is out of range (6 names)",
        ),
        (
            |c| c.field_name[3] = 99,
            "event 2, field 1: name index 99 is out of range (6 names)",
        ),
        (
            |c| c.event_key_end[0] = 900,
            "event 0: partition key span 0..900 is not a range of the batch's keys (18 bytes)",
        ),
        (
            |c| c.event_key_end[1] = 3,
            "event 1: partition key span 7..3 is not a range of the batch's keys (18 bytes)",
        ),
        (
            |c| c.event_key_end[0] = 8,
            "event 0: partition key span 0..8 cuts a UTF-8 character of the batch's keys",
        ),
        (
            |c| c.field_bits[1] = pack_span(0, 99),
            "event 0, field `venue`: text value span 0..99 is not a range of the batch's text (9 bytes)",
        ),
        (
            |c| c.field_bits[2] = pack_span(3, 6),
            "event 2, field `venue`: text value span 3..6 cuts a UTF-8 character of the batch's text",
        ),
        (
            |c| c.field_kind[0] = 9,
            "event 0, field `bid`: kind 9 is not a field kind (0 to 4)",
        ),
        (
            |c| c.field_kind[0] = kind::BOOLEAN,
            "event 0, field `bid`: boolean bits 4609434218613702656 are neither 0 nor 1",
        ),
        (
            |c| c.event_fields_end[1] = 1,
            "event 1: fields-end 1 is outside 2..=6 (it must not decrease, nor pass the 6 fields)",
        ),
        (
            |c| c.event_fields_end[2] = 99,
            "event 2: fields-end 99 is outside 2..=6 (it must not decrease, nor pass the 6 fields)",
        ),
        (
            |c| c.event_fields_end[2] = 5,
            "1 fields belong to no event (the last event's fields-end is 5)",
        ),
        (
            |c| {
                c.event_time.pop();
            },
            "event columns differ in length: event-dataset has 3 entries but event-time has 2",
        ),
        (
            |c| c.field_bits.push(0),
            "field columns differ in length: field-name has 6 entries but field-bits has 7",
        ),
        (|c| c.keys.push('x'), "1 bytes of keys belong to no event"),
    ];
    for (break_it, reason) in cases {
        assert_eq!(refused(break_it), reason);
    }
}

#[test]
fn generated_records_are_checked() {
    // Keys A, B; records "one" (A), "" (B), "three" (A).
    let (key, end) = (vec![0, 1, 0], vec![3, 3, 8]);
    assert_eq!(check_generated(2, &key, &end, 8), Ok(()));
    assert_eq!(check_generated(0, &[], &[], 0), Ok(()));
    assert_eq!(
        check_generated(2, &[0, 1, 2], &end, 8),
        Err("record 2: key index 2 is out of range (2 keys)".into())
    );
    assert_eq!(
        check_generated(2, &key, &[3, 1, 8], 8),
        Err(
            "record 1: data-end 1 is outside 3..=8 (it must not decrease, nor pass the 8 bytes)"
                .into()
        )
    );
    assert_eq!(
        check_generated(2, &key, &[3, 3, 9], 8),
        Err(
            "record 2: data-end 9 is outside 3..=8 (it must not decrease, nor pass the 8 bytes)"
                .into()
        )
    );
    assert_eq!(
        check_generated(2, &key, &end, 9),
        Err("1 bytes of data belong to no record".into())
    );
    assert_eq!(
        check_generated(2, &key, &[3, 3], 8),
        Err(
            "record columns differ in length: record-key has 3 entries but record-data-end has 2"
                .into()
        )
    );
}
