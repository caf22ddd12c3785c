//! Per-epoll-set event demultiplexing for threads sharing one VCL worker.
//!
//! VCL keeps epoll state per *worker*, not per epoll set: `epoll_wait` on
//! set A may return events of sessions registered in set B (both sets
//! belong to the one worker all threads share in mode 3). VLS fixes that:
//!
//! - every session added to a set is registered in VCL with a token (its
//!   vlsh) instead of the application's data; the session remembers its set
//!   and the application's data ([`Membership`]);
//! - after `vppcom_epoll_wait` on A, each event is mapped back through its
//!   token: events of A are returned with the application's data, events of
//!   another set are *parked* on that set's queue and the set is woken;
//!   events of sessions that left every set are dropped;
//! - `epoll_wait` on a set returns its parked events first.
//!
//! Waking a set: LDP (eventfd mode) sleeps in the kernel on a libc epoll fd
//! per set, and takes an event whose `data.fd` equals VCL's message-queue
//! epoll fd as "VCL has events for this set", then calls `vls_epoll_wait`.
//! LDP adds that mq fd to only one set's libc epoll fd per VCL worker. VLS
//! gives every set a wake fd of its own ([`WakeFds`]): an epoll fd holding
//! VCL's mq epoll fd and an eventfd of the set, added to the set's libc
//! epoll fd with `data.fd` = the mq epoll fd (in the set that already holds
//! the mq fd, the wake fd replaces it, so no set reports two such events).
//! Parking an event writes the set's eventfd.
//!
//! When VPP is gone, VCL keeps its mq epoll fd readable (a pipe it signals
//! so that every wait retries attaching), which would make every waiter on
//! a wake fd return at once, empty, for ever: a program spinning at 100 %
//! of a core. While VCL is detached, a set's wake fd therefore watches a
//! timer ticking once a second instead of the mq fd ([`EpollDemux::vpp_gone`],
//! [`EpollDemux::vpp_back`]): waiters sleep as they asked, and still call
//! VCL (which retries attaching) once a second.
//!
//! All fd operations are raw syscalls, so they reach the kernel even when
//! LDP interposes the libc functions.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::handle::Vlsh;

/// Which epoll set a session is in, and the application's event data.
/// Written under the session lock (epoll_ctl); read lock-free by waiters.
pub struct Membership {
    set: AtomicI32,
    data: AtomicU64,
    /// The event bits the application asked for (`EPOLLIN`, `EPOLLOUT`, …).
    interest: AtomicU32,
    /// The drain round (see [`EpollDemux::start_drain`]) that last reported
    /// the session, tagged with the set's vlsh; 0 if none.
    drained_in: AtomicU64,
    /// The event bits that drain round reported.
    drained_events: AtomicU32,
    /// The lock-free wait (see `Vls::epoll_wait_lock_free`) that last
    /// reported the session (its stamp, never 0 for a wait), and where in
    /// its output.
    reported_in: AtomicU64,
    reported_at: AtomicU32,
}

impl Default for Membership {
    fn default() -> Self {
        Membership {
            set: AtomicI32::new(-1),
            data: AtomicU64::new(0),
            interest: AtomicU32::new(0),
            drained_in: AtomicU64::new(0),
            drained_events: AtomicU32::new(0),
            reported_in: AtomicU64::new(0),
            reported_at: AtomicU32::new(0),
        }
    }
}

/// A drain round of set `set`, as one number (non-zero).
fn round_tag(set: Vlsh, round: u64) -> u64 {
    ((set as u32 as u64) << 40) | (round & ((1 << 40) - 1)) | (1 << 63)
}

impl Membership {
    /// Forgets the set (the session object is being reused).
    pub fn reset(&self) {
        self.set.store(-1, Ordering::Release);
        self.data.store(0, Ordering::Release);
        self.drained_in.store(0, Ordering::Relaxed);
        self.reported_in.store(0, Ordering::Relaxed);
    }

    /// Records that the lock-free wait with stamp `wait` reported the
    /// session at index `at` of its output.
    #[inline(always)]
    pub fn mark_reported(&self, wait: u64, at: u32) {
        self.reported_in.store(wait, Ordering::Relaxed);
        self.reported_at.store(at, Ordering::Relaxed);
    }

    /// Where the lock-free wait with stamp `wait` reported the session, if
    /// it did.
    #[inline(always)]
    pub fn reported_at(&self, wait: u64) -> Option<usize> {
        (self.reported_in.load(Ordering::Relaxed) == wait)
            .then(|| self.reported_at.load(Ordering::Relaxed) as usize)
    }

