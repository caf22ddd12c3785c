//! The VLS session pool and the VCL-handle → VLS-handle table.
//!
//! A VLS handle (`vlsh`) is a small non-negative integer, the index of a
//! session in the pool; LDP turns it into a file descriptor, so handles are
//! reused after close, lowest-numbered-last-freed first, like a vppinfra pool.
//!
//! Session objects are allocated once per slot and never freed: a closed
//! session's object is reused by the next session of that slot, like an
//! element of a vppinfra pool. That makes lookup lock-free and free of
//! reference counting (two atomic loads), which matters because every
//! `vls_*` call starts with one.
//!
//! Invariants:
//! - slot `i` holds, once allocated, the same `VlsSession` object forever;
//!   its `vlsh` is `i`; it is *live* from allocation until the close that
//!   frees it;
//! - a closing session is marked `closed` (under its own lock) *before* it
//!   stops being live, and a reused one is re-initialised under its lock
//!   *before* it becomes live again; a thread that fetched it just before the
//!   close sees `closed` once it gets the lock and reports `EBADFD` (or, if
//!   the slot was reused meanwhile, operates on the new session — the same
//!   thing that happens to a file descriptor reused after `close`);
//! - the table maps every live session's current VCL handle to its vlsh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock};

use super::demux::{EpollDemux, Membership};
use super::session_lock::{self, SessionLock, SessionLockGuard};
use super::solo::LockFreeWords;
use crate::handle::{Sh, Vlsh, INVALID, INVALID_VLSH, MAX_SESSIONS};

type ForkHold = (MutexGuard<'static, Allocator>, std::sync::RwLockWriteGuard<'static, HashMap<Sh, Vlsh>>);

thread_local! {
    /// The pool locks the forking thread holds across `fork` (see
    /// `SessionPool::hold_across_fork`).
    static FORK_HOLD: std::cell::RefCell<Option<ForkHold>> = const { std::cell::RefCell::new(None) };
}

/// One VLS session. Cache-line aligned (two lines): sessions used by
/// different threads never share a line.
#[repr(align(128))]
pub struct VlsSession {
    /// Index in the pool; fixed for the life of the object.
    pub vlsh: Vlsh,
    /// Live (allocated and not yet freed).
    live: AtomicBool,
    /// Created by `epoll_create`.
    is_epoll: AtomicBool,
    /// The epoll set this session is in, and the application's event data.
    pub membership: Membership,
    /// Demultiplexing state, used when the session is an epoll session.
    demux: EpollDemux,
    /// Set by close before it waits for the session lock, so a thread blocked
    /// inside VCL on this session can be told to give up.
    pub app_closed: AtomicBool,
    /// The libc epoll fd LDP pairs with this (epoll) session; 0 if none
    /// (LDP tests for 0).
    /// Read without the session lock (LDP reads it while another thread may
    /// be blocked on the session).
    pub libc_epfd: AtomicI32,
    /// Current VCL handle (on the worker that has the session now),
    /// readable without the lock; written only with the whole session
    /// locked.
    sh: AtomicU32,
    /// The session was closed; every operation now fails with `EBADFD`.
    /// Written only with the whole session locked; read with either half.
    closed: AtomicBool,
    /// Per-thread workers: a thread other than the owner is moving the
    /// session out of its worker (set before it takes the owner's gate or
    /// sends its request, cleared once the session's handle says where it
    /// is). The owner's fast lane must not use the session meanwhile (see
    /// `migrate::Gate`). Written only with the whole session locked.
    pub in_transit: AtomicBool,
    /// Session lock, in two halves (`RX`, `TX`, bits of one word: see
    /// [`SessionLock`]). A read takes only `RX`, a write only `TX`; every
    /// other operation takes both. So one thread may block reading a
    /// session while another writes to it (a full-duplex stream shared by a
    /// reader and a writer thread): VCL's read path touches only the rx
    /// FIFO and the session flags, its write path only the tx FIFO and
    /// reads the flags. Two reads (or two writes) of one session never
    /// overlap.
    lock: SessionLock,
    /// The session is non-blocking, as far as VLS knows (set at creation
    /// and accept, refreshed after every attribute call). Non-blocking
    /// reads and writes never wait inside VCL, so when threads share the
    /// worker they take both halves: one call at a time per session, which
    /// spares the session's memory the traffic of concurrent calls.
    /// Changed only through [`VlsSession::set_nonblocking_hint`].
    nonblocking_hint: AtomicBool,
    /// What the single-thread lock-free path reads: this slot's word of
    /// the pool's [`LockFreeWords`] (see `SessionPool::lock_free_sh`).
    /// It holds the VCL handle plus one while the session may take that
    /// path (live, not closed, not an epoll session, non-blocking, mapped
    /// to a VCL session), else 0: one load instead of five on every read
    /// and write, and no load of the session object.
    ///
    /// Kept by [`VlsSession::refresh_lock_free`], which every change of
    /// those five calls; all of them are made with the whole session locked
    /// (or, for `live`, by the allocator before and after), so the word
    /// never lags a change a thread could observe under the lock. It is
    /// read without a lock only by the solo thread (`super::solo`), which
    /// alone uses VLS while it reads it.
    lock_free_word: &'static AtomicU32,
    /// Per-process workers: the session's entry in the table forked
    /// processes share (`engine::fork`), or `INVALID` while only this process
    /// has it.
    pub shared: AtomicU32,
    /// Epoll sets: the fork generation (see `Vls::fork_generation`) in
    /// which the shared listeners in this set were last made to listen on
    /// this process's worker.
    pub listeners_checked: AtomicU32,
}

