//! The backend conformance suite: what every provider of the four services
//! must do, written against the traits only. The local backend runs it
//! here; the AWS backend runs the same functions against a real local AWS
//! server.

use std::time::{Duration, Instant};

use pipehost::backend::local::{LocalBackend, Names};
use pipehost::backend::{
    Backend, Checkpoint, Notification, OutMessage, ProducerMark, PutObject, StreamRecord,
};
use pipehost::plan::SyncMode;

pub const VISIBILITY: Duration = Duration::from_millis(400);
pub const MAX_RECEIVES: u32 = 2;
pub const SUBSCRIBER: &str = "object-events";

/// What a provider was set up with, for the checks that depend on it.
pub struct Conf {
    pub shards: usize,
    pub visibility: Duration,
    pub max_receives: u32,
    pub subscriber: String,
    /// How long a sent message may take to become receivable.
    pub patience: Duration,
}

pub fn local_conf() -> Conf {
    Conf {
        shards: 3,
        visibility: VISIBILITY,
        max_receives: MAX_RECEIVES,
        subscriber: SUBSCRIBER.into(),
        patience: Duration::from_secs(5),
    }
}

pub fn names() -> Names {
    Names {
        stream: "conf-stream".into(),
        shards: 3,
        queue: "conf-queue".into(),
        dead_letter: "conf-dlq".into(),
        visibility: VISIBILITY,
        max_receives: MAX_RECEIVES,
        bucket: "conf-bucket".into(),
        topic: "conf-topic".into(),
        subscribers: vec![SUBSCRIBER.into()],
    }
}

fn msg(id: &str) -> OutMessage {
    OutMessage {
        id: id.into(),
        body: format!("body of {id}"),
    }
}

/// Receives until something arrives or `limit` passes.
async fn receive_within(
    q: &dyn pipehost::backend::Queue,
    limit: Duration,
) -> Vec<pipehost::backend::Received> {
    let deadline = Instant::now() + limit;
    loop {
        let got = q.receive(10, Duration::from_millis(100)).await.unwrap();
        if !got.is_empty() || Instant::now() >= deadline {
            return got;
        }
    }
}

pub async fn stream_orders_records_per_shard(b: &Backend, c: &Conf) {
    let shards = b.stream.shards().await.unwrap();
    assert_eq!(shards.len(), c.shards);
    let records: Vec<StreamRecord> = (0..60)
        .map(|i| StreamRecord {
            partition_key: format!("feed:key-{}", i % 7),
            data: format!("record {i}").into_bytes(),
        })
        .collect();
    b.stream
        .put(
            records,
            Some(ProducerMark {
                producer: "p".into(),
                next: 1,
                records: 60,
            }),
        )
        .await
        .unwrap();
    let pos = b.stream.producer_position("p").await.unwrap().unwrap();
    assert_eq!((pos.next, pos.records), (1, 60));
    let mut total = 0;
    for shard in &shards {
        let got = b.stream.read(shard, None, 1000).await.unwrap();
        // A partition key always lands in one shard, in put order.
        for w in got.windows(2) {
            assert!(
                pipehost::backend::seq_after(&w[1].sequence, &w[0].sequence),
                "sequences increase"
            );
        }
        for key in 0..7 {
            let mine: Vec<u32> = got
                .iter()
                .filter(|r| r.partition_key == format!("feed:key-{key}"))
                .map(|r| String::from_utf8_lossy(&r.data)[7..].parse().unwrap())
                .collect();
            assert!(mine.windows(2).all(|w| w[0] < w[1]), "per-key order");
        }
        if let Some(last) = got.last() {
            // Providers that can tell (Kinesis cannot) name the last record.
            if let Some(latest) = b.stream.latest(shard).await.unwrap() {
                assert_eq!(latest, last.sequence);
            }
            // Reading after a position returns only what follows it.
            let after = b
                .stream
                .read(shard, Some(&got[0].sequence), 1000)
                .await
                .unwrap();
            assert_eq!(after.len(), got.len() - 1);
            let limited = b.stream.read(shard, None, 2).await.unwrap();
            assert_eq!(limited.len(), got.len().min(2));
        }
        total += got.len();
    }
    assert_eq!(total, 60, "every record in exactly one shard");
}

