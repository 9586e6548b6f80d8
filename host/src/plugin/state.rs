//! Per-instance host state: the WASI context (no files, no network, no
//! environment), the memory cap, and the two host imports (`log`, `config`),
//! at both contract versions.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::pipehost::plugin::{host, types};
use super::bindings_v0_1::pipehost::plugin::{host as host_v0_1, types as types_v0_1};
use super::guest_log::{GuestLevel, GuestStdio, SharedLog};

/// Caps one instance's linear memory, and remembers a refusal so the host
/// can report "memory cap exceeded" rather than a bare trap.
#[derive(Debug)]
pub struct MemoryCap {
    pub cap: usize,
    /// Largest size any memory of the instance reached.
    pub high_water: usize,
    /// Set when a growth was refused: the size that was asked for.
    pub refused: Option<usize>,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.refused = Some(desired);
            // Trap at once with a clear cause rather than letting the guest's
            // allocator abort with `unreachable`.
            return Err(wasmtime::format_err!(
                "memory cap of {} bytes exceeded: the plugin asked for {desired} bytes",
                self.cap
            ));
        }
        self.high_water = self.high_water.max(desired);
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
}

/// The data of one plugin Store.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) memory: MemoryCap,
    pub(crate) log: SharedLog,
    config_json: Arc<str>,
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
            memory: MemoryCap {
                cap: memory_cap,
                high_water: 0,
                refused: None,
            },
            log,
            config_json,
        }
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
