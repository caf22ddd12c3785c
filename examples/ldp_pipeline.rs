//! A plain-sockets program for running under LDP
//! (`LD_PRELOAD=libvls.so:libvcl_ldpreload.so`): a multi-threaded echo
//! server and a multi-threaded client that pipelines requests, each thread
//! with an epoll set of its own, and checks every byte that comes back.
//! It uses libc directly (socket, epoll, read, write), as C programs do, so
//! under LDP every call goes through VLS. Nothing here needs VPP to build.
//!
//! ```text
//! ldp_pipeline server <ip:port> <threads>
//! ldp_pipeline client <ip:port> <threads> <conns-per-thread> <requests-per-conn> <depth>
//! ldp_pipeline memcached-client <ip:port> <threads> <conns-per-thread> <rounds> <depth>
//! ldp_pipeline close-kernel-fd <fd>
//! ldp_pipeline wait-check <ip:port>
//! ldp_pipeline poll-check <ip:port> [no-signal]
//! ldp_pipeline fork-server <ip:port>
//! ldp_pipeline fork-client <ip:port>
//! ldp_pipeline closefrom-check <ip:port>
//! ```
//!
//! The server has one thread that accepts (blocking) and hands each
//! connection to a worker thread's epoll set, round robin (the shape of
//! memcached and other libevent servers); workers echo what they read.
//! Each client thread keeps `depth` requests of varying size in flight on
//! each of its connections until `requests-per-conn` were answered, and
//! verifies the echoed stream byte for byte. It prints
//! `ldp_pipeline: <n> requests, <bytes> bytes, all intact` and exits 0, or
//! exits 1 on a corrupt or short stream and 2 if a thread makes no progress
//! for 10 s (a lost wake-up), saying which connections wait for what.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

