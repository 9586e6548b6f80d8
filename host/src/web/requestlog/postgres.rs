//! The request log in PostgreSQL (tokio-postgres). Migrations run in one
//! transaction under an advisory lock, so two servers starting at once
//! apply each version once. A lost connection is re-opened before the
//! next batch.
//!
//! TLS follows the URL's `sslmode` (`pgtls.rs` verifies the certificate
//! and host name in every mode that uses TLS): `disable` is plaintext,
//! `prefer` (the default, as libpq's) uses TLS when the server offers it
//! and logs a warning when a non-loopback server does not, `require` fails
//! without TLS; `verify-full` and `verify-ca` mean `require` here (rustls
//! always verifies fully).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config};

use super::pgtls::{MakeRustls, client_config};
use super::{Entry, redact};
use crate::backend::BackendError;
use crate::backend::requestlog::Sink;

/// The service a write error names.
const SERVICE: &str = "postgres";

/// Versioned migrations, applied in order; never edit a released one.
pub const MIGRATIONS: &[&str] = &["CREATE TABLE request_log (
        id BIGSERIAL PRIMARY KEY,
        at TIMESTAMPTZ NOT NULL,
        client TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        latency_us BIGINT NOT NULL,
        records BIGINT NOT NULL
    );
    CREATE INDEX request_log_at ON request_log (at);"];

/// Any constant: the advisory lock that serializes migrations.
const MIGRATION_LOCK: i64 = 0x7069_7065_686f_7374; // "pipehost"

pub struct PgSink {
    url: String,
    config: Config,
    tls: Arc<rustls::ClientConfig>,
    client: Option<Client>,
}

/// The URL as tokio-postgres takes it: libpq's `verify-full`/`verify-ca`
/// as `require` (unknown to tokio-postgres; rustls verifies anyway), and
/// `application_name=pipehost` unless the URL names one.
fn parse(url: &str) -> Result<Config, String> {
    let text = match url.split_once('?') {
        None => url.to_string(),
        Some((head, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv {
                    "sslmode=verify-full" | "sslmode=verify-ca" => "sslmode=require".into(),
                    kv => kv.to_string(),
                })
                .collect();
            format!("{head}?{}", query.join("&"))
        }
    };
    let mut config: Config = text.parse().map_err(|e| {
        format!(
            "{}: {} (sslmode is one of disable, prefer, require, verify-full)",
            redact(url),
            chain(&e)
        )
    })?;
    if config.get_application_name().is_none() {
        config.application_name("pipehost");
    }
    // An unreachable server must not hold the start (or a reconnect) for
    // the kernel's TCP timeout: the URL's `connect_timeout` wins.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(std::time::Duration::from_secs(10));
    }
    Ok(config)
}

/// Connects; the flag says whether the session is encrypted.
async fn connect(
    url: &str,
    config: &Config,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(Client, bool), String> {
    let make = MakeRustls {
        config: tls.clone(),
        encrypted: Arc::new(AtomicBool::new(false)),
    };
    let (client, connection) = config
        .connect(make.clone())
        .await
        .map_err(|e| format!("cannot connect to {}: {}", redact(url), chain(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("request log: PostgreSQL connection ended: {e}");
        }
    });
    Ok((client, make.encrypted.load(Ordering::Relaxed)))
}

/// An error and its causes, `: `-separated (tokio-postgres shows only the top).
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Every host of the URL is this machine (a plaintext session leaves it not).
fn loopback(config: &Config) -> bool {
    config.get_hosts().iter().all(|h| match h {
        Host::Tcp(name) => {
            name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|a| a.is_loopback())
        }
        Host::Unix(_) => true,
    })
}

async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
        )",
    )
    .await?;
    let have: i32 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i32 + 1;
        if version > have {
            tx.batch_execute(sql).await?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await?;
        }
    }
    tx.commit().await
}

impl PgSink {
    pub async fn connect(url: &str, ca_file: Option<&Path>) -> anyhow::Result<Self> {
        let config = parse(url).map_err(|e| anyhow::anyhow!("web.request_log: {e}"))?;
        let tls = Arc::new(client_config(
            ca_file,
            config.get_ssl_mode() != SslMode::Disable,
        )?);
        let (mut client, encrypted) = connect(url, &config, &tls)
            .await
            .map_err(|e| anyhow::anyhow!("web.request_log: {e}"))?;
        if encrypted {
            tracing::info!("request log: PostgreSQL {} over TLS", redact(url));
        } else if !loopback(&config) {
            let why = match config.get_ssl_mode() {
                SslMode::Disable => "sslmode=disable",
                _ => "the server does not offer TLS",
            };
            tracing::warn!(
                "request log: PostgreSQL {} in plaintext ({why}): the session crosses \
                 the network unencrypted; use sslmode=require",
                redact(url)
            );
        }
        migrate(&mut client)
            .await
            .map_err(|e| anyhow::anyhow!("web.request_log: migrating {}: {e}", redact(url)))?;
        Ok(Self {
            url: url.to_string(),
            config,
            tls,
            client: Some(client),
        })
    }
}

