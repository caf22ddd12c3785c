//! [`Epoll`]: readiness notification for VPP sessions, the way VPP
//! applications multiplex many sessions on one thread.
//!
//! A session can be in one epoll set at a time (a VCL rule). Several threads
//! may each wait on their own set; in shared-worker mode VLS routes every
//! event to the set its session is in.

use std::io;
use std::ops::BitOr;
use std::time::{Duration, Instant};

use crate::handle::INVALID_VLSH;
use crate::process::vls;
use crate::seam::Vcl as _;
use crate::socket::{check, AsRawHandle, Session};

/// Which readiness an [`Epoll`] registration asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Interest(u32);

impl Interest {
    /// Data (or a connection, for a listener) to read, or the peer closed.
    pub const READABLE: Interest = Interest(libc::EPOLLIN as u32 | libc::EPOLLRDHUP as u32);
    /// Room to write.
    pub const WRITABLE: Interest = Interest(libc::EPOLLOUT as u32);
    /// Report only changes (edge-triggered), not the state at every wait.
    pub const EDGE: Interest = Interest(libc::EPOLLET as u32);
    /// Deliver one event, then disarm until [`Epoll::modify`].
    pub const ONESHOT: Interest = Interest(libc::EPOLLONESHOT as u32);

    /// The epoll bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl BitOr for Interest {
    type Output = Interest;
    fn bitor(self, rhs: Interest) -> Interest {
        Interest(self.0 | rhs.0)
    }
}

/// One readiness event: the token given at registration and what is ready.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    token: u64,
    events: u32,
}

impl Event {
    /// The registration's token.
    pub fn token(&self) -> u64 {
        self.token
    }
    /// Readable (data, a connection to accept, or end of stream).
    pub fn is_readable(&self) -> bool {
        self.events & libc::EPOLLIN as u32 != 0
    }
    /// Writable.
    pub fn is_writable(&self) -> bool {
        self.events & libc::EPOLLOUT as u32 != 0
    }
    /// The peer closed (its write half, or the whole session).
    pub fn is_hangup(&self) -> bool {
        self.events & (libc::EPOLLHUP | libc::EPOLLRDHUP) as u32 != 0
    }
    /// An error is pending on the session.
    pub fn is_error(&self) -> bool {
        self.events & libc::EPOLLERR as u32 != 0
    }
    /// The raw epoll bits.
    pub fn bits(&self) -> u32 {
        self.events
    }
}

/// A reusable buffer of events filled by [`Epoll::wait`].
#[derive(Debug)]
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    /// A buffer for up to `capacity` events per wait (at least 1).
    pub fn with_capacity(capacity: usize) -> Events {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; capacity.clamp(1, i32::MAX as usize)],
            len: 0,
        }
    }
    /// Events of the last wait.
    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf[..self.len].iter().map(|e| Event { token: e.u64, events: e.events })
    }
    /// Number of events of the last wait.
    pub fn len(&self) -> usize {
        self.len
    }
    /// No events.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Most events one wait can return.
    pub fn capacity(&self) -> usize {
        self.buf.len()
    }
}

/// An epoll set of VPP sessions.
///
/// ```no_run
/// use vls::{App, Epoll, Events, Interest, TcpListener};
/// use std::time::Duration;
///
/// App::init("server")?;
/// let listener = TcpListener::bind("127.0.0.1:7000")?;
/// let epoll = Epoll::new()?;
/// epoll.add(&listener, 0, Interest::READABLE)?;
/// let mut events = Events::with_capacity(64);
/// epoll.wait(&mut events, Some(Duration::from_secs(1)))?;
/// for ev in events.iter() {
///     assert_eq!(ev.token(), 0);
///     let (stream, peer) = listener.accept()?;
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct Epoll {
    // Field order is drop order: the VLS set (which removes its wake fd
    // from the libc epoll fd) before the libc epoll fd.
    session: Session,
    /// With `use-mq-eventfd`: a libc epoll fd paired with the set, as LDP
    /// pairs one with each of its sets; waits sleep on it, outside VLS.
    libc_epfd: LibcEpfd,
}

