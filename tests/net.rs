//! The safe API (`vls::{App, TcpListener, TcpStream, UdpSocket, Epoll}`)
//! against a real VPP. Each test runs server and client as two processes
//! (`common::run_pair`).

mod common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::run_pair;
use vls::{
    App, AsRawHandle, Epoll, Events, FromRawHandle, Interest, IntoRawHandle, TcpListener, TcpStream,
    UdpSocket,
};
use vpp_harness::{cut_through, pattern, through_stack, STACK_SERVER};

fn app(name: &str) {
    let a = App::init(name).expect("App::init");
    // Idempotent: a second init returns the same application.
    assert!(std::ptr::eq(a, App::init("other-name").unwrap()));
    assert_eq!(a.name(), name);
}

/// Connects, retrying while the server process is not listening yet.
fn connect(addr: SocketAddr) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return s,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("connect {addr}: {e}"),
        }
    }
}

fn echo_one(mut s: TcpStream) -> usize {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = s.read(&mut buf).expect("server read");
        if n == 0 {
            return total;
        }
        s.write_all(&buf[..n]).expect("server write");
        total += n;
    }
}

fn round_trip(addr: SocketAddr, len: usize) {
    let s = connect(addr);
    assert_eq!(s.peer_addr().unwrap(), addr);
    let data = pattern(len, 7);
    let mut back = vec![0u8; len];
    thread::scope(|sc| {
        sc.spawn(|| (&s).write_all(&data).unwrap());
        (&s).read_exact(&mut back).unwrap();
    });
    assert!(back == data, "echoed bytes differ");
}

#[test]
fn net_tcp_round_trip_ipv4() {
    let a: SocketAddr = "127.0.0.1:7201".parse().unwrap();
    run_pair(
        "net_tcp_round_trip_ipv4",
        cut_through,
        || {
            app("net-v4-server");
            let l = TcpListener::bind(a).unwrap();
            assert_eq!(l.local_addr().unwrap(), a);
            let (s, peer) = l.accept().unwrap();
            assert_eq!(s.peer_addr().unwrap(), peer);
            // Interop with the C ABI through the raw VLS handle.
            let h = s.as_raw_handle();
            assert_ne!(vls::capi::vlsh_to_sh(h), u32::MAX);
            let h2 = s.into_raw_handle();
            assert_eq!(h, h2);
            // SAFETY: `h2` is the open session just released.
            let s = unsafe { TcpStream::from_raw_handle(h2) };
            assert_eq!(echo_one(s), 4 << 20);
        },
        || {
            app("net-v4-client");
            round_trip(a, 4 << 20);
        },
    );
}

#[test]
fn net_tcp_round_trip_ipv6() {
    let a: SocketAddr = "[::1]:7202".parse().unwrap();
    run_pair(
        "net_tcp_round_trip_ipv6",
        cut_through,
        || {
            app("net-v6-server");
            let l = TcpListener::bind(a).unwrap();
            let (s, peer) = l.accept().unwrap();
            assert!(peer.is_ipv6(), "peer {peer}");
            assert_eq!(echo_one(s), 1 << 20);
        },
        || {
            app("net-v6-client");
            round_trip(a, 1 << 20);
        },
    );
}

#[test]
fn net_tcp_round_trip_through_stack() {
    let a = SocketAddr::from((STACK_SERVER, 7203));
    run_pair(
        "net_tcp_round_trip_through_stack",
        through_stack,
        || {
            app("net-stack-server");
            let l = TcpListener::bind(a).unwrap();
            let (s, _) = l.accept().unwrap();
            s.set_nodelay(true).unwrap();
            assert_eq!(echo_one(s), 2 << 20);
        },
        || {
            app("net-stack-client");
            round_trip(a, 2 << 20);
        },
    );
}

