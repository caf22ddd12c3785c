//! The reactor: one VLS epoll set per tokio runtime, watched through the
//! runtime's own I/O driver, and the task that turns its events into
//! wake-ups of the sessions' tasks.
//!
//! ## How readiness reaches a task
//!
//! ```text
//!  VPP ──mq msg──> VCL's mq eventfd ─┐
//!                                    ├─ set's wake epoll fd ─> set's libc epoll fd ─> AsyncFd (tokio's epoll)
//!  other sets' waits ──park──> eventfd┘   (engine::demux)        (this module)            │ readable
//!                                                                                          v
//!   driver task: vls epoll_wait(set, 0) until a short batch ─> Readiness::set ─> session wakers
//! ```
//!
//! This is what LDP does for event-loop programs (`ldp_epoll_pwait_eventfd`
//! in `vcl/ldp.c`): a libc epoll fd paired with the VLS set, holding VCL's
//! message-queue eventfd (here through the set's wake fd, which the engine
//! installs in place of it on the set's first wait, see
//! `EpollDemux::install_wake`), and a VLS wait with timeout 0 when it fires.
//!
//! ## Invariants
//!
//! - **One driver per reactor.** `AsyncFd::readable` wakes only the last
//!   task that polled it, so exactly one task (the driver, spawned when the
//!   reactor is made) awaits it; sessions never touch the `AsyncFd`.
//! - **Drain before clearing.** VCL reads its eventfd inside the wait, and
//!   VPP signals that eventfd only when its queue goes from empty to
//!   non-empty; tokio's registration is edge-triggered. So after a wake the
//!   driver calls `epoll_wait(set, 0)` until it returns fewer events than
//!   its buffer holds, and only then clears the `AsyncFd`'s readiness. A
//!   short batch means VCL dequeued its whole queue (further messages will
//!   signal again) and kept no unhandled events; where the engine filtered
//!   a full VCL batch down to a short one, it signals the set's wake fd
//!   again itself (`Vls::epoll_wait`), which is a new edge. A clear that
//!   races a new edge loses nothing: tokio keeps readiness whose tick moved.
//!   After many full rounds the driver yields without clearing, so a busy
//!   set cannot starve the runtime's other tasks.
//! - **Sessions are edge-triggered** (`EPOLLIN | EPOLLOUT | EPOLLRDHUP |
//!   EPOLLET`) with a token that names a registry slot and its generation;
//!   a late event for a slot reused since is dropped. A session's readiness
//!   is cleared only by a call that answered `WouldBlock` (see
//!   [`super::readiness`]), which is what defeats VPP's `has_event` rule.
//! - **No timers, no polling.** Nothing runs while nothing happens: the
//!   driver sleeps in tokio's epoll with everything else.
//! - **Per runtime.** The reactors are kept by runtime id. A reactor dies
//!   with its runtime: when the driver task is dropped, every registered
//!   session is woken with an error ([`super::readiness::SHUTDOWN`]).
//!   With per-thread VCL workers (mode 2) the set belongs to the worker of
//!   the thread that made it, so only current-thread runtimes are allowed
//!   there (one per thread).

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::tokio::io::unix::AsyncFd;
use ::tokio::io::Interest as TokioInterest;
use ::tokio::runtime::{Handle, RuntimeFlavor};

use super::readiness::{from_epoll, Readiness};
use crate::epoll::{Epoll, Events, Interest};
use crate::process::vls;
use crate::seam::Vcl as _;
use crate::socket::Session;

/// Events taken per VLS wait.
const BATCH: usize = 256;
/// Full batches drained before the driver yields to other tasks.
const ROUNDS_BEFORE_YIELD: usize = 16;

/// The libc epoll fd of a set, as tokio wants it (not owned: the set's
/// [`Epoll`] closes it).
struct SetFd(RawFd);

impl AsRawFd for SetFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// One registered session's slot: its readiness, and the generation that
/// its token carries.
struct Slot {
    generation: u32,
    io: Option<Arc<Readiness>>,
}

/// Registered sessions by token (`generation << 32 | index`). Locked by
/// registrations, deregistrations, and once per batch by the driver.
#[derive(Default)]
struct Registry {
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Set when the driver has ended: nothing registers any more.
    closed: bool,
}

