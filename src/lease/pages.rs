//! The allocator of the lease maps' arrays: large arrays are mapped from the kernel on their
//! own and unmapped when freed.
//!
//! A map grows by allocating an array twice the size and freeing the old one. Through the
//! global allocator (mimalloc), a freed array's pages stay resident until later allocator
//! activity purges them, and grants allocate nothing: with 1 M leases the arrays the 64 maps
//! had outgrown held about 10 MiB, a tenth of the table. Unmapping gives them back at once.
//! A growth costs one `mmap` and one `munmap` more, against rehashing thousands of entries.
#![allow(unsafe_code)]

use allocator_api2::alloc::{AllocError, Allocator, Global, Layout};
use std::ptr::NonNull;

/// Arrays from this size on have a mapping of their own; smaller ones (maps of up to 8,192
/// buckets, which hold up to 7,168 entries) come from the global allocator, whose pages they
/// share with others.
const MAPPED_FROM: usize = 64 * 1024;

/// The smallest page size of the platforms dlockd runs on: a mapping's start is aligned to
/// at least this.
const PAGE: usize = 4096;

/// See the module docs.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Pages;

/// Whether a block of `layout` has a mapping of its own. `allocate` and `deallocate` both ask,
/// so a block is always given back the way it was taken.
fn is_mapped(layout: Layout) -> bool {
    layout.size() >= MAPPED_FROM && layout.align() <= PAGE
}

// SAFETY: a block `allocate` returns is valid for `layout.size()` bytes at `layout.align()`
// (a mapping is page-aligned and at least that long; a smaller block is `Global`'s), stays
// valid until `deallocate` is called on it, and `Pages` has no state, so any copy may free
// what another allocated.
unsafe impl Allocator for Pages {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if !is_mapped(layout) {
            return Global.allocate(layout);
        }
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing
        // replaces no existing memory; failure is checked below.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                layout.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(AllocError);
        }
        let start = NonNull::new(at.cast::<u8>()).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(start, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if !is_mapped(layout) {
            // SAFETY: the caller passes a block this allocator returned for `layout`, and
            // blocks of such layouts come from `Global`.
            unsafe { Global.deallocate(ptr, layout) };
            return;
        }
        // SAFETY: blocks of such layouts are whole mappings of `layout.size()` bytes made by
        // `allocate`, and the caller gives each back once and uses it no more.
        let result = unsafe { libc::munmap(ptr.as_ptr().cast(), layout.size()) };
        // munmap fails only on arguments no mapping of ours has.
        debug_assert_eq!(result, 0, "munmap of a map's array");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `[at, at + len)` is inside one of this process's mappings, from
    /// /proc/self/maps.
    fn is_in_a_mapping(at: usize, len: usize) -> bool {
        let maps = std::fs::read_to_string("/proc/self/maps").expect("read /proc/self/maps");
        maps.lines().any(|line| {
            let range = line.split(' ').next().unwrap_or("");
            let Some((start, end)) = range.split_once('-') else {
                return false;
            };
            let parse = |hex: &str| usize::from_str_radix(hex, 16).unwrap_or(0);
            parse(start) <= at && at + len <= parse(end)
        })
    }

    #[test]
    fn a_large_array_is_unmapped_when_freed() {
        let layout = Layout::from_size_align(1 << 20, 16).expect("layout");
        let block = Pages.allocate(layout).expect("allocate");
        let at = block.as_ptr().cast::<u8>() as usize;
        assert_eq!(block.len(), 1 << 20);
        assert_eq!(at % PAGE, 0);
        // SAFETY: the block is 1 MiB long and this test's alone.
        unsafe { std::ptr::write_bytes(block.as_ptr().cast::<u8>(), 0xab, 1 << 20) };
        assert!(is_in_a_mapping(at, 1 << 20));
        // SAFETY: allocated above with this layout, freed once.
        unsafe { Pages.deallocate(block.cast(), layout) };
        assert!(
            !is_in_a_mapping(at, 1 << 20),
            "the pages went back to the kernel"
        );
        // (A map's growth through mapped sizes is in this test too, after the check above:
        // run in parallel, one of its mappings could land in the hole just left.)
        let mut map = hashbrown::HashTable::new_in(Pages);
        let hash = |v: &u32| u64::from(*v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for v in 0..200_000u32 {
            map.insert_unique(hash(&v), v, hash);
        }
        assert!((0..200_000u32).all(|v| map.find(hash(&v), |e| *e == v).is_some()));
        assert!(map.find(hash(&200_000), |e| *e == 200_000).is_none());
    }

    #[test]
    fn small_arrays_come_from_the_global_allocator() {
        let layout = Layout::from_size_align(MAPPED_FROM - 16, 16).expect("layout");
        assert!(!is_mapped(layout));
        assert!(is_mapped(
            Layout::from_size_align(MAPPED_FROM, 16).expect("layout")
        ));
        assert!(!is_mapped(
            Layout::from_size_align(MAPPED_FROM, 2 * PAGE).expect("layout")
        ));
        let block = Pages.allocate(layout).expect("allocate");
        // SAFETY: allocated above with this layout, freed once.
        unsafe { Pages.deallocate(block.cast(), layout) };
    }
}