pub async fn queue_hides_redelivers_and_deletes(b: &Backend, c: &Conf) {
    let q = &b.queue;
    q.send(
        vec![msg("a")],
        Some(Checkpoint {
            consumer: "bridge".into(),
            source: "shard-0000".into(),
            position: "42".into(),
        }),
    )
    .await
    .unwrap();
    assert_eq!(
        q.checkpoint("bridge", "shard-0000")
            .await
            .unwrap()
            .as_deref(),
        Some("42"),
        "the checkpoint is recorded with the send"
    );
    let first = receive_within(q.as_ref(), c.patience).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].body, "body of a");
    assert_eq!(first[0].receive_count, 1);
    assert!(
        q.receive(10, Duration::ZERO).await.unwrap().is_empty(),
        "invisible while in flight"
    );
    assert_eq!(q.depth().await.unwrap().in_flight, 1);
    // Not deleted: it comes back after the visibility timeout.
    let again = receive_within(q.as_ref(), c.visibility + c.patience).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    // Extending visibility keeps it hidden past the original timeout.
    q.extend_visibility(&again[0].receipt, Duration::from_secs(30))
        .await
        .unwrap();
    let hidden_until = Instant::now() + c.visibility * 2;
    while Instant::now() < hidden_until {
        assert!(
            q.receive(10, Duration::from_millis(50))
                .await
                .unwrap()
                .is_empty()
        );
    }
    q.delete(std::slice::from_ref(&again[0].receipt))
        .await
        .unwrap();
    assert_eq!(q.depth().await.unwrap().total(), 0, "deleted");
}

pub async fn poison_messages_move_to_the_dead_letter_queue(b: &Backend, c: &Conf) {
    let q = &b.queue;
    q.send(vec![msg("poison")], None).await.unwrap();
    for n in 1..=c.max_receives {
        let got = receive_within(q.as_ref(), c.visibility + c.patience).await;
        assert_eq!(got.len(), 1, "receive {n}");
        assert_eq!(got[0].receive_count, n);
    }
    // The next receive finds it past max_receives and moves it.
    let deadline = Instant::now() + c.visibility + c.patience;
    while b.dead_letter.depth().await.unwrap().total() == 0 && Instant::now() < deadline {
        assert!(
            q.receive(10, Duration::from_millis(100))
                .await
                .unwrap()
                .is_empty()
        );
    }
    assert_eq!(b.dead_letter.depth().await.unwrap().total(), 1);
    let dead = b.dead_letter.peek(10).await.unwrap();
    assert_eq!(dead[0].body, "body of poison");
    assert_eq!(b.dead_letter.redrive(q.name()).await.unwrap(), 1);
    assert_eq!(b.dead_letter.depth().await.unwrap().total(), 0);
    let back = receive_within(q.as_ref(), c.patience).await;
    assert_eq!(back[0].body, "body of poison");
    assert_eq!(back[0].receive_count, 1, "a redriven message starts over");
    q.delete(&[back[0].receipt.clone()]).await.unwrap();
}

pub async fn objects_are_replaced_whole_and_listed_by_prefix(b: &Backend) {
    let put = |key: &str, body: &str| PutObject {
        key: key.into(),
        body: body.as_bytes().to_vec(),
        content_type: "application/x-ndjson".into(),
        content_encoding: None,
        metadata: [("record-count".to_string(), "1".to_string())].into(),
    };
    let a = b
        .store
        .put(put("dataset=forex/a.jsonl", "one"))
        .await
        .unwrap();
    b.store
        .put(put("dataset=forex/b.jsonl", "two"))
        .await
        .unwrap();
    b.store.put(put("errors/x.jsonl", "bad")).await.unwrap();
    let again = b
        .store
        .put(put("dataset=forex/a.jsonl", "one"))
        .await
        .unwrap();
    assert_eq!(a.etag, again.etag, "same bytes, same etag");
    b.store
        .put(put("dataset=forex/a.jsonl", "uno"))
        .await
        .unwrap();
    let got = b.store.get("dataset=forex/a.jsonl").await.unwrap().unwrap();
    assert_eq!(got.body, b"uno", "a put replaces the object");
    assert_eq!(got.metadata["record-count"], "1");
    let keys: Vec<String> = b
        .store
        .list("dataset=forex/")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["dataset=forex/a.jsonl", "dataset=forex/b.jsonl"]);
    assert_eq!(b.store.list("").await.unwrap().len(), 3);
    assert!(
        b.store
            .get("dataset=forex/missing")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        b.store.put(put("../escape", "x")).await.is_err(),
        "keys cannot climb out"
    );
}

