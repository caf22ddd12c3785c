//! Per-process workers (mode 1): what forked processes share.
//!
//! After `fork` every process of the application has its own VCL worker and
//! its own copy of every session that existed at the fork (VLS's pool is
//! copied with the process; VCL's session records are copied to the child's
//! worker by the VCL seam). What the copies must agree on lives in a
//! [`SharedTable`], a shared anonymous mapping made before the first fork:
//!
//! - per shared session an entry: the *owner* worker (the one VPP sends the
//!   session's events to), the *subscribed* workers (those holding a copy)
//!   and the workers *listening* on it (shared listeners), guarded by a
//!   spin lock in the entry. Closing a copy unsubscribes its worker; the
//!   last subscriber closes the session for real; an owner that leaves
//!   hands the session to the next subscriber;
//! - per worker the process that runs it (pid, parent worker), written by
//!   the child, and a "fork in progress" flag the parent waits on while the
//!   child copies its parent's sessions (the parent must not change them
//!   meanwhile).
//!
//! How a parent learns that a child is gone (the SIGCHLD interceptor and
//! its queue of exited children's workers) is in `sigchld`, which looks
//! pids up in this table.
//!
//! Invariants:
//! - entry fields are read and written only with the entry's lock held
//!   (the lock's acquire/release orders them), but for the hand-over
//!   state, which has its own protocol (`handover_gate`); `in_use` flips 0→1 by
//!   compare-and-swap (allocation) and 1→0 with the lock held (free);
//! - a worker's `procs` slot is written by the process running it, before
//!   it clears its parent's `forking` flag;
//! - a process killed while holding an entry lock leaves it held (the lock
//!   is held for a few loads and stores only, never across a VCL call).

use std::io;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

use super::handover_gate::HandoverState;

/// Workers a bit set can name (VCL worker indices below this).
pub const MAX_WORKERS: usize = 1024;
/// Words of a bit set over [`MAX_WORKERS`].
pub(super) const WORDS: usize = MAX_WORKERS / 64;
/// Sessions that can be shared at once across all processes.
pub const MAX_SHARED: usize = 16 * 1024;

const NONE: u32 = u32::MAX;

/// A set of worker indices, in shared memory.
#[repr(C)]
struct WorkerBits([AtomicU64; WORDS]);

impl WorkerBits {
    fn set(&self, w: u32, on: bool) {
        let (i, bit) = (w as usize / 64, 1u64 << (w % 64));
        if on {
            self.0[i].fetch_or(bit, Ordering::Relaxed);
        } else {
            self.0[i].fetch_and(!bit, Ordering::Relaxed);
        }
    }
    fn get(&self, w: u32) -> bool {
        self.0[w as usize / 64].load(Ordering::Relaxed) & (1u64 << (w % 64)) != 0
    }
    fn first(&self) -> Option<u32> {
        self.0.iter().enumerate().find_map(|(i, word)| {
            let v = word.load(Ordering::Relaxed);
            (v != 0).then(|| (i * 64) as u32 + v.trailing_zeros())
        })
    }
    fn count(&self) -> u32 {
        self.0.iter().map(|w| w.load(Ordering::Relaxed).count_ones()).sum()
    }
    fn clear(&self) {
        for w in &self.0 {
            w.store(0, Ordering::Relaxed);
        }
    }
}

/// One shared session.
#[repr(C)]
struct SharedEntry {
    lock: AtomicU32,
    in_use: AtomicU32,
    owner: AtomicU32,
    session_index: AtomicU32,
    subscribers: WorkerBits,
    listeners: WorkerBits,
    /// The worker that left the connection but stays VPP's owner of it (a
    /// kept copy, see `kept::Kept`), or `NONE`. While set, the last
    /// subscriber's leave does not free the entry: the keeper frees it.
    keeper: AtomicU32,
    /// The last subscriber closed the connection in VPP (1), so the keeper
    /// must not: VPP may have given its handle to a new connection by then,
    /// and a second close would close that one (found closing a forking
    /// server's listener: VCL maps a connection not accepted yet to its
    /// listener, and its cleanup then marks the listener gone).
    closed_in_vpp: AtomicU32,
    /// A hand-over under way and the relatives' reads and writes (used
    /// without the lock, see `handover_gate`).
    handover: HandoverState,
}

