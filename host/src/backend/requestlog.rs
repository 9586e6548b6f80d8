//! The request log's row and the writer trait its stores implement, below
//! both the web server (which fills it) and the backends (which may store
//! it): SQLite in [`super::local::requestlog`] — only `local/` knows
//! SQLite — and PostgreSQL in `web::requestlog` (a database the operator
//! names, not a backend of the pipeline).

use async_trait::async_trait;

use super::BackendError;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub at_ms: i64,
    pub client: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub latency_us: u64,
    pub records: u64,
}

/// A place the request log's writer inserts batches into.
#[async_trait]
pub trait Sink: Send {
    async fn write(&mut self, batch: &[Entry]) -> Result<(), BackendError>;
}
