//! Per-thread workers (`multi-thread-workers`, VLS mode 2): listeners and
//! epoll sets with members move between the threads' VCL workers, and
//! connections stay where they were accepted, against a real VPP. The
//! server runs in mode 2; the peer is a plain VCL app in another namespace,
//! so connections go through VPP's TCP stack.

mod common;

use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use vls::capi::*;
use vpp_harness::{pattern, VclConf, VppInstance, STACK_SERVER};

use common::capi::*;
use common::run_pair;

const EPOLLIN: u32 = libc::EPOLLIN as u32;

fn server_addr(port: u16) -> SocketAddr {
    SocketAddr::from((STACK_SERVER, port))
}

/// The server in mode 2, the client plain; both through VPP's stack.
fn mode2_through_stack(vpp: &VppInstance) -> (VclConf, VclConf) {
    let (srv, cli) = vpp_harness::through_stack(vpp);
    (srv.with("multi-thread-workers"), cli)
}

fn epoll_add(ep: i32, h: i32, events: u32, data: u64) {
    let mut e = libc::epoll_event { events, u64: data };
    // SAFETY: valid event pointer.
    assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_ADD, h, &mut e) }, 0, "epoll_ctl add");
}

fn epoll_wait(ep: i32, out: &mut [libc::epoll_event], wait_ms: f64) -> i32 {
    // SAFETY: `out` is valid for its length.
    unsafe { vls_epoll_wait(ep, out.as_mut_ptr(), out.len() as i32, wait_ms) }
}

fn accept_nonblocking(l: i32) -> i32 {
    // SAFETY: `ep` is valid during the call.
    let (h, _) = with_endpt(None, |ep| unsafe { vls_accept(l, ep, libc::O_NONBLOCK) });
    h
}

/// Non-blocking read into `buf` (0 if nothing; panics at end of stream).
fn read_avail(h: i32, buf: &mut [u8]) -> usize {
    let n = read_some(h, buf);
    if n == EAGAIN as isize {
        return 0;
    }
    assert!(n > 0, "read: {n}");
    n as usize
}

/// One echo per connection: `n` connections, each sends a message and
/// expects it back.
fn echo_clients(a: SocketAddr, n: usize) {
    app("moves-client");
    for i in 0..n {
        let c = connect_to(a, TCP);
        assert!(echo_through(c, &pattern(1000, i as u64)), "connection {i} ended before its echo");
        assert_eq!(vls_close(c), 0);
    }
}

/// [`echo_clients`] for a server whose listener moves to another worker
/// once, while the first connection may be in its handshake: VPP drops a
/// connection still being set up on the listener's old worker when the
/// listener changes workers (the caveat in `engine::migrate`), and its
/// client sees it closed or reset before any echo. The first connection is
/// then made again, once. (A connection VPP announced to the old worker
/// but that never reaches the accepting thread is not dropped: its client
/// waits, and the server fails.)
fn echo_clients_across_a_move(a: SocketAddr, n: usize) {
    app("moves-client");
    let mut again = true;
    for i in 0..n {
        assert_eq!(vls_close(echoed_across_a_move(a, i, &mut again)), 0);
    }
}

/// Connection `i` of [`echo_clients_across_a_move`], once it echoed its
/// message: the first one is made again if it ended before its echo and
/// `again` (then cleared) allows.
fn echoed_across_a_move(a: SocketAddr, i: usize, again: &mut bool) -> i32 {
    loop {
        let c = connect_to(a, TCP);
        if echo_through(c, &pattern(1000, i as u64)) {
            return c;
        }
        assert_eq!(vls_close(c), 0);
        assert!(i == 0 && *again, "connection {i} ended before its echo");
        *again = false;
    }
}

/// Sends `data` on `c` and expects it back; `false` if the connection
/// ended (closed or reset) before any of it came back.
fn echo_through(c: i32, data: &[u8]) -> bool {
    let mut rest = data;
    while !rest.is_empty() {
        // SAFETY: `rest` is valid for its length.
        let n = unsafe { vls_write(c, rest.as_ptr() as *mut std::ffi::c_void, rest.len()) };
        if n == EAGAIN {
            thread::yield_now();
            continue;
        }
        if n <= 0 {
            return false;
        }
        rest = &rest[n as usize..];
    }
    let mut back = vec![0u8; data.len()];
    let mut got = 0;
    while got < back.len() {
        let n = read_some(c, &mut back[got..]);
        if n <= 0 && got == 0 {
            return false;
        }
        assert!(n > 0, "read: {n} after {got}");
        got += n as usize;
    }
    assert!(back == data, "echo differs");
    true
}

