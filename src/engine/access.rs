//! How a call of [`Vls`] reaches VCL: the locks it takes and the paths it
//! may take, and the hooks VCL calls around its waits.
//!
//! - **Lock-free** (one thread has used VLS, non-blocking I/O; see
//!   [`super::solo`]): no lock at all.
//! - **Fast lane** (mode 2, non-blocking I/O on a session of the caller's
//!   worker): no lock; the worker's gate is entered with two plain stores,
//!   and another thread that wants the worker's sessions takes the gate
//!   with a `membarrier` (see [`super::migrate::Gate`]).
//! - **Direct** (mode 3, non-blocking I/O): the whole session lock and the
//!   session-pool read lock, plus the mq lock for a read that may empty
//!   its FIFO (VCL then writes worker state other threads' epoll waits use).
//! - **Locked** (everything else): the session lock (a read or write only
//!   its half), then the worker-level locks the kind of call needs
//!   ([`super::locks::OpKind`]); with per-thread workers the session first
//!   moves to the calling thread's worker (`moving`, [`super::migrate`]). A call
//!   locks even while its thread is the only one, so a thread arriving
//!   meanwhile never finds the worker in use unlocked.
//! - **Wait hooks**: VCL calls them around each wait inside a call; they
//!   release the worker-level locks for the wait and retake them after,
//!   and wake the epoll sets when VCL kept events for them
//!   ([`super::readiness`]).

use std::ffi::c_void;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::locks::{self, OpKind, OpLocks};
use super::migrate::{Gate, GateGuard};
use super::pool::{Half, VlsSession};
use super::solo::Solo;
use super::{on_worker, traced, Vls, EBADFD};
use crate::handle::Vlsh;
use crate::handle::{Sh, INVALID};
use crate::seam::{Vcl, WaitHooks};

/// Worker-level locks held around one VCL call.
pub(super) enum WorkerLocks {
    /// Mode 3: the shared worker's locks for the kind of operation.
    Shared { _locks: OpLocks },
    /// Per-thread workers: the calling thread's own gate.
    Own { _gate: GateGuard<'static> },
}

impl<V: Vcl> Vls<V> {
    /// Several threads share the process's VCL worker (mode 3): the
    /// worker-level locks are in use.
    #[inline]
    pub(super) fn shares_worker(&self) -> bool {
        self.needs_locks.load(Ordering::Acquire) && !self.mt_workers.load(Ordering::Relaxed)
    }

