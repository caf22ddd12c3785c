//! [`RealVcl`]: the [`seam::Vcl`] the engine runs on in a real process,
//! over libvppcom and the project's C shim (`vpp-sys`).
//!
//! Each method is one VCL call (or one shim call where VCL's API is
//! internal), with VCL's return convention kept, plus the C callbacks VCL
//! makes into VLS (the wait hooks, the RPC handler, the fork hooks), which
//! catch any panic before it reaches VCL.

use std::ffi::{c_char, c_ulong, c_void};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use vpp_sys as sys;

use crate::handle::{sh_parts, Sh};
use crate::raw::vcl::{worker_index, worker_leave, worker_unregister};
use crate::seam::{self, EpollFns, ForkHooks, Listener, MoveError, RpcHandler, WaitHooks};

/// [`seam::Vcl`] over the real libvppcom. Zero-sized: VCL's state is global.
///
/// Its methods make VCL calls without any locking, so only this crate makes
/// one (the process-wide VLS owns it); outside code reaches VCL through VLS.
#[derive(Debug)]
pub struct RealVcl(());

impl RealVcl {
    /// The one VCL of the process, for the process-wide VLS.
    pub(crate) const fn new() -> Self {
        RealVcl(())
    }
}

/// Calls the hooks installed in `cell` (if any) from a C callback; a panic
/// must not unwind into VCL or libc, so it is caught and dropped.
fn call_hook<H: ?Sized>(cell: &OnceLock<&'static H>, f: impl FnOnce(&'static H)) {
    if let Some(&h) = cell.get() {
        call_hook_on(h, f);
    }
}

/// Calls `f(h)`, dropping a panic (hooks run inside C callers).
fn call_hook_on<H: ?Sized>(h: &'static H, f: impl FnOnce(&'static H)) {
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(h)));
}

/// The hooks VCL calls around blocking waits (one set per process).
static WAIT_HOOKS: OnceLock<&'static dyn WaitHooks> = OnceLock::new();

extern "C" fn pre_wait_trampoline(sh: u32) {
    call_hook(&WAIT_HOOKS, |h| h.pre_wait(sh));
}

extern "C" fn post_wait_trampoline(sh: u32) {
    call_hook(&WAIT_HOOKS, |h| h.post_wait(sh));
}

/// The handler of inter-worker RPCs (one per process).
static RPC_HANDLER: OnceLock<&'static dyn RpcHandler> = OnceLock::new();

/// Size of the payload of VCL's worker RPC message (`data[64]`).
const RPC_PAYLOAD: usize = 64;

/// `VPPCOM_ATTR_GET_ERROR` of `sh`: the socket's pending error (see
/// `vppsys_session_socket_error`) as an `int` in `buf`.
///
/// # Safety
/// `len` null or valid; `buf` valid for `*len` bytes.
unsafe fn socket_error(sh: Sh, buf: *mut c_void, len: *mut u32) -> i32 {
    // SAFETY: checked for null; the caller's contract for the rest.
    if buf.is_null() || len.is_null() || unsafe { *len } < std::mem::size_of::<i32>() as u32 {
        return -libc::EINVAL;
    }
    // SAFETY: looks up `sh` on the calling thread's worker.
    let e = unsafe { sys::vppsys_session_socket_error(sh) };
    // SAFETY: `buf` holds at least an `int` (checked above).
    unsafe {
        std::ptr::write_unaligned(buf.cast::<i32>(), e);
        *len = std::mem::size_of::<i32>() as u32;
    }
    0
}

/// Binds the datagram session `sh` to `ep`'s address and a free port of
/// the kernel's ephemeral range, as the kernel does for port 0. VPP takes
/// port 0 as it is: a socket bound to it sent from port 0, and the next
/// one bound to it failed (`EADDRINUSE`) or took the first one's answers.
/// Tries random ports until one is free (32 at most).
///
/// # Safety
/// `ep.ip` points to an address of `ep`'s family.
unsafe fn bind_datagram_to_free_port(sh: Sh, ep: &sys::vppcom_endpt_t) -> i32 {
    const FIRST: u32 = 32768;
    const COUNT: u32 = 60999 - 32768 + 1;
    // A random start (per call: time and handle), then steps by a number
    // prime to the range's size.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut pick = nanos.wrapping_mul(2_654_435_761).wrapping_add(sh.wrapping_mul(40_503)) % COUNT;
    let mut rv = VPPCOM_EADDRINUSE;
    for _ in 0..32 {
        let mut tried = *ep;
        tried.port = ((FIRST + pick) as u16).to_be();
        // SAFETY: `tried` is a copy of a valid endpoint, alive for the call.
        rv = unsafe { sys::vppcom_session_bind(sh, &mut tried) };
        if rv != VPPCOM_EADDRINUSE {
            return rv;
        }
        pick = (pick + 7919) % COUNT;
    }
    rv
}