/// Echoes one message (blocking reads and writes) and closes.
fn echo_once(s: i32) {
    let mut buf = vec![0u8; 1000];
    read_exact(s, &mut buf);
    write_all(s, &buf);
    let mut b = [0u8; 1];
    assert_eq!(read_some(s, &mut b), 0, "client closes");
    assert_eq!(vls_close(s), 0);
}

/// A listener made (bound, listening) on `main` is accepted on by a
/// worker thread: it moves to that thread's worker, and VPP hands that
/// worker the connections, also those it announced to `main`'s worker
/// while the listener moved (the client connects meanwhile).
#[test]
fn listener_made_on_main_is_accepted_on_by_a_worker_thread() {
    let a = server_addr(7801);
    run_pair(
        "listener_made_on_main_is_accepted_on_by_a_worker_thread",
        mode2_through_stack,
        || {
            app("moves-server");
            let l = listen_on(a, TCP, false);
            let main_wrk = my_worker();
            thread::spawn(move || {
                for _ in 0..4 {
                    let s = accept(l);
                    assert!(s >= 0, "accept {s}");
                    assert_eq!(session_and_worker(l).1, my_worker(), "the listener moved here");
                    assert_ne!(my_worker(), main_wrk);
                    echo_once(s);
                }
            })
            .join()
            .expect("accepting thread");
            assert_eq!(vls_close(l), 0);
        },
        || echo_clients_across_a_move(a, 4),
    );
}

/// A connection VPP handed the listener's worker (queued there, `main`'s
/// epoll set reports it) before another thread's accept moved the
/// listener: the accepting thread's worker takes it over and serves it.
#[test]
fn connection_queued_before_the_listener_moved_is_handed_over() {
    let a = server_addr(7805);
    run_pair(
        "connection_queued_before_the_listener_moved_is_handed_over",
        mode2_through_stack,
        || {
            app("moves-server");
            let l = listen_on(a, TCP, false);
            let ep = vls_epoll_create();
            epoll_add(ep, l, EPOLLIN, 3);
            let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
            let n = until_positive(|| epoll_wait(ep, &mut out, 100.0));
            assert_eq!((n, { out[0].u64 }), (1, 3), "a connection waits on main's worker");
            // SAFETY: DEL takes no event.
            assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_DEL, l, std::ptr::null_mut()) }, 0);
            let main_wrk = my_worker();
            thread::spawn(move || {
                let s = accept(l);
                assert!(s >= 0, "accept {s}");
                assert_ne!(my_worker(), main_wrk);
                assert_eq!(session_and_worker(s).1, my_worker());
                echo_once(s);
            })
            .join()
            .expect("accepting thread");
            assert_eq!(vls_close(l), 0);
            assert_eq!(vls_close(ep), 0);
        },
        || echo_clients(a, 1),
    );
}

