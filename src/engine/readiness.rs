//! Readiness: the epoll sets of [`Vls`] (`select` and `poll` are in
//! [`super::select`]), and the
//! routing of VCL's events to the set each session is in (mode 3, where all
//! threads share one VCL worker whose epoll state VCL keeps per worker; the
//! queues and wake fds of a set are in [`super::demux`]).
//!
//! - `epoll_ctl` registers a session in VCL with its vlsh as event data and
//!   records the set it is in under the same locks as VCL's change;
//! - `epoll_wait` returns the set's parked events first, then VCL's, each
//!   routed through its token: this set's are returned with the
//!   application's data, other sets' are parked there (waking their
//!   waiters), stale ones dropped;
//! - a wait with a timeout sleeps on the set's wake fd outside every lock;
//! - events VCL read while another call waited inside it are routed to
//!   their sets afterwards ([`Vls::route_events_after_a_wait`]);
//! - how one event reaches its set (returned, parked or dropped) is in
//!   [`super::delivery`].

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::delivery::Reported;
use super::locks::OpKind;
use super::pool::VlsSession;
use super::{demux, solo, Vls, DRAIN_ONLY, EBADFD, EINVAL};
use crate::error::VppcomError;
use crate::handle::Vlsh;
use crate::handle::{Sh, INVALID};
use crate::seam::Vcl;

impl<V: Vcl> Vls<V> {
    /// A VCL epoll session of VLS's own (no VLS handle, never holds a
    /// session), used to make VCL handle its message queue's events;
    /// `INVALID` if VCL could not create one.
    pub(super) fn internal_epoll(&'static self) -> Sh {
        let sh = self.internal_ep.load(Ordering::Acquire);
        if sh != INVALID {
            return sh;
        }
        let _g = self.op_locks(OpKind::SessionPool, None);
        let sh = self.internal_ep.load(Ordering::Acquire);
        if sh != INVALID {
            return sh;
        }
        let rv = self.vcl.epoll_create();
        if rv < 0 {
            tracing::warn!(rv = %VppcomError::from_raw(rv), "cannot create VLS's internal epoll session");
            return INVALID;
        }
        self.internal_ep.store(rv as Sh, Ordering::Release);
        rv as Sh
    }

    /// Lets VCL handle what its message queue holds (connects, closes,
    /// data); I/O events are parked on the application's epoll sets as in
    /// `epoll_wait`. Called with the worker locks held.
    pub(super) fn handle_mq_events(&'static self, flush_set: Sh) {
        if flush_set == INVALID || self.detaching() {
            return;
        }
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
        // A full batch may leave more behind (VCL keeps the rest queued).
        for _ in 0..64 {
            // SAFETY: `evs` is valid for its length.
            let n = unsafe { self.vcl.epoll_wait(flush_set, evs.as_mut_ptr(), evs.len() as i32, 0.0) };
            for e in &evs[..n.max(0) as usize] {
                self.park(e.events, e.u64);
            }
            if n < evs.len() as i32 {
                break;
            }
        }
    }

    /// Makes `demux`'s wake fd watch VCL's mq fd while VCL is attached and
    /// a timer while it is not (see the `demux` module docs).
    fn watch_for_vpp(&self, demux: &demux::EpollDemux) {
        if self.vcl.worker_detached() {
            demux.vpp_gone(self.vcl.mq_epoll_fd());
        } else if demux.on_timer() {
            demux.vpp_back(self.vcl.mq_epoll_fd());
        }
    }

    /// VCL is detaching the worker (VPP is gone): no epoll wait, select or
    /// poll may enter VCL now. Read with the worker's locks held (the
    /// detaching thread sets it before releasing them for its pause).
    pub(super) fn detaching(&self) -> bool {
        self.detaching.load(Ordering::SeqCst)
    }

    /// Wakes the waiter of every epoll set (through its wake fd).
    pub(super) fn wake_every_set(&self) {
        for set in self.pool.live_sessions() {
            if let Some(d) = set.demux() {
                d.wake();
            }
        }
    }

