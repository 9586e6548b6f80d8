//! `[pipeline] backend`, `[local]` and (through `aws.rs`) `[aws]`
//! validated into a [`BackendPlan`].

use std::path::{Path, PathBuf};

use super::{Checker, aws};
use crate::config::PipelineFile;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncMode {
    /// Survives a process crash (SQLite WAL, synchronous=NORMAL).
    Normal,
    /// Also survives power loss (synchronous=FULL, fsync on every object).
    Full,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendPlan {
    Local { data_dir: PathBuf, sync: SyncMode },
    Aws(Box<aws::AwsPlan>),
}

fn sync(c: &mut Checker, file: &PipelineFile) -> SyncMode {
    let Some(v) = &file.local.sync else {
        return SyncMode::Normal;
    };
    match v.get_ref().as_str() {
        "normal" => SyncMode::Normal,
        "full" => SyncMode::Full,
        other => {
            let line = c.line(v);
            c.err(
                line,
                "local.sync",
                format!("{other:?}: expected \"normal\" or \"full\""),
            );
            SyncMode::Normal
        }
    }
}

/// The backend; `base` is the file's folder (for `local.data_dir`).
pub(super) fn build(c: &mut Checker, base: &Path, file: &PipelineFile) -> BackendPlan {
    let sync = sync(c, file);
    match file.pipeline.backend.get_ref().as_str() {
        "local" => BackendPlan::Local {
            data_dir: base.join(file.local.data_dir.as_deref().unwrap_or(".pipehost")),
            sync,
        },
        "aws" => BackendPlan::Aws(Box::new(aws::plan(c, &file.aws))),
        other => {
            let line = c.line(&file.pipeline.backend);
            c.err(
                line,
                "pipeline.backend",
                format!("{other:?}: expected \"local\" or \"aws\""),
            );
            BackendPlan::Local {
                data_dir: base.join(".pipehost"),
                sync,
            }
        }
    }
}
