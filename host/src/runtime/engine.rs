//! The plugin engine a pipeline runs on, sized for the stages it runs, and
//! the load-time gate: every plugin compiles, targets its world and accepts
//! its config before anything starts.

use std::collections::HashMap;

use super::chains::FeedChain;
use super::reload::{self, PluginCache};
use super::{Stages, blocking};
use crate::plan::Plan;
use crate::plugin::{EngineSettings, Generator, PluginEngine};

/// Instances the engine's pool holds: per plugin, with the processor, room
/// for each worker's set and a reloaded set beside it, plus checks; without
/// it, a generator's task, `/logs`' instances and checks.
fn max_instances(plan: &Plan, stages: Stages) -> u32 {
    let plugins = plan.plugins().count() as u32;
    let per_plugin = if stages.processor {
        2 * plan.fixed.processor.workers as u32 + 4
    } else {
        8
    };
    plugins * per_plugin + 32
}

/// A plugin cache on an engine sized for `stages`.
pub(super) fn cache_for(plan: &Plan, stages: Stages) -> anyhow::Result<PluginCache> {
    cache_of(max_instances(plan, stages))
}

/// A plugin cache for `pipehost lambda`, which runs one set of instances
/// (an invocation at a time): per plugin, that instance and its
/// replacement after a trap, plus the load-time checks.
pub(super) fn cache_for_lambda(plan: &Plan) -> anyhow::Result<PluginCache> {
    cache_of(plan.plugins().count() as u32 * 2 + 8)
}

fn cache_of(max_instances: u32) -> anyhow::Result<PluginCache> {
    let engine = PluginEngine::new(EngineSettings {
        max_instances,
        ..EngineSettings::default()
    })?;
    Ok(PluginCache::new(engine))
}

/// Loads the plugins a pipeline can run: the generators when it runs the
/// feeds; the parser and transform chains (returned) when it runs the
/// processor or takes reloads (a reload compares and swaps them, so `run`
/// checks every plugin whatever its stages). The first plugin that fails
/// stops it.
pub(super) fn load_all(
    cache: &mut PluginCache,
    plan: &Plan,
    stages: Stages,
    reloadable: bool,
) -> anyhow::Result<HashMap<String, FeedChain>> {
    blocking(|| {
        if stages.feeds || reloadable {
            for feed in &plan.live.feeds {
                if let Some(g) = &feed.generator {
                    cache.get::<Generator>(&g.plugin)?;
                }
            }
        }
        if stages.processor || reloadable {
            reload::build_chains(cache, plan)
        } else {
            Ok(HashMap::new())
        }
    })
    .map_err(anyhow::Error::from)
}