#[test]
fn net_udp_round_trip_through_stack() {
    let a = SocketAddr::from((STACK_SERVER, 7204));
    run_pair(
        "net_udp_round_trip_through_stack",
        through_stack,
        || {
            app("net-udp-server");
            let sock = UdpSocket::bind(a).unwrap();
            let mut buf = [0u8; 2048];
            // Echo until the last datagram (the client may repeat the
            // first one until this socket is bound).
            loop {
                let (n, from) = sock.recv_from(&mut buf).unwrap();
                assert_ne!(from.port(), 0);
                assert_eq!(sock.send_to(&buf[..n], from).unwrap(), n);
                if buf[..n] == [19u8; 1000] {
                    break;
                }
            }
            // Let VPP send the last echo before this app detaches.
            thread::sleep(Duration::from_millis(500));
        },
        || {
            app("net-udp-client");
            let mut back = [0u8; 2048];
            // Handshake: the first datagram is resent until it comes back
            // (the server may not be bound yet), instead of assuming a delay.
            // A socket that reports NotConnected (seen under load on a
            // busy machine, right after its connect returned) is replaced.
            let mut tries = 0;
            let sock = loop {
                tries += 1;
                assert!(tries < 100, "no echo of the first datagram within 20 s");
                let sock = UdpSocket::connect_to(a).unwrap();
                assert_eq!(sock.peer_addr().unwrap(), a);
                sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                let not_yet = |e: &std::io::Error| {
                    matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::NotConnected
                    )
                };
                match sock.send(&[0u8; 1000]) {
                    Ok(n) => assert_eq!(n, 1000),
                    Err(e) if not_yet(&e) => continue,
                    Err(e) => panic!("send: {e}"),
                }
                match sock.recv(&mut back) {
                    Ok(n) => {
                        assert_eq!(&back[..n], &[0u8; 1000][..], "datagram 0");
                        break sock;
                    }
                    Err(e) if not_yet(&e) => continue,
                    Err(e) => panic!("recv: {e}"),
                }
            };
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            for i in 1..20u8 {
                let d = [i; 1000];
                assert_eq!(sock.send(&d).unwrap(), 1000);
                // Late echoes of the repeated first datagram are skipped.
                let n = loop {
                    let n = sock.recv(&mut back).unwrap();
                    if back[..n] != [0u8; 1000] {
                        break n;
                    }
                };
                assert_eq!(&back[..n], &d[..], "datagram {i}");
            }
        },
    );
}

/// A read timeout makes VLS run the session non-blocking in VCL; writes,
/// which have no timeout, must still block until all is written (12 MiB,
/// three times the FIFO, to a peer that starts reading late).
#[test]
fn net_read_timeout_leaves_writes_blocking() {
    let a: SocketAddr = "127.0.0.1:7209".parse().unwrap();
    const LEN: usize = 12 << 20;
    run_pair(
        "net_read_timeout_leaves_writes_blocking",
        cut_through,
        || {
            app("net-timeout-server");
            let l = TcpListener::bind(a).unwrap();
            let (mut s, _) = l.accept().unwrap();
            thread::sleep(Duration::from_millis(500));
            let mut got = vec![0u8; LEN];
            s.read_exact(&mut got).unwrap();
            assert!(got == pattern(LEN, 9), "bytes differ");
            s.write_all(b"k").unwrap();
        },
        || {
            app("net-timeout-client");
            let mut s = connect(a);
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(&pattern(LEN, 9)).expect("a blocking write with only a read timeout set");
            let mut k = [0u8; 1];
            s.read_exact(&mut k).unwrap();
        },
    );
}

