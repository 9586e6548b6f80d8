//! The validated plan: what the runtime runs, derived from a parsed
//! `pipeline.toml` by pure checks (no I/O). Every problem is reported at
//! once, each naming the file, line and key.
//!
//! A [`Plan`] is split by what a running pipeline can change: [`Fixed`]
//! (backend, names, layout, servers — a reload that changes any of it is
//! refused) and [`Live`] (feeds and plugins, the bridge's bounds, the
//! stream's retention — a reload applies them). Each section is built by
//! its own file: `backend.rs`, `feeds.rs`, `stream.rs` (stream, bridge,
//! rollover), `queue.rs` (queue, processor), `store.rs`,
//! `notifications.rs`, `admin.rs`, `web.rs`, `aws.rs`.

mod admin;
mod aws;
mod backend;
mod check;
mod feeds;
mod key;
mod notifications;
mod queue;
mod store;
mod stream;
mod units;
mod web;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{ConfigError, PipelineFile, Source};

pub use admin::AdminPlan;
pub use aws::{
    AwsEndpoints, AwsPlan, SQS_CLASSIC_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES, StartPosition,
};
pub use backend::{BackendPlan, SyncMode};
pub use feeds::{FeedPlan, GeneratorPlan, PluginPlan};
pub use key::{KeyParts, KeyTemplate};
pub use notifications::NotificationPlan;
pub use queue::{ProcessorPlan, QueuePlan};
pub use store::StorePlan;
pub use stream::{BridgePlan, Rollover, StreamPlan};
pub use units::{parse_duration, parse_size};
pub use web::{MAX_AGGREGATE_LINES, MIN_HEADER_LIMIT, RequestLogPlan, TlsPlan, WebPlan};

use check::Checker;

/// Where a value came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub line: Option<usize>,
    pub key: String,
}

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The pipeline file it was built from.
    pub file: PathBuf,
    pub fixed: Fixed,
    pub live: Live,
}

/// What a running pipeline cannot change: a reload that changes any of it
/// is refused (restart to apply).
#[derive(Debug, Clone, PartialEq)]
pub struct Fixed {
    /// `pipeline.name`.
    pub name: String,
    pub backend: BackendPlan,
    pub stream: StreamPlan,
    pub queue: QueuePlan,
    pub processor: ProcessorPlan,
    pub store: StorePlan,
    pub notifications: NotificationPlan,
    pub admin: Option<AdminPlan>,
    /// The web server; `None` when absent or `enabled = false`.
    pub web: Option<WebPlan>,
}

/// What a hot reload applies while the pipeline runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    pub feeds: Vec<FeedPlan>,
    pub bridge: BridgePlan,
    /// Records older than this are dropped from the (local) stream.
    pub retention: Duration,
}

impl Plan {
    pub fn feed(&self, name: &str) -> Option<&FeedPlan> {
        self.live.feeds.iter().find(|f| f.name == name)
    }

    /// Every plugin the plan references.
    pub fn plugins(&self) -> impl Iterator<Item = &PluginPlan> {
        self.live.feeds.iter().flat_map(|f| {
            f.generator
                .iter()
                .map(|g| &g.plugin)
                .chain(std::iter::once(&f.parser))
                .chain(f.transforms.iter())
        })
    }
}

