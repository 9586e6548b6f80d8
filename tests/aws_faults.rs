//! The aws backend under faults: a fault-injecting proxy
//! (`support/fault_proxy.rs`) between pipehost and the moto server throws
//! throttling, server errors and lost answers at it, kills it with SIGKILL
//! at named requests, and lines requests up so that races happen every
//! time. After each, an exactly-once audit: every stream line in exactly
//! one stored object, one notification per object.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use pipehost::backend::Notification;

use crate::aws::{
    Moto, bucket_objects, drain_queue, moto, pipehost_env, queue_url, sdk, setup, stream_rows,
    unique, write_aws_pipeline,
};
use crate::fault_proxy::{Action, FaultProxy, Req, Rule};
use crate::pipeline::{audit_records, run_cmd};
use crate::util::{Spawned, text};
use crate::web::quote;

fn via(proxy: &FaultProxy) -> Moto {
    Moto {
        url: proxy.url.clone(),
    }
}

/// A forex pipeline (records put by the test) on the aws backend at
/// `endpoint`, in its own folder `dir/tag`, cutting batches at `records`
/// lines (no age bound to speak of).
fn forex_pipeline(dir: &Path, tag: &str, name: &str, endpoint: &Moto, records: u32) -> PathBuf {
    let dir = dir.join(tag);
    std::fs::create_dir_all(&dir).unwrap();
    let feeds = "[feeds.forex]\nparser = { plugin = \"forex_parser\" }\n";
    let path = write_aws_pipeline(&dir, name, feeds, "", endpoint);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "rollover = { records = 150, bytes = \"1MiB\", age = \"150ms\" }",
        &format!("rollover = {{ records = {records}, bytes = \"1MiB\", age = \"60s\" }}"),
    );
    assert!(text.contains(&format!("records = {records},")));
    std::fs::write(&path, text).unwrap();
    path
}

/// Puts `n` forex quotes on the stream, over 40 partition keys.
async fn put_quotes(moto: &Moto, stream: &str, n: usize) {
    let k = aws_sdk_kinesis::Client::new(&sdk(moto).await);
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let entries = chunk
            .iter()
            .map(|&i| {
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(format!("forex:k{}", i % 40))
                    .data(aws_sdk_kinesis::primitives::Blob::new(quote("FAULT", i)))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = k
            .put_records()
            .stream_name(stream)
            .set_records(Some(entries))
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }
}

/// Messages in a queue, visible or not.
async fn queue_total(moto: &Moto, queue: &str) -> u64 {
    let sqs = aws_sdk_sqs::Client::new(&sdk(moto).await);
    let url = queue_url(&sqs, queue).await;
    let out = sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let a = out.attributes().cloned().unwrap_or_default();
    let n = |k| a.get(&k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    n(QueueAttributeName::ApproximateNumberOfMessages)
        + n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
}

/// Moves every message of queue `from` to queue `to`, body and attributes
/// as they are (the test's way to hold messages back and let them go).
async fn move_messages(moto: &Moto, from: &str, to: &str) -> usize {
    let sqs = aws_sdk_sqs::Client::new(&sdk(moto).await);
    let (src, dst) = (queue_url(&sqs, from).await, queue_url(&sqs, to).await);
    let (mut moved, mut empty) = (0, 0);
    while empty < 2 {
        let out = sqs
            .receive_message()
            .queue_url(&src)
            .max_number_of_messages(10)
            .visibility_timeout(60)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            empty += 1;
            continue;
        }
        empty = 0;
        for m in out.messages() {
            sqs.send_message()
                .queue_url(&dst)
                .message_body(m.body().unwrap())
                .set_message_attributes(m.message_attributes().cloned())
                .send()
                .await
                .unwrap();
            sqs.delete_message()
                .queue_url(&src)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            moved += 1;
        }
    }
    moved
}

/// `pipehost run --max-records 0`: forward and process everything, then stop.
fn run_drained(path: &Path) -> String {
    let out = pipehost_env(&mut run_cmd(path, &["--max-records", "0"]))
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("every generated record processed"),
        "pipehost run failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    stdout
}

/// Spawns `pipehost run` with `args`, its pid handed to `pid` (for the
/// proxy's kill rule), and waits until it is killed.
fn run_until_killed(path: &Path, args: &[&str], pid: &AtomicU32) -> String {
    let mut run = Spawned::spawn({
        let mut cmd = run_cmd(path, args);
        pipehost_env(&mut cmd);
        cmd.env("RUST_LOG", "pipehost=info");
        cmd
    });
    pid.store(run.child.id(), Ordering::Release);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = run.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "not killed within 120 s:\n{}",
            run.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        status.signal(),
        Some(9),
        "killed, not ended:\n{}",
        run.log()
    );
    run.log()
}

