//! The C ABI of `vcl_locked.h` (the same in VPP 25.10 to 26.10), over the Rust VLS core.
//!
//! Built into `libvls.so`; with `LD_PRELOAD=libvls.so:libvcl_ldpreload.so`
//! these symbols take the place of libvppcom's own `vls_*` for LDP. Each
//! function only converts arguments and return codes; the logic is in
//! `crate::engine`. No panic crosses this boundary: one is caught, logged
//! and turned into `VPPCOM_EINVAL` (or the function's "invalid" value).
//!
//! Environment (read once, at `vls_app_create`):
//! - `VLS_RS_LOG=<filter>` (e.g. `debug`, `vls=trace`): log to stderr with
//!   `tracing`; silent when unset;
//! - `VLS_RS_STATS=1`: count calls and print the counts at exit (one line on
//!   stderr starting with `vls-rs:`), which also shows that this layer, not
//!   the C one, served the program.

use std::ffi::{c_char, c_int, c_uchar, c_ulong, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

mod held_signals;
mod ldp_close;
mod ldp_exec;
mod ldp_exit;
mod ldp_fds;
mod ldp_mmsg;
mod ldp_poll;
mod ldp_select;
mod ldp_sendfile;
mod ldp_sockopt;
mod ldp_wait;
mod log;
mod release;
mod stats;
mod vpp_code;

use crate::handle::{Vlsh, INVALID, INVALID_VLSH};
use crate::process::{attach, read_lock_free, vls, vls_if_made, write_lock_free};
use crate::seam::{EpollFns, Vcl};
use stats::{count, init_c_program_diagnostics, Call};

const EINVAL: c_int = -libc::EINVAL;
const EBADFD: c_int = -libc::EBADFD;
const EFAULT: c_int = -libc::EFAULT;

/// `libvls.so`'s constructor. Preloaded before `libvcl_ldpreload.so`, the
/// library initialises after it: once the app exists (LDP's constructor
/// creates it, or an earlier library constructor's socket call did, before
/// LDP's constructor registered its socket wrapper's fork handlers), the
/// layer's fork handlers are registered again, after the wrapper's (see
/// `real_vcl::reregister_fork_handlers_after_constructors`).
#[used]
#[link_section = ".init_array"]
static AFTER_EARLIER_CONSTRUCTORS: extern "C" fn() = after_earlier_constructors;

extern "C" fn after_earlier_constructors() {
    catch_panic(Call::AppCreate, (), || {
        // Read the environment now, not in a `close` a signal handler
        // makes first.
        let _ = ldp_fds::ldp_base();
        vpp_code::init();
        crate::real_vcl::reregister_fork_handlers_after_constructors()
    });
}

/// Runs `f`, counting the call and turning a panic into `on_panic` (logged).
#[inline]
fn guard<T>(call: Call, on_panic: T, f: impl FnOnce() -> T) -> T {
    count(call);
    catch_panic(call, on_panic, f)
}

/// [`guard`] without counting the call.
#[inline]
fn catch_panic<T>(call: Call, on_panic: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            let msg = e
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(function = call.name(), panic = %msg, "panic caught at the C ABI");
            on_panic
        }
    }
}

/// `vls_app_create`. Fails (`VPPCOM_EINVAL`, with a message on stderr)
/// when the process has loaded the `libvppcom` of another VPP release than
/// the one this library was built against (e.g. a `libvcl_ldpreload.so` of
/// another release).
///
/// # Safety
/// `app_name` is null or a valid C string.
#[no_mangle]
pub unsafe extern "C" fn vls_app_create(app_name: *mut c_char) -> c_int {
    guard(Call::AppCreate, EINVAL, || {
        init_c_program_diagnostics();
        if let Err(msg) = release::check_one_release() {
            eprintln!("{msg}");
            tracing::error!("{msg}");
            return EINVAL;
        }
        // SAFETY: forwarded contract.
        unsafe { attach(app_name) }
    })
}

/// `vls_create`.
#[no_mangle]
pub extern "C" fn vls_create(proto: u8, is_nonblocking: u8) -> Vlsh {
    guard(Call::Create, INVALID_VLSH, || vls().create(proto, is_nonblocking != 0))
}

/// `vls_shutdown`.
#[no_mangle]
pub extern "C" fn vls_shutdown(vlsh: Vlsh, how: c_int) -> c_int {
    guard(Call::Shutdown, EINVAL, || vls().shutdown(vlsh, how))
}

/// `vls_close`.
#[no_mangle]
pub extern "C" fn vls_close(vlsh: Vlsh) -> c_int {
    guard(Call::Close, EINVAL, || {
        ldp_fds::check_close(vlsh);
        vls().close(vlsh)
    })
}

