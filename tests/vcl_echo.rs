//! The bindings and the harness, proven by moving real bytes through a real
//! VPP with the raw VCL calls (no locking layer): TCP and UDP echo, over
//! cut-through and through VPP's IP stack, plus bad-handle errors.

mod common;

use std::net::{Ipv4Addr, SocketAddr};

use vcl::Proto;
use vls::VppcomError;

use common::{retry_refused, run_isolated, run_pair};
use vpp_harness::{cut_through, pattern, through_stack, VclConf, STACK_SERVER};

/// The raw VCL calls these tests make. Each test process uses VCL from its
/// one thread and never through VLS, which is what `vls::raw::vcl` asks of its
/// callers.
mod vcl {
    use std::net::SocketAddr;
    pub use vls::raw::vcl::{Proto, SessionHandle};
    use vls::VppcomError;

    type R<T> = Result<T, VppcomError>;

    macro_rules! single_threaded {
        ($($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {$(
            pub fn $name($($arg: $ty),*) -> $ret {
                // SAFETY: the test process's only VCL user is this thread.
                unsafe { vls::raw::vcl::$name($($arg),*) }
            }
        )*};
    }

    single_threaded! {
        app_create(name: &str) -> R<()>;
        app_destroy() -> ();
        session_create(proto: Proto, nonblocking: bool) -> R<SessionHandle>;
        bind(sh: SessionHandle, addr: &SocketAddr) -> R<()>;
        listen(sh: SessionHandle, backlog: u32) -> R<()>;
        accept(sh: SessionHandle, flags: i32) -> R<(SessionHandle, SocketAddr)>;
        connect(sh: SessionHandle, addr: &SocketAddr) -> R<()>;
        read(sh: SessionHandle, buf: &mut [u8]) -> R<usize>;
        write(sh: SessionHandle, buf: &[u8]) -> R<usize>;
        sendto(sh: SessionHandle, buf: &[u8], to: Option<&SocketAddr>) -> R<usize>;
        recvfrom(sh: SessionHandle, buf: &mut [u8]) -> R<(usize, SocketAddr)>;
        close(sh: SessionHandle) -> R<()>;
        local_addr(sh: SessionHandle) -> R<SocketAddr>;
        peer_addr(sh: SessionHandle) -> R<SocketAddr>;
    }

    /// Makes `sh` non-blocking.
    pub fn set_nonblocking(sh: SessionHandle) {
        let mut flags = libc::O_NONBLOCK as u32;
        let mut len = 4u32;
        // SAFETY: a 4-byte flags buffer; the test process's only VCL user
        // is this thread.
        let rv = unsafe {
            vls::ffi::vppcom_session_attr(
                sh,
                vls::ffi::VPPCOM_ATTR_SET_FLAGS,
                (&mut flags as *mut u32).cast(),
                &mut len,
            )
        };
        assert_eq!(rv, 0, "set O_NONBLOCK");
    }
}

const TOTAL: usize = 2 << 20; // 2 MiB each way
const TCP_CHUNK: usize = 64 << 10;
const UDP_DGRAM: usize = 1200;

fn read_exact(sh: vcl::SessionHandle, buf: &mut [u8]) {
    let mut got = 0;
    while got < buf.len() {
        let n = vcl::read(sh, &mut buf[got..]).expect("read");
        assert!(n > 0, "peer closed after {got} of {} bytes", buf.len());
        got += n;
    }
}

fn write_all(sh: vcl::SessionHandle, buf: &[u8]) {
    let mut put = 0;
    while put < buf.len() {
        put += vcl::write(sh, &buf[put..]).expect("write");
    }
}

/// Connects a new session of `proto` to `addr`, retrying while the server
/// process is not listening yet.
fn connect_retry(proto: Proto, addr: SocketAddr) -> vcl::SessionHandle {
    retry_refused(|| {
        let sh = vcl::session_create(proto, false)?;
        match vcl::connect(sh, &addr) {
            Ok(()) => Ok(sh),
            Err(e) => {
                let _ = vcl::close(sh);
                Err(e)
            }
        }
    })
    .expect("connect")
}

/// Echoes everything it reads on one accepted connection until EOF.
fn tcp_server(addr: SocketAddr) {
    vcl::app_create("tcp-echo-server").expect("app create");
    let listener = vcl::session_create(Proto::Tcp, false).unwrap();
    vcl::bind(listener, &addr).unwrap();
    vcl::listen(listener, 10).unwrap();
    assert_eq!(vcl::local_addr(listener).unwrap(), addr);
    let (conn, peer) = vcl::accept(listener, 0).expect("accept");
    // Cut-through sessions carry no peer address (VCL reports 0.0.0.0);
    // through the stack the peer is the client's namespace address.
    if !addr.ip().is_loopback() {
        assert_eq!(peer.ip(), std::net::IpAddr::from([172, 16, 2, 1]));
    }
    let mut buf = vec![0u8; TCP_CHUNK];
    let mut echoed = 0;
    loop {
        let n = vcl::read(conn, &mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        write_all(conn, &buf[..n]);
        echoed += n;
    }
    assert_eq!(echoed, TOTAL);
    vcl::close(conn).unwrap();
    vcl::close(listener).unwrap();
    vcl::app_destroy();
}

/// Sends `TOTAL` pseudo-random bytes in chunks and checks each echo.
fn tcp_client(addr: SocketAddr) {
    vcl::app_create("tcp-echo-client").expect("app create");
    let sh = connect_retry(Proto::Tcp, addr);
    assert_eq!(vcl::peer_addr(sh).unwrap(), addr);
    let data = pattern(TOTAL, 7);
    let mut back = vec![0u8; TCP_CHUNK];
    for chunk in data.chunks(TCP_CHUNK) {
        write_all(sh, chunk);
        read_exact(sh, &mut back[..chunk.len()]);
        assert_eq!(&back[..chunk.len()], chunk, "echoed bytes differ");
    }
    vcl::close(sh).unwrap();
    vcl::app_destroy();
}

/// Answers every datagram to its source until `TOTAL` bytes came back.
/// Over cut-through a connected UDP client gets a session of its own that
/// the server accepts; through the stack datagrams reach the bound session.
fn udp_server(addr: SocketAddr, cut_through: bool) {
    vcl::app_create("udp-echo-server").expect("app create");
    let server = vcl::session_create(Proto::Udp, false).unwrap();
    vcl::bind(server, &addr).unwrap();
    vcl::listen(server, 10).unwrap();
    let rx = if cut_through { vcl::accept(server, 0).expect("accept ct udp").0 } else { server };
    let mut buf = vec![0u8; 4096];
    let mut echoed = 0;
    // Until the client says it got every echo (detaching earlier could
    // drop the last datagram still queued for VPP). The client may send
    // its first datagram more than once.
    loop {
        let (n, from) = vcl::recvfrom(rx, &mut buf).expect("recvfrom");
        if &buf[..n] == DONE {
            break;
        }
        let to = if cut_through { None } else { Some(from) };
        assert_eq!(vcl::sendto(rx, &buf[..n], to.as_ref()).expect("sendto"), n);
        echoed += n;
    }
    assert!(echoed >= TOTAL, "{echoed} of {TOTAL} bytes echoed");
    vcl::app_destroy();
}

const DONE: &[u8] = b"done";

/// Sends `TOTAL` bytes as datagrams, one at a time, checking each echo.
fn udp_client(addr: SocketAddr, cut_through: bool) {
    vcl::app_create("udp-echo-client").expect("app create");
    // Handshake: the first datagram is sent until its echo comes back.
    // Through the stack a UDP connect does not wait for a peer, and a
    // datagram that reaches VPP before the server is bound draws an ICMP
    // port unreachable, on which VPP resets the connected session: nothing
    // sent on it arrives any more (and non-blocking reads, which handle no
    // events, keep saying EAGAIN). So there a session whose datagram is
    // not echoed within 200 ms is replaced. Over cut-through the connect
    // is refused until the server listens (connect_retry) and the server
    // serves the one session it accepts: that one is kept.
    let connect = || {
        let sh = connect_retry(Proto::Udp, addr);
        vcl::set_nonblocking(sh);
        sh
    };
    let mut sh = connect();
    let data = pattern(TOTAL, 11);
    let mut back = vec![0u8; UDP_DGRAM];
    let first = &data[..UDP_DGRAM];
    let mut tries = 0;
    loop {
        assert_eq!(vcl::write(sh, first).expect("send"), first.len());
        if let Some(n) = read_within(sh, &mut back, std::time::Duration::from_millis(200)) {
            assert_eq!(&back[..n], first, "echoed datagram differs");
            break;
        }
        tries += 1;
        assert!(tries < 100, "no echo of the first datagram within 20 s");
        if !cut_through {
            // (A reset session may refuse the close; it is gone either way.)
            let _ = vcl::close(sh);
            sh = connect();
        }
    }
    for dgram in data.chunks(UDP_DGRAM).skip(1) {
        assert_eq!(vcl::write(sh, dgram).expect("send"), dgram.len());
        // Late echoes of the repeated first datagram are skipped.
        let n = loop {
            let n =
                read_within(sh, &mut back, std::time::Duration::from_secs(10)).expect("an echo within 10 s");
            if &back[..n] != first {
                break n;
            }
        };
        assert_eq!(&back[..n], dgram, "echoed datagram differs");
    }
    assert_eq!(vcl::write(sh, DONE).expect("send done"), DONE.len());
    std::thread::sleep(std::time::Duration::from_millis(100));
    vcl::close(sh).unwrap();
    vcl::app_destroy();
}

/// Reads from non-blocking `sh`, waiting at most `limit` for something.
fn read_within(sh: vcl::SessionHandle, buf: &mut [u8], limit: std::time::Duration) -> Option<usize> {
    let start = std::time::Instant::now();
    loop {
        match vcl::read(sh, buf) {
            Ok(n) => return Some(n),
            Err(e) if e == VppcomError::EAGAIN => {
                if start.elapsed() > limit {
                    return None;
                }
                std::thread::sleep(std::time::Duration::from_micros(50));
            }
            Err(e) => panic!("recv: {e}"),
        }
    }
}

fn stack_addr(port: u16) -> SocketAddr {
    SocketAddr::new(STACK_SERVER.into(), port)
}

fn local_addr(port: u16) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
}

#[test]
fn tcp_echo_cut_through() {
    let a = local_addr(7001);
    run_pair("tcp_echo_cut_through", cut_through, || tcp_server(a), || tcp_client(a));
}

#[test]
fn tcp_echo_through_stack() {
    let a = stack_addr(7002);
    run_pair("tcp_echo_through_stack", through_stack, || tcp_server(a), || tcp_client(a));
}

#[test]
fn udp_echo_cut_through() {
    let a = local_addr(7003);
    run_pair("udp_echo_cut_through", cut_through, || udp_server(a, true), || udp_client(a, true));
}

#[test]
fn udp_echo_through_stack() {
    let a = stack_addr(7004);
    run_pair("udp_echo_through_stack", through_stack, || udp_server(a, false), || udp_client(a, false));
}

#[test]
fn bad_handles_give_ebadfd() {
    run_isolated(
        "bad_handles_give_ebadfd",
        VclConf::default(),
        |_| {},
        || {
            vcl::app_create("bad-handles").expect("app create");
            let never_created = 4242;
            assert_eq!(vcl::close(never_created), Err(VppcomError::EBADFD));
            assert_eq!(vcl::read(never_created, &mut [0u8; 8]), Err(VppcomError::EBADFD));
            assert_eq!(vcl::write(never_created, b"x"), Err(VppcomError::EBADFD));
            assert_eq!(vcl::listen(never_created, 1), Err(VppcomError::EBADFD));
            assert_eq!(vcl::local_addr(never_created), Err(VppcomError::EBADFD));
            let sh = vcl::session_create(Proto::Tcp, false).unwrap();
            let unknown_index = sh | 0x00ff_0000;
            assert_eq!(vcl::read(unknown_index, &mut [0u8; 1]), Err(VppcomError::EBADFD));
            vcl::close(sh).unwrap();
            vcl::app_destroy();
        },
    );
}