/// The process running a worker.
#[repr(C)]
struct ProcSlot {
    pid: AtomicI32,
    parent: AtomicU32,
}

#[repr(C)]
struct SharedRegion {
    forking: [AtomicU32; MAX_WORKERS],
    procs: [ProcSlot; MAX_WORKERS],
    alloc_hint: AtomicU32,
    entries: [SharedEntry; MAX_SHARED],
}

/// The state forked processes share (see the module docs). Copies of the
/// handle in parent and children refer to the same memory.
#[derive(Clone, Copy)]
pub struct SharedTable {
    region: &'static SharedRegion,
}

impl std::fmt::Debug for SharedTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedTable").field("region", &(self.region as *const SharedRegion)).finish()
    }
}

impl SharedTable {
    /// Maps a new, empty table (shared with every process forked after).
    pub fn map() -> io::Result<Self> {
        let len = std::mem::size_of::<SharedRegion>();
        // SAFETY: a fresh anonymous mapping; no address hint.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the mapping is zero-filled, page-aligned and `len` bytes
        // long; all-zero bytes are a valid `SharedRegion` (atomics only).
        // It is never unmapped, hence `'static`.
        Ok(SharedTable { region: unsafe { &*(p as *const SharedRegion) } })
    }

    /// A new entry for session `session_index`, owned by and subscribed by
    /// `owner`; `None` if the table is full or `owner` is out of range.
    pub fn alloc(&self, owner: u32, session_index: u32) -> Option<u32> {
        if owner as usize >= MAX_WORKERS {
            return None;
        }
        let start = self.region.alloc_hint.load(Ordering::Relaxed) as usize;
        for k in 0..MAX_SHARED {
            let i = (start + k) % MAX_SHARED;
            let e = &self.region.entries[i];
            if e.in_use.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                self.region.alloc_hint.store(((i + 1) % MAX_SHARED) as u32, Ordering::Relaxed);
                let g = EntryGuard::lock(e);
                g.e.owner.store(owner, Ordering::Relaxed);
                g.e.session_index.store(session_index, Ordering::Relaxed);
                g.e.subscribers.clear();
                g.e.listeners.clear();
                g.e.keeper.store(NONE, Ordering::Relaxed);
                g.e.closed_in_vpp.store(0, Ordering::Relaxed);
                g.e.handover.reset();
                g.e.subscribers.set(owner, true);
                return Some(i as u32);
            }
        }
        None
    }

    /// Locks entry `index`, if it is in use.
    pub fn lock(&self, index: u32) -> Option<EntryGuard<'static>> {
        let e = self.region.entries.get(index as usize)?;
        if e.in_use.load(Ordering::Acquire) == 0 {
            return None;
        }
        let g = EntryGuard::lock(e);
        (e.in_use.load(Ordering::Relaxed) != 0).then_some(g)
    }

    /// [`Self::lock`] if nobody holds the lock now (never waits).
    pub fn try_lock(&self, index: u32) -> Option<EntryGuard<'static>> {
        let e = self.region.entries.get(index as usize)?;
        e.lock.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed).ok()?;
        let g = EntryGuard { e };
        (e.in_use.load(Ordering::Relaxed) != 0).then_some(g)
    }

    /// Entry `index`'s hand-over state (see `handover_gate`), if in use.
    pub fn handover(&self, index: u32) -> Option<&'static HandoverState> {
        let e = self.region.entries.get(index as usize)?;
        (e.in_use.load(Ordering::Acquire) != 0).then_some(&e.handover)
    }
    /// Entries in use.
    pub fn in_use(&self) -> usize {
        self.region.entries.iter().filter(|e| e.in_use.load(Ordering::Acquire) != 0).count()
    }

    /// Entries worker `wrk` is subscribed to.
    pub fn subscribed_by(&self, wrk: u32) -> Vec<u32> {
        if wrk as usize >= MAX_WORKERS {
            return Vec::new();
        }
        (0..MAX_SHARED as u32)
            .filter(|&i| {
                let e = &self.region.entries[i as usize];
                e.in_use.load(Ordering::Acquire) != 0 && e.subscribers.get(wrk)
            })
            .collect()
    }

    /// Marks a fork by the process of worker `parent` as in progress.
    pub fn fork_started(&self, parent: u32) {
        if let Some(f) = self.region.forking.get(parent as usize) {
            f.store(1, Ordering::Release);
        }
    }

    /// The child of `parent` has copied what it needed.
    pub fn fork_done(&self, parent: u32) {
        if let Some(f) = self.region.forking.get(parent as usize) {
            f.store(0, Ordering::Release);
        }
    }

    /// Waits until the child of `parent` is done, at most `limit`; false on
    /// timeout.
    pub fn wait_fork_done(&self, parent: u32, limit: std::time::Duration) -> bool {
        let Some(f) = self.region.forking.get(parent as usize) else { return true };
        let deadline = std::time::Instant::now() + limit;
        while f.load(Ordering::Acquire) != 0 {
            if std::time::Instant::now() >= deadline {
                f.store(0, Ordering::Release);
                return false;
            }
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        true
    }

    /// Records that process `pid`, a child of worker `parent`'s process,
    /// runs worker `wrk`.
    pub fn set_process(&self, wrk: u32, pid: i32, parent: u32) {
        if let Some(p) = self.region.procs.get(wrk as usize) {
            p.parent.store(parent, Ordering::Relaxed);
            p.pid.store(pid, Ordering::Release);
        }
    }

    /// Forgets the process of worker `wrk` if the record still names
    /// `pid`: true if it did (the caller may then act for that process),
    /// false if it names another (the worker index went to a newer process
    /// since) or none. One compare-and-swap, so of a process cleaning up
    /// after itself and a parent cleaning up after it only one acts.
    pub fn release_process(&self, wrk: u32, pid: i32) -> bool {
        self.region.procs.get(wrk as usize).is_some_and(|p| {
            pid > 0 && p.pid.compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire).is_ok()
        })
    }

    /// The table as a plain pointer, for the static the SIGCHLD handler
    /// reads (see `sigchld`).
    pub(super) fn as_ptr(self) -> *const () {
        self.region as *const SharedRegion as *const ()
    }

    /// The table behind a pointer from [`SharedTable::as_ptr`].
    ///
    /// # Safety
    /// `p` came from `as_ptr` (a region is never unmapped, see
    /// [`SharedTable::map`]).
    pub(super) unsafe fn from_ptr(p: *const ()) -> Self {
        // SAFETY: per the contract, `p` points at a live, never unmapped
        // region.
        SharedTable { region: unsafe { &*(p as *const SharedRegion) } }
    }

    /// The worker run by process `pid`, if any. Async-signal-safe (loads
    /// only).
    pub fn worker_of_pid(&self, pid: i32) -> Option<u32> {
        if pid <= 0 {
            return None;
        }
        self.region.procs.iter().position(|p| p.pid.load(Ordering::Acquire) == pid).map(|w| w as u32)
    }

    /// Workers (with their pids) of the children of worker `parent`.
    pub fn children_of(&self, parent: u32) -> Vec<(u32, i32)> {
        self.region
            .procs
            .iter()
            .enumerate()
            .filter_map(|(w, p)| {
                let pid = p.pid.load(Ordering::Acquire);
                (pid > 0 && p.parent.load(Ordering::Relaxed) == parent).then_some((w as u32, pid))
            })
            .collect()
    }
}

