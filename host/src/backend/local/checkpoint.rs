//! WAL checkpoints off the writers' path. SQLite's own auto-checkpoint runs
//! inside the commit that crosses the threshold: that commit copies the WAL
//! into the database and waits for two fsyncs, and every request behind it
//! waits too (measured: HTTP ingest at ~180 MB/s of WAL checkpointed every
//! ~20 ms, ~30% of the writer's time and most of its p99). Here a thread
//! with its own connection checkpoints instead:
//!
//! - woken by a commit (a commit hook on the writing connection), it runs
//!   a PASSIVE checkpoint, which copies frames while writers go on, and
//!   again as long as commits keep coming. Many small checkpoints keep the
//!   WAL's unsynced tail, and so each fsync, small: batching them (waiting
//!   5-25 ms after a wake-up) made the restarts below ~50x slower;
//! - a WAL is reused from its start only once every frame is copied, which
//!   under steady writes never happens on its own, so past
//!   [`RESTART_FRAMES`] it catches up with passive passes until one finds
//!   little new, then runs a RESTART checkpoint holding the process's
//!   writer lock: writers wait, but only for the frames of that short pass;
//! - the writing connection keeps SQLite's auto-checkpoint, at four times
//!   the restart threshold, as a fallback that bounds the WAL should this
//!   thread fall behind.
//!
//! Durability is unchanged: a checkpoint only copies committed frames.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

/// WAL frames (pages) past which the WAL is restarted: 128 MiB of 4 KiB
/// pages. Each restart holds writers for a moment (~1-8 ms measured under
/// the HTTP benchmark), so not too often.
pub const RESTART_FRAMES: i64 = 32768;
/// How long a restart waits for another process's writers and readers.
const RESTART_WAIT: Duration = Duration::from_millis(20);
/// Passes that may run to catch up before a restart, and what counts as
/// caught up: a pass that found fewer new frames than this (2 MiB).
const CATCH_UP_PASSES: usize = 8;
const CAUGHT_UP_FRAMES: i64 = 512;

/// The checkpoint thread of one database; stopped and joined on drop.
pub struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    dirty: AtomicBool,
    stop: AtomicBool,
}

impl Checkpointer {
    /// Starts the thread on its own connection to `path`, and hooks the
    /// writing connection `writer` (the process's one, behind its lock) to
    /// wake it after each commit.
    pub fn start(path: &Path, writer: &Arc<Mutex<Connection>>) -> anyhow::Result<Self> {
        Self::start_with(path, writer, RESTART_FRAMES)
    }

    /// [`Checkpointer::start`] with another restart threshold (tests); the
    /// writer's own auto-checkpoint is set to four times that.
    fn start_with(
        path: &Path,
        writer: &Arc<Mutex<Connection>>,
        restart_frames: i64,
    ) -> anyhow::Result<Self> {
        let conn = Connection::open(path)
            .map_err(|e| anyhow::anyhow!("cannot open {} to checkpoint: {e}", path.display()))?;
        // Only a restart waits (passive checkpoints never do), and it waits
        // holding this process's writers: for another process sharing the
        // database (`serve` beside `run`), give up soon and retry later.
        conn.busy_timeout(RESTART_WAIT)?;
        let locked = writer.lock().unwrap_or_else(|p| p.into_inner());
        locked.pragma_update(None, "wal_autocheckpoint", 4 * restart_frames)?;
        let shared = Arc::new(Shared {
            dirty: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let thread = std::thread::Builder::new()
            .name("pipehost-checkpoint".into())
            .spawn({
                let shared = shared.clone();
                let writer = writer.clone();
                let path = path.display().to_string();
                move || run(&conn, &writer, &shared, &path, restart_frames)
            })?;
        let (wake, handle) = (shared.clone(), thread.thread().clone());
        locked.commit_hook(Some(move || {
            // A swap, so a burst of commits costs one unpark.
            if !wake.dirty.swap(true, Ordering::AcqRel) {
                handle.unpark();
            }
            false // never turn the commit into a rollback
        }));
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// `PRAGMA wal_checkpoint(mode)`: (frames in the WAL, frames copied).
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

fn run(
    conn: &Connection,
    writer: &Mutex<Connection>,
    shared: &Shared,
    path: &str,
    restart_frames: i64,
) {
    let mut failures = 0u64;
    loop {
        while !shared.dirty.load(Ordering::Acquire) && !shared.stop.load(Ordering::Acquire) {
            std::thread::park();
        }
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        shared.dirty.store(false, Ordering::Release);
        let result = checkpoint(conn, "PASSIVE").and_then(|(frames, mut done)| {
            if frames >= restart_frames {
                // Catch up without holding anyone off until a pass finds
                // little new, then restart with the writers' lock held: no
                // write is in progress, so the restart takes SQLite's write
                // lock at once (a waiting one would starve behind
                // back-to-back commits), and it copies and syncs only what
                // the last short pass left.
                for _ in 0..CATCH_UP_PASSES {
                    let (_, now) = checkpoint(conn, "PASSIVE")?;
                    let copied = now - done;
                    done = now;
                    if copied < CAUGHT_UP_FRAMES {
                        break;
                    }
                }
                let _writers = writer.lock().unwrap_or_else(|p| p.into_inner());
                checkpoint(conn, "RESTART")?;
            }
            Ok(())
        });
        if let Err(e) = result {
            failures += 1;
            // The first failure and then one in a hundred; the writer's own
            // auto-checkpoint still bounds the WAL meanwhile.
            if failures % 100 == 1 {
                tracing::warn!(db = path, "WAL checkpoint failed: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_checkpoints_steady_writes_and_restarts_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (b BLOB NOT NULL)")
            .unwrap();
        let writer = Arc::new(Mutex::new(conn));
        // A small threshold: 8 MiB of 4 KiB pages.
        let restart_frames = 2048;
        let cp = Checkpointer::start_with(&path, &writer, restart_frames).unwrap();
        let autocheckpoint: i64 = writer
            .lock()
            .unwrap()
            .query_row("PRAGMA wal_autocheckpoint", [], |r| r.get(0))
            .unwrap();
        assert_eq!(autocheckpoint, 4 * restart_frames);
        // Without that fallback, only the thread can restart the WAL.
        writer
            .lock()
            .unwrap()
            .pragma_update(None, "wal_autocheckpoint", 0)
            .unwrap();
        // Writes without a pause: a passive checkpoint alone never catches
        // up, so without restarts the WAL would hold every byte written.
        // Write until the WAL is seen reused (much smaller than what was
        // written), with a bound on how much that may take.
        let blob = vec![7u8; 64 * 1024];
        let restart_bytes = restart_frames as u64 * 4096;
        let size = |suffix: &str| {
            std::fs::metadata(dir.path().join(format!("t.db{suffix}")))
                .unwrap()
                .len()
        };
        let mut written = 0u64;
        while written < 4 * restart_bytes || size("-wal") > written / 2 {
            assert!(
                written < 64 * restart_bytes,
                "the WAL was never restarted: {} bytes after {written} written",
                size("-wal")
            );
            // One transaction at a time under the lock, as `Db::call` does.
            writer
                .lock()
                .unwrap()
                .execute("INSERT INTO t (b) VALUES (?1)", [&blob])
                .unwrap();
            written += blob.len() as u64;
        }
        assert!(
            size("") > restart_bytes,
            "the thread copied pages into the database: {} bytes",
            size("")
        );
        drop(cp); // stops and joins the thread
    }
}
