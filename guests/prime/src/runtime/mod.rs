//! What the standard library would provide a guest, for one built without
//! it: the memory allocator and the `cabi_realloc` export through which the
//! host writes lists and strings into guest memory (`heap.rs`), the panic
//! handler (`panic.rs`), and `memcmp` (`memcmp.rs`).
//!
//! Each behaves as in a guest built with std: the heap starts in the memory
//! the module is instantiated with, a panic's message reaches the host's log
//! before the guest traps, and running out of memory traps.

mod heap;
mod memcmp;
mod panic;
