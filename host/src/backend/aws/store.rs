//! The object store on S3: PutObject with content type, encoding and
//! metadata; keys are deterministic, so a retried put overwrites.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;

use super::{Clients, code_of, sdk_err};
use crate::backend::{BackendError, Class, Object, ObjectInfo, ObjectStore, PutObject, Result};

pub struct AwsObjectStore {
    clients: Arc<Clients>,
}

impl AwsObjectStore {
    pub fn new(clients: Arc<Clients>) -> Self {
        Self { clients }
    }
}

/// The same key rules as the local store: relative, no `.`/`..` segments.
fn check_key(key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.starts_with('/')
        || key.len() > 1024
        || key.split('/').any(|s| s == ".." || s == ".");
    if bad {
        return Err(BackendError::permanent(
            "s3",
            format!(
                "{key:?} is not a valid object key (relative, no '.' or '..' segments, at most 1024 bytes)"
            ),
        ));
    }
    Ok(())
}

fn etag(s: Option<&str>) -> String {
    s.unwrap_or("").trim_matches('"').to_string()
}

#[async_trait]
impl ObjectStore for AwsObjectStore {
    fn bucket(&self) -> &str {
        &self.clients.bucket
    }

    async fn put(&self, object: PutObject) -> Result<ObjectInfo> {
        check_key(&object.key)?;
        let size = object.body.len() as u64;
        let out = self
            .clients
            .s3
            .put_object()
            .bucket(&self.clients.bucket)
            .key(&object.key)
            .content_type(&object.content_type)
            .set_content_encoding(object.content_encoding.clone())
            .set_metadata(Some(object.metadata.clone().into_iter().collect()))
            .body(ByteStream::from(object.body))
            .send()
            .await
            .map_err(|e| {
                sdk_err(
                    "s3",
                    &format!("PutObject s3://{}/{}", self.clients.bucket, object.key),
                    e,
                )
            })?;
        Ok(ObjectInfo {
            key: object.key,
            size,
            etag: etag(out.e_tag()),
            modified_ms: chrono::Utc::now().timestamp_millis(),
        })
    }

    async fn get(&self, key: &str) -> Result<Option<Object>> {
        check_key(key)?;
        let out = match self
            .clients
            .s3
            .get_object()
            .bucket(&self.clients.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if code_of(&e) == Some("NoSuchKey") => return Ok(None),
            Err(e) => {
                return Err(sdk_err(
                    "s3",
                    &format!("GetObject s3://{}/{key}", self.clients.bucket),
                    e,
                ));
            }
        };
        let info = ObjectInfo {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: etag(out.e_tag()),
            modified_ms: out
                .last_modified()
                .and_then(|t| t.to_millis().ok())
                .unwrap_or(0),
        };
        let content_type = out
            .content_type()
            .unwrap_or("application/octet-stream")
            .to_string();
        let content_encoding = out.content_encoding().map(str::to_string);
        let metadata = out
            .metadata()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let body = out
            .body
            .collect()
            .await
            .map_err(|e| {
                let message = format!("reading s3://{}/{key}: {e}", self.clients.bucket);
                BackendError::new("s3", message, Class::Retryable, Some(Box::new(e)))
            })?
            .into_bytes()
            .to_vec();
        Ok(Some(Object {
            info,
            body,
            content_type,
            content_encoding,
            metadata,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .clients
                .s3
                .list_objects_v2()
                .bucket(&self.clients.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| {
                    sdk_err(
                        "s3",
                        &format!("ListObjectsV2 s3://{}/{prefix}", self.clients.bucket),
                        e,
                    )
                })?;
            for o in page.contents() {
                let key = o.key().unwrap_or("").to_string();
                // pipehost's own state is not the pipeline's output.
                if key.starts_with(&self.clients.state.key("")) {
                    continue;
                }
                out.push(ObjectInfo {
                    key,
                    size: o.size().unwrap_or(0).max(0) as u64,
                    etag: etag(o.e_tag()),
                    modified_ms: o
                        .last_modified()
                        .and_then(|t| t.to_millis().ok())
                        .unwrap_or(0),
                });
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_climb_out_or_be_absolute() {
        assert!(check_key("dataset=forex/a.jsonl").is_ok());
        for bad in ["", "/abs", "../x", "a/../b", "a/./b"] {
            assert!(check_key(bad).is_err(), "{bad:?}");
        }
    }
}