/// LDP's descriptor split: makes a socket (under LDP the first VPP
/// session: descriptor `2^LDP_SID_BIT`), then opens `/dev/null` until the
/// kernel hands out descriptor `want`, and closes it, as a program closing
/// a file it served would. Under LDP with `2^LDP_SID_BIT == want` the
/// close goes to the VPP session. Prints what it did; exits 0.
fn close_kernel_fd(want: i32) {
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
fn wait_check(addr: SocketAddrV4) {
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
fn poll_check(addr: SocketAddrV4, with_signal: bool) {
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
fn closefrom_check(addr: SocketAddrV4) {
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

/// Bytes the fork client sends before the server forks.
const FORK_QUEUED: usize = 64 << 10;

fn read_exact_blocking(fd: i32, buf: &mut [u8]) {
    let mut at = 0;
    while at < buf.len() {
        // SAFETY: `buf[at..]` is valid for its length.
        let r = unsafe { libc::read(fd, buf[at..].as_mut_ptr().cast(), buf.len() - at) };
        if r < 0 && (errno() == libc::EINTR || errno() == libc::EAGAIN) {
            continue;
        }
        if check(r as i32, "read") == 0 {
            eprintln!("fork: connection closed after {at} of {} bytes", buf.len());
            std::process::exit(1);
        }
        at += r as usize;
    }
}

/// A forking server: accepts one connection, waits until the client's
/// `FORK_QUEUED` bytes are queued, forks, and closes its copy (with that
/// much queued VPP cannot hand the connection over: the parent stays its
/// owner in VPP). The child then reads the bytes, writes `more` and waits
/// in `epoll_wait` (10 s) for the `next` the client sends only then,
/// answers `done`. Prints `fork-server: child exited with <code>` and
/// exits with the child's code (3: the child's wait saw no event).
fn fork_server(addr: SocketAddrV4) {
    let l = listen_on(addr);
    // SAFETY: plain libc calls on descriptors this function owns; the child
    // only makes libc calls before it exits.
    unsafe {
        let c = check(libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()), "accept");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut n: i32 = 0;
            // LDP returns the count instead of storing it.
            let rv = check(libc::ioctl(c, libc::FIONREAD, &mut n), "ioctl FIONREAD");
            n = n.max(rv);
            if n as usize >= FORK_QUEUED {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("fork-server: only {n} bytes arrived");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut closed = [0i32; 2];
        check(libc::pipe(closed.as_mut_ptr()), "pipe");
        let pid = check(libc::fork(), "fork");
        if pid == 0 {
            let mut b = [0u8; 1];
            read_exact_blocking(closed[0], &mut b);
            let mut got = vec![0u8; FORK_QUEUED];
            read_exact_blocking(c, &mut got);
            if got.iter().any(|&x| x != 3) {
                eprintln!("fork-server child: the queued bytes differ");
                libc::_exit(1);
            }
            let ep = check(libc::epoll_create1(0), "epoll_create1");
            epoll_ctl(ep, libc::EPOLL_CTL_ADD, c, libc::EPOLLIN as u32);
            write_all_blocking(c, b"more");
            let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
            let t0 = Instant::now();
            let n = libc::epoll_wait(ep, evs.as_mut_ptr(), 4, 10_000);
            if n != 1 {
                eprintln!("fork-server child: epoll_wait gave {n} after {} ms", t0.elapsed().as_millis());
                libc::_exit(3);
            }
            let mut next = [0u8; 4];
            read_exact_blocking(c, &mut next);
            write_all_blocking(c, if &next == b"next" { b"done" } else { b"bad!" });
            libc::close(c);
            libc::_exit(0);
        }
        check(libc::close(c), "close");
        write_all_blocking(closed[1], b"x");
        let mut status = 0;
        check(libc::waitpid(pid, &mut status, 0), "waitpid");
        let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 };
        println!("fork-server: child exited with {code}");
        std::process::exit(code);
    }
}

/// The fork server's client: sends `FORK_QUEUED` bytes, waits for `more`,
/// then (200 ms later) sends `next` and expects `done`. Prints
/// `fork-client: done`.
fn fork_client(addr: SocketAddrV4) {
    let c = connect_blocking(addr);
    write_all_blocking(c, &vec![3u8; FORK_QUEUED]);
    let mut more = [0u8; 4];
    read_exact_blocking(c, &mut more);
    std::thread::sleep(Duration::from_millis(200));
    write_all_blocking(c, b"next");
    let mut done = [0u8; 4];
    read_exact_blocking(c, &mut done);
    if &done != b"done" {
        eprintln!("fork-client: got {:?}", String::from_utf8_lossy(&done));
        std::process::exit(1);
    }
    println!("fork-client: done");
}

/// No progress for this long is a stall.
const STALL: Duration = Duration::from_secs(10);

fn check(rv: i32, what: &str) -> i32 {
    if rv < 0 {
        eprintln!("ldp_pipeline: {what}: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    rv
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
        sin_zero: [0; 8],
    }
}

fn set_nonblocking(fd: i32) {
    // SAFETY: plain fcntl calls on our own socket.
    unsafe {
        let fl = check(libc::fcntl(fd, libc::F_GETFL), "fcntl");
        check(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK), "fcntl");
    }
}

fn epoll_ctl(ep: i32, op: i32, fd: i32, events: u32) {
    let mut ev = libc::epoll_event { events, u64: fd as u64 };
    // SAFETY: valid event.
    check(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }, "epoll_ctl");
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

// ---------------------------------------------------------------------------
// memcached client
// ---------------------------------------------------------------------------

/// A client of a memcached server (its text protocol): each thread opens
/// `conns` blocking connections; in each of `rounds` rounds it pipelines
/// `depth` sets on every connection, then reads the replies, then pipelines
/// `depth` gets of the same keys and checks every value that comes back.
/// Values differ per key and round (up to 4 KiB). Prints
/// `ldp_pipeline: <n> sets and gets, all intact`; exits 1 on a wrong reply,
/// 2 if no reply arrives for 10 s.
fn memcached_client(addr: SocketAddrV4, threads: usize, conns: usize, rounds: u64, depth: usize) {
    static PROGRESS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    std::thread::spawn(|| {
        let mut last = u64::MAX;
        loop {
            std::thread::sleep(STALL);
            let now = PROGRESS.load(std::sync::atomic::Ordering::Relaxed);
            if now == last {
                eprintln!("ldp_pipeline: no memcached reply for {STALL:?}");
                std::process::exit(2);
            }
            last = now;
        }
    });
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let fds: Vec<i32> = (0..conns).map(|_| connect_blocking(addr)).collect();
                let mut readers: Vec<LineReader> = fds.iter().map(|&fd| LineReader::new(fd)).collect();
                let value = |c: usize, k: usize, r: u64| {
                    let seed = ((t * 1000 + c) as u64) << 32 | (k as u64) << 16 | r;
                    vpp_harness::pattern(1 + (seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) % 4096) as usize, seed)
                };
                let key = |c: usize, k: usize| format!("k{t}-{c}-{k}");
                let mut n = 0u64;
                for r in 0..rounds {
                    for (c, &fd) in fds.iter().enumerate() {
                        let mut req = Vec::new();
                        for k in 0..depth {
                            let v = value(c, k, r);
                            req.extend_from_slice(
                                format!("set {} 0 0 {}\r\n", key(c, k), v.len()).as_bytes(),
                            );
                            req.extend_from_slice(&v);
                            req.extend_from_slice(b"\r\n");
                        }
                        write_all_blocking(fd, &req);
                    }
                    for rd in readers.iter_mut() {
                        for _ in 0..depth {
                            rd.expect(b"STORED\r\n", &PROGRESS);
                        }
                    }
                    for (c, &fd) in fds.iter().enumerate() {
                        let req: String = (0..depth).map(|k| format!("get {}\r\n", key(c, k))).collect();
                        write_all_blocking(fd, req.as_bytes());
                    }
                    for (c, rd) in readers.iter_mut().enumerate() {
                        for k in 0..depth {
                            let v = value(c, k, r);
                            rd.expect(format!("VALUE {} 0 {}\r\n", key(c, k), v.len()).as_bytes(), &PROGRESS);
                            rd.expect(&v, &PROGRESS);
                            rd.expect(b"\r\nEND\r\n", &PROGRESS);
                            n += 2;
                        }
                    }
                }
                for fd in fds {
                    // SAFETY: our own socket.
                    unsafe { libc::close(fd) };
                }
                n
            })
        })
        .collect();
    let n: u64 = handles.into_iter().map(|h| h.join().unwrap_or_else(|_| std::process::exit(1))).sum();
    println!("ldp_pipeline: {n} sets and gets, all intact");
}

