//! The web server against a real `pipehost serve` / `pipehost run` on a
//! loopback port: every route and every error status, TLS, the request log
//! in SQLite (PostgreSQL's is `requestlog.rs`), readiness while the stream
//! is unreachable, and ingested lines processed end to end.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use pipehost::backend::StreamRecord;
use pipehost::wire::aggregate;

use crate::pipeline::{
    audit, count, local_backend, objects, run_to_end, write_pipeline, write_pipeline_with,
};
use crate::util::{Spawned, cache_dir, wait_for};

pub(crate) const KEY: &str = "test-key-1";

/// A `pipehost serve|run` child whose stderr lines are collected.
pub(crate) struct Server {
    pub(crate) proc: Spawned,
    pub(crate) addr: String,
}

impl Server {
    pub(crate) fn start(command: &str, pipeline: &Path, args: &[&str]) -> Self {
        Self::start_with(command, pipeline, args, &[])
    }

    pub(crate) fn start_with(
        command: &str,
        pipeline: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pipehost"));
        cmd.arg(command)
            .arg(pipeline)
            .args(args)
            .envs(env.iter().copied())
            .env("PIPEHOST_CACHE_DIR", cache_dir())
            .env("WEB_TEST_KEYS", format!("other-key,{KEY}"))
            .env_remove("RUST_LOG");
        let mut server = Self {
            proc: Spawned::spawn(cmd),
            addr: String::new(),
        };
        let found = wait_for(Duration::from_secs(120), || {
            server.find_addr().is_some() || server.proc.child.try_wait().unwrap().is_some()
        });
        server.addr = server
            .find_addr()
            .filter(|_| found)
            .unwrap_or_else(|| panic!("no web server address:\n{}", server.log()));
        server
    }

    fn find_addr(&self) -> Option<String> {
        self.proc.stderr.lock().unwrap().iter().find_map(|l| {
            l.split_once("web server on ")
                .map(|(_, a)| a.trim().split("://").nth(1).unwrap().to_string())
        })
    }

    pub(crate) fn log(&self) -> String {
        self.proc.log()
    }

    /// SIGTERM; the exit must be clean. Returns stdout.
    pub(crate) fn stop(self) -> String {
        let (out, log) = self.proc.terminate();
        assert!(
            out.status.success(),
            "graceful exit: {:?}\n{log}",
            out.status
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn get(&self, path: &str) -> Response {
        request(&self.addr, "GET", path, &[], b"")
    }

    pub(crate) fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        request(&self.addr, "POST", path, headers, body)
    }
}

#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    headers: String,
    pub body: String,
}

