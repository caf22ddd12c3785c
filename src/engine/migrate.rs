//! Per-thread workers (`multi-thread-workers`): moving a session to the
//! worker of the thread that uses it.
//!
//! In this mode every thread has a VCL worker of its own, and a VCL session
//! belongs to one worker. When a thread uses a VLS session whose VCL session
//! is on another thread's worker, VLS *moves* it to the caller's worker,
//! keeping its VLS handle. What moves (the shim's `vppsys_session_move_out`
//! and `vppsys_session_take_over` do the VCL and VPP side):
//!
//! - **Sessions never opened** (no VPP session, no FIFOs): the record moves.
//! - **Stream listeners**: the listener *moves to the accepting thread*
//!   (rather than every accepting worker listening on it). The record moves,
//!   then the new worker sends VPP a worker update for the listener, which
//!   makes it the listener's owner (VPP's `application_change_listener_owner`)
//!   and answers on the new worker's queue; the mover waits for that answer
//!   (3 s bound) handling its own queue. Why moving: with several listening
//!   workers VPP hands each new connection to one of them in turn, and a
//!   worker whose thread does not accept (the `main` that listened and then
//!   joins its threads) would keep its share unserved for ever; a moved
//!   listener has all its connections where they are accepted. Connections
//!   VPP had already handed the old worker come along in the listener's
//!   accept queue (the old worker's queue is handled first, as that worker,
//!   when its gate is taken; by RPC the owner has handled them before the
//!   request). So do those VPP announces to the old worker until it has
//!   handled the update: the listener leaves a *stub* there (a bare listen
//!   session with its index and VPP handle) on which VCL queues them, and
//!   once VPP has answered, and a ping the mover sends itself through VPP
//!   has come back, the mover takes the stub, with them, into the
//!   listener's accept queue (directly, handling the old worker's queue
//!   first, or by RPC: VCL handles its queue in order, so the owner has
//!   queued them on the stub before it handles the request). The ping: VPP
//!   answers the update at once, but announces a connection it accepted
//!   just before through the old worker's pending events, which its
//!   session-input node sends after the node that answered; the ping
//!   comes back through that node in a later round, after them. Without
//!   the stub they were lost: nobody reads the queue of a `main` sitting in
//!   `pthread_join`, and VCL drops an accept for a listener it does not
//!   know. They stay the old worker's in VPP: accepting one hands it to
//!   the new worker with a worker update while that is safe (through VPP's
//!   stack, and its FIFOs still fresh: one chunk, at most half used), else
//!   the accept returns `ECONNABORTED` (its peer sees a reset; cut-through
//!   connections always, as the update would free FIFOs the peer
//!   application shares) — see the shim.
//!   Caveat: a listener that moves while a connection to it is being set up
//!   (handshake in progress in VPP) may lose that connection (VPP clears the
//!   old worker's half-open sessions when the listener changes owner: it
//!   closes the sessions still in state `CREATED` in the old worker's
//!   segment manager, `app_worker_stop_listen_session`; the peer sees the
//!   connection closed or reset right after it connected);
//!   several threads accepting on one listener work (the listener moves at
//!   every turn), but each such move is a moment a connection can be lost.
//!   Datagram listeners do not move.
//! - **Epoll sets, with members** that can move themselves (listeners,
//!   sessions never opened; a set with a connection in it stays with the
//!   connection, and other threads' waits on it get `EBADFD`): the set's
//!   record moves and its members are unlinked from it in VCL (VCL's sets link members of their own
//!   worker only). Members that live on the new worker rejoin it at once
//!   (with the events they were registered with); the others are recorded
//!   *away* ([`Away`]). A member that moves (to a thread that uses it)
//!   leaves its set in VCL the same way, and rejoins it wherever it lands
//!   on the set's worker. Every epoll wait of mode 2 first brings the set
//!   and its away members to the waiting thread's worker
//!   ([`super::Vls::gather_members`]); the wait inside VCL lasts at most
//!   20 ms (1 ms while a member is busy on another thread) before it looks
//!   again, so a member another thread took away during a wait comes back
//!   within that time and its events reach the waiter. A connection cannot
//!   join a set of another worker: that `epoll_ctl` gets `EBADFD`.
//! - **Connections do not move**: another thread's call on a connected
//!   session gets `EBADFD` at once and the session is left intact for its
//!   owner. VPP's only way to hand a connection to another worker, the
//!   worker update, gives it new FIFOs and copies the old ones with
//!   `svm_fifo_clone`, which (VPP 25.10 to 26.10) copies just the head chunk
//!   and keeps head and tail: right only for FIFOs made of one chunk. VCL
//!   apps' FIFOs start with a 4 KiB chunk and grow, so after some traffic
//!   the copy overruns the new FIFO's chunk in VPP's segment and the reader
//!   walks chunk pointers that do not exist (tried: a connection moved
//!   between four threads under a 1 MiB stream crashed in
//!   `svm_fifo_copy_from_chunk_ma` within ten moves). The fork hand-over of
//!   connections (`fork_hooks`) uses the same update and shares the risk.
//!   Servers in mode 2 accept and serve a connection on one thread (mode 3
//!   serves "accept here, serve there" designs).
//!
//! The owner's own non-blocking reads and writes take no lock at all (the
//! gate's *fast lane*, see [`Gate`]): a mover marks the session in transit
//! before it takes the owner's gate or sends its request, and the lane
//! leaves marked sessions to the locked path, which waits for the mover.
//!
//! How a move happens, with the VLS session locked throughout:
//! 1. **Directly**, when the owner thread is not inside VCL. Every thread
//!    holds its worker's [`Gate`] whenever it is inside VCL; a mover that
//!    gets the owner's gate with `try_lock` moves the session out of the
//!    owner's worker itself and into its own. The owner need not come back
//!    into VLS at all (a thread sitting in `pthread_join`).
//! 2. **By RPC** otherwise: the owner is inside VCL, where it handles its
//!    message queue, RPCs included. The mover registers a request in the
//!    [`RpcTable`], sends its id through VPP, and waits (3 s at most) while
//!    handling its own queue — so two threads moving each other's sessions
//!    at the same moment answer each other. The owner's handler moves the
//!    session out into the request; the mover moves it in.
//!
//! Request protocol (the data is in [`Request`], guarded by its mutex):
//! - `Waiting` → `Answered(result)`: by the handler, on the owner's thread;
//! - `Waiting` → `Abandoned`: by the mover, on timeout or when it found a
//!   faster way (the owner's gate became free, or the owner is exiting).
//!
//! Exactly one of the two happens, so a late RPC (the owner handles it after
//! the mover gave up) finds `Abandoned` and does nothing: the session stays
//! where it is and nothing is copied into memory that was reused. Ids are
//! never reused (a 64-bit counter), which is the generation check.
//!
//! The session moves rather than being cloned: the owner's record is freed
//! when the copy is made, and its heap blocks go with the copy, so there are
//! never two records of one session and closing needs no cleanup RPCs.
//! Calls on the session from any thread wait on its lock meanwhile, so none
//! sees it half moved; an owner that exited took its sessions with its
//! worker, and using them fails with `EBADFD` at once.

