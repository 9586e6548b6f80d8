use std::path::Path;

use super::*;

const GOOD: &str = r#"
[pipeline]
name = "market-data"

[feeds.forex]
parser = { plugin = "forex_parser" }
transforms = [{ plugin = "forex_transform", config = { allow = ["EUR/USD"] } }]

[feeds.forex.generator]
plugin = "forex_generator"
interval = "250ms"
records = 50
seed = 7
"#;

fn plan(text: &str) -> Result<Plan, Vec<ConfigError>> {
    let path = Path::new("conf/pipeline.toml");
    let file = crate::config::parse(path, text).map_err(|e| vec![e])?;
    build(path, text, &file)
}

fn one_error(text: &str) -> String {
    let errs = plan(text).unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    errs[0].to_string()
}

#[test]
fn a_good_file_becomes_a_plan_with_defaults() {
    let p = plan(GOOD).unwrap();
    assert_eq!(p.live.feeds.len(), 1);
    let f = &p.live.feeds[0];
    let g = f.generator.as_ref().unwrap();
    assert_eq!(g.interval, Duration::from_millis(250));
    assert_eq!(g.records, 50);
    assert_eq!(
        g.plugin.path,
        Path::new("conf/target/wasm32-wasip2/release/forex_generator.wasm")
    );
    assert_eq!(f.transforms[0].config_json, r#"{"allow":["EUR/USD"]}"#);
    assert_eq!(p.fixed.stream.shards, 4);
    assert_eq!(p.fixed.queue.name, "market-data-batches");
    assert_eq!(p.fixed.queue.dead_letter, "market-data-batches-dlq");
    assert_eq!(
        p.fixed.backend,
        BackendPlan::Local {
            data_dir: "conf/.pipehost".into(),
            sync: SyncMode::Normal
        }
    );
}

#[test]
fn a_typo_names_the_file_line_and_key() {
    let text = GOOD.replace("records = 50", "recrods = 50");
    let msg = one_error(&text);
    assert!(msg.starts_with("conf/pipeline.toml:12"), "{msg}");
    assert!(msg.contains("recrods"), "{msg}");
}

#[test]
fn a_bad_interval_names_the_line_and_key() {
    let msg = one_error(&GOOD.replace("\"250ms\"", "\"often\""));
    assert!(
        msg.starts_with("conf/pipeline.toml:11: `feeds.forex.generator.interval`"),
        "{msg}"
    );
    assert!(msg.contains("often"), "{msg}");
    let msg = one_error(&GOOD.replace("\"250ms\"", "\"250\""));
    assert!(msg.contains("needs a unit"), "{msg}");
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("\"250ms\"", "\"0ms\"")
        .replace("records = 50", "records = 0")
        .replace("name = \"market-data\"", "name = \"Market Data\"");
    let errs = plan(&text).unwrap_err();
    let all: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(errs.len(), 3, "{all:#?}");
    assert!(all.iter().any(|e| e.contains("interval")));
    assert!(all.iter().any(|e| e.contains("records")));
    assert!(all.iter().any(|e| e.contains("pipeline.name")));
}

#[test]
fn a_missing_plugin_file_is_named_with_its_line() {
    let p = plan(GOOD).unwrap();
    let errs = check_files(&p, Path::is_file).unwrap_err();
    assert_eq!(errs.len(), 3);
    let msg = errs[0].to_string();
    assert!(msg.contains("not found"), "{msg}");
    assert!(
        errs.iter().any(|e| e
            .to_string()
            .starts_with("conf/pipeline.toml:6: `feeds.forex.parser.plugin`")),
        "{errs:?}"
    );
}

#[test]
fn key_templates_and_backends_are_checked() {
    let text = format!("{GOOD}\n[store]\nkey_template = \"{{dataset}}/{{date}}\"\n");
    assert!(one_error(&text).contains("store.key_template"));
    let text = GOOD.replace(
        "name = \"market-data\"",
        "name = \"market-data\"\nbackend = \"gcp\"",
    );
    assert!(one_error(&text).contains("pipeline.backend"));
}

#[test]
fn the_aws_section_resolves_endpoints_and_defaults() {
    let text = GOOD.replace(
        "name = \"market-data\"",
        "name = \"market-data\"\nbackend = \"aws\"",
    ) + r#"
[aws]
region = "eu-west-1"
endpoint = "http://127.0.0.1:5000/"
endpoints = { s3 = "http://127.0.0.1:9000" }
start_position = "2026-11-23T09:00:00Z"
"#;
    let p = plan(&text).unwrap();
    let BackendPlan::Aws(aws) = &p.fixed.backend else {
        panic!("not aws: {:?}", p.fixed.backend)
    };
    assert_eq!(aws.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        aws.endpoints.kinesis.as_deref(),
        Some("http://127.0.0.1:5000")
    );
    assert_eq!(aws.endpoints.s3.as_deref(), Some("http://127.0.0.1:9000"));
    assert_eq!(aws.start, StartPosition::AtTimestamp(1_795_424_400_000));
    assert_eq!(aws.state_prefix, "_pipehost/");
    assert_eq!(aws.max_message_bytes, SQS_CLASSIC_MESSAGE_BYTES);
    assert_eq!(aws.receive_wait, Duration::from_secs(20));
}

#[test]
fn aws_settings_sqs_cannot_take_are_named() {
    let text = GOOD.replace(
        "name = \"market-data\"",
        "name = \"market-data\"\nbackend = \"aws\"",
    ) + r#"
[queue]
visibility_timeout = "1500ms"

[aws]
endpoint = "localhost:4566"
start_position = "yesterday"
max_message_bytes = "2MiB"
receive_wait = "30s"
"#;
    let errs: Vec<String> = plan(&text)
        .unwrap_err()
        .iter()
        .map(|e| e.to_string())
        .collect();
    let all = errs.join("\n");
    for key in [
        "`aws.endpoint`",
        "`aws.start_position`",
        "`aws.max_message_bytes`",
        "`aws.receive_wait`",
        "`queue.visibility_timeout`",
    ] {
        assert!(all.contains(key), "{key} missing in:\n{all}");
    }
    assert_eq!(errs.len(), 5, "{all}");
    assert!(all.contains("whole seconds"), "{all}");
}

#[test]
fn resource_names_from_the_environment_win_over_the_file() {
    let text = GOOD.replace(
        "name = \"market-data\"",
        "name = \"market-data\"\nbackend = \"aws\"",
    ) + "\n[aws]\nregion = \"eu-west-1\"\n";
    let path = Path::new("conf/pipeline.toml");
    let mut file = crate::config::parse(path, &text).unwrap();
    let vars: std::collections::HashMap<&str, &str> = [
        ("PIPEHOST_STREAM_NAME", "stack-stream"),
        ("PIPEHOST_QUEUE_NAME", "stack-queue"),
        ("PIPEHOST_DEAD_LETTER_QUEUE_NAME", "stack-dlq"),
        ("PIPEHOST_BUCKET", "stack-bucket"),
        (
            "PIPEHOST_TOPIC_ARN",
            "arn:aws:sns:eu-west-1:123456789012:stack-topic",
        ),
        ("PIPEHOST_TOPIC_NAME", ""),
    ]
    .into();
    let applied =
        crate::config::apply_env_overrides(&mut file, |k| vars.get(k).map(|v| v.to_string()));
    assert_eq!(
        applied.len(),
        5,
        "an empty variable is not applied: {applied:?}"
    );
    let p = build(path, &text, &file).unwrap();
    assert_eq!(p.fixed.stream.name, "stack-stream");
    assert_eq!(p.fixed.queue.name, "stack-queue");
    assert_eq!(p.fixed.queue.dead_letter, "stack-dlq");
    assert_eq!(p.fixed.store.bucket, "stack-bucket");
    assert_eq!(p.fixed.notifications.topic, "stack-topic");
    let BackendPlan::Aws(aws) = &p.fixed.backend else {
        panic!("not aws")
    };
    assert_eq!(
        aws.topic_arn.as_deref(),
        Some("arn:aws:sns:eu-west-1:123456789012:stack-topic")
    );

    // A name the environment gets wrong is reported like one in the file.
    let mut file = crate::config::parse(path, &text).unwrap();
    crate::config::apply_env_overrides(&mut file, |k| {
        (k == "PIPEHOST_QUEUE_NAME").then(|| "no spaces allowed".to_string())
    });
    let errs = build(path, &text, &file).unwrap_err();
    assert!(
        errs.iter().any(|e| e.to_string().contains("queue.name")),
        "{errs:?}"
    );
}

#[test]
fn a_topic_arn_must_be_an_arn() {
    let text = GOOD.replace(
        "name = \"market-data\"",
        "name = \"market-data\"\nbackend = \"aws\"",
    ) + "\n[aws]\nregion = \"eu-west-1\"\ntopic_arn = \"stack-topic\"\n";
    let e = one_error(&text);
    assert!(
        e.contains("aws.topic_arn") && e.contains("not an SNS topic ARN"),
        "{e}"
    );
}

/// Every setting a running pipeline cannot change, edited one at a time,
/// makes the fixed part differ and is named; edits a reload applies leave
/// it equal.
#[test]
fn fixed_edits_are_named_and_live_edits_leave_fixed_equal() {
    let base = format!(
        "{GOOD}
[stream]
shards = 2
retention = \"1h\"

[bridge]
poll_interval = \"20ms\"

[store.rollover]
records = 100

[admin]
listen = \"127.0.0.1:0\"

[web]
listen = \"127.0.0.1:0\"
"
    );
    let old = plan(&base).unwrap();
    let edit = |from: &str, to: &str| {
        assert!(base.contains(from), "{from}");
        plan(&base.replacen(from, to, 1)).unwrap()
    };
    let fixed_edits = [
        (
            "name = \"market-data\"",
            "name = \"market-data\"\nbackend = \"aws\"",
            &["pipeline.backend / local.data_dir / local.sync"][..],
        ),
        (
            "name = \"market-data\"",
            "name = \"other\"",
            // The names derived from it change with it.
            &[
                "pipeline.name",
                "stream.name",
                "queue.name",
                "queue.dead_letter",
                "store.bucket",
                "notifications.topic",
            ][..],
        ),
        (
            "shards = 2",
            "shards = 2\nname = \"s\"",
            &["stream.name"][..],
        ),
        ("shards = 2", "shards = 3", &["stream.shards"][..]),
        (
            "[bridge]",
            "[bridge]\nconsumer = \"b2\"",
            &["bridge.consumer"][..],
        ),
        (
            "[stream]",
            "[queue]\nname = \"q\"\ndead_letter = \"market-data-batches-dlq\"\n\n[stream]",
            &["queue.name"][..],
        ),
        (
            "[stream]",
            "[queue]\ndead_letter = \"d\"\n\n[stream]",
            &["queue.dead_letter"][..],
        ),
        (
            "[stream]",
            "[queue]\nvisibility_timeout = \"1m\"\n\n[stream]",
            &["queue.visibility_timeout"][..],
        ),
        (
            "[stream]",
            "[queue]\nmax_receives = 9\n\n[stream]",
            &["queue.max_receives"][..],
        ),
        (
            "[stream]",
            "[processor]\nworkers = 3\n\n[stream]",
            &["processor.workers"][..],
        ),
        (
            "[stream]",
            "[processor]\nreceive_batch = 3\n\n[stream]",
            &["processor.receive_batch"][..],
        ),
        (
            "[store.rollover]",
            "[store]\nbucket = \"b\"\n\n[store.rollover]",
            &["store.bucket"][..],
        ),
        (
            "[store.rollover]",
            "[store]\nkey_template = \"x/{dataset}/{shard}-{first_seq}\"\n\n[store.rollover]",
            &["store.key_template"][..],
        ),
        (
            "[store.rollover]",
            "[store]\nerror_prefix = \"bad/\"\n\n[store.rollover]",
            &["store.error_prefix"][..],
        ),
        (
            "[store.rollover]",
            "[store]\ngzip = false\n\n[store.rollover]",
            &["store.gzip"][..],
        ),
        (
            "[stream]",
            "[notifications]\ntopic = \"t\"\n\n[stream]",
            &["notifications.topic"][..],
        ),
        (
            "[stream]",
            "[notifications]\nsubscribers = [\"audit\"]\n\n[stream]",
            &["notifications.subscribers"][..],
        ),
        (
            "listen = \"127.0.0.1:0\"\n\n[web]",
            "listen = \"127.0.0.1:1\"\n\n[web]",
            &["admin"][..],
        ),
        (
            "[web]\nlisten = \"127.0.0.1:0\"",
            "[web]\nlisten = \"127.0.0.1:0\"\nbody_limit = \"2MiB\"",
            &["web"][..],
        ),
    ];
    for (from, to, keys) in fixed_edits {
        let new = edit(from, to);
        assert_ne!(old.fixed, new.fixed, "{keys:?}");
        assert_eq!(old.fixed.changed_keys(&new.fixed), keys, "{from} -> {to}");
    }
    let live_edits = [
        ("allow = [\"EUR/USD\"]", "allow = [\"GBP/USD\"]"),
        (
            "plugin = \"forex_parser\"",
            "plugin = \"forex_parser\", timeout = \"2s\"",
        ),
        ("records = 50", "records = 60"),
        ("retention = \"1h\"", "retention = \"2h\""),
        ("poll_interval = \"20ms\"", "poll_interval = \"50ms\""),
        ("records = 100", "records = 200"),
        (
            "[stream]",
            "[feeds.news]\nparser = { plugin = \"news_parser\" }\n\n[stream]",
        ),
    ];
    for (from, to) in live_edits {
        let new = edit(from, to);
        assert_ne!(old.live, new.live, "{from} -> {to}");
        assert_eq!(old.fixed, new.fixed, "{from} -> {to}");
        assert!(old.fixed.changed_keys(&new.fixed).is_empty());
    }
}