impl Response {
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

/// One HTTP/1.1 exchange on `stream` (Connection: close).
fn exchange(
    mut stream: impl Read + Write,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    // The server may answer (413, 401) before reading the whole body.
    let _ = stream.write_all(body);
    let _ = stream.flush();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = head.to_ascii_lowercase();
    let body = if headers.contains("transfer-encoding: chunked") {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 {
                break;
            }
            out.push_str(&tail[..n]);
            rest = &tail[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    Response {
        status,
        headers,
        body,
    }
}

fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    exchange(s, addr, method, path, headers, body)
}

pub(crate) fn auth() -> (&'static str, String) {
    ("Authorization", format!("Bearer {KEY}"))
}

/// Stream records whose partition key starts with `prefix`, as stored:
/// (key, data), aggregated records whole.
pub(crate) fn raw_stream_records(state: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let db = rusqlite::Connection::open(state.join("pipehost.db")).unwrap();
    let mut st = db
        .prepare("SELECT partition_key, data FROM stream_records WHERE partition_key LIKE ?1 ORDER BY shard, seq")
        .unwrap();
    st.query_map([format!("{prefix}%")], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The lines on the stream under keys starting with `prefix`: (key, line),
/// aggregated records unpacked.
fn stream_records(state: &Path, prefix: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (key, data) in raw_stream_records(state, prefix) {
        let lines = if aggregate::is_aggregate(&data) {
            aggregate::decode(&data).unwrap()
        } else {
            vec![&data[..]]
        };
        out.extend(
            lines
                .into_iter()
                .map(|l| (key.clone(), String::from_utf8_lossy(l).into_owned())),
        );
    }
    out
}

pub(crate) fn web_section(extra: &str) -> String {
    format!("\n[web]\nlisten = \"127.0.0.1:0\"\nkeys_env = \"WEB_TEST_KEYS\"\n{extra}\n")
}

pub(crate) fn quote(venue: &str, i: usize) -> String {
    format!(
        r#"{{"pair":"EUR/USD","bid":1.{:04},"ask":1.{:04},"ts":"2026-11-23T08:00:00.000Z","venue":"{venue}"}}"#,
        1000 + i,
        1002 + i
    )
}

#[test]
fn serve_answers_every_route_and_every_error_status() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let pipeline = write_pipeline(
        dir.path(),
        "{}",
        &web_section(
            "body_limit = \"64KiB\"\nheader_limit = \"8KiB\"\nrequest_timeout = \"2s\"\nmax_logs_records = 500",
        ),
    );
    let server = Server::start("serve", &pipeline, &[]);
    let auth = auth();
    let auth = [(auth.0, auth.1.as_str())];

    // Liveness, readiness, metrics: open.
    let r = server.get("/healthz");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let r = server.get("/readyz");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["checks"]["stream"], "ok");

    // Ingest: three lines (CRLF, a blank line) under one partition key.
    let body = format!(
        "{}\r\n{}\n\n{}\n",
        quote("WEB-A", 1),
        quote("WEB-A", 2),
        quote("WEB-A", 3)
    );
    let r = server.post(
        "/v1/feeds/forex/records",
        &[auth[0], ("X-Partition-Key", "EUR/USD")],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["accepted"], 3);
    assert_eq!(r.json()["feed"], "forex");
    // Stored before the answer: no waiting needed.
    let stored: Vec<String> = stream_records(&state, "forex:EUR/USD")
        .into_iter()
        .filter(|(_, d)| d.contains("WEB-A"))
        .map(|(_, d)| d)
        .collect();
    assert_eq!(stored, [1, 2, 3].map(|i| quote("WEB-A", i)));
    // (The forex generator writes its own records under the same key.)
    let raw = raw_stream_records(&state, "forex:EUR/USD");
    let aggregated: Vec<_> = raw
        .iter()
        .filter(|(_, d)| {
            aggregate::decode(d).is_ok_and(|lines| {
                lines
                    .iter()
                    .any(|l| String::from_utf8_lossy(l).contains("WEB-A"))
            })
        })
        .collect();
    assert_eq!(aggregated.len(), 1, "one aggregated record for the request");
    assert_eq!(aggregate::lines_in(&aggregated[0].1), 3);
    // ?key= and X-Api-Key; without a key the lines spread by content.
    let r = server.post(
        "/v1/feeds/stock/records?key=ACME",
        &[("X-Api-Key", KEY)],
        b"ACME,2026-11-23T08:00:00Z,10.5,100",
    );
    assert_eq!((r.status, r.json()["accepted"].clone()), (202, 1.into()));
    let raw = raw_stream_records(&state, "stock:ACME");
    assert_eq!(raw.len(), 1);
    assert_eq!(
        raw[0].1, b"ACME,2026-11-23T08:00:00Z,10.5,100",
        "a lone line stays a plain record"
    );
    for request in 0..8 {
        let many: String = (0..5)
            .map(|i| quote("SPREAD", request * 5 + i) + "\n")
            .collect();
        let r = server.post("/v1/feeds/forex/records", &auth, many.as_bytes());
        assert_eq!(r.status, 202, "{}", r.body);
    }
    let spread: Vec<_> = stream_records(&state, "forex:")
        .into_iter()
        .filter(|(_, d)| d.contains("SPREAD"))
        .collect();
    assert_eq!(spread.len(), 40);
    let keys: std::collections::BTreeSet<_> = spread.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys.len(), 8, "content-derived keys differ per request");

    // Bad input: 400 naming the problem.
    let r = server.post("/v1/feeds/crypto/records", &auth, b"x");
    assert_eq!(r.status, 400);
    assert!(
        r.error().contains("unknown feed \"crypto\"") && r.error().contains("forex, news, stock"),
        "{}",
        r.body
    );
    let r = server.post("/v1/feeds/forex/records", &auth, b"");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("empty body"), "{}", r.body);
    let r = server.post("/v1/feeds/forex/records", &auth, b"\n \r\n");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("only blank lines"), "{}", r.body);
    let r = server.post("/v1/feeds/forex/records", &auth, b"ok line\n\xff\xfe bad");
    assert_eq!(r.status, 400);
    assert!(
        r.error().contains("not valid UTF-8 (at byte 8)"),
        "{}",
        r.body
    );

    // Keys: 401 without, 403 wrong; checked before the feed or body.
    let r = server.post("/v1/feeds/forex/records", &[], b"x");
    assert_eq!(r.status, 401);
    assert!(r.error().contains("missing API key"), "{}", r.body);
    let r = server.post(
        "/v1/feeds/forex/records",
        &[("Authorization", "Bearer nope")],
        b"x",
    );
    assert_eq!((r.status, r.error()), (403, "invalid API key".to_string()));

    // Limits: 413 past body_limit (declared, and streamed without a length).
    // Declared: answered from the header alone (the body is never sent).
    let big = vec![b'a'; 64 * 1024 + 1];
    let r = server.post(
        "/v1/feeds/forex/records",
        &[auth[0], ("Content-Length", "65537")],
        b"",
    );
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(
        r.error().contains("web.body_limit (65536 bytes)"),
        "{}",
        r.body
    );
    let mut chunked = format!("{:x}\r\n", big.len()).into_bytes();
    chunked.extend_from_slice(&big);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let r = server.post(
        "/v1/feeds/forex/records",
        &[auth[0], ("Transfer-Encoding", "chunked")],
        &chunked,
    );
    assert_eq!(r.status, 413, "{}", r.body);
    // 431 past header_limit.
    let huge = "h".repeat(10 * 1024);
    let r = request(
        &server.addr,
        "GET",
        "/healthz",
        &[("X-Huge", huge.as_str())],
        b"",
    );
    assert_eq!(r.status, 431, "{r:?}");
    // 408 when the body does not arrive within request_timeout.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    write!(
        s,
        "POST /v1/feeds/forex/records HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nContent-Length: 100\r\n\r\nonly part"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.read_to_end(&mut raw);
    let r = parse_response(&raw);
    assert_eq!(r.status, 408, "{r:?}");
    assert!(r.error().contains("web.request_timeout"), "{}", r.body);

    // Routing: 404 and 405, as JSON.
    let r = server.get("/nope");
    assert_eq!((r.status, r.error()), (404, "no such route".to_string()));
    let r = server.get("/v1/feeds/forex/records");
    assert_eq!(r.status, 405);
    assert!(r.error().contains("method not allowed"), "{}", r.body);

    // GET /logs: a batch from every generator, on the stream and in the answer.
    let r = server.get("/logs");
    assert_eq!(r.status, 401);
    let before = stream_records(&state, "forex:").len();
    let r = request(&server.addr, "GET", "/logs", &auth, b"");
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    for (feed, n) in [("forex", 40), ("stock", 40), ("news", 10)] {
        assert_eq!(j["feeds"][feed]["records"], n, "{feed}: {}", r.body);
        assert_eq!(j["feeds"][feed]["lines"].as_array().unwrap().len(), n);
    }
    let first = j["feeds"]["forex"]["lines"][0]
        .as_str()
        .unwrap()
        .to_string();
    let after = stream_records(&state, "forex:");
    assert!(after.len() >= before + 40);
    assert!(
        after.iter().any(|(_, d)| *d == first),
        "{first} on the stream"
    );
    let r = request(&server.addr, "GET", "/logs?feed=news&records=3", &auth, b"");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["feeds"]["news"]["records"], 3);
    assert!(r.json()["feeds"].get("forex").is_none());
    let r = request(&server.addr, "GET", "/logs?records=501", &auth, b"");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("web.max_logs_records"), "{}", r.body);
    let r = request(&server.addr, "GET", "/logs?feed=crypto", &auth, b"");
    assert_eq!(r.status, 400);
    assert!(r.error().contains("unknown feed"), "{}", r.body);

    // Metrics: records per stage, HTTP, group commits, plugin latency.
    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(
        r.headers.contains("content-type: text/plain"),
        "{}",
        r.headers
    );
    for name in [
        "pipehost_records_ingested_total",
        "pipehost_records_generated_total",
        "pipehost_errors_total{kind=\"backend\"}",
        "pipehost_objects_written_total",
        "pipehost_notifications_sent_total",
        "pipehost_queue_depth",
        "pipehost_stream_lag_records",
        "pipehost_http_requests_total{method=\"POST\",route=\"/v1/feeds/{feed}/records\",status=\"202\"}",
        "pipehost_http_request_seconds_bucket",
        "pipehost_ingest_commit_records_bucket",
        "pipehost_plugin_call_seconds_bucket{role=\"generator\",feed=\"forex\"",
    ] {
        assert!(r.body.contains(name), "{name} missing from:\n{}", r.body);
    }

    // The request log: one row per request, written off the request path.
    let requests = state.join("requests.db");
    let rows = |sql: &str| -> i64 {
        rusqlite::Connection::open(&requests)
            .and_then(|db| db.query_row(sql, [], |r| r.get(0)))
            .unwrap_or(0)
    };
    assert!(
        wait_for(Duration::from_secs(30), || {
            rows(
            "SELECT COUNT(*) FROM request_log WHERE method = 'POST' AND path = '/v1/feeds/forex/records'
             AND status = 202 AND records = 3 AND client LIKE '127.0.0.1:%' AND latency_us > 0"
        ) == 1
        }),
        "the 202 with 3 records is logged"
    );
    assert!(wait_for(Duration::from_secs(30), || rows(
        "SELECT COUNT(*) FROM request_log WHERE status = 401"
    ) == 2));
    assert_eq!(
        rows("SELECT COUNT(*) FROM request_log WHERE status = 413"),
        2
    );

    // (Not ready and 503 when the stream fails: web::tests, with a failing
    // stream behind the same server.)

    let summary = server.stop();
    assert!(summary.contains("through the web server"), "{summary}");
}

