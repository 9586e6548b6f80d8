//! Host-side bindings generated from `wit/plugin.wit`, contract `0.2.0`:
//! batches in columns. [`super::bindings_v0_1`] binds the frozen `0.1.0`.
//!
//! The `plugin-host` world exports all three plugin interfaces so that one
//! set of types is generated; a real plugin exports one of them, and the
//! loader binds only that one (through its `GuestIndices`).

wasmtime::component::bindgen!({
    path: "../wit/plugin.wit",
    world: "plugin-host",
    additional_derives: [PartialEq],
});