#[async_trait]
impl Sink for PgSink {
    async fn write(&mut self, batch: &[Entry]) -> Result<(), BackendError> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            let (client, _) = connect(&self.url, &self.config, &self.tls)
                .await
                .map_err(|e| BackendError::retryable(SERVICE, e))?;
            self.client = Some(client);
        }
        let client = self.client.as_ref().expect("connected above");
        // One multi-row INSERT: 7 parameters a row, far below the 65535 cap.
        let rows: Vec<(DateTime<Utc>, i32, i64, i64)> = batch
            .iter()
            .map(|e| {
                (
                    DateTime::from_timestamp_millis(e.at_ms).unwrap_or_default(),
                    i32::from(e.status),
                    e.latency_us as i64,
                    e.records as i64,
                )
            })
            .collect();
        let mut sql = String::from(
            "INSERT INTO request_log (at, client, method, path, status, latency_us, records) VALUES ",
        );
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(batch.len() * 7);
        for (i, (e, r)) in batch.iter().zip(&rows).enumerate() {
            let b = i * 7;
            if i > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${},${},${},${},${},${},${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            ));
            params.extend([
                &r.0 as &(dyn ToSql + Sync),
                &e.client,
                &e.method,
                &e.path,
                &r.1,
                &r.2,
                &r.3,
            ]);
        }
        client
            .execute(sql.as_str(), &params)
            .await
            .map(|_| ())
            .map_err(|e| BackendError::retryable(SERVICE, format!("{}: {e}", redact(&self.url))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_sslmodes_are_taken_and_sessions_are_named() {
        let mode = |url: &str| parse(url).unwrap().get_ssl_mode();
        assert_eq!(mode("postgres://u@db/x"), SslMode::Prefer);
        assert_eq!(mode("postgres://u@db/x?sslmode=disable"), SslMode::Disable);
        assert_eq!(mode("postgres://u@db/x?sslmode=require"), SslMode::Require);
        assert_eq!(
            mode("postgres://u@db/x?connect_timeout=5&sslmode=verify-full"),
            SslMode::Require
        );
        assert_eq!(
            mode("postgres://u@db/x?sslmode=verify-ca"),
            SslMode::Require
        );
        let e = parse("postgres://u:pw@db/x?sslmode=allow").unwrap_err();
        assert!(e.contains("sslmode") && !e.contains("pw"), "{e}");
        let name = |url: &str| {
            parse(url)
                .unwrap()
                .get_application_name()
                .map(str::to_owned)
        };
        assert_eq!(name("postgres://u@db/x").as_deref(), Some("pipehost"));
        assert_eq!(
            name("postgres://u@db/x?application_name=web1").as_deref(),
            Some("web1")
        );
    }

    #[tokio::test]
    async fn require_against_a_server_without_tls_is_refused_by_name() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // A server that answers the SSLRequest (8 bytes) with 'N'.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 8];
            s.read_exact(&mut request).await.unwrap();
            assert_eq!(request, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
            s.write_all(b"N").await.unwrap();
        });
        let url = format!("postgres://u:pw-secret@127.0.0.1:{port}/x?sslmode=require");
        let e = PgSink::connect(&url, None).await.err().unwrap().to_string();
        assert!(e.contains("server does not support TLS"), "{e}");
        assert!(!e.contains("pw-secret"), "{e}");
    }

    #[test]
    fn only_this_machine_counts_as_loopback() {
        let lo = |url: &str| loopback(&parse(url).unwrap());
        assert!(lo("postgres://u@localhost/x"));
        assert!(lo("postgres://u@127.0.0.1:5432/x"));
        assert!(lo("postgres://u@[::1]/x"));
        assert!(!lo("postgres://u@db.example/x"));
        assert!(!lo("postgres://u@localhost,db.example/x"));
        assert!(!lo("postgres://u@10.0.0.5/x"));
    }
}
