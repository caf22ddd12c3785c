//! Bringing a session to the calling thread's worker (per-thread workers,
//! `multi-thread-workers`): a locked call on a session another thread's
//! worker holds moves it here first — directly when the owner is outside
//! VCL, else by RPC — along with a listener's stub and the epoll links,
//! and the RPC handler that answers other threads' requests. The protocol
//! and its invariants are in [`super::migrate`]; the locking around the
//! call that asks for the move is in `access`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use super::migrate::{Gate, GateGuard, Rpc, Take};
use super::pool::{LockedSession, VlsSession};
use super::{Vls, EBADFD};
use crate::handle::{sh_from_parts, sh_parts, Sh, Vlsh, INVALID};
use crate::seam::{MoveError, RpcHandler, Vcl};

/// A session marked in transit (see [`VlsSession::in_transit`]) for as long
/// as this lives; the session's whole lock is held meanwhile.
struct InTransit<'a>(&'a AtomicBool);

impl<'a> InTransit<'a> {
    fn mark(s: &'a VlsSession) -> Self {
        s.in_transit.store(true, Ordering::Release);
        InTransit(&s.in_transit)
    }
}

impl Drop for InTransit<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl<V: Vcl> Vls<V> {
    /// The VCL handle to use for `locked` from the calling thread: with
    /// per-thread workers, the session is first moved to the thread's
    /// worker if it is on another's (see [`super::migrate`]).
    pub(super) fn sh_here(&'static self, locked: &LockedSession<'_>) -> Result<Sh, i32> {
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
        // Until the handle says where the session is, the owner's fast lane
        // keeps off it.
        let _in_transit = InTransit::mark(locked.session);
        let (moved, how) = self.move_from(owner, index, Take::Session).map_err(|e| {
            if e == MoveError::NotMovable {
                tracing::warn!(
                    vlsh,
                    owner,
                    current = me,
                    "session cannot move to this thread's worker: connections (and epoll sets holding one) stay \
                     on the worker of the thread that accepted or connected them (vls::engine::migrate)"
                );
            } else {
                tracing::warn!(vlsh, owner, current = me, reason = ?e, "session cannot move to this thread's worker");
            }
            EBADFD
        })?;
        let (new_sh, listener) = {
            let _inside = self.own_gate();
            let new_sh = match self.vcl.move_in(moved) {
                Ok(sh) => sh,
                Err(e) => {
                    // The session left its owner and found no new home: gone.
                    tracing::error!(vlsh, reason = ?e, "moved session could not be placed on this thread's worker");
                    self.pool.unmap(locked);
                    return Err(EBADFD);
                }
            };
            self.pool.remap(locked, new_sh);
            // A listener: VPP hands this worker its new connections from now
            // on (this waits for VPP's answer).
            match self.vcl.take_over(new_sh, self.rpc_timeout()) {
                Ok(listener) => (new_sh, listener),
                Err(e) => {
                    // (A listener's stub stays on the old worker, where VPP
                    // may still announce connections: VCL finds a listener
                    // for them there.)
                    tracing::error!(vlsh, reason = ?e, "VPP did not hand the moved session to this thread's worker");
                    self.vcl.close(new_sh);
                    self.pool.unmap(locked);
                    return Err(EBADFD);
                }
            }
        };
        if listener {
            // Connections VPP accepted just before it handled the update
            // reach the old worker's queue after its answer: after a round
            // trip through VPP they are there (see the module docs).
            if !self.round_trip_through_vpp() {
                tracing::warn!(
                    vlsh,
                    "no round trip through VPP after a listener's move: a connection may be late"
                );
            }
            // (Without this thread's gate: a request for the stub takes it
            // to send, and to answer others' requests while it waits.)
            self.take_listener_stub(owner, index, new_sh, vlsh);
        }
        let _inside = self.own_gate();
        self.settle_epoll(locked.session, new_sh);
        tracing::debug!(vlsh, from = owner, to = me, how, "session moved to this thread's worker");
        Ok(new_sh)
    }

