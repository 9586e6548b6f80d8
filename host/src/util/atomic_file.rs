//! Replacing a file whole: a fresh temporary file beside it (`0600`,
//! created new, never through a symbolic link), renamed into place, so a
//! reader sees the old bytes or the new, never a mix; a failed write
//! leaves no temporary file behind.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// How much of a write must survive a power loss once it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Left to the OS (a crash may lose the file, never tear it).
    Os,
    /// The file synced before the rename, its directory after it: the
    /// rename itself survives a power loss (`sync = "full"`).
    Full,
}

/// Writes `bytes` to `path` atomically. The directory must exist.
pub fn write(path: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    // Short (a file name near the 255-byte limit still fits beside it)
    // and unique across processes sharing the directory.
    let tmp = dir.join(format!(
        ".tmp-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let full = durability == Durability::Full;
    let written = create_new(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            if full {
                f.sync_all()?;
            }
            Ok(())
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if full {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// A new `0600` file only: fails if anything (a file, a symbolic link) is
/// there.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_the_file_whole_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        for (body, d) in [(&b"one"[..], Durability::Full), (b"two", Durability::Os)] {
            write(&path, body, d).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), body);
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should go: the rename fails.
        let path = dir.path().join("d");
        std::fs::create_dir(path.join("x").parent().unwrap()).unwrap();
        std::fs::create_dir(path.join("x")).unwrap();
        assert!(write(&path, b"body", Durability::Full).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["d"], "only what was there");
    }
}
