//! Round trips of every encoder and decoder, and the malformed batches
//! decoding refuses.

use super::*;
use crate::event::{boolean, event, float, integer, text, timestamp};

fn sample() -> Vec<Event> {
    vec![
        event(
            "forex",
            "EUR/USD",
            5,
            vec![float("bid", 1.5), float("ask", 1.6), text("venue", "EBS")],
        ),
        event("forex", "USD/JPY", 6, vec![]),
        event(
            "news",
            "ÄPL",
            7,
            vec![
                text("headline", "naïve “quotes” ✓"),
                integer("n", -3),
                boolean("firm", true),
                timestamp("sent", 9),
                float("bid", f64::NAN),
            ],
        ),
    ]
}

fn same(a: &[Event], b: &[Event]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        // NaN != NaN: compare through the debug form.
        assert_eq!(format!("{x:?}"), format!("{y:?}"));
    }
}

#[test]
fn events_round_trip_with_names_once() {
    let events = sample();
    let batch = encode_events(&events);
    assert_eq!(
        batch.names,
        [
            "forex", "bid", "ask", "venue", "news", "headline", "n", "firm", "sent"
        ]
    );
    assert_eq!(batch.event_dataset, [0, 0, 4]);
    assert_eq!(batch.field_name.len(), 8);
    assert_eq!(batch.event_fields_end, [3, 3, 8]);
    assert_eq!(batch.keys, "EUR/USDUSD/JPYÄPL");
    assert_eq!(batch.event_key_end, [7, 14, 18]);
    assert_eq!(batch.field_kind, [2, 2, 3, 3, 1, 0, 4, 2]);
    assert_eq!(unpack_span(batch.field_bits[2]), (0, 3));
    same(&decode_events(&batch).unwrap(), &events);
    // Decoded names share one storage per distinct name.
    let decoded = decode_events(&batch).unwrap();
    assert!(decoded[0].dataset.same_storage(&decoded[1].dataset));
    assert!(
        decoded[0].fields[0]
            .name
            .same_storage(&decoded[2].fields[4].name)
    );
    // Re-encoding decoded events gives the same columns.
    assert_eq!(encode_events(&decoded).names, batch.names);
    assert_eq!(encode_events(&decoded).text, batch.text);
}

#[test]
fn empty_batches() {
    let batch = encode_events(&[]);
    assert!(batch.names.is_empty() && batch.event_dataset.is_empty() && batch.text.is_empty());
    assert_eq!(decode_events(&batch).unwrap(), vec![]);
    let parsed = encode_parsed(&[]);
    assert_eq!(decode_parsed(&parsed).unwrap(), vec![]);
}

#[test]
fn many_distinct_names_use_the_map() {
    let fields: Vec<Field> = (0..100)
        .map(|i| integer(format!("f{i}"), i))
        .chain((0..100).map(|i| integer(format!("f{i}"), -i)))
        .collect();
    let events = vec![event("d", "k", 0, fields)];
    let batch = encode_events(&events);
    assert_eq!(batch.names.len(), 101);
    assert_eq!(batch.field_name[150], 51);
    same(&decode_events(&batch).unwrap(), &events);
}

#[test]
fn parsed_round_trips() {
    let results = vec![
        Ok(sample()[..2].to_vec()),
        Err("bad line".to_string()),
        Ok(vec![]),
        Ok(sample()[2..].to_vec()),
    ];
    let parsed = encode_parsed(&results);
    assert_eq!(parsed.record_events, [2, 0, 0, 1]);
    assert_eq!(parsed.rejected, [1]);
    assert_eq!(parsed.reasons, ["bad line"]);
    let back = decode_parsed(&parsed).unwrap();
    assert_eq!(back.len(), 4);
    same(back[0].as_ref().unwrap(), &sample()[..2]);
    assert_eq!(back[1], Err("bad line".to_string()));
    same(back[3].as_ref().unwrap(), &sample()[2..]);
}

#[test]
fn transformed_round_trips() {
    let s = sample();
    let outcomes = vec![
        Outcome::Keep(s[0].clone()),
        Outcome::Drop,
        Outcome::Split(vec![s[1].clone(), s[0].clone()]),
        Outcome::Fail("nope".into()),
        Outcome::Split(vec![]),
    ];
    let t = encode_transformed(&outcomes);
    assert_eq!(t.events.event_dataset.len(), 3);
    assert_eq!(t.outcome_kind, [0, 1, 2, 3, 2]);
    assert_eq!(t.outcome_events, [1, 0, 2, 0, 0]);
    assert_eq!(t.reasons, ["nope"]);
    assert_eq!(decode_transformed(&t).unwrap(), outcomes);
}

