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

#[cfg(feature = "vpp")]
pub mod capi;

/// How long one test body may run before it is killed and failed.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

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

/// Environment variable telling a child of [`run_pair`] its role.
pub const ROLE_ENV: &str = "VLS_TEST_ROLE";

/// Both sides in the default namespace, cut-through.
pub fn cut_through(_: &VppInstance) -> (VclConf, VclConf) {
    (VclConf::default(), VclConf::default())
}

/// Server and client in two app namespaces, through VPP's IP stack; the
/// server listens on the first namespace's address.
pub fn through_stack(vpp: &VppInstance) -> (VclConf, VclConf) {
    let (srv, cli) = vpp.setup_stack_namespaces().expect("namespaces");
    assert_eq!(srv.addr, STACK_SERVER);
    (VclConf::in_namespace(&srv), VclConf::in_namespace(&cli))
}

/// Address the server listens on in [`through_stack`] tests.
pub const STACK_SERVER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(172, 16, 1, 1);

/// Runs `server` and `client` in two child processes (two VCL apps: VPP
/// never connects an app to its own listener over cut-through) against one
/// private VPP, and fails unless both succeed.
pub fn run_pair(
    name: &str,
    setup: impl FnOnce(&VppInstance) -> (VclConf, VclConf),
    server: impl FnOnce(),
    client: impl FnOnce(),
) {
    if harness::in_child() {
        match std::env::var(ROLE_ENV).as_deref() {
            Ok("server") => server(),
            Ok("client") => client(),
            other => panic!("unknown role {other:?}"),
        }
        return;
    }
    let vpp = VppInstance::start().expect("start a private VPP (set VPP_PREFIX)");
    let (server_conf, client_conf) = setup(&vpp);
    let spawn = |role: &str| {
        let conf = if role == "server" { &server_conf } else { &client_conf };
        let path = vpp.write_vcl_conf(&format!("{name}-{role}"), conf).expect("write vcl.conf");
        let envs: Vec<(&str, OsString)> =
            vec![("VCL_CONFIG", path.into_os_string()), (ROLE_ENV, role.into())];
        let name = name.to_string();
        std::thread::spawn(move || harness::run_test_in_child(&name, &envs, CHILD_TIMEOUT))
    };
    let (srv, cli) = (spawn("server"), spawn("client"));
    let mut report = String::new();
    let mut ok = true;
    for (role, h) in [("server", srv), ("client", cli)] {
        let out = h.join().unwrap().expect("spawn test child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let role_ok = out.status.success() && stdout.contains("1 passed");
        ok &= role_ok;
        report += &format!(
            "===== {role} ({}, {}) =====\n--- stdout ---\n{stdout}\n--- stderr ---\n{}\n",
            out.status,
            if role_ok { "ok" } else { "FAILED" },
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(ok, "{name} failed:\n{report}");
}

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
