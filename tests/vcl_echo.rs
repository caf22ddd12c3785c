//! The bindings and the harness, proven by moving real bytes through a real
//! VPP with the raw VCL calls (no locking layer): TCP and UDP echo, over
//! cut-through and through VPP's IP stack, plus bad-handle errors.

#![cfg(feature = "vpp")]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::thread;

use vls::harness::{VclConf, VppInstance};
use vls::vcl::{self, Proto};
use vls::VppcomError;

use common::{pattern, run_isolated};

const TOTAL: usize = 2 << 20; // 2 MiB each way
const TCP_CHUNK: usize = 64 << 10;
const UDP_DGRAM: usize = 1200;
const STACK_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

fn loopback(vpp: &VppInstance) {
    vpp.setup_loopback(STACK_ADDR, 24).expect("loopback interface");
}

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

/// Server on this thread (the app's first worker); client on a second
/// thread registered as its own VCL worker.
fn tcp_echo(addr: SocketAddr) {
    vcl::app_create("tcp-echo").expect("app create");
    let listener = vcl::session_create(Proto::Tcp, false).unwrap();
    vcl::bind(listener, &addr).unwrap();
    vcl::listen(listener, 10).unwrap();
    assert_eq!(vcl::local_addr(listener).unwrap(), addr);

    let client = thread::spawn(move || {
        vcl::worker_register().expect("client worker");
        let sh = vcl::session_create(Proto::Tcp, false).unwrap();
        vcl::connect(sh, &addr).expect("connect");
        assert_eq!(vcl::peer_addr(sh).unwrap(), addr);
        let data = pattern(TOTAL, 7);
        let mut back = vec![0u8; TCP_CHUNK];
        for chunk in data.chunks(TCP_CHUNK) {
            write_all(sh, chunk);
            read_exact(sh, &mut back[..chunk.len()]);
            assert_eq!(&back[..chunk.len()], chunk, "echoed bytes differ");
        }
        vcl::close(sh).unwrap();
        vcl::worker_unregister();
    });

    let (conn, peer) = vcl::accept(listener, 0).expect("accept");
    assert_eq!(peer.ip(), addr.ip());
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
    client.join().expect("client thread");
    assert_eq!(echoed, TOTAL);
    vcl::close(conn).unwrap();
    vcl::close(listener).unwrap();
    vcl::app_destroy();
}

/// UDP: the client connects; the server answers each datagram to its source.
fn udp_echo(addr: SocketAddr, cut_through: bool) {
    vcl::app_create("udp-echo").expect("app create");
    let server = vcl::session_create(Proto::Udp, false).unwrap();
    vcl::bind(server, &addr).unwrap();
    vcl::listen(server, 10).unwrap();

    let (done_tx, done_rx) = mpsc::channel();
    let client = thread::spawn(move || {
        vcl::worker_register().expect("client worker");
        let sh = vcl::session_create(Proto::Udp, false).unwrap();
        vcl::connect(sh, &addr).expect("connect");
        let data = pattern(TOTAL, 11);
        let mut back = vec![0u8; UDP_DGRAM];
        for dgram in data.chunks(UDP_DGRAM) {
            assert_eq!(vcl::write(sh, dgram).expect("send"), dgram.len());
            let n = vcl::read(sh, &mut back).expect("recv");
            assert_eq!(&back[..n], dgram, "echoed datagram differs");
        }
        done_tx.send(()).unwrap();
        vcl::close(sh).unwrap();
        vcl::worker_unregister();
    });

    // Over cut-through a connected UDP client gets its own session, which
    // the server accepts; through the stack datagrams reach the listener.
    let (rx, peer_fixed) = if cut_through {
        let (s, _) = vcl::accept(server, 0).expect("accept ct udp");
        (s, true)
    } else {
        (server, false)
    };
    let mut buf = vec![0u8; 4096];
    let mut echoed = 0;
    while echoed < TOTAL {
        let (n, from) = vcl::recvfrom(rx, &mut buf).expect("recvfrom");
        let to = if peer_fixed { None } else { Some(from) };
        assert_eq!(vcl::sendto(rx, &buf[..n], to.as_ref()).expect("sendto"), n);
        echoed += n;
    }
    done_rx.recv().unwrap();
    client.join().expect("client thread");
    assert_eq!(echoed, TOTAL);
    vcl::app_destroy();
}

#[test]
fn tcp_echo_cut_through() {
    run_isolated(
        "tcp_echo_cut_through",
        VclConf::default(),
        |_| {},
        || tcp_echo("127.0.0.1:7001".parse().unwrap()),
    );
}

#[test]
fn tcp_echo_through_stack() {
    run_isolated("tcp_echo_through_stack", VclConf::through_stack(), loopback, || {
        tcp_echo(SocketAddr::new(STACK_ADDR.into(), 7002))
    });
}

#[test]
fn udp_echo_cut_through() {
    run_isolated(
        "udp_echo_cut_through",
        VclConf::default(),
        |_| {},
        || udp_echo("127.0.0.1:7003".parse().unwrap(), true),
    );
}

#[test]
fn udp_echo_through_stack() {
    run_isolated("udp_echo_through_stack", VclConf::through_stack(), loopback, || {
        udp_echo(SocketAddr::new(STACK_ADDR.into(), 7004), false)
    });
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
            let sh = vcl::session_create(Proto::Tcp, false).unwrap();
            vcl::close(sh).unwrap();
            assert_eq!(vcl::close(sh), Err(VppcomError::EBADFD), "double close");
            assert_eq!(vcl::listen(sh, 1), Err(VppcomError::EBADFD), "use after close");
            vcl::app_destroy();
        },
    );
}
