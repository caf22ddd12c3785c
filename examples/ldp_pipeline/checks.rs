//! The LDP check subcommands, each a short probe that prints one line for
//! the tests to parse: `close-kernel-fd` (LDP's descriptor split),
//! `wait-check` (`epoll_wait` timeouts and signals), `poll-check` (`poll`,
//! `ppoll` and `select`) and `closefrom-check` (`closefrom`, `close_range`).

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::sys::{check, connect_blocking, errno, read_exact_blocking, sockaddr, write_all_blocking};

/// LDP's descriptor split: makes a socket (under LDP the first VPP
/// session: descriptor `2^LDP_SID_BIT`), then opens `/dev/null` until the
/// kernel hands out descriptor `want`, and closes it, as a program closing
/// a file it served would. Under LDP with `2^LDP_SID_BIT == want` the
/// close goes to the VPP session. Prints what it did; exits 0.
pub fn close_kernel_fd(want: i32) {
    // SAFETY: plain libc calls on descriptors this function owns.
    unsafe {
        let s = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
        let mut opened = Vec::new();
        let fd = loop {
            let fd = check(libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY), "open /dev/null");
            opened.push(fd);
            if fd >= want || opened.len() > 4096 {
                break fd;
            }
        };
        println!("ldp_pipeline: socket {s}, kernel descriptor {fd}");
        let rv = libc::close(fd);
        println!("ldp_pipeline: close({fd}) = {rv}");
    }
}

extern "C" fn on_alarm(_: i32) {}

/// SIGALRM in 200 ms, to a handler that does nothing (no `SA_RESTART`:
/// the call it interrupts returns `EINTR`).
fn alarm_in_200ms() {
    // SAFETY: installs a handler that does nothing and arms a one-shot timer.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_alarm as extern "C" fn(i32) as usize;
        check(libc::sigaction(libc::SIGALRM, &sa, std::ptr::null_mut()), "sigaction");
        let it = libc::itimerval {
            it_interval: libc::timeval { tv_sec: 0, tv_usec: 0 },
            it_value: libc::timeval { tv_sec: 0, tv_usec: 200_000 },
        };
        check(libc::setitimer(libc::ITIMER_REAL, &it, std::ptr::null_mut()), "setitimer");
    }
}

/// The kernel's answers of `epoll_wait`, under LDP, while VCL is woken by
/// messages that give the set no event. Connects to the echo server at
/// `addr` (`ldp_pipeline server`), writes 1 MiB there and, without reading
/// the echo (the connection is in no epoll set), waits 1 s on an empty
/// epoll set: every chunk of echo that arrives wakes the wait. Then a wait
/// of 3 s with a signal (SIGALRM, no `SA_RESTART`) after 200 ms. Prints
/// `wait-check: timeout <rv> after <ms> ms; signal <rv> errno <e> after <ms> ms`.
pub fn wait_check(addr: SocketAddrV4) {
    let s = connect_blocking(addr);
    write_all_blocking(s, &vec![7u8; 1 << 20]);
    // SAFETY: plain libc calls on descriptors this function owns; the
    // handler does nothing; `evs` is valid for 8 events.
    unsafe {
        let ep = check(libc::epoll_create1(0), "epoll_create1");
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        let t0 = Instant::now();
        let rv = libc::epoll_wait(ep, evs.as_mut_ptr(), 8, 1000);
        let timeout_ms = t0.elapsed().as_millis();
        alarm_in_200ms();
        let t1 = Instant::now();
        let srv = libc::epoll_wait(ep, evs.as_mut_ptr(), 8, 3000);
        let e = if srv < 0 { errno() } else { 0 };
        println!(
            "wait-check: timeout {rv} after {timeout_ms} ms; signal {srv} errno {e} after {} ms",
            t1.elapsed().as_millis()
        );
    }
}

/// CPU time of the calling thread so far.
fn thread_cpu() -> Duration {
    // SAFETY: `ts` is valid for the call.
    let ts = unsafe {
        let mut ts = std::mem::zeroed::<libc::timespec>();
        check(libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts), "clock_gettime");
        ts
    };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// `poll` and `ppoll` on a connection (under LDP: a VPP session) to an
/// echo server: a 1 s `poll` with nothing to read (its result, wall and
/// CPU time), then (unless `no-signal`) a `poll` without timeout that a
/// signal (SIGALRM, no `SA_RESTART`) interrupts after 200 ms, then a byte
/// sent and a `poll` for its echo, then a 200 ms `ppoll`; then the same
/// with `select` ([`select_check`]). Prints
/// `poll-check: timeout <rv> after <ms> ms cpu <ms> ms; signal <rv> errno <e> after <ms> ms;
/// echo <rv> revents <r> after <ms> ms; ppoll <rv> errno <e> after <ms> ms`.
pub fn poll_check(addr: SocketAddrV4, with_signal: bool) {
    let s = connect_blocking(addr);
    let mut fds = [libc::pollfd { fd: s, events: libc::POLLIN, revents: 0 }];
    // SAFETY: plain libc calls on a descriptor this function owns and on
    // `fds`, valid for one entry; the handler does nothing.
    unsafe {
        let (t0, c0) = (Instant::now(), thread_cpu());
        let rv = libc::poll(fds.as_mut_ptr(), 1, 1000);
        let (timeout_ms, cpu_ms) = (t0.elapsed().as_millis(), (thread_cpu() - c0).as_millis());
        let (mut srv, mut e, mut signal_ms) = (0, 0, 0);
        if with_signal {
            alarm_in_200ms();
            let t1 = Instant::now();
            srv = libc::poll(fds.as_mut_ptr(), 1, -1);
            e = if srv < 0 { errno() } else { 0 };
            signal_ms = t1.elapsed().as_millis();
        }
        write_all_blocking(s, &[42u8]);
        let t2 = Instant::now();
        let erv = libc::poll(fds.as_mut_ptr(), 1, 5000);
        let echo_ms = t2.elapsed().as_millis();
        let revents = fds[0].revents;
        let mut byte = [0u8; 1];
        read_exact_blocking(s, &mut byte);
        let ts = libc::timespec { tv_sec: 0, tv_nsec: 200_000_000 };
        let t3 = Instant::now();
        let prv = libc::ppoll(fds.as_mut_ptr(), 1, &ts, std::ptr::null());
        let pe = if prv < 0 { errno() } else { 0 };
        println!(
            "poll-check: timeout {rv} after {timeout_ms} ms cpu {cpu_ms} ms; signal {srv} errno {e} after {signal_ms} ms; \
             echo {erv} revents {revents} after {echo_ms} ms; ppoll {prv} errno {pe} after {} ms",
            t3.elapsed().as_millis()
        );
        select_check(s, with_signal);
    }
}

