//! Small helpers every module may use — the standard library's missing
//! pieces, nothing of pipehost in them. `util/` imports nothing from the
//! rest of the crate, so even `plugin/` (which imports nothing else) may
//! use it.

pub mod atomic_file;
pub mod backoff;
pub mod hex;
