//! Async TCP: [`TcpListener`] and [`TcpStream`], shaped like
//! `tokio::net`'s, plus the stream's borrowed and owned halves.

use std::io;
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use ::tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use vpp_sys as sys;

use super::io::Registered;
use super::reactor::Reactor;
use super::readiness::{Direction, READABLE, WRITABLE};
use crate::socket::{IntoRawHandle, Proto, Session};

/// Listen queue length asked of VPP.
const BACKLOG: i32 = 1024;
/// Vectored writes of at most this many bytes in all are written with one
/// VCL call (see `poll_write_vectored_priv`).
const COALESCE: usize = 2048;

/// A TCP listener on VPP's host stack, for tokio.
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// vls::App::init("echo")?;
/// let listener = vls::tokio::TcpListener::bind("127.0.0.1:7000").await?;
/// loop {
///     let (mut stream, _peer) = listener.accept().await?;
///     tokio::spawn(async move {
///         let mut buf = vec![0; 4096];
///         while let Ok(n @ 1..) = stream.read(&mut buf).await {
///             if stream.write_all(&buf[..n]).await.is_err() {
///                 break;
///             }
///         }
///     });
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct TcpListener {
    io: Registered,
}

impl TcpListener {
    /// Listens on `addr` (the first address that works). VPP needs a
    /// concrete port. Asking VPP to listen waits for its answer (a local
    /// round trip) on the calling thread; names are resolved with
    /// `std::net::ToSocketAddrs`, which may block too.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        let reactor = Reactor::current()?;
        crate::socket::each_addr(addr, |a| {
            let session = Session::new_nonblocking(Proto::Tcp)?;
            session.bind(a)?;
            session.listen(BACKLOG)?;
            let io = Registered::new_in(reactor.clone(), session, READABLE)?;
            // The listen waited inside VCL for VPP's answer, possibly taking
            // other sessions' notifications off the message queue.
            reactor.kick();
            tracing::debug!(vlsh = io.session().vlsh(), addr = %a, "async listening");
            Ok(TcpListener { io })
        })
    }

    /// Waits for a connection.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Takes a connection if one is pending; else registers the task to be
    /// woken when one comes.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let (session, peer) = ready!(self.io.poll_io(cx, Direction::Read, Session::accept_nonblocking))?;
        // Assumed readable and writable: the first calls find out (the peer
        // may have sent data before the accept; VPP's notification of it
        // came before the session was in the set).
        let io = Registered::new_in(self.io.reactor().clone(), session, READABLE | WRITABLE)?;
        Poll::Ready(Ok((TcpStream::from_registered(io), peer)))
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.session().local_addr()
    }

    /// Takes over a listener of the blocking API (made in this thread when
    /// VCL runs one worker per thread). Must be called inside a runtime.
    pub fn from_std(listener: crate::TcpListener) -> io::Result<TcpListener> {
        let session = Session::from_vlsh(listener.into_raw_handle());
        session.set_nonblocking(true)?;
        Ok(TcpListener { io: Registered::new(session, READABLE)? })
    }

    /// Back to the blocking API: leaves the runtime's set; the listener is
    /// in blocking mode again.
    pub fn into_std(self) -> io::Result<crate::TcpListener> {
        let session = self.io.into_session()?;
        session.set_nonblocking(false)?;
        // SAFETY: an open listener whose ownership moves to the result.
        Ok(unsafe { crate::FromRawHandle::from_raw_handle(session.into_vlsh()) })
    }
}

/// A TCP connection over VPP's host stack, for tokio: `AsyncRead` and
/// `AsyncWrite`; `poll_shutdown` shuts the write side down.
///
/// One task may wait to read and another to write at the same time
/// ([`split`](Self::split), [`into_split`](Self::into_split)); two tasks
/// reading the same stream at once take turns being woken (the last one to
/// wait is the one woken), as with tokio's sockets.
#[derive(Debug)]
pub struct TcpStream {
    io: Registered,
    /// The write side was shut down (a second shutdown is a no-op).
    write_shut: AtomicBool,
}

impl TcpStream {
    fn from_registered(io: Registered) -> TcpStream {
        TcpStream { io, write_shut: AtomicBool::new(false) }
    }

