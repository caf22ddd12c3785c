//! Threads and the process's lifetime: application create, detection and
//! registration of new threads (a VCL worker of their own in mode 2, the
//! process's worker in mode 3), what happens when a thread ends (its
//! worker's sessions fail with `EBADFD`; the last thread tears the
//! process's worker down) and at process exit (VCL's exit handler does).

use std::ffi::c_char;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::*;

/// How long a worker about to go away (process exit, a thread's worker
/// unregistering) waits for VPP to read the messages it queued. VPP takes
/// the detach or worker removal, sent over the app's socket, before the
/// queues, and crashes on an accepted reply it reads after a detach
/// (`Vcl::let_vpp_read_queues`). VPP normally reads its queues within
/// microseconds; the bound is for a stopped or overloaded VPP.
const LET_VPP_READ_QUEUES: Duration = Duration::from_millis(250);

/// How long a process ending at once (`_exit`) waits for the hand-overs of
/// connections to it to be sent (see `leave_shared_sessions_at_once`).
const EXIT_HANDOVER_LIMIT: Duration = Duration::from_millis(200);

/// See `Vls::worker_teardown`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Teardown {
    /// The process worker is in use.
    Pending,
    /// The last VLS thread ended and unregistered the process worker.
    DoneByLastThread,
    /// The process is exiting; VCL's exit handler cleans up.
    LeftToExit,
    /// A forked child is exiting or execing: its worker left VPP quietly
    /// (`Vcl::worker_leave_quietly`) and VCL forgot the workers, so that
    /// VCL's exit handler, which would send the removal, does nothing.
    LeftQuietly,
}

/// Thread-exit hooks, on a pthread key like the C layer: the destructor
/// runs when a thread ends (returns or calls `pthread_exit`), but not for the
/// main thread at `exit()`, when VCL tears itself down. The key's value is a
/// leaked `Box<Box<dyn FnOnce()>>` (one per thread and key).
pub(super) struct ExitKey(libc::pthread_key_t);

unsafe extern "C" fn run_exit_hook(value: *mut std::ffi::c_void) {
    if value.is_null() {
        return;
    }
    // SAFETY: the key only ever holds pointers made by `ExitKey::set`.
    let hook = unsafe { Box::from_raw(value as *mut Box<dyn FnOnce()>) };
    // Nothing may unwind out of a pthread destructor.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(hook));
}

impl ExitKey {
    pub(super) fn new() -> Option<Self> {
        let mut key: libc::pthread_key_t = 0;
        // SAFETY: valid out pointer and destructor.
        (unsafe { libc::pthread_key_create(&mut key, Some(run_exit_hook)) } == 0).then_some(ExitKey(key))
    }

    /// Runs `hook` when the calling thread exits (replacing an earlier one).
    fn set(&self, hook: Box<dyn FnOnce()>) {
        // SAFETY: reads this thread's value of our key.
        let old = unsafe { libc::pthread_getspecific(self.0) };
        if !old.is_null() {
            // SAFETY: made by a previous `set`; dropped without running.
            drop(unsafe { Box::from_raw(old as *mut Box<dyn FnOnce()>) });
        }
        let p = Box::into_raw(Box::new(hook));
        // SAFETY: stores a pointer the destructor will free.
        unsafe { libc::pthread_setspecific(self.0, p.cast()) };
    }
}

