//! `select` and `pselect` in front of LDP's, as a `poll` of the same
//! descriptors.
//!
//! LDP's `select` loops exactly as its `poll` does (zero waits until
//! something is ready or the time is up: a core kept busy for the whole
//! wait, and a signal that does not end it; see `ldp_poll`). Here, under
//! LDP, a `select` whose sets may hold a VPP session (`nfds` above LDP's
//! base) becomes a `poll` of the descriptors in its sets, which
//! `ldp_poll` answers (sleeping between looks, ending on a signal), and the
//! answer is written back into the sets as the kernel's `select` would:
//! readable for `POLLIN`, `POLLHUP` or `POLLERR`; writable for `POLLOUT` or
//! `POLLERR`; exceptional for `POLLPRI`; -1 with `EBADF` for a descriptor
//! that is neither a session nor open. `select` leaves the time not slept
//! in its timeout, as Linux does. Other sets go straight to the kernel.
//!
//! `libvls.so` exports the two as `select` and `pselect` (aliases the
//! build script adds to the cdylib only).

use std::ffi::{c_int, c_short};
use std::time::{Duration, Instant};

use super::ldp_poll::{ldp_base_if_active, limit_of_timespec, poll_slice};
use crate::errno::set_errno;

/// Whether `fd` is in `set` (null: no set).
///
/// # Safety
/// `set` null or valid.
unsafe fn is_set(set: *const libc::fd_set, fd: c_int) -> bool {
    // SAFETY: `set` is valid (caller), `fd` below FD_SETSIZE (callers check nfds).
    !set.is_null() && unsafe { libc::FD_ISSET(fd, set) }
}

/// `select` over the first `nfds` descriptors of the sets (each null or
/// valid), answered by `poll` (a `poll(2)` over the entries it is given).
///
/// # Safety
/// Each set null or valid; `nfds` at most `FD_SETSIZE`.
unsafe fn select_by_poll(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    poll: impl FnOnce(&mut [libc::pollfd]) -> c_int,
) -> c_int {
    let mut fds = Vec::new();
    for fd in 0..nfds {
        // SAFETY: forwarded contract.
        let asked = unsafe { [is_set(r, fd), is_set(w, fd), is_set(e, fd)] };
        let events = [libc::POLLIN, libc::POLLOUT, libc::POLLPRI]
            .iter()
            .zip(asked)
            .filter(|(_, a)| *a)
            .fold(0 as c_short, |acc, (ev, _)| acc | ev);
        if events != 0 {
            fds.push(libc::pollfd { fd, events, revents: 0 });
        }
    }
    let rv = poll(&mut fds);
    if rv < 0 {
        return rv;
    }
    if fds.iter().any(|p| p.revents & libc::POLLNVAL != 0) {
        set_errno(libc::EBADF);
        return -1;
    }
    let mut bits = 0;
    let answers = [
        (r, libc::POLLIN | libc::POLLHUP | libc::POLLERR),
        (w, libc::POLLOUT | libc::POLLERR),
        (e, libc::POLLPRI),
    ];
    for (set, ready) in answers {
        if set.is_null() {
            continue;
        }
        for p in &fds {
            // SAFETY: `set` is valid (caller) and `p.fd` below `nfds`.
            unsafe {
                if libc::FD_ISSET(p.fd, set) {
                    if p.revents & ready != 0 {
                        bits += 1;
                    } else {
                        libc::FD_CLR(p.fd, set);
                    }
                }
            }
        }
    }
    bits
}

/// Under LDP with a possible session in the sets: [`select_by_poll`]
/// through `ldp_poll`; else `kernel()`.
///
/// # Safety
/// Each set null or valid.
unsafe fn select_as_the_kernel(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    timeout: Option<Duration>,
    sigmask: *const libc::sigset_t,
    kernel: impl FnOnce() -> c_int,
) -> c_int {
    let Some(base) = ldp_base_if_active() else { return kernel() };
    if !(0..=libc::FD_SETSIZE as c_int).contains(&nfds) || i64::from(nfds) <= base {
        return kernel();
    }
    // SAFETY: forwarded contract; `nfds` checked above.
    unsafe { select_by_poll(nfds, r, w, e, |fds| poll_slice(fds, timeout, sigmask)) }
}

