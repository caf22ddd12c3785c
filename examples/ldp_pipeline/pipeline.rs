//! `server` and `client`: the multi-threaded epoll echo server and the
//! client that keeps `depth` requests in flight per connection and checks
//! the echoed stream byte for byte.

use std::collections::VecDeque;
use std::net::SocketAddrV4;
use std::time::Instant;

use crate::sys::{check, epoll_ctl, errno, listen_on, set_nonblocking, sockaddr};
use crate::STALL;

// ---------------------------------------------------------------------------
// server
// ---------------------------------------------------------------------------

pub fn server(addr: SocketAddrV4, threads: usize) {
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

pub fn client(addr: SocketAddrV4, threads: usize, conns: usize, requests: u64, depth: usize) {
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
