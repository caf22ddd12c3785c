//! The VLS core: sessions, thread detection, and the locking protocol, over
//! any [`Vcl`] implementation.
//!
//! One [`Vls`] exists per process (the C ABI and the safe API share a global
//! one; tests build their own over a test double). Every operation:
//!
//! 1. detects a thread it has not seen (its VCL worker index is unset) and
//!    registers it: in per-thread-worker mode as a new VCL worker, otherwise
//!    by pointing it at the process's single VCL worker; from the second
//!    thread on, the worker-level locks are used;
//! 2. fetches the VLS session and locks it (the session lock is held for
//!    the whole operation, also while VCL blocks); with per-thread workers,
//!    first moves it to the calling thread's worker if it is on another
//!    ([`migrate`]);
//! 3. takes the worker-level locks its kind needs ([`locks`]), in mode 3;
//! 4. calls VCL and returns VCL's code unchanged.
//!
//! Guards release everything on every return path. Failures are `VPPCOM_E*`
//! codes, never panics; an unknown or closed handle is `EBADFD`.
//!
//! Exception: while only one thread has used VLS (modes 1 and 3), a
//! non-blocking read or write skips steps 2 and 3 (`solo`: no lock, a
//! handshake with the second thread when it arrives).
//!
//! Around `fork` (and for sessions shared between the processes that
//! results in), see [`fork`] (shared state, SIGCHLD) and `fork_hooks`
//! (what VLS does in parent and child, close and exit of shared sessions,
//! cleanup after exited children).

pub mod demux;
#[cfg(test)]
mod double;
pub mod fork;
mod fork_hooks;
pub mod locks;
pub mod migrate;
pub mod pool;
#[cfg(test)]
mod random_ops;
mod session_lock;
pub mod solo;
#[cfg(test)]
mod tests;

use std::ffi::{c_char, c_ulong, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::VppcomError;
use crate::seam::{sh_from_parts, sh_parts, EpollFns, MoveError, RpcHandler, Sh, Vcl, WaitHooks, INVALID};
use locks::{MtLocks, OpKind, OpLocks};
use migrate::{Gate, GateGuard, Gates, Rpc, RpcTable, RPC_TIMEOUT};
use pool::{Half, LockedSession, SessionPool, VlsSession, Vlsh, INVALID_VLSH};

const EBADFD: i32 = -libc::EBADFD;
const EINVAL: i32 = -libc::EINVAL;
/// `wait_for_time` with which LDP asks only for already-known events.
const DRAIN_ONLY: i32 = -2;

/// Returns `rv`, what an operation on `vlsh` returned, tracing it if it is
/// an error. `EAGAIN` is an answer, not an error (and the hot path of
/// non-blocking I/O): not traced.
#[inline(always)]
fn traced(vlsh: Vlsh, op: OpKind, rv: i32) -> i32 {
    if rv < 0 && rv != -libc::EAGAIN {
        log_error(vlsh, op, rv);
    }
    rv
}

/// Traces an error (out of the hot path). Never unwinds (it runs where
/// nothing else can panic).
#[cold]
#[inline(never)]
fn log_error(vlsh: Vlsh, op: OpKind, rv: i32) {
    let _ = std::panic::catch_unwind(|| {
        tracing::debug!(vlsh, ?op, rv = %VppcomError::from_raw(rv), "error returned");
    });
}

/// How VLS maps application threads to VCL workers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One thread (so far) per process: no locks needed.
    SingleThread,
    /// `multi-thread-workers`: every thread has its own VCL worker.
    PerThreadWorkers,
    /// Many threads share the process's one VCL worker (locks on).
    SharedWorker,
}

/// Per-process VLS state.
pub struct Vls<V: Vcl> {
    vcl: V,
    pool: SessionPool,
    /// Mode 3's worker-level locks. Behind a pointer so a forked child can
    /// start with fresh ones (the parent's may be held by threads the child
    /// does not have); the old ones are leaked.
    locks: std::sync::atomic::AtomicPtr<MtLocks>,
    /// Threads that called VLS and have not exited.
    n_threads: AtomicU32,
    /// Set once a second thread shows up (mode 3 locking from then on).
    needs_locks: AtomicBool,
    /// Until then, the one thread's non-blocking I/O takes no lock at all.
    solo: solo::Solo,
    /// `multi-thread-workers`, read at app creation.
    mt_workers: AtomicBool,
    /// The VCL worker of the thread that created the app.
    process_wrk: AtomicU32,
    app_created: AtomicBool,
    /// VLS's own VCL epoll session (see `internal_epoll`), or `INVALID`.
    internal_ep: AtomicU32,
    exit_key: Option<ExitKey>,
    /// Who tears the process's VCL worker down: the last VLS thread when it
    /// ends, or VCL's own exit handler when the process exits first. The
    /// mutex makes the two exclusive (VCL's exit handler would otherwise
    /// look up a worker another thread is freeing).
    worker_teardown: std::sync::Mutex<Teardown>,
    /// Per-thread workers: each worker's "inside VCL" gate (see [`migrate`]).
    gates: Gates,
    /// Per-thread workers: session moves waiting for an owner's answer.
    rpcs: RpcTable<V::Moved>,
    /// Per-thread workers: movers may take an idle owner's gate and move a
    /// session themselves (default). Off, every move is an RPC (set by
    /// `VLS_MIGRATE_BY_RPC=1`, to exercise that path).
    direct_moves: AtomicBool,
    /// Threads inside a VCL wait (between the wait hooks) right now.
    waiting_in_vcl: AtomicU32,
    /// Per-thread workers: how long a mover waits for the owner's answer,
    /// in milliseconds ([`RPC_TIMEOUT`] unless `VLS_RPC_TIMEOUT_MS` says
    /// otherwise at app creation).
    rpc_timeout_ms: std::sync::atomic::AtomicU64,
    /// Per-process workers: what forked processes share, mapped before the
    /// first fork (see [`fork`]).
    shared: std::sync::OnceLock<fork::SharedTable>,
    /// Serialises the cleanup of exited children's workers.
    child_cleanup: std::sync::Mutex<()>,
    /// How many forks made this process (0 in the process that attached;
    /// each forked child has its parent's count plus one).
    fork_generation: AtomicU32,
    /// The application's errno when a fork started (see `fork_hooks`).
    errno_before_fork: std::sync::atomic::AtomicI32,
    /// Connections shared with forked relatives, watched for VPP handing
    /// them over to this process (see `fork_hooks::Watched`).
    handover_watch: std::sync::Mutex<Vec<fork_hooks::Watched>>,
    /// `handover_watch` is not empty (checked on every `epoll_wait`).
    watching: AtomicBool,
}

/// Worker-level locks held around one VCL call.
enum WorkerLocks {
    /// Mode 3: the shared worker's locks for the kind of operation.
    Shared { _locks: OpLocks },
    /// Per-thread workers: the calling thread's own gate.
    Own { _gate: GateGuard<'static> },
}

/// The calling thread acts as VCL worker `wrk` (VCL's calls use the
/// thread's worker index) until dropped, which restores its own. Only with
/// `wrk`'s gate held, so `wrk`'s own thread is outside VCL meanwhile.
struct ActingAsWorker<'a, V: Vcl> {
    vcl: &'a V,
    own: u32,
}

