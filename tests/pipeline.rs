//! `pipehost run` end to end on the local backend: every generated record
//! stored exactly once (count and content), one notification per object,
//! crash safety under SIGKILL, bad input and poison messages, and config
//! errors that name the line and key.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use pipehost::backend::OutMessage;
use pipehost::backend::local::{LocalBackend, Names};
use pipehost::wire::aggregate;

use crate::util::{cache_dir, plugin_dir, text};

/// A small, fast pipeline in `dir`. `extra` is appended (TOML).
pub(crate) fn write_pipeline(dir: &Path, forex_config: &str, extra: &str) -> PathBuf {
    let feeds = format!(
        r#"
[feeds.forex]
parser = {{ plugin = "forex_parser" }}
transforms = [{{ plugin = "forex_transform" }}]
[feeds.forex.generator]
plugin = "forex_generator"
interval = "20ms"
records = 40
seed = 1
config = {forex_config}

[feeds.stock]
parser = {{ plugin = "stock_parser" }}
transforms = [{{ plugin = "stock_transform" }}]
[feeds.stock.generator]
plugin = "stock_generator"
interval = "20ms"
records = 40
seed = 2

[feeds.news]
parser = {{ plugin = "news_parser" }}
transforms = [{{ plugin = "news_transform" }}]
[feeds.news.generator]
plugin = "news_generator"
interval = "40ms"
records = 10
seed = 3
"#
    );
    write_pipeline_with(dir, &feeds, extra)
}

/// Like [`write_pipeline`] with the `[feeds…]` tables given.
pub(crate) fn write_pipeline_with(dir: &Path, feeds: &str, extra: &str) -> PathBuf {
    let plugins = plugin_dir();
    let text = format!(
        r#"
[pipeline]
name = "e2e"

[plugins]
dir = "{plugins}"
{feeds}
[stream]
shards = 3

[queue]
visibility_timeout = "1s"
max_receives = 3

[processor]
workers = 2

[store]
rollover = {{ records = 150, bytes = "1MiB", age = "150ms" }}

[notifications]
subscribers = ["e2e-object-events"]

[local]
data_dir = "state"
{extra}
"#,
        plugins = plugins.display()
    );
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The local backend of a pipeline [`write_pipeline_with`] wrote, opened
/// directly (to inject records or messages a run will meet).
pub(crate) fn local_backend(state: &Path) -> pipehost::backend::Backend {
    local_backend_of(state, 3)
}

/// [`local_backend`] for a pipeline whose stream has `shards` shards.
pub(crate) fn local_backend_of(state: &Path, shards: u32) -> pipehost::backend::Backend {
    let names = Names {
        stream: "e2e".into(),
        shards,
        queue: "e2e-batches".into(),
        dead_letter: "e2e-batches-dlq".into(),
        visibility: Duration::from_secs(1),
        max_receives: 3,
        bucket: "e2e".into(),
        topic: "e2e-objects".into(),
        subscribers: vec!["e2e-object-events".into()],
    };
    LocalBackend::open(state, pipehost::plan::SyncMode::Normal, &names)
        .unwrap()
        .backend()
}

pub(crate) fn run_cmd(pipeline: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipehost"));
    cmd.arg("run")
        .arg(pipeline)
        .arg("--quiet")
        .args(args)
        .env("PIPEHOST_CACHE_DIR", cache_dir())
        .env_remove("RUST_LOG");
    cmd
}

pub(crate) fn run_to_end(pipeline: &Path, max: u64) -> String {
    let out = run_cmd(pipeline, &["--max-records", &max.to_string()])
        .output()
        .expect("run pipehost");
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "pipehost run failed:\n{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("every generated record processed"),
        "{stdout}"
    );
    stdout
}

/// A stream record as the test reads it back from the backend.
pub(crate) struct StreamRow {
    pub shard: String,
    pub seq: String,
    pub key: String,
    pub data: Vec<u8>,
}

