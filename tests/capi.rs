//! The `vls_*` C ABI (the Rust layer) against a real VPP: single-thread
//! semantics, bad handles, and mode 3 (many threads, one VCL worker).
//!
//! Each test runs a server and a client in two processes (VPP never
//! connects an app to its own listener over cut-through).

mod common;

use std::ffi::c_void;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use vls::capi::*;
use vls::ffi;

use common::{run_isolated, run_pair};
use vpp_harness::{cut_through, pattern, through_stack, STACK_SERVER};

use common::capi::*;

// ---------------------------------------------------------------------------
// single thread
// ---------------------------------------------------------------------------

/// Server: epoll for the accept and the data, poll, attr, shutdown
/// half-close; client: connect, write, read after the server's SHUT_WR.
/// Through VPP's TCP stack (cut-through has no half-close).
#[test]
fn capi_single_thread_tcp_epoll_poll_shutdown_attr() {
    let a = SocketAddr::from((STACK_SERVER, 7101));
    run_pair(
        "capi_single_thread_tcp_epoll_poll_shutdown_attr",
        through_stack,
        || {
            app("capi-server");
            let l = listen_on(a, TCP, true);
            let ep = vls_epoll_create();
            assert!(ep >= 0);
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: l as u64 };
            // SAFETY: `ev` is valid.
            assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_ADD, l, &mut ev) }, 0);
            let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
            // (VCL reads the wait time as milliseconds in eventfd mode.)
            // SAFETY: `evs` holds 8 events.
            let n = until_positive(|| unsafe { vls_epoll_wait(ep, evs.as_mut_ptr(), 8, 100.0) });
            assert_eq!(n, 1, "listener readable");
            assert_eq!({ evs[0].u64 }, l as u64);
            let s = accept(l);
            assert!(s >= 0, "accept: {s}");
            assert_eq!(accept(l), EAGAIN, "non-blocking listener, nothing pending");

            // attr: the accepted session is blocking; make it non-blocking
            let mut flags: u32 = 0;
            let mut len = 4u32;
            // SAFETY: 4-byte buffer.
            let rv =
                unsafe { vls_attr(s, ffi::VPPCOM_ATTR_GET_FLAGS, (&mut flags as *mut u32).cast(), &mut len) };
            assert_eq!(rv, 0);
            assert_eq!(flags & libc::O_NONBLOCK as u32, 0);
            flags |= libc::O_NONBLOCK as u32;
            // SAFETY: 4-byte buffer.
            let rv =
                unsafe { vls_attr(s, ffi::VPPCOM_ATTR_SET_FLAGS, (&mut flags as *mut u32).cast(), &mut len) };
            assert_eq!(rv, 0);
            let mut check: u32 = 0;
            // SAFETY: 4-byte buffer.
            let rv =
                unsafe { vls_attr(s, ffi::VPPCOM_ATTR_GET_FLAGS, (&mut check as *mut u32).cast(), &mut len) };
            assert_eq!(rv, 0);
            assert_ne!(check & libc::O_NONBLOCK as u32, 0, "non-blocking now");

            // poll for the data
            let mut vp = ffi::vcl_poll_t { fds_ndx: 0, sh: vlsh_to_sh(s), events: libc::POLLIN, revents: 0 };
            // SAFETY: one entry.
            let n = until_positive(|| unsafe { vls_poll((&mut vp as *mut ffi::vcl_poll_t).cast(), 1, 0.1) });
            assert_eq!(n, 1, "poll");
            assert_ne!(vp.revents & libc::POLLIN, 0);
            let mut buf = [0u8; 5];
            read_exact(s, &mut buf);
            assert_eq!(&buf, b"hello");

            // half close: we stop writing, the client sees EOF but can still
            // write to us
            write_all(s, b"bye");
            assert_eq!(vls_shutdown(s, libc::SHUT_WR), 0);
            // SAFETY: valid buffer.
            let rv = unsafe { vls_write(s, b"x".as_ptr() as *mut c_void, 1) };
            assert_eq!(rv, -libc::EPIPE, "write after SHUT_WR");
            // GET_NREAD returns the bytes waiting (the client's "after",
            // written in one piece once it saw our EOF).
            let nread = || {
                let mut nread: u32 = 0;
                let mut len = 4u32;
                // SAFETY: 4-byte buffer.
                unsafe { vls_attr(s, ffi::VPPCOM_ATTR_GET_NREAD, (&mut nread as *mut u32).cast(), &mut len) }
            };
            let deadline = Instant::now() + Duration::from_secs(10);
            while nread() == 0 {
                assert!(Instant::now() < deadline, "data after our SHUT_WR never arrived");
                thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(nread(), 5);
            let mut b = [0u8; 8];
            assert_eq!(read_some(s, &mut b), 5);
            assert_eq!(&b[..5], b"after", "data after our SHUT_WR still arrives");
            assert_eq!(nread(), 0, "all read");
            for h in [s, ep, l] {
                assert_eq!(vls_close(h), 0);
            }
        },
        || {
            app("capi-client");
            let c = connect_to(a, TCP);
            write_all(c, b"hello");
            let mut buf = [0u8; 3];
            read_exact(c, &mut buf);
            assert_eq!(&buf, b"bye");
            assert_eq!(read_some(c, &mut [0u8; 4]), 0, "EOF after the server's SHUT_WR");
            write_all(c, b"after");
            thread::sleep(Duration::from_millis(200));
            assert_eq!(vls_close(c), 0);
        },
    );
}

#[test]
fn capi_udp_sendto_recvfrom_and_select() {
    let a = addr(7102);
    run_pair(
        "capi_udp_sendto_recvfrom_and_select",
        cut_through,
        || {
            app("udp-server");
            let l = listen_on(a, UDP, false);
            let s = accept(l);
            assert!(s >= 0, "accept ct udp: {s}");
            // select on the session's index for readability
            let (si, _) = session_and_worker(s);
            assert_eq!(vls_session_index_to_vlsh(si), s);
            let mut rmap = [0 as libc::c_ulong; 4];
            let n = until_positive(|| {
                rmap = [0; 4];
                rmap[si as usize / 64] |= 1 << (si % 64);
                // SAFETY: map holds 256 bits.
                unsafe { vls_select(256, rmap.as_mut_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), 0.1) }
            });
            assert_eq!(n, 1, "select");
            assert_ne!(rmap[si as usize / 64] & (1 << (si % 64)), 0);
            for i in 0..50u8 {
                let mut buf = [0u8; 2048];
                // SAFETY: buffers valid.
                let (n, _) = with_endpt(None, |ep| unsafe {
                    vls_recvfrom(s, buf.as_mut_ptr().cast(), buf.len() as u32, 0, ep)
                });
                assert_eq!(n, 1000, "datagram size");
                assert!(buf[..1000].iter().all(|&b| b == i), "datagram {i} content");
                // SAFETY: buffer valid; null endpoint: connected session.
                let m = unsafe { vls_sendto(s, buf.as_mut_ptr().cast(), 1000, 0, std::ptr::null_mut()) };
                assert_eq!(m, 1000);
            }
            let mut b = [0u8; 8];
            read_exact(s, &mut b[..4]);
            assert_eq!(&b[..4], b"done");
        },
        || {
            app("udp-client");
            // (connect_to retries until the server listens: over
            // cut-through a UDP connect is refused before that.)
            let c = connect_to(a, UDP);
            for i in 0..50u8 {
                let mut d = [i; 1000];
                assert_eq!(
                    // SAFETY: valid buffer; null endpoint: connected session.
                    unsafe { vls_sendto(c, d.as_mut_ptr().cast(), 1000, 0, std::ptr::null_mut()) },
                    1000
                );
                let mut back = [0u8; 1000];
                assert_eq!(read_some(c, &mut back), 1000);
                assert_eq!(back, [i; 1000]);
            }
            write_all(c, b"done");
            thread::sleep(Duration::from_millis(200));
        },
    );
}