/// A session locked exclusively (both halves).
pub struct LockedSession<'a> {
    /// The session.
    pub session: &'a VlsSession,
    _both: SessionLockGuard<'a>,
}

impl LockedSession<'_> {
    /// The VCL handle the session maps to now.
    pub fn sh(&self) -> Sh {
        self.session.sh.load(Ordering::Acquire)
    }

    /// The session was closed.
    pub fn closed(&self) -> bool {
        self.session.is_closed()
    }

    /// Marks the session closed (every later operation gets `EBADFD`).
    pub fn mark_closed(&mut self) {
        self.session.closed.store(true, Ordering::Release);
        self.session.refresh_lock_free();
    }

    /// Records whether the session is non-blocking (see
    /// [`VlsSession::set_nonblocking_hint`]).
    pub fn set_nonblocking_hint(&self, nonblocking: bool) {
        self.session.set_nonblocking_hint(nonblocking);
    }
}

/// Which half of a session an I/O operation uses.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Half {
    /// Reads (rx FIFO).
    Rx,
    /// Writes (tx FIFO).
    Tx,
}

/// A session locked for one read or one write: its half.
pub struct IoLocked<'a> {
    _half: SessionLockGuard<'a>,
}

impl VlsSession {
    fn new(vlsh: Vlsh, lock_free_word: &'static AtomicU32) -> Self {
        VlsSession {
            vlsh,
            live: AtomicBool::new(false),
            is_epoll: AtomicBool::new(false),
            membership: Membership::default(),
            demux: EpollDemux::default(),
            app_closed: AtomicBool::new(false),
            libc_epfd: AtomicI32::new(0),
            sh: AtomicU32::new(INVALID),
            closed: AtomicBool::new(true),
            in_transit: AtomicBool::new(false),
            lock: SessionLock::default(),
            nonblocking_hint: AtomicBool::new(false),
            lock_free_word,
            shared: AtomicU32::new(INVALID),
            listeners_checked: AtomicU32::new(0),
        }
    }

    /// Whether the session is non-blocking, as far as VLS knows.
    pub fn nonblocking_hint(&self) -> bool {
        self.nonblocking_hint.load(Ordering::Relaxed)
    }

