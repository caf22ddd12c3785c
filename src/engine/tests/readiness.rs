//! Epoll sets, select and poll over the shared worker (mode 3).

use super::*;

/// Mode 3: VCL reports events of every epoll set of the shared worker to
/// whichever set is waited on; VLS must hand each event to its own set.
#[test]
fn events_of_set_b_are_never_returned_by_set_a() {
    let v = app(false);
    let ep_a = v.epoll_create();
    let ep_b = v.epoll_create();
    let (_la, ca, sa) = pair(v, false);
    let (_lb, cb, sb) = pair(v, false);
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 0xAAAA };
    // SAFETY: valid event.
    assert_eq!(unsafe { v.epoll_ctl(ep_a, libc::EPOLL_CTL_ADD, sa, &mut ev) }, 0);
    ev.u64 = 0xBBBB;
    // SAFETY: valid event.
    assert_eq!(unsafe { v.epoll_ctl(ep_b, libc::EPOLL_CTL_ADD, sb, &mut ev) }, 0);
    assert_eq!(write(v, cb, b"b"), 1);
    assert_eq!(write(v, ca, b"a"), 1);
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    // SAFETY: `evs` holds 8 events.
    let n = unsafe { v.epoll_wait(ep_a, evs.as_mut_ptr(), 8, 0.0) };
    assert_eq!(n, 1, "only set A's session");
    assert_eq!({ evs[0].u64 }, 0xAAAA, "the application's data comes back");
    assert_eq!(v.session(ep_b).unwrap().demux().unwrap().parked_len(), 1, "B's event parked");
    // SAFETY: as above.
    let n = unsafe { v.epoll_wait(ep_b, evs.as_mut_ptr(), 8, 0.0) };
    assert_eq!(n, 1, "B gets its event (parked, and VCL's own report merged)");
    assert_eq!({ evs[0].u64 }, 0xBBBB);
    // After DEL, events of the session go nowhere.
    // SAFETY: valid event.
    assert_eq!(unsafe { v.epoll_ctl(ep_b, libc::EPOLL_CTL_DEL, sb, &mut ev) }, 0);
    // SAFETY: as above.
    let n = unsafe { v.epoll_wait(ep_a, evs.as_mut_ptr(), 8, 0.0) };
    assert_eq!(n, 1);
    assert_eq!({ evs[0].u64 }, 0xAAAA);
    assert_eq!(v.session(ep_b).unwrap().demux().unwrap().parked_len(), 0);
}

/// An event loop sleeps on a set's libc epoll fd until its next edge and
/// takes a short batch for "drained". When VCL filled the room it had (it
/// may keep more in its unhandled vector, which no fd signals) but VLS
/// returns a short batch because it handed other sets' events to them, the
/// set's wake fd must fire again.
#[test]
fn a_short_batch_after_a_full_vcl_batch_signals_the_set_again() {
    let v = app(false);
    // SAFETY: plain syscalls.
    let (mq, libc_a) = unsafe { (libc::eventfd(0, libc::EFD_NONBLOCK), libc::epoll_create1(0)) };
    v.vcl().set_mq_epoll_fd(mq);
    let ep_a = v.epoll_create();
    let ep_b = v.epoll_create();
    assert_eq!(v.set_libc_epfd(ep_a, libc_a), 0);
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    let readable = |fd: i32| {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    };
    // The first wait installs A's wake fd; nothing is there yet.
    // SAFETY: `evs` holds 8 events.
    assert_eq!(unsafe { v.epoll_wait(ep_a, evs.as_mut_ptr(), 8, 0.0) }, 0);
    assert!(!readable(libc_a));
    let (_l1, c1, s1) = pair(v, false);
    let (_l2, c2, s2) = pair(v, false);
    let (_l3, c3, s3) = pair(v, false);
    for (ep, s) in [(ep_a, s1), (ep_b, s2), (ep_b, s3)] {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: s as u64 };
        // SAFETY: valid event.
        assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut ev) }, 0);
    }
    for c in [c1, c2, c3] {
        assert_eq!(write(v, c, b"x"), 1);
    }
    // Room for 2 of the worker's 3 events: VCL fills it, and at least one
    // of the two is B's, so A gets fewer than 2.
    // SAFETY: `evs` holds 8 events.
    let n = unsafe { v.epoll_wait(ep_a, evs.as_mut_ptr(), 2, 0.0) };
    assert!(n < 2, "{n}");
    assert!(readable(libc_a), "a short batch with more left in VCL must signal the set again");
    // The next wait takes what is there and the signal with it.
    // SAFETY: as above.
    let n = unsafe { v.epoll_wait(ep_a, evs.as_mut_ptr(), 8, 0.0) };
    assert_eq!(n, 1);
    assert_eq!({ evs[0].u64 }, s1 as u64);
    assert!(!readable(libc_a));
    // A wake without an event (after a call that read VCL's queue outside
    // an epoll wait) fires the fd too, and the next wait takes it.
    assert_eq!(v.epoll_wake(ep_a), 0);
    assert!(readable(libc_a));
    // SAFETY: as above.
    assert_eq!(unsafe { v.epoll_wait(ep_a, evs.as_mut_ptr(), 8, 0.0) }, 1);
    assert!(!readable(libc_a));
    assert_eq!(v.epoll_wake(s1), EBADFD, "not an epoll set");
    // SAFETY: closes fds this test made.
    unsafe {
        libc::close(libc_a);
        libc::close(mq);
    }
}