    /// Records that drain round `round` of set `set` reported the session
    /// with event bits `events`.
    pub fn mark_drained(&self, set: Vlsh, round: u64, events: u32) {
        self.drained_events.store(events, Ordering::Relaxed);
        self.drained_in.store(round_tag(set, round), Ordering::Relaxed);
    }

    /// The event bits with which drain round `round` of set `set` reported
    /// the session, if it did.
    pub fn drained_in(&self, set: Vlsh, round: u64) -> Option<u32> {
        (round != 0 && self.drained_in.load(Ordering::Relaxed) == round_tag(set, round))
            .then(|| self.drained_events.load(Ordering::Relaxed))
    }

    /// Records that the session joined `set` asking for event bits
    /// `interest`, with application data `data`.
    pub fn join(&self, set: Vlsh, interest: u32, data: u64) {
        self.interest.store(interest, Ordering::Release);
        self.data.store(data, Ordering::Release);
        self.set.store(set, Ordering::Release);
    }

    /// Records that the session left `set` (no-op if it is in another).
    pub fn leave(&self, set: Vlsh) {
        let _ = self.set.compare_exchange(set, -1, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The event bits the application asked for in its set.
    pub fn interest(&self) -> u32 {
        self.interest.load(Ordering::Acquire)
    }

    /// The set the session is in, if any.
    pub fn set(&self) -> Option<Vlsh> {
        let s = self.set.load(Ordering::Acquire);
        (s >= 0).then_some(s)
    }

    /// The application's data for the session's events.
    pub fn data(&self) -> u64 {
        self.data.load(Ordering::Acquire)
    }
}

/// An event waiting for its set's owner: (event bits, session token).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Parked {
    /// `EPOLL*` bits.
    pub events: u32,
    /// The session's vlsh.
    pub token: u64,
}

/// The kernel fds that wake a set's waiter (see the module docs).
#[derive(Debug)]
pub struct WakeFds {
    /// eventfd written when events are parked for the set.
    pub eventfd: i32,
    /// epoll fd over `eventfd` and VCL's mq epoll fd (or, while VPP is
    /// gone, `timer` in its place).
    pub epfd: i32,
    /// The once-a-second timerfd watched while VPP is gone; -1 otherwise.
    pub timer: i32,
}

/// Demultiplexing state of one epoll set.
#[derive(Default)]
pub struct EpollDemux {
    parked: Mutex<Vec<Parked>>,
    /// Set when `parked` may be non-empty (cheap check on the fast path).
    has_parked: AtomicBool,
    /// Set by [`EpollDemux::wake`]: the wake fd was signalled with nothing
    /// parked, and must be drained by the next [`EpollDemux::take`].
    woken: AtomicBool,
    wake: Mutex<Option<WakeFds>>,
    /// The wake fd is installed in the set's libc epoll fd.
    wake_installed: AtomicBool,
    /// Drain rounds started on this set (LDP's drain-only waits).
    drains: AtomicU64,
    /// The last drain round, while the timeout-0 wait LDP may make next in
    /// the same `epoll_wait` has not come; 0 otherwise.
    open_drain: AtomicU64,
    /// The wake fd watches the timer, not VCL's mq fd (VPP is gone).
    on_timer: AtomicBool,
    /// The thread that waits on this set (an identity from
    /// `solo::this_thread`): 0 before the first wait, [`MANY_WAITERS`] once
    /// a second thread has waited on it. Set at the start of every wait,
    /// before VCL is called, so an `epoll_ctl` made after that wait's VCL
    /// call (both under the worker's locks) sees it.
    waiter: AtomicUsize,
}

/// [`EpollDemux::waiter`] once more than one thread has waited on the set.
const MANY_WAITERS: usize = usize::MAX;

impl EpollDemux {
    /// Records `me` (the calling thread) as a waiter of this set.
    #[inline]
    pub fn note_waiter(&self, me: usize) {
        let w = self.waiter.load(Ordering::Acquire);
        if w == me || w == MANY_WAITERS {
            return;
        }
        if w == 0 && self.waiter.compare_exchange(0, me, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return;
        }
        self.waiter.store(MANY_WAITERS, Ordering::Release);
    }

