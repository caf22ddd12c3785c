//! Raw bindings to VPP's `libvppcom`: the public API of `vcl/vppcom.h` and the
//! internal VCL API of `vcl/vcl_private.h` that a session-locking layer needs.
//!
//! Everything here is generated at build time from the VPP found on the build
//! machine (see the crate's build script for the search order), so the layout
//! always matches the library that is linked. Nothing of VPP is vendored.
//!
//! Besides the generated items this crate declares:
//! - two packed types bindgen lays out wrongly ([`ip6_address_t`],
//!   [`session_event_t`]);
//! - the functions of the small C shim (`vppsys_*`) for what bindgen cannot
//!   express: the thread-local worker index, vppinfra pool macros, and a few
//!   fields of the global `vcm`;
//! - nothing for `src/fifo_records.c`: replacements of libsvm's FIFO record
//!   and subscriber functions that forked processes share, which the `vls`
//!   crate's `libvls.so` exports under libsvm's names (only VCL calls them).
//!
//! `static inline` helpers of `vcl_private.h` (e.g. `vcl_session_get`) are
//! available through bindgen's generated C wrappers, under their own names.
#![allow(non_upper_case_globals, non_camel_case_types, non_snake_case)]
#![allow(clippy::all, rustdoc::all)]
#![allow(improper_ctypes)]

/// `ip6_address_t`: a 16-byte packed union in C.
#[repr(C, packed)]
#[derive(Copy, Clone, Default, Debug)]
pub struct ip6_address_t {
    pub as_u8: [u8; 16],
}

/// `session_event_t`: packed, 18 bytes in C.
#[repr(C, packed)]
#[derive(Copy, Clone, Default, Debug)]
pub struct session_event_t {
    pub event_type: u8,
    pub postponed: u8,
    pub data: [u8; 16],
}

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// The install prefix of the VPP this crate was built against and links:
/// the one its build script found (`VPP_PREFIX`, else pkg-config's
/// `vppcom`, else `/usr`), holding `include/`, `lib*/libvppcom.so` and,
/// for a full install, `bin/vpp` and `bin/vppctl`.
///
/// Programs that start a VPP of their own (tests, examples, benchmarks)
/// should start this one, so that the VPP they talk to is of the release
/// whose headers were compiled in, whatever `VPP_PREFIX` says at run time.
/// Build scripts of dependants get it as `DEP_VPPCOM_PREFIX`; the
/// release is `DEP_VPPCOM_RELEASE` (e.g. `26.06`) and, in this crate, the
/// cfg `vpp_release = "26.06"` (see [`VPP_RELEASE`]).
pub const VPP_PREFIX: &str = env!("VPPSYS_PREFIX");

/// The `src/` directory of the VPP source tree whose internal VCL headers
/// (`vcl/vcl_private.h`) were compiled in (`VPP_SRC_DIR` at build time).
/// Its `vcl/vcl_locked.h` is the C API `libvls.so` stands in for.
pub const VPP_SRC_DIR: &str = env!("VPPSYS_SRC");

/// The release of the VPP this crate was built against, `YY.MM` (e.g.
/// `26.06`). Code that differs between releases uses the cfgs
/// `vpp_release_at_least_26_02`, `vpp_release_at_least_26_06`, … (one per
/// known release, set when this one is that release or newer).
pub const VPP_RELEASE: &str = env!("VPPSYS_RELEASE");