#[test]
fn run_processes_ingested_lines_end_to_end_and_enabled_false_turns_the_server_off() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // An ingest-only feed: no generator.
    let feeds = r#"
[feeds.forex]
parser = { plugin = "forex_parser" }
transforms = [{ plugin = "forex_transform" }]
"#;
    let pipeline = write_pipeline_with(dir.path(), feeds, &web_section(""));
    let server = Server::start("run", &pipeline, &["--quiet", "--no-watch"]);
    let mut sent = 0;
    for batch in 0..5 {
        let mut body: String = (0..20)
            .map(|i| quote("E2E", batch * 20 + i) + "\n")
            .collect();
        if batch == 2 {
            body.push_str("not a quote\n");
        }
        let n = body.lines().count();
        let (k, v) = auth();
        let r = server.post(
            "/v1/feeds/forex/records",
            &[(k, v.as_str())],
            body.as_bytes(),
        );
        assert_eq!(
            (r.status, r.json()["accepted"].as_u64()),
            (202, Some(n as u64))
        );
        sent += n;
    }
    // Every line stored (one event or one error line each), and nothing
    // left in the queue. (Requests land on different shards, whose batches
    // close at different times: some stored objects alone prove nothing.)
    let stored = || -> usize { objects(&state).values().map(|b| b.lines().count()).sum() };
    assert!(
        wait_for(Duration::from_secs(60), || stored() == sent
            && count(
                &state,
                "SELECT COUNT(*) FROM queue_messages WHERE queue = 'e2e-batches'"
            ) == 0),
        "{} of {sent} lines stored\n{}",
        stored(),
        server.log()
    );
    let summary = server.stop();
    assert!(
        summary.contains(&format!("0 records ({sent} more through the web server)")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("processed   {sent} records")),
        "{summary}"
    );
    let a = audit(&state);
    assert_eq!(a.records, sent);
    assert_eq!(a.error_lines, 1, "the bad line is an error record");

    // `enabled = false`: the section stays, the server does not start.
    std::fs::write(
        &pipeline,
        std::fs::read_to_string(&pipeline)
            .unwrap()
            .replace("[web]\n", "[web]\nenabled = false\n"),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pipehost"))
        .args(["run", "--quiet", "--no-watch", "--duration", "300ms"])
        .arg(&pipeline)
        .env("PIPEHOST_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("web server on"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_pipehost"))
        .arg("serve")
        .arg(&pipeline)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a [web] section"),
        "{out:?}"
    );
}

