//! The global allocator, and allocations that must not share allocator pages.
//!
//! **Plain blocks.** The `mimalloc` crate's allocator passes every request to
//! `mi_malloc_aligned`, even at the 8-byte alignment of nearly every Rust type. mimalloc 3
//! serves that from a free block of the exact size class when the class's current page has
//! one; otherwise (a fresh page needed) it over-allocates `size + align - 1` unless the
//! class size is a power of two, and the block lands one size class up. Nothing asks for
//! plain blocks, so most classes never get pages of their own: 10,000 parked MQTT
//! connections measured their 160-byte `Core` in 192-byte blocks and their two 48-byte
//! objects in 64-byte blocks. `mi_malloc` blocks are aligned to 16 bytes from 16 bytes up
//! (what C's `malloc` must give), and to their size below, so this allocator asks for them
//! unless the layout wants more (as Rust's own `System` allocator does with `malloc`).
//!
//! **Isolated blocks.** mimalloc packs blocks of 10 KiB to 512 KiB many to a page (6 to 48
//! of a size class in a 512 KiB or 4 MiB page), and a page goes back to the OS only once
//! every block in it is free. A table that grows with the connections active at once (a
//! connect burst: glommio's timers, the shutdown wakers, the session feed's records) frees
//! its old, smaller copies into pages that a long-lived table of the same size class keeps
//! alive, so a burst's memory stayed resident after its connections had parked. Code that
//! grows such tables runs them [`isolated`] (or polls them through [`Isolated`]): each
//! block of at least [`ISOLATE_MIN`] bytes allocated there is mapped on its own and
//! unmapped when freed. That costs an `mmap` and a `munmap`, which is why it is opt-in, for
//! code off the per-message path (a table's growth, a fetch of the session topic), and
//! never for record batches or read buffers. Without the `mimalloc` feature (the system
//! allocator) isolation does nothing.
//!
//! **Freed pages.** mimalloc hands memory that whole freed pages held back to the OS a
//! second (its `purge_delay`) after the free, but only when the same thread later frees or
//! abandons a page, which a quiet shard never does. The parking lot calls [`collect_all`]
//! once parking settles after a burst; what is freed later stayed resident (the memory of
//! the session topic's large fetch answers goes when their records have been applied):
//! 59 processes of 1,700 parked connections each measured 1,629 B per connection, and
//! 568 B with every purge done at once (`MIMALLOC_PURGE_DELAY=0`). So each shard also
//! calls [`collect`] every [`COLLECT_EVERY`].

use std::cell::Cell;
use std::future::Future;
use std::mem::ManuallyDrop;
use std::pin::Pin;
use std::task::{Context, Poll};

#[cfg(feature = "mimalloc")]
use std::alloc::{GlobalAlloc, Layout};
#[cfg(feature = "mimalloc")]
use std::ffi::c_void;

#[cfg(feature = "mimalloc")]
use libmimalloc_sys as mi;

/// Blocks at least this large are isolated inside [`isolated`]. Those up to 10 KiB live
/// in mimalloc's 64 KiB small pages, which a burst's leftovers cannot pin for long; those
/// of 10–16 KiB share 512 KiB pages and are left there (an `mmap` each would cost more
/// than they pin).
pub const ISOLATE_MIN: usize = 16 * 1024;

/// An alignment above mimalloc 3's largest in-arena one (64 KiB): mimalloc maps such a
/// block from the OS, alone, and unmaps it when it is freed.
#[cfg(feature = "mimalloc")]
const ISOLATE_ALIGN: usize = 128 * 1024;

/// How often each shard calls [`collect`].
pub const COLLECT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Lets mimalloc do the work it defers to this thread's next page free: give the OS back
/// the pages freed at least its purge delay ago, and free pages whose blocks other
/// threads freed. Cheap (it visits this thread's pages that are not full); a shard calls
/// it every [`COLLECT_EVERY`] (see the module docs). Without the `mimalloc` feature it
/// does nothing.
pub fn collect() {
    // SAFETY: a plain FFI call; mimalloc walks only the calling thread's own heap.
    #[cfg(feature = "mimalloc")]
    unsafe {
        mi::mi_collect(false)
    };
}

/// [`collect`], forced: every page of this thread's heap is visited and what is free goes
/// back to the OS now, not after the purge delay. The parking lot calls it once parking
/// settles after a burst (10k parked connections measured ~100 B less each than without).
pub fn collect_all() {
    // SAFETY: as in `collect`.
    #[cfg(feature = "mimalloc")]
    unsafe {
        mi::mi_collect(true)
    };
}