/// Closing a listener while a connection waits in its accept queue (VCL
/// v26.06 alone crashes there): the close succeeds, the waiting peer sees
/// its connection closed, and the process goes on (a new listener serves).
#[test]
fn closing_a_listener_with_a_connection_waiting_to_be_accepted() {
    let (a, b) = (SocketAddr::from((STACK_SERVER, 7104)), SocketAddr::from((STACK_SERVER, 7105)));
    run_pair(
        "closing_a_listener_with_a_connection_waiting_to_be_accepted",
        through_stack,
        || {
            app("close-listener-server");
            let l = listen_on(a, TCP, true);
            let ep = vls_epoll_create();
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 1 };
            // SAFETY: valid event.
            assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_ADD, l, &mut ev) }, 0);
            let n = until_positive(|| {
                let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 1];
                // SAFETY: `evs` holds 1 event.
                unsafe { vls_epoll_wait(ep, evs.as_mut_ptr(), 1, 0.1) }
            });
            assert_eq!(n, 1, "a connection is waiting");
            assert_eq!(vls_close(l), 0, "close with a connection waiting");
            let l2 = listen_on(b, TCP, false);
            let s = accept(l2);
            assert!(s >= 0, "accept on the new listener: {s}");
            let mut ping = [0u8; 4];
            read_exact(s, &mut ping);
            write_all(s, b"pong");
            thread::sleep(Duration::from_millis(200));
            assert_eq!(vls_close(s), 0);
            assert_eq!(vls_close(l2), 0);
        },
        || {
            app("close-listener-client");
            let c = connect_to(a, TCP);
            let mut buf = [0u8; 4];
            assert!(read_some(c, &mut buf) <= 0, "the waiting connection is closed, not served");
            vls_close(c);
            let c2 = connect_to(b, TCP);
            write_all(c2, b"ping");
            read_exact(c2, &mut buf);
            assert_eq!(&buf, b"pong");
            vls_close(c2);
        },
    );
}

/// `vls_poll` reports a connection whose peer closed it as readable
/// (`POLLIN`, and `POLLRDHUP` when asked), as the kernel does at the end of
/// a stream, and the read then returns 0; VCL's poll reports only bytes to
/// read, so a program waiting in `poll` or `select` for the peer's close
/// (socat's transfer loop) waited for ever. Both ways through VPP.
fn poll_reports_the_peers_close(name: &str, a: SocketAddr, setup: common::PairSetup) {
    run_pair(
        name,
        setup,
        || {
            app("poll-close-server");
            let l = listen_on(a, TCP, false);
            let s = accept(l);
            assert!(s >= 0, "accept: {s}");
            let mut hello = [0u8; 5];
            read_exact(s, &mut hello);
            write_all(s, b"bye");
            let deadline = Instant::now() + Duration::from_secs(10);
            let revents = loop {
                // No wait (as LDP polls).
                let (n, revents) = poll_one(s, libc::POLLIN | libc::POLLRDHUP, 0.0);
                if n > 0 {
                    break revents;
                }
                assert!(Instant::now() < deadline, "the peer's close never made the connection readable");
                thread::sleep(Duration::from_millis(10));
            };
            assert_eq!(revents & libc::POLLIN, libc::POLLIN, "revents {revents:#x}");
            assert_eq!(revents & libc::POLLRDHUP, libc::POLLRDHUP, "revents {revents:#x}");
            let mut b = [0u8; 4];
            assert_eq!(read_some(s, &mut b), 0, "end of stream");
            assert_eq!(vls_close(s), 0);
            assert_eq!(vls_close(l), 0);
        },
        || {
            app("poll-close-client");
            let c = connect_to(a, TCP);
            write_all(c, b"hello");
            let mut bye = [0u8; 3];
            read_exact(c, &mut bye);
            assert_eq!(vls_close(c), 0);
        },
    );
}

common::stack_and_cut_through! {
    poll_reports_the_peers_close: poll_reports_the_peers_close_through_the_stack on 7110, poll_reports_the_peers_close_cut_through on 7111
}

/// VPP takes an application's detach (its socket to VPP closing at exit)
/// before the messages the application queued for it, and crashed
/// (`session_mq_accepted_reply_handler`, SIGSEGV) on an accepted reply it
/// then read for a session the detach had already taken. A server that
/// accepts and exits at once while VPP lags behind (here: paused with
/// SIGSTOP for 100 ms, as an overloaded VPP is late) must leave VPP
/// running: the layer lets VPP read the worker's queues before the worker
/// goes away. The client's `vls_poll` with a wait wakes at the close (VCL's
/// own wait only ever reports bytes to read, and slept to its deadline).
/// Through the stack and cut-through.
fn vpp_survives_a_server_that_accepts_and_exits_at_once(name: &str, a: SocketAddr, setup: common::PairSetup) {
    run_pair(
        name,
        setup,
        || {
            app("accept-and-exit-server");
            let vpp = own_vpp_pid();
            let l = listen_on(a, TCP, false);
            // VPP announced the connection: pause VPP, and have another
            // process (spawned without fork handlers) resume it later.
            assert_eq!(poll_one(l, libc::POLLIN, 10.0).0, 1, "the client's connection");
            // SAFETY: plain syscall on VPP's process id.
            assert_eq!(unsafe { libc::kill(vpp, libc::SIGSTOP) }, 0);
            let resume = std::process::Command::new("sh")
                .args(["-c", &format!("sleep 0.1; kill -CONT {vpp}")])
                .spawn();
            if resume.is_err() {
                // SAFETY: as above.
                unsafe { libc::kill(vpp, libc::SIGCONT) };
            }
            // Not waited for: it resumes VPP after this process is gone
            // (and is then no child of a living process).
            #[allow(clippy::zombie_processes)]
            let _resumer = resume.expect("spawn sh to resume VPP");
            // The accepted reply waits in VPP's queue; the exit follows at
            // once.
            let s = accept(l);
            assert!(s >= 0, "accept: {s}");
            assert_eq!(vls_close(s), 0);
            assert_eq!(vls_close(l), 0);
        },
        || {
            app("accept-and-exit-client");
            let c = connect_to(a, TCP);
            // The server's close (or its detach's reset) ends the
            // connection once VPP runs again; a crashed VPP never does. A
            // poll with a wait wakes at the close, not at its deadline.
            let t0 = Instant::now();
            let (n, revents) = poll_one(c, libc::POLLIN, 10.0);
            assert_eq!(n, 1, "the server's close within 10 s (revents {revents:#x})");
            assert!(t0.elapsed() < Duration::from_secs(5), "poll woke only after {:?}", t0.elapsed());
            let mut b = [0u8; 4];
            assert!(read_some(c, &mut b) <= 0, "no data, only the end");
            assert_eq!(vls_close(c), 0);
        },
    );
}