fn connect_blocking(addr: SocketAddrV4) -> i32 {
    // SAFETY: plain socket calls; `sa` outlives the connect call.
    unsafe {
        let fd = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
        let sa = sockaddr(addr);
        check(
            libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as u32),
            "connect",
        );
        fd
    }
}

fn write_all_blocking(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: `data` is valid for its length.
        let w = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if w < 0 && errno() == libc::EINTR {
            continue;
        }
        data = &data[check(w as i32, "write") as usize..];
    }
}

/// Reads a blocking connection and compares what arrives with what is
/// expected, byte for byte.
struct LineReader {
    fd: i32,
    buf: VecDeque<u8>,
}

impl LineReader {
    fn new(fd: i32) -> Self {
        LineReader { fd, buf: VecDeque::new() }
    }

    fn expect(&mut self, want: &[u8], progress: &std::sync::atomic::AtomicU64) {
        let mut chunk = [0u8; 16 << 10];
        while self.buf.len() < want.len() {
            // SAFETY: `chunk` is valid for its length.
            let r = unsafe { libc::read(self.fd, chunk.as_mut_ptr().cast(), chunk.len()) };
            if r < 0 && errno() == libc::EINTR {
                continue;
            }
            if check(r as i32, "read") == 0 {
                eprintln!("ldp_pipeline: memcached closed a connection");
                std::process::exit(1);
            }
            self.buf.extend(&chunk[..r as usize]);
            progress.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let got: Vec<u8> = self.buf.drain(..want.len()).collect();
        if got != want {
            let show = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(60)]).into_owned();
            eprintln!("ldp_pipeline: memcached replied {:?}, expected {:?}", show(&got), show(want));
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------
// server
// ---------------------------------------------------------------------------

/// A listening socket on `addr`.
fn listen_on(addr: SocketAddrV4) -> i32 {
    // SAFETY: plain socket calls; `sa` outlives the bind call.
    unsafe {
        let l = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
        let one: i32 = 1;
        libc::setsockopt(l, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const i32).cast(), 4);
        let sa = sockaddr(addr);
        check(
            libc::bind(l, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as u32),
            "bind",
        );
        check(libc::listen(l, 1024), "listen");
        l
    }
}

fn server(addr: SocketAddrV4, threads: usize) {
    let l = listen_on(addr);
    // SAFETY: plain syscall.
    let sets: Vec<i32> =
        (0..threads).map(|_| check(unsafe { libc::epoll_create1(0) }, "epoll_create1")).collect();
    for &ep in &sets {
        std::thread::spawn(move || serve_set(ep));
    }
    println!("ldp_pipeline: serving on {addr} with {threads} threads");
    let mut next = 0;
    loop {
        // SAFETY: null address is allowed.
        let fd = unsafe { libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()) };
        if fd < 0 {
            if errno() == libc::EINTR || errno() == libc::EAGAIN {
                continue;
            }
            check(fd, "accept");
        }
        set_nonblocking(fd);
        epoll_ctl(sets[next % threads], libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32);
        next += 1;
    }
}

