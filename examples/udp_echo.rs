//! UDP echo over VPP's IP stack.
//!
//! ```text
//! cargo run --release --features vpp --example udp_echo
//! ```
//! starts a private VPP with two app namespaces joined by VPP's IP stack,
//! an echo server in one and a client in the other (this program again, in
//! two child processes), sends 1000 datagrams and counts the echoes. With
//! `VCL_CONFIG` set: `udp_echo server ADDR` or `udp_echo client ADDR`.

mod common;

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use vls::{App, UdpSocket};
use vpp_harness::{finish, spawn_role, VclConf};

const DATAGRAMS: u32 = 1000;
const SIZE: usize = 1200;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let role = vpp_harness::role().or_else(|| args.first().cloned());
    let addr_arg = if vpp_harness::role().is_some() { args.first() } else { args.get(1) };
    let addr = |default: &str| common::addr_arg(addr_arg, default);
    match (role.as_deref(), std::env::var_os("VCL_CONFIG").is_some()) {
        (Some("server"), true) => {
            App::init("udp-echo-server")?;
            server(addr("0.0.0.0:7001")?)
        }
        (Some("client"), true) => {
            App::init("udp-echo-client")?;
            client(addr("172.16.1.1:7001")?)
        }
        (_, true) => Err(io::Error::new(io::ErrorKind::InvalidInput, "usage: udp_echo server|client ADDR")),
        (_, false) => {
            let vpp = common::start_private_vpp()?;
            let (srv, cli) = vpp.setup_stack_namespaces()?;
            let target = SocketAddr::from((srv.addr, 7001)).to_string();
            let server = spawn_role(
                "server",
                &vpp.write_vcl_conf("udp-echo-server", &VclConf::in_namespace(&srv))?,
                std::slice::from_ref(&target),
            )?;
            let client = spawn_role(
                "client",
                &vpp.write_vcl_conf("udp-echo-client", &VclConf::in_namespace(&cli))?,
                std::slice::from_ref(&target),
            );
            finish(client, vec![server])
        }
    }
}

fn server(addr: SocketAddr) -> io::Result<()> {
    let sock = UdpSocket::bind(addr)?;
    println!("udp_echo: server on {}", sock.local_addr()?);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let (n, from) = sock.recv_from(&mut buf)?;
        sock.send_to(&buf[..n], from)?;
    }
}

/// A socket connected to `server` that has had one datagram echoed: the
/// server may not be bound yet when the client starts (a datagram to an
/// unbound port fails the socket), so retry with a new socket for 10 s.
fn first_echo(server: SocketAddr) -> io::Result<UdpSocket> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let attempt = (|| {
            let sock = UdpSocket::connect_to(server)?;
            sock.set_read_timeout(Some(Duration::from_millis(200)))?;
            sock.send(b"hello")?;
            let mut buf = [0u8; 16];
            let n = sock.recv(&mut buf)?;
            if &buf[..n] != b"hello" {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "first echo differs"));
            }
            sock.set_read_timeout(Some(Duration::from_secs(1)))?;
            Ok(sock)
        })();
        match attempt {
            Ok(sock) => return Ok(sock),
            Err(e) if Instant::now() < deadline && e.kind() != io::ErrorKind::InvalidData => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Sends DATAGRAMS datagrams one at a time, each waiting for its echo (1 s,
/// then it counts as lost).
fn client(server: SocketAddr) -> io::Result<()> {
    let sock = first_echo(server)?;
    println!("udp_echo: client {} -> {server}", sock.local_addr()?);
    let started = Instant::now();
    let (mut echoed, mut lost) = (0u32, 0u32);
    let mut back = vec![0u8; 64 * 1024];
    for i in 0..DATAGRAMS {
        let mut d = vec![(i % 256) as u8; SIZE];
        d[..4].copy_from_slice(&i.to_be_bytes());
        sock.send(&d)?;
        match sock.recv(&mut back) {
            Ok(n) if back[..n] == d[..] => echoed += 1,
            Ok(n) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("datagram {i}: {n} bytes, wrong content"),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::TimedOut => lost += 1,
            Err(e) => return Err(e),
        }
    }
    let elapsed = started.elapsed();
    println!(
        "udp_echo: {echoed} of {DATAGRAMS} datagrams of {SIZE} bytes echoed, {lost} lost, {:.1} µs per round trip",
        elapsed.as_secs_f64() * 1e6 / DATAGRAMS as f64
    );
    if echoed < DATAGRAMS * 9 / 10 {
        return Err(io::Error::other("more than 10% of the datagrams were lost"));
    }
    Ok(())
}