common::stack_and_cut_through! {
    vpp_survives_a_server_that_accepts_and_exits_at_once: vpp_survives_a_server_that_accepts_and_exits_at_once_through_the_stack on 7113, vpp_survives_a_server_that_accepts_and_exits_at_once_cut_through on 7114
}

/// A process whose VPP died while it had a connection open exits cleanly.
/// VCL detaches from a dead VPP (it unmaps VPP's segment, and the
/// connection's queue pointers then point into unmapped memory); what the
/// layer does at exit (let VPP read the worker's queues) must not look at
/// them.
#[test]
fn exit_after_vpp_died_with_a_connection_open() {
    let a = SocketAddr::from((STACK_SERVER, 7115));
    run_pair(
        "exit_after_vpp_died_with_a_connection_open",
        through_stack,
        || {
            app("vpp-died-server");
            let vpp = own_vpp_pid();
            let l = listen_on(a, TCP, false);
            let s = accept(l);
            assert!(s >= 0, "accept: {s}");
            let mut hello = [0u8; 5];
            read_exact(s, &mut hello);
            // SAFETY: plain syscall on VPP's process id.
            assert_eq!(unsafe { libc::kill(vpp, libc::SIGKILL) }, 0);
            wait_until_vcl_detached();
            // The process exits with the connection still open.
        },
        || {
            app("vpp-died-client");
            let c = connect_to(a, TCP);
            write_all(c, b"hello");
            wait_until_vcl_detached();
        },
    );
}

/// Waits (epoll waits of 100 ms, at most 10 s) until VCL has noticed that
/// its VPP died and detached the calling thread's worker
/// (use-mq-eventfd: VCL notices in a wait).
fn wait_until_vcl_detached() {
    let deadline = Instant::now() + Duration::from_secs(10);
    // SAFETY: reads a field of this thread's worker.
    while unsafe { ffi::vppcom_worker_is_detached() } != 1 {
        assert!(Instant::now() < deadline, "VCL never noticed that VPP died");
        let ep = vls_epoll_create();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `evs` holds 4 events.
        unsafe { vls_epoll_wait(ep, evs.as_mut_ptr(), 4, 0.1) };
        vls_close(ep);
    }
}

/// A non-blocking connect polled the POSIX way (connect again until it
/// stops saying EINPROGRESS) ends with the connect's outcome, and a
/// connecting session cannot listen. VCL alone sends a new connect (or a
/// listen) request for such calls: the connect never reports its failure,
/// and replies reach sessions in states they were not meant for, or freed
/// ones (found by the random C ABI test, where it crashed VCL and VPP).
#[test]
fn connect_again_reports_the_outcome_and_a_connecting_session_cannot_listen() {
    run_isolated(
        "connect_again_reports_the_outcome_and_a_connecting_session_cannot_listen",
        vpp_harness::VclConf::default(),
        |_| {},
        || {
            app("connect-again");
            // Nobody listens there.
            let nowhere = addr(7130);
            let connect = |h: i32| {
                // SAFETY: `ep` is valid during the call.
                with_endpt(Some(&nowhere), |ep| unsafe { vls_connect(h, ep) }).0
            };
            let c = vls_create(TCP, 1);
            assert_eq!(connect(c), -libc::EINPROGRESS);
            assert_eq!(vls_listen(c, 4), -libc::EINVAL, "a connecting session cannot listen");
            let ep = vls_epoll_create();
            let mut ev = libc::epoll_event { events: libc::EPOLLOUT as u32, u64: c as u64 };
            // SAFETY: `ev` is valid.
            assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_ADD, c, &mut ev) }, 0);
            let deadline = Instant::now() + Duration::from_secs(10);
            let outcome = loop {
                let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
                // SAFETY: `evs` holds 4 events.
                let n = unsafe { vls_epoll_wait(ep, evs.as_mut_ptr(), 4, 10.0) };
                assert!(n >= 0, "epoll wait: {n}");
                let rv = connect(c);
                if rv != -libc::EINPROGRESS {
                    break rv;
                }
                assert!(Instant::now() < deadline, "connect again kept saying EINPROGRESS");
            };
            assert_eq!(outcome, -libc::ECONNREFUSED, "the connect's outcome");
            assert_eq!(connect(c), -libc::ECONNREFUSED, "and again");
            assert_eq!(vls_listen(c, 4), -libc::EINVAL, "a session that connected cannot listen");
            for h in [c, ep] {
                assert_eq!(vls_close(h), 0);
            }
            // A fresh session still listens and connects.
            let l = listen_on(addr(7131), TCP, true);
            assert_eq!(vls_close(l), 0);
        },
    );
}

