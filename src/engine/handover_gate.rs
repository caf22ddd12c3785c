//! A connection's hand-over between forked relatives, kept apart from the
//! relatives' reads and writes ([`HandoverState`]).
//!
//! When the process that is VPP's owner of a connection shared with forked
//! relatives closes its copy, VPP hands the connection to a relative (a
//! worker update). VPP (v26.06) gives it new FIFOs on the new owner's
//! worker, copies the old ones into them with `svm_fifo_clone` (right only
//! while each FIFO is still its first chunk), frees the old ones and tells
//! the new owner, whose VCL takes the new FIFOs the next time it handles
//! its message queue. A relative that writes meanwhile breaks this:
//!
//! - before VPP's copy, a large write grows the TX FIFO past its first
//!   chunk, and the copy overruns the new FIFO's chunk: VPP crashed
//!   (SIGSEGV in `session_tx_fifo_peek_and_snd`) as soon as mini_httpd's
//!   children answered with 100 kB, with this layer and with the C one;
//! - after the copy, until its VCL took the new FIFOs, a relative writes
//!   into (or reads from) freed FIFOs: bytes lost, or another
//!   connection's FIFOs overwritten once VPP reuses the memory.
//!
//! So the two are kept apart, through the connection's shared entry:
//!
//! - The leaving owner, once it has left the entry, announces the
//!   hand-over, waits until no relative is inside a read or write of the
//!   connection (at most [`HANDOVER_QUIET`]), and only then looks at the
//!   FIFOs and sends the update. If they are no longer fresh, or a relative
//!   stays inside (a blocking read that waits for data), it keeps the
//!   connection as VPP's owner instead (`kept::Kept`) and ends the
//!   announcement.
//! - A relative's read or write counts itself in, then looks at the
//!   announcement. If a hand-over is under way it counts itself out and
//!   waits: the new owner handles its message queue until its VCL has the
//!   new FIFOs and claims the connection (`fork_hooks::Watched`), which
//!   ends the hand-over; another relative waits for that. A wait lasts at
//!   most [`HANDOVER_LIMIT`] (a new owner that died, an update VPP refused):
//!   then the call ends the announcement, says so in the log, and goes on.
//!
//! Both sides write their own word, then read the other's, all `SeqCst`:
//! of two such sequences at least one sees the other's write, so either the
//! owner sees the call and waits, or the call sees the announcement and
//! stays out. Unlike the entry's other fields these two words are used
//! without the entry lock (a blocking read can last long).

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use super::locks::OpKind;
use super::quiet::may_log;
use super::{Vls, Vlsh};
use crate::handle::{sh_parts, Sh, INVALID};
use crate::seam::Vcl;

/// How long a leaving owner waits for its relatives' reads and writes on
/// the connection to end before it keeps the connection instead.
pub const HANDOVER_QUIET: Duration = Duration::from_millis(5);

/// How long a read or write waits for a hand-over under way to complete.
pub const HANDOVER_LIMIT: Duration = Duration::from_secs(1);

/// Between two looks while waiting.
const NAP: Duration = Duration::from_micros(20);

/// One shared connection's hand-over and its relatives' calls on its
/// FIFOs, in the shared entry (all-zero: none and none).
#[repr(C)]
#[derive(Default)]
pub struct HandoverState {
    /// The VCL worker a hand-over under way goes to, plus one; 0: none.
    to: AtomicU32,
    /// Reads and writes of the connection under way, in all relatives.
    fifo_calls: AtomicU32,
    /// 1 once the leaving owner sent VPP the update of the hand-over under
    /// way (0 while it waits for relatives to be quiet, or keeps it).
    sent: AtomicU32,
}

impl HandoverState {
    /// Forgets any hand-over and call (a new or freed entry).
    pub fn reset(&self) {
        self.to.store(0, Ordering::SeqCst);
        self.fifo_calls.store(0, Ordering::SeqCst);
        self.sent.store(0, Ordering::SeqCst);
    }

    /// The leaving owner: a hand-over to worker `to` starts.
    pub fn announce(&self, to: u32) {
        self.sent.store(0, Ordering::SeqCst);
        self.to.store(to.wrapping_add(1), Ordering::SeqCst);
    }