thread_local! {
    /// Whether this thread is inside [`isolated`].
    static ISOLATING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every allocation of at least [`ISOLATE_MIN`] bytes it makes on this
/// thread mapped on its own (see the module docs).
pub fn isolated<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the flag also when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ISOLATING.set(self.0);
        }
    }
    let _restore = Restore(ISOLATING.replace(true));
    f()
}

/// A future polled, and dropped, [`isolated`]: what it allocates as it runs and as it
/// is cancelled (a timer table shrinking, say) is isolated.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Isolated<F> {
    inner: ManuallyDrop<F>,
}

impl<F> Isolated<F> {
    /// `inner`, to be polled isolated.
    pub fn new(inner: F) -> Isolated<F> {
        Isolated {
            inner: ManuallyDrop::new(inner),
        }
    }
}

impl<F: Future> Future for Isolated<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `inner` is pinned with `self`: it is never moved out, and `drop` drops it
        // in place.
        let inner = unsafe { self.map_unchecked_mut(|s| &mut *s.inner) };
        isolated(|| inner.poll(cx))
    }
}

impl<F> Drop for Isolated<F> {
    fn drop(&mut self) {
        // SAFETY: `inner` is dropped here, once, in place, and never used again.
        isolated(|| unsafe { ManuallyDrop::drop(&mut self.inner) });
    }
}

/// Whether this thread is inside [`isolated`] (for tests).
#[cfg(test)]
fn is_isolating() -> bool {
    ISOLATING.get()
}

#[cfg(feature = "mimalloc")]
fn isolating(size: usize) -> bool {
    size >= ISOLATE_MIN && ISOLATING.try_with(Cell::get).unwrap_or(false)
}

/// What `mi_malloc` guarantees for blocks of at least this size.
#[cfg(feature = "mimalloc")]
const MIN_ALIGN: usize = 16;

/// mimalloc, with plain blocks for ordinarily aligned layouts and isolated large blocks
/// inside [`isolated`].
#[cfg(feature = "mimalloc")]
#[derive(Debug, Default, Clone, Copy)]
pub struct Allocator;

#[cfg(feature = "mimalloc")]
fn plain(align: usize, size: usize) -> bool {
    align <= MIN_ALIGN && align <= size
}

