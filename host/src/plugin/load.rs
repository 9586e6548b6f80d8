//! Loading a plugin file: read, hash, check it is a component, compile (or
//! hit the cache), check it targets the expected world and contract version,
//! and link it. The result, a [`Plugin`], is ready to instantiate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, InstancePre};

use super::bindings::exports::pipehost::plugin::{generator, parser, transformer};
use super::engine::PluginEngine;
use super::error::PluginError;
use super::state::HostState;
use super::{PluginKind, PluginSettings};

/// The contract package every plugin export belongs to.
pub const PACKAGE: &str = "pipehost:plugin";
/// The contract version this host speaks (any `0.1.x` plugin loads).
pub const CONTRACT_VERSION: &str = "0.1.0";

/// The typed export of a plugin, bound once at load time.
#[derive(Clone)]
pub(crate) enum Exports {
    Generator(generator::GuestIndices),
    Parser(parser::GuestIndices),
    Transformer(transformer::GuestIndices),
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
            .map(|b| format!("{b:02x}"))
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

/// Finds the export for `kind` and checks its contract version.
fn check_world(
    engine: &PluginEngine,
    path: &Path,
    component: &Component,
    kind: PluginKind,
) -> Result<(), PluginError> {
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
            if !version.starts_with("0.1.") {
                return Err(wrong(format!(
                    "`{name}`: built against contract version {version}; this host speaks {CONTRACT_VERSION} (0.1.x)"
                )));
            }
            Ok(())
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
        check_world(self, path, &component, kind)?;
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
            export: format!("{PACKAGE}/{}@{CONTRACT_VERSION}", kind.interface()),
            found: format!("an export of that name with the wrong shape: {e:#}"),
        };
        let exports = match kind {
            PluginKind::Generator => {
                Exports::Generator(generator::GuestIndices::new(&pre).map_err(shape)?)
            }
            PluginKind::Parser => Exports::Parser(parser::GuestIndices::new(&pre).map_err(shape)?),
            PluginKind::Transform => {
                Exports::Transformer(transformer::GuestIndices::new(&pre).map_err(shape)?)
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
        Ok(Inspection {
            path: path.to_owned(),
            size: bytes.len(),
            sha256,
            kinds,
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
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}

/// A plugin file's identity: the hex SHA-256 of its bytes (what
/// [`Plugin::sha256`] returns).
pub fn content_hash(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