impl Registry {
    fn insert(&mut self, io: Arc<Readiness>) -> u64 {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { generation: 0, io: None });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        slot.generation = slot.generation.wrapping_add(1);
        slot.io = Some(io);
        (u64::from(slot.generation) << 32) | u64::from(index)
    }

    fn get(&self, token: u64) -> Option<&Arc<Readiness>> {
        let slot = self.slots.get((token & 0xffff_ffff) as usize)?;
        if u64::from(slot.generation) != token >> 32 {
            return None;
        }
        slot.io.as_ref()
    }

    fn remove(&mut self, token: u64) {
        let index = (token & 0xffff_ffff) as u32;
        if let Some(slot) = self.slots.get_mut(index as usize) {
            if u64::from(slot.generation) == token >> 32 && slot.io.take().is_some() {
                self.free.push(index);
            }
        }
    }
}

/// One runtime's VLS epoll set and its registered sessions.
pub(crate) struct Reactor {
    // Field order is drop order: tokio forgets the fd before the set closes it.
    afd: AsyncFd<SetFd>,
    set: Epoll,
    registry: Mutex<Registry>,
    runtime: ::tokio::runtime::Id,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor").field("set", &self.set).field("runtime", &self.runtime).finish()
    }
}

/// The live reactors, one per runtime (a handful: a linear search).
static REACTORS: Mutex<Vec<Arc<Reactor>>> = Mutex::new(Vec::new());

