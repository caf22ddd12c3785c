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
//! non-blocking read or write, an `epoll_ctl` and an epoll wait that does
//! not wait (LDP's drain, timeout 0) skip steps 2 and 3 (`solo`: no lock,
//! a handshake with the second thread when it arrives).
//!
//! Around `fork` (and for sessions shared between the processes that
//! results in), see [`fork`] (shared state, SIGCHLD) and `fork_hooks`
//! (what VLS does in parent and child, close and exit of shared sessions,
//! cleanup after exited children).

mod access;
#[cfg(feature = "vpp")]
pub(crate) use access::lock_free_on;
mod delivery;
pub mod demux;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod double;
pub mod fork;
mod fork_hooks;
mod handover_gate;
mod kept;
pub mod locks;
pub mod migrate;
mod moving;
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) mod ops;
pub mod pool;
mod quiet;
#[cfg(test)]
mod random_ops;
mod readiness;
mod select;
mod session_lock;
mod sessions;
mod sigchld;
pub mod solo;
#[cfg(test)]
mod tests;
mod threads;

#[cfg(feature = "vpp")]
pub use fork_hooks::SUBSCRIBER_POLL;

use std::ffi::c_ulong;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::VppcomError;
use crate::handle::{sh_from_parts, sh_parts, Sh, INVALID};
use crate::handle::{Vlsh, INVALID_VLSH};
use crate::seam::{EpollFns, Vcl};
use locks::{MtLocks, OpKind};
use migrate::{Gate, Moves, Rpc};
use pool::{SessionPool, VlsSession};
use threads::{ExitKey, Teardown};

const EBADFD: i32 = -libc::EBADFD;
const EINVAL: i32 = -libc::EINVAL;
const EAGAIN: i32 = -libc::EAGAIN;
/// `wait_for_time` with which LDP asks only for already-known events.
const DRAIN_ONLY: i32 = -2;

/// Returns `rv`, what an operation on `vlsh` returned, tracing it if it is
/// an error. `EAGAIN` is an answer, not an error (and the hot path of
/// non-blocking I/O): not traced.
#[inline(always)]
fn traced(vlsh: Vlsh, op: OpKind, rv: i32) -> i32 {
    // One test on the hot path; `EAGAIN` is told apart in the cold call.
    if rv < 0 {
        log_error(vlsh, op, rv);
    }
    rv
}

/// Traces an error other than `EAGAIN` (out of the hot path). Never
/// unwinds (it runs where nothing else can panic).
#[cold]
#[inline(never)]
fn log_error(vlsh: Vlsh, op: OpKind, rv: i32) {
    if rv == EAGAIN {
        return;
    }
    let _ = std::panic::catch_unwind(|| {
        tracing::debug!(vlsh, ?op, rv = %VppcomError::from_raw(rv), "error returned");
    });
}

/// How VLS maps the application's threads and processes to VCL workers.
///
/// The numbers are those of the C layer's design (`vcl_locked.c`). A
/// process can be in mode 1 and in mode 2 or 3 at once (a forked child with
/// several threads); `Vls::mode` reports the thread mode first.
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
    /// Set once a second thread shows up (threads share the worker from
    /// then on: the direct path, the wait hooks' extra work).
    needs_locks: AtomicBool,
    /// Until then, the one thread's non-blocking I/O takes no lock at all.
    /// (The process-wide VLS's is a static: see `crate::process`.)
    solo: &'static solo::Solo,
    /// Lock-free epoll waits made so far (their stamps; see
    /// `epoll_wait_lock_free`). Written by the solo thread only.
    lock_free_waits: std::sync::atomic::AtomicU64,
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
    /// Per-thread workers: how sessions move between workers.
    moves: Moves<V::Moved>,
    /// Threads inside a VCL wait (between the wait hooks) right now.
    waiting_in_vcl: AtomicU32,
    /// VCL is detaching the worker from a VPP that is gone: set by the
    /// detaching thread's pre-wait hook, cleared by its post-wait hook once
    /// it holds the worker's locks again (see `WaitHooks for Vls`). Meanwhile
    /// no thread may call VCL's epoll wait, select or poll.
    detaching: AtomicBool,
    /// Threads in a blocking accept that found nothing and waits in VLS
    /// (see `Vls::accept`) right now.
    waiting_to_accept: AtomicU32,
    /// Per-process workers: what fork and the sharing of sessions between
    /// processes need.
    forks: fork_hooks::Forks,
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

