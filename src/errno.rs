//! The calling thread's `errno`, read and set directly (the C ABI's calls
//! and the engine's signal and fork paths report through it, and save and
//! restore it around their own system calls).

use std::ffi::c_int;

/// The calling thread's errno.
pub(crate) fn errno() -> c_int {
    // SAFETY: `__errno_location` returns the calling thread's errno, valid
    // for the thread's lifetime.
    unsafe { *libc::__errno_location() }
}

/// Sets the calling thread's errno.
pub(crate) fn set_errno(v: c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = v };
}