    /// Only `me` has ever waited on this set: no other thread can be
    /// asleep on it.
    #[inline]
    pub fn only_waiter_is(&self, me: usize) -> bool {
        self.waiter.load(Ordering::Acquire) == me
    }

    /// Parks an event for this set (merging with one already parked for the
    /// same session) and wakes the set's waiter.
    pub fn park(&self, ev: Parked) {
        {
            let mut p = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
            match p.iter_mut().find(|e| e.token == ev.token) {
                Some(e) => e.events |= ev.events,
                None => p.push(ev),
            }
            self.has_parked.store(true, Ordering::Release);
        }
        if let Some(w) = self.wake.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            sys::eventfd_signal(w.eventfd);
        }
    }

    /// Starts a drain round (LDP's drain-only wait, see
    /// `Vls::epoll_wait_now`): the sessions it reports are marked with it
    /// ([`Membership::mark_drained`]). Returns the round (non-zero).
    pub fn start_drain(&self) -> u64 {
        self.open_drain.store(0, Ordering::Relaxed);
        self.drains.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Ends drain round `round`: `reported` says whether it reported any
    /// session, which the next timeout-0 wait then skips.
    pub fn end_drain(&self, round: u64, reported: bool) {
        self.open_drain.store(if reported { round } else { 0 }, Ordering::Relaxed);
    }

    /// The drain round whose sessions a timeout-0 wait must not report
    /// again (0: none), consumed by the call.
    pub fn take_open_drain(&self) -> u64 {
        if self.open_drain.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.open_drain.swap(0, Ordering::Relaxed)
    }

    /// Wakes the set's waiter without parking anything (it will look at
    /// VCL's events).
    pub fn wake(&self) {
        if let Some(w) = self.wake.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            self.woken.store(true, Ordering::Release);
            sys::eventfd_signal(w.eventfd);
        }
    }

    /// Takes up to `max` parked events.
    pub fn take(&self, max: usize) -> Vec<Parked> {
        // A wake without parked events: drain it first (a park after this
        // is seen below, or signals again).
        if self.woken.load(Ordering::Acquire) && self.woken.swap(false, Ordering::AcqRel) {
            if let Some(w) = self.wake.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                sys::eventfd_drain(w.eventfd);
            }
        }
        if !self.has_parked.load(Ordering::Acquire) || max == 0 {
            return Vec::new();
        }
        let mut p = self.parked.lock().unwrap_or_else(PoisonError::into_inner);
        let n = max.min(p.len());
        let out: Vec<Parked> = p.drain(..n).collect();
        if p.is_empty() {
            self.has_parked.store(false, Ordering::Release);
            if let Some(w) = self.wake.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
                sys::eventfd_drain(w.eventfd);
            }
        }
        out
    }

    /// Nothing parked and no wake to drain: [`Self::take`] would do
    /// nothing (what the lock-free wait requires).
    #[inline(always)]
    pub fn is_quiet(&self) -> bool {
        !self.has_parked.load(Ordering::Acquire) && !self.woken.load(Ordering::Acquire)
    }

    /// Starts a drain round when no other thread uses VLS (see
    /// [`Self::start_drain`]): the same without an atomic
    /// read-modify-write.
    #[inline(always)]
    pub fn start_drain_alone(&self) -> u64 {
        self.open_drain.store(0, Ordering::Relaxed);
        let round = self.drains.load(Ordering::Relaxed) + 1;
        self.drains.store(round, Ordering::Relaxed);
        round
    }

    /// [`Self::take_open_drain`] when no other thread uses VLS.
    #[inline(always)]
    pub fn take_open_drain_alone(&self) -> u64 {
        let round = self.open_drain.load(Ordering::Relaxed);
        if round != 0 {
            self.open_drain.store(0, Ordering::Relaxed);
        }
        round
    }

    /// Events may be parked for the set.
    pub fn has_parked(&self) -> bool {
        self.has_parked.load(Ordering::Acquire)
    }

    #[cfg(test)]
    /// Number of parked events (for tests).
    pub fn parked_len(&self) -> usize {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Installs this set's wake fd into `libc_epfd` (once), taking the place
    /// of VCL's mq epoll fd (`mq_fd()`, asked only the first time) there if
    /// LDP put it in.
    #[inline(always)]
    pub fn install_wake(&self, libc_epfd: i32, mq_fd: impl FnOnce() -> i32) {
        // (Inline: every wait of an LDP program asks, once it is done.)
        if self.wake_installed.load(Ordering::Acquire) || libc_epfd <= 0 {
            return;
        }
        self.install_wake_now(libc_epfd, mq_fd());
    }

    #[cold]
    fn install_wake_now(&self, libc_epfd: i32, mq_fd: i32) {
        if mq_fd < 0 {
            return;
        }
        let mut wake = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
        if self.wake_installed.load(Ordering::Acquire) {
            return;
        }
        let Some(epfd) = Self::wake_fds_in(&mut wake, mq_fd) else {
            self.wake_installed.store(true, Ordering::Release);
            return;
        };
        // LDP tagged the mq fd (if it is here) with data.fd = mq_fd; the
        // wake fd carries the same tag.
        sys::epoll_del(libc_epfd, mq_fd);
        if !sys::epoll_add(libc_epfd, epfd, mq_fd as u32 as u64) {
            tracing::warn!(libc_epfd, "cannot add the wake fd to the libc epoll fd");
        }
        self.signal_if_parked(&wake);
        self.wake_installed.store(true, Ordering::Release);
    }

    /// Sleeps until the set may have something to report (events parked
    /// for it, a wake, or activity on VCL's message queue `mq_fd`), or for
    /// `timeout_ms` (-1: no limit); takes no lock of VLS's. False if the set
    /// has no wake fd and none can be made (the caller then waits in
    /// bounded slices).
    pub fn sleep(&self, mq_fd: i32, timeout_ms: i32) -> bool {
        let epfd = {
            let mut wake = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
            match Self::wake_fds_in(&mut wake, mq_fd) {
                Some(epfd) => {
                    self.signal_if_parked(&wake);
                    epfd
                }
                None => return false,
            }
        };
        sys::wait_readable(epfd, timeout_ms);
        true
    }

    /// The set's wake fds, made now if it has none (`mq_fd` < 0: VCL has no
    /// message-queue fd, nothing to make); their epoll fd.
    fn wake_fds_in(wake: &mut Option<WakeFds>, mq_fd: i32) -> Option<i32> {
        if let Some(w) = wake.as_ref() {
            return Some(w.epfd);
        }
        if mq_fd < 0 {
            return None;
        }
        let Some(w) = sys::wake_fds(mq_fd) else {
            tracing::warn!(
                "cannot create the epoll-set wake fd; events of other threads' sets may be delayed"
            );
            return None;
        };
        let epfd = w.epfd;
        *wake = Some(w);
        Some(epfd)
    }

    fn signal_if_parked(&self, wake: &Option<WakeFds>) {
        if let Some(w) = wake.as_ref() {
            if self.has_parked.load(Ordering::Acquire) {
                sys::eventfd_signal(w.eventfd);
            }
        }
    }
}

