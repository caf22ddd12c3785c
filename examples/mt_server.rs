//! A multi-threaded TCP server over VPP: two acceptor threads share one
//! listener and hand each connection to a pool of worker threads (sessions
//! move between threads; VLS keeps VCL consistent).
//!
//! ```text
//! cargo run --release --features vpp --example mt_server
//! ```
//! starts a private VPP, the server, and a load of 100 connections from 4
//! client threads (this program again, in two child processes), and prints
//! how the work spread. With `VCL_CONFIG` set it only serves, on ADDR
//! (default 127.0.0.1:7100): `cargo run --features vpp --example mt_server -- [ADDR]`.

mod common;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use vls::{App, TcpListener, TcpStream};
use vpp_harness::role;

const WORKERS: usize = 4;
const ACCEPTORS: usize = 2;
const CLIENT_THREADS: usize = 4;
const CONNECTIONS: usize = 100;
const REQUEST: usize = 16 * 1024;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = common::addr_arg(args.first(), "127.0.0.1:7100")?;
    match role().as_deref() {
        Some("mt-clients") => {
            App::init("mt-clients")?;
            clients(addr)
        }
        // Without VCL_CONFIG this process only runs VPP and the two roles.
        None if std::env::var_os("VCL_CONFIG").is_none() => {
            common::run_server_and_client("mt-server", "mt-clients", &args)
        }
        // This example's own role, also with a VCL_CONFIG of the user's.
        _ => {
            App::init("mt-server")?;
            serve(addr)
        }
    }
}

/// Acceptors hand streams to workers over a channel; each worker echoes a
/// connection until the peer closes.
fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = Arc::new(TcpListener::bind(addr)?);
    println!("mt_server: listening on {addr}, {ACCEPTORS} acceptors, {WORKERS} workers");
    let (tx, rx) = mpsc::channel::<(TcpStream, SocketAddr, usize)>();
    let rx = Arc::new(Mutex::new(rx));
    let served = Arc::new(AtomicUsize::new(0));
    for w in 0..WORKERS {
        let rx = Arc::clone(&rx);
        let served = Arc::clone(&served);
        thread::spawn(move || loop {
            let Ok((mut stream, peer, acceptor)) = rx.lock().unwrap().recv() else { return };
            let mut buf = vec![0u8; 64 * 1024];
            let mut bytes = 0;
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                        bytes += n;
                    }
                    Err(e) => {
                        eprintln!("mt_server: worker {w}: {peer}: {e}");
                        break;
                    }
                }
            }
            let total = served.fetch_add(1, Ordering::Relaxed) + 1;
            println!("mt_server: connection {total} from {peer}: accepted by acceptor {acceptor}, served by worker {w} ({bytes} bytes)");
        });
    }
    let acceptors: Vec<_> = (0..ACCEPTORS)
        .map(|a| {
            let listener = Arc::clone(&listener);
            let tx = tx.clone();
            thread::spawn(move || -> io::Result<()> {
                loop {
                    let (stream, peer) = listener.accept()?;
                    if tx.send((stream, peer, a)).is_err() {
                        return Ok(());
                    }
                }
            })
        })
        .collect();
    for a in acceptors {
        a.join().expect("acceptor")?;
    }
    Ok(())
}

/// CONNECTIONS connections from CLIENT_THREADS threads, each sending REQUEST
/// bytes and checking the echo.
fn clients(addr: SocketAddr) -> io::Result<()> {
    let started = Instant::now();
    let next = AtomicUsize::new(0);
    let per_thread: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());
    thread::scope(|s| -> io::Result<()> {
        let handles: Vec<_> = (0..CLIENT_THREADS)
            .map(|t| {
                let (next, per_thread) = (&next, &per_thread);
                s.spawn(move || -> io::Result<()> {
                    while next.fetch_add(1, Ordering::Relaxed) < CONNECTIONS {
                        let mut c = common::connect_retrying(addr)?;
                        c.set_read_timeout(Some(Duration::from_secs(10)))?;
                        let req: Vec<u8> = (0..REQUEST).map(|i| (i * 7 + t) as u8).collect();
                        c.write_all(&req)?;
                        let mut back = vec![0u8; REQUEST];
                        c.read_exact(&mut back)?;
                        if back != req {
                            return Err(io::Error::new(io::ErrorKind::InvalidData, "echo differs"));
                        }
                        *per_thread.lock().unwrap().entry(t).or_default() += 1;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().expect("client thread")?;
        }
        Ok(())
    })?;
    let per_thread = per_thread.into_inner().unwrap();
    let total: usize = per_thread.values().sum();
    println!(
        "mt_clients: {total} connections echoed {REQUEST} bytes each in {:.2?} (per client thread: {per_thread:?})",
        started.elapsed()
    );
    if total != CONNECTIONS {
        return Err(io::Error::other(format!("{total} of {CONNECTIONS} connections completed")));
    }
    Ok(())
}
