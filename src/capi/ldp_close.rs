//! `close`, `close_range` and `closefrom` in front of LDP's and libc's:
//! a descriptor that is no VPP session closes as the kernel closes it, and
//! VCL's own kernel descriptors stay open through the two range calls.
//!
//! `close(fd)`: LDP takes every `fd` from `2^LDP_SID_BIT` up for a VPP
//! session, and for one that is none it answers `EBADFD` (its
//! `vls_get_libc_epfd` finds no session), even when a kernel descriptor of
//! that number is open. Here such a `close` is the system call: the kernel
//! descriptor closes if it is open (the program, or VCL closing one of its
//! segment memfds, meant that one), else the answer is `EBADF`. Programs
//! that close every number up to their highest before `exec` (dropbear's
//! session child) take `EBADF` for "was not open" and stop on any other
//! error. A number that is a VPP session goes to LDP's `close` as before.
//!
//! VCL holds kernel descriptors the program never opened: its socket to VPP
//! (VPP detaches the application, and with it every session, when that
//! socket closes), its message queues' eventfds, its queue epoll fd, its
//! segments' memfds (which it closes itself when a segment goes, by number).
//! LDP also pairs each epoll session with a kernel epoll descriptor of its
//! own. A daemon that closes every descriptor above 2 at start-up
//! (`closefrom(3)`, `close_range(3, ~0U, 0)`) takes them all: varnishd
//! does, and then VPP detaches it, the VCL compiler child it forks cannot
//! get a worker, and VCL later closes numbers the program has reused. LDP
//! passes both calls to libc as they are (so does the C layer: varnishd
//! fails the same way with it).
//!
//! Here (the app created, so VCL has descriptors):
//! - `close_range(first, last, flags)` closes the range without VCL's and
//!   LDP's descriptors, in pieces; with `CLOSE_RANGE_CLOEXEC` it marks the
//!   whole range (they are of no use after `exec`), and
//!   `CLOSE_RANGE_UNSHARE` unshares the table once;
//! - `closefrom(low)` is `close_range(low, ~0U, 0)`, with glibc's fallback
//!   (closing what `/proc/self/fd` lists) if the kernel has no
//!   `close_range`.
//!
//! And `close(fd)` of one of VCL's or LDP's descriptors, called from the
//! program's code, leaves it open and answers 0: proftpd closes every
//! number from 3 to 31 one by one at start-up, and VPP then detached it
//! before it listened. VCL's own closes (its code calls `close` too) are
//! told apart by the caller's return address (`vpp_code`); the list of
//! VCL's descriptors is looked up again when the process or its number of
//! VCL workers changed. Not covered: the segments' memfds (the segment
//! table is shared with forked relatives, and a number there may be
//! another process's, or another file of this one: dropbear's pseudo-
//! terminal broke when its session child could not close it); VCL closes
//! them itself, by number, when a segment goes.
//!
//! `libvls.so` exports the three as `close`, `close_range` and `closefrom`
//! (aliases the build script adds to the cdylib only, as for `epoll_wait`).

use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::Mutex;

use super::ldp_mmsg::ldp_vlsh;
use super::ldp_wait::next_fn;
use crate::process::vls_if_made;

/// `CLOSE_RANGE_UNSHARE` (linux/close_range.h).
const CLOSE_RANGE_UNSHARE: c_uint = 1 << 1;
/// `CLOSE_RANGE_CLOEXEC` (linux/close_range.h).
const CLOSE_RANGE_CLOEXEC: c_uint = 1 << 2;

/// The descriptors VCL and LDP hold in this process now, sorted, without
/// repeats; empty before the app is created.
fn kept_fds() -> Vec<c_int> {
    vcl_fds(vpp_sys::vppsys_internal_fds)
}

/// [`kept_fds`] without the segments' memfds and without 0 to 2: those
/// this process's VCL workers and LDP opened here (see `vppsys_worker_fds`:
/// a segment number may be another process's; VCL's unset descriptors are
/// 0), for `close` and `exec`.
pub(super) fn worker_fds() -> Vec<c_int> {
    let mut fds = vcl_fds(vpp_sys::vppsys_worker_fds);
    fds.retain(|&fd| fd > 2);
    fds
}

