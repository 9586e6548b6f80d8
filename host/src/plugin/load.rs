//! Loading a plugin file: read, hash, check it is a component, compile (or
//! hit the cache), check it targets the expected world and a contract
//! version this host speaks (`0.2.x`, or the frozen `0.1.x`), and link it.
//! The result, a [`Plugin`], is ready to instantiate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};

use super::bindings::exports::pipehost::plugin::{generator, parser, transformer};
use super::bindings_v0_1::exports::pipehost::plugin::{
    generator as generator_v0_1, parser as parser_v0_1, transformer as transformer_v0_1,
};
use super::engine::PluginEngine;
use super::error::PluginError;
use super::state::HostState;
use super::{PluginKind, PluginSettings};
use crate::util::hex;

/// The contract package every plugin export belongs to.
pub const PACKAGE: &str = "pipehost:plugin";
/// The contract version this host speaks natively (any `0.2.x` plugin loads).
pub const CONTRACT_VERSION: &str = "0.2.0";
/// Every contract version a plugin may be built against, newest first: the
/// current one and the frozen ones under `wit/deps/` (any patch level).
pub const CONTRACT_VERSIONS: [&str; 2] = [CONTRACT_VERSION, "0.1.0"];

/// The typed export of a plugin, bound once at load time.
#[derive(Clone)]
pub(crate) enum Exports {
    Generator(generator::GuestIndices),
    Parser(parser::GuestIndices),
    Transformer(transformer::GuestIndices),
    GeneratorV0_1(generator_v0_1::GuestIndices),
    ParserV0_1(parser_v0_1::GuestIndices),
    TransformerV0_1(transformer_v0_1::GuestIndices),
}

/// Which of [`CONTRACT_VERSIONS`] a plugin export of `version` speaks
/// (`0.2.7` speaks `0.2.0`), if any.
pub fn supported_contract(version: &str) -> Option<&'static str> {
    CONTRACT_VERSIONS.into_iter().find(|v| {
        let minor = v.rsplit_once('.').map_or(*v, |(m, _)| m);
        version
            .strip_prefix(minor)
            .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// A compiled, checked and linked plugin. Cheap to clone. Instantiate it
/// with [`Plugin::instantiate`].
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<PluginInner>,
}

pub(crate) struct PluginInner {
    pub(crate) engine: PluginEngine,
    pub(crate) name: Arc<str>,
    pub(crate) path: PathBuf,
    pub(crate) sha256: String,
    pub(crate) kind: PluginKind,
    pub(crate) pre: InstancePre<HostState>,
    pub(crate) exports: Exports,
    /// The contract version the plugin was built against (`0.2.0`, `0.1.0`).
    pub(crate) contract: &'static str,
    pub(crate) settings: PluginSettings,
    pub(crate) size: usize,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.name)
            .field("kind", &self.inner.kind)
            .field("sha256", &self.inner.sha256)
            .finish()
    }
}

impl Plugin {
    /// Display name: the file stem, e.g. `forex_parser`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
    pub fn kind(&self) -> PluginKind {
        self.inner.kind
    }
    /// Hex SHA-256 of the component file: the plugin's version identity.
    pub fn sha256(&self) -> &str {
        &self.inner.sha256
    }
    /// Short form of [`Self::sha256`] used in lineage (`name@abcdef012345`).
    pub fn version(&self) -> String {
        format!("{}@{}", self.inner.name, &self.inner.sha256[..12])
    }
    pub fn settings(&self) -> &PluginSettings {
        &self.inner.settings
    }
    /// The contract version the plugin speaks: one of [`CONTRACT_VERSIONS`].
    pub fn contract_version(&self) -> &'static str {
        self.inner.contract
    }
    pub fn size(&self) -> usize {
        self.inner.size
    }
}

