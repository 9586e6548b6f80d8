//! The three plugin roles as types, so that what a plugin can be asked is
//! checked by the compiler: a [`Plugin<Parser>`](super::Plugin) makes a
//! [`PluginInstance<Parser>`](super::PluginInstance), which has
//! `parse_batch` and nothing else a generator or transform has.
//!
//! Each role lives in its own file (`parser.rs`, `transform.rs`,
//! `generator.rs`): its marker type, how its export is bound at each
//! contract version, and its calls — the one place where the contract
//! version is dispatched on, once per call. The machinery every call shares
//! (deadline, memory cap, replacement, quarantine, recycling) is
//! `instance.rs`, generic over the role.
//!
//! ```
//! # use pipehost::plugin::{ParserInstance, RawBatch};
//! fn parse(p: &mut ParserInstance, b: &RawBatch) {
//!     let _ = p.parse_batch(b);
//! }
//! ```
//!
//! ```compile_fail
//! # use pipehost::plugin::{GeneratorInstance, RawBatch};
//! fn parse(g: &mut GeneratorInstance, b: &RawBatch) {
//!     let _ = g.parse_batch(b); // a generator cannot be asked to parse
//! }
//! ```

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::PluginKind;
use super::load::{AnyPlugin, Plugin};
use super::state::HostState;

/// A plugin role: [`Parser`](super::Parser),
/// [`Transform`](super::Transform) or [`Generator`](super::Generator).
/// Sealed: the roles are the three worlds of `wit/plugin.wit`.
pub trait Role: sealed::Bind + Sized + Send + Sync + 'static {
    /// The role's kind, as named in pipeline.toml and fixtures.
    const KIND: PluginKind;
}

/// A role's binding at each contract version this host speaks: `Current`
/// is `0.2.x` (columns), `V0_1` the frozen `0.1.x` (converted by
/// `legacy.rs`).
#[derive(Clone)]
pub enum Versioned<Current, V0_1> {
    Current(Current),
    V0_1(V0_1),
}

pub(crate) mod sealed {
    use super::*;

    /// How a role's export is bound and started. Not an API: implemented by
    /// the three roles only.
    pub trait Bind: Sized {
        /// The export's indices, bound once at load time.
        type Exports: Clone + Send + Sync + 'static;
        /// The export's functions in one live instance.
        type Guest: Send + 'static;

        /// Binds the export of a component speaking `contract`.
        fn bind(pre: &InstancePre<HostState>, contract: &str) -> wasmtime::Result<Self::Exports>;

        /// The export's functions in `instance`.
        fn guest(
            exports: &Self::Exports,
            store: &mut Store<HostState>,
            instance: &Instance,
        ) -> wasmtime::Result<Self::Guest>;

        /// Calls the plugin's `init`.
        fn init(
            guest: &Self::Guest,
            store: &mut Store<HostState>,
        ) -> wasmtime::Result<Result<(), String>>;

        fn into_any(plugin: Plugin<Self>) -> AnyPlugin
        where
            Self: super::Role;

        fn from_any(plugin: AnyPlugin) -> Option<Plugin<Self>>
        where
            Self: super::Role;
    }
}

/// Implements [`sealed::Bind`] for the role `$role`, whose `0.2.0` and
/// `0.1.0` exports are the binding modules `$current` and `$v0_1`: the
/// version is chosen once at load time, and every later step follows it.
macro_rules! bind_role {
    ($role:ident, $current:ident, $v0_1:ident) => {
        impl $crate::plugin::role::sealed::Bind for $role {
            type Exports =
                $crate::plugin::role::Versioned<$current::GuestIndices, $v0_1::GuestIndices>;
            type Guest = $crate::plugin::role::Versioned<$current::Guest, $v0_1::Guest>;

            fn bind(
                pre: &::wasmtime::component::InstancePre<$crate::plugin::state::HostState>,
                contract: &str,
            ) -> ::wasmtime::Result<Self::Exports> {
                use $crate::plugin::role::Versioned;
                Ok(if contract == $crate::plugin::CONTRACT_VERSION {
                    Versioned::Current($current::GuestIndices::new(pre)?)
                } else {
                    Versioned::V0_1($v0_1::GuestIndices::new(pre)?)
                })
            }

            fn guest(
                exports: &Self::Exports,
                store: &mut ::wasmtime::Store<$crate::plugin::state::HostState>,
                instance: &::wasmtime::component::Instance,
            ) -> ::wasmtime::Result<Self::Guest> {
                use $crate::plugin::role::Versioned;
                Ok(match exports {
                    Versioned::Current(ix) => Versioned::Current(ix.load(&mut *store, instance)?),
                    Versioned::V0_1(ix) => Versioned::V0_1(ix.load(&mut *store, instance)?),
                })
            }

            fn init(
                guest: &Self::Guest,
                store: &mut ::wasmtime::Store<$crate::plugin::state::HostState>,
            ) -> ::wasmtime::Result<Result<(), String>> {
                use $crate::plugin::role::Versioned;
                match guest {
                    Versioned::Current(g) => g.call_init(store),
                    Versioned::V0_1(g) => g.call_init(store),
                }
            }

            fn into_any(plugin: $crate::plugin::Plugin<Self>) -> $crate::plugin::AnyPlugin {
                $crate::plugin::AnyPlugin::$role(plugin)
            }

            fn from_any(plugin: $crate::plugin::AnyPlugin) -> Option<$crate::plugin::Plugin<Self>> {
                match plugin {
                    $crate::plugin::AnyPlugin::$role(p) => Some(p),
                    _ => None,
                }
            }
        }
    };
}
pub(crate) use bind_role;
