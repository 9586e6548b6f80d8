//! Counters shared by the stages, and the status line.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Pipeline counters. Each stage adds to its own.
#[derive(Debug, Default)]
pub struct Stats {
    pub generated: AtomicU64,
    /// Records accepted by the web server's ingest endpoint and `/logs`.
    pub ingested: AtomicU64,
    pub bridged: AtomicU64,
    pub messages: AtomicU64,
    pub processed: AtomicU64,
    pub events: AtomicU64,
    pub dropped: AtomicU64,
    pub error_records: AtomicU64,
    pub objects: AtomicU64,
    pub notifications: AtomicU64,
    pub failed_batches: AtomicU64,
    pub plugin_failures: AtomicU64,
    pub backend_errors: AtomicU64,
    /// Gauges refreshed by the status task.
    pub queue_depth: AtomicU64,
    pub dead_letters: AtomicU64,
    /// Records on the stream not yet bridged, counted only in a process
    /// that runs both the feeds and the bridge (`runtime::pipeline`).
    pub stream_lag: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
    /// The last reload's outcome, for the status line.
    note: std::sync::Mutex<Option<String>>,
}

/// A plain copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Snapshot {
    pub generated: u64,
    pub ingested: u64,
    pub bridged: u64,
    pub messages: u64,
    pub processed: u64,
    pub events: u64,
    pub dropped: u64,
    pub error_records: u64,
    pub objects: u64,
    pub notifications: u64,
    pub failed_batches: u64,
    pub plugin_failures: u64,
    pub backend_errors: u64,
    pub queue_depth: u64,
    pub dead_letters: u64,
    pub stream_lag: u64,
    pub reloads: u64,
    pub reload_failures: u64,
}

impl Stats {
    pub fn set_note(&self, note: String) {
        if let Ok(mut n) = self.note.lock() {
            *n = Some(note);
        }
    }

    pub fn note(&self) -> Option<String> {
        self.note.lock().ok().and_then(|n| n.clone())
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            generated: g(&self.generated),
            ingested: g(&self.ingested),
            bridged: g(&self.bridged),
            messages: g(&self.messages),
            processed: g(&self.processed),
            events: g(&self.events),
            dropped: g(&self.dropped),
            error_records: g(&self.error_records),
            objects: g(&self.objects),
            notifications: g(&self.notifications),
            failed_batches: g(&self.failed_batches),
            plugin_failures: g(&self.plugin_failures),
            backend_errors: g(&self.backend_errors),
            queue_depth: g(&self.queue_depth),
            dead_letters: g(&self.dead_letters),
            stream_lag: g(&self.stream_lag),
            reloads: g(&self.reloads),
            reload_failures: g(&self.reload_failures),
        }
    }
}

fn human(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=9_999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

impl Snapshot {
    /// One status line.
    pub fn line(&self, elapsed: Duration, rate: f64) -> String {
        format!(
            "{:>6.1}s | generated {} | lag {} | bridged {} | processed {} ({:.0}/s) | stored {} events in {} objects | errors {} | queue {} | dlq {} | reloads {} ({} refused)",
            elapsed.as_secs_f64(),
            human(self.generated),
            human((self.generated + self.ingested).saturating_sub(self.bridged)),
            human(self.bridged),
            human(self.processed),
            rate,
            human(self.events),
            human(self.objects),
            human(self.error_records),
            self.queue_depth,
            self.dead_letters,
            self.reloads,
            self.reload_failures,
        )
    }
}

/// Redraws a status line on a terminal; silent otherwise.
pub struct StatusLine {
    tty: bool,
    started: Instant,
    last: (Instant, u64),
    drawn: bool,
}

impl StatusLine {
    pub fn new(enabled: bool) -> Self {
        Self {
            tty: enabled && std::io::stderr().is_terminal(),
            started: Instant::now(),
            last: (Instant::now(), 0),
            drawn: false,
        }
    }

    pub fn draw(&mut self, s: &Snapshot, note: Option<String>) {
        if !self.tty {
            return;
        }
        let now = Instant::now();
        let dt = now.duration_since(self.last.0).as_secs_f64().max(1e-3);
        let rate = (s.processed.saturating_sub(self.last.1)) as f64 / dt;
        self.last = (now, s.processed);
        let mut err = std::io::stderr().lock();
        let mut line = s.line(self.started.elapsed(), rate);
        if let Some(n) = note {
            let short: String = n.chars().take(100).collect();
            line.push_str(&format!(" | {short}"));
        }
        let _ = write!(err, "\r\x1b[2K{line}");
        let _ = err.flush();
        self.drawn = true;
    }

    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}