    /// After a call that waited inside VCL in mode 3: while it waited, VCL
    /// consumed the worker's message-queue notifications and queued the
    /// events it read as unhandled, for the next epoll wait — but the
    /// threads that would make that wait sleep in the kernel on the very
    /// notification that was consumed (LDP sleeps on each set's libc epoll
    /// fd). So the events are routed to their sets now, which wakes their
    /// waiters (a thread blocked in `accept` would otherwise delay every
    /// other thread's I/O by up to its epoll timeout, or for ever).
    pub(super) fn route_events_after_a_wait(&'static self) {
        if !self.shares_worker() {
            return;
        }
        let flush_set = self.internal_epoll();
        let _g = self.op_locks(OpKind::MessageQueue, None);
        self.handle_mq_events(flush_set);
    }

    /// `vls_epoll_ctl`.
    ///
    /// # Safety
    /// `ev` as for `vppcom_epoll_ctl`.
    pub unsafe fn epoll_ctl(
        &'static self,
        ep_vlsh: Vlsh,
        op: i32,
        vlsh: Vlsh,
        ev: *mut libc::epoll_event,
    ) -> i32 {
        // SAFETY: forwarded contract.
        match unsafe { self.epoll_ctl_lock_free(ep_vlsh, op, vlsh, ev) } {
            Some(rv) => rv,
            // SAFETY: forwarded contract.
            None => unsafe { self.epoll_ctl_with_locks(ep_vlsh, op, vlsh, ev) },
        }
    }

    /// `vls_epoll_ctl` of the only thread of the process (mode 3 or a
    /// forked child, before a second thread; see `solo`): nothing can race
    /// the call and an arriving thread waits until it is over, so it takes
    /// no lock. `None`: does not apply, or an argument is wrong (the
    /// general path, [`Self::epoll_ctl_with_locks`], then runs and
    /// answers). Cannot panic.
    ///
    /// # Safety
    /// `ev` as for `vppcom_epoll_ctl`.
    #[inline(always)]
    pub unsafe fn epoll_ctl_lock_free(
        &'static self,
        ep_vlsh: Vlsh,
        op: i32,
        vlsh: Vlsh,
        ev: *mut libc::epoll_event,
    ) -> Option<i32> {
        let _alone = self.solo.enter()?;
        if ep_vlsh == vlsh || (ev.is_null() && op != libc::EPOLL_CTL_DEL) {
            return None;
        }
        let (ep, s) = (self.pool.get(ep_vlsh)?, self.pool.get(vlsh)?);
        if !ep.is_epoll() || ep.is_closed() || s.is_closed() {
            return None;
        }
        // SAFETY: `ev` is null or valid per the contract; the struct is
        // packed, so its fields are read by value.
        let (app_events, app_data) = if ev.is_null() { (0, 0) } else { unsafe { ((*ev).events, (*ev).u64) } };
        // SAFETY: forwarded contract.
        let rv = unsafe {
            self.epoll_ctl_in_vcl(ep_vlsh, ep.sh(), op, s, s.sh(), ev.is_null(), app_events, app_data)
        };
        Some(self.after_solo_epoll_ctl(rv, op, s, app_events))
    }

    /// After an `epoll_ctl` of the solo thread: if other threads are
    /// registered (it took the period over, see `solo`), what the locked
    /// path does for their waits (see [`Self::report_ready_at_once`]).
    #[inline(always)]
    fn after_solo_epoll_ctl(&'static self, rv: i32, op: i32, s: &VlsSession, app_events: u32) -> i32 {
        if rv == 0
            && (op == libc::EPOLL_CTL_ADD || op == libc::EPOLL_CTL_MOD)
            && self.needs_locks.load(Ordering::Relaxed)
        {
            self.report_ready_at_once(s, app_events);
        }
        rv
    }

