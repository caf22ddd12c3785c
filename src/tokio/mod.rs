//! Async sockets for tokio (feature `tokio`): [`TcpListener`],
//! [`TcpStream`] and [`UdpSocket`], shaped like `tokio::net`'s, over the
//! same process-wide VLS as the blocking API.
//!
//! ```no_run
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[cfg(feature = "vpp")]
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     vls::App::init("hello")?; // VCL_CONFIG must say `use-mq-eventfd`
//!     let mut s = vls::tokio::TcpStream::connect("10.0.0.2:7000").await?;
//!     s.write_all(b"hello").await?;
//!     let mut back = [0; 5];
//!     s.read_exact(&mut back).await?;
//!     Ok(())
//! }
//! # #[cfg(not(feature = "vpp"))]
//! # fn main() {}
//! ```
//!
//! Needs: an attached application ([`crate::App::init`]), `use-mq-eventfd`
//! in `vcl.conf` (without it VCL has no fd to wait on; binding or
//! connecting then fails naming the setting), and a tokio runtime (sockets
//! are made inside one and belong to it). `TcpStream` implements tokio's
//! `AsyncRead`/`AsyncWrite`, so it works with `tokio::io` utilities and
//! with hyper through `hyper_util::rt::TokioIo`.
//!
//! ## Which runtime
//!
//! - **Multi-thread runtime** (`#[tokio::main]`'s default), **without**
//!   `multi-thread-workers`: every runtime thread uses the process's one VCL
//!   worker (VLS mode 3). A task holding a socket may move between the
//!   runtime's threads at any `.await`: its session stays on that worker and
//!   VLS locks what must be locked; only the task's waker changes.
//! - **Thread-per-core**: `multi-thread-workers` in `vcl.conf` and one
//!   current-thread runtime per OS thread (VLS mode 2). Each thread has its
//!   own VCL worker, its own message queue and its own reactor; nothing is
//!   shared between threads. Make every socket on the thread that uses it:
//!   an open session cannot move to another VCL worker, so a socket handed
//!   to another thread's runtime fails there with `VPPCOM_EBADFD` (its
//!   readiness would still come from the first thread). Tasks of a
//!   current-thread runtime never change threads.
//! - A multi-thread runtime **with** `multi-thread-workers` is refused
//!   (`ErrorKind::Unsupported` at bind/connect): it would move tasks, and
//!   so sessions, between VCL workers.
//!
//! ## How readiness works
//!
//! The way VCL's event-loop users do it (LDP's `ldp_epoll_pwait_eventfd`):
//! each runtime has a reactor, a VLS epoll set paired with a libc epoll fd
//! that holds VCL's message-queue eventfd, registered with the runtime's
//! I/O driver (`AsyncFd`). Sessions are in the set edge-triggered. One
//! driver task per reactor drains the set when the fd fires and sets the
//! sessions' readiness, which only a call answering `WouldBlock` clears
//! (with a tick, so an event that arrived during the call is kept). That is
//! what keeps a reader that took part of the data from waiting for a
//! notification VPP will not send until the FIFO is drained (DESIGN.md,
//! `has_event`). No timer and no polling: an idle process sleeps. The
//! invariants are stated next to the data they protect: `reactor` (the set,
//! the driver, the registry) and `readiness` (one session's state word).
//!
//! ## Also worth knowing
//!
//! - One task reading and one writing at a time per socket (the last task
//!   to wait in a direction is the one woken), as with tokio's sockets;
//!   [`TcpStream::split`]/[`TcpStream::into_split`] give the halves.
//! - `bind` asks VPP to listen and waits for the answer on the calling
//!   thread (a local round trip); addresses resolve through
//!   `std::net::ToSocketAddrs`.
//! - When a runtime shuts down, its sockets' calls fail with an error.
//! - Between two applications of one VPP over cut-through
//!   (`app-scope-local`), shutting the write side down does not reach the
//!   peer: VPP's cut-through transport has no half close (through VPP's
//!   TCP stack it has). The peer sees the end of the stream at the close.
//! - A UDP send that does not fit waits for VPP to report room for any
//!   datagram (more than 64 KiB free, or the whole FIFO if smaller).
//! - [`TcpStream::from_std`] and friends take over blocking sockets;
//!   `into_std` gives them back (in blocking mode).

#[cfg(feature = "vpp")]
mod io;
#[cfg(feature = "vpp")]
mod reactor;
// Without `vpp`, only its own tests use it.
#[cfg_attr(not(feature = "vpp"), allow(dead_code))]
mod readiness;
#[cfg(feature = "vpp")]
mod tcp;
#[cfg(feature = "vpp")]
mod udp;

#[cfg(feature = "vpp")]
pub use tcp::{OwnedReadHalf, OwnedWriteHalf, ReadHalf, ReuniteError, TcpListener, TcpStream, WriteHalf};
#[cfg(feature = "vpp")]
pub use udp::UdpSocket;
