//! Tests of the core over the in-memory VCL double (no VPP).

mod fork;
mod moves;
mod readiness;
mod take_over;

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use super::double::Double;
use super::{Mode, Vls};
use crate::errno::{errno, set_errno};
use crate::handle::INVALID;
use crate::handle::{Vlsh, INVALID_VLSH};
use crate::seam::Vcl;

const EBADFD: i32 = -libc::EBADFD;

fn app(mt: bool) -> &'static Vls<Double> {
    let v = Vls::new_static(Double::new(mt));
    // SAFETY: a valid C string.
    assert_eq!(unsafe { v.app_create(c"test".as_ptr()) }, 0);
    v
}

/// A connected pair of blocking (or not) sessions: (listener, client, server).
fn pair(v: &'static Vls<Double>, nonblocking: bool) -> (Vlsh, Vlsh, Vlsh) {
    let l = v.create(0, false);
    assert_eq!(v.listen(l, 10), 0);
    let c = v.create(0, nonblocking);
    let mut target = v.vlsh_to_sh(l);
    // SAFETY: the double reads a u32 listener handle from `ep`.
    assert_eq!(unsafe { v.connect(c, (&mut target as *mut u32).cast()) }, 0);
    // SAFETY: null endpoint is accepted by the double.
    let s = unsafe { v.accept(l, std::ptr::null_mut(), 0) };
    assert!(s >= 0, "accept: {s}");
    (l, c, s)
}

/// A thread reading blocking session `s`, once it is blocked inside VCL
/// (the only one); joined, it gives what its read returned.
fn blocked_reader(v: &'static Vls<Double>, s: Vlsh) -> thread::JoinHandle<i32> {
    let reader = thread::spawn(move || read(v, s, &mut [0u8; 8]));
    until("the reader blocks", || v.vcl().blocked() == 1);
    reader
}

/// Waits until `cond` holds, at most 10 s (then fails: `what` never
/// happened).
fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        thread::yield_now();
    }
}

fn write(v: &'static Vls<Double>, h: Vlsh, data: &[u8]) -> i32 {
    // SAFETY: `data` is valid for its length.
    unsafe { v.write(h, data.as_ptr() as *mut c_void, data.len()) }
}

fn read(v: &'static Vls<Double>, h: Vlsh, buf: &mut [u8]) -> i32 {
    // SAFETY: `buf` is valid for its length.
    unsafe { v.read(h, buf.as_mut_ptr().cast(), buf.len()) }
}

#[test]
fn lifecycle_and_bad_handles() {
    let v = app(false);
    assert_eq!(v.mode(), Mode::SingleThread);
    let h = v.create(0, false);
    assert_eq!(h, 0);
    assert_ne!(v.vlsh_to_sh(h), INVALID);
    let (si, wi) = v.vlsh_to_session_and_worker(h);
    assert_eq!(v.session_index_to_vlsh(si), h);
    assert_eq!(wi, v.vcl().worker_index());
    assert_eq!(v.close(h), 0);
    assert_eq!(v.close(h), EBADFD, "double close");
    assert_eq!(v.listen(h, 1), EBADFD, "use after close");
    assert_eq!(v.listen(12345, 1), EBADFD, "never created");
    assert_eq!(v.listen(-7, 1), EBADFD, "negative");
    assert_eq!(v.vlsh_to_sh(h), INVALID);
    assert_eq!(v.vlsh_to_session_and_worker(99), (INVALID, INVALID));
    assert_eq!(v.session_index_to_vlsh(4242), INVALID_VLSH);
    assert_eq!(v.get_libc_epfd(99), EBADFD);
    let ep = v.epoll_create();
    assert_eq!(ep, h, "handles are reused like fds");
    assert_eq!(v.get_libc_epfd(ep), 0, "LDP expects 0 for 'not set'");
    assert_eq!(v.set_libc_epfd(ep, 42), 0);
    assert_eq!(v.get_libc_epfd(ep), 42);
    let mut e = libc::epoll_event { events: 0, u64: 0 };
    // SAFETY: valid event pointers throughout.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, ep, &mut e) }, -libc::EINVAL);
    // SAFETY: as above.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, 777, &mut e) }, EBADFD);
    // SAFETY: as above.
    assert_eq!(unsafe { v.epoll_ctl(777, libc::EPOLL_CTL_ADD, ep, &mut e) }, EBADFD);
    // SAFETY: as above (a null event is rejected before any use).
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, 777, std::ptr::null_mut()) }, -libc::EINVAL);
    let plain = v.create(0, false);
    // An epoll handle that is not an epoll session.
    // SAFETY: valid event pointer.
    assert_eq!(unsafe { v.epoll_ctl(plain, libc::EPOLL_CTL_ADD, ep, &mut e) }, EBADFD);
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 1];
    // SAFETY: `evs` is valid for 1 event.
    assert_eq!(unsafe { v.epoll_wait(plain, evs.as_mut_ptr(), 1, 0.0) }, EBADFD);
}

