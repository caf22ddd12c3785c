//! Worker-level locks of mode 3 (one VCL worker shared by many threads).
//!
//! Two process-wide locks protect the shared VCL worker:
//!
//! - the **mq lock** (a mutex) serialises everything that consumes the
//!   worker's message queue or walks its per-worker epoll state: epoll
//!   wait/ctl, select, poll, listen, connect, and reads/writes that would
//!   block;
//! - the **session-pool lock** ([`SpoolLock`], a writer-favouring rwlock)
//!   is taken for reading by every operation that touches a VCL session and
//!   for writing by those that allocate or free VCL sessions (create,
//!   accept, close, shutdown), because those may move the session pool.
//!
//! Order: session lock (see `pool.rs`) → mq lock → session-pool lock. No
//! thread ever waits for the mq lock while holding the session-pool lock.
//!
//! The guards an operation holds live in a thread-local `Held` record, not
//! on the operation's stack, because VCL calls back into VLS from inside a
//! blocking wait ([`MtLocks::before_wait`], [`MtLocks::after_wait`]) and
//! those callbacks must release and retake the mq lock the operation took.
//! [`OpLocks`] is the operation's handle on that record: dropping it releases
//! whatever the thread still holds, and so does the thread-local destructor
//! when a thread exits while holding locks.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::{PoisonError, TryLockError};
use std::time::{Duration, Instant};

// The lock protocol is model-checked with `loom` (`--cfg loom`, see the
// `loom_models` tests below), so its primitives come from `loom` there.
#[cfg(loom)]
use loom::{
    sync::atomic::{AtomicUsize, Ordering},
    sync::{Mutex, MutexGuard},
    thread::yield_now,
    thread_local,
};
#[cfg(not(loom))]
use std::{
    sync::atomic::{AtomicUsize, Ordering},
    sync::{Mutex, MutexGuard},
    thread::yield_now,
};

/// Busy-wait step: a CPU hint for a few rounds, then a yield (always a
/// yield under loom, which must see every wait).
#[inline]
fn backoff(round: u32) {
    if cfg!(loom) || round >= 64 {
        yield_now();
    } else {
        std::hint::spin_loop();
    }
}

/// Lock waits longer than this are reported with `tracing`.
const SLOW_WAIT: Duration = Duration::from_millis(100);

/// What an operation does to the shared worker; decides which locks it takes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Reads from one session (may block waiting for data).
    Read,
    /// Writes to one session (may block waiting for space).
    Write,
    /// Allocates or frees VCL sessions.
    SessionPool,
    /// Reads or sets a session attribute (never blocks).
    Attr,
    /// Uses the worker's message queue or epoll state: epoll create, ctl
    /// and wait, select, poll, and the calls that send a request to VPP and
    /// read its reply from the queue (bind, listen, connect).
    MessageQueue,
}

/// Writer-favouring reader-writer lock over VCL's session pool, built so
/// that readers on different threads do not share a cache line.
///
/// Almost every call takes this lock for reading; few (create, accept,
/// close, shutdown) take it for writing. A reader counts itself in its
/// thread's slot (one cache line each, threads spread over [`SLOTS`]
/// slots), so two threads working on different sessions never write the
/// same memory. A writer announces itself in `writers` and waits until every
/// slot is empty.
///
/// Invariants:
/// - `writers` counts threads inside [`SpoolLock::write`] or holding the
///   write lock; it only changes by atomic read-modify-write, so concurrent
///   writers can never leave it non-zero with no writer (which would stall
///   every reader).
/// - A reader increments its slot, *then* checks `writers`; a writer
///   increments `writers`, *then* checks the slots (all `SeqCst`). So either
///   the reader sees the writer and backs out, or the writer sees the
///   reader and waits for it: never both inside.
/// - New readers wait while `writers` is non-zero, so a stream of readers
///   cannot starve a writer. Writers are serialised by `exclusive` and
///   count in `writers` only once they hold it.
/// - Exception to writer preference: while a reader sleeps inside a VCL
///   call that waits for VPP without calling the wait hooks (a blocking
///   connect, an epoll/select/poll wait; see [`MtLocks::sleeping_in_vcl`])
///   holding the lock (`sleeping` > 0), a waiting writer withdraws from
///   `writers`. The sleeper may be waiting for something only a new reader
///   can cause (another thread's write, or a peer process that waits for
///   it), and the writer cannot get in before the sleeper leaves anyway.
///   Such calls hold the mq lock too, so there is at most one sleeper and
///   the writer gets its turn when it leaves. `sleeping` > 0 implies some
///   slot is non-zero, so no writer holds the lock then.
pub struct SpoolLock {
    readers: [Slot; SLOTS],
    writers: AtomicUsize,
    /// Readers that hold the lock while sleeping inside VCL (a blocking
    /// read or write waiting for data or space).
    sleeping: Slot,
    exclusive: Mutex<()>,
    /// Slot numbers handed out under loom (a counter inside the model, so
    /// every execution makes the same choices).
    #[cfg(loom)]
    next_slot: AtomicUsize,
}

