//! A fault-injecting HTTP proxy on loopback, put between pipehost (or the
//! SDK clients of a test) and the moto server, so the aws backend meets
//! what AWS does under stress: throttling, 5xx, answers lost after the
//! work was done, and a process killed at a named request.
//!
//! One thread per connection. Each request's head is read and matched
//! against the rules in order; the first rule that matches and fires
//! decides: answer an error without forwarding, forward but lose the
//! answer, kill a process and drop the connection, or hold the request
//! until others arrive (a barrier that makes a race happen every time).
//! Requests no rule takes are forwarded with `Connection: close`, so every
//! request is one connection and the next one is matched again.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the proxy knows of a request when it matches rules.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    /// `kinesis`, `sqs`, `s3`, `sns`, … from the signature's scope.
    pub service: String,
    /// The `X-Amz-Target` operation of JSON protocols (Kinesis, SQS),
    /// e.g. `AmazonSQS.DeleteMessageBatch`.
    pub target: String,
}

/// What a rule does to a request it takes.
#[derive(Clone)]
pub enum Action {
    /// The service's throttling answer, not forwarded: Kinesis
    /// `ProvisionedThroughputExceededException`, S3 503 `SlowDown`, SQS 400
    /// `RequestThrottled`, SNS 400 `Throttling`.
    Throttle,
    /// A 500 `InternalError` in the service's protocol, not forwarded.
    ServerError,
    /// Forwarded — the work is done — but the answer replaced by a 500.
    LoseAnswer,
    /// SIGKILL to the process whose id is in the cell (0: nobody yet),
    /// then the connection dropped unanswered.
    Kill(Arc<AtomicU32>),
    /// Held until this many requests have come to this rule (at most
    /// 10 s), then forwarded together.
    Barrier(usize),
}

/// A rule: which requests, what to do, how often and how many times.
pub struct Rule {
    pub name: &'static str,
    pub when: Box<dyn Fn(&Req) -> bool + Send + Sync>,
    pub action: Action,
    /// The share of matching requests it takes (1.0: all), spread evenly:
    /// with 0.05 the 10th matching request, then every 20th. Deterministic,
    /// so a test that asserts every rule fired does not depend on luck.
    pub rate: f64,
    /// How many it takes at most.
    pub budget: u64,
}

impl Rule {
    pub fn new(
        name: &'static str,
        action: Action,
        when: impl Fn(&Req) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            when: Box::new(when),
            action,
            rate: 1.0,
            budget: u64::MAX,
        }
    }

    pub fn rate(mut self, rate: f64) -> Self {
        self.rate = rate;
        self
    }

    pub fn budget(mut self, budget: u64) -> Self {
        self.budget = budget;
        self
    }
}

#[derive(Default)]
struct Barrier {
    arrived: Mutex<usize>,
    all_here: Condvar,
}

struct Shared {
    upstream: String,
    rules: Mutex<Vec<Rule>>,
    /// Requests each rule took, by rule name.
    fired: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests each rule matched (fired or not), by rule name.
    matched: Mutex<BTreeMap<&'static str, u64>>,
    barriers: Mutex<BTreeMap<&'static str, Arc<Barrier>>>,
    forwarded: AtomicU32,
}

pub struct FaultProxy {
    pub url: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream`
    /// (`http://host:port`).
    pub fn start(upstream: &str, rules: Vec<Rule>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            upstream: upstream.trim_start_matches("http://").to_string(),
            rules: Mutex::new(rules),
            fired: Mutex::default(),
            matched: Mutex::default(),
            barriers: Mutex::default(),
            forwarded: AtomicU32::new(0),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || {
                    let _ = serve(&s, conn);
                });
            }
        });
        Self { url, shared }
    }

    /// Replaces the rules (e.g. none: a clean pass-through).
    pub fn set_rules(&self, rules: Vec<Rule>) {
        *self.shared.rules.lock().unwrap() = rules;
    }

    /// How many requests each rule took so far.
    pub fn fired(&self) -> BTreeMap<&'static str, u64> {
        self.shared.fired.lock().unwrap().clone()
    }

    /// Requests forwarded to the server (a lost answer counts too).
    pub fn forwarded(&self) -> u32 {
        self.shared.forwarded.load(Ordering::Relaxed)
    }
}

/// The request head (up to the blank line) and whatever body bytes came
/// with it.
fn read_head(conn: &mut TcpStream) -> std::io::Result<Option<(Vec<u8>, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            return Ok(Some((buf, rest)));
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn parse(head: &str) -> Req {
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let path = first.next().unwrap_or("").to_string();
    let (mut service, mut target) = (String::new(), String::new());
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            // Credential=KEY/DATE/REGION/SERVICE/aws4_request
            "authorization" => {
                if let Some(scope) = value.split("Credential=").nth(1) {
                    service = scope.split('/').nth(3).unwrap_or("").to_string();
                }
            }
            "x-amz-target" => target = value.to_string(),
            _ => {}
        }
    }
    Req {
        method,
        path,
        service,
        target,
    }
}

/// The first rule that matches `req` and fires (rate, budget), counted.
fn decide(s: &Shared, req: &Req) -> Option<(&'static str, Action)> {
    let rules = s.rules.lock().unwrap();
    let mut fired = s.fired.lock().unwrap();
    let mut matched = s.matched.lock().unwrap();
    for rule in rules.iter() {
        let n = fired.get(rule.name).copied().unwrap_or(0);
        if n >= rule.budget || !(rule.when)(req) {
            continue;
        }
        let k = matched.entry(rule.name).or_default();
        *k += 1;
        if takes(rule.rate, *k) {
            *fired.entry(rule.name).or_default() += 1;
            return Some((rule.name, rule.action.clone()));
        }
    }
    None
}