    /// The calling thread's own gate (per-thread workers).
    pub(super) fn own_gate(&'static self) -> Option<GateGuard<'static>> {
        self.moves.gates.get(self.vcl.worker_index()).map(Gate::enter)
    }

    /// Worker-level locks for `op` on `sh`: in mode 3 the shared worker's
    /// locks, with per-thread workers the thread's own gate.
    ///
    /// Also while the calling thread is the process's only one (outside
    /// the lock-free paths of `super::solo`): a second thread may arrive
    /// at any moment, and must find the worker locked instead of entering
    /// VCL beside a call in progress. (Without the locks, pgbench's second
    /// thread grew VCL's session pool while its first thread was creating a
    /// session: heap corruption, found by dlmalloc later.) The locks are
    /// uncontended then, and the calls that take them are not the hot ones
    /// of a single-threaded program (those take the lock-free paths).
    #[inline(always)]
    pub(super) fn op_locks(&'static self, op: OpKind, sh: Option<Sh>) -> Option<WorkerLocks> {
        if self.mt_workers.load(Ordering::Relaxed) {
            // Always, even while the process has one thread: a second
            // thread may start moving this one's sessions at any moment.
            return self.own_gate().map(|g| WorkerLocks::Own { _gate: g });
        }
        let vcl = &self.vcl;
        // Every look at VCL with a worker-level lock just taken (the
        // `ready` questions included) first ends another thread's
        // single-thread period, if one is on.
        let locked = || self.end_others_solo_period();
        Some(WorkerLocks::Shared {
            _locks: match (op, sh) {
                (OpKind::Read, Some(sh)) => {
                    // Any answer but "0 bytes" means a blocking read returns
                    // at once. A non-blocking read may empty the FIFO and
                    // then touch worker state (see `read_may_empty`): it
                    // takes the mq lock.
                    self.mt_locks()
                        .acquire_then(op, locked, move || !vcl.is_nonblocking(sh) && vcl.read_ready(sh) != 0)
                }
                (OpKind::Write, Some(sh)) => self
                    .mt_locks()
                    .acquire_then(op, locked, move || vcl.is_nonblocking(sh) || vcl.write_ready(sh)),
                _ => self.mt_locks().acquire_then(op, locked, || true),
            },
        })
    }

    /// `sh` is a session of the calling thread's worker.
    #[inline]
    pub(super) fn is_here(&self, sh: Sh) -> bool {
        on_worker(sh, self.vcl.worker_index())
    }

    /// Runs `f` on the VCL handle of `vlsh` with the session and the
    /// worker-level locks for `op` held — or, for a non-blocking read or
    /// write while one thread only uses VLS, with no lock at all (see
    /// [`super::solo`]).
    #[inline(always)]
    pub(super) fn with_session(&'static self, vlsh: Vlsh, op: OpKind, f: impl FnOnce(Sh) -> i32) -> i32 {
        self.with_session_io(vlsh, op, usize::MAX, f)
    }

    /// [`Self::with_session`] for a call that reads at most `read_len`
    /// bytes (`usize::MAX`: unknown, or not a read).
    #[inline(always)]
    pub(super) fn with_session_io(
        &'static self,
        vlsh: Vlsh,
        op: OpKind,
        read_len: usize,
        f: impl FnOnce(Sh) -> i32,
    ) -> i32 {
        let f = match op {
            OpKind::Read | OpKind::Write => match self.lock_free(vlsh, op, f) {
                Ok(rv) => return rv,
                Err(f) => f,
            },
            _ => f,
        };
        self.with_session_after_lock_free(vlsh, op, read_len, f)
    }

    /// [`Self::with_session_io`] once the lock-free path declined (or does
    /// not apply).
    #[inline(always)]
    pub(super) fn with_session_after_lock_free(
        &'static self,
        vlsh: Vlsh,
        op: OpKind,
        read_len: usize,
        f: impl FnOnce(Sh) -> i32,
    ) -> i32 {
        // A connection shared with forked relatives: not while it is being
        // handed over (see `handover_gate`).
        let _relatives = match op {
            OpKind::Read | OpKind::Write => self.shared_fifo_call(vlsh),
            _ => None,
        };
        let f = match op {
            OpKind::Read | OpKind::Write => match self.shared_worker_nonblocking_io(vlsh, op, read_len, f) {
                Ok(rv) => return rv,
                Err(f) => match self.own_worker_nonblocking_io(vlsh, op, f) {
                    Ok(rv) => return rv,
                    Err(f) => f,
                },
            },
            _ => f,
        };
        self.with_session_locked(vlsh, op, f)
    }

    /// A non-blocking read or write with per-thread workers (mode 2) of a
    /// session on the calling thread's worker: in the worker's fast lane
    /// (see [`Gate`]), with no lock. Only this thread uses its worker's
    /// sessions; another thread changes one only after marking it (closed,
    /// or [`VlsSession::in_transit`]) and then taking this worker's gate,
    /// which the lane keeps it from, or asking this thread by RPC, which it
    /// handles only in calls that handle its message queue (never a
    /// non-blocking read or write). So with the lane entered, a session
    /// unmarked and on this worker stays so until the lane is left. Gives
    /// `f` back if it does not apply.
    #[inline(always)]
    pub(super) fn own_worker_nonblocking_io<F: FnOnce(Sh) -> i32>(
        &'static self,
        vlsh: Vlsh,
        op: OpKind,
        f: F,
    ) -> Result<i32, F> {
        if !self.mt_workers.load(Ordering::Relaxed) {
            return Err(f);
        }
        let me = self.vcl.worker_index();
        let (Some(gate), Some(session)) = (self.moves.gates.get(me), self.pool.get(vlsh)) else {
            return Err(f);
        };
        let Some(_lane) = gate.enter_fast() else { return Err(f) };
        // Acquire (all three): what the thread that marked or moved the
        // session did before is visible.
        if session.in_transit.load(Ordering::Acquire) {
            return Err(f);
        }
        if session.is_closed() {
            return Ok(EBADFD);
        }
        let sh = session.sh();
        // The hint is the owner's to change (attribute calls move the
        // session to their thread first).
        if !on_worker(sh, me) || !session.nonblocking_hint() {
            return Err(f);
        }
        Ok(traced(vlsh, op, f(sh)))
    }

    /// A non-blocking read of at most `read_len` bytes of `sh` may empty
    /// its FIFO, after which VCL touches worker state (see
    /// [`locks::MtLocks::nonblocking_io`]). Data only grows meanwhile (the
    /// session is locked), so a FIFO holding more than `read_len` bytes
    /// cannot end empty.
    #[inline(always)]
    pub(super) fn read_may_empty(&self, sh: Sh, read_len: usize) -> bool {
        let ready = self.vcl.read_ready(sh);
        !(ready > 0 && ready as usize > read_len)
    }

    /// A non-blocking read or write of a thread registered in mode 3: the
    /// whole session locked (one call at a time per session), the pool read
    /// lock, the call — [`Self::with_session_locked`] with its choices
    /// already made, for the hot path, and without recording the pool lock
    /// for the wait hooks (a non-blocking call never waits). Gives `f` back
    /// if it does not apply.
    #[inline(always)]
    pub(super) fn shared_worker_nonblocking_io<F: FnOnce(Sh) -> i32>(
        &'static self,
        vlsh: Vlsh,
        op: OpKind,
        read_len: usize,
        f: F,
    ) -> Result<i32, F> {
        if !self.shares_worker() || self.vcl.worker_index() == INVALID {
            return Err(f);
        }
        let Some(session) = self.pool.get(vlsh) else { return Err(f) };
        if !session.nonblocking_hint() {
            return Err(f);
        }
        let locked = session.lock();
        if session.is_closed() {
            return Ok(EBADFD);
        }
        // Attribute changes hold the session lock: with it held, the hint
        // is VCL's flag, and VCL will not wait.
        if !session.nonblocking_hint() {
            drop(locked);
            return Err(f);
        }
        let sh = session.sh();
        // The question is asked with the session-pool lock held (another
        // thread creating a session may move VCL's session pool), and, as
        // in `op_locks`, another thread's single-thread period ends before
        // any look at VCL.
        let _locks = self.mt_locks().nonblocking_io(
            || self.end_others_solo_period(),
            || op == OpKind::Read && self.read_may_empty(sh, read_len),
        );
        Ok(traced(vlsh, op, f(sh)))
    }

    /// Runs `f` (a read or write) on the VCL handle of `vlsh` without any
    /// lock if the calling thread is the only one that has used VLS and the
    /// session is non-blocking (see [`super::solo`]); else gives `f` back. Cannot
    /// panic.
    #[inline(always)]
    pub(super) fn lock_free<F: FnOnce(Sh) -> i32>(&self, vlsh: Vlsh, op: OpKind, f: F) -> Result<i32, F> {
        lock_free_on(self.solo, vlsh, op, f)
    }

    /// `vls_read` after [`lock_free_on`] declined (the lock-free
    /// path is not tried again).
    ///
    /// # Safety
    /// `buf` valid for `n` writable bytes.
    #[inline(always)]
    pub unsafe fn read_with_locks(&'static self, vlsh: Vlsh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session_after_lock_free(vlsh, OpKind::Read, n, |sh| unsafe { self.vcl.read(sh, buf, n) })
    }

    /// `vls_write` after [`lock_free_on`] declined.
    ///
    /// # Safety
    /// `buf` valid for `n` readable bytes.
    #[inline(always)]
    pub unsafe fn write_with_locks(&'static self, vlsh: Vlsh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session_after_lock_free(vlsh, OpKind::Write, usize::MAX, |sh| unsafe {
            self.vcl.write(sh, buf, n)
        })
    }