/// Two threads accept on one listener, taking turns (so the listener
/// moves at every turn): both get connections, and every connection is
/// served. The listener moves while no connection is being set up: VPP
/// resets a connection whose handshake is in progress when a listener
/// changes workers (see `engine::migrate`). So each thread, having
/// echoed, waits until the other has taken the listener (its first accept
/// attempt moves it) before it closes the connection, and the client opens
/// the next connection only once the server closed the previous one (the
/// last one the client closes). Only the first move, from `main`, may meet
/// the first connection in its handshake: that one may be made again (see
/// [`echo_clients_across_a_move`]).
#[test]
fn two_threads_accept_on_one_listener() {
    const CONNS: usize = 20;
    let a = server_addr(7802);
    run_pair(
        "two_threads_accept_on_one_listener",
        mode2_through_stack,
        || {
            app("moves-server");
            let l = listen_on(a, TCP, true);
            // (turn: connections accepted so far, the listener was taken by
            // the thread whose turn it is)
            let turn = Arc::new((Mutex::new((0usize, true)), Condvar::new()));
            let ts: Vec<_> = (0..2)
                .map(|t| {
                    let turn = turn.clone();
                    thread::spawn(move || {
                        let (m, cv) = &*turn;
                        let mut mine = 0;
                        let deadline = Instant::now() + Duration::from_secs(20);
                        loop {
                            let mut k = m.lock().unwrap();
                            while k.0 < CONNS && k.0 % 2 != t {
                                k = cv.wait(k).unwrap();
                            }
                            if k.0 >= CONNS {
                                return mine;
                            }
                            drop(k);
                            // The first attempt moves the listener here
                            // (the listener is non-blocking, the accepted
                            // sessions are blocking).
                            let mut s = accept(l);
                            m.lock().unwrap().1 = true;
                            cv.notify_all();
                            while s == EAGAIN {
                                assert!(Instant::now() < deadline, "thread {t}: no connection");
                                thread::sleep(Duration::from_millis(1));
                                s = accept(l);
                            }
                            assert!(s >= 0, "thread {t}: accept {s}");
                            assert_eq!(session_and_worker(l).1, my_worker(), "the listener is here");
                            mine += 1;
                            let mut buf = vec![0u8; 1000];
                            read_exact(s, &mut buf);
                            write_all(s, &buf);
                            // Hand over, and close once the other thread
                            // has taken the listener.
                            let mut k = m.lock().unwrap();
                            k.0 += 1;
                            k.1 = k.0 >= CONNS;
                            cv.notify_all();
                            while !k.1 {
                                k = cv.wait(k).unwrap();
                            }
                            let last = k.0 >= CONNS;
                            drop(k);
                            if last {
                                // The client closes the last one (an exiting
                                // server would lose the echo still queued).
                                let mut b = [0u8; 1];
                                assert_eq!(read_some(s, &mut b), 0, "thread {t}: the client closes");
                            }
                            assert_eq!(vls_close(s), 0);
                        }
                    })
                })
                .collect();
            let got: Vec<usize> = ts.into_iter().map(|t| t.join().expect("accepting thread")).collect();
            assert_eq!(got.iter().sum::<usize>(), CONNS);
            assert!(got.iter().all(|&g| g > 0), "both threads got connections: {got:?}");
            assert_eq!(vls_close(l), 0);
        },
        || {
            app("moves-client");
            let mut again = true;
            for i in 0..CONNS {
                let c = echoed_across_a_move(a, i, &mut again);
                let mut b = [0u8; 1];
                if i + 1 < CONNS {
                    assert_eq!(read_some(c, &mut b), 0, "the server closes {i}");
                }
                assert_eq!(vls_close(c), 0);
            }
        },
    );
}

/// An epoll set made on `main` with a member (the listener) is waited on
/// by a worker thread: set and member move there, and the listener's
/// events, then an accepted connection's, reach that thread's wait. The
/// client connects while they move: a connection VPP announced to `main`'s
/// worker before it handled the listener's move (`main` sits in
/// `pthread_join`, outside VCL, and never reads its queue again) reaches
/// the waiting thread too (the listener's stub on `main`'s worker collects
/// it, see the shim's `vppsys_session_move_out`).
#[test]
fn epoll_set_with_members_made_on_main_is_waited_on_by_a_worker_thread() {
    let a = server_addr(7803);
    run_pair(
        "epoll_set_with_members_made_on_main_is_waited_on_by_a_worker_thread",
        mode2_through_stack,
        || {
            app("moves-server");
            let l = listen_on(a, TCP, true);
            let ep = vls_epoll_create();
            assert!(ep >= 0);
            epoll_add(ep, l, EPOLLIN, 7);
            thread::spawn(move || serve_through_set(ep, l, 4)).join().expect("waiting thread");
            assert_eq!(vls_close(l), 0);
            assert_eq!(vls_close(ep), 0);
        },
        || echo_clients_across_a_move(a, 4),
    );
}

/// The waiting thread of the epoll-set tests: `n` times, waits on set `ep`
/// (which moves here with its member, listener `l`) until the listener is
/// readable, accepts, waits on the set for the connection's message and
/// echoes it.
fn serve_through_set(ep: i32, l: i32, n: u64) {
    let mut out = [libc::epoll_event { events: 0, u64: 0 }; 8];
    for i in 0..n {
        let k = until_positive(|| epoll_wait(ep, &mut out, 100.0));
        assert!(k > 0, "epoll_wait: {k}");
        assert_eq!({ out[0].u64 }, 7, "the listener's event");
        assert_eq!(session_and_worker(ep).1, my_worker(), "the set moved here");
        assert_eq!(session_and_worker(l).1, my_worker(), "its member came along");
        let s = accept_nonblocking(l);
        assert!(s >= 0, "accept {s}");
        epoll_add(ep, s, EPOLLIN, 100 + i);
        // The connection's data arrives through the set.
        let mut msg = vec![0u8; 1000];
        let mut got = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        while got < msg.len() {
            assert!(Instant::now() < deadline, "message not received");
            let k = epoll_wait(ep, &mut out, 100.0);
            assert!(k >= 0);
            if out[..k as usize].iter().any(|e| e.u64 == 100 + i) {
                got += read_avail(s, &mut msg[got..]);
            }
        }
        write_all(s, &msg);
        // SAFETY: DEL takes no event.
        assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_DEL, s, std::ptr::null_mut()) }, 0);
        assert_eq!(vls_close(s), 0);
    }
}

