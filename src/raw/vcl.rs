//! Thin wrappers over the raw `libvppcom` calls (`vppcom_*`).
//!
//! Each function checks its arguments, makes exactly one VCL call and
//! converts the return code with [`cvt`]. There is no locking here: VCL is
//! not thread safe, and a VCL worker must be used by one thread at a time.
//! This module is the only place that calls `vppcom_*` functions.
//!
//! # Safety
//!
//! The session functions are `unsafe`: the caller guarantees what VCL
//! needs and cannot check itself, namely that no other thread uses the
//! calling thread's VCL worker during the call (in a process that also uses
//! VLS — [`crate::capi`], the safe API — only VLS may call VCL; use those
//! instead), and that a session handle is one of the calling thread's
//! worker (a handle of another worker indexes the wrong session pool).

use std::ffi::CString;
use std::net::SocketAddr;

use vpp_sys as sys;

use crate::error::{cvt, VppcomError};
use crate::sockaddr::{endpt, with_endpt, Endpoint};

/// A VCL session handle (worker index and session index in one `u32`).
pub type SessionHandle = u32;

/// Transport protocols VCL sessions can use.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Proto {
    /// TCP.
    Tcp = sys::VPPCOM_PROTO_TCP as u8,
    /// UDP.
    Udp = sys::VPPCOM_PROTO_UDP as u8,
}

type Result<T> = std::result::Result<T, VppcomError>;

/// Attaches this process to VPP as application `name` (reads `VCL_CONFIG`).
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn app_create(name: &str) -> Result<()> {
    let name = CString::new(name).map_err(|_| VppcomError::EINVAL)?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    cvt(unsafe { sys::vppcom_app_create(name.as_ptr()) }).map(drop)
}

/// Detaches from VPP.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn app_destroy() {
    // SAFETY: no arguments; VCL tolerates a call without a prior create.
    unsafe { sys::vppcom_app_destroy() }
}

/// Registers the calling thread as a new VCL worker.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn worker_register() -> Result<()> {
    // SAFETY: no arguments; registers the current thread.
    cvt(unsafe { sys::vppcom_worker_register() }).map(drop)
}

/// Unregisters the calling thread's VCL worker.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn worker_unregister() {
    // SAFETY: forwarded contract.
    unsafe { worker_leave(false) }
}

/// Unregisters the calling thread's VCL worker, `quietly` (a forked child
/// ending or execing: its socket to VPP closed instead of a message), or
/// not; nothing is sent if the program closed that socket (the shim's
/// `vppsys_worker_leave`).
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn worker_leave(quietly: bool) {
    // SAFETY: VCL cleans the current worker; callers register first.
    let told = unsafe { sys::vppsys_worker_leave(quietly.into()) };
    if told == 0 && !quietly {
        tracing::debug!("worker unregistered without VPP: the program closed VCL's socket to VPP");
    }
}

/// The calling thread's VCL worker index (`u32::MAX` if none).
pub fn worker_index() -> u32 {
    // SAFETY: reads a thread-local through the C shim.
    unsafe { sys::vppsys_worker_index() }
}

/// Creates a session.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn session_create(proto: Proto, nonblocking: bool) -> Result<SessionHandle> {
    // SAFETY: plain values.
    cvt(unsafe { sys::vppcom_session_create(proto as u8, nonblocking as u8) }).map(|h| h as u32)
}

/// Binds `sh` to `addr`.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn bind(sh: SessionHandle, addr: &SocketAddr) -> Result<()> {
    let mut ep = Endpoint::from_socket_addr(addr);
    let mut e = endpt(&mut ep);
    // SAFETY: `e` and the address bytes it points to live across the call.
    cvt(unsafe { sys::vppcom_session_bind(sh, &mut e) }).map(drop)
}

/// Starts listening on a bound session.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn listen(sh: SessionHandle, backlog: u32) -> Result<()> {
    // SAFETY: plain values.
    cvt(unsafe { sys::vppcom_session_listen(sh, backlog) }).map(drop)
}

/// Accepts one connection; returns its handle and the peer address.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn accept(sh: SessionHandle, flags: i32) -> Result<(SessionHandle, SocketAddr)> {
    // SAFETY: `e` points at an endpoint valid for the call.
    let (h, peer) = with_endpt(None, |e| unsafe { sys::vppcom_session_accept(sh, e.cast(), flags as u32) });
    Ok((cvt(h)? as u32, peer))
}

