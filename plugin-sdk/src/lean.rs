//! The runtime of a `#![no_std]` plugin (feature `lean`): a bump allocator and a panic handler.
//!
//! Each event runs on a fresh instance whose memory the host resets afterwards, so memory is never given back:
//! `dealloc` does nothing, and `realloc` grows the newest allocation in place. A plugin that allocates in a loop
//! grows its memory until its tier's limit stops it (`memory_limit`), as any plugin would.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::Cell;

const PAGE: usize = 64 * 1024;

unsafe extern "C" {
    /// Set by the linker: the first byte after the stack and static data.
    static __heap_base: u8;
}

/// `next` is where the next allocation may start and `end` where the memory ends (0 until the first call).
struct Bump {
    next: Cell<usize>,
    end: Cell<usize>,
}

// SAFETY: a plugin instance is single-threaded (wasm32 without threads); nothing is ever shared across threads.
unsafe impl Sync for Bump {}

#[global_allocator]
static ALLOCATOR: Bump = Bump { next: Cell::new(0), end: Cell::new(0) };

impl Bump {
    /// Makes `[start, start + size)` fit, growing the memory when needed.
    fn reserve(&self, start: usize, size: usize) -> bool {
        let Some(wanted) = start.checked_add(size) else { return false };
        if wanted <= self.end.get() {
            return true;
        }
        let pages = (wanted - self.end.get()).div_ceil(PAGE);
        if wasm32::memory_grow(0, pages) == usize::MAX {
            return false;
        }
        self.end.set(self.end.get() + pages * PAGE);
        true
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.end.get() == 0 {
            self.next.set(core::ptr::addr_of!(__heap_base) as usize);
            self.end.set(wasm32::memory_size(0) * PAGE);
        }
        let start = self.next.get().next_multiple_of(layout.align());
        if !self.reserve(start, layout.size()) {
            return core::ptr::null_mut();
        }
        self.next.set(start + layout.size());
        start as *mut u8
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let start = ptr as usize;
        // The newest allocation grows (or shrinks) where it is.
        if start + layout.size() == self.next.get() {
            if !self.reserve(start, new_size) {
                return core::ptr::null_mut();
            }
            self.next.set(start + new_size);
            return ptr;
        }
        // SAFETY: the caller guarantees `layout` and `new_size` describe a valid reallocation.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as above; the old block stays valid (nothing is ever freed), so copying from it is sound.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            }
            new
        }
    }
}

/// Logs the panic (the host shows it in the binding's failure and logs) and traps.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use crate::bindings::gateway::plugin::log::{Level, write};
    write(Level::Error, &alloc::format!("{info}"));
    wasm32::unreachable()
}

/// Compares bytes; `core` calls it for slice and string equality. Rust's standard library gets it from the
/// WASI C library, which a `#![no_std]` plugin does not link.
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: the caller guarantees both are readable for `n` bytes.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// Equality-only `memcmp`, which LLVM may call instead.
///
/// # Safety
/// As [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded from the caller.
    unsafe { memcmp(a, b, n) }
}

/// The canonical ABI's allocator, through which the host passes the event's strings into the plugin. Rust's
/// standard library provides it on `wasm32-wasip2`; a `#![no_std]` plugin gets it here.
///
/// # Safety
/// Called by the host per the component model's canonical ABI: `old_ptr`/`old_len` describe a block this
/// function returned earlier (or are null/0), and `align` is a power of two.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    if new_len == 0 {
        return align as *mut u8;
    }
    // SAFETY: per the canonical ABI, `align` is a power of two and the sizes fit the memory.
    let ptr = unsafe {
        if old_len == 0 {
            ALLOCATOR.alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            ALLOCATOR.realloc(old_ptr, Layout::from_size_align_unchecked(old_len, align), new_len)
        }
    };
    if ptr.is_null() {
        wasm32::unreachable();
    }
    ptr
}
