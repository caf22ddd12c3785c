//! # vls — VCL Locked Sessions for VPP's host stack, in Rust
//!
//! VPP applications use VCL (`libvppcom`) to open sessions on VPP's host
//! stack. VCL is not thread safe: sessions and message queues belong to a VCL
//! *worker* that one thread at a time may use. VLS is the layer above VCL that
//! makes it usable from multi-threaded and multi-process programs, and the
//! layer `libvcl_ldpreload` calls for every socket operation. This crate
//! reimplements it over the real libvppcom.
//!
//! ```text
//!   C ABI (capi: vls_*, for LDP)  ──┐
//!                                   ├─> process: the one Vls ─> engine ─> seam::Vcl ─> real_vcl ─> vpp-sys
//!   safe API (App, TcpListener,   ──┘                           (pool, locks,       (or the engine's
//!     TcpStream, UdpSocket, Epoll)                               demux, moves, fork)  test double)
//!   raw: raw VCL calls, endpoints, diagnostics (tests, benchmarks)
//! ```
//!
//! The harness that starts private VPP instances for tests is a crate of
//! its own (`vpp-harness`), apart from the product.
//!
//! ## The safe API (feature `vpp`)
//!
//! ```no_run
//! # #[cfg(feature = "vpp")]
//! # fn main() -> std::io::Result<()> {
//! use std::io::{Read, Write};
//! use vls::{App, TcpListener, TcpStream};
//!
//! App::init("my-app")?; // once per process; reads VCL_CONFIG
//! let listener = TcpListener::bind("127.0.0.1:7000")?;
//! std::thread::spawn(move || -> std::io::Result<()> {
//!     let (mut s, _peer) = listener.accept()?;
//!     let mut buf = [0; 5];
//!     s.read_exact(&mut buf)?;
//!     s.write_all(&buf)
//! });
//! // A peer in another application or host (VPP does not connect an
//! // application to its own listener):
//! let mut c = TcpStream::connect("10.0.0.2:7000")?;
//! c.write_all(b"hello")?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "vpp"))]
//! # fn main() {}
//! ```
//!
//! `App` attaches the process to VPP (VCL allows one application per
//! process). `TcpListener`, `TcpStream`, `UdpSocket` and `Epoll`
//! take and return `std::net::SocketAddr`, report errors as `io::Error`
//! whose message names the VPPCOM code, close on drop, and are `Send +
//! Sync`: share them with `Arc` or move them between threads.
//!
//! **Which mode?** Without `multi-thread-workers` in `vcl.conf` (the
//! default), all threads of the process share one VCL worker and VLS
//! serialises what must be (mode 3): any session can be used from any
//! thread. With `multi-thread-workers` every thread gets a VCL worker of its
//! own (mode 2), which scales better for thread-per-core designs where each
//! thread keeps to its own sessions. There a session used by a thread other
//! than its worker's moves to the user's worker: a socket made in `main`
//! and handed to a worker thread, a listener accepted on by another thread
//! (VPP then hands that worker the new connections; several threads can
//! take turns accepting on one listener), and an epoll set with its members
//! (a set waited on by another thread brings its members along). Moving a
//! listener costs a connection still in its TCP handshake at that moment:
//! VPP resets it when it stops the old worker's listen (the client sees a
//! reset and connects again). A
//! connection does not move (VPP's hand-over of a connection to another
//! worker corrupts FIFOs that have grown; `engine::migrate`): other threads
//! get `VPPCOM_EBADFD` on it, and so on a set holding one. With the safe API
//! that means: in mode 2, accept or connect in the thread that serves the
//! connection. Use the default unless each thread owns its connections.
//!
//! ## Async (feature `tokio`)
//!
//! `vls::tokio` has `TcpListener`, `TcpStream` and `UdpSocket`
//! shaped like `tokio::net`'s (`AsyncRead`/`AsyncWrite`, so hyper runs on
//! them through `hyper_util::rt::TokioIo`), over the same process-wide VLS.
//! Each runtime gets a VLS epoll set watched by its I/O driver, the way LDP
//! serves event loops; it needs `use-mq-eventfd`. Use a multi-thread
//! runtime without `multi-thread-workers` (mode 3), or one current-thread
//! runtime per thread with it (mode 2, thread-per-core); the module docs
//! say why and what moves where.
//!
//! **Forking** (mode 1) needs no setting: a child forked after the
//! application attached gets a VCL worker of its own and a copy of every
//! session; a listener opened before the fork is shared, and every process
//! that polls or accepts on it gets connections (nginx's master and worker
//! processes). The child has only the forking thread; VLS locks other
//! threads held at the fork are not inherited as held (VCL's own internal
//! locks are briefly held inside VCL calls and are not covered: fork while
//! other threads are inside a VCL call that holds one is not safe).
//!
//! ## Design in one screen
//!
//! - **Handles.** A VLS handle (`vlsh`) indexes the session pool; LDP maps it
//!   to a file descriptor. Each session remembers its VCL session handle; a
//!   table maps VCL handles back. Unknown or closed handles give `EBADFD`.
//! - **Threads.** Every call first checks the thread's VCL worker index. A
//!   new thread is registered: with `multi-thread-workers` as a VCL worker of
//!   its own (mode 2), otherwise pointed at the process's one worker (mode
//!   3), whose locks every call outside the lock-free paths below takes,
//!   also while one thread only has used VLS (uncontended then). A
//!   pthread-key destructor unregisters a thread when it ends; a thread-local
//!   record releases any lock it still holds.
//! - **One thread: no locks.** While a single thread has used VLS, its
//!   non-blocking reads and writes, its `epoll_ctl` and its epoll waits that
//!   do not sleep in VCL (timeout 0, LDP's drain) take no lock at all, only
//!   a flag it writes with plain stores. The second thread's first call turns the
//!   locks on, then waits for that flag after a `membarrier(2)` (which
//!   orders the first thread's plain stores for it) so the first thread is
//!   never mid-call unlocked while locking starts; a third thread arriving
//!   meanwhile waits for the same hand-over (`engine::solo`). The arriving
//!   thread then takes the unlocked paths over itself if no other thread is
//!   inside VCL (it holds every worker lock, tried, and no thread waits in
//!   VCL): a program whose main thread only set up (wrk) keeps them for its
//!   one I/O thread. Any other thread that takes a worker lock later ends
//!   that period before it looks at VCL, and with it the take-overs (its
//!   threads share the work). Without `membarrier` every call locks. Every other call locks even
//!   with one thread, so a second thread never finds the worker in use
//!   unlocked (pgbench's did, and both grew VCL's session pool at once).
//! - **Locks (mode 3).** Session lock (held for the whole call; a read
//!   takes only its receive half and a write only its send half, so one
//!   thread can block reading a session while another writes to it; a
//!   non-blocking read or write takes both, as it never waits; both halves
//!   are bits of one word) → mq
//!   mutex → session-pool rwlock (writer-favouring; readers count
//!   themselves in per-thread slots on separate cache lines, so threads on
//!   different sessions share no written memory). A call takes what its
//!   kind needs (`engine::locks::OpKind`): reads and writes that will not
//!   block take only the pool read lock (a non-blocking one through a
//!   direct path: it never waits, so the wait hooks need no record of
//!   it), except a non-blocking read that may empty its FIFO: VCL may then
//!   append the session's re-armed event to the worker's unhandled-events
//!   vector, which epoll waits walk, so it takes the mq lock too; epoll,
//!   select, poll, listen, connect, blocking I/O and
//!   *epoll_ctl* take the mq lock too; create,
//!   accept, close and shutdown take the pool write lock. When VCL is about
//!   to sleep it calls back (wait hooks): the mq lock (and the write lock of
//!   a blocking accept) is released for the sleep and retaken after. VCL
//!   waits without hooks in a blocking connect, so VLS connects
//!   non-blocking and waits itself, taking the locks only to check. Close
//!   flags the session first, so a reader blocked in VCL on it gives up at
//!   its next wake-up.
//! - **Epoll sets (mode 3).** VCL's epoll state is per worker, so a wait on
//!   one set can return events of another. VLS registers each session in
//!   VCL with its vlsh as event data, routes every event to the set the
//!   session is in (parking it there and waking that set's waiter through a
//!   per-set wake fd LDP sleeps on), drops events that are no longer true,
//!   and hands the application its own event data (`engine::demux`). A
//!   set's membership changes under the same locks as VCL's, so a waiter
//!   never sees a session in VCL's set but not in VLS's. A thread waiting
//!   inside VCL (a blocking accept, read or write) consumes the worker's
//!   message-queue notifications; VCL keeps the events it read for the next
//!   epoll wait, so VLS wakes every set before each such wait round when
//!   VCL holds some, and routes them to their sets when the call returns.
//!   An epoll wait with a timeout looks without waiting, then sleeps on the
//!   set's wake fd outside every lock (at most a second at a time), instead
//!   of inside VCL holding the worker's locks. LDP's `epoll_wait` makes a
//!   drain-only call (-2) and may follow it with a timeout-0 call in the
//!   same `epoll_wait`: the drain returns its events, marks the sessions it
//!   reported, and the timeout-0 call skips them, so no session is
//!   reported twice in one `epoll_wait`.
//! - **Per-thread workers (mode 2).** Each thread holds its worker's gate
//!   while inside VCL. A thread using a session of another worker moves it
//!   (`engine::migrate`): directly when it can take the owner's gate (the
//!   owner is outside VCL, e.g. in `pthread_join`), else by an RPC through
//!   VPP that the owner answers inside VCL, bounded by 3 s, while the
//!   mover answers requests made of it. The session stays locked
//!   throughout; the record moves (no clones, no cleanup RPCs); a request
//!   the mover gave up on is refused when it arrives late. A listener's
//!   new worker then tells VPP (a worker update, waited for) and takes the
//!   connections queued for the old one; an epoll set's members are
//!   unlinked and rejoin it on its worker, and each mode-2 epoll wait first
//!   brings the set's members to the waiting thread (waits inside VCL are
//!   sliced to 20 ms for that). Connections stay on their worker. When a
//!   thread ends, VCL frees its worker's sessions: their VLS handles fail
//!   with `EBADFD` and close frees them. A thread's own non-blocking reads
//!   and writes take no lock: they enter the gate's *fast lane* (two plain
//!   stores), and a mover, which marks the session in transit first, takes
//!   the gate with a `membarrier` that makes it see the owner in its lane.
//! - **Per-process workers (mode 1, fork).** `pthread_atfork` hooks,
//!   registered after LDP's socket wrapper's (whose child handler must run
//!   first; `libvls.so`'s constructor registers them again once the
//!   libraries' constructors have run): the parent enters its sessions in
//!   a table shared by all its descendants (owner, holders, listening
//!   workers; `engine::fork`); the child registers its own VCL worker,
//!   gets copies of the parent's VCL sessions (own heap blocks, epoll
//!   links re-based) and holds every session too.
//!   Using a shared listener (epoll add, select, accept) starts listening
//!   on the process's own worker. Closing a shared session drops this
//!   process's copy; the last holder closes it; an owner that leaves, or
//!   exits, hands it to another holder first. SIGCHLD is intercepted once
//!   (the application's handler still runs); the handler only queues the
//!   dead child's worker, which is cleaned up later from `epoll_wait`,
//!   `select`, `poll`, the next fork or exit, without messages to VPP on
//!   the dead worker's behalf (a process that exits or execs normally
//!   cleans up after itself; a worker's record is taken by one of them
//!   only, before its index can be reused). VCL's heap, and with it the
//!   FIFO records of every segment, is shared by the whole family:
//!   `libvls.so` takes the records VCL asks libsvm for from that heap and
//!   changes FIFO subscriber lists one process at a time
//!   (`vpp-sys/src/fifo_records.c`).
//! - **Errors.** Every failure is a `VPPCOM_E*` code in the C ABI
//!   ([`error::VppcomError`] maps them to `io::Error`); no panic crosses the
//!   C boundary.
//!
//! Building with the `vpp` feature needs an installed VPP and its source tree
//! (see the README: `VPP_PREFIX`, `VPP_SRC_DIR`); without it, the core and
//! its tests build and run anywhere.

