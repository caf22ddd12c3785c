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
//! ldp_pipeline exec-server <ip:port>
//! ldp_pipeline exec-client <ip:port>
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

mod checks;
mod fork;
mod memcached;
mod pipeline;
mod sys;

use std::net::SocketAddrV4;
use std::time::Duration;

use checks::{close_kernel_fd, closefrom_check, poll_check, wait_check};
use fork::{exec_client, exec_server, fork_client, fork_server};
use memcached::memcached_client;
use pipeline::{client, server};

/// No progress for this long is a stall.
const STALL: Duration = Duration::from_secs(10);

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
             ldp_pipeline exec-server <ip:port>\n       \
             ldp_pipeline exec-client <ip:port>\n       \
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
        Some("exec-server") => exec_server(addr),
        Some("exec-client") => exec_client(addr),
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
