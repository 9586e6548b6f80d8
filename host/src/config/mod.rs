//! `pipeline.toml` as written: serde types, strict about unknown keys.
//!
//! This module reads and parses ([`read`]); [`crate::plan`] validates what
//! it parsed into the values the runtime uses, with no I/O of its own, and
//! names the file, line and key of anything wrong. Values that need checking beyond their type are [`Spanned`] so the
//! plan can point at them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

mod web;
pub use web::{RequestLogConfig, TlsConfig, WebConfig};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    #[serde(default)]
    pub pipeline: PipelineSection,
    #[serde(default)]
    pub plugins: PluginDefaults,
    pub feeds: Spanned<BTreeMap<String, FeedConfig>>,
    #[serde(default)]
    pub stream: StreamConfig,
    #[serde(default)]
    pub bridge: BridgeConfig,
    #[serde(default)]
    pub queue: QueueConfig,
    #[serde(default)]
    pub processor: ProcessorConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub notifications: NotificationConfig,
    #[serde(default)]
    pub local: LocalConfig,
    #[serde(default)]
    pub aws: AwsConfig,
    /// The admin HTTP API (metrics, reload); off when absent.
    pub admin: Option<AdminConfig>,
    /// The web server (ingest, `/logs`, health, metrics); off when absent.
    pub web: Option<WebConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on, e.g. `"127.0.0.1:9464"` (port 0 picks one).
    pub listen: Spanned<String>,
    /// Environment variable holding admin keys, comma-separated.
    pub keys_env: Option<String>,
    /// File with admin keys, one per line (relative to the pipeline file).
    pub keys_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    #[serde(default = "default_name")]
    pub name: String,
    /// `local` (default) or `aws`.
    #[serde(default = "default_backend_spanned")]
    pub backend: Spanned<String>,
}

impl Default for PipelineSection {
    fn default() -> Self {
        Self {
            name: default_name(),
            backend: Spanned::new(0..0, default_backend()),
        }
    }
}

fn default_name() -> String {
    "market-data".into()
}
fn default_backend() -> String {
    "local".into()
}
fn default_backend_spanned() -> Spanned<String> {
    Spanned::new(0..0, default_backend())
}

/// Defaults applied to every plugin reference.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDefaults {
    /// Where plugin names resolve (`<dir>/<name>.wasm`), relative to the file.
    #[serde(default = "default_plugin_dir")]
    pub dir: String,
    /// Per-call deadline, e.g. `"5s"`.
    pub timeout: Option<Spanned<String>>,
    /// Per-instance memory cap, e.g. `"64MiB"`.
    pub memory: Option<Spanned<String>>,
}

impl Default for PluginDefaults {
    fn default() -> Self {
        Self {
            dir: default_plugin_dir(),
            timeout: None,
            memory: None,
        }
    }
}

fn default_plugin_dir() -> String {
    "target/wasm32-wasip2/release".into()
}

/// A plugin reference with its config and limits:
/// `{ plugin = "forex_parser", config = { … }, timeout = "2s" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    /// A name in `plugins.dir`, or a path ending in `.wasm`.
    pub plugin: Spanned<String>,
    /// The plugin's own config, handed to it as JSON.
    #[serde(default)]
    pub config: toml::Table,
    pub timeout: Option<Spanned<String>>,
    pub memory: Option<Spanned<String>>,
}

/// One feed: where its records come from and how they are processed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedConfig {
    /// Generates records on a schedule (a feed fed only by HTTP ingest has none).
    pub generator: Option<GeneratorConfig>,
    /// Parses the feed's raw records.
    pub parser: PluginRef,
    /// Applied in order to the parsed events.
    #[serde(default)]
    pub transforms: Vec<PluginRef>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    pub plugin: Spanned<String>,
    #[serde(default)]
    pub config: toml::Table,
    /// Time between ticks, e.g. `"250ms"`, `"1m"`.
    pub interval: Spanned<String>,
    /// Records asked for per tick.
    #[serde(default = "default_records_per_tick")]
    pub records: Spanned<u32>,
    #[serde(default)]
    pub seed: u64,
    /// Put a tick's records for one partition key as one aggregated stream
    /// record (the default), or each as a stream record of its own.
    #[serde(default = "default_true")]
    pub aggregate: bool,
    pub timeout: Option<Spanned<String>>,
    pub memory: Option<Spanned<String>>,
}

