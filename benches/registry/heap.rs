//! A counting global allocator: the bytes and blocks on the heap, for row 6.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// The system allocator, counting the bytes and blocks in use, so that row 6
/// can tell what a discovery holds on the heap (RSS moves in whole pages and
/// keeps what the allocator does not return).
struct Counting;

static HEAP_BYTES: AtomicIsize = AtomicIsize::new(0);
static HEAP_BLOCKS: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            HEAP_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            HEAP_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc_zeroed(layout);
        if !ptr.is_null() {
            HEAP_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
            HEAP_BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        HEAP_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        HEAP_BLOCKS.fetch_sub(1, Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = System.realloc(ptr, layout, new_size);
        if !new.is_null() {
            HEAP_BYTES.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes and blocks on the heap now.
pub(crate) fn heap() -> (isize, isize) {
    (
        HEAP_BYTES.load(Ordering::Relaxed),
        HEAP_BLOCKS.load(Ordering::Relaxed),
    )
}
