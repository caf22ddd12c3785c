//! TCP echo client over VPP: sends BYTES (default 64 MiB), checks that every
//! byte comes back, prints the throughput.
//!
//! ```text
//! cargo run --release --features vpp --example echo_client
//! ```
//! starts a private VPP, then an echo server and the client (this program
//! again, in two child processes: one VCL application per process). With `VCL_CONFIG` set it connects to a
//! running server instead:
//! `VCL_CONFIG=... cargo run --features vpp --example echo_client -- [ADDR [BYTES]]`.

mod common;

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::thread;
use std::time::Instant;

use vls::{App, TcpListener};
use vpp_harness::role;

const CHUNK: usize = 64 * 1024;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = common::addr_arg(args.first(), "127.0.0.1:7000")?;
    let bytes = common::bytes_arg(args.get(1), 64 << 20)?;

    match role().as_deref() {
        Some("echo-server") => {
            App::init("echo-server")?;
            let listener = TcpListener::bind(addr)?;
            common::serve_echo(&listener)
        }
        // Without VCL_CONFIG this process only runs VPP and the two roles.
        None if std::env::var_os("VCL_CONFIG").is_none() => {
            common::run_server_and_client("echo-server", "echo-client", &args)
        }
        // This example's own role, also with a VCL_CONFIG of the user's.
        _ => {
            App::init("echo-client")?;
            run(addr, bytes)
        }
    }
}

fn run(addr: SocketAddr, bytes: u64) -> io::Result<()> {
    let stream = common::connect_retrying(addr)?;
    println!("echo_client: connected {} -> {}", stream.local_addr()?, stream.peer_addr()?);
    let started = Instant::now();
    let pattern = |i: u64| (i % 251) as u8;
    thread::scope(|s| {
        let writer = s.spawn(|| -> io::Result<()> {
            let mut w = &stream;
            let mut buf = vec![0u8; CHUNK];
            let mut sent = 0u64;
            while sent < bytes {
                let n = (bytes - sent).min(CHUNK as u64) as usize;
                for (k, b) in buf[..n].iter_mut().enumerate() {
                    *b = pattern(sent + k as u64);
                }
                w.write_all(&buf[..n])?;
                sent += n as u64;
            }
            Ok(())
        });
        let mut r = &stream;
        let mut buf = vec![0u8; CHUNK];
        let mut got = 0u64;
        while got < bytes {
            let n = r.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("server closed after {got} bytes"),
                ));
            }
            for (k, &b) in buf[..n].iter().enumerate() {
                if b != pattern(got + k as u64) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("byte {} differs", got + k as u64),
                    ));
                }
            }
            got += n as u64;
        }
        writer.join().expect("writer thread")
    })?;
    let elapsed = started.elapsed();
    println!(
        "echo_client: {bytes} bytes sent and received back intact in {elapsed:.2?}: {}",
        common::rate(bytes, elapsed)
    );
    Ok(())
}