impl<V: Vcl> Vls<V> {
    /// A VLS over `vcl`. It must live for the rest of the process (VCL keeps
    /// pointers to it), hence `&'static`.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn new_static(vcl: V) -> &'static Self {
        Self::new_static_with(vcl, Box::leak(Box::new(solo::Solo::new(solo::leaked_words()))))
    }

    /// `Vls::new_static` with the single-thread fast path's state in
    /// `solo` (not started, its table all 0, used by no other VLS).
    pub fn new_static_with(vcl: V, solo: &'static solo::Solo) -> &'static Self {
        Box::leak(Box::new(Vls {
            vcl,
            pool: SessionPool::new(solo.words()),
            locks: std::sync::atomic::AtomicPtr::new(Box::into_raw(Box::default())),
            n_threads: AtomicU32::new(0),
            needs_locks: AtomicBool::new(false),
            solo,
            lock_free_waits: std::sync::atomic::AtomicU64::new(0),
            mt_workers: AtomicBool::new(false),
            process_wrk: AtomicU32::new(INVALID),
            app_created: AtomicBool::new(false),
            internal_ep: AtomicU32::new(INVALID),
            exit_key: ExitKey::new(),
            worker_teardown: std::sync::Mutex::new(Teardown::Pending),
            moves: Moves::default(),
            waiting_in_vcl: AtomicU32::new(0),
            waiting_to_accept: AtomicU32::new(0),
            detaching: AtomicBool::new(false),
            forks: fork_hooks::Forks::default(),
        }))
    }

    /// How long a session move waits for the owner's answer (per-thread
    /// workers).
    pub fn rpc_timeout(&self) -> Duration {
        Duration::from_millis(self.moves.rpc_timeout_ms.load(Ordering::Relaxed))
    }

    /// Sets [`Self::rpc_timeout`] (`VLS_RPC_TIMEOUT_MS` does it at app
    /// creation; tests use a short one).
    pub fn set_rpc_timeout(&self, d: Duration) {
        self.moves.rpc_timeout_ms.store(d.as_millis().clamp(1, u64::MAX as u128) as u64, Ordering::Relaxed);
    }

    /// Threads blocked inside VCL (a blocking read, write, accept, ...)
    /// right now: a diagnostic, and what tests wait for instead of assuming
    /// a thread has blocked by now.
    pub fn threads_waiting_in_vcl(&self) -> u32 {
        self.waiting_in_vcl.load(Ordering::SeqCst)
    }

    /// Threads in a blocking accept waiting for a connection right now (VLS
    /// waits for those itself in modes 1 and 3; see [`Self::accept`]).
    pub fn threads_waiting_to_accept(&self) -> u32 {
        self.waiting_to_accept.load(Ordering::SeqCst)
    }

    /// The VCL implementation underneath.
    pub fn vcl(&self) -> &V {
        &self.vcl
    }

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
        } else if self.forks.shared.get().is_some() {
            Mode::PerProcessWorkers
        } else {
            Mode::SingleThread
        }
    }
}

/// `sh` is a session of worker `wrk`.
#[inline]
fn on_worker(sh: Sh, wrk: u32) -> bool {
    sh != INVALID && sh_parts(sh).0 == wrk
}

/// Words of a select map kept without a heap allocation (1024 bits, the
/// usual `FD_SETSIZE`): `select` copies its three maps on every call.
const INLINE_MAP_WORDS: usize = 1024 / c_ulong::BITS as usize;

/// A copy of the first words of a select map (see [`copy_bits`]).
enum MapCopy {
    Inline([c_ulong; INLINE_MAP_WORDS], usize),
    Heap(Vec<c_ulong>),
}

impl std::ops::Deref for MapCopy {
    type Target = [c_ulong];
    fn deref(&self) -> &[c_ulong] {
        match self {
            MapCopy::Inline(w, n) => &w[..*n],
            MapCopy::Heap(v) => v,
        }
    }
}

/// The words holding the first `n_bits` bits of a select map (none for a
/// null map).
///
/// # Safety
/// `map` null or valid for `n_bits` bits rounded up to whole words.
unsafe fn copy_bits(map: *const c_ulong, n_bits: i32) -> MapCopy {
    if map.is_null() || n_bits <= 0 {
        return MapCopy::Inline([0; INLINE_MAP_WORDS], 0);
    }
    let words = (n_bits as usize).div_ceil(c_ulong::BITS as usize);
    // SAFETY: caller guarantees `words` whole words.
    let src = unsafe { std::slice::from_raw_parts(map, words) };
    if words <= INLINE_MAP_WORDS {
        let mut w = [0; INLINE_MAP_WORDS];
        w[..words].copy_from_slice(src);
        MapCopy::Inline(w, words)
    } else {
        MapCopy::Heap(src.to_vec())
    }
}

/// Clears the bits of a select map that are not set in `keep` (a copy of
/// its first words; see [`copy_bits`]).
///
/// # Safety
/// `map` null or valid for `keep.len()` words.
unsafe fn keep_bits(map: *mut c_ulong, keep: &[c_ulong]) {
    if map.is_null() {
        return;
    }
    // SAFETY: caller guarantees `keep.len()` whole words.
    let words = unsafe { std::slice::from_raw_parts_mut(map, keep.len()) };
    for (w, k) in words.iter_mut().zip(keep) {
        *w &= k;
    }
}

/// Clears the first `n_bits` bits of a select map (whole words).
///
/// # Safety
/// `map` null or valid for `n_bits` bits rounded up to whole words.
unsafe fn clear_bits(map: *mut c_ulong, n_bits: i32) {
    if map.is_null() || n_bits <= 0 {
        return;
    }
    let words = (n_bits as usize).div_ceil(c_ulong::BITS as usize);
    // SAFETY: caller guarantees `words` whole words.
    unsafe { std::ptr::write_bytes(map, 0, words) };
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
