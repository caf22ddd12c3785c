//! Async TCP echo over VPP with tokio (`vls::tokio`): a server that echoes
//! each connection in a task of its own, and a client that streams BYTES
//! (default 16 MiB) through it on CONNS connections at once (a writer and
//! a reader task each), checking every byte.
//!
//! ```text
//! cargo run --release --features vpp,tokio --example tokio_echo
//! ```
//! starts a private VPP, then the server and the client (this program
//! again, in two child processes: one VCL application per process), and
//! exits 0 once every byte came back. With `VCL_CONFIG` set it only serves,
//! on ADDR (default 127.0.0.1:7000), until killed:
//! `VCL_CONFIG=... cargo run --features vpp,tokio --example tokio_echo -- [ADDR]`.

mod common;

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vls::tokio::TcpListener;
use vls::App;
use vpp_harness::role;

const CONNS: usize = 4;
const CHUNK: usize = 64 * 1024;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = common::addr_arg(args.first(), "127.0.0.1:7000")?;
    let bytes = common::bytes_arg(args.get(1), 16 << 20)?;
    match role().as_deref() {
        Some("tokio-echo-client") => {
            App::init("tokio-echo-client")?;
            runtime()?.block_on(client(addr, bytes))
        }
        // Without VCL_CONFIG this process only runs VPP and the two roles.
        None if std::env::var_os("VCL_CONFIG").is_none() => {
            common::run_server_and_client("tokio-echo-server", "tokio-echo-client", &args)
        }
        // This example's own role, also with a VCL_CONFIG of the user's.
        _ => {
            App::init("tokio-echo-server")?;
            runtime()?.block_on(serve(addr))
        }
    }
}

/// A multi-thread runtime: without `multi-thread-workers` in `vcl.conf`,
/// all its threads share the process's VCL worker (VLS mode 3).
fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

async fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("tokio_echo: listening on {addr}");
    loop {
        let (mut stream, peer) = listener.accept().await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            let mut total = 0u64;
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        if let Err(e) = stream.write_all(&buf[..n]).await {
                            eprintln!("tokio_echo: {peer}: write: {e}");
                            return;
                        }
                        total += n as u64;
                    }
                    Err(e) => {
                        eprintln!("tokio_echo: {peer}: read: {e}");
                        return;
                    }
                }
            }
            println!("tokio_echo: {peer}: echoed {total} bytes");
        });
    }
}

fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

async fn client(addr: SocketAddr, bytes: u64) -> io::Result<()> {
    let started = Instant::now();
    let conns: Vec<_> = (0..CONNS).map(|_| tokio::spawn(one_connection(addr, bytes))).collect();
    for c in conns {
        c.await.map_err(io::Error::other)??;
    }
    let elapsed = started.elapsed();
    let total = bytes * CONNS as u64;
    println!(
        "tokio_echo: {CONNS} connections sent {bytes} bytes each and got them back intact in {elapsed:.2?}: {}",
        common::rate(total, elapsed)
    );
    Ok(())
}

async fn one_connection(addr: SocketAddr, bytes: u64) -> io::Result<()> {
    let stream = common::connect_retrying_async(addr).await?;
    let (mut r, mut w) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        while sent < bytes {
            let n = (bytes - sent).min(CHUNK as u64) as usize;
            for (k, b) in buf[..n].iter_mut().enumerate() {
                *b = pattern(sent + k as u64);
            }
            w.write_all(&buf[..n]).await?;
            sent += n as u64;
        }
        Ok::<_, io::Error>(w)
    });
    let mut buf = vec![0u8; CHUNK];
    let mut got = 0u64;
    while got < bytes {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("server closed after {got} bytes"),
            ));
        }
        if let Some(k) = buf[..n].iter().enumerate().position(|(k, &b)| b != pattern(got + k as u64)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("byte {} differs", got + k as u64),
            ));
        }
        got += n as u64;
    }
    let w = writer.await.map_err(io::Error::other)??;
    // Both halves back: the stream closes when dropped.
    drop(r.reunite(w).map_err(io::Error::other)?);
    Ok(())
}