#[test]
fn ingested_requests_are_aggregated_and_every_line_is_processed_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let feeds = r#"
[feeds.forex]
parser = { plugin = "forex_parser" }
transforms = [{ plugin = "forex_transform" }]
"#;
    let pipeline = write_pipeline_with(dir.path(), feeds, &web_section("body_limit = \"3MiB\""));
    let server = Server::start("serve", &pipeline, &[]);
    let (k, v) = auth();
    let post = |headers: &[(&str, &str)], body: &str| {
        let mut all = vec![(k, v.as_str())];
        all.extend_from_slice(headers);
        let r = server.post("/v1/feeds/forex/records", &all, body.as_bytes());
        assert_eq!(r.status, 202, "{}", r.body);
        r.json()["accepted"].as_u64().unwrap() as usize
    };
    let mut lines = 0;
    // 100 lines under one key, the 38th (index 37) malformed.
    let body: String = (0..100)
        .map(|i| match i {
            37 => "not a quote, line 37\n".to_string(),
            _ => quote("AGG-KEYED", i) + "\n",
        })
        .collect();
    lines += post(&[("X-Partition-Key", "EUR/USD")], &body);
    // Requests keyed by their content.
    for request in 0..5 {
        let body: String = (0..50)
            .map(|i| quote("AGG-SPREAD", request * 50 + i) + "\n")
            .collect();
        lines += post(&[], &body);
    }
    // A body past the 1 MiB record cap: several aggregated records.
    // (Indices wrap before quote() would write a crossed quote.)
    let big: String = (0..12_000)
        .map(|i| quote("AGG-BIG", i % 8000) + "\n")
        .collect();
    assert!(big.len() > 1 << 20);
    lines += post(&[("X-Partition-Key", "big")], &big);
    // A lone line.
    lines += post(&[], &quote("AGG-ONE", 1));
    assert_eq!(lines, 100 + 250 + 12_000 + 1);
    server.stop();

    let keyed = raw_stream_records(&state, "forex:EUR/USD");
    assert_eq!(keyed.len(), 1, "one stream record for the request");
    assert_eq!(aggregate::lines_in(&keyed[0].1), 100);
    let big_records = raw_stream_records(&state, "forex:big");
    assert_eq!(
        big_records.len(),
        2,
        "12,000 lines of ~95 bytes: two records"
    );
    assert!(
        big_records
            .iter()
            .all(|(_, d)| aggregate::is_aggregate(d) && d.len() <= aggregate::MAX_RECORD_BYTES)
    );
    assert_eq!(
        raw_stream_records(&state, "forex:").len(),
        1 + 5 + 2 + 1,
        "a record per request (two for the big one)"
    );

    // A corrupt aggregate on the stream (a flipped bit) must not be lost.
    let mut corrupt = aggregate::pack(
        [quote("AGG-CORRUPT", 1), quote("AGG-CORRUPT", 2)]
            .iter()
            .map(|l| l.as_bytes()),
        200,
        aggregate::MAX_RECORD_BYTES,
    )
    .remove(0)
    .data;
    *corrupt.last_mut().unwrap() ^= 0x20;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        local_backend(&state)
            .stream
            .put(
                vec![StreamRecord {
                    partition_key: "forex:corrupt".into(),
                    data: corrupt.clone(),
                }],
                None,
            )
            .await
            .unwrap()
    });

    // The rest of the pipeline, to the end of what is on the stream.
    let stdout = run_to_end(&pipeline, 0);
    assert!(
        stdout.contains(&format!("processed   {} records", lines + 2)),
        "every line, and the corrupt aggregate as the two its header claims: {stdout}"
    );
    let a = audit(&state);
    assert_eq!(a.records, lines + 1, "{a:?}");
    assert_eq!(a.error_lines, 2, "{a:?}");
    assert_eq!(a.events, lines - 1, "{a:?}");

    let errors: Vec<serde_json::Value> = objects(&state)
        .iter()
        .filter(|(k, _)| k.starts_with("errors/"))
        .flat_map(|(_, body)| {
            body.lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let bad = errors
        .iter()
        .find(|e| e["stage"] == "parse")
        .expect("the malformed line");
    assert_eq!(bad["data"], "not a quote, line 37");
    assert_eq!(bad["source"]["partition_key"], "EUR/USD");
    assert_eq!(bad["source"]["feed"], "forex");
    let seq = bad["source"]["sequence"].as_str().unwrap();
    let (record, sub) = seq.split_once(':').expect("a sub-sequence");
    assert_eq!(sub, "37", "{bad}");
    assert_eq!(record.len(), 20, "the stream record's sequence: {bad}");
    let unpack = errors
        .iter()
        .find(|e| e["stage"] == "unpack")
        .expect("the corrupt aggregate");
    assert!(
        unpack["reason"].as_str().unwrap().contains("checksum"),
        "{unpack}"
    );
    assert!(
        unpack["source"]["sequence"]
            .as_str()
            .unwrap()
            .find(':')
            .is_none()
    );
    assert_eq!(unpack["source"]["partition_key"], "corrupt");
}

/// A self-signed certificate for `localhost` and 127.0.0.1, as PEM files.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.cert.pem()).unwrap();
    std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
    (c, k, cert.cert.der().to_vec())
}