/// Echoes every connection in set `ep` (level-triggered; write-side
/// backlog kept per connection and flushed on EPOLLOUT).
fn serve_set(ep: i32) {
    let mut backlog: std::collections::HashMap<i32, Vec<u8>> = Default::default();
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut buf = vec![0u8; 16 << 10];
    loop {
        // SAFETY: `evs` holds 64 events.
        let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 64, 1000) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        for e in &evs[..check(n, "epoll_wait") as usize] {
            let fd = e.u64 as i32;
            let pending = backlog.entry(fd).or_default();
            let mut closed = false;
            if e.events & libc::EPOLLIN as u32 != 0 && pending.is_empty() {
                loop {
                    // SAFETY: `buf` is valid for its length.
                    let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                    if r == 0 {
                        closed = true;
                        break;
                    }
                    if r < 0 {
                        closed = errno() != libc::EAGAIN;
                        break;
                    }
                    pending.extend_from_slice(&buf[..r as usize]);
                    if pending.len() > 256 << 10 {
                        break;
                    }
                }
            }
            if !closed && !pending.is_empty() {
                let was_blocked = e.events & libc::EPOLLOUT as u32 != 0;
                closed = !flush(fd, pending);
                if !closed {
                    // Writable interest only while output waits (libevent
                    // re-arms like this with EPOLL_CTL_MOD).
                    let want = if pending.is_empty() { libc::EPOLLIN } else { libc::EPOLLOUT } as u32;
                    if !pending.is_empty() || was_blocked {
                        epoll_ctl(ep, libc::EPOLL_CTL_MOD, fd, want);
                    }
                }
            }
            if closed || e.events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 {
                epoll_ctl(ep, libc::EPOLL_CTL_DEL, fd, 0);
                backlog.remove(&fd);
                // SAFETY: closes our own socket.
                unsafe { libc::close(fd) };
            }
        }
    }
}

/// Writes as much of `pending` as the socket takes; false on error.
fn flush(fd: i32, pending: &mut Vec<u8>) -> bool {
    while !pending.is_empty() {
        // SAFETY: `pending` is valid for its length.
        let w = unsafe { libc::write(fd, pending.as_ptr().cast(), pending.len()) };
        if w < 0 {
            return errno() == libc::EAGAIN;
        }
        pending.drain(..w as usize);
    }
    true
}

// ---------------------------------------------------------------------------
// client
// ---------------------------------------------------------------------------

/// One client connection: what was sent and not yet echoed, what is still
/// to be written, how many requests are left.
struct Conn {
    fd: i32,
    id: u64,
    /// Bytes sent (or queued to send) whose echo has not arrived, in order.
    expect: VecDeque<u8>,
    /// Bytes of requests not yet accepted by `write`.
    unsent: Vec<u8>,
    /// Requests not yet sent.
    to_send: u64,
    /// Request boundaries: bytes still to be echoed for each in flight.
    in_flight: VecDeque<usize>,
    answered: u64,
    bytes: u64,
    want_out: bool,
}

