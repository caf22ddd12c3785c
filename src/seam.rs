//! The VCL seam: everything the VLS core needs from VCL, as one trait.
//!
//! The core ([`crate::engine`]) is written against [`Vcl`] only. With the `vpp`
//! feature, `vcl::RealVcl` implements it over `libvppcom`; the core's
//! own tests implement it with a small in-memory double. Return values follow
//! VCL's convention: non-negative on success, a negated errno (`VPPCOM_E*`)
//! on failure, so the C ABI can pass them through unchanged.
//!
//! Pointer arguments are passed through to VCL untouched; the `unsafe`
//! methods have exactly the contracts of the `vppcom_*` function they name.

use std::ffi::{c_char, c_ulong, c_void};

use crate::handle::Sh;

/// Callbacks VCL makes around a blocking wait on its message queue, so the
/// locking layer can drop its locks while the thread sleeps.
pub trait WaitHooks: Send + Sync {
    /// Called before VCL sleeps waiting for `sh` (or `INVALID`).
    fn pre_wait(&'static self, sh: Sh);
    /// Called after VCL wakes up.
    fn post_wait(&'static self, sh: Sh);
}

/// Receives the inter-worker RPCs VCL delivers to a worker (per-thread
/// workers). VCL calls it on the destination worker's own thread, while
/// that thread handles its message queue.
pub trait RpcHandler: Send + Sync {
    /// `msg` is the payload given to [`Vcl::send_rpc`] (VCL may pad it).
    fn handle_rpc(&'static self, msg: &[u8]);
}

/// Why a session could not be moved out of its worker.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum MoveError {
    /// The worker does not exist (any more).
    NoWorker,
    /// The session does not exist (any more).
    NoSession,
    /// The session cannot move: a connection, a datagram listener, or a
    /// session connecting or closing (see `migrate`).
    NotMovable,
    /// VPP did not confirm the new owner in time: the session is lost.
    NoAnswer,
}

/// The libc epoll functions LDP hands to VLS (`vls_epoll_fns_t`).
#[repr(C)]
#[derive(Copy, Clone, Debug)]
pub struct EpollFns {
    /// `epoll_create1`.
    pub create1: Option<unsafe extern "C" fn(i32) -> i32>,
    /// `epoll_ctl`.
    pub ctl: Option<unsafe extern "C" fn(i32, i32, i32, *mut libc::epoll_event) -> i32>,
    /// `epoll_wait`.
    pub wait: Option<unsafe extern "C" fn(i32, *mut libc::epoll_event, i32, i32) -> i32>,
}

/// What VLS needs from VCL. See the module docs for conventions.
#[allow(clippy::missing_safety_doc)] // each method's contract is its vppcom_* namesake's
pub trait Vcl: Send + Sync + 'static {
    /// A session moved out of its worker (see [`Vcl::move_out`]); owns what
    /// the session owned until [`Vcl::move_in`] takes it, frees it when
    /// dropped.
    type Moved: Send + 'static;

    // ---- application and workers ----
    /// `vppcom_app_create`.
    unsafe fn app_create(&self, name: *const c_char) -> i32;
    /// The calling thread's VCL worker index, [`crate::handle::INVALID`] if none.
    fn worker_index(&self) -> u32;
    /// VPP's index of the calling thread's app worker, for diagnostics
    /// (the same as [`Vcl::worker_index`] but now and then in a forked
    /// process); [`crate::handle::INVALID`] if unknown.
    fn vpp_worker_index(&self) -> u32 {
        crate::handle::INVALID
    }
    /// Makes the calling thread use VCL worker `wrk`.
    fn set_worker_index(&self, wrk: u32);
    /// `vppcom_worker_register`: a new VCL worker for the calling thread.
    fn worker_register(&self) -> i32;
    /// `vppcom_worker_unregister` for the calling thread's worker.
    fn worker_unregister(&self);
    /// A forked child's worker leaves VPP as the process ends or execs:
    /// as [`Vcl::worker_unregister`], but with VCL's app socket API the
    /// worker's removal is not sent; its socket to VPP is closed instead,
    /// and VPP removes a worker whose socket closes (as for a crashed
    /// process). Sending takes `sendmsg`, which a sandboxed process may be
    /// killed for (OpenSSH's pre-auth child, seccomp); the close takes
    /// only `close`.
    fn worker_leave_quietly(&self);
    /// The process has no worker of its own (a forked child whose
    /// registration failed) and is exiting: VCL forgets the workers it
    /// copied from the parent, so that its exit handler, which cleans up
    /// the calling thread's worker, finds none instead of worker `~0`.
    fn forget_inherited_workers(&self);
    /// Before the calling thread's worker goes away (exit, unregistering):
    /// waits at most `max` until VPP has read every message the worker
    /// queued for it. VPP handles the app's detach (or the worker's
    /// removal), which comes over another channel, first, and crashes on
    /// an accepted reply it then reads for a session the detach already
    /// took. False if the time ran out or there is no worker.
    fn let_vpp_read_queues(&self, max: std::time::Duration) -> bool;
    /// `multi-thread-workers` is configured.
    fn mt_workers(&self) -> bool;
    /// `use-mq-eventfd` is configured.
    fn use_eventfd(&self) -> bool;
    /// Installs `hooks` as the calling thread's worker wait-mq callbacks.
    fn install_wait_hooks(&self, hooks: &'static dyn WaitHooks);
    /// `vppcom_mq_epoll_fd`: the epoll fd over the calling thread's worker's
    /// message-queue eventfds (-1 without eventfds).
    fn mq_epoll_fd(&self) -> i32;
    /// Hands LDP's libc epoll functions to VCL.
    fn set_epoll_fns(&self, fns: EpollFns);

    // ---- sessions (on the calling thread's worker) ----
    /// `vppcom_session_create`.
    fn create(&self, proto: u8, nonblocking: bool) -> i32;
    /// `vppcom_session_close`.
    fn close(&self, sh: Sh) -> i32;
    /// `vppcom_session_shutdown`.
    fn shutdown(&self, sh: Sh, how: i32) -> i32;
    /// `vppcom_session_bind`.
    unsafe fn bind(&self, sh: Sh, ep: *mut c_void) -> i32;
    /// `vppcom_session_listen`.
    fn listen(&self, sh: Sh, q_len: u32) -> i32;
    /// `vppcom_session_accept`.
    unsafe fn accept(&self, sh: Sh, ep: *mut c_void, flags: i32) -> i32;
    /// `vppcom_session_connect`.
    unsafe fn connect(&self, sh: Sh, ep: *mut c_void) -> i32;
    /// `vppcom_session_read`.
    unsafe fn read(&self, sh: Sh, buf: *mut c_void, n: usize) -> i32;
    /// `vppcom_session_recvfrom`.
    unsafe fn recvfrom(&self, sh: Sh, buf: *mut c_void, n: u32, flags: i32, ep: *mut c_void) -> i32;
    /// `vppcom_session_write`.
    unsafe fn write(&self, sh: Sh, buf: *mut c_void, n: usize) -> i32;
    /// `vppcom_session_write_msg`.
    unsafe fn write_msg(&self, sh: Sh, buf: *mut c_void, n: usize) -> i32;
    /// `vppcom_session_sendto`.
    unsafe fn sendto(&self, sh: Sh, buf: *mut c_void, n: i32, flags: i32, ep: *mut c_void) -> i32;
    /// `vppcom_session_attr`.
    unsafe fn attr(&self, sh: Sh, op: u32, buf: *mut c_void, len: *mut u32) -> i32;
    /// `vppcom_epoll_create`.
    fn epoll_create(&self) -> i32;
    /// `vppcom_epoll_ctl`.
    unsafe fn epoll_ctl(&self, ep_sh: Sh, op: i32, sh: Sh, ev: *mut libc::epoll_event) -> i32;
    /// `vppcom_epoll_wait`.
    unsafe fn epoll_wait(&self, ep_sh: Sh, evs: *mut libc::epoll_event, max: i32, wait: f64) -> i32;
    /// `vppcom_select`.
    unsafe fn select(&self, n_bits: i32, r: *mut c_ulong, w: *mut c_ulong, e: *mut c_ulong, wait: f64)
        -> i32;
    /// `vppcom_poll`.
    unsafe fn poll(&self, vp: *mut c_void, n: u32, wait: f64) -> i32;

    // ---- session state, read without side effects ----
    /// The session is non-blocking (`O_NONBLOCK`). False if it does not exist.
    fn is_nonblocking(&self, sh: Sh) -> bool;
    /// `vcl_session_read_ready`: bytes (or pending accepts) ready, 0 if
    /// none, a negative `VPPCOM_E*` if the session is not open (closed,
    /// reset, or still connecting: `ENOTCONN`).
    fn read_ready(&self, sh: Sh) -> i32;
    /// Writing would not block.
    fn write_ready(&self, sh: Sh) -> bool;
    /// Room to write: bytes free for a stream, the longest datagram that
    /// fits for a datagram session; 0 if none; a negative `VPPCOM_E*` if
    /// the session is not open (a send then fails at once).
    fn write_space(&self, sh: Sh) -> i32 {
        if self.write_ready(sh) {
            i32::MAX
        } else {
            0
        }
    }
    /// Makes blocked VCL calls on `sh` return: the app closed the session.
    fn set_app_closing(&self, sh: Sh);
    /// Events the calling thread's worker read from its message queue and
    /// keeps for the next epoll wait (VCL's unhandled-events vector).
    fn unhandled_events(&self) -> u32;
    /// The calling thread's worker's message-queue eventfd: VPP writes it
    /// when the queue goes from empty to not empty (`use-mq-eventfd`);
    /// `None` without one.
    fn mq_eventfd(&self) -> Option<i32> {
        None
    }
    /// Asks VPP for a TX event on `sh` (a message on the calling thread's
    /// queue) when its TX FIFO, if full, gets room.
    fn want_tx_space_notice(&self, _sh: Sh) {}
    /// Before sleeping for data on `sh` (found unreadable): clears its RX
    /// FIFO's event flag if the FIFO is empty, so that VPP's next enqueue
    /// sends an event (VCL's `poll` can leave the flag set on an empty
    /// FIFO; its `select` and `epoll` clear it). True if data is in the
    /// FIFO afterwards: it arrived meanwhile, perhaps without an event.
    fn rearm_rx_event(&self, _sh: Sh) -> bool {
        false
    }
    /// The calling thread's worker lost VPP (its API socket closed: VPP
    /// died or dropped the app) and is detached, or detaching: VCL is about
    /// to drop, or has dropped, the worker's message queue, which its own
    /// blocking loops keep using. Only with `use-mq-eventfd` (VCL notices a
    /// lost VPP only then); false otherwise.
    fn worker_detached(&self) -> bool {
        false
    }

    // ---- connect without blocking the worker ----
    /// Sets or clears `O_NONBLOCK` on the session (local, no message to VPP).
    fn set_nonblocking(&self, sh: Sh, on: bool);
    /// A connect in progress: 1 connected, 0 still connecting, or the
    /// `VPPCOM_E*` code a blocking connect would return.
    fn connect_state(&self, sh: Sh) -> i32;
    /// A datagram session: `Stream` for streams (and unknown
    /// handles), `Unbound` if it is neither bound nor connected, else
    /// `Placed`.
    fn datagram_state(&self, _sh: Sh) -> Datagram {
        Datagram::Stream
    }
    /// Binds `sh` to the any-address of the family of the endpoint `like`
    /// (a `vppcom_endpt_t`), port 0: what the kernel does for a datagram
    /// socket's first `sendto` or `connect`.
    ///
    /// # Safety
    /// `like` points to a valid `vppcom_endpt_t`.
    unsafe fn bind_to_any(&self, _sh: Sh, _like: *mut c_void) -> i32 {
        -libc::EOPNOTSUPP
    }
    /// A datagram write did not fit though the TX FIFO is not full (no
    /// event would follow): asks VPP for a TX event once there is room for
    /// any datagram. Nothing for streams. 0 or a negative code.
    fn want_tx_event(&self, _sh: Sh) -> i32 {
        0
    }

    // ---- per-thread workers: moving sessions, inter-worker RPC ----
    /// Moves session `session_index` out of worker `wrk` (which need not be
    /// the caller's; the caller makes sure that worker's thread is not
    /// inside VCL, or is that thread). An epoll set leaves its members
    /// behind, unlinked; a member leaves its set (see [`Vcl::rejoin`]).
    fn move_out(&self, wrk: u32, session_index: u32) -> Result<Self::Moved, MoveError>;
    /// Puts a moved session on the calling thread's worker; its new handle.
    fn move_in(&self, moved: Self::Moved) -> Result<Sh, MoveError>;
    /// After [`Vcl::move_in`] of a listener: makes the calling worker the
    /// listener's owner in VPP (new connections come here), waiting at most
    /// `wait` for VPP's answer. Nothing to do for sessions VPP does not know
    /// (`Ok(false)`). `Ok(true)`: a listener, which left a stub on its old
    /// worker for the connections VPP announced there until it answered
    /// (see [`Vcl::stub_take`]).
    fn take_over(&self, sh: Sh, wait: std::time::Duration) -> Result<bool, MoveError> {
        let _ = (sh, wait);
        Ok(false)
    }
    /// Takes the stub a listener that moved out of worker `wrk` left at
    /// `session_index`, with the connections VCL queued on it, and frees it
    /// there. The caller is that worker's thread (handling its queue) or
    /// makes sure it is not inside VCL, as for [`Vcl::move_out`]; then the
    /// worker's queue is handled first, as that worker.
    fn stub_take(&self, wrk: u32, session_index: u32) -> Result<Self::Moved, MoveError> {
        let _ = (wrk, session_index);
        Err(MoveError::NoSession)
    }
    /// Adds the connections of `stub` (from [`Vcl::stub_take`]) to the
    /// accept queue of listener `sh` of the calling worker, as connections
    /// VPP gave another worker ([`Vcl::next_accept_foreign`]); how many.
    fn merge_accepts(&self, sh: Sh, stub: Self::Moved) -> Result<u32, MoveError> {
        let _ = (sh, stub);
        Ok(0)
    }
    /// After accepting a connection VPP gave another worker (see
    /// [`Vcl::next_accept_foreign`]): hands it to the calling worker while
    /// its FIFOs still allow it (`NotMovable` otherwise: abort it).
    fn take_over_accepted(&self, sh: Sh, wait: std::time::Duration) -> Result<(), MoveError> {
        let _ = (sh, wait);
        Ok(())
    }
    /// The next accept on listener `sh` takes a connection VPP gave another
    /// worker (queued there before the listener moved), which stays that
    /// worker's in VPP.
    fn next_accept_foreign(&self, sh: Sh) -> bool {
        let _ = sh;
        false
    }
    /// `sh` is linked into an epoll set of its worker.
    fn in_epoll(&self, sh: Sh) -> bool {
        let _ = sh;
        true
    }
    /// Links `sh` back into set `ep_sh` (both on the calling thread's
    /// worker) with the events it had before it moved; 0 or a code.
    fn rejoin(&self, ep_sh: Sh, sh: Sh) -> i32 {
        let _ = (ep_sh, sh);
        0
    }
    /// Installs the handler of inter-worker RPCs (`vcm->wrk_rpc_fn`).
    fn install_rpc_handler(&self, handler: &'static dyn RpcHandler);
    /// Sends `msg` to worker `dst` through VPP (`vcl_send_worker_rpc`);
    /// 0 or a negative code.
    fn send_rpc(&self, dst: u32, msg: &[u8]) -> i32;
    /// Handles what the calling thread's worker has on its message queue,
    /// RPCs included (`vcl_flush_mq_events`).
    fn flush_mq(&self);

    // ---- per-process workers (fork) ----
    //
    // The defaults describe a VCL that cannot fork (the core's test
    // double): hooks are not installed and nothing can be shared.

    /// Makes `hooks` run around `fork` (`pthread_atfork`), once per process.
    fn install_fork_hooks(&self, hooks: &'static dyn ForkHooks) {
        let _ = hooks;
    }
    /// In a forked child, on the calling thread's new worker: copies the
    /// sessions of worker `parent_wrk` (same indices), re-bases epoll links,
    /// subscribes to FIFOs; listeners are copied as [`Listener::Elsewhere`].
    fn fork_copy_sessions(&self, parent_wrk: u32) -> i32 {
        let _ = parent_wrk;
        -libc::ENOTSUP
    }
    /// Listener state of `sh` on the calling thread's worker.
    fn listener_state(&self, sh: Sh) -> Listener {
        let _ = sh;
        Listener::No
    }
    /// Starts listening on a listener copied at fork; true if a listen
    /// request was sent.
    fn listener_start(&self, sh: Sh) -> bool {
        let _ = sh;
        false
    }
    /// Worker `wrk` (another process's) stops listening on its copy of the
    /// listener at `session_index`; true if it was listening.
    fn listener_stop_on(&self, wrk: u32, session_index: u32) -> bool {
        let _ = (wrk, session_index);
        false
    }
    /// Drops the calling worker's copy of a shared session that others
    /// keep, handing VPP's events to worker `new_owner` (`INVALID`: keep).
    /// With `notify_vpp` false nothing is sent to VPP (the copy of a
    /// process that is gone: VPP cleans up after that worker itself).
    fn unshare(&self, sh: Sh, new_owner: u32, notify_vpp: bool) -> i32 {
        let _ = (sh, new_owner, notify_vpp);
        -libc::ENOTSUP
    }
    /// Leaves the calling worker's copy `sh` of a connection others keep
    /// as VPP's owner, as [`Vcl::unshare`] does when VPP cannot hand it
    /// over: [`UNSHARE_KEPT`] (out of any epoll set, nothing else changed).
    fn keep_as_owner(&self, sh: Sh) -> i32 {
        let _ = sh;
        -libc::ENOTSUP
    }
    /// A token that changes when VPP hands session `session_index` over to
    /// worker `wrk` (its rx FIFO as that worker sees it); 0 if none.
    fn handover_token(&self, wrk: u32, session_index: u32) -> usize {
        let _ = (wrk, session_index);
        0
    }
    /// After a session was handed over to the calling worker: makes VPP
    /// address its events to this worker's record of it.
    fn claim_events(&self, sh: Sh) {
        let _ = sh;
    }
    /// Frees worker `wrk` of exited process `pid`, unless the worker is
    /// gone (its process cleaned it up at exit) or now another process's
    /// (the index was given again to a newer child).
    fn worker_cleanup_dead(&self, wrk: u32, pid: i32) {
        let _ = (wrk, pid);
    }
    /// A copy [`Vcl::unshare`] kept as VPP's owner ([`UNSHARE_KEPT`]): what
    /// VPP told it.
    fn kept_state(&self, sh: Sh) -> KeptState {
        let _ = sh;
        KeptState::Gone
    }
    /// Ends a kept copy the way `how` says (see [`KeptEnd`]).
    fn kept_end(&self, sh: Sh, how: KeptEnd) -> i32 {
        let _ = (sh, how);
        0
    }
}

/// [`Vcl::unshare`] kept the copy as VPP's owner: VPP cannot hand the
/// connection over without corrupting its FIFOs (they grew past their first
/// chunk), so it stays this worker's in VPP while other processes use it.
pub const UNSHARE_KEPT: i32 = 1;

/// What VPP told a copy kept as its owner.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum KeptState {
    /// Connected.
    Open,
    /// The peer closed its side.
    PeerClosed,
    /// The peer reset it.
    Reset,
    /// VPP is done with it (or no such session).
    Gone,
}

/// How [`Vcl::kept_end`] ends a copy kept as VPP's owner (the numbers are
/// the shim's `how` argument of `vppsys_kept_end`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum KeptEnd {
    /// VPP is done with the connection: only the record goes (`EAGAIN`
    /// while VPP still has it).
    RecordOnly = 0,
    /// No process uses the connection any more: it is closed in VPP too,
    /// and VCL frees the record when VPP confirms.
    CloseInVpp = 1,
    /// A relative closed the connection in VPP: the record goes once VPP
    /// is done with it, and nothing is sent to VPP (a second close could
    /// reach another connection, as VPP gives a freed session's handle to
    /// the next).
    ClosedByRelative = 2,
}

/// A session's listener state on one worker (per-process workers).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Listener {
    /// Not a listener.
    No,
    /// Listening: VPP hands this worker new connections.
    Here,
    /// A listener copied at fork that this worker has not listened on.
    Elsewhere,
}

/// Where a datagram session is (see [`Vcl::datagram_state`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram {
    /// A stream session, or no such session.
    Stream,
    /// Neither bound nor connected.
    Unbound,
    /// Bound or connected.
    Placed,
}

/// Callbacks around `fork` (see `pthread_atfork`).
pub trait ForkHooks: Send + Sync {
    /// In the parent, before the fork.
    fn before_fork(&'static self);
    /// In the parent, after the fork.
    fn after_fork_in_parent(&'static self);
    /// In the child, after the fork (the only thread of the child).
    fn after_fork_in_child(&'static self);
}