/// `select(2)`, with LDP's sessions (see the module docs); `libvls.so`
/// exports it as `select`.
///
/// # Safety
/// As `select(2)`: each set and `timeout` null or valid.
#[no_mangle]
pub unsafe extern "C" fn vls_preload_select(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    timeout: *mut libc::timeval,
) -> c_int {
    let limit = if timeout.is_null() {
        None
    } else {
        // SAFETY: the caller's contract.
        let tv = unsafe { *timeout };
        let ts = libc::timespec {
            tv_sec: tv.tv_sec,
            tv_nsec: if (0..1_000_000).contains(&tv.tv_usec) { tv.tv_usec * 1000 } else { -1 },
        };
        // SAFETY: a local timespec.
        let Ok(limit) = (unsafe { limit_of_timespec(&ts) }) else { return -1 };
        limit
    };
    let start = Instant::now();
    // SAFETY: forwarded contract.
    let rv = unsafe {
        select_as_the_kernel(nfds, r, w, e, limit, std::ptr::null(), || {
            libc::syscall(libc::SYS_select, nfds, r, w, e, timeout) as c_int
        })
    };
    if let (Some(limit), false) = (limit, timeout.is_null()) {
        // What was not slept, as Linux leaves it (the kernel path already did).
        let left = limit.saturating_sub(start.elapsed());
        // SAFETY: the caller's contract.
        unsafe {
            (*timeout).tv_sec = left.as_secs() as libc::time_t;
            (*timeout).tv_usec = left.subsec_micros() as libc::suseconds_t;
        }
    }
    rv
}

/// `pselect(2)`, with LDP's sessions (see the module docs); `libvls.so`
/// exports it as `pselect`.
///
/// # Safety
/// As `pselect(2)`: each set, `timeout` and `sigmask` null or valid.
#[no_mangle]
pub unsafe extern "C" fn vls_preload_pselect(
    nfds: c_int,
    r: *mut libc::fd_set,
    w: *mut libc::fd_set,
    e: *mut libc::fd_set,
    timeout: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    // SAFETY: forwarded contract.
    let Ok(limit) = (unsafe { limit_of_timespec(timeout) }) else { return -1 };
    // SAFETY: forwarded contract.
    unsafe {
        select_as_the_kernel(nfds, r, w, e, limit, sigmask, || {
            // The kernel's pselect6 takes the mask as (pointer, size); its
            // timeout may be updated, so it gets a copy.
            let mut ts = limit.map(|l| libc::timespec {
                tv_sec: l.as_secs() as libc::time_t,
                tv_nsec: l.subsec_nanos() as libc::c_long,
            });
            let ts_ptr = ts.as_mut().map_or(std::ptr::null_mut(), |t| t as *mut libc::timespec);
            let mask = [sigmask as usize, 8usize];
            let mask_ptr = if sigmask.is_null() { std::ptr::null() } else { mask.as_ptr() };
            libc::syscall(libc::SYS_pselect6, nfds, r, w, e, ts_ptr, mask_ptr) as c_int
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_of(fds: &[c_int]) -> libc::fd_set {
        // SAFETY: an all-zero fd_set is empty; FD_SET on it with small fds.
        unsafe {
            let mut s: libc::fd_set = std::mem::zeroed();
            for &fd in fds {
                libc::FD_SET(fd, &mut s);
            }
            s
        }
    }

    fn members(s: &libc::fd_set, nfds: c_int) -> Vec<c_int> {
        // SAFETY: `s` is a valid set, `fd` below FD_SETSIZE.
        (0..nfds).filter(|&fd| unsafe { libc::FD_ISSET(fd, s) }).collect()
    }

    #[test]
    fn the_sets_become_poll_entries_and_the_answer_goes_back_into_them() {
        let (mut r, mut w, mut e) = (set_of(&[3, 40, 41]), set_of(&[40, 42]), set_of(&[41]));
        let mut asked = Vec::new();
        // SAFETY: valid sets, nfds 64 < FD_SETSIZE.
        let rv = unsafe {
            select_by_poll(64, &mut r, &mut w, &mut e, |fds| {
                asked = fds.iter().map(|p| (p.fd, p.events)).collect();
                for p in fds.iter_mut() {
                    p.revents = match p.fd {
                        40 => libc::POLLIN | libc::POLLOUT,
                        41 => libc::POLLHUP,
                        _ => 0,
                    };
                }
                2
            })
        };
        assert_eq!(
            asked,
            vec![
                (3, libc::POLLIN),
                (40, libc::POLLIN | libc::POLLOUT),
                (41, libc::POLLIN | libc::POLLPRI),
                (42, libc::POLLOUT)
            ]
        );
        // 40 readable and writable, 41 readable (end of file), not exceptional.
        assert_eq!(rv, 3);
        assert_eq!((members(&r, 64), members(&w, 64), members(&e, 64)), (vec![40, 41], vec![40], vec![]));
    }

    #[test]
    fn a_closed_descriptor_is_ebadf_and_errors_pass_through() {
        let mut r = set_of(&[5]);
        // SAFETY: valid set, nfds 8.
        let rv = unsafe {
            select_by_poll(8, &mut r, std::ptr::null_mut(), std::ptr::null_mut(), |fds| {
                fds[0].revents = libc::POLLNVAL;
                1
            })
        };
        assert_eq!((rv, crate::errno::errno()), (-1, libc::EBADF));
        // SAFETY: as above.
        let rv = unsafe {
            select_by_poll(8, &mut r, std::ptr::null_mut(), std::ptr::null_mut(), |_| {
                set_errno(libc::EINTR);
                -1
            })
        };
        assert_eq!((rv, crate::errno::errno()), (-1, libc::EINTR));
    }
}