/// `VPPCOM_EADDRINUSE`.
const VPPCOM_EADDRINUSE: i32 = -libc::EADDRINUSE;

unsafe extern "C" fn rpc_trampoline(args: *mut c_void) {
    if args.is_null() {
        return;
    }
    // SAFETY: VCL passes the 64-byte payload of the RPC message.
    let msg = unsafe { std::slice::from_raw_parts(args as *const u8, RPC_PAYLOAD) };
    call_hook(&RPC_HANDLER, |h| h.handle_rpc(msg));
}

/// A VCL session moved out of its worker: a heap copy of VCL's session
/// record, owning its heap blocks until moved in.
pub struct MovedSession(Option<Box<std::mem::MaybeUninit<sys::vcl_session_t>>>);

// SAFETY: the copy is plain data plus heap blocks of VCL's (thread-safe)
// heap; nothing in it is tied to a thread.
unsafe impl Send for MovedSession {}

impl Drop for MovedSession {
    fn drop(&mut self) {
        if let Some(mut b) = self.0.take() {
            // SAFETY: initialised by `vppsys_session_move_out`; frees only
            // what the copy owns.
            unsafe { sys::vppsys_session_discard(b.as_mut_ptr()) };
        }
    }
}

/// The hooks run around `fork` (one set per process).
static FORK_HOOKS: OnceLock<&'static dyn ForkHooks> = OnceLock::new();

/// Which registration of the fork handlers acts: `NONE` (no app yet),
/// `AT_APP_CREATE` or `AFTER_CONSTRUCTORS`.
///
/// glibc runs child handlers in registration order and prepare handlers in
/// the reverse order. LDP's socket wrapper locks its symbol mutex in its
/// prepare handler and unlocks it in its child handler, so the layer's
/// handlers must be registered after the wrapper's: the layer's child
/// handler registers a VCL worker, which calls the wrapper. LDP's
/// constructor registers the wrapper's and then creates the app, which
/// registers the layer's at app creation: the right order. But when a
/// library constructor used a socket function before LDP's constructor
/// ran, LDP created the app first and the order was wrong. So
/// [`reregister_fork_handlers_after_constructors`], run once the
/// constructors have, registers a second set whenever the app exists, and
/// the first one stands aside (handlers cannot be unregistered).
static ACTIVE_FORK_HANDLERS: AtomicU8 = AtomicU8::new(NONE);
const NONE: u8 = 0;
const AT_APP_CREATE: u8 = 1;
const AFTER_CONSTRUCTORS: u8 = 2;

fn fork_handlers_act(set: u8) -> Option<&'static dyn ForkHooks> {
    if ACTIVE_FORK_HANDLERS.load(Ordering::Acquire) == set {
        FORK_HOOKS.get().copied()
    } else {
        None
    }
}

extern "C" fn before_fork_trampoline<const SET: u8>() {
    if let Some(h) = fork_handlers_act(SET) {
        call_hook_on(h, |h| h.before_fork());
    }
}

extern "C" fn after_fork_parent_trampoline<const SET: u8>() {
    if let Some(h) = fork_handlers_act(SET) {
        call_hook_on(h, |h| h.after_fork_in_parent());
    }
}

extern "C" fn after_fork_child_trampoline<const SET: u8>() {
    if let Some(h) = fork_handlers_act(SET) {
        call_hook_on(h, |h| h.after_fork_in_child());
    }
}

/// Registers the fork handlers set `SET`; false if `pthread_atfork` failed.
fn register_fork_handlers<const SET: u8>() -> bool {
    // SAFETY: the handlers are `extern "C"`, never unwind (`call_hook_on`
    // catches panics), and stay valid for the life of the process.
    let rv = unsafe {
        libc::pthread_atfork(
            Some(before_fork_trampoline::<SET>),
            Some(after_fork_parent_trampoline::<SET>),
            Some(after_fork_child_trampoline::<SET>),
        )
    };
    if rv != 0 {
        tracing::error!(rv, "pthread_atfork failed: forked children will not get a VCL worker");
    }
    rv == 0
}

/// Run by `libvls.so`'s constructor, after LDP's (it is preloaded first,
/// so it initialises after `libvcl_ldpreload.so`): if the app exists (LDP's
/// constructor created it, or a socket call from an earlier constructor
/// did), registers the fork handlers again, now surely after LDP's socket
/// wrapper's, and makes that set the one that acts. Nothing happens when
/// there is no app yet (its creation registers the handlers later).
pub fn reregister_fork_handlers_after_constructors() {
    if FORK_HOOKS.get().is_some()
        && ACTIVE_FORK_HANDLERS.load(Ordering::Acquire) == AT_APP_CREATE
        && register_fork_handlers::<AFTER_CONSTRUCTORS>()
    {
        ACTIVE_FORK_HANDLERS.store(AFTER_CONSTRUCTORS, Ordering::Release);
        tracing::debug!("fork handlers registered again, after the libraries' constructors");
    }
}

