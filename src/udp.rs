//! UDP over VPP's host stack: [`UdpSocket`], shaped like `std::net`'s.
//!
//! VCL limit to know: between two applications on the same VPP in the same
//! namespace, a connected UDP client is served over a cut-through session
//! that the server application has to accept; a plain bound socket does not
//! see its datagrams. Datagrams that cross VPP's IP stack (different app
//! namespaces or hosts) reach a bound socket as usual.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use crate::socket::{each_addr, Proto, Session};

/// A UDP socket on VPP's host stack.
///
/// ```no_run
/// use vls::{App, UdpSocket};
///
/// App::init("udp")?;
/// let sock = UdpSocket::bind("172.16.1.1:7001")?;
/// let mut buf = [0; 1500];
/// let (n, from) = sock.recv_from(&mut buf)?;
/// sock.send_to(&buf[..n], from)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct UdpSocket {
    session: Session,
}

fn first_addr(addr: impl ToSocketAddrs) -> io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to use"))
}

impl UdpSocket {
    /// A socket bound to `addr` (VPP needs a concrete port).
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        each_addr(addr, |a| {
            let session = Session::new(Proto::Udp)?;
            session.bind(a)?;
            tracing::debug!(vlsh = session.vlsh(), addr = %a, "udp bound");
            Ok(UdpSocket { session })
        })
    }

    /// A socket connected to `addr` with a local address VPP picks: the
    /// usual client. [`send`](Self::send) and [`recv`](Self::recv) then
    /// talk to `addr`.
    pub fn connect_to(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
        each_addr(addr, |a| {
            let session = Session::new(Proto::Udp)?;
            session.connect(a)?;
            tracing::debug!(vlsh = session.vlsh(), peer = %a, "udp connected");
            Ok(UdpSocket { session })
        })
    }

    /// Connects a bound socket to `addr`.
    pub fn connect(&self, addr: impl ToSocketAddrs) -> io::Result<()> {
        let a = first_addr(addr)?;
        self.session.connect(&a)
    }

    /// Sends one datagram to `addr`.
    pub fn send_to(&self, buf: &[u8], addr: impl ToSocketAddrs) -> io::Result<usize> {
        let a = first_addr(addr)?;
        self.session.send_to(buf, Some(&a))
    }

    /// Receives one datagram and its source.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.session.recv_from(buf)
    }

    /// Sends one datagram to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.session.send_to(buf, None)
    }

    /// Receives one datagram from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        // A read of a datagram session takes one datagram.
        self.session.read(buf)
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.session.local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.session.peer_addr()
    }

    /// Makes sends and receives return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.session.set_nonblocking(nonblocking)
    }

    /// A receive that waits longer than `timeout` fails with `TimedOut`.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.session.set_timeout(true, timeout)
    }

    /// A send that waits longer than `timeout` fails with `TimedOut`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.session.set_timeout(false, timeout)
    }

    /// The read timeout.
    pub fn read_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.session.timeout(true))
    }

    /// The write timeout.
    pub fn write_timeout(&self) -> io::Result<Option<Duration>> {
        Ok(self.session.timeout(false))
    }
}

crate::socket::raw_handle_impls!(UdpSocket);
