//! Delivery of epoll events to the set each session is in (mode 3: the
//! threads share one VCL worker, whose epoll events VCL hands to whichever
//! thread waits): an event is returned to the waiter of its own set with
//! the application's data, parked on its session's set if that is another
//! one (waking that set's waiter), or dropped if its session is in no set
//! or the event no longer holds. One `epoll_wait` reports each session
//! once ([`Reported`]); a session LDP's drain call reported is not
//! reported again by the timeout-0 call that follows it.
//!
//! Called by the epoll waits of [`super::readiness`], with the worker locks
//! held.

use super::pool::VlsSession;
use super::{demux, Vls};
use crate::handle::Vlsh;
use crate::seam::Vcl;

impl<V: Vcl> Vls<V> {
    /// [`Self::deliver`] of one event into `out[at]`, unless its session was
    /// reported already: in this call, its bits are added to that entry (if
    /// still true); in the drain call before it, new bits are parked for
    /// the next wait. Returns 1 if `out[at]` was filled. `fresh`: VCL
    /// reported the event in this call and no other thread can have acted
    /// on the session since (its bits need no second look).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn deliver_once(
        &self,
        ep_vlsh: Vlsh,
        events: u32,
        token: u64,
        out: &mut [libc::epoll_event],
        at: usize,
        reported: &mut Reported,
        fresh: bool,
    ) -> usize {
        let Some(s) = i32::try_from(token).ok().and_then(|v| self.pool.get(v)) else { return 0 };
        if let Some(j) = reported.this_call.position(token) {
            out[j].events |= self.still_ready(s, events);
            return 0;
        }
        if let Some(bits) = s.membership.drained_in(ep_vlsh, reported.earlier_drain) {
            self.drained_again(events, bits, token);
            return 0;
        }
        let k = self.deliver(ep_vlsh, s, events, &mut out[at..], fresh);
        if k == 1 {
            // Entries are written in order: `out[i]` is the i-th reported.
            debug_assert_eq!(at, reported.this_call.len());
            reported.this_call.push(token);
            if reported.drain_round != 0 {
                s.membership.mark_drained(ep_vlsh, reported.drain_round, out[at].events);
            }
        }
        k
    }

    /// An event of a session LDP's drain reported, with bits `drained`, in
    /// the same `epoll_wait` of the application: not returned again. Its
    /// bits the drain did not report are parked for the next wait; if it
    /// has none, it is dropped: the application was just told, and acts on
    /// it (a level-triggered session is reported again while it stays
    /// ready; an edge-triggered one is read or written until `EAGAIN`). So
    /// a busy event loop does not pay a wake of its set, and the general
    /// path of the next wait, for every session the drain returned.
    #[inline]
    pub(super) fn drained_again(&self, events: u32, drained: u32, token: u64) {
        if events & !drained != 0 {
            self.park(events, token);
        }
    }

    /// Parks an event on the set its session is in (dropped if none).
    pub(super) fn park(&self, events: u32, token: u64) {
        let Some(s) = i32::try_from(token).ok().and_then(|v| self.pool.get(v)) else { return };
        if let Some(set) = s.membership.set().and_then(|v| self.pool.get(v)) {
            if let Some(d) = set.demux() {
                d.park(demux::Parked { events, token });
            }
        }
    }

    /// The bits of an event that still hold for session `s` now (error
    /// and hang-up bits always do), among those its set asks for now. An
    /// event can be stale: parked while the owner read the data, queued by
    /// VCL before a read, or parked before an `EPOLL_CTL_MOD` dropped its
    /// bits; a "readable" that reads `EAGAIN` is taken as an error by many
    /// applications, and an `EPOLLOUT` nobody asked for calls a handler
    /// that may not exist (nutcracker's listener). Called with the worker
    /// locks held.
    pub(super) fn still_ready(&self, s: &VlsSession, events: u32) -> u32 {
        let sh = s.sh();
        let mut ev = events & (s.membership.interest() | (libc::EPOLLERR | libc::EPOLLHUP) as u32);
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

    /// Routes one event of session `s` seen while waiting on set
    /// `ep_vlsh`: written to `out[0]` with the application's data if the
    /// session is in this set and the event still holds (returns 1), parked
    /// on its own set if it is in another, dropped otherwise (returns 0).
    /// Called with the worker locks held.
    fn deliver(
        &self,
        ep_vlsh: Vlsh,
        s: &VlsSession,
        events: u32,
        out: &mut [libc::epoll_event],
        fresh: bool,
    ) -> usize {
        match s.membership.set() {
            Some(set) if set == ep_vlsh => {
                let events = if fresh { events } else { self.still_ready(s, events) };
                if events == 0 {
                    return 0;
                }
                tracing::trace!(session = s.vlsh, set = ep_vlsh, events, "event delivered");
                out[0] = libc::epoll_event { events, u64: s.membership.data() };
                1
            }
            Some(other) => {
                tracing::trace!(session = s.vlsh, from = ep_vlsh, to = other, "event parked for its own set");
                self.park(events, s.vlsh as u64);
                0
            }
            None => 0,
        }
    }
}

/// Sessions already reported in one `epoll_wait` of the application.
#[derive(Default)]
pub(super) struct Reported {
    /// Reported by this call, in the order of the output array.
    pub(super) this_call: Tokens,
    /// This call is LDP's drain: its round (see `EpollDemux::start_drain`);
    /// 0 otherwise.
    pub(super) drain_round: u64,
    /// The drain round just before this timeout-0 call, whose sessions are
    /// not reported again; 0 if none.
    pub(super) earlier_drain: u64,
}

/// A short list of session tokens, on the stack up to 16 (an epoll wait
/// usually reports a few sessions; lookups scan it).
#[derive(Default)]
pub(super) struct Tokens {
    inline: [u64; 16],
    len: usize,
    spill: Vec<u64>,
}

impl Tokens {
    pub(super) fn push(&mut self, token: u64) {
        if self.len < self.inline.len() {
            self.inline[self.len] = token;
            self.len += 1;
        } else {
            self.spill.push(token);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len + self.spill.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The index of `token` in the list.
    pub(super) fn position(&self, token: u64) -> Option<usize> {
        match self.inline[..self.len].iter().position(|&t| t == token) {
            Some(i) => Some(i),
            None => self.spill.iter().position(|&t| t == token).map(|i| self.len + i),
        }
    }
}
