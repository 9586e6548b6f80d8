//! The batch types: round trips, views, and every check refusing
//! malformed columns with its reason.

use super::*;
use pipehost_abi::{self as abi, kind, outcome_kind};

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
    let p =
        Parsed::from_columns(batch.clone(), vec![2, 0, 1], vec![1], vec!["x".into()], 3).unwrap();
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
    let e =
        Transformed::from_columns(batch.clone(), vec![KEEP, 7], vec![1, 0], vec![], 2).unwrap_err();
    assert!(e.contains("outcome 1: kind 7"), "{e}");
    let e = Transformed::from_columns(batch.clone(), vec![KEEP, DROP], vec![2, 0], vec![], 2)
        .unwrap_err();
    assert!(e.contains("a keep yields 1 events, not 2"), "{e}");
    let e = Transformed::from_columns(batch.clone(), vec![FAIL], vec![0], vec![], 1).unwrap_err();
    assert!(e.contains("without a reason"), "{e}");
    let e =
        Transformed::from_columns(batch, vec![SPLIT], vec![3], vec!["r".into()], 1).unwrap_err();
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