/// `vls_bind`.
///
/// # Safety
/// `ep` is null or points to a valid `vppcom_endpt_t`.
#[no_mangle]
pub unsafe extern "C" fn vls_bind(vlsh: Vlsh, ep: *mut c_void) -> c_int {
    guard(Call::Bind, EINVAL, || {
        if ep.is_null() {
            return EINVAL;
        }
        // SAFETY: forwarded contract.
        unsafe { vls().bind(vlsh, ep) }
    })
}

/// `vls_listen`.
#[no_mangle]
pub extern "C" fn vls_listen(vlsh: Vlsh, q_len: c_int) -> c_int {
    guard(Call::Listen, EINVAL, || vls().listen(vlsh, q_len))
}

/// `vls_connect`.
///
/// # Safety
/// `server_ep` is null or points to a valid `vppcom_endpt_t`.
#[no_mangle]
pub unsafe extern "C" fn vls_connect(vlsh: Vlsh, server_ep: *mut c_void) -> c_int {
    guard(Call::Connect, EINVAL, || {
        if server_ep.is_null() {
            return EFAULT;
        }
        // SAFETY: forwarded contract.
        unsafe { vls().connect(vlsh, server_ep) }
    })
}

/// `vls_accept`.
///
/// # Safety
/// `ep` is null or points to a valid `vppcom_endpt_t`.
#[no_mangle]
pub unsafe extern "C" fn vls_accept(vlsh: Vlsh, ep: *mut c_void, flags: c_int) -> Vlsh {
    // SAFETY: forwarded contract.
    guard(Call::Accept, EINVAL, || unsafe { vls().accept(vlsh, ep, flags) })
}

/// `vls_read`.
///
/// # Safety
/// `buf` is valid for `nbytes` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn vls_read(vlsh: Vlsh, buf: *mut c_void, nbytes: usize) -> isize {
    count(Call::Read);
    // The hot path, outside `catch_unwind` (it cannot panic): the only
    // thread reading a non-blocking session. A null `buf` is VCL's to
    // refuse there: `vppcom_session_read` returns `VPPCOM_EFAULT` before
    // it touches the buffer.
    // SAFETY: forwarded contract.
    if let Some(rv) = unsafe { read_lock_free(vlsh, buf, nbytes) } {
        return rv as isize;
    }
    // SAFETY: forwarded contract.
    unsafe { read_with_locks(vlsh, buf, nbytes) }
}

/// `vls_read` once the lock-free path declined.
///
/// # Safety
/// As `vls_read`.
#[inline(never)]
unsafe fn read_with_locks(vlsh: Vlsh, buf: *mut c_void, nbytes: usize) -> isize {
    if buf.is_null() {
        return EFAULT as isize;
    }
    // SAFETY: forwarded contract.
    let rv = catch_panic(Call::Read, EINVAL as isize, || unsafe {
        vls().read_with_locks(vlsh, buf, nbytes) as isize
    });
    if rv == EBADFD as isize {
        ldp_fds::check_no_session(vlsh, "vls_read");
    }
    rv
}

/// `vls_recvfrom`.
///
/// # Safety
/// `buffer` is valid for `buflen` bytes; `ep` null or valid.
#[no_mangle]
pub unsafe extern "C" fn vls_recvfrom(
    vlsh: Vlsh,
    buffer: *mut c_void,
    buflen: u32,
    flags: c_int,
    ep: *mut c_void,
) -> isize {
    guard(Call::Recvfrom, EINVAL as isize, || {
        if buffer.is_null() {
            return EFAULT as isize;
        }
        // SAFETY: forwarded contract.
        unsafe { vls().recvfrom(vlsh, buffer, buflen, flags, ep) as isize }
    })
}

/// `vls_write`.
///
/// # Safety
/// `buf` is valid for `nbytes` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn vls_write(vlsh: Vlsh, buf: *mut c_void, nbytes: usize) -> c_int {
    count(Call::Write);
    // The hot path, outside `catch_unwind` (see `vls_read`; VCL's
    // `vppcom_session_write` refuses a null `buf` too).
    // SAFETY: forwarded contract.
    if let Some(rv) = unsafe { write_lock_free(vlsh, buf, nbytes) } {
        return rv;
    }
    // SAFETY: forwarded contract.
    unsafe { write_with_locks(vlsh, buf, nbytes) }
}

