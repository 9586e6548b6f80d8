//! The request log in PostgreSQL (tokio-postgres). Migrations run in one
//! transaction under an advisory lock, so two servers starting at once
//! apply each version once. A lost connection is re-opened before the
//! next batch.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls};

use super::{Entry, Sink, redact};

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
    client: Option<Client>,
}

async fn connect(url: &str) -> Result<Client, String> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redact(url)))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("request log: PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
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
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let mut client = connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("web.request_log: {e}"))?;
        migrate(&mut client)
            .await
            .map_err(|e| anyhow::anyhow!("web.request_log: migrating {}: {e}", redact(url)))?;
        Ok(Self {
            url: url.to_string(),
            client: Some(client),
        })
    }
}

#[async_trait]
impl Sink for PgSink {
    async fn write(&mut self, batch: &[Entry]) -> Result<(), String> {
        if self.client.as_ref().is_none_or(|c| c.is_closed()) {
            self.client = None;
            self.client = Some(connect(&self.url).await?);
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
            .map_err(|e| format!("postgres {}: {e}", redact(&self.url)))
    }
}