/// An owned libc epoll fd (`-1` for none).
#[derive(Debug)]
struct LibcEpfd(i32);

impl Drop for LibcEpfd {
    fn drop(&mut self) {
        if self.0 >= 0 {
            // SAFETY: closes an fd this object owns.
            unsafe { libc::close(self.0) };
        }
    }
}

/// Without `use-mq-eventfd`, longest single wait in VCL while other threads
/// use the same VCL worker: VCL holds the worker while it sleeps, and
/// another thread may take this set's notification from the shared message
/// queue, so the wait is cut into slices that return what was handed over.
const SHARED_WORKER_SLICE: Duration = Duration::from_millis(10);
/// Longest single wait otherwise.
const SLICE: Duration = Duration::from_secs(1);

impl Epoll {
    /// A new, empty set.
    pub fn new() -> io::Result<Epoll> {
        crate::app::require()?;
        let vlsh = vls().epoll_create();
        if vlsh == INVALID_VLSH {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "VCL could not create an epoll set"));
        }
        let session = Session::from_vlsh(vlsh);
        if !vls().vcl().use_eventfd() {
            return Ok(Epoll { session, libc_epfd: LibcEpfd(-1) });
        }
        // SAFETY: plain syscall.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // Built before the last step, so an error drops the parts in the
        // struct's order.
        let ep = Epoll { session, libc_epfd: LibcEpfd(fd) };
        check(vls().set_libc_epfd(vlsh, fd))?;
        Ok(ep)
    }

    fn ctl(&self, op: i32, source: &impl AsRawHandle, token: u64, interest: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: interest, u64: token };
        // SAFETY: `ev` is valid for the call.
        check(unsafe { vls().epoll_ctl(self.session.vlsh(), op, source.as_raw_handle(), &mut ev) }).map(drop)
    }

    /// Adds `source` with `token` (returned in its events). A session is in
    /// at most one set: adding it to a second one fails.
    pub fn add(&self, source: &impl AsRawHandle, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, source, token, interest.bits())
    }

    /// Changes the token and interest of a registered `source`.
    pub fn modify(&self, source: &impl AsRawHandle, token: u64, interest: Interest) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, source, token, interest.bits())
    }

    /// Removes `source` from the set.
    pub fn delete(&self, source: &impl AsRawHandle) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, source, 0, 0)
    }

    /// Waits until at least one event is ready or `timeout` passes (`None`:
    /// no limit), and fills `events` (empty on timeout). Returns the count.
    pub fn wait(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        if self.libc_epfd.0 > 0 {
            return self.wait_outside_vls(events, timeout);
        }
        // A timeout too large for `Instant` is no limit.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let slice = if vls().n_threads() > 1 { SHARED_WORKER_SLICE } else { SLICE };
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let this = remaining.map_or(slice, |r| r.min(slice));
            let wait = if this.is_zero() { 0.0 } else { epoll_wait_arg(this) };
            // SAFETY: the buffer is valid for its length.
            let n = check(unsafe {
                vls().epoll_wait(self.session.vlsh(), events.buf.as_mut_ptr(), events.buf.len() as i32, wait)
            })?;
            events.len = n as usize;
            if n > 0 || remaining.is_some_and(|r| r <= this) {
                return Ok(n as usize);
            }
        }
    }
}