/// Number of reader slots (fewer under loom, which explores every one).
#[cfg(not(loom))]
pub const SLOTS: usize = 16;
/// Number of reader slots (fewer under loom, which explores every one).
#[cfg(loom)]
pub const SLOTS: usize = 2;

/// One reader count on a cache line of its own.
#[repr(align(128))]
struct Slot(AtomicUsize);

/// Source of the per-thread slot numbers.
#[cfg(not(loom))]
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

#[cfg(not(loom))]
std::thread_local! {
    /// The calling thread's reader slot (round-robin by first use;
    /// `usize::MAX` until then). Constant-initialised and without a
    /// destructor: reading it is a plain thread-local access.
    static MY_SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(usize::MAX) };
}

/// The calling thread's reader slot.
#[cfg(not(loom))]
#[inline]
fn my_slot() -> usize {
    MY_SLOT.with(|s| {
        let slot = s.get();
        if slot != usize::MAX {
            return slot;
        }
        let slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % SLOTS;
        s.set(slot);
        slot
    })
}

#[cfg(loom)]
thread_local! {
    /// The calling loom thread's reader slot, once chosen.
    static LOOM_SLOT: std::cell::Cell<Option<usize>> = std::cell::Cell::new(None);
}

/// Shared access to the session pool; released on drop.
#[must_use]
pub struct SpoolReadGuard<'a> {
    lock: &'a SpoolLock,
    slot: usize,
}

impl Drop for SpoolReadGuard<'_> {
    fn drop(&mut self) {
        self.lock.readers[self.slot].0.fetch_sub(1, Ordering::Release);
    }
}

/// Exclusive access to the session pool; released on drop.
#[must_use]
pub struct SpoolWriteGuard<'a> {
    lock: &'a SpoolLock,
    _exclusive: MutexGuard<'a, ()>,
}

