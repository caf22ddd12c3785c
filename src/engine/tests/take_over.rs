//! The single-thread period passing to a thread that arrives while no other
//! thread is inside VCL (see `solo` and `Vls::take_over_solo_period`).

use super::*;

fn nothing() -> [libc::epoll_event; 4] {
    [libc::epoll_event { events: 0, u64: 0 }; 4]
}

fn ctl(v: &'static Vls<Double>, ep: Vlsh, op: i32, s: Vlsh, data: u64) -> i32 {
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: data };
    // SAFETY: a valid event.
    unsafe { v.epoll_ctl(ep, op, s, &mut ev) }
}

fn wait_now(v: &'static Vls<Double>, ep: Vlsh, evs: &mut [libc::epoll_event; 4]) -> i32 {
    // SAFETY: `evs` holds 4 events.
    unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 4, 0.0) }
}

/// wrk's shape: the main thread sets up (an epoll set, sessions), then a
/// thread of its own does all the I/O, on the unlocked paths; the process
/// stays in the shared-worker mode, and the period ends with that thread.
#[test]
fn a_thread_arriving_while_the_others_are_idle_takes_the_unlocked_paths_over() {
    let expected = super::super::solo::lock_free_expected();
    let v = app(false);
    let ep = v.epoll_create();
    let (_l, c, s) = pair(v, true);
    thread::spawn(move || {
        let mut buf = [0u8; 4];
        assert_eq!(read(v, c, &mut buf), -libc::EAGAIN);
        assert_eq!(v.lock_free_io(), expected, "the arriving thread took the unlocked paths over");
        assert_eq!(v.mode(), Mode::SharedWorker, "the process stays in the shared-worker mode");
        assert_eq!(ctl(v, ep, libc::EPOLL_CTL_ADD, c, 5), 0);
        assert_eq!(write(v, s, b"x"), 1);
        let mut evs = nothing();
        assert_eq!(wait_now(v, ep, &mut evs), 1);
        assert_eq!({ evs[0].u64 }, 5);
        assert_eq!(read(v, c, &mut buf), 1);
        assert_eq!(v.lock_free_io(), expected, "still the unlocked paths");
    })
    .join()
    .unwrap();
    assert!(!v.lock_free_io(), "the period ended with its thread");
    assert_eq!(v.vcl().violations(), 0);
}

/// The main thread comes back while the thread that took the period over
/// reads without locks: its calls (pool changes) must end the period and
/// wait for the unlocked read in progress. The double flags a pool change
/// that overlaps a read.
#[test]
fn a_thread_coming_back_ends_the_period_and_waits_for_the_unlocked_call() {
    let expected = super::super::solo::lock_free_expected();
    for round in 0..20u64 {
        thread::spawn(move || {
            let v = app(false);
            let (_l, c, _s) = pair(v, true);
            let (took_over_tx, took_over) = mpsc::channel();
            let stop = Arc::new(AtomicBool::new(false));
            let st = stop.clone();
            let io = thread::spawn(move || {
                let mut buf = [0u8; 4];
                assert_eq!(read(v, c, &mut buf), -libc::EAGAIN);
                took_over_tx.send(v.lock_free_io()).unwrap();
                while !st.load(Ordering::Acquire) {
                    assert_eq!(read(v, c, &mut buf), -libc::EAGAIN);
                }
                v.lock_free_io()
            });
            assert_eq!(took_over.recv().unwrap(), expected, "round {round}: taken over");
            thread::sleep(Duration::from_micros(37 * round));
            for _ in 0..5 {
                let h = v.create(0, true);
                assert!(h >= 0);
                assert_eq!(v.close(h), 0);
            }
            let ended = !v.lock_free_io();
            stop.store(true, Ordering::Release);
            let io_unlocked = io.join().unwrap();
            assert_eq!(v.vcl().violations(), 0, "round {round}: a pool change overlapped an unlocked read");
            assert!(ended, "round {round}: the main thread's calls ended the period");
            assert!(!io_unlocked, "round {round}: the I/O thread is on the locked paths now");
            // Its threads share the work: no more take-overs.
            let later = thread::spawn(move || {
                assert_eq!(read(v, c, &mut [0u8; 4]), -libc::EAGAIN);
                v.lock_free_io()
            });
            assert!(!later.join().unwrap(), "round {round}: a later thread took the period over");
        })
        .join()
        .unwrap();
    }
}

/// No thread takes the period over while another waits inside VCL (a
/// blocking read holds the session-pool lock across its wait).
#[test]
fn no_take_over_while_another_thread_waits_inside_vcl() {
    let v = app(false);
    let (_l, c, s) = pair(v, false);
    let (_l2, c2, _s2) = pair(v, true);
    let reader = blocked_reader(v, s);
    let third = thread::spawn(move || {
        assert_eq!(read(v, c2, &mut [0u8; 4]), -libc::EAGAIN);
        v.lock_free_io()
    });
    assert!(!third.join().unwrap(), "a thread took the period over beside a wait in VCL");
    assert_eq!(write(v, c, b"hi"), 2);
    assert_eq!(reader.join().unwrap(), 2);
    assert_eq!(v.vcl().violations(), 0);
}

/// The thread that took the period over adds a ready session to a set
/// another thread may sleep on (it waited there): the event is parked,
/// which wakes that thread, as on the locked path. On a set only it waits
/// on, nothing is parked.
#[test]
fn the_new_solo_threads_epoll_ctl_wakes_the_sets_other_waiter() {
    if !super::super::solo::lock_free_expected() {
        return;
    }
    let v = app(false);
    let theirs = v.epoll_create();
    let mine = v.epoll_create();
    let (_l, c, s) = pair(v, true);
    let (_l2, c2, s2) = pair(v, true);
    let mut evs = nothing();
    assert_eq!(wait_now(v, theirs, &mut evs), 0, "the main thread waited on its set");
    assert_eq!(write(v, c, b"x"), 1);
    assert_eq!(write(v, c2, b"y"), 1);
    thread::spawn(move || {
        let mut evs = nothing();
        assert_eq!(wait_now(v, mine, &mut evs), 0);
        assert!(v.lock_free_io(), "the arriving thread took the period over");
        assert_eq!(ctl(v, theirs, libc::EPOLL_CTL_ADD, s, 1), 0);
        assert_eq!(
            v.session(theirs).unwrap().demux().unwrap().parked_len(),
            1,
            "parked for the other waiter"
        );
        assert_eq!(ctl(v, mine, libc::EPOLL_CTL_ADD, s2, 2), 0);
        assert_eq!(wait_now(v, mine, &mut evs), 1);
        assert_eq!(ctl(v, mine, libc::EPOLL_CTL_MOD, s2, 2), 0);
        assert_eq!(v.session(mine).unwrap().demux().unwrap().parked_len(), 0, "its own set: nothing parked");
        assert!(v.lock_free_io());
    })
    .join()
    .unwrap();
    assert_eq!(wait_now(v, theirs, &mut evs), 1);
    assert_eq!({ evs[0].u64 }, 1);
    assert_eq!(v.vcl().violations(), 0);
}
