//! `memcached-client`: pipelined sets and gets against a memcached server
//! over blocking connections, every reply checked byte for byte.

use std::collections::VecDeque;
use std::net::SocketAddrV4;

use crate::sys::{check, connect_blocking, errno, write_all_blocking};
use crate::STALL;

/// A client of a memcached server (its text protocol): each thread opens
/// `conns` blocking connections; in each of `rounds` rounds it pipelines
/// `depth` sets on every connection, then reads the replies, then pipelines
/// `depth` gets of the same keys and checks every value that comes back.
/// Values differ per key and round (up to 4 KiB). Prints
/// `ldp_pipeline: <n> sets and gets, all intact`; exits 1 on a wrong reply,
/// 2 if no reply arrives for 10 s.
pub fn memcached_client(addr: SocketAddrV4, threads: usize, conns: usize, rounds: u64, depth: usize) {
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
