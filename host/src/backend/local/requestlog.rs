//! The request log in SQLite (its own file, WAL), behind the request
//! log's [`Sink`]; the web server's writer task feeds it.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, params};

use crate::backend::BackendError;
use crate::backend::requestlog::{Entry, Sink};

/// The service a write error names.
const SERVICE: &str = "sqlite";

/// Versioned migrations, applied in order; never edit a released one.
pub const MIGRATIONS: &[&str] = &["CREATE TABLE request_log (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        client TEXT NOT NULL,
        method TEXT NOT NULL,
        path TEXT NOT NULL,
        status INTEGER NOT NULL,
        latency_us INTEGER NOT NULL,
        records INTEGER NOT NULL
    );
    CREATE INDEX request_log_at ON request_log (at);"];

pub struct SqliteSink {
    conn: Arc<Mutex<Connection>>,
}

fn migrate(c: &mut Connection) -> rusqlite::Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version INTEGER PRIMARY KEY,
            applied_at TEXT NOT NULL
        )",
    )?;
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let have: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version > have {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![
                    version,
                    crate::event::format_ms(chrono::Utc::now().timestamp_millis())
                ],
            )?;
        }
    }
    tx.commit()
}

impl SqliteSink {
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let p = path.to_owned();
        let conn = tokio::task::spawn_blocking(move || -> anyhow::Result<Connection> {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let mut c = Connection::open(&p)?;
            c.busy_timeout(std::time::Duration::from_secs(5))?;
            c.pragma_update(None, "journal_mode", "WAL")?;
            c.pragma_update(None, "synchronous", "NORMAL")?;
            migrate(&mut c)?;
            Ok(c)
        })
        .await?
        .map_err(|e| anyhow::anyhow!("request log {}: {e}", path.display()))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }
}

#[async_trait]
impl Sink for SqliteSink {
    async fn write(&mut self, batch: &[Entry]) -> Result<(), BackendError> {
        let conn = self.conn.clone();
        let batch = batch.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut c = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = c.transaction()?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO request_log (at, client, method, path, status, latency_us, records)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                for e in &batch {
                    st.execute(params![
                        crate::event::format_ms(e.at_ms),
                        e.client,
                        e.method,
                        e.path,
                        e.status,
                        e.latency_us as i64,
                        e.records as i64
                    ])?;
                }
            }
            tx.commit()
        })
        .await
        .map_err(|e| BackendError::join(SERVICE, e))?
        .map_err(super::db::sql_err)
    }
}

/// What a request log file holds, for tests.
#[cfg(test)]
pub(crate) mod read {
    use std::path::Path;

    use rusqlite::Connection;

    /// The rows' statuses, in the order they were written.
    pub fn statuses(path: &Path) -> Vec<i64> {
        let db = Connection::open(path).unwrap();
        db.prepare("SELECT status FROM request_log ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect()
    }

    /// The newest migration applied.
    pub fn schema_version(path: &Path) -> i64 {
        let db = Connection::open(path).unwrap();
        db.query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .unwrap()
    }
}