/// A locked shared entry; the lock is released on drop.
pub struct EntryGuard<'a> {
    e: &'a SharedEntry,
}

impl<'a> EntryGuard<'a> {
    fn lock(e: &'a SharedEntry) -> Self {
        let mut spins = 0u32;
        while e.lock.compare_exchange_weak(0, 1, Ordering::Acquire, Ordering::Relaxed).is_err() {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        EntryGuard { e }
    }

    /// The VCL session index of the session (the same in every copy).
    pub fn session_index(&self) -> u32 {
        self.e.session_index.load(Ordering::Relaxed)
    }

    /// The worker VPP sends the session's events to.
    pub fn owner(&self) -> u32 {
        self.e.owner.load(Ordering::Relaxed)
    }

    /// Worker `w` holds a copy.
    pub fn subscribe(&self, w: u32) {
        if (w as usize) < MAX_WORKERS {
            self.e.subscribers.set(w, true);
        }
    }

    #[cfg(test)]
    /// Is worker `w` subscribed?
    pub fn is_subscribed(&self, w: u32) -> bool {
        (w as usize) < MAX_WORKERS && self.e.subscribers.get(w)
    }

    /// Worker `w` drops its copy (and stops listening). Says what `w` must
    /// do with its copy.
    pub fn unsubscribe(&self, w: u32) -> Unsubscribed {
        if (w as usize) >= MAX_WORKERS || !self.e.subscribers.get(w) {
            return Unsubscribed::NotSubscribed;
        }
        self.e.subscribers.set(w, false);
        self.e.listeners.set(w, false);
        match self.e.subscribers.first() {
            None => Unsubscribed::Last,
            Some(next) if self.owner() == w => {
                self.e.owner.store(next, Ordering::Relaxed);
                Unsubscribed::NewOwner(next)
            }
            Some(_) => Unsubscribed::Others,
        }
    }

    /// [`Self::unsubscribe`], freeing the entry if `w` was the last holder;
    /// unlocks it.
    pub fn leave(self, w: u32) -> Unsubscribed {
        let what = self.unsubscribe(w);
        if what == Unsubscribed::Last && self.keeper() == NONE {
            self.free();
        }
        what
    }

    /// The worker keeping the connection as VPP's owner, or `NONE`.
    pub fn keeper(&self) -> u32 {
        self.e.keeper.load(Ordering::Relaxed)
    }

    /// Worker `w` left the connection but stays VPP's owner of it.
    pub fn set_keeper(&self, w: u32) {
        self.e.keeper.store(w, Ordering::Relaxed);
    }

    /// The last subscriber closed the connection in VPP.
    pub fn set_closed_in_vpp(&self) {
        self.e.closed_in_vpp.store(1, Ordering::Relaxed);
    }

    /// Did the last subscriber close the connection in VPP?
    pub fn closed_in_vpp(&self) -> bool {
        self.e.closed_in_vpp.load(Ordering::Relaxed) != 0
    }
    /// Workers holding a copy.
    pub fn n_subscribers(&self) -> u32 {
        self.e.subscribers.count()
    }

    /// Marks worker `w` as listening (or not) on this shared listener.
    pub fn set_listening(&self, w: u32, on: bool) {
        if (w as usize) < MAX_WORKERS {
            self.e.listeners.set(w, on);
        }
    }

    /// Is worker `w` listening on this shared listener?
    pub fn is_listening(&self, w: u32) -> bool {
        (w as usize) < MAX_WORKERS && self.e.listeners.get(w)
    }

    /// Frees the entry (the last subscriber left).
    pub fn free(self) {
        self.e.subscribers.clear();
        self.e.listeners.clear();
        self.e.keeper.store(NONE, Ordering::Relaxed);
        self.e.closed_in_vpp.store(0, Ordering::Relaxed);
        self.e.handover.reset();
        self.e.owner.store(NONE, Ordering::Relaxed);
        self.e.in_use.store(0, Ordering::Release);
    }
}

impl Drop for EntryGuard<'_> {
    fn drop(&mut self) {
        self.e.lock.store(0, Ordering::Release);
    }
}