fn move_error(rv: i32) -> MoveError {
    match rv {
        sys::VPPSYS_MOVE_NO_SESSION => MoveError::NoSession,
        sys::VPPSYS_MOVE_NOT_MOVABLE => MoveError::NotMovable,
        sys::VPPSYS_MOVE_VPP_TIMEOUT => MoveError::NoAnswer,
        _ => MoveError::NoWorker,
    }
}

impl seam::Vcl for RealVcl {
    type Moved = MovedSession;

    unsafe fn app_create(&self, name: *const c_char) -> i32 {
        // SAFETY: caller guarantees a valid C string.
        unsafe { sys::vppcom_app_create(name) }
    }
    fn worker_index(&self) -> u32 {
        worker_index()
    }
    fn vpp_worker_index(&self) -> u32 {
        // SAFETY: reads the calling thread's worker through the shim, which
        // checks it exists.
        unsafe { sys::vppsys_vpp_worker_index() }
    }
    fn set_worker_index(&self, wrk: u32) {
        // SAFETY: writes the calling thread's thread-local through the shim.
        unsafe { sys::vppsys_set_worker_index(wrk) }
    }
    fn worker_register(&self) -> i32 {
        // SAFETY: registers the calling thread.
        unsafe { sys::vppcom_worker_register() }
    }
    fn forget_inherited_workers(&self) {
        // SAFETY: plain write of VCL's pool pointer in this process's heap;
        // called only at exit, by a process that has no worker.
        unsafe { sys::vppsys_forget_inherited_workers() }
    }
    fn let_vpp_read_queues(&self, max: std::time::Duration) -> bool {
        // SAFETY: reads the calling thread's worker's queues and sessions
        // (as VCL's own exit handler, which follows, walks them).
        unsafe { sys::vppsys_wait_vpp_read_queues(max.as_secs_f64()) == 1 }
    }
    fn worker_unregister(&self) {
        // SAFETY: the core unregisters only the calling thread's own worker,
        // as that thread ends.
        unsafe { worker_unregister() }
    }
    fn worker_leave_quietly(&self) {
        // SAFETY: as `worker_unregister`: the calling thread's own worker,
        // as the process ends or execs.
        unsafe { worker_leave(true) }
    }
    fn mt_workers(&self) -> bool {
        // SAFETY: reads a configuration byte of `vcm` (null-checked in C).
        unsafe { sys::vppsys_cfg_mt_wrk_supported() != 0 }
    }
    fn use_eventfd(&self) -> bool {
        // SAFETY: as above.
        unsafe { sys::vppsys_cfg_use_mq_eventfd() != 0 }
    }
    fn install_wait_hooks(&self, hooks: &'static dyn WaitHooks) {
        let _ = WAIT_HOOKS.set(hooks);
        // SAFETY: the calling thread has a VCL worker (app created or
        // worker registered); the trampolines are `extern "C"` and never
        // unwind.
        unsafe { sys::vcl_worker_set_wait_mq_fns(Some(pre_wait_trampoline), Some(post_wait_trampoline)) }
    }
    fn mq_epoll_fd(&self) -> i32 {
        if !self.use_eventfd() {
            return -1;
        }
        // SAFETY: reads the current worker's fd; the caller has a worker.
        unsafe { sys::vppcom_mq_epoll_fd() }
    }
    fn set_epoll_fns(&self, fns: EpollFns) {
        // SAFETY: stores function pointers in `vcm`; the pointer types match
        // the C declarations.
        unsafe { sys::vppsys_set_epoll_fns(fns.create1, fns.ctl, fns.wait) }
    }

