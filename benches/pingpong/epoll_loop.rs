//! The ping-pong benchmark's `1e` variant: one thread's event loop as LDP
//! runs it for a single-threaded server (LDP's `epoll_wait` sequence with
//! `use-mq-eventfd`, then read, write and `EPOLL_CTL_MOD` of the session
//! it returns), through one layer's C functions ([`Api`]).

use std::ffi::{c_int, c_void};
use std::time::{Duration, Instant};

use vls::ffi;

use super::layers::Api;
use super::{ITERS, MSG, ROUNDS, WARMUP};

/// Token of the measured session in the epoll variant.
const TOKEN: u64 = 0x5eed;
/// Bytes the epoll variant keeps queued for reading (the echo server
/// returns what the loop writes, so the level stays about the same).
const PRELOAD: usize = 256 * 1024;

/// What LDP's `epoll_wait` does with `use-mq-eventfd` (`ldp.c`,
/// `ldp_epoll_pwait_eventfd`), call for call: the layer's drain-only wait
/// (-2); a libc `epoll_wait` on the set's libc epoll fd (timeout 0 if the
/// drain found events), which holds VCL's message-queue fd tagged with its
/// own number; and for that fd, the layer's wait with timeout 0. One retry
/// when VCL woke it without events.
///
/// # Safety
/// `evs` is valid for `max` events; `ep` is a set of `api`'s layer.
unsafe fn ldp_epoll_wait(
    api: &Api,
    ep: i32,
    libc_epfd: i32,
    mq_fd: i32,
    evs: &mut [libc::epoll_event],
    mut timeout: c_int,
) -> i32 {
    let mut max = evs.len() as c_int;
    // SAFETY: `evs` is valid for `max` events.
    let mut rv = unsafe { (api.epoll_wait)(ep, evs.as_mut_ptr(), max, -2.0) };
    if rv > 0 {
        timeout = 0;
        if rv >= max {
            return rv;
        }
        max -= rv;
    } else if rv < 0 {
        return rv;
    }
    let mut woken_empty = 0;
    loop {
        let libc_evts = &mut evs[rv as usize..];
        // SAFETY: `libc_evts` is valid for `max` events.
        let mut n = unsafe { libc::epoll_wait(libc_epfd, libc_evts.as_mut_ptr(), max, timeout) };
        if n <= 0 {
            return rv;
        }
        let mut again = false;
        for i in 0..n as usize {
            if libc_evts[i].u64 as u32 as i32 == mq_fd {
                n -= 1;
                libc_evts[i] = libc_evts[n as usize];
                // SAFETY: the rest of `libc_evts` is valid for `max - n` events.
                let k = unsafe { (api.epoll_wait)(ep, libc_evts[n as usize..].as_mut_ptr(), max - n, 0.0) };
                if k > 0 {
                    rv += k;
                }
                again = rv == 0 && n == 0 && timeout != 0 && {
                    woken_empty += 1;
                    woken_empty <= 1
                };
                break;
            }
        }
        if !again {
            return rv + n;
        }
    }
}

/// Best of `ROUNDS` runs of [`epoll_loop_once`].
pub fn epoll_loop(api: Api, h: i32) -> f64 {
    // The set and its libc epoll fd, made as LDP makes them.
    // SAFETY: plain calls; `ev` is valid during the call.
    let (ep, libc_epfd, mq_fd) = unsafe {
        let ep = (api.epoll_create)();
        assert!(ep >= 0, "epoll_create {ep}");
        let libc_epfd = libc::epoll_create1(libc::EPOLL_CLOEXEC);
        assert!(libc_epfd > 0);
        assert_eq!((api.set_libc_epfd)(ep, libc_epfd), 0);
        let mq_fd = ffi::vppcom_mq_epoll_fd();
        assert!(mq_fd >= 0, "VCL without use-mq-eventfd");
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: mq_fd as u64 };
        assert_eq!(libc::epoll_ctl(libc_epfd, libc::EPOLL_CTL_ADD, mq_fd, &mut ev), 0);
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: TOKEN };
        assert_eq!((api.epoll_ctl)(ep, libc::EPOLL_CTL_ADD, h, &mut ev), 0);
        (ep, libc_epfd, mq_fd)
    };
    preload(&api, h);
    let rounds = if std::env::var_os("BENCH_ONE_ROUND").is_some() { 1 } else { ROUNDS };
    (0..rounds).map(|_| epoll_loop_once(api, h, ep, libc_epfd, mq_fd)).fold(f64::INFINITY, f64::min)
}

/// Writes [`PRELOAD`] bytes and waits until the echo server has returned
/// them, so the session stays readable throughout the measured loop.
fn preload(api: &Api, h: i32) {
    let chunk = [1u8; 4096];
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while sent < PRELOAD {
        // SAFETY: valid buffer.
        let n = unsafe { (api.write)(h, chunk.as_ptr() as *mut c_void, chunk.len()) };
        if n > 0 {
            sent += n as usize;
        }
        assert!(Instant::now() < deadline, "preload: cannot write");
    }
    loop {
        // SAFETY: NREAD needs no buffer.
        let queued =
            unsafe { (api.attr)(h, ffi::VPPCOM_ATTR_GET_NREAD, std::ptr::null_mut(), std::ptr::null_mut()) };
        if queued as usize >= PRELOAD {
            return;
        }
        assert!(Instant::now() < deadline, "preload: {queued} of {PRELOAD} bytes came back");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// One thread's event loop, as a single-threaded server under LDP runs
/// it: `epoll_wait` (LDP's sequence) returns the session, the loop reads 64
/// bytes, writes 64 bytes and re-arms the session (`EPOLL_CTL_MOD`).
/// Returns ns per iteration; fails if an iteration finds no event (the
/// session is always readable, so a miss is a lost or late event).
#[inline(never)]
fn epoll_loop_once(api: Api, h: i32, ep: i32, libc_epfd: i32, mq_fd: i32) -> f64 {
    let mut out = [7u8; MSG];
    let mut inb = [0u8; MSG];
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
    let mut misses = 0u64;
    let mut iteration = || {
        // SAFETY: valid buffers; `ep` is this layer's set.
        unsafe {
            let n = ldp_epoll_wait(&api, ep, libc_epfd, mq_fd, &mut evs, 1000);
            let mut seen = false;
            for e in &evs[..n.max(0) as usize] {
                if e.u64 == TOKEN && e.events & libc::EPOLLIN as u32 != 0 {
                    seen = true;
                }
            }
            if !seen {
                misses += 1;
                return;
            }
            std::hint::black_box((api.read)(h, inb.as_mut_ptr().cast(), MSG));
            std::hint::black_box((api.write)(h, out.as_mut_ptr().cast(), MSG));
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: TOKEN };
            std::hint::black_box((api.epoll_ctl)(ep, libc::EPOLL_CTL_MOD, h, &mut ev));
        }
    };
    for _ in 0..WARMUP {
        iteration();
    }
    let t = Instant::now();
    for _ in 0..ITERS {
        iteration();
    }
    let ns = t.elapsed().as_nanos() as f64 / ITERS as f64;
    assert!(misses * 1000 < ITERS, "{misses} iterations found no event for an always-readable session");
    ns
}
