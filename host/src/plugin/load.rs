//! Loading a plugin file: read, hash, check it is a component, compile (or
//! hit the cache), check it targets the expected world and a contract
//! version this host speaks (`0.2.x`, or the frozen `0.1.x`), and link it.
//! The result, a [`Plugin`] typed by its role, is ready to instantiate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::engine::PluginEngine;
use super::error::PluginError;
use super::role::{AnyPlugin, Plugin, PluginInfo, Role};
use super::{Generator, Parser, PluginKind, PluginSettings, Transform};
use crate::util::hex;

/// The contract package every plugin export belongs to.
pub const PACKAGE: &str = "pipehost:plugin";
/// The contract version this host speaks natively (any `0.2.x` plugin loads).
pub const CONTRACT_VERSION: &str = "0.2.0";
/// Every contract version a plugin may be built against, newest first: the
/// current one and the frozen ones under `wit/deps/` (any patch level).
pub const CONTRACT_VERSIONS: [&str; 2] = [CONTRACT_VERSION, "0.1.0"];

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
    /// Loads the plugin at `path`, which must target the world of the role
    /// `R`: `engine.load::<Parser>(path, settings)` gives a plugin that can
    /// only parse, and a generator's file is refused here, by name.
    pub fn load<R: Role>(
        &self,
        path: &Path,
        settings: PluginSettings,
    ) -> Result<Plugin<R>, PluginError> {
        let bytes = read(path)?;
        self.load_bytes(path, &bytes, settings)
    }

    /// Like [`Self::load`], for bytes already in memory (`path` names them).
    pub fn load_bytes<R: Role>(
        &self,
        path: &Path,
        bytes: &[u8],
        settings: PluginSettings,
    ) -> Result<Plugin<R>, PluginError> {
        let kind = R::KIND;
        let (info, contract) = self.link(path, bytes, kind, settings)?;
        let exports = R::bind(&info.pre, contract).map_err(|e| PluginError::WrongWorld {
            path: path.to_owned(),
            expected: kind.world(),
            export: format!("{PACKAGE}/{}@{contract}", kind.interface()),
            found: format!("an export of that name with the wrong shape: {e:#}"),
        })?;
        Ok(Plugin {
            info: Arc::new(info),
            exports,
        })
    }

    /// Loads the plugin at `path` as a `kind` plugin, for when the role is
    /// known only at run time (fixture files name it).
    pub fn load_any(
        &self,
        path: &Path,
        kind: PluginKind,
        settings: PluginSettings,
    ) -> Result<AnyPlugin, PluginError> {
        match kind {
            PluginKind::Generator => self.load::<Generator>(path, settings).map(Into::into),
            PluginKind::Parser => self.load::<Parser>(path, settings).map(Into::into),
            PluginKind::Transform => self.load::<Transform>(path, settings).map(Into::into),
        }
    }

    /// Checks, compiles (or hits the cache) and links a component that must
    /// export `kind`'s interface; returns it with the contract it speaks.
    fn link(
        &self,
        path: &Path,
        bytes: &[u8],
        kind: PluginKind,
        settings: PluginSettings,
    ) -> Result<(PluginInfo, &'static str), PluginError> {
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
        let info = PluginInfo {
            engine: self.clone(),
            name: Arc::from(name),
            path: path.to_owned(),
            sha256,
            pre,
            contract,
            settings,
            size: bytes.len(),
        };
        Ok((info, contract))
    }

    /// Reports what a component file is: its worlds, exports and imports.
    pub fn inspect(&self, path: &Path) -> Result<Inspection, PluginError> {
        let bytes = read(path)?;
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

fn read(path: &Path) -> Result<Vec<u8>, PluginError> {
    std::fs::read(path).map_err(|source| PluginError::Read {
        path: path.to_owned(),
        source,
    })
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