/// Request `seq` of connection `id`: 64..4160 bytes of a pattern that
/// depends on both.
fn request(id: u64, seq: u64) -> Vec<u8> {
    let seed = (id << 32 | seq).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    vpp_harness::pattern(64 + (seed % 4096) as usize, seed)
}

impl Conn {
    fn queue_request(&mut self) {
        let seq = self.answered + self.in_flight.len() as u64;
        let r = request(self.id, seq);
        self.in_flight.push_back(r.len());
        self.expect.extend(r.iter().copied());
        self.unsent.extend_from_slice(&r);
        self.to_send -= 1;
    }

    fn done(&self) -> bool {
        self.to_send == 0 && self.in_flight.is_empty()
    }
}

fn client(addr: SocketAddrV4, threads: usize, conns: usize, requests: u64, depth: usize) {
    let handles: Vec<_> = (0..threads)
        .map(|t| std::thread::spawn(move || client_thread(addr, t, conns, requests, depth)))
        .collect();
    let (mut n, mut bytes) = (0u64, 0u64);
    for h in handles {
        let (a, b) = h.join().unwrap_or_else(|_| std::process::exit(1));
        n += a;
        bytes += b;
    }
    let expected = (threads * conns) as u64 * requests;
    if n != expected {
        eprintln!("ldp_pipeline: {n} of {expected} requests answered");
        std::process::exit(1);
    }
    println!("ldp_pipeline: {n} requests, {bytes} bytes, all intact");
}

fn client_thread(addr: SocketAddrV4, t: usize, n_conns: usize, requests: u64, depth: usize) -> (u64, u64) {
    // SAFETY: plain syscall.
    let ep = check(unsafe { libc::epoll_create1(0) }, "epoll_create1");
    let mut conns: Vec<Conn> = (0..n_conns)
        .map(|i| {
            // SAFETY: plain socket calls; `sa` outlives connect.
            let fd = unsafe {
                let fd = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
                let sa = sockaddr(addr);
                check(
                    libc::connect(
                        fd,
                        (&sa as *const libc::sockaddr_in).cast(),
                        std::mem::size_of_val(&sa) as u32,
                    ),
                    "connect",
                );
                fd
            };
            set_nonblocking(fd);
            epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32);
            Conn {
                fd,
                id: (t * 1000 + i) as u64,
                expect: VecDeque::new(),
                unsent: Vec::new(),
                to_send: requests,
                in_flight: VecDeque::new(),
                answered: 0,
                bytes: 0,
                want_out: false,
            }
        })
        .collect();
    for c in conns.iter_mut() {
        while c.in_flight.len() < depth && c.to_send > 0 {
            c.queue_request();
        }
        send(ep, c);
    }
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 64];
    let mut buf = vec![0u8; 16 << 10];
    let mut last_progress = Instant::now();
    while !conns.iter().all(Conn::done) {
        // SAFETY: `evs` holds 64 events.
        let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), 64, 100) };
        if n < 0 && errno() == libc::EINTR {
            continue;
        }
        for e in &evs[..check(n, "epoll_wait") as usize] {
            let Some(c) = conns.iter_mut().find(|c| c.fd as u64 == e.u64) else { continue };
            if e.events & libc::EPOLLIN as u32 != 0 && receive(c, &mut buf) {
                last_progress = Instant::now();
                while c.in_flight.len() < depth && c.to_send > 0 {
                    c.queue_request();
                }
            }
            if e.events & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 && !c.done() {
                eprintln!("ldp_pipeline: thread {t}: connection {} closed by the server", c.id);
                std::process::exit(1);
            }
            send(ep, c);
        }
        if last_progress.elapsed() > STALL {
            for c in conns.iter().filter(|c| !c.done()) {
                let mut avail = 0i32;
                // SAFETY: FIONREAD into a local.
                unsafe { libc::ioctl(c.fd, libc::FIONREAD, &mut avail) };
                eprintln!(
                    "ldp_pipeline: thread {t} stalled: connection {} (fd {}) waits for {} bytes \
                     ({} requests answered, {} unsent bytes, {avail} bytes readable now)",
                    c.id,
                    c.fd,
                    c.expect.len(),
                    c.answered,
                    c.unsent.len()
                );
            }
            std::process::exit(2);
        }
    }
    for c in &conns {
        // SAFETY: closes our own socket.
        unsafe { libc::close(c.fd) };
    }
    // SAFETY: closes our own epoll fd.
    unsafe { libc::close(ep) };
    (conns.iter().map(|c| c.answered).sum(), conns.iter().map(|c| c.bytes).sum())
}