/// What a worker leaving a shared session must do with its copy.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Unsubscribed {
    /// It was not subscribed: nothing.
    NotSubscribed,
    /// It was the last: close the session for real (and free the entry).
    Last,
    /// Others remain, one of them owns the session: drop the copy.
    Others,
    /// It owned the session; this worker owns it now: tell VPP, drop the copy.
    NewOwner(u32),
}

#[cfg(test)]
mod tests {
    use super::super::sigchld::has_exited;
    use super::*;

    #[test]
    fn entries_track_owner_subscribers_and_the_last_one_out() {
        let t = SharedTable::map().unwrap();
        let i = t.alloc(0, 7).unwrap();
        {
            let g = t.lock(i).unwrap();
            assert_eq!((g.owner(), g.session_index(), g.n_subscribers()), (0, 7, 1));
            g.subscribe(3);
            g.subscribe(5);
            assert_eq!(g.unsubscribe(3), Unsubscribed::Others);
            assert_eq!(g.unsubscribe(3), Unsubscribed::NotSubscribed);
            assert_eq!(g.unsubscribe(0), Unsubscribed::NewOwner(5), "the owner leaves: next subscriber owns");
            assert_eq!(g.owner(), 5);
            assert_eq!(g.unsubscribe(5), Unsubscribed::Last);
            g.free();
        }
        assert!(t.lock(i).is_none(), "freed entries cannot be locked");
        assert_eq!(t.in_use(), 0, "nothing leaks");
        assert_eq!(t.alloc(1, 8), Some((i + 1) % MAX_SHARED as u32), "allocation moves on");
    }