#[test]
fn capi_bad_handles_give_ebadfd() {
    run_pair(
        "capi_bad_handles_give_ebadfd",
        cut_through,
        || {
            app("bad-handles");
            let live = vls_create(TCP, 0);
            let ep = vls_epoll_create();
            let closed = vls_create(TCP, 0);
            assert_eq!(vls_close(closed), 0);
            let mut buf = [0u8; 8];
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 0 };
            let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 2];
            for h in [closed, 4242, -1, i32::MAX] {
                assert_eq!(vls_close(h), EBADFD, "close {h}");
                assert_eq!(vls_listen(h, 1), EBADFD);
                assert_eq!(vls_shutdown(h, libc::SHUT_RDWR), EBADFD);
                assert_eq!(read_some(h, &mut buf), EBADFD as isize);
                // SAFETY: valid buffers and endpoints throughout.
                unsafe {
                    assert_eq!(vls_write(h, buf.as_mut_ptr().cast(), 8), EBADFD);
                    assert_eq!(vls_write_msg(h, buf.as_mut_ptr().cast(), 8), EBADFD);
                    assert_eq!(with_endpt(Some(&addr(1)), |e| vls_bind(h, e)).0, EBADFD);
                    assert_eq!(with_endpt(Some(&addr(1)), |e| vls_connect(h, e)).0, EBADFD);
                    assert_eq!(with_endpt(None, |e| vls_accept(h, e, 0)).0, EBADFD);
                    assert_eq!(vls_epoll_ctl(ep, libc::EPOLL_CTL_ADD, h, &mut ev), EBADFD);
                    assert_eq!(vls_epoll_ctl(h, libc::EPOLL_CTL_ADD, live, &mut ev), EBADFD);
                    assert_eq!(vls_epoll_wait(h, evs.as_mut_ptr(), 2, 0.0), EBADFD);
                    let mut len = 4u32;
                    assert_eq!(
                        vls_attr(h, ffi::VPPCOM_ATTR_GET_FLAGS, buf.as_mut_ptr().cast(), &mut len),
                        EBADFD
                    );
                }
                assert_eq!(vlsh_to_sh(h), u32::MAX);
                assert_eq!(vls_get_libc_epfd(h), EBADFD);
                assert_eq!(vls_set_libc_epfd(h, 3), EBADFD);
            }
            // An epoll handle that is not an epoll session.
            // SAFETY: valid buffers.
            unsafe {
                assert_eq!(vls_epoll_wait(live, evs.as_mut_ptr(), 2, 0.0), EBADFD);
                assert_eq!(vls_epoll_ctl(live, libc::EPOLL_CTL_ADD, ep, &mut ev), EBADFD);
            }
            // Null pointers are errors, not crashes: also on a non-blocking
            // session, whose reads and writes take the lock-free path.
            let nonblocking = vls_create(TCP, 1);
            assert!(nonblocking >= 0);
            // SAFETY: null is what is being tested.
            unsafe {
                assert_eq!(vls_read(live, std::ptr::null_mut(), 8), -libc::EFAULT as isize);
                assert_eq!(vls_write(live, std::ptr::null_mut(), 8), -libc::EFAULT);
                assert_eq!(vls_read(nonblocking, std::ptr::null_mut(), 8), -libc::EFAULT as isize);
                assert_eq!(vls_write(nonblocking, std::ptr::null_mut(), 8), -libc::EFAULT);
                // Nothing from nowhere: no fault, whichever path.
                assert_eq!(vls_write(live, std::ptr::null_mut(), 0), 0);
                assert_eq!(vls_write(nonblocking, std::ptr::null_mut(), 0), 0);
                assert_eq!(vls_bind(live, std::ptr::null_mut()), -libc::EINVAL);
                assert_eq!(vls_epoll_wait(ep, std::ptr::null_mut(), 2, 0.0), -libc::EINVAL);
                vlsh_to_session_and_worker_index(live, std::ptr::null_mut(), std::ptr::null_mut());
                assert_eq!(vls_app_create(std::ptr::null_mut()), -libc::EINVAL);
            }
            assert_eq!(vls_close(live), 0);
            assert_eq!(vls_close(nonblocking), 0);
        },
        || {},
    );
}

// ---------------------------------------------------------------------------
// mode 3: many threads, one VCL worker
// ---------------------------------------------------------------------------

const THREADS: usize = 4;
const CONNS_PER_THREAD: usize = 4;
const MSG: usize = 16 << 10;

