//! The validated plan: what the runtime runs, derived from `pipeline.toml`
//! by pure checks (no I/O). Every problem is reported at once, each naming
//! the file, line and key. [`check_files`] is the one step that looks at
//! the disk: it confirms every referenced plugin file exists.

mod aws;
mod key;
mod units;
mod web;

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::config::{self, ConfigError, PipelineFile, PluginRef};
use crate::plugin::PluginSettings;

pub use aws::{
    AwsEndpoints, AwsPlan, SQS_CLASSIC_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES, StartPosition,
};
pub use key::{KeyParts, KeyTemplate};
pub use units::{parse_duration, parse_size};
pub use web::{MAX_AGGREGATE_LINES, MIN_HEADER_LIMIT, RequestLogPlan, TlsPlan, WebPlan};

/// Where a value came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub line: Option<usize>,
    pub key: String,
}

/// A plugin as the runtime loads it.
#[derive(Debug, Clone)]
pub struct PluginPlan {
    pub path: PathBuf,
    pub config_json: String,
    pub settings: PluginSettings,
    pub origin: Origin,
}

#[derive(Debug, Clone)]
pub struct GeneratorPlan {
    pub plugin: PluginPlan,
    pub interval: Duration,
    pub records: u32,
    pub seed: u64,
    /// A tick's records per partition key as one aggregated stream record.
    pub aggregate: bool,
}

#[derive(Debug, Clone)]
pub struct FeedPlan {
    pub name: String,
    pub generator: Option<GeneratorPlan>,
    pub parser: PluginPlan,
    pub transforms: Vec<PluginPlan>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncMode {
    /// Survives a process crash (SQLite WAL, synchronous=NORMAL).
    Normal,
    /// Also survives power loss (synchronous=FULL, fsync on every object).
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendPlan {
    Local { data_dir: PathBuf, sync: SyncMode },
    Aws(Box<AwsPlan>),
}

/// The admin HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPlan {
    pub listen: std::net::SocketAddr,
    pub keys_env: String,
    pub keys_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct Rollover {
    pub records: usize,
    pub bytes: usize,
    pub age: Duration,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub file: PathBuf,
    pub name: String,
    pub backend: BackendPlan,
    pub feeds: Vec<FeedPlan>,
    pub stream_name: String,
    pub shards: u32,
    /// Records older than this are dropped from the (local) stream.
    pub retention: Duration,
    pub bridge_consumer: String,
    pub poll_interval: Duration,
    pub queue_name: String,
    pub dead_letter_queue: String,
    pub visibility_timeout: Duration,
    pub max_receives: u32,
    pub workers: usize,
    pub receive_batch: usize,
    pub bucket: String,
    pub key_template: KeyTemplate,
    pub error_prefix: String,
    pub gzip: bool,
    pub rollover: Rollover,
    pub topic: String,
    pub subscribers: Vec<String>,
    pub admin: Option<AdminPlan>,
    /// The web server; `None` when absent or `enabled = false`.
    pub web: Option<WebPlan>,
}

impl Plan {
    pub fn feed(&self, name: &str) -> Option<&FeedPlan> {
        self.feeds.iter().find(|f| f.name == name)
    }

    /// Every plugin the plan references.
    pub fn plugins(&self) -> impl Iterator<Item = &PluginPlan> {
        self.feeds.iter().flat_map(|f| {
            f.generator
                .iter()
                .map(|g| &g.plugin)
                .chain(std::iter::once(&f.parser))
                .chain(f.transforms.iter())
        })
    }
}

/// Collects errors so all of them are reported at once.
struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl Checker<'_> {
    fn line<T>(&self, v: &Spanned<T>) -> Option<usize> {
        let span = v.span();
        (span.end > 0).then(|| config::line_of(self.text, span.start))
    }

    fn err(&mut self, line: Option<usize>, key: &str, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            key: Some(key.to_string()),
            message: message.into(),
        });
    }

    /// An error at the line of `v` (when given).
    fn err_at<T>(&mut self, v: Option<&Spanned<T>>, key: &str, message: impl Into<String>) {
        let line = v.and_then(|v| self.line(v));
        self.err(line, key, message);
    }

    fn duration(
        &mut self,
        v: &Option<Spanned<String>>,
        key: &str,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let Some(v) = v else { return default };
        match parse_duration(v.get_ref()) {
            Ok(d) if d >= min => d,
            Ok(d) => {
                self.err(
                    self.line(v),
                    key,
                    format!("{d:?} is too short: at least {min:?}"),
                );
                default
            }
            Err(e) => {
                self.err(self.line(v), key, e);
                default
            }
        }
    }

    fn size(&mut self, v: &Option<Spanned<String>>, key: &str, default: usize) -> usize {
        let Some(v) = v else { return default };
        match parse_size(v.get_ref()) {
            Ok(n) if n > 0 => n,
            Ok(_) => {
                self.err(self.line(v), key, "must be more than 0 bytes");
                default
            }
            Err(e) => {
                self.err(self.line(v), key, e);
                default
            }
        }
    }

    fn range(&mut self, v: &Spanned<u32>, key: &str, min: u32, max: u32) -> u32 {
        let n = *v.get_ref();
        if n < min || n > max {
            self.err(
                self.line(v),
                key,
                format!("{n} is out of range: {min} to {max}"),
            );
            return n.clamp(min, max);
        }
        n
    }

    fn opt_range(
        &mut self,
        v: &Option<Spanned<u32>>,
        key: &str,
        default: u32,
        min: u32,
        max: u32,
    ) -> u32 {
        match v {
            Some(v) => self.range(v, key, min, max),
            None => default,
        }
    }

    fn name(&mut self, name: &str, line: Option<usize>, key: &str) {
        let ok = !name.is_empty()
            && name.len() <= 80
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            self.err(
                line,
                key,
                format!("{name:?} is not a valid name: use 1-80 of a-z, 0-9, '-', '_'"),
            );
        }
    }
}