/// A stream accepted on one thread, read half-way, then moved to another
/// thread that finishes it.
#[test]
fn net_stream_moved_to_another_thread_mid_stream() {
    let a: SocketAddr = "127.0.0.1:7205".parse().unwrap();
    run_pair(
        "net_stream_moved_to_another_thread_mid_stream",
        cut_through,
        || {
            app("net-move-server");
            let l = TcpListener::bind(a).unwrap();
            let (mut s, _) = l.accept().unwrap();
            let data = pattern(1 << 20, 3);
            let mut first = vec![0u8; data.len() / 2];
            s.read_exact(&mut first).unwrap();
            assert!(first[..] == data[..data.len() / 2]);
            let rest = thread::spawn(move || {
                let mut rest = vec![0u8; (1 << 20) - (1 << 19)];
                s.read_exact(&mut rest).unwrap();
                s.write_all(b"ok").unwrap();
                rest
            })
            .join()
            .unwrap();
            assert!(rest[..] == data[data.len() / 2..]);
        },
        || {
            app("net-move-client");
            let mut s = connect(a);
            s.write_all(&pattern(1 << 20, 3)).unwrap();
            let mut ok = [0u8; 2];
            s.read_exact(&mut ok).unwrap();
            assert_eq!(&ok, b"ok");
        },
    );
}