    /// The leaving owner sent VPP the update (after [`Self::announce`]).
    pub fn mark_sent(&self) {
        self.sent.store(1, Ordering::SeqCst);
    }

    /// A hand-over to worker `w` is under way and its update not sent yet.
    pub fn is_unsent_to(&self, w: u32) -> bool {
        self.is_to(w) && self.sent.load(Ordering::SeqCst) == 0
    }

    /// A hand-over to worker `w` is under way (sent or not, not claimed).
    pub fn is_to(&self, w: u32) -> bool {
        self.to.load(Ordering::SeqCst) == w.wrapping_add(1)
    }

    /// The hand-over to `to`, if under way, is over (done, or not made).
    pub fn end(&self, to: u32) {
        let _ = self.to.compare_exchange(to.wrapping_add(1), 0, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The leaving owner, after [`Self::announce`]: waits at most `limit`
    /// until no relative is inside a read or write; true if none is.
    pub fn wait_quiet(&self, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            if self.fifo_calls.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(NAP);
        }
    }

    /// A read or write starts: `Ok` (counted in until the guard drops), or
    /// the worker a hand-over under way goes to.
    fn enter(&self) -> Result<FifoCall<'_>, u32> {
        self.fifo_calls.fetch_add(1, Ordering::SeqCst);
        let call = FifoCall(self);
        match self.to.load(Ordering::SeqCst) {
            0 => Ok(call),
            to => Err(to - 1),
        }
    }
}

/// A read or write of a shared connection under way (see the module
/// docs); counted out when dropped.
pub struct FifoCall<'a>(&'a HandoverState);

