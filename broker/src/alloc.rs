//! A global allocator that keeps a hostile count in a request from aborting the broker.
//!
//! The `kafka-protocol` decoders (0.18) reserve `Vec::with_capacity(n)` for an array count `n`
//! read off the wire before decoding a single element (upstream issues #152/#161/#200 are open).
//! A 12-byte request claiming 2^31 elements asks for hundreds of GiB; the system allocator
//! refuses and Rust aborts the process. Sluice never legitimately allocates 1 GiB at once
//! (requests are capped by `socket.request.max.bytes`), so allocations of at least
//! [`HUGE_BYTES`] are served by `mmap(MAP_NORESERVE)`: address space only, no memory committed.
//! The decoder then fails on the missing bytes, the mapping is unmapped, and the connection
//! closes with a log line, as for any malformed request.
//!
//! This is the one place outside `log-store`'s index mapping with `unsafe`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};

/// Allocations at least this large are mapped lazily.
pub const HUGE_BYTES: usize = 1 << 30;
const PAGE: usize = 4096;

pub struct GuardedAlloc;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_BYTES && layout.align() <= PAGE
}

// SAFETY: every method upholds `GlobalAlloc`'s contract: huge blocks come from a private
// anonymous mapping of exactly `layout.size()` bytes (page aligned, so any align <= 4096 is
// met, and zeroed) and are returned with munmap of the same size; everything else goes to
// `System` unchanged. `realloc` between the two kinds copies `min(old, new)` bytes.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: a fresh anonymous mapping; no existing memory is touched.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    layout.size(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            return if p == libc::MAP_FAILED {
                std::ptr::null_mut()
            } else {
                p.cast()
            };
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // SAFETY: anonymous mappings are zero-filled.
            return unsafe { self.alloc(layout) };
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            // SAFETY: `ptr` came from our mmap of `layout.size()` bytes.
            unsafe { libc::munmap(ptr.cast(), layout.size()) };
            return;
        }
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return std::ptr::null_mut();
        };
        if !is_huge(&layout) && !is_huge(&new_layout) {
            // SAFETY: both sides are System blocks.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: allocate the new block, copy the overlap, free the old one.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_blocks_are_mapped_and_usable() {
        let a = GuardedAlloc;
        let layout = Layout::from_size_align(HUGE_BYTES * 64, 8).unwrap_or_else(|_| unreachable!());
        // SAFETY: test of the allocator itself; the block is written at both ends and freed.
        unsafe {
            let p = a.alloc(layout);
            assert!(
                !p.is_null(),
                "64 GiB of address space must map with MAP_NORESERVE"
            );
            *p = 1;
            *p.add(layout.size() - 1) = 2;
            a.dealloc(p, layout);
        }
    }
}
