//! Contract versions: a plugin built against the frozen `0.1.0` runs inside
//! a chain of `0.2.0` plugins and stores exactly what the `0.2.0` plugin it
//! mirrors stores; the processor's objects are checked byte for byte.

use std::collections::HashMap;

use pipehost::plugin::{Parser, PluginSettings, Transform};
use pipehost::runtime::process::{FeedPlugins, Layout, ProcessedBatch, process};
use pipehost::wire::aggregate;
use pipehost::wire::message::{BatchMessage, MessageRecord};
use pipehost_guest::{GeneratorPlugin, Plugin};

use crate::pipeline::{audit, run_to_end, write_pipeline_with};
use crate::util::load;

/// A batch message of forex records from the forex generator (a quarter of
/// them malformed), one aggregated record among them.
fn forex_message() -> BatchMessage {
    let generator =
        forex_generator::Generator::from_config_json(r#"{"malformed_rate":0.25}"#).unwrap();
    let mut records = Vec::new();
    let mut seq = 100u64;
    for number in 0..4 {
        let out = generator
            .generate(&forex_generator::Tick {
                seed: 11,
                number,
                time_ms: 1_795_420_800_000 + number as i64 * 1_900_000,
                count: 250,
            })
            .unwrap();
        for g in out {
            seq += 1;
            records.push(MessageRecord {
                seq: format!("{seq:020}"),
                key: format!("forex:{}", g.partition_key).into(),
                t: 1_795_420_900_000 + seq as i64,
                data: Some(String::from_utf8(g.data).unwrap()),
                b64: None,
            });
        }
    }
    // An aggregate of three lines, as HTTP ingest stores them.
    let lines: Vec<&[u8]> = vec![
        br#"{"pair":"EUR/USD","bid":1.0841,"ask":1.0843,"ts":"2026-11-23T08:00:00.123Z","venue":"EBS"}"#,
        b"not json",
        br#"{"pair":"USD/JPY","bid":151.1,"ask":151.2,"ts":"2026-11-23T09:30:00Z","venue":"LMAX"}"#,
    ];
    let packed = aggregate::pack(lines.iter().copied(), 300, 1 << 20);
    assert_eq!(packed.len(), 1);
    seq += 1;
    records.push(MessageRecord {
        seq: format!("{seq:020}"),
        key: "forex:".into(),
        t: 1_795_420_900_000 + seq as i64,
        data: None,
        b64: Some(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &packed[0].data,
        )),
    });
    BatchMessage {
        v: 1,
        stream: "s".into(),
        shard: "shard-0000".into(),
        first_seq: records[0].seq.clone(),
        last_seq: records.last().unwrap().seq.clone(),
        records,
    }
}

fn run(parser: &str, msg: &BatchMessage) -> ProcessedBatch {
    let settings = PluginSettings::default();
    let plugins = FeedPlugins {
        parser: load::<Parser>(parser, settings.clone())
            .instantiate("{}")
            .unwrap(),
        transforms: vec![
            load::<Transform>("forex_transform", settings)
                .instantiate("{}")
                .unwrap(),
        ],
    };
    let mut feeds = HashMap::from([("forex".to_string(), plugins)]);
    let layout = Layout {
        key_template: Default::default(),
        error_prefix: "errors/".into(),
        gzip: false,
    };
    process(msg, &mut feeds, &layout).unwrap()
}

#[test]
fn a_0_1_0_parser_in_a_0_2_0_chain_stores_what_the_0_2_0_parser_stores() {
    let msg = forex_message();
    let current = run("forex_parser", &msg);
    let legacy = run("legacy_parser", &msg);
    assert_eq!(current.records_in, 1003);
    assert_eq!(legacy.records_in, current.records_in);
    assert_eq!(legacy.events_out, current.events_out);
    assert_eq!(legacy.error_records, current.error_records);
    assert_eq!(legacy.dropped, current.dropped);
    assert!(current.events_out > 600, "{}", current.events_out);
    assert!(current.error_records > 150, "{}", current.error_records);
    assert_eq!(legacy.objects.len(), current.objects.len());
    let mut data_objects = 0;
    for (a, b) in current.objects.iter().zip(&legacy.objects) {
        assert_eq!(a.put.key, b.put.key);
        assert_eq!(a.records, b.records);
        let (a_body, b_body) = (
            String::from_utf8(a.put.body.clone()).unwrap(),
            String::from_utf8(b.put.body.clone()).unwrap(),
        );
        if a.put.key.starts_with("errors/") {
            // Error lines name the plugin that rejected the record.
            let a_name = pipehost_plugin_version(&a.plugin_versions, "forex_parser");
            let b_name = pipehost_plugin_version(&b.plugin_versions, "legacy_parser");
            let b_body = b_body
                .replace(&b_name, &a_name)
                .replace("\"legacy_parser\"", "\"forex_parser\"");
            assert_eq!(a_body, b_body, "{}", a.put.key);
        } else {
            // Events: byte for byte.
            assert_eq!(a_body, b_body, "{}", a.put.key);
            data_objects += 1;
            // Laid out as a serde_json `Value` map writes it (what the
            // processor wrote before 0.2.0): keys sorted at every level.
            // (The event part is compared byte for byte with that path in
            // the host's unit tests; floats do not survive a serde_json
            // parse exactly, so no round trip here.)
            for line in a_body.lines() {
                let value: serde_json::Value = serde_json::from_str(line).unwrap();
                let mut keys: Vec<String> = Vec::new();
                for (k, v) in value.as_object().unwrap() {
                    keys.push(format!("\"{k}\":"));
                    if let Some(inner) = v.as_object() {
                        keys.extend(inner.keys().map(|k| format!("\"{k}\":")));
                    }
                }
                let mut at = 0;
                for k in &keys {
                    at += line[at..]
                        .find(k.as_str())
                        .unwrap_or_else(|| panic!("{k} out of order in {line}"));
                }
                assert!(
                    line.starts_with(r#"{"dataset":"forex","event_time":""#),
                    "{line}"
                );
                assert!(
                    line.contains(r#","source":{"feed":"forex","part":"#),
                    "{line}"
                );
                assert!(line.ends_with(r#","shard":"shard-0000"}}"#), "{line}");
            }
        }
    }
    assert!(data_objects >= 2, "events in several hours: {data_objects}");
}

/// `name@hash` of `name` in a comma-separated version list.
fn pipehost_plugin_version(versions: &str, name: &str) -> String {
    versions
        .split(',')
        .find(|v| v.starts_with(&format!("{name}@")))
        .unwrap_or_else(|| panic!("{name} in {versions}"))
        .to_string()
}

#[test]
fn a_pipeline_with_a_0_1_0_parser_stores_every_record_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let feeds = r#"
[feeds.forex]
parser = { plugin = "legacy_parser" }
transforms = [{ plugin = "forex_transform" }]
[feeds.forex.generator]
plugin = "forex_generator"
interval = "20ms"
records = 50
seed = 4
config = { malformed_rate = 0.1 }
"#;
    let pipeline = write_pipeline_with(dir.path(), feeds, "");
    run_to_end(&pipeline, 400);
    let a = audit(&dir.path().join("state"));
    assert_eq!(a.records, 400);
    assert!(a.events > 300, "{a:?}");
    assert!(a.error_lines > 0, "{a:?}");
}