    /// Records whether the session is non-blocking: at its creation, and
    /// after each attribute call. Call with the whole session locked, or
    /// as the only thread using VLS (the solo thread's lock-free attribute
    /// calls), as every attribute call does.
    pub fn set_nonblocking_hint(&self, nonblocking: bool) {
        if self.nonblocking_hint.swap(nonblocking, Ordering::Relaxed) != nonblocking {
            self.refresh_lock_free();
        }
    }

    /// Records the session's entry in the table shared with forked
    /// relatives (`INVALID`: not shared). A shared connection takes no
    /// lock-free path: its reads and writes count themselves in the entry
    /// (see `handover_gate`).
    pub fn set_shared(&self, entry: u32) {
        self.shared.store(entry, Ordering::Release);
        self.refresh_lock_free();
    }

    /// Recomputes [`VlsSession::lock_free_word`] from the state it sums up.
    fn refresh_lock_free(&self) {
        let sh = self.sh.load(Ordering::Acquire);
        let eligible = self.live.load(Ordering::Acquire)
            && !self.closed.load(Ordering::Acquire)
            && !self.is_epoll.load(Ordering::Acquire)
            && self.nonblocking_hint.load(Ordering::Relaxed)
            && self.shared.load(Ordering::Acquire) == INVALID
            && sh != INVALID;
        self.lock_free_word.store(if eligible { sh.wrapping_add(1) } else { 0 }, Ordering::Release);
    }

    /// (Re)initialises the object for a new session on VCL handle `sh`.
    fn init(&self, sh: Sh, is_epoll: bool) {
        let locked = self.lock();
        self.is_epoll.store(is_epoll, Ordering::Relaxed);
        self.membership.reset();
        self.demux.reset();
        self.app_closed.store(false, Ordering::Relaxed);
        self.libc_epfd.store(0, Ordering::Relaxed);
        self.sh.store(sh, Ordering::Release);
        self.closed.store(false, Ordering::Release);
        self.in_transit.store(false, Ordering::Relaxed);
        // Not non-blocking yet: no lock-free path (as below, once live).
        self.nonblocking_hint.store(false, Ordering::Relaxed);
        self.lock_free_word.store(0, Ordering::Release);
        self.shared.store(INVALID, Ordering::Relaxed);
        self.listeners_checked.store(0, Ordering::Relaxed);
        drop(locked);
        self.live.store(true, Ordering::Release);
    }

    /// Created by `epoll_create`.
    pub fn is_epoll(&self) -> bool {
        self.is_epoll.load(Ordering::Acquire)
    }

    /// The demultiplexing state, for an epoll session.
    pub fn demux(&self) -> Option<&EpollDemux> {
        self.is_epoll().then_some(&self.demux)
    }

    /// The VCL handle the session maps to now, without locking.
    pub fn sh(&self) -> Sh {
        self.sh.load(Ordering::Acquire)
    }