    fn create(&self, proto: u8, nonblocking: bool) -> i32 {
        // SAFETY: plain values.
        unsafe { sys::vppcom_session_create(proto, nonblocking as u8) }
    }
    fn close(&self, sh: Sh) -> i32 {
        // SAFETY: VCL validates the handle (the shim looks it up null-safe
        // first).
        unsafe { sys::vppsys_session_close(sh) }
    }
    fn shutdown(&self, sh: Sh, how: i32) -> i32 {
        // SAFETY: VCL validates the handle.
        unsafe { sys::vppcom_session_shutdown(sh, how) }
    }
    unsafe fn bind(&self, sh: Sh, ep: *mut c_void) -> i32 {
        let ep = ep.cast::<sys::vppcom_endpt_t>();
        // SAFETY: caller's contract: `ep` is null (VCL's to refuse) or valid.
        let port_zero = !ep.is_null() && unsafe { (*ep).port } == 0;
        if port_zero && self.datagram_state(sh) != seam::Datagram::Stream {
            // SAFETY: as above, `ep` is valid.
            return unsafe { bind_datagram_to_free_port(sh, &*ep) };
        }
        // SAFETY: caller's contract.
        unsafe { sys::vppcom_session_bind(sh, ep) }
    }
    fn listen(&self, sh: Sh, q_len: u32) -> i32 {
        // SAFETY: plain values (the shim looks the session up null-safe).
        unsafe { sys::vppsys_session_listen(sh, q_len) }
    }
    unsafe fn accept(&self, sh: Sh, ep: *mut c_void, flags: i32) -> i32 {
        // SAFETY: caller's contract.
        unsafe { sys::vppcom_session_accept(sh, ep.cast(), flags as u32) }
    }
    unsafe fn connect(&self, sh: Sh, ep: *mut c_void) -> i32 {
        // SAFETY: caller's contract (the shim looks the session up
        // null-safe).
        unsafe { sys::vppsys_session_connect(sh, ep.cast()) }
    }
    unsafe fn read(&self, sh: Sh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: caller's contract.
        unsafe { sys::vppcom_session_read(sh, buf, n) }
    }
    unsafe fn recvfrom(&self, sh: Sh, buf: *mut c_void, n: u32, flags: i32, ep: *mut c_void) -> i32 {
        // SAFETY: caller's contract.
        unsafe { sys::vppcom_session_recvfrom(sh, buf, n, flags, ep.cast()) }
    }
    unsafe fn write(&self, sh: Sh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: caller's contract.
        unsafe { sys::vppcom_session_write(sh, buf, n) }
    }
    unsafe fn write_msg(&self, sh: Sh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: caller's contract.
        unsafe { sys::vppcom_session_write_msg(sh, buf, n) }
    }
    unsafe fn sendto(&self, sh: Sh, buf: *mut c_void, n: i32, flags: i32, ep: *mut c_void) -> i32 {
        if n < 0 {
            return -libc::EINVAL;
        }
        // SAFETY: caller's contract.
        unsafe { sys::vppcom_session_sendto(sh, buf, n as u32, flags, ep.cast()) }
    }
    unsafe fn attr(&self, sh: Sh, op: u32, buf: *mut c_void, len: *mut u32) -> i32 {
        if op == sys::VPPCOM_ATTR_GET_ERROR {
            // VCL's answer is always 0: the error of a failed connect or a
            // reset, as the kernel's SO_ERROR (see the shim).
            // SAFETY: caller's contract (valid `len`, `buf` of `*len` bytes).
            return unsafe { socket_error(sh, buf, len) };
        }
        // SAFETY: looks `sh` up on the calling thread's worker (null-safe).
        if op == sys::VPPCOM_ATTR_GET_PEER_ADDR && unsafe { sys::vppsys_sh_has_peer(sh) } == 0 {
            // VCL answers with zeros (or stale bytes): the kernel's
            // getpeername fails, and programs (libuv's `uv_udp_connect`)
            // take an answer for "already connected".
            return -libc::ENOTCONN;
        }
        if op == sys::VPPCOM_ATTR_GET_RX_FIFO_LEN {
            // SAFETY: caller's contract (valid `len`, `buf` of `*len` bytes).
            return unsafe { rx_fifo_len(sh, buf, len) };
        }
        // SAFETY: caller's contract.
        unsafe { sys::vppcom_session_attr(sh, op, buf, len) }
    }
    fn epoll_create(&self) -> i32 {
        // SAFETY: no arguments.
        unsafe { sys::vppcom_epoll_create() }
    }
    unsafe fn epoll_ctl(&self, ep_sh: Sh, op: i32, sh: Sh, ev: *mut libc::epoll_event) -> i32 {
        // SAFETY: caller's contract; `libc::epoll_event` and VCL's
        // `struct epoll_event` are the same packed kernel type.
        unsafe { sys::vppcom_epoll_ctl(ep_sh, op, sh, ev.cast()) }
    }
    unsafe fn epoll_wait(&self, ep_sh: Sh, evs: *mut libc::epoll_event, max: i32, wait: f64) -> i32 {
        // SAFETY: as above.
        unsafe { sys::vppcom_epoll_wait(ep_sh, evs.cast(), max, wait) }
    }
    unsafe fn select(
        &self,
        n_bits: i32,
        r: *mut c_ulong,
        w: *mut c_ulong,
        e: *mut c_ulong,
        wait: f64,
    ) -> i32 {
        // SAFETY: caller's contract.
        unsafe { sys::vppcom_select(n_bits, r, w, e, wait) }
    }
    unsafe fn poll(&self, vp: *mut c_void, n: u32, wait: f64) -> i32 {
        // `vppcom_poll` looks each entry up as a session *index* of the
        // calling thread's worker, while its callers (LDP: `vlsh_to_sh`)
        // give session *handles*, which carry the worker's index in their
        // high bits: on any worker but 0 (a forked child, a thread of its
        // own in mode 2) no session was ever found. The handles of this
        // worker's sessions become indexes for the call, and come back
        // after it (LDP polls the same array again).
        let me = worker_index();
        let mut rebased = Vec::new();
        // SAFETY: forwarded contract.
        let rv = unsafe { look_once(vp, n, me, &mut rebased) };
        // VCL's own wait is a loop over no-wait looks at its queue (it
        // spins); the same loop here also sees a peer's close, which VCL's
        // does not report (see `report_peer_close`), at once instead of at
        // the deadline. `wait` is in seconds, -1 for no limit (VCL's
        // meaning; other negative values look once). The clock is read only
        // once the first look found nothing and there is time to wait.
        // (A NaN wait looks once, as VCL's.)
        let no_wait = wait != -1.0 && wait.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater);
        if rv != 0 || no_wait {
            return rv;
        }
        let deadline = if wait == -1.0 {
            None
        } else {
            Duration::try_from_secs_f64(wait).ok().and_then(|w| Instant::now().checked_add(w))
        };
        loop {
            // SAFETY: forwarded contract.
            let rv = unsafe { look_once(vp, n, me, &mut rebased) };
            if rv != 0 || deadline.is_some_and(|d| Instant::now() >= d) {
                return rv;
            }
        }
    }
    fn is_nonblocking(&self, sh: Sh) -> bool {
        // SAFETY: shim lookup that tolerates any handle.
        unsafe { sys::vppsys_sh_is_nonblocking(sh) > 0 }
    }
    fn read_ready(&self, sh: Sh) -> i32 {
        // SAFETY: as above.
        unsafe { sys::vppsys_sh_read_ready(sh) }
    }
    fn write_ready(&self, sh: Sh) -> bool {
        // SAFETY: as above.
        unsafe { sys::vppsys_sh_write_nonblk(sh) != 0 }
    }
    fn write_space(&self, sh: Sh) -> i32 {
        // SAFETY: shim lookup that tolerates any handle.
        unsafe { sys::vppsys_sh_write_space(sh) }
    }
    fn set_app_closing(&self, sh: Sh) {
        // SAFETY: as above.
        unsafe { sys::vppsys_sh_set_app_closing(sh) }
    }
    fn worker_detached(&self) -> bool {
        // SAFETY: reads a field of the calling thread's worker (VCL gives
        // `VPPCOM_ENOTSUP` without use-mq-eventfd, and no worker is never
        // detached: the caller has one).
        unsafe { sys::vppcom_worker_is_detached() == 1 }
    }
    fn unhandled_events(&self) -> u32 {
        // SAFETY: reads a vector length of the calling thread's worker.
        unsafe { sys::vppsys_worker_unhandled_events() }
    }
    fn want_tx_space_notice(&self, sh: Sh) {
        // SAFETY: sets a flag on the FIFO of a session of the calling
        // thread's worker (none for another worker's handle).
        unsafe { sys::vppsys_sh_want_tx_space_notice(sh) }
    }
    fn rearm_rx_event(&self, sh: Sh) -> bool {
        // SAFETY: clears a flag on the RX FIFO of a session of the calling
        // thread's worker (none for another worker's handle).
        unsafe { sys::vppsys_sh_rearm_rx_event(sh) == 1 }
    }
    fn mq_eventfd(&self) -> Option<i32> {
        // SAFETY: reads a field of the calling thread's worker's queue.
        let fd = unsafe { sys::vppsys_worker_mq_eventfd() };
        (fd >= 0).then_some(fd)
    }
    fn set_nonblocking(&self, sh: Sh, on: bool) {
        // SAFETY: as above.
        unsafe { sys::vppsys_sh_set_nonblocking(sh, on as u8) }
    }
    fn connect_state(&self, sh: Sh) -> i32 {
        // SAFETY: as above.
        unsafe { sys::vppsys_sh_connect_state(sh) }
    }
    fn datagram_state(&self, sh: Sh) -> seam::Datagram {
        // SAFETY: looks `sh` up on the calling thread's worker (null-safe).
        match unsafe { sys::vppsys_sh_datagram_state(sh) } {
            1 => seam::Datagram::Unbound,
            2 => seam::Datagram::Placed,
            _ => seam::Datagram::Stream,
        }
    }
    unsafe fn bind_to_any(&self, sh: Sh, like: *mut c_void) -> i32 {
        // SAFETY: the caller's contract: `like` is a valid endpoint.
        let is_ip4 = unsafe { (*like.cast::<sys::vppcom_endpt_t>()).is_ip4 };
        let mut any = [0u8; 16];
        // SAFETY: a plain C struct of integers and pointers, for which all
        // zeroes (null pointers) is a valid value.
        let mut ep: sys::vppcom_endpt_t = unsafe { std::mem::zeroed() };
        ep.is_ip4 = is_ip4;
        ep.ip = any.as_mut_ptr();
        // SAFETY: `ep` and the address it points to live across the call.
        unsafe { bind_datagram_to_free_port(sh, &ep) }
    }
    fn want_tx_event(&self, sh: Sh) -> i32 {
        // SAFETY: as above.
        match unsafe { sys::vppsys_sh_want_tx_event(sh) } {
            0 => 0,
            _ => crate::error::VppcomError::EBADFD.raw(),
        }
    }

    fn move_out(&self, wrk: u32, session_index: u32) -> std::result::Result<MovedSession, MoveError> {
        let mut b = Box::new(std::mem::MaybeUninit::<sys::vcl_session_t>::zeroed());
        // SAFETY: `b` is valid for one session record; the shim takes VCL's
        // worker-registry lock and checks the indices.
        let rv = unsafe { sys::vppsys_session_move_out(wrk, session_index, b.as_mut_ptr()) };
        if rv != 0 {
            return Err(move_error(rv));
        }
        Ok(MovedSession(Some(b)))
    }
    fn move_in(&self, mut moved: MovedSession) -> std::result::Result<Sh, MoveError> {
        let Some(b) = moved.0.as_ref() else { return Err(MoveError::NoSession) };
        // SAFETY: `b` holds a record made by `vppsys_session_move_out`.
        let rv = unsafe { sys::vppsys_session_move_in(b.as_ptr()) };
        if rv < 0 {
            return Err(move_error(rv));
        }
        // The worker's copy owns the heap blocks now.
        moved.0 = None;
        Ok(crate::handle::sh_from_parts(worker_index(), rv as u32))
    }
    fn take_over(&self, sh: Sh, wait: std::time::Duration) -> std::result::Result<bool, MoveError> {
        // SAFETY: checks the handle; handles the calling worker's queue.
        match unsafe { sys::vppsys_session_take_over(sh, wait.as_secs_f64()) } {
            0 => Ok(false),
            1 => Ok(true),
            rv => Err(move_error(rv)),
        }
    }
    fn stub_take(&self, wrk: u32, session_index: u32) -> std::result::Result<MovedSession, MoveError> {
        let mut b = Box::new(std::mem::MaybeUninit::<sys::vcl_session_t>::zeroed());
        // SAFETY: `b` is valid for one session record; the shim takes VCL's
        // worker-registry lock and checks the indices (the caller's
        // contract: `wrk`'s thread is not inside VCL, or is this one).
        let rv = unsafe { sys::vppsys_listener_stub_take(wrk, session_index, b.as_mut_ptr()) };
        if rv != 0 {
            return Err(move_error(rv));
        }
        Ok(MovedSession(Some(b)))
    }
    fn merge_accepts(&self, sh: Sh, mut stub: MovedSession) -> std::result::Result<u32, MoveError> {
        let Some(mut b) = stub.0.take() else { return Err(MoveError::NoSession) };
        // SAFETY: `b` holds a record made by `vppsys_listener_stub_take`;
        // the shim frees what it owns (it is not used again) and checks the
        // handle against the calling worker.
        let rv = unsafe { sys::vppsys_listener_merge(sh, b.as_mut_ptr()) };
        if rv < 0 {
            return Err(move_error(rv));
        }
        Ok(rv as u32)
    }
    fn take_over_accepted(&self, sh: Sh, wait: std::time::Duration) -> std::result::Result<(), MoveError> {
        // SAFETY: checks the handle; handles the calling worker's queue.
        match unsafe { sys::vppsys_session_take_over_accepted(sh, wait.as_secs_f64()) } {
            0 => Ok(()),
            rv => Err(move_error(rv)),
        }
    }
    fn next_accept_foreign(&self, sh: Sh) -> bool {
        // SAFETY: checks the handle against the calling worker.
        unsafe { sys::vppsys_listener_next_accept_foreign(sh) == 1 }
    }
    fn in_epoll(&self, sh: Sh) -> bool {
        // SAFETY: as above.
        unsafe { sys::vppsys_session_in_epoll(sh) == 1 }
    }
    fn rejoin(&self, ep_sh: Sh, sh: Sh) -> i32 {
        // SAFETY: as above (VCL checks both handles).
        unsafe { sys::vppsys_session_rejoin(ep_sh, sh) }
    }
    fn install_rpc_handler(&self, handler: &'static dyn RpcHandler) {
        let _ = RPC_HANDLER.set(handler);
        // SAFETY: stores a function pointer in `vcm` (set after app create).
        unsafe { sys::vppsys_set_wrk_rpc_fn(Some(rpc_trampoline)) }
    }
    fn send_rpc(&self, dst: u32, msg: &[u8]) -> i32 {
        if msg.len() > RPC_PAYLOAD {
            return -libc::EINVAL;
        }
        let mut buf = [0u8; RPC_PAYLOAD];
        buf[..msg.len()].copy_from_slice(msg);
        // SAFETY: `buf` is valid for its length; VCL copies it.
        let rv = unsafe { sys::vcl_send_worker_rpc(dst, buf.as_mut_ptr().cast(), RPC_PAYLOAD as u32) };
        if rv == 0 {
            0
        } else {
            -libc::EBADFD
        }
    }
    fn flush_mq(&self) {
        // SAFETY: handles the calling thread's worker's queue; the caller
        // has a worker.
        unsafe { sys::vcl_flush_mq_events() }
    }

    fn install_fork_hooks(&self, hooks: &'static dyn ForkHooks) {
        if FORK_HOOKS.set(hooks).is_ok() && register_fork_handlers::<AT_APP_CREATE>() {
            ACTIVE_FORK_HANDLERS.store(AT_APP_CREATE, Ordering::Release);
        }
    }
    fn fork_copy_sessions(&self, parent_wrk: u32) -> i32 {
        // SAFETY: called in a forked child whose thread has a new worker;
        // the shim checks both worker indices.
        unsafe { sys::vppsys_fork_copy_sessions(parent_wrk) }
    }
    fn listener_state(&self, sh: Sh) -> Listener {
        // SAFETY: looks `sh` up on the calling thread's worker (null-safe).
        match unsafe { sys::vppsys_listener_state(sh) } {
            sys::VPPSYS_LISTENING_HERE => Listener::Here,
            sys::VPPSYS_LISTENING_ELSEWHERE => Listener::Elsewhere,
            _ => Listener::No,
        }
    }
    fn listener_start(&self, sh: Sh) -> bool {
        // SAFETY: as above; sends on the calling worker's own queue.
        unsafe { sys::vppsys_listener_start(sh) == 1 }
    }
    fn listener_stop_on(&self, wrk: u32, session_index: u32) -> bool {
        // SAFETY: the shim checks the worker and session exist.
        unsafe { sys::vppsys_listener_stop_on(wrk, session_index) == 1 }
    }
    fn unshare(&self, sh: Sh, new_owner: u32, notify_vpp: bool) -> i32 {
        // SAFETY: looks `sh` up on the calling thread's worker (null-safe).
        unsafe { sys::vppsys_session_unshare(sh, new_owner, notify_vpp as i32) }
    }
    fn keep_as_owner(&self, sh: Sh) -> i32 {
        // SAFETY: looks `sh` up on the calling thread's worker (null-safe).
        unsafe { sys::vppsys_session_keep_owner(sh) }
    }
    fn handover_token(&self, wrk: u32, session_index: u32) -> usize {
        // SAFETY: the shim checks the worker and session exist.
        unsafe { sys::vppsys_session_rx_fifo(wrk, session_index) }
    }
    fn claim_events(&self, sh: Sh) {
        // SAFETY: looks `sh` up on the calling thread's worker (null-safe);
        // sends on the session's own event queue.
        unsafe { sys::vppsys_session_claim_events(sh) };
    }
    fn worker_cleanup_dead(&self, wrk: u32, pid: i32) {
        // SAFETY: the shim checks the worker exists and is still `pid`'s,
        // whose process is gone.
        unsafe { sys::vppsys_worker_cleanup_dead(wrk, pid) }
    }
    fn kept_state(&self, sh: Sh) -> seam::KeptState {
        let mut handle = 0u64;
        // SAFETY: the shim looks the session up on the calling thread's
        // worker (the caller holds its locks); `handle` is a valid out
        // pointer.
        match unsafe { sys::vppsys_kept_state(sh, &mut handle) } {
            0 => seam::KeptState::Open,
            1 => seam::KeptState::PeerClosed,
            2 => seam::KeptState::Reset,
            _ => seam::KeptState::Gone,
        }
    }
    fn kept_end(&self, sh: Sh, how: seam::KeptEnd) -> i32 {
        // SAFETY: as kept_state; the session is the calling worker's.
        unsafe { sys::vppsys_kept_end(sh, how as i32) }
    }
}

