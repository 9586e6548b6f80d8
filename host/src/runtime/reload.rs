//! Hot reload: swap plugins and live settings while the pipeline runs.
//!
//! A reload (a changed file, SIGHUP) re-reads `pipeline.toml`, refuses edits
//! that cannot apply live (the backend, resource names, shard count, worker
//! count, object layout), and for every plugin reference either reuses the
//! loaded plugin (same file content, same settings) or compiles the new file
//! off the hot path and validates it: the world and version check, an
//! instance, and `init` with its config. Only when everything validates is
//! the new set published, as one atomic swap with a new generation number.
//! Workers look at the generation at the start of each batch, so a batch in
//! flight finishes on the version it started with. Any failure leaves the
//! old set serving.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::chains::{Chains, FeedChain};
use crate::config;
use crate::plan::{self, FeedPlan, Plan, PluginPlan};
use crate::plugin::{AnyPlugin, Generator, Plugin, PluginEngine, PluginError, PluginKind, Role};

/// Why a reload did not apply.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{}", .0.join("; "))]
    Config(Vec<String>),
    #[error("cannot change while running (restart to apply): {}", .0.join(", "))]
    NotLive(Vec<&'static str>),
    #[error(transparent)]
    Plugin(#[from] PluginLoadError),
}

/// A plugin of the plan that cannot be used, named by its place in the
/// plan (`feeds.forex.parser`); the plugin error, with its kind, is the
/// source.
#[derive(Debug, thiserror::Error)]
#[error("`{key}`: {source}")]
pub struct PluginLoadError {
    pub key: String,
    #[source]
    pub source: PluginError,
}

/// What a successful reload changed.
#[derive(Debug, Default)]
pub struct Applied {
    /// Human-readable changes, e.g. `feeds.forex.transforms[0]: forex_transform@1a2b… -> @3c4d…`.
    pub changes: Vec<String>,
    /// Feeds whose generator must restart (changed, added or removed).
    pub feeds_to_restart: Vec<String>,
}

/// Loads plugins for the pipeline and remembers them by file content.
pub struct PluginCache {
    engine: PluginEngine,
    /// (path, kind) -> loaded plugin.
    loaded: HashMap<(PathBuf, PluginKind), AnyPlugin>,
}

impl PluginCache {
    pub fn new(engine: PluginEngine) -> Self {
        Self {
            engine,
            loaded: HashMap::new(),
        }
    }

    pub fn engine(&self) -> &PluginEngine {
        &self.engine
    }

    /// The plugin for `p`: the one already loaded when the file content and
    /// settings are unchanged, else a fresh load. Either way it is validated
    /// by an instance running `init` with `p`'s config.
    pub fn get<R: Role>(&mut self, p: &PluginPlan) -> Result<Plugin<R>, PluginLoadError> {
        let context = |source| PluginLoadError {
            key: p.origin.key.clone(),
            source,
        };
        let bytes = std::fs::read(&p.path).map_err(|source| {
            context(PluginError::Read {
                path: p.path.clone(),
                source,
            })
        })?;
        let key = (p.path.clone(), R::KIND);
        let old = self
            .loaded
            .get(&key)
            .cloned()
            .and_then(AnyPlugin::into_role::<R>);
        let plugin = match old {
            Some(old)
                if old.sha256() == crate::plugin::content_hash(&bytes)
                    && old.settings() == &p.settings =>
            {
                old
            }
            _ => self
                .engine
                .load_bytes(&p.path, &bytes, p.settings.clone())
                .map_err(context)?,
        };
        plugin.instantiate(&p.config_json).map_err(context)?;
        self.loaded.insert(key, plugin.clone().into());
        Ok(plugin)
    }
}

/// The plugin chains of a plan.
pub fn build_chains(
    cache: &mut PluginCache,
    plan: &Plan,
) -> Result<HashMap<String, FeedChain>, PluginLoadError> {
    let mut chains = HashMap::new();
    for feed in &plan.live.feeds {
        let parser = (cache.get(&feed.parser)?, feed.parser.config_json.clone());
        let transforms = feed
            .transforms
            .iter()
            .map(|t| Ok((cache.get(t)?, t.config_json.clone())))
            .collect::<Result<Vec<_>, PluginLoadError>>()?;
        chains.insert(feed.name.clone(), FeedChain { parser, transforms });
    }
    Ok(chains)
}

/// The settings that cannot change while running and differ: everything
/// in the plan's fixed part (`Fixed`'s `PartialEq`), named key by key.
fn not_live(old: &Plan, new: &Plan) -> Vec<&'static str> {
    if old.fixed == new.fixed {
        return Vec::new();
    }
    old.fixed.changed_keys(&new.fixed)
}

/// A feed generator's identity: restart it when this changes.
pub fn generator_signature(feed: &FeedPlan, cache: &PluginCache) -> Option<String> {
    let g = feed.generator.as_ref()?;
    let sha = cache
        .loaded
        .get(&(g.plugin.path.clone(), PluginKind::Generator))
        .map(|p| p.info().sha256().to_string())
        .unwrap_or_default();
    Some(format!(
        "{}|{sha}|{}|{:?}|{}|{}|{:?}",
        g.plugin.path.display(),
        g.plugin.config_json,
        g.interval,
        g.records,
        g.seed,
        g.plugin.settings
    ))
}