pub(crate) fn stream_rows(state: &Path) -> Vec<StreamRow> {
    let db = rusqlite::Connection::open(state.join("pipehost.db")).unwrap();
    let mut st = db
        .prepare("SELECT shard, seq, partition_key, data FROM stream_records ORDER BY shard, seq")
        .unwrap();
    st.query_map([], |r| {
        Ok(StreamRow {
            shard: format!("shard-{:04}", r.get::<_, i64>(0)?),
            seq: format!("{:020}", r.get::<_, i64>(1)?),
            key: r.get(2)?,
            data: r.get(3)?,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Where the queue's messages are, for failure messages.
fn queue_state(state: &Path) -> String {
    let db = rusqlite::Connection::open(state.join("pipehost.db")).unwrap();
    let mut st = db
        .prepare(
            "SELECT queue, id, receive_count FROM queue_messages WHERE queue NOT LIKE '%events'",
        )
        .unwrap();
    let rows: Vec<String> = st
        .query_map([], |r| {
            Ok(format!(
                "{}:{}:{}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?
            ))
        })
        .unwrap()
        .filter_map(Result::ok)
        .collect();
    format!("{rows:?}")
}

pub(crate) fn count(state: &Path, sql: &str) -> i64 {
    let db = rusqlite::Connection::open(state.join("pipehost.db")).unwrap();
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Every object body (gunzipped), by key.
pub(crate) fn objects(state: &Path) -> BTreeMap<String, String> {
    let root = state.join("objects").join("e2e");
    let mut out = BTreeMap::new();
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, root, out);
            } else if !p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".tmp-")
            {
                let raw = std::fs::read(&p).unwrap();
                let mut body = String::new();
                flate2::read::GzDecoder::new(&raw[..])
                    .read_to_string(&mut body)
                    .unwrap();
                let key = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(key, body);
            }
        }
    }
    walk(&root, &root, &mut out);
    out
}

#[derive(Debug, Default)]
pub(crate) struct Audit {
    pub records: usize,
    pub events: usize,
    pub error_lines: usize,
    pub objects: usize,
}

/// Checks that every stream record is in the store exactly once: as one or
/// more events (numbered parts, no part twice) or as an error line, with
/// content that matches its raw bytes; and one notification per object.
pub(crate) fn audit(state: &Path) -> Audit {
    let rows = stream_rows(state);
    let objs = objects(state);
    let audit = audit_records(&rows, &objs, &|| queue_state(state));
    // One notification per object, delivered once to the subscriber.
    let notified = count(state, "SELECT COUNT(*) FROM notifications") as usize;
    assert_eq!(notified, objs.len(), "one notification per object");
    let distinct = count(
        state,
        "SELECT COUNT(DISTINCT json_extract(body, '$.Records[0].s3.object.key')) FROM notifications",
    ) as usize;
    assert_eq!(distinct, objs.len(), "no object notified twice");
    let delivered = count(
        state,
        "SELECT COUNT(*) FROM queue_messages WHERE queue = 'e2e-object-events'",
    ) as usize;
    assert_eq!(
        delivered,
        objs.len(),
        "each notification delivered once to the subscriber queue"
    );
    audit
}

/// Stream rows as the processor sees them: an aggregated record (HTTP
/// ingest) unpacked into one row per line with the sub-sequence
/// `<seq>:<i>`; plain rows, and aggregates that cannot be read, as they are.
/// Records on the local stream, counting each line of an aggregated one.
pub(crate) fn stream_lines(state: &Path) -> u64 {
    unpack_rows(&stream_rows(state)).len() as u64
}

pub(crate) fn unpack_rows(rows: &[StreamRow]) -> Vec<StreamRow> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        match aggregate::decode(&r.data) {
            Ok(lines) => out.extend(lines.into_iter().enumerate().map(|(i, line)| StreamRow {
                shard: r.shard.clone(),
                seq: format!("{}:{i}", r.seq),
                key: r.key.clone(),
                data: line.to_vec(),
            })),
            Err(_) => out.push(StreamRow {
                shard: r.shard.clone(),
                seq: r.seq.clone(),
                key: r.key.clone(),
                data: r.data.clone(),
            }),
        }
    }
    out
}

