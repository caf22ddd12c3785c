//! `fork` in front of libc's: VLS's fork hooks run around it, not inside
//! glibc's `pthread_atfork` sequence (see [`crate::real_vcl::fork_with_hooks`]).
//!
//! Found with PostgreSQL 15 under LDP: a library constructor of the server
//! called a socket function before LDP's own constructor had run, so VLS
//! (and the C layer alike) registered its fork handlers before LDP's socket
//! wrapper registered its own. Child handlers run in registration order:
//! VLS's ran first and registered the child's VCL worker, which binds
//! `epoll_create1` under the wrapper's symbol lock, still held from the
//! parent's side of the fork. The postmaster's first child (the startup
//! process) hung for ever, and the server never accepted a connection.
//!
//! `libvls.so` exports it as `fork` (an alias the build script adds to the
//! cdylib only, as for `epoll_wait`). `vfork`, `_Fork`, `posix_spawn` and
//! `clone` are left alone: they run no fork handlers either.

use std::ffi::c_void;
use std::sync::atomic::AtomicPtr;

use super::ldp_wait::{next_symbol, set_errno};

/// `fork`, with VLS's fork hooks before and after it.
///
/// # Safety
/// As `fork(2)`.
#[no_mangle]
pub unsafe extern "C" fn vls_preload_fork() -> libc::pid_t {
    static NEXT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    let p = next_symbol(&NEXT, b"fork\0");
    if p.is_null() {
        set_errno(libc::ENOSYS);
        return -1;
    }
    // SAFETY: `p` is libc's `fork`, whose C signature this is.
    let fork = unsafe { std::mem::transmute::<*mut c_void, unsafe extern "C" fn() -> libc::pid_t>(p) };
    // SAFETY: libc's fork, called once, as the caller asked.
    crate::real_vcl::fork_with_hooks(|| unsafe { fork() })
}
