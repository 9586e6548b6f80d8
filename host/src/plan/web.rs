//! `[web]` validated into a [`WebPlan`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{BackendPlan, Checker};
use crate::config::{RequestLogConfig, TlsConfig, WebConfig};

/// The web server as the runtime starts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebPlan {
    pub listen: SocketAddr,
    pub keys_env: String,
    pub keys_file: Option<PathBuf>,
    pub body_limit: usize,
    pub header_limit: usize,
    pub request_timeout: Duration,
    pub max_logs_records: u32,
    /// Lines per ingest request at most (413 past it).
    pub max_request_lines: usize,
    /// Lines per aggregated record written by ingest.
    pub max_aggregate_lines: usize,
    /// Connections open at once at most (503 past it).
    pub max_connections: usize,
    pub tls: Option<TlsPlan>,
    pub request_log: RequestLogPlan,
    /// CA certificates (PEM) trusted for a PostgreSQL request log's TLS,
    /// besides the platform's; read at start.
    pub request_log_ca_file: Option<PathBuf>,
    /// Requests buffered for the request-log writer.
    pub request_log_queue: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPlan {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where the request log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestLogPlan {
    Off,
    Sqlite(PathBuf),
    Postgres(String),
    /// Read the URL from this environment variable at start (then as a
    /// `postgres://` URL or a SQLite path relative to `base`).
    FromEnv {
        var: String,
        base: PathBuf,
    },
}

impl RequestLogPlan {
    /// Classifies a URL: `postgres://` / `postgresql://` or a SQLite path.
    pub fn from_url(url: &str, base: &Path) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres(url.to_string())
        } else {
            let path = url.strip_prefix("sqlite://").unwrap_or(url);
            Self::Sqlite(base.join(path))
        }
    }
}

/// The most lines an aggregated stream record may hold (the processor
/// unpacks no more; `wire::aggregate::MAX_LINES`).
pub const MAX_AGGREGATE_LINES: u32 = 65_536;

/// Smallest header limit hyper accepts (its read buffer's minimum).
pub const MIN_HEADER_LIMIT: usize = 8192;

fn tls(c: &mut Checker, base: &Path, t: &TlsConfig) -> TlsPlan {
    for (v, key) in [(&t.cert, "web.tls.cert"), (&t.key, "web.tls.key")] {
        if v.get_ref().trim().is_empty() {
            let line = c.line(v);
            c.err(line, key, "names no file");
        }
    }
    TlsPlan {
        cert: base.join(t.cert.get_ref()),
        key: base.join(t.key.get_ref()),
    }
}

/// Where the request log goes: the URL given, the variable to read it from,
/// or `requests.db` in the state directory.
fn request_log(
    c: &mut Checker,
    base: &Path,
    backend: &BackendPlan,
    r: &RequestLogConfig,
) -> RequestLogPlan {
    match (r.enabled, &r.url, &r.url_env) {
        (Some(false), _, _) => RequestLogPlan::Off,
        (_, Some(url), Some(_)) => {
            let line = c.line(url);
            c.err(
                line,
                "web.request_log.url",
                "give `url` or `url_env`, not both",
            );
            RequestLogPlan::Off
        }
        (_, Some(url), None) => {
            let u = url.get_ref();
            if u.trim().is_empty() {
                let line = c.line(url);
                c.err(line, "web.request_log.url", "is empty");
            } else if u.contains("://")
                && !["postgres://", "postgresql://", "sqlite://"]
                    .iter()
                    .any(|s| u.starts_with(s))
            {
                let line = c.line(url);
                let scheme = u.split("://").next().unwrap_or_default();
                c.err(
                    line,
                    "web.request_log.url",
                    format!("{scheme:?}: expected a postgres:// URL or a SQLite file path"),
                );
            }
            RequestLogPlan::from_url(u, base)
        }
        (_, None, Some(var)) => RequestLogPlan::FromEnv {
            var: var.clone(),
            base: base.to_owned(),
        },
        (_, None, None) => {
            let dir = match backend {
                BackendPlan::Local { data_dir, .. } => data_dir.clone(),
                // No local state directory on AWS: beside the pipeline file,
                // where the local backend would keep its state.
                BackendPlan::Aws(_) => base.join(".pipehost"),
            };
            RequestLogPlan::Sqlite(dir.join("requests.db"))
        }
    }
}