/// The provider-neutral part of [`audit`]: every stream record — every line
/// of an aggregated one — in the objects exactly once, as events or one
/// error line, content matching.
pub(crate) fn audit_records(
    rows: &[StreamRow],
    objs: &BTreeMap<String, String>,
    context: &dyn Fn() -> String,
) -> Audit {
    let rows = &unpack_rows(rows);
    let mut parts: HashMap<(String, String), BTreeSet<u64>> = HashMap::new();
    let mut errors: HashMap<(String, String), usize> = HashMap::new();
    let mut events = 0;
    let by_id: HashMap<(String, String), &StreamRow> = rows
        .iter()
        .map(|r| ((r.shard.clone(), r.seq.clone()), r))
        .collect();
    for (key, body) in objs {
        for line in body.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if key.starts_with("errors/") {
                let src = &v["source"];
                let id = (
                    src["shard"].as_str().unwrap().to_string(),
                    src["sequence"].as_str().unwrap().to_string(),
                );
                let row = by_id
                    .get(&id)
                    .unwrap_or_else(|| panic!("error line for an unknown record {id:?}"));
                let original = match v["data_base64"].as_str() {
                    Some(b) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
                    None => v["data"].as_str().unwrap().as_bytes().to_vec(),
                };
                assert_eq!(original, row.data, "original bytes kept");
                assert!(!v["reason"].as_str().unwrap().is_empty());
                if v["stage"] == "unpack" {
                    assert!(aggregate::is_aggregate(&row.data), "{v}");
                } else {
                    assert!(v["plugin_version"].as_str().unwrap().contains('@'), "{v}");
                }
                *errors.entry(id).or_default() += 1;
                continue;
            }
            let src = &v["source"];
            let id = (
                src["shard"].as_str().unwrap().to_string(),
                src["sequence"].as_str().unwrap().to_string(),
            );
            let row = by_id
                .get(&id)
                .unwrap_or_else(|| panic!("event for an unknown record {id:?}"));
            let part = src["part"].as_u64().unwrap();
            assert!(
                parts.entry(id.clone()).or_default().insert(part),
                "duplicate event {id:?} part {part}"
            );
            events += 1;
            // Content: the event says what its raw record said.
            let raw = String::from_utf8_lossy(&row.data);
            let (feed, pkey) = row.key.split_once(':').unwrap();
            assert_eq!(src["feed"], feed);
            match feed {
                "forex" => {
                    let rawv: serde_json::Value = serde_json::from_str(&raw).unwrap();
                    assert_eq!(v["partition_key"], rawv["pair"]);
                    assert_eq!(v["fields"]["bid"], rawv["bid"], "{raw} -> {v}");
                    assert_eq!(v["fields"]["ask"], rawv["ask"], "{raw} -> {v}");
                }
                "stock" => {
                    assert_eq!(v["partition_key"], pkey);
                    let price: f64 = raw.split(',').nth(2).unwrap().parse().unwrap();
                    assert_eq!(
                        v["fields"]["price"].as_f64().unwrap(),
                        price,
                        "{raw} -> {v}"
                    );
                }
                _ => {
                    let id_field = v["fields"]["id"].as_str().unwrap();
                    assert!(raw.contains(&format!("id={id_field}")), "{raw} -> {v}");
                }
            }
        }
    }
    for r in rows {
        let id = (r.shard.clone(), r.seq.clone());
        let p = parts.get(&id);
        let e = errors.get(&id).copied().unwrap_or(0);
        assert!(e <= 1, "record {id:?} has {e} error lines");
        match p {
            Some(set) => {
                let want: BTreeSet<u64> = (0..set.len() as u64).collect();
                assert_eq!(set, &want, "record {id:?}: parts numbered without gaps");
            }
            None => assert_eq!(
                e,
                1,
                "record {id:?} ({:?}) is nowhere in the store; queue messages: {}",
                String::from_utf8_lossy(&r.data),
                context()
            ),
        }
    }
    Audit {
        records: rows.len(),
        events,
        error_lines: errors.values().sum(),
        objects: objs.len(),
    }
}

#[test]
fn a_bounded_run_stores_every_record_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(dir.path(), "{ malformed_rate = 0.05 }", "");
    let stdout = run_to_end(&pipeline, 3000);
    let a = audit(&dir.path().join("state"));
    assert_eq!(a.records, 3000, "{stdout}");
    assert!(a.events >= 2800, "{a:?}");
    assert!(
        a.error_lines > 0,
        "the malformed forex records are under errors/: {a:?}"
    );
    assert!(
        stdout.contains(&format!(
            "{} objects, {} notifications",
            a.objects, a.objects
        )),
        "{stdout}"
    );
    // A second run with the same budget has nothing left to do.
    let again = run_to_end(&pipeline, 3000);
    assert!(again.contains("generated   0 records"), "{again}");
    assert_eq!(audit(&dir.path().join("state")).records, 3000);
}

/// `--stages` splits the pipeline across processes, as an AWS deployment
/// does: a producer-only run fills the stream, and a bridge + processor run
/// stores every record once.
#[test]
fn stages_split_across_processes_store_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(dir.path(), "{}", "");
    let out = run_cmd(
        &pipeline,
        &[
            "--stages",
            "feeds",
            "--max-records",
            "600",
            "--duration",
            "3s",
        ],
    )
    .output()
    .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("generated   600 records"), "{stdout}");
    assert!(stdout.contains("bridged     0 records"), "{stdout}");
    assert_eq!(stream_lines(&dir.path().join("state")), 600);
    assert_eq!(
        count(
            &dir.path().join("state"),
            "SELECT COUNT(*) FROM queue_messages"
        ),
        0,
        "no bridge ran"
    );

    let out = run_cmd(
        &pipeline,
        &["--stages", "bridge,processor", "--max-records", "600"],
    )
    .output()
    .unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("every generated record processed"),
        "{stdout}{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("generated   0 records"), "{stdout}");
    assert_eq!(audit(&dir.path().join("state")).records, 600);
}