/// 4 server threads share one listener and serve its accepted sessions;
/// a 4-thread client opens 16 connections and checks every echoed byte.
#[test]
fn mode3_four_threads_share_a_listener_and_its_sessions() {
    let a = addr(7103);
    run_pair(
        "mode3_four_threads_share_a_listener_and_its_sessions",
        cut_through,
        || {
            app("mt-server");
            let l = listen_on(a, TCP, false);
            let served = Arc::new(AtomicUsize::new(0));
            let ts: Vec<_> = (0..THREADS)
                .map(|_| {
                    let served = served.clone();
                    thread::spawn(move || {
                        for _ in 0..CONNS_PER_THREAD {
                            let s = accept(l);
                            assert!(s >= 0, "accept {s}");
                            echo_once(s);
                            served.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for t in ts {
                t.join().expect("server thread");
            }
            assert_eq!(served.load(Ordering::SeqCst), THREADS * CONNS_PER_THREAD);
            assert_eq!(vls_close(l), 0);
        },
        || {
            app("mt-client");
            let ts: Vec<_> = (0..THREADS)
                .map(|t| thread::spawn(move || echo_conns(a, CONNS_PER_THREAD, t * 100)))
                .collect();
            for t in ts {
                t.join().expect("client thread");
            }
        },
    );
}

/// Two threads `write_msg` into one session at once: all bytes arrive and
/// no message is interleaved with another.
#[test]
fn mode3_two_threads_write_one_session() {
    const N: usize = 500;
    const LEN: usize = 1000;
    let a = addr(7104);
    run_pair(
        "mode3_two_threads_write_one_session",
        cut_through,
        || {
            app("w-server");
            let l = listen_on(a, TCP, false);
            let s = accept(l);
            let mut all = vec![0u8; 2 * N * LEN];
            read_exact(s, &mut all);
            let mut per = [0usize; 2];
            for m in all.chunks(LEN) {
                assert!(m[0] < 2 && m.iter().all(|&b| b == m[0]), "interleaved message");
                per[m[0] as usize] += 1;
            }
            assert_eq!(per, [N, N]);
            write_all(s, b"k");
            vls_close(s);
        },
        || {
            app("w-client");
            let c = connect_to(a, TCP);
            let barrier = Arc::new(Barrier::new(2));
            let ts: Vec<_> = (0..2u8)
                .map(|t| {
                    let barrier = barrier.clone();
                    thread::spawn(move || {
                        let mut msg = [t; LEN];
                        barrier.wait();
                        for _ in 0..N {
                            loop {
                                // SAFETY: valid buffer.
                                let n = unsafe { vls_write_msg(c, msg.as_mut_ptr().cast(), LEN) };
                                if n == EAGAIN {
                                    thread::yield_now();
                                    continue;
                                }
                                assert_eq!(n, LEN as i32, "write_msg");
                                break;
                            }
                        }
                    })
                })
                .collect();
            for t in ts {
                t.join().unwrap();
            }
            let mut b = [0u8; 1];
            read_exact(c, &mut b);
            vls_close(c);
        },
    );
}

/// A single-threaded app's non-blocking reads and writes take no lock;
/// when a second thread starts using VLS (creating and closing sessions
/// while the first keeps echoing), locking switches on without losing or
/// corrupting data and without crashing either thread.
#[test]
fn lock_free_io_of_one_thread_ends_when_a_second_thread_arrives() {
    const ROUNDS: usize = 4000;
    const LEN: usize = 100;
    let a = addr(7109);
    run_pair(
        "lock_free_io_of_one_thread_ends_when_a_second_thread_arrives",
        cut_through,
        || {
            app("lf-server");
            let l = listen_on(a, TCP, false);
            let s = accept(l);
            let mut buf = [0u8; 4096];
            let mut left = ROUNDS * LEN;
            while left > 0 {
                let n = read_some(s, &mut buf[..left.min(4096)]);
                assert!(n > 0, "read: {n}");
                write_all(s, &buf[..n as usize]);
                left -= n as usize;
            }
            vls_close(s);
        },
        || {
            app("lf-client");
            let c = connect_to(a, TCP);
            let mut flags = libc::O_NONBLOCK as u32;
            let mut len = 4u32;
            // SAFETY: 4-byte buffer.
            let rv =
                unsafe { vls_attr(c, ffi::VPPCOM_ATTR_SET_FLAGS, (&mut flags as *mut u32).cast(), &mut len) };
            assert_eq!(rv, 0);
            // (Where the kernel has no membarrier, every call locks.)
            assert_eq!(
                vls::raw::lock_free_io(),
                vls::raw::lock_free_expected(),
                "one thread so far: lock-free I/O"
            );
            let echo = |round: usize| {
                let msg = pattern(LEN, round as u64);
                write_all(c, &msg);
                let mut got = vec![0u8; LEN];
                let mut have = 0;
                let deadline = Instant::now() + Duration::from_secs(10);
                while have < LEN {
                    let n = read_some(c, &mut got[have..]);
                    if n == EAGAIN as isize {
                        assert!(Instant::now() < deadline, "echo {round} stalled");
                        continue;
                    }
                    assert!(n > 0, "read: {n}");
                    have += n as usize;
                }
                assert_eq!(got, msg, "echo {round} corrupted");
            };
            for round in 0..ROUNDS / 2 {
                echo(round);
            }
            let second = thread::spawn(|| {
                for _ in 0..200 {
                    let h = vls_create(TCP, 1);
                    assert!(h >= 0, "create: {h}");
                    assert_eq!(vls_close(h), 0);
                }
            });
            for round in ROUNDS / 2..ROUNDS {
                echo(round);
            }
            second.join().unwrap();
            assert!(!vls::raw::lock_free_io(), "a second thread switched the locks on");
            vls_close(c);
        },
    );
}

/// One thread blocks reading a session; another closes it: the reader
/// wakes with an error, nothing deadlocks, and a thread that exits leaves
/// the rest of the app working.
#[test]
fn mode3_close_wakes_blocked_reader_and_thread_exit_is_harmless() {
    let a = addr(7105);
    run_pair(
        "mode3_close_wakes_blocked_reader_and_thread_exit_is_harmless",
        cut_through,
        || {
            app("c-server");
            let l = listen_on(a, TCP, false);
            let s1 = accept(l);
            let s2 = accept(l);
            assert!(s1 >= 0 && s2 >= 0);
            let (tx, rx) = mpsc::channel();
            let reader = thread::spawn(move || {
                let mut b = [0u8; 8];
                let t = Instant::now();
                let n = read_some(s1, &mut b);
                tx.send(()).unwrap();
                (n, t.elapsed())
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while vls::raw::threads_waiting_in_vcl() == 0 {
                assert!(Instant::now() < deadline, "the reader never blocked in VCL");
                thread::sleep(Duration::from_millis(1));
            }
            assert!(rx.try_recv().is_err(), "reader must be blocked (client sends nothing)");
            // a short-lived thread does some work and exits
            thread::spawn(move || write_all(s2, b"ping")).join().unwrap();
            let t = Instant::now();
            assert_eq!(vls_close(s1), 0, "close while another thread reads");
            let (n, _) = reader.join().unwrap();
            assert!(n < 0, "blocked reader must get an error, got {n}");
            assert!(t.elapsed() < Duration::from_secs(3), "close took {:?}", t.elapsed());
            // the app keeps working after those threads are gone
            let mut b = [0u8; 4];
            read_exact(s2, &mut b);
            assert_eq!(&b, b"pong");
            vls_close(s2);
            vls_close(l);
        },
        || {
            app("c-client");
            let c1 = connect_to(a, TCP);
            let c2 = connect_to(a, TCP);
            let mut b = [0u8; 4];
            read_exact(c2, &mut b);
            assert_eq!(&b, b"ping");
            write_all(c2, b"pong");
            thread::sleep(Duration::from_millis(500));
            vls_close(c1);
            vls_close(c2);
        },
    );
}

/// Regression (C layer crash): thread B keeps deleting and re-adding its
/// level-triggered sessions to its epoll set while thread A waits on another
/// set of the same VCL worker. VCL's level-triggered ring is per worker, so
/// `epoll_ctl` must be serialised with `epoll_wait`. Then many threads close
/// sessions at once and a read still completes (the pending-writer count
/// of the session-pool lock must come back to zero).
#[test]
fn mode3_epoll_ctl_churn_while_another_set_waits_then_concurrent_closes() {
    const N: usize = 8;
    let a = addr(7106);
    run_pair(
        "mode3_epoll_ctl_churn_while_another_set_waits_then_concurrent_closes",
        cut_through,
        || {
            app("churn-server");
            let l = listen_on(a, TCP, false);
            let sessions: Vec<i32> = (0..N).map(|_| accept(l)).collect();
            assert!(sessions.iter().all(|&s| s >= 0));
            // Every session has unread data (level-triggered events stay
            // on) once what the client sent has arrived.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !sessions.iter().all(|&s| {
                let mut len = 4u32;
                // SAFETY: GET_NREAD writes nothing through the buffer.
                unsafe { vls_attr(s, ffi::VPPCOM_ATTR_GET_NREAD, std::ptr::null_mut(), &mut len) > 0 }
            }) {
                assert!(Instant::now() < deadline, "the client's data never arrived");
                thread::sleep(Duration::from_millis(5));
            }
            let (set_a, set_b) = sessions.split_at(N / 2);
            let (set_a, set_b) = (set_a.to_vec(), set_b.to_vec());
            let ep_a = vls_epoll_create();
            let ep_b = vls_epoll_create();
            for (ep, set) in [(ep_a, &set_a), (ep_b, &set_b)] {
                for &s in set.iter() {
                    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: s as u64 };
                    // SAFETY: valid event.
                    assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut ev) }, 0);
                }
            }
            let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let waiter = {
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
                    let mut rounds = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        // SAFETY: `evs` holds 16 events.
                        let n = unsafe { vls_epoll_wait(ep_a, evs.as_mut_ptr(), 16, 0.0) };
                        assert!(n >= 0, "epoll_wait: {n}");
                        rounds += 1;
                    }
                    rounds
                })
            };
            let churner = {
                let stop = stop.clone();
                let set_b = set_b.clone();
                thread::spawn(move || {
                    let mut rounds = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for &s in &set_b {
                            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: s as u64 };
                            // SAFETY: valid event.
                            unsafe {
                                assert_eq!(vls_epoll_ctl(ep_b, libc::EPOLL_CTL_DEL, s, &mut ev), 0);
                                assert_eq!(vls_epoll_ctl(ep_b, libc::EPOLL_CTL_ADD, s, &mut ev), 0);
                            }
                        }
                        rounds += 1;
                    }
                    rounds
                })
            };
            thread::sleep(Duration::from_secs(2));
            stop.store(true, Ordering::Relaxed);
            let (w, c) = (waiter.join().expect("waiter"), churner.join().expect("churner"));
            assert!(w > 100 && c > 10, "both threads made progress: wait {w}, churn {c}");

            // Concurrent closes from several threads, then a read.
            let closers: Vec<_> = sessions[1..]
                .chunks(2)
                .map(|c| c.to_vec())
                .map(|c| {
                    thread::spawn(move || {
                        for s in c {
                            assert_eq!(vls_close(s), 0);
                        }
                    })
                })
                .collect();
            for t in closers {
                t.join().unwrap();
            }
            let (tx, rx) = mpsc::channel();
            let s0 = sessions[0];
            thread::spawn(move || {
                let mut b = [0u8; 1];
                tx.send(read_some(s0, &mut b)).unwrap();
            });
            let n = rx.recv_timeout(Duration::from_secs(5)).expect("read after concurrent closes hung");
            assert_eq!(n, 1);
            write_all(s0, b"!");
            thread::sleep(Duration::from_millis(200));
        },
        || {
            app("churn-client");
            let cs: Vec<i32> = (0..N).map(|_| connect_to(a, TCP)).collect();
            for &c in &cs {
                write_all(c, b"d");
            }
            let mut b = [0u8; 1];
            read_exact(cs[0], &mut b);
            for c in cs {
                vls_close(c);
            }
        },
    );
}