#[test]
fn data_round_trip_single_thread() {
    let v = app(false);
    let (_l, c, s) = pair(v, false);
    assert_eq!(write(v, c, b"hello"), 5);
    let mut buf = [0u8; 16];
    assert_eq!(read(v, s, &mut buf), 5);
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(v.close(c), 0);
    assert_eq!(read(v, s, &mut buf), 0, "EOF after peer close");
    assert_eq!(v.vcl().violations(), 0);
}

/// `MSG_DONTWAIT` on a blocking session answers `EAGAIN` when nothing is
/// ready (VCL would refuse the flag; a blocking read would wait), and reads
/// what is there otherwise; `MSG_NOSIGNAL` is ignored, as the kernel does.
#[test]
fn recvfrom_dont_wait_on_a_blocking_session() {
    let v = app(false);
    let (_l, c, s) = pair(v, false);
    let mut buf = [0u8; 16];
    let mut recv = |flags| {
        // SAFETY: `buf` is valid for its length; a null endpoint.
        unsafe { v.recvfrom(s, buf.as_mut_ptr().cast(), buf.len() as u32, flags, std::ptr::null_mut()) }
    };
    assert_eq!(recv(libc::MSG_DONTWAIT), -libc::EAGAIN);
    assert_eq!(write(v, c, b"hello"), 5);
    assert_eq!(recv(libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL), 5);
    assert_eq!(write(v, c, b"again"), 5);
    assert_eq!(recv(libc::MSG_NOSIGNAL), 5);
    assert_eq!(recv(libc::MSG_OOB), -libc::EAFNOSUPPORT, "a flag VLS does not handle reaches VCL");
    assert_eq!(v.vcl().violations(), 0);
}

/// `MSG_WAITALL` on a blocking session reads until the buffer is full,
/// across writes that arrive apart; at the end of the stream it returns
/// what it has.
#[test]
fn recvfrom_wait_all_fills_the_buffer() {
    let v = app(false);
    let (_l, c, s) = pair(v, false);
    let mut buf = [0u8; 8];
    assert_eq!(write(v, c, b"abc"), 3);
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        assert_eq!(write(v, c, b"defgh"), 5);
    });
    // SAFETY: `buf` is valid for its length; a null endpoint.
    let rv = unsafe { v.recvfrom(s, buf.as_mut_ptr().cast(), 8, libc::MSG_WAITALL, std::ptr::null_mut()) };
    writer.join().unwrap();
    assert_eq!(rv, 8);
    assert_eq!(&buf, b"abcdefgh");
    assert_eq!(write(v, c, b"xy"), 2);
    assert_eq!(v.close(c), 0);
    // SAFETY: as above.
    let rv = unsafe { v.recvfrom(s, buf.as_mut_ptr().cast(), 8, libc::MSG_WAITALL, std::ptr::null_mut()) };
    assert_eq!(rv, 2, "the end of the stream ends the wait");
    assert_eq!(&buf[..2], b"xy");
}

/// Before a worker goes away (the process exits, a mode-2 thread's worker
/// unregisters), VPP is let read the messages the worker queued for it:
/// VPP takes the detach first and crashed on an accepted reply it read
/// after it. Only workers that exist are waited for.
#[test]
fn workers_let_vpp_read_their_queues_before_they_go() {
    let v = app(true);
    let main_wrk = v.vcl().worker_index();
    let thread_wrk = thread::spawn(move || {
        assert!(v.create(0, false) >= 0);
        v.vcl().worker_index()
    })
    .join()
    .unwrap();
    assert_ne!(thread_wrk, main_wrk, "mode 2: a worker of its own");
    assert_eq!(v.vcl().queues_read(), vec![thread_wrk], "the thread's worker, as it unregistered");
    v.process_exiting();
    assert_eq!(v.vcl().queues_read(), vec![thread_wrk, main_wrk], "the process's worker, at exit");
    assert_eq!(v.vcl().violations(), 0);
}