impl<'a, V: Vcl> ActingAsWorker<'a, V> {
    fn new(vcl: &'a V, wrk: u32) -> Self {
        let own = vcl.worker_index();
        vcl.set_worker_index(wrk);
        ActingAsWorker { vcl, own }
    }
}

impl<V: Vcl> Drop for ActingAsWorker<'_, V> {
    fn drop(&mut self) {
        self.vcl.set_worker_index(self.own);
    }
}

/// See `Vls::worker_teardown`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Teardown {
    /// The process worker is in use.
    Pending,
    /// The last VLS thread ended and unregistered the process worker.
    DoneByLastThread,
    /// The process is exiting; VCL's exit handler cleans up.
    LeftToExit,
}

/// Thread-exit hooks, on a pthread key like the C layer: the destructor
/// runs when a thread ends (returns or calls `pthread_exit`), but not for the
/// main thread at `exit()`, when VCL tears itself down. The key's value is a
/// leaked `Box<Box<dyn FnOnce()>>` (one per thread and key).
struct ExitKey(libc::pthread_key_t);

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
    fn new() -> Option<Self> {
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
    /// A VLS over `vcl`. It must live for the rest of the process (VCL keeps
    /// pointers to it), hence `&'static`.
    pub fn new_static(vcl: V) -> &'static Self {
        Box::leak(Box::new(Vls {
            vcl,
            pool: SessionPool::default(),
            locks: std::sync::atomic::AtomicPtr::new(Box::into_raw(Box::default())),
            n_threads: AtomicU32::new(0),
            needs_locks: AtomicBool::new(false),
            solo: solo::Solo::default(),
            mt_workers: AtomicBool::new(false),
            process_wrk: AtomicU32::new(INVALID),
            app_created: AtomicBool::new(false),
            internal_ep: AtomicU32::new(INVALID),
            exit_key: ExitKey::new(),
            worker_teardown: std::sync::Mutex::new(Teardown::Pending),
            gates: Gates::default(),
            rpcs: RpcTable::default(),
            direct_moves: AtomicBool::new(true),
            rpc_timeout_ms: std::sync::atomic::AtomicU64::new(RPC_TIMEOUT.as_millis() as u64),
            waiting_in_vcl: AtomicU32::new(0),
            shared: std::sync::OnceLock::new(),
            child_cleanup: std::sync::Mutex::new(()),
            fork_generation: AtomicU32::new(0),
            errno_before_fork: std::sync::atomic::AtomicI32::new(0),
            handover_watch: std::sync::Mutex::new(Vec::new()),
            watching: AtomicBool::new(false),
        }))
    }

    /// How long a session move waits for the owner's answer (per-thread
    /// workers).
    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_timeout_ms.load(Ordering::Relaxed))
    }

    /// Sets [`Self::rpc_timeout`] (`VLS_RPC_TIMEOUT_MS` does it at app
    /// creation; tests use a short one).
    pub fn set_rpc_timeout(&self, d: Duration) {
        self.rpc_timeout_ms.store(d.as_millis().clamp(1, u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Threads blocked inside VCL (a blocking read, write, accept, ...)
    /// right now: a diagnostic, and what tests wait for instead of assuming
    /// a thread has blocked by now.
    pub fn threads_waiting_in_vcl(&self) -> u32 {
        self.waiting_in_vcl.load(Ordering::SeqCst)
    }

    /// The VCL implementation underneath.
    pub fn vcl(&self) -> &V {
        &self.vcl
    }

    /// The session pool (for diagnostics and tests).
    pub fn pool(&self) -> &SessionPool {
        &self.pool
    }

    /// The worker-level locks (for tests).
    pub fn locks(&self) -> &MtLocks {
        self.mt_locks()
    }

    /// Mode 3's worker-level locks now.
    #[inline]
    fn mt_locks(&self) -> &'static MtLocks {
        // SAFETY: always a leaked box (set at construction, replaced only by
        // `fresh_locks`, never freed).
        unsafe { &*self.locks.load(Ordering::Acquire) }
    }

    /// Replaces the worker-level locks with fresh ones (a forked child).
    fn fresh_locks(&self) {
        self.locks.store(Box::into_raw(Box::default()), Ordering::Release);
    }

    /// The single thread's non-blocking reads and writes take no lock (one
    /// thread only has used VLS so far; see [`solo`]).
    pub fn lock_free_io(&self) -> bool {
        self.solo.is_active()
    }

    /// Threads currently registered.
    pub fn n_threads(&self) -> u32 {
        self.n_threads.load(Ordering::Acquire)
    }

    /// The mode VLS is in now.
    pub fn mode(&self) -> Mode {
        if self.mt_workers.load(Ordering::Acquire) {
            Mode::PerThreadWorkers
        } else if self.needs_locks.load(Ordering::Acquire) {
            Mode::SharedWorker
        } else {
            Mode::SingleThread
        }
    }

    // ------------------------------------------------------------------
    // lifecycle and threads
    // ------------------------------------------------------------------

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
        self.app_created.store(true, Ordering::Release);
        self.process_wrk.store(self.vcl.worker_index(), Ordering::Release);
        self.n_threads.store(1, Ordering::Release);
        self.vcl.install_wait_hooks(self);
        self.vcl.install_rpc_handler(self);
        self.vcl.install_fork_hooks(self);
        if std::env::var_os("VLS_MIGRATE_BY_RPC").is_some_and(|v| v == "1") {
            self.direct_moves.store(false, Ordering::Release);
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
    /// (`vls_mt_detect`).
    #[inline]
    pub fn detect_thread(&'static self) {
        if self.vcl.worker_index() == INVALID && self.is_app_created() {
            self.register_thread();
        }
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
                if let Some(g) = self.gates.get(self.vcl.worker_index()) {
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
        }
        tracing::debug!(threads = n, vcl_worker = self.vcl.worker_index(), mode = ?self.mode(), "thread registered");
        self.on_exit_of_this_thread();
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
    /// unregistering it concurrently. No tracing (thread-local state may be
    /// gone).
    pub fn process_exiting(&'static self) {
        if !self.is_app_created() {
            return;
        }
        fork_hooks::quiet_from_now_on();
        let mut t = self.worker_teardown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *t == Teardown::Pending {
            if self.vcl.worker_index() == INVALID {
                self.vcl.set_worker_index(self.process_wrk.load(Ordering::Acquire));
            }
            // Forked relatives keep what this process shares with them.
            self.leave_shared_sessions_at_exit();
            *t = Teardown::LeftToExit;
        }
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
                let gate = self.gates.get(wrk);
                if let Some(g) = gate {
                    g.set_exiting(true);
                }
                let _inside = gate.map(Gate::enter);
                self.orphan_sessions_of(wrk);
                self.vcl.worker_unregister();
            }
        } else if left == 0 && self.shared.get().is_none() {
            // (A process that forked keeps its worker to the end: VCL's
            // exit handler runs on whichever thread calls `exit` and, with
            // relatives' workers in VCL's shared pool, assumes that thread
            // has a worker; `process_exiting` points it at this one.)
            let mut t = self.worker_teardown.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if *t == Teardown::Pending {
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

    // ------------------------------------------------------------------
    // locking helpers
    // ------------------------------------------------------------------

    /// Several threads share the process's VCL worker (mode 3): the
    /// worker-level locks are in use.
    #[inline]
    fn shares_worker(&self) -> bool {
        self.needs_locks.load(Ordering::Acquire) && !self.mt_workers.load(Ordering::Relaxed)
    }

    /// The calling thread's own gate (per-thread workers).
    fn own_gate(&'static self) -> Option<GateGuard<'static>> {
        self.gates.get(self.vcl.worker_index()).map(Gate::enter)
    }

    /// Worker-level locks for `op` on `sh`: in mode 3 the shared worker's
    /// locks, with per-thread workers the thread's own gate, else none.
    #[inline(always)]
    fn op_locks(&'static self, op: OpKind, sh: Option<Sh>) -> Option<WorkerLocks> {
        if self.mt_workers.load(Ordering::Relaxed) {
            // Always, even while the process has one thread: a second
            // thread may start moving this one's sessions at any moment.
            return self.own_gate().map(|g| WorkerLocks::Own { _gate: g });
        }
        if !self.needs_locks.load(Ordering::Acquire) && !self.may_wait_in_vcl(op, sh) {
            return None;
        }
        let vcl = &self.vcl;
        Some(WorkerLocks::Shared {
            _locks: match (op, sh) {
                (OpKind::Read, Some(sh)) => {
                    // Any answer but "0 bytes" means a blocking read returns
                    // at once. A non-blocking read may empty the FIFO and
                    // then touch worker state (see `read_may_empty`): it
                    // takes the mq lock.
                    self.mt_locks().acquire(op, move || !vcl.is_nonblocking(sh) && vcl.read_ready(sh) != 0)
                }
                (OpKind::Write, Some(sh)) => {
                    self.mt_locks().acquire(op, move || vcl.is_nonblocking(sh) || vcl.write_ready(sh))
                }
                _ => self.mt_locks().acquire(op, || true),
            },
        })
    }

    /// A call of kind `op` on `sh` may wait inside VCL (a blocking accept,
    /// read or write). Such a call takes the worker-level locks even while
    /// this is the process's only thread (uncontended, and the call is slow
    /// anyway): a second thread may arrive while it waits, and must find
    /// the worker locked instead of entering VCL beside it. The wait hooks
    /// release the locks for each wait and retake them after, as usual.
    #[inline]
    fn may_wait_in_vcl(&self, op: OpKind, sh: Option<Sh>) -> bool {
        matches!(op, OpKind::Read | OpKind::Write | OpKind::SessionPool)
            && sh.is_some_and(|sh| !self.vcl.is_nonblocking(sh))
    }

    /// `sh` is a session of the calling thread's worker.
    #[inline]
    fn is_here(&self, sh: Sh) -> bool {
        on_worker(sh, self.vcl.worker_index())
    }

    /// The VCL handle to use for `locked` from the calling thread: with
    /// per-thread workers, the session is first moved to the thread's
    /// worker if it is on another's (see [`migrate`]).
    fn sh_here(&'static self, locked: &LockedSession<'_>) -> Result<Sh, i32> {
        let sh = locked.sh();
        if !self.mt_workers.load(Ordering::Relaxed) {
            return Ok(sh);
        }
        if sh == INVALID {
            return Err(EBADFD);
        }
        let me = self.vcl.worker_index();
        let (owner, index) = sh_parts(sh);
        if owner == me {
            return Ok(sh);
        }
        let vlsh = locked.session.vlsh;
        let (moved, how) = self.move_from(owner, index).map_err(|e| {
            tracing::warn!(vlsh, owner, current = me, reason = ?e, "session cannot move to this thread's worker");
            EBADFD
        })?;
        let new_sh = {
            let _inside = self.own_gate();
            self.vcl.move_in(moved)
        };
        let new_sh = match new_sh {
            Ok(sh) => sh,
            Err(e) => {
                // The session left its owner and found no new home: gone.
                tracing::error!(vlsh, reason = ?e, "moved session could not be placed on this thread's worker");
                self.pool.unmap(locked);
                return Err(EBADFD);
            }
        };
        self.pool.remap(locked, new_sh);
        tracing::debug!(vlsh, from = owner, to = me, how, "session moved to this thread's worker");
        Ok(new_sh)
    }

    /// Takes session `index` out of worker `owner`: directly if the owner's
    /// thread is outside VCL, else by RPC, waiting at most [`Self::rpc_timeout`]
    /// (see [`migrate`] for the protocol). Also says how: `"directly"` or
    /// `"by RPC"`.
    fn move_from(&'static self, owner: u32, index: u32) -> Result<(V::Moved, &'static str), MoveError> {
        // The owner's gate, if movers may take it (not with
        // `VLS_MIGRATE_BY_RPC=1`).
        let gate = self.gates.get(owner);
        let bypass = gate.filter(|_| self.direct_moves.load(Ordering::Acquire));
        if gate.is_some_and(Gate::is_exiting) {
            return Err(MoveError::NoWorker);
        }
        if let Some(held) = bypass.and_then(Gate::try_enter) {
            return self.move_out_holding(owner, index, held).map(|m| (m, "directly"));
        }
        let request = self.rpcs.register();
        let msg = Rpc::Move { id: request.id, session_index: index }.encode();
        let sent = {
            let _inside = self.own_gate();
            self.vcl.send_rpc(owner, &msg)
        };
        if sent != 0 {
            return Err(MoveError::NoWorker);
        }
        let deadline = Instant::now() + self.rpc_timeout();
        let mut pause = Duration::from_micros(10);
        loop {
            if let Some(answer) = request.try_take() {
                return answer.map(|m| (m, "by RPC"));
            }
            if gate.is_some_and(Gate::is_exiting) {
                return request.abandon().unwrap_or(Err(MoveError::NoWorker)).map(|m| (m, "by RPC"));
            }
            if let Some(held) = bypass.and_then(Gate::try_enter) {
                // The owner is outside VCL now (it may never come back to
                // answer). With its gate held it cannot be answering either:
                // withdraw the request, and move the session directly unless
                // the answer came in first.
                if let Some(answer) = request.abandon() {
                    return answer.map(|m| (m, "by RPC"));
                }
                return self.move_out_holding(owner, index, held).map(|m| (m, "directly"));
            }
            if Instant::now() >= deadline {
                if let Some(answer) = request.abandon() {
                    return answer.map(|m| (m, "by RPC"));
                }
                tracing::warn!(owner, index, "no answer to a session move request within the RPC timeout");
                return Err(MoveError::NoWorker);
            }
            {
                // Answer what others ask of this worker meanwhile (two
                // threads moving each other's sessions at once).
                let _inside = self.own_gate();
                self.vcl.flush_mq();
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_micros(200));
        }
    }

    /// Moves session `index` out of worker `owner`, whose gate `_held` is
    /// held (so its thread is outside VCL), unless that thread is exiting.
    fn move_out_holding(&self, owner: u32, index: u32, _held: GateGuard<'_>) -> Result<V::Moved, MoveError> {
        if self.gates.get(owner).is_some_and(Gate::is_exiting) {
            return Err(MoveError::NoWorker);
        }
        self.vcl.move_out(owner, index)
    }

    /// Runs `f` on the VCL handle of `vlsh` with the session and the
    /// worker-level locks for `op` held — or, for a non-blocking read or
    /// write while one thread only uses VLS, with no lock at all (see
    /// [`solo`]).
    #[inline(always)]
    fn with_session(&'static self, vlsh: Vlsh, op: OpKind, f: impl FnOnce(Sh) -> i32) -> i32 {
        self.with_session_io(vlsh, op, usize::MAX, f)
    }

    /// [`Self::with_session`] for a call that reads at most `read_len`
    /// bytes (`usize::MAX`: unknown, or not a read).
    #[inline(always)]
    fn with_session_io(
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
    fn with_session_after_lock_free(
        &'static self,
        vlsh: Vlsh,
        op: OpKind,
        read_len: usize,
        f: impl FnOnce(Sh) -> i32,
    ) -> i32 {
        let f = match op {
            OpKind::Read | OpKind::Write => match self.shared_worker_nonblocking_io(vlsh, op, read_len, f) {
                Ok(rv) => return rv,
                Err(f) => f,
            },
            _ => f,
        };
        self.with_session_locked(vlsh, op, f)
    }

    /// A non-blocking read of at most `read_len` bytes of `sh` may empty
    /// its FIFO, after which VCL touches worker state (see
    /// [`locks::MtLocks::nonblocking_io`]). Data only grows meanwhile (the
    /// session is locked), so a FIFO holding more than `read_len` bytes
    /// cannot end empty.
    #[inline(always)]
    fn read_may_empty(&self, sh: Sh, read_len: usize) -> bool {
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
    fn shared_worker_nonblocking_io<F: FnOnce(Sh) -> i32>(
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
        if !session.nonblocking_hint.load(Ordering::Relaxed) {
            return Err(f);
        }
        let locked = session.lock();
        if session.is_closed() {
            return Ok(EBADFD);
        }
        // Attribute changes hold the session lock: with it held, the hint
        // is VCL's flag, and VCL will not wait.
        if !session.nonblocking_hint.load(Ordering::Relaxed) {
            drop(locked);
            return Err(f);
        }
        let sh = session.sh();
        let touches_worker = op == OpKind::Read && self.read_may_empty(sh, read_len);
        let _locks = self.mt_locks().nonblocking_io(touches_worker);
        Ok(traced(vlsh, op, f(sh)))
    }

    /// Runs `f` (a read or write) on the VCL handle of `vlsh` without any
    /// lock if the calling thread is the only one that has used VLS and the
    /// session is non-blocking (see [`solo`]); else gives `f` back. Cannot
    /// panic.
    #[inline(always)]
    fn lock_free<F: FnOnce(Sh) -> i32>(&self, vlsh: Vlsh, op: OpKind, f: F) -> Result<i32, F> {
        let Some(_call) = self.solo.enter() else { return Err(f) };
        let Some(session) = self.pool.get(vlsh) else { return Err(f) };
        if !session.nonblocking_hint.load(Ordering::Relaxed) {
            return Err(f);
        }
        if session.is_closed() {
            return Ok(EBADFD);
        }
        Ok(traced(vlsh, op, f(session.sh())))
    }

    /// `vls_read` if it can be done without locks: the calling thread is
    /// the only one that has used VLS and the session is non-blocking (see
    /// [`solo`]); `None` otherwise (use [`Self::read`]). Cannot panic.
    ///
    /// # Safety
    /// `buf` valid for `n` writable bytes.
    #[inline(always)]
    pub unsafe fn read_lock_free(&'static self, vlsh: Vlsh, buf: *mut c_void, n: usize) -> Option<i32> {
        // SAFETY: forwarded contract.
        self.lock_free(vlsh, OpKind::Read, |sh| unsafe { self.vcl.read(sh, buf, n) }).ok()
    }

    /// `vls_write` if it can be done without locks (as
    /// [`Self::read_lock_free`]); `None` otherwise (use [`Self::write`]).
    /// Cannot panic.
    ///
    /// # Safety
    /// `buf` valid for `n` readable bytes.
    #[inline(always)]
    pub unsafe fn write_lock_free(&'static self, vlsh: Vlsh, buf: *mut c_void, n: usize) -> Option<i32> {
        // SAFETY: forwarded contract.
        self.lock_free(vlsh, OpKind::Write, |sh| unsafe { self.vcl.write(sh, buf, n) }).ok()
    }

    /// `vls_read` after [`Self::read_lock_free`] declined (the lock-free
    /// path is not tried again).
    ///
    /// # Safety
    /// `buf` valid for `n` writable bytes.
    #[inline(always)]
    pub unsafe fn read_with_locks(&'static self, vlsh: Vlsh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session_after_lock_free(vlsh, OpKind::Read, n, |sh| unsafe { self.vcl.read(sh, buf, n) })
    }

    /// `vls_write` after [`Self::write_lock_free`] declined.
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
    fn with_session_locked(&'static self, vlsh: Vlsh, op: OpKind, f: impl FnOnce(Sh) -> i32) -> i32 {
        self.detect_thread();
        let Some(session) = self.pool.get(vlsh) else { return EBADFD };
        // Per-thread workers: the calling thread's worker, where the session
        // must be; brought there first, with the whole session locked.
        let own_wrk = if self.mt_workers.load(Ordering::Relaxed) {
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
        // Reads and writes lock their half of the session (non-blocking ones
        // of a registered thread took a shorter path above); everything else
        // locks the whole session.
        let half = match op {
            OpKind::Read => Some(Half::Rx),
            OpKind::Write => Some(Half::Tx),
            _ => None,
        };
        let rv = match half {
            Some(half) => {
                let _locked = session.lock_io(half);
                self.run_locked(session, op, own_wrk, f)
            }
            None => {
                let _locked = session.lock();
                self.run_locked(session, op, own_wrk, f)
            }
        };
        if WAITED_IN_VCL.replace(false) {
            self.route_events_after_a_wait();
        }
        traced(vlsh, op, rv)
    }

    /// Runs `f` on the session's VCL handle (the session is locked by the
    /// caller) with the worker-level locks for `op`; `EBADFD` if closed, or
    /// (per-thread workers) if the session is not on `own_wrk`.
    #[inline(always)]
    fn run_locked(
        &'static self,
        session: &VlsSession,
        op: OpKind,
        own_wrk: Option<u32>,
        f: impl FnOnce(Sh) -> i32,
    ) -> i32 {
        if session.is_closed() {
            return EBADFD;
        }
        let sh = session.sh();
        if own_wrk.is_some_and(|me| !on_worker(sh, me)) {
            // Moved away again (another thread of this process used it in
            // between), or its worker is gone.
            return EBADFD;
        }
        // Per-thread workers: the own worker's gate, with the index already
        // at hand (saves `op_locks` a second thread-local lookup).
        let _g = match own_wrk {
            Some(me) => self.gates.get(me).map(|g| WorkerLocks::Own { _gate: g.enter() }),
            None => self.op_locks(op, Some(sh)),
        };
        f(sh)
    }

    // ------------------------------------------------------------------
    // operations (same return conventions as vcl_locked.h)
    // ------------------------------------------------------------------

    /// `vls_create`.
    pub fn create(&'static self, proto: u8, nonblocking: bool) -> Vlsh {
        self.detect_thread();
        let sh = {
            let _g = self.op_locks(OpKind::SessionPool, None);
            self.vcl.create(proto, nonblocking)
        };
        if sh < 0 {
            return INVALID_VLSH;
        }
        self.adopt(sh as Sh, false, nonblocking)
    }

    /// `vls_epoll_create`.
    pub fn epoll_create(&'static self) -> Vlsh {
        self.detect_thread();
        let sh = {
            let _g = self.op_locks(OpKind::SessionPool, None);
            self.vcl.epoll_create()
        };
        if sh < 0 {
            return INVALID_VLSH;
        }
        self.adopt(sh as Sh, true, false)
    }

    /// Gives a new VCL session a VLS handle; closes it again if the pool is
    /// full (so nothing leaks).
    fn adopt(&'static self, sh: Sh, is_epoll: bool, nonblocking: bool) -> Vlsh {
        let vlsh = if is_epoll { self.pool.alloc_epoll(sh) } else { self.pool.alloc(sh) };
        if vlsh == INVALID_VLSH {
            tracing::error!(sh, "VLS session pool is full");
            let _g = self.op_locks(OpKind::SessionPool, None);
            self.vcl.close(sh);
        } else if let Some(s) = self.pool.get(vlsh) {
            s.nonblocking_hint.store(nonblocking, Ordering::Relaxed);
        }
        vlsh
    }

    /// `vls_close`.
    pub fn close(&'static self, vlsh: Vlsh) -> i32 {
        self.detect_thread();
        let Some(session) = self.pool.get(vlsh) else { return EBADFD };
        // Tell threads blocked in VCL on this session to give up, before
        // waiting for them to release the session lock.
        session.app_closed.store(true, Ordering::Release);
        let mut locked = session.lock();
        if locked.closed() {
            return EBADFD;
        }
        let sh = locked.sh();
        let rv = if sh == INVALID {
            // Orphaned (its worker was torn down with its VCL session).
            0
        } else if self.mt_workers.load(Ordering::Relaxed) && !self.is_here(sh) {
            self.close_on_owner(sh)
        } else {
            let _g = self.op_locks(OpKind::SessionPool, Some(sh));
            // Shared with forked relatives: this worker leaves it (the last
            // one closes it); else a plain close.
            self.close_shared(session.shared.load(Ordering::Acquire), sh)
                .unwrap_or_else(|| self.vcl.close(sh))
        };
        locked.mark_closed();
        drop(locked);
        self.pool.free(session);
        if rv < 0 {
            tracing::debug!(vlsh, rv = %VppcomError::from_raw(rv), "close");
        }
        rv
    }

    /// Per-thread workers: closes `sh`, a session of another thread's
    /// worker. If that thread is outside VCL, this thread closes it as that
    /// worker (holding its gate); otherwise the owner is asked to, by RPC,
    /// and handles it inside the VCL call it is in.
    fn close_on_owner(&'static self, sh: Sh) -> i32 {
        let (owner, index) = sh_parts(sh);
        if let Some(g) = self.gates.get(owner) {
            if g.is_exiting() {
                // VCL frees the worker's sessions with the worker.
                return 0;
            }
            if let Some(_held) = g.try_enter() {
                let _as_owner = ActingAsWorker::new(&self.vcl, owner);
                return self.vcl.close(sh);
            }
        }
        let msg = Rpc::Close { session_index: index }.encode();
        let _inside = self.own_gate();
        let rv = self.vcl.send_rpc(owner, &msg);
        if rv != 0 {
            tracing::warn!(owner, index, "cannot ask a session's worker to close it");
        }
        rv
    }

    /// `vls_shutdown`.
    pub fn shutdown(&'static self, vlsh: Vlsh, how: i32) -> i32 {
        self.with_session(vlsh, OpKind::SessionPool, |sh| self.vcl.shutdown(sh, how))
    }

    /// `vls_bind`.
    ///
    /// # Safety
    /// `ep` as for `vppcom_session_bind`.
    pub unsafe fn bind(&'static self, vlsh: Vlsh, ep: *mut c_void) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session(vlsh, OpKind::Xpoll, |sh| unsafe { self.vcl.bind(sh, ep) })
    }

    /// `vls_listen`.
    pub fn listen(&'static self, vlsh: Vlsh, q_len: i32) -> i32 {
        self.with_session(vlsh, OpKind::Xpoll, |sh| self.vcl.listen(sh, q_len.max(0) as u32))
    }

    /// `vls_connect`.
    ///
    /// # Safety
    /// `ep` as for `vppcom_session_connect`.
    ///
    /// In mode 3 a blocking connect is not left to VCL: VCL waits for VPP's
    /// answer polling the message queue without calling the wait hooks, so
    /// it would hold the worker's locks for the whole handshake, and every
    /// other thread (including one whose close or write the peer waits for
    /// before it accepts) would stop. Instead VLS starts the connect
    /// non-blocking and waits itself, taking the locks only to check.
    pub unsafe fn connect(&'static self, vlsh: Vlsh, ep: *mut c_void) -> i32 {
        let shared_worker = self.shares_worker();
        let mut waits_here = false;
        let rv = self.with_session(vlsh, OpKind::Xpoll, |sh| {
            if !shared_worker || self.vcl.is_nonblocking(sh) {
                // SAFETY: forwarded contract.
                return unsafe { self.vcl.connect(sh, ep) };
            }
            waits_here = true;
            self.vcl.set_nonblocking(sh, true);
            // SAFETY: forwarded contract.
            let rv = unsafe { self.vcl.connect(sh, ep) };
            self.vcl.set_nonblocking(sh, false);
            rv
        });
        if !waits_here || rv != -libc::EINPROGRESS {
            return rv;
        }
        self.wait_connected(vlsh)
    }

    /// Waits for the connect started on `vlsh` to succeed (0) or fail (its
    /// error), with the worker locks held only while checking. Bounded like
    /// VCL's own wait (`session-timeout`, 10 minutes by default).
    fn wait_connected(&'static self, vlsh: Vlsh) -> i32 {
        const LIMIT: Duration = Duration::from_secs(600);
        let flush_set = self.internal_epoll();
        let start = Instant::now();
        let mut pause = Duration::from_micros(20);
        loop {
            let state = self.with_session(vlsh, OpKind::Xpoll, |sh| {
                let st = self.vcl.connect_state(sh);
                if st != 0 {
                    return st;
                }
                self.handle_mq_events(flush_set);
                self.vcl.connect_state(sh)
            });
            match state {
                1 => return 0,
                0 if start.elapsed() < LIMIT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(1));
                }
                0 => return -libc::ETIMEDOUT,
                e => return e,
            }
        }
    }

    /// A VCL epoll session of VLS's own (no VLS handle, never holds a
    /// session), used to make VCL handle its message queue's events;
    /// `INVALID` if VCL could not create one.
    fn internal_epoll(&'static self) -> Sh {
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
    fn handle_mq_events(&'static self, flush_set: Sh) {
        if flush_set == INVALID {
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

    /// Wakes the waiter of every epoll set (through its wake fd).
    fn wake_every_set(&self) {
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
    fn route_events_after_a_wait(&'static self) {
        if !self.shares_worker() {
            return;
        }
        let flush_set = self.internal_epoll();
        let _g = self.op_locks(OpKind::Xpoll, None);
        self.handle_mq_events(flush_set);
    }

    /// `vls_accept`: returns the new session's vlsh or a `VPPCOM_E*` code.
    ///
    /// # Safety
    /// `ep` as for `vppcom_session_accept`.
    pub unsafe fn accept(&'static self, vlsh: Vlsh, ep: *mut c_void, flags: i32) -> Vlsh {
        let mut nonblocking = false;
        // (Only after a fork can a listener be shared.)
        let shared = match self.shared.get() {
            Some(_) => self.pool.get(vlsh).map_or(INVALID, |s| s.shared.load(Ordering::Acquire)),
            None => INVALID,
        };
        let rv = self.with_session(vlsh, OpKind::SessionPool, |sh| {
            self.shared_listener_in_use(shared, sh);
            // SAFETY: forwarded contract.
            let rv = unsafe { self.vcl.accept(sh, ep, flags) };
            if rv >= 0 {
                nonblocking = self.vcl.is_nonblocking(rv as Sh);
            }
            rv
        });
        if rv < 0 {
            return rv;
        }
        self.adopt(rv as Sh, false, nonblocking)
    }

    /// `vls_read`.
    ///
    /// # Safety
    /// `buf` valid for `n` writable bytes.
    pub unsafe fn read(&'static self, vlsh: Vlsh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session_io(vlsh, OpKind::Read, n, |sh| unsafe { self.vcl.read(sh, buf, n) })
    }

    /// `vls_recvfrom`.
    ///
    /// # Safety
    /// `buf` valid for `n` writable bytes; `ep` as for `vppcom_session_recvfrom`.
    pub unsafe fn recvfrom(
        &'static self,
        vlsh: Vlsh,
        buf: *mut c_void,
        n: u32,
        flags: i32,
        ep: *mut c_void,
    ) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session(vlsh, OpKind::Read, |sh| unsafe { self.vcl.recvfrom(sh, buf, n, flags, ep) })
    }

    /// `vls_write`.
    ///
    /// # Safety
    /// `buf` valid for `n` readable bytes.
    pub unsafe fn write(&'static self, vlsh: Vlsh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session(vlsh, OpKind::Write, |sh| unsafe { self.vcl.write(sh, buf, n) })
    }

    /// `vls_write_msg`.
    ///
    /// # Safety
    /// `buf` valid for `n` readable bytes.
    pub unsafe fn write_msg(&'static self, vlsh: Vlsh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session(vlsh, OpKind::Write, |sh| unsafe { self.vcl.write_msg(sh, buf, n) })
    }

    /// `vls_sendto`.
    ///
    /// # Safety
    /// `buf` valid for `n` readable bytes; `ep` null or valid.
    pub unsafe fn sendto(
        &'static self,
        vlsh: Vlsh,
        buf: *mut c_void,
        n: i32,
        flags: i32,
        ep: *mut c_void,
    ) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session(vlsh, OpKind::Write, |sh| unsafe { self.vcl.sendto(sh, buf, n, flags, ep) })
    }

    /// `vls_attr`.
    ///
    /// # Safety
    /// `buf`/`len` as for `vppcom_session_attr`.
    pub unsafe fn attr(&'static self, vlsh: Vlsh, op: u32, buf: *mut c_void, len: *mut u32) -> i32 {
        // An attribute never blocks: the session-pool read lock is enough.
        self.with_session(vlsh, OpKind::Attr, |sh| {
            // SAFETY: forwarded contract.
            let rv = unsafe { self.vcl.attr(sh, op, buf, len) };
            if let Some(s) = self.pool.get(vlsh) {
                s.nonblocking_hint.store(self.vcl.is_nonblocking(sh), Ordering::Relaxed);
            }
            rv
        })
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
        self.detect_thread();
        if ep_vlsh == vlsh || (ev.is_null() && op != libc::EPOLL_CTL_DEL) {
            return EINVAL;
        }
        let (Some(ep), Some(s)) = (self.pool.get(ep_vlsh), self.pool.get(vlsh)) else {
            return EBADFD;
        };
        if !ep.is_epoll() {
            return EBADFD;
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
        // VCL sees the session's vlsh as event data; the application's data
        // is kept in the session (see `demux`).
        // SAFETY: `ev` is null or valid per the contract; the struct is
        // packed, so its fields are read by value.
        let (app_events, app_data) = if ev.is_null() { (0, 0) } else { unsafe { ((*ev).events, (*ev).u64) } };
        let mut token_ev = libc::epoll_event { events: app_events, u64: vlsh as u64 };
        let ev_ptr = if ev.is_null() { ev } else { &mut token_ev as *mut libc::epoll_event };
        // VCL's epoll chains and level-triggered ring are per worker, shared
        // by every epoll set of the worker: changing them needs the same
        // locks as walking them in epoll_wait.
        {
            let _g = self.op_locks(OpKind::Xpoll, None);
            if op != libc::EPOLL_CTL_DEL {
                // Removing a listener from a set changes nothing (nginx
                // adds and removes its listeners all the time).
                self.shared_listener_in_use(s.shared.load(Ordering::Acquire), sh);
            }
            // SAFETY: forwarded contract; `ev_ptr` is null or `token_ev`.
            let rv = unsafe { self.vcl.epoll_ctl(ep_sh, op, sh, ev_ptr) };
            // The membership changes under the same locks: an epoll wait of
            // another thread must never see the session in VCL's set but
            // not yet in ours (it would drop the event VCL generates for a
            // session added with data waiting, and an edge-triggered
            // session is not reported again).
            if rv == 0 {
                match op {
                    libc::EPOLL_CTL_ADD | libc::EPOLL_CTL_MOD => s.membership.join(ep_vlsh, app_data),
                    libc::EPOLL_CTL_DEL => s.membership.leave(ep_vlsh),
                    _ => {}
                }
            }
            rv
        }
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
        // (Mode 3, also while one thread only: another may arrive while this
        // one would wait inside VCL without locks. Not in a forked child,
        // whose sets' wake fds were made for its parent's worker.)
        if wait != 0.0
            && wait as i32 != DRAIN_ONLY
            && !self.mt_workers.load(Ordering::Relaxed)
            && self.fork_generation.load(Ordering::Relaxed) == 0
        {
            // SAFETY: forwarded contract.
            return unsafe { self.epoll_wait_outside_locks(ep_vlsh, evs, max, wait) };
        }
        // SAFETY: forwarded contract.
        unsafe { self.epoll_wait_now(ep_vlsh, evs, max, wait) }
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
            let Some(demux) = self.pool.get(ep_vlsh).and_then(|s| s.demux()) else { return EBADFD };
            if !demux.sleep(self.vcl.mq_epoll_fd(), slice_ms) {
                // No fd to sleep on (VCL without use-mq-eventfd).
                std::thread::sleep(Duration::from_millis(slice_ms.min(2) as u64));
            }
        }
    }

    /// [`Self::epoll_wait`] with VCL waiting (if `wait` says so) inside the
    /// call.
    ///
    /// # Safety
    /// `evs` valid for `max` events.
    unsafe fn epoll_wait_now(
        &'static self,
        ep_vlsh: Vlsh,
        evs: *mut libc::epoll_event,
        max: i32,
        wait: f64,
    ) -> i32 {
        self.clean_up_exited_children();
        let Some(set) = self.pool.get(ep_vlsh) else { return EBADFD };
        let Some(demux) = set.demux() else { return EBADFD };
        if max <= 0 {
            return EINVAL;
        }
        // SAFETY: `evs` is valid for `max` events per the contract.
        let out = unsafe { std::slice::from_raw_parts_mut(evs, max as usize) };
        // Waiters in LDP sleep on the set's libc epoll fd: make sure events
        // parked for this set (and VCL activity) wake it.
        let libc_epfd = set.libc_epfd.load(Ordering::Acquire);
        if libc_epfd > 0 {
            demux.install_wake(libc_epfd, self.vcl.mq_epoll_fd());
            if wait as i32 == DRAIN_ONLY {
                return self.drain_into_parked(ep_vlsh, out);
            }
        }
        // Connections this process just took over from a relative.
        self.notice_handovers();
        let parked = demux.take(out.len());
        let mut n = 0;
        // Tokens of the sessions delivered by this call, to merge duplicates.
        let mut tokens: Vec<u64> = Vec::new();
        let mut ran = false;
        let rv = self.with_session(ep_vlsh, OpKind::Xpoll, |ep_sh| {
            ran = true;
            // A forked child waiting on a set it inherited: the shared
            // listeners in it start listening on this process's worker.
            self.shared_listeners_in_set(ep_vlsh, set);
            // Parked events first, minus what is no longer true: the owner
            // may have read the data since (a stale "readable" would make
            // the application read EAGAIN, which many count as an error).
            for p in &parked {
                let k = self.deliver(ep_vlsh, p.events, p.token, &mut out[n..]);
                if k == 1 {
                    tokens.push(p.token);
                }
                n += k;
            }
            if n == out.len() {
                return 0;
            }
            let vcl_wait = if n > 0 && wait >= 0.0 { 0.0 } else { wait };
            let rest_len = out.len() - n;
            let rv = self.sleeping_in_vcl(vcl_wait != 0.0, || {
                // SAFETY: `out[n..]` is valid for `rest_len` events.
                unsafe { self.vcl.epoll_wait(ep_sh, out[n..].as_mut_ptr(), rest_len as i32, vcl_wait) }
            });
            if rv < 0 {
                return rv;
            }
            // Demultiplex in place: keep this set's events, park the
            // others'. A session both parked and reported is returned once.
            let mut kept = 0;
            for i in 0..rv as usize {
                let e = out[n + i];
                let token = e.u64;
                if let Some(j) = tokens.iter().position(|&t| t == token) {
                    if let Some(s) = i32::try_from(token).ok().and_then(|v| self.pool.get(v)) {
                        out[j].events |= self.still_ready(s, e.events);
                    }
                    continue;
                }
                let k = self.deliver(ep_vlsh, e.events, token, &mut out[n + kept..]);
                if k == 1 {
                    tokens.push(token);
                }
                kept += k;
            }
            kept as i32
        });
        if !ran {
            // The set could not be used (closed meanwhile, or it cannot move
            // to this thread's worker): the events taken stay parked for
            // whoever waits on it next.
            for p in parked {
                demux.park(p);
            }
        }
        if rv < 0 {
            return if n > 0 { n as i32 } else { rv };
        }
        (n as i32) + rv
    }

    /// LDP's "drain only" call (`wait == -2`), made before it sleeps in libc
    /// epoll and, when woken, followed by a call with timeout 0 in the *same*
    /// `epoll_wait` of the application. Returning events from both calls
    /// can report one session twice in one `epoll_wait` (the application
    /// then reads it dry and gets `EAGAIN` on the second report). So the
    /// drained events are parked instead, which wakes the set's libc epoll
    /// fd, and the timeout-0 call returns everything once.
    /// The caller's array serves as scratch space (nothing is returned in it).
    fn drain_into_parked(&'static self, ep_vlsh: Vlsh, scratch: &mut [libc::epoll_event]) -> i32 {
        let rv = self.with_session(ep_vlsh, OpKind::Xpoll, |ep_sh| {
            // SAFETY: `scratch` is valid for its length.
            let rv = unsafe {
                self.vcl.epoll_wait(ep_sh, scratch.as_mut_ptr(), scratch.len() as i32, DRAIN_ONLY as f64)
            };
            // Parked with the locks still held, like `epoll_wait` routes its
            // events: memberships cannot change in between.
            for e in &scratch[..rv.max(0) as usize] {
                self.park(e.events, e.u64);
            }
            rv
        });
        rv.min(0)
    }

    /// Parks an event on the set its session is in (dropped if none).
    fn park(&self, events: u32, token: u64) {
        let Some(s) = i32::try_from(token).ok().and_then(|v| self.pool.get(v)) else { return };
        if let Some(set) = s.membership.set().and_then(|v| self.pool.get(v)) {
            if let Some(d) = set.demux() {
                d.park(demux::Parked { events, token });
            }
        }
    }

    /// The bits of an event that still hold for session `s` now (error
    /// and hang-up bits always do). An event can be stale: parked while the
    /// owner read the data, or queued by VCL before a read; a "readable"
    /// that reads `EAGAIN` is taken as an error by many applications.
    /// Called with the worker locks held.
    fn still_ready(&self, s: &VlsSession, events: u32) -> u32 {
        let sh = s.sh();
        let mut ev = events;
        // Readable: data, pending accepts, or closed/reset (the read reports
        // it); not while 0 bytes are queued or the session is still
        // connecting (ENOTCONN).
        let r = self.vcl.read_ready(sh);
        if ev & libc::EPOLLIN as u32 != 0 && (r == 0 || r == -libc::ENOTCONN) {
            ev &= !(libc::EPOLLIN as u32);
        }
        if ev & libc::EPOLLOUT as u32 != 0 && !self.vcl.write_ready(sh) {
            ev &= !(libc::EPOLLOUT as u32);
        }
        let meaningful =
            (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32;
        if ev & meaningful == 0 {
            0
        } else {
            ev
        }
    }

    /// Routes one event with session token `token` seen while waiting on
    /// set `ep_vlsh`: written to `out[0]` with the application's data if the
    /// session is in this set and the event still holds (returns 1), parked
    /// on its own set if it is in another, dropped otherwise (returns 0).
    /// Called with the worker locks held.
    fn deliver(&self, ep_vlsh: Vlsh, events: u32, token: u64, out: &mut [libc::epoll_event]) -> usize {
        let Some(s) = i32::try_from(token).ok().and_then(|v| self.pool.get(v)) else { return 0 };
        match s.membership.set() {
            Some(set) if set == ep_vlsh => {
                let events = self.still_ready(s, events);
                if events == 0 {
                    return 0;
                }
                tracing::trace!(session = s.vlsh, set = ep_vlsh, events, "event delivered");
                out[0] = libc::epoll_event { events, u64: s.membership.data() };
                1
            }
            Some(other) => {
                tracing::trace!(session = s.vlsh, from = ep_vlsh, to = other, "event parked for its own set");
                self.park(events, token);
                0
            }
            None => 0,
        }
    }

    /// Runs `f` (a VCL call that may wait for VPP without calling the wait
    /// hooks) as a sleep of the session-pool read lock, when `may_wait` and
    /// the locks are in use.
    fn sleeping_in_vcl<T>(&'static self, may_wait: bool, f: impl FnOnce() -> T) -> T {
        if may_wait && self.shares_worker() {
            self.mt_locks().sleeping_in_vcl(f)
        } else {
            f()
        }
    }

    /// `vls_select`.
    ///
    /// # Safety
    /// Maps null or valid for `n_bits` bits.
    pub unsafe fn select(
        &'static self,
        n_bits: i32,
        r: *mut c_ulong,
        w: *mut c_ulong,
        e: *mut c_ulong,
        wait: f64,
    ) -> i32 {
        self.detect_thread();
        self.clean_up_exited_children();
        let _g = self.op_locks(OpKind::Xpoll, None);
        // SAFETY: forwarded contract (the read map is null or `n_bits` bits).
        unsafe { self.shared_listeners_selected(r, n_bits) };
        // SAFETY: forwarded contract.
        let rv = self.sleeping_in_vcl(wait != 0.0, || unsafe { self.vcl.select(n_bits, r, w, e, wait) });
        if rv <= 0 {
            return rv;
        }
        // VCL counts a session once for its ready state and again for every
        // RX/TX event still queued for it, so its total can exceed the bits
        // it set. select(2) returns the number of bits set; LDP passes this
        // value on to the application as is.
        // SAFETY: forwarded contract (each map null or `n_bits` bits).
        unsafe { count_set_bits(r, n_bits) + count_set_bits(w, n_bits) + count_set_bits(e, n_bits) }
    }

    /// `vls_poll`.
    ///
    /// # Safety
    /// `vp` valid for `n` entries.
    pub unsafe fn poll(&'static self, vp: *mut c_void, n: u32, wait: f64) -> i32 {
        self.detect_thread();
        self.clean_up_exited_children();
        let _g = self.op_locks(OpKind::Xpoll, None);
        // SAFETY: forwarded contract.
        unsafe { self.shared_listeners_polled(vp, n) };
        // SAFETY: forwarded contract.
        self.sleeping_in_vcl(wait != 0.0, || unsafe { self.vcl.poll(vp, n, wait) })
    }

    // ------------------------------------------------------------------
    // handle conversions and small accessors
    // ------------------------------------------------------------------

    /// `vlsh_to_sh`: the VCL handle, or `INVALID` (`~0`).
    pub fn vlsh_to_sh(&'static self, vlsh: Vlsh) -> Sh {
        self.detect_thread();
        self.pool.get(vlsh).map(|s| s.sh()).unwrap_or(INVALID)
    }

    /// `vlsh_to_session_and_worker_index`: (session index, worker index),
    /// both `~0` for an unknown handle.
    pub fn vlsh_to_session_and_worker(&'static self, vlsh: Vlsh) -> (u32, u32) {
        match self.vlsh_to_sh(vlsh) {
            INVALID => (INVALID, INVALID),
            sh => {
                let (w, s) = sh_parts(sh);
                (s, w)
            }
        }
    }

    /// `vls_session_index_to_vlsh` on the calling thread's worker.
    pub fn session_index_to_vlsh(&'static self, session_index: u32) -> Vlsh {
        self.detect_thread();
        let wrk = self.vcl.worker_index();
        if wrk == INVALID {
            return INVALID_VLSH;
        }
        self.pool.vlsh_of(sh_from_parts(wrk, session_index)).unwrap_or(INVALID_VLSH)
    }

    /// `vls_set_libc_epfd`.
    pub fn set_libc_epfd(&'static self, ep_vlsh: Vlsh, fd: i32) -> i32 {
        self.detect_thread();
        match self.pool.get(ep_vlsh) {
            Some(s) if !s.lock().closed() => {
                s.libc_epfd.store(fd, Ordering::Release);
                0
            }
            _ => EBADFD,
        }
    }

    /// `vls_get_libc_epfd`: read without the session lock (another thread
    /// may be blocked on the session while this one closes it).
    pub fn get_libc_epfd(&'static self, ep_vlsh: Vlsh) -> i32 {
        self.detect_thread();
        self.pool.get(ep_vlsh).map(|s| s.libc_epfd.load(Ordering::Acquire)).unwrap_or(EBADFD)
    }

    /// `vls_set_epoll_fns`.
    pub fn set_epoll_fns(&self, fns: EpollFns) {
        self.vcl.set_epoll_fns(fns);
    }

    /// The session behind `vlsh` (for the safe API and tests).
    pub fn session(&self, vlsh: Vlsh) -> Option<&VlsSession> {
        self.pool.get(vlsh)
    }
}

/// `sh` is a session of worker `wrk`.
#[inline]
fn on_worker(sh: Sh, wrk: u32) -> bool {
    sh != INVALID && sh_parts(sh).0 == wrk
}

/// Number of bits set among the first `n_bits` bits of a select(2)-style
/// map of `c_ulong` words (0 for a null map or a non-positive `n_bits`).
///
/// # Safety
/// `map` is null or valid for reads of `n_bits` bits rounded up to whole words.
unsafe fn count_set_bits(map: *const c_ulong, n_bits: i32) -> i32 {
    if map.is_null() || n_bits <= 0 {
        return 0;
    }
    let word_bits = c_ulong::BITS as usize;
    let n_bits = n_bits as usize;
    // SAFETY: caller guarantees `n_bits` bits rounded up to whole words.
    let words = unsafe { std::slice::from_raw_parts(map, n_bits.div_ceil(word_bits)) };
    let mut count = 0;
    for (i, &w) in words.iter().enumerate() {
        let valid = n_bits - i * word_bits;
        let w = if valid < word_bits { w & ((1 << valid) - 1) } else { w };
        count += w.count_ones() as i32;
    }
    count
}

/// glibc's `PTHREAD_CANCEL_DISABLE` (not exported by the `libc` crate).
const PTHREAD_CANCEL_DISABLE: i32 = 1;

extern "C" {
    fn pthread_setcancelstate(state: i32, oldstate: *mut i32) -> i32;
}

fn disable_cancellation() {
    let mut old = 0;
    // SAFETY: changes only the calling thread's cancel state; `old` is a
    // valid out pointer.
    unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) };
}

impl<V: Vcl> RpcHandler for Vls<V> {
    /// Runs on this worker's own thread, inside the VCL call in which it
    /// handles its message queue.
    fn handle_rpc(&'static self, msg: &[u8]) {
        let me = self.vcl.worker_index();
        match Rpc::decode(msg) {
            Some(Rpc::Move { id, session_index }) => {
                // Refused (does nothing) if the mover gave up already.
                self.rpcs.answer(id, || self.vcl.move_out(me, session_index));
            }
            Some(Rpc::Close { session_index }) => {
                self.vcl.close(sh_from_parts(me, session_index));
            }
            None => {}
        }
    }
}

std::thread_local! {
    /// The calling thread's current call waited inside VCL (set by the
    /// post-wait hook; see [`Vls::route_events_after_a_wait`]).
    static WAITED_IN_VCL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl<V: Vcl> WaitHooks for Vls<V> {
    fn pre_wait(&'static self, sh: Sh) {
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
            // was the only thread, see `may_wait_in_vcl`).
            self.mt_locks().before_wait();
        }
    }

    fn post_wait(&'static self, _sh: Sh) {
        let _ = self.waiting_in_vcl.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        WAITED_IN_VCL.set(true);
        if self.mt_workers.load(Ordering::Relaxed) {
            return;
        }
        self.mt_locks().after_wait();
    }
}
