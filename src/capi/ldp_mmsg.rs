//! `sendmmsg` in front of LDP's, which fails on every VPP session.
//!
//! LDP answers `sendmmsg` on a VPP session with `ENOSYS` (its
//! implementation is a to-do), while its `sendmsg` works. libuv sends UDP
//! datagrams with `sendmmsg` whenever it can, so a libuv program (BIND's
//! `dig` and `host`, Node.js' `dgram`) never got a datagram out through
//! VPP: the send failed and the program timed out waiting for the answer.
//!
//! Here, for a descriptor LDP gives a VPP session, `sendmmsg` sends the
//! messages one by one with `sendmsg` (LDP's, as the program would), as
//! the kernel does: it stops at the first failure, returns how many went
//! out, or -1 with the failure's `errno` if none did, and sets each sent
//! message's `msg_len`. Other descriptors go to the next `sendmmsg` (LDP's,
//! which passes them to libc). LDP's `recvmmsg` works and is left alone.
//!
//! `libvls.so` exports it as `sendmmsg` (an alias the build script adds to
//! the cdylib only, as for `epoll_wait`).

use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::AtomicPtr;

use super::ldp_poll::ldp_base_if_active;
use super::ldp_wait::next_fn;
use crate::errno::set_errno;
use crate::handle::{Vlsh, INVALID};
use crate::process::vls_if_made;

type SendmmsgFn = unsafe extern "C" fn(c_int, *mut libc::mmsghdr, c_uint, c_int) -> c_int;
type SendmsgFn = unsafe extern "C" fn(c_int, *const libc::msghdr, c_int) -> isize;

/// Whether `fd` is a descriptor LDP gives a VPP session of this process
/// (the same reading of LDP's range as `poll`'s, `ldp_poll.rs`).
pub(super) fn is_vpp_session(fd: c_int) -> bool {
    ldp_vlsh(fd).is_some_and(|vlsh| vls_if_made().is_some_and(|v| v.vlsh_to_sh(vlsh) != INVALID))
}

/// The VLS handle LDP takes descriptor `fd` for (`fd - 2^LDP_SID_BIT`), if
/// LDP is preloaded, VLS exists and `fd` is in LDP's range; whether a
/// session has that handle is the caller's question.
pub(super) fn ldp_vlsh(fd: c_int) -> Option<Vlsh> {
    let vlsh = Vlsh::try_from(i64::from(fd) - ldp_base_if_active()?).ok()?;
    (vlsh >= 0).then_some(vlsh)
}

/// `sendmmsg(fd, msgs, vlen, flags)` (see the module's documentation).
///
/// # Safety
/// As `sendmmsg`: `msgs` is valid for `vlen` entries (it may be anything
/// when `vlen` is 0).
#[no_mangle]
pub unsafe extern "C" fn vls_preload_sendmmsg(
    fd: c_int,
    msgs: *mut libc::mmsghdr,
    vlen: c_uint,
    flags: c_int,
) -> c_int {
    static NEXT_SENDMMSG: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    static NEXT_SENDMSG: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    if !is_vpp_session(fd) {
        // SAFETY: `SendmmsgFn` is `sendmmsg`'s C signature.
        let Some(next) = (unsafe { next_fn::<SendmmsgFn>(&NEXT_SENDMMSG, b"sendmmsg\0") }) else { return -1 };
        // SAFETY: the next `sendmmsg` (LDP's or libc's), with the caller's
        // arguments (their contract).
        return unsafe { next(fd, msgs, vlen, flags) };
    }
    // SAFETY: `SendmsgFn` is `sendmsg`'s C signature.
    let Some(sendmsg) = (unsafe { next_fn::<SendmsgFn>(&NEXT_SENDMSG, b"sendmsg\0") }) else { return -1 };
    // The kernel caps a call at UIO_MAXIOV messages.
    let vlen = vlen.min(1024);
    if msgs.is_null() && vlen > 0 {
        set_errno(libc::EFAULT);
        return -1;
    }
    let mut sent: c_uint = 0;
    while sent < vlen {
        // SAFETY: `msgs` is valid for `vlen` entries (caller's contract).
        let m = unsafe { &mut *msgs.add(sent as usize) };
        // SAFETY: the message is the caller's (valid by contract).
        let rv = unsafe { sendmsg(fd, &m.msg_hdr, flags) };
        if rv < 0 {
            if sent == 0 {
                return -1;
            }
            // As the kernel: the count of those sent; the error shows in
            // the program's next call.
            break;
        }
        m.msg_len = rv as c_uint;
        sent += 1;
    }
    sent as c_int
}