/// What a component file is, judged by its header.
fn check_header(path: &Path, bytes: &[u8]) -> Result<(), PluginError> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        let shown: String = bytes
            .iter()
            .take(8)
            .map(|b| hex::encode(&[*b]))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(PluginError::NotAComponent {
            path: path.to_owned(),
            detail: format!(
                "not WebAssembly at all: {} bytes starting with [{shown}]",
                bytes.len()
            ),
        });
    }
    // Bytes 4..8: version 1 + layer 0 is a core module; layer 1 a component.
    if bytes[6..8] == [0, 0] {
        return Err(PluginError::NotAComponent {
            path: path.to_owned(),
            detail: "a core WebAssembly module, not a component".into(),
        });
    }
    Ok(())
}

/// Lists a component's exports for error messages.
fn describe_exports(engine: &PluginEngine, component: &Component) -> Vec<String> {
    component
        .component_type()
        .exports(engine.engine())
        .map(|(name, ext)| match ext.ty {
            ComponentItem::ComponentInstance(_) => name.to_string(),
            ComponentItem::ComponentFunc(_) => format!("func {name}"),
            _ => format!("item {name}"),
        })
        .collect()
}

/// Finds the export for `kind` and checks its contract version; returns
/// the contract it speaks.
fn check_world(
    engine: &PluginEngine,
    path: &Path,
    component: &Component,
    kind: PluginKind,
) -> Result<&'static str, PluginError> {
    let wanted = kind.interface();
    let export = format!("{PACKAGE}/{wanted}@{CONTRACT_VERSION}");
    let exports = describe_exports(engine, component);
    let ours: Vec<&String> = exports
        .iter()
        .filter(|e| e.starts_with(&format!("{PACKAGE}/")))
        .collect();
    let prefix = format!("{PACKAGE}/{wanted}@");
    let wrong = |found: String| PluginError::WrongWorld {
        path: path.to_owned(),
        expected: kind.world(),
        export: export.clone(),
        found,
    };
    match ours.iter().find(|e| e.starts_with(&prefix)) {
        Some(name) => {
            let version = &name[prefix.len()..];
            supported_contract(version).ok_or_else(|| {
                wrong(format!(
                    "`{name}`: built against contract version {version}; this host speaks {} (and any patch level of them)",
                    CONTRACT_VERSIONS.join(" and ")
                ))
            })
        }
        None if !ours.is_empty() => {
            let found: Vec<String> = ours
                .iter()
                .map(|e| match PluginKind::from_export(e) {
                    Some(k) => format!("a {} plugin (`{e}`)", k.world()),
                    None => format!("`{e}`"),
                })
                .collect();
            Err(wrong(found.join(", ")))
        }
        None if exports.is_empty() => Err(wrong("a component with no exports".into())),
        None => Err(wrong(format!(
            "no pipehost plugin export; it exports {}",
            exports.join(", ")
        ))),
    }
}

