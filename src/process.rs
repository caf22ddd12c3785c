//! The process-wide VLS, shared by the C ABI and the safe API.
//!
//! VCL allows one application per process, so there is one [`Vls`] per
//! process, made on first use and never freed (VCL's own state lives as
//! long). [`attach`] is the one application create of both APIs: the C
//! ABI's `vls_app_create` and the safe API's `App::init` call it. Nothing
//! here logs or counts: what a C program gets for diagnostics is the C
//! ABI's business ([`crate::capi`]).

use std::ffi::{c_char, c_int};
use std::panic::catch_unwind;
use std::sync::OnceLock;

use crate::engine::Vls;
use crate::real_vcl::RealVcl;

static VLS: OnceLock<&'static Vls<RealVcl>> = OnceLock::new();

/// The process's VLS, made on first use.
pub(crate) fn vls() -> &'static Vls<RealVcl> {
    VLS.get_or_init(|| Vls::new_static(RealVcl::new()))
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