#[test]
fn second_thread_switches_to_shared_worker_mode_and_exit_is_counted() {
    let v = app(false);
    assert_eq!(v.n_threads(), 1);
    let main_wrk = v.vcl().worker_index();
    let (wrk, mode) = thread::spawn(move || {
        let h = v.create(0, false);
        assert!(h >= 0);
        (v.vcl().worker_index(), v.mode())
    })
    .join()
    .unwrap();
    assert_eq!(wrk, main_wrk, "mode 3 threads share the process worker");
    assert_eq!(mode, Mode::SharedWorker);
    assert_eq!(v.n_threads(), 1, "exited thread unregistered");
    // the app keeps working after the second thread exited
    let (_l, c, s) = pair(v, false);
    assert_eq!(write(v, c, b"x"), 1);
    assert_eq!(read(v, s, &mut [0u8; 4]), 1);
}

/// Starts a second thread that arrives after a delay growing with `round`
/// and creates and closes sessions (pool changes); the flag turns true with
/// its first create.
fn arrive_and_change_the_pool(
    v: &'static Vls<Double>,
    round: u64,
) -> (Arc<AtomicBool>, thread::JoinHandle<()>) {
    let arrived = Arc::new(AtomicBool::new(false));
    let a = arrived.clone();
    let second = thread::spawn(move || {
        thread::sleep(Duration::from_micros(100 + 37 * round));
        for _ in 0..5 {
            let h = v.create(0, true);
            a.store(true, Ordering::Release);
            assert_eq!(v.close(h), 0);
        }
    });
    (arrived, second)
}

#[test]
fn a_second_thread_waits_for_the_first_threads_lock_free_io() {
    // The first thread reads a non-blocking session without locks; a
    // second thread arrives and creates and closes sessions (pool changes)
    // at once. The double flags a pool change during a read in progress.
    // (Each round on a thread of its own: the double keeps a few apps per
    // thread only.)
    for round in 0..20u64 {
        thread::spawn(move || {
            let v = app(false);
            let (_l, c, _s) = pair(v, true);
            assert_eq!(v.lock_free_io(), super::solo::lock_free_expected(), "one thread: lock-free I/O");
            let (arrived, second) = arrive_and_change_the_pool(v, round);
            let mut buf = [0u8; 4];
            let mut after = 0;
            while after < 50 {
                assert_eq!(read(v, c, &mut buf), -libc::EAGAIN);
                if arrived.load(Ordering::Acquire) {
                    after += 1;
                }
            }
            second.join().unwrap();
            assert!(!v.lock_free_io(), "a second thread ends lock-free I/O");
            assert_eq!(v.vcl().violations(), 0, "round {round}: a pool change overlapped a lock-free read");
        })
        .join()
        .unwrap();
    }
}

/// pgbench (`-j 2`) aborted now and then in dlmalloc growing VCL's session
/// pool in `vls_create` on its second thread: while its first thread was
/// the only one, its creates, connects and closes ran without the worker's
/// locks, and the second thread, arriving in the middle of one, took the
/// (free) locks and changed the pool beside it.
#[test]
fn a_second_thread_waits_for_the_first_threads_unlocked_calls() {
    for round in 0..20u64 {
        thread::spawn(move || {
            let v = app(false);
            let (arrived, second) = arrive_and_change_the_pool(v, round);
            let mut after = 0;
            while after < 20 {
                let h = v.create(0, true);
                assert!(h >= 0);
                assert_eq!(v.close(h), 0);
                if arrived.load(Ordering::Acquire) {
                    after += 1;
                }
            }
            second.join().unwrap();
            assert_eq!(v.vcl().violations(), 0, "round {round}: the two threads' pool changes overlapped");
        })
        .join()
        .unwrap();
    }
}

