//! `[plugins]` and `[feeds.NAME]` validated into [`FeedPlan`]s: each
//! feed's generator, parser and transforms, with their plugin files
//! resolved and their limits set.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::{Checker, Origin, parse_duration};
use crate::config::{FeedConfig, GeneratorConfig, PluginDefaults, PluginRef};
use crate::plugin::PluginSettings;

/// A plugin as the runtime loads it.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginPlan {
    pub path: PathBuf,
    pub config_json: String,
    pub settings: PluginSettings,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorPlan {
    pub plugin: PluginPlan,
    pub interval: Duration,
    pub records: u32,
    pub seed: u64,
    /// A tick's records per partition key as one aggregated stream record.
    pub aggregate: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FeedPlan {
    pub name: String,
    pub generator: Option<GeneratorPlan>,
    pub parser: PluginPlan,
    pub transforms: Vec<PluginPlan>,
}

fn resolve_plugin(base: &Path, dir: &str, reference: &str) -> PathBuf {
    if reference.ends_with(".wasm") || reference.contains('/') {
        base.join(reference)
    } else {
        base.join(dir).join(format!("{reference}.wasm"))
    }
}

/// What every plugin reference starts from: `[plugins]`.
struct Defaults<'a> {
    base: &'a Path,
    dir: &'a str,
    settings: PluginSettings,
}

impl<'a> Defaults<'a> {
    fn build(c: &mut Checker, base: &'a Path, p: &'a PluginDefaults) -> Self {
        let builtin = PluginSettings::default();
        let settings = PluginSettings {
            timeout: c.duration(
                &p.timeout,
                "plugins.timeout",
                builtin.timeout,
                Duration::from_millis(1),
            ),
            memory_cap: c.size(&p.memory, "plugins.memory", builtin.memory_cap),
            ..builtin
        };
        Self {
            base,
            dir: &p.dir,
            settings,
        }
    }
}

/// The keys that describe one plugin, wherever it is configured.
struct PluginKeys<'a> {
    plugin: &'a Spanned<String>,
    config: &'a toml::Table,
    timeout: &'a Option<Spanned<String>>,
    memory: &'a Option<Spanned<String>>,
}

impl<'a> From<&'a PluginRef> for PluginKeys<'a> {
    fn from(r: &'a PluginRef) -> Self {
        Self {
            plugin: &r.plugin,
            config: &r.config,
            timeout: &r.timeout,
            memory: &r.memory,
        }
    }
}

impl<'a> From<&'a GeneratorConfig> for PluginKeys<'a> {
    fn from(g: &'a GeneratorConfig) -> Self {
        Self {
            plugin: &g.plugin,
            config: &g.config,
            timeout: &g.timeout,
            memory: &g.memory,
        }
    }
}

fn plugin(c: &mut Checker, defaults: &Defaults, key: &str, keys: PluginKeys<'_>) -> PluginPlan {
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
        path: resolve_plugin(defaults.base, defaults.dir, plugin.get_ref()),
        config_json,
        settings,
        origin: Origin {
            line,
            key: format!("{key}.plugin"),
        },
    }
}

fn generator(
    c: &mut Checker,
    defaults: &Defaults,
    key: &str,
    g: &GeneratorConfig,
) -> GeneratorPlan {
    let plugin = plugin(c, defaults, key, g.into());
    let interval = match parse_duration(g.interval.get_ref()) {
        Ok(d) if d >= Duration::from_millis(1) && d <= Duration::from_secs(86_400) => d,
        Ok(d) => {
            let line = c.line(&g.interval);
            c.err(
                line,
                &format!("{key}.interval"),
                format!("{d:?} is out of range: 1ms to 24h"),
            );
            Duration::from_secs(1)
        }
        Err(e) => {
            let line = c.line(&g.interval);
            c.err(line, &format!("{key}.interval"), e);
            Duration::from_secs(1)
        }
    };
    let records = c.range(&g.records, &format!("{key}.records"), 1, 100_000);
    GeneratorPlan {
        plugin,
        interval,
        records,
        seed: g.seed,
        aggregate: g.aggregate,
    }
}

fn feed(c: &mut Checker, defaults: &Defaults, name: &str, feed: &FeedConfig) -> FeedPlan {
    let key = format!("feeds.{name}");
    let line = c.line(&feed.parser.plugin);
    c.name(name, line, &key);
    let generator = feed
        .generator
        .as_ref()
        .map(|g| generator(c, defaults, &format!("{key}.generator"), g));
    let parser = plugin(c, defaults, &format!("{key}.parser"), (&feed.parser).into());
    let transforms = feed
        .transforms
        .iter()
        .enumerate()
        .map(|(i, t)| plugin(c, defaults, &format!("{key}.transforms[{i}]"), t.into()))
        .collect();
    FeedPlan {
        name: name.to_string(),
        generator,
        parser,
        transforms,
    }
}

/// The feeds, their plugins resolved against `base` (the file's folder).
pub(super) fn build(
    c: &mut Checker,
    base: &Path,
    plugins: &PluginDefaults,
    feeds: &Spanned<BTreeMap<String, FeedConfig>>,
) -> Vec<FeedPlan> {
    let defaults = Defaults::build(c, base, plugins);
    if feeds.get_ref().is_empty() {
        let line = c.line(feeds);
        c.err(line, "feeds", "no feeds: declare at least one [feeds.NAME]");
    }
    feeds
        .get_ref()
        .iter()
        .map(|(name, f)| feed(c, &defaults, name, f))
        .collect()
}