use std::collections::HashMap;
use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use super::solo;
use crate::seam::MoveError;

/// How long a mover waits for the owner's answer (`VLS_WORKER_RPC_TIMEOUT`).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(3);

/// Workers with a gate; a worker index beyond this has none (its sessions
/// then only move by RPC). VCL's default limit is 16 workers.
pub const MAX_GATED_WORKERS: usize = 1024;

/// One VCL worker's gate: held by the worker's thread while it is inside
/// VCL, and by a mover while it moves a session out of the worker.
/// Cache-line aligned (two lines): every call of a worker's thread takes its
/// gate, and threads of different workers must not write the same line.
///
/// The worker's own thread enters in one of two ways:
///
/// - [`Gate::enter`], the mutex, for everything that may wait or change
///   the worker's sessions;
/// - [`Gate::enter_fast`], the *fast lane*, for a non-blocking read or write
///   of a session on the worker: two plain stores and a load, no atomic
///   read-modify-write. It is an asymmetric Dekker handshake with the movers
///   (as in [`super::solo`]): the owner stores `owner_inside`, then loads
///   `claimed`; a mover ([`Gate::try_enter`]) holding the mutex stores
///   `claimed`, runs `membarrier()` (a full barrier on every running thread
///   of the process), then loads `owner_inside`. Either the mover sees the
///   owner inside (and does not take the gate), or the owner sees the claim
///   (and takes the slow path, which waits on the session lock the mover
///   holds). Only while `fast_lane` is on, which needs a registered
///   `membarrier` ([`Gates::set_fast_lane`]).
///
/// Invariants:
/// - `owner_inside` is written only by the worker's thread, true only
///   inside a [`FastLane`];
/// - `claimed` is written only by the holder of `inside`, true only while
///   a mover's [`GateGuard`] lives.
#[derive(Default)]
#[repr(align(128))]
pub struct Gate {
    inside: Mutex<()>,
    /// The worker's thread is exiting: nothing may move out of it, and
    /// movers waiting for its answer give up.
    exiting: AtomicBool,
    /// The worker's thread is in the fast lane.
    owner_inside: AtomicBool,
    /// A mover holds the gate (the fast lane is closed).
    claimed: AtomicBool,
    /// The fast lane may be used: movers must claim with a barrier.
    fast_lane: AtomicBool,
}