fn resolve_plugin(base: &Path, dir: &str, reference: &str) -> PathBuf {
    if reference.ends_with(".wasm") || reference.contains('/') {
        base.join(reference)
    } else {
        base.join(dir).join(format!("{reference}.wasm"))
    }
}

struct Defaults {
    dir: String,
    settings: PluginSettings,
}

/// The keys that describe one plugin, wherever it is configured.
struct PluginKeys<'a> {
    plugin: &'a Spanned<String>,
    config: &'a toml::Table,
    timeout: &'a Option<Spanned<String>>,
    memory: &'a Option<Spanned<String>>,
}

fn plugin_plan(
    c: &mut Checker,
    base: &Path,
    defaults: &Defaults,
    key: &str,
    keys: PluginKeys<'_>,
) -> PluginPlan {
    let PluginKeys {
        plugin,
        config,
        timeout,
        memory,
    } = keys;
    let line = c.line(plugin);
    if plugin.get_ref().trim().is_empty() {
        c.err(line, &format!("{key}.plugin"), "names no plugin");
    }
    let mut settings = defaults.settings.clone();
    settings.timeout = c.duration(
        timeout,
        &format!("{key}.timeout"),
        settings.timeout,
        Duration::from_millis(1),
    );
    settings.memory_cap = c.size(memory, &format!("{key}.memory"), settings.memory_cap);
    let config_json = serde_json::to_string(config).unwrap_or_else(|e| {
        c.err(
            line,
            &format!("{key}.config"),
            format!("cannot be passed as JSON: {e}"),
        );
        "{}".into()
    });
    PluginPlan {
        path: resolve_plugin(base, &defaults.dir, plugin.get_ref()),
        config_json,
        settings,
        origin: Origin {
            line,
            key: format!("{key}.plugin"),
        },
    }
}

fn plugin_ref(
    c: &mut Checker,
    base: &Path,
    defaults: &Defaults,
    key: &str,
    r: &PluginRef,
) -> PluginPlan {
    let keys = PluginKeys {
        plugin: &r.plugin,
        config: &r.config,
        timeout: &r.timeout,
        memory: &r.memory,
    };
    plugin_plan(c, base, defaults, key, keys)
}