fn default_true() -> bool {
    true
}

fn default_records_per_tick() -> Spanned<u32> {
    Spanned::new(0..0, 100)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    pub name: Option<String>,
    #[serde(default = "default_shards")]
    pub shards: Spanned<u32>,
    /// How long records stay on the stream (local backend; Kinesis keeps
    /// its own retention), e.g. `"24h"`.
    pub retention: Option<Spanned<String>>,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            name: None,
            shards: default_shards(),
            retention: None,
        }
    }
}

fn default_shards() -> Spanned<u32> {
    Spanned::new(0..0, 4)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeConfig {
    /// Name under which the bridge keeps its stream checkpoints.
    pub consumer: Option<String>,
    /// How long to wait before polling an idle shard again.
    pub poll_interval: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    pub name: Option<String>,
    pub visibility_timeout: Option<Spanned<String>>,
    /// Receives before a message moves to the dead-letter queue.
    pub max_receives: Option<Spanned<u32>>,
    pub dead_letter: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessorConfig {
    /// Batches processed at once.
    pub workers: Option<Spanned<u32>>,
    /// Messages taken per receive.
    pub receive_batch: Option<Spanned<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub bucket: Option<String>,
    /// Object key template; see the plan for the placeholders.
    pub key_template: Option<Spanned<String>>,
    pub error_prefix: Option<Spanned<String>>,
    pub gzip: Option<bool>,
    #[serde(default)]
    pub rollover: RolloverConfig,
}

/// When a batch (and so an object) is closed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloverConfig {
    pub records: Option<Spanned<u32>>,
    pub bytes: Option<Spanned<String>>,
    pub age: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationConfig {
    pub topic: Option<String>,
    /// Queues subscribed to the topic.
    #[serde(default)]
    pub subscribers: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Where the local backend keeps its state, relative to the file.
    pub data_dir: Option<String>,
    /// `normal` (survives a process crash) or `full` (also power loss).
    pub sync: Option<Spanned<String>>,
}

/// The aws backend: where the services are and how to talk to them.
/// Credentials and (unless given here) the region come from the standard
/// AWS chain; `AWS_ENDPOINT_URL` / `AWS_ENDPOINT_URL_<SERVICE>` work too.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    pub region: Option<String>,
    /// A named profile from the shared config files.
    pub profile: Option<String>,
    /// One endpoint for every service (LocalStack, moto server).
    pub endpoint: Option<Spanned<String>>,
    /// Per-service endpoints; they win over `endpoint`.
    #[serde(default)]
    pub endpoints: AwsEndpoints,
    /// Path-style S3 addressing (`http://host/bucket/key`).
    pub s3_force_path_style: Option<bool>,
    /// `when_supported` (the SDK default) or `when_required` (for
    /// S3-compatible servers that reject flexible checksums).
    pub s3_checksums: Option<Spanned<String>>,
    /// Where the bridge starts a shard it has no checkpoint for:
    /// `trim_horizon` (default), `latest`, or an RFC 3339 time.
    pub start_position: Option<Spanned<String>>,
    /// Key prefix in the bucket for pipehost's own state: checkpoints,
    /// producer positions, large-message payloads.
    pub state_prefix: Option<Spanned<String>>,
    /// SQS message size limit; bigger batches travel as S3 payloads with a
    /// pointer message. At most `1MiB` (256KiB by default, which every
    /// SQS-compatible server accepts).
    pub max_message_bytes: Option<Spanned<String>>,
    /// How long a processor waits on an empty queue (SQS long polling,
    /// 1s..20s; default 20s).
    pub receive_wait: Option<Spanned<String>>,
    /// How often a producer's position is saved (it costs one S3 PUT).
    pub producer_mark_interval: Option<Spanned<String>>,
    /// The topic's ARN, when known (a deployment passes it): saves looking
    /// the topic up by name, which needs `sns:ListTopics`.
    pub topic_arn: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsEndpoints {
    pub kinesis: Option<Spanned<String>>,
    pub sqs: Option<Spanned<String>>,
    pub s3: Option<Spanned<String>>,
    pub sns: Option<Spanned<String>>,
}

/// A config error with its location.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key path, when known.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    fn render(&self) -> String {
        let mut s = self.file.display().to_string();
        if let Some(line) = self.line {
            s.push_str(&format!(":{line}"));
        }
        if let Some(key) = &self.key {
            s.push_str(&format!(": `{key}`"));
        }
        format!("{s}: {}", self.message)
    }
}