/// Holding a worker's gate (the mutex, and for a mover the claim that
/// keeps the worker's thread out of its fast lane; released first).
pub struct GateGuard<'a> {
    claimed: Option<&'a AtomicBool>,
    _inside: MutexGuard<'a, ()>,
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.claimed {
            c.store(false, Ordering::Release);
        }
    }
}

/// The worker's thread in its fast lane (see [`Gate`]); leaves on drop.
#[must_use]
pub struct FastLane<'a> {
    owner_inside: &'a AtomicBool,
}

impl Drop for FastLane<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.owner_inside.store(false, Ordering::Release);
    }
}

impl Gate {
    /// Takes the gate (the worker's own thread, entering VCL).
    pub fn enter(&self) -> GateGuard<'_> {
        GateGuard { claimed: None, _inside: self.inside.lock().unwrap_or_else(PoisonError::into_inner) }
    }

    /// Enters the fast lane (the worker's own thread only, not holding the
    /// gate), unless it is off or a mover holds the gate.
    #[inline(always)]
    pub fn enter_fast(&self) -> Option<FastLane<'_>> {
        if !self.fast_lane.load(Ordering::Relaxed) {
            return None;
        }
        self.owner_inside.store(true, Ordering::Relaxed);
        // The store above and the load below stay in this order in the
        // code; the hardware order is the mover's `membarrier`'s business.
        compiler_fence(Ordering::SeqCst);
        let lane = FastLane { owner_inside: &self.owner_inside };
        // Acquire: what a mover did before releasing its claim is visible.
        (!self.claimed.load(Ordering::Acquire)).then_some(lane)
    }

    /// Takes the gate if its thread is not inside VCL (nor in its fast
    /// lane).
    pub fn try_enter(&self) -> Option<GateGuard<'_>> {
        let inside = match self.inside.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        if !self.fast_lane.load(Ordering::Acquire) {
            return Some(GateGuard { claimed: None, _inside: inside });
        }
        self.claimed.store(true, Ordering::Relaxed);
        let guard = GateGuard { claimed: Some(&self.claimed), _inside: inside };
        if !solo::barrier() {
            // Cannot happen once registered; an owner in its lane may be
            // missed, so do not take the gate.
            tracing::error!(errno = std::io::Error::last_os_error().raw_os_error(), "membarrier failed");
            return None;
        }
        (!self.owner_inside.load(Ordering::Acquire)).then_some(guard)
    }

    /// The worker's thread is exiting.
    pub fn is_exiting(&self) -> bool {
        self.exiting.load(Ordering::Acquire)
    }

    /// Marks the worker exiting (or, when a new thread gets the worker
    /// index, alive again).
    pub fn set_exiting(&self, on: bool) {
        self.exiting.store(on, Ordering::Release);
    }
}

/// The gates of all workers, by worker index.
pub struct Gates(Box<[Gate]>);

impl Default for Gates {
    fn default() -> Self {
        Gates((0..MAX_GATED_WORKERS).map(|_| Gate::default()).collect())
    }
}

impl Gates {
    /// Opens (or closes) every gate's fast lane. Open it only with a
    /// registered `membarrier` ([`solo::register_barrier`]) and while no
    /// thread is in a lane or holds a gate (app creation, a forked child).
    pub fn set_fast_lane(&self, on: bool) {
        for g in self.0.iter() {
            g.fast_lane.store(on, Ordering::Release);
        }
    }