/// Mode 3: two threads, each with its own epoll set over its own sessions,
/// on the one VCL worker. VCL's epoll state is per worker; VLS must never
/// return a session of set B from a wait on set A, and both sets must get
/// their events.
#[test]
fn mode3_events_of_one_epoll_set_never_reach_another() {
    const PER_SET: usize = 4;
    let a = addr(7107);
    run_pair(
        "mode3_events_of_one_epoll_set_never_reach_another",
        cut_through,
        || {
            app("demux-server");
            let l = listen_on(a, TCP, false);
            let sessions: Vec<i32> = (0..2 * PER_SET).map(|_| accept(l)).collect();
            for &s in &sessions {
                let mut flags = libc::O_NONBLOCK as u32;
                let mut len = 4u32;
                assert_eq!(
                    // SAFETY: 4-byte buffer.
                    unsafe {
                        vls_attr(s, ffi::VPPCOM_ATTR_SET_FLAGS, (&mut flags as *mut u32).cast(), &mut len)
                    },
                    0
                );
            }
            let barrier = Arc::new(Barrier::new(2));
            let ts: Vec<_> = sessions
                .chunks(PER_SET)
                .map(|mine| {
                    let mine = mine.to_vec();
                    let barrier = barrier.clone();
                    thread::spawn(move || {
                        let ep = vls_epoll_create();
                        for &s in &mine {
                            let mut ev =
                                libc::epoll_event { events: libc::EPOLLIN as u32, u64: 1000 + s as u64 };
                            // SAFETY: valid event.
                            assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut ev) }, 0);
                        }
                        barrier.wait();
                        let (mut events, mut bytes) = (0u64, 0u64);
                        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
                        let mut buf = [0u8; 4096];
                        let deadline = Instant::now() + Duration::from_secs(2);
                        while Instant::now() < deadline {
                            // SAFETY: `evs` holds 16 events.
                            let n = unsafe { vls_epoll_wait(ep, evs.as_mut_ptr(), 16, 0.0) };
                            assert!(n >= 0, "epoll_wait {n}");
                            for e in &evs[..n as usize] {
                                let s = ({ e.u64 } as i64 - 1000) as i32;
                                assert!(mine.contains(&s), "set of {mine:?} got an event of session {s}");
                                events += 1;
                                let r = read_some(s, &mut buf);
                                if r > 0 {
                                    bytes += r as u64;
                                }
                            }
                        }
                        (events, bytes)
                    })
                })
                .collect();
            for t in ts {
                let (events, bytes) = t.join().expect("waiter thread");
                assert!(
                    events > 0 && bytes > 0,
                    "each set gets its own events: {events} events, {bytes} bytes"
                );
            }
        },
        || {
            app("demux-client");
            let cs: Vec<i32> = (0..2 * PER_SET).map(|_| connect_to(a, TCP)).collect();
            let deadline = Instant::now() + Duration::from_millis(2500);
            let msg = [1u8; 512];
            while Instant::now() < deadline {
                for &c in &cs {
                    // SAFETY: valid buffer.
                    let n = unsafe { vls_write(c, msg.as_ptr() as *mut c_void, msg.len()) };
                    assert!(n > 0 || n == EAGAIN, "write {n}");
                }
                thread::sleep(Duration::from_micros(200));
            }
        },
    );
}

/// The application attached from a thread other than the one that calls
/// `exit`, and a VLS thread is still alive at exit: VCL's exit handler runs
/// on a thread without a VCL worker, which VLS must point at the process
/// worker first (VCL would otherwise look up worker `~0` and crash).
#[test]
fn exit_from_a_thread_that_never_used_vls() {
    run_isolated(
        "exit_from_a_thread_that_never_used_vls",
        vpp_harness::VclConf::default(),
        |_| {},
        || {
            thread::spawn(|| {
                app("exit-elsewhere");
                let (tx, rx) = mpsc::channel();
                thread::spawn(move || {
                    let h = vls_create(TCP, 0);
                    assert!(h >= 0, "create {h}");
                    tx.send(()).unwrap();
                    // Still alive when the process exits.
                    thread::sleep(Duration::from_secs(3600));
                });
                rx.recv().unwrap();
            })
            .join()
            .unwrap();
        },
    );
}

// ---------------------------------------------------------------------------
// mode 2: per-thread workers (`multi-thread-workers`), sessions move
// ---------------------------------------------------------------------------

/// Both sides cut-through, the server with per-thread workers.
fn mt_server(_: &vpp_harness::VppInstance) -> (vpp_harness::VclConf, vpp_harness::VclConf) {
    (vpp_harness::VclConf::default().with("multi-thread-workers"), vpp_harness::VclConf::default())
}

/// One client thread: `n` connections, each writes a message and expects
/// it echoed.
fn echo_client(a: SocketAddr, n: usize) {
    app("mode2-client");
    echo_conns(a, n, 0);
}

/// `n` connections, one echo each (data seeded from `seed`).
fn echo_conns(a: SocketAddr, n: usize, seed: usize) {
    for i in 0..n {
        let c = connect_to(a, TCP);
        let data = pattern(MSG, (seed + i) as u64);
        write_all(c, &data);
        let mut back = vec![0u8; MSG];
        read_exact(c, &mut back);
        assert!(back == data, "echo differs");
        assert_eq!(vls_close(c), 0);
    }
}

/// Serves one echo on accepted session `s` and closes it.
fn echo_once(s: i32) {
    let mut buf = vec![0u8; MSG];
    read_exact(s, &mut buf);
    write_all(s, &buf);
    let mut b = [0u8; 1];
    assert_eq!(read_some(s, &mut b), 0, "client closes");
    assert_eq!(vls_close(s), 0);
}

