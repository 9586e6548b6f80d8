//! Host-side bindings generated from `wit/plugin.wit`.
//!
//! The `plugin-host` world exports all three plugin interfaces so that one
//! set of types is generated; a real plugin exports one of them, and the
//! loader binds only that one (through its `GuestIndices`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "plugin-host",
});