extern "C" {
    /// The calling thread's VCL worker index (`~0` before registration).
    pub fn vppsys_worker_index() -> u32;
    /// VPP's index of the calling thread's app worker (`~0` if it has no
    /// VCL worker); differs from the VCL index now and then in a forked
    /// process.
    pub fn vppsys_vpp_worker_index() -> u32;
    /// Sets the calling thread's VCL worker index.
    pub fn vppsys_set_worker_index(wrk_index: u32);
    /// 1 when `wrk_index` names a live VCL worker, else 0. Never asserts.
    pub fn vppsys_worker_is_valid(wrk_index: u32) -> libc::c_int;
    /// Number of live VCL workers.
    pub fn vppsys_n_workers() -> u32;
    /// The mq epoll fd recorded in worker `wrk_index` (a descriptor number
    /// of the process that registered it), or -1 if there is no such worker.
    pub fn vppsys_worker_mqs_epfd(wrk_index: u32) -> libc::c_int;
    /// The calling thread's worker's message-queue eventfd, or -1 (no
    /// worker, or no `use-mq-eventfd`).
    pub fn vppsys_worker_mq_eventfd() -> libc::c_int;
    /// Points this process's VCL at an empty state of its own (a process
    /// without a worker, at exit: VCL's exit handler then has no worker to
    /// clean up; the shared state its relatives use is untouched). VCL must
    /// not be used afterwards.
    pub fn vppsys_forget_inherited_workers();
    /// Waits at most `max_s` seconds until VPP has read every message the
    /// calling thread's worker queued for it (before the worker goes away:
    /// VPP handles a detach before queued messages). 1: read; 0: time ran
    /// out; -1: no worker.
    pub fn vppsys_wait_vpp_read_queues(max_s: f64) -> libc::c_int;
    /// The kernel descriptors VCL holds in this process (its workers'
    /// sockets to VPP, queue eventfds, queue epoll fds and pipes, and the
    /// segments' memfds): writes at most `max` of them to `out` and returns
    /// how many there are (repeats possible).
    pub fn vppsys_internal_fds(out: *mut libc::c_int, max: libc::c_int) -> libc::c_int;
    /// [`vppsys_internal_fds`] without the segments' memfds: what this
    /// process's workers opened (the segment table is shared with forked
    /// relatives, whose later segments' numbers mean nothing here).
    pub fn vppsys_worker_fds(out: *mut libc::c_int, max: libc::c_int) -> libc::c_int;
    /// `vppcom_worker_unregister` for the calling thread's worker, but with
    /// the app socket API: nothing sent or closed when the program has
    /// closed the worker's socket to VPP (VPP dropped the worker then, and
    /// VCL would print an error and close whatever has that number now);
    /// `quietly` (non-zero: a forked child ending or execing), the socket
    /// closed instead of a message (`sendmsg`, which a sandbox may forbid).
    /// 1: VPP was sent the removal; 0: it was not.
    pub fn vppsys_worker_leave(quietly: libc::c_int) -> libc::c_int;
    /// 1 if `sh` is a stream whose non-blocking connect is in progress.
    pub fn vppsys_sh_connecting(sh: u32) -> libc::c_int;
    /// After `vppcom_poll`: answers the requests to take a connection
    /// (REQ_WORKER_UPDATE) the poll read, which VCL's poll leaves
    /// unanswered. The caller holds the worker's locks.
    pub fn vppsys_answer_worker_updates();
    /// Room to write on `sh` (bytes for a stream, the longest datagram for
    /// a datagram session), 0 if none, a negative `VPPCOM_E*` if it is not
    /// open or not a session of the calling thread's worker.
    pub fn vppsys_sh_write_space(sh: u32) -> libc::c_int;
    /// Asks for a TX event on `sh` when its full TX FIFO gets room.
    pub fn vppsys_sh_want_tx_space_notice(sh: u32);
    /// Clears the RX event flag of `sh`'s FIFO if it is empty, so that the
    /// next enqueue sends an event; 1 if data is in the FIFO afterwards, 0
    /// if not (or no FIFO), -1 for no session of the calling thread's
    /// worker.
    pub fn vppsys_sh_rearm_rx_event(sh: u32) -> libc::c_int;
    /// The session, or null when the worker or the session does not exist.
    pub fn vppsys_session_get(wrk_index: u32, session_index: u32) -> *mut vcl_session_t;
    /// Installs the inter-worker RPC handler (`vcm->wrk_rpc_fn`).
    pub fn vppsys_set_wrk_rpc_fn(f: vcl_rpc_fn_t);
    /// Installs the libc epoll functions VCL uses for its mq eventfds.
    pub fn vppsys_set_epoll_fns(
        create1: Option<unsafe extern "C" fn(libc::c_int) -> libc::c_int>,
        ctl: Option<
            unsafe extern "C" fn(
                libc::c_int,
                libc::c_int,
                libc::c_int,
                *mut libc::epoll_event,
            ) -> libc::c_int,
        >,
        wait: Option<
            unsafe extern "C" fn(
                libc::c_int,
                *mut libc::epoll_event,
                libc::c_int,
                libc::c_int,
            ) -> libc::c_int,
        >,
    );
    /// 1/0: session `sh` of the calling thread's worker is non-blocking;
    /// -1: no such session.
    pub fn vppsys_sh_is_nonblocking(sh: u32) -> libc::c_int;
    /// Bytes (or accepts) ready to read, a negative code for a closed or
    /// missing session (reading would not block either).
    pub fn vppsys_sh_read_ready(sh: u32) -> libc::c_int;
    /// 1 when a write would not block, 0 when it may, -1 no session.
    pub fn vppsys_sh_write_nonblk(sh: u32) -> libc::c_int;
    /// Marks the session so blocked VCL calls on it return.
    pub fn vppsys_sh_set_app_closing(sh: u32);
    /// Length of the calling thread's worker's unhandled-events vector (0
    /// without a worker).
    pub fn vppsys_worker_unhandled_events() -> u32;
    /// Sets or clears the session's non-blocking attribute (no message to VPP).
    pub fn vppsys_sh_set_nonblocking(sh: u32, on: u8);
    /// A datagram session: 0 not one (or no such session), 1 neither
    /// bound nor connected, 2 bound or connected.
    pub fn vppsys_sh_datagram_state(sh: u32) -> libc::c_int;
    /// 1 if the session has a peer address, 0 if not (a listener, a
    /// datagram session never connected), -1 no such session.
    pub fn vppsys_sh_has_peer(sh: u32) -> libc::c_int;
    /// A connect in progress: 1 connected, 0 still connecting, or the
    /// `VPPCOM_E*` code a blocking connect returns (refused, address in use,
    /// no such session).
    pub fn vppsys_sh_connect_state(sh: u32) -> libc::c_int;
    /// A datagram session's write did not fit: asks VPP for a TX event once
    /// a dequeue leaves room for any datagram (nothing for streams). 0, or
    /// -1 for no such session.
    pub fn vppsys_sh_want_tx_event(sh: u32) -> libc::c_int;
    /// `multi-thread-workers` from vcl.conf.
    pub fn vppsys_cfg_mt_wrk_supported() -> u8;
    /// `use-mq-eventfd` from vcl.conf.
    pub fn vppsys_cfg_use_mq_eventfd() -> u8;
    /// Moves session `session_index` out of worker `wrk_index` into `*out`
    /// (which then owns the session's heap blocks) and frees it there.
    /// 0, or [`VPPSYS_MOVE_NO_WORKER`], [`VPPSYS_MOVE_NO_SESSION`],
    /// [`VPPSYS_MOVE_NOT_MOVABLE`] (see the shim for what can move:
    /// epoll sessions, which leave their members unlinked, sessions never
    /// opened, stream listeners, which take the connections queued for
    /// them, marked as another worker's; a member leaves its set). Takes VCL's worker-registry lock; for a listener of
    /// another worker, first handles that worker's queue as that worker.
    pub fn vppsys_session_move_out(
        wrk_index: u32,
        session_index: u32,
        out: *mut vcl_session_t,
    ) -> libc::c_int;
    /// Puts a moved-out session on the calling thread's worker; its new
    /// session index, or [`VPPSYS_MOVE_NO_WORKER`].
    pub fn vppsys_session_move_in(moved: *const vcl_session_t) -> libc::c_int;
    /// Frees the heap blocks a moved-out copy owns (a copy never moved in).
    pub fn vppsys_session_discard(moved: *mut vcl_session_t);
    /// After the move in of a listener: makes the current worker its owner
    /// in VPP and waits at most `wait_s` seconds for VPP's answer (handling
    /// the worker's queue). 1 (a listener, whose stub on its old worker is
    /// to be taken: [`vppsys_listener_stub_take`]), 0 (nothing to do: VPP
    /// does not know the session, or an epoll set),
    /// [`VPPSYS_MOVE_NO_SESSION`], [`VPPSYS_MOVE_NOT_MOVABLE`] (a
    /// connection) or [`VPPSYS_MOVE_VPP_TIMEOUT`].
    pub fn vppsys_session_take_over(sh: u32, wait_s: f64) -> libc::c_int;
    /// Takes the stub a moved listener left at `session_index` of worker
    /// `wrk_index` (it holds the connections VPP announced there until it
    /// handled the listener's take-over) into `*out` and frees it. The
    /// caller is that worker's thread (inside VCL's handling of its queue)
    /// or holds its gate (then the worker's queue is handled first, as that
    /// worker). 0, [`VPPSYS_MOVE_NO_WORKER`] or [`VPPSYS_MOVE_NO_SESSION`]
    /// (no stub there). Takes VCL's worker-registry lock.
    pub fn vppsys_listener_stub_take(
        wrk_index: u32,
        session_index: u32,
        out: *mut vcl_session_t,
    ) -> libc::c_int;
    /// Adds the connections of a stub taken by [`vppsys_listener_stub_take`]
    /// to listener `sh`'s accept queue (current worker), as another
    /// worker's, and frees what the copy owns (also on failure). How many,
    /// or [`VPPSYS_MOVE_NO_SESSION`].
    pub fn vppsys_listener_merge(sh: u32, stub: *mut vcl_session_t) -> libc::c_int;
    /// After accepting a connection VPP gave another worker (see
    /// [`vppsys_listener_next_accept_foreign`]): hands it to the current
    /// worker if its FIFOs are still fresh enough for VPP to copy safely,
    /// waiting at most `wait_s` seconds. 0, [`VPPSYS_MOVE_NOT_MOVABLE`] (not
    /// safe: abort it), [`VPPSYS_MOVE_NO_SESSION`] or
    /// [`VPPSYS_MOVE_VPP_TIMEOUT`].
    pub fn vppsys_session_take_over_accepted(sh: u32, wait_s: f64) -> libc::c_int;
    /// 1 if the next accept on listener `sh` takes a connection VPP gave
    /// another worker, else 0.
    pub fn vppsys_listener_next_accept_foreign(sh: u32) -> libc::c_int;
    /// 1 if `sh` is linked into an epoll set, 0 if not, -1 no session.
    pub fn vppsys_session_in_epoll(sh: u32) -> libc::c_int;
    /// Links `sh` back into epoll set `ep_sh` with the events it had when
    /// it moved (both on the current worker): 0 or a `VPPCOM_E*` code.
    pub fn vppsys_session_rejoin(ep_sh: u32, sh: u32) -> libc::c_int;
    /// `vppcom_session_close`, first accepting and closing the connections
    /// waiting in a listener's accept queue (VCL 25.10 to 26.10 crash closing a
    /// listener that has some), and dropping the events VCL postponed for
    /// the session (VCL frees it while they wait, then dereferences it).
    pub fn vppsys_session_close(sh: u32) -> libc::c_int;
    /// What `getsockopt(SO_ERROR)` gives for session `sh` of the current
    /// worker (a positive errno: a failed connect, a reset), or 0.
    pub fn vppsys_session_socket_error(sh: u32) -> libc::c_int;
    /// `vppcom_session_listen`, refused (`EINVAL`, or the earlier
    /// request's error) without a request to VPP for a session that has
    /// connected or is connecting, or whose earlier listen failed: VCL
    /// sends those and gets replies for sessions in the wrong state or
    /// already freed.
    pub fn vppsys_session_listen(sh: u32, q_len: u32) -> libc::c_int;
    /// `vppcom_session_connect`, answered without a request to VPP for a
    /// stream session that connected before: `EINPROGRESS` while the first
    /// connect is in progress, its error if it failed (VCL would send a
    /// second connect for the same session).
    pub fn vppsys_session_connect(sh: u32, server_ep: *mut vppcom_endpt_t) -> libc::c_int;
    /// In a forked child whose thread has just registered its own worker:
    /// copies the parent worker's sessions to it (same indices), re-bases
    /// epoll links, subscribes to the FIFOs, and marks listeners as
    /// listening elsewhere. 0, or -1 if either worker is missing.
    pub fn vppsys_fork_copy_sessions(parent_wrk_index: u32) -> libc::c_int;
    /// [`VPPSYS_NOT_LISTENER`], [`VPPSYS_LISTENING_HERE`] or
    /// [`VPPSYS_LISTENING_ELSEWHERE`] for a session of the current worker.
    pub fn vppsys_listener_state(sh: u32) -> libc::c_int;
    /// The current worker starts listening on a listener copied at fork:
    /// 1 if a listen request was sent, 0 if not needed, -1 if not a listener.
    pub fn vppsys_listener_start(sh: u32) -> libc::c_int;
    /// Worker `wrk_index` stops listening on its copy of a listener (sent on
    /// that worker's queue): 1 if it was listening, else 0.
    pub fn vppsys_listener_stop_on(wrk_index: u32, session_index: u32) -> libc::c_int;
    /// The current worker drops its copy of a session others still use,
    /// handing VPP's events to worker `new_owner_wrk` (or `~0`: keep);
    /// with `notify_vpp` 0, sends VPP nothing (a dead process's copy).
    pub fn vppsys_session_unshare(sh: u32, new_owner_wrk: u32, notify_vpp: libc::c_int) -> libc::c_int;
    /// The current worker's copy `sh` of a connection others keep stays
    /// VPP's owner, out of any epoll set: `VPPSYS_UNSHARE_KEPT` (1), or
    /// `VPPCOM_EBADFD`.
    pub fn vppsys_session_keep_owner(sh: u32) -> libc::c_int;
    /// The rx FIFO of a session as worker `wrk_index` sees it (it changes
    /// when VPP hands the session over to that worker), or 0.
    pub fn vppsys_session_rx_fifo(wrk_index: u32, session_index: u32) -> usize;
    /// After a session was handed over to the current worker: tells VPP
    /// the session's index here (VPP keeps the old owner's otherwise and
    /// its events go astray). 0, or -1 if not applicable.
    pub fn vppsys_session_claim_events(sh: u32) -> libc::c_int;
    /// Frees worker `wrk_index` of process `pid`, which has exited, unless
    /// the worker is gone or registered by another process since.
    pub fn vppsys_worker_cleanup_dead(wrk_index: u32, pid: libc::pid_t);
    /// A copy `vppsys_session_unshare` kept as VPP's owner: 0 open, 1 peer
    /// closed, 2 reset, 3 gone; its VPP handle into `vpp_handle`.
    pub fn vppsys_kept_state(sh: u32, vpp_handle: *mut u64) -> libc::c_int;
    /// Ends a kept copy (`close_vpp` 1: closes the connection in VPP too).
    pub fn vppsys_kept_end(sh: u32, how: libc::c_int) -> libc::c_int;
}

/// [`vppsys_listener_state`]: not a listener.
pub const VPPSYS_NOT_LISTENER: libc::c_int = 0;
/// [`vppsys_listener_state`]: VPP sends this worker new connections.
pub const VPPSYS_LISTENING_HERE: libc::c_int = 1;
/// [`vppsys_listener_state`]: a copy made at fork, not listening here yet.
pub const VPPSYS_LISTENING_ELSEWHERE: libc::c_int = 2;

/// [`vppsys_session_move_out`]: the worker does not exist.
pub const VPPSYS_MOVE_NO_WORKER: libc::c_int = -1;
/// [`vppsys_session_move_out`]: the session does not exist.
pub const VPPSYS_MOVE_NO_SESSION: libc::c_int = -2;
/// [`vppsys_session_move_out`]: the session cannot move in its state.
pub const VPPSYS_MOVE_NOT_MOVABLE: libc::c_int = -3;
/// [`vppsys_session_take_over`]: VPP did not answer in time.
pub const VPPSYS_MOVE_VPP_TIMEOUT: libc::c_int = -4;