/// Waits (with a deadline) until `queue` is empty.
async fn wait_empty(moto: &Moto, queue: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while queue_total(moto, queue).await > 0 {
        assert!(
            Instant::now() < deadline,
            "{queue} not empty within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The notification bodies' object keys, asserting one per object.
async fn assert_one_notification_per_object(
    moto: &Moto,
    name: &str,
    objs: &BTreeMap<String, String>,
) {
    let notes = drain_queue(moto, &format!("{name}-object-events")).await;
    let keys: Vec<String> = notes
        .iter()
        .map(|n| {
            let env: serde_json::Value = serde_json::from_str(n).unwrap();
            let inner: serde_json::Value =
                serde_json::from_str(env["Message"].as_str().unwrap()).unwrap();
            inner["Records"][0]["s3"]["object"]["key"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let distinct: HashSet<&String> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "no object notified twice");
    assert_eq!(keys.len(), objs.len(), "one notification per object");
}

fn is_checkpoint_put(r: &Req) -> bool {
    r.service == "s3" && r.method == "PUT" && r.path.contains("/_pipehost/checkpoints/")
}

/// Issue 14, item 5: the bridge killed between SendMessageBatch and its
/// checkpoint, then restarted with other rollover bounds. The batch it
/// sends again must be the one already sent — else the two, mapping to the
/// same objects, overwrite each other's lines.
async fn resent_batches_are_the_batches_sent(held_first: bool) {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let name = unique(if held_first { "resend-a" } else { "resend-b" });
    let pid = Arc::new(AtomicU32::new(0));
    let proxy = FaultProxy::start(
        &moto.url,
        vec![
            Rule::new(
                "kill at checkpoint",
                Action::Kill(pid.clone()),
                is_checkpoint_put,
            )
            .budget(1),
        ],
    );
    let before = forex_pipeline(dir.path(), "before", &name, &via(&proxy), 300);
    let after = forex_pipeline(dir.path(), "after", &name, moto, 1000);
    setup(&after);
    put_quotes(moto, &name, 3000).await;

    let log = run_until_killed(&before, &["--stages", "bridge"], &pid);
    assert_eq!(proxy.fired().get("kill at checkpoint"), Some(&1), "{log}");
    let queue = format!("{name}-batches");
    let sent = queue_total(moto, &queue).await;
    assert!(sent >= 1, "a batch went out before the kill:\n{log}");

    if held_first {
        // The batches sent before the kill are processed first …
        let proc = Spawned::spawn({
            let mut cmd = run_cmd(&after, &["--stages", "processor"]);
            pipehost_env(&mut cmd);
            cmd
        });
        wait_empty(moto, &queue, Duration::from_secs(120)).await;
        let (out, log) = proc.terminate();
        assert!(out.status.success(), "{log}");
        // … then the restarted bridge sends everything else.
        run_drained(&after);
    } else {
        // Held back while the restarted bridge sends and the processor
        // stores everything else, then processed last.
        let held = format!("{name}-held");
        let sqs = aws_sdk_sqs::Client::new(&sdk(moto).await);
        sqs.create_queue().queue_name(&held).send().await.unwrap();
        assert_eq!(move_messages(moto, &queue, &held).await as u64, sent);
        run_drained(&after);
        assert_eq!(move_messages(moto, &held, &queue).await as u64, sent);
        run_drained(&after);
    }
    let rows = stream_rows(moto, &name).await;
    assert_eq!(rows.len(), 3000);
    let objs = bucket_objects(moto, &name).await;
    let audit = audit_records(&rows, &objs, &|| log.clone());
    assert_eq!(audit.records, 3000, "{audit:?}");
    assert_eq!(audit.events, 3000, "every line once, none lost: {audit:?}");
    assert_one_notification_per_object(moto, &name, &objs).await;
    eprintln!(
        "re-send ({}): {sent} batches sent before the kill, {} lines audited, {} objects, lost 0, doubled 0",
        if held_first {
            "held first"
        } else {
            "held last"
        },
        audit.records,
        objs.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_bridge_killed_before_its_checkpoint_resends_the_same_batch_held_first() {
    resent_batches_are_the_batches_sent(true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_bridge_killed_before_its_checkpoint_resends_the_same_batch_held_last() {
    resent_batches_are_the_batches_sent(false).await;
}

/// Issue 14, item 3: two workers with the same batch (SQS gave it out
/// again while the first still ran) publish the same object version at
/// once. The proxy holds their first marker requests until both have come,
/// so they race every time; exactly one notification goes out.
#[tokio::test(flavor = "multi_thread")]
async fn aws_concurrent_publishes_of_one_object_version_notify_once() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let name = unique("race");
    let proxy = FaultProxy::start(
        &moto.url,
        vec![
            Rule::new("race", Action::Barrier(2), |r| {
                r.service == "s3" && r.path.contains("/_pipehost/notified/")
            })
            .budget(2),
        ],
    );
    let path = forex_pipeline(dir.path(), "p", &name, &via(&proxy), 100);
    setup(&path);
    let plan = pipehost::plan::from_source(&pipehost::config::read(&path).unwrap()).unwrap();
    let backend = pipehost::backend::open(&plan).await.unwrap();
    let note = Notification {
        dedup_id: "dataset=forex/date=2026-12-04/x.jsonl.gz#0123abcd".into(),
        body:
            r#"{"Records":[{"s3":{"object":{"key":"dataset=forex/date=2026-12-04/x.jsonl.gz"}}}]}"#
                .into(),
        attributes: BTreeMap::from([("dataset".to_string(), "forex".to_string())]),
    };
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (n, note) = (backend.notifier.clone(), note.clone());
            tokio::spawn(async move { n.publish(note).await.unwrap() })
        })
        .collect();
    let mut fresh = Vec::new();
    for w in workers {
        fresh.push(w.await.unwrap());
    }
    assert_eq!(proxy.fired().get("race"), Some(&2), "the two raced");
    assert_eq!(
        fresh.iter().filter(|f| **f).count(),
        1,
        "exactly one publish is fresh: {fresh:?}"
    );
    assert!(
        !backend.notifier.publish(note).await.unwrap(),
        "a later one is skipped"
    );
    let notes = drain_queue(moto, &format!("{name}-object-events")).await;
    assert_eq!(notes.len(), 1, "one notification reached the subscriber");
}

/// Issue 14: kill -9 between store and delete on the aws processor. The
/// processor is killed at its first DeleteMessageBatch — the batch's
/// objects stored and notified, the message not deleted; the restarted
/// pipeline gets the message again, overwrites the same objects and
/// notifies nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn aws_processor_killed_between_store_and_delete_loses_and_doubles_nothing() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let name = unique("killdel");
    let pid = Arc::new(AtomicU32::new(0));
    let proxy = FaultProxy::start(
        &moto.url,
        vec![
            Rule::new("kill at delete", Action::Kill(pid.clone()), |r| {
                r.target == "AmazonSQS.DeleteMessageBatch"
            })
            .budget(1),
        ],
    );
    let killed = forex_pipeline(dir.path(), "killed", &name, &via(&proxy), 150);
    // One worker: at the kill no other batch is between its Publish and
    // its marker — the one point where a notification can still go out
    // twice (docs/aws.md) — so the audit can ask for exactly one each.
    let text = std::fs::read_to_string(&killed).unwrap();
    assert!(text.contains("workers = 2"));
    std::fs::write(&killed, text.replace("workers = 2", "workers = 1")).unwrap();
    let restarted = forex_pipeline(dir.path(), "restarted", &name, moto, 150);
    setup(&restarted);
    put_quotes(moto, &name, 900).await;
    let log = run_until_killed(&killed, &[], &pid);
    assert_eq!(proxy.fired().get("kill at delete"), Some(&1), "{log}");
    let stored_before = bucket_objects(moto, &name).await.len();
    assert!(
        stored_before >= 1,
        "a batch was stored before the kill:\n{log}"
    );
    run_drained(&restarted);
    let rows = stream_rows(moto, &name).await;
    let objs = bucket_objects(moto, &name).await;
    let audit = audit_records(&rows, &objs, &|| log.clone());
    assert_eq!((audit.records, audit.events), (900, 900), "{audit:?}");
    assert_one_notification_per_object(moto, &name, &objs).await;
    eprintln!(
        "kill between store and delete: {stored_before} objects stored before the kill, {} lines audited, {} objects, lost 0, doubled 0",
        audit.records,
        objs.len()
    );
}

/// The faults a busy AWS account sees, for a share of the requests of
/// each service: throttling, server errors, and answers lost after the
/// work was done (a message sent twice, a marker written but its answer
/// lost).
fn weather() -> Vec<Rule> {
    let on = |service: &'static str| move |r: &Req| r.service == service;
    vec![
        Rule::new("kinesis throttled", Action::Throttle, on("kinesis"))
            .rate(0.1)
            .budget(40),
        Rule::new("kinesis 500", Action::ServerError, on("kinesis"))
            .rate(0.03)
            .budget(10),
        Rule::new("sqs throttled", Action::Throttle, on("sqs"))
            .rate(0.05)
            .budget(20),
        Rule::new("sqs send answer lost", Action::LoseAnswer, |r: &Req| {
            r.target == "AmazonSQS.SendMessageBatch"
        })
        .rate(0.4)
        .budget(3),
        Rule::new("s3 marker answer lost", Action::LoseAnswer, |r: &Req| {
            r.method == "PUT" && r.path.contains("/_pipehost/notified/")
        })
        .rate(0.1)
        .budget(5),
        Rule::new("s3 slow down", Action::Throttle, on("s3"))
            .rate(0.05)
            .budget(30),
        Rule::new("s3 500", Action::ServerError, on("s3"))
            .rate(0.02)
            .budget(10),
        Rule::new("sns 500", Action::ServerError, on("sns"))
            .rate(0.25)
            .budget(10),
    ]
}

/// The default pipeline (feeds, bridge, processor) with every service
/// behind the fault proxy: every line stored once, one notification per
/// object, nothing dead-lettered, and every kind of fault injected.
#[tokio::test(flavor = "multi_thread")]
async fn aws_default_pipeline_through_throttling_and_5xx_stores_every_record_once() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let name = unique("weather");
    let proxy = FaultProxy::start(&moto.url, Vec::new());
    let feeds = std::fs::read_to_string(crate::util::root().join("pipeline.toml")).unwrap();
    let feeds: String = feeds
        [feeds.find("[feeds.forex]").unwrap()..feeds.find("# --- plumbing").unwrap()]
        .replace("interval = \"100ms\"", "interval = \"50ms\"")
        .replace("interval = \"500ms\"", "interval = \"100ms\"")
        .replace("records = 200", "records = 50");
    let path = write_aws_pipeline(dir.path(), &name, &feeds, "", &via(&proxy));
    setup(&path);
    proxy.set_rules(weather());
    let total = 1200;
    let out = pipehost_env(&mut run_cmd(&path, &["--max-records", &total.to_string()]))
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("every generated record processed"),
        "pipehost run failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    proxy.set_rules(Vec::new());
    let fired = proxy.fired();
    for rule in weather() {
        assert!(
            fired.get(rule.name).is_some_and(|n| *n > 0),
            "{} never injected: {fired:?}",
            rule.name
        );
    }
    let rows = stream_rows(moto, &name).await;
    let objs = bucket_objects(moto, &name).await;
    let audit = audit_records(&rows, &objs, &|| text(&out.stderr));
    let lines = crate::pipeline::unpack_rows(&rows).len();
    assert_eq!(audit.records, lines);
    assert!(
        lines >= total * 95 / 100,
        "{lines} of {total} on the stream"
    );
    assert_one_notification_per_object(moto, &name, &objs).await;
    let dead = drain_queue(moto, &format!("{name}-batches-dlq")).await;
    assert!(dead.is_empty(), "{} batches dead-lettered", dead.len());
    eprintln!(
        "weather: {} faults injected ({fired:?}) over {} forwarded requests; {} lines audited, {} objects, lost 0, doubled 0",
        fired.values().sum::<u64>(),
        proxy.forwarded(),
        audit.records,
        objs.len()
    );
}

/// A marker left by a worker whose publish failed ("released") is taken at
/// once; one left "publishing" by a worker that died is taken over after
/// the lease. Either way the notification goes out, once.
#[tokio::test(flavor = "multi_thread")]
async fn aws_markers_left_by_failed_or_dead_workers_are_taken_over() {
    use sha2::Digest;
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let name = unique("takeover");
    let path = forex_pipeline(dir.path(), "p", &name, moto, 100);
    setup(&path);
    let plan = pipehost::plan::from_source(&pipehost::config::read(&path).unwrap()).unwrap();
    let backend = pipehost::backend::open(&plan).await.unwrap();
    let conf = aws_sdk_s3::config::Builder::from(&sdk(moto).await)
        .force_path_style(true)
        .build();
    let s3 = aws_sdk_s3::Client::from_conf(conf);
    for (state, at_once) in [("released", true), ("publishing", false)] {
        let dedup_id = format!("dataset=forex/{state}.jsonl.gz#e");
        let hash: String = sha2::Sha256::digest(dedup_id.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let left = serde_json::json!({ "state": state, "owner": "1-dead", "dedup_id": dedup_id });
        s3.put_object()
            .bucket(&name)
            .key(format!("_pipehost/notified/{hash}"))
            .body(left.to_string().into_bytes().into())
            .send()
            .await
            .unwrap();
        let started = Instant::now();
        let fresh = backend
            .notifier
            .publish(Notification {
                dedup_id: dedup_id.clone(),
                body: "{}".into(),
                attributes: BTreeMap::new(),
            })
            .await
            .unwrap();
        assert!(
            fresh,
            "{state}: published by the worker that took the marker over"
        );
        let waited = started.elapsed();
        if at_once {
            assert!(waited < Duration::from_secs(5), "{state}: took {waited:?}");
        } else {
            assert!(
                waited >= Duration::from_secs(10),
                "{state}: the lease was kept: {waited:?}"
            );
        }
        let again = backend
            .notifier
            .publish(Notification {
                dedup_id,
                body: "{}".into(),
                attributes: BTreeMap::new(),
            })
            .await
            .unwrap();
        assert!(!again, "{state}: then marked published");
    }
    let notes = drain_queue(moto, &format!("{name}-object-events")).await;
    assert_eq!(notes.len(), 2, "one notification each");
}