#[test]
fn select_returns_the_number_of_bits_set() {
    let v = app(false);
    let (_l, c, s) = pair(v, true);
    let (_l2, _c2, s2) = pair(v, true);
    assert_eq!(write(v, c, b"x"), 1);
    let (si, _) = v.vlsh_to_session_and_worker(s);
    let (si2, _) = v.vlsh_to_session_and_worker(s2);
    let mut map: [libc::c_ulong; 2] = [0; 2];
    for i in [si, si2] {
        map[i as usize / 64] |= 1 << (i % 64);
    }
    // SAFETY: the map holds 128 bits; null write/except maps.
    let n = unsafe { v.select(128, map.as_mut_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), 0.0) };
    assert_eq!(n, 1, "one readable session, counted once");
    assert_ne!(map[si as usize / 64] & (1 << (si % 64)), 0);
    assert_eq!(map[si2 as usize / 64] & (1 << (si2 % 64)), 0);
}

#[test]
fn count_set_bits_ignores_bits_past_n_bits() {
    let map: [libc::c_ulong; 2] = [!0, !0];
    // SAFETY: the map holds 128 bits.
    unsafe {
        assert_eq!(crate::engine::count_set_bits(map.as_ptr(), 70), 70);
        assert_eq!(crate::engine::count_set_bits(map.as_ptr(), 64), 64);
        assert_eq!(crate::engine::count_set_bits(map.as_ptr(), 0), 0);
        assert_eq!(crate::engine::count_set_bits(std::ptr::null(), 64), 0);
    }
}

#[test]
fn select_maps_keep_only_the_bits_asked_for() {
    let asked: [libc::c_ulong; 2] = [0b0100, 1 << 3];
    // SAFETY: the maps hold 128 bits.
    unsafe {
        let copy = crate::engine::copy_bits(asked.as_ptr(), 70);
        assert_eq!(&*copy, &asked[..]);
        // Past the inline words the copy goes to the heap, the same.
        let big = [!0 as libc::c_ulong; 40];
        assert_eq!(&*crate::engine::copy_bits(big.as_ptr(), 40 * 64), &big[..]);
        // VCL's answer: bit 2 (asked) and bit 0 (a session nobody asked
        // about), bit 67 (asked) and bit 64.
        let mut answer: [libc::c_ulong; 2] = [0b0101, (1 << 3) | 1];
        crate::engine::keep_bits(answer.as_mut_ptr(), &copy);
        assert_eq!(answer, [0b0100, 1 << 3]);
        assert!(crate::engine::copy_bits(std::ptr::null(), 70).is_empty());
        crate::engine::clear_bits(answer.as_mut_ptr(), 70);
        assert_eq!(answer, [0, 0]);
    }
}

