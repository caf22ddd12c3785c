//! Per-thread workers (mode 2): moving sessions between workers, directly
//! and by RPC, and what happens when an owner is busy, gone or exits.

use super::*;

/// The worker the session of `h` is on now.
fn worker_of(v: &'static Vls<Double>, h: Vlsh) -> u32 {
    v.vlsh_to_session_and_worker(h).1
}

/// A session created by one thread and bound/listened/accepted/read by
/// another moves to the second thread's worker (the double counts any use
/// of a session from a foreign worker as a violation).
#[test]
fn session_created_in_one_thread_is_moved_to_the_thread_that_uses_it() {
    let v = app(true);
    let l = v.create(0, false);
    let main_wrk = v.vcl().worker_index();
    assert_eq!(worker_of(v, l), main_wrk);
    let (wrk, got) = thread::spawn(move || {
        assert_eq!(v.listen(l, 10), 0);
        let (_, index) = crate::handle::sh_parts(v.vlsh_to_sh(l));
        assert_eq!(v.session_index_to_vlsh(index), l, "the handle table follows the move");
        let c = v.create(0, false);
        let mut target = v.vlsh_to_sh(l);
        // SAFETY: the double reads a u32 listener handle from `ep`.
        assert_eq!(unsafe { v.connect(c, (&mut target as *mut u32).cast()) }, 0);
        // SAFETY: null endpoint is accepted by the double.
        let s = unsafe { v.accept(l, std::ptr::null_mut(), 0) };
        assert!(s >= 0);
        assert_eq!(write(v, c, b"hello"), 5);
        let mut buf = [0u8; 8];
        let n = read(v, s, &mut buf);
        assert_eq!(worker_of(v, l), v.vcl().worker_index(), "the listener lives on the thread that used it");
        (v.vcl().worker_index(), buf[..n.max(0) as usize].to_vec())
    })
    .join()
    .unwrap();
    assert_ne!(wrk, main_wrk);
    assert_eq!(got, b"hello");
    assert_eq!(worker_of(v, l), INVALID, "gone with the thread's worker");
    assert_eq!(v.vcl().violations(), 0);
}

/// An epoll set created by one thread (as wrk creates every thread's set in
/// its main thread) is waited on by another.
#[test]
fn epoll_set_created_in_one_thread_is_waited_on_in_another() {
    let v = app(true);
    let ep = v.epoll_create();
    let n = thread::spawn(move || {
        let (_l, c, s) = pair(v, false);
        let mut e = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 77 };
        // SAFETY: valid event pointer.
        assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut e) }, 0);
        assert_eq!(write(v, c, b"x"), 1);
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `out` is valid for 4 events.
        let n = unsafe { v.epoll_wait(ep, out.as_mut_ptr(), 4, 0.0) };
        assert_eq!({ out[0].u64 }, 77);
        n
    })
    .join()
    .unwrap();
    assert_eq!(n, 1);
    assert_eq!(v.vcl().violations(), 0);
}

/// Events parked for a set stay parked when a wait on the set fails (here:
/// a thread of another worker cannot take the non-empty set).
#[test]
fn parked_events_survive_a_failed_wait() {
    let v = app(true);
    let (ep1, ep2) = (v.epoll_create(), v.epoll_create());
    let (_l, c, s) = pair(v, false);
    let mut e = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 9 };
    // SAFETY: valid event pointer.
    assert_eq!(unsafe { v.epoll_ctl(ep2, libc::EPOLL_CTL_ADD, s, &mut e) }, 0);
    assert_eq!(write(v, c, b"x"), 1);
    let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
    // VCL reports the worker's events to any of its sets: set 2's is parked.
    // SAFETY: `out` is valid for 4 events.
    assert_eq!(unsafe { v.epoll_wait(ep1, out.as_mut_ptr(), 4, 0.0) }, 0);
    let parked = || v.session(ep2).unwrap().demux().unwrap().parked_len();
    assert_eq!(parked(), 1);
    let rv = thread::spawn(move || {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `out` is valid for 4 events.
        unsafe { v.epoll_wait(ep2, out.as_mut_ptr(), 4, 0.0) }
    })
    .join()
    .unwrap();
    assert_eq!(rv, EBADFD);
    assert_eq!(parked(), 1, "the failed wait lost the parked event");
    // SAFETY: `out` is valid for 4 events.
    assert_eq!(unsafe { v.epoll_wait(ep2, out.as_mut_ptr(), 4, 0.0) }, 1);
    assert_eq!({ out[0].u64 }, 9);
    assert_eq!(parked(), 0);
}