    /// The session was closed (meaningful with either half or the whole
    /// session locked).
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Locks the session exclusively (blocking). Also what a non-blocking
    /// read or write takes while threads share the worker (see
    /// `nonblocking_hint`).
    pub fn lock(&self) -> LockedSession<'_> {
        LockedSession { session: self, _both: self.lock.lock(session_lock::BOTH) }
    }

    /// Some lock of this session is held. In a forked child (one thread,
    /// outside VLS) that means held by a thread of the parent that the
    /// child does not have: it will never be released.
    fn is_locked(&self) -> bool {
        self.lock.is_locked() || self.demux.is_locked()
    }

    /// A fresh object with this session's state (its locks free, no parked
    /// events).
    fn fresh_copy(&self) -> VlsSession {
        // The same slot, so the same lock-free word (its value stays).
        let c = VlsSession::new(self.vlsh, self.lock_free_word);
        c.live.store(self.live.load(Ordering::Acquire), Ordering::Relaxed);
        c.is_epoll.store(self.is_epoll.load(Ordering::Acquire), Ordering::Relaxed);
        if let Some(set) = self.membership.set() {
            c.membership.join(set, self.membership.interest(), self.membership.data());
        }
        c.app_closed.store(self.app_closed.load(Ordering::Acquire), Ordering::Relaxed);
        c.libc_epfd.store(self.libc_epfd.load(Ordering::Acquire), Ordering::Relaxed);
        c.sh.store(self.sh.load(Ordering::Acquire), Ordering::Relaxed);
        c.closed.store(self.closed.load(Ordering::Acquire), Ordering::Relaxed);
        c.nonblocking_hint.store(self.nonblocking_hint.load(Ordering::Acquire), Ordering::Relaxed);
        c.shared.store(self.shared.load(Ordering::Acquire), Ordering::Relaxed);
        c.listeners_checked.store(self.listeners_checked.load(Ordering::Acquire), Ordering::Relaxed);
        c
    }

    /// [`VlsSession::lock`], unless another thread holds any part of it.
    pub fn try_lock(&self) -> Option<LockedSession<'_>> {
        Some(LockedSession { session: self, _both: self.lock.try_lock(session_lock::BOTH)? })
    }

    /// Locks the session for one read or one write (blocking).
    pub fn lock_io(&self, half: Half) -> IoLocked<'_> {
        let bits = match half {
            Half::Rx => session_lock::RX,
            Half::Tx => session_lock::TX,
        };
        IoLocked { _half: self.lock.lock(bits) }
    }
}

/// `n` null session pointers, from zeroed memory: the pages of slots never
/// used are never touched (8 MiB of address space, not of memory).
fn null_slots(n: usize) -> Box<[AtomicPtr<VlsSession>]> {
    let layout = std::alloc::Layout::array::<AtomicPtr<VlsSession>>(n).expect("slot table size");
    // SAFETY: `layout` has a non-zero size (n > 0); all-zero bytes are a
    // valid (null) `AtomicPtr`, so the zeroed allocation is `n` initialised
    // elements, owned by the box built on it with the global allocator's
    // layout for `[AtomicPtr; n]`.
    unsafe {
        let p = std::alloc::alloc_zeroed(layout).cast::<AtomicPtr<VlsSession>>();
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, n))
    }
}

#[derive(Default)]
struct Allocator {
    free: Vec<usize>,
    next: usize,
}

/// Pool of VLS sessions plus the VCL-handle table.
pub struct SessionPool {
    /// Slot `i`'s session object (null until first used); an object, once
    /// set, is never freed. One flat table, so a lookup is one bounds check
    /// and one load.
    slots: Box<[AtomicPtr<VlsSession>]>,
    /// Slot `i`'s lock-free word (see [`VlsSession::lock_free_word`]),
    /// shared with the `Solo` state that reads it.
    words: &'static LockFreeWords,
    alloc: Mutex<Allocator>,
    by_sh: RwLock<HashMap<Sh, Vlsh>>,
}

impl SessionPool {
    /// An empty pool keeping the lock-free words in `words` (all 0, used
    /// by no other pool).
    pub fn new(words: &'static LockFreeWords) -> Self {
        SessionPool {
            slots: null_slots(MAX_SESSIONS),
            words,
            alloc: Mutex::new(Allocator::default()),
            by_sh: RwLock::new(HashMap::new()),
        }
    }

    /// Adds a session for VCL handle `sh`; returns its vlsh
    /// (`INVALID_VLSH` if the pool is full).
    pub fn alloc(&self, sh: Sh) -> Vlsh {
        self.alloc_kind(sh, false)
    }

    /// Adds an epoll session for VCL handle `sh`; returns its vlsh.
    pub fn alloc_epoll(&self, sh: Sh) -> Vlsh {
        self.alloc_kind(sh, true)
    }