/// Connects `sh` to `addr`.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn connect(sh: SessionHandle, addr: &SocketAddr) -> Result<()> {
    let mut ep = Endpoint::from_socket_addr(addr);
    let mut e = endpt(&mut ep);
    // SAFETY: `e` and the address bytes it points to live across the call.
    cvt(unsafe { sys::vppcom_session_connect(sh, &mut e) }).map(drop)
}

/// Reads into `buf`; `Ok(0)` means the peer closed.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn read(sh: SessionHandle, buf: &mut [u8]) -> Result<usize> {
    // SAFETY: `buf` is valid for `buf.len()` writable bytes.
    cvt(unsafe { sys::vppcom_session_read(sh, buf.as_mut_ptr().cast(), buf.len()) }).map(|n| n as usize)
}

/// Writes from `buf` (may write less than all of it).
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn write(sh: SessionHandle, buf: &[u8]) -> Result<usize> {
    // SAFETY: VCL only reads `buf.len()` bytes from the pointer.
    cvt(unsafe { sys::vppcom_session_write(sh, buf.as_ptr() as *mut _, buf.len()) }).map(|n| n as usize)
}

/// Sends `buf` to `to` (or to the connected peer when `None`).
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn sendto(sh: SessionHandle, buf: &[u8], to: Option<&SocketAddr>) -> Result<usize> {
    let len = u32::try_from(buf.len()).map_err(|_| VppcomError::EINVAL)?;
    let mut ep = to.map(Endpoint::from_socket_addr).unwrap_or_default();
    let mut e = endpt(&mut ep);
    let ep_ptr = if to.is_some() { &mut e as *mut _ } else { std::ptr::null_mut() };
    // SAFETY: VCL reads `len` bytes from `buf`; `ep_ptr` is null or valid.
    cvt(unsafe { sys::vppcom_session_sendto(sh, buf.as_ptr() as *mut _, len, 0, ep_ptr) }).map(|n| n as usize)
}

/// Receives one datagram (or stream bytes); returns its length and source.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn recvfrom(sh: SessionHandle, buf: &mut [u8]) -> Result<(usize, SocketAddr)> {
    let len = u32::try_from(buf.len()).map_err(|_| VppcomError::EINVAL)?;
    // SAFETY: `buf` is valid for `len` bytes; `e` points at an endpoint
    // valid for the call.
    let (n, from) = with_endpt(None, |e| unsafe {
        sys::vppcom_session_recvfrom(sh, buf.as_mut_ptr().cast(), len, 0, e.cast())
    });
    Ok((cvt(n)? as usize, from))
}

/// Shuts down one or both directions (`libc::SHUT_*`).
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn shutdown(sh: SessionHandle, how: i32) -> Result<()> {
    // SAFETY: plain values.
    cvt(unsafe { sys::vppcom_session_shutdown(sh, how) }).map(drop)
}

/// Closes a session.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn close(sh: SessionHandle) -> Result<()> {
    // SAFETY: plain value; VCL validates the handle.
    cvt(unsafe { sys::vppsys_session_close(sh) }).map(drop)
}

/// The session's local address.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn local_addr(sh: SessionHandle) -> Result<SocketAddr> {
    addr_attr(sh, sys::VPPCOM_ATTR_GET_LCL_ADDR)
}

/// The session's peer address.
///
/// # Safety
/// See the [module docs](self#safety).
pub unsafe fn peer_addr(sh: SessionHandle) -> Result<SocketAddr> {
    addr_attr(sh, sys::VPPCOM_ATTR_GET_PEER_ADDR)
}

fn addr_attr(sh: SessionHandle, op: sys::vppcom_attr_op_t) -> Result<SocketAddr> {
    let mut len = std::mem::size_of::<sys::vppcom_endpt_t>() as u32;
    // SAFETY: `e` is a valid endpoint of `len` bytes for the call.
    let (rv, addr) = with_endpt(None, |e| unsafe { sys::vppcom_session_attr(sh, op, e, &mut len) });
    cvt(rv).map(|_| addr)
}