fn spawn(pipeline: &Path, max: u64) -> Child {
    run_cmd(pipeline, &["--max-records", &max.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Progress the test can see from outside: records on the stream plus
/// objects and notifications written.
fn progress(state: &Path) -> i64 {
    if !state.join("pipehost.db").exists() {
        return 0;
    }
    let db = match rusqlite::Connection::open(state.join("pipehost.db")) {
        Ok(db) => db,
        Err(_) => return 0,
    };
    db.query_row(
        "SELECT (SELECT COUNT(*) FROM stream_records) + 50 * (SELECT COUNT(*) FROM objects)
              + 50 * (SELECT COUNT(*) FROM notifications)",
        [],
        |r| r.get(0),
    )
    .unwrap_or(0)
}

#[test]
fn sigkill_at_random_points_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pipeline = write_pipeline(dir.path(), "{ malformed_rate = 0.02 }", "");
    let max = 4000;
    // A fixed seed: the kill points vary across the run but the test is
    // reproducible.
    let mut rng: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut kills = 0;
    while kills < 10 {
        let start = progress(&state);
        let step = (next() % 600) as i64;
        let mut child = spawn(&pipeline, max);
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut exited = false;
        while progress(&state) < start + step && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if exited {
            break;
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    assert_eq!(
        kills, 10,
        "the run finished before 10 kills; raise the budget"
    );
    run_to_end(&pipeline, max);
    // A batch whose processing was cut short by a kill `max_receives` times
    // is dead-lettered, as SQS would do: parked, not lost. Redrive it the way
    // an operator would, and finish.
    let dlq = "SELECT COUNT(*) FROM queue_messages WHERE queue = 'e2e-batches-dlq'";
    let parked = count(&state, dlq);
    if parked > 0 {
        let out = Command::new(env!("CARGO_BIN_EXE_pipehost"))
            .args(["dlq", "redrive", "-c"])
            .arg(&pipeline)
            .output()
            .unwrap();
        let said = text(&out.stdout);
        assert!(said.contains(&format!("moved {parked} messages")), "{said}");
        run_to_end(&pipeline, max);
    }
    assert_eq!(
        count(&state, dlq),
        0,
        "nothing left in the dead-letter queue"
    );
    let a = audit(&state);
    assert_eq!(a.records, max as usize, "{a:?}");
}

#[test]
fn bad_records_go_to_errors_and_poison_messages_to_the_dead_letter_queue() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pipeline = write_pipeline(dir.path(), "{ malformed_rate = 0.2 }", "");
    // Inject a poison message straight into the queue before the run.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let b = local_backend(&state);
        b.queue
            .send(
                vec![OutMessage {
                    id: "poison".into(),
                    body: "{ this is not a batch".into(),
                }],
                None,
            )
            .await
            .unwrap();
    });
    let stdout = run_to_end(&pipeline, 600);
    let a = audit(&state);
    // Forex's share of the 600 is 283 (shares follow the rates: forex and
    // stock 2,000 records/s, news 250); malformed_rate 0.2 draws each
    // record's fate from the seeded PRNG, so about 57 of them.
    assert_eq!(a.records, 600, "{a:?}");
    assert!(
        (34..=80).contains(&a.error_lines),
        "about a fifth of forex's 283 records are malformed: {a:?}"
    );
    let dead = count(
        &state,
        "SELECT COUNT(*) FROM queue_messages WHERE queue = 'e2e-batches-dlq' AND id = 'poison'",
    );
    assert_eq!(
        dead, 1,
        "the poison message is in the dead-letter queue:\n{stdout}"
    );
    // The error objects say why, with the plugin that refused.
    let errs = objects(&state);
    let errs: Vec<&String> = errs
        .iter()
        .filter(|(k, _)| k.starts_with("errors/dataset=forex/"))
        .map(|(_, v)| v)
        .collect();
    assert!(!errs.is_empty());
    assert!(
        errs.iter()
            .any(|b| b.contains("\"plugin\":\"forex_parser\"")),
        "{errs:?}"
    );
    // And the CLI shows it.
    let out = Command::new(env!("CARGO_BIN_EXE_pipehost"))
        .args(["dlq", "list", "-c"])
        .arg(&pipeline)
        .output()
        .unwrap();
    let listing = text(&out.stdout);
    assert!(
        listing.contains("1 messages") && listing.contains("poison"),
        "{listing}"
    );
}

#[test]
fn ls_and_cat_show_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write_pipeline(dir.path(), "{}", "");
    run_to_end(&pipeline, 200);
    let ls = Command::new(env!("CARGO_BIN_EXE_pipehost"))
        .args(["ls", "dataset=stock/", "-c"])
        .arg(&pipeline)
        .output()
        .unwrap();
    let listing = text(&ls.stdout);
    assert!(ls.status.success(), "{listing}");
    let key = listing
        .lines()
        .find_map(|l| {
            l.split_whitespace()
                .last()
                .filter(|k| k.ends_with(".jsonl.gz"))
        })
        .unwrap_or_else(|| panic!("no stock object listed:\n{listing}"))
        .to_string();
    assert!(
        key.starts_with("dataset=stock/date=") && key.contains("/hour="),
        "{key}"
    );
    let cat = Command::new(env!("CARGO_BIN_EXE_pipehost"))
        .args(["cat", &key, "-c"])
        .arg(&pipeline)
        .output()
        .unwrap();
    let body = text(&cat.stdout);
    let first: serde_json::Value = serde_json::from_str(body.lines().next().unwrap()).unwrap();
    assert_eq!(first["dataset"], "stock");
    assert!(first["fields"]["pct_change"].is_number(), "{first}");

    // The pipeline file given where the prefix goes: listed as nothing,
    // and said why.
    let mistaken = Command::new(env!("CARGO_BIN_EXE_pipehost"))
        .arg("ls")
        .arg(&pipeline)
        .arg("-c")
        .arg(&pipeline)
        .output()
        .unwrap();
    assert!(mistaken.status.success());
    assert!(text(&mistaken.stdout).contains("0 objects"));
    let said = text(&mistaken.stderr);
    assert!(
        said.contains("is a file here") && said.contains("takes a key prefix"),
        "{said}"
    );
}