pub(super) fn build(
    c: &mut Checker,
    base: &Path,
    backend: &BackendPlan,
    w: &WebConfig,
) -> Option<WebPlan> {
    // Checked in this order, so errors come out in it.
    let listen = listen(c, w);
    let limits = Limits::build(c, w);
    let tls = w.tls.as_ref().map(|t| tls(c, base, t));
    let log = RequestLogSettings::build(c, base, backend, &w.request_log);
    Some(WebPlan {
        listen: listen?,
        keys_env: w
            .keys_env
            .clone()
            .unwrap_or_else(|| "PIPEHOST_API_KEYS".into()),
        keys_file: w.keys_file.as_ref().map(|f| base.join(f)),
        body_limit: limits.body_limit,
        header_limit: limits.header_limit,
        request_timeout: limits.request_timeout,
        max_logs_records: limits.max_logs_records,
        max_request_lines: limits.max_request_lines,
        max_aggregate_lines: limits.max_aggregate_lines,
        max_connections: limits.max_connections,
        tls,
        request_log: log.plan,
        request_log_ca_file: log.ca_file,
        request_log_queue: log.queue,
    })
}

/// `web.listen` as a socket address.
fn listen(c: &mut Checker, w: &WebConfig) -> Option<SocketAddr> {
    match w.listen.get_ref().parse() {
        Ok(a) => Some(a),
        Err(e) => {
            let line = c.line(&w.listen);
            c.err(
                line,
                "web.listen",
                format!(
                    "{:?}: not an address like \"127.0.0.1:8080\": {e}",
                    w.listen.get_ref()
                ),
            );
            None
        }
    }
}

/// The request limits of `[web]`: sizes, deadline and counts.
struct Limits {
    body_limit: usize,
    header_limit: usize,
    request_timeout: Duration,
    max_logs_records: u32,
    max_request_lines: usize,
    max_aggregate_lines: usize,
    max_connections: usize,
}

impl Limits {
    fn build(c: &mut Checker, w: &WebConfig) -> Self {
        let body_limit = c.size(&w.body_limit, "web.body_limit", 1 << 20);
        let header_limit = c.size(&w.header_limit, "web.header_limit", 16 << 10);
        if header_limit < MIN_HEADER_LIMIT {
            c.err_at(
                w.header_limit.as_ref(),
                "web.header_limit",
                format!("{header_limit} bytes is too small: at least 8KiB"),
            );
        }
        let request_timeout = c.duration(
            &w.request_timeout,
            "web.request_timeout",
            Duration::from_secs(10),
            Duration::from_millis(10),
        );
        let max_logs_records = c.opt_range(
            &w.max_logs_records,
            "web.max_logs_records",
            10_000,
            1,
            100_000,
        );
        let max_request_lines = c.opt_range(
            &w.max_request_lines,
            "web.max_request_lines",
            100_000,
            1,
            10_000_000,
        ) as usize;
        let max_aggregate_lines = c.opt_range(
            &w.max_aggregate_lines,
            "web.max_aggregate_lines",
            10_000,
            2,
            MAX_AGGREGATE_LINES,
        ) as usize;
        let max_connections = c.opt_range(
            &w.max_connections,
            "web.max_connections",
            1024,
            1,
            1_000_000,
        ) as usize;
        Self {
            body_limit,
            header_limit,
            request_timeout,
            max_logs_records,
            max_request_lines,
            max_aggregate_lines,
            max_connections,
        }
    }
}

/// `[web.request_log]`: where the log goes, its writer's queue, and the CA
/// file of a PostgreSQL log's TLS.
struct RequestLogSettings {
    plan: RequestLogPlan,
    queue: usize,
    ca_file: Option<PathBuf>,
}

