//! `pipehost run`, `serve` and `lambda`: the commands that run the pipeline
//! or a part of it.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use super::args::{LambdaArgs, RunArgs, ServeArgs, Stage};
use super::{load_plan, runtime};
use crate::plan::Plan;
use crate::runtime::{RunOptions, RunReport};

pub(super) fn run_pipeline(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = match load_plan(&args.pipeline, true) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    eprintln!(
        "pipehost: running {:?} ({} feeds, {} shards; {}); Ctrl-C stops after draining in-flight batches",
        plan.fixed.name,
        plan.live.feeds.len(),
        plan.fixed.stream.shards,
        where_it_runs(&plan)
    );
    let opts = RunOptions {
        duration: args.duration,
        max_records: args.max_records,
        status: !args.quiet,
        watch: !args.no_watch,
        dev: args.dev,
        stages: crate::runtime::Stages {
            feeds: args.stages.contains(&Stage::Feeds),
            bridge: args.stages.contains(&Stage::Bridge),
            processor: args.stages.contains(&Stage::Processor),
        },
    };
    let report = runtime()?.block_on(crate::runtime::run(Arc::new(plan), opts))?;
    print_run_report(&report, &args.pipeline)?;
    Ok(ExitCode::SUCCESS)
}

/// The backend a run uses and where its state is, for the start line.
fn where_it_runs(plan: &Plan) -> String {
    match &plan.fixed.backend {
        crate::plan::BackendPlan::Local { data_dir, .. } => {
            format!("local backend, state in {}", data_dir.display())
        }
        crate::plan::BackendPlan::Aws(aws) => format!(
            "aws backend, stream {}, region {}",
            plan.fixed.stream.name,
            aws.region.as_deref().unwrap_or("from the AWS config")
        ),
    }
}

/// What a finished run did, on stdout, and how to look at its data.
fn print_run_report(report: &RunReport, pipeline: &Path) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let s = &report.stats;
    let secs = report.elapsed.as_secs_f64().max(1e-3);
    writeln!(
        out,
        "run finished in {secs:.1}s{}",
        if report.drained {
            " (every generated record processed)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "  generated   {} records ({} more through the web server)",
        s.generated, s.ingested
    )?;
    writeln!(
        out,
        "  bridged     {} records in {} batches",
        s.bridged, s.messages
    )?;
    writeln!(
        out,
        "  processed   {} records -> {} events stored, {} dropped, {} error records",
        s.processed, s.events, s.dropped, s.error_records
    )?;
    writeln!(
        out,
        "  stored      {} objects, {} notifications",
        s.objects, s.notifications
    )?;
    writeln!(
        out,
        "  failures    {} batches failed ({} plugin), {} backend errors; dead-letter queue: {}",
        s.failed_batches, s.plugin_failures, s.backend_errors, s.dead_letters
    )?;
    writeln!(
        out,
        "  throughput  {:.0} records/s processed",
        s.processed as f64 / secs
    )?;
    writeln!(
        out,
        "  reloads     {} applied, {} refused",
        s.reloads, s.reload_failures
    )?;
    writeln!(
        out,
        "look at the data: pipehost ls -c {0}   |   pipehost cat -c {0} <key>",
        pipeline.display()
    )?;
    Ok(())
}

pub(super) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let plan = match load_plan(&args.pipeline, true) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    eprintln!(
        "pipehost: serving {:?} ({} feeds; producer only: nothing is bridged or processed here)",
        plan.fixed.name,
        plan.live.feeds.len()
    );
    let report = runtime()?.block_on(crate::runtime::serve(Arc::new(plan), args.duration))?;
    let mut out = std::io::stdout().lock();
    let s = &report.stats;
    writeln!(
        out,
        "served for {:.1}s: {} records generated on schedule, {} through the web server",
        report.elapsed.as_secs_f64(),
        s.generated,
        s.ingested
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn lambda(args: LambdaArgs) -> anyhow::Result<ExitCode> {
    crate::backend::aws::lambda::check_environment()?;
    let path = args.pipeline();
    let plan = match load_plan(&path, true) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    runtime()?.block_on(crate::runtime::lambda::run(Arc::new(plan)))?;
    Ok(ExitCode::SUCCESS)
}
