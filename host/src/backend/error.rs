//! Why a backend call failed, and whether trying again can help — decided
//! where the error is made (the provider knows: an SDK error's kind, a
//! SQLite result code, an I/O error's kind), read by whoever retries
//! ([`BackendError::is_retryable`]), never guessed from a message.

use std::error::Error as StdError;

/// The underlying error a [`BackendError`] keeps as its source.
pub type Source = Box<dyn StdError + Send + Sync + 'static>;

/// Whether trying the same call again can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// An outage that may clear on its own: throttling, a server error, a
    /// timeout, no answer, a busy database, a full disk, an I/O error.
    Retryable,
    /// The request itself is wrong or the state is broken (a validation or
    /// permission error, a corrupt database, a constraint violated):
    /// trying again cannot help.
    Permanent,
}

/// Why a backend call failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The call failed; `class` says whether a retry can help.
    #[error("{service}: {message}")]
    Failed {
        service: &'static str,
        /// What was being done, and what went wrong.
        message: String,
        class: Class,
        #[source]
        source: Option<Source>,
    },
    /// A resource is missing (a queue, a stream, a bucket: `pipehost
    /// setup` creates them). Not retryable.
    #[error("{service}: {what} not found")]
    NotFound { service: &'static str, what: String },
}

impl BackendError {
    /// An outage that may clear on its own, described by `message`.
    pub fn retryable(service: &'static str, message: impl std::fmt::Display) -> Self {
        Self::new(service, message, Class::Retryable, None)
    }

    /// A request that can never succeed, described by `message`.
    pub fn permanent(service: &'static str, message: impl std::fmt::Display) -> Self {
        Self::new(service, message, Class::Permanent, None)
    }

    /// A failure of `class`, keeping `source`.
    pub fn new(
        service: &'static str,
        message: impl std::fmt::Display,
        class: Class,
        source: Option<Source>,
    ) -> Self {
        Self::Failed {
            service,
            message: message.to_string(),
            class,
            source,
        }
    }

    /// A failed file operation: `context` says which. Every I/O error may
    /// clear (a full disk freed, a permission or a path fixed by the
    /// operator) except a request the OS calls invalid.
    pub fn io(service: &'static str, context: impl std::fmt::Display, e: std::io::Error) -> Self {
        use std::io::ErrorKind::{InvalidFilename, InvalidInput};
        let class = match e.kind() {
            InvalidInput | InvalidFilename => Class::Permanent,
            _ => Class::Retryable,
        };
        Self::new(service, format!("{context}: {e}"), class, Some(Box::new(e)))
    }

    /// A task running the call on the blocking pool ended without an
    /// answer: a panic (a bug: permanent) or the runtime shutting down.
    pub fn join(service: &'static str, e: tokio::task::JoinError) -> Self {
        let class = if e.is_panic() {
            Class::Permanent
        } else {
            Class::Retryable
        };
        Self::new(service, e.to_string(), class, Some(Box::new(e)))
    }

    /// Whether trying the call again can help.
    pub fn class(&self) -> Class {
        match self {
            Self::Failed { class, .. } => *class,
            Self::NotFound { .. } => Class::Permanent,
        }
    }

    /// True for an outage that may clear on its own.
    pub fn is_retryable(&self) -> bool {
        self.class() == Class::Retryable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_is_the_one_given_and_the_source_is_kept() {
        let e = BackendError::io(
            "store",
            "writing k",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(e.is_retryable(), "a full disk may be freed");
        let source = e.source().expect("kept");
        assert!(source.downcast_ref::<std::io::Error>().is_some());
        assert!(e.to_string().starts_with("store: writing k: "), "{e}");
        let e = BackendError::io("store", "k", std::io::ErrorKind::InvalidInput.into());
        assert_eq!(e.class(), Class::Permanent);
        assert!(!BackendError::permanent("s3", "bad").is_retryable());
        let missing = BackendError::NotFound {
            service: "sqs",
            what: "queue q".into(),
        };
        assert_eq!(missing.class(), Class::Permanent);
    }
}