/// The `n` entries at `vp` (none if `vp` is null).
///
/// # Safety
/// `vp` is null or valid for `n` `vcl_poll_t` entries, not otherwise
/// borrowed.
unsafe fn poll_entries<'a>(vp: *mut c_void, n: u32) -> &'a mut [sys::vcl_poll_t] {
    if vp.is_null() || n == 0 {
        return &mut [];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(vp.cast::<sys::vcl_poll_t>(), n as usize) }
}

/// `VPPCOM_ATTR_GET_RX_FIFO_LEN` (LDP's `getsockopt(SO_RCVBUF)`): VCL
/// writes the size as 8 bytes (`size_t`) while it checks for, and
/// reports, 4: the caller's `int` overflowed into its neighbour, and
/// iperf (2) died of "stack smashing detected" at start-up with either
/// layer. The size is read into a local and 4 bytes are written.
///
/// # Safety
/// `len` null or valid; `buf` null or valid for `*len` bytes.
unsafe fn rx_fifo_len(sh: Sh, buf: *mut c_void, len: *mut u32) -> i32 {
    // SAFETY: `len` is read only if it is not null (then valid: contract).
    if buf.is_null() || len.is_null() || unsafe { *len } < 4 {
        return crate::error::VppcomError::EINVAL.raw();
    }
    let mut size: u64 = 0;
    let mut size_len = 8u32;
    // SAFETY: a local of 8 bytes, its length given.
    let rv = unsafe {
        sys::vppcom_session_attr(
            sh,
            sys::VPPCOM_ATTR_GET_RX_FIFO_LEN,
            (&mut size as *mut u64).cast(),
            &mut size_len,
        )
    };
    if rv < 0 {
        return rv;
    }
    // SAFETY: `buf` holds at least 4 bytes, `len` is valid (checked).
    unsafe {
        buf.cast::<u32>().write_unaligned(size.min(u64::from(u32::MAX)) as u32);
        *len = 4;
    }
    rv
}

