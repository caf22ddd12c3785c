//! Below the safe API: what tests, benchmarks and diagnostics of a VPP
//! application need and ordinary code does not.
//!
//! - [`vcl`]: single-thread wrappers of the raw `vppcom_*` calls, with no
//!   VLS in between (for comparisons with plain VCL and for programs that
//!   manage VCL workers themselves). Their contract is in the module docs:
//!   in a process that also uses VLS, only VLS may call VCL.
//! - [`Endpoint`] and [`with_endpt`]: `SocketAddr` ⇄ VCL's
//!   `vppcom_endpt_t`, for `vppcom_*` and `vls_*` calls made by hand.
//! - Diagnostics of the process-wide VLS ([`lock_free_io`],
//!   [`threads_waiting_in_vcl`]) and of the machine
//!   ([`lock_free_expected`]): what a test waits for instead of assuming a
//!   thread has blocked by now, or checks before it relies on the
//!   lock-free single-thread path.
//!
//! ```no_run
//! # #[cfg(feature = "vpp")]
//! # fn main() -> std::io::Result<()> {
//! use vls::{raw, App, TcpListener};
//!
//! App::init("diag")?;
//! let listener = TcpListener::bind("127.0.0.1:7001")?;
//! std::thread::spawn(move || listener.accept());
//! while raw::threads_waiting_in_vcl() == 0 {
//!     std::thread::yield_now(); // the accept has not blocked yet
//! }
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "vpp"))]
//! # fn main() {}
//! ```

#[cfg(feature = "vpp")]
pub mod vcl;

pub use crate::engine::solo::lock_free_expected;
#[cfg(feature = "vpp")]
pub use crate::sockaddr::with_endpt;
pub use crate::sockaddr::Endpoint;

/// Whether the process's single thread does its non-blocking reads and
/// writes without any lock right now (true until a second thread uses
/// VLS, where `membarrier(2)` is available).
#[cfg(feature = "vpp")]
pub fn lock_free_io() -> bool {
    crate::process::vls().lock_free_io()
}

/// Threads of this process blocked inside VCL right now (a blocking read or
/// write; a blocking accept with per-thread workers), as counted by VLS.
#[cfg(feature = "vpp")]
pub fn threads_waiting_in_vcl() -> u32 {
    crate::process::vls().threads_waiting_in_vcl()
}

/// Threads of this process in a blocking accept, waiting for a connection
/// right now. In modes 1 and 3 VLS waits for those itself, outside VCL, so
/// they are not in [`threads_waiting_in_vcl`].
#[cfg(feature = "vpp")]
pub fn threads_waiting_to_accept() -> u32 {
    crate::process::vls().threads_waiting_to_accept()
}

/// Sessions (and epoll sets) of this process's VLS that are open now: the
/// live entries of its session pool. A program that has closed every
/// handle it made sees 0.
#[cfg(feature = "vpp")]
pub fn open_sessions() -> usize {
    crate::process::vls().pool().len()
}

/// Entries of VLS's VCL-handle → VLS-handle table now (one per open
/// session that has a VCL session); 0 once every handle is closed.
#[cfg(feature = "vpp")]
pub fn mapped_vcl_sessions() -> usize {
    crate::process::vls().pool().table_len()
}

/// Per-process workers: the forked children of this process that VLS knows
/// of and has not cleaned up yet, as (VCL worker index, pid).
#[cfg(feature = "vpp")]
pub fn forked_children() -> Vec<(u32, i32)> {
    crate::process::vls().forked_children()
}

/// Per-process workers: sessions shared with forked relatives now, in the
/// whole family of processes.
#[cfg(feature = "vpp")]
pub fn shared_sessions() -> usize {
    crate::process::vls().shared_sessions()
}

/// Per-process workers: how many processes hold a copy of session `vlsh`
/// (0 if it is not shared).
#[cfg(feature = "vpp")]
pub fn sharers(vlsh: crate::handle::Vlsh) -> u32 {
    crate::process::vls().sharers(vlsh)
}

/// Per-process workers: connections this process closed while relatives
/// still use them, whose VPP owner its copy stays because VPP cannot hand
/// them over safely (their FIFOs grew past the first chunk).
#[cfg(feature = "vpp")]
pub fn kept_connections() -> usize {
    crate::process::vls().kept_connections()
}

/// The mode the process-wide VLS is in now (as [`crate::App::mode`], also
/// for programs that attached through the C ABI).
#[cfg(feature = "vpp")]
pub fn mode() -> crate::Mode {
    crate::process::vls().mode()
}
