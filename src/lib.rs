//! # vls — VCL Locked Sessions for VPP's host stack, in Rust
//!
//! VPP applications use VCL (`libvppcom`) to open sessions on VPP's host
//! stack. VCL is not thread safe: sessions and message queues belong to a VCL
//! *worker* that one thread at a time may use. VLS is the layer above VCL that
//! makes it usable from multi-threaded and multi-process programs, and the
//! layer `libvcl_ldpreload` calls for every socket operation.
//!
//! This crate is being built in stages. Present today:
//!
//! - [`error`]: VPPCOM return codes, their names and `io::Error` mapping;
//! - [`sockaddr`]: `SocketAddr` ⇄ VCL endpoint conversion;
//! - [`harness`]: starts a private VPP for tests and examples;
//! - `vcl` (feature `vpp`): thin safe wrappers over `vppcom_*`, the only
//!   place that calls into libvppcom.
//!
//! - [`core`]: the VLS core over the [`seam::Vcl`] trait: session pool and
//!   handle table, thread detection, mode 3 locking;
//! - `capi` (feature `vpp`): the `vls_*` C ABI of `vcl_locked.h`.
//!
//! Not yet implemented: session migration between per-thread workers
//! (mode 2 refuses a foreign session with `EBADFD`), fork handling
//! (mode 1), per-epoll-set event demultiplexing in mode 3, and the
//! `std::net`-like API.
//!
//! Building with the `vpp` feature needs an installed VPP and its source tree
//! (see the README: `VPP_PREFIX`, `VPP_SRC_DIR`).

#[cfg(feature = "vpp")]
pub mod capi;
pub mod core;
pub mod error;
pub mod harness;
pub mod seam;
pub mod sockaddr;
#[cfg(feature = "vpp")]
pub mod vcl;

pub use error::{cvt, VppcomError};

/// The raw libvppcom bindings (`vpp-sys`), for code that needs a type or
/// call this crate does not wrap.
#[cfg(feature = "vpp")]
pub use vpp_sys as ffi;