/// An `Arc<TcpStream>` written from 4 threads with `write_message`: every
/// record arrives whole.
#[test]
fn net_shared_stream_written_from_four_threads() {
    let a: SocketAddr = "127.0.0.1:7206".parse().unwrap();
    const RECORD: usize = 512;
    const PER_THREAD: usize = 500;
    run_pair(
        "net_shared_stream_written_from_four_threads",
        cut_through,
        || {
            app("net-shared-server");
            let l = TcpListener::bind(a).unwrap();
            let (mut s, _) = l.accept().unwrap();
            let mut counts = [0usize; 4];
            let mut rec = [0u8; RECORD];
            for _ in 0..4 * PER_THREAD {
                s.read_exact(&mut rec).unwrap();
                let t = rec[0] as usize;
                assert!(t < 4, "record header {t}");
                let seq = u32::from_be_bytes(rec[1..5].try_into().unwrap()) as usize;
                assert_eq!(seq, counts[t], "thread {t} records out of order");
                assert!(rec[5..].iter().all(|&b| b == (t as u8) ^ (seq as u8)), "record {t}/{seq} torn");
                counts[t] += 1;
            }
            assert_eq!(counts, [PER_THREAD; 4]);
            let mut end = [0u8; 1];
            assert_eq!(s.read(&mut end).unwrap(), 0, "EOF after the records");
        },
        || {
            app("net-shared-client");
            let s = Arc::new(connect(a));
            let go = Arc::new(Barrier::new(4));
            let hs: Vec<_> = (0..4u8)
                .map(|t| {
                    let (s, go) = (Arc::clone(&s), Arc::clone(&go));
                    thread::spawn(move || {
                        go.wait();
                        for seq in 0..PER_THREAD as u32 {
                            let mut rec = [t ^ seq as u8; RECORD];
                            rec[0] = t;
                            rec[1..5].copy_from_slice(&seq.to_be_bytes());
                            let mut off = 0;
                            while off < RECORD {
                                off += s.write_message(&rec[off..]).unwrap();
                                assert_eq!(off, RECORD, "a record was split");
                            }
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            s.shutdown(Shutdown::Write).unwrap();
            thread::sleep(Duration::from_millis(300));
        },
    );
}

/// `incoming()` serves 100 clients (from 4 client threads).
#[test]
fn net_incoming_serves_100_clients() {
    let a: SocketAddr = "127.0.0.1:7207".parse().unwrap();
    run_pair(
        "net_incoming_serves_100_clients",
        cut_through,
        || {
            app("net-incoming-server");
            let l = TcpListener::bind(a).unwrap();
            for (i, s) in l.incoming().take(100).enumerate() {
                let mut s = s.unwrap();
                let mut b = [0u8; 4];
                s.read_exact(&mut b).unwrap();
                s.write_all(&(i as u32).to_be_bytes()).unwrap();
            }
        },
        || {
            app("net-incoming-client");
            let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let seen = Arc::clone(&seen);
                    thread::spawn(move || {
                        for _ in 0..25 {
                            let mut s = connect(a);
                            s.write_all(b"ping").unwrap();
                            let mut b = [0u8; 4];
                            s.read_exact(&mut b).unwrap();
                            seen.lock().unwrap().push(u32::from_be_bytes(b));
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
            let mut seen = seen.lock().unwrap().clone();
            seen.sort();
            assert_eq!(seen, (0..100).collect::<Vec<u32>>());
        },
    );
}

/// Refused connect, EOF after the peer closes (`Drop`), write after
/// shutdown, read timeout, connect timeout.
#[test]
fn net_errors_eof_shutdown_and_timeouts() {
    let a: SocketAddr = "127.0.0.1:7208".parse().unwrap();
    run_pair(
        "net_errors_eof_shutdown_and_timeouts",
        cut_through,
        || {
            app("net-errors-server");
            let l = TcpListener::bind(a).unwrap();
            // 1: dropped right away: the client reads EOF.
            let (s, _) = l.accept().unwrap();
            drop(s);
            // 2: stays silent: the client's read times out; then it closes.
            let (mut s, _) = l.accept().unwrap();
            let mut b = [0u8; 1];
            assert_eq!(s.read(&mut b).unwrap(), 0, "client closed");
            // 3: connect_timeout target.
            let (s, _) = l.accept().unwrap();
            assert_eq!(echo_one(s), 0);
        },
        || {
            app("net-errors-client");
            let e = TcpStream::connect("127.0.0.1:7299").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::ConnectionRefused, "{e}");
            assert!(e.to_string().contains("VPPCOM_ECONNREFUSED"), "{e}");

            let mut s = connect(a);
            let mut b = [0u8; 8];
            assert_eq!(s.read(&mut b).unwrap(), 0, "EOF after the server dropped the stream");
            s.shutdown(Shutdown::Write).unwrap();
            assert!(s.write(b"late").is_err(), "write after shutdown");
            drop(s);

            let mut s = connect(a);
            s.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            assert_eq!(s.read_timeout().unwrap(), Some(Duration::from_millis(300)));
            let t = Instant::now();
            let e = s.read(&mut b).unwrap_err();
            let took = t.elapsed();
            assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
            assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{took:?}");
            assert_eq!(
                s.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
            drop(s);

            let s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).unwrap();
            assert_eq!(s.peer_addr().unwrap(), a);
            drop(s);
            let e = TcpStream::connect_timeout(&"127.0.0.1:7298".parse().unwrap(), Duration::from_secs(5))
                .unwrap_err();
            assert!(
                matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::TimedOut),
                "connect_timeout to a closed port: {e}"
            );
        },
    );
}

/// Epoll: a listener and its connections in one set, tokens returned,
/// timeouts honoured, non-blocking accept and reads.
#[test]
fn net_epoll_server() {
    let a: SocketAddr = "127.0.0.1:7212".parse().unwrap();
    run_pair(
        "net_epoll_server",
        cut_through,
        || {
            app("net-epoll-server");
            // A non-blocking accept with nothing pending: on a listener no
            // client knows of (the client connects to `a` as soon as it can).
            let idle = TcpListener::bind("127.0.0.1:7213").unwrap();
            idle.set_nonblocking(true).unwrap();
            assert_eq!(idle.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
            drop(idle);
            let l = TcpListener::bind(a).unwrap();
            l.set_nonblocking(true).unwrap();
            let ep = Epoll::new().unwrap();
            ep.add(&l, u64::MAX, Interest::READABLE).unwrap();
            let mut events = Events::with_capacity(16);
            let mut streams: Vec<Option<TcpStream>> = Vec::new();
            let mut done = 0;
            let deadline = Instant::now() + Duration::from_secs(20);
            while done < 3 {
                assert!(Instant::now() < deadline, "epoll server stuck");
                ep.wait(&mut events, Some(Duration::from_millis(200))).unwrap();
                for ev in events.iter() {
                    if ev.token() == u64::MAX {
                        loop {
                            match l.accept() {
                                Ok((s, _)) => {
                                    s.set_nonblocking(true).unwrap();
                                    ep.add(&s, streams.len() as u64, Interest::READABLE).unwrap();
                                    streams.push(Some(s));
                                }
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                Err(e) => panic!("accept: {e}"),
                            }
                        }
                        continue;
                    }
                    let Some(s) = streams[ev.token() as usize].as_ref() else { continue };
                    let mut buf = [0u8; 256];
                    let mut r = s;
                    match r.read(&mut buf) {
                        Ok(0) => {
                            ep.delete(s).unwrap();
                            streams[ev.token() as usize] = None;
                            done += 1;
                        }
                        Ok(n) => {
                            let mut w = s;
                            w.write_all(&buf[..n]).unwrap();
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => panic!("read: {e}"),
                    }
                }
            }
            // An empty wait honours its timeout.
            let t = Instant::now();
            assert_eq!(ep.wait(&mut events, Some(Duration::from_millis(100))).unwrap(), 0);
            assert!(t.elapsed() >= Duration::from_millis(90), "{:?}", t.elapsed());
        },
        || {
            app("net-epoll-client");
            let hs: Vec<_> = (0..3u8)
                .map(|i| {
                    thread::spawn(move || {
                        let mut s = connect(a);
                        for k in 0..10u8 {
                            s.write_all(&[i, k]).unwrap();
                            let mut b = [0u8; 2];
                            s.read_exact(&mut b).unwrap();
                            assert_eq!(b, [i, k]);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        },
    );
}

#[test]
fn net_sockets_before_app_init_fail_clearly() {
    // This process never attaches: no VPP needed.
    let e = TcpStream::connect("127.0.0.1:1").unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::NotConnected);
    assert!(e.to_string().contains("App::init"), "{e}");
    assert!(TcpListener::bind("127.0.0.1:1").is_err());
    assert!(UdpSocket::bind("127.0.0.1:1").is_err());
    assert!(Epoll::new().is_err());
}

#[test]
fn net_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<TcpStream>();
    check::<TcpListener>();
    check::<UdpSocket>();
    check::<Epoll>();
    check::<&'static App>();
}

/// Mode 3: two threads each wait on an `Epoll` of their own while the other
/// thread's sessions are busy on the same VCL worker: every event reaches
/// its own set's waiter (a lost hand-over would leave a waiter asleep until
/// its 10 s timeout, and 40 round trips would exceed the test's limit).
#[test]
fn net_two_threads_each_with_an_epoll_set() {
    let ports = [7210u16, 7211];
    run_pair(
        "net_two_threads_each_with_an_epoll_set",
        cut_through,
        || {
            app("net-2ep-server");
            let hs: Vec<_> = ports
                .iter()
                .map(|&p| {
                    thread::spawn(move || {
                        let l = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], p))).unwrap();
                        let (s, _) = l.accept().unwrap();
                        s.set_nonblocking(true).unwrap();
                        let ep = Epoll::new().unwrap();
                        ep.add(&s, 1, Interest::READABLE).unwrap();
                        let mut events = Events::with_capacity(8);
                        let mut served = 0;
                        while served < 20 {
                            let n = ep.wait(&mut events, Some(Duration::from_secs(10))).unwrap();
                            assert!(n > 0, "port {p}: no event within 10 s after {served} round trips");
                            assert!(events.iter().all(|e| e.token() == 1), "an event of another set");
                            let mut buf = [0u8; 64];
                            loop {
                                match (&s).read(&mut buf) {
                                    Ok(0) => return,
                                    Ok(k) => {
                                        (&s).write_all(&buf[..k]).unwrap();
                                        served += 1;
                                    }
                                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                                    Err(e) => panic!("read: {e}"),
                                }
                            }
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        },
        || {
            app("net-2ep-client");
            let hs: Vec<_> = ports
                .iter()
                .map(|&p| {
                    thread::spawn(move || {
                        let mut s = connect(SocketAddr::from(([127, 0, 0, 1], p)));
                        for i in 0..20u8 {
                            s.write_all(&[i]).unwrap();
                            let mut b = [0u8; 1];
                            s.read_exact(&mut b).unwrap();
                            assert_eq!(b[0], i);
                        }
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        },
    );
}