/// 1-based line of a byte offset.
pub fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Resource names a deployment sets from outside the file: the infra
/// templates give the Lambda function and the ECS tasks the names of the
/// resources they created, so one packaged pipeline.toml serves any stack.
/// Each variable, when set and not empty, wins over the file.
/// Sets one field of the file from an environment variable's value.
pub type EnvOverride = fn(&mut PipelineFile, String);

pub const ENV_OVERRIDES: [(&str, EnvOverride); 6] = [
    ("PIPEHOST_STREAM_NAME", |f, v| f.stream.name = Some(v)),
    ("PIPEHOST_QUEUE_NAME", |f, v| f.queue.name = Some(v)),
    ("PIPEHOST_DEAD_LETTER_QUEUE_NAME", |f, v| {
        f.queue.dead_letter = Some(v)
    }),
    ("PIPEHOST_BUCKET", |f, v| f.store.bucket = Some(v)),
    ("PIPEHOST_TOPIC_NAME", |f, v| {
        f.notifications.topic = Some(v)
    }),
    // arn:aws:sns:<region>:<account>:<name>: the ARN and the topic's name.
    ("PIPEHOST_TOPIC_ARN", |f, v| {
        f.notifications.topic = v.rsplit(':').next().map(str::to_string);
        f.aws.topic_arn = Some(Spanned::new(0..0, v));
    }),
];

/// Applies [`ENV_OVERRIDES`] through `var` (the process environment, or a
/// map in tests). Returns the variables that were applied.
pub fn apply_env_overrides(
    file: &mut PipelineFile,
    var: impl Fn(&str) -> Option<String>,
) -> Vec<&'static str> {
    let mut applied = Vec::new();
    for (name, apply) in ENV_OVERRIDES {
        if let Some(value) = var(name).filter(|v| !v.trim().is_empty()) {
            apply(file, value.trim().to_string());
            applied.push(name);
        }
    }
    applied
}

/// Parses a pipeline file's text. `path` is only for messages.
pub fn parse(path: &Path, text: &str) -> Result<PipelineFile, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        ConfigError {
            file: path.to_owned(),
            line,
            key: None,
            message: e.message().trim().to_string(),
        }
    })
}

/// A pipeline file as read: its path (for messages and relative paths), its
/// text (for line numbers) and what it parsed into, the environment's
/// resource names applied.
#[derive(Debug)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    pub file: PipelineFile,
}

/// Reads and parses a pipeline file and applies [`ENV_OVERRIDES`] from the
/// process environment; [`crate::plan::from_source`] validates the result.
pub fn read(path: &Path) -> Result<Source, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        }]
    })?;
    let mut file = parse(path, &text).map_err(|e| vec![e])?;
    let applied = apply_env_overrides(&mut file, |k| std::env::var(k).ok());
    if !applied.is_empty() {
        tracing::info!(file = %path.display(), "resource names from the environment: {}", applied.join(", "));
    }
    Ok(Source {
        path: path.to_owned(),
        text,
        file,
    })
}