    /// A connection kept by the worker that left it (it stays VPP's
    /// owner): the last relative's leave does not free the entry, so the
    /// keeper still learns whether that relative closed the connection in
    /// VPP (then the keeper must not close it again) or left without (it
    /// died: the keeper closes it); the keeper frees the entry. Without a
    /// keeper the last leave frees it, as before.
    #[test]
    fn a_kept_entry_outlives_the_last_relative_and_says_how_it_left() {
        let t = SharedTable::map().unwrap();
        for closed in [true, false] {
            let i = t.alloc(0, 9).unwrap();
            t.lock(i).unwrap().subscribe(4);
            assert_eq!(t.lock(i).unwrap().leave(0), Unsubscribed::NewOwner(4));
            t.lock(i).unwrap().set_keeper(0);
            assert_eq!(t.lock(i).unwrap().leave(4), Unsubscribed::Last);
            let g = t.lock(i).expect("the keeper's entry outlives the last relative");
            if closed {
                g.set_closed_in_vpp();
            }
            assert_eq!((g.keeper(), g.n_subscribers(), g.closed_in_vpp()), (0, 0, closed));
            g.free();
            assert!(t.lock(i).is_none());
        }
        let i = t.alloc(0, 9).unwrap();
        assert_eq!(t.lock(i).unwrap().keeper(), NONE, "a new entry has no keeper");
        assert!(!t.lock(i).unwrap().closed_in_vpp());
        assert_eq!(t.lock(i).unwrap().leave(0), Unsubscribed::Last);
        assert!(t.lock(i).is_none(), "without a keeper the last leave frees the entry");
        assert_eq!(t.in_use(), 0, "nothing leaks");
    }

    #[test]
    fn listener_bits_are_cleared_with_the_subscription() {
        let t = SharedTable::map().unwrap();
        let i = t.alloc(2, 1).unwrap();
        let g = t.lock(i).unwrap();
        g.subscribe(4);
        g.set_listening(4, true);
        g.set_listening(2, true);
        assert!(g.is_listening(4) && g.is_listening(2));
        g.unsubscribe(4);
        assert!(!g.is_listening(4), "a worker that left does not listen");
        assert!(g.is_listening(2));
        assert!(!g.is_listening(5000), "out of range is never listening");
    }

    /// A worker's record is released only while it names the process it
    /// is released for, once: a newer process that took the worker index
    /// keeps its record.
    #[test]
    fn a_worker_record_is_released_only_for_the_process_it_names() {
        let t = SharedTable::map().unwrap();
        t.set_process(3, 4100, 0);
        assert!(!t.release_process(3, 4099), "another process's record");
        assert!(!t.release_process(3, 0), "no process");
        assert_eq!(t.children_of(0), vec![(3, 4100)]);
        assert!(t.release_process(3, 4100));
        assert!(t.children_of(0).is_empty());
        assert!(!t.release_process(3, 4100), "released once");
        // The index goes to a newer child: a cleanup for the old one
        // leaves it alone.
        t.set_process(3, 4200, 0);
        assert!(!t.release_process(3, 4100));
        assert_eq!(t.children_of(0), vec![(3, 4200)]);
        assert!(!t.release_process(MAX_WORKERS as u32, 4200), "out of range");
    }

    #[test]
    fn the_table_is_shared_with_a_forked_child() {
        let t = SharedTable::map().unwrap();
        let i = t.alloc(0, 9).unwrap();
        t.fork_started(0);
        // SAFETY: the child only does atomic stores and `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            if let Some(g) = t.lock(i) {
                g.subscribe(1);
            }
            t.set_process(1, std::process::id() as i32, 0);
            t.fork_done(0);
            // SAFETY: ends the child without running the test harness's code.
            unsafe { libc::_exit(0) };
        }
        assert!(t.wait_fork_done(0, std::time::Duration::from_secs(10)), "child signalled");
        assert!(t.lock(i).unwrap().is_subscribed(1), "the child's subscription is visible");
        assert_eq!(t.worker_of_pid(pid), Some(1));
        assert_eq!(t.children_of(0), vec![(1, pid)]);
        let mut status = 0;
        // SAFETY: reaps our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(has_exited(pid), "a reaped child has exited");
        assert_eq!(t.subscribed_by(1), vec![i]);
    }
}
