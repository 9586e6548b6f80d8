//! Host-side bindings of the frozen contract `0.1.0`
//! (`wit/deps/plugin-0.1.0/plugin.wit`): one record of strings per event.
//! Plugins built against it keep loading; [`super::legacy`] converts their
//! batches to and from the columns of `0.2.0`, so nothing outside the plugin
//! layer knows which version a plugin speaks.

wasmtime::component::bindgen!({
    path: "../wit/deps/plugin-0.1.0/plugin.wit",
    world: "plugin-host",
});
