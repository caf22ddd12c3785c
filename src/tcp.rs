//! TCP over VPP's host stack: [`TcpListener`] and [`TcpStream`], shaped
//! like `std::net`'s.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use vpp_sys as sys;

use crate::socket::{each_addr, Proto, Session};

/// A TCP socket listening on VPP's host stack.
///
/// ```no_run
/// use std::io::{Read, Write};
/// use vls::{App, TcpListener};
///
/// App::init("echo")?;
/// let listener = TcpListener::bind("127.0.0.1:7000")?;
/// for stream in listener.incoming() {
///     let mut stream = stream?;
///     let mut buf = [0; 1024];
///     let n = stream.read(&mut buf)?;
///     stream.write_all(&buf[..n])?;
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TcpListener {
    session: Session,
}

/// A TCP connection over VPP's host stack. `Read` and `Write` are
/// implemented for `TcpStream` and `&TcpStream`, so one stream can be shared
/// by threads (e.g. in an `Arc`).
///
/// ```no_run
/// use std::io::{Read, Write};
/// use vls::{App, TcpStream};
///
/// App::init("client")?;
/// let mut s = TcpStream::connect("127.0.0.1:7000")?;
/// s.write_all(b"hello")?;
/// let mut back = [0; 5];
/// s.read_exact(&mut back)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TcpStream {
    session: Session,
}

impl TcpListener {
    /// Creates a listener bound to `addr` (backlog 128). Port 0 is not
    /// supported by VPP for listeners: give a port.
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        each_addr(addr, |a| {
            let session = Session::new(Proto::Tcp)?;
            session.bind(a)?;
            session.listen(128)?;
            tracing::debug!(vlsh = session.vlsh(), addr = %a, "listening");
            Ok(TcpListener { session })
        })
    }

    /// Waits for (or, non-blocking, takes) one connection.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let span = tracing::debug_span!("accept", listener = self.session.vlsh());
        let _e = span.enter();
        let (session, peer) = self.session.accept()?;
        tracing::debug!(vlsh = session.vlsh(), %peer, "accepted");
        Ok((TcpStream { session }, peer))
    }

    /// An endless iterator of accepted connections.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.session.local_addr()
    }

    /// Makes `accept` return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.session.set_nonblocking(nonblocking)
    }
}

/// Iterator over [`TcpListener::accept`] results; never ends.
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

impl TcpStream {
    /// Connects to `addr` (each resolved address in turn). Blocks until
    /// VPP has established the connection or refused it.
    pub fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        each_addr(addr, |a| {
            let span = tracing::debug_span!("connect", peer = %a);
            let _e = span.enter();
            let session = Session::new(Proto::Tcp)?;
            session.connect(a)?;
            tracing::debug!(vlsh = session.vlsh(), "connected");
            Ok(TcpStream { session })
        })
    }

    /// Connects to `addr`, giving up after `timeout` (`TimedOut`).
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"));
        }
        let span = tracing::debug_span!("connect", peer = %addr, ?timeout);
        let _e = span.enter();
        let session = Session::new(Proto::Tcp)?;
        session.set_nonblocking(true)?;
        match session.connect(addr) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                crate::epoll::wait_connected(&session, timeout)?;
            }
            Err(e) => return Err(e),
        }
        session.set_nonblocking(false)?;
        tracing::debug!(vlsh = session.vlsh(), "connected");
        Ok(TcpStream { session })
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.session.peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.session.local_addr()
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.session.shutdown(how)
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.session.set_u32(sys::VPPCOM_ATTR_SET_TCP_NODELAY, nodelay as u32)
    }

    /// Reads `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.session.get_u32(sys::VPPCOM_ATTR_GET_TCP_NODELAY).map(|v| v != 0)
    }

    /// Makes reads and writes return `WouldBlock` instead of waiting.
    pub fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.session.set_nonblocking(nonblocking)
    }

    /// A read that waits longer than `timeout` fails with `TimedOut`
    /// (`None`: wait forever; a zero duration is `InvalidInput`). VCL has no
    /// socket timeouts: see [the module](crate::socket) for how this works.
    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.session.set_timeout(true, timeout)
    }

    /// Like [`set_read_timeout`](Self::set_read_timeout), for writes (a full
    /// transmit FIFO).
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

    /// Bytes ready to read now.
    pub fn bytes_readable(&self) -> io::Result<usize> {
        self.session.get_u32(sys::VPPCOM_ATTR_GET_NREAD).map(|n| n as usize)
    }

    /// Writes `buf` as one message: concurrent writers on the same stream
    /// never interleave within it. Returns the bytes written (all of `buf`
    /// unless the FIFO is too small or the stream is non-blocking).
    pub fn write_message(&self, buf: &[u8]) -> io::Result<usize> {
        self.session.write_msg(buf)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.session.read(buf)
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.session.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

crate::socket::raw_handle_impls!(TcpListener, TcpStream);
