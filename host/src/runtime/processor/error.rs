//! Why a batch failed, typed: the worker (and `pipehost lambda`) decide
//! and count from the variant — a plugin failure counts toward the
//! dead-letter queue and the plugin-failure stats with its kind; a backend
//! error reaches here only once retrying it has ended (see `deliver`).

use super::super::process::ProcessError;
use super::deliver::StepError;

/// Why a batch could not be processed and delivered; the message comes
/// back after its visibility timeout.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("undecodable message: {0}")]
    Undecodable(String),
    #[error("cannot instantiate the plugins: {0:#}")]
    Instantiate(anyhow::Error),
    #[error("processing panicked (the worker goes on with fresh plugin instances): {0}")]
    Panicked(String),
    /// One feed's plugin failed; the other feeds' objects may be stored.
    #[error("{}", join(.0))]
    Plugins(Vec<ProcessError>),
    #[error(transparent)]
    Backend(#[from] StepError),
}

fn join(errors: &[ProcessError]) -> String {
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    texts.join("; ")
}

impl BatchError {
    /// How many plugin failures this is (the `plugin_failures` stat).
    pub fn plugin_failures(&self) -> u64 {
        match self {
            Self::Panicked(_) => 1,
            Self::Plugins(errors) => errors.len() as u64,
            _ => 0,
        }
    }

    /// A short stable name of what failed, for logs: the plugin error's
    /// kind (`plugin:trap`, `plugin:timeout`, …) or the stage.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Undecodable(_) => "undecodable",
            Self::Instantiate(_) => "instantiate",
            Self::Panicked(_) => "panic",
            Self::Plugins(errors) => errors.first().map_or("plugin", ProcessError::kind),
            Self::Backend(e) if e.source.is_retryable() => "backend:retryable",
            Self::Backend(_) => "backend:permanent",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendError;
    use crate::plugin::PluginError;

    fn trap(feed: &str) -> ProcessError {
        ProcessError::Plugin {
            feed: feed.into(),
            source: PluginError::Trap {
                plugin: "p.wasm".into(),
                trap: "unreachable".into(),
                stderr: String::new(),
            },
        }
    }

    #[test]
    fn plugin_failures_keep_their_kind_and_count() {
        let e = BatchError::Plugins(vec![trap("forex"), trap("news")]);
        assert_eq!((e.kind(), e.plugin_failures()), ("trap", 2));
        assert_eq!(
            e.to_string(),
            "feed forex: p.wasm: trapped: unreachable; feed news: p.wasm: trapped: unreachable"
        );
        let backend = BatchError::from(StepError {
            step: "storing k".into(),
            why: super::super::GaveUp::NotRetried,
            source: BackendError::permanent("s3", "AccessDenied"),
        });
        assert_eq!(
            (backend.kind(), backend.plugin_failures()),
            ("backend:permanent", 0)
        );
        let source = std::error::Error::source(&backend).expect("the backend error");
        assert!(source.downcast_ref::<BackendError>().is_some());
    }
}
