//! The compiled-code cache on disk. Its entries are native machine code
//! that wasmtime maps and runs, so the directory is treated like a key file:
//!
//! - it is created `0700`; one that exists must be a directory owned by the
//!   user pipehost runs as and not writable by group or others — otherwise
//!   the cache is turned off (a warning names the directory and why) and
//!   plugins are compiled from source: a cache is never worth trusting code
//!   someone else could have written;
//! - entries are read with `O_NOFOLLOW`, and written to a fresh temporary
//!   file created `O_EXCL | O_NOFOLLOW`, mode `0600`, then renamed into
//!   place, so nobody can redirect a write or see half an entry;
//! - the directory is bounded ([`EngineSettings::cache_max_bytes`](super::EngineSettings)):
//!   after each write the least recently written entries past the bound are
//!   removed (`run --dev` compiles a new entry on every rebuild).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::util::atomic_file::{self, Durability};

/// What a cache entry's name ends with.
pub(crate) const SUFFIX: &str = ".cwasm";

/// Creates the cache directory (`0700`) if missing, and checks that it is
/// safe to run code from: a real directory, ours, not writable by others.
#[allow(unsafe_code, reason = "libc::geteuid (std has no safe wrapper)")]
pub(crate) fn open_dir(dir: &Path) -> Result<PathBuf, String> {
    let shown = dir.display();
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the compiled-code cache directory {shown}: {e}"))?;
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("cannot inspect the compiled-code cache directory {shown}: {e}"))?;
    if !meta.is_dir() {
        return Err(format!(
            "the compiled-code cache directory {shown} is not a directory (a symbolic link?)"
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "the compiled-code cache directory {shown} is owned by uid {}, not by this user \
             (uid {me})",
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "the compiled-code cache directory {shown} is writable by group or others \
             (mode {:o}); make it 0700",
            meta.mode() & 0o7777
        ));
    }
    Ok(dir.to_owned())
}

/// Reads an entry without following a symbolic link; `None` if absent or
/// unreadable.
pub(crate) fn read(path: &Path) -> Option<Vec<u8>> {
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .ok()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).ok()?;
    Some(bytes)
}

/// Writes an entry (fresh temporary file, then rename: see
/// [`atomic_file`]) and evicts the oldest entries past `max_bytes`.
pub(crate) fn store(path: &Path, bytes: &[u8], max_bytes: u64) -> std::io::Result<()> {
    let dir = path.parent().expect("cache entries live in a directory");
    atomic_file::write(path, bytes, Durability::Full)?;
    evict(dir, max_bytes, path);
    Ok(())
}

/// Removes the least recently written entries until the entries total at
/// most `max_bytes`; `keep` (the entry just written) is never removed.
pub(crate) fn evict(dir: &Path, max_bytes: u64, keep: &Path) {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = listing
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(SUFFIX))
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            if !meta.is_file() {
                return None;
            }
            Some((meta.modified().ok()?, meta.len(), e.path()))
        })
        .collect();
    let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
    entries.sort();
    for (_, len, path) in entries {
        if total <= max_bytes {
            break;
        }
        if path == keep {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => {
                total -= len;
                tracing::debug!(path = %path.display(), "compiled-code cache entry evicted");
            }
            Err(e) => tracing::debug!(path = %path.display(), "cannot evict cache entry: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_directory_is_created_0700_and_refused_when_others_can_write() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/cache");
        open_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        for bad in [0o770, 0o707, 0o777] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bad)).unwrap();
            let err = open_dir(&dir).unwrap_err();
            assert!(err.contains(&dir.display().to_string()), "{err}");
            assert!(err.contains("writable by group or others"), "{err}");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        open_dir(&dir).expect("0755 is fine: others can read, not write");
    }

    #[test]
    fn a_symbolic_link_is_neither_a_directory_nor_an_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let err = open_dir(&link).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");

        let target = tmp.path().join("target.cwasm");
        std::fs::write(&target, b"precious").unwrap();
        let entry = real.join("x.cwasm");
        std::os::unix::fs::symlink(&target, &entry).unwrap();
        assert_eq!(read(&entry), None, "a linked entry is not read");
        assert!(
            atomic_file::create_new(&entry).is_err(),
            "nor written through"
        );
        store(&entry, b"compiled", u64::MAX).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        assert_eq!(read(&entry).unwrap(), b"compiled");
        let mode = std::fs::metadata(&entry).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn the_oldest_entries_past_the_bound_are_evicted() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let old = SystemTime::now() - Duration::from_secs(3600);
        for i in 0..5u64 {
            let path = dir.join(format!("{i}{SUFFIX}"));
            std::fs::write(&path, [0u8; 100]).unwrap();
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(old + Duration::from_secs(i)).unwrap();
        }
        std::fs::write(dir.join("other-file"), [0u8; 1000]).unwrap();
        store(&dir.join(format!("new{SUFFIX}")), &[1u8; 100], 300).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["3.cwasm", "4.cwasm", "new.cwasm", "other-file"]);
    }
}
