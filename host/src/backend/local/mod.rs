//! The embedded local backend: the four services on one machine, durable
//! on disk under one data directory, with nothing else to install.
//!
//! ```text
//! <data_dir>/pipehost.db          SQLite (WAL): stream shards, producer
//!                                 positions, queues, checkpoints, object
//!                                 metadata, notifications, subscriptions
//! <data_dir>/objects/<bucket>/…   object bodies, laid out like S3 keys
//! ```
//!
//! WAL checkpoints run on a thread of their own ([`checkpoint`]), not in
//! the commit that happens to cross the threshold.
//!
//! Every state change is one SQLite transaction, so a process killed at any
//! point leaves a consistent state: records and their producer position
//! commit together, queue messages and the bridge checkpoint commit
//! together, a notification and its deliveries commit together. Object
//! bodies are written to a temporary file and renamed into place before
//! their metadata row is written.

mod checkpoint;
mod db;
mod notifier;
mod queue;
pub mod requestlog;
mod store;
mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use db::Db;
pub use notifier::LocalNotifier;
pub use queue::LocalQueue;
pub use store::LocalObjectStore;
pub use stream::LocalStream;

use super::Backend;
use crate::plan::{Plan, SyncMode};

/// The resource names and settings the local backend creates.
#[derive(Debug, Clone)]
pub struct Names {
    pub stream: String,
    pub shards: u32,
    pub queue: String,
    pub dead_letter: String,
    pub visibility: Duration,
    pub max_receives: u32,
    pub bucket: String,
    pub topic: String,
    pub subscribers: Vec<String>,
}

impl Names {
    pub fn from_plan(plan: &Plan) -> Self {
        Self {
            stream: plan.fixed.stream.name.clone(),
            shards: plan.fixed.stream.shards,
            queue: plan.fixed.queue.name.clone(),
            dead_letter: plan.fixed.queue.dead_letter.clone(),
            visibility: plan.fixed.queue.visibility_timeout,
            max_receives: plan.fixed.queue.max_receives,
            bucket: plan.fixed.store.bucket.clone(),
            topic: plan.fixed.notifications.topic.clone(),
            subscribers: plan.fixed.notifications.subscribers.clone(),
        }
    }

    /// Short names for unit tests: stream `s` of `shards` shards, queue `q`
    /// (30 s visibility, 3 receives), bucket `b`, topic `t`.
    #[cfg(test)]
    pub fn for_tests(shards: u32) -> Self {
        Self {
            stream: "s".into(),
            shards,
            queue: "q".into(),
            dead_letter: "q-dlq".into(),
            visibility: Duration::from_secs(30),
            max_receives: 3,
            bucket: "b".into(),
            topic: "t".into(),
            subscribers: vec![],
        }
    }
}

/// An opened local backend.
pub struct LocalBackend {
    db: Arc<Db>,
    names: Names,
    objects_root: PathBuf,
    sync: SyncMode,
}

/// Creates `dir` and any missing parents, 0700: the data directory holds
/// every record and object, readable by this user only.
pub(crate) fn private_dirs(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Creates (truncating) a file readable and writable by this user only.
pub(crate) fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

/// Default visibility for queues without their own settings (subscribers).
const SUBSCRIBER_VISIBILITY: Duration = Duration::from_secs(30);

impl LocalBackend {
    /// Opens (creating if needed) the backend under `data_dir`.
    pub fn open(data_dir: &Path, sync: SyncMode, names: &Names) -> anyhow::Result<Self> {
        private_dirs(data_dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create the data directory {}: {e}",
                data_dir.display()
            )
        })?;
        let db = Arc::new(Db::open(&data_dir.join("pipehost.db"), &sync)?);
        db.ensure_stream(&names.stream, names.shards)?;
        db.ensure_queue(&names.dead_letter, SUBSCRIBER_VISIBILITY, 0, None)?;
        db.ensure_queue(
            &names.queue,
            names.visibility,
            names.max_receives,
            Some(&names.dead_letter),
        )?;
        for s in &names.subscribers {
            db.ensure_queue(s, SUBSCRIBER_VISIBILITY, 0, None)?;
            db.ensure_subscription(&names.topic, s)?;
        }
        Ok(Self {
            db,
            names: names.clone(),
            objects_root: data_dir.join("objects"),
            sync,
        })
    }

    /// The trait objects the stages use.
    pub fn backend(&self) -> Backend {
        let db = self.db.clone();
        Backend {
            stream: Arc::new(LocalStream::new(
                self.db.clone(),
                &self.names.stream,
                self.names.shards,
                &self.names.queue,
            )),
            queue: Arc::new(LocalQueue::new(self.db.clone(), &self.names.queue)),
            dead_letter: Arc::new(LocalQueue::new(self.db.clone(), &self.names.dead_letter)),
            store: Arc::new(LocalObjectStore::new(
                self.db.clone(),
                &self.objects_root,
                &self.names.bucket,
                self.sync == SyncMode::Full,
            )),
            notifier: Arc::new(LocalNotifier::new(self.db.clone(), &self.names.topic)),
            opener: Arc::new(move |name: &str| {
                Arc::new(LocalQueue::new(db.clone(), name)) as Arc<dyn super::Queue>
            }),
            // The local queue is polled: wake at least twice a second.
            receive_wait: Duration::from_millis(500),
        }
    }
}