    fn alloc_kind(&self, sh: Sh, is_epoll: bool) -> Vlsh {
        let mut a = self.alloc.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match a.free.pop() {
            Some(i) => i,
            None if a.next < MAX_SESSIONS => {
                a.next += 1;
                a.next - 1
            }
            None => return INVALID_VLSH,
        };
        let session = self.slot_object(index);
        // The table entry first, then the session goes live: a close of the
        // slot through a stale number (possible as soon as it is live) then
        // always finds the entry to remove. (Lock order: allocator, then
        // table, as in `hold_across_fork`.)
        self.by_sh.write().unwrap_or_else(PoisonError::into_inner).insert(sh, session.vlsh);
        session.init(sh, is_epoll);
        drop(a);
        session.vlsh
    }

    /// The object of slot `index`, created if needed. Called with the
    /// allocator lock held.
    fn slot_object(&self, index: usize) -> &VlsSession {
        let slot = &self.slots[index];
        let mut obj = slot.load(Ordering::Acquire);
        if obj.is_null() {
            obj = Box::into_raw(Box::new(VlsSession::new(index as Vlsh, &self.words[index])));
            slot.store(obj, Ordering::Release);
        }
        // SAFETY: session objects are never freed.
        unsafe { &*obj }
    }

    /// The live session with handle `vlsh`, if any. Lock-free.
    #[inline]
    pub fn get(&self, vlsh: Vlsh) -> Option<&VlsSession> {
        let (_, s) = self.object(usize::try_from(vlsh).ok()?)?;
        s.live.load(Ordering::Acquire).then_some(s)
    }

    /// The VCL handle of `vlsh` if the single-thread lock-free path may
    /// use the session (see [`VlsSession::lock_free_word`]); for the solo
    /// thread (whose fast path reads the same word through `Solo`).
    #[cfg(test)]
    pub fn lock_free_sh(&self, vlsh: Vlsh) -> Option<Sh> {
        // A negative vlsh becomes a number beyond the table.
        self.words.get(vlsh as u32 as usize)?.load(Ordering::Acquire).checked_sub(1)
    }

    /// Slot `index` and the session object in it, live or not, if both
    /// exist.
    #[inline]
    fn object(&self, index: usize) -> Option<(&AtomicPtr<VlsSession>, &VlsSession)> {
        let slot = self.slots.get(index)?;
        let obj = slot.load(Ordering::Acquire);
        if obj.is_null() {
            return None;
        }
        // SAFETY: session objects are never freed (a replaced one is leaked).
        Some((slot, unsafe { &*obj }))
    }

    /// Frees the slot of `session` (which must be marked closed) and removes
    /// its VCL handle from the table.
    pub fn free(&self, session: &VlsSession) {
        {
            let mut by_sh = self.by_sh.write().unwrap_or_else(PoisonError::into_inner);
            if by_sh.get(&session.sh()) == Some(&session.vlsh) {
                by_sh.remove(&session.sh());
            }
        }
        let mut a = self.alloc.lock().unwrap_or_else(PoisonError::into_inner);
        if session.live.swap(false, Ordering::AcqRel) {
            session.refresh_lock_free();
            session.demux.reset();
            a.free.push(session.vlsh as usize);
        }
    }

    /// The vlsh whose session maps to VCL handle `sh`.
    pub fn vlsh_of(&self, sh: Sh) -> Option<Vlsh> {
        if sh == INVALID {
            return None;
        }
        self.by_sh.read().unwrap_or_else(PoisonError::into_inner).get(&sh).copied()
    }

    /// Points `session` at a new VCL handle (after migration), keeping the
    /// table in step. The caller holds the session's lock.
    pub fn remap(&self, locked: &LockedSession<'_>, new_sh: Sh) {
        let old = locked.sh();
        let mut by_sh = self.by_sh.write().unwrap_or_else(PoisonError::into_inner);
        if by_sh.get(&old) == Some(&locked.session.vlsh) {
            by_sh.remove(&old);
        }
        by_sh.insert(new_sh, locked.session.vlsh);
        locked.session.sh.store(new_sh, Ordering::Release);
        locked.session.refresh_lock_free();
    }

