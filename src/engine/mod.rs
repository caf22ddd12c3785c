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

mod access;
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
mod readiness;
mod session_lock;
pub mod solo;
#[cfg(test)]
mod tests;

use std::ffi::{c_char, c_ulong, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::VppcomError;
use crate::handle::{sh_from_parts, sh_parts, Sh, INVALID};
use crate::handle::{Vlsh, INVALID_VLSH};
use crate::seam::{EpollFns, Vcl};
use locks::{MtLocks, OpKind};
use migrate::{Gate, Gates, Rpc, RpcTable, RPC_TIMEOUT};
use pool::{SessionPool, VlsSession};

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

/// How VLS maps the application's threads and processes to VCL workers.
///
/// The numbers are those of the C layer's design (`vcl_locked.c`). A
/// process can be in mode 1 and in mode 2 or 3 at once (a forked child with
/// several threads); [`Vls::mode`] reports the thread mode first.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One thread, one process so far: no locks needed, nothing shared.
    SingleThread,
    /// Mode 1: the process forked after it attached, or is a forked child,
    /// and one thread uses VLS: every process has its own VCL worker and
    /// sessions opened before a fork are shared by the processes.
    PerProcessWorkers,
    /// Mode 2, `multi-thread-workers`: every thread has its own VCL worker.
    PerThreadWorkers,
    /// Mode 3: several threads share the process's one VCL worker (locks
    /// on).
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

    #[cfg(test)]
    /// The session pool (for diagnostics and tests).
    pub fn pool(&self) -> &SessionPool {
        &self.pool
    }

    #[cfg(test)]
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
        } else if self.shared.get().is_some() {
            Mode::PerProcessWorkers
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
        self.with_session(vlsh, OpKind::MessageQueue, |sh| unsafe { self.vcl.bind(sh, ep) })
    }

    /// `vls_listen`.
    pub fn listen(&'static self, vlsh: Vlsh, q_len: i32) -> i32 {
        self.with_session(vlsh, OpKind::MessageQueue, |sh| self.vcl.listen(sh, q_len.max(0) as u32))
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
        let rv = self.with_session(vlsh, OpKind::MessageQueue, |sh| {
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
            let state = self.with_session(vlsh, OpKind::MessageQueue, |sh| {
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

    /// `vls_set_epoll_fns`.
    pub fn set_epoll_fns(&self, fns: EpollFns) {
        self.vcl.set_epoll_fns(fns);
    }

    #[cfg(test)]
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