/// LDP's `epoll_wait` makes a drain-only call (-2) and then, when VCL's
/// message queue fd is ready, a timeout-0 call writing behind the drain's
/// events: a session both report reaches the application once. The next
/// `epoll_wait` of the application (a new drain) reports it again while it
/// is still readable (level-triggered), and a timeout-0 call with no drain
/// before it has nothing to skip. The skipped duplicate brings nothing new,
/// so it is dropped, not parked.
#[test]
fn ldp_drain_then_timeout_zero_reports_a_session_once() {
    let v = app(false);
    let ep = v.epoll_create();
    let (_l, c, s) = pair(v, true);
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 0x5e };
    // SAFETY: valid event.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut ev) }, 0);
    assert_eq!(write(v, c, b"data"), 4);
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    for round in 0..3 {
        // SAFETY: `evs` holds 8 events.
        let drained = unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 8, -2.0) };
        assert_eq!(drained, 1, "round {round}: the drain returns the readable session");
        assert_eq!({ evs[0].u64 }, 0x5e);
        // SAFETY: `evs[1..]` holds 7 events.
        let more = unsafe { v.epoll_wait(ep, evs[1..].as_mut_ptr(), 7, 0.0) };
        assert_eq!(more, 0, "round {round}: the same session is not reported twice in one epoll_wait");
        // Nothing new in the duplicate (the same bits): not kept for the
        // next wait either (which would cost a wake of the set each time).
        let parked = v.session(ep).unwrap().demux().unwrap().parked_len();
        assert_eq!(parked, 0, "round {round}: the duplicate is dropped");
    }
    // Without a drain first, a timeout-0 wait reports it.
    // SAFETY: as above.
    let n = unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 8, 0.0) };
    assert_eq!(n, 1, "reported by a plain wait");
    assert_eq!({ evs[0].u64 }, 0x5e);
    // Once read dry, nothing is reported (not even what the skipped
    // duplicate left parked).
    let mut buf = [0u8; 16];
    assert_eq!(read(v, s, &mut buf), 4);
    // SAFETY: as above.
    assert_eq!(unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 8, -2.0) }, 0, "nothing left to drain");
    // SAFETY: as above.
    assert_eq!(unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 8, 0.0) }, 0, "nothing stale");
}

/// A timeout-0 wait right after LDP's drain skips the sessions the drain
/// returned, but keeps for the next wait what is new in their events: here
/// the peer's close (`EPOLLRDHUP`) seen after the drain reported the data.
#[test]
fn new_bits_of_a_drained_session_are_kept_for_the_next_wait() {
    let v = app(false);
    let ep = v.epoll_create();
    let (_l, c, s) = pair(v, true);
    let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32, u64: 0x5e };
    // SAFETY: valid event.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut ev) }, 0);
    assert_eq!(write(v, c, b"data"), 4);
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    // SAFETY: `evs` holds 8 events.
    assert_eq!(unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 8, -2.0) }, 1);
    assert_eq!({ evs[0].events }, libc::EPOLLIN as u32);
    assert_eq!(v.close(c), 0);
    // SAFETY: `evs[1..]` holds 7 events.
    assert_eq!(unsafe { v.epoll_wait(ep, evs[1..].as_mut_ptr(), 7, 0.0) }, 0, "not twice in one epoll_wait");
    assert_eq!(v.session(ep).unwrap().demux().unwrap().parked_len(), 1, "the close is kept");
    // SAFETY: as above.
    assert_eq!(unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 8, -2.0) }, 1, "and reported by the next wait");
    assert_eq!({ evs[0].events }, (libc::EPOLLIN | libc::EPOLLRDHUP) as u32);
}

