//! `pipehost test` and `inspect`: plugin fixtures run in the sandbox, and
//! what a plugin file is.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use super::args::{InspectArgs, TestArgs};
use crate::fixture;
use crate::plugin::{EngineSettings, PluginEngine, PluginSettings};

pub(super) fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let files = fixture::discover(&args.paths)?;
    if files.is_empty() {
        let shown: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        anyhow::bail!("no fixture files found under {}", shown.join(", "));
    }
    let engine = PluginEngine::new(EngineSettings::default())?;
    let opts = fixture::RunOptions {
        plugin_dir: args.plugin_dir,
        filter: args.filter,
        accept: args.accept,
        settings: PluginSettings {
            timeout: Duration::from_millis(args.timeout_ms),
            memory_cap: args.memory_mib << 20,
            ..PluginSettings::default()
        },
    };
    let mut out = std::io::stdout().lock();
    let summary = fixture::run_files(&engine, &files, &opts, &mut out)?;
    out.flush()?;
    Ok(if summary.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

pub(super) fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let engine = PluginEngine::new(EngineSettings::default())?;
    let mut code = ExitCode::SUCCESS;
    let mut out = std::io::stdout().lock();
    for file in &args.files {
        match engine.inspect(file) {
            Ok(i) => {
                let kinds: Vec<&str> = i.kinds.iter().map(|k| k.world()).collect();
                writeln!(out, "{}", i.path.display())?;
                writeln!(out, "  size:    {} bytes", i.size)?;
                writeln!(out, "  sha256:  {}", i.sha256)?;
                writeln!(
                    out,
                    "  world:   {}",
                    if kinds.is_empty() {
                        "none (not a pipehost plugin)".to_string()
                    } else {
                        kinds.join(", ")
                    }
                )?;
                if !i.contracts.is_empty() {
                    let supported: Vec<String> = i
                        .contracts
                        .iter()
                        .map(|v| {
                            if crate::plugin::supported_contract(v).is_some() {
                                format!("pipehost:plugin@{v}")
                            } else {
                                format!("pipehost:plugin@{v} (not spoken by this host)")
                            }
                        })
                        .collect();
                    writeln!(out, "  contract: {}", supported.join(", "))?;
                }
                writeln!(out, "  exports: {}", i.exports.join(", "))?;
                writeln!(out, "  imports: {}", i.imports.join(", "))?;
            }
            Err(e) => {
                eprintln!("error: {e}");
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}
