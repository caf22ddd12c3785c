//! Test bodies against a private VPP, each in a process of its own.
//!
//! VCL allows one application per process, so every test that attaches to
//! VPP runs its body in a fresh process: the parent starts a private VPP,
//! configures it, writes a `vcl.conf`, then re-runs the same test in a child
//! with `VCL_CONFIG` set, and fails if the child fails.

use std::ffi::OsString;
use std::net::Ipv4Addr;
use std::process::ExitStatus;
use std::time::Duration;

use crate::child::was_killed;
use crate::{
    in_child, role, run_test_in_child, thread_stacks, VclConf, VppInstall, VppInstance, ROLE_ENV, VPP_PID_ENV,
};

/// How long one test body may run before it is killed and failed.
pub const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// Address the server listens on in [`through_stack`] tests.
pub const STACK_SERVER: Ipv4Addr = Ipv4Addr::new(172, 16, 1, 1);

/// Runs `body` against a private VPP of `install` in a child process.
///
/// `setup` runs in the parent after VPP has started (e.g. to create
/// interfaces). `name` must be the test's own function name. The child
/// learns VPP's process id from [`VPP_PID_ENV`].
pub fn run_isolated(
    install: &VppInstall,
    name: &str,
    conf: VclConf,
    setup: impl FnOnce(&VppInstance),
    body: impl FnOnce(),
) {
    if in_child() {
        body();
        return;
    }
    let vpp = VppInstance::start_from(install.clone())
        .unwrap_or_else(|e| panic!("start a private VPP from {}: {e}", install.prefix().display()));
    setup(&vpp);
    let vcl_conf = vpp.write_vcl_conf(name, &conf).expect("write vcl.conf");
    let envs = child_envs(&vpp, vcl_conf.into_os_string());
    let out = run_test_in_child(name, &envs, CHILD_TIMEOUT).expect("spawn test child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !(out.status.success() && stdout.contains("1 passed")) {
        let mut vpp = vpp;
        let vpp_state = vpp_report(&mut vpp, was_killed(&out));
        panic!(
            "test child {name} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n{vpp_state}",
            out.status
        );
    }
}

/// For the report of a failed test child: whether VPP still runs, its
/// thread stacks if it does and a child was killed at its time limit (a
/// hang may be VPP's), and its log.
fn vpp_report(vpp: &mut VppInstance, killed: bool) -> String {
    let mut s = String::from("===== VPP =====\n");
    match (vpp.exited(), vpp.pid()) {
        (Some(status), _) => s += &format!("VPP had ended: {status}\n"),
        (None, Some(pid)) => {
            s += "VPP still runs\n";
            if killed {
                s += &thread_stacks(pid);
            }
            // What VPP holds of the apps: listeners, their workers,
            // sessions and their states, and its drop counters.
            for cmd in ["show app", "show app server", "show session verbose 2", "show errors"] {
                match vpp.vppctl_within(cmd, Duration::from_secs(5)) {
                    Ok(out) => s += &format!("----- vppctl {cmd} -----\n{out}\n"),
                    Err(e) => s += &format!("----- vppctl {cmd}: {e} -----\n"),
                }
            }
        }
        (None, None) => s += "VPP is external\n",
    }
    s += &vpp.log();
    s
}

/// The layer's log filter (`VLS_RS_LOG`), `warn` for test children unless
/// set.
const LOG_ENV: &str = "VLS_RS_LOG";

/// The environment of a test child of [`run_isolated`] or [`run_pair`]:
/// its `vcl.conf`, VPP's process id ([`VPP_PID_ENV`], if the harness
/// started VPP), and the layer's warnings and errors on its stderr, which
/// the report of a failed run shows (unless the caller chose a filter).
fn child_envs(vpp: &VppInstance, vcl_conf: OsString) -> Vec<(&'static str, OsString)> {
    let mut envs = vec![("VCL_CONFIG", vcl_conf)];
    if let Some(pid) = vpp.pid() {
        envs.push((VPP_PID_ENV, pid.to_string().into()));
    }
    if std::env::var_os(LOG_ENV).is_none() {
        envs.push((LOG_ENV, "warn".into()));
    }
    envs
}

