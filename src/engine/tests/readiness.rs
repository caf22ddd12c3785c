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

/// LDP's `epoll_wait` makes a drain-only call (-2) and then, when VCL's
/// message queue fd is ready, a timeout-0 call writing behind the drain's
/// events: a session both report reaches the application once. The next
/// `epoll_wait` of the application (a new drain) reports it again while it
/// is still readable (level-triggered), and a timeout-0 call with no drain
/// before it has nothing to skip.
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