/// Whether the `k`-th matching request (from 1) is one a rule of `rate`
/// takes: every `1/rate`-th, the first after half a period.
fn takes(rate: f64, k: u64) -> bool {
    let at = |k: u64| (k as f64 * rate + 0.5).floor();
    at(k) > at(k - 1)
}

#[allow(unsafe_code, reason = "libc::kill of a child the test spawned")]
fn serve(s: &Shared, mut conn: TcpStream) -> std::io::Result<()> {
    let Some((head, body_start)) = read_head(&mut conn)? else {
        return Ok(());
    };
    let head = String::from_utf8_lossy(&head).into_owned();
    let req = parse(&head);
    match decide(s, &req) {
        None => forward(s, &head, &body_start, &mut conn, false),
        Some((_, Action::Throttle)) => answer_error(&mut conn, &req, true),
        Some((_, Action::ServerError)) => answer_error(&mut conn, &req, false),
        Some((_, Action::LoseAnswer)) => forward(s, &head, &body_start, &mut conn, true),
        Some((_, Action::Kill(pid))) => {
            let pid = pid.load(Ordering::Acquire);
            if pid != 0 {
                // SAFETY: kill(2) on a pid the test spawned.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
            conn.shutdown(Shutdown::Both)
        }
        Some((name, Action::Barrier(n))) => {
            let b = s.barriers.lock().unwrap().entry(name).or_default().clone();
            let mut arrived = b.arrived.lock().unwrap();
            *arrived += 1;
            b.all_here.notify_all();
            let deadline = Instant::now() + Duration::from_secs(10);
            while *arrived < n && Instant::now() < deadline {
                arrived = b
                    .all_here
                    .wait_timeout(arrived, Duration::from_millis(50))
                    .unwrap()
                    .0;
            }
            drop(arrived);
            forward(s, &head, &body_start, &mut conn, false)
        }
    }
}

/// Forwards one request with `Connection: close` and splices the bytes
/// both ways until the server closes; with `lose`, the server's answer is
/// read and dropped and a 500 sent instead.
fn forward(
    s: &Shared,
    head: &str,
    body_start: &[u8],
    conn: &mut TcpStream,
    lose: bool,
) -> std::io::Result<()> {
    let mut up = TcpStream::connect(&s.upstream)?;
    s.forwarded.fetch_add(1, Ordering::Relaxed);
    let mut rewritten = String::new();
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("connection:") || lower.starts_with("keep-alive:") {
            continue;
        }
        rewritten.push_str(line);
        rewritten.push_str("\r\n");
    }
    rewritten.push_str("Connection: close\r\n\r\n");
    up.write_all(rewritten.as_bytes())?;
    up.write_all(body_start)?;
    // The rest of the body (and a 100-continue's) flows on its own.
    let (mut from_client, mut to_up) = (conn.try_clone()?, up.try_clone()?);
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_up);
        let _ = to_up.shutdown(Shutdown::Write);
    });
    if lose {
        let mut answer = Vec::new();
        up.read_to_end(&mut answer)?;
        let req = parse(head);
        return answer_error(conn, &req, false);
    }
    std::io::copy(&mut up, conn)?;
    conn.shutdown(Shutdown::Both)
}

/// An error answer in the protocol of the request's service.
fn answer_error(conn: &mut TcpStream, req: &Req, throttle: bool) -> std::io::Result<()> {
    let (status, content_type, body, extra) = match (req.service.as_str(), throttle) {
        ("kinesis", true) => (
            "400 Bad Request",
            "application/x-amz-json-1.1",
            r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded for shard (fault proxy)"}"#.to_string(),
            "",
        ),
        ("sqs", true) => (
            "400 Bad Request",
            "application/x-amz-json-1.0",
            r#"{"__type":"com.amazonaws.sqs#RequestThrottled","message":"Request is throttled (fault proxy)"}"#.to_string(),
            "x-amzn-query-error: RequestThrottled;Sender\r\n",
        ),
        ("kinesis" | "sqs", false) => (
            "500 Internal Server Error",
            "application/x-amz-json-1.1",
            r#"{"__type":"InternalFailure","message":"fault proxy"}"#.to_string(),
            "",
        ),
        ("s3", true) => (
            "503 Slow Down",
            "application/xml",
            "<Error><Code>SlowDown</Code><Message>Please reduce your request rate. (fault proxy)</Message></Error>".to_string(),
            "",
        ),
        ("s3", false) => (
            "500 Internal Server Error",
            "application/xml",
            "<Error><Code>InternalError</Code><Message>fault proxy</Message></Error>".to_string(),
            "",
        ),
        (_, t) => (
            if t { "400 Bad Request" } else { "500 Internal Server Error" },
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>{}</Type><Code>{}</Code><Message>fault proxy</Message></Error><RequestId>f</RequestId></ErrorResponse>",
                if t { "Sender" } else { "Receiver" },
                if t { "Throttling" } else { "InternalError" }
            ),
            "",
        ),
    };
    let msg = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(msg.as_bytes())?;
    conn.shutdown(Shutdown::Write)
}

#[test]
fn a_rule_takes_its_share_of_matching_requests_evenly() {
    let taken = |rate: f64, n: u64| (1..=n).filter(|&k| takes(rate, k)).collect::<Vec<_>>();
    assert_eq!(taken(1.0, 4), vec![1, 2, 3, 4]);
    assert_eq!(taken(0.05, 60), vec![10, 30, 50]);
    assert_eq!(taken(0.4, 10), vec![2, 4, 7, 9]);
    assert_eq!(taken(0.25, 8), vec![2, 6]);
}
