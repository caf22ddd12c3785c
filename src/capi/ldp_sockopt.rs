//! `setsockopt` in front of LDP's, which refuses options that are only
//! hints.
//!
//! LDP answers `EOPNOTSUPP` for every socket option it does not map to
//! VCL. Some of them only tune what the kernel would do anyway, and a
//! program that checks the answer gives up: h2o's listener setup fails
//! on `TCP_DEFER_ACCEPT` ("failed to listen to port ... Operation not
//! supported"), with either layer. Here, for a descriptor LDP gives a VPP
//! session, such hints are accepted and do nothing:
//!
//! - `TCP_DEFER_ACCEPT`: wake the listener only once data arrived (VPP's
//!   accept comes at once; the application then reads `EAGAIN` at worst);
//! - `TCP_QUICKACK`: VPP's TCP acknowledges as it does;
//! - `SO_SNDBUF`, `SO_RCVBUF`: VPP's FIFOs have the sizes `vcl.conf` gives
//!   (the kernel too rounds and caps these sizes);
//! - `IP_MTU_DISCOVER`: VPP does no path MTU discovery for a session
//!   (unbound gives up opening its ports when this fails).
//!
//! Everything else goes to the next `setsockopt` (LDP's, which maps what it
//! knows and passes other descriptors to libc). An option value shorter
//! than an `int` is refused with `EINVAL`, as the kernel does.
//!
//! `libvls.so` exports it as `setsockopt` (an alias the build script adds
//! to the cdylib only, as for `epoll_wait`).

use std::ffi::{c_int, c_void};
use std::sync::atomic::AtomicPtr;

use super::ldp_mmsg::is_vpp_session;
use super::ldp_wait::next_fn;
use crate::errno::set_errno;

type SetsockoptFn = unsafe extern "C" fn(c_int, c_int, c_int, *const c_void, libc::socklen_t) -> c_int;

/// Options accepted without effect on a VPP session (see the module docs).
fn is_hint(level: c_int, optname: c_int) -> bool {
    matches!(
        (level, optname),
        (libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT)
            | (libc::IPPROTO_TCP, libc::TCP_QUICKACK)
            | (libc::SOL_SOCKET, libc::SO_SNDBUF)
            | (libc::SOL_SOCKET, libc::SO_RCVBUF)
            | (libc::IPPROTO_IP, libc::IP_MTU_DISCOVER)
    )
}

/// `setsockopt(fd, level, optname, optval, optlen)` (see the module's
/// documentation).
///
/// # Safety
/// As `setsockopt`: `optval` valid for `optlen` bytes.
#[no_mangle]
pub unsafe extern "C" fn vls_preload_setsockopt(
    fd: c_int,
    level: c_int,
    optname: c_int,
    optval: *const c_void,
    optlen: libc::socklen_t,
) -> c_int {
    if is_hint(level, optname) && is_vpp_session(fd) {
        if optval.is_null() || (optlen as usize) < std::mem::size_of::<c_int>() {
            set_errno(if optval.is_null() { libc::EFAULT } else { libc::EINVAL });
            return -1;
        }
        return 0;
    }
    static NEXT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    // SAFETY: `SetsockoptFn` is `setsockopt`'s C signature.
    let Some(next) = (unsafe { next_fn::<SetsockoptFn>(&NEXT, b"setsockopt\0") }) else { return -1 };
    // SAFETY: the next `setsockopt` (LDP's or libc's), with the caller's
    // arguments (their contract).
    unsafe { next(fd, level, optname, optval, optlen) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_options_are_hints() {
        assert!(is_hint(libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT));
        assert!(is_hint(libc::SOL_SOCKET, libc::SO_RCVBUF));
        assert!(is_hint(libc::IPPROTO_IP, libc::IP_MTU_DISCOVER));
        assert!(!is_hint(libc::IPPROTO_TCP, libc::TCP_NODELAY), "LDP maps it to VCL");
        assert!(!is_hint(libc::SOL_SOCKET, libc::SO_REUSEADDR), "LDP maps it to VCL");
        assert!(!is_hint(libc::SOL_SOCKET, libc::TCP_DEFER_ACCEPT), "the level counts");
    }

    #[test]
    fn other_descriptors_reach_the_kernel() {
        // Not under LDP here: a kernel socket's option is the kernel's.
        // SAFETY: plain socket calls on a local descriptor.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let size: c_int = 65536;
            let p = (&size as *const c_int).cast();
            assert_eq!(vls_preload_setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, p, 4), 0);
            let mut got: c_int = 0;
            let mut len: libc::socklen_t = 4;
            assert_eq!(
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUF,
                    (&mut got as *mut c_int).cast(),
                    &mut len
                ),
                0
            );
            assert_eq!(got, 2 * 65536, "the kernel applied (and doubled) it");
            libc::close(fd);
        }
    }
}
