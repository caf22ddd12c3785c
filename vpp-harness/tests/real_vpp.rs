//! The harness against a real VPP: start, CLI, isolation between
//! instances, and cleanup — also when the owning test panics. Needs the
//! feature `vpp` and an installed VPP (found by `VppInstall::discover`).

#![cfg(feature = "vpp")]

use std::panic;
use std::path::PathBuf;

use vpp_harness::VppInstance;

fn process_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

#[test]
fn starts_answers_and_cleans_up() {
    let vpp = VppInstance::start().expect("vpp starts");
    let pid = vpp.pid().expect("a VPP this test started (not VLS_VPP_EXTERNAL_DIR)");
    let dir = vpp.dir().to_path_buf();
    assert!(vpp.vppctl("show version").unwrap().contains("vpp v"));
    assert!(vpp.app_socket().exists(), "app socket missing");
    assert!(!vpp.shm_files().is_empty(), "expected API segment files under /dev/shm");
    assert!(vpp.vppctl("no such command at all").is_err(), "a rejected command is an error");
    let shm = vpp.shm_files();
    drop(vpp);
    assert!(!process_alive(pid), "vpp still running");
    assert!(!dir.exists(), "temp dir left behind");
    assert!(shm.iter().all(|f| !f.exists()), "/dev/shm files left: {shm:?}");
}

#[test]
fn cleans_up_when_the_test_panics() {
    let mut seen: Option<(u32, PathBuf, Vec<PathBuf>)> = None;
    let result = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        let vpp = VppInstance::start().expect("vpp starts");
        let pid = vpp.pid().expect("a VPP this test started (not VLS_VPP_EXTERNAL_DIR)");
        seen = Some((pid, vpp.dir().to_path_buf(), vpp.shm_files()));
        panic!("deliberate panic while VPP runs");
    }));
    assert!(result.is_err());
    let (pid, dir, shm) = seen.expect("instance was started");
    assert!(!process_alive(pid), "vpp {pid} survived the panic");
    assert!(!dir.exists(), "{} survived the panic", dir.display());
    assert!(shm.iter().all(|f| !f.exists()), "/dev/shm files survived: {shm:?}");
}

#[test]
fn two_instances_do_not_collide() {
    let a = VppInstance::start().expect("first vpp");
    let b = VppInstance::start().expect("second vpp");
    assert_ne!(a.dir(), b.dir());
    assert_ne!(a.api_prefix(), b.api_prefix());
    let la = a.setup_loopback("10.9.0.1".parse().unwrap(), 24).unwrap();
    assert!(a.vppctl("show interface addr").unwrap().contains("10.9.0.1/24"));
    assert!(!b.vppctl("show interface addr").unwrap().contains("10.9.0.1"), "b sees a's {la}");
}

/// Makes VPP's clock run `factor` times as fast, as VPP does itself when a
/// busy machine preempts it while it times the TSC at start. False if gdb
/// could not (no gdb, no debug information).
fn skew_vpp_clock(pid: u32, factor: f64) -> bool {
    let clock = "vlib_global_main.vlib_mains[0]->clib_time";
    std::process::Command::new("gdb")
        .args(["-nx", "-batch", "-p", &pid.to_string()])
        .args(["-ex", &format!("set var {clock}.clocks_per_second = {clock}.clocks_per_second / {factor:?}")])
        .args(["-ex", &format!("set var {clock}.seconds_per_clock = {clock}.seconds_per_clock * {factor:?}")])
        .output()
        .is_ok_and(|o| {
            let err = String::from_utf8_lossy(&o.stderr);
            o.status.success() && !err.contains("No symbol") && !err.contains("Cannot")
        })
}

#[test]
fn a_clock_that_does_not_keep_time_is_seen() {
    let vpp = VppInstance::start().expect("vpp starts");
    let pid = vpp.pid().expect("a VPP this test started (not VLS_VPP_EXTERNAL_DIR)");
    // What start checked: this one keeps time.
    let (low, high) = vpp.clock_rate(std::time::Duration::from_millis(200)).unwrap();
    assert!(low <= 1.01 && high >= 0.99, "a fresh VPP's clock runs at {low}..{high} times real time");
    vpp.check_clock().unwrap();
    // 10 times slow, then 10 times fast (net), then 1000 times fast: the
    // last keeps VPP too busy with its timers to answer.
    for (factor, net) in [(0.1, "0.1"), (100.0, "10"), (100.0, "1000")] {
        if !skew_vpp_clock(pid, factor) {
            eprintln!(
                "a_clock_that_does_not_keep_time_is_seen: NOT TESTED past start (gdb cannot set VPP's clock)"
            );
            return;
        }
        let check = vpp.check_clock();
        assert!(check.is_err(), "a clock running {net} times as fast passes the check");
        eprintln!("a clock running {net} times as fast: {}", check.unwrap_err());
    }
}