impl<V: Vcl> Vls<V> {
    /// `vls_app_create`: attaches to VPP and registers the calling thread.
    ///
    /// # Safety
    /// `name` is null or a valid NUL-terminated string.
    pub unsafe fn app_create(&'static self, name: *const c_char) -> i32 {
        if name.is_null() {
            return EINVAL;
        }
        if self.app_created.load(Ordering::Acquire) {
            return -libc::EEXIST;
        }
        // SAFETY: `name` is valid per this function's contract.
        let rv = unsafe { self.vcl.app_create(name) };
        if rv != 0 {
            return rv;
        }
        let mt = self.vcl.mt_workers();
        self.mt_workers.store(mt, Ordering::Release);
        if !mt && self.exit_key.is_some() {
            // Before other threads can see the app (and end the solo
            // period). Not without the thread-exit hook: a later thread
            // could get the exited solo thread's identity.
            self.solo.start();
        }
        if mt {
            // Before other threads can see the app (no gate is in use yet).
            self.moves.gates.set_fast_lane(solo::register_barrier());
        }
        self.forks.set_this_process();
        self.app_created.store(true, Ordering::Release);
        self.process_wrk.store(self.vcl.worker_index(), Ordering::Release);
        self.n_threads.store(1, Ordering::Release);
        self.vcl.install_wait_hooks(self);
        self.vcl.install_rpc_handler(self);
        self.vcl.install_fork_hooks(self);
        if std::env::var_os("VLS_MIGRATE_BY_RPC").is_some_and(|v| v == "1") {
            self.moves.direct_moves.store(false, Ordering::Release);
        }
        if let Some(ms) = std::env::var("VLS_RPC_TIMEOUT_MS").ok().and_then(|v| v.parse::<u64>().ok()) {
            self.set_rpc_timeout(Duration::from_millis(ms.max(1)));
        }
        self.on_exit_of_this_thread();
        tracing::info!(
            mode = if mt { "per-thread workers" } else { "per-process worker" },
            vcl_worker = self.vcl.worker_index(),
            "vls app created"
        );
        0
    }

    /// True once `app_create` succeeded.
    pub fn is_app_created(&self) -> bool {
        self.app_created.load(Ordering::Acquire)
    }

    /// Registers the calling thread if VLS has not seen it yet
    /// (`vls_mt_detect`). False if the thread has no VCL worker even so
    /// (its registration failed, or it is a forked child that could not
    /// get one): VCL must not be called then (it would look up worker
    /// `~0`), and the call fails instead.
    #[inline]
    #[must_use]
    pub fn detect_thread(&'static self) -> bool {
        if self.vcl.worker_index() != INVALID || !self.is_app_created() {
            return true;
        }
        self.register_thread();
        self.vcl.worker_index() != INVALID
    }

    /// `vls_register_vcl_worker`: registers the calling thread.
    pub fn register_thread(&'static self) {
        let n = self.n_threads.fetch_add(1, Ordering::AcqRel) + 1;
        self.needs_locks.store(true, Ordering::Release);
        // The first thread may be inside an unlocked call: wait for it.
        self.solo.end();
        if self.mt_workers.load(Ordering::Acquire) {
            let rv = self.vcl.worker_register();
            if rv != 0 {
                tracing::error!(rv, "failed to register a VCL worker for a new thread");
            } else {
                self.vcl.install_wait_hooks(self);
                // A worker index may be reused after its thread exited.
                if let Some(g) = self.moves.gates.get(self.vcl.worker_index()) {
                    g.set_exiting(false);
                }
            }
        } else {
            self.vcl.set_worker_index(self.process_wrk.load(Ordering::Acquire));
        }
        if n >= 2 {
            // Cancellation inside VCL would leave its state half-updated;
            // like the C layer, new threads are not cancellable in VLS.
            disable_cancellation();
            self.take_over_solo_period();
        }
        tracing::debug!(
            threads = n,
            vcl_worker = self.vcl.worker_index(),
            mode = ?self.mode(),
            unlocked_paths = self.solo.is_active(),
            "thread registered"
        );
        self.on_exit_of_this_thread();
    }