impl Reactor {
    /// The reactor of the runtime the caller runs in, made (with its
    /// driver task) on first use. Errors: no runtime, no application,
    /// no `use-mq-eventfd`, or a multi-thread runtime with per-thread VCL
    /// workers.
    pub(crate) fn current() -> io::Result<Arc<Reactor>> {
        let handle = Handle::try_current().map_err(|_| {
            io::Error::other(
                "vls::tokio sockets must be made inside a tokio runtime (Handle::try_current failed)",
            )
        })?;
        let id = handle.id();
        let mut all = REACTORS.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = all.iter().find(|r| r.runtime == id) {
            return Ok(r.clone());
        }
        crate::app::require()?;
        if !vls().vcl().use_eventfd() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "vls::tokio needs `use-mq-eventfd` in the vcl { } section of vcl.conf: without it VCL \
                 signals its message queue through a condition variable, which no event loop can wait on",
            ));
        }
        if vls().vcl().mt_workers() && handle.runtime_flavor() != RuntimeFlavor::CurrentThread {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "vls::tokio with `multi-thread-workers` (one VCL worker per thread) needs current-thread \
                 runtimes, one per thread: a multi-thread runtime moves tasks between threads, and an open \
                 session cannot move between VCL workers. Use a multi-thread runtime without \
                 `multi-thread-workers` instead",
            ));
        }
        let reactor = Arc::new(Reactor::new(id)?);
        handle.spawn(reactor.clone().drive());
        all.push(reactor.clone());
        tracing::debug!(runtime = %id, set = crate::AsRawHandle::as_raw_handle(&reactor.set), "vls::tokio reactor made");
        Ok(reactor)
    }

    fn new(runtime: ::tokio::runtime::Id) -> io::Result<Reactor> {
        let set = Epoll::new()?;
        let fd = set.libc_epfd().ok_or_else(|| io::Error::other("the epoll set has no libc epoll fd"))?;
        // A first wait installs the set's wake fd (VCL's message-queue fd
        // and the set's eventfd) in the libc epoll fd.
        set.wait(&mut Events::with_capacity(1), Some(Duration::ZERO))?;
        // SAFETY: `fd` is the set's libc epoll fd, open until `set` drops,
        // which is after `afd` (field order of `Reactor`); `SetFd` always
        // returns it.
        let afd = unsafe { AsyncFd::register_with_interest(SetFd(fd), TokioInterest::READABLE)? };
        Ok(Reactor { afd, set, registry: Mutex::new(Registry::default()), runtime })
    }

    /// Registers `session` (non-blocking) in the set, edge-triggered, with
    /// readiness `initial` until VCL says otherwise. Returns its token.
    pub(crate) fn register(&self, session: &Session, io: Arc<Readiness>) -> io::Result<u64> {
        let token = {
            let mut reg = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            if reg.closed {
                return Err(shutdown_error());
            }
            reg.insert(io)
        };
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::EDGE;
        if let Err(e) = self.set.add(session, token, interest) {
            self.deregister(token);
            return Err(e);
        }
        Ok(token)
    }

    /// Registers `session` again with the same token (after a hang-up VCL
    /// reports nothing more until then; see `readiness::REARM`).
    pub(crate) fn rearm(&self, session: &Session, token: u64) -> io::Result<()> {
        let interest = Interest::READABLE | Interest::WRITABLE | Interest::EDGE;
        self.set.modify(session, token, interest)
    }

    /// Removes `session` from the set (it stays open) and forgets `token`.
    pub(crate) fn remove(&self, session: &Session, token: u64) -> io::Result<()> {
        self.deregister(token);
        self.set.delete(session)
    }

    /// Forgets `token` (the session is being closed: closing removes it
    /// from VCL's set).
    pub(crate) fn deregister(&self, token: u64) {
        self.registry.lock().unwrap_or_else(PoisonError::into_inner).remove(token);
    }

    /// Makes the driver look at the set again without an event: after a
    /// call that waited inside VCL (a listen waiting for VPP's answer), VCL
    /// may have taken events of this set off its message queue while
    /// nothing signals them.
    pub(crate) fn kick(&self) {
        let _ = vls().epoll_wake(crate::AsRawHandle::as_raw_handle(&self.set));
    }

    /// The driver: waits for the set's libc epoll fd in the runtime's I/O
    /// driver, drains the set, wakes the sessions.
    async fn drive(self: Arc<Self>) {
        let _exit = DriverExit(self.clone());
        let mut events = Events::with_capacity(BATCH);
        let mut woken = Vec::with_capacity(BATCH);
        loop {
            let mut guard = match self.afd.readable().await {
                Ok(g) => g,
                Err(e) => {
                    tracing::error!(error = %e, "vls::tokio reactor: waiting for the set failed");
                    return;
                }
            };
            if self.drain(&mut events, &mut woken) {
                guard.clear_ready();
            } else {
                // More to do: keep the readiness, let other tasks run.
                drop(guard);
                ::tokio::task::yield_now().await;
            }
        }
    }

    /// Takes the set's events (see the module docs) and sets the sessions'
    /// readiness. True when a short batch showed the set drained.
    fn drain(&self, events: &mut Events, woken: &mut Vec<(Arc<Readiness>, u32)>) -> bool {
        for _ in 0..ROUNDS_BEFORE_YIELD {
            let n = match self.set.wait(events, Some(Duration::ZERO)) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "vls::tokio reactor: epoll wait failed");
                    return true;
                }
            };
            tracing::trace!(n, "vls::tokio reactor drained");
            {
                let reg = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
                for ev in events.iter() {
                    tracing::trace!(token = ev.token(), bits = ev.bits(), "event");
                    if let Some(io) = reg.get(ev.token()) {
                        woken.push((io.clone(), from_epoll(ev.bits())));
                    }
                }
            }
            for (io, bits) in woken.drain(..) {
                io.set(bits);
            }
            if n < BATCH {
                return true;
            }
        }
        false
    }

    /// The driver ended (its runtime is shutting down): no more
    /// registrations, every session woken with an error.
    fn shut_down(self: &Arc<Self>) {
        REACTORS.lock().unwrap_or_else(PoisonError::into_inner).retain(|r| !Arc::ptr_eq(r, self));
        let ios: Vec<Arc<Readiness>> = {
            let mut reg = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
            reg.closed = true;
            reg.slots.iter().filter_map(|s| s.io.clone()).collect()
        };
        for io in ios {
            io.shut_down();
        }
        tracing::debug!(runtime = %self.runtime, "vls::tokio reactor shut down");
    }
}

/// Runs [`Reactor::shut_down`] when the driver task ends or is dropped.
struct DriverExit(Arc<Reactor>);

impl Drop for DriverExit {
    fn drop(&mut self) {
        self.0.shut_down();
    }
}

/// The error of a call on a session whose runtime has shut down.
pub(crate) fn shutdown_error() -> io::Error {
    io::Error::other("the tokio runtime this VPP session was registered with has shut down")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_tokens_carry_a_generation() {
        let mut reg = Registry::default();
        let a = reg.insert(Arc::new(Readiness::new(0)));
        assert!(reg.get(a).is_some());
        reg.remove(a);
        assert!(reg.get(a).is_none());
        // The slot is reused with a new generation: the old token misses.
        let b = reg.insert(Arc::new(Readiness::new(0)));
        assert_eq!(a & 0xffff_ffff, b & 0xffff_ffff);
        assert_ne!(a, b);
        assert!(reg.get(a).is_none());
        assert!(reg.get(b).is_some());
        // Removing with a stale token leaves the new registration alone.
        reg.remove(a);
        assert!(reg.get(b).is_some());
        assert_eq!(reg.free.len(), 0);
    }
}
