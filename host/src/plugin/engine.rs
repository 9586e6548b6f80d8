//! The one wasmtime [`Engine`] of a pipehost process, its [`Linker`], the
//! epoch ticker that enforces call deadlines, and the compiled-code cache.
//!
//! Settings, and why:
//! - component-model concurrency off: our WIT has no async/stream/future, and
//!   leaving it on costs ~0.5 µs on every call;
//! - epoch interruption: a thread bumps the epoch every [`EPOCH_TICK`]; each
//!   call sets its deadline in ticks (cheaper than fuel);
//! - pooling allocator: instances come from pre-reserved slots, so
//!   replacing a trapped instance costs tens of microseconds;
//! - compiled-code cache: keyed by the component's SHA-256 and the engine's
//!   compatibility hash, so a restart (or a second `pipehost test`) skips
//!   Cranelift. Its entries are machine code, so the directory must be the
//!   user's own and closed to others, and it is bounded (`cache.rs`).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::PluginHost;
use super::bindings_v0_1::PluginHost as PluginHostV0_1;
use super::cache;
use super::state::{HostState, MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES};

/// How often the epoch advances; call deadlines are rounded up to this.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine-wide settings (per process, not per plugin).
#[derive(Debug, Clone, PartialEq)]
pub struct EngineSettings {
    /// Most plugin instances alive at once (pool size).
    pub max_instances: u32,
    /// Largest memory cap any plugin may be given, in bytes (pool slot size).
    pub max_memory_bytes: usize,
    /// Where compiled components are cached; `None` turns the cache off.
    /// A directory owned by another user or writable by group or others
    /// turns it off too, with a warning (see `cache.rs`).
    pub cache_dir: Option<PathBuf>,
    /// Most bytes the cache's entries may take; the oldest go past it.
    pub cache_max_bytes: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            max_instances: 128,
            max_memory_bytes: 1 << 30,
            cache_dir: default_cache_dir(),
            cache_max_bytes: 256 << 20,
        }
    }
}

/// `$PIPEHOST_CACHE_DIR`, else `$XDG_CACHE_HOME/pipehost`, else
/// `~/.cache/pipehost`. An empty `PIPEHOST_CACHE_DIR` turns the cache off.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PIPEHOST_CACHE_DIR") {
        return (!dir.is_empty()).then(|| PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("pipehost"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("pipehost"))
}

struct Ticker(Arc<AtomicBool>);

impl Drop for Ticker {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    settings: EngineSettings,
    /// The cache directory in use: the configured one, if it is safe.
    cache_dir: Option<PathBuf>,
    compat_key: String,
    _ticker: Ticker,
}

/// The shared plugin engine. Cheap to clone; the epoch ticker stops when the
/// last clone is dropped.
#[derive(Clone)]
pub struct PluginEngine {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl PluginEngine {
    /// Builds the engine, the linker and starts the epoch ticker.
    pub fn new(settings: EngineSettings) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.concurrency_support(false);
        config.epoch_interruption(true);
        config.parallel_compilation(true);
        // `PIPEHOST_WASM_PERFMAP=1`: write /tmp/perf-<pid>.map so `perf
        // report` names the functions of compiled plugins (profiling only).
        if std::env::var_os("PIPEHOST_WASM_PERFMAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }

        let instances = settings.max_instances.max(1);
        let mut pool = PoolingAllocationConfig::default();
        // A Rust wasm32-wasip2 component holds a few core instances (the
        // program plus the shims wasm-component-ld adds), one memory and a
        // couple of tables; leave headroom for other toolchains, and refuse
        // a component that declares more (its memories' sum is capped too:
        // state.rs).
        pool.max_core_instances_per_component(MAX_CORE_INSTANCES as u32)
            .max_memories_per_component(MAX_MEMORIES as u32)
            .max_tables_per_component(MAX_TABLES as u32)
            .total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .max_memory_size(settings.max_memory_bytes);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));

        let engine = Engine::new(&config)
            .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e}"))?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link WASI: {e}"))?;
        // The blocking wasi:io functions again, ending at the call's deadline.
        super::deadline::add_to_linker(&mut linker)
            .map_err(|e| anyhow::anyhow!("cannot link deadline-bounded wasi:io: {e}"))?;
        PluginHost::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("cannot link the host interface: {e}"))?;
        // Plugins built against the frozen 0.1.0 import `host@0.1.0`.
        PluginHostV0_1::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| anyhow::anyhow!("cannot link the 0.1.0 host interface: {e}"))?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let compat_key = format!("{:016x}", hasher.finish());

        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("pipehost-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })?;

        let cache_dir = settings.cache_dir.as_deref().and_then(|dir| {
            cache::open_dir(dir)
                .inspect_err(|e| {
                    tracing::warn!("{e}; compiling plugins without the cache");
                })
                .ok()
        });
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                settings,
                cache_dir,
                compat_key,
                _ticker: Ticker(stop),
            }),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.inner.linker
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.inner.settings
    }

    /// The compiled-code cache directory in use: `None` when the cache is off
    /// or the configured directory was refused as unsafe.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.cache_dir.as_deref()
    }

    /// Compiles a component, or loads it from the cache. `sha256` is the hex
    /// digest of `bytes`. Returns whether the cache was hit.
    #[allow(
        unsafe_code,
        reason = "wasmtime's Component::deserialize trusts its input"
    )]
    pub(crate) fn compile(
        &self,
        bytes: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, bool)> {
        let engine = &self.inner.engine;
        let Some(dir) = &self.inner.cache_dir else {
            return Ok((Component::new(engine, bytes)?, false));
        };
        let path = dir.join(format!(
            "{sha256}-{}{}",
            self.inner.compat_key,
            cache::SUFFIX
        ));
        // Read into memory rather than `deserialize_file`, which maps the
        // file: a mapped entry truncated by someone else would crash the
        // host with SIGBUS.
        if let Some(cached) = cache::read(&path) {
            // SAFETY: the file lives in pipehost's own cache directory, which
            // only this user can write (checked by `cache::open_dir`), is
            // named by the SHA-256 of its source and the engine's
            // compatibility hash, and was written by `cache::store` from
            // `Engine::precompile_component`; wasmtime also checks its header
            // and compatibility before using it.
            match unsafe { Component::deserialize(engine, &cached) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "discarding unreadable compiled-code cache entry: {e}"
                ),
            }
        }
        let compiled = engine.precompile_component(bytes)?;
        // SAFETY: `compiled` was produced just now by this engine.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        if let Err(e) = cache::store(&path, &compiled, self.inner.settings.cache_max_bytes) {
            tracing::debug!(path = %path.display(), "compiled-code cache not written: {e}");
        }
        Ok((component, false))
    }
}