/// The descriptors `list` (a shim function) gives, and LDP's epoll fds,
/// sorted, without repeats; empty before the app is created.
fn vcl_fds(list: unsafe extern "C" fn(*mut c_int, c_int) -> c_int) -> Vec<c_int> {
    let Some(v) = vls_if_made().filter(|v| v.is_app_created()) else { return Vec::new() };
    let mut fds = vec![0; 64];
    loop {
        // SAFETY: `fds` has room for `fds.len()` descriptors.
        let n = unsafe { list(fds.as_mut_ptr(), fds.len() as c_int) }.max(0) as usize;
        if n <= fds.len() {
            fds.truncate(n);
            break;
        }
        fds.resize(n, 0);
    }
    fds.extend(v.libc_epfds());
    fds.sort_unstable();
    fds.dedup();
    fds
}

/// The pieces of `first..=last` that remain once the descriptors in `keep`
/// (sorted) are taken out.
fn pieces(first: c_uint, last: c_uint, keep: &[c_int]) -> Vec<(c_uint, c_uint)> {
    let mut out = Vec::new();
    let mut from = first;
    for &k in keep {
        let Ok(k) = c_uint::try_from(k) else { continue };
        if k < from || k > last {
            continue;
        }
        if k > from {
            out.push((from, k - 1));
        }
        if k == last {
            return out;
        }
        from = k + 1;
    }
    out.push((from, last));
    out
}

/// `close` (see the module), called by `libvls.so`'s `close`
/// (`close_caller.c`) with its caller's return address: the system call
/// for a number at or above LDP's base that names no VPP session, nothing
/// for one of VCL's descriptors closed by the program, else the next
/// `close` (LDP's, which hands numbers below its base to libc).
///
/// # Safety
/// As `close(2)`: the caller gives up `fd`.
#[no_mangle]
pub unsafe extern "C" fn vls_preload_close_from(fd: c_int, caller: *const c_void) -> c_int {
    if let Some(rv) = close_if_no_session(fd) {
        return rv;
    }
    if !super::vpp_code::is_vpp_code(caller) && is_vcl_descriptor(fd) {
        static SAID: AtomicBool = AtomicBool::new(false);
        if !SAID.swap(true, Ordering::Relaxed) {
            tracing::warn!(fd, "the program closed VCL's descriptor {fd}: kept open (said once)");
        }
        return 0;
    }
    static NEXT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    // SAFETY: `close` has this C signature.
    let Some(next) = (unsafe { next_fn::<unsafe extern "C" fn(c_int) -> c_int>(&NEXT, b"close\0") }) else {
        return -1;
    };
    // SAFETY: forwarded contract.
    unsafe { next(fd) }
}

/// VCL's and LDP's descriptors in this process, as last looked up: the
/// process, its number of VCL workers and the sorted list.
static VCL_FDS: Mutex<(i32, u32, Vec<c_int>)> = Mutex::new((0, 0, Vec::new()));

/// Is `fd` one of VCL's or LDP's descriptors ([`worker_fds`], looked up again
/// when the process or its number of VCL workers changed)? False before
/// the app exists, and when another call of this thread holds the list
/// (a signal handler's `close`): never waits.
fn is_vcl_descriptor(fd: c_int) -> bool {
    // Standard input, output and error are the program's to close, even
    // when VCL got one of their numbers (a program started with standard
    // input closed: dropbear, daemonising, closes and reopens 0 to 2, and
    // its pseudo-terminals broke while the layer kept 0 open).
    let Some(v) = vls_if_made().filter(|v| fd > 2 && v.is_app_created()) else { return false };
    // SAFETY: the shim reads VCL's pool size.
    let (pid, workers) = (v.process_pid(), unsafe { vpp_sys::vppsys_n_workers() });
    let Ok(mut known) = VCL_FDS.try_lock() else { return false };
    if known.0 != pid || known.1 != workers {
        *known = (pid, workers, worker_fds());
    }
    known.2.binary_search(&fd).is_ok()
}