/// `vls_write` once the lock-free path declined.
///
/// # Safety
/// As `vls_write`.
#[inline(never)]
unsafe fn write_with_locks(vlsh: Vlsh, buf: *mut c_void, nbytes: usize) -> c_int {
    // As VCL (and the kernel): writing nothing from nowhere is no fault.
    if buf.is_null() && nbytes != 0 {
        return EFAULT;
    }
    // SAFETY: forwarded contract.
    let rv = catch_panic(Call::Write, EINVAL, || unsafe { vls().write_with_locks(vlsh, buf, nbytes) });
    if rv == EBADFD {
        ldp_fds::check_no_session(vlsh, "vls_write");
    }
    rv
}

/// `vls_write_msg`.
///
/// # Safety
/// `buf` is valid for `nbytes` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn vls_write_msg(vlsh: Vlsh, buf: *mut c_void, nbytes: usize) -> c_int {
    guard(Call::WriteMsg, EINVAL, || {
        if buf.is_null() {
            return EFAULT;
        }
        // SAFETY: forwarded contract.
        unsafe { vls().write_msg(vlsh, buf, nbytes) }
    })
}

/// `vls_sendto`.
///
/// # Safety
/// `buf` is valid for `buflen` readable bytes; `ep` null or valid.
#[no_mangle]
pub unsafe extern "C" fn vls_sendto(
    vlsh: Vlsh,
    buf: *mut c_void,
    buflen: c_int,
    flags: c_int,
    ep: *mut c_void,
) -> c_int {
    guard(Call::Sendto, EINVAL, || {
        if buf.is_null() {
            return EFAULT;
        }
        // SAFETY: forwarded contract.
        unsafe { vls().sendto(vlsh, buf, buflen, flags, ep) }
    })
}

/// `vls_attr`.
///
/// # Safety
/// `buffer`/`buflen` as `vppcom_session_attr` expects for `op`.
#[no_mangle]
pub unsafe extern "C" fn vls_attr(vlsh: Vlsh, op: u32, buffer: *mut c_void, buflen: *mut u32) -> c_int {
    // SAFETY: forwarded contract (VCL checks null buffers per op).
    guard(Call::Attr, EINVAL, || unsafe { vls().attr(vlsh, op, buffer, buflen) })
}

/// `vls_epoll_create`.
#[no_mangle]
pub extern "C" fn vls_epoll_create() -> Vlsh {
    guard(Call::EpollCreate, INVALID_VLSH, || vls().epoll_create())
}

/// `vls_epoll_ctl`.
///
/// # Safety
/// `event` is null or points to a valid `struct epoll_event`.
#[no_mangle]
pub unsafe extern "C" fn vls_epoll_ctl(
    ep_vlsh: Vlsh,
    op: c_int,
    vlsh: Vlsh,
    event: *mut libc::epoll_event,
) -> c_int {
    count(Call::EpollCtl);
    // The hot path, outside `catch_unwind` (it cannot panic): the only
    // thread of the process (see `vls_read`).
    // SAFETY: forwarded contract.
    if let Some(rv) = vls_if_made().and_then(|v| unsafe { v.epoll_ctl_lock_free(ep_vlsh, op, vlsh, event) }) {
        return rv;
    }
    // SAFETY: forwarded contract.
    unsafe { epoll_ctl_with_locks(ep_vlsh, op, vlsh, event) }
}

/// `vls_epoll_ctl` once the lock-free path declined.
///
/// # Safety
/// As `vls_epoll_ctl`.
#[inline(never)]
unsafe fn epoll_ctl_with_locks(ep_vlsh: Vlsh, op: c_int, vlsh: Vlsh, event: *mut libc::epoll_event) -> c_int {
    catch_panic(Call::EpollCtl, EINVAL, || {
        // SAFETY: forwarded contract (the core rejects a null event for
        // ADD/MOD).
        unsafe { vls().epoll_ctl_with_locks(ep_vlsh, op, vlsh, event) }
    })
}

/// `vls_epoll_wait`.
///
/// # Safety
/// `events` is valid for `maxevents` entries.
#[no_mangle]
pub unsafe extern "C" fn vls_epoll_wait(
    ep_vlsh: Vlsh,
    events: *mut libc::epoll_event,
    maxevents: c_int,
    wait_for_time: f64,
) -> c_int {
    count(Call::EpollWait);
    if events.is_null() || maxevents <= 0 {
        return EINVAL;
    }
    // The hot path, outside `catch_unwind` (it cannot panic): the only
    // thread of the process in a wait that does not wait (see `vls_read`).
    let lock_free = |v: &'static crate::engine::Vls<crate::real_vcl::RealVcl>| {
        // SAFETY: forwarded contract.
        unsafe { v.epoll_wait_lock_free(ep_vlsh, events, maxevents, wait_for_time) }
    };
    if let Some(rv) = vls_if_made().and_then(lock_free) {
        return rv;
    }
    // SAFETY: forwarded contract.
    unsafe { epoll_wait_with_locks(ep_vlsh, events, maxevents, wait_for_time) }
}

