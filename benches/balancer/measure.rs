//! What a call costs the thread that makes it: allocations (a counting global
//! allocator), CPU time, and pinning threads to CPUs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

/// The system allocator, counting the allocations of each thread (without
/// atomics, so that the client and server threads do not contend): what a
/// call allocates on the client thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Bytes asked for less bytes given back, by this thread.
    static BYTES: Cell<i64> = const { Cell::new(0) };
}

fn count_bytes(delta: i64) {
    let _ = BYTES.try_with(|n| n.set(n.get() + delta));
}

// SAFETY: every call is passed on to `System` unchanged; only a thread-local
// counter (const-initialised, no destructor) is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        count_bytes(layout.size() as i64);
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        count_bytes(layout.size() as i64);
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count_bytes(-(layout.size() as i64));
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_bytes(new_size as i64 - layout.size() as i64);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made so far by the calling thread.
pub(crate) fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Heap bytes the calling thread holds now: asked for, less given back (a
/// block freed by another thread counts there).
pub(crate) fn heap_bytes() -> i64 {
    BYTES.with(Cell::get)
}

/// CPU time of the calling thread so far (the client runtime runs every
/// client task, tonic's and hyper's included, on the main thread).
pub(crate) fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

/// Keeps the calling thread on one CPU (if the machine has it): the client
/// and the servers each get their own, so that the scheduler moving them
/// around adds no noise to the comparisons.
pub(crate) fn pin_to_cpu(cpu: usize) {
    let mut set = nix::sched::CpuSet::new();
    if set.set(cpu).is_ok() {
        // Not fatal: a machine with one CPU, or a restricted cgroup.
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
}
