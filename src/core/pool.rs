//! The VLS session pool and the VCL-handle → VLS-handle table.
//!
//! A VLS handle (`vlsh`) is a small non-negative integer, the index of a
//! session in the pool; LDP turns it into a file descriptor, so handles are
//! reused after close, lowest-numbered-last-freed first, like a vppinfra pool.
//!
//! Invariants:
//! - a slot holds `Some(session)` from allocation until the close that
//!   frees it; the session's `vlsh` equals its slot index;
//! - a closed session is marked `closed` (under its own lock) *before* its
//!   slot is emptied, so a thread that fetched it just before the close sees
//!   `closed` once it gets the lock and reports `EBADFD`;
//! - the table maps every live session's current VCL handle to its vlsh.
//!
//! Sessions are reference counted: fetching one clones an `Arc`, so a slot
//! can be emptied while another thread still holds the session.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::demux::{EpollDemux, Membership};
use crate::seam::{Sh, INVALID};

/// A VLS handle, as in `vcl_locked.h` (`vls_handle_t`).
pub type Vlsh = i32;

/// `VLS_INVALID_HANDLE`.
pub const INVALID_VLSH: Vlsh = -1;

/// One VLS session.
pub struct VlsSession {
    /// Index in the pool; fixed for the life of the session.
    pub vlsh: Vlsh,
    /// Created by `epoll_create`.
    pub is_epoll: bool,
    /// The epoll set this session is in, and the application's event data.
    pub membership: Membership,
    /// For an epoll session: its demultiplexing state.
    pub demux: Option<EpollDemux>,
    /// Set by close before it waits for the session lock, so a thread blocked
    /// inside VCL on this session can be told to give up.
    pub app_closed: AtomicBool,
    /// The libc epoll fd LDP pairs with this (epoll) session; 0 if none
    /// (LDP tests for 0).
    /// Read without the session lock (LDP reads it while another thread may
    /// be blocked on the session).
    pub libc_epfd: AtomicI32,
    /// Current VCL handle, readable without the lock; written only with
    /// `state` locked.
    sh: AtomicU32,
    state: Mutex<SessionState>,
}

/// The part of a session only its lock holder may read or change.
#[derive(Debug)]
pub struct SessionState {
    /// The session was closed; every operation now fails with `EBADFD`.
    pub closed: bool,
    /// VCL worker that owned the session when it was allocated.
    pub owner_wrk: u32,
    /// VCL session of this VLS session on each worker that has one
    /// (more than one only after migration between per-thread workers).
    pub per_worker: Vec<(u32, u32)>,
}

/// A locked session: the guard of its state plus its VCL handle.
pub struct LockedSession<'a> {
    /// The session.
    pub session: &'a VlsSession,
    /// Its state, locked.
    pub state: MutexGuard<'a, SessionState>,
}

impl LockedSession<'_> {
    /// The VCL handle the session maps to now.
    pub fn sh(&self) -> Sh {
        self.session.sh.load(Ordering::Acquire)
    }
}

impl VlsSession {
    fn new(vlsh: Vlsh, sh: Sh, is_epoll: bool) -> Self {
        let (wrk, idx) = crate::seam::sh_parts(sh);
        VlsSession {
            vlsh,
            is_epoll,
            membership: Membership::default(),
            demux: is_epoll.then(EpollDemux::default),
            app_closed: AtomicBool::new(false),
            libc_epfd: AtomicI32::new(0),
            sh: AtomicU32::new(sh),
            state: Mutex::new(SessionState { closed: false, owner_wrk: wrk, per_worker: vec![(wrk, idx)] }),
        }
    }

    /// The VCL handle the session maps to now, without locking.
    pub fn sh(&self) -> Sh {
        self.sh.load(Ordering::Acquire)
    }

    /// Locks the session (blocking).
    pub fn lock(&self) -> LockedSession<'_> {
        LockedSession { session: self, state: self.state.lock().unwrap_or_else(PoisonError::into_inner) }
    }

    /// Locks the session if it is free.
    pub fn try_lock(&self) -> Option<LockedSession<'_>> {
        match self.state.try_lock() {
            Ok(state) => Some(LockedSession { session: self, state }),
            Err(std::sync::TryLockError::Poisoned(p)) => {
                Some(LockedSession { session: self, state: p.into_inner() })
            }
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }
}

#[derive(Default)]
struct Slab {
    entries: Vec<Option<Arc<VlsSession>>>,
    free: Vec<usize>,
}

