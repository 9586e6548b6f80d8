//! The `pipehost` command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::fixture;
use crate::plan::Plan;
use crate::plugin::{EngineSettings, PluginEngine, PluginSettings};
use crate::runtime::RunOptions;

/// A plugin-driven market-data pipeline: generators, parsers and transforms
/// are sandboxed WebAssembly components; the plumbing is fixed Rust.
#[derive(Debug, Parser)]
#[command(name = "pipehost", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run plugin fixtures inside the sandbox and report each case.
    ///
    /// Each fixture file names a plugin and lists cases: raw records in,
    /// expected events or errors out (parsers); events in, expected outcomes
    /// out (transforms); a tick in, expected records out (generators). The
    /// format is described in plugins/README.md. Exits 1 if any case fails.
    Test(TestArgs),

    /// Show what a plugin file is: its world, exports, imports and hash.
    Inspect(InspectArgs),

    /// Run the pipeline: feeds -> stream -> bridge -> queue -> processor ->
    /// object store -> notifications. Stops on Ctrl-C / SIGTERM (draining
    /// in-flight batches), after --duration, or once --max-records records
    /// were generated and processed. Reloads plugins and live settings when
    /// pipeline.toml or a plugin file changes, and on SIGHUP.
    Run(RunArgs),

    /// Run a producer only: the feeds' scheduled generation and the web
    /// server of `[web]` (ingest, /logs, health, metrics), without the
    /// bridge or the processor. Stops on Ctrl-C / SIGTERM or after
    /// --duration, letting requests in flight finish.
    Serve(ServeArgs),

    /// Run the processing stage as an AWS Lambda function (custom runtime
    /// `provided.al2023`, behind an SQS event source mapping with
    /// ReportBatchItemFailures): each invocation parses, transforms, stores
    /// and notifies its batches and reports exactly the messages that
    /// failed. Started as `bootstrap` (the name Lambda runs), the binary
    /// does this without arguments.
    Lambda(LambdaArgs),

    /// Validate a pipeline file and show the plan, without running anything.
    Check(CheckArgs),

    /// Create the pipeline's stream, queues (with the dead-letter redrive),
    /// bucket, topic and subscriptions where missing, and print what was
    /// done. Safe to run again. (The local backend creates its own.)
    Setup(CheckArgs),

    /// List stored objects under a prefix.
    Ls(LsArgs),

    /// Print a stored object (decompressed).
    Cat(CatArgs),

    /// Inspect or redrive the dead-letter queue.
    Dlq(DlqArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline file.
    #[arg(default_value = "pipeline.toml")]
    pub pipeline: PathBuf,
    /// Stop after this long, e.g. `30s`, `5m`.
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,
    /// Generate this many records in total (across runs; what is left is
    /// shared equally among the feeds with a generator), then stop once all
    /// of them are processed.
    #[arg(long)]
    pub max_records: Option<u64>,
    /// No status line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Do not reload when pipeline.toml or a plugin file changes (SIGHUP
    /// still reloads).
    #[arg(long)]
    pub no_watch: bool,
    /// Plugin authors' loop: also watch the source crates of the pipeline's
    /// plugins, rebuild a changed one for wasm32-wasip2 and swap it in.
    #[arg(long, conflicts_with = "no_watch")]
    pub dev: bool,
    /// Run only these stages, e.g. `--stages bridge` for the one bridge
    /// process of an AWS deployment (`feeds` includes the web server).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "feeds,bridge,processor"
    )]
    pub stages: Vec<Stage>,
}

/// A stage of `pipehost run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Stage {
    /// The generators' schedules and the web server.
    Feeds,
    /// Stream to queue.
    Bridge,
    /// Queue to object store and notifications.
    Processor,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The pipeline file (needs a [web] section).
    #[arg(default_value = "pipeline.toml")]
    pub pipeline: PathBuf,
    /// Stop after this long, e.g. `30s`, `5m`.
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct LambdaArgs {
    /// The pipeline file; else `$LAMBDA_TASK_ROOT/pipeline.toml` (the
    /// deployment package), else `pipeline.toml`.
    #[arg(env = "PIPEHOST_PIPELINE")]
    pub pipeline: Option<PathBuf>,
}

