//! An HTTP/1.1 server answering `hello`, with hyper 1.x over VPP's host
//! stack (`vls::tokio::TcpListener` and `hyper_util::rt::TokioIo`).
//!
//! ```text
//! cargo run --release --features vpp,tokio --example hyper_hello
//! ```
//! starts a private VPP, the server, and a client (this program again, in
//! two child processes) that makes requests with hyper's HTTP/1.1 client
//! over `vls::tokio::TcpStream`, on a few keep-alive connections at once,
//! checks every answer and exits 0. With `VCL_CONFIG` set it serves on ADDR
//! (the first argument, default 127.0.0.1:8080) until killed:
//! `VCL_CONFIG=... cargo run --release --features vpp,tokio --example hyper_hello -- 0.0.0.0:8080`.

mod common;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use vls::tokio::{TcpListener, TcpStream};
use vls::App;
use vpp_harness::role;

/// Client connections, and requests on each (keep-alive).
const CONNS: usize = 4;
const REQUESTS: usize = 25;

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr = common::addr_arg(args.first(), "127.0.0.1:8080")?;
    match role().as_deref() {
        Some("hyper-client") => {
            App::init("hyper-hello-client")?;
            runtime()?.block_on(client(addr))
        }
        // Without VCL_CONFIG this process only runs VPP and the two roles.
        None if std::env::var_os("VCL_CONFIG").is_none() => {
            common::run_server_and_client("hyper-server", "hyper-client", &args)
        }
        // This example's own role, also with a VCL_CONFIG of the user's.
        _ => {
            App::init("hyper-hello-server")?;
            runtime()?.block_on(serve(addr))
        }
    }
}

/// A multi-thread runtime: without `multi-thread-workers` in `vcl.conf`,
/// all its threads share the process's VCL worker (VLS mode 3).
fn runtime() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))
}

async fn serve(addr: SocketAddr) -> io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!("hyper_hello: serving http://{addr}/");
    loop {
        let (stream, peer) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(hello);
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                eprintln!("hyper_hello: {peer}: {e}");
            }
        });
    }
}

/// Connects, retrying while the server is not listening yet (10 s).
async fn connect_retrying(addr: SocketAddr) -> io::Result<TcpStream> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            r => return r,
        }
    }
}

async fn client(addr: SocketAddr) -> io::Result<()> {
    let started = Instant::now();
    let conns: Vec<_> = (0..CONNS).map(|_| tokio::spawn(requests(addr))).collect();
    let mut answered = 0;
    for c in conns {
        answered += c.await.map_err(io::Error::other)??;
    }
    println!("hyper_hello: {answered} requests answered hello in {:.2?}", started.elapsed());
    Ok(())
}

/// REQUESTS requests on one keep-alive connection; the number answered.
async fn requests(addr: SocketAddr) -> io::Result<usize> {
    let stream = connect_retrying(addr).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(io::Error::other)?;
    let conn = tokio::spawn(conn);
    for _ in 0..REQUESTS {
        let req = Request::builder()
            .uri("/")
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(io::Error::other)?;
        let res = sender.send_request(req).await.map_err(io::Error::other)?;
        if !res.status().is_success() {
            return Err(io::Error::other(format!("status {}", res.status())));
        }
        let body = res.into_body().collect().await.map_err(io::Error::other)?.to_bytes();
        if body != "hello" {
            return Err(io::Error::other(format!("body {body:?}")));
        }
    }
    // Closing the request side ends the connection task.
    drop(sender);
    conn.await.map_err(io::Error::other)?.map_err(io::Error::other)?;
    Ok(REQUESTS)
}
