//! Shared plumbing of the real-VPP tests.
//!
//! VCL allows one application per process, so every test that attaches to
//! VPP runs its body in a fresh process: the parent starts a private VPP,
//! configures it, writes a `vcl.conf`, then re-runs the same test in a child
//! with `VCL_CONFIG` set, and fails if the child fails.

#![allow(dead_code)]

use std::ffi::OsString;
use std::time::Duration;

use vls::harness::{self, VclConf, VppInstance};

/// How long one test body may run before it is killed and failed.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `body` against a private VPP in a child process.
///
/// `setup` runs in the parent after VPP has started (e.g. to create
/// interfaces). `name` must be the test's own function name.
pub fn run_isolated(name: &str, conf: VclConf, setup: impl FnOnce(&VppInstance), body: impl FnOnce()) {
    if harness::in_child() {
        body();
        return;
    }
    let vpp = VppInstance::start().expect("start a private VPP (set VPP_PREFIX)");
    setup(&vpp);
    let vcl_conf = vpp.write_vcl_conf(name, &conf).expect("write vcl.conf");
    let envs: Vec<(&str, OsString)> = vec![("VCL_CONFIG", vcl_conf.into_os_string())];
    let out = harness::run_test_in_child(name, &envs, CHILD_TIMEOUT).expect("spawn test child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "test child {name} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
}

/// Deterministic pseudo-random bytes (xorshift), so every byte is checked.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