/// Pool of VLS sessions plus the VCL-handle table.
#[derive(Default)]
pub struct SessionPool {
    slab: RwLock<Slab>,
    by_sh: RwLock<HashMap<Sh, Vlsh>>,
}

impl SessionPool {
    /// Adds a session for VCL handle `sh`; returns its vlsh.
    pub fn alloc(&self, sh: Sh) -> Vlsh {
        self.alloc_kind(sh, false)
    }

    /// Adds an epoll session for VCL handle `sh`; returns its vlsh.
    pub fn alloc_epoll(&self, sh: Sh) -> Vlsh {
        self.alloc_kind(sh, true)
    }

    fn alloc_kind(&self, sh: Sh, is_epoll: bool) -> Vlsh {
        let mut slab = self.slab.write().unwrap_or_else(PoisonError::into_inner);
        let index = match slab.free.pop() {
            Some(i) => i,
            None => {
                slab.entries.push(None);
                slab.entries.len() - 1
            }
        };
        let vlsh = index as Vlsh;
        slab.entries[index] = Some(Arc::new(VlsSession::new(vlsh, sh, is_epoll)));
        self.by_sh.write().unwrap_or_else(PoisonError::into_inner).insert(sh, vlsh);
        vlsh
    }

    /// The session with handle `vlsh`, if it exists.
    pub fn get(&self, vlsh: Vlsh) -> Option<Arc<VlsSession>> {
        let index = usize::try_from(vlsh).ok()?;
        let slab = self.slab.read().unwrap_or_else(PoisonError::into_inner);
        slab.entries.get(index)?.clone()
    }

    /// Frees the slot of `session` (which must be marked closed) and removes
    /// its VCL handle from the table.
    pub fn free(&self, session: &Arc<VlsSession>) {
        let index = session.vlsh as usize;
        {
            let mut by_sh = self.by_sh.write().unwrap_or_else(PoisonError::into_inner);
            if by_sh.get(&session.sh()) == Some(&session.vlsh) {
                by_sh.remove(&session.sh());
            }
        }
        let mut slab = self.slab.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = slab.entries.get_mut(index) {
            if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, session)) {
                *slot = None;
                slab.free.push(index);
            }
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
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        let slab = self.slab.read().unwrap_or_else(PoisonError::into_inner);
        slab.entries.len() - slab.free.len()
    }

    /// True when no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All live sessions (for shutdown and diagnostics).
    pub fn all(&self) -> Vec<Arc<VlsSession>> {
        let slab = self.slab.read().unwrap_or_else(PoisonError::into_inner);
        slab.entries.iter().flatten().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_get_free_reuses_handles() {
        let p = SessionPool::default();
        let a = p.alloc(0x0100_0001);
        let b = p.alloc(0x0100_0002);
        assert_eq!((a, b), (0, 1));
        assert_eq!(p.vlsh_of(0x0100_0002), Some(1));
        let sa = p.get(a).unwrap();
        assert_eq!(sa.sh(), 0x0100_0001);
        assert_eq!(sa.lock().state.owner_wrk, 1);
        sa.lock().state.closed = true;
        p.free(&sa);
        assert!(p.get(a).is_none());
        assert_eq!(p.vlsh_of(0x0100_0001), None);
        assert_eq!(p.alloc(0x0100_0003), 0, "freed slot is reused");
        assert_eq!(p.len(), 2);
        assert!(p.get(-1).is_none() && p.get(99).is_none());
    }

    #[test]
    fn freeing_a_stale_session_keeps_the_new_one() {
        let p = SessionPool::default();
        let a = p.alloc(5);
        let old = p.get(a).unwrap();
        p.free(&old);
        let b = p.alloc(6);
        assert_eq!(a, b);
        p.free(&old); // a second free of the old session must not touch slot a
        assert_eq!(p.get(b).unwrap().sh(), 6);
        assert_eq!(p.vlsh_of(6), Some(b));
    }

    #[test]
    fn remap_moves_the_table_entry() {
        let p = SessionPool::default();
        let a = p.alloc(crate::seam::sh_from_parts(0, 3));
        let s = p.get(a).unwrap();
        let new_sh = crate::seam::sh_from_parts(2, 9);
        {
            let l = s.lock();
            p.remap(&l, new_sh);
        }
        assert_eq!(s.sh(), new_sh);
        assert_eq!(p.vlsh_of(new_sh), Some(a));
        assert_eq!(p.vlsh_of(crate::seam::sh_from_parts(0, 3)), None);
    }
}