    /// Detaches `session` from its VCL session, which is gone (its worker
    /// was torn down): every later operation on it fails with `EBADFD`, and
    /// closing it only frees the VLS handle. The caller holds the session's
    /// lock.
    pub fn unmap(&self, locked: &LockedSession<'_>) {
        let old = locked.sh();
        let mut by_sh = self.by_sh.write().unwrap_or_else(PoisonError::into_inner);
        if by_sh.get(&old) == Some(&locked.session.vlsh) {
            by_sh.remove(&old);
        }
        locked.session.sh.store(INVALID, Ordering::Release);
        locked.session.refresh_lock_free();
    }

    /// The sessions live now (a snapshot: sessions allocated meanwhile may
    /// be missed, freed ones are skipped).
    pub fn live_sessions(&self) -> impl Iterator<Item = &VlsSession> + '_ {
        let next = self.alloc.lock().unwrap_or_else(PoisonError::into_inner).next;
        (0..next).filter_map(move |i| self.get(i as Vlsh))
    }

    /// [`Self::live_sessions`] without waiting for the pool's lock: `None`
    /// if another thread holds it (a caller that may run in a signal
    /// handler must not wait for a lock its own thread may hold).
    pub fn try_live_sessions(&self) -> Option<impl Iterator<Item = &VlsSession> + '_> {
        let next = match self.alloc.try_lock() {
            Ok(a) => a.next,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner().next,
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some((0..next).filter_map(move |i| self.get(i as Vlsh)))
    }

    /// Holds the pool's own locks from just before a fork until
    /// [`SessionPool::release_after_fork`] runs in the parent and in the
    /// child (on the forking thread), so the child never inherits them held
    /// by a thread it does not have. They are only ever held briefly and
    /// never one while waiting for the other.
    pub fn hold_across_fork(&'static self) {
        let a = self.alloc.lock().unwrap_or_else(PoisonError::into_inner);
        let b = self.by_sh.write().unwrap_or_else(PoisonError::into_inner);
        FORK_HOLD.with(|h| *h.borrow_mut() = Some((a, b)));
    }

    /// See [`SessionPool::hold_across_fork`].
    pub fn release_after_fork() {
        FORK_HOLD.with(|h| drop(h.borrow_mut().take()));
    }

    /// In a forked child: sessions whose locks were held by threads of the
    /// parent (the child has only the forking thread) get fresh objects with
    /// the same state; the old ones are leaked, their locks can never be
    /// released. Returns how many were replaced.
    pub fn replace_sessions_held_by_lost_threads(&self) -> usize {
        let next = self.alloc.lock().unwrap_or_else(PoisonError::into_inner).next;
        let mut replaced = 0;
        for (slot, old) in (0..next).filter_map(|i| self.object(i)) {
            if old.is_locked() {
                slot.store(Box::into_raw(Box::new(old.fresh_copy())), Ordering::Release);
                replaced += 1;
            }
        }
        replaced
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        let a = self.alloc.lock().unwrap_or_else(PoisonError::into_inner);
        a.next - a.free.len()
    }

    #[cfg(test)]
    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of entries of the VCL-handle table (equal to the live
    /// sessions that have a VCL session).
    pub fn table_len(&self) -> usize {
        self.by_sh.read().unwrap_or_else(PoisonError::into_inner).len()
    }
}

#[cfg(test)]
mod tests {
    use super::super::solo::leaked_words;
    use super::*;

    #[test]
    fn alloc_get_free_reuses_handles() {
        let p = SessionPool::new(leaked_words());
        let a = p.alloc(0x0100_0001);
        let b = p.alloc(0x0100_0002);
        assert_eq!((a, b), (0, 1));
        assert_eq!(p.vlsh_of(0x0100_0002), Some(1));
        let sa = p.get(a).unwrap();
        assert_eq!(sa.sh(), 0x0100_0001);
        assert_eq!(crate::handle::sh_parts(sa.sh()).0, 1, "on worker 1");
        sa.lock().mark_closed();
        p.free(sa);
        assert!(p.get(a).is_none());
        assert_eq!(p.vlsh_of(0x0100_0001), None);
        assert_eq!(p.alloc(0x0100_0003), 0, "freed slot is reused");
        assert_eq!(p.len(), 2);
        assert!(p.get(-1).is_none() && p.get(99).is_none());
    }