impl Drop for FifoCall<'_> {
    fn drop(&mut self) {
        self.0.fifo_calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl<V: Vcl> Vls<V> {
    /// Starts a read or write of session `vlsh`: if it is a connection
    /// shared with forked relatives, waits for a hand-over under way and
    /// counts the call in until the guard drops (see the module docs).
    /// `None` (nothing to count) for a session that is not shared.
    pub(super) fn shared_fifo_call(&'static self, vlsh: Vlsh) -> Option<FifoCall<'static>> {
        let table = self.forks.shared.get()?;
        let entry = self.pool.get(vlsh)?.shared.load(Ordering::Acquire);
        if entry == INVALID {
            return None;
        }
        let state = table.handover(entry)?;
        let mut start = Instant::now();
        loop {
            let to = match state.enter() {
                Ok(call) => return Some(call),
                Err(to) => to,
            };
            if start.elapsed() >= HANDOVER_LIMIT {
                tracing::warn!(
                    vlsh,
                    to,
                    "a hand-over of a connection shared with relatives did not complete in time: going on"
                );
                state.end(to);
                // A hand-over announced after this one gets its own wait.
                start = Instant::now();
                continue;
            }
            if to == self.vcl.worker_index() {
                self.take_handed_over_fifos();
            }
            std::thread::sleep(NAP);
        }
    }

    /// The owner leaving copy `sh` of a shared connection (entry `entry`)
    /// hands it over to worker `to` ([`Vcl::unshare`]), or keeps it as
    /// VPP's owner ([`crate::seam::UNSHARE_KEPT`]) if a relative stays
    /// inside a read or write of it (see the module docs).
    pub(super) fn hand_over_copy(&self, sh: Sh, entry: u32, to: u32) -> i32 {
        let Some(state) = self.forks.shared.get().and_then(|t| t.handover(entry)) else {
            return self.vcl.unshare(sh, to, true);
        };
        state.announce(to);
        let rv = if state.wait_quiet(HANDOVER_QUIET) {
            let rv = self.vcl.unshare(sh, to, true);
            if rv == 0 {
                state.mark_sent();
            }
            rv
        } else {
            if may_log() {
                tracing::debug!(sh, to, "a relative is inside a read or write: not handed over now");
            }
            self.vcl.keep_as_owner(sh)
        };
        if rv != 0 {
            // Kept, or failed: no hand-over to wait for.
            state.end(to);
        }
        rv
    }

    /// A forked process ending at once (`_exit`) with connections shared
    /// with relatives. VPP closes what this worker owns when the worker
    /// goes (its socket closes with the process), but a connection a
    /// relative is handing over to it is not this worker's in VPP until
    /// this process answers VPP's request to take it (handling its queue),
    /// which it never will: VPP kept it on the worker of the relative,
    /// which had left it, nobody closed it, and the peer waited for ever (a
    /// child that fails at once, as vsftpd's on `dup2`). So, before VPP is
    /// let read the queues (the caller):
    ///
    /// - every copy this worker is not VPP's owner of is dropped from the
    ///   shared table (its VCL state ends with it), so a relative closing
    ///   it later is its last holder and closes it in VPP instead of
    ///   handing it over here;
    /// - a hand-over to this worker whose update is not sent yet is waited
    ///   for (at most `limit`);
    /// - a connection handed over to this worker and not taken is left as
    ///   at exit: its last holder closes it in VPP (through this worker,
    ///   by its VPP handle), or it goes on to another relative.
    ///
    /// Nothing if the pool's lock is held. An entry locked by another
    /// process is tried a thousand times, without sleeping, to drop a copy;
    /// closing a connection handed over waits for the entry as at exit.
    pub(super) fn leave_shared_sessions_at_once(&'static self, limit: Duration) {
        let Some(table) = self.forks.shared.get() else { return };
        let me = self.vcl.worker_index();
        let Some(sessions) = self.pool.try_live_sessions() else { return };
        let start = Instant::now();
        for s in sessions {
            let entry = s.shared.load(Ordering::Acquire);
            let Some(state) = table.handover(entry) else { continue };
            let index = sh_parts(s.sh()).1;
            let g = (0..1000).find_map(|_| {
                let g = table.try_lock(entry);
                if g.is_none() {
                    std::hint::spin_loop();
                }
                g
            });
            if let Some(g) = g.filter(|g| g.owner() != me && g.session_index() == index) {
                let _ = g.leave(me);
                continue;
            }
            while state.is_unsent_to(me) && start.elapsed() < limit {
                std::thread::sleep(NAP);
            }
            if !state.is_to(me) {
                continue;
            }
            let Some(locked) = s.try_lock() else { continue };
            if !locked.closed() && self.is_here(locked.sh()) {
                let sh = locked.sh();
                if self.close_shared(entry, sh).is_some() {
                    s.set_shared(INVALID);
                    self.pool.unmap(&locked);
                }
            }
            state.end(me);
        }
    }

    /// The new owner of a connection being handed over: lets VCL handle
    /// the worker's queue (VPP's answer gives it the new FIFOs), then
    /// claims what was handed over, which ends the hand-over.
    fn take_handed_over_fifos(&'static self) {
        {
            let _locks = self.op_locks(OpKind::MessageQueue, None);
            self.vcl.flush_mq();
        }
        self.notice_handovers();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_under_way_keeps_the_owner_waiting_and_an_announcement_keeps_calls_out() {
        let s = HandoverState::default();
        let call = s.enter().expect("no hand-over: the call goes ahead");
        s.announce(3);
        assert!(!s.wait_quiet(Duration::from_millis(2)), "a call is inside");
        drop(call);
        assert!(s.wait_quiet(Duration::from_millis(2)), "the call ended");
        assert_eq!(s.enter().err(), Some(3), "the hand-over to worker 3 is under way");
        assert!(s.wait_quiet(Duration::ZERO), "a refused call counted itself out");
        s.end(4);
        assert_eq!(s.enter().err(), Some(3), "only the hand-over to 3 ends it");
        s.end(3);
        assert!(s.enter().is_ok(), "ended");
    }

    #[test]
    fn a_hand_over_is_unsent_until_marked_and_a_new_one_starts_unsent() {
        let s = HandoverState::default();
        assert!(!s.is_unsent_to(2), "none under way");
        s.announce(2);
        assert!(s.is_unsent_to(2));
        assert!(!s.is_unsent_to(3), "to another worker");
        s.mark_sent();
        assert!(!s.is_unsent_to(2), "sent");
        s.end(2);
        s.announce(2);
        assert!(s.is_unsent_to(2), "the next hand-over is not sent yet");
        s.end(2);
        assert!(!s.is_unsent_to(2), "given up");
    }

    #[test]
    fn worker_zero_is_a_hand_over_and_not_none() {
        let s = HandoverState::default();
        s.announce(0);
        assert_eq!(s.enter().err(), Some(0));
        s.reset();
        assert!(s.enter().is_ok());
    }
}
