//! Guest output into `tracing`, with size and rate caps.
//!
//! Three sources reach the host log: the `host.log` import, and the guest's
//! stdout and stderr (where a Rust panic message lands). All share one budget
//! per instance, so a plugin that floods cannot flood the host: messages are
//! truncated to [`LogLimits::max_message_bytes`], and past the token bucket
//! ([`LogLimits::burst`] messages, refilled at [`LogLimits::per_second`]) they
//! are counted and dropped; the count is reported once the flood subsides.
//! The last bytes of stderr are kept for error reports.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Caps on what one plugin instance may write to the host log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogLimits {
    /// Longest message kept; the rest is cut and marked.
    pub max_message_bytes: usize,
    /// Messages allowed in a burst.
    pub burst: u32,
    /// Sustained messages per second.
    pub per_second: u32,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 2048,
            burst: 200,
            per_second: 100,
        }
    }
}

/// Log levels a guest can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// How much of stderr is kept for error reports.
const STDERR_TAIL_BYTES: usize = 1024;
/// A stdio line longer than this is emitted in pieces.
const MAX_PENDING_LINE: usize = 8192;

/// The shared log state of one instance.
#[derive(Debug)]
pub struct GuestLog {
    plugin: Arc<str>,
    limits: LogLimits,
    tokens: f64,
    refilled_at: Instant,
    suppressed: u64,
    /// Total messages dropped over the instance's life (for reports/metrics).
    pub dropped_total: u64,
    /// Total messages emitted over the instance's life.
    pub emitted_total: u64,
    stderr_tail: VecDeque<u8>,
    pending: [Vec<u8>; 2],
}

/// A cloneable handle on an instance's [`GuestLog`].
pub type SharedLog = Arc<Mutex<GuestLog>>;

impl GuestLog {
    pub fn new(plugin: Arc<str>, limits: LogLimits) -> SharedLog {
        Arc::new(Mutex::new(Self {
            plugin,
            tokens: f64::from(limits.burst),
            limits,
            refilled_at: Instant::now(),
            suppressed: 0,
            dropped_total: 0,
            emitted_total: 0,
            stderr_tail: VecDeque::with_capacity(STDERR_TAIL_BYTES),
            pending: [Vec::new(), Vec::new()],
        }))
    }

    fn take_token(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled_at).as_secs_f64();
        self.refilled_at = now;
        self.tokens = (self.tokens + elapsed * f64::from(self.limits.per_second))
            .min(f64::from(self.limits.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Emits one message, subject to the caps.
    pub fn emit(&mut self, level: GuestLevel, source: &str, message: &str) {
        if !self.take_token() {
            self.suppressed += 1;
            self.dropped_total += 1;
            return;
        }
        if self.suppressed > 0 {
            tracing::warn!(
                plugin = &*self.plugin,
                "suppressed {} log messages from the plugin (rate cap {}/s)",
                self.suppressed,
                self.limits.per_second
            );
            self.suppressed = 0;
        }
        self.emitted_total += 1;
        let text = guest_text(message, self.limits.max_message_bytes);
        let plugin = &*self.plugin;
        match level {
            GuestLevel::Trace => tracing::trace!(plugin, source, "{text}"),
            GuestLevel::Debug => tracing::debug!(plugin, source, "{text}"),
            GuestLevel::Info => tracing::info!(plugin, source, "{text}"),
            GuestLevel::Warn => tracing::warn!(plugin, source, "{text}"),
            GuestLevel::Error => tracing::error!(plugin, source, "{text}"),
        }
    }

    /// Takes raw stdio bytes, emitting complete lines.
    fn write_stdio(&mut self, stream: Stdio, bytes: &[u8]) {
        if stream == Stdio::Stderr {
            for &b in bytes {
                if self.stderr_tail.len() == STDERR_TAIL_BYTES {
                    self.stderr_tail.pop_front();
                }
                self.stderr_tail.push_back(b);
            }
        }
        let idx = stream as usize;
        let mut rest = bytes;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.pending[idx]);
            line.extend_from_slice(&rest[..pos]);
            self.emit_stdio_line(stream, &line);
            rest = &rest[pos + 1..];
        }
        let pending = &mut self.pending[idx];
        let room = MAX_PENDING_LINE.saturating_sub(pending.len());
        pending.extend_from_slice(&rest[..rest.len().min(room)]);
        if pending.len() >= MAX_PENDING_LINE {
            let line = std::mem::take(pending);
            self.emit_stdio_line(stream, &line);
        }
    }