#[test]
fn nonblocking_reads_of_a_session_two_threads_share_never_overlap() {
    // Mode 3, both threads reading one non-blocking session (the direct
    // path: whole session lock, then the pool read lock). The double flags
    // two reads of one session in progress at once (each call pauses
    // inside).
    let v = app(false);
    thread::spawn(move || assert!(v.create(0, false) >= 0)).join().unwrap();
    assert_eq!(v.mode(), Mode::SharedWorker);
    for _ in 0..4 {
        let (_l, c, _s) = pair(v, true);
        let barrier = Arc::new(Barrier::new(2));
        let ts: Vec<_> = (0..2)
            .map(|_| {
                let b = barrier.clone();
                thread::spawn(move || {
                    b.wait();
                    for _ in 0..100 {
                        assert_eq!(read(v, c, &mut [0u8; 4]), -libc::EAGAIN);
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
    }
    assert_eq!(v.vcl().violations(), 0, "two reads of one session overlapped");
}

#[test]
fn nonblocking_read_that_empties_a_session_never_overlaps_an_epoll_wait() {
    // Mode 3: a non-blocking read that empties its session's queue may make
    // VCL append the session's re-armed event to the worker's
    // unhandled-events vector, which another thread's epoll wait walks and
    // resets: the event is lost (the session is never reported again) or the
    // vector reallocated under the walker. Such reads take the mq lock; the
    // double flags the overlap.
    let v = app(false);
    thread::spawn(move || assert!(v.create(0, false) >= 0)).join().unwrap();
    assert_eq!(v.mode(), Mode::SharedWorker);
    let ep = v.epoll_create();
    let (_l2, _c2, watched) = pair(v, false);
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 1 };
    // SAFETY: valid event.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, watched, &mut ev) }, 0);
    let (_l, c, s) = pair(v, true);
    let barrier = Arc::new(Barrier::new(2));
    let b = barrier.clone();
    let waiter = thread::spawn(move || {
        b.wait();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        for _ in 0..300 {
            // SAFETY: `evs` holds 4 events.
            assert!(unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 4, 0.0) } >= 0);
        }
    });
    barrier.wait();
    for _ in 0..300 {
        assert_eq!(write(v, s, b"ping"), 4);
        // Reads exactly what is queued: the queue ends empty.
        assert_eq!(read(v, c, &mut [0u8; 4]), 4);
    }
    waiter.join().unwrap();
    assert_eq!(v.vcl().violations(), 0, "a draining read overlapped an epoll wait");
}

/// Closes a session when the thread-local holding it is destroyed.
struct CloseAtThreadExit(Option<(&'static Vls<Double>, Vlsh)>);

impl Drop for CloseAtThreadExit {
    fn drop(&mut self) {
        if let Some((v, h)) = self.0.take() {
            CLOSED_AT_EXIT.store(v.close(h), Ordering::SeqCst);
        }
    }
}

static CLOSED_AT_EXIT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(i32::MIN);

thread_local! {
    static HOLDS_A_SESSION: std::cell::RefCell<CloseAtThreadExit> =
        const { std::cell::RefCell::new(CloseAtThreadExit(None)) };
}

#[test]
fn session_closed_from_a_thread_local_destructor_after_the_lock_record_is_gone() {
    // Mode 3 (locks on). The thread-local holding the session is made
    // before VLS's own per-thread lock record, so it is destroyed after it
    // (destructors run in reverse order): the close runs without the
    // record and must still lock and not panic (a panic in a thread-local
    // destructor aborts the process).
    let v = app(false);
    thread::spawn(move || assert!(v.create(0, false) >= 0)).join().unwrap();
    assert_eq!(v.mode(), Mode::SharedWorker);
    let h = thread::spawn(move || {
        HOLDS_A_SESSION.with(|_| {});
        let h = v.create(0, false);
        assert!(h >= 0);
        HOLDS_A_SESSION.with(|c| c.borrow_mut().0 = Some((v, h)));
        h
    })
    .join()
    .unwrap();
    assert_eq!(CLOSED_AT_EXIT.load(Ordering::SeqCst), 0, "closed from the thread-local's destructor");
    assert!(v.session(h).is_none(), "the session is gone");
    assert!(v.locks().mq_is_free());
    assert_eq!(v.vcl().violations(), 0);
}

#[test]
fn per_thread_workers_register_a_worker_each() {
    let v = app(true);
    let main_wrk = v.vcl().worker_index();
    let wrk = thread::spawn(move || {
        v.create(0, false);
        v.vcl().worker_index()
    })
    .join()
    .unwrap();
    assert_ne!(wrk, main_wrk);
    assert_eq!(v.mode(), Mode::PerThreadWorkers);
}

/// A thread whose first call is a connect (here on a bad handle): it gets
/// its worker before VLS makes its own epoll session on it. (VCL looked up
/// worker `~0` for that session and crashed.)
#[test]
fn a_threads_first_call_may_be_a_connect() {
    let v = app(false);
    let rv = thread::spawn(move || {
        let mut target = 0u32;
        // SAFETY: the double reads a u32 listener handle from `ep`.
        unsafe { v.connect(INVALID_VLSH, (&mut target as *mut u32).cast()) }
    })
    .join()
    .unwrap();
    assert_eq!(rv, EBADFD);
    assert_eq!(v.vcl().violations(), 0, "VCL called from a thread without a worker");
}

#[test]
fn close_wakes_a_blocked_reader() {
    let v = app(false);
    let (_l, _c, s) = pair(v, false);
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 8];
        let t = Instant::now();
        let rv = read(v, s, &mut buf);
        tx.send(()).unwrap();
        (rv, t.elapsed())
    });
    until("the reader blocks", || v.vcl().blocked() == 1);
    assert!(rx.try_recv().is_err(), "reader should be blocked");
    assert_eq!(v.close(s), 0);
    let (rv, waited) = reader.join().unwrap();
    assert!(rv < 0, "blocked reader gets an error, got {rv}");
    assert!(waited < Duration::from_secs(2));
    assert_eq!(v.vcl().violations(), 0);
}

#[test]
fn blocked_reader_does_not_block_other_threads() {
    let v = app(false);
    let (_l, c1, s1) = pair(v, false);
    let (_l2, c2, s2) = pair(v, false);
    let reader = blocked_reader(v, s1);
    // Another thread can still use the message queue and I/O on other sessions
    // while the reader sleeps inside VCL (mq lock dropped for the wait).
    let t = thread::spawn(move || {
        let ep = v.epoll_create();
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 2 };
        // SAFETY: valid event.
        assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, s2, &mut ev) }, 0);
        assert_eq!(write(v, c2, b"ab"), 2);
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `evs` holds 4 events.
        let n = unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 4, 0.0) };
        assert_eq!(n, 1);
        assert_eq!(read(v, s2, &mut [0u8; 4]), 2);
    });
    t.join().unwrap();
    assert_eq!(write(v, c1, b"z"), 1);
    assert_eq!(reader.join().unwrap(), 1);
    assert_eq!(v.vcl().violations(), 0);
}