/// A listener created by the main thread is bound, listened on, accepted
/// on and read by another thread, which has its own VCL worker: the
/// session moves to that worker while the main thread sits in
/// `pthread_join` (it never comes back into VLS to answer anything).
#[test]
fn mode2_session_created_in_one_thread_is_served_by_another() {
    let a = addr(7201);
    run_pair(
        "mode2_session_created_in_one_thread_is_served_by_another",
        mt_server,
        || {
            app("mode2-server");
            let l = vls_create(TCP, 0);
            assert!(l >= 0);
            let main_wrk = my_worker();
            thread::spawn(move || {
                // SAFETY: `ep` is valid during the call.
                let (rv, _) = with_endpt(Some(&a), |ep| unsafe { vls_bind(l, ep) });
                assert_eq!(rv, 0, "bind from another thread");
                assert_ne!(my_worker(), main_wrk, "a worker of its own");
                let (si, wi) = session_and_worker(l);
                assert_eq!(wi, my_worker(), "the listener moved to this thread's worker");
                assert_eq!(vls_session_index_to_vlsh(si), l, "the handle table follows the move");
                assert_eq!(vls_listen(l, 64), 0);
                for _ in 0..4 {
                    let s = accept(l);
                    assert!(s >= 0, "accept {s}");
                    echo_once(s);
                }
                assert_eq!(vls_close(l), 0);
            })
            .join()
            .expect("serving thread");
        },
        || echo_client(a, 4),
    );
}

/// An epoll set created by the main thread (as wrk does for every thread)
/// is used and waited on by another thread.
#[test]
fn mode2_epoll_created_in_one_thread_is_waited_on_in_another() {
    let a = addr(7202);
    run_pair(
        "mode2_epoll_created_in_one_thread_is_waited_on_in_another",
        mt_server,
        || {
            app("mode2-server");
            let ep = vls_epoll_create();
            assert!(ep >= 0);
            thread::spawn(move || {
                let l = listen_on(a, TCP, false);
                let mut e = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 9 };
                // SAFETY: valid event pointer.
                assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_ADD, l, &mut e) }, 0);
                for _ in 0..4 {
                    let mut out = [libc::epoll_event { events: 0, u64: 0 }; 8];
                    // SAFETY: `out` is valid for 8 events.
                    let n = until_positive(|| unsafe { vls_epoll_wait(ep, out.as_mut_ptr(), 8, 0.1) });
                    assert!(n > 0, "epoll_wait: {n}");
                    assert_eq!({ out[0].u64 }, 9);
                    let s = accept(l);
                    assert!(s >= 0, "accept {s}");
                    echo_once(s);
                }
                assert_eq!(vls_close(l), 0);
                assert_eq!(vls_close(ep), 0);
            })
            .join()
            .expect("serving thread");
        },
        || echo_client(a, 4),
    );
}

/// `rounds` rounds of two threads moving each other's fresh sessions at
/// the same moment (then listening on them, as the new owner). With
/// `rpc_only`, every move is an RPC and each thread stays inside VCL (in an
/// epoll wait, handling its queue) until the other is done.
fn crossed_moves(rpc_only: bool, base_port: u16) {
    const ROUNDS: usize = 100;
    if rpc_only {
        std::env::set_var("VLS_MIGRATE_BY_RPC", "1");
    }
    app("mode2-crossed");
    let barrier = Arc::new(Barrier::new(2));
    let finished = Arc::new(AtomicUsize::new(0));
    let (tx0, rx0) = mpsc::channel::<i32>();
    let (tx1, rx1) = mpsc::channel::<i32>();
    let start = Instant::now();
    let ts: Vec<_> = [(0u16, tx0, rx1), (1u16, tx1, rx0)]
        .into_iter()
        .map(|(t, mine, theirs)| {
            let (barrier, finished) = (barrier.clone(), finished.clone());
            thread::spawn(move || {
                let own_ep = vls_epoll_create();
                assert!(own_ep >= 0);
                for round in 1..=ROUNDS {
                    let h = vls_create(TCP, 0);
                    assert!(h >= 0);
                    mine.send(h).unwrap();
                    let other = theirs.recv().unwrap();
                    barrier.wait();
                    let port = base_port + (round * 2) as u16 + t;
                    // SAFETY: `ep` is valid during the call.
                    let (rv, _) = with_endpt(Some(&addr(port)), |ep| unsafe { vls_bind(other, ep) });
                    assert_eq!(rv, 0, "round {round}: bind after the move");
                    let (_, wi) = session_and_worker(other);
                    assert_eq!(wi, my_worker(), "round {round}: on this thread's worker");
                    assert_eq!(vls_listen(other, 8), 0, "round {round}: listen");
                    finished.fetch_add(1, Ordering::SeqCst);
                    while finished.load(Ordering::SeqCst) < 2 * round {
                        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
                        // SAFETY: `out` is valid for 4 events.
                        unsafe { vls_epoll_wait(own_ep, out.as_mut_ptr(), 4, 0.001) };
                    }
                    assert_eq!(vls_close(other), 0);
                }
                assert_eq!(vls_close(own_ep), 0);
            })
        })
        .collect();
    for t in ts {
        t.join().expect("mover thread");
    }
    // No move waited for the RPC timeout.
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
}

/// Two threads × 100 rounds moving each other's sessions simultaneously:
/// no hang, every move lands on the right worker.
#[test]
fn mode2_crossed_moves_of_two_threads() {
    let conf = vpp_harness::VclConf::default().with("multi-thread-workers");
    run_isolated("mode2_crossed_moves_of_two_threads", conf, |_| {}, || crossed_moves(false, 7300));
}

/// The same, every move an RPC through VPP while both threads are inside
/// VCL: each answers the other's request while waiting for its own.
#[test]
fn mode2_crossed_moves_by_rpc_answer_each_other() {
    let conf = vpp_harness::VclConf::default().with("multi-thread-workers");
    run_isolated("mode2_crossed_moves_by_rpc_answer_each_other", conf, |_| {}, || crossed_moves(true, 7600));
}

/// The owner thread exits before another thread uses its session: the
/// session's VCL session went with the owner's worker, so the use fails
/// with `EBADFD` at once (no RPC to a dead worker) and close frees the
/// handle.
#[test]
fn mode2_owner_exits_before_the_move() {
    let conf = vpp_harness::VclConf::default().with("multi-thread-workers");
    run_isolated(
        "mode2_owner_exits_before_the_move",
        conf,
        |_| {},
        || {
            app("mode2-owner-exits");
            let h = thread::spawn(|| vls_create(TCP, 0)).join().unwrap();
            assert!(h >= 0);
            let start = Instant::now();
            assert_eq!(vls_listen(h, 1), EBADFD);
            assert!(start.elapsed() < Duration::from_secs(3), "took {:?}", start.elapsed());
            assert_eq!(vls_close(h), 0);
            assert_eq!(vls_listen(h, 1), EBADFD, "closed");
            // The handle is free again: the next session gets it.
            let again = vls_create(TCP, 0);
            assert_eq!(again, h);
            assert_eq!(vls_close(again), 0);
        },
    );
}