impl Fixed {
    /// The keys whose settings differ in `new`, for the message refusing a
    /// reload; empty exactly when `self == new`. Each section is taken
    /// apart field by field, so a new field does not compile until it is
    /// named here.
    pub fn changed_keys(&self, new: &Fixed) -> Vec<&'static str> {
        let Fixed {
            name,
            backend,
            stream,
            queue,
            processor,
            store,
            notifications,
            admin,
            web,
        } = self;
        let StreamPlan {
            name: stream_name,
            shards,
            consumer,
        } = stream;
        let QueuePlan {
            name: queue_name,
            dead_letter,
            visibility_timeout,
            max_receives,
        } = queue;
        let ProcessorPlan {
            workers,
            receive_batch,
        } = processor;
        let StorePlan {
            bucket,
            key_template,
            error_prefix,
            gzip,
        } = store;
        let NotificationPlan { topic, subscribers } = notifications;
        let keys = [
            (
                *backend == new.backend,
                "pipeline.backend / local.data_dir / local.sync",
            ),
            (*name == new.name, "pipeline.name"),
            (*stream_name == new.stream.name, "stream.name"),
            (*shards == new.stream.shards, "stream.shards"),
            (*queue_name == new.queue.name, "queue.name"),
            (*dead_letter == new.queue.dead_letter, "queue.dead_letter"),
            (
                *visibility_timeout == new.queue.visibility_timeout,
                "queue.visibility_timeout",
            ),
            (
                *max_receives == new.queue.max_receives,
                "queue.max_receives",
            ),
            (*workers == new.processor.workers, "processor.workers"),
            (
                *receive_batch == new.processor.receive_batch,
                "processor.receive_batch",
            ),
            (*bucket == new.store.bucket, "store.bucket"),
            (
                *key_template == new.store.key_template,
                "store.key_template",
            ),
            (
                *error_prefix == new.store.error_prefix,
                "store.error_prefix",
            ),
            (*gzip == new.store.gzip, "store.gzip"),
            (*topic == new.notifications.topic, "notifications.topic"),
            (
                *subscribers == new.notifications.subscribers,
                "notifications.subscribers",
            ),
            (*consumer == new.stream.consumer, "bridge.consumer"),
            (*admin == new.admin, "admin"),
            (*web == new.web, "web"),
        ];
        keys.into_iter()
            .filter_map(|(same, key)| (!same).then_some(key))
            .collect()
    }
}

/// The folder relative paths in the file resolve against.
fn base_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Validates a parsed file into a plan. `path` is the file (for messages and
/// to resolve relative paths); `text` its contents (for line numbers).
pub fn build(path: &Path, text: &str, file: &PipelineFile) -> Result<Plan, Vec<ConfigError>> {
    let base = base_dir(path);
    let mut c = Checker::new(path, text);
    // Sections in the order their errors are reported.
    let name = file.pipeline.name.clone();
    c.name(&name, None, "pipeline.name");
    let backend = backend::build(&mut c, &base, file);
    let feeds = feeds::build(&mut c, &base, &file.plugins, &file.feeds);
    let stream = stream::stream(&mut c, &name, &file.stream, &file.bridge);
    let retention = stream::retention(&mut c, &file.stream);
    let queue = queue::queue(&mut c, &name, &backend, &file.queue);
    let processor = queue::processor(&mut c, &file.processor);
    let bridge = stream::bridge(&mut c, &file.bridge, &file.store.rollover);
    let store = store::build(&mut c, &name, &file.store);
    let notifications = notifications::build(&mut c, &name, &queue, &file.notifications);
    let admin = file
        .admin
        .as_ref()
        .and_then(|a| admin::build(&mut c, &base, a));
    let web = file
        .web
        .as_ref()
        .and_then(|w| web::build(&mut c, &base, &backend, w).filter(|_| w.enabled));
    c.finish()?;
    Ok(Plan {
        file: path.to_owned(),
        fixed: Fixed {
            name,
            backend,
            stream,
            queue,
            processor,
            store,
            notifications,
            admin,
            web,
        },
        live: Live {
            feeds,
            bridge,
            retention,
        },
    })
}

/// Validates a file [`crate::config::read`] has read and parsed.
pub fn from_source(source: &Source) -> Result<Plan, Vec<ConfigError>> {
    build(&source.path, &source.text, &source.file)
}

/// Every plugin file must exist: `is_file` is asked about each (the
/// caller's one look at the disk, e.g. `Path::is_file`), and each missing
/// one is named with its line and key.
pub fn check_files(plan: &Plan, is_file: impl Fn(&Path) -> bool) -> Result<(), Vec<ConfigError>> {
    let errors: Vec<ConfigError> = plan
        .plugins()
        .filter(|p| !is_file(&p.path))
        .map(|p| ConfigError {
            file: plan.file.clone(),
            line: p.origin.line,
            key: Some(p.origin.key.clone()),
            message: format!(
                "plugin file {} not found (build the shipped plugins with `./x build-plugins`)",
                p.path.display()
            ),
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests;