/// Many threads mixing every kind of operation; VCL's threading rules
/// (checked by the double) must hold throughout.
#[test]
fn mixed_mode3_workload_respects_vcl_rules() {
    let v = app(false);
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                barrier.wait();
                let ep = v.epoll_create();
                for i in 0..60 {
                    let (l, c, s) = pair(v, true);
                    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: s as u64 };
                    // SAFETY: valid event.
                    unsafe {
                        assert_eq!(v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut ev), 0);
                    }
                    let msg = [t as u8, i as u8];
                    assert_eq!(write(v, c, &msg), 2);
                    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
                    // SAFETY: `evs` holds 8 events.
                    let n = unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 8, 0.0) };
                    assert!(n >= 1);
                    let mut buf = [0u8; 4];
                    assert_eq!(read(v, s, &mut buf), 2);
                    assert_eq!(&buf[..2], &msg);
                    // SAFETY: as above.
                    unsafe {
                        assert_eq!(v.epoll_ctl(ep, libc::EPOLL_CTL_DEL, s, std::ptr::null_mut()), 0);
                    }
                    assert_eq!(v.shutdown(c, libc::SHUT_WR), 0);
                    for h in [c, s, l] {
                        assert_eq!(v.close(h), 0);
                    }
                }
                v.close(ep);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(v.vcl().violations(), 0, "VCL threading rules broken");
    assert!(v.pool().is_empty());
    // All that is left is VLS's own epoll session, made by the first
    // connect (it lets VCL handle its queue before each connect).
    let own = v.internal_ep.load(Ordering::Acquire);
    assert_ne!(own, INVALID, "no connect made VLS's own epoll session");
    assert_eq!(v.vcl().n_sessions(), 1);
}