/// One no-wait `vppcom_poll` of the `n` entries at `vp` on worker `me`,
/// then [`report_peer_close`]: the handles of `me`'s sessions are turned
/// into the session indexes VCL looks up for the call and back after it
/// (`rebased` is scratch space, left empty).
///
/// # Safety
/// As [`poll_entries`]; the calling thread's worker is `me`.
unsafe fn look_once(vp: *mut c_void, n: u32, me: u32, rebased: &mut Vec<(usize, Sh)>) -> i32 {
    if me != 0 {
        // SAFETY: forwarded contract (borrowed until the end of this block).
        for (i, e) in unsafe { poll_entries(vp, n) }.iter_mut().enumerate() {
            let (wrk, index) = sh_parts(e.sh);
            if wrk == me {
                rebased.push((i, e.sh));
                e.sh = index;
            }
        }
    }
    // SAFETY: forwarded contract.
    let mut rv = unsafe { sys::vppcom_poll(vp.cast(), n, 0.0) };
    // SAFETY: the calling thread's worker, whose locks the caller holds
    // (as for the poll).
    unsafe { sys::vppsys_answer_worker_updates() };
    if !rebased.is_empty() {
        // SAFETY: as above.
        let entries = unsafe { poll_entries(vp, n) };
        for (i, sh) in rebased.drain(..) {
            entries[i].sh = sh;
        }
    }
    if rv > 0 {
        // SAFETY: as above.
        rv = (rv - unsafe { unreport_connecting(vp, n) }).max(0);
    }
    if rv >= 0 {
        // SAFETY: as above.
        rv += unsafe { report_peer_close(vp, n) };
    }
    rv
}