fn tls_request(
    addr: &str,
    cert_der: &[u8],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(cert_der.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    exchange(
        rustls::StreamOwned::new(conn, tcp),
        "localhost",
        method,
        path,
        headers,
        body,
    )
}

#[test]
fn tls_serves_https_with_the_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, der) = self_signed(dir.path());
    let pipeline = write_pipeline(
        dir.path(),
        "{}",
        &web_section("tls = { cert = \"cert.pem\", key = \"key.pem\" }"),
    );
    let server = Server::start("serve", &pipeline, &[]);
    assert!(server.log().contains("web server on https://"));
    let r = tls_request(&server.addr, &der, "GET", "/healthz", &[], b"");
    assert_eq!((r.status, r.body.as_str()), (200, "ok\n"));
    let (k, v) = auth();
    let body = quote("TLS", 1);
    let r = tls_request(
        &server.addr,
        &der,
        "POST",
        "/v1/feeds/forex/records",
        &[(k, v.as_str())],
        body.as_bytes(),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(
        stream_records(&dir.path().join("state"), "forex:")
            .iter()
            .any(|(_, d)| *d == body)
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut s = TcpStream::connect(&server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(!String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    server.stop();

    // A key that does not match the certificate stops the start, named.
    let other = tempfile::tempdir().unwrap();
    let (_, other_key, _) = self_signed(other.path());
    std::fs::copy(other_key, dir.path().join("key.pem")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pipehost"))
        .arg("serve")
        .arg(&pipeline)
        .env("PIPEHOST_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("web.tls"), "{stderr}");
}
