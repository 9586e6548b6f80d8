//! The `pipehost` command line: [`main`] parses it (`args`) and hands each
//! subcommand to its file — `run` (run, serve, lambda), `check` (check,
//! setup), `store` (ls, cat, dlq), `plugins` (test, inspect).

mod args;
mod check;
mod plugins;
mod run;
mod store;

use std::process::ExitCode;

use clap::Parser;

use crate::plan::Plan;
pub use args::{
    CatArgs, CheckArgs, Cli, Command, DlqAction, DlqArgs, InspectArgs, LambdaArgs, LsArgs, RunArgs,
    ServeArgs, Stage, TestArgs,
};

fn init_tracing(verbose: u8) {
    // pipehost's own INFO lines (a reload applied, a rebuild, a feed
    // started) by default; other crates only from WARN.
    let default = match verbose {
        0 => "warn,pipehost=info",
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
        Command::Test(args) => plugins::test(args),
        Command::Inspect(args) => plugins::inspect(args),
        Command::Run(args) => run::run_pipeline(args),
        Command::Serve(args) => run::serve(args),
        Command::Lambda(args) => run::lambda(args),
        Command::Check(args) => check::check(args),
        Command::Setup(args) => block_on(check::setup(args)),
        Command::Ls(args) => block_on(store::ls(args)),
        Command::Cat(args) => block_on(store::cat(args)),
        Command::Dlq(args) => block_on(store::dlq(args)),
    }
}

pub(super) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
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
pub(super) fn load_plan(path: &std::path::Path, files: bool) -> Result<Plan, ExitCode> {
    let result = crate::config::read(path)
        .and_then(|source| crate::plan::from_source(&source))
        .and_then(|p| {
            if files {
                // The one look at the disk a plan needs: its plugin files.
                crate::plan::check_files(&p, std::path::Path::is_file)?;
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