impl PluginEngine {
    /// Loads the plugin at `path`, which must target `kind`'s world.
    pub fn load(
        &self,
        path: &Path,
        kind: PluginKind,
        settings: PluginSettings,
    ) -> Result<Plugin, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.load_bytes(path, &bytes, kind, settings)
    }

    /// Like [`Self::load`], for bytes already in memory (`path` names them).
    pub fn load_bytes(
        &self,
        path: &Path,
        bytes: &[u8],
        kind: PluginKind,
        settings: PluginSettings,
    ) -> Result<Plugin, PluginError> {
        check_header(path, bytes)?;
        let sha256 = content_hash(bytes);
        let started = Instant::now();
        let (component, cached) =
            self.compile(bytes, &sha256)
                .map_err(|e| PluginError::Invalid {
                    path: path.to_owned(),
                    detail: format!("{e:#}"),
                })?;
        tracing::debug!(
            path = %path.display(),
            cached,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "plugin compiled"
        );
        let contract = check_world(self, path, &component, kind)?;
        let pre = self
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| PluginError::Link {
                path: path.to_owned(),
                detail: format!("{e:#}"),
            })?;
        let shape = |e: wasmtime::Error| PluginError::WrongWorld {
            path: path.to_owned(),
            expected: kind.world(),
            export: format!("{PACKAGE}/{}@{contract}", kind.interface()),
            found: format!("an export of that name with the wrong shape: {e:#}"),
        };
        let current = contract == CONTRACT_VERSION;
        let exports = match (kind, current) {
            (PluginKind::Generator, true) => {
                Exports::Generator(generator::GuestIndices::new(&pre).map_err(shape)?)
            }
            (PluginKind::Parser, true) => {
                Exports::Parser(parser::GuestIndices::new(&pre).map_err(shape)?)
            }
            (PluginKind::Transform, true) => {
                Exports::Transformer(transformer::GuestIndices::new(&pre).map_err(shape)?)
            }
            (PluginKind::Generator, false) => {
                Exports::GeneratorV0_1(generator_v0_1::GuestIndices::new(&pre).map_err(shape)?)
            }
            (PluginKind::Parser, false) => {
                Exports::ParserV0_1(parser_v0_1::GuestIndices::new(&pre).map_err(shape)?)
            }
            (PluginKind::Transform, false) => {
                Exports::TransformerV0_1(transformer_v0_1::GuestIndices::new(&pre).map_err(shape)?)
            }
        };
        if settings.memory_cap > self.settings().max_memory_bytes {
            return Err(PluginError::Invalid {
                path: path.to_owned(),
                detail: format!(
                    "memory cap {} exceeds the engine's maximum of {} bytes",
                    settings.memory_cap,
                    self.settings().max_memory_bytes
                ),
            });
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "plugin".into());
        Ok(Plugin {
            inner: Arc::new(PluginInner {
                engine: self.clone(),
                name: Arc::from(name),
                path: path.to_owned(),
                sha256,
                kind,
                pre,
                exports,
                contract,
                settings,
                size: bytes.len(),
            }),
        })
    }

    /// Reports what a component file is: its worlds, exports and imports.
    pub fn inspect(&self, path: &Path) -> Result<Inspection, PluginError> {
        let bytes = std::fs::read(path).map_err(|source| PluginError::Read {
            path: path.to_owned(),
            source,
        })?;
        check_header(path, &bytes)?;
        let sha256 = content_hash(&bytes);
        let (component, _) = self
            .compile(&bytes, &sha256)
            .map_err(|e| PluginError::Invalid {
                path: path.to_owned(),
                detail: format!("{e:#}"),
            })?;
        let ty = component.component_type();
        let exports = describe_exports(self, &component);
        let imports = ty
            .imports(self.engine())
            .map(|(name, _)| name.to_string())
            .collect();
        let kinds = exports
            .iter()
            .filter_map(|e| PluginKind::from_export(e))
            .collect();
        let contracts = exports
            .iter()
            .filter(|e| PluginKind::from_export(e).is_some())
            .filter_map(|e| e.split_once('@').map(|(_, v)| v.to_string()))
            .collect();
        Ok(Inspection {
            path: path.to_owned(),
            size: bytes.len(),
            sha256,
            kinds,
            contracts,
            exports,
            imports,
        })
    }
}

/// What [`PluginEngine::inspect`] found.
#[derive(Debug, Clone)]
pub struct Inspection {
    pub path: PathBuf,
    pub size: usize,
    pub sha256: String,
    pub kinds: Vec<PluginKind>,
    /// The contract version of each plugin export, as the component states
    /// it (e.g. `0.2.0`), in the order of `kinds`.
    pub contracts: Vec<String>,
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}

/// A plugin file's identity: the hex SHA-256 of its bytes (what
/// [`Plugin::sha256`] returns).
pub fn content_hash(bytes: &[u8]) -> String {
    hex::sha256(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_versions_by_minor() {
        assert_eq!(supported_contract("0.2.0"), Some("0.2.0"));
        assert_eq!(supported_contract("0.2.7"), Some("0.2.0"));
        assert_eq!(supported_contract("0.1.0"), Some("0.1.0"));
        assert_eq!(supported_contract("0.1.3"), Some("0.1.0"));
        for other in ["0.3.0", "1.0.0", "0.20.0", "0.10.1", "0.2", ""] {
            assert_eq!(supported_contract(other), None, "{other}");
        }
    }
}
