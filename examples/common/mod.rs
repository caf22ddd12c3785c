//! Plumbing shared by the examples: a private VPP when the user gave no
//! `VCL_CONFIG`, and running a second role of the same example in a child
//! process (VCL allows one application per process, and VPP does not
//! connect an application to its own listener).

#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use vls::harness::{VclConf, VppInstance};
use vls::TcpStream;

/// Environment variable naming the role a child process plays.
pub const ROLE_ENV: &str = "VLS_EXAMPLE_ROLE";

/// The role this process was started for, if it is a child.
pub fn role() -> Option<String> {
    std::env::var(ROLE_ENV).ok()
}

/// A private VPP the example started, with the `vcl.conf` files it wrote.
pub struct PrivateVpp {
    pub vpp: VppInstance,
}

impl PrivateVpp {
    /// Starts VPP (from `VPP_PREFIX`, default `/opt/vpp`).
    pub fn start() -> io::Result<PrivateVpp> {
        eprintln!("VCL_CONFIG is not set: starting a private VPP");
        let vpp = VppInstance::start()?;
        eprintln!("VPP running, runtime dir {}", vpp.dir().display());
        Ok(PrivateVpp { vpp })
    }

    /// Writes a `vcl.conf` for an application of this VPP.
    pub fn vcl_conf(&self, name: &str, conf: &VclConf) -> io::Result<PathBuf> {
        self.vpp.write_vcl_conf(name, conf)
    }
}

/// Runs this example again as `role` with `VCL_CONFIG=conf` and `args`.
/// The child gets SIGTERM if this process dies first.
pub fn spawn_role(role: &str, conf: &PathBuf, args: &[String]) -> io::Result<Child> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(args).env(ROLE_ENV, role).env("VCL_CONFIG", conf);
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        })
    };
    cmd.spawn()
}

/// Connects, retrying while the server is not listening yet (10 s).
pub fn connect_retrying(addr: SocketAddr) -> io::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(50))
            }
            r => return r,
        }
    }
}

/// Stops a child role process.
pub fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Bytes per second as a human-readable rate.
pub fn rate(bytes: u64, d: Duration) -> String {
    let bps = bytes as f64 / d.as_secs_f64().max(1e-9);
    format!("{:.1} MB/s ({:.2} Gbit/s)", bps / 1e6, bps * 8.0 / 1e9)
}

/// Echoes every byte back on each accepted connection (a thread per
/// connection) until the peer closes; prints per-connection totals.
pub fn serve_echo(listener: &vls::TcpListener) -> io::Result<()> {
    use std::io::{Read, Write};
    loop {
        let (mut stream, peer) = listener.accept()?;
        thread::spawn(move || {
            let started = Instant::now();
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0u64;
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Err(e) = stream.write_all(&buf[..n]) {
                            eprintln!("echo_server: {peer}: write: {e}");
                            return;
                        }
                        total += n as u64;
                    }
                    Err(e) => {
                        eprintln!("echo_server: {peer}: read: {e}");
                        return;
                    }
                }
            }
            println!("echo_server: {peer}: echoed {total} bytes, {}", rate(total, started.elapsed()));
        });
    }
}

/// Waits for `main` (a child role), stops `others`, and exits with `main`'s
/// status.
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

/// The address in `arg`, or `default` when there is none.
pub fn addr_arg(arg: Option<&String>, default: &str) -> io::Result<SocketAddr> {
    arg.map(String::as_str)
        .unwrap_or(default)
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad address: {e}")))
}
