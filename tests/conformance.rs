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