/// Both sides in the default namespace, cut-through.
pub fn cut_through(_: &VppInstance) -> (VclConf, VclConf) {
    (VclConf::default(), VclConf::default())
}

/// Server and client in two app namespaces, through VPP's IP stack; the
/// server listens on the first namespace's address ([`STACK_SERVER`]).
pub fn through_stack(vpp: &VppInstance) -> (VclConf, VclConf) {
    let (srv, cli) = vpp.setup_stack_namespaces().expect("namespaces");
    assert_eq!(srv.addr, STACK_SERVER);
    (VclConf::in_namespace(&srv), VclConf::in_namespace(&cli))
}

/// Runs `server` and `client` in two child processes (two VCL apps: VPP
/// never connects an app to its own listener over cut-through) against one
/// private VPP of `install`, and fails unless both succeed. `setup` gives
/// the two sides' `vcl.conf` (e.g. [`cut_through`], [`through_stack`]).
/// Each child learns its side from [`ROLE_ENV`] (and VPP's process id
/// from [`VPP_PID_ENV`]).
pub fn run_pair(
    install: &VppInstall,
    name: &str,
    setup: impl FnOnce(&VppInstance) -> (VclConf, VclConf),
    server: impl FnOnce(),
    client: impl FnOnce(),
) {
    if let Some(outcome) = run_pair_outcome(install, name, setup, server, client) {
        assert!(outcome.ok, "{name} failed:\n{}", outcome.report);
    }
}

/// What a [`run_pair_outcome`] run gave.
#[derive(Debug)]
pub struct PairOutcome {
    /// Both sides succeeded.
    pub ok: bool,
    /// Both sides' status, stdout and stderr; if a side failed, also
    /// VPP's state and log (and, while VPP still ran, its apps, sessions
    /// and error counters, and its stacks if a side was killed at its time
    /// limit).
    pub report: String,
    /// VPP itself had ended (crashed) by the time both sides were done.
    pub vpp_died: Option<ExitStatus>,
}

/// [`run_pair`] without the verdict: in the parent, how the two sides and
/// VPP fared (`None` in a child, after running its side). For tests that
/// tell a failure of VPP itself from one of the code under test.
pub fn run_pair_outcome(
    install: &VppInstall,
    name: &str,
    setup: impl FnOnce(&VppInstance) -> (VclConf, VclConf),
    server: impl FnOnce(),
    client: impl FnOnce(),
) -> Option<PairOutcome> {
    if in_child() {
        match role().as_deref() {
            Some("server") => server(),
            Some("client") => client(),
            other => panic!("unknown role {other:?}"),
        }
        return None;
    }
    let mut vpp = VppInstance::start_from(install.clone())
        .unwrap_or_else(|e| panic!("start a private VPP from {}: {e}", install.prefix().display()));
    let (server_conf, client_conf) = setup(&vpp);
    let spawn = |role: &str| {
        let conf = if role == "server" { &server_conf } else { &client_conf };
        let path = vpp.write_vcl_conf(&format!("{name}-{role}"), conf).expect("write vcl.conf");
        let mut envs = child_envs(&vpp, path.into_os_string());
        envs.push((ROLE_ENV, role.into()));
        let name = name.to_string();
        std::thread::spawn(move || run_test_in_child(&name, &envs, CHILD_TIMEOUT))
    };
    let (srv, cli) = (spawn("server"), spawn("client"));
    let mut report = String::new();
    let mut ok = true;
    let mut killed = false;
    for (role, h) in [("server", srv), ("client", cli)] {
        let out = h.join().unwrap().expect("spawn test child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let role_ok = out.status.success() && stdout.contains("1 passed");
        ok &= role_ok;
        killed |= was_killed(&out);
        report += &format!(
            "===== {role} ({}, {}) =====\n--- stdout ---\n{stdout}\n--- stderr ---\n{}\n",
            out.status,
            if role_ok { "ok" } else { "FAILED" },
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let vpp_died = vpp.exited();
    if !ok {
        report += &vpp_report(&mut vpp, killed);
    }
    Some(PairOutcome { ok, report, vpp_died })
}
