//! The clap definitions: the command line's subcommands and their flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

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
    /// shared among the feeds with a generator in proportion to their
    /// rates), then stop once all of them are processed.
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
    pub(super) fn pipeline(&self) -> PathBuf {
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

    /// Rewrite each failing case's `expect` from what the plugin answered
    /// (the rest of the file is left as written); the change is printed as
    /// a diff to review.
    #[arg(long, alias = "bless")]
    pub accept: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Component files to inspect.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}