pub async fn notifications_reach_subscribers_once(b: &Backend, c: &Conf) {
    let n = Notification {
        dedup_id: "dataset=forex/a.jsonl#etag1".into(),
        body: r#"{"Records":[{"s3":{"bucket":{"name":"conf-bucket"},"object":{"key":"dataset=forex/a.jsonl"}}}]}"#.into(),
        attributes: [("dataset".to_string(), "forex".to_string())].into(),
    };
    assert!(b.notifier.publish(n.clone()).await.unwrap());
    assert!(
        !b.notifier.publish(n.clone()).await.unwrap(),
        "same dedup id: not again"
    );
    let sub = b.queue_named(&c.subscriber);
    let got = receive_within(sub.as_ref(), c.patience).await;
    assert_eq!(got.len(), 1, "delivered once");
    let envelope: serde_json::Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(envelope["Type"], "Notification");
    let inner: serde_json::Value =
        serde_json::from_str(envelope["Message"].as_str().unwrap()).unwrap();
    assert_eq!(
        inner["Records"][0]["s3"]["object"]["key"],
        "dataset=forex/a.jsonl"
    );
    assert_eq!(envelope["MessageAttributes"]["dataset"]["Value"], "forex");
}

/// The local backend, fresh in a temporary directory.
fn local() -> (tempfile::TempDir, Backend) {
    let dir = tempfile::tempdir().unwrap();
    let b = LocalBackend::open(dir.path(), SyncMode::Normal, &names())
        .unwrap()
        .backend();
    (dir, b)
}