/// A connection, and an epoll set holding one, cannot move: `EBADFD`, and
/// the owner keeps them.
#[test]
fn connections_and_sets_holding_one_do_not_move() {
    let v = app(true);
    let (_l, c, s) = pair(v, false);
    let ep = v.epoll_create();
    let mut e = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 1 };
    // SAFETY: valid event pointer.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut e) }, 0);
    let (wc, wep) = thread::spawn(move || {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `out` is valid for 4 events.
        let wep = unsafe { v.epoll_wait(ep, out.as_mut_ptr(), 4, 0.0) };
        (write(v, c, b"x"), wep)
    })
    .join()
    .unwrap();
    assert_eq!((wc, wep), (EBADFD, EBADFD));
    assert_eq!(write(v, c, b"x"), 1, "the owner still has it");
    let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
    // SAFETY: `out` is valid for 4 events.
    assert_eq!(unsafe { v.epoll_wait(ep, out.as_mut_ptr(), 4, 0.0) }, 1, "the set still works here");
    assert_eq!(v.vcl().violations(), 0);
}

/// A set with a member (a listener) made by one thread and waited on by
/// another moves there with its member, which keeps its registration: a
/// connection to the listener is reported by the set on the new worker.
#[test]
fn set_with_members_moves_to_the_waiting_thread_and_members_follow() {
    let v = app(true);
    let ep = v.epoll_create();
    let l = v.create(0, false);
    assert_eq!(v.listen(l, 4), 0);
    let mut e = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 42 };
    // SAFETY: valid event pointer.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, l, &mut e) }, 0);
    let main_wrk = v.vcl().worker_index();
    let (wrk, n, data, set_wrk, l_wrk) = thread::spawn(move || {
        let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `out` is valid for 4 events.
        assert_eq!(unsafe { v.epoll_wait(ep, out.as_mut_ptr(), 4, 0.0) }, 0, "nothing yet");
        let (set_wrk, l_wrk) = (worker_of(v, ep), worker_of(v, l));
        let c = v.create(0, false);
        let mut target = v.vlsh_to_sh(l);
        // SAFETY: the double reads a u32 listener handle from `ep`.
        assert_eq!(unsafe { v.connect(c, (&mut target as *mut u32).cast()) }, 0);
        // SAFETY: `out` is valid for 4 events.
        let n = unsafe { v.epoll_wait(ep, out.as_mut_ptr(), 4, 0.0) };
        (v.vcl().worker_index(), n, out[0].u64, set_wrk, l_wrk)
    })
    .join()
    .unwrap();
    assert_ne!(wrk, main_wrk);
    assert_eq!((set_wrk, l_wrk), (wrk, wrk), "set and member moved to the waiting thread");
    assert_eq!((n, data), (1, 42), "the member's event, with the application's data");
    assert_eq!(v.vcl().violations(), 0);
}

/// A member another thread takes away from its set (by using it) is
/// brought back by the set's next wait on the set's thread, and rejoins it.
#[test]
fn member_taken_by_another_thread_comes_back_to_its_set() {
    let v = app(true);
    let ep = v.epoll_create();
    let l2 = v.create(0, false);
    let mut e = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 5 };
    // SAFETY: valid event pointer.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, l2, &mut e) }, 0);
    let (taken_tx, taken_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let t = thread::spawn(move || {
        assert_eq!(v.listen(l2, 4), 0, "the member moves to this thread");
        let w = v.vcl().worker_index();
        taken_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        w
    });
    taken_rx.recv().unwrap();
    let here = v.vcl().worker_index();
    assert_ne!(worker_of(v, l2), here, "taken away");
    let mut out = [libc::epoll_event { events: 0, u64: 0 }; 4];
    // SAFETY: `out` is valid for 4 events.
    assert!(unsafe { v.epoll_wait(ep, out.as_mut_ptr(), 4, 0.0) } >= 0);
    assert_eq!(worker_of(v, l2), here, "back on the set's worker");
    assert!(v.vcl().in_epoll(v.vlsh_to_sh(l2)), "and in the set again");
    done_tx.send(()).unwrap();
    assert_ne!(t.join().unwrap(), here);
    assert_eq!(v.vcl().violations(), 0);
}