    /// `vls_epoll_ctl` once [`Self::epoll_ctl_lock_free`] declined.
    ///
    /// # Safety
    /// `ev` as for `vppcom_epoll_ctl`.
    #[inline(never)]
    pub unsafe fn epoll_ctl_with_locks(
        &'static self,
        ep_vlsh: Vlsh,
        op: i32,
        vlsh: Vlsh,
        ev: *mut libc::epoll_event,
    ) -> i32 {
        if !self.detect_thread() {
            return EBADFD;
        }
        if ep_vlsh == vlsh || (ev.is_null() && op != libc::EPOLL_CTL_DEL) {
            return EINVAL;
        }
        let (Some(ep), Some(s)) = (self.pool.get(ep_vlsh), self.pool.get(vlsh)) else {
            return EBADFD;
        };
        if !ep.is_epoll() {
            return EBADFD;
        }
        // SAFETY: `ev` is null or valid per the contract; the struct is
        // packed, so its fields are read by value.
        let (app_events, app_data) = if ev.is_null() { (0, 0) } else { unsafe { ((*ev).events, (*ev).u64) } };
        // The only thread of the process, but the lock-free path declined
        // (a closed session): the same without VCL.
        if let Some(_alone) = self.solo.enter() {
            if ep.is_closed() || s.is_closed() {
                return EBADFD;
            }
            // SAFETY: forwarded contract.
            let rv = unsafe {
                self.epoll_ctl_in_vcl(ep_vlsh, ep.sh(), op, s, s.sh(), ev.is_null(), app_events, app_data)
            };
            return self.after_solo_epoll_ctl(rv, op, s, app_events);
        }
        // Two session locks: always in vlsh order, so two threads linking
        // two epoll sessions into each other cannot deadlock.
        let (first, second) = if ep_vlsh < vlsh { (&ep, &s) } else { (&s, &ep) };
        let l1 = first.lock();
        let l2 = second.lock();
        let (ep_l, s_l) = if ep_vlsh < vlsh { (&l1, &l2) } else { (&l2, &l1) };
        if ep_l.closed() || s_l.closed() {
            return EBADFD;
        }
        // Per-thread workers: both must be on this thread's worker.
        let ep_sh = match self.sh_here(ep_l) {
            Ok(sh) => sh,
            Err(e) => return e,
        };
        let sh = match self.sh_here(s_l) {
            Ok(sh) => sh,
            Err(e) => return e,
        };
        // VCL's epoll chains and level-triggered ring are per worker, shared
        // by every epoll set of the worker: changing them needs the same
        // locks as walking them in epoll_wait.
        let _g = self.op_locks(OpKind::MessageQueue, None);
        // SAFETY: forwarded contract.
        let rv =
            unsafe { self.epoll_ctl_in_vcl(ep_vlsh, ep_sh, op, s, sh, ev.is_null(), app_events, app_data) };
        if rv == 0 && (op == libc::EPOLL_CTL_ADD || op == libc::EPOLL_CTL_MOD) {
            self.report_ready_at_once(s, app_events);
        }
        rv
    }

    /// After another thread's `epoll_ctl` added or changed session `s` in a
    /// set: if `s` is ready for what was asked now, parks that on its set,
    /// which wakes the set's waiter. VCL queues such an event only for its
    /// worker's next wait, while the thread that will make that wait may
    /// sleep in the kernel (LDP's libc epoll fd) until VPP sends the worker
    /// something: the kernel's `epoll_ctl` wakes waiters at once. Seen with
    /// apache's event MPM: a worker thread hands a response it could not
    /// finish writing to the listener thread's set with `EPOLLOUT`, the
    /// socket is writable by then, and the listener slept until VPP's next
    /// message (a 50 MB download took from 0.5 s to more than 30 s).
    ///
    /// Not when the calling thread is the only one that ever waited on the
    /// set: it is not asleep there, and its next wait finds the event VCL
    /// queued. A single event-loop thread in a process with other threads
    /// (wrk's, whose main thread made the sets) paid an eventfd write per
    /// `epoll_ctl`, and a kernel wake-up per request: wrk under LDP did
    /// 20 % fewer requests than with the C layer.
    fn report_ready_at_once(&'static self, s: &VlsSession, app_events: u32) {
        let asked = app_events & (libc::EPOLLIN | libc::EPOLLOUT) as u32;
        if asked == 0 {
            return;
        }
        let Some(set) = s.membership.set().and_then(|v| self.pool.get(v)) else { return };
        let Some(set_demux) = set.demux() else { return };
        if set_demux.only_waiter_is(solo::this_thread()) {
            return;
        }
        let ready = self.still_ready(s, asked);
        if ready != 0 {
            set_demux.park(demux::Parked { events: ready, token: s.vlsh as u64 });
        }
    }