    /// [`Self::with_session`] with the locks.
    #[inline(never)]
    pub(super) fn with_session_locked(
        &'static self,
        vlsh: Vlsh,
        op: OpKind,
        f: impl FnOnce(Sh) -> i32,
    ) -> i32 {
        if !self.detect_thread() {
            return EBADFD;
        }
        let Some(session) = self.pool.get(vlsh) else { return EBADFD };
        // Reads and writes lock their half of the session (non-blocking ones
        // of a registered thread took a shorter path above); everything else
        // locks the whole session.
        let half = match op {
            OpKind::Read => Some(Half::Rx),
            OpKind::Write => Some(Half::Tx),
            _ => None,
        };
        let per_thread_workers = self.mt_workers.load(Ordering::Relaxed);
        let mut f = f;
        let rv = loop {
            // Per-thread workers: the calling thread's worker, where the
            // session must be; brought there first, with the whole session
            // locked.
            let own_wrk = if per_thread_workers {
                let me = self.vcl.worker_index();
                if !on_worker(session.sh(), me) {
                    let locked = session.lock();
                    if locked.closed() {
                        return EBADFD;
                    }
                    if let Err(e) = self.sh_here(&locked) {
                        return e;
                    }
                }
                Some(me)
            } else {
                None
            };
            let attempt = match half {
                Some(half) => {
                    let _locked = session.lock_io(half);
                    self.run_locked(session, op, own_wrk, f)
                }
                None => {
                    let _locked = session.lock();
                    self.run_locked(session, op, own_wrk, f)
                }
            };
            match attempt {
                Ok(rv) => break rv,
                // Another thread took it away between the move and the
                // lock: bring it back again.
                Err(back) => f = back,
            }
        };
        if WAITED_IN_VCL.replace(false) {
            self.route_events_after_a_wait();
        }
        traced(vlsh, op, rv)
    }