/// A thread blocked inside VCL cannot have sessions taken from it directly;
/// it answers the move request while it waits (as VCL handles RPCs on its
/// message queue). A close by another thread wakes its blocked read.
#[test]
fn busy_owner_answers_a_move_by_rpc() {
    let v = app(true);
    let owner = BlockedOwner::start(v, |_| {});
    let start = Instant::now();
    assert_eq!(v.listen(owner.h, 1), 0, "moved by RPC");
    assert!(start.elapsed() < Duration::from_secs(2), "answered while blocked: {:?}", start.elapsed());
    assert_eq!(worker_of(v, owner.h), v.vcl().worker_index());
    assert_eq!(v.close(owner.s), 0, "closing another worker's open session");
    assert!(owner.finish() < 0, "the blocked read gave up");
    assert_eq!(v.vcl().violations(), 0);
}

/// A thread that creates a session `h` (then runs `prepare` on it), opens
/// a connected pair and blocks reading its server side `s`, holding its
/// worker (so only RPCs reach it); moves are by RPC only, whether or not
/// the owner is already inside VCL (a direct move would bypass the RPC).
struct BlockedOwner {
    h: Vlsh,
    s: Vlsh,
    done: mpsc::Sender<()>,
    thread: thread::JoinHandle<i32>,
}

impl BlockedOwner {
    fn start(v: &'static Vls<Double>, prepare: impl FnOnce(Vlsh) + Send + 'static) -> Self {
        v.moves.direct_moves.store(false, Ordering::SeqCst);
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done, done_rx) = mpsc::channel::<()>();
        let thread = thread::spawn(move || {
            let h = v.create(0, false);
            prepare(h);
            let (_l, _c, s) = pair(v, false);
            ready_tx.send((h, s)).unwrap();
            let mut buf = [0u8; 4];
            let rv = read(v, s, &mut buf); // blocks, handling requests
            done_rx.recv().unwrap();
            rv
        });
        let (h, s) = ready_rx.recv().unwrap();
        until("the owner blocks in its read", || v.vcl().blocked() == 1);
        BlockedOwner { h, s, done, thread }
    }

    /// Lets the owner thread end (its read must have returned); its read's
    /// result.
    fn finish(self) -> i32 {
        self.done.send(()).unwrap();
        self.thread.join().unwrap()
    }
}

/// The move request reaches an owner whose VCL no longer has the session
/// (freed in between): the owner answers "session gone", the mover gets
/// `EBADFD` at once (no timeout), and the handle can still be closed.
#[test]
fn move_of_a_session_gone_from_its_owner_fails_at_once() {
    let v = app(true);
    let owner = BlockedOwner::start(v, move |h| v.vcl().forget_session(v.vlsh_to_sh(h)));
    let start = Instant::now();
    assert_eq!(v.listen(owner.h, 1), EBADFD, "the owner answered: gone");
    assert!(start.elapsed() < Duration::from_secs(2), "no timeout: {:?}", start.elapsed());
    v.close(owner.h);
    assert!(v.session(owner.h).is_none(), "the handle is freed");
    assert_eq!(v.close(owner.s), 0);
    assert!(owner.finish() < 0);
    assert_eq!(v.vcl().violations(), 0);
}

