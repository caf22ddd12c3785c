//! Handles: the VLS handle an application holds and the VCL session handle
//! it maps to.
//!
//! A VLS handle (`vlsh`) is the index of a session in VLS's pool (LDP turns
//! it into a file descriptor); a VCL session handle (`sh`) names a session
//! of one VCL worker. This module only defines them and imports nothing of
//! the crate, so every other module can use them.

/// A VLS handle, as in `vcl_locked.h` (`vls_handle_t`).
pub type Vlsh = i32;

/// `VLS_INVALID_HANDLE`.
pub const INVALID_VLSH: Vlsh = -1;

/// Sessions a process may have open at once (so up to 1M): every valid
/// VLS handle is below this.
pub const MAX_SESSIONS: usize = 1 << 20;

/// A VCL session handle: VCL worker index in the top 8 bits, session index
/// in the low 24.
pub type Sh = u32;

/// "No session" / "no worker".
pub const INVALID: u32 = u32::MAX;

/// Builds a session handle from its worker and session index.
#[inline]
pub fn sh_from_parts(wrk_index: u32, session_index: u32) -> Sh {
    (wrk_index << 24) | (session_index & 0x00FF_FFFF)
}

/// Splits a session handle into (worker index, session index).
#[inline]
pub fn sh_parts(sh: Sh) -> (u32, u32) {
    (sh >> 24, sh & 0x00FF_FFFF)
}
