//! `pipehost check` and `setup`: a pipeline file validated and shown, and
//! the resources it names created.

use std::io::Write;
use std::process::ExitCode;

use super::args::CheckArgs;
use super::load_plan;

pub(super) fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let plan = match load_plan(&args.pipeline, true) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: ok", args.pipeline.display())?;
    for f in &plan.live.feeds {
        let source = match &f.generator {
            Some(g) => format!(
                "{} every {:?} x{} (seed {})",
                g.plugin.path.display(),
                g.interval,
                g.records,
                g.seed
            ),
            None => "no generator (ingest only)".into(),
        };
        writeln!(out, "  feed {}: {source}", f.name)?;
        writeln!(out, "    parser {}", f.parser.path.display())?;
        for t in &f.transforms {
            writeln!(out, "    transform {}", t.path.display())?;
        }
    }
    writeln!(
        out,
        "  stream {} ({} shards) -> queue {} (dlq {}, visibility {:?}, max receives {}) -> {} workers",
        plan.fixed.stream.name,
        plan.fixed.stream.shards,
        plan.fixed.queue.name,
        plan.fixed.queue.dead_letter,
        plan.fixed.queue.visibility_timeout,
        plan.fixed.queue.max_receives,
        plan.fixed.processor.workers
    )?;
    writeln!(
        out,
        "  objects in {} (rollover {} records / {} bytes / {:?}), errors under {}; notifications on {}",
        plan.fixed.store.bucket,
        plan.live.bridge.rollover.records,
        plan.live.bridge.rollover.bytes,
        plan.live.bridge.rollover.age,
        plan.fixed.store.error_prefix,
        plan.fixed.notifications.topic
    )?;
    if let Some(w) = &plan.fixed.web {
        let log = match &w.request_log {
            crate::plan::RequestLogPlan::Off => "off".to_string(),
            crate::plan::RequestLogPlan::Sqlite(p) => format!("SQLite {}", p.display()),
            crate::plan::RequestLogPlan::Postgres(u) => crate::web::requestlog::redact(u),
            crate::plan::RequestLogPlan::FromEnv { var, .. } => format!("from ${var}"),
        };
        writeln!(
            out,
            "  web server on {}://{} (body limit {} bytes, request timeout {:?}); keys from ${}{}; request log: {log}",
            if w.tls.is_some() { "https" } else { "http" },
            w.listen,
            w.body_limit,
            w.request_timeout,
            w.keys_env,
            w.keys_file
                .as_ref()
                .map(|f| format!(" and {}", f.display()))
                .unwrap_or_default(),
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn setup(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let plan = match load_plan(&args.pipeline, false) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    match crate::backend::setup(&plan).await {
        Ok(lines) => {
            let mut out = std::io::stdout().lock();
            for l in lines {
                writeln!(out, "{l}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: setting up {}: {e:#}", plan.file.display());
            Ok(ExitCode::from(1))
        }
    }
}
