//! `_exit` and `_Exit` in front of libc's: VPP reads what the process
//! queued for it before the process is gone.
//!
//! A process that ends through `_exit` runs no exit handler, so VCL's and
//! this layer's (which lets VPP read the worker's queues first, see
//! [`crate::engine::Vls::process_exits_at_once`]) are skipped. VPP then
//! sees the app's socket close before it reads the queues, and crashes on
//! an accepted reply still in them (25.10 to 26.10): a forking server's
//! child that answered one request on a connection just handed over to it
//! and called `_exit` (Python's `os._exit`, PostgreSQL's backends on some
//! paths) brought VPP down, about once in a hundred such children.
//!
//! `libvls.so` exports them as `_exit` and `_Exit` (aliases the build
//! script adds to the cdylib only, as for `epoll_wait`). glibc's own
//! `exit` ends with its internal `_exit`, not these: a normal exit has run
//! the handlers already.

use std::ffi::c_int;

use crate::process::vls_if_made;

/// Lets VPP read the queues, then ends the process as libc's `_exit` does
/// (`exit_group`). Only async-signal-safe work: atomic loads, reads of
/// VCL's queues, short sleeps. A panic cannot unwind out of it (it is
/// caught and the process ends anyway).
fn exit_now(status: c_int) -> ! {
    if let Some(v) = vls_if_made() {
        let _ = std::panic::catch_unwind(|| v.process_exits_at_once());
    }
    loop {
        // SAFETY: ends the process; no memory is touched.
        unsafe {
            libc::syscall(libc::SYS_exit_group, status);
            libc::syscall(libc::SYS_exit, status);
        }
    }
}

/// `_exit(2)`, after VPP read the process's queues (see the module).
#[no_mangle]
pub extern "C" fn vls_preload__exit(status: c_int) -> ! {
    exit_now(status)
}

/// `_Exit(2)`, as [`vls_preload__exit`].
#[no_mangle]
pub extern "C" fn vls_preload__Exit(status: c_int) -> ! {
    exit_now(status)
}