    /// The VCL part of `epoll_ctl`, with the sessions and the worker locked
    /// (or the calling thread alone): VCL sees the session's vlsh as event
    /// data, the application's data is kept in the session (see `demux`),
    /// and the set's membership changes with VCL's.
    ///
    /// # Safety
    /// `sh` and `ep_sh` are handles of the calling thread's worker.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    unsafe fn epoll_ctl_in_vcl(
        &'static self,
        ep_vlsh: Vlsh,
        ep_sh: Sh,
        op: i32,
        s: &VlsSession,
        sh: Sh,
        no_event: bool,
        app_events: u32,
        app_data: u64,
    ) -> i32 {
        let mut token_ev = libc::epoll_event { events: app_events, u64: s.vlsh as u64 };
        let ev_ptr = if no_event { std::ptr::null_mut() } else { &mut token_ev as *mut libc::epoll_event };
        if op != libc::EPOLL_CTL_DEL {
            // Removing a listener from a set changes nothing (nginx adds and
            // removes its listeners all the time).
            self.shared_listener_in_use(s.shared.load(Ordering::Acquire), sh);
        }
        // SAFETY: `ev_ptr` is null or `token_ev`; handles per the contract.
        let rv = unsafe { self.vcl.epoll_ctl(ep_sh, op, sh, ev_ptr) };
        // The membership changes under the same locks: an epoll wait of
        // another thread must never see the session in VCL's set but not yet
        // in ours (it would drop the event VCL generates for a session added
        // with data waiting, and an edge-triggered session is not reported
        // again).
        if rv == 0 {
            match op {
                libc::EPOLL_CTL_ADD | libc::EPOLL_CTL_MOD => s.membership.join(ep_vlsh, app_events, app_data),
                libc::EPOLL_CTL_DEL => s.membership.leave(ep_vlsh),
                _ => {}
            }
        }
        rv
    }

    /// `vls_epoll_wait`: parked events of this set first, then VCL's,
    /// demultiplexed (see [`demux`]). `wait` in milliseconds as for VCL (0:
    /// no wait, negative: no limit, -2: LDP's drain-only call).
    ///
    /// # Safety
    /// `evs` valid for `max` events.
    pub unsafe fn epoll_wait(
        &'static self,
        ep_vlsh: Vlsh,
        evs: *mut libc::epoll_event,
        max: i32,
        wait: f64,
    ) -> i32 {
        // SAFETY: forwarded contract.
        match unsafe { self.epoll_wait_lock_free(ep_vlsh, evs, max, wait) } {
            Some(rv) => rv,
            // SAFETY: forwarded contract.
            None => unsafe { self.epoll_wait_with_locks(ep_vlsh, evs, max, wait) },
        }
    }

    /// `vls_epoll_wait` once [`Self::epoll_wait_lock_free`] declined.
    ///
    /// # Safety
    /// `evs` valid for `max` events.
    #[inline(never)]
    pub unsafe fn epoll_wait_with_locks(
        &'static self,
        ep_vlsh: Vlsh,
        evs: *mut libc::epoll_event,
        max: i32,
        wait: f64,
    ) -> i32 {
        // A connection held only as a FIFO subscriber: VPP does not wake this
        // worker for its data, so a wait looks at it in slices.
        if wait != 0.0
            && wait as i32 != DRAIN_ONLY
            && !self.mt_workers.load(Ordering::Relaxed)
            && self.polls_subscriber_copies()
        {
            // SAFETY: forwarded contract.
            return unsafe { self.epoll_wait_in_slices(ep_vlsh, evs, max, wait) };
        }
        // SAFETY: forwarded contract.
        unsafe { self.epoll_wait_dispatch(ep_vlsh, evs, max, wait) }
    }

    /// A wait of `wait` milliseconds (negative: no limit) as waits of at
    /// most `SUBSCRIBER_POLL`, each of which looks at the connections this
    /// process holds only as a FIFO subscriber (see `fork_hooks::Watched`);
    /// the rest in one wait once there are none.
    ///
    /// # Safety
    /// `evs` valid for `max` events.
    #[cold]
    unsafe fn epoll_wait_in_slices(
        &'static self,
        ep_vlsh: Vlsh,
        evs: *mut libc::epoll_event,
        max: i32,
        wait: f64,
    ) -> i32 {
        let slice_ms = super::fork_hooks::SUBSCRIBER_POLL.as_secs_f64() * 1e3;
        let deadline = (wait > 0.0).then(|| Instant::now() + Duration::from_secs_f64(wait / 1e3));
        loop {
            let left_ms = match deadline {
                None => -1.0,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return 0;
                    }
                    left.as_secs_f64() * 1e3
                }
            };
            if !self.polls_subscriber_copies() {
                // SAFETY: forwarded contract.
                return unsafe { self.epoll_wait_dispatch(ep_vlsh, evs, max, left_ms) };
            }
            let slice = if left_ms < 0.0 { slice_ms } else { left_ms.min(slice_ms) };
            // SAFETY: forwarded contract.
            let n = unsafe { self.epoll_wait_dispatch(ep_vlsh, evs, max, slice) };
            if n != 0 {
                return n;
            }
        }
    }

    /// [`Self::epoll_wait_with_locks`] by mode.
    ///
    /// # Safety
    /// `evs` valid for `max` events.
    unsafe fn epoll_wait_dispatch(
        &'static self,
        ep_vlsh: Vlsh,
        evs: *mut libc::epoll_event,
        max: i32,
        wait: f64,
    ) -> i32 {
        // Per-thread workers: the set's members come to the waiting thread.
        if self.mt_workers.load(Ordering::Relaxed) && wait as i32 != DRAIN_ONLY {
            // SAFETY: forwarded contract.
            return unsafe { self.epoll_wait_gathering(ep_vlsh, evs, max, wait) };
        }
        // (Mode 3, also while one thread only: another may arrive while this
        // one would wait inside VCL without locks. Not in a forked child,
        // whose sets' wake fds were made for its parent's worker.)
        if wait != 0.0
            && wait as i32 != DRAIN_ONLY
            && !self.mt_workers.load(Ordering::Relaxed)
            && self.forks.fork_generation.load(Ordering::Relaxed) == 0
        {
            // SAFETY: forwarded contract.
            return unsafe { self.epoll_wait_outside_locks(ep_vlsh, evs, max, wait) };
        }
        // SAFETY: forwarded contract.
        unsafe { self.epoll_wait_now(ep_vlsh, evs, max, wait) }
    }

    /// `vls_epoll_wait` of the only thread of the process (see `solo`) in
    /// a call VCL does not wait in (LDP's drain, timeout 0), while the set
    /// has nothing parked and no fork-related work is due: no lock, no
    /// queue, VCL's events rewritten in place. `None`: does not apply; the
    /// general path ([`Self::epoll_wait_with_locks`]) then runs. Cannot
    /// panic.
    ///
    /// It keeps what the general path guarantees to a single thread: events
    /// of sessions in another set of the thread (VCL's epoll state is per
    /// worker) are parked on that set; a session VCL reports twice is
    /// returned once; sessions LDP's drain returned are not returned again
    /// by the timeout-0 wait that follows it (see [`Self::epoll_wait_now`]);
    /// the set's wake fd is put into LDP's libc epoll fd, and signalled
    /// when events stay behind. (Events are fresh: VCL checked them just
    /// now and no other thread can have acted on them since.)
    ///
    /// # Safety
    /// `evs` valid for `max` events.
    #[inline(always)]
    pub unsafe fn epoll_wait_lock_free(
        &'static self,
        ep_vlsh: Vlsh,
        evs: *mut libc::epoll_event,
        max: i32,
        wait: f64,
    ) -> Option<i32> {
        // (Exactly LDP's -2: other values the general path interprets.)
        let drain_only = wait == DRAIN_ONLY as f64;
        if (wait != 0.0 && !drain_only) || max <= 0 || evs.is_null() {
            return None;
        }
        let _alone = self.solo.enter()?;
        let set = self.pool.get(ep_vlsh)?;
        let demux = set.demux()?;
        if set.is_closed() || !demux.is_quiet() || self.detaching() || self.fork_work_around_wait(set) {
            return None;
        }
        if self.needs_locks.load(Ordering::Relaxed) {
            // Other threads are registered (this one took the period over):
            // as in the locked path, for their `epoll_ctl`s.
            demux.note_waiter(solo::this_thread());
        }
        let libc_epfd = set.libc_epfd.load(Ordering::Acquire);
        if libc_epfd > 0 {
            demux.install_wake(libc_epfd, || self.vcl.mq_epoll_fd());
        }
        let round = if drain_only { demux.start_drain_alone() } else { 0 };
        let earlier_drain = if wait == 0.0 { demux.take_open_drain_alone() } else { 0 };
        // SAFETY: `evs` is valid for `max` events per the contract.
        let rv = unsafe { self.vcl.epoll_wait(set.sh(), evs, max, wait) };
        if rv < 0 {
            if drain_only {
                demux.end_drain(round, false);
            }
            return Some(rv);
        }
        let n = (rv as usize).min(max as usize);
        // SAFETY: VCL wrote `n` events into `evs` (valid for `max`).
        let out = unsafe { std::slice::from_raw_parts_mut(evs, n) };
        let stamp = self.lock_free_waits.load(Ordering::Relaxed) + 1;
        self.lock_free_waits.store(stamp, Ordering::Relaxed);
        let mut kept = 0;
        for i in 0..n {
            let e = out[i];
            let (events, token) = (e.events, e.u64);
            let Some(s) = i32::try_from(token).ok().and_then(|v| self.pool.get(v)) else { continue };
            if s.membership.set() != Some(ep_vlsh) {
                // Another set's: for the next wait on that set.
                self.park(events, token);
                continue;
            }
            if earlier_drain != 0 {
                if let Some(bits) = s.membership.drained_in(ep_vlsh, earlier_drain) {
                    self.drained_again(events, bits, token);
                    continue;
                }
            }
            if let Some(j) = s.membership.reported_at(stamp) {
                if let Some(first) = out.get_mut(j) {
                    first.events |= self.still_ready(s, events);
                }
                continue;
            }
            out[kept] = libc::epoll_event { events, u64: s.membership.data() };
            s.membership.mark_reported(stamp, kept as u32);
            if round != 0 {
                s.membership.mark_drained(ep_vlsh, round, events);
            }
            kept += 1;
        }
        if drain_only {
            demux.end_drain(round, kept > 0);
        }
        if wait == 0.0 && (kept == 0 || demux.on_timer()) {
            // Woken with nothing to report: VPP may be gone (see `demux`).
            self.watch_for_vpp(demux);
        }
        // As in the general path: events left behind (VCL's unhandled
        // vector after a full batch, or parked here just now) while this
        // returns a short batch must wake the set again.
        if kept < max as usize && (n == max as usize || demux.has_parked()) {
            demux.wake();
        }
        Some(kept as i32)
    }

    /// Mode 3: a wait with a timeout sleeps outside the worker's locks.
    /// VCL's own wait would hold them (it handles the message queue when it
    /// wakes), stopping every other thread's accept, connect, `epoll_ctl`
    /// or blocking I/O until it returned — for ever with no timeout. So:
    /// look without waiting (with the locks), and if nothing is there sleep
    /// on the set's wake fd (VCL's message-queue fd, and what other threads
    /// park for the set) without them; again until events or the timeout.
    /// Sleeps last at most a second, a safety net for a notification some
    /// other VCL call consumed without telling the set.
    ///
    /// # Safety
    /// `evs` valid for `max` events.
    unsafe fn epoll_wait_outside_locks(
        &'static self,
        ep_vlsh: Vlsh,
        evs: *mut libc::epoll_event,
        max: i32,
        wait: f64,
    ) -> i32 {
        const SLICE_MS: i32 = 1000;
        let deadline = (wait > 0.0).then(|| Instant::now() + Duration::from_secs_f64(wait / 1e3));
        loop {
            // SAFETY: forwarded contract.
            let n = unsafe { self.epoll_wait_now(ep_vlsh, evs, max, 0.0) };
            if n != 0 {
                return n;
            }
            let slice_ms = match deadline {
                None => SLICE_MS,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return 0;
                    }
                    (left.as_millis().max(1) as i32).min(SLICE_MS)
                }
            };
            if self.vcl.worker_detached() {
                // VPP is gone: VCL keeps its fd ready (to retry attaching at
                // every wait), so sleeping on it would spin. Sleep the slice
                // out, let VCL retry once, and return what that gives (its
                // close events for the connections VPP held, or none: an
                // unbounded wait returns empty once a second while VPP is
                // gone, so the caller can look around).
                std::thread::sleep(Duration::from_millis(slice_ms as u64));
                // SAFETY: forwarded contract.
                return unsafe { self.epoll_wait_now(ep_vlsh, evs, max, 0.0) };
            }
            let Some(demux) = self.pool.get(ep_vlsh).and_then(|s| s.demux()) else { return EBADFD };
            if !demux.sleep(self.vcl.mq_epoll_fd(), slice_ms) {
                // No fd to sleep on (VCL without use-mq-eventfd).
                std::thread::sleep(Duration::from_millis(slice_ms.min(2) as u64));
            }
        }
    }

    /// [`Self::epoll_wait`] with VCL waiting (if `wait` says so) inside the
    /// call. `wait` -2 (LDP's drain-only call) asks VCL only for the events
    /// it already holds (unhandled and level-triggered ones), without
    /// reading its message queue.
    ///
    /// LDP calls the drain before it looks at its libc epoll fd and, if VCL's
    /// message queue fd is ready there, calls again with timeout 0 within the
    /// *same* `epoll_wait` of the application, writing behind the drain's
    /// events. A session both calls report would reach the application
    /// twice in one `epoll_wait` (it reads it dry on the first, then gets
    /// `EAGAIN`). So the drain leaves a record of what it returned (a drain
    /// round of the set, see `EpollDemux::start_drain`), and the timeout-0
    /// call that follows on the same set returns none of those sessions
    /// again (new bits of theirs are parked for the next wait).
    ///
    /// # Safety
    /// `evs` valid for `max` events.
    pub(super) unsafe fn epoll_wait_now(
        &'static self,
        ep_vlsh: Vlsh,
        evs: *mut libc::epoll_event,
        max: i32,
        wait: f64,
    ) -> i32 {
        // (Declared first: runs last, after every lock below is released.)
        let _after = self.after_wait();
        self.clean_up_exited_children();
        let Some(set) = self.pool.get(ep_vlsh) else { return EBADFD };
        let Some(demux) = set.demux() else { return EBADFD };
        if max <= 0 {
            return EINVAL;
        }
        demux.note_waiter(solo::this_thread());
        let drain_only = wait as i32 == DRAIN_ONLY;
        // SAFETY: `evs` is valid for `max` events per the contract.
        let out = unsafe { std::slice::from_raw_parts_mut(evs, max as usize) };
        // Waiters in LDP sleep on the set's libc epoll fd: make sure events
        // parked for this set (and VCL activity) wake it.
        let libc_epfd = set.libc_epfd.load(Ordering::Acquire);
        if libc_epfd > 0 {
            demux.install_wake(libc_epfd, || self.vcl.mq_epoll_fd());
        }
        // Connections this process just took over from a relative.
        self.notice_handovers();
        // LDP's drain starts a round; the timeout-0 wait that may follow in
        // the same `epoll_wait` of the application skips what it reported.
        let drain_round = if drain_only { demux.start_drain() } else { 0 };
        let earlier_drain = if wait == 0.0 { demux.take_open_drain() } else { 0 };
        let mut reported = Reported { drain_round, earlier_drain, ..Reported::default() };
        let parked = demux.take(out.len());
        let mut n = 0;
        let mut ran = false;
        // VCL filled the room it was given: it may hold more events (in its
        // unhandled vector), which no fd signals.
        let mut vcl_full = false;
        let mut body = |ep_sh: Sh, alone: bool| {
            ran = true;
            // A forked child waiting on a set it inherited: the shared
            // listeners in it start listening on this process's worker.
            self.shared_listeners_in_set(ep_vlsh, set);
            // Parked events first, minus what is no longer true: the owner
            // may have read the data since (a stale "readable" would make
            // the application read EAGAIN, which many count as an error).
            for p in &parked {
                n += self.deliver_once(ep_vlsh, p.events, p.token, out, n, &mut reported, false);
            }
            if n == out.len() {
                return 0;
            }
            if self.detaching() {
                return 0;
            }
            let vcl_wait = if n > 0 && wait >= 0.0 { 0.0 } else { wait };
            let rest_len = out.len() - n;
            let rv = self.sleeping_in_vcl(vcl_wait != 0.0 && !drain_only, || {
                // SAFETY: `out[n..]` is valid for `rest_len` events.
                unsafe { self.vcl.epoll_wait(ep_sh, out[n..].as_mut_ptr(), rest_len as i32, vcl_wait) }
            });
            if rv < 0 {
                return rv;
            }
            vcl_full = rv as usize == rest_len;
            // VCL checked these events against the FIFOs just now. Nothing
            // has made them stale since when no other thread is around, or
            // when VCL did not sleep (a sleep lets the worker's locks go):
            // another thread's call that could (a read that may empty a
            // FIFO, an `epoll_ctl`, a close) takes the locks this call
            // holds. Left out: another thread's write filling a TX FIFO, or
            // its read on the same session; the kernel's epoll does not
            // guard against those either.
            let fresh = alone || vcl_wait == 0.0 || drain_only;
            // Demultiplex in place: keep this set's events, park the
            // others'. A session reported twice is returned once.
            let mut kept = 0;
            for i in 0..rv as usize {
                let e = out[n + i];
                kept += self.deliver_once(ep_vlsh, e.events, e.u64, out, n + kept, &mut reported, fresh);
            }
            kept as i32
        };
        // The only thread of the process, in a call VCL does not wait in:
        // nothing to lock (see `solo`).
        let alone = if wait == 0.0 || drain_only { self.solo.enter() } else { None };
        let rv = match alone {
            Some(_alone) if set.is_closed() => EBADFD,
            Some(_alone) => body(set.sh(), true),
            None => self.with_session(ep_vlsh, OpKind::MessageQueue, |sh| body(sh, false)),
        };
        if !ran {
            // The set could not be used (closed meanwhile, or it cannot move
            // to this thread's worker): the events taken stay parked for
            // whoever waits on it next.
            for p in parked {
                demux.park(p);
            }
        }
        if drain_only {
            demux.end_drain(drain_round, !reported.this_call.is_empty());
        }
        if rv < 0 {
            return if n > 0 { n as i32 } else { rv };
        }
        let total = (n as i32) + rv;
        if wait == 0.0 && (total == 0 || demux.on_timer()) {
            // Woken with nothing to report: VPP may be gone (see `demux`).
            self.watch_for_vpp(demux);
        }
        // Events may be left behind (VCL's unhandled vector after a full
        // batch, or parked events beyond `max`) while this call returns less
        // than a full buffer, because stale or other sets' events were
        // dropped from it. A waiter that takes a short batch for "all
        // drained" and sleeps on the set's fd until the next edge (an
        // edge-triggered event loop) would never see them: signal the set's
        // wake fd again.
        if total < max && (vcl_full || demux.has_parked()) {
            demux.wake();
        }
        total
    }

    /// Wakes the waiter of epoll set `ep_vlsh` (its wake fd becomes
    /// readable) without an event: the waiter looks at VCL again. For
    /// callers that made VCL read its message queue outside an epoll wait
    /// (a call that waited inside VCL, e.g. a listen waiting for VPP's
    /// reply) on a worker whose sets are watched by an event loop.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub fn epoll_wake(&'static self, ep_vlsh: Vlsh) -> i32 {
        match self.pool.get(ep_vlsh).and_then(|s| s.demux()) {
            Some(d) => {
                d.wake();
                0
            }
            None => EBADFD,
        }
    }

    /// Runs `f` (a VCL call that may wait for VPP without calling the wait
    /// hooks) as a sleep of the session-pool read lock, when `may_wait` and
    /// this thread holds it: also while it is the process's only thread (a
    /// second one arriving during the wait must not wait for its end to
    /// create or close a session).
    pub(super) fn sleeping_in_vcl<T>(&'static self, may_wait: bool, f: impl FnOnce() -> T) -> T {
        if may_wait && !self.mt_workers.load(Ordering::Relaxed) {
            self.mt_locks().sleeping_in_vcl(f)
        } else {
            f()
        }
    }

    /// `vls_set_libc_epfd`.
    pub fn set_libc_epfd(&'static self, ep_vlsh: Vlsh, fd: i32) -> i32 {
        let _ = self.detect_thread();
        match self.pool.get(ep_vlsh) {
            Some(s) if !s.lock().closed() => {
                s.libc_epfd.store(fd, Ordering::Release);
                0
            }
            _ => EBADFD,
        }
    }

    /// The kernel epoll descriptors LDP paired with live epoll sessions.
    pub fn libc_epfds(&self) -> Vec<i32> {
        self.pool
            .live_sessions()
            .filter(|s| s.is_epoll())
            .map(|s| s.libc_epfd.load(Ordering::Acquire))
            .filter(|&fd| fd > 0)
            .collect()
    }

    /// `vls_get_libc_epfd`: read without the session lock (another thread
    /// may be blocked on the session while this one closes it).
    pub fn get_libc_epfd(&'static self, ep_vlsh: Vlsh) -> i32 {
        let _ = self.detect_thread();
        self.pool.get(ep_vlsh).map(|s| s.libc_epfd.load(Ordering::Acquire)).unwrap_or(EBADFD)
    }
}