impl LambdaArgs {
    fn pipeline(&self) -> PathBuf {
        if let Some(p) = &self.pipeline {
            return p.clone();
        }
        match std::env::var_os("LAMBDA_TASK_ROOT") {
            Some(root) => PathBuf::from(root).join("pipeline.toml"),
            None => PathBuf::from("pipeline.toml"),
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The pipeline file.
    #[arg(default_value = "pipeline.toml")]
    pub pipeline: PathBuf,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Key prefix, e.g. `dataset=forex/` or `errors/`.
    #[arg(default_value = "")]
    pub prefix: String,
    /// The pipeline file.
    #[arg(long, short, default_value = "pipeline.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct CatArgs {
    /// The object key.
    pub key: String,
    /// The pipeline file.
    #[arg(long, short, default_value = "pipeline.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    pub action: Option<DlqAction>,
    /// The pipeline file.
    #[arg(long, short, global = true, default_value = "pipeline.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DlqAction {
    /// List the messages in the dead-letter queue (the default).
    List {
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Move every dead-lettered message back to the main queue.
    Redrive,
}

fn parse_duration_arg(s: &str) -> Result<Duration, String> {
    crate::plan::parse_duration(s)
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Fixture files, or folders searched for `fixtures/*.toml`.
    #[arg(default_value = "plugins")]
    pub paths: Vec<PathBuf>,

    /// Where plugin names in fixtures resolve to `<name>.wasm`.
    #[arg(
        long,
        env = "PIPEHOST_PLUGIN_DIR",
        default_value = "target/wasm32-wasip2/release"
    )]
    pub plugin_dir: PathBuf,

    /// Only run cases whose `file :: name` contains this text.
    #[arg(long)]
    pub filter: Option<String>,

    /// Per-call deadline in milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub timeout_ms: u64,

    /// Per-instance memory cap in MiB.
    #[arg(long, default_value_t = 64)]
    pub memory_mib: usize,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Component files to inspect.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    // Colour only on a terminal: redirected logs stay plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// The command line; started under the name `bootstrap` (a Lambda custom
/// runtime's entry point) without arguments, it is `pipehost lambda`.
fn arguments() -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let bootstrap = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "bootstrap");
    if bootstrap && args.len() == 1 {
        args.push("lambda".into());
    }
    args
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(arguments());
    init_tracing(cli.verbose);
    match run(cli) {
        Ok(code) => code,
        // `pipehost ls | head`: the reader has gone, as with `ls` or `rg`
        // that is a quiet success, not an error (Rust ignores SIGPIPE, so
        // every write to stdout says so through its `io::Error`).
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Whether `e` is stdout's reader having gone away. Everything printed to
/// stdout goes through `writeln!` on a lock (never `println!`, which panics
/// on a closed pipe), so the error reaches [`main`] here.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Test(args) => test(args),
        Command::Inspect(args) => inspect(args),
        Command::Run(args) => run_pipeline(args),
        Command::Serve(args) => serve(args),
        Command::Lambda(args) => lambda(args),
        Command::Check(args) => check(args),
        Command::Setup(args) => block_on(setup(args)),
        Command::Ls(args) => block_on(ls(args)),
        Command::Cat(args) => block_on(cat(args)),
        Command::Dlq(args) => block_on(dlq(args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn block_on(
    f: impl std::future::Future<Output = anyhow::Result<ExitCode>>,
) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(f)
}

/// Loads and validates a pipeline file, printing every problem.
fn load_plan(path: &std::path::Path, files: bool) -> Result<Plan, ExitCode> {
    let result = crate::plan::load(path).and_then(|p| {
        if files {
            crate::plan::check_files(&p)?;
        }
        Ok(p)
    });
    result.map_err(|errors| {
        for e in &errors {
            eprintln!("error: {e}");
        }
        ExitCode::from(2)
    })
}

fn run_pipeline(args: RunArgs) -> anyhow::Result<ExitCode> {
    let plan = match load_plan(&args.pipeline, true) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let where_ = match &plan.backend {
        crate::plan::BackendPlan::Local { data_dir, .. } => {
            format!("local backend, state in {}", data_dir.display())
        }
        crate::plan::BackendPlan::Aws(aws) => format!(
            "aws backend, stream {}, region {}",
            plan.stream_name,
            aws.region.as_deref().unwrap_or("from the AWS config")
        ),
    };
    eprintln!(
        "pipehost: running {:?} ({} feeds, {} shards; {where_}); Ctrl-C stops after draining in-flight batches",
        plan.name,
        plan.feeds.len(),
        plan.shards
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
        args.pipeline.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let plan = match load_plan(&args.pipeline, true) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    eprintln!(
        "pipehost: serving {:?} ({} feeds; producer only: nothing is bridged or processed here)",
        plan.name,
        plan.feeds.len()
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

fn lambda(args: LambdaArgs) -> anyhow::Result<ExitCode> {
    crate::runtime::lambda::check_environment()?;
    let path = args.pipeline();
    let plan = match load_plan(&path, true) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    runtime()?.block_on(crate::runtime::lambda::run(Arc::new(plan)))?;
    Ok(ExitCode::SUCCESS)
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let plan = match load_plan(&args.pipeline, true) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}: ok", args.pipeline.display())?;
    for f in &plan.feeds {
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
        plan.stream_name,
        plan.shards,
        plan.queue_name,
        plan.dead_letter_queue,
        plan.visibility_timeout,
        plan.max_receives,
        plan.workers
    )?;
    writeln!(
        out,
        "  objects in {} (rollover {} records / {} bytes / {:?}), errors under {}; notifications on {}",
        plan.bucket,
        plan.rollover.records,
        plan.rollover.bytes,
        plan.rollover.age,
        plan.error_prefix,
        plan.topic
    )?;
    if let Some(w) = &plan.web {
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

async fn open_backend(config: &std::path::Path) -> Result<crate::backend::Backend, ExitCode> {
    let plan = load_plan(config, false)?;
    crate::backend::open(&plan).await.map_err(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}

async fn setup(args: CheckArgs) -> anyhow::Result<ExitCode> {
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

async fn ls(args: LsArgs) -> anyhow::Result<ExitCode> {
    let backend = match open_backend(&args.config).await {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    let objects = backend.store.list(&args.prefix).await?;
    let total: u64 = objects.iter().map(|o| o.size).sum();
    let mut out = std::io::stdout().lock();
    for o in &objects {
        writeln!(
            out,
            "{}  {:>10}  {}",
            crate::event::format_ms(o.modified_ms),
            o.size,
            o.key
        )?;
    }
    writeln!(out, "{} objects, {total} bytes", objects.len())?;
    Ok(ExitCode::SUCCESS)
}

async fn cat(args: CatArgs) -> anyhow::Result<ExitCode> {
    let backend = match open_backend(&args.config).await {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    let Some(obj) = backend.store.get(&args.key).await? else {
        eprintln!(
            "error: no object {:?} in bucket {}",
            args.key,
            backend.store.bucket()
        );
        return Ok(ExitCode::FAILURE);
    };
    let body = if obj.content_encoding.as_deref() == Some("gzip") {
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&obj.body[..]), &mut plain)?;
        plain
    } else {
        obj.body
    };
    let mut out = std::io::stdout().lock();
    out.write_all(&body)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn dlq(args: DlqArgs) -> anyhow::Result<ExitCode> {
    let backend = match open_backend(&args.config).await {
        Ok(b) => b,
        Err(code) => return Ok(code),
    };
    match args.action.unwrap_or(DlqAction::List { limit: 20 }) {
        DlqAction::List { limit } => {
            let depth = backend.dead_letter.depth().await?;
            let messages = backend.dead_letter.peek(limit).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{}: {} messages",
                backend.dead_letter.name(),
                depth.total()
            )?;
            for m in messages {
                let preview: String = m.body.chars().take(120).collect();
                writeln!(out, "  {}  {preview}", m.id)?;
            }
        }
        DlqAction::Redrive => {
            let n = backend.dead_letter.redrive(backend.queue.name()).await?;
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "moved {n} messages from {} back to {}",
                backend.dead_letter.name(),
                backend.queue.name()
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let files = fixture::discover(&args.paths)?;
    if files.is_empty() {
        let shown: Vec<String> = args.paths.iter().map(|p| p.display().to_string()).collect();
        anyhow::bail!("no fixture files found under {}", shown.join(", "));
    }
    let engine = PluginEngine::new(EngineSettings::default())?;
    let opts = fixture::RunOptions {
        plugin_dir: args.plugin_dir,
        filter: args.filter,
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

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
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
