//! `[store]` validated into a [`StorePlan`]: the bucket and the layout of
//! the objects in it.

use super::{Checker, KeyTemplate};
use crate::config::StoreConfig;

/// The object store: where objects go and how they are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePlan {
    pub bucket: String,
    pub key_template: KeyTemplate,
    /// Where rejected records go; ends with '/'.
    pub error_prefix: String,
    pub gzip: bool,
}

/// The store; the bucket's name defaults to the pipeline's.
pub(super) fn build(c: &mut Checker, pipeline: &str, s: &StoreConfig) -> StorePlan {
    c.given_name(&s.bucket, "store.bucket");
    let key_template = match &s.key_template {
        None => KeyTemplate::default(),
        Some(t) => KeyTemplate::parse(t.get_ref()).unwrap_or_else(|e| {
            let line = c.line(t);
            c.err(line, "store.key_template", e);
            KeyTemplate::default()
        }),
    };
    let error_prefix = c.prefix(&s.error_prefix, "store.error_prefix", "errors/");
    if key_template.literal_prefix().starts_with(&error_prefix) {
        let line = s.key_template.as_ref().and_then(|t| c.line(t));
        c.err(
            line,
            "store.key_template",
            format!("objects would land under the error prefix {error_prefix:?}"),
        );
    }
    StorePlan {
        bucket: s.bucket.clone().unwrap_or_else(|| pipeline.to_string()),
        key_template,
        error_prefix,
        gzip: s.gzip.unwrap_or(true),
    }
}
