//! The process-wide VLS, shared by the C ABI and the safe API.
//!
//! VCL allows one application per process, so there is one [`Vls`] per
//! process, made on first use and never freed (VCL's own state lives as
//! long). [`attach`] is the one application create of both APIs: the C
//! ABI's `vls_app_create` and the safe API's `App::init` call it. Nothing
//! here logs or counts: what a C program gets for diagnostics is the C
//! ABI's business ([`crate::capi`]).

use std::ffi::{c_char, c_int, c_void};
use std::panic::catch_unwind;
use std::sync::atomic::AtomicU32;
use std::sync::OnceLock;

use crate::engine;
use crate::engine::locks::OpKind;
use crate::engine::solo::{LockFreeWords, Solo};
use crate::engine::Vls;
use crate::handle::{Vlsh, MAX_SESSIONS};
use crate::real_vcl::RealVcl;
use crate::seam::Vcl;

static VLS: OnceLock<&'static Vls<RealVcl>> = OnceLock::new();

/// The process VLS's lock-free words (see `engine::solo`): zero-initialised
/// statics, so the 4 MiB cost address space only.
static LOCK_FREE_WORDS: LockFreeWords = [const { AtomicU32::new(0) }; MAX_SESSIONS];

/// The process VLS's single-thread state, at a fixed address: the
/// lock-free read and write below reach it without loading [`VLS`]. It
/// is only started by the process VLS, at app creation, so until then
/// the fast path is refused.
static SOLO: Solo = Solo::new(&LOCK_FREE_WORDS);

/// The process's VLS, made on first use.
pub(crate) fn vls() -> &'static Vls<RealVcl> {
    VLS.get_or_init(|| Vls::new_static_with(RealVcl::new(), &SOLO))
}

/// `vls_read` on the process VLS if it can be done without locks (see
/// `engine::lock_free_on`); `None` otherwise. Cannot panic.
///
/// # Safety
/// `buf` valid for `n` writable bytes.
#[inline(always)]
pub(crate) unsafe fn read_lock_free(vlsh: Vlsh, buf: *mut c_void, n: usize) -> Option<i32> {
    // SAFETY: forwarded contract; `SOLO` is the process VLS's, over the
    // process's VCL.
    engine::lock_free_on(&SOLO, vlsh, OpKind::Read, |sh| unsafe { RealVcl::new().read(sh, buf, n) }).ok()
}

/// `vls_write` on the process VLS if it can be done without locks (as
/// [`read_lock_free`]); `None` otherwise. Cannot panic.
///
/// # Safety
/// `buf` valid for `n` readable bytes.
#[inline(always)]
pub(crate) unsafe fn write_lock_free(vlsh: Vlsh, buf: *mut c_void, n: usize) -> Option<i32> {
    // SAFETY: as `read_lock_free`.
    engine::lock_free_on(&SOLO, vlsh, OpKind::Write, |sh| unsafe { RealVcl::new().write(sh, buf, n) }).ok()
}

/// The process's VLS if it exists already (for paths where making it must
/// not happen, e.g. outside `catch_unwind`).
#[inline]
pub(crate) fn vls_if_made() -> Option<&'static Vls<RealVcl>> {
    VLS.get().copied()
}

/// Attaches the process to VPP as `app_name` (VCL's application create)
/// and arranges for VLS to stand aside before VCL's exit handler runs.
///
/// # Safety
/// `app_name` is null or a valid C string.
pub(crate) unsafe fn attach(app_name: *mut c_char) -> c_int {
    // SAFETY: forwarded contract; null is rejected by the engine.
    let rv = unsafe { vls().app_create(app_name) };
    if rv == 0 {
        // After VCL's own (registered by the create), so it runs first.
        // SAFETY: registers a plain `extern "C" fn()`.
        unsafe { libc::atexit(before_vcl_exit) };
    }
    rv
}

/// Runs at exit before VCL's exit handler (see `Vls::process_exiting`).
extern "C" fn before_vcl_exit() {
    // Nothing may unwind out of an atexit handler.
    let _ = catch_unwind(|| vls().process_exiting());
}