    /// The calling thread, which just registered, becomes the solo thread
    /// (see `solo`) if no other thread is inside VCL now: it holds both
    /// worker-level locks (tried, never waited for) and no thread waits
    /// inside VCL (such a wait may hold neither lock). From then on any
    /// other thread reaches VCL only after taking one of those locks, and
    /// then ends this period ([`Self::end_others_solo_period`]).
    ///
    /// Only its unlocked calls change: the process stays in the
    /// shared-worker mode (`needs_locks`), so its other calls behave as
    /// with other threads around (a blocking call waits outside the locks,
    /// a close wakes a blocked reader), and the unlocked ones do what other
    /// threads' waits need (an `epoll_ctl` on a ready session wakes the
    /// set's other waiter; a wait records its thread as one).
    ///
    /// A program whose first thread only set things up (wrk's main thread
    /// creates the epoll sets, then one thread of its own does all the I/O)
    /// so keeps the single-thread paths. Only with one VCL worker for the
    /// process and the thread-exit hook (as `app_create`), and not in a
    /// process that forked: its fork and exit paths use VCL outside the
    /// worker-level locks.
    fn take_over_solo_period(&'static self) {
        if self.mt_workers.load(Ordering::Acquire)
            || self.exit_key.is_none()
            || self.forks.shared.get().is_some()
            || self.solo.take_overs_closed()
        {
            return;
        }
        let Some(_all) = self.mt_locks().try_lock_all() else { return };
        if self.waiting_in_vcl.load(Ordering::SeqCst) != 0 || self.detaching() {
            return;
        }
        // A thread that registered meanwhile may have taken it over: that
        // period ends (that thread is outside VCL, as the locks say).
        self.solo.end();
        if !self.solo.start() {
            return;
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        if self.solo.take_overs_closed() {
            // The process began to fork or exit meanwhile (see
            // `Solo::close_take_overs`).
            self.solo.end();
        }
    }

    /// The process forks or exits: no thread takes the single-thread
    /// period over any more, and one that has it loses it (those paths use
    /// VCL outside the worker-level locks).
    pub(super) fn stop_solo_take_overs(&self) {
        self.solo.close_take_overs();
        self.end_others_solo_period();
    }

    /// For a thread about to use VCL with a worker-level lock held: if
    /// another thread took the single-thread period over
    /// ([`Self::take_over_solo_period`]), it ends here as when a thread
    /// arrives (the locks are on from now on; waits for that thread's
    /// unlocked call in progress, which never waits for a lock).
    #[inline(always)]
    pub(super) fn end_others_solo_period(&self) {
        if self.solo.held_by_another() {
            self.end_solo_period_now();
        }
    }

    /// (Also the last take-over: once a thread comes back to VCL while
    /// another has the period, its threads share the work, and a take-over
    /// at each new thread would cost each of them a `membarrier` when the
    /// others come back: a server with a thread per connection. The locks
    /// are switched on for the first thread's own period, which a process
    /// exiting on a thread that never used VLS ends here; a period taken
    /// over has them on already.)
    #[cold]
    #[inline(never)]
    fn end_solo_period_now(&self) {
        self.needs_locks.store(true, Ordering::Release);
        self.solo.close_take_overs();
        self.solo.end();
        if quiet::may_log() {
            tracing::debug!("another thread is back: the single-thread period ends");
        }
    }

    fn on_exit_of_this_thread(&'static self) {
        match &self.exit_key {
            Some(k) => k.set(Box::new(move || self.thread_exited())),
            None => tracing::warn!("no pthread key: thread exits will not be noticed"),
        }
    }

    /// The process is exiting (called from an `atexit` handler that runs
    /// before VCL's). VCL's exit handler cleans up the *calling* thread's
    /// worker and assumes it has one; the thread calling `exit` may never
    /// have used VLS (the application attached from another thread), so it
    /// is pointed at the process worker, unless the last VLS thread already
    /// unregistered that. Also stops a thread ending from now on from
    /// unregistering it concurrently. A forked child's worker leaves VPP
    /// here, quietly (no message, see `Vcl::worker_leave_quietly`), and
    /// VCL's exit handler then finds nothing to do. No tracing
    /// (thread-local state may be gone).
    pub fn process_exiting(&'static self) {
        if !self.is_app_created() {
            return;
        }
        quiet::quiet_from_now_on();
        self.stop_solo_take_overs();
        let mut t = self.worker_teardown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *t == Teardown::Pending {
            if self.vcl.worker_index() == INVALID {
                self.vcl.set_worker_index(self.process_wrk.load(Ordering::Acquire));
            }
            if self.vcl.worker_index() == INVALID {
                // No worker of its own (a forked child that could not get
                // one): VCL's exit handler must find none to clean up.
                self.vcl.forget_inherited_workers();
            }
            // Forked relatives keep what this process shares with them.
            self.leave_shared_sessions_at_exit();
            if self.vcl.worker_index() != INVALID {
                let _ = self.vcl.let_vpp_read_queues(LET_VPP_READ_QUEUES);
            }
            *t = Teardown::LeftToExit;
            let forked = self.forks.fork_generation.load(Ordering::Acquire) > 0;
            if forked && self.forks.is_this_process() && self.vcl.worker_index() != INVALID {
                // A forked child (which may have lost the right to send,
                // see `worker_leave_quietly`; VCL's own exit handler says
                // as much and sends all the same).
                self.leave_vpp(true);
                self.vcl.forget_inherited_workers();
                *t = Teardown::LeftQuietly;
            }
        }
    }

    /// The calling thread's worker (the process's) leaves VPP and every
    /// session loses its VCL session, as the process ends or execs; its
    /// calls fail from now on without reaching VCL.
    fn leave_vpp(&'static self, quietly: bool) {
        // No lock-free path reaches VCL from now on (they do not look at
        // the worker).
        self.solo.end();
        self.moves.gates.set_fast_lane(false);
        if self.vcl.worker_index() != INVALID {
            if quietly {
                self.vcl.worker_leave_quietly();
            } else {
                self.vcl.worker_unregister();
            }
        }
        self.vcl.set_worker_index(INVALID);
        self.process_wrk.store(INVALID, Ordering::Release);
        for s in self.pool.live_sessions() {
            let locked = s.lock();
            if !locked.closed() && locked.sh() != INVALID {
                self.pool.unmap(&locked);
            }
        }
    }

    /// The process ends through `_exit` (or `_Exit`): no exit handler
    /// runs, VCL's included, and VPP learns of the end when the app's
    /// socket closes, which it handles before the messages still in its
    /// queues. One of them may be an accepted reply: VCL's own for a
    /// connection just accepted, or this layer's claim of a connection
    /// just handed over (`fork_hooks::Watched`), and VPP crashes on it
    /// (`Vcl::let_vpp_read_queues`): a forking server's child that read its
    /// request, answered and called `_exit` brought VPP down. So VPP is
    /// let read the queues first, as at exit. Before that, a forked
    /// process settles the connections it shares with relatives
    /// (`leave_shared_sessions_at_once`: table entries tried without
    /// waiting, except to close a connection handed to it and not taken,
    /// as at exit). Otherwise plain loads and short sleeps (`_exit` is
    /// async-signal-safe, and may be called from a signal handler). Not in
    /// a `vfork` child, which shares its parent's memory and queues.
    pub fn process_exits_at_once(&'static self) {
        if !self.is_app_created() || !self.forks.is_this_process() {
            return;
        }
        // (As at exit: a thread that never used VLS looks at the process's
        // worker.)
        if self.vcl.worker_index() == INVALID {
            self.vcl.set_worker_index(self.process_wrk.load(Ordering::Acquire));
        }
        if self.vcl.worker_index() != INVALID {
            // (Twice: a relative may hand a connection over while VPP reads.)
            for _ in 0..2 {
                self.leave_shared_sessions_at_once(EXIT_HANDOVER_LIMIT);
                let _ = self.vcl.let_vpp_read_queues(LET_VPP_READ_QUEUES);
            }
        }
    }

    /// The process is about to replace its program (`execve` and the other
    /// `exec` functions, from `libvls.so`'s interposers). VCL's exit handler
    /// will not run, and nothing of this process's VCL state survives, so
    /// what exit does is done here, and then what VCL's exit handler would
    /// do: forked relatives keep what this process shares with them (it
    /// leaves every shared session), VPP reads the worker's queues, and the
    /// worker is unregistered from VPP and freed in VCL's heap. Without
    /// this a forked child that runs another program (`socat`'s `EXEC`, a
    /// CGI script) stays subscribed to the connections it inherited, so
    /// the last of its relatives to close one never closes it in VPP (the
    /// peer waits for ever), and its worker is never freed when its parent
    /// exits first (VCL runs out of workers).
    ///
    /// If the `exec` fails the process goes on without a worker: every call
    /// on its sessions gets `EBADFD`, as in a forked child that could not
    /// get one. Nothing is done in a `vfork` child: it shares this memory
    /// with its parent, whose state it is.
    pub fn process_execs(&'static self) {
        if !self.is_app_created() || !self.forks.is_this_process() {
            return;
        }
        tracing::info!(
            worker = self.vcl.worker_index(),
            "exec: leaving VPP (shared sessions left to relatives)"
        );
        self.process_exiting();
        let mut t = self.worker_teardown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *t != Teardown::LeftToExit {
            // (A forked child left quietly in `process_exiting`.)
            return;
        }
        self.leave_vpp(false);
        // If the exec fails, the exit path finds no worker and has VCL's
        // exit handler find none either.
        *t = Teardown::Pending;
    }

    /// Runs at thread exit: the thread's locks are released by their own
    /// thread-local destructor; here the thread is unregistered.
    fn thread_exited(&'static self) {
        self.solo.thread_exits();
        let left = self.n_threads.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        if self.vcl.worker_index() == INVALID {
            return;
        }
        if self.mt_workers.load(Ordering::Acquire) {
            let wrk = self.vcl.worker_index();
            if wrk != self.process_wrk.load(Ordering::Acquire) {
                // Nothing may move out of the worker from now on, and movers
                // waiting for this thread's answer give up.
                let gate = self.moves.gates.get(wrk);
                if let Some(g) = gate {
                    g.set_exiting(true);
                }
                let _inside = gate.map(Gate::enter);
                self.orphan_sessions_of(wrk);
                let _ = self.vcl.let_vpp_read_queues(LET_VPP_READ_QUEUES);
                self.vcl.worker_unregister();
            }
        } else if left == 0 && self.forks.shared.get().is_none() {
            // (A process that forked keeps its worker to the end: VCL's
            // exit handler runs on whichever thread calls `exit` and, with
            // relatives' workers in VCL's shared pool, assumes that thread
            // has a worker; `process_exiting` points it at this one.)
            let mut t = self.worker_teardown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *t == Teardown::Pending {
                let _ = self.vcl.let_vpp_read_queues(LET_VPP_READ_QUEUES);
                self.vcl.worker_unregister();
                *t = Teardown::DoneByLastThread;
            }
        }
        // No tracing here: thread-local state (a subscriber's buffers) is
        // already gone when pthread key destructors run.
    }

    /// The worker `wrk` is being torn down, and VCL frees its sessions with
    /// it: the VLS sessions still on it lose their VCL session (every later
    /// operation gets `EBADFD`; close frees the handle). Without this, a
    /// new thread given the same worker index would find them "its own".
    fn orphan_sessions_of(&self, wrk: u32) {
        for s in self.pool.live_sessions() {
            let sh = s.sh();
            if sh == INVALID || sh_parts(sh).0 != wrk {
                continue;
            }
            let locked = s.lock();
            let sh = locked.sh();
            if !locked.closed() && sh != INVALID && sh_parts(sh).0 == wrk {
                self.pool.unmap(&locked);
            }
        }
    }
}