/// VPP dies while a move waits for the owner's answer (every move by RPC,
/// the owner idle outside VCL so it never answers): the mover returns
/// `EBADFD` at the RPC timeout (`VLS_RPC_TIMEOUT_MS`, 1 s here) and nothing
/// hangs.
#[test]
fn mode2_vpp_killed_while_a_move_waits() {
    let conf = vpp_harness::VclConf::default().with("multi-thread-workers");
    run_isolated(
        "mode2_vpp_killed_while_a_move_waits",
        conf,
        |_| {},
        || {
            let pid = own_vpp_pid();
            std::env::set_var("VLS_MIGRATE_BY_RPC", "1");
            std::env::set_var("VLS_RPC_TIMEOUT_MS", "1000");
            app("mode2-vpp-killed");
            let (tx, rx) = mpsc::channel();
            let (stop_tx, stop_rx) = mpsc::channel::<()>();
            let owner = thread::spawn(move || {
                tx.send(vls_create(TCP, 0)).unwrap();
                let _ = stop_rx.recv();
            });
            let h = rx.recv().unwrap();
            assert!(h >= 0);
            let killer = thread::spawn(move || {
                thread::sleep(Duration::from_millis(300));
                // SAFETY: plain syscall.
                unsafe { libc::kill(pid, libc::SIGKILL) }
            });
            let start = Instant::now();
            assert_eq!(vls_listen(h, 1), EBADFD);
            let took = start.elapsed();
            assert_eq!(killer.join().unwrap(), 0, "VPP was killed during the wait");
            // Not before the (1 s) timeout; the upper bound only catches a
            // hang (a loaded machine may be slow).
            assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(10), "took {took:?}");
            stop_tx.send(()).unwrap();
            owner.join().unwrap();
        },
    );
}

/// VPP is killed while three threads of one process (mode 3) are blocked:
/// one in `vls_accept` on a blocking listener, one in `vls_read` on a bound
/// UDP session, one in `vls_epoll_wait` without a timeout. Each must return
/// (an error, or for the wait no event) within 5 s of the kill, and the
/// process must end cleanly, its descriptor 0 untouched.
///
/// The thread in the epoll wait notices first (VCL's detach: the worker's
/// message queue is dropped). This crashed the process (a null queue in
/// `vcl_worker_wait_mq`) while the other two waited inside VCL on that
/// queue: now a wait on a detached worker returns at once, the detach
/// waits for waits to end, and a blocking accept waits in VLS. Another
/// thread's epoll wait during the detach made VCL read and write
/// descriptor 0 (the retry pipe was not made yet): VLS keeps such calls
/// out of VCL until the detach is over.
#[test]
fn vpp_killed_while_threads_are_blocked() {
    let conf = vpp_harness::VclConf::default();
    run_isolated(
        "vpp_killed_while_threads_are_blocked",
        conf,
        |_| {},
        || {
            let pid = own_vpp_pid();
            // Descriptor 0 is this process's, with bytes of its own in it: VLS
            // must let no one read or write it (VCL's re-attach does, with the
            // pipe it signals itself on before that pipe exists).
            let stdin_canary = StdinCanary::install();
            app("vpp-killed");
            let l = listen_on(addr(7120), TCP, false);
            let u = listen_on(addr(7121), UDP, false);
            let l2 = listen_on(addr(7122), TCP, true);
            let ep = vls_epoll_create();
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 1 };
            // SAFETY: valid event.
            assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_ADD, l2, &mut ev) }, 0);
            let (tx, rx) = mpsc::channel();
            let mut threads = Vec::new();
            for what in ["accept", "read", "epoll_wait"] {
                let tx = tx.clone();
                threads.push(thread::spawn(move || {
                    let rv = match what {
                        "accept" => accept(l),
                        "read" => read_some(u, &mut [0u8; 64]) as i32,
                        _ => {
                            let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
                            // SAFETY: `evs` holds 4 events.
                            unsafe { vls_epoll_wait(ep, evs.as_mut_ptr(), 4, -1.0) }
                        }
                    };
                    tx.send((what, rv, Instant::now())).unwrap();
                }));
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while vls::raw::threads_waiting_in_vcl() < 1 || vls::raw::threads_waiting_to_accept() < 1 {
                if let Ok((what, rv, _)) = rx.try_recv() {
                    panic!("{what} returned {rv} before VPP was killed");
                }
                assert!(
                    Instant::now() < deadline,
                    "the read never blocked in VCL ({}) or the accept never waited ({})",
                    vls::raw::threads_waiting_in_vcl(),
                    vls::raw::threads_waiting_to_accept()
                );
                thread::sleep(Duration::from_millis(5));
            }
            // (The epoll wait needs no such check: it notices VPP's death
            // whether it is already waiting or not.)
            // SAFETY: plain syscall.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
            let killed = Instant::now();
            for _ in 0..3 {
                let (what, rv, at) =
                    rx.recv_timeout(Duration::from_secs(10)).expect("a blocked call returned");
                eprintln!("{what} returned {rv} {:?} after the kill", at - killed);
                assert!(at - killed < Duration::from_secs(5), "{what} took {:?}", at - killed);
                match what {
                    "accept" => assert_eq!(rv, -libc::ECONNABORTED, "accept"),
                    "read" => assert!(rv < 0, "read returned {rv}"),
                    _ => assert!(rv <= 0, "{what} returned {rv}"),
                }
            }
            for t in threads {
                t.join().unwrap();
            }
            stdin_canary.check();
        },
    );
}

/// A pipe on descriptor 0 holding bytes that nobody but its test may take.
struct StdinCanary {
    writer: i32,
}

impl StdinCanary {
    const BYTES: &[u8] = b"canary";

    fn install() -> Self {
        let mut fds = [0i32; 2];
        // SAFETY: plain syscalls on descriptors made here.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            assert_eq!(
                libc::write(fds[1], Self::BYTES.as_ptr().cast(), Self::BYTES.len()),
                Self::BYTES.len() as isize
            );
            assert_eq!(libc::dup2(fds[0], 0), 0);
            libc::close(fds[0]);
            assert_eq!(libc::fcntl(0, libc::F_SETFL, libc::O_NONBLOCK), 0);
        }
        StdinCanary { writer: fds[1] }
    }

    /// Descriptor 0 still holds exactly the bytes put there.
    fn check(self) {
        let mut buf = [0u8; 64];
        // SAFETY: reads into a local buffer.
        let n = unsafe { libc::read(0, buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(&buf[..n.max(0) as usize], Self::BYTES, "descriptor 0 was read or written by the layer");
        // SAFETY: the write end made by `install`.
        unsafe { libc::close(self.writer) };
    }
}

/// The pid of the test's private VPP, for the tests that kill or pause it: they
/// need a VPP the harness started itself.
fn own_vpp_pid() -> i32 {
    vpp_harness::vpp_pid().expect("this test kills VPP: it needs one it started (not VLS_VPP_EXTERNAL_DIR)")
}