/// Reads what is there (until `EAGAIN`), checking it against what was sent;
/// true if anything arrived.
fn receive(c: &mut Conn, buf: &mut [u8]) -> bool {
    let mut got = false;
    loop {
        // SAFETY: `buf` is valid for its length.
        let r = unsafe { libc::read(c.fd, buf.as_mut_ptr().cast(), buf.len()) };
        if r < 0 && errno() == libc::EAGAIN {
            return got;
        }
        if r <= 0 {
            eprintln!("ldp_pipeline: connection {}: read {r} ({})", c.id, std::io::Error::last_os_error());
            std::process::exit(1);
        }
        got = true;
        for &b in &buf[..r as usize] {
            if c.expect.pop_front() != Some(b) {
                eprintln!(
                    "ldp_pipeline: connection {}: byte {} of the stream differs (lost, reordered or extra)",
                    c.id, c.bytes
                );
                std::process::exit(1);
            }
            c.bytes += 1;
            let left = c.in_flight.front_mut().expect("a request in flight");
            *left -= 1;
            if *left == 0 {
                c.in_flight.pop_front();
                c.answered += 1;
            }
        }
    }
}

/// Writes what the socket takes; EPOLLOUT interest while something is left
/// (switched with EPOLL_CTL_MOD, as event libraries do).
fn send(ep: i32, c: &mut Conn) {
    if !flush(c.fd, &mut c.unsent) {
        eprintln!("ldp_pipeline: connection {}: write failed ({})", c.id, std::io::Error::last_os_error());
        std::process::exit(1);
    }
    let want_out = !c.unsent.is_empty();
    if want_out != c.want_out {
        let ev = if want_out { libc::EPOLLIN | libc::EPOLLOUT } else { libc::EPOLLIN } as u32;
        epoll_ctl(ep, libc::EPOLL_CTL_MOD, c.fd, ev);
        c.want_out = want_out;
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = || -> ! {
        eprintln!(
            "usage: ldp_pipeline server <ip:port> <threads>\n       \
             ldp_pipeline client <ip:port> <threads> <conns-per-thread> <requests-per-conn> <depth>\n       \
             ldp_pipeline memcached-client <ip:port> <threads> <conns-per-thread> <rounds> <depth>\n       \
             ldp_pipeline close-kernel-fd <fd>\n       \
             ldp_pipeline wait-check <ip:port>\n       \
             ldp_pipeline poll-check <ip:port> [no-signal]\n       \
             ldp_pipeline fork-server <ip:port>\n       \
             ldp_pipeline fork-client <ip:port>\n       \
             ldp_pipeline closefrom-check <ip:port>"
        );
        std::process::exit(64)
    };
    if args.get(1).map(String::as_str) == Some("close-kernel-fd") {
        close_kernel_fd(args.get(2).and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()));
        return;
    }
    let num = |i: usize| -> u64 { args.get(i).and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()) };
    let addr: SocketAddrV4 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or_else(|| usage());
    match args.get(1).map(String::as_str) {
        Some("server") => server(addr, num(3).max(1) as usize),
        Some("wait-check") => wait_check(addr),
        Some("poll-check") => poll_check(addr, args.get(3).map(String::as_str) != Some("no-signal")),
        Some("fork-server") => fork_server(addr),
        Some("fork-client") => fork_client(addr),
        Some("closefrom-check") => closefrom_check(addr),
        Some("client") => {
            client(addr, num(3).max(1) as usize, num(4).max(1) as usize, num(5), num(6).max(1) as usize)
        }
        Some("memcached-client") => memcached_client(
            addr,
            num(3).max(1) as usize,
            num(4).max(1) as usize,
            num(5),
            num(6).max(1) as usize,
        ),
        _ => usage(),
    }
}
