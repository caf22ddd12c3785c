//! Shared plumbing of the real-VPP tests: the harness' isolated runners
//! (`vpp_harness::run_isolated`, `run_pair`), started with the VPP that
//! vpp-sys linked, and what needs this package (`vls` types, its cargo).

#![allow(dead_code)]

use std::time::Duration;

use vpp_harness::{VclConf, VppInstall, VppInstance};

#[cfg(feature = "vpp")]
pub mod capi;

/// The VPP install vpp-sys linked (`vls::ffi::VPP_PREFIX`): the suite
/// starts this one, whatever `VPP_PREFIX` says at run time.
pub fn linked_vpp() -> VppInstall {
    VppInstall::at(vls::ffi::VPP_PREFIX).expect("the VPP install vpp-sys linked")
}

/// [`vpp_harness::run_isolated`] with the VPP vpp-sys linked.
pub fn run_isolated(name: &str, conf: VclConf, setup: impl FnOnce(&VppInstance), body: impl FnOnce()) {
    vpp_harness::run_isolated(&linked_vpp(), name, conf, setup, body)
}

/// [`vpp_harness::run_pair`] with the VPP vpp-sys linked.
pub fn run_pair(
    name: &str,
    setup: impl FnOnce(&VppInstance) -> (VclConf, VclConf),
    server: impl FnOnce(),
    client: impl FnOnce(),
) {
    vpp_harness::run_pair(&linked_vpp(), name, setup, server, client)
}

/// What [`run_pair`] is given to configure the two sides (e.g.
/// [`vpp_harness::through_stack`], [`vpp_harness::cut_through`]).
pub type PairSetup = fn(&VppInstance) -> (VclConf, VclConf);

/// Two `#[test]`s of `$body(name, addr, setup)`, one per path between the
/// two sides: `$stack` through VPP's IP stack (the server on
/// [`vpp_harness::STACK_SERVER`], port `$stack_port`) and `$ct` over
/// cut-through (`127.0.0.1`, port `$ct_port`); each test passes its own
/// name.
#[allow(unused_macros)]
macro_rules! stack_and_cut_through {
    ($body:ident: $stack:ident on $stack_port:expr, $ct:ident on $ct_port:expr) => {
        #[test]
        fn $stack() {
            $body(
                stringify!($stack),
                std::net::SocketAddr::from((vpp_harness::STACK_SERVER, $stack_port)),
                vpp_harness::through_stack,
            );
        }

        #[test]
        fn $ct() {
            $body(
                stringify!($ct),
                std::net::SocketAddr::from(([127, 0, 0, 1], $ct_port)),
                vpp_harness::cut_through,
            );
        }
    };
}
#[allow(unused_imports)]
pub(crate) use stack_and_cut_through;

/// Retries `f` while it fails with `ECONNREFUSED` (the peer process may
/// not be listening yet), for up to 10 s.
pub fn retry_refused<T>(mut f: impl FnMut() -> Result<T, vls::VppcomError>) -> Result<T, vls::VppcomError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(e) if e == vls::VppcomError::ECONNREFUSED && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            r => return r,
        }
    }
}

/// The features this test was built with, for the builds it runs itself:
/// the package's library has no hash in its file names (it is also a
/// cdylib), so a build with other features would replace the one the rest
/// of the run (the doc tests) links.
pub fn features() -> &'static str {
    if cfg!(feature = "tokio") {
        "vpp,tokio"
    } else {
        "vpp"
    }
}

/// Runs `cargo build <args>` in this package (as the tests' own cargo) and
/// returns the target directory it built into.
pub fn cargo_build(args: &[&str]) -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = std::process::Command::new(env!("CARGO"))
        .arg("build")
        .args(args)
        .current_dir(root)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build {args:?} failed");
    std::env::var_os("CARGO_TARGET_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| root.join("target"))
}
