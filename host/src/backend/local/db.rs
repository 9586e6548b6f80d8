//! The local backend's SQLite database: schema, connection, and a way to run
//! a closure on it off the async threads.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

use super::checkpoint::Checkpointer;
use crate::backend::{BackendError, Class, Result};
use crate::plan::SyncMode;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS streams (
    name TEXT PRIMARY KEY,
    shards INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stream_records (
    stream TEXT NOT NULL,
    shard INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    partition_key TEXT NOT NULL,
    data BLOB NOT NULL,
    arrival_ms INTEGER NOT NULL,
    PRIMARY KEY (stream, shard, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS producers (
    stream TEXT NOT NULL,
    producer TEXT NOT NULL,
    next INTEGER NOT NULL,
    records INTEGER NOT NULL,
    PRIMARY KEY (stream, producer)
);
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    visibility_ms INTEGER NOT NULL,
    max_receives INTEGER NOT NULL,
    dead_letter TEXT
);
CREATE TABLE IF NOT EXISTS queue_messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt TEXT,
    sent_ms INTEGER NOT NULL,
    UNIQUE (queue, id)
);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (queue, visible_at_ms, seq);
CREATE INDEX IF NOT EXISTS queue_messages_receipt ON queue_messages (receipt);
CREATE TABLE IF NOT EXISTS checkpoints (
    queue TEXT NOT NULL,
    consumer TEXT NOT NULL,
    source TEXT NOT NULL,
    position TEXT NOT NULL,
    PRIMARY KEY (queue, consumer, source)
);
CREATE TABLE IF NOT EXISTS objects (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    size INTEGER NOT NULL,
    etag TEXT NOT NULL,
    content_type TEXT NOT NULL,
    content_encoding TEXT,
    metadata TEXT NOT NULL,
    modified_ms INTEGER NOT NULL,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions (
    topic TEXT NOT NULL,
    queue TEXT NOT NULL,
    PRIMARY KEY (topic, queue)
);
CREATE TABLE IF NOT EXISTS notifications (
    topic TEXT NOT NULL,
    dedup_id TEXT NOT NULL,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (topic, dedup_id)
);
"#;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The shared database. Calls run on tokio's blocking pool.
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    /// Woken when a queue gets a message, so receivers need not poll hard.
    pub(crate) sent: tokio::sync::Notify,
    /// Checkpoints the WAL on a thread of its own (see [`Checkpointer`]).
    _checkpointer: Checkpointer,
}

/// SQLite's answer, classed by its result code: busy, locked, I/O, a full
/// disk, a file that cannot be opened now — may clear on their own; a
/// corrupt database, a constraint violated, a value too big, a misuse —
/// cannot. An error of rusqlite's own (a column of the wrong type, a row
/// missing) means state pipehost did not write: permanent.
pub(super) fn sql_err(e: rusqlite::Error) -> BackendError {
    use rusqlite::ErrorCode::{
        ApiMisuse, AuthorizationForStatementDenied, ConstraintViolation, DatabaseCorrupt,
        NotADatabase, ParameterOutOfRange, TooBig, TypeMismatch,
    };
    let class = match &e {
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            DatabaseCorrupt
            | NotADatabase
            | ConstraintViolation
            | TooBig
            | TypeMismatch
            | ApiMisuse
            | ParameterOutOfRange
            | AuthorizationForStatementDenied => Class::Permanent,
            _ => Class::Retryable,
        },
        _ => Class::Permanent,
    };
    BackendError::new("local", e.to_string(), class, Some(Box::new(e)))
}

impl Db {
    pub fn open(path: &Path, sync: &SyncMode) -> anyhow::Result<Self> {
        // Created 0600 before SQLite opens it: SQLite gives the WAL and
        // shared-memory files the database file's permissions.
        if !path.exists() {
            super::private_file(path)
                .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
        }
        let conn = Connection::open(path)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            match sync {
                SyncMode::Normal => "NORMAL",
                SyncMode::Full => "FULL",
            },
        )?;
        conn.execute_batch(SCHEMA)
            .map_err(|e| anyhow::anyhow!("cannot set up {}: {e}", path.display()))?;
        let conn = Arc::new(Mutex::new(conn));
        let checkpointer = Checkpointer::start(path, &conn)?;
        Ok(Self {
            conn,
            sent: tokio::sync::Notify::new(),
            _checkpointer: checkpointer,
        })
    }

    /// Runs `f` with the connection on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn).map_err(sql_err)
        })
        .await
        .map_err(|e| BackendError::join("local", e))?
    }

    /// Runs `f` with the connection on this thread (setup, tools, tests).
    pub fn call_sync<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn).map_err(sql_err)
    }

    pub fn ensure_stream(&self, name: &str, shards: u32) -> anyhow::Result<()> {
        let existing: Option<u32> = self.call_sync(|c| {
            c.query_row("SELECT shards FROM streams WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
        })?;
        match existing {
            Some(n) if n == shards => Ok(()),
            Some(n) => anyhow::bail!(
                "the local stream {name:?} has {n} shards on disk but pipeline.toml asks for {shards}; \
                 resharding a local stream is not supported (use a new data directory or stream name)"
            ),
            None => {
                self.call_sync(|c| {
                    c.execute(
                        "INSERT INTO streams (name, shards) VALUES (?1, ?2)",
                        params![name, shards],
                    )
                })?;
                Ok(())
            }
        }
    }

    pub fn ensure_queue(
        &self,
        name: &str,
        visibility: Duration,
        max_receives: u32,
        dead_letter: Option<&str>,
    ) -> anyhow::Result<()> {
        self.call_sync(|c| {
            c.execute(
                "INSERT INTO queues (name, visibility_ms, max_receives, dead_letter) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET visibility_ms = ?2, max_receives = ?3, dead_letter = ?4",
                params![name, visibility.as_millis() as i64, max_receives, dead_letter],
            )
        })?;
        Ok(())
    }

    pub fn ensure_subscription(&self, topic: &str, queue: &str) -> anyhow::Result<()> {
        self.call_sync(|c| {
            c.execute(
                "INSERT OR IGNORE INTO subscriptions (topic, queue) VALUES (?1, ?2)",
                params![topic, queue],
            )
        })?;
        Ok(())
    }
}