/// After `vppcom_poll`: a connect in progress is neither readable nor
/// writable nor in error, as with the kernel. VCL's poll reports `POLLERR`
/// for it (its read check answers `ENOTCONN`), which `select` turns into
/// readable and writable: ncat took its non-blocking connect for done and
/// its first read failed with `ENOTCONN`. Returns how many entries it
/// cleared (VCL counted each once).
///
/// # Safety
/// As [`poll_entries`].
unsafe fn unreport_connecting(vp: *mut c_void, n: u32) -> i32 {
    let mut cleared = 0;
    // SAFETY: forwarded contract.
    for e in unsafe { poll_entries(vp, n) } {
        // SAFETY: the shim looks the session up on the calling thread's
        // worker, tolerating any handle.
        if e.revents & libc::POLLERR != 0 && unsafe { sys::vppsys_sh_connecting(e.sh) } == 1 {
            e.revents = 0;
            cleared += 1;
        }
    }
    cleared
}

/// After `vppcom_poll`: a session whose peer closed (or reset) it is
/// readable, as the kernel says of a socket at end of stream (`POLLIN`,
/// and `POLLRDHUP` if asked; a reset adds `POLLERR` and `POLLHUP`), so that
/// the program reads the 0 (or the error) and ends. VCL's poll reports
/// only bytes to read: a program that waits in `poll` or `select` for the
/// peer's close waited for ever (socat's transfer loop). Returns how many
/// entries it marked.
///
/// # Safety
/// As [`poll_entries`].
unsafe fn report_peer_close(vp: *mut c_void, n: u32) -> i32 {
    const RDHUP: libc::c_short = libc::POLLRDHUP;
    let mut marked = 0;
    // SAFETY: forwarded contract.
    for e in unsafe { poll_entries(vp, n) } {
        let asked = e.events;
        if asked & libc::POLLIN == 0 || e.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0 {
            continue;
        }
        let mut handle = 0u64;
        // SAFETY: the shim looks the session up on the calling thread's
        // worker, tolerating any handle; `handle` is a valid out pointer.
        let more = match unsafe { sys::vppsys_kept_state(e.sh, &mut handle) } {
            1 => libc::POLLIN | (asked & RDHUP),
            2 => libc::POLLIN | libc::POLLERR | libc::POLLHUP | (asked & RDHUP),
            _ => 0,
        };
        if more != 0 {
            marked += i32::from(e.revents == 0);
            e.revents |= more;
        }
    }
    marked
}