impl EpollDemux {
    /// VCL lost VPP (see the module docs): the wake fd watches a timer
    /// ticking once a second instead of VCL's mq fd `mq_fd`; called again
    /// while VPP stays gone, takes the ticks seen so far.
    pub fn vpp_gone(&self, mq_fd: i32) {
        let mut wake = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(w) = wake.as_mut() else { return };
        if w.timer >= 0 {
            sys::timer_take(w.timer);
            return;
        }
        let Some(timer) = sys::ticking_timer() else {
            tracing::warn!("cannot create a timer fd: waiters may spin while VPP is gone");
            return;
        };
        sys::epoll_del(w.epfd, mq_fd);
        if !sys::epoll_add(w.epfd, timer, 1) {
            sys::close(timer);
            sys::epoll_add(w.epfd, mq_fd, 1);
            return;
        }
        w.timer = timer;
        self.on_timer.store(true, Ordering::Release);
        tracing::warn!("VPP is gone: waiting for it, retrying once a second");
    }

    /// The wake fd watches the timer (VPP was gone at the last look).
    pub fn on_timer(&self) -> bool {
        self.on_timer.load(Ordering::Acquire)
    }

    /// VCL is attached again: the wake fd watches VCL's mq fd `mq_fd` again.
    pub fn vpp_back(&self, mq_fd: i32) {
        let mut wake = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(w) = wake.as_mut() else { return };
        if w.timer < 0 {
            return;
        }
        sys::epoll_del(w.epfd, w.timer);
        sys::close(w.timer);
        w.timer = -1;
        sys::epoll_add(w.epfd, mq_fd, 1);
        self.on_timer.store(false, Ordering::Release);
        tracing::info!("VPP is back");
    }

