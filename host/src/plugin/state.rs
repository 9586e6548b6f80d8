//! Per-instance host state: the WASI context (no files, no network, no
//! environment), the memory cap, and the two host imports (`log`, `config`),
//! at both contract versions.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::pipehost::plugin::{host, types};
use super::bindings_v0_1::pipehost::plugin::{host as host_v0_1, types as types_v0_1};
use super::guest_log::{GuestLevel, GuestStdio, SharedLog};

/// Most core instances, linear memories and tables one plugin Store may
/// create. A Rust wasm32-wasip2 component has three core instances, one
/// memory and two tables; the rest is headroom for other toolchains. The
/// pooling allocator has the same per-component limits (engine.rs).
pub const MAX_CORE_INSTANCES: usize = 16;
pub const MAX_MEMORIES: usize = 4;
pub const MAX_TABLES: usize = 8;

/// Caps the SUM of one instance's linear memories (a component may declare
/// several), and remembers a refusal so the host can report "memory cap
/// exceeded" rather than a bare trap.
#[derive(Debug)]
pub struct MemoryCap {
    pub cap: usize,
    /// The bytes all memories of the instance hold now.
    pub total: usize,
    /// Largest total the instance reached.
    pub high_water: usize,
    /// Set when a growth was refused: the total that was asked for.
    pub refused: Option<usize>,
}

impl MemoryCap {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            total: 0,
            high_water: 0,
            refused: None,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Every memory starts with a growth from 0, so `total` is the sum of
        // all memories' sizes.
        let total = (self.total + desired).saturating_sub(current);
        if total > self.cap {
            self.refused = Some(total);
            // Trap at once with a clear cause rather than letting the guest's
            // allocator abort with `unreachable`.
            return Err(wasmtime::format_err!(
                "memory cap of {} bytes exceeded: the plugin's memories would hold {total} bytes",
                self.cap
            ));
        }
        self.total = total;
        self.high_water = self.high_water.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// The data of one plugin Store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) log: SharedLog,
    config_json: Arc<str>,
    /// When the call in progress must end: blocking WASI calls give up then
    /// (`deadline.rs`). Set before every call, `init` included.
    pub(crate) deadline: Instant,
    /// Set when a blocking WASI call was stopped at the deadline.
    pub(crate) timed_out: bool,
}

impl HostState {
    pub fn new(config_json: Arc<str>, memory_cap: usize, log: SharedLog) -> Self {
        // Deliberately bare: no preopened directories, no environment, no
        // arguments, no stdin, no network (sockets are denied by default and
        // name lookup is turned off). Clocks and randomness stay available.
        let wasi = WasiCtx::builder()
            .stdout(GuestStdio::stdout(log.clone()))
            .stderr(GuestStdio::stderr(log.clone()))
            .allow_ip_name_lookup(false)
            .allow_tcp(false)
            .allow_udp(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap::new(memory_cap),
            log,
            config_json,
            deadline: Instant::now(),
            timed_out: false,
        }
    }

    /// The pieces the deadline-bounded `wasi:io` functions work on.
    pub(crate) fn io_parts(&mut self) -> (&mut ResourceTable, Instant, &mut bool) {
        (&mut self.table, self.deadline, &mut self.timed_out)
    }

    /// Starts a call that must end within `timeout`.
    pub(crate) fn start_call(&mut self, timeout: std::time::Duration) {
        self.deadline = Instant::now() + timeout;
        self.timed_out = false;
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}
impl types_v0_1::Host for HostState {}

/// `host@0.1.0`: the same two functions as `0.2.0`.
impl host_v0_1::Host for HostState {
    fn log(&mut self, level: host_v0_1::Level, message: String) {
        let level = match level {
            host_v0_1::Level::Trace => host::Level::Trace,
            host_v0_1::Level::Debug => host::Level::Debug,
            host_v0_1::Level::Info => host::Level::Info,
            host_v0_1::Level::Warn => host::Level::Warn,
            host_v0_1::Level::Error => host::Level::Error,
        };
        host::Host::log(self, level, message)
    }

    fn config(&mut self) -> String {
        host::Host::config(self)
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let level = match level {
            host::Level::Trace => GuestLevel::Trace,
            host::Level::Debug => GuestLevel::Debug,
            host::Level::Info => GuestLevel::Info,
            host::Level::Warn => GuestLevel::Warn,
            host::Level::Error => GuestLevel::Error,
        };
        if let Ok(mut log) = self.log.lock() {
            log.emit(level, "log", &message);
        }
    }

    fn config(&mut self) -> String {
        self.config_json.to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use wasmtime::Store;
    use wasmtime::component::Component;

    use super::*;
    use crate::plugin::guest_log::GuestLog;
    use crate::plugin::{EngineSettings, LogLimits, PluginEngine};

    fn engine() -> PluginEngine {
        PluginEngine::new(EngineSettings {
            max_instances: 4,
            max_memory_bytes: 16 << 20,
            cache_dir: None,
            cache_max_bytes: 0,
        })
        .unwrap()
    }

    fn store(engine: &PluginEngine, cap: usize) -> Store<HostState> {
        let log = GuestLog::new(Arc::from("test"), LogLimits::default());
        let mut store = Store::new(engine.engine(), HostState::new(Arc::from("{}"), cap, log));
        store.limiter(|s| &mut s.memory);
        store.set_epoch_deadline(1_000);
        store
    }

    #[test]
    fn the_cap_is_on_the_sum_of_a_components_memories() {
        let engine = engine();
        let bytes = include_bytes!("testdata/two_memories.wasm");
        let component = Component::from_binary(engine.engine(), bytes).unwrap();
        let mut store = store(&engine, 4 << 20);
        let instance = engine.linker().instantiate(&mut store, &component).unwrap();
        let grow_a = instance
            .get_typed_func::<(u32,), (i32,)>(&mut store, "grow-a")
            .unwrap();
        let grow_b = instance
            .get_typed_func::<(u32,), (i32,)>(&mut store, "grow-b")
            .unwrap();
        // 40 pages (2.5 MiB) each: both under the 4 MiB cap, together over.
        assert_eq!(grow_a.call(&mut store, (40,)).unwrap(), (1,));
        let err = grow_b.call(&mut store, (40,)).unwrap_err();
        let cap = &store.data().memory;
        assert_eq!(cap.refused, Some((1 + 40 + 1 + 40) << 16), "{err:#}");
        assert_eq!(
            cap.total,
            (1 + 40 + 1) << 16,
            "the refused growth is not counted"
        );
    }

    #[test]
    fn a_component_with_more_memories_than_allowed_is_refused() {
        let engine = engine();
        let bytes = include_bytes!("testdata/five_memories.wasm");
        // The pooling allocator refuses it when it is loaded; a Store's
        // limiter would refuse it on instantiation.
        let refused = Component::from_binary(engine.engine(), bytes).and_then(|c| {
            engine
                .linker()
                .instantiate(&mut store(&engine, 4 << 20), &c)
        });
        let Err(err) = refused else {
            panic!("five memories are refused");
        };
        assert!(format!("{err:#}").contains("memor"), "{err:#}");
    }
}