/// An owner that never handles its queue: the mover gives up after the
/// RPC timeout with `EBADFD`; the owner's late handling of the request does
/// nothing, and the session is still the owner's, intact.
#[test]
fn unanswered_move_times_out_and_a_late_answer_is_harmless() {
    let v = app(true);
    // By RPC only, whether or not the owner is already inside VCL when
    // the move starts (a direct move would bypass what is tested here).
    v.moves.direct_moves.store(false, Ordering::SeqCst);
    v.set_rpc_timeout(Duration::from_millis(300));
    v.vcl().connect_waits_for_accept();
    let l = v.create(0, false);
    assert_eq!(v.listen(l, 10), 0);
    let mut target = v.vlsh_to_sh(l);
    let (h_tx, h_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let owner = thread::spawn(move || {
        let h = v.create(0, false);
        let c = v.create(0, false);
        h_tx.send(h).unwrap();
        // Blocks inside VCL without handling RPCs until `l` accepts.
        // SAFETY: the double reads a u32 listener handle from `ep`.
        let rv = unsafe { v.connect(c, (&mut target as *mut u32).cast()) };
        assert_eq!(rv, 0);
        go_rx.recv().unwrap();
        v.vcl().flush_mq(); // the late request
        (v.listen(h, 1), worker_of(v, h) == v.vcl().worker_index())
    });
    let h = h_rx.recv().unwrap();
    // The owner is blocked inside VCL (it answers no RPC) once its connect
    // waits for the accept.
    let deadline = Instant::now() + Duration::from_secs(10);
    while v.vcl().connects_waiting() == 0 {
        assert!(Instant::now() < deadline, "the owner never blocked in its connect");
        thread::yield_now();
    }
    let start = Instant::now();
    assert_eq!(v.listen(h, 1), EBADFD);
    let took = start.elapsed();
    // Not before the timeout; the upper bound only catches a hang.
    assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(10), "took {took:?}");
    // SAFETY: null endpoint is accepted by the double.
    assert!(unsafe { v.accept(l, std::ptr::null_mut(), 0) } >= 0);
    go_tx.send(()).unwrap();
    assert_eq!(owner.join().unwrap(), (0, true), "the owner still has the session after the late request");
    assert_eq!(v.vcl().violations(), 0);
}

/// Two threads moving each other's sessions at the same moment, by RPC
/// only, both finish: each answers the other while it waits.
#[test]
fn crossed_moves_by_rpc_both_finish() {
    let v = app(true);
    v.moves.direct_moves.store(false, Ordering::SeqCst);
    let rounds = 50;
    let barrier = Arc::new(Barrier::new(2));
    let (tx_a, rx_a) = mpsc::channel::<Vlsh>();
    let (tx_b, rx_b) = mpsc::channel::<Vlsh>();
    let finished = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let run = move |mine: mpsc::Sender<Vlsh>, theirs: mpsc::Receiver<Vlsh>, barrier: Arc<Barrier>| {
        let finished = finished.clone();
        move || {
            let mut ok = 0;
            for round in 1..=rounds {
                let h = v.create(0, false);
                mine.send(h).unwrap();
                let other = theirs.recv().unwrap();
                barrier.wait();
                if v.listen(other, 1) == 0 && worker_of(v, other) == v.vcl().worker_index() {
                    ok += 1;
                }
                // Stay "inside VCL" (handling this worker's queue) until the
                // other thread is done too, as a thread in an epoll wait
                // would: the RPC path is the only one here.
                finished.fetch_add(1, Ordering::SeqCst);
                while finished.load(Ordering::SeqCst) < 2 * round {
                    v.vcl().flush_mq();
                    thread::yield_now();
                }
                v.close(other);
            }
            ok
        }
    };
    let a = thread::spawn(run(tx_a, rx_b, barrier.clone()));
    let b = thread::spawn(run(tx_b, rx_a, barrier));
    let start = Instant::now();
    assert_eq!((a.join().unwrap(), b.join().unwrap()), (rounds, rounds));
    assert!(start.elapsed() < Duration::from_secs(20), "no timeouts: {:?}", start.elapsed());
    assert!(v.moves.rpcs.is_empty());
    assert_eq!(v.vcl().violations(), 0);
}

/// When a thread exits, its worker and the VCL sessions on it go: its VLS
/// sessions fail with `EBADFD` at once (no RPC to a dead worker), and
/// closing them frees their handles.
#[test]
fn sessions_of_an_exited_thread_fail_fast_and_close_cleanly() {
    let v = app(true);
    let h = thread::spawn(move || v.create(0, false)).join().unwrap();
    let start = Instant::now();
    assert_eq!(v.listen(h, 1), EBADFD);
    assert!(start.elapsed() < Duration::from_millis(500));
    assert_eq!(v.vlsh_to_sh(h), INVALID);
    assert_eq!(v.close(h), 0);
    assert!(v.pool().is_empty());
    assert_eq!(v.vcl().violations(), 0);
}

