//! The local object store (S3 role): bodies under
//! `<data_dir>/objects/<bucket>/<key>`, written to a temporary file and
//! renamed into place (atomic per key); metadata in SQLite.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::db::{Db, now_ms};
use crate::backend::{BackendError, Object, ObjectInfo, ObjectStore, PutObject, Result};

pub struct LocalObjectStore {
    db: Arc<Db>,
    root: PathBuf,
    bucket: String,
    fsync: bool,
}

static TMP: AtomicU64 = AtomicU64::new(0);

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
        return Err(BackendError::invalid(
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

/// Writes `body` to a temporary file beside `path` and renames it into
/// place. Directories are created 0700 and files 0600 (object bodies are
/// nobody else's business). With `fsync`, the file is synced before the
/// rename and its directory after it, so the rename itself survives a power
/// loss. A failed write (a full disk) leaves no temporary file behind.
fn write_atomically(path: &Path, body: &[u8], fsync: bool) -> std::io::Result<()> {
    let dir = path.parent().expect("object paths have a parent");
    super::private_dirs(dir)?;
    let tmp = dir.join(format!(
        ".tmp-{}-{}",
        std::process::id(),
        TMP.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut f = super::private_file(&tmp)?;
        f.write_all(body)?;
        if fsync {
            f.sync_all()?;
        }
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if fsync {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
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
        let etag: String = Sha256::digest(&object.body)
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect();
        let size = object.body.len() as u64;
        let body = object.body;
        tokio::task::spawn_blocking(move || write_atomically(&path, &body, fsync))
            .await
            .map_err(|e| BackendError::failed("store", e))?
            .map_err(|e| BackendError::failed("store", format!("writing {}: {e}", object.key)))?;
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
            .map_err(|e| BackendError::failed("store", e))?
            .map_err(|e| BackendError::failed("store", format!("reading {key}: {e}")))?;
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