#[cfg(feature = "vpp")]
pub mod app;
#[cfg(feature = "vpp")]
pub mod capi;
pub mod config;
// Without the `vpp` feature only the engine's own tests (over the VCL
// double) use it, so most of it looks unused there.
#[cfg_attr(not(feature = "vpp"), allow(dead_code))]
mod engine;
#[cfg(feature = "vpp")]
pub mod epoll;
#[cfg_attr(not(feature = "vpp"), allow(dead_code))]
mod errno;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod handle;
#[cfg(feature = "vpp")]
mod process;
pub mod raw;
#[cfg(feature = "vpp")]
mod real_vcl;
#[cfg_attr(not(feature = "vpp"), allow(dead_code))]
mod seam;
mod sockaddr;
#[cfg(feature = "vpp")]
pub mod socket;
#[cfg(feature = "vpp")]
pub mod tcp;
#[cfg(feature = "tokio")]
pub mod tokio;
#[cfg(feature = "vpp")]
pub mod udp;

#[cfg(feature = "vpp")]
pub use app::App;
pub use config::VclConfig;
pub use engine::Mode;
#[cfg(feature = "vpp")]
pub use epoll::{Epoll, Event, Events, Interest};
pub use error::{cvt, VppcomError};
#[cfg(feature = "vpp")]
pub use socket::{AsRawHandle, FromRawHandle, IntoRawHandle, RawHandle};
#[cfg(feature = "vpp")]
pub use tcp::{Incoming, TcpListener, TcpStream};
#[cfg(feature = "vpp")]
pub use udp::UdpSocket;

/// The raw libvppcom bindings (`vpp-sys`), for code that needs a type or
/// call this crate does not wrap.
#[cfg(feature = "vpp")]
pub use vpp_sys as ffi;