impl Drop for SpoolWriteGuard<'_> {
    fn drop(&mut self) {
        self.lock.writers.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Default for SpoolLock {
    fn default() -> Self {
        SpoolLock {
            readers: std::array::from_fn(|_| Slot(AtomicUsize::new(0))),
            writers: AtomicUsize::new(0),
            sleeping: Slot(AtomicUsize::new(0)),
            exclusive: Mutex::new(()),
            #[cfg(loom)]
            next_slot: AtomicUsize::new(0),
        }
    }
}

impl Default for MtLocks {
    fn default() -> Self {
        MtLocks { mq: Mutex::new(()), spool: SpoolLock::default() }
    }
}

impl SpoolLock {
    /// Shared access; waits first for pending writers.
    #[inline]
    pub fn read(&self) -> SpoolReadGuard<'_> {
        let slot = self.my_slot();
        let mut round = 0u32;
        loop {
            while self.writers.load(Ordering::SeqCst) != 0 {
                backoff(round);
                round = round.saturating_add(1);
            }
            self.readers[slot].0.fetch_add(1, Ordering::SeqCst);
            if self.writers_after_increment() == 0 {
                return SpoolReadGuard { lock: self, slot };
            }
            // A writer came in between: let it go first.
            self.readers[slot].0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Exclusive access.
    pub fn write(&self) -> SpoolWriteGuard<'_> {
        let exclusive = self.exclusive.lock().unwrap_or_else(PoisonError::into_inner);
        let mut round = 0u32;
        'announce: loop {
            self.writers.fetch_add(1, Ordering::SeqCst);
            for slot in &self.readers {
                while slot.0.load(Ordering::SeqCst) != 0 {
                    if self.sleeping.0.load(Ordering::SeqCst) != 0 {
                        // A reader holds the lock across a sleep in VCL and
                        // may be waiting for what a blocked new reader would
                        // do (possibly in another process): stop blocking new
                        // readers until it wakes up.
                        self.writers.fetch_sub(1, Ordering::SeqCst);
                        while self.sleeping.0.load(Ordering::SeqCst) != 0 {
                            backoff(round);
                            round = round.saturating_add(1);
                        }
                        continue 'announce;
                    }
                    backoff(round);
                    round = round.saturating_add(1);
                }
            }
            return SpoolWriteGuard { lock: self, _exclusive: exclusive };
        }
    }

    /// Exclusive access if nobody holds the lock nor waits for it now;
    /// never waits.
    pub fn try_write(&self) -> Option<SpoolWriteGuard<'_>> {
        let exclusive = self.exclusive.try_lock().ok()?;
        self.writers.fetch_add(1, Ordering::SeqCst);
        // (A reader increments its slot, then looks at `writers`: one that
        // is not seen here backs out.)
        if self.readers.iter().all(|slot| slot.0.load(Ordering::SeqCst) == 0) {
            return Some(SpoolWriteGuard { lock: self, _exclusive: exclusive });
        }
        self.writers.fetch_sub(1, Ordering::SeqCst);
        None
    }

    /// The calling thread, holding the lock for reading, starts sleeping in
    /// VCL (see [`SpoolLock::write`]).
    fn sleep_begins(&self) {
        self.sleeping.0.fetch_add(1, Ordering::SeqCst);
    }

    /// The sleep announced by `sleep_begins` is over.
    fn sleep_ends(&self) {
        self.sleeping.0.fetch_sub(1, Ordering::SeqCst);
    }

    /// The calling thread's reader slot.
    #[inline]
    fn my_slot(&self) -> usize {
        #[cfg(not(loom))]
        {
            my_slot()
        }
        #[cfg(loom)]
        {
            LOOM_SLOT.with(|c| {
                c.get().unwrap_or_else(|| {
                    let s = self.next_slot.fetch_add(1, Ordering::Relaxed) % SLOTS;
                    c.set(Some(s));
                    s
                })
            })
        }
    }

    /// `writers`, read after this reader's slot increment and ordered
    /// after it. All four accesses of the reader/writer handshake are
    /// `SeqCst`, so they fall in one total order and a plain load suffices.
    /// `loom` models `SeqCst` as acquire/release only, under which a load
    /// could miss the writer; there the check is a read-modify-write, which
    /// is correct with acquire/release alone (RMWs of one location are
    /// totally ordered). Readers never write `writers` outside loom.
    #[inline]
    fn writers_after_increment(&self) -> usize {
        #[cfg(loom)]
        {
            self.writers.fetch_add(0, Ordering::SeqCst)
        }
        #[cfg(not(loom))]
        {
            self.writers.load(Ordering::SeqCst)
        }
    }

    #[cfg(test)]
    /// Writers waiting for or holding the lock (for tests and diagnostics).
    pub fn pending_writers(&self) -> usize {
        self.writers.load(Ordering::Acquire)
    }
}

/// The worker-level locks of one non-blocking read or write (see
/// [`MtLocks::nonblocking_io`]); released on drop, pool lock first.
#[must_use]
pub struct NonblockingIoGuard<'a> {
    _spool: SpoolReadGuard<'a>,
    _mq: Option<MutexGuard<'a, ()>>,
}

/// Both worker-level locks, held exclusively ([`MtLocks::try_lock_all`]);
/// released on drop, pool lock first.
#[must_use]
pub struct AllLocks<'a> {
    _spool: SpoolWriteGuard<'a>,
    _mq: MutexGuard<'a, ()>,
}