/// VCL may report one session twice in one wait (a queued event and its
/// level-triggered re-report). The single thread's waits (lock-free while
/// it is alone) return it once, with the bits of both; so do the waits of
/// the general path once a second thread has arrived. (The double reports a
/// session once per set listing it: added to two sets, it is in the last
/// one for VLS and comes twice from VCL.)
#[test]
fn a_session_vcl_reports_twice_in_one_wait_is_returned_once() {
    let v = app(false);
    let ep_a = v.epoll_create();
    let ep_b = v.epoll_create();
    let (_l, c, s) = pair(v, true);
    for (ep, data) in [(ep_a, 0xA), (ep_b, 0xB)] {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: data };
        // SAFETY: valid event.
        assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut ev) }, 0);
    }
    assert_eq!(write(v, c, b"x"), 1);
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    let mut check = |what: &str| {
        // LDP's drain, then a plain timeout-0 wait (the timeout-0 wait
        // right after a drain belongs to the same `epoll_wait` of LDP's and
        // skips the drain's sessions: see the test above).
        for wait in [-2.0, 0.0] {
            if wait == 0.0 {
                // SAFETY: `evs` holds 8 events.
                let n = unsafe { v.epoll_wait(ep_b, evs.as_mut_ptr(), 8, 0.0) };
                assert_eq!(n, 0, "{what}: after the drain");
            }
            // SAFETY: `evs` holds 8 events.
            let n = unsafe { v.epoll_wait(ep_b, evs.as_mut_ptr(), 8, wait) };
            assert_eq!(n, 1, "{what}, wait {wait}: reported once");
            assert_eq!({ evs[0].u64 }, 0xB, "{what}: with the data of the set VLS has it in");
            assert_eq!({ evs[0].events }, libc::EPOLLIN as u32);
        }
        // Set A is not the session's (for VLS): nothing there.
        // SAFETY: as above.
        assert_eq!(unsafe { v.epoll_wait(ep_a, evs.as_mut_ptr(), 8, 0.0) }, 0, "{what}: not set A's");
    };
    assert_eq!(v.lock_free_io(), super::super::solo::lock_free_expected(), "one thread: no locks");
    check("one thread");
    thread::spawn(move || assert!(v.create(0, true) >= 0)).join().unwrap();
    assert!(!v.lock_free_io());
    check("two threads");
}

/// While one thread only has used VLS, its epoll waits that cannot sleep
/// (timeout 0, LDP's drain) and its `epoll_ctl` take no lock. A second
/// thread arriving meanwhile creates and closes sessions and uses a set of
/// its own: the double flags any pool change or message-queue use that
/// overlaps one of the first thread's calls, and the first thread keeps
/// getting its session's event (level-triggered, always readable).
#[test]
fn a_second_thread_waits_for_the_first_threads_unlocked_epoll_calls() {
    for round in 0..20u64 {
        thread::spawn(move || {
            let v = app(false);
            let ep = v.epoll_create();
            let (_l, c, s) = pair(v, true);
            let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 7 };
            // SAFETY: valid event.
            assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut ev) }, 0);
            assert_eq!(write(v, c, b"x"), 1);
            assert_eq!(v.lock_free_io(), super::super::solo::lock_free_expected(), "one thread: no locks");
            let arrived = Arc::new(AtomicBool::new(false));
            let a = arrived.clone();
            let second = thread::spawn(move || {
                thread::sleep(Duration::from_micros(100 + 37 * round));
                let own = v.epoll_create();
                for _ in 0..5 {
                    let h = v.create(0, true);
                    a.store(true, Ordering::Release);
                    let mut e = [libc::epoll_event { events: 0, u64: 0 }; 4];
                    // SAFETY: `e` holds 4 events.
                    assert_eq!(unsafe { v.epoll_wait(own, e.as_mut_ptr(), 4, 0.0) }, 0);
                    assert_eq!(v.close(h), 0);
                }
                assert_eq!(v.close(own), 0);
            });
            let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
            let mut after = 0;
            while after < 50 {
                // LDP's drain in even rounds, plain timeout-0 waits in odd
                // ones (a timeout-0 wait right after a drain would be the
                // same `epoll_wait` of LDP's, which reports a session once).
                let wait = if round % 2 == 0 { -2.0 } else { 0.0 };
                // SAFETY: `evs` holds 4 events.
                let n = unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 4, wait) };
                assert_eq!(n, 1, "round {round}: the readable session is reported");
                assert_eq!({ evs[0].u64 }, 7);
                let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 7 };
                // SAFETY: valid event.
                assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_MOD, s, &mut ev) }, 0);
                if arrived.load(Ordering::Acquire) {
                    after += 1;
                }
            }
            second.join().unwrap();
            assert!(!v.lock_free_io(), "a second thread ends the unlocked calls");
            assert_eq!(
                v.vcl().violations(),
                0,
                "round {round}: another call overlapped an unlocked epoll call"
            );
        })
        .join()
        .unwrap();
    }
}