fn describe(chains: &HashMap<String, FeedChain>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (feed, c) in chains {
        out.insert(
            format!("feeds.{feed}.parser"),
            format!("{} {}", c.parser.0.version(), c.parser.1),
        );
        for (i, (p, cfg)) in c.transforms.iter().enumerate() {
            out.insert(
                format!("feeds.{feed}.transforms[{i}]"),
                format!("{} {cfg}", p.version()),
            );
        }
    }
    out
}

/// Reads the pipeline file again, for a reload.
pub fn read_plan(file: &Path) -> Result<Plan, ReloadError> {
    let render = |errs: Vec<crate::config::ConfigError>| {
        ReloadError::Config(errs.into_iter().map(|e| e.to_string()).collect())
    };
    config::read(file)
        .and_then(|source| plan::from_source(&source))
        .and_then(|p| plan::check_files(&p, Path::is_file).map(|()| p))
        .map_err(render)
}

/// The changes between two chain descriptions ([`describe`]), in key order.
fn chain_changes(before: &HashMap<String, String>, after: &HashMap<String, String>) -> Vec<String> {
    let mut changes = Vec::new();
    let mut keys: Vec<&String> = before
        .keys()
        .chain(after.keys())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    keys.sort();
    for k in keys {
        match (before.get(k), after.get(k)) {
            (Some(a), Some(b)) if a != b => changes.push(format!("{k}: {a} -> {b}")),
            (None, Some(b)) => changes.push(format!("{k}: added {b}")),
            (Some(_), None) => changes.push(format!("{k}: removed")),
            _ => {}
        }
    }
    changes
}

/// Feeds whose generator is added, removed or changed: each to restart,
/// and said in the changes.
fn generator_changes(
    cache: &PluginCache,
    current_plan: &Plan,
    new_plan: &Plan,
    applied: &mut Applied,
) {
    let old_feeds: HashMap<&str, &FeedPlan> = current_plan
        .live
        .feeds
        .iter()
        .map(|f| (f.name.as_str(), f))
        .collect();
    let new_feeds: HashMap<&str, &FeedPlan> = new_plan
        .live
        .feeds
        .iter()
        .map(|f| (f.name.as_str(), f))
        .collect();
    for name in old_feeds
        .keys()
        .chain(new_feeds.keys())
        .collect::<HashSet<_>>()
    {
        let a = old_feeds
            .get(name)
            .and_then(|f| generator_signature(f, cache));
        let b = new_feeds
            .get(name)
            .and_then(|f| generator_signature(f, cache));
        if a != b {
            applied.feeds_to_restart.push(name.to_string());
            let what = match (&a, &b) {
                (None, _) => "started",
                (_, None) => "stopped",
                _ => "restarted",
            };
            applied
                .changes
                .push(format!("feeds.{name}.generator: {what}"));
        }
    }
}

/// Checks `new_plan` against the running one and prepares its chains.
/// Nothing is published here; the caller swaps on success.
pub fn prepare(
    cache: &mut PluginCache,
    current_plan: &Plan,
    new_plan: Plan,
    current: &Chains,
) -> Result<(Plan, HashMap<String, FeedChain>, Applied), ReloadError> {
    let refused = not_live(current_plan, &new_plan);
    if !refused.is_empty() {
        return Err(ReloadError::NotLive(refused));
    }
    // Generators are validated too, before anything changes.
    for feed in &new_plan.live.feeds {
        if let Some(g) = &feed.generator {
            cache
                .get::<Generator>(&g.plugin)
                .map_err(ReloadError::Plugin)?;
        }
    }
    let chains = build_chains(cache, &new_plan).map_err(ReloadError::Plugin)?;

    let mut applied = Applied {
        changes: chain_changes(&describe(&current.feeds), &describe(&chains)),
        feeds_to_restart: Vec::new(),
    };
    generator_changes(cache, current_plan, &new_plan, &mut applied);
    applied.feeds_to_restart.sort();
    if current_plan.live.bridge != new_plan.live.bridge {
        applied
            .changes
            .push("store.rollover / bridge.poll_interval".into());
    }
    if current_plan.live.retention != new_plan.live.retention {
        applied.changes.push("stream.retention".into());
    }
    Ok((new_plan, chains, applied))
}

/// The files a running pipeline watches: its pipeline file and every plugin.
pub fn watched_files(plan: &Plan) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = plan.plugins().map(|p| p.path.clone()).collect();
    files.push(plan.file.clone());
    files.sort();
    files.dedup();
    files
}

/// Canonical form for comparing watched paths with event paths.
pub fn canonical(path: &Path) -> PathBuf {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = parent.canonicalize().unwrap_or_else(|_| parent.to_owned());
    match path.file_name() {
        Some(name) => dir.join(name),
        None => dir,
    }
}

/// Creates a file-system watcher that sends a unit on `tx` whenever one of
/// `files` is created, written, renamed into place or removed.
pub fn watch(
    files: &[PathBuf],
    tx: tokio::sync::mpsc::Sender<crate::web::admin::ReloadRequest>,
) -> notify::Result<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let wanted: HashSet<PathBuf> = files.iter().map(|f| canonical(f)).collect();
    let dirs: HashSet<PathBuf> = wanted
        .iter()
        .filter_map(|f| f.parent().map(Path::to_owned))
        .collect();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        if let Some(p) = event.paths.iter().find(|p| wanted.contains(&canonical(p))) {
            let _ = tx.try_send(crate::web::admin::ReloadRequest {
                why: format!("{} changed", p.display()),
                reply: None,
            });
        }
    })?;
    for d in dirs {
        watcher.watch(&d, RecursiveMode::NonRecursive)?;
    }
    Ok(watcher)
}
