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
//!
//! Options (before or after ADDR): `--threads N` gives the runtime N worker
//! threads (default: tokio's, one per core); `--kernel` serves on the
//! kernel's sockets instead (`tokio::net::TcpListener`, no VPP and no
//! `VCL_CONFIG`) until killed, with the very same server code, for
//! comparisons (`benches/async_http.rs`); port 0 there takes any free port.
//! The server prints the address it listens on (`hyper_hello: serving
//! http://ADDR/`).

mod common;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::time::Instant;

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
    let opts = Options::parse(&args)?;
    if opts.kernel {
        return runtime(opts.threads)?
            .block_on(async { serve(tokio::net::TcpListener::bind(opts.addr).await?).await });
    }
    match role().as_deref() {
        Some("hyper-client") => {
            App::init("hyper-hello-client")?;
            runtime(opts.threads)?.block_on(client(opts.addr))
        }
        // Without VCL_CONFIG this process only runs VPP and the two roles.
        None if std::env::var_os("VCL_CONFIG").is_none() => {
            common::run_server_and_client("hyper-server", "hyper-client", &args)
        }
        // This example's own role, also with a VCL_CONFIG of the user's.
        _ => {
            App::init("hyper-hello-server")?;
            runtime(opts.threads)?.block_on(async { serve(TcpListener::bind(opts.addr).await?).await })
        }
    }
}

/// The command line: `[--kernel] [--threads N] [ADDR]`.
struct Options {
    addr: SocketAddr,
    kernel: bool,
    threads: Option<usize>,
}

impl Options {
    fn parse(args: &[String]) -> io::Result<Options> {
        let bad = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        let (mut addr, mut kernel, mut threads) = (None, false, None);
        let mut args = args.iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--kernel" => kernel = true,
                "--threads" => {
                    let n = args.next().ok_or_else(|| bad("--threads needs a number".into()))?;
                    threads = Some(
                        n.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad(format!("bad --threads {n}")))?,
                    );
                }
                flag if flag.starts_with("--") => return Err(bad(format!("unknown option {flag}"))),
                _ if addr.is_none() => addr = Some(a),
                _ => return Err(bad(format!("unexpected argument {a}"))),
            }
        }
        Ok(Options { addr: common::addr_arg(addr, "127.0.0.1:8080")?, kernel, threads })
    }
}

/// A multi-thread runtime (with `threads` workers, else one per core):
/// without `multi-thread-workers` in `vcl.conf`, all its threads share the
/// process's VCL worker (VLS mode 3).
fn runtime(threads: Option<usize>) -> io::Result<tokio::runtime::Runtime> {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        b.worker_threads(n);
    }
    b.enable_all().build()
}

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"hello"))))
}

/// What the server needs of a listener: VPP's (`vls::tokio`) or the
/// kernel's (`tokio::net`); nothing else differs between the two.
trait Listener {
    type Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    fn local_addr(&self) -> io::Result<SocketAddr>;
    async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)>;
}

impl Listener for TcpListener {
    type Stream = TcpStream;
    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpListener::local_addr(self)
    }
    async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        TcpListener::accept(self).await
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
    async fn accept(&self) -> io::Result<(tokio::net::TcpStream, SocketAddr)> {
        tokio::net::TcpListener::accept(self).await
    }
}

/// Serves `hello` on every connection `listener` accepts, a task each.
async fn serve(listener: impl Listener) -> io::Result<()> {
    println!("hyper_hello: serving http://{}/", listener.local_addr()?);
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
    let stream = common::connect_retrying_async(addr).await?;
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