    /// Sends this worker a ping through VPP ([`Rpc::Ping`]) and handles
    /// its queue until the ping is back (at most the RPC timeout): VPP has
    /// then handled everything this worker asked before, and sent the app's
    /// workers the events it had pending then. False if the ping did not
    /// come back.
    fn round_trip_through_vpp(&'static self) -> bool {
        let me = self.vcl.worker_index();
        let id = self.moves.pings_sent.fetch_add(1, Ordering::AcqRel) + 1;
        let _inside = self.own_gate();
        if self.vcl.send_rpc(me, &Rpc::Ping { id }.encode()) != 0 {
            self.moves.pings_lost.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let deadline = Instant::now() + self.rpc_timeout();
        let back = || {
            let mut b = self.moves.pings_back.lock().unwrap_or_else(PoisonError::into_inner);
            let found = b.iter().position(|&p| p == id).map(|i| b.swap_remove(i));
            found.is_some()
        };
        loop {
            self.vcl.flush_mq();
            if back() {
                return true;
            }
            if Instant::now() >= deadline {
                self.moves.pings_lost.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            std::thread::sleep(Duration::from_micros(20));
        }
    }

    /// After listener `vlsh` moved here (as `new_sh`) from session `index`
    /// of worker `owner` and VPP answered its take-over: takes the stub it
    /// left there (see the shim's `vppsys_session_move_out`), with the
    /// connections VPP announced to that worker until it answered, into the
    /// listener's accept queue, before the listener rejoins its epoll set
    /// (which then reports it readable). Directly if the old worker's thread
    /// is outside VCL, else by RPC: that thread has queued them on the stub
    /// before it handles the request (VCL handles its queue in order). The
    /// listener's lock keeps it here meanwhile.
    fn take_listener_stub(&'static self, owner: u32, index: u32, new_sh: Sh, vlsh: Vlsh) {
        let stub = match self.move_from(owner, index, Take::ListenerStub) {
            Ok((stub, _)) => stub,
            Err(MoveError::NoWorker) if self.moves.gates.get(owner).is_some_and(Gate::is_exiting) => {
                // Its worker goes, and VPP cleans up what it was given.
                tracing::debug!(vlsh, owner, "moved listener's old worker is exiting: its stub goes with it");
                return;
            }
            Err(e) => {
                tracing::warn!(
                    vlsh,
                    owner,
                    reason = ?e,
                    "moved listener's stub not taken: connections VPP gave the old worker during the move wait there"
                );
                return;
            }
        };
        let _inside = self.own_gate();
        match self.vcl.merge_accepts(new_sh, stub) {
            Ok(0) => {}
            Ok(n) => tracing::debug!(
                vlsh,
                n,
                "connections VPP gave the listener's old worker during its move came along"
            ),
            Err(e) => {
                tracing::warn!(vlsh, reason = ?e, "connections VPP gave the listener's old worker during its move are lost")
            }
        }
    }

    /// After session `s` moved in as `sh` (this thread's gate held): a
    /// member goes back into its set if the set lives here, else it is
    /// recorded away from it; a set takes back its members that live here
    /// and records the others away (the move unlinked them all).
    fn settle_epoll(&'static self, s: &VlsSession, sh: Sh) {
        if let Some(ep_vlsh) = s.membership.set() {
            match self.pool.get(ep_vlsh) {
                Some(ep) if !ep.is_closed() && self.is_here(ep.sh()) => {
                    let rv = self.vcl.rejoin(ep.sh(), sh);
                    if rv != 0 {
                        tracing::warn!(
                            vlsh = s.vlsh,
                            set = ep_vlsh,
                            rv,
                            "moved session cannot rejoin its set"
                        );
                    }
                }
                Some(ep) if !ep.is_closed() => self.moves.away.add(ep_vlsh, s.vlsh),
                _ => {}
            }
        }
        if s.is_epoll() {
            for m in self.pool.live_sessions() {
                if m.membership.set() != Some(s.vlsh) || m.is_closed() {
                    continue;
                }
                // Stable with this gate held: a session here leaves this
                // worker only through it.
                let m_sh = m.sh();
                if self.is_here(m_sh) {
                    if !self.vcl.in_epoll(m_sh) {
                        self.vcl.rejoin(sh, m_sh);
                    }
                } else {
                    self.moves.away.add(s.vlsh, m.vlsh);
                }
            }
        }
    }

    /// Per-thread workers, before a wait on set `ep_vlsh`: brings the set to
    /// this thread's worker and its members that live on other workers
    /// back to it (see [`super::migrate`]). Returns how many could not come (in
    /// use by their thread right now: the wait then looks again soon).
    pub(super) fn gather_members(&'static self, ep_vlsh: Vlsh) -> usize {
        let Some(set) = self.pool.get(ep_vlsh) else { return 0 };
        let mut left = 0;
        {
            let locked = set.lock();
            if locked.closed() || self.sh_here(&locked).is_err() {
                return 0;
            }
        }
        for m_vlsh in self.moves.away.take(ep_vlsh) {
            let Some(m) = self.pool.get(m_vlsh) else { continue };
            let Some(locked) = m.try_lock() else {
                self.moves.away.add(ep_vlsh, m_vlsh);
                left += 1;
                continue;
            };
            if locked.closed() || m.membership.set() != Some(ep_vlsh) {
                continue;
            }
            let Some(ep_sh) = self.pool.get(ep_vlsh).map(|s| s.sh()) else { continue };
            if self.is_here(locked.sh()) {
                let _inside = self.own_gate();
                if self.is_here(ep_sh) && !self.vcl.in_epoll(locked.sh()) {
                    self.vcl.rejoin(ep_sh, locked.sh());
                }
            } else if self.sh_here(&locked).is_err() {
                tracing::debug!(
                    set = ep_vlsh,
                    member = m_vlsh,
                    "epoll member cannot come to its set's worker"
                );
            }
        }
        left
    }

    /// Takes session `index` (or the listener stub there, see [`Take`]) out
    /// of worker `owner`: directly if the owner's thread is outside VCL,
    /// else by RPC, waiting at most [`Self::rpc_timeout`] (see [`super::migrate`]
    /// for the protocol). Also says how: `"directly"` or `"by RPC"`.
    pub(super) fn move_from(
        &'static self,
        owner: u32,
        index: u32,
        what: Take,
    ) -> Result<(V::Moved, &'static str), MoveError> {
        // The owner's gate, if movers may take it (not with
        // `VLS_MIGRATE_BY_RPC=1`).
        let gate = self.moves.gates.get(owner);
        let bypass = gate.filter(|_| self.moves.direct_moves.load(Ordering::Acquire));
        if gate.is_some_and(Gate::is_exiting) {
            return Err(MoveError::NoWorker);
        }
        if let Some(held) = bypass.and_then(Gate::try_enter) {
            return self.move_out_holding(owner, index, what, held).map(|m| (m, "directly"));
        }
        let request = self.moves.rpcs.register();
        let msg = match what {
            Take::Session => Rpc::Move { id: request.id, session_index: index },
            Take::ListenerStub => Rpc::TakeStub { id: request.id, session_index: index },
        }
        .encode();
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
                return self.move_out_holding(owner, index, what, held).map(|m| (m, "directly"));
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

    /// Moves session `index` (or the stub there) out of worker `owner`,
    /// whose gate `_held` is held (so its thread is outside VCL), unless
    /// that thread is exiting.
    pub(super) fn move_out_holding(
        &self,
        owner: u32,
        index: u32,
        what: Take,
        _held: GateGuard<'_>,
    ) -> Result<V::Moved, MoveError> {
        if self.moves.gates.get(owner).is_some_and(Gate::is_exiting) {
            return Err(MoveError::NoWorker);
        }
        match what {
            Take::Session => self.vcl.move_out(owner, index),
            Take::ListenerStub => self.vcl.stub_take(owner, index),
        }
    }
}

impl<V: Vcl> RpcHandler for Vls<V> {
    /// Runs on this worker's own thread, inside the VCL call in which it
    /// handles its message queue.
    fn handle_rpc(&'static self, msg: &[u8]) {
        let me = self.vcl.worker_index();
        match Rpc::decode(msg) {
            Some(Rpc::Move { id, session_index }) => {
                // Refused (does nothing) if the mover gave up already.
                self.moves.rpcs.answer(id, || self.vcl.move_out(me, session_index));
            }
            Some(Rpc::Close { session_index }) => {
                self.vcl.close(sh_from_parts(me, session_index));
            }
            Some(Rpc::TakeStub { id, session_index }) => {
                self.moves.rpcs.answer(id, || self.vcl.stub_take(me, session_index));
            }
            Some(Rpc::Ping { id }) => {
                self.moves.pings_back.lock().unwrap_or_else(PoisonError::into_inner).push(id);
            }
            None => {}
        }
    }
}
