//! `Session`: one owned VLS session, the common part of every socket type.
//!
//! A `Session` owns a VLS handle and closes it on drop. All calls go through
//! the VLS core, so a session may be used from any thread of the process
//! (in shared-worker mode VLS serializes access to the VCL worker).
//!
//! Blocking, non-blocking and timeouts: VCL knows blocking and non-blocking
//! sessions but no I/O timeouts. Without a timeout, a blocking session is
//! blocking in VCL. With a read or write timeout, or when the application
//! asked for non-blocking I/O, the VCL session is non-blocking and a
//! blocking call with a timeout is a loop of non-blocking attempts and short
//! waits for message-queue activity (a wait on an internal empty epoll set,
//! which also applies VPP's notifications such as a peer's close).

use std::cell::RefCell;
use std::ffi::c_void;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vpp_sys as sys;

use crate::error::{cvt, VppcomError};
use crate::handle::{Vlsh, INVALID_VLSH};
use crate::process::vls;
use crate::sockaddr::with_endpt;

/// A VLS handle: the value the C ABI (`vls_*`) uses for a session.
pub type RawHandle = Vlsh;

/// Access to the VLS handle of a socket, for use with the C ABI or
/// [`Epoll`](crate::Epoll).
pub trait AsRawHandle {
    /// The VLS handle (still owned by `self`).
    fn as_raw_handle(&self) -> RawHandle;
}

/// Building a socket from a VLS handle it then owns.
pub trait FromRawHandle {
    /// Takes ownership of `handle`.
    ///
    /// # Safety
    /// `handle` is an open VLS session of the right kind that nothing else
    /// closes.
    unsafe fn from_raw_handle(handle: RawHandle) -> Self;
}

/// Giving up ownership of a socket's VLS handle.
pub trait IntoRawHandle {
    /// The VLS handle, no longer closed on drop.
    fn into_raw_handle(self) -> RawHandle;
}

/// Converts a VLS return code into `io::Result`.
pub(crate) fn check(rv: i32) -> io::Result<i32> {
    cvt(rv).map_err(io::Error::from)
}

pub(crate) use crate::raw::vcl::Proto;

/// Direction of an I/O wait.
#[derive(Copy, Clone)]
enum Dir {
    Read,
    Write,
}

/// One owned VLS session.
#[derive(Debug)]
pub(crate) struct Session {
    vlsh: Vlsh,
    /// The application asked for non-blocking I/O.
    nonblocking: AtomicBool,
    /// Timeouts in nanoseconds, 0 for none.
    read_timeout: AtomicU64,
    write_timeout: AtomicU64,
    /// Serialises updates of VCL's flags from the three settings above
    /// (a read-modify-write of the session's flags).
    flags_update: std::sync::Mutex<()>,
}