impl RequestLogSettings {
    fn build(c: &mut Checker, base: &Path, backend: &BackendPlan, r: &RequestLogConfig) -> Self {
        let plan = request_log(c, base, backend, r);
        let queue = c.opt_range(&r.queue, "web.request_log.queue", 10_000, 1, 10_000_000) as usize;
        let ca_file = r.ca_file.as_ref().map(|f| {
            let line = c.line(f);
            if f.get_ref().trim().is_empty() {
                c.err(line, "web.request_log.ca_file", "names no file");
            } else if matches!(plan, RequestLogPlan::Sqlite(_)) {
                c.err(
                    line,
                    "web.request_log.ca_file",
                    "applies to a PostgreSQL request log only, and this one is SQLite",
                );
            }
            base.join(f.get_ref())
        });
        Self {
            plan,
            queue,
            ca_file,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Plan, build};

    const FEEDS: &str = r#"
[feeds.forex]
parser = { plugin = "forex_parser" }
"#;

    fn plan(web: &str) -> Result<Plan, Vec<crate::config::ConfigError>> {
        let text = format!("{FEEDS}\n{web}");
        let path = Path::new("conf/pipeline.toml");
        let file = crate::config::parse(path, &text).map_err(|e| vec![e])?;
        build(path, &text, &file)
    }

    fn errors(web: &str) -> Vec<String> {
        plan(web)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_web_section_gets_defaults_and_enabled_false_turns_it_off() {
        let p = plan("[web]\nlisten = \"127.0.0.1:0\"\n").unwrap();
        let w = p.fixed.web.unwrap();
        assert_eq!(w.body_limit, 1 << 20);
        assert_eq!(w.header_limit, 16 << 10);
        assert_eq!(w.request_timeout, Duration::from_secs(10));
        assert_eq!(w.keys_env, "PIPEHOST_API_KEYS");
        assert_eq!(w.max_request_lines, 100_000);
        assert_eq!(w.max_aggregate_lines, 10_000);
        assert_eq!(w.max_connections, 1024);
        assert_eq!(
            w.request_log,
            RequestLogPlan::Sqlite(PathBuf::from("conf/.pipehost/requests.db"))
        );
        let off = plan("[web]\nenabled = false\nlisten = \"127.0.0.1:0\"\n").unwrap();
        assert!(off.fixed.web.is_none());
        assert!(plan("").unwrap().fixed.web.is_none());
    }

    #[test]
    fn request_log_urls_pick_the_store() {
        let w = |url: &str| {
            plan(&format!(
                "[web]\nlisten = \"127.0.0.1:0\"\nrequest_log = {{ url = \"{url}\" }}\n"
            ))
            .unwrap()
            .fixed
            .web
            .unwrap()
            .request_log
        };
        assert_eq!(
            w("postgres://u@localhost/db"),
            RequestLogPlan::Postgres("postgres://u@localhost/db".into())
        );
        let ca = plan(
            "[web]\nlisten = \"127.0.0.1:0\"\nrequest_log = { url_env = \"PG\", ca_file = \"rds.pem\" }\n",
        )
        .unwrap()
        .fixed
        .web
        .unwrap()
        .request_log_ca_file;
        assert_eq!(ca, Some(PathBuf::from("conf/rds.pem")));
        assert_eq!(
            w("logs/requests.db"),
            RequestLogPlan::Sqlite(PathBuf::from("conf/logs/requests.db"))
        );
    }

    #[test]
    fn every_bad_value_is_named_with_its_line() {
        let errs = errors(
            r#"[web]
listen = "localhost"
body_limit = "lots"
header_limit = "1KiB"
request_timeout = "1ms"
tls = { cert = "", key = "k.pem" }
request_log = { url = "mysql://x/y" }
max_aggregate_lines = 100000
max_connections = 0
"#,
        );
        let want = [
            ":6: `web.listen`",
            ":7: `web.body_limit`",
            ":8: `web.header_limit`: 1024 bytes is too small",
            ":9: `web.request_timeout`",
            ":12: `web.max_aggregate_lines`: 100000 is out of range: 2 to 65536",
            ":13: `web.max_connections`: 0 is out of range",
            ":10: `web.tls.cert`: names no file",
            ":11: `web.request_log.url`: \"mysql\"",
        ];
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        for (e, w) in errs.iter().zip(want) {
            assert!(e.contains(w), "{e} should contain {w}");
        }
        let ca = |log: &str| {
            errors(&format!(
                "[web]\nlisten = \"127.0.0.1:0\"\nrequest_log = {log}\n"
            ))
        };
        let sqlite = ca("{ url = \"a.db\", ca_file = \"ca.pem\" }");
        assert!(
            sqlite[0].contains(":7: `web.request_log.ca_file`: applies to a PostgreSQL"),
            "{sqlite:?}"
        );
        let empty = ca("{ url_env = \"X\", ca_file = \" \" }");
        assert!(
            empty[0].contains("`web.request_log.ca_file`: names no file"),
            "{empty:?}"
        );
        let both = errors(
            "[web]\nlisten = \"127.0.0.1:0\"\nrequest_log = { url = \"a.db\", url_env = \"X\" }\n",
        );
        assert!(both[0].contains("not both"), "{both:?}");
        let unknown = errors("[web]\nlisten = \"127.0.0.1:0\"\nport = 80\n");
        assert!(unknown[0].contains("unknown field `port`"), "{unknown:?}");
    }
}