/// `vls_epoll_wait` once the lock-free path declined.
///
/// # Safety
/// As `vls_epoll_wait`.
#[inline(never)]
unsafe fn epoll_wait_with_locks(
    ep_vlsh: Vlsh,
    events: *mut libc::epoll_event,
    maxevents: c_int,
    wait_for_time: f64,
) -> c_int {
    catch_panic(Call::EpollWait, EINVAL, || {
        // SAFETY: forwarded contract.
        unsafe { vls().epoll_wait_with_locks(ep_vlsh, events, maxevents, wait_for_time) }
    })
}

/// `vls_select`.
///
/// # Safety
/// Each map is null or valid for `n_bits` bits.
#[no_mangle]
pub unsafe extern "C" fn vls_select(
    n_bits: c_int,
    read_map: *mut c_ulong,
    write_map: *mut c_ulong,
    except_map: *mut c_ulong,
    wait_for_time: f64,
) -> c_int {
    // SAFETY: forwarded contract.
    guard(Call::Select, EINVAL, || unsafe {
        vls().select(n_bits, read_map, write_map, except_map, wait_for_time)
    })
}

/// `vls_poll`.
///
/// # Safety
/// `vp` is valid for `n_sids` `vcl_poll_t` entries.
#[no_mangle]
pub unsafe extern "C" fn vls_poll(vp: *mut c_void, n_sids: u32, wait_for_time: f64) -> c_int {
    guard(Call::Poll, EINVAL, || {
        if vp.is_null() && n_sids > 0 {
            return EFAULT;
        }
        // SAFETY: forwarded contract.
        unsafe { vls().poll(vp, n_sids, wait_for_time) }
    })
}

/// `vlsh_to_sh`: the VCL session handle, `~0` if unknown.
#[no_mangle]
pub extern "C" fn vlsh_to_sh(vlsh: Vlsh) -> u32 {
    guard(Call::VlshToSh, INVALID, || vls().vlsh_to_sh(vlsh))
}

/// `vlsh_to_session_and_worker_index`.
///
/// # Safety
/// Each out pointer is null or valid for a `u32` write.
#[no_mangle]
pub unsafe extern "C" fn vlsh_to_session_and_worker_index(
    vlsh: Vlsh,
    session_index: *mut u32,
    wrk_index: *mut u32,
) {
    guard(Call::VlshToSessionAndWorkerIndex, (), || {
        let (s, w) = vls().vlsh_to_session_and_worker(vlsh);
        // SAFETY: non-null out pointers are valid per the contract.
        unsafe {
            if !session_index.is_null() {
                *session_index = s;
            }
            if !wrk_index.is_null() {
                *wrk_index = w;
            }
        }
    })
}

/// `vls_session_index_to_vlsh`.
#[no_mangle]
pub extern "C" fn vls_session_index_to_vlsh(session_index: u32) -> Vlsh {
    guard(Call::SessionIndexToVlsh, INVALID_VLSH, || vls().session_index_to_vlsh(session_index))
}

/// `vls_use_eventfd`.
#[no_mangle]
pub extern "C" fn vls_use_eventfd() -> c_uchar {
    guard(Call::UseEventfd, 0, || vls().vcl().use_eventfd() as c_uchar)
}

/// `vls_mt_wrk_supported`.
#[no_mangle]
pub extern "C" fn vls_mt_wrk_supported() -> c_uchar {
    guard(Call::MtWrkSupported, 0, || vls().vcl().mt_workers() as c_uchar)
}

/// `vls_set_libc_epfd`.
#[no_mangle]
pub extern "C" fn vls_set_libc_epfd(ep_vlsh: Vlsh, libc_epfd: c_int) -> c_int {
    guard(Call::SetLibcEpfd, EINVAL, || vls().set_libc_epfd(ep_vlsh, libc_epfd))
}

/// `vls_get_libc_epfd`.
#[no_mangle]
pub extern "C" fn vls_get_libc_epfd(ep_vlsh: Vlsh) -> c_int {
    guard(Call::GetLibcEpfd, EINVAL, || vls().get_libc_epfd(ep_vlsh))
}

/// `vls_set_epoll_fns`.
#[no_mangle]
pub extern "C" fn vls_set_epoll_fns(ep_fns: EpollFns) {
    guard(Call::SetEpollFns, (), || vls().set_epoll_fns(ep_fns))
}

/// `vls_register_vcl_worker`.
#[no_mangle]
pub extern "C" fn vls_register_vcl_worker() {
    guard(Call::RegisterVclWorker, (), || vls().register_thread())
}
