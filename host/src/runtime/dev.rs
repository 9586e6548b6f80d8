//! `pipehost run --dev`: the plugin author's loop. The source crates of the
//! plugins a pipeline uses are watched; a saved change rebuilds the crates
//! it affects for wasm32-wasip2, and the rebuilt `.wasm` files then take the
//! ordinary hot-reload path (checked, swapped at a batch boundary, or
//! refused with the old version serving).
//!
//! Crates are found with `cargo metadata`: a workspace package with a
//! `cdylib` target named like a plugin file (`forex_transform.wasm` ←
//! target `forex_transform`). A change in a path dependency (the guest SDK)
//! rebuilds every plugin crate that depends on it.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A plugin crate to rebuild, and the folders whose changes affect it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginCrate {
    pub package: String,
    /// The `.wasm` file stem the crate builds (its cdylib target name).
    pub artifact: String,
    pub dirs: Vec<PathBuf>,
}

/// The workspace's plugin crates, from `cargo metadata` JSON.
pub fn plugin_crates(metadata: &Value) -> Vec<PluginCrate> {
    let packages = metadata["packages"].as_array().cloned().unwrap_or_default();
    let dir_of = |name: &str| {
        packages
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["manifest_path"].as_str())
            .and_then(|m| Path::new(m).parent().map(Path::to_owned))
    };
    let mut out = Vec::new();
    for p in &packages {
        let Some(target) = p["targets"].as_array().and_then(|ts| {
            ts.iter().find(|t| {
                t["kind"]
                    .as_array()
                    .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
            })
        }) else {
            continue;
        };
        let (Some(name), Some(artifact)) = (p["name"].as_str(), target["name"].as_str()) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = dir_of(name).into_iter().collect();
        for dep in p["dependencies"].as_array().into_iter().flatten() {
            if let Some(path) = dep["path"].as_str() {
                dirs.push(PathBuf::from(path));
            }
        }
        out.push(PluginCrate {
            package: name.to_string(),
            artifact: artifact.replace('-', "_"),
            dirs,
        });
    }
    out
}

/// The crates behind the plugin files a pipeline uses.
pub fn crates_for(files: &[PathBuf], crates: &[PluginCrate]) -> Vec<PluginCrate> {
    let stems: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    crates
        .iter()
        .filter(|c| stems.contains(&c.artifact))
        .cloned()
        .collect()
}

/// Runs `cargo metadata` in `dir`.
async fn metadata(dir: &Path) -> anyhow::Result<Value> {
    let out = tokio::process::Command::new("cargo")
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(dir)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "cargo metadata failed in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn build(workspace: &Path, packages: &[String]) -> bool {
    let mut cmd = tokio::process::Command::new("cargo");
    cmd.args(["build", "--release", "--target", "wasm32-wasip2"])
        .current_dir(workspace);
    for p in packages {
        cmd.args(["-p", p]);
    }
    tracing::info!("--dev: rebuilding {}", packages.join(", "));
    match cmd.output().await {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            tracing::error!(
                "--dev: build failed; the running version keeps serving:\n{}",
                tail.join("\n")
            );
            false
        }
        Err(e) => {
            tracing::error!("--dev: cannot run cargo: {e}");
            false
        }
    }
}

/// What `--dev` watches: the plugin crates of a cargo workspace that build
/// the pipeline's plugin files.
pub struct DevWatch {
    workspace: PathBuf,
    target: PathBuf,
    crates: Vec<PluginCrate>,
}

/// Finds the source crates of `plugin_files` in the cargo workspace around
/// `pipeline_dir`; refused, saying why and what to do, when there is no
/// workspace or it builds none of them — before the pipeline starts, not
/// at its end.
pub async fn prepare(pipeline_dir: &Path, plugin_files: &[PathBuf]) -> anyhow::Result<DevWatch> {
    let meta = metadata(pipeline_dir).await.map_err(|e| {
        anyhow::anyhow!(
            "--dev watches the plugin crates of the cargo workspace around the pipeline \
             file, and there is none at {}: {e:#}",
            pipeline_dir.display()
        )
    })?;
    let workspace = PathBuf::from(meta["workspace_root"].as_str().unwrap_or("."));
    let target = PathBuf::from(meta["target_directory"].as_str().unwrap_or("target"))
        .join("wasm32-wasip2")
        .join("release");
    let crates = crates_for(plugin_files, &plugin_crates(&meta));
    if crates.is_empty() {
        let files: Vec<String> = plugin_files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        anyhow::bail!(
            "--dev has nothing to watch: the cargo workspace at {} builds none of this \
             pipeline's plugins ({}); put the pipeline file in the workspace that builds them",
            workspace.display(),
            files.join(", ")
        );
    }
    warn_of_copies(plugin_files, &crates, &target);
    Ok(DevWatch {
        workspace,
        target,
        crates,
    })
}

