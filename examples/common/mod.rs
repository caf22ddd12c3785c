//! Plumbing shared by the examples: a private VPP when the user gave no
//! `VCL_CONFIG` (the VPP vpp-sys linked), and what uses `vls` types. Running
//! a second role of the same example in a child process (VCL allows one
//! application per process, and VPP does not connect an application to its
//! own listener) is the harness' (`vpp_harness::spawn_role`).

#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use vls::TcpStream;
use vpp_harness::VppInstance;

/// Starts a private VPP: the install vpp-sys linked (`vls::ffi::VPP_PREFIX`).
pub fn start_private_vpp() -> io::Result<VppInstance> {
    eprintln!("VCL_CONFIG is not set: starting a private VPP");
    let vpp = VppInstance::start_from_prefix(vls::ffi::VPP_PREFIX)?;
    eprintln!("VPP running, runtime dir {}", vpp.dir().display());
    Ok(vpp)
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

/// [`connect_retrying`] for the async examples.
#[cfg(feature = "tokio")]
pub async fn connect_retrying_async(addr: SocketAddr) -> io::Result<vls::tokio::TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match vls::tokio::TcpStream::connect(addr).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            r => return r,
        }
    }
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

/// The address in `arg`, or `default` when there is none.
pub fn addr_arg(arg: Option<&String>, default: &str) -> io::Result<SocketAddr> {
    arg.map(String::as_str)
        .unwrap_or(default)
        .parse()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad address: {e}")))
}

/// The byte count in `arg` (an example's second argument), or `default`.
pub fn bytes_arg(arg: Option<&String>, default: u64) -> io::Result<u64> {
    match arg {
        Some(b) => {
            b.parse().map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("bad BYTES: {e}")))
        }
        None => Ok(default),
    }
}

/// Without `VCL_CONFIG`: starts a private VPP, runs this example again as
/// `server` and as `client` (two VCL applications, each with a `vcl.conf`
/// of its own, both given `args`), and exits with the client's status once
/// it ends (the server is stopped then).
pub fn run_server_and_client(server: &str, client: &str, args: &[String]) -> io::Result<()> {
    // This process only runs VPP; server and client are children.
    let vpp = start_private_vpp()?;
    let conf = |name: &str| vpp.write_vcl_conf(name, &vpp_harness::VclConf::default());
    let server = vpp_harness::spawn_role(server, &conf(server)?, args)?;
    let client = vpp_harness::spawn_role(client, &conf(client)?, args);
    vpp_harness::finish(client, vec![server])
}