    /// The gate of worker `wrk`, if it has one.
    #[inline]
    pub fn get(&self, wrk: u32) -> Option<&Gate> {
        self.0.get(wrk as usize)
    }
}

/// State of one move request.
pub enum Request<M> {
    /// Sent, not handled yet.
    Waiting,
    /// Handled by the owner: the moved session or why it could not move.
    Answered(Result<M, MoveError>),
    /// The mover gave up; a late handler must do nothing.
    Abandoned,
}

/// Move requests in flight, by id.
pub struct RpcTable<M> {
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Arc<Mutex<Request<M>>>>>,
}

impl<M> Default for RpcTable<M> {
    fn default() -> Self {
        RpcTable { next_id: AtomicU64::new(1), pending: Mutex::new(HashMap::new()) }
    }
}

/// A request registered by a mover; withdrawn from the table when dropped.
pub struct PendingRequest<'a, M> {
    table: &'a RpcTable<M>,
    /// The id sent to the owner.
    pub id: u64,
    request: Arc<Mutex<Request<M>>>,
}

impl<M> RpcTable<M> {
    /// Registers a new request.
    pub fn register(&self) -> PendingRequest<'_, M> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let request = Arc::new(Mutex::new(Request::Waiting));
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).insert(id, request.clone());
        PendingRequest { table: self, id, request }
    }

    /// The handler's side: if request `id` is still waiting, answers it with
    /// `work()` (run with the request locked, so the mover cannot give up
    /// meanwhile). Returns false if the request is unknown or abandoned
    /// (then `work` is not run).
    pub fn answer(&self, id: u64, work: impl FnOnce() -> Result<M, MoveError>) -> bool {
        let Some(request) = self.pending.lock().unwrap_or_else(PoisonError::into_inner).get(&id).cloned()
        else {
            return false;
        };
        let mut r = request.lock().unwrap_or_else(PoisonError::into_inner);
        if !matches!(*r, Request::Waiting) {
            return false;
        }
        *r = Request::Answered(work());
        true
    }

    #[cfg(test)]
    /// Requests in the table (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    #[cfg(test)]
    /// No request in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<M> PendingRequest<'_, M> {
    /// The answer, if the owner has given it (taken out of the request).
    pub fn try_take(&self) -> Option<Result<M, MoveError>> {
        self.take_answer(false)
    }

    /// Gives up: from now on a late handler does nothing. Returns the
    /// answer if it came in first (the caller must use it: the session has
    /// already left the owner).
    pub fn abandon(&self) -> Option<Result<M, MoveError>> {
        self.take_answer(true)
    }

    /// Takes the answer if there is one; otherwise, with `give_up`, marks
    /// the request abandoned.
    fn take_answer(&self, give_up: bool) -> Option<Result<M, MoveError>> {
        let mut r = self.request.lock().unwrap_or_else(PoisonError::into_inner);
        match std::mem::replace(&mut *r, Request::Abandoned) {
            Request::Answered(a) => Some(a),
            Request::Waiting if !give_up => {
                *r = Request::Waiting;
                None
            }
            _ => None,
        }
    }
}

impl<M> Drop for PendingRequest<'_, M> {
    fn drop(&mut self) {
        // A request dropped while still waiting is abandoned first, so a
        // late answer is refused rather than lost.
        drop(self.abandon());
        self.table.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

/// What a mover takes out of another worker.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Take {
    /// A session, to move it to the mover's worker.
    Session,
    /// The stub a listener left on the worker it moved out of, with the
    /// connections VPP announced there until it handled the move (see
    /// `Vls::take_listener_stub`).
    ListenerStub,
}

/// The RPC messages VLS sends between workers of one process.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Rpc {
    /// Move session `session_index` out of the destination worker into
    /// request `id` of the [`RpcTable`].
    Move {
        /// Request id (ids are never reused).
        id: u64,
        /// The session, on the destination worker.
        session_index: u32,
    },
    /// Close session `session_index` of the destination worker: its VLS
    /// session was closed by another thread while the owner was busy.
    Close {
        /// The session, on the destination worker.
        session_index: u32,
    },
    /// Take the stub a listener that moved away left at `session_index` of
    /// the destination worker (with the connections queued on it) into
    /// request `id` of the [`RpcTable`].
    TakeStub {
        /// Request id (ids are never reused).
        id: u64,
        /// The stub, on the destination worker.
        session_index: u32,
    },
    /// A round trip through VPP: the destination (the sender itself)
    /// records `id` as back (see [`Moves::pings_back`]).
    Ping {
        /// Ping id (ids are never reused).
        id: u64,
    },
}