    /// Runs `f` on the session's VCL handle (the session is locked by the
    /// caller) with the worker-level locks for `op`; `EBADFD` if closed.
    /// Gives `f` back (per-thread workers) if the session is not on
    /// `own_wrk`: moved away again (another thread of this process used it
    /// since it was brought here), or its worker is gone (the caller's
    /// move then fails).
    #[inline(always)]
    pub(super) fn run_locked<F: FnOnce(Sh) -> i32>(
        &'static self,
        session: &VlsSession,
        op: OpKind,
        own_wrk: Option<u32>,
        f: F,
    ) -> Result<i32, F> {
        if session.is_closed() {
            return Ok(EBADFD);
        }
        let sh = session.sh();
        if own_wrk.is_some_and(|me| !on_worker(sh, me)) {
            return Err(f);
        }
        // Per-thread workers: the own worker's gate, with the index already
        // at hand (saves `op_locks` a second thread-local lookup).
        let _g = match own_wrk {
            Some(me) => self.moves.gates.get(me).map(|g| WorkerLocks::Own { _gate: g.enter() }),
            None => self.op_locks(op, Some(sh)),
        };
        Ok(f(sh))
    }
}

impl<V: Vcl> Vls<V> {
    /// `vls_epoll_wait` with per-thread workers (not LDP's drain-only call):
    /// before each look, the set and its members come to this thread's
    /// worker ([`Self::gather_members`]); the wait inside VCL lasts at most
    /// [`GATHER_SLICE_MS`] (1 ms while a member is in use elsewhere) before
    /// it looks again, so a member another thread took away during the
    /// wait comes back within that time. `wait` in milliseconds.
    ///
    /// # Safety
    /// `evs` valid for `max` events.
    pub(super) unsafe fn epoll_wait_gathering(
        &'static self,
        ep_vlsh: Vlsh,
        evs: *mut libc::epoll_event,
        max: i32,
        wait: f64,
    ) -> i32 {
        if !self.detect_thread() {
            return EBADFD;
        }
        let deadline = (wait > 0.0).then(|| Instant::now() + Duration::from_secs_f64(wait / 1e3));
        loop {
            let busy = self.gather_members(ep_vlsh);
            let slice = if busy > 0 { 1.0 } else { GATHER_SLICE_MS };
            let this_wait = match deadline {
                _ if wait == 0.0 => 0.0,
                None => slice,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now()).as_secs_f64() * 1e3;
                    left.min(slice)
                }
            };
            // SAFETY: forwarded contract.
            let n = unsafe { self.epoll_wait_now(ep_vlsh, evs, max, this_wait) };
            if n != 0 || wait == 0.0 || deadline.is_some_and(|d| Instant::now() >= d) {
                return n;
            }
        }
    }
}

/// Longest wait inside VCL of one look of a mode-2 epoll wait (ms).
pub(super) const GATHER_SLICE_MS: f64 = 20.0;