/// The kernel reports only the bits a session's registration asks for
/// now: an event parked while the set asked for `EPOLLOUT` (another
/// thread's `epoll_ctl` finds the session writable at once) is not
/// returned after an `EPOLL_CTL_MOD` that asks for `EPOLLIN` only.
/// nutcracker registers its listener with both, then modifies it to
/// `EPOLLIN`; an `EPOLLOUT` for it called its (null) send handler.
#[test]
fn a_parked_event_is_reported_only_for_the_bits_asked_for_now() {
    let v = app(false);
    let ep = v.epoll_create();
    let (_l, _c, s) = pair(v, false);
    // A second thread using VLS, alive for the whole test: epoll_ctl takes
    // the path that parks a session's readiness on its set.
    let (arrived, done) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
    let (arrived_tx, arrived_rx) = arrived;
    let (done_tx, done_rx) = done;
    let other = thread::spawn(move || {
        assert!(v.create(0, false) >= 0);
        arrived_tx.send(()).unwrap();
        let _ = done_rx.recv();
    });
    arrived_rx.recv().unwrap();
    let mut ev = libc::epoll_event { events: (libc::EPOLLIN | libc::EPOLLOUT) as u32, u64: 0x5e55 };
    // SAFETY: valid event.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut ev) }, 0);
    assert_eq!(v.session(ep).unwrap().demux().unwrap().parked_len(), 1, "writable at once: parked");
    ev.events = libc::EPOLLIN as u32;
    // SAFETY: valid event.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_MOD, s, &mut ev) }, 0);
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    // SAFETY: `evs` holds 8 events.
    let n = unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 8, 0.0) };
    let got: Vec<u32> = evs[..n.max(0) as usize].iter().map(|e| e.events).collect();
    assert_eq!(n, 0, "nothing asked for is ready: {got:x?}");
    done_tx.send(()).unwrap();
    other.join().unwrap();
}

/// An `epoll_ctl` by the only thread that ever waited on the set parks
/// nothing (no eventfd write, no kernel wake-up: that thread is not asleep
/// there) and its next wait still reports the session; once a second
/// thread has waited on the set, the readiness is parked for it as before.
/// wrk's event-loop thread paid an eventfd write per request (its main
/// thread made the sets, so the process counts two threads).
#[test]
fn an_epoll_ctl_by_the_sets_only_waiter_parks_nothing() {
    let v = app(false);
    let ep = v.epoll_create();
    let (_l, c, s) = pair(v, false);
    // `s` readable (the test double reports readiness to read only).
    assert_eq!(write(v, c, b"x"), 1);
    let (arrived_tx, arrived_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let (waited_tx, waited_rx) = std::sync::mpsc::channel();
    let other = thread::spawn(move || {
        assert!(v.create(0, false) >= 0);
        arrived_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // SAFETY: `evs` holds 8 events.
        let n = unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 8, 0.0) };
        waited_tx.send(n).unwrap();
        go_rx.recv().unwrap();
    });
    arrived_rx.recv().unwrap();
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
    // SAFETY: `evs` holds 8 events.
    assert_eq!(unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 8, 0.0) }, 0);
    let parked = || v.session(ep).unwrap().demux().unwrap().parked_len();
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 0x5e55 };
    // SAFETY: valid event.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut ev) }, 0);
    assert_eq!(parked(), 0, "the only waiter's own epoll_ctl parks nothing");
    // SAFETY: `evs` holds 8 events.
    let n = unsafe { v.epoll_wait(ep, evs.as_mut_ptr(), 8, 0.0) };
    assert_eq!(n, 1, "its next wait reports the readable session");
    assert_eq!((evs[0].events, evs[0].u64), (libc::EPOLLIN as u32, 0x5e55));

    // A second thread waits on the set: from now on it may be asleep there.
    go_tx.send(()).unwrap();
    assert!(waited_rx.recv().unwrap() >= 0);
    ev.events = (libc::EPOLLIN | libc::EPOLLOUT) as u32;
    // SAFETY: valid event.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_MOD, s, &mut ev) }, 0);
    assert_eq!(parked(), 1, "with two waiters, parked for whoever sleeps on the set");
    go_tx.send(()).unwrap();
    other.join().unwrap();
}
