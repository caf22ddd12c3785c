//! Async UDP: [`UdpSocket`], shaped like `tokio::net`'s.
//!
//! The VCL limits of the blocking [`crate::UdpSocket`] apply: between two
//! applications of one VPP in one namespace, a connected client goes over a
//! cut-through session that the server has to accept, so test through
//! VPP's IP stack (two app namespaces) or across hosts.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::task::{ready, Context, Poll};

use ::tokio::io::ReadBuf;

use super::io::Registered;
use super::reactor::Reactor;
use super::readiness::{Direction, READABLE, WRITABLE};
use crate::socket::{IntoRawHandle, Proto, Session};

/// A UDP socket on VPP's host stack, for tokio.
///
/// ```no_run
/// # async fn f() -> std::io::Result<()> {
/// vls::App::init("udp-echo")?;
/// let sock = vls::tokio::UdpSocket::bind("172.16.1.1:7001").await?;
/// let mut buf = [0; 1500];
/// loop {
///     let (n, from) = sock.recv_from(&mut buf).await?;
///     sock.send_to(&buf[..n], from).await?;
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct UdpSocket {
    io: Registered,
}

fn first_addr(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to use"))
}

impl UdpSocket {
    /// A socket bound to `addr` (VPP needs a concrete port). Binding waits
    /// for VPP's answer (a local round trip) on the calling thread.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let reactor = Reactor::current()?;
        crate::socket::each_addr(addr, |a| {
            let session = Session::new_nonblocking(Proto::Udp)?;
            session.bind(a)?;
            let io = Registered::new_in(reactor.clone(), session, READABLE | WRITABLE)?.datagram();
            // VCL waited inside the bind (a UDP bind listens).
            reactor.kick();
            Ok(UdpSocket { io })
        })
    }

    /// A socket connected to `addr`, with a local address VPP picks (the
    /// usual client); [`send`](Self::send) and [`recv`](Self::recv) then
    /// talk to `addr`.
    pub async fn connect_to(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        let reactor = Reactor::current()?;
        let a = first_addr(addr)?;
        let io = Registered::new_in(reactor, Session::new_nonblocking(Proto::Udp)?, READABLE)?.datagram();
        let sock = UdpSocket { io };
        sock.connect_session(&a).await?;
        Ok(sock)
    }

    /// Connects a bound socket to `addr`.
    pub async fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let a = first_addr(addr)?;
        self.connect_session(&a).await
    }

    async fn connect_session(&self, a: &SocketAddr) -> io::Result<()> {
        match self.io.session().connect(a) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.io.connected().await,
            Err(e) => Err(e),
        }
    }

    /// Sends one datagram to `target`.
    pub async fn send_to(&self, buf: &[u8], target: impl ToSocketAddrs) -> io::Result<usize> {
        let a = first_addr(target)?;
        self.io.io(Direction::Write, |s| s.send_to(buf, Some(&a))).await
    }

    /// Sends one datagram to `target`, or registers the task to be woken
    /// when the socket may take it.
    pub fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.io.poll_io(cx, Direction::Write, |s| s.send_to(buf, Some(&target)))
    }

    /// Receives one datagram and its source.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.io.io(Direction::Read, |s| s.recv_from(buf)).await
    }

    /// Receives one datagram into `buf`'s unfilled part and returns its
    /// source, or registers the task to be woken when one may be there.
    pub fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<SocketAddr>> {
        let (n, from) =
            ready!(self.io.poll_io(cx, Direction::Read, |s| s.recv_from(buf.initialize_unfilled())))?;
        buf.advance(n);
        Poll::Ready(Ok(from))
    }

    /// Sends one datagram to the connected peer.
    pub async fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.io.io(Direction::Write, |s| s.send_to(buf, None)).await
    }

    /// Receives one datagram from the connected peer.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // A read of a datagram session takes one datagram.
        self.io.io(Direction::Read, |s| s.read(buf)).await
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.session().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.io.session().peer_addr()
    }

    /// Takes over a socket of the blocking API (made in this thread when
    /// VCL runs one worker per thread). Must be called inside a runtime.
    pub fn from_std(socket: crate::UdpSocket) -> io::Result<UdpSocket> {
        let session = Session::from_vlsh(socket.into_raw_handle());
        session.set_nonblocking(true)?;
        Ok(UdpSocket { io: Registered::new(session, READABLE | WRITABLE)?.datagram() })
    }

    /// Back to the blocking API: leaves the runtime's set; the socket is in
    /// blocking mode again.
    pub fn into_std(self) -> io::Result<crate::UdpSocket> {
        let session = self.io.into_session()?;
        session.set_nonblocking(false)?;
        // SAFETY: an open socket whose ownership moves to the result.
        Ok(unsafe { crate::FromRawHandle::from_raw_handle(session.into_vlsh()) })
    }
}

impl crate::AsRawHandle for UdpSocket {
    fn as_raw_handle(&self) -> crate::RawHandle {
        self.io.session().vlsh()
    }
}