/// Watches the source crates `prepare` found and rebuilds them on change,
/// until cancelled.
pub async fn run(dev: DevWatch, cancel: CancellationToken) -> anyhow::Result<()> {
    use notify::{EventKind, RecursiveMode, Watcher};
    let DevWatch {
        workspace,
        target,
        crates,
    } = dev;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<PathBuf>(256);
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if matches!(ev.kind, EventKind::Access(_)) {
            return;
        }
        for p in ev.paths {
            let ignored = p.components().any(|c| c.as_os_str() == "target")
                || p.extension().is_some_and(|e| e == "swp" || e == "tmp");
            if !ignored {
                let _ = tx.try_send(p);
            }
        }
    })?;
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for c in &crates {
        dirs.extend(c.dirs.iter().cloned());
    }
    for d in &dirs {
        watcher.watch(d, RecursiveMode::Recursive)?;
    }
    let names: Vec<&str> = crates.iter().map(|c| c.package.as_str()).collect();
    tracing::info!("--dev: watching the sources of {}", names.join(", "));
    let by_dir: HashMap<PathBuf, Vec<String>> = dirs
        .iter()
        .map(|d| {
            let pkgs = crates
                .iter()
                .filter(|c| c.dirs.contains(d))
                .map(|c| c.package.clone())
                .collect();
            (d.clone(), pkgs)
        })
        .collect();
    while let Some(changed) = next_changes(&mut rx, &cancel).await {
        let mut packages: BTreeSet<String> = BTreeSet::new();
        for p in &changed {
            for (d, pkgs) in &by_dir {
                if p.starts_with(d) {
                    packages.extend(pkgs.iter().cloned());
                }
            }
        }
        if !packages.is_empty() {
            let list: Vec<String> = packages.into_iter().collect();
            let before = artifacts(&crates, &list, &target);
            if build(&workspace, &list).await {
                report_rebuild(&before, &artifacts(&crates, &list, &target));
            }
        }
    }
    Ok(())
}

/// The SHA-256 of each built `.wasm` of `packages` (`None`: not built).
fn artifacts(
    crates: &[PluginCrate],
    packages: &[String],
    target: &Path,
) -> Vec<(String, Option<String>)> {
    crates
        .iter()
        .filter(|c| packages.contains(&c.package))
        .map(|c| {
            let file = target.join(format!("{}.wasm", c.artifact));
            let sha = std::fs::read(&file)
                .ok()
                .map(|b| crate::util::hex::sha256(&b));
            (c.artifact.clone(), sha)
        })
        .collect()
}

/// Says what a successful rebuild changed: a new version (the watcher
/// reloads it) or the same bytes (nothing to reload).
fn report_rebuild(before: &[(String, Option<String>)], after: &[(String, Option<String>)]) {
    for ((name, old), (_, new)) in before.iter().zip(after) {
        match new {
            Some(sha) if Some(sha) != old.as_ref() => {
                tracing::info!(
                    "--dev: rebuilt {name}: new version {}; reloading",
                    &sha[..12]
                );
            }
            Some(_) => {
                tracing::info!(
                    "--dev: rebuilt {name}: unchanged (the same .wasm); nothing to reload"
                );
            }
            None => tracing::warn!("--dev: rebuilt, but {name}.wasm is not in the build output"),
        }
    }
}

/// Warns of each plugin file built by a watched crate that is not the
/// build output itself (a copy), so rebuilds will not reach it.
fn warn_of_copies(plugin_files: &[PathBuf], crates: &[PluginCrate], target: &Path) {
    for f in plugin_files {
        let canonical = super::reload::canonical(f);
        let stem = f.file_stem().map(|s| s.to_string_lossy().into_owned());
        if crates.iter().any(|c| Some(&c.artifact) == stem.as_ref())
            && canonical.parent() != target.canonicalize().ok().as_deref()
        {
            tracing::warn!(
                "--dev: {} is not the build output ({}); rebuilds will not reach it",
                f.display(),
                target.display()
            );
        }
    }
}

/// The next changed paths: the first change and the burst an editor save
/// makes after it; `None` when cancelled or the watcher is gone.
async fn next_changes(
    rx: &mut tokio::sync::mpsc::Receiver<PathBuf>,
    cancel: &CancellationToken,
) -> Option<Vec<PathBuf>> {
    let first = tokio::select! {
        _ = cancel.cancelled() => return None,
        p = rx.recv() => p?,
    };
    // Gather the burst an editor save makes.
    let mut changed = vec![first];
    let quiet = tokio::time::sleep(Duration::from_millis(200));
    tokio::pin!(quiet);
    loop {
        tokio::select! {
            _ = &mut quiet => break,
            p = rx.recv() => match p { Some(p) => changed.push(p), None => break },
        }
    }
    Some(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_crates_and_their_source_folders_come_from_cargo_metadata() {
        let meta = serde_json::json!({
            "packages": [
                { "name": "pipehost-guest", "manifest_path": "/w/plugins/guest/Cargo.toml",
                  "targets": [{ "name": "pipehost_guest", "kind": ["lib"] }], "dependencies": [] },
                { "name": "forex-transform", "manifest_path": "/w/plugins/forex/transform/Cargo.toml",
                  "targets": [{ "name": "forex_transform", "kind": ["cdylib", "rlib"] }],
                  "dependencies": [{ "name": "pipehost-guest", "path": "/w/plugins/guest" },
                                   { "name": "serde" }] },
                { "name": "pipehost", "manifest_path": "/w/host/Cargo.toml",
                  "targets": [{ "name": "pipehost", "kind": ["lib"] }], "dependencies": [] },
            ]
        });
        let crates = plugin_crates(&meta);
        assert_eq!(
            crates,
            vec![PluginCrate {
                package: "forex-transform".into(),
                artifact: "forex_transform".into(),
                dirs: vec![
                    "/w/plugins/forex/transform".into(),
                    "/w/plugins/guest".into()
                ],
            }]
        );
        let used = crates_for(
            &["t/w/forex_transform.wasm".into(), "t/w/other.wasm".into()],
            &crates,
        );
        assert_eq!(used.len(), 1);
        assert!(crates_for(&["x/stock_parser.wasm".into()], &crates).is_empty());
    }
}