/// A mover waiting for the answer of an owner that exits instead gives up
/// when the owner leaves, well before the RPC timeout.
#[test]
fn mover_waiting_for_an_exiting_owner_gives_up() {
    let v = app(true);
    v.vcl().connect_waits_for_accept();
    // By RPC only: the owner's gate is free for a moment between its
    // connect and its exit, and a direct move then would (rightly) succeed.
    v.moves.direct_moves.store(false, Ordering::SeqCst);
    // A server thread whose listener accepts the owner's connect late.
    let (l_tx, l_rx) = mpsc::channel();
    let server = thread::spawn(move || {
        let l = v.create(0, false);
        assert_eq!(v.listen(l, 10), 0);
        l_tx.send(v.vlsh_to_sh(l)).unwrap();
        // Accepts once the mover waits for the owner's answer.
        until("the mover's request is pending", || !v.moves.rpcs.is_empty());
        // SAFETY: null endpoint is accepted by the double.
        unsafe { v.accept(l, std::ptr::null_mut(), 0) }
    });
    let mut target = l_rx.recv().unwrap();
    let (h_tx, h_rx) = mpsc::channel();
    let owner = thread::spawn(move || {
        let h = v.create(0, false);
        let c = v.create(0, false);
        h_tx.send(h).unwrap();
        // Blocks inside VCL, not answering, until the server accepts; then
        // the thread exits.
        // SAFETY: the double reads a u32 listener handle from `ep`.
        unsafe { v.connect(c, (&mut target as *mut u32).cast()) }
    });
    let h = h_rx.recv().unwrap();
    until("the owner's connect waits", || v.vcl().connects_waiting() == 1);
    let start = Instant::now();
    assert_eq!(v.listen(h, 1), EBADFD);
    assert!(
        start.elapsed() < v.rpc_timeout(),
        "took {:?}: the mover waited for the timeout",
        start.elapsed()
    );
    assert_eq!(owner.join().unwrap(), 0);
    assert!(server.join().unwrap() >= 0);
    assert_eq!(v.close(h), 0);
    assert_eq!(v.vcl().violations(), 0);
}

