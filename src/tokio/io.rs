//! [`Registered`]: a non-blocking session in a reactor's set, and the one
//! loop every async call goes through ([`Registered::poll_io`]).
//!
//! The loop: wait until the session's readiness says the direction is worth
//! trying, try the call once (non-blocking), and on `WouldBlock` clear the
//! readiness with the tick seen before the call, then look again. Any other
//! result, data or error, is the answer. A writer that would block after a
//! hang-up first registers the session with VCL again (VCL reports nothing
//! of it any more, see `readiness::REARM`) and tries once more.

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::reactor::{shutdown_error, Reactor};
use super::readiness::{Direction, Readiness, SHUTDOWN};
use crate::socket::Session;

/// A session registered with a reactor; deregistered, then closed, on drop.
#[derive(Debug)]
pub(crate) struct Registered {
    // Field order is drop order: the token goes before the session closes
    // (closing removes it from VCL's set), so no event finds it reused.
    token: Token,
    session: Session,
    io: Arc<Readiness>,
    /// A datagram session (see `poll_io`).
    datagram: bool,
}

/// A registration's token, forgotten by its reactor on drop.
#[derive(Debug)]
struct Token {
    reactor: Arc<Reactor>,
    token: u64,
}

impl Drop for Token {
    fn drop(&mut self) {
        self.reactor.deregister(self.token);
    }
}

impl Registered {
    /// Registers `session` (made non-blocking) with the current runtime's
    /// reactor, assumed ready for `initial` (readiness bits).
    pub(crate) fn new(session: Session, initial: u32) -> io::Result<Registered> {
        Registered::new_in(Reactor::current()?, session, initial)
    }

    /// Like [`new`](Self::new), with `reactor`.
    pub(crate) fn new_in(reactor: Arc<Reactor>, session: Session, initial: u32) -> io::Result<Registered> {
        let io = Arc::new(Readiness::new(initial));
        let token = reactor.register(&session, io.clone())?;
        Ok(Registered { token: Token { reactor, token }, session, io, datagram: false })
    }

    /// Marks a datagram session: a send that does not fit asks VPP for an
    /// event (a datagram may not fit in a FIFO that is not full, and VPP
    /// reports room by itself only after a full FIFO).
    pub(crate) fn datagram(mut self) -> Registered {
        self.datagram = true;
        self
    }

    /// The session.
    pub(crate) fn session(&self) -> &Session {
        &self.session
    }

    /// The reactor it is registered with.
    pub(crate) fn reactor(&self) -> &Arc<Reactor> {
        &self.token.reactor
    }

    /// Runs `op` (one non-blocking call of direction `dir`) when the
    /// session may be ready for it, until it does not say `WouldBlock`
    /// (see the module docs). `Pending` leaves the task's waker with the
    /// session's readiness.
    pub(crate) fn poll_io<T>(
        &self,
        cx: &mut Context<'_>,
        dir: Direction,
        mut op: impl FnMut(&Session) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            let seen = match self.io.poll_ready(cx, dir) {
                Poll::Ready(r) => r,
                Poll::Pending => return Poll::Pending,
            };
            if seen.bits() & SHUTDOWN != 0 {
                return Poll::Ready(Err(shutdown_error()));
            }
            match op(&self.session) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                r => return Poll::Ready(r),
            }
            let rearmed = dir == Direction::Write && self.io.take_rearm();
            if rearmed {
                // VCL stopped reporting the session (hang-up): register it
                // again (which asks VPP for a dequeue notification when the
                // FIFO is full), then try once more in case room appeared.
                self.token.reactor.rearm(&self.session, self.token.token)?;
                match op(&self.session) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    r => return Poll::Ready(r),
                }
            }
            if dir == Direction::Write && self.datagram {
                // Ask for the event first, then look again: room that came
                // before the request has no event of its own.
                crate::cvt(crate::process::vls().want_tx_event(self.session.vlsh()))
                    .map_err(io::Error::from)?;
                match op(&self.session) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    r => return Poll::Ready(r),
                }
            }
            if seen.bits() & dir.clearable() != 0 {
                self.io.clear(seen, dir);
            } else if !rearmed {
                // Only sticky bits said "try", yet the call would block: VCL
                // contradicts its own report. Give the runtime a turn rather
                // than spin here.
                tracing::debug!(session = self.session.vlsh(), ?dir, "WouldBlock after a sticky event");
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // (Re-armed: the request that said "try" is gone; VCL reports
            // the session again.)
        }
    }

    /// [`poll_io`](Self::poll_io) as a future.
    pub(crate) async fn io<T>(
        &self,
        dir: Direction,
        mut op: impl FnMut(&Session) -> io::Result<T>,
    ) -> io::Result<T> {
        std::future::poll_fn(|cx| self.poll_io(cx, dir, &mut op)).await
    }

    /// Waits until VCL reports the connect started on the session as done:
    /// `Ok` once connected, else the connect's error (`ConnectionRefused`…).
    pub(crate) async fn connected(&self) -> io::Result<()> {
        self.io(Direction::Write, |s| match crate::process::vls().connect_state(s.vlsh()) {
            1 => Ok(()),
            0 => Err(io::ErrorKind::WouldBlock.into()),
            e => Err(io::Error::from(crate::VppcomError::from_raw(e))),
        })
        .await
    }

    /// Takes the session out of the reactor's set; it stays open.
    pub(crate) fn into_session(self) -> io::Result<Session> {
        let Registered { token, session, .. } = self;
        token.reactor.remove(&session, token.token)?;
        Ok(session)
    }
}