/// The two worker-level locks of one process.
pub struct MtLocks {
    mq: Mutex<()>,
    spool: SpoolLock,
}

/// Guards the calling thread holds on the worker-level locks.
#[derive(Default)]
struct Held {
    mq: Option<MutexGuard<'static, ()>>,
    spool_read: Option<SpoolReadGuard<'static>>,
    spool_write: Option<SpoolWriteGuard<'static>>,
    /// The mq lock was released by `before_wait` and must be retaken.
    mq_dropped_for_wait: bool,
    /// The session-pool write lock was released by `before_wait` (a
    /// blocking accept or connect) and must be retaken.
    write_dropped_for_wait: bool,
    /// This thread announced a sleep in VCL with the read lock held
    /// ([`SpoolLock::sleep_begins`]) on this lock.
    sleeping_on: Option<&'static SpoolLock>,
}

impl Held {
    /// Ends an announced sleep, if any.
    fn end_sleep(&mut self) {
        if let Some(l) = self.sleeping_on.take() {
            l.sleep_ends();
        }
    }

    /// Releases in reverse order of acquisition.
    fn release_all(&mut self) {
        self.end_sleep();
        self.spool_read = None;
        self.spool_write = None;
        self.mq = None;
        self.mq_dropped_for_wait = false;
        self.write_dropped_for_wait = false;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Thread exit while holding locks: release them (fields would drop
        // anyway; this keeps the order explicit).
        self.release_all();
    }
}

thread_local! {
    static HELD: RefCell<Held> = RefCell::new(Held::default());
}

/// The calling thread's hold on the worker-level locks for one operation.
/// Not `Send`: it refers to thread-local state.
#[must_use]
pub struct OpLocks {
    /// The guards themselves when the thread-local record is gone (a call
    /// made from another thread-local's destructor as the thread ends); VCL
    /// waits of such a call keep the locks held.
    unrecorded: Option<Held>,
    _not_send: PhantomData<*const ()>,
}

impl Drop for OpLocks {
    fn drop(&mut self) {
        match self.unrecorded.take() {
            Some(mut held) => held.release_all(),
            None => {
                let _ = HELD.try_with(|h| h.borrow_mut().release_all());
            }
        }
    }
}

fn timed<T>(what: &'static str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let r = f();
    let waited = start.elapsed();
    if waited > SLOW_WAIT {
        tracing::debug!(lock = what, waited_ms = waited.as_millis() as u64, "slow lock wait");
    }
    r
}

impl MtLocks {
    /// Takes the locks `op` needs.
    ///
    /// `ready` tells whether the operation's session can proceed without
    /// blocking (non-blocking, or data/space available); it is only called
    /// with the session-pool lock held for reading. A read or write that is
    /// ready does not take the mq lock, so threads working on different
    /// ready sessions do not serialise.
    ///
    /// `locked` runs once after each acquisition, before anything looks at
    /// VCL (`ready` included): the engine ends another thread's
    /// single-thread period there (see `Vls::end_others_solo_period`).
    pub fn acquire_then(&'static self, op: OpKind, locked: impl Fn(), ready: impl Fn() -> bool) -> OpLocks {
        let mut taken = Held::default();
        self.take(op, &locked, ready, &mut taken);
        // Recorded for the wait hooks, unless this thread's record is
        // already destroyed (the thread is ending).
        let recorded = HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            debug_assert!(h.mq.is_none() && h.spool_read.is_none() && h.spool_write.is_none());
            std::mem::swap(&mut *h, &mut taken);
        });
        OpLocks { unrecorded: recorded.is_err().then_some(taken), _not_send: PhantomData }
    }

    /// [`MtLocks::acquire_then`] with nothing to run after each acquisition.
    #[cfg(test)]
    pub fn acquire(&'static self, op: OpKind, ready: impl Fn() -> bool) -> OpLocks {
        self.acquire_then(op, || {}, ready)
    }

    /// Takes the locks `op` needs into `h` (see [`MtLocks::acquire_then`]).
    fn take(&'static self, op: OpKind, locked: &impl Fn(), ready: impl Fn() -> bool, h: &mut Held) {
        {
            match op {
                OpKind::Read | OpKind::Write => {
                    let r = self.spool.read();
                    locked();
                    if ready() {
                        h.spool_read = Some(r);
                        return;
                    }
                    drop(r);
                    // Wait for the mq lock, but stop waiting if the session
                    // becomes ready meanwhile.
                    let start = Instant::now();
                    loop {
                        if let Ok(g) = self.mq.try_lock() {
                            h.mq = Some(g);
                            break;
                        }
                        let r = self.spool.read();
                        locked();
                        if ready() {
                            h.spool_read = Some(r);
                            return;
                        }
                        drop(r);
                        yield_now();
                    }
                    if start.elapsed() > SLOW_WAIT {
                        tracing::debug!(
                            lock = "mq",
                            waited_ms = start.elapsed().as_millis() as u64,
                            "slow lock wait"
                        );
                    }
                    h.spool_read = Some(self.spool.read());
                    locked();
                }
                OpKind::Attr => {
                    h.spool_read = Some(self.spool.read());
                    locked();
                }
                OpKind::MessageQueue => {
                    h.mq = Some(self.lock_mq());
                    h.spool_read = Some(self.spool.read());
                    locked();
                }
                OpKind::SessionPool => {
                    h.spool_write = Some(timed("spool", || self.spool.write()));
                    locked();
                }
            }
        }
    }

    /// Runs `f`, a VCL call that may wait for VPP without calling the wait
    /// hooks (a blocking connect, an epoll wait, select or poll with a
    /// timeout), as a sleep of this thread's session-pool read lock: a
    /// writer waiting meanwhile lets new readers in (see [`SpoolLock`]).
    pub fn sleeping_in_vcl<T>(&'static self, f: impl FnOnce() -> T) -> T {
        let announced = HELD
            .try_with(|h| {
                let mut h = h.borrow_mut();
                if h.spool_read.is_some() && h.sleeping_on.is_none() {
                    self.spool.sleep_begins();
                    h.sleeping_on = Some(&self.spool);
                    true
                } else {
                    false
                }
            })
            .unwrap_or(false);
        // Ends the announced sleep on every way out of `f`.
        struct SleepEnds(bool);
        impl Drop for SleepEnds {
            fn drop(&mut self) {
                if self.0 {
                    let _ = HELD.try_with(|h| h.borrow_mut().end_sleep());
                }
            }
        }
        let _ends = SleepEnds(announced);
        f()
    }

    /// VCL is about to sleep on the message queue: let other threads use it.
    ///
    /// The mq lock is released. So is the session-pool *write* lock of a
    /// blocking accept/connect (VCL touches no session while it waits for
    /// a control event, and holding it would stall every other thread until
    /// a peer shows up). The session-pool *read* lock of a blocking read or
    /// write stays held: VCL keeps a pointer to the session across the wait.
    /// It is not announced as a sleep (see [`SpoolLock`]): VCL wakes up at
    /// least every 200 ms and `after_wait` then releases the read lock
    /// before retaking it, so a waiting writer gets its turn. Announcing
    /// these sleeps would let readers that take turns sleeping starve a
    /// writer.
    pub fn before_wait(&'static self) {
        let _ = HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            if h.mq.take().is_some() {
                h.mq_dropped_for_wait = true;
            }
            if h.spool_write.take().is_some() {
                h.write_dropped_for_wait = true;
            }
        });
    }

    /// VCL woke up: retake what `before_wait` released, in lock order (mq
    /// before session pool).
    ///
    /// A read or write that looked ready (so took no mq lock) can still end
    /// up waiting (a write larger than the free space); after the wait VCL
    /// handles the message queue's events, so it takes the mq lock now:
    /// two threads consuming one message queue corrupt it.
    pub fn after_wait(&'static self) {
        let _ = HELD.try_with(|h| {
            let mut h = h.borrow_mut();
            h.end_sleep();
            let (mq_dropped, write) = (h.mq_dropped_for_wait, h.write_dropped_for_wait);
            h.mq_dropped_for_wait = false;
            h.write_dropped_for_wait = false;
            let mq = mq_dropped || (h.spool_read.is_some() && h.mq.is_none());
            if mq {
                let had_read = h.spool_read.take().is_some();
                h.mq = Some(self.mq.lock().unwrap_or_else(PoisonError::into_inner));
                if had_read {
                    h.spool_read = Some(self.spool.read());
                }
            }
            if write {
                h.spool_write = Some(self.spool.write());
            }
        });
    }

    /// The session-pool read lock for a read or write that cannot wait in
    /// VCL (its session is non-blocking, checked with the session locked).
    /// Held by the caller's guard and not recorded for the wait hooks: VCL
    /// calls them only around a wait, and such a call never waits. Nothing
    /// else may be held at the worker level (the lock order is mq, then
    /// this).
    ///
    /// `touches_worker` (asked with the session-pool lock held, as it looks
    /// at VCL's sessions): the call may change worker-level VCL state,
    /// which a non-blocking read that empties its session's FIFO does (VCL
    /// re-arms the session's event and may append it to the worker's
    /// unhandled-events vector, which epoll waits walk and reset). Then the
    /// pool lock is let go and the mq lock taken before it, as for epoll
    /// work (the lock order). `locked` runs after each acquisition, as in
    /// [`MtLocks::acquire_then`].
    #[inline]
    pub fn nonblocking_io(
        &self,
        locked: impl Fn(),
        touches_worker: impl FnOnce() -> bool,
    ) -> NonblockingIoGuard<'_> {
        let spool = self.spool.read();
        locked();
        if !touches_worker() {
            return NonblockingIoGuard { _spool: spool, _mq: None };
        }
        drop(spool);
        let mq = self.lock_mq();
        let spool = self.spool.read();
        locked();
        NonblockingIoGuard { _spool: spool, _mq: Some(mq) }
    }

    /// Both locks, exclusively, if both are free now (no thread holds or
    /// waits for either); never waits, so it may be tried anywhere. (A
    /// thread waiting inside VCL may hold neither: see `before_wait`.)
    pub fn try_lock_all(&self) -> Option<AllLocks<'_>> {
        let mq = self.try_lock_mq()?;
        Some(AllLocks { _spool: self.spool.try_write()?, _mq: mq })
    }

    /// The mq lock; the clock is read only if it has to be waited for
    /// (a slow wait is logged, see `timed`).
    #[inline]
    fn lock_mq(&self) -> MutexGuard<'_, ()> {
        self.try_lock_mq()
            .unwrap_or_else(|| timed("mq", || self.mq.lock().unwrap_or_else(PoisonError::into_inner)))
    }

    /// The mq lock if it is free now.
    #[inline]
    fn try_lock_mq(&self) -> Option<MutexGuard<'_, ()>> {
        match self.mq.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    #[cfg(test)]
    /// The session-pool lock (for tests).
    pub fn spool(&self) -> &SpoolLock {
        &self.spool
    }

    #[cfg(test)]
    /// True if the mq lock is free right now (for tests).
    pub fn mq_is_free(&self) -> bool {
        self.mq.try_lock().is_ok()
    }
}

/// The calling thread holds the mq lock or the session-pool write lock:
/// VCL's worker-level state (its message queue and event vectors) is
/// stable for it.
pub fn holds_worker_state() -> bool {
    HELD.try_with(|h| {
        let h = h.borrow();
        h.mq.is_some() || h.spool_write.is_some()
    })
    .unwrap_or(false)
}

#[cfg(test)]
/// What the calling thread holds (for tests): (mq, spool read, spool write).
pub fn held_by_current_thread() -> (bool, bool, bool) {
    HELD.with(|h| {
        let h = h.borrow();
        (h.mq.is_some(), h.spool_read.is_some(), h.spool_write.is_some())
    })
}

#[cfg(all(test, not(loom)))]
mod tests;

/// Model checks of the lock protocol over every interleaving `loom`
/// explores (see the module).
#[cfg(all(test, loom))]
mod loom_models;
