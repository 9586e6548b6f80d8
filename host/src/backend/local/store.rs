//! The local object store (S3 role): bodies under
//! `<data_dir>/objects/<bucket>/<key>`, written to a temporary file and
//! renamed into place (atomic per key); metadata in SQLite.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::db::{Db, now_ms};
use crate::backend::{BackendError, Object, ObjectInfo, ObjectStore, PutObject, Result};
use crate::util::atomic_file::{self, Durability};
use crate::util::hex;

pub struct LocalObjectStore {
    db: Arc<Db>,
    root: PathBuf,
    bucket: String,
    fsync: bool,
}

/// S3-like keys only: no empty, `.` or `..` segments, no leading `/`.
fn check_key(key: &str) -> Result<()> {
    let bad = key.is_empty()
        || key.len() > 1024
        || key.starts_with('/')
        || key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        || key.contains('\0');
    if bad {
        return Err(BackendError::permanent(
            "store",
            format!("invalid object key {key:?}"),
        ));
    }
    Ok(())
}

impl LocalObjectStore {
    pub fn new(db: Arc<Db>, root: &Path, bucket: &str, fsync: bool) -> Self {
        Self {
            db,
            root: root.join(bucket),
            bucket: bucket.to_string(),
            fsync,
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

/// Writes `body` in place of `path` ([`atomic_file`]), creating its
/// directories 0700 (object bodies are nobody else's business). With
/// `fsync`, the file and its directory are synced, so the rename itself
/// survives a power loss.
fn write_object(path: &Path, body: &[u8], fsync: bool) -> std::io::Result<()> {
    super::private_dirs(path.parent().expect("object paths have a parent"))?;
    let durability = if fsync {
        Durability::Full
    } else {
        Durability::Os
    };
    atomic_file::write(path, body, durability)
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put(&self, object: PutObject) -> Result<ObjectInfo> {
        check_key(&object.key)?;
        let path = self.path(&object.key);
        let fsync = self.fsync;
        let etag = hex::encode(&Sha256::digest(&object.body)[..16]);
        let size = object.body.len() as u64;
        let body = object.body;
        tokio::task::spawn_blocking(move || write_object(&path, &body, fsync))
            .await
            .map_err(|e| BackendError::join("store", e))?
            .map_err(|e| BackendError::io("store", format_args!("writing {}", object.key), e))?;
        let info = ObjectInfo {
            key: object.key.clone(),
            size,
            etag: etag.clone(),
            modified_ms: now_ms(),
        };
        let bucket = self.bucket.clone();
        let metadata = serde_json::to_string(&object.metadata).unwrap_or_else(|_| "{}".into());
        let modified = info.modified_ms;
        self.db
            .call(move |c| {
                c.execute(
                    "INSERT INTO objects (bucket, key, size, etag, content_type, content_encoding, metadata, modified_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (bucket, key) DO UPDATE SET size = ?3, etag = ?4, content_type = ?5,
                     content_encoding = ?6, metadata = ?7, modified_ms = ?8",
                    params![
                        bucket,
                        object.key,
                        size as i64,
                        etag,
                        object.content_type,
                        object.content_encoding,
                        metadata,
                        modified
                    ],
                )
                .map(|_| ())
            })
            .await?;
        Ok(info)
    }

    async fn get(&self, key: &str) -> Result<Option<Object>> {
        check_key(key)?;
        let (bucket, k) = (self.bucket.clone(), key.to_string());
        let row = self
            .db
            .call(move |c| {
                c.query_row(
                    "SELECT size, etag, content_type, content_encoding, metadata, modified_ms
                     FROM objects WHERE bucket = ?1 AND key = ?2",
                    params![bucket, k],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, i64>(5)?,
                        ))
                    },
                )
                .optional()
            })
            .await?;
        let Some((size, etag, content_type, content_encoding, metadata, modified_ms)) = row else {
            return Ok(None);
        };
        let path = self.path(key);
        let body = tokio::task::spawn_blocking(move || std::fs::read(path))
            .await
            .map_err(|e| BackendError::join("store", e))?
            .map_err(|e| BackendError::io("store", format_args!("reading {key}"), e))?;
        let metadata: BTreeMap<String, String> =
            serde_json::from_str(&metadata).unwrap_or_default();
        Ok(Some(Object {
            info: ObjectInfo {
                key: key.to_string(),
                size: size as u64,
                etag,
                modified_ms,
            },
            body,
            content_type,
            content_encoding,
            metadata,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let (bucket, prefix) = (self.bucket.clone(), prefix.to_string());
        self.db
            .call(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT key, size, etag, modified_ms FROM objects
                     WHERE bucket = ?1 AND substr(key, 1, length(?2)) = ?2 ORDER BY key",
                )?;
                let rows = st.query_map(params![bucket, prefix], |r| {
                    Ok(ObjectInfo {
                        key: r.get(0)?,
                        size: r.get::<_, i64>(1)? as u64,
                        etag: r.get(2)?,
                        modified_ms: r.get(3)?,
                    })
                })?;
                rows.collect()
            })
            .await
    }
}