/// A listener moved by RPC leaves a stub on its old worker, which takes
/// the connections VPP announces to that worker until it has handled the
/// move (here: connections made to the listener's old handle). The mover
/// takes the stub by RPC too (the old owner is inside VCL) and accepts
/// them on its own worker.
#[test]
fn connections_announced_to_a_moved_listeners_old_worker_are_accepted_on_the_new_one() {
    let v = app(true);
    v.moves.direct_moves.store(false, Ordering::SeqCst);
    let (l_tx, l_rx) = mpsc::channel();
    let (flush_tx, flush_rx) = mpsc::channel::<bool>();
    // The owner listens, then stays "inside VCL", handling its queue (the
    // requests) only when told.
    let owner = thread::spawn(move || {
        let l = v.create(0, true);
        assert_eq!(v.listen(l, 10), 0);
        l_tx.send((l, v.vlsh_to_sh(l), v.vcl().worker_index())).unwrap();
        while flush_rx.recv().unwrap() {
            v.vcl().flush_mq();
        }
    });
    let (l, mut old_sh, owner_wrk) = l_rx.recv().unwrap();
    let mover = thread::spawn(move || {
        // The listener moves here (by RPC), then its stub's connections.
        // SAFETY: null endpoint is accepted by the double.
        let s = unsafe { v.accept(l, std::ptr::null_mut(), libc::O_NONBLOCK) };
        (s, worker_of(v, l) == v.vcl().worker_index())
    });
    // In the owner's queue (the mover registers its request, then sends it).
    until("the move request", || v.vcl().rpcs_queued(owner_wrk) == 1);
    flush_tx.send(true).unwrap();
    until("the listener's stub", || v.vcl().stubs().0 == 1);
    let c = v.create(0, false);
    // SAFETY: the double reads a u32 listener handle from `ep`.
    assert_eq!(unsafe { v.connect(c, (&mut old_sh as *mut u32).cast()) }, 0);
    assert_eq!(v.vcl().stubs(), (1, 1), "queued on the stub");
    while !mover.is_finished() {
        flush_tx.send(true).unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    let (s, moved) = mover.join().unwrap();
    flush_tx.send(false).unwrap();
    owner.join().unwrap();
    assert!(moved, "the listener moved");
    assert!(s >= 0, "the connection queued on the stub was accepted: {s}");
    assert_eq!(v.vcl().stubs(), (0, 0), "the stub is gone");
    // Before the stub was taken, a ping went round to the mover's worker
    // and came back.
    assert_eq!(v.moves.pings_sent.load(Ordering::SeqCst), 1, "one round trip for one listener move");
    assert_eq!(v.moves.pings_lost.load(Ordering::SeqCst), 0, "the ping came back");
    assert!(v.moves.pings_back.lock().unwrap().is_empty(), "the ping came back and was taken");
    assert_eq!(write(v, c, b"hi"), 2);
    let mut buf = [0u8; 4];
    assert_eq!(read(v, s, &mut buf), 2);
    assert_eq!(&buf[..2], b"hi");
    assert_eq!(v.vcl().violations(), 0);
}

/// Mode 2's fast lane: the owner of a session reads it without the
/// session lock (here held by another thread the whole time), where the
/// locked path would wait for that lock.
#[test]
fn owner_reads_in_its_fast_lane_without_the_session_lock() {
    let v = app(true);
    let expected = crate::engine::solo::lock_free_expected();
    let (s_tx, s_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (rv_tx, rv_rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let s = v.create(0, true);
        s_tx.send(s).unwrap();
        go_rx.recv().unwrap();
        let mut buf = [0u8; 8];
        rv_tx.send(read(v, s, &mut buf)).unwrap();
        s
    });
    let s = s_rx.recv().unwrap();
    let locked = v.session(s).unwrap().lock();
    go_tx.send(()).unwrap();
    let got = rv_rx.recv_timeout(Duration::from_secs(5));
    drop(locked);
    if expected {
        assert_eq!(got, Ok(-libc::EAGAIN), "the owner's non-blocking read waited for the session lock");
    } else {
        assert!(got.is_err(), "without membarrier every call locks");
    }
    let s = reader.join().unwrap();
    assert_eq!(v.vcl().violations(), 0);
    let _ = v.close(s);
}

/// Mode 2's fast lane against moves: the owner reads a non-blocking session
/// in a loop while another thread keeps taking it to its own worker (an
/// attribute call moves it; the owner's next read moves it back). No read
/// reaches VCL on a worker the session is not on (a violation in the
/// double) or finds it moved out and not yet placed (`EBADFD`).
#[test]
fn owner_fast_lane_never_uses_a_session_another_thread_is_moving() {
    const MOVES: usize = 200;
    let v = app(true);
    let s = v.create(0, true);
    let main_wrk = v.vcl().worker_index();
    let on_main = move || crate::handle::sh_parts(v.session(s).unwrap().sh()).0 == main_wrk;
    let done = Arc::new(AtomicBool::new(false));
    let may_exit = Arc::new(Barrier::new(2));
    let mover = {
        let (done, may_exit) = (done.clone(), may_exit.clone());
        thread::spawn(move || {
            let mut failed = Vec::new();
            for _ in 0..MOVES {
                until("the owner brings the session back", on_main);
                let mut flags = 0u32;
                let mut len = 4u32;
                // SAFETY: valid buffers (the double ignores them).
                let rv = unsafe { v.attr(s, 0, (&mut flags as *mut u32).cast(), &mut len) };
                if rv != 0 {
                    failed.push(rv);
                }
            }
            done.store(true, Ordering::SeqCst);
            // (The session stays on this worker: the owner's reads would
            // find it gone with it.)
            may_exit.wait();
            failed
        })
    };
    let (mut reads, mut bad) = (0u64, Vec::new());
    let mut buf = [0u8; 8];
    while !done.load(Ordering::SeqCst) {
        let rv = read(v, s, &mut buf);
        reads += 1;
        // Outside any call for a while (0–31 µs): the mover's chance to
        // take the gate, and this thread's to come back mid-move.
        let until = Instant::now() + Duration::from_micros(reads % 32);
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        if rv != -libc::EAGAIN {
            bad.push(rv);
        }
    }
    may_exit.wait();
    assert_eq!(mover.join().unwrap(), vec![], "the mover's calls all found the session");
    assert!(bad.is_empty(), "reads answered {bad:?} (besides EAGAIN) in {reads}");
    // Each of the mover's calls found the session on the owner's worker,
    // and the owner's reads brought it back after each but the last.
    let moves = v.vcl().moves_in();
    assert!(moves >= 2 * MOVES - 1, "{moves} moves in {reads} reads");
    assert_eq!(v.vcl().violations(), 0);
    let _ = v.close(s);
}