impl Session {
    /// A new blocking session.
    pub(crate) fn new(proto: Proto) -> io::Result<Session> {
        crate::app::require()?;
        let vlsh = vls().create(proto as u8, false);
        if vlsh == INVALID_VLSH {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "VCL could not create a session"));
        }
        Ok(Session::from_vlsh(vlsh))
    }

    pub(crate) fn from_vlsh(vlsh: Vlsh) -> Session {
        Session {
            vlsh,
            nonblocking: AtomicBool::new(false),
            read_timeout: AtomicU64::new(0),
            write_timeout: AtomicU64::new(0),
            flags_update: std::sync::Mutex::new(()),
        }
    }

    pub(crate) fn vlsh(&self) -> Vlsh {
        self.vlsh
    }

    /// A new non-blocking session (VCL's `O_NONBLOCK` from the start): every
    /// call is one attempt, `WouldBlock` when it would wait.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn new_nonblocking(proto: Proto) -> io::Result<Session> {
        crate::app::require()?;
        let vlsh = vls().create(proto as u8, true);
        if vlsh == INVALID_VLSH {
            return Err(io::Error::new(io::ErrorKind::OutOfMemory, "VCL could not create a session"));
        }
        let s = Session::from_vlsh(vlsh);
        s.nonblocking.store(true, Ordering::Release);
        Ok(s)
    }

    /// Takes one pending connection without waiting (`WouldBlock` if
    /// none); the new session is non-blocking too.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn accept_nonblocking(&self) -> io::Result<(Session, SocketAddr)> {
        // SAFETY: the endpoint is valid for the call.
        let (rv, peer) = with_endpt(None, |ep| unsafe { vls().accept(self.vlsh, ep, libc::O_NONBLOCK) });
        let s = Session::from_vlsh(check(rv)?);
        s.nonblocking.store(true, Ordering::Release);
        Ok((s, peer))
    }

    /// Reads into `len` bytes at `buf`, which need not be initialised.
    ///
    /// # Safety
    /// `buf` is valid for `len` writable bytes.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) unsafe fn read_raw(&self, buf: *mut u8, len: usize) -> io::Result<usize> {
        // SAFETY: forwarded contract; VCL only writes into the buffer.
        self.io(Dir::Read, || unsafe { vls().read(self.vlsh, buf.cast(), len) }).map(|n| n as usize)
    }

    pub(crate) fn into_vlsh(self) -> Vlsh {
        let v = self.vlsh;
        std::mem::forget(self);
        v
    }

    pub(crate) fn bind(&self, addr: &SocketAddr) -> io::Result<()> {
        // SAFETY: the endpoint is valid for the call.
        with_endpt(Some(addr), |ep| check(unsafe { vls().bind(self.vlsh, ep) })).0.map(drop)
    }

    pub(crate) fn listen(&self, backlog: i32) -> io::Result<()> {
        check(vls().listen(self.vlsh, backlog)).map(drop)
    }

    pub(crate) fn connect(&self, addr: &SocketAddr) -> io::Result<()> {
        // SAFETY: the endpoint is valid for the call.
        with_endpt(Some(addr), |ep| check(unsafe { vls().connect(self.vlsh, ep) })).0.map(drop)
    }

    /// Accepts a connection; blocks unless the session is non-blocking.
    pub(crate) fn accept(&self) -> io::Result<(Session, SocketAddr)> {
        // SAFETY: the endpoint is valid for the call.
        let (rv, peer) = with_endpt(None, |ep| unsafe { vls().accept(self.vlsh, ep, 0) });
        Ok((Session::from_vlsh(check(rv)?), peer))
    }

    pub(crate) fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.io(Dir::Read, || {
            // SAFETY: `buf` is valid for `buf.len()` writable bytes.
            unsafe { vls().read(self.vlsh, buf.as_mut_ptr().cast(), buf.len()) }
        })
        .map(|n| n as usize)
    }

    pub(crate) fn write(&self, buf: &[u8]) -> io::Result<usize> {
        self.io(Dir::Write, || {
            // SAFETY: VCL only reads `buf.len()` bytes.
            unsafe { vls().write(self.vlsh, buf.as_ptr() as *mut c_void, buf.len()) }
        })
        .map(|n| n as usize)
    }

    /// Sends one message (a datagram, or stream bytes that are not
    /// interleaved with other writers' messages).
    pub(crate) fn write_msg(&self, buf: &[u8]) -> io::Result<usize> {
        self.io(Dir::Write, || {
            // SAFETY: VCL only reads `buf.len()` bytes.
            unsafe { vls().write_msg(self.vlsh, buf.as_ptr() as *mut c_void, buf.len()) }
        })
        .map(|n| n as usize)
    }

    pub(crate) fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let len = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let mut from = SocketAddr::from(([0, 0, 0, 0], 0));
        let n = self.io(Dir::Read, || {
            // SAFETY: `buf` is valid for `len` bytes; the endpoint for the call.
            let (rv, addr) = with_endpt(None, |ep| unsafe {
                vls().recvfrom(self.vlsh, buf.as_mut_ptr().cast(), len, 0, ep)
            });
            from = addr;
            rv
        })?;
        Ok((n as usize, from))
    }

    pub(crate) fn send_to(&self, buf: &[u8], to: Option<&SocketAddr>) -> io::Result<usize> {
        let len = i32::try_from(buf.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "datagram too large"))?;
        self.io(Dir::Write, || {
            let send = |ep: *mut c_void| {
                // SAFETY: VCL reads `len` bytes of `buf`; `ep` is null or valid.
                unsafe { vls().sendto(self.vlsh, buf.as_ptr() as *mut c_void, len, 0, ep) }
            };
            match to {
                Some(a) => with_endpt(Some(a), send).0,
                None => send(std::ptr::null_mut()),
            }
        })
        .map(|n| n as usize)
    }

    pub(crate) fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        let how = match how {
            std::net::Shutdown::Read => libc::SHUT_RD,
            std::net::Shutdown::Write => libc::SHUT_WR,
            std::net::Shutdown::Both => libc::SHUT_RDWR,
        };
        check(vls().shutdown(self.vlsh, how)).map(drop)
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.addr_attr(sys::VPPCOM_ATTR_GET_LCL_ADDR)
    }

    pub(crate) fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.addr_attr(sys::VPPCOM_ATTR_GET_PEER_ADDR)
    }

    fn addr_attr(&self, op: u32) -> io::Result<SocketAddr> {
        let mut len = std::mem::size_of::<sys::vppcom_endpt_t>() as u32;
        // SAFETY: the endpoint is valid for `len` bytes during the call.
        let (rv, addr) = with_endpt(None, |ep| unsafe { vls().attr(self.vlsh, op, ep, &mut len) });
        check(rv)?;
        Ok(addr)
    }

    /// Reads a `u32`-sized attribute.
    pub(crate) fn get_u32(&self, op: u32) -> io::Result<u32> {
        let mut v = 0u32;
        let mut len = 4u32;
        // SAFETY: `v` is valid for `len` bytes.
        check(unsafe { vls().attr(self.vlsh, op, (&mut v as *mut u32).cast(), &mut len) })?;
        Ok(v)
    }

    /// Sets a `u32`-sized attribute.
    pub(crate) fn set_u32(&self, op: u32, mut v: u32) -> io::Result<()> {
        let mut len = 4u32;
        // SAFETY: `v` is valid for `len` bytes.
        check(unsafe { vls().attr(self.vlsh, op, (&mut v as *mut u32).cast(), &mut len) }).map(drop)
    }

    pub(crate) fn set_nonblocking(&self, on: bool) -> io::Result<()> {
        self.nonblocking.store(on, Ordering::Release);
        self.sync_vcl_flags()
    }

    pub(crate) fn set_timeout(&self, read: bool, t: Option<Duration>) -> io::Result<()> {
        let ns = match t {
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"))
            }
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            None => 0,
        };
        let slot = if read { &self.read_timeout } else { &self.write_timeout };
        slot.store(ns, Ordering::Release);
        self.sync_vcl_flags()
    }

    pub(crate) fn timeout(&self, read: bool) -> Option<Duration> {
        let slot = if read { &self.read_timeout } else { &self.write_timeout };
        match slot.load(Ordering::Acquire) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    /// VCL's `O_NONBLOCK`: on when the application wants non-blocking I/O
    /// or a timeout is set (timeouts are emulated, see the module docs).
    fn sync_vcl_flags(&self) -> io::Result<()> {
        let _one_at_a_time = self.flags_update.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let vcl_nonblocking = self.nonblocking.load(Ordering::Acquire)
            || self.read_timeout.load(Ordering::Acquire) != 0
            || self.write_timeout.load(Ordering::Acquire) != 0;
        let flags = self.get_u32(sys::VPPCOM_ATTR_GET_FLAGS)?;
        let want = if vcl_nonblocking {
            flags | libc::O_NONBLOCK as u32
        } else {
            flags & !(libc::O_NONBLOCK as u32)
        };
        if want != flags {
            self.set_u32(sys::VPPCOM_ATTR_SET_FLAGS, want)?;
        }
        Ok(())
    }

    /// Runs `op` with the application's blocking semantics: once when
    /// non-blocking, or blocking in VCL (no timeout in either direction);
    /// else (VCL is non-blocking because of a timeout) retried after short
    /// waits for message-queue activity until it stops saying `EAGAIN` or
    /// this direction's time is up (`TimedOut`; no limit without one).
    ///
    /// A non-blocking call's `EAGAIN` is a plain `ErrorKind::WouldBlock`
    /// without the [`VppcomError`] inside: event loops (`vls::tokio` clears a
    /// session's readiness on it) get it once per drained session, and
    /// `io::Error::new` would allocate twice for it.
    fn io(&self, dir: Dir, mut op: impl FnMut() -> i32) -> io::Result<i32> {
        if self.nonblocking.load(Ordering::Acquire) {
            return match op() {
                rv if rv == VppcomError::EAGAIN.raw() => Err(io::ErrorKind::WouldBlock.into()),
                rv => check(rv),
            };
        }
        if self.read_timeout.load(Ordering::Acquire) == 0 && self.write_timeout.load(Ordering::Acquire) == 0 {
            return check(op());
        }
        let timeout = match dir {
            Dir::Read => self.timeout(true),
            Dir::Write => self.timeout(false),
        };
        // A timeout too large for `Instant` is no limit.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let rv = op();
            if rv != VppcomError::EAGAIN.raw() {
                return check(rv);
            }
            let now = Instant::now();
            let slice = Duration::from_millis(1);
            let pause = match deadline {
                Some(d) if now >= d => {
                    let what = match dir {
                        Dir::Read => "read",
                        Dir::Write => "write",
                    };
                    let t = timeout.unwrap_or_default();
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{what} timed out after {t:?}"),
                    ));
                }
                Some(d) => (d - now).min(slice),
                None => slice,
            };
            wait_for_activity(pause);
        }
    }
}