#[test]
fn config_errors_fail_fast_naming_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = write_pipeline(dir.path(), "{}", "");
    let text0 = std::fs::read_to_string(&good).unwrap();
    let line_of =
        |text: &str, needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let cases: [(&str, String, &str); 3] = [
        (
            "typo",
            text0.replace("workers = 2", "wrokers = 2"),
            "wrokers",
        ),
        (
            "interval",
            text0.replacen("interval = \"20ms\"", "interval = \"20 fortnights\"", 1),
            "feeds.forex.generator.interval",
        ),
        (
            "plugin",
            text0.replace("plugin = \"stock_parser\"", "plugin = \"no_such_parser\""),
            "feeds.stock.parser.plugin",
        ),
    ];
    for (what, text, key) in cases {
        let path = dir.path().join(format!("{what}.toml"));
        std::fs::write(&path, &text).unwrap();
        let needle = match what {
            "typo" => "wrokers",
            "interval" => "fortnights",
            _ => "no_such_parser",
        };
        let line = line_of(&text, needle);
        // Exit status 2 before anything runs (a started run would end with 0).
        let out = run_cmd(&path, &["--duration", "30s"]).output().unwrap();
        let stderr = crate::util::text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains(&format!("{what}.toml:{line}")),
            "{what}: names the line {line}: {stderr}"
        );
        assert!(stderr.contains(key), "{what}: names the key: {stderr}");
    }
}

#[test]
fn sigterm_drains_in_flight_batches_and_a_restart_finishes_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pipeline = write_pipeline(dir.path(), "{}", "");
    let mut child = run_cmd(&pipeline, &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count_or_zero(&state, "SELECT COUNT(*) FROM notifications") < 3
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        count_or_zero(&state, "SELECT COUNT(*) FROM notifications") >= 3,
        "the pipeline got going"
    );
    crate::util::signal(&child, "TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "a graceful exit: {status:?}");
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(stdout.contains("run finished"), "{stdout}");
    // Drained: nothing is left received-but-unfinished in the queue.
    let in_flight = count(
        &state,
        "SELECT COUNT(*) FROM queue_messages WHERE queue = 'e2e-batches' AND receive_count > 0",
    );
    assert_eq!(in_flight, 0, "no batch left half-processed");
    // What was generated before the signal is finished by the next run.
    let generated = stream_lines(&state);
    run_to_end(&pipeline, generated);
    assert_eq!(audit(&state).records as u64, generated);
}

pub(crate) fn count_or_zero(state: &Path, sql: &str) -> i64 {
    if !state.join("pipehost.db").exists() {
        return 0;
    }
    rusqlite::Connection::open(state.join("pipehost.db"))
        .and_then(|db| db.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(0)
}