    /// Connects to `addr` (each resolved address in turn). VPP's refusal
    /// is `ErrorKind::ConnectionRefused`.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let reactor = Reactor::current()?;
        let mut last = None;
        for a in addr.to_socket_addrs()? {
            match TcpStream::connect_one(&reactor, &a).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to connect to")))
    }

    async fn connect_one(reactor: &Arc<Reactor>, a: &SocketAddr) -> io::Result<TcpStream> {
        // In the set before the connect starts, so the event that ends it
        // finds the session there.
        let io = Registered::new_in(reactor.clone(), Session::new_nonblocking(Proto::Tcp)?, 0)?;
        match io.session().connect(a) {
            Ok(()) => {}
            // VPPCOM_EINPROGRESS: VPP answers through the message queue.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.connected().await?,
            Err(e) => return Err(e),
        }
        tracing::debug!(vlsh = io.session().vlsh(), peer = %a, "async connected");
        Ok(TcpStream::from_registered(io))
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.session().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.session().local_addr()
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.io.session().set_u32(sys::VPPCOM_ATTR_SET_TCP_NODELAY, nodelay as u32)
    }

    /// Reads `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.io.session().get_u32(sys::VPPCOM_ATTR_GET_TCP_NODELAY).map(|v| v != 0)
    }

    /// Borrowed read and write halves, usable by two tasks at once (e.g.
    /// with `tokio::join!`).
    pub fn split(&mut self) -> (ReadHalf<'_>, WriteHalf<'_>) {
        (ReadHalf(self), WriteHalf(self))
    }

    /// Owned halves, for two spawned tasks. Dropping the write half shuts
    /// the write side down; [`OwnedReadHalf::reunite`] puts them back
    /// together.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        let s = Arc::new(self);
        (OwnedReadHalf(s.clone()), OwnedWriteHalf { stream: s, shutdown_on_drop: true })
    }

    /// Takes over a stream of the blocking API (made in this thread when
    /// VCL runs one worker per thread). Must be called inside a runtime.
    pub fn from_std(stream: crate::TcpStream) -> io::Result<TcpStream> {
        let session = Session::from_vlsh(stream.into_raw_handle());
        session.set_nonblocking(true)?;
        Ok(TcpStream::from_registered(Registered::new(session, READABLE | WRITABLE)?))
    }

    /// Back to the blocking API: leaves the runtime's set; the stream is in
    /// blocking mode again.
    pub fn into_std(self) -> io::Result<crate::TcpStream> {
        let session = self.io.into_session()?;
        session.set_nonblocking(false)?;
        // SAFETY: an open stream whose ownership moves to the result.
        Ok(unsafe { crate::FromRawHandle::from_raw_handle(session.into_vlsh()) })
    }

    fn poll_read_priv(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let n = ready!(self.io.poll_io(cx, Direction::Read, |s| {
            // SAFETY: VCL only writes into the unfilled part (never reads
            // it, never de-initialises it).
            let unfilled = unsafe { buf.unfilled_mut() };
            // SAFETY: `unfilled` is valid for its length.
            unsafe { s.read_raw(unfilled.as_mut_ptr().cast(), unfilled.len()) }
        }))?;
        // SAFETY: the read initialised the first `n` bytes of the unfilled part.
        unsafe { buf.assume_init(n) };
        buf.advance(n);
        Poll::Ready(Ok(()))
    }

    fn poll_write_priv(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.io.poll_io(cx, Direction::Write, |s| s.write(buf))
    }

    /// VCL has no gather write. Slices of at most [`COALESCE`] bytes in all
    /// (an HTTP head and a small body, a length prefix and its message) are
    /// copied into one buffer and written with one call, which costs less
    /// than a VCL write (and its locks) per slice. Larger ones are written
    /// one after the other while each goes in whole: writes into the TX FIFO
    /// are cheap and VPP is told of new data once.
    fn poll_write_vectored_priv(
        &self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        if len <= COALESCE && bufs.iter().filter(|b| !b.is_empty()).nth(1).is_some() {
            let mut joined = [0u8; COALESCE];
            let mut at = 0;
            for b in bufs {
                joined[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            }
            return self.poll_write_priv(cx, &joined[..len]);
        }
        let mut rest = bufs.iter().filter(|b| !b.is_empty());
        let Some(first) = rest.next() else { return Poll::Ready(Ok(0)) };
        let mut total = ready!(self.poll_write_priv(cx, first))?;
        if total == first.len() {
            for b in rest {
                // A WouldBlock or an error here is found again by the next call.
                match self.io.session().write(b) {
                    Ok(n) => {
                        total += n;
                        if n < b.len() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        Poll::Ready(Ok(total))
    }

    fn shutdown_write(&self) -> io::Result<()> {
        if self.write_shut.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.io.session().shutdown(Shutdown::Write)
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.poll_read_priv(cx, buf)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_priv(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored_priv(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.shutdown_write())
    }
}

/// The read half of [`TcpStream::split`].
#[derive(Debug)]
pub struct ReadHalf<'a>(&'a TcpStream);

/// The write half of [`TcpStream::split`]; `poll_shutdown` shuts the
/// stream's write side down.
#[derive(Debug)]
pub struct WriteHalf<'a>(&'a TcpStream);

/// The owned read half of [`TcpStream::into_split`].
#[derive(Debug)]
pub struct OwnedReadHalf(Arc<TcpStream>);

/// The owned write half of [`TcpStream::into_split`]; dropping it shuts
/// the write side down.
#[derive(Debug)]
pub struct OwnedWriteHalf {
    stream: Arc<TcpStream>,
    shutdown_on_drop: bool,
}

/// [`OwnedReadHalf::reunite`] was given halves of two different streams
/// (they are given back).
#[derive(Debug)]
pub struct ReuniteError(pub OwnedReadHalf, pub OwnedWriteHalf);

impl std::fmt::Display for ReuniteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the halves are not from the same stream")
    }
}

impl std::error::Error for ReuniteError {}

impl OwnedReadHalf {
    /// The stream again, from both halves of one [`TcpStream::into_split`].
    pub fn reunite(self, mut other: OwnedWriteHalf) -> Result<TcpStream, ReuniteError> {
        if !Arc::ptr_eq(&self.0, &other.stream) {
            return Err(ReuniteError(self, other));
        }
        other.shutdown_on_drop = false;
        drop(other);
        Ok(Arc::try_unwrap(self.0).expect("both halves were given"))
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl OwnedWriteHalf {
    /// Drops the half without shutting the write side down.
    pub fn forget(mut self) {
        self.shutdown_on_drop = false;
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.stream.local_addr()
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        if self.shutdown_on_drop {
            let _ = self.stream.shutdown_write();
        }
    }
}

/// `AsyncRead` for a read half (`$t` derefs to the stream through `.0`).
macro_rules! read_half {
    ($t:ty) => {
        impl AsyncRead for $t {
            fn poll_read(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                buf: &mut ReadBuf<'_>,
            ) -> Poll<io::Result<()>> {
                self.0.poll_read_priv(cx, buf)
            }
        }
    };
}

/// `AsyncWrite` for a write half; `$s` gets the stream from `self`.
macro_rules! write_half {
    ($t:ty, |$this:ident| $s:expr) => {
        impl AsyncWrite for $t {
            fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
                let $this = self.get_mut();
                $s.poll_write_priv(cx, buf)
            }
            fn poll_write_vectored(
                self: Pin<&mut Self>,
                cx: &mut Context<'_>,
                bufs: &[io::IoSlice<'_>],
            ) -> Poll<io::Result<usize>> {
                let $this = self.get_mut();
                $s.poll_write_vectored_priv(cx, bufs)
            }
            fn is_write_vectored(&self) -> bool {
                true
            }
            fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                Poll::Ready(Ok(()))
            }
            fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                let $this = self.get_mut();
                Poll::Ready($s.shutdown_write())
            }
        }
    };
}

read_half!(ReadHalf<'_>);
read_half!(OwnedReadHalf);
write_half!(WriteHalf<'_>, |this| this.0);
write_half!(OwnedWriteHalf, |this| this.stream);

impl crate::AsRawHandle for TcpListener {
    fn as_raw_handle(&self) -> crate::RawHandle {
        self.io.session().vlsh()
    }
}

impl crate::AsRawHandle for TcpStream {
    fn as_raw_handle(&self) -> crate::RawHandle {
        self.io.session().vlsh()
    }
}
