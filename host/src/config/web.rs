//! The `[web]` section: the web server (ingest, `/logs`, health, metrics).

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// `false` keeps the section but runs no server.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Address to listen on, e.g. `"127.0.0.1:8080"` (port 0 picks one).
    pub listen: Spanned<String>,
    /// Environment variable holding API keys, comma-separated.
    pub keys_env: Option<String>,
    /// File with API keys, one per line (relative to the pipeline file).
    pub keys_file: Option<String>,
    /// Largest request body, e.g. `"1MiB"`; larger ones get 413.
    pub body_limit: Option<Spanned<String>>,
    /// Largest request head (request line and headers), e.g. `"16KiB"`;
    /// larger ones get 431.
    pub header_limit: Option<Spanned<String>>,
    /// Time for a whole request, body included, e.g. `"10s"`; then 408.
    pub request_timeout: Option<Spanned<String>>,
    /// Most lines one ingest request may carry; more get 413.
    pub max_request_lines: Option<Spanned<u32>>,
    /// Most lines per aggregated stream record written by ingest (a
    /// request past it becomes several records).
    pub max_aggregate_lines: Option<Spanned<u32>>,
    /// Most connections open at once; more are answered 503 and closed.
    pub max_connections: Option<Spanned<u32>>,
    /// Most records `GET /logs?records=N` may ask for per feed.
    pub max_logs_records: Option<Spanned<u32>>,
    /// HTTPS: both files in PEM, relative to the pipeline file.
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub request_log: RequestLogConfig,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// Where each request is recorded: SQLite by default, PostgreSQL when the
/// URL (given or read from `url_env`) starts with `postgres://`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestLogConfig {
    /// `false` records nothing.
    pub enabled: Option<bool>,
    /// `postgres://user@host:port/db`, or a SQLite file path (relative to
    /// the pipeline file). Default: `requests.db` in the local data dir.
    pub url: Option<Spanned<String>>,
    /// Environment variable holding the URL instead (keeps passwords out
    /// of the file).
    pub url_env: Option<String>,
    /// Requests buffered for the writer; past that they are dropped and counted.
    pub queue: Option<Spanned<u32>>,
    /// PEM file of CA certificates trusted for PostgreSQL's TLS, besides the
    /// platform's (relative to the pipeline file), e.g. the RDS bundle.
    pub ca_file: Option<Spanned<String>>,
}
