//! The guest's global allocator: free lists per size class in front of the
//! standard allocator.
//!
//! A batch makes and frees the same small objects over and over — per event
//! a partition key, a field vector, a text value or two, then the columns —
//! and a profile of the wasm side put the standard allocator (`dlmalloc`,
//! with its bins, splitting and coalescing) at 14% of a parser + transform
//! chain. Blocks of up to [`MAX_SMALL`] bytes are served instead from one
//! free list per 16-byte size class: allocating pops a list (or carves a
//! fresh block from a 64 KiB chunk), freeing pushes onto it — a few
//! instructions each, no search, no coalescing. Larger blocks, and blocks
//! aligned to more than 16 bytes, go to the standard allocator unchanged.
//!
//! Freed small blocks stay in their class for reuse and are never returned;
//! a plugin's working set repeats from batch to batch, so this costs little,
//! and linear memory never shrinks anyway (the host recycles instances past
//! a memory high-water mark).
//!
//! Installed as the global allocator of every plugin built with the SDK,
//! on wasm only (`wasm32-wasip2` components are single-threaded); natively
//! the unit tests exercise an instance of it directly.

#![allow(unsafe_code, reason = "an allocator hands out raw memory")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ptr;

/// Size-class granularity, and the alignment every small block has.
const CLASS: usize = 16;
/// Number of size classes: 16, 32, …, 512 bytes.
const CLASSES: usize = 32;
/// The largest block served from a size class.
pub const MAX_SMALL: usize = CLASS * CLASSES;
/// What is taken from the standard allocator at a time for small blocks.
const CHUNK: usize = 64 * 1024;

struct State {
    /// Per class, the first free block; a free block's first word points to
    /// the next.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    bump: *mut u8,
    end: *mut u8,
}

/// Free lists per size class in front of [`System`]. Not thread-safe: for
/// single-threaded wasm guests (and single-threaded tests).
pub struct SizeClasses {
    state: UnsafeCell<State>,
}

// SAFETY: there is no locking, so this is only `Sync` where a component
// has one thread (wasm32 without the atomics feature, as wasm32-wasip2
// builds today); natively it is not, so it cannot be installed as a
// multi-threaded program's global allocator by mistake, and the tests use
// an instance from one thread. Should plugins ever gain threads, this
// stops compiling as the global allocator instead of racing.
#[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    pub const fn new() -> Self {
        SizeClasses {
            state: UnsafeCell::new(State {
                free: [ptr::null_mut(); CLASSES],
                bump: ptr::null_mut(),
                end: ptr::null_mut(),
            }),
        }
    }
}

impl Default for SizeClasses {
    fn default() -> Self {
        Self::new()
    }
}

/// The size class of a layout, if it is small.
#[inline]
fn class(size: usize, align: usize) -> Option<usize> {
    (size <= MAX_SMALL && align <= CLASS).then(|| size.max(1).div_ceil(CLASS) - 1)
}

// SAFETY: every block handed out is fresh from `System` or was freed back
// to its size class, so blocks never overlap; a class block is 16-aligned
// and holds its class size, and layouts that no class fits go to `System`.
unsafe impl GlobalAlloc for SizeClasses {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(c) = class(layout.size(), layout.align()) else {
            // SAFETY: the caller's layout, passed on unchanged.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: one thread, and no call below re-enters this allocator.
        let s = unsafe { &mut *self.state.get() };
        let head = s.free[c];
        if !head.is_null() {
            // SAFETY: a free block's first word is the next free block.
            s.free[c] = unsafe { *head.cast::<*mut u8>() };
            return head;
        }
        let size = (c + 1) * CLASS;
        if (s.end as usize) - (s.bump as usize) < size {
            // SAFETY: CHUNK is non-zero and CLASS a power of two.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, CLASS)) };
            if chunk.is_null() {
                return chunk;
            }
            s.bump = chunk;
            // SAFETY: one past the end of the chunk just allocated.
            s.end = unsafe { chunk.add(CHUNK) };
        }
        let block = s.bump;
        // SAFETY: `size` bytes fit between `bump` and `end` (checked above).
        s.bump = unsafe { block.add(size) };
        block
    }

    #[inline]
    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        match class(layout.size(), layout.align()) {
            // SAFETY: a block of this layout came from `System` (see alloc).
            None => unsafe { System.dealloc(block, layout) },
            Some(c) => {
                // SAFETY: as in alloc: one thread, no re-entry.
                let s = unsafe { &mut *self.state.get() };
                // SAFETY: the block is ours, at least 16 bytes, 16-aligned.
                unsafe { *block.cast::<*mut u8>() = s.free[c] };
                s.free[c] = block;
            }
        }
    }

    #[inline]
    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        match (class(layout.size(), align), class(new_size, align)) {
            (Some(a), Some(b)) if a == b => block,
            // SAFETY: both sizes are beyond the classes: a `System` block.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: the caller guarantees `new_size` is valid for `align`.
                let new = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, align)) };
                if !new.is_null() {
                    // SAFETY: distinct live blocks, each at least the copied
                    // length; the old block is freed with its own layout.
                    unsafe {
                        ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                }
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class(1, 1), Some(0));
        assert_eq!(class(16, 8), Some(0));
        assert_eq!(class(17, 8), Some(1));
        assert_eq!(class(512, 16), Some(31));
        assert_eq!(class(513, 1), None);
        assert_eq!(class(64, 32), None);
    }

    #[test]
    fn blocks_are_reused_moved_and_kept_apart() {
        let a = SizeClasses::new();
        // SAFETY: one thread; every block is used within its layout and
        // freed once, with the layout it was allocated with.
        unsafe {
            let l24 = Layout::from_size_align(24, 8).unwrap();
            let p = a.alloc(l24);
            let q = a.alloc(l24);
            assert_ne!(p, q);
            assert_eq!(p as usize % CLASS, 0);
            p.write_bytes(0xAA, 24);
            q.write_bytes(0xBB, 24);
            a.dealloc(p, l24);
            // Same class: the freed block comes back.
            assert_eq!(a.alloc(Layout::from_size_align(30, 4).unwrap()), p);
            // Growing within the class keeps the block; past it, moves it.
            assert_eq!(a.realloc(q, l24, 32), q);
            let r = a.realloc(q, Layout::from_size_align(32, 8).unwrap(), 100);
            assert_ne!(r, q);
            assert!((0..24).all(|i| *r.add(i) == 0xBB));
            // Into and out of the large blocks.
            let big = a.realloc(r, Layout::from_size_align(100, 8).unwrap(), 4000);
            assert!((0..24).all(|i| *big.add(i) == 0xBB));
            let small = a.realloc(big, Layout::from_size_align(4000, 8).unwrap(), 8);
            assert!((0..8).all(|i| *small.add(i) == 0xBB));
            a.dealloc(small, Layout::from_size_align(8, 8).unwrap());
            // Many blocks across chunks stay distinct and writable.
            let l = Layout::from_size_align(200, 8).unwrap();
            let blocks: Vec<*mut u8> = (0..2000).map(|_| a.alloc(l)).collect();
            for (i, b) in blocks.iter().enumerate() {
                b.write_bytes(i as u8, 200);
            }
            for (i, b) in blocks.iter().enumerate() {
                assert!((0..200).all(|k| *b.add(k) == i as u8));
            }
            for b in blocks {
                a.dealloc(b, l);
            }
        }
    }
}
