//! `pipehost ls`, `cat` and `dlq`: what the pipeline stored, and its
//! dead-letter queue.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::args::{CatArgs, DlqAction, DlqArgs, LsArgs};
use super::load_plan;

async fn open_backend(config: &std::path::Path) -> Result<crate::backend::Backend, ExitCode> {
    let plan = load_plan(config, false)?;
    crate::backend::open(&plan).await.map_err(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}

pub(super) async fn ls(args: LsArgs) -> anyhow::Result<ExitCode> {
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
    if objects.is_empty() && !args.prefix.is_empty() && Path::new(&args.prefix).is_file() {
        eprintln!(
            "warning: {:?} is a file here, and no key starts with it: `ls` takes a key \
             prefix (e.g. `dataset=forex/`, `errors/`); the pipeline file is `-c {}`",
            args.prefix, args.prefix
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) async fn cat(args: CatArgs) -> anyhow::Result<ExitCode> {
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

pub(super) async fn dlq(args: DlqArgs) -> anyhow::Result<ExitCode> {
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