/// `Some(close's result)` if `fd` is at or above LDP's base and names no
/// VPP session (closed here, see the module); `None` for LDP to handle.
fn close_if_no_session(fd: c_int) -> Option<c_int> {
    // (No layer yet: LDP's `close` would create it to look the number up.)
    let vlsh = ldp_vlsh(fd)?;
    // A live slot, open or orphaned, is LDP's (`vls_close` frees it).
    (!vls_if_made()?.has_session(vlsh)).then(|| sys_close(fd))
}

/// The kernel's `close` (libc's is LDP's, which would take a number at or
/// above its base for a VPP session): 0, or -1 with `errno` set.
fn sys_close(fd: c_int) -> c_int {
    // SAFETY: plain system call with an integer argument; the caller's
    // caller gives up `fd`.
    unsafe { libc::syscall(libc::SYS_close, fd) as c_int }
}

/// The kernel's `close_range`.
fn sys_close_range(first: c_uint, last: c_uint, flags: c_uint) -> c_int {
    // SAFETY: plain system call with integer arguments.
    unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) as c_int }
}

/// `close_range` without VCL's and LDP's descriptors (see the module).
///
/// # Safety
/// As `close_range(2)`: the caller gives up the descriptors it closes.
#[no_mangle]
pub unsafe extern "C" fn vls_preload_close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let flags = flags as c_uint;
    if first > last || flags & CLOSE_RANGE_CLOEXEC != 0 {
        return sys_close_range(first, last, flags);
    }
    let keep = kept_fds();
    let parts = pieces(first, last, &keep);
    if parts.len() == 1 && parts[0] == (first, last) {
        return sys_close_range(first, last, flags);
    }
    tracing::debug!(first, last, kept = ?keep, "close_range keeps VCL's descriptors open");
    let mut unshare = flags & CLOSE_RANGE_UNSHARE;
    if parts.is_empty() && unshare != 0 {
        // SAFETY: plain system call; gives this thread a table of its own.
        if unsafe { libc::unshare(libc::CLONE_FILES) } != 0 {
            return -1;
        }
    }
    for (a, b) in parts {
        let rv = sys_close_range(a, b, (flags & !CLOSE_RANGE_UNSHARE) | unshare);
        if rv != 0 {
            return rv;
        }
        unshare = 0;
    }
    0
}

/// `closefrom` without VCL's and LDP's descriptors (see the module).
///
/// # Safety
/// As `closefrom(3)`: the caller gives up the descriptors it closes.
#[no_mangle]
pub unsafe extern "C" fn vls_preload_closefrom(low: c_int) {
    let low = low.max(0) as c_uint;
    // SAFETY: forwarded contract.
    if unsafe { vls_preload_close_range(low, c_uint::MAX, 0) } == 0 {
        return;
    }
    // No `close_range` (kernels before 5.9): what is open, one by one.
    let keep = kept_fds();
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        // As glibc: nothing else can be done safely.
        std::process::abort();
    };
    let open: Vec<c_int> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    for fd in open {
        if fd >= low as c_int && keep.binary_search(&fd).is_err() {
            sys_close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_descriptors_split_the_range() {
        assert_eq!(pieces(3, 100, &[]), vec![(3, 100)]);
        assert_eq!(pieces(3, 100, &[1, 2, 200]), vec![(3, 100)], "outside the range");
        assert_eq!(pieces(3, 100, &[5, 9]), vec![(3, 4), (6, 8), (10, 100)]);
        assert_eq!(pieces(3, 100, &[3, 4, 100]), vec![(5, 99)], "at both ends");
        assert_eq!(pieces(3, 3, &[3]), vec![], "nothing left");
        assert_eq!(pieces(3, c_uint::MAX, &[7]), vec![(3, 6), (8, c_uint::MAX)]);
        assert_eq!(pieces(0, 10, &[-1, 0]), vec![(1, 10)], "negative numbers are no descriptors");
    }
}