#[test]
fn raw_records_round_trip_borrowing() {
    let records = [
        RawRecord {
            data: b"line one",
            source: Source {
                feed: "forex",
                shard: "shard-0",
                sequence: "17",
                partition_key: "forex/EUR/USD",
                arrival_time_ms: 3,
            },
        },
        RawRecord {
            data: b"",
            source: Source {
                feed: "forex",
                shard: "shard-0",
                sequence: "18:2",
                partition_key: "",
                arrival_time_ms: 4,
            },
        },
    ];
    let batch = encode_raw(&records);
    assert_eq!(batch.data, b"line one");
    assert_eq!(batch.text, "17forex/EUR/USD18:2");
    assert_eq!(raw_records(&batch).unwrap(), records);
    // The parse export hands the logic exactly these records.
    let parsed = parse(batch, |rs| {
        assert_eq!(rs, records);
        rs.iter()
            .map(|r| match r.data {
                b"" => Err("empty record".to_string()),
                _ => Ok(vec![event("d", r.source.sequence, 1, vec![])]),
            })
            .collect()
    });
    assert_eq!(parsed.record_events, [1, 0]);
    assert_eq!(parsed.rejected, [1]);
    assert_eq!(parsed.reasons, ["empty record"]);
    assert_eq!(parsed.events.keys, "17");
}

#[test]
fn malformed_batches_are_reported_not_panicked_on() {
    let good = encode_events(&sample());
    let mut bad = good.clone();
    bad.event_dataset[0] = 99;
    assert!(
        decode_events(&bad)
            .unwrap_err()
            .contains("dataset index 99")
    );
    let mut bad = good.clone();
    bad.event_key_end[1] = 500;
    assert!(decode_events(&bad).unwrap_err().contains("span 7..500"));
    let mut bad = good.clone();
    // Inside the two-byte `Ä`.
    bad.event_key_end[2] = bad.keys.find('Ä').unwrap() as u32 + 1;
    assert!(decode_events(&bad).unwrap_err().contains("partition key"));
    let mut bad = good.clone();
    bad.event_fields_end[1] = 1;
    assert!(decode_events(&bad).unwrap_err().contains("fields-end"));
    let mut bad = good.clone();
    bad.event_fields_end[2] = 7;
    assert!(
        decode_events(&bad)
            .unwrap_err()
            .contains("1 fields belong to no event")
    );
    let mut bad = good.clone();
    bad.field_kind[0] = kind::TEXT;
    bad.field_bits[0] = pack_span(9, 2);
    assert!(decode_events(&bad).unwrap_err().contains("field `bid`"));
    let mut odd = good.clone();
    odd.field_kind[1] = 7;
    assert!(decode_events(&odd).unwrap_err().contains("kind 7"));
    let mut odd = good.clone();
    odd.event_time.pop();
    assert!(
        decode_events(&odd)
            .unwrap_err()
            .contains("differ in length")
    );
    // The transform export fails every event of a malformed batch.
    let t = transform(bad, |_| unreachable!("logic never sees it"));
    assert_eq!(t.outcome_kind, [outcome_kind::FAIL; 3]);
    assert!(t.reasons[0].starts_with("malformed event batch"));

    let mut raw = encode_raw(&[RawRecord {
        data: b"abc",
        ..Default::default()
    }]);
    raw.record_data_end[0] = 4;
    assert!(raw_records(&raw).unwrap_err().contains("data-end 4"));
}

#[test]
fn generated_round_trips_with_keys_once() {
    let records: Vec<Generated> = ["EUR/USD", "USD/JPY", "EUR/USD", "EUR/USD"]
        .iter()
        .enumerate()
        .map(|(i, k)| Generated {
            partition_key: k.to_string(),
            data: format!("record {i}").into_bytes(),
        })
        .collect();
    let batch = encode_generated(&records);
    assert_eq!(batch.keys, ["EUR/USD", "USD/JPY"]);
    assert_eq!(batch.record_key, [0, 1, 0, 0]);
    assert_eq!(decode_generated(&batch).unwrap(), records);
    let mut bad = batch.clone();
    bad.record_key[1] = 2;
    assert!(decode_generated(&bad).unwrap_err().contains("key index 2"));
}