/// Marks a VLS RPC ("VLSR"), so a stray payload is ignored.
const MAGIC: u32 = 0x564c_5352;
const KIND_MOVE: u32 = 1;
const KIND_CLOSE: u32 = 2;
const KIND_TAKE_STUB: u32 = 3;
const KIND_PING: u32 = 4;

impl Rpc {
    /// Encoded length.
    pub const LEN: usize = 20;

    /// The payload sent through VCL.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let (kind, id, index) = match *self {
            Rpc::Move { id, session_index } => (KIND_MOVE, id, session_index),
            Rpc::Close { session_index } => (KIND_CLOSE, 0, session_index),
            Rpc::TakeStub { id, session_index } => (KIND_TAKE_STUB, id, session_index),
            Rpc::Ping { id } => (KIND_PING, id, 0),
        };
        let mut b = [0u8; Self::LEN];
        b[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        b[4..8].copy_from_slice(&kind.to_le_bytes());
        b[8..16].copy_from_slice(&id.to_le_bytes());
        b[16..20].copy_from_slice(&index.to_le_bytes());
        b
    }

    /// Decodes a payload; `None` if it is not one of ours.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let word = |r: std::ops::Range<usize>| Some(u32::from_le_bytes(b.get(r)?.try_into().ok()?));
        if b.len() < Self::LEN || word(0..4)? != MAGIC {
            return None;
        }
        let id = u64::from_le_bytes(b[8..16].try_into().ok()?);
        let session_index = word(16..20)?;
        match word(4..8)? {
            KIND_MOVE => Some(Rpc::Move { id, session_index }),
            KIND_CLOSE => Some(Rpc::Close { session_index }),
            KIND_TAKE_STUB => Some(Rpc::TakeStub { id, session_index }),
            KIND_PING => Some(Rpc::Ping { id }),
            _ => None,
        }
    }
}

/// Epoll members "away" from their set: linked into no VCL set because
/// they live on another worker than the set (see the module docs). The
/// set's next wait brings them back to its worker.
#[derive(Default)]
pub struct Away {
    /// Entries in `list` (read without the lock on every mode-2 wait).
    n: AtomicU64,
    /// (set, member) pairs, each once.
    list: Mutex<Vec<(i32, i32)>>,
}

impl Away {
    /// Records that `member` of `set` lives away from the set's worker.
    pub fn add(&self, set: i32, member: i32) {
        let mut l = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        if !l.contains(&(set, member)) {
            l.push((set, member));
            self.n.store(l.len() as u64, Ordering::Release);
        }
    }

    /// Takes the members recorded away from `set`.
    pub fn take(&self, set: i32) -> Vec<i32> {
        if self.n.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let mut l = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        let mut taken = Vec::new();
        l.retain(|&(s, m)| {
            if s == set {
                taken.push(m);
                false
            } else {
                true
            }
        });
        self.n.store(l.len() as u64, Ordering::Release);
        taken
    }

    #[cfg(test)]
    /// Members recorded away from `set` right now.
    pub fn count(&self, set: i32) -> usize {
        if self.n.load(Ordering::Acquire) == 0 {
            return 0;
        }
        self.list.lock().unwrap_or_else(PoisonError::into_inner).iter().filter(|&&(s, _)| s == set).count()
    }
}

/// The state of session moves between per-thread workers, one per process.
pub(super) struct Moves<M> {
    /// Each worker's "inside VCL" gate.
    pub gates: Gates,
    /// Moves waiting for an owner's answer.
    pub rpcs: RpcTable<M>,
    /// Movers may take an idle owner's gate and move a session themselves
    /// (default). Off, every move is an RPC (set by `VLS_MIGRATE_BY_RPC=1`,
    /// to exercise that path).
    pub direct_moves: AtomicBool,
    /// How long a mover waits for the owner's answer, in milliseconds
    /// ([`RPC_TIMEOUT`] unless `VLS_RPC_TIMEOUT_MS` says otherwise at app
    /// creation).
    pub rpc_timeout_ms: AtomicU64,
    /// Epoll members living away from their set's worker.
    pub away: Away,
    /// The last ping id given out (see [`Rpc::Ping`]).
    pub pings_sent: AtomicU64,
    /// Pings that did not come back in time.
    pub pings_lost: AtomicU64,
    /// Pings that came back and whose sender has not looked yet (each
    /// thread pings its own worker; several may wait at once).
    pub pings_back: Mutex<Vec<u64>>,
}