#[tokio::test(flavor = "multi_thread")]
async fn local_stream() {
    let (_d, b) = local();
    stream_orders_records_per_shard(&b, &local_conf()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_queue() {
    let (_d, b) = local();
    queue_hides_redelivers_and_deletes(&b, &local_conf()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_dead_letter() {
    let (_d, b) = local();
    poison_messages_move_to_the_dead_letter_queue(&b, &local_conf()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_objects() {
    let (_d, b) = local();
    objects_are_replaced_whole_and_listed_by_prefix(&b).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_notifications() {
    let (_d, b) = local();
    notifications_reach_subscribers_once(&b, &local_conf()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn local_state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let b = LocalBackend::open(dir.path(), SyncMode::Normal, &names())
            .unwrap()
            .backend();
        b.queue.send(vec![msg("kept")], None).await.unwrap();
        b.stream
            .put(
                vec![StreamRecord {
                    partition_key: "f:k".into(),
                    data: b"x".to_vec(),
                }],
                None,
            )
            .await
            .unwrap();
    }
    let b = LocalBackend::open(dir.path(), SyncMode::Normal, &names())
        .unwrap()
        .backend();
    assert_eq!(b.queue.depth().await.unwrap().total(), 1);
    let mut n = 0;
    for s in b.stream.shards().await.unwrap() {
        n += b.stream.read(&s, None, 10).await.unwrap().len();
    }
    assert_eq!(n, 1);
    // A different shard count for the same stream is refused, not ignored.
    let mut other = names();
    other.shards = 5;
    let err = LocalBackend::open(dir.path(), SyncMode::Normal, &other)
        .err()
        .unwrap();
    assert!(err.to_string().contains("3 shards on disk"), "{err}");
}

/// Forwards everything on the stream as the bridge would: a checkpoint at
/// each shard's last sequence on the bridge's queue.
async fn checkpoint_everything(b: &Backend) {
    for s in b.stream.shards().await.unwrap() {
        if let Some(last) = b.stream.latest(&s).await.unwrap() {
            let cp = Checkpoint {
                consumer: "bridge".into(),
                source: s.clone(),
                position: last,
            };
            b.queue.send(Vec::new(), Some(cp)).await.unwrap();
        }
    }
}

async fn stream_len(b: &Backend) -> usize {
    let mut n = 0;
    for s in b.stream.shards().await.unwrap() {
        n += b.stream.read(&s, None, 1000).await.unwrap().len();
    }
    n
}

#[tokio::test(flavor = "multi_thread")]
async fn local_stream_retention_keeps_each_shards_last_record() {
    let (_d, b) = local();
    let records: Vec<StreamRecord> = (0..30)
        .map(|i| StreamRecord {
            partition_key: format!("f:{i}"),
            data: vec![1],
        })
        .collect();
    b.stream.put(records, None).await.unwrap();
    checkpoint_everything(&b).await;
    let far_future = i64::MAX;
    let trimmed = b.stream.trim(far_future).await.unwrap();
    let mut left = 0;
    for s in b.stream.shards().await.unwrap() {
        let rest = b.stream.read(&s, None, 100).await.unwrap();
        assert!(rest.len() <= 1);
        if let Some(r) = rest.first() {
            assert_eq!(
                Some(r.sequence.clone()),
                b.stream.latest(&s).await.unwrap(),
                "numbering continues"
            );
        }
        left += rest.len();
    }
    assert_eq!(trimmed as usize + left, 30);
}

/// Retention never trims what the bridge has not forwarded: with the
/// bridge stopped (no checkpoint, as under `run --stages feeds`) records
/// past the retention all stay; with a checkpoint halfway, only what is
/// at or before it goes; once the bridge has forwarded everything, the
/// rest goes too (but each shard's last record).
#[tokio::test(flavor = "multi_thread")]
async fn local_stream_retention_never_trims_past_the_bridge_checkpoint() {
    let (_d, b) = local();
    let records: Vec<StreamRecord> = (0..60)
        .map(|i| StreamRecord {
            partition_key: format!("f:{i}"),
            data: format!("record {i}").into_bytes(),
        })
        .collect();
    b.stream.put(records, None).await.unwrap();
    // Aged past any retention, nothing forwarded yet.
    assert_eq!(b.stream.trim(i64::MAX).await.unwrap(), 0);
    assert_eq!(
        stream_len(&b).await,
        60,
        "nothing lost before the bridge ran"
    );
    // The bridge forwards half of one shard (two consumers: the slowest
    // one bounds the trim).
    let shard = b.stream.shards().await.unwrap()[0].clone();
    let rows = b.stream.read(&shard, None, 1000).await.unwrap();
    let half = rows[rows.len() / 2 - 1].sequence.clone();
    for (consumer, position) in [
        ("bridge", rows.last().unwrap().sequence.clone()),
        ("slow", half.clone()),
    ] {
        let cp = Checkpoint {
            consumer: consumer.into(),
            source: shard.clone(),
            position,
        };
        b.queue.send(Vec::new(), Some(cp)).await.unwrap();
    }
    let trimmed = b.stream.trim(i64::MAX).await.unwrap();
    assert_eq!(
        trimmed as usize,
        rows.len() / 2,
        "up to the slowest checkpoint"
    );
    let rest = b.stream.read(&shard, None, 1000).await.unwrap();
    assert_eq!(
        rest.first().unwrap().sequence,
        rows[rows.len() / 2].sequence
    );
    assert_eq!(stream_len(&b).await, 60 - rows.len() / 2);
    // Everything forwarded: all but each shard's last record go.
    for s in b.stream.shards().await.unwrap() {
        let last = b.stream.latest(&s).await.unwrap().unwrap();
        for consumer in ["bridge", "slow"] {
            let cp = Checkpoint {
                consumer: consumer.into(),
                source: s.clone(),
                position: last.clone(),
            };
            b.queue.send(Vec::new(), Some(cp)).await.unwrap();
        }
    }
    b.stream.trim(i64::MAX).await.unwrap();
    assert_eq!(stream_len(&b).await, b.stream.shards().await.unwrap().len());
    // Records younger than the retention stay whatever the checkpoint.
    assert_eq!(b.stream.trim(0).await.unwrap(), 0);
}

/// Two processes' backends on one database (`serve` beside `run`), each
/// putting, sending, receiving and deleting at once: no call fails with
/// SQLITE_BUSY (a deferred read-then-write transaction would, with
/// BUSY_SNAPSHOT, which the busy timeout does not retry), and every record
/// gets its own sequence number.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_backends_sharing_a_database_never_fail_busy() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        LocalBackend::open(dir.path(), SyncMode::Normal, &names())
            .unwrap()
            .backend()
    };
    let (a, b) = (open(), open());
    let mut tasks = Vec::new();
    for (n, backend) in [a.clone(), b.clone(), a, b].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                let r = StreamRecord {
                    partition_key: format!("f:{}", i % 3),
                    data: format!("{n}-{i}").into_bytes(),
                };
                backend.stream.put(vec![r], None).await?;
                backend
                    .queue
                    .send(vec![msg(&format!("{n}-{i}"))], None)
                    .await?;
                for m in backend.queue.receive(2, Duration::ZERO).await? {
                    backend.queue.delete(&[m.receipt]).await?;
                }
            }
            Ok::<_, pipehost::backend::BackendError>(())
        }));
    }
    for t in tasks {
        t.await
            .unwrap()
            .expect("no call fails while another process writes");
    }
    let b = open();
    let mut seqs = std::collections::BTreeSet::new();
    for s in b.stream.shards().await.unwrap() {
        for r in b.stream.read(&s, None, 1000).await.unwrap() {
            assert!(
                seqs.insert((s.clone(), r.sequence)),
                "one sequence per record"
            );
        }
    }
    assert_eq!(seqs.len(), 400);
}