/// Validates a parsed file into a plan. `path` is the file (for messages and
/// to resolve relative paths); `text` its contents (for line numbers).
pub fn build(path: &Path, text: &str, file: &PipelineFile) -> Result<Plan, Vec<ConfigError>> {
    let base = path.parent().unwrap_or(Path::new(".")).to_owned();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let mut c = Checker {
        file: path,
        text,
        errors: Vec::new(),
    };

    let name = file.pipeline.name.clone();
    c.name(&name, None, "pipeline.name");
    let backend_name = file.pipeline.backend.get_ref().as_str();
    let sync = match file.local.sync.as_ref().map(|s| s.get_ref().as_str()) {
        None | Some("normal") => SyncMode::Normal,
        Some("full") => SyncMode::Full,
        Some(other) => {
            let line = c.line(file.local.sync.as_ref().expect("set"));
            c.err(
                line,
                "local.sync",
                format!("{other:?}: expected \"normal\" or \"full\""),
            );
            SyncMode::Normal
        }
    };
    let backend = match backend_name {
        "local" => BackendPlan::Local {
            data_dir: base.join(file.local.data_dir.as_deref().unwrap_or(".pipehost")),
            sync,
        },
        "aws" => BackendPlan::Aws(Box::new(aws::plan(&mut c, &file.aws))),
        other => {
            let line = c.line(&file.pipeline.backend);
            c.err(
                line,
                "pipeline.backend",
                format!("{other:?}: expected \"local\" or \"aws\""),
            );
            BackendPlan::Local {
                data_dir: base.join(".pipehost"),
                sync,
            }
        }
    };

    let defaults = Defaults {
        dir: file.plugins.dir.clone(),
        settings: PluginSettings {
            timeout: c.duration(
                &file.plugins.timeout,
                "plugins.timeout",
                PluginSettings::default().timeout,
                Duration::from_millis(1),
            ),
            memory_cap: c.size(
                &file.plugins.memory,
                "plugins.memory",
                PluginSettings::default().memory_cap,
            ),
            ..PluginSettings::default()
        },
    };

    let feeds_line = c.line(&file.feeds);
    if file.feeds.get_ref().is_empty() {
        c.err(
            feeds_line,
            "feeds",
            "no feeds: declare at least one [feeds.NAME]",
        );
    }
    let mut feeds = Vec::new();
    for (feed_name, feed) in file.feeds.get_ref() {
        let key = format!("feeds.{feed_name}");
        let line = c.line(&feed.parser.plugin);
        c.name(feed_name, line, &key);
        let generator = feed.generator.as_ref().map(|g| {
            let gkey = format!("{key}.generator");
            let keys = PluginKeys {
                plugin: &g.plugin,
                config: &g.config,
                timeout: &g.timeout,
                memory: &g.memory,
            };
            let plugin = plugin_plan(&mut c, &base, &defaults, &gkey, keys);
            let interval = match parse_duration(g.interval.get_ref()) {
                Ok(d) if d >= Duration::from_millis(1) && d <= Duration::from_secs(86_400) => d,
                Ok(d) => {
                    let line = c.line(&g.interval);
                    c.err(
                        line,
                        &format!("{gkey}.interval"),
                        format!("{d:?} is out of range: 1ms to 24h"),
                    );
                    Duration::from_secs(1)
                }
                Err(e) => {
                    let line = c.line(&g.interval);
                    c.err(line, &format!("{gkey}.interval"), e);
                    Duration::from_secs(1)
                }
            };
            let records = c.range(&g.records, &format!("{gkey}.records"), 1, 100_000);
            GeneratorPlan {
                plugin,
                interval,
                records,
                seed: g.seed,
                aggregate: g.aggregate,
            }
        });
        let parser = plugin_ref(
            &mut c,
            &base,
            &defaults,
            &format!("{key}.parser"),
            &feed.parser,
        );
        let transforms = feed
            .transforms
            .iter()
            .enumerate()
            .map(|(i, t)| {
                plugin_ref(
                    &mut c,
                    &base,
                    &defaults,
                    &format!("{key}.transforms[{i}]"),
                    t,
                )
            })
            .collect();
        feeds.push(FeedPlan {
            name: feed_name.clone(),
            generator,
            parser,
            transforms,
        });
    }

    let shards = c.range(&file.stream.shards, "stream.shards", 1, 1024);
    let retention = c.duration(
        &file.stream.retention,
        "stream.retention",
        Duration::from_secs(24 * 3600),
        Duration::from_secs(60),
    );
    let stream_name = file.stream.name.clone().unwrap_or_else(|| name.clone());
    let queue_name = file
        .queue
        .name
        .clone()
        .unwrap_or_else(|| format!("{name}-batches"));
    let dead_letter_queue = file
        .queue
        .dead_letter
        .clone()
        .unwrap_or_else(|| format!("{queue_name}-dlq"));
    // Derived names are valid when `pipeline.name` is; check only the ones given.
    for (given, key) in [
        (&file.stream.name, "stream.name"),
        (&file.queue.name, "queue.name"),
        (&file.queue.dead_letter, "queue.dead_letter"),
        (&file.store.bucket, "store.bucket"),
        (&file.notifications.topic, "notifications.topic"),
    ] {
        if let Some(n) = given {
            c.name(n, None, key);
        }
    }
    let visibility_timeout = c.duration(
        &file.queue.visibility_timeout,
        "queue.visibility_timeout",
        Duration::from_secs(30),
        Duration::from_millis(100),
    );
    if matches!(backend, BackendPlan::Aws(_)) {
        aws::check_visibility(&mut c, &file.queue.visibility_timeout, visibility_timeout);
    }
    let max_receives = c.opt_range(&file.queue.max_receives, "queue.max_receives", 5, 1, 1000);
    let workers = c.opt_range(&file.processor.workers, "processor.workers", 2, 1, 64) as usize;
    let receive_batch = c.opt_range(
        &file.processor.receive_batch,
        "processor.receive_batch",
        10,
        1,
        10,
    ) as usize;
    let poll_interval = c.duration(
        &file.bridge.poll_interval,
        "bridge.poll_interval",
        Duration::from_millis(20),
        Duration::from_millis(1),
    );

    let bucket = file.store.bucket.clone().unwrap_or_else(|| name.clone());
    let key_template = match &file.store.key_template {
        None => KeyTemplate::default(),
        Some(t) => match KeyTemplate::parse(t.get_ref()) {
            Ok(k) => k,
            Err(e) => {
                let line = c.line(t);
                c.err(line, "store.key_template", e);
                KeyTemplate::default()
            }
        },
    };
    let error_prefix = match &file.store.error_prefix {
        None => "errors/".to_string(),
        Some(p) => {
            let v = p.get_ref();
            if v.is_empty() || !v.ends_with('/') || v.starts_with('/') {
                let line = c.line(p);
                c.err(line, "store.error_prefix", format!("{v:?}: a prefix like \"errors/\" (not empty, ends with '/', no leading '/')"));
            }
            v.clone()
        }
    };
    if key_template.literal_prefix().starts_with(&error_prefix) {
        let line = file.store.key_template.as_ref().and_then(|t| c.line(t));
        c.err(
            line,
            "store.key_template",
            format!("objects would land under the error prefix {error_prefix:?}"),
        );
    }
    let r = &file.store.rollover;
    let rollover = Rollover {
        records: c.opt_range(&r.records, "store.rollover.records", 5000, 1, 1_000_000) as usize,
        bytes: c.size(&r.bytes, "store.rollover.bytes", 4 << 20),
        age: c.duration(
            &r.age,
            "store.rollover.age",
            Duration::from_secs(1),
            Duration::from_millis(1),
        ),
    };
    let topic = file
        .notifications
        .topic
        .clone()
        .unwrap_or_else(|| format!("{name}-objects"));
    for s in &file.notifications.subscribers {
        c.name(s, None, "notifications.subscribers");
        if s == &queue_name || s == &dead_letter_queue {
            c.err(
                None,
                "notifications.subscribers",
                format!("{s:?} is the pipeline's own queue"),
            );
        }
    }

    let admin = file
        .admin
        .as_ref()
        .and_then(|a| match a.listen.get_ref().parse() {
            Ok(listen) => Some(AdminPlan {
                listen,
                keys_env: a
                    .keys_env
                    .clone()
                    .unwrap_or_else(|| "PIPEHOST_ADMIN_KEYS".into()),
                keys_file: a.keys_file.as_ref().map(|f| base.join(f)),
            }),
            Err(e) => {
                let line = c.line(&a.listen);
                c.err(
                    line,
                    "admin.listen",
                    format!(
                        "{:?}: not an address like \"127.0.0.1:9464\": {e}",
                        a.listen.get_ref()
                    ),
                );
                None
            }
        });

    let web = file
        .web
        .as_ref()
        .and_then(|w| web::build(&mut c, &base, &backend, w).filter(|_| w.enabled));

    if !c.errors.is_empty() {
        return Err(c.errors);
    }
    Ok(Plan {
        file: path.to_owned(),
        name,
        backend,
        feeds,
        stream_name,
        shards,
        retention,
        bridge_consumer: file
            .bridge
            .consumer
            .clone()
            .unwrap_or_else(|| "bridge".into()),
        poll_interval,
        queue_name,
        dead_letter_queue,
        visibility_timeout,
        max_receives,
        workers,
        receive_batch,
        bucket,
        key_template,
        error_prefix,
        gzip: file.store.gzip.unwrap_or(true),
        rollover,
        topic,
        subscribers: file.notifications.subscribers.clone(),
        admin,
        web,
    })
}

/// Reads, parses and validates a pipeline file.
pub fn load(path: &Path) -> Result<Plan, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        }]
    })?;
    let mut file = config::parse(path, &text).map_err(|e| vec![e])?;
    let applied = config::apply_env_overrides(&mut file, |k| std::env::var(k).ok());
    if !applied.is_empty() {
        tracing::info!(file = %path.display(), "resource names from the environment: {}", applied.join(", "));
    }
    build(path, &text, &file)
}

/// The I/O step after validation: every plugin file must exist.
pub fn check_files(plan: &Plan) -> Result<(), Vec<ConfigError>> {
    let errors: Vec<ConfigError> = plan
        .plugins()
        .filter(|p| !p.path.is_file())
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