impl Epoll {
    /// The libc epoll fd paired with the set (`use-mq-eventfd` only): it
    /// becomes readable when VCL's message queue or another thread has
    /// something for the set (see `engine::demux`). Owned by the set.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn libc_epfd(&self) -> Option<i32> {
        (self.libc_epfd.0 > 0).then_some(self.libc_epfd.0)
    }

    /// `use-mq-eventfd`: asks VLS without waiting, then sleeps in libc
    /// epoll on the set's wake fd (VCL's message-queue eventfd, and the fd
    /// VLS signals when another thread hands this set an event), holding no
    /// VLS or VCL lock while asleep.
    fn wait_outside_vls(&self, events: &mut Events, timeout: Option<Duration>) -> io::Result<usize> {
        // A timeout too large for `Instant` is no limit.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            // SAFETY: the buffer is valid for its length.
            let n = check(unsafe {
                vls().epoll_wait(self.session.vlsh(), events.buf.as_mut_ptr(), events.buf.len() as i32, 0.0)
            })?;
            events.len = n as usize;
            if n > 0 {
                return Ok(n as usize);
            }
            let ms = match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
                Some(r) if r.is_zero() => return Ok(0),
                // Rounded up, so a short timeout is not a busy loop.
                Some(r) => r.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
                None => -1,
            };
            let mut ready = [libc::epoll_event { events: 0, u64: 0 }; 4];
            // SAFETY: `ready` is valid for 4 events; the fd is ours.
            let rv = unsafe { libc::epoll_wait(self.libc_epfd.0, ready.as_mut_ptr(), 4, ms) };
            if rv < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

impl crate::socket::AsRawHandle for Epoll {
    fn as_raw_handle(&self) -> crate::socket::RawHandle {
        self.session.vlsh()
    }
}

impl crate::socket::IntoRawHandle for Epoll {
    fn into_raw_handle(self) -> crate::socket::RawHandle {
        // The libc epoll fd paired with the set stays open with it.
        let Epoll { session, libc_epfd } = self;
        std::mem::forget(libc_epfd);
        session.into_vlsh()
    }
}

impl crate::socket::FromRawHandle for Epoll {
    /// Takes over the set and the libc epoll fd paired with it, if any
    /// (as `into_raw_handle` leaves it).
    unsafe fn from_raw_handle(handle: crate::socket::RawHandle) -> Self {
        let fd = vls().get_libc_epfd(handle);
        Epoll { session: Session::from_vlsh(handle), libc_epfd: LibcEpfd(if fd > 0 { fd } else { -1 }) }
    }
}

/// Waits until a non-blocking connect on a fresh `session` completes, with
/// a private epoll set; `TimedOut` after `timeout`, `ConnectionRefused` if
/// VPP could not connect.
pub(crate) fn wait_connected(session: &Session, timeout: Duration) -> io::Result<()> {
    let ep = Epoll::new()?;
    let interest = libc::EPOLLOUT as u32 | libc::EPOLLERR as u32 | libc::EPOLLHUP as u32;
    ep.ctl(libc::EPOLL_CTL_ADD, &RawSession(session.vlsh()), 0, interest)?;
    let mut events = Events::with_capacity(4);
    let result = match ep.wait(&mut events, Some(timeout)) {
        Err(e) => Err(e),
        Ok(0) => Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect timed out after {timeout:?}"))),
        Ok(_) => {
            let ev = events.iter().next().expect("one event");
            if ev.is_error() || ev.is_hangup() || !ev.is_writable() {
                Err(io::Error::from(crate::VppcomError::ECONNREFUSED))
            } else {
                Ok(())
            }
        }
    };
    let _ = ep.delete(&RawSession(session.vlsh()));
    result
}

/// A borrowed handle, for registering a `Session` that is not a public type.
struct RawSession(crate::socket::RawHandle);

impl AsRawHandle for RawSession {
    fn as_raw_handle(&self) -> crate::socket::RawHandle {
        self.0
    }
}

/// The `wait_for_time` argument of `vls_epoll_wait` for `d`: VCL takes
/// milliseconds with `use-mq-eventfd` and seconds without.
fn epoll_wait_arg(d: Duration) -> f64 {
    if vls().vcl().use_eventfd() {
        d.as_millis().max(1) as f64
    } else {
        d.as_secs_f64()
    }
}