// SAFETY: every request goes to mimalloc: isolated blocks at an alignment above the
// layout's, plain blocks only for layouts whose alignment they guarantee (see the module
// docs), aligned blocks otherwise, and `mi_free` and `mi_realloc*` take any kind.
#[cfg(feature = "mimalloc")]
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI calls; mimalloc returns null on failure, as required.
        unsafe {
            if isolating(layout.size()) {
                mi::mi_malloc_aligned(layout.size(), ISOLATE_ALIGN.max(layout.align())).cast()
            } else if plain(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if isolating(layout.size()) {
                mi::mi_zalloc_aligned(layout.size(), ISOLATE_ALIGN.max(layout.align())).cast()
            } else if plain(layout.align(), layout.size()) {
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
            if isolating(new_size) {
                let align = ISOLATE_ALIGN.max(layout.align());
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, align).cast()
            } else if plain(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    /// The scope covers `f`, nests, and ends also when `f` panics.
    #[test]
    fn isolated_scopes_nest_and_end() {
        assert!(!is_isolating());
        isolated(|| {
            assert!(is_isolating());
            isolated(|| assert!(is_isolating()));
            assert!(is_isolating(), "an inner scope ended the outer one");
        });
        assert!(!is_isolating());
        let panicked = std::panic::catch_unwind(|| isolated(|| panic!("inside")));
        assert!(panicked.is_err());
        assert!(!is_isolating(), "a panic left the scope on");
    }

    /// An `Isolated` future runs isolated while it is polled and while it is dropped, and
    /// leaves the flag off in between.
    #[test]
    fn an_isolated_future_is_polled_and_dropped_isolated() {
        struct Probe(std::rc::Rc<std::cell::RefCell<Vec<bool>>>);
        impl Future for Probe {
            type Output = ();
            fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
                self.0.borrow_mut().push(is_isolating());
                Poll::Pending
            }
        }
        impl Drop for Probe {
            fn drop(&mut self) {
                self.0.borrow_mut().push(is_isolating());
            }
        }
        let seen = std::rc::Rc::default();
        let mut fut = Box::pin(Isolated::new(Probe(std::rc::Rc::clone(&seen))));
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert!(!is_isolating());
        drop(fut);
        assert!(!is_isolating());
        assert_eq!(*seen.borrow(), [true, true], "polled, then dropped");
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    use super::*;

    /// Whether `addr` lies in one of this process's mappings.
    fn mapped(addr: usize) -> bool {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps");
        maps.lines().any(|line| {
            let range = line.split(' ').next().unwrap_or_default();
            let (lo, hi) = range.split_once('-').expect("a range");
            let lo = usize::from_str_radix(lo, 16).expect("hex");
            let hi = usize::from_str_radix(hi, 16).expect("hex");
            (lo..hi).contains(&addr)
        })
    }

    /// Inside `isolated`, a block from `ISOLATE_MIN` up (allocated, zeroed or grown into)
    /// is mapped on its own: its memory is unmapped as soon as it is freed. Smaller ones
    /// are ordinary blocks, in an arena's memory, which stays mapped.
    #[test]
    fn isolated_blocks_are_unmapped_when_freed() {
        let layout = Layout::from_size_align(ISOLATE_MIN, 8).unwrap();
        let small = Layout::from_size_align(ISOLATE_MIN - 16, 8).unwrap();
        // Another thread may map the hole again between the free and the check; a block
        // whose address stays mapped every time was not unmapped.
        let attempts = 5;
        let mut unmapped = 0;
        for _ in 0..attempts {
            // SAFETY: non-zero layouts, each freed once with the layout it has.
            unsafe {
                let (a, z, r, s) = isolated(|| {
                    let a = Allocator.alloc(layout);
                    let z = Allocator.alloc_zeroed(layout);
                    let r = Allocator.realloc(Allocator.alloc(small), small, 4 * ISOLATE_MIN);
                    let s = Allocator.alloc(small);
                    (a, z, r, s)
                });
                for p in [a, z, r] {
                    assert_eq!(p as usize % ISOLATE_ALIGN, 0, "an isolated block");
                }
                assert!((0..ISOLATE_MIN).all(|i| *z.add(i) == 0), "zeroed");
                r.write_bytes(1, 4 * ISOLATE_MIN);
                assert!(mapped(a as usize) && mapped(r as usize));
                Allocator.dealloc(a, layout);
                Allocator.dealloc(z, layout);
                Allocator.dealloc(r, Layout::from_size_align(4 * ISOLATE_MIN, 8).unwrap());
                Allocator.dealloc(s, small);
                assert!(
                    mapped(s as usize),
                    "a small block is an arena's, which stays mapped"
                );
                if !mapped(a as usize) && !mapped(r as usize) {
                    unmapped += 1;
                }
            }
        }
        assert!(
            unmapped > 0,
            "isolated blocks stayed mapped after being freed"
        );
    }

    /// This machine's page size.
    fn page_size() -> usize {
        // SAFETY: `sysconf` with a valid name only reads a constant.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).expect("a page size")
    }

    /// Whether the page holding `addr` is in memory (`/proc/self/pagemap`'s bit 63), or
    /// `None` where this kernel does not let this process read it.
    fn resident(addr: usize) -> Option<bool> {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let mut pagemap = std::fs::File::open("/proc/self/pagemap").ok()?;
        let entry_at = (addr / page_size() * 8) as u64;
        pagemap.seek(SeekFrom::Start(entry_at)).ok()?;
        let mut entry = [0u8; 8];
        pagemap.read_exact(&mut entry).ok()?;
        Some(u64::from_le_bytes(entry) >> 63 == 1)
    }

    /// A large block freed on a thread that then frees nothing more stays resident until
    /// `collect` runs after mimalloc's purge delay, and then goes back to the OS. (It
    /// failed with `collect` made a no-op. mimalloc's purge is process-wide, so another
    /// test thread's page free could also do it; the tests of this binary make few.)
    #[test]
    fn collect_gives_freed_pages_back() {
        const SIZE: usize = 3 << 20;
        if ["MIMALLOC_PURGE_DELAY", "MIMALLOC_PURGE_DECOMMITS"]
            .iter()
            .any(|v| std::env::var_os(v).is_some())
        {
            eprintln!("skipped: mimalloc's purge settings are overridden");
            return;
        }
        // Another thread may take the freed range before the check; a range that is never
        // given back in any attempt was not.
        let attempts = 3;
        let mut given_back = 0;
        for _ in 0..attempts {
            // SAFETY: one block, written within its size, freed once.
            let (probe, seen) = unsafe {
                let block = mi::mi_malloc(SIZE).cast::<u8>();
                assert!(!block.is_null());
                block.write_bytes(1, SIZE);
                let probe = (block as usize + SIZE / 2) & !(page_size() - 1);
                let seen = resident(probe);
                mi::mi_free(block.cast());
                (probe, seen)
            };
            if seen != Some(true) {
                eprintln!("skipped: /proc/self/pagemap does not show this process's pages");
                return;
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                collect();
                if resident(probe) == Some(false) {
                    given_back += 1;
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        assert!(given_back > 0, "freed pages stayed resident");
    }

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