impl<M> Default for Moves<M> {
    fn default() -> Self {
        Moves {
            gates: Gates::default(),
            rpcs: RpcTable::default(),
            direct_moves: AtomicBool::new(true),
            rpc_timeout_ms: AtomicU64::new(RPC_TIMEOUT.as_millis() as u64),
            away: Away::default(),
            pings_sent: AtomicU64::new(0),
            pings_lost: AtomicU64::new(0),
            pings_back: Mutex::new(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_messages_round_trip_and_strangers_are_rejected() {
        for m in [
            Rpc::Move { id: 0x1122_3344_5566_7788, session_index: 42 },
            Rpc::Close { session_index: 7 },
            Rpc::TakeStub { id: 9, session_index: 3 },
            Rpc::Ping { id: 11 },
        ] {
            let mut padded = [0u8; 64];
            padded[..Rpc::LEN].copy_from_slice(&m.encode());
            assert_eq!(Rpc::decode(&padded), Some(m));
            assert_eq!(Rpc::decode(&m.encode()[..8]), None);
        }
        assert_eq!(Rpc::decode(&[0u8; 64]), None);
        let mut bad_kind = Rpc::Close { session_index: 1 }.encode();
        bad_kind[4] = 9;
        assert_eq!(Rpc::decode(&bad_kind), None);
    }

    #[test]
    fn answered_request_is_taken_once() {
        let t = RpcTable::<u32>::default();
        let p = t.register();
        assert!(p.try_take().is_none());
        assert!(t.answer(p.id, || Ok(7)));
        assert!(!t.answer(p.id, || Ok(8)), "a request is answered once");
        assert_eq!(p.try_take(), Some(Ok(7)));
        drop(p);
        assert!(t.is_empty());
    }

    #[test]
    fn late_answer_after_abandon_does_nothing() {
        let t = RpcTable::<u32>::default();
        let p = t.register();
        let id = p.id;
        assert!(p.abandon().is_none());
        let mut ran = false;
        assert!(!t.answer(id, || {
            ran = true;
            Ok(1)
        }));
        assert!(!ran, "the handler's work must not run for an abandoned request");
        drop(p);
        assert!(!t.answer(id, || Ok(1)), "unknown once withdrawn");
        assert!(t.is_empty());
    }

    #[test]
    fn abandon_returns_an_answer_that_came_first() {
        let t = RpcTable::<u32>::default();
        let p = t.register();
        assert!(t.answer(p.id, || Err(MoveError::NoSession)));
        assert_eq!(p.abandon(), Some(Err(MoveError::NoSession)));
    }

    #[test]
    fn dropping_a_waiting_request_refuses_a_racing_answer() {
        let t = Arc::new(RpcTable::<u32>::default());
        for _ in 0..200 {
            let p = t.register();
            let id = p.id;
            let t2 = t.clone();
            let h = std::thread::spawn(move || t2.answer(id, || Ok(1)));
            drop(p);
            // Either the answer came first (and was dropped with the
            // request, as the mover would have used it) or it was refused;
            // never a stale entry.
            let _ = h.join().unwrap();
            assert!(t.is_empty());
        }
    }

    #[test]
    fn away_members_are_taken_by_their_set_once() {
        let a = Away::default();
        assert!(a.take(1).is_empty());
        a.add(1, 10);
        a.add(1, 10);
        a.add(2, 11);
        a.add(1, 12);
        assert_eq!(a.count(1), 2, "each pair once");
        assert_eq!(a.take(1), vec![10, 12]);
        assert!(a.take(1).is_empty());
        assert_eq!(a.take(2), vec![11]);
        assert_eq!(a.count(2), 0);
    }

    #[test]
    fn gate_try_enter_fails_while_held() {
        let g = Gate::default();
        let held = g.enter();
        assert!(g.try_enter().is_none());
        drop(held);
        assert!(g.try_enter().is_some());
        assert!(Gates::default().get(MAX_GATED_WORKERS as u32).is_none());
    }
}