/// The `select` part of [`poll_check`] on connection `s`: a 300 ms select
/// with nothing to read, one without timeout that SIGALRM interrupts after
/// 200 ms (unless `with_signal` is false), and one for the echo of a byte.
/// Prints `select-check: timeout <rv> after <ms> ms cpu <ms> ms; signal <rv>
/// errno <e> after <ms> ms; echo <rv> isset <0|1> after <ms> ms`.
fn select_check(s: i32, with_signal: bool) {
    // SAFETY: plain libc calls on a descriptor the caller owns and on
    // local sets and timevals.
    unsafe {
        let only_s = || {
            let mut set: libc::fd_set = std::mem::zeroed();
            libc::FD_SET(s, &mut set);
            set
        };
        let mut set = only_s();
        let mut tv = libc::timeval { tv_sec: 0, tv_usec: 300_000 };
        let (t0, c0) = (Instant::now(), thread_cpu());
        let rv = libc::select(s + 1, &mut set, std::ptr::null_mut(), std::ptr::null_mut(), &mut tv);
        let (timeout_ms, cpu_ms) = (t0.elapsed().as_millis(), (thread_cpu() - c0).as_millis());
        let (mut srv, mut e, mut signal_ms) = (0, 0, 0);
        if with_signal {
            alarm_in_200ms();
            let mut set = only_s();
            let t1 = Instant::now();
            srv = libc::select(
                s + 1,
                &mut set,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            e = if srv < 0 { errno() } else { 0 };
            signal_ms = t1.elapsed().as_millis();
        }
        write_all_blocking(s, &[43u8]);
        let mut set = only_s();
        let mut tv = libc::timeval { tv_sec: 5, tv_usec: 0 };
        let t2 = Instant::now();
        let erv = libc::select(s + 1, &mut set, std::ptr::null_mut(), std::ptr::null_mut(), &mut tv);
        let echo_ms = t2.elapsed().as_millis();
        let isset = libc::FD_ISSET(s, &set) as i32;
        let mut byte = [0u8; 1];
        read_exact_blocking(s, &mut byte);
        println!(
            "select-check: timeout {rv} after {timeout_ms} ms cpu {cpu_ms} ms; signal {srv} errno {e} after {signal_ms} ms; \
             echo {erv} isset {isset} after {echo_ms} ms"
        );
    }
}

extern "C" {
    /// glibc's (2.34 and later).
    fn closefrom(lowfd: libc::c_int);
    /// glibc's (2.34 and later).
    fn close_range(first: libc::c_uint, last: libc::c_uint, flags: libc::c_int) -> libc::c_int;
}

/// One byte through the echo server on `s`, waiting at most 3 s for the
/// echo: 1 if it came back, 0 if not.
fn echoed(s: i32) -> i32 {
    // SAFETY: plain libc calls on a descriptor the caller owns and on a
    // local pollfd and byte.
    unsafe {
        if libc::write(s, [7u8].as_ptr().cast(), 1) != 1 {
            return 0;
        }
        let mut p = libc::pollfd { fd: s, events: libc::POLLIN, revents: 0 };
        let mut b = [0u8; 1];
        i32::from(
            libc::poll(&mut p, 1, 3000) == 1 && libc::read(s, b.as_mut_ptr().cast(), 1) == 1 && b[0] == 7,
        )
    }
}

/// A daemon's start-up under LDP: connects to the echo server at `addr`,
/// closes every descriptor from 3 up (`closefrom(3)`, then
/// `close_range(3, ~0U, 0)`), and checks the connection and a new one.
/// Prints `closefrom-check: echo <0|1>; after closefrom <0|1>; after
/// close_range <0|1>; new connection <0|1>`.
pub fn closefrom_check(addr: SocketAddrV4) {
    let s = connect_blocking(addr);
    let before = echoed(s);
    // SAFETY: closes descriptors this program does not use any more
    // (none of its own above 2 but the VPP session, which the kernel does
    // not know).
    unsafe { closefrom(3) };
    let after_closefrom = echoed(s);
    // SAFETY: as above.
    let rv = unsafe { close_range(3, libc::c_uint::MAX, 0) };
    let after_close_range = i32::from(rv == 0) * echoed(s);
    // A new connection needs VPP to still know this application.
    // SAFETY: plain socket calls; `sa` outlives the connect call.
    let fresh = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        let sa = sockaddr(addr);
        let ok = fd >= 0
            && libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as u32)
                == 0;
        i32::from(ok) * echoed(fd)
    };
    println!(
        "closefrom-check: echo {before}; after closefrom {after_closefrom}; after close_range {after_close_range}; \
         new connection {fresh}"
    );
}