impl AsRawHandle for Session {
    fn as_raw_handle(&self) -> RawHandle {
        self.vlsh
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let span = tracing::debug_span!("close", vlsh = self.vlsh);
        let _e = span.enter();
        let rv = vls().close(self.vlsh);
        if rv < 0 {
            tracing::debug!(vlsh = self.vlsh, rv = %VppcomError::from_raw(rv), "close on drop");
        } else {
            tracing::trace!(vlsh = self.vlsh, "closed");
        }
    }
}

/// Waits up to `d` for activity on the worker's message queue, applying
/// VPP's notifications (data, closes, connects) to VCL's sessions. Events
/// of sessions that are in an application's epoll set are kept for it.
///
/// Each thread waits on an empty epoll set of its own (made on first use,
/// retried if that fails; closed when the thread ends), so threads do not
/// queue on one set's lock, and with per-thread workers no set moves
/// between workers.
pub(crate) fn wait_for_activity(d: Duration) {
    thread_local! {
        static IDLE: RefCell<Option<(crate::Epoll, crate::Events)>> = const { RefCell::new(None) };
    }
    let waited = IDLE
        .try_with(|idle| {
            let mut idle = idle.borrow_mut();
            if idle.is_none() {
                *idle = crate::Epoll::new().ok().map(|set| (set, crate::Events::with_capacity(4)));
            }
            let (set, events) = idle.as_mut()?;
            let _ = set.wait(events, Some(d));
            Some(())
        })
        .ok()
        .flatten();
    if waited.is_none() {
        std::thread::sleep(d);
    }
}

/// Tries each address `f` accepts, returning the first success or the last
/// error.
pub(crate) fn each_addr<T>(
    addr: impl ToSocketAddrs,
    mut f: impl FnMut(&SocketAddr) -> io::Result<T>,
) -> io::Result<T> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match f(&a) {
            Ok(v) => return Ok(v),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to use")))
}

/// `AsRawHandle`, `FromRawHandle` and `IntoRawHandle` for socket types
/// that are a `session: Session` field.
macro_rules! raw_handle_impls {
    ($($t:ident),*) => {$(
        impl $crate::socket::AsRawHandle for $t {
            fn as_raw_handle(&self) -> $crate::socket::RawHandle {
                self.session.vlsh()
            }
        }
        impl $crate::socket::FromRawHandle for $t {
            unsafe fn from_raw_handle(handle: $crate::socket::RawHandle) -> Self {
                $t { session: $crate::socket::Session::from_vlsh(handle) }
            }
        }
        impl $crate::socket::IntoRawHandle for $t {
            fn into_raw_handle(self) -> $crate::socket::RawHandle {
                self.session.into_vlsh()
            }
        }
    )*};
}
pub(crate) use raw_handle_impls;
