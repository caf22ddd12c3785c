//! The async API (`vls::tokio`) against a real VPP. Each test runs server
//! and client as two processes (`common::run_pair`), each with its own
//! tokio runtime; every await that could stall is bounded by a timeout, so
//! a lost wake-up fails the test with a message instead of hanging it.

mod common;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{run_isolated, run_pair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use vls::tokio::{TcpListener, TcpStream, UdpSocket};
use vls::App;
use vpp_harness::{cut_through, pattern, through_stack, Rng, VclConf, STACK_SERVER};

/// `VLS_RS_LOG=<filter>` logs to stderr (shown for a failed child).
fn log() {
    if let Ok(filter) = std::env::var("VLS_RS_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// A multi-thread runtime (2 workers: the machine has 2 cores).
fn multi_thread() -> tokio::runtime::Runtime {
    log();
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn current_thread() -> tokio::runtime::Runtime {
    log();
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// `f` within `limit`, or a panic naming `what`.
async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {limit:?} (a stall)"),
    }
}

/// Connects refused so far in this process (see [`connect`]).
static REFUSALS: AtomicUsize = AtomicUsize::new(0);

/// Connects, retrying refusals for up to 10 s: the server process may not
/// listen yet, and VPP also refuses a connect while the connecting app's
/// message queue is congested (`app_worker_connect_session`), as when 1000
/// tasks connect at once on a loaded machine. The pause between tries
/// doubles (20 ms up to 640 ms): every refusal is one more message into
/// that queue, and a storm of quick retries can keep it congested.
async fn connect(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pause = Duration::from_millis(20);
    loop {
        match TcpStream::connect(addr).await {
            Ok(s) => return s,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                REFUSALS.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(640));
            }
            Err(e) => panic!("connect {addr}: {e}"),
        }
    }
}

/// FNV-1a over `data`, continuing from `h`.
fn fnv(mut h: u64, data: &[u8]) -> u64 {
    for &b in data {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    h
}
const FNV0: u64 = 0xcbf2_9ce4_8422_2325;

/// Echoes one connection until EOF with reads and writes of random sizes
/// (writes may be partial: `write`, not `write_all`), pausing now and then
/// after taking only part of what is there. Returns the bytes echoed.
async fn echo_randomly<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, seed: u64) -> usize {
    let mut rng = Rng(seed | 1);
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0;
    loop {
        let want = rng.range(1, buf.len());
        let n = s.read(&mut buf[..want]).await.expect("server read");
        if n == 0 {
            s.shutdown().await.expect("server shutdown");
            return total;
        }
        let mut off = 0;
        while off < n {
            let chunk = rng.range(1, n - off);
            let w = s.write(&buf[off..off + chunk]).await.expect("server write");
            assert!(w > 0);
            off += w;
        }
        total += n;
        if rng.range(0, 9) == 0 {
            // Part of the data may still wait in the FIFO: VPP will not
            // notify it again, the readiness must still say readable.
            tokio::time::sleep(Duration::from_millis(rng.range(1, 20) as u64)).await;
        }
    }
}

/// Sends `len` bytes in random chunks, shuts the write side down, and reads
/// the echo back with random buffer sizes; once early it reads a little
/// and waits while more arrives (the `has_event` case). Checks length and
/// checksum, and with `half_close` that the server's EOF follows (VPP's
/// cut-through has no half close: there the client closes once it has all).
async fn round_trip_randomly(addr: SocketAddr, len: usize, seed: u64, half_close: bool) {
    let s = connect(addr).await;
    let data = pattern(len, seed);
    let (mut r, mut w) = s.into_split();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        let mut rng = Rng(seed ^ 0x9e37_79b9);
        let mut off = 0;
        while off < sent.len() {
            let chunk = rng.range(1, (sent.len() - off).min(300 * 1024));
            off += w.write(&sent[off..off + chunk]).await.expect("client write");
        }
        w.shutdown().await.expect("client shutdown");
        w
    });
    let mut rng = Rng(seed ^ 0x0051_ed27);
    let mut buf = vec![0u8; 128 * 1024];
    let (mut got, mut sum) = (0usize, FNV0);
    let mut paused = false;
    while got < len || half_close {
        let want = if !paused && got > 0 { 7 } else { rng.range(1, buf.len()) };
        let n = r.read(&mut buf[..want]).await.expect("client read");
        if n == 0 {
            break;
        }
        sum = fnv(sum, &buf[..n]);
        got += n;
        if !paused && got >= 7 && len > 64 {
            // Took a few bytes of what is there; more keeps arriving while
            // this task sleeps. No new RX notification will come for data
            // already queued.
            paused = true;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let w = writer.await.unwrap();
    assert_eq!(got, len, "echoed length");
    assert_eq!(sum, fnv(FNV0, &data), "echoed checksum ({len} bytes, seed {seed})");
    drop(r.reunite(w).unwrap());
    eprintln!("round trip of {len} bytes done");
}

fn echo_sizes() -> Vec<usize> {
    let mut rng = Rng(2024);
    let mut sizes = vec![1, 7, 1500, 64 * 1024, 1 << 20];
    sizes.extend((0..6).map(|_| rng.range(2, 1 << 20)));
    sizes
}

fn echo_server(addr: SocketAddr, conns: usize) {
    App::init("async-echo-server").unwrap();
    multi_thread().block_on(within(Duration::from_secs(25), "echo server", async move {
        let l = TcpListener::bind(addr).await.unwrap();
        assert_eq!(l.local_addr().unwrap(), addr);
        let mut tasks = Vec::new();
        for i in 0..conns {
            let (s, peer) = l.accept().await.unwrap();
            assert_eq!(s.peer_addr().unwrap(), peer);
            tasks.push(tokio::spawn(async move {
                let n = echo_randomly(s, i as u64 + 1).await;
                eprintln!("server: connection {i} echoed {n} bytes");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }));
}

fn echo_client(addr: SocketAddr, half_close: bool) {
    App::init("async-echo-client").unwrap();
    multi_thread().block_on(within(Duration::from_secs(25), "echo client", async move {
        let sizes = echo_sizes();
        // Two at a time, so transfers overlap.
        for pair in sizes.chunks(2) {
            let mut hs = Vec::new();
            for (k, &len) in pair.iter().enumerate() {
                hs.push(tokio::spawn(round_trip_randomly(addr, len, len as u64 * 31 + k as u64, half_close)));
            }
            for h in hs {
                h.await.unwrap();
            }
        }
    }));
}

/// Echo of random sizes (1 B – 1 MiB) with partial reads and writes,
/// over cut-through.
#[test]
fn async_echo_random_sizes_cut_through() {
    let a: SocketAddr = "127.0.0.1:7401".parse().unwrap();
    run_pair(
        "async_echo_random_sizes_cut_through",
        cut_through,
        || echo_server(a, echo_sizes().len()),
        || echo_client(a, false),
    );
}

/// The same through VPP's TCP stack (two app namespaces).
#[test]
fn async_echo_random_sizes_through_stack() {
    let a = SocketAddr::from((STACK_SERVER, 7402));
    run_pair(
        "async_echo_random_sizes_through_stack",
        through_stack,
        || echo_server(a, echo_sizes().len()),
        || echo_client(a, true),
    );
}

/// 1000 connections at once, each served and used by a task of its own on
/// a multi-thread runtime (VLS mode 3), each done within a bound.
#[test]
fn async_1000_concurrent_tasks() {
    const N: usize = 1000;
    const MSG: usize = 2048;
    let a: SocketAddr = "127.0.0.1:7403".parse().unwrap();
    // Small FIFOs: 1000 connections of the default 4 MB would need 8 GB.
    let small = || VclConf { fifo_size: 32 * 1024, ..VclConf::default() };
    run_pair(
        "async_1000_concurrent_tasks",
        |_| (small(), small()),
        || {
            App::init("async-1000-server").unwrap();
            multi_thread().block_on(within(Duration::from_secs(25), "1000 server", async move {
                let l = TcpListener::bind(a).await.unwrap();
                let mut tasks = Vec::with_capacity(N + 1);
                // The client's first connection, then its 1000 tasks'.
                for _ in 0..=N {
                    let (mut s, _) = l.accept().await.unwrap();
                    tasks.push(tokio::spawn(async move {
                        let mut buf = vec![0u8; MSG];
                        s.read_exact(&mut buf).await.unwrap();
                        s.write_all(&buf).await.unwrap();
                        // Until the client closes.
                        assert_eq!(s.read(&mut buf).await.unwrap(), 0);
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            }));
        },
        || {
            App::init("async-1000-client").unwrap();
            multi_thread().block_on(async move {
                // One connection first, so that the 1000 start once the
                // server listens (it reads and echoes one message too).
                let mut first = connect(a).await;
                first.write_all(&pattern(MSG, N as u64)).await.unwrap();
                let mut back = vec![0u8; MSG];
                first.read_exact(&mut back).await.unwrap();
                assert!(back == pattern(MSG, N as u64), "first: echo differs");
                drop(first);
                let refused_before = REFUSALS.load(Ordering::Relaxed);
                let started = Instant::now();
                let slowest = Arc::new(AtomicUsize::new(0));
                let tasks: Vec<_> = (0..N)
                    .map(|i| {
                        let slowest = slowest.clone();
                        tokio::spawn(async move {
                            let t = Instant::now();
                            within(Duration::from_secs(20), &format!("task {i}"), async {
                                let mut s = connect(a).await;
                                let data = pattern(MSG, i as u64);
                                s.write_all(&data).await.unwrap();
                                let mut back = vec![0u8; MSG];
                                s.read_exact(&mut back).await.unwrap();
                                assert!(back == data, "task {i}: echo differs");
                            })
                            .await;
                            slowest.fetch_max(t.elapsed().as_millis() as usize, Ordering::Relaxed);
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                report_figure(
                    "1000",
                    "client",
                    &format!(
                        "1000 tasks: done in {:?}, the slowest took {} ms, {} connects refused and retried",
                        started.elapsed(),
                        slowest.load(Ordering::Relaxed),
                        REFUSALS.load(Ordering::Relaxed) - refused_before
                    ),
                );
            });
        },
    );
    print_figures("1000", &["client"]);
}

/// Stream semantics over cut-through: drop closes, accept after the peer
/// already sent data, a read future dropped midway loses nothing, a full
/// TX FIFO waits for room, refused connects, shutdown, the blocking types.
#[test]
fn async_stream_semantics() {
    let a: SocketAddr = "127.0.0.1:7404".parse().unwrap();
    const BIG: usize = 12 << 20; // three times the FIFO
    run_pair(
        "async_stream_semantics",
        cut_through,
        || {
            App::init("async-semantics-server").unwrap();
            current_thread().block_on(within(Duration::from_secs(25), "semantics server", async move {
                let l = TcpListener::bind(a).await.unwrap();
                eprintln!("step 1");
                // 1: dropped at once: the client reads EOF.
                let (s, _) = l.accept().await.unwrap();
                drop(s);
                eprintln!("step 2");
                // 2: accepted only after its data arrived (VPP notified it
                // before the session was in the reactor's set).
                tokio::time::sleep(Duration::from_millis(500)).await;
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = vec![0u8; 1000];
                within(Duration::from_secs(5), "data sent before the accept", s.read_exact(&mut b))
                    .await
                    .unwrap();
                assert!(b == pattern(1000, 2));
                eprintln!("step 3");
                // 3: streamed in pieces while the client keeps dropping its
                // read futures.
                let (mut s, _) = l.accept().await.unwrap();
                let data = pattern(256 * 1024, 3);
                tokio::time::sleep(Duration::from_millis(200)).await;
                for piece in data.chunks(8 * 1024) {
                    s.write_all(piece).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                eprintln!("step 4");
                // 4: more than the FIFO holds, to a client that reads late:
                // writes wait for VPP to make room.
                let (mut s, _) = l.accept().await.unwrap();
                let t = Instant::now();
                s.write_all(&pattern(BIG, 4)).await.unwrap();
                assert!(t.elapsed() >= Duration::from_millis(200), "the FIFO should have filled");
                eprintln!("step 5");
                // 5: shutdown of the write side: later writes fail; EOF
                // once the client closes.
                let (mut s, _) = l.accept().await.unwrap();
                s.shutdown().await.unwrap();
                s.shutdown().await.unwrap();
                assert!(s.write(b"late").await.is_err(), "write after shutdown");
                let mut b = [0u8; 1];
                assert_eq!(s.read(&mut b).await.unwrap(), 0);
                eprintln!("step 6");
                // 6: back to the blocking API and again async.
                let (s, _) = l.accept().await.unwrap();
                let std_s = s.into_std().unwrap();
                let mut b = [0u8; 4];
                std::io::Read::read_exact(&mut &std_s, &mut b).unwrap();
                std::io::Write::write_all(&mut &std_s, &b).unwrap();
                let mut s = TcpStream::from_std(std_s).unwrap();
                s.write_all(b"more").await.unwrap();
                assert_eq!(s.read(&mut b).await.unwrap(), 0);
            }));
        },
        || {
            App::init("async-semantics-client").unwrap();
            current_thread().block_on(within(Duration::from_secs(25), "semantics client", async move {
                let e = TcpStream::connect("127.0.0.1:7498").await.unwrap_err();
                assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
                eprintln!("step 1");
                // 1
                let mut s = connect(a).await;
                let mut b = [0u8; 8];
                assert_eq!(s.read(&mut b).await.unwrap(), 0, "EOF after the server dropped the stream");
                eprintln!("step 2");
                // 2
                let mut s = connect(a).await;
                s.write_all(&pattern(1000, 2)).await.unwrap();
                drop(s);
                eprintln!("step 3");
                // 3: a read that times out before any data is dropped, then
                // reads race a 1 ms timer (the loser is dropped mid-wait).
                let mut s = connect(a).await;
                let mut buf = vec![0u8; 16 * 1024];
                assert!(tokio::time::timeout(Duration::from_millis(50), s.read(&mut buf)).await.is_err());
                let (mut got, mut sum, mut dropped) = (0, FNV0, 0);
                while got < 256 * 1024 {
                    tokio::select! {
                        r = s.read(&mut buf) => {
                            let n = r.unwrap();
                            assert!(n > 0, "EOF after {got} bytes");
                            sum = fnv(sum, &buf[..n]);
                            got += n;
                        }
                        _ = tokio::time::sleep(Duration::from_millis(1)) => dropped += 1,
                    }
                }
                assert_eq!(got, 256 * 1024);
                assert_eq!(sum, fnv(FNV0, &pattern(256 * 1024, 3)), "bytes lost or reordered");
                assert!(dropped > 0, "no read future was dropped");
                drop(s);
                eprintln!("step 4");
                // 4
                let mut s = connect(a).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut back = vec![0u8; BIG];
                s.read_exact(&mut back).await.unwrap();
                assert!(back == pattern(BIG, 4), "big transfer differs");
                drop(s);
                eprintln!("step 5");
                // 5
                // (VPP's cut-through has no half close: no EOF to read
                // here; `async_half_close_through_stack` reads it.)
                let s = connect(a).await;
                assert_eq!(s.peer_addr().unwrap(), a);
                s.set_nodelay(true).unwrap();
                assert!(s.nodelay().unwrap());
                drop(s);
                eprintln!("step 6");
                // 6
                let mut s = connect(a).await;
                s.write_all(b"ping").await.unwrap();
                let mut b = [0u8; 8];
                s.read_exact(&mut b).await.unwrap();
                assert_eq!(&b, b"pingmore");
            }));
        },
    );
}

/// Half close through VPP's TCP stack: the client shuts its write side
/// down; the server reads to EOF, then answers with more than the FIFO
/// holds (after the peer's FIN VCL reports nothing more of the session
/// until it is registered again), then closes.
#[test]
fn async_half_close_through_stack() {
    let a = SocketAddr::from((STACK_SERVER, 7405));
    const ANSWER: usize = 10 << 20;
    run_pair(
        "async_half_close_through_stack",
        through_stack,
        || {
            App::init("async-half-close-server").unwrap();
            multi_thread().block_on(within(Duration::from_secs(25), "half-close server", async move {
                let l = TcpListener::bind(a).await.unwrap();
                let (mut s, _) = l.accept().await.unwrap();
                let mut req = Vec::new();
                s.read_to_end(&mut req).await.unwrap();
                assert!(req == pattern(100_000, 5), "request");
                s.write_all(&pattern(ANSWER, 6)).await.unwrap();
                s.shutdown().await.unwrap();
            }));
        },
        || {
            App::init("async-half-close-client").unwrap();
            multi_thread().block_on(within(Duration::from_secs(25), "half-close client", async move {
                let s = connect(a).await;
                let (mut r, mut w) = s.into_split();
                w.write_all(&pattern(100_000, 5)).await.unwrap();
                // Dropping the owned write half shuts the write side down.
                drop(w);
                let mut answer = Vec::new();
                r.read_to_end(&mut answer).await.unwrap();
                assert_eq!(answer.len(), ANSWER);
                assert!(answer == pattern(ANSWER, 6), "answer differs");
            }));
        },
    );
}

/// The pieces of [`async_vectored_writes`]: small groups (written as one
/// joined copy) and large ones (slice by slice, more than the FIFO holds).
fn vectored_pieces() -> Vec<Vec<Vec<u8>>> {
    let mut rng = Rng(0x5eed);
    let mut groups: Vec<Vec<Vec<u8>>> = (0..500u64)
        .map(|g| (0..rng.range(2, 5) as u64).map(|i| pattern(rng.range(0, 700), g * 8 + i)).collect())
        .collect();
    // Exactly at and just past the joined size, then past the FIFO.
    groups.push(vec![pattern(1000, 1), pattern(1048, 2)]);
    groups.push(vec![pattern(1000, 3), pattern(1049, 4)]);
    groups.push(vec![pattern(100_000, 5), Vec::new(), pattern(3, 6), pattern(6 << 20, 7)]);
    groups
}

/// Vectored writes (as hyper makes them: a head and a body) arrive whole
/// and in order, small groups joined into one write and large ones not,
/// also when the FIFO fills and a write takes part of a group.
#[test]
fn async_vectored_writes() {
    let a: SocketAddr = "127.0.0.1:7407".parse().unwrap();
    run_pair(
        "async_vectored_writes",
        cut_through,
        || {
            App::init("async-vectored-server").unwrap();
            multi_thread().block_on(within(Duration::from_secs(25), "vectored server", async move {
                let l = TcpListener::bind(a).await.unwrap();
                let (mut s, _) = l.accept().await.unwrap();
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.unwrap();
                let want: Vec<u8> = vectored_pieces().concat().concat();
                assert_eq!(got.len(), want.len());
                assert!(got == want, "the bytes differ");
            }));
        },
        || {
            App::init("async-vectored-client").unwrap();
            multi_thread().block_on(within(Duration::from_secs(25), "vectored client", async move {
                let mut s = connect(a).await;
                for group in vectored_pieces() {
                    let total: usize = group.iter().map(Vec::len).sum();
                    // The unwritten rest of the group: (piece, offset).
                    let (mut piece, mut at) = (0, 0);
                    let mut written = 0;
                    while written < total {
                        let slices: Vec<io::IoSlice<'_>> = group[piece..]
                            .iter()
                            .enumerate()
                            .map(|(i, p)| io::IoSlice::new(if i == 0 { &p[at..] } else { p }))
                            .collect();
                        let n = s.write_vectored(&slices).await.unwrap();
                        assert!(n > 0, "a vectored write of {} bytes took none", total - written);
                        written += n;
                        let mut n = n;
                        while piece < group.len() && n >= group[piece].len() - at {
                            n -= group[piece].len() - at;
                            piece += 1;
                            at = 0;
                        }
                        at += n;
                    }
                }
            }));
        },
    );
}

/// CPU time used by this process so far (user + system).
fn cpu_time() -> Duration {
    // SAFETY: `usage` is valid for the call.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        assert_eq!(libc::getrusage(libc::RUSAGE_SELF, &mut usage), 0);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Where a child of this test process leaves a figure for the parent to
/// print (children's output is shown only when they fail).
fn figure_file(test: &str, role: &str, parent: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("vls-figure-{parent}-{test}-{role}.txt"))
}

/// In a child: records `line` for the parent (see [`figure_file`]).
fn report_figure(test: &str, role: &str, line: &str) {
    println!("{line}");
    // SAFETY: plain syscall.
    let parent = unsafe { libc::getppid() } as u32;
    let _ = std::fs::write(figure_file(test, role, parent), line);
}

/// In the parent, after the children ended: prints what they recorded.
fn print_figures(test: &str, roles: &[&str]) {
    for role in roles {
        let f = figure_file(test, role, std::process::id());
        if let Ok(line) = std::fs::read_to_string(&f) {
            println!("{line}");
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Most CPU an idle side may use in 5 s (a wake-up every 10 ms would cost
/// more than this on its own).
const IDLE_CPU_BOUND: Duration = Duration::from_millis(50);

/// An idle server with 100 idle connections (every server task waiting in
/// a read, every client task too) uses next to no CPU over 5 s: nothing
/// polls, nothing ticks.
#[test]
fn async_idle_connections_use_no_cpu() {
    let a: SocketAddr = "127.0.0.1:7406".parse().unwrap();
    const N: usize = 100;
    run_pair(
        "async_idle_connections_use_no_cpu",
        cut_through,
        || {
            App::init("async-idle-server").unwrap();
            multi_thread().block_on(within(Duration::from_secs(25), "idle server", async move {
                let l = TcpListener::bind(a).await.unwrap();
                let mut conns = Vec::new();
                for _ in 0..N {
                    conns.push(l.accept().await.unwrap().0);
                }
                let readers: Vec<_> = conns
                    .into_iter()
                    .map(|s| {
                        tokio::spawn(async move {
                            let (mut r, mut w) = s.into_split();
                            let mut b = [0u8; 1];
                            // Idle until the client speaks after the quiet time.
                            assert_eq!(r.read(&mut b).await.unwrap(), 1);
                            w.write_all(&b).await.unwrap();
                            (r, w)
                        })
                    })
                    .collect();
                tokio::time::sleep(Duration::from_millis(200)).await;
                let before = cpu_time();
                tokio::time::sleep(Duration::from_secs(5)).await;
                let used = cpu_time() - before;
                report_figure(
                    "idle",
                    "server",
                    &format!("idle server: {N} idle connections, {used:?} of CPU in 5 s"),
                );
                assert!(used < IDLE_CPU_BOUND, "idle server used {used:?} of CPU in 5 s");
                for r in readers {
                    r.await.unwrap();
                }
            }));
        },
        || {
            App::init("async-idle-client").unwrap();
            multi_thread().block_on(within(Duration::from_secs(25), "idle client", async move {
                let mut conns = Vec::new();
                for _ in 0..N {
                    conns.push(connect(a).await);
                }
                let before = cpu_time();
                // The server's quiet time, and then some.
                tokio::time::sleep(Duration::from_millis(5500)).await;
                let used = cpu_time() - before;
                report_figure(
                    "idle",
                    "client",
                    &format!("idle client: {N} idle connections, {used:?} of CPU in 5.5 s"),
                );
                assert!(used < IDLE_CPU_BOUND, "idle client used {used:?} of CPU in 5.5 s");
                for s in &mut conns {
                    s.write_all(b"x").await.unwrap();
                }
                for s in &mut conns {
                    let mut b = [0u8; 1];
                    s.read_exact(&mut b).await.unwrap();
                }
            }));
        },
    );
    print_figures("idle", &["server", "client"]);
}

/// Current-thread runtimes on `THREADS` threads, each with its own
/// listener (server) or connections (client), reactor and VLS epoll set;
/// each echoes random sizes with readers that pause (see
/// `round_trip_randomly`).
const THREADS: u16 = 2;

fn runtime_per_thread_server(base: u16) {
    let hs: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                current_thread().block_on(within(Duration::from_secs(25), "per-thread server", async move {
                    let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], base + t))).await.unwrap();
                    let mut tasks = Vec::new();
                    for i in 0..4 {
                        let (s, _) = l.accept().await.unwrap();
                        tasks.push(tokio::spawn(echo_randomly(s, (t * 10 + i) as u64 + 1)));
                    }
                    for task in tasks {
                        task.await.unwrap();
                    }
                }))
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

fn runtime_per_thread_client(base: u16) {
    let hs: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                current_thread().block_on(within(Duration::from_secs(25), "per-thread client", async move {
                    let a = SocketAddr::from(([127, 0, 0, 1], base + t));
                    let mut hs = Vec::new();
                    for i in 0..4usize {
                        let len = [1, 3000, 200_000, 1 << 20][i];
                        hs.push(tokio::spawn(round_trip_randomly(a, len, i as u64 + 7, false)));
                    }
                    for h in hs {
                        h.await.unwrap();
                    }
                }))
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

/// Thread-per-core: `multi-thread-workers` (a VCL worker per thread) and
/// one current-thread runtime per thread (VLS mode 2); and the runtime that
/// mode refuses.
#[test]
fn async_thread_per_core_with_multi_thread_workers() {
    let mt = || VclConf::default().with("multi-thread-workers");
    run_pair(
        "async_thread_per_core_with_multi_thread_workers",
        |_| (mt(), mt()),
        || {
            App::init("async-tpc-server").unwrap();
            runtime_per_thread_server(7410);
            assert_eq!(App::get().unwrap().mode(), vls::Mode::PerThreadWorkers);
        },
        || {
            App::init("async-tpc-client").unwrap();
            // A multi-thread runtime would move sessions between workers.
            let e = multi_thread().block_on(TcpStream::connect("127.0.0.1:7410")).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
            assert!(e.to_string().contains("multi-thread-workers"), "{e}");
            runtime_per_thread_client(7410);
        },
    );
}

/// Current-thread runtimes on several threads without
/// `multi-thread-workers`: the threads share one VCL worker (VLS mode 3),
/// whose epoll state VCL keeps per worker, so one reactor's wait takes the
/// others' events, which VLS hands to their own sets (and wakes them).
#[test]
fn async_runtime_per_thread_sharing_one_worker() {
    run_pair(
        "async_runtime_per_thread_sharing_one_worker",
        cut_through,
        || {
            App::init("async-shared-server").unwrap();
            runtime_per_thread_server(7415);
            assert_eq!(App::get().unwrap().mode(), vls::Mode::SharedWorker);
        },
        || {
            App::init("async-shared-client").unwrap();
            runtime_per_thread_client(7415);
        },
    );
}

/// UDP through VPP's IP stack: bind, connect, send/recv and
/// send_to/recv_from, the blocking type and back; then a burst of sends
/// larger than the TX FIFO (256 KiB here), which must not stall when a
/// datagram does not fit in a FIFO that is not full.
#[test]
fn async_udp_through_stack() {
    let a = SocketAddr::from((STACK_SERVER, 7420));
    run_pair(
        "async_udp_through_stack",
        |vpp| {
            let (srv, cli) = through_stack(vpp);
            (VclConf { fifo_size: 256 * 1024, ..srv }, VclConf { fifo_size: 256 * 1024, ..cli })
        },
        || {
            App::init("async-udp-server").unwrap();
            current_thread().block_on(within(Duration::from_secs(25), "udp server", async move {
                let sock = UdpSocket::bind(a).await.unwrap();
                assert_eq!(sock.local_addr().unwrap(), a);
                let mut buf = [0u8; 2048];
                // Echo until the last datagram (the client repeats the
                // first until this socket is bound).
                loop {
                    let (n, from) = sock.recv_from(&mut buf).await.unwrap();
                    assert_eq!(sock.send_to(&buf[..n], from).await.unwrap(), n);
                    if buf[..n] == [99u8; 1200] {
                        break;
                    }
                }
                // Let VPP send the last echo before this app detaches.
                tokio::time::sleep(Duration::from_millis(500)).await;
                drop(sock.into_std().unwrap());
            }));
        },
        || {
            App::init("async-udp-client").unwrap();
            current_thread().block_on(within(Duration::from_secs(25), "udp client", async move {
                let mut back = [0u8; 2048];
                // Handshake: a socket whose first datagram does not come
                // back within 200 ms is replaced (the server may not be
                // bound yet), at most 100 times.
                let mut tries = 0;
                let sock = loop {
                    tries += 1;
                    assert!(tries <= 100, "no echo of the first datagram within 100 tries");
                    let sock = UdpSocket::connect_to(a).await.unwrap();
                    assert_eq!(sock.peer_addr().unwrap(), a);
                    // Before the server is bound (and seen with the
                    // blocking API too, right after a connect on a busy
                    // machine) the new socket may be not connected yet, or
                    // reset: a new socket is made. Only for the first
                    // datagram; after its echo any error fails.
                    let not_yet = |e: &io::Error| {
                        matches!(e.kind(), io::ErrorKind::NotConnected | io::ErrorKind::ConnectionReset)
                    };
                    match sock.send(&[0u8; 1200]).await {
                        Ok(n) => assert_eq!(n, 1200),
                        Err(e) if not_yet(&e) => continue,
                        Err(e) => panic!("send: {e}"),
                    }
                    match tokio::time::timeout(Duration::from_millis(200), sock.recv(&mut back)).await {
                        Ok(Ok(n)) => {
                            assert_eq!(n, 1200);
                            break sock;
                        }
                        Ok(Err(e)) if not_yet(&e) => continue,
                        Ok(Err(e)) => panic!("recv: {e}"),
                        Err(_) => continue,
                    }
                };
                for i in 1..100u8 {
                    let d = [i; 1200];
                    assert_eq!(sock.send(&d).await.unwrap(), 1200);
                    // Late echoes of the repeated first datagram are skipped.
                    let n = loop {
                        let n =
                            within(Duration::from_secs(5), "udp echo", sock.recv(&mut back)).await.unwrap();
                        if back[..n] != [0u8; 1200] {
                            break n;
                        }
                    };
                    assert_eq!(&back[..n], &d[..], "datagram {i}");
                }
                // 6 MB as fast as the socket takes them (the server has
                // stopped echoing; they may be dropped).
                within(Duration::from_secs(10), "a burst of 5000 datagrams", async {
                    for _ in 0..5000 {
                        assert_eq!(sock.send(&[7u8; 1200]).await.unwrap(), 1200);
                    }
                })
                .await;
            }));
        },
    );
}

/// Without `use-mq-eventfd` there is no fd to wait on: binding and
/// connecting fail, naming the setting; outside a runtime they fail too.
#[test]
fn async_without_mq_eventfd_fails_clearly() {
    run_isolated(
        "async_without_mq_eventfd_fails_clearly",
        VclConf { use_mq_eventfd: false, ..VclConf::default() },
        |_| {},
        || {
            App::init("async-no-eventfd").unwrap();
            let rt = current_thread();
            let e = rt.block_on(TcpListener::bind("127.0.0.1:7430")).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::Unsupported, "{e}");
            assert!(e.to_string().contains("use-mq-eventfd"), "{e}");
            let e = rt.block_on(TcpStream::connect("127.0.0.1:7430")).unwrap_err();
            assert!(e.to_string().contains("use-mq-eventfd"), "{e}");
            let e = rt.block_on(UdpSocket::bind("127.0.0.1:7431")).unwrap_err();
            assert!(e.to_string().contains("use-mq-eventfd"), "{e}");
            // No runtime at all.
            let e = futures_now(TcpListener::bind("127.0.0.1:7432")).unwrap_err();
            assert!(e.to_string().contains("tokio runtime"), "{e}");
        },
    );
}

/// Polls `f` once outside any runtime (it must be ready at once).
fn futures_now<T>(f: impl Future<Output = T>) -> T {
    struct Noop;
    impl std::task::Wake for Noop {
        fn wake(self: Arc<Self>) {}
    }
    let waker = std::task::Waker::from(Arc::new(Noop));
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut std::task::Context::from_waker(&waker)) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("not ready at once"),
    }
}

/// A socket whose runtime shut down fails its calls instead of hanging;
/// a new runtime gets a reactor of its own.
#[test]
fn async_runtime_shutdown_fails_the_runtimes_sockets() {
    let a: SocketAddr = "127.0.0.1:7440".parse().unwrap();
    run_pair(
        "async_runtime_shutdown_fails_the_runtimes_sockets",
        cut_through,
        || {
            App::init("async-rt-server").unwrap();
            current_thread().block_on(within(Duration::from_secs(20), "rt server", async move {
                let l = TcpListener::bind(a).await.unwrap();
                // The first client connection only waits to be closed.
                let (mut first, _) = l.accept().await.unwrap();
                let (mut s, _) = l.accept().await.unwrap();
                let mut b = [0u8; 2];
                s.read_exact(&mut b).await.unwrap();
                s.write_all(&b).await.unwrap();
                let _ = s.read(&mut b).await;
                let _ = first.read(&mut b).await;
            }));
        },
        || {
            App::init("async-rt-client").unwrap();
            let rt = current_thread();
            let mut s = rt.block_on(connect(a));
            drop(rt);
            let rt = current_thread();
            rt.block_on(async {
                let mut b = [0u8; 2];
                let e = within(Duration::from_secs(5), "read on a dead runtime's socket", s.read(&mut b))
                    .await
                    .unwrap_err();
                assert!(e.to_string().contains("shut down"), "{e}");
                // The new runtime's own sockets work.
                let mut s2 = connect(a).await;
                s2.write_all(b"ok").await.unwrap();
                within(Duration::from_secs(5), "echo", s2.read_exact(&mut b)).await.unwrap();
                assert_eq!(&b, b"ok");
            });
        },
    );
}
