//! `pipehost lambda` through a real invocation path: the binary, started as
//! `bootstrap` the way Lambda's `provided.al2023` runtime starts it, talks
//! HTTP to a local implementation of the Lambda Runtime API (below), which
//! serves it SQS events the way an event source mapping builds them from
//! the queue on the moto server; the function stores to S3 and publishes
//! to SNS on moto, and its `batchItemFailures` decide, as
//! ReportBatchItemFailures does, which messages are deleted and which come
//! back (and, past `maxReceiveCount`, move to the dead-letter queue).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use pipehost::wire::message::{BatchMessage, MessageRecord, VERSION};
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::aws::{
    bucket_objects, drain_queue, moto, pipehost_env, queue_url, sdk, setup, unique,
    write_aws_pipeline,
};
use crate::util::{Spawned, cache_dir};

/// What the function answered to one invocation.
#[derive(Debug)]
enum Answer {
    Response(Value),
    Error(Value),
}

struct Invocation {
    request_id: String,
    event: Value,
    answer: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct ApiState {
    /// Invocations waiting for the function's next `GET …/next`.
    next: Mutex<Option<mpsc::Receiver<Invocation>>>,
    /// Invocations handed out and not yet answered.
    open: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    init_errors: Mutex<Vec<Value>>,
}

/// The Lambda Runtime API (2018-06-01), as much as a runtime client uses:
/// `next` (a long poll), `response`, `error` and `init/error`.
struct RuntimeApi {
    addr: SocketAddr,
    state: Arc<ApiState>,
    invocations: mpsc::Sender<Invocation>,
    requests: std::sync::atomic::AtomicU64,
}

async fn next(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    let inv = {
        let mut guard = s.next.lock().await;
        match guard.as_mut() {
            Some(rx) => rx.recv().await,
            None => None,
        }
    };
    let Some(inv) = inv else {
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000;
    let mut headers = HeaderMap::new();
    let h = |v: &str| HeaderValue::from_str(v).unwrap();
    headers.insert("lambda-runtime-aws-request-id", h(&inv.request_id));
    headers.insert("lambda-runtime-deadline-ms", h(&deadline.to_string()));
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        h("arn:aws:lambda:us-east-1:123456789012:function:pipehost-test"),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        h("Root=1-00000000-000000000000000000000000"),
    );
    headers.insert("content-type", h("application/json"));
    s.open
        .lock()
        .await
        .insert(inv.request_id.clone(), inv.answer);
    (StatusCode::OK, headers, inv.event.to_string())
}

async fn answer(s: &ApiState, id: &str, a: Answer) -> StatusCode {
    match s.open.lock().await.remove(id) {
        Some(tx) => {
            let _ = tx.send(a);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn response(
    State(s): State<Arc<ApiState>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    answer(&s, &id, Answer::Response(v)).await
}

async fn error(
    State(s): State<Arc<ApiState>>,
    UrlPath(id): UrlPath<String>,
    body: String,
) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    answer(&s, &id, Answer::Error(v)).await
}

async fn init_error(State(s): State<Arc<ApiState>>, body: String) -> StatusCode {
    let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
    s.init_errors.lock().await.push(v);
    StatusCode::ACCEPTED
}

impl RuntimeApi {
    async fn start() -> Self {
        let (tx, rx) = mpsc::channel(1);
        let state = Arc::new(ApiState {
            next: Mutex::new(Some(rx)),
            ..ApiState::default()
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            addr,
            state,
            invocations: tx,
            requests: Default::default(),
        }
    }

    /// Invokes the function with `event` and waits for its answer.
    async fn invoke(&self, event: Value, patience: Duration) -> Answer {
        let n = self
            .requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.invocations
            .send(Invocation {
                request_id: format!("req-{n}"),
                event,
                answer: tx,
            })
            .await
            .unwrap();
        match tokio::time::timeout(patience, rx).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => panic!("invocation req-{n} was dropped unanswered"),
            Err(_) => panic!(
                "the function did not answer invocation req-{n} within {patience:?} (init errors: {:?})",
                self.state.init_errors.lock().await
            ),
        }
    }
}

/// The SQS event an event source mapping delivers for received messages.
fn sqs_event(messages: &[aws_sdk_sqs::types::Message], queue_arn: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: BTreeMap<String, String> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_string(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let message_attributes: BTreeMap<String, Value> = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| {
                            (
                                k.clone(),
                                json!({
                                    "stringValue": v.string_value(),
                                    "stringListValues": [],
                                    "binaryListValues": [],
                                    "dataType": v.data_type(),
                                }),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    json!({ "Records": records })
}

fn batch(stream: &str, shard: &str, first: u64, feed: &str, lines: &[&str]) -> String {
    let records: Vec<MessageRecord> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| MessageRecord {
            seq: format!("{:020}", first + i as u64),
            key: format!("{feed}:k{i}").into(),
            t: 1_795_000_000_000,
            data: Some(l.to_string()),
            b64: None,
        })
        .collect();
    BatchMessage {
        v: VERSION,
        stream: stream.into(),
        shard: shard.into(),
        first_seq: records[0].seq.clone(),
        last_seq: records.last().unwrap().seq.clone(),
        records,
    }
    .encode()
}

const FOREX: [&str; 3] = [
    r#"{"pair":"EUR/USD","bid":1.08412,"ask":1.08431,"ts":"2026-11-23T08:00:00.123Z","venue":"EBS"}"#,
    r#"{"pair":"USD/JPY","bid":151.2,"ask":151.3,"ts":"2026-11-23T08:00:01Z","venue":"EBS"}"#,
    r#"{"pair":"GBP/USD","bid":1.2655,"ask":1.2656,"ts":"2026-11-23T08:00:02Z","venue":"LMAX"}"#,
];
const NEWS: &str = r#"ts=2026-11-23T08:00:00Z id=n-1 source=AP symbols=AAPL headline="Apple up""#;
/// Routed by the news parser's partition key (`TRAP`) to the hostile
/// transform's panic.
const NEWS_TRAP: &str = r#"ts=2026-11-23T08:00:00Z id=n-2 source=AP symbols=trap headline="boom""#;

#[tokio::test(flavor = "multi_thread")]
async fn lambda_reports_exactly_the_poisoned_messages_and_sqs_dead_letters_them() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let name = unique("lambda");
    let feeds = r#"
[feeds.forex]
parser = { plugin = "forex_parser" }
transforms = [{ plugin = "forex_transform" }]

[feeds.news]
parser = { plugin = "news_parser" }
transforms = [{ plugin = "hostile" }]
"#;
    let path = write_aws_pipeline(dir.path(), &name, feeds, "", moto);
    setup(&path);
    let conf = sdk(moto).await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let queue = format!("{name}-batches");
    let url = queue_url(&sqs, &queue).await;
    let arn = format!("arn:aws:sqs:us-east-1:123456789012:{queue}");

    // Three batches that must succeed (one of them with a malformed line,
    // which goes to the error prefix and does not fail the batch), and
    // three poisoned ones.
    let good = [
        batch(&name, "shardId-000000000000", 1, "forex", &FOREX[..2]),
        batch(&name, "shardId-000000000001", 5, "news", &[NEWS]),
        batch(
            &name,
            "shardId-000000000002",
            9,
            "forex",
            &[FOREX[2], "{not json"],
        ),
    ];
    let poison = [
        "this is not a pipehost batch message".to_string(),
        batch(&name, "shardId-000000000000", 90, "forex", &FOREX[..1])
            .replace("\"v\":1", "\"v\":99"),
        batch(&name, "shardId-000000000001", 95, "news", &[NEWS_TRAP]),
    ];
    let mut kind: HashMap<String, bool> = HashMap::new(); // message id -> poisoned
    for (body, poisoned) in good
        .iter()
        .map(|b| (b, false))
        .chain(poison.iter().map(|b| (b, true)))
    {
        let out = sqs
            .send_message()
            .queue_url(&url)
            .message_body(body)
            .send()
            .await
            .unwrap();
        kind.insert(out.message_id().unwrap().to_string(), poisoned);
    }

    // The function, started the way Lambda starts a custom runtime.
    let api = RuntimeApi::start().await;
    let bootstrap = dir.path().join("bootstrap");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pipehost"), &bootstrap).unwrap();
    let mut cmd = Command::new(&bootstrap);
    pipehost_env(&mut cmd)
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("{name}-processor"))
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("LAMBDA_TASK_ROOT", dir.path())
        .env_remove("PIPEHOST_PIPELINE")
        .env("PIPEHOST_CACHE_DIR", cache_dir())
        .env("RUST_LOG", "pipehost=info");
    let function = Spawned::spawn(cmd);

    // The event source mapping: receive up to 10, invoke, delete what the
    // response does not list; the listed ones come back after the
    // visibility timeout (1 s here) until max_receives (3) sends them to
    // the dead-letter queue.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut succeeded: BTreeSet<String> = BTreeSet::new();
    let mut failures_seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut invocations = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "not settled in 90 s: succeeded {succeeded:?}, failures {failures_seen:?}\n{}",
            function.log()
        );
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let messages = out.messages().to_vec();
        if messages.is_empty() {
            let visible_or_not = queue_total(&sqs, &url).await;
            if visible_or_not == 0 {
                break;
            }
            continue;
        }
        invocations += 1;
        let answer = api
            .invoke(sqs_event(&messages, &arn), Duration::from_secs(60))
            .await;
        let resp = match answer {
            Answer::Response(r) => r,
            Answer::Error(e) => panic!("the invocation failed as a whole: {e}\n{}", function.log()),
        };
        let failed: BTreeSet<String> = resp["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("no batchItemFailures in {resp}"))
            .iter()
            .map(|f| f["itemIdentifier"].as_str().unwrap().to_string())
            .collect();
        let expected: BTreeSet<String> = messages
            .iter()
            .map(|m| m.message_id().unwrap().to_string())
            .filter(|id| kind[id])
            .collect();
        assert_eq!(
            failed, expected,
            "batchItemFailures must list exactly the poisoned messages of the event"
        );
        for m in &messages {
            let id = m.message_id().unwrap().to_string();
            if failed.contains(&id) {
                *failures_seen.entry(id).or_default() += 1;
            } else {
                succeeded.insert(id);
                sqs.delete_message()
                    .queue_url(&url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    let good_ids: BTreeSet<String> = kind
        .iter()
        .filter(|(_, p)| !**p)
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(succeeded, good_ids, "every good batch succeeded");
    assert!(
        failures_seen.len() == 3 && failures_seen.values().all(|n| *n == 3),
        "each poisoned message failed once per receive, max_receives (3) times: {failures_seen:?}"
    );

    // SQS moved the poisoned messages to the dead-letter queue.
    let mut dead = drain_queue(moto, &format!("{queue}-dlq")).await;
    dead.sort();
    let mut want: Vec<String> = poison.to_vec();
    want.sort();
    assert_eq!(
        dead, want,
        "the dead-letter queue holds exactly the poisoned messages"
    );

    // The good batches' output: events, and the malformed line with its reason.
    let objects = bucket_objects(moto, &name).await;
    let data: Vec<&String> = objects
        .iter()
        .filter(|(k, _)| k.starts_with("dataset="))
        .map(|(_, v)| v)
        .collect();
    let events: usize = data.iter().map(|v| v.lines().count()).sum();
    assert_eq!(events, 4, "3 forex quotes and 1 article: {objects:#?}");
    let errors: Vec<&String> = objects
        .iter()
        .filter(|(k, _)| k.starts_with("errors/"))
        .map(|(_, v)| v)
        .collect();
    assert_eq!(errors.len(), 1, "{objects:#?}");
    assert!(
        errors[0].contains("{not json") && errors[0].contains("\"stage\":\"parse\""),
        "{}",
        errors[0]
    );
    let notes = drain_queue(moto, &format!("{name}-object-events")).await;
    assert_eq!(notes.len(), objects.len(), "one notification per object");

    // A redelivered good batch (at-least-once) overwrites its objects and
    // does not notify again.
    sqs.send_message()
        .queue_url(&url)
        .message_body(&good[0])
        .send()
        .await
        .unwrap();
    let out = sqs
        .receive_message()
        .queue_url(&url)
        .max_number_of_messages(10)
        .wait_time_seconds(5)
        .send()
        .await
        .unwrap();
    assert_eq!(out.messages().len(), 1);
    let Answer::Response(resp) = api
        .invoke(sqs_event(out.messages(), &arn), Duration::from_secs(60))
        .await
    else {
        panic!("redelivery failed\n{}", function.log());
    };
    assert_eq!(resp["batchItemFailures"], json!([]), "{resp}");
    assert_eq!(
        bucket_objects(moto, &name).await.keys().collect::<Vec<_>>(),
        objects.keys().collect::<Vec<_>>()
    );
    assert!(
        drain_queue(moto, &format!("{name}-object-events"))
            .await
            .is_empty(),
        "a redelivered batch does not notify twice"
    );

    let (_, log) = function.terminate();
    assert!(log.contains("pipehost lambda ready"), "{log}");
    assert!(
        log.contains("hostile"),
        "the plugin trap is reported: {log}"
    );
    eprintln!(
        "lambda: {invocations} invocations, {} objects",
        objects.len()
    );
}

/// A panic while processing fails that message only: the execution
/// environment goes on, and the message's redelivery is processed with
/// fresh plugin instances (the panic took the old ones with it).
#[tokio::test(flavor = "multi_thread")]
async fn lambda_survives_a_panic_with_fresh_plugin_instances() {
    let Some(moto) = moto() else { return };
    let dir = tempfile::tempdir().unwrap();
    let name = unique("lpanic");
    let feeds = r#"
[feeds.forex]
parser = { plugin = "forex_parser" }
transforms = [{ plugin = "forex_transform" }]
"#;
    let path = write_aws_pipeline(dir.path(), &name, feeds, "", moto);
    setup(&path);
    let conf = sdk(moto).await;
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let queue = format!("{name}-batches");
    let url = queue_url(&sqs, &queue).await;
    let arn = format!("arn:aws:sqs:us-east-1:123456789012:{queue}");
    let body = batch(&name, "shardId-000000000000", 1, "forex", &FOREX);
    sqs.send_message()
        .queue_url(&url)
        .message_body(&body)
        .send()
        .await
        .unwrap();

    let api = RuntimeApi::start().await;
    let bootstrap = dir.path().join("bootstrap");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_pipehost"), &bootstrap).unwrap();
    let mut cmd = Command::new(&bootstrap);
    pipehost_env(&mut cmd)
        .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", format!("{name}-processor"))
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("LAMBDA_TASK_ROOT", dir.path())
        .env_remove("PIPEHOST_PIPELINE")
        .env("PIPEHOST_CACHE_DIR", cache_dir())
        .env("PIPEHOST_PANIC_AT", "process")
        .env("RUST_LOG", "pipehost=info");
    let function = Spawned::spawn(cmd);

    // First delivery: the panic fails it; the redelivery (after the 1 s
    // visibility timeout) succeeds in the same environment.
    let mut failures = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "not stored in 60 s; failures {failures:?}\n{}",
            function.log()
        );
        let out = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        if out.messages().is_empty() {
            continue;
        }
        let Answer::Response(resp) = api
            .invoke(sqs_event(out.messages(), &arn), Duration::from_secs(60))
            .await
        else {
            panic!("the invocation failed as a whole\n{}", function.log());
        };
        if resp["batchItemFailures"] == json!([]) {
            break;
        }
        failures.push(resp);
    }
    assert_eq!(
        failures.len(),
        1,
        "only the panicking delivery failed: {failures:?}"
    );
    let objects = bucket_objects(moto, &name).await;
    let events: usize = objects
        .iter()
        .filter(|(k, _)| k.starts_with("dataset="))
        .map(|(_, v)| v.lines().count())
        .sum();
    assert_eq!(events, 3, "{objects:#?}");
    let (_, log) = function.terminate();
    assert!(log.contains("processing panicked"), "{log}");
}

/// Messages in the queue, visible or in flight.
async fn queue_total(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .unwrap();
    let attrs = out.attributes().unwrap();
    [
        A::ApproximateNumberOfMessages,
        A::ApproximateNumberOfMessagesNotVisible,
    ]
    .iter()
    .map(|a| {
        attrs
            .get(a)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    })
    .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn lambda_without_the_runtime_environment_says_what_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_pipehost"))
        .args(["lambda", "pipeline.toml"])
        .env_remove("AWS_LAMBDA_RUNTIME_API")
        .env_remove("AWS_LAMBDA_FUNCTION_NAME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("AWS_LAMBDA_RUNTIME_API") && err.contains("missing"),
        "{err}"
    );
}