/// Bad object keys are refused as the request's fault (not retryable), a
/// failing store call as an outage (retryable).
#[tokio::test(flavor = "multi_thread")]
async fn local_store_errors_say_whether_a_retry_can_help() {
    let (d, b) = local();
    let put = |key: &str| PutObject {
        key: key.into(),
        body: b"x".to_vec(),
        content_type: "text/plain".into(),
        content_encoding: None,
        metadata: Default::default(),
    };
    let e = b.store.put(put("a/../b")).await.unwrap_err();
    assert!(!e.is_retryable(), "{e}");
    assert!(e.to_string().contains("a/../b"), "{e}");
    // A file where the key's directory should be: the write fails.
    std::fs::create_dir_all(d.path().join("objects/conf-bucket")).unwrap();
    std::fs::write(d.path().join("objects/conf-bucket/blocked"), b"").unwrap();
    let e = b.store.put(put("blocked/key")).await.unwrap_err();
    assert!(e.is_retryable(), "{e}");
}

/// The data directory and what is in it are this user's only.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn local_state_is_private_to_its_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".pipehost");
    let b = LocalBackend::open(&data, SyncMode::Full, &names())
        .unwrap()
        .backend();
    b.store
        .put(PutObject {
            key: "dataset=x/part".into(),
            body: b"x".to_vec(),
            content_type: "text/plain".into(),
            content_encoding: None,
            metadata: Default::default(),
        })
        .await
        .unwrap();
    b.stream
        .put(
            vec![StreamRecord {
                partition_key: "f:k".into(),
                data: b"x".to_vec(),
            }],
            None,
        )
        .await
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    for f in ["pipehost.db", "pipehost.db-wal"] {
        assert_eq!(mode(&data.join(f)), 0o600, "{f}");
    }
    for d in [
        "objects",
        "objects/conf-bucket",
        "objects/conf-bucket/dataset=x",
    ] {
        assert_eq!(mode(&data.join(d)), 0o700, "{d}");
    }
    assert_eq!(
        mode(&data.join("objects/conf-bucket/dataset=x/part")),
        0o600
    );
}