/// As [`epoll_set_with_members_made_on_main_is_waited_on_by_a_worker_thread`],
/// but `main` waits inside VCL meanwhile (on an empty set of its own) and
/// every move is an RPC (`VLS_MIGRATE_BY_RPC=1`): `main` moves the set and
/// the listener out of its worker when it handles the requests, and hands
/// over the listener's stub, with the connections VPP announced to `main`'s
/// worker until it handled the listener's move, when it handles the next.
#[test]
fn set_and_listener_move_by_rpc_while_main_waits_in_vcl() {
    let a = server_addr(7806);
    run_pair(
        "set_and_listener_move_by_rpc_while_main_waits_in_vcl",
        mode2_through_stack,
        || {
            std::env::set_var("VLS_MIGRATE_BY_RPC", "1");
            app("moves-server");
            let l = listen_on(a, TCP, true);
            let ep = vls_epoll_create();
            assert!(ep >= 0);
            epoll_add(ep, l, EPOLLIN, 7);
            let idle = vls_epoll_create();
            assert!(idle >= 0);
            let waiter = thread::spawn(move || serve_through_set(ep, l, 4));
            let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
            while !waiter.is_finished() {
                assert_eq!(epoll_wait(idle, &mut out, 50.0), 0, "main's own set stays empty");
            }
            waiter.join().expect("waiting thread");
            assert_eq!(vls_close(idle), 0);
            assert_eq!(vls_close(l), 0);
            assert_eq!(vls_close(ep), 0);
        },
        || echo_clients_across_a_move(a, 4),
    );
}

/// A connection stays on the worker of the thread that accepted it (VPP
/// cannot hand a connection with data to another worker safely; see
/// `engine::migrate`): another thread's read, write or `epoll_ctl` gets
/// `EBADFD` at once, and the session is left intact for its owner, which
/// then serves it.
#[test]
fn connection_stays_on_the_worker_that_accepted_it() {
    let a = server_addr(7804);
    run_pair(
        "connection_stays_on_the_worker_that_accepted_it",
        mode2_through_stack,
        || {
            app("moves-server");
            let (tx, rx) = mpsc::channel::<i32>();
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let owner = thread::spawn(move || {
                let l = listen_on(a, TCP, false);
                let s = accept(l);
                assert!(s >= 0, "accept {s}");
                tx.send(s).unwrap();
                go_rx.recv().unwrap();
                echo_once(s);
                assert_eq!(vls_close(l), 0);
            });
            let s = rx.recv().unwrap();
            let start = Instant::now();
            let mut b = [0u8; 8];
            assert_eq!(read_some(s, &mut b), EBADFD as isize, "read from another thread");
            // SAFETY: `b` is valid for its length.
            assert_eq!(unsafe { vls_write(s, b.as_mut_ptr().cast(), b.len()) }, EBADFD, "write");
            let ep = vls_epoll_create();
            let mut e = libc::epoll_event { events: EPOLLIN, u64: 1 };
            // SAFETY: valid event pointer.
            assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut e) }, EBADFD, "epoll_ctl");
            assert!(start.elapsed() < Duration::from_secs(3), "refusals took {:?}", start.elapsed());
            assert_eq!(vls_close(ep), 0);
            go_tx.send(()).unwrap();
            owner.join().expect("owner thread");
        },
        || echo_clients(a, 1),
    );
}

/// A thread of its own worker (not worker 0) waits for its connection in
/// `vls_poll`, as LDP's `poll` and `select` call it (with `vlsh_to_sh`
/// handles): the client's data wakes it. VCL's poll looks entries up as
/// session indexes of the calling worker; with the handles LDP passes it
/// found no session on any worker but 0 until the layer turned them into
/// indexes.
#[test]
fn thread_of_its_own_worker_polls_its_connection() {
    let a = server_addr(7809);
    run_pair(
        "thread_of_its_own_worker_polls_its_connection",
        mode2_through_stack,
        || {
            app("moves-server");
            thread::spawn(move || {
                assert_ne!(my_worker(), 0, "a worker of its own");
                let l = listen_on(a, TCP, false);
                let s = accept(l);
                assert!(s >= 0, "accept {s}");
                let (n, revents) = poll_one(s, libc::POLLIN, 10.0);
                assert_eq!((n, revents & libc::POLLIN), (1, libc::POLLIN), "revents {revents:#x}");
                echo_once(s);
                assert_eq!(vls_close(l), 0);
            })
            .join()
            .expect("the polling thread");
        },
        || echo_clients(a, 1),
    );
}