/// The checker itself can fail: the same kind of workload straight on the
/// double, without VLS, breaks the rules.
#[test]
fn conflict_checker_detects_unlocked_use() {
    let d: &'static Double = Box::leak(Box::new(Double::new(false)));
    // SAFETY: a valid C string.
    unsafe { d.app_create(c"raw".as_ptr()) };
    let wrk = d.worker_index();
    let stop = Arc::new(AtomicBool::new(false));
    let ts: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            thread::spawn(move || {
                d.set_worker_index(wrk);
                let deadline = Instant::now() + Duration::from_secs(2);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    let h = d.create(0, true) as u32;
                    d.close(h);
                    if d.violations() > 0 {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    assert!(d.violations() > 0, "unlocked concurrent pool changes must be flagged");
}

#[test]
fn concurrent_closes_then_reads_do_not_hang() {
    // Regression for the non-atomic pending-writer counter: many threads
    // closing at once must not leave readers spinning forever.
    let v = app(false);
    let sessions: Vec<Vlsh> = (0..64).map(|_| v.create(0, true)).collect();
    let chunks: Vec<Vec<Vlsh>> = sessions.chunks(16).map(|c| c.to_vec()).collect();
    let ts: Vec<_> = chunks
        .into_iter()
        .map(|c| {
            thread::spawn(move || {
                for h in c {
                    assert_eq!(v.close(h), 0);
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    assert_eq!(v.locks().spool().pending_writers(), 0);
    let (_l, c, s) = pair(v, true);
    assert_eq!(write(v, c, b"k"), 1);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(read(v, s, &mut [0u8; 2])).unwrap());
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).expect("read hung"), 1);
}

#[test]
fn two_threads_writing_one_session_keep_messages_whole() {
    let v = app(false);
    let (_l, c, s) = pair(v, true);
    let ts: Vec<_> = (0..2u8)
        .map(|t| {
            thread::spawn(move || {
                let msg = [t; 32];
                for _ in 0..100 {
                    // SAFETY: `msg` is valid for 32 bytes.
                    assert_eq!(unsafe { v.write_msg(c, msg.as_ptr() as *mut c_void, 32) }, 32);
                }
            })
        })
        .collect();
    for t in ts {
        t.join().unwrap();
    }
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    while all.len() < 2 * 100 * 32 {
        let n = read(v, s, &mut buf);
        assert!(n > 0, "read {n}");
        all.extend_from_slice(&buf[..n as usize]);
    }
    assert_eq!(all.len(), 2 * 100 * 32);
    for m in all.chunks(32) {
        assert!(m.iter().all(|&b| b == m[0]), "interleaved message");
    }
}

/// One thread blocked reading a session does not stop another from writing
/// to the same session (a full-duplex stream with a reader and a writer
/// thread); two readers of one session still take turns.
#[test]
fn blocked_reader_does_not_block_a_writer_of_the_same_session() {
    let v = app(false);
    let (_l, c, s) = pair(v, false);
    let (done_tx, done_rx) = mpsc::channel();
    for _ in 0..2 {
        let done_tx = done_tx.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 8];
            let n = read(v, s, &mut buf);
            done_tx.send((n, buf[0])).unwrap();
        });
    }
    until("a reader blocks", || v.vcl().blocked() == 1);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || tx.send(write(v, s, b"w")).unwrap());
    assert_eq!(rx.recv_timeout(Duration::from_secs(2)), Ok(1), "the writer must not wait for the reader");
    let mut got = [0u8; 1];
    assert_eq!(read(v, c, &mut got), 1);
    assert_eq!(&got, b"w");
    assert_eq!(write(v, c, b"x"), 1);
    let first = done_rx.recv_timeout(Duration::from_secs(2)).expect("a reader got x");
    assert_eq!(write(v, c, b"y"), 1);
    let second = done_rx.recv_timeout(Duration::from_secs(2)).expect("the other reader got y");
    assert_eq!([first, second], [(1, b'x'), (1, b'y')]);
    assert_eq!(v.vcl().violations(), 0, "two reads of one session overlapped");
}

/// A reader sleeping in VCL holds the session-pool read lock; a writer of
/// that lock (a close) must not block the new reader (a write) whose data
/// the sleeper waits for — a three-way deadlock otherwise.
#[test]
fn pending_pool_writer_does_not_block_what_a_sleeping_reader_waits_for() {
    let v = app(false);
    let (_l, c, s) = pair(v, false);
    let other = v.create(0, false);
    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    thread::spawn(move || {
        let mut buf = [0u8; 4];
        tx.send(("read", read(v, s, &mut buf))).unwrap();
    });
    until("the reader blocks", || v.vcl().blocked() == 1);
    let closed = Arc::new(AtomicBool::new(false));
    let c2 = closed.clone();
    thread::spawn(move || {
        let rv = v.close(other);
        c2.store(true, Ordering::SeqCst);
        tx2.send(("close", rv)).unwrap()
    });
    // The close announces itself as a writer and waits for the reader; it
    // may also get in between two of the reader's wait rounds and be done.
    until("the close waits for the pool lock (or is done)", || {
        v.locks().spool().pending_writers() > 0 || closed.load(Ordering::SeqCst)
    });
    let (wtx, wrx) = mpsc::channel();
    thread::spawn(move || wtx.send(write(v, c, b"data")).unwrap());
    assert_eq!(wrx.recv_timeout(Duration::from_secs(3)), Ok(4), "the write must get in");
    let mut done =
        [rx.recv_timeout(Duration::from_secs(3)).unwrap(), rx.recv_timeout(Duration::from_secs(3)).unwrap()];
    done.sort();
    assert_eq!(done, [("close", 0), ("read", 4)]);
    assert_eq!(v.vcl().violations(), 0);
}

/// Mode 3: a thread blocked in `connect` (the peer has not accepted yet)
/// does not hold the worker: another thread's close completes meanwhile,
/// and the connect returns once the peer accepts.
#[test]
fn blocking_connect_does_not_stop_other_threads() {
    let v = app(false);
    v.vcl().connect_waits_for_accept();
    let l = v.create(0, false);
    assert_eq!(v.listen(l, 10), 0);
    let other = v.create(0, false);
    let (tx, rx) = mpsc::channel();
    let conn_tx = tx.clone();
    thread::spawn(move || {
        let c = v.create(0, false);
        let mut target = v.vlsh_to_sh(l);
        // SAFETY: the double reads a u32 listener handle from `ep`.
        conn_tx.send(("connect", unsafe { v.connect(c, (&mut target as *mut u32).cast()) })).unwrap();
    });
    until("the connect waits", || v.vcl().connects_waiting() == 1);
    thread::spawn(move || tx.send(("close", v.close(other))).unwrap());
    assert_eq!(rx.recv_timeout(Duration::from_secs(2)), Ok(("close", 0)), "close waited for the connect");
    // SAFETY: null endpoint is accepted by the double.
    let s = unsafe { v.accept(l, std::ptr::null_mut(), 0) };
    assert!(s >= 0);
    assert_eq!(rx.recv_timeout(Duration::from_secs(2)), Ok(("connect", 0)));
    assert_eq!(v.vcl().violations(), 0);
}

/// VLS's record of O_NONBLOCK follows creation, accept and attribute calls
/// (it decides whether a non-blocking call takes both halves of the lock).
#[test]
fn nonblocking_hint_follows_create_accept_and_attr() {
    let v = app(false);
    let (_l, c, s) = pair(v, true);
    assert!(v.session(c).unwrap().nonblocking_hint(), "created non-blocking");
    assert!(!v.session(s).unwrap().nonblocking_hint(), "accepted blocking");
    let b = v.create(0, false);
    assert!(!v.session(b).unwrap().nonblocking_hint());
    v.vcl().set_nonblocking(v.vlsh_to_sh(b), true);
    let mut flags = 0u32;
    let mut len = 4u32;
    // SAFETY: valid buffers (the double ignores them).
    assert_eq!(unsafe { v.attr(b, 0, (&mut flags as *mut u32).cast(), &mut len) }, 0);
    assert!(v.session(b).unwrap().nonblocking_hint(), "refreshed by attr");
}