    #[test]
    fn double_free_is_harmless_and_objects_are_reused() {
        let p = SessionPool::new(leaked_words());
        let a = p.alloc(5);
        let obj = p.get(a).unwrap() as *const VlsSession;
        p.free(p.get(a).unwrap());
        assert!(p.get(a).is_none());
        // SAFETY: session objects are never freed.
        p.free(unsafe { &*obj }); // freeing a dead session again: no-op
        let b = p.alloc(6);
        assert_eq!(a, b, "slot reused once, not twice");
        assert_eq!(p.alloc(7), 1, "the free list held slot 0 only once");
        let s = p.get(b).unwrap();
        assert!(std::ptr::eq(s, obj), "the same object serves the new session");
        assert_eq!(s.sh(), 6);
        assert!(!s.lock().closed(), "re-initialised");
        assert_eq!(p.vlsh_of(6), Some(b));
    }

    #[test]
    fn handles_beyond_the_pool_are_rejected() {
        let p = SessionPool::new(leaked_words());
        assert!(p.get(MAX_SESSIONS as Vlsh).is_none());
        assert!(p.get(i32::MAX).is_none());
        assert!(p.get(5000).is_none(), "slot never used");
        assert_eq!(p.lock_free_sh(-1), None);
        assert_eq!(p.lock_free_sh(MAX_SESSIONS as Vlsh), None);
    }

    /// The word the single-thread lock-free path reads follows every
    /// change of what it sums up: a session takes that path only while it
    /// is live, open, non-blocking, no epoll session and mapped.
    #[test]
    fn the_lock_free_word_follows_the_session() {
        let p = SessionPool::new(leaked_words());
        let a = p.alloc(7);
        let s = p.get(a).unwrap();
        assert_eq!(p.lock_free_sh(a), None, "blocking when created");
        s.lock().set_nonblocking_hint(true);
        assert_eq!(p.lock_free_sh(a), Some(7));
        s.set_nonblocking_hint(false);
        assert_eq!(p.lock_free_sh(a), None, "blocking again");
        s.set_nonblocking_hint(true);
        let new_sh = crate::handle::sh_from_parts(1, 4);
        p.remap(&s.lock(), new_sh);
        assert_eq!(p.lock_free_sh(a), Some(new_sh), "moved");
        p.unmap(&s.lock());
        assert_eq!(p.lock_free_sh(a), None, "no VCL session");
        p.remap(&s.lock(), new_sh);
        assert_eq!(p.lock_free_sh(a), Some(new_sh));
        s.lock().mark_closed();
        assert_eq!(p.lock_free_sh(a), None, "closed");
        p.free(s);
        assert_eq!(p.lock_free_sh(a), None, "freed");
        // The slot's next session starts blocking, whatever the last was.
        assert_eq!(p.alloc(0), a);
        assert_eq!(p.lock_free_sh(a), None);
        s.set_nonblocking_hint(true);
        assert_eq!(p.lock_free_sh(a), Some(0), "VCL handle 0 is a handle");
        // An epoll session never takes the path.
        let e = p.alloc_epoll(9);
        p.get(e).unwrap().set_nonblocking_hint(true);
        assert_eq!(p.lock_free_sh(e), None);
    }

    #[test]
    fn remap_moves_the_table_entry() {
        let p = SessionPool::new(leaked_words());
        let a = p.alloc(crate::handle::sh_from_parts(0, 3));
        let s = p.get(a).unwrap();
        let new_sh = crate::handle::sh_from_parts(2, 9);
        {
            let l = s.lock();
            p.remap(&l, new_sh);
        }
        assert_eq!(s.sh(), new_sh);
        assert_eq!(p.vlsh_of(new_sh), Some(a));
        assert_eq!(p.vlsh_of(crate::handle::sh_from_parts(0, 3)), None);
    }
}
