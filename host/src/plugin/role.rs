//! The three plugin roles as types, so that what a plugin can be asked is
//! checked by the compiler: a [`Plugin<Parser>`](super::Plugin) makes a
//! [`PluginInstance<Parser>`](super::PluginInstance), which has
//! `parse_batch` and nothing else a generator or transform has.
//!
//! The marker types and how each role's export is bound at each contract
//! version are here; each role's calls are in its own file (`parser.rs`,
//! `transform.rs`, `generator.rs`) — the one place where the contract
//! version is dispatched on, once per call. (The markers live here, not in
//! the role files, so that [`AnyPlugin`] can name them without this module
//! and the role files importing each other.) The machinery every call shares
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

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::{Instance, InstancePre};

use super::bindings::exports::pipehost::plugin::{generator, parser, transformer};
use super::bindings_v0_1::exports::pipehost::plugin::{
    generator as generator_v0_1, parser as parser_v0_1, transformer as transformer_v0_1,
};
use super::engine::PluginEngine;
use super::error::PluginError;
use super::state::HostState;
use super::{PluginKind, PluginSettings};

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

/// The generator role (`generator-plugin`): its calls are in `generator.rs`.
#[derive(Debug, Clone, Copy)]
pub struct Generator;

/// The parser role (`parser-plugin`): its calls are in `parser.rs`.
#[derive(Debug, Clone, Copy)]
pub struct Parser;

/// The transform role (`transform-plugin`): its calls are in `transform.rs`.
#[derive(Debug, Clone, Copy)]
pub struct Transform;

impl Role for Generator {
    const KIND: PluginKind = PluginKind::Generator;
}

impl Role for Parser {
    const KIND: PluginKind = PluginKind::Parser;
}

impl Role for Transform {
    const KIND: PluginKind = PluginKind::Transform;
}

bind_role!(Generator, generator, generator_v0_1);
bind_role!(Parser, parser, parser_v0_1);
bind_role!(Transform, transformer, transformer_v0_1);

/// A compiled, checked and linked plugin of the role `R`: a
/// [`Plugin<Parser>`] can only make parser instances. Cheap to clone.
/// Instantiate it with [`Plugin::instantiate`]; what every plugin has
/// (name, file, hash, settings) is its [`PluginInfo`].
pub struct Plugin<R: Role> {
    pub(crate) info: Arc<PluginInfo>,
    pub(crate) exports: R::Exports,
}

impl<R: Role> Clone for Plugin<R> {
    fn clone(&self) -> Self {
        Self {
            info: self.info.clone(),
            exports: self.exports.clone(),
        }
    }
}

impl<R: Role> Deref for Plugin<R> {
    type Target = PluginInfo;
    fn deref(&self) -> &PluginInfo {
        &self.info
    }
}

impl<R: Role> std::fmt::Debug for Plugin<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.info.name)
            .field("kind", &R::KIND)
            .field("sha256", &self.info.sha256)
            .finish()
    }
}

impl<R: Role> Plugin<R> {
    pub fn kind(&self) -> PluginKind {
        R::KIND
    }

    /// What every plugin has, whatever its role.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }
}

/// A loaded plugin whose role is known only at run time (a fixture file
/// names it): one of the three typed plugins.
#[derive(Debug, Clone)]
pub enum AnyPlugin {
    Generator(Plugin<Generator>),
    Parser(Plugin<Parser>),
    Transform(Plugin<Transform>),
}

impl AnyPlugin {
    pub fn kind(&self) -> PluginKind {
        match self {
            Self::Generator(_) => PluginKind::Generator,
            Self::Parser(_) => PluginKind::Parser,
            Self::Transform(_) => PluginKind::Transform,
        }
    }

    pub fn info(&self) -> &PluginInfo {
        match self {
            Self::Generator(p) => p.info(),
            Self::Parser(p) => p.info(),
            Self::Transform(p) => p.info(),
        }
    }

    /// The typed plugin, when it has the role `R`.
    pub fn into_role<R: Role>(self) -> Option<Plugin<R>> {
        R::from_any(self)
    }

    /// Starts an instance with `config_json` (running `init`) and drops it:
    /// the load-time gate, for any role.
    pub fn check_init(&self, config_json: &str) -> Result<(), PluginError> {
        match self {
            Self::Generator(p) => p.instantiate(config_json).map(drop),
            Self::Parser(p) => p.instantiate(config_json).map(drop),
            Self::Transform(p) => p.instantiate(config_json).map(drop),
        }
    }
}

impl<R: Role> From<Plugin<R>> for AnyPlugin {
    fn from(plugin: Plugin<R>) -> Self {
        R::into_any(plugin)
    }
}

/// What every loaded plugin has, whatever its role: its file, identity and
/// settings, and the linked component it is instantiated from.
pub struct PluginInfo {
    pub(crate) engine: PluginEngine,
    pub(crate) name: Arc<str>,
    pub(crate) path: PathBuf,
    pub(crate) sha256: String,
    pub(crate) pre: InstancePre<HostState>,
    /// The contract version the plugin was built against (`0.2.0`, `0.1.0`).
    pub(crate) contract: &'static str,
    pub(crate) settings: PluginSettings,
    pub(crate) size: usize,
}

impl PluginInfo {
    /// Display name: the file stem, e.g. `forex_parser`.
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Hex SHA-256 of the component file: the plugin's version identity.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
    /// Short form of [`Self::sha256`] used in lineage (`name@abcdef012345`).
    pub fn version(&self) -> String {
        format!("{}@{}", self.name, &self.sha256[..12])
    }
    pub fn settings(&self) -> &PluginSettings {
        &self.settings
    }
    /// The contract version the plugin speaks: one of [`CONTRACT_VERSIONS`](super::CONTRACT_VERSIONS).
    pub fn contract_version(&self) -> &'static str {
        self.contract
    }
    pub fn size(&self) -> usize {
        self.size
    }
}