impl<V: Vcl> Vls<V> {
    /// A thread leaves a wait inside VCL (see `pre_wait`).
    fn leave_wait(&self) {
        let _ = self.waiting_in_vcl.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// VCL's detach: waits until no thread waits inside VCL (bounded: a
    /// wait that never ends must not hang the detaching thread too).
    fn wait_for_waits_to_end(&self) {
        let deadline = Instant::now() + DETACH_WAITS_LIMIT;
        while self.waiting_in_vcl.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                tracing::warn!(
                    waiting = self.waiting_in_vcl.load(Ordering::SeqCst),
                    "VPP is gone and threads still wait inside VCL; detaching anyway"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// How long VCL's detach waits for other threads' waits to end (each ends
/// within 200 ms).
const DETACH_WAITS_LIMIT: Duration = Duration::from_secs(3);

std::thread_local! {
    /// The calling thread's current call waited inside VCL (set by the
    /// post-wait hook; see [`Vls::route_events_after_a_wait`]).
    static WAITED_IN_VCL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl<V: Vcl> WaitHooks for Vls<V> {
    fn pre_wait(&'static self, sh: Sh) {
        // VPP is gone (see `post_wait`): a wait on a session's events would
        // loop on the message queue VCL is dropping. Make VCL return (the
        // session is closed for the application; VCL skips the post-wait
        // call). The accept wait (no session) never gets here detached: VLS
        // waits for blocking accepts itself (`Vls::accept`).
        if sh != INVALID && self.vcl.worker_detached() {
            self.vcl.set_app_closing(sh);
            return;
        }
        let needs_locks = self.needs_locks.load(Ordering::Acquire);
        if needs_locks {
            // A session another thread is closing: make VCL return (it then
            // skips the post-wait call).
            if let Some(s) = self.pool.vlsh_of(sh).and_then(|v| self.pool.get(v)) {
                if s.app_closed.load(Ordering::Acquire) {
                    self.vcl.set_app_closing(sh);
                    return;
                }
            }
        }
        self.waiting_in_vcl.fetch_add(1, Ordering::SeqCst);
        if sh == INVALID && !self.mt_workers.load(Ordering::Relaxed) && self.vcl.worker_detached() {
            // VCL's detach (see `post_wait`), before it releases the locks.
            self.detaching.store(true, Ordering::SeqCst);
        }
        if !self.mt_workers.load(Ordering::Relaxed) {
            if needs_locks {
                // Still holding the worker's locks: events VCL read from the
                // message queue in this call (before waiting again) wait in
                // its unhandled vector for an epoll wait, while the threads
                // that would make it sleep on the notification this call
                // consumed. Wake them (their wait runs once this one
                // releases the mq lock).
                // (Read only with the worker's state stable: another thread
                // may be growing that vector otherwise.)
                if locks::holds_worker_state() && self.vcl.unhandled_events() > 0 {
                    self.wake_every_set();
                }
            }
            // Whatever this call holds (also a call that locked while it
            // was the only thread, see `op_locks`).
            self.mt_locks().before_wait();
        }
    }

    /// Also runs in the middle of VCL's detach, when VPP is gone: the
    /// detaching thread (in an epoll wait) calls the hooks around a one
    /// second pause meant for other threads to leave their waits, then
    /// drops the worker's message queue and makes the pipe that later waits
    /// retry attaching on.
    /// - Until that pipe exists, an epoll wait, select or poll of another
    ///   thread would already retry, reading and writing descriptor 0 for
    ///   the pipe: [`Vls::detaching`] keeps such calls out of VCL.
    /// - A thread still looping on the queue when it is dropped, or coming
    ///   back from its wait to handle it, crashes (null queue). Waits on a
    ///   session end within a millisecond of the detach (the session is no
    ///   longer open), and `pre_wait` turns later ones away; as a further
    ///   guard (no test shows it needed), the detaching thread retakes the
    ///   worker's locks only once no other thread waits inside VCL. Other
    ///   threads count themselves out only once they hold the locks again,
    ///   so the detacher cannot slip in between.
    fn post_wait(&'static self, sh: Sh) {
        WAITED_IN_VCL.set(true);
        if self.mt_workers.load(Ordering::Relaxed) {
            self.leave_wait();
            return;
        }
        if sh == INVALID && self.vcl.worker_detached() {
            self.leave_wait();
            // As a sleep of the session-pool read lock this call may still
            // hold: a writer queued behind it must not keep the waiters
            // (readers retaking that lock) from ending their waits.
            self.mt_locks().sleeping_in_vcl(|| self.wait_for_waits_to_end());
            self.mt_locks().after_wait();
            self.end_others_solo_period();
            self.detaching.store(false, Ordering::SeqCst);
            return;
        }
        // (No thread took the single-thread period over during the wait:
        // this one counts in `waiting_in_vcl` until `leave_wait`, and ended
        // any earlier period when it took the locks before the wait.)
        self.mt_locks().after_wait();
        self.leave_wait();
    }
}

/// [`Vls::lock_free`] given the VLS's `solo` state directly: runs `f` (a
/// read or write) on the VCL handle of `vlsh` without any lock if the
/// calling thread is the only one that has used VLS and the session may
/// take the lock-free path (see [`super::solo`]); else gives `f` back
/// (the caller then takes the locked path, `Vls::read_with_locks` or
/// `Vls::write_with_locks`). With the process-wide VLS's state, a static,
/// the fast path loads no pointer to it. Cannot panic.
#[inline(always)]
pub fn lock_free_on<F: FnOnce(Sh) -> i32>(solo: &Solo, vlsh: Vlsh, op: OpKind, f: F) -> Result<i32, F> {
    // A closed or unknown session goes the locked way, which says so.
    let Some((_call, sh)) = solo.enter_session(vlsh) else { return Err(f) };
    Ok(traced(vlsh, op, f(sh)))
}
