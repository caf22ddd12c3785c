//! Roles: one program run again in child processes, each child playing a
//! part (a server, a client) named in its environment. VCL allows one
//! application per process, and VPP does not connect an application to its
//! own listener over cut-through, so two VCL peers are two processes.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{Child, Command};

use crate::child::die_with_parent;

/// Environment variable naming the role a child process plays (set by
/// [`spawn_role`] and by [`run_pair`](crate::run_pair)).
pub const ROLE_ENV: &str = "VLS_HARNESS_ROLE";

/// Environment variable giving the test children of
/// [`run_isolated`](crate::run_isolated) and [`run_pair`](crate::run_pair)
/// the process id of their private VPP (for tests of how an application
/// copes with a VPP that is paused or killed); absent for a VPP the harness
/// did not start.
pub const VPP_PID_ENV: &str = "VLS_HARNESS_VPP_PID";

/// The private VPP's process id, in a test child whose VPP the harness
/// started.
pub fn vpp_pid() -> Option<libc::pid_t> {
    std::env::var(VPP_PID_ENV).ok()?.parse().ok()
}

/// The role this process was started for, if it is such a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// Runs the current program again as `role`, with `VCL_CONFIG=conf` and
/// `args`; its output goes where this process's goes. The child gets
/// SIGTERM if the calling thread ends first ([`die_with_parent`]).
pub fn spawn_role<I>(role: &str, conf: &Path, args: I) -> io::Result<Child>
where
    I: IntoIterator,
    I::Item: AsRef<OsStr>,
{
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(args).env(ROLE_ENV, role).env("VCL_CONFIG", conf);
    die_with_parent(&mut cmd).spawn()
}

/// Stops a child role process (SIGKILL) and reaps it.
pub fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for `main` (a child role), stops `others`, and fails unless `main`
/// succeeded.
pub fn finish(main: io::Result<Child>, others: Vec<Child>) -> io::Result<()> {
    let status = main.and_then(|mut c| c.wait());
    for c in others {
        stop(c);
    }
    let status = status?;
    if !status.success() {
        return Err(io::Error::other(format!("child failed: {status}")));
    }
    Ok(())
}