    /// One of the demux's locks is held (after a fork: by a thread the
    /// child does not have).
    pub fn is_locked(&self) -> bool {
        matches!(self.parked.try_lock(), Err(std::sync::TryLockError::WouldBlock))
            || matches!(self.wake.try_lock(), Err(std::sync::TryLockError::WouldBlock))
    }

    /// Drops parked events and closes the wake fds (the epoll session is
    /// closed; its object will be reused).
    pub fn reset(&self) {
        self.parked.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.has_parked.store(false, Ordering::Release);
        let mut wake = self.wake.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(w) = wake.take() {
            sys::close(w.epfd);
            sys::close(w.eventfd);
            if w.timer >= 0 {
                sys::close(w.timer);
            }
        }
        self.on_timer.store(false, Ordering::Release);
        self.wake_installed.store(false, Ordering::Release);
    }
}

/// Raw syscalls (LDP interposes the libc wrappers of several of these).
mod sys {
    use super::WakeFds;

    fn ret(r: libc::c_long) -> Option<i32> {
        (r >= 0).then_some(r as i32)
    }

    pub fn close(fd: i32) {
        // SAFETY: closes an fd this module created.
        unsafe { libc::syscall(libc::SYS_close, fd) };
    }

    pub fn eventfd_signal(fd: i32) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to an eventfd.
        unsafe { libc::syscall(libc::SYS_write, fd, &one as *const u64, 8usize) };
    }

    pub fn eventfd_drain(fd: i32) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from a non-blocking eventfd.
        unsafe { libc::syscall(libc::SYS_read, fd, &mut v as *mut u64, 8usize) };
    }

    pub fn epoll_add(epfd: i32, fd: i32, data: u64) -> bool {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: data };
        // SAFETY: valid event pointer for the call.
        unsafe { libc::syscall(libc::SYS_epoll_ctl, epfd, libc::EPOLL_CTL_ADD, fd, &mut ev as *mut _) == 0 }
    }

    pub fn epoll_del(epfd: i32, fd: i32) {
        let mut ev = libc::epoll_event { events: 0, u64: 0 };
        // SAFETY: valid event pointer (ignored by DEL on modern kernels).
        unsafe { libc::syscall(libc::SYS_epoll_ctl, epfd, libc::EPOLL_CTL_DEL, fd, &mut ev as *mut _) };
    }

    /// An eventfd and an epoll fd over it and `mq_fd`.
    pub fn wake_fds(mq_fd: i32) -> Option<WakeFds> {
        // SAFETY: plain syscalls with constant flags.
        let eventfd =
            ret(unsafe { libc::syscall(libc::SYS_eventfd2, 0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
        // SAFETY: as above.
        let Some(epfd) = ret(unsafe { libc::syscall(libc::SYS_epoll_create1, libc::EPOLL_CLOEXEC) }) else {
            close(eventfd);
            return None;
        };
        if !epoll_add(epfd, eventfd, 0) || !epoll_add(epfd, mq_fd, 1) {
            close(epfd);
            close(eventfd);
            return None;
        }
        Some(WakeFds { eventfd, epfd, timer: -1 })
    }

    /// A non-blocking timerfd ticking once a second.
    pub fn ticking_timer() -> Option<i32> {
        // SAFETY: plain syscall with constant flags.
        let fd = ret(unsafe {
            libc::syscall(
                libc::SYS_timerfd_create,
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        })?;
        let second = libc::timespec { tv_sec: 1, tv_nsec: 0 };
        let spec = libc::itimerspec { it_interval: second, it_value: second };
        // SAFETY: valid itimerspec; null old value.
        let r = unsafe {
            libc::syscall(
                libc::SYS_timerfd_settime,
                fd,
                0,
                &spec as *const libc::itimerspec,
                std::ptr::null::<u8>(),
            )
        };
        if r != 0 {
            close(fd);
            return None;
        }
        Some(fd)
    }

    /// Takes the ticks of a timerfd (it is not readable until the next).
    pub fn timer_take(fd: i32) {
        let mut ticks: u64 = 0;
        // SAFETY: reads 8 bytes into a valid u64 from a non-blocking timerfd.
        unsafe { libc::syscall(libc::SYS_read, fd, &mut ticks as *mut u64, 8usize) };
    }

    /// Waits until `fd` (an epoll fd) is readable, at most `timeout_ms`
    /// (-1: no limit); an interrupted wait just returns.
    pub fn wait_readable(fd: i32, timeout_ms: i32) {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; `ppoll` with a null timeout waits without
        // limit (raw syscall: LDP interposes poll).
        unsafe {
            let ts;
            let tsp = if timeout_ms < 0 {
                std::ptr::null()
            } else {
                ts = libc::timespec {
                    tv_sec: (timeout_ms / 1000) as libc::time_t,
                    tv_nsec: ((timeout_ms % 1000) as libc::c_long) * 1_000_000,
                };
                &ts as *const libc::timespec
            };
            libc::syscall(
                libc::SYS_ppoll,
                &mut p as *mut libc::pollfd,
                1usize,
                tsp,
                std::ptr::null::<u8>(),
                0usize,
            );
        }
    }

    #[cfg(test)]
    pub fn readable(fd: i32) -> bool {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn park_merges_per_session_and_take_drains() {
        let d = EpollDemux::default();
        d.park(Parked { events: libc::EPOLLIN as u32, token: 3 });
        d.park(Parked { events: libc::EPOLLOUT as u32, token: 3 });
        d.park(Parked { events: libc::EPOLLIN as u32, token: 4 });
        assert_eq!(d.parked_len(), 2);
        let got = d.take(1);
        assert_eq!(got, vec![Parked { events: (libc::EPOLLIN | libc::EPOLLOUT) as u32, token: 3 }]);
        assert_eq!(d.take(8).len(), 1);
        assert!(d.take(8).is_empty());
    }

    #[test]
    fn wake_fd_replaces_mq_fd_and_signals_parked_events() {
        // Stand-ins: an eventfd as "VCL's mq epoll fd", an epoll fd as the
        // set's libc epoll fd holding it the way LDP adds it.
        // SAFETY: plain syscall.
        let mq = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
        // SAFETY: plain syscall.
        let libc_epfd = unsafe { libc::epoll_create1(0) };
        assert!(sys::epoll_add(libc_epfd, mq, mq as u64));
        let d = EpollDemux::default();
        d.install_wake(libc_epfd, || mq);
        assert!(!sys::readable(libc_epfd));
        d.park(Parked { events: 1, token: 9 });
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: valid buffer of 4 events.
        let n = unsafe { libc::epoll_wait(libc_epfd, ev.as_mut_ptr(), 4, 100) };
        assert_eq!(n, 1, "exactly one event: the wake fd");
        assert_eq!({ ev[0].u64 } as i32, mq, "tagged like LDP's mq fd");
        d.take(8);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::epoll_wait(libc_epfd, ev.as_mut_ptr(), 4, 0) }, 0, "drained");
        // VCL activity on the mq fd also wakes the set.
        sys::eventfd_signal(mq);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::epoll_wait(libc_epfd, ev.as_mut_ptr(), 4, 100) }, 1);
    }

    #[test]
    fn while_vpp_is_gone_the_wake_fd_ticks_instead_of_following_the_mq_fd() {
        // A stand-in for VCL's mq epoll fd that stays readable, as VCL keeps
        // it once it lost VPP.
        // SAFETY: plain syscall.
        let mq = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
        // SAFETY: plain syscall.
        let libc_epfd = unsafe { libc::epoll_create1(0) };
        let d = EpollDemux::default();
        d.install_wake(libc_epfd, || mq);
        sys::eventfd_signal(mq);
        assert!(sys::readable(libc_epfd), "the mq fd wakes the set");
        d.vpp_gone(mq);
        assert!(d.on_timer());
        assert!(!sys::readable(libc_epfd), "a ready mq fd no longer wakes the set");
        let mut ev = [libc::epoll_event { events: 0, u64: 0 }; 4];
        let start = std::time::Instant::now();
        // SAFETY: valid buffer of 4 events.
        assert_eq!(unsafe { libc::epoll_wait(libc_epfd, ev.as_mut_ptr(), 4, 3000) }, 1, "the tick wakes it");
        assert!(start.elapsed() >= std::time::Duration::from_millis(900), "{:?}", start.elapsed());
        d.vpp_gone(mq); // takes the tick
        assert!(!sys::readable(libc_epfd), "the tick was taken");
        // A parked event still wakes the set at once.
        d.park(Parked { events: 1, token: 9 });
        assert!(sys::readable(libc_epfd));
        d.take(8);
        d.vpp_back(mq);
        assert!(!d.on_timer());
        assert!(sys::readable(libc_epfd), "the mq fd wakes the set again");
        d.reset();
    }
}
