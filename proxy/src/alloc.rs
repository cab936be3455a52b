//! The global allocator: mimalloc, asked for plain blocks whenever a plain block is
//! aligned enough.
//!
//! The `mimalloc` crate's allocator passes every request to `mi_malloc_aligned`, even at
//! the 8-byte alignment of nearly every Rust type. mimalloc 3 serves that from a free block
//! of the exact size class when the class's current page has one; otherwise (a fresh page
//! needed) it over-allocates `size + align - 1` unless the class size is a power of two,
//! and the block lands one size class up. Nothing asks for plain blocks, so most classes
//! never get pages of their own: 10,000 parked MQTT connections measured their 160-byte
//! `Core` in 192-byte blocks and their two 48-byte objects in 64-byte blocks. `mi_malloc`
//! blocks are aligned to 16 bytes from 16 bytes up (what C's `malloc` must give), and to
//! their size below, so this allocator asks for them unless the layout wants more (as
//! Rust's own `System` allocator does with `malloc`).

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// What `mi_malloc` guarantees for blocks of at least this size.
const MIN_ALIGN: usize = 16;

/// mimalloc, with plain blocks for ordinarily aligned layouts.
#[derive(Debug, Default, Clone, Copy)]
pub struct Allocator;

fn plain(align: usize, size: usize) -> bool {
    align <= MIN_ALIGN && align <= size
}

// SAFETY: every request goes to mimalloc: plain blocks only for layouts whose alignment
// they guarantee (see the module docs), aligned blocks otherwise, and `mi_free` and
// `mi_realloc*` take either kind.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI calls; mimalloc returns null on failure, as required.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator, so from mimalloc.
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator; the new block keeps `layout`'s alignment
        // (plain only where plain blocks guarantee it).
        unsafe {
            if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sizes of a parked MQTT connection's allocations get their own size class, and
    /// every block is aligned as asked.
    #[test]
    fn blocks_are_of_the_size_class_and_aligned() {
        for (size, align) in [
            (8, 8),
            (40, 8),
            (48, 8),
            (160, 8),
            (176, 8),
            (24, 16),
            (100, 64),
        ] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero layout, freed below with the same allocator.
            unsafe {
                let p = Allocator.alloc(layout);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0, "{size} aligned to {align}");
                if align <= MIN_ALIGN {
                    assert_eq!(
                        mi::mi_usable_size(p.cast()),
                        mi::mi_good_size(size),
                        "{size}"
                    );
                }
                let q = Allocator.realloc(p, layout, size * 3);
                assert_eq!(
                    q as usize % align,
                    0,
                    "{size} reallocated, aligned to {align}"
                );
                Allocator.dealloc(q, Layout::from_size_align(size * 3, align).unwrap());
            }
        }
    }
}