    fn emit_stdio_line(&mut self, stream: Stdio, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let (level, source) = match stream {
            Stdio::Stdout => (GuestLevel::Info, "stdout"),
            Stdio::Stderr => (GuestLevel::Warn, "stderr"),
        };
        self.emit(level, source, &text);
    }

    /// Emits whatever partial lines are pending (after each call).
    pub fn flush(&mut self) {
        for stream in [Stdio::Stdout, Stdio::Stderr] {
            let line = std::mem::take(&mut self.pending[stream as usize]);
            if !line.is_empty() {
                self.emit_stdio_line(stream, &line);
            }
        }
    }

    /// The last bytes the guest wrote to stderr, and clears them.
    pub fn take_stderr_tail(&mut self) -> String {
        let bytes: Vec<u8> = self.stderr_tail.drain(..).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Plugin-supplied text made safe for the host's logs and HTTP bodies: at
/// most `max` bytes (the rest cut and counted), and every control character
/// escaped — newlines as `\n`, ANSI escapes as `\u{1b}`, bidirectional
/// overrides too — so one plugin cannot forge log lines, drive a terminal or
/// flood a response.
pub fn guest_text(message: &str, max: usize) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(message.len().min(max) + 24);
    let mut piece = String::new();
    for (i, c) in message.char_indices() {
        piece.clear();
        match c {
            '\n' => piece.push_str("\\n"),
            '\r' => piece.push_str("\\r"),
            '\t' => piece.push_str("\\t"),
            c if c.is_control()
                || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
            {
                let _ = write!(piece, "\\u{{{:x}}}", c as u32);
            }
            c => piece.push(c),
        }
        if out.len() + piece.len() > max {
            let _ = write!(out, "… [{} bytes cut]", message.len() - i);
            return out;
        }
        out.push_str(&piece);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stdio {
    Stdout = 0,
    Stderr = 1,
}

/// The guest's stdout or stderr: a WASI output stream feeding [`GuestLog`].
#[derive(Clone)]
pub struct GuestStdio {
    log: SharedLog,
    stream: Stdio,
}

impl GuestStdio {
    pub fn stdout(log: SharedLog) -> Self {
        Self {
            log,
            stream: Stdio::Stdout,
        }
    }
    pub fn stderr(log: SharedLog) -> Self {
        Self {
            log,
            stream: Stdio::Stderr,
        }
    }
    fn write_bytes(&self, bytes: &[u8]) {
        if let Ok(mut log) = self.log.lock() {
            log.write_stdio(self.stream, bytes);
        }
    }
}

impl IsTerminal for GuestStdio {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStdio {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestStdio {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        // Always accepts: excess is dropped by the caps, never blocks the guest.
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestStdio {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestStdio {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(limits: LogLimits) -> SharedLog {
        GuestLog::new(Arc::from("test"), limits)
    }

    #[test]
    fn flood_is_capped_and_counted() {
        let shared = log(LogLimits {
            max_message_bytes: 16,
            burst: 10,
            per_second: 1,
        });
        let mut l = shared.lock().unwrap();
        for _ in 0..1000 {
            l.emit(GuestLevel::Info, "log", "hello");
        }
        assert_eq!(l.emitted_total, 10);
        assert_eq!(l.dropped_total, 990);
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let cut = guest_text("ééééé", 3);
        assert!(cut.starts_with("é…"), "{cut}");
        assert!(cut.contains("bytes cut"));
    }

    #[test]
    fn guest_text_escapes_control_characters() {
        let forged = "ok\nERROR forged\r\t\x1b[31m\0\u{202e}é";
        assert_eq!(
            guest_text(forged, 1000),
            "ok\\nERROR forged\\r\\t\\u{1b}[31m\\u{0}\\u{202e}é"
        );
        let huge = "line\n".repeat(2 << 20);
        let safe = guest_text(&huge, 100);
        assert!(safe.len() < 130 && !safe.contains('\n'), "{safe}");
        assert!(
            safe.ends_with(&format!("… [{} bytes cut]", huge.len() - 84)),
            "{safe}"
        );
    }

    #[test]
    fn stdio_lines_are_split_and_stderr_tail_kept() {
        let shared = log(LogLimits::default());
        let err = GuestStdio::stderr(shared.clone());
        err.write_bytes(b"panicked at src/lib.rs:1:\nboom");
        let mut l = shared.lock().unwrap();
        assert_eq!(l.emitted_total, 1);
        l.flush();
        assert_eq!(l.emitted_total, 2);
        assert_eq!(l.take_stderr_tail(), "panicked at src/lib.rs:1:\nboom");
    }
}
