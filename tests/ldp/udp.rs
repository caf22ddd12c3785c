//! UDP clients under LDP, through VPP's stack, making the calls programs
//! make and the kernel accepts.

use super::*;

/// Against a UDP echo server (`tests/programs/udp_echo.py`, under LDP):
/// `tests/programs/udp_client.py` checks that `getpeername` of a socket
/// never connected fails with `ENOTCONN`, that `sendto` on a socket never
/// bound works (the kernel binds it first, to a free port), and that
/// `connect` of a non-blocking socket succeeds at once;
/// `tests/programs/sendmmsg_udp.c` sends three datagrams with one
/// `sendmmsg`. With the C layer all four fail: `getpeername` answers zeros (libuv's `uv_udp_connect` then says
/// "already connected": BIND's `dig` gives up), `sendto` fails with
/// `EBADFD`, the connect with `EINPROGRESS` (glibc-style resolvers give
/// up on it), and LDP's `sendmmsg` with `ENOSYS`.
///
/// The echo server exits right after its last answer; that close waits for
/// VPP to take the answer (see the next test), which VPP otherwise dropped
/// now and then.
#[test]
fn ldp_udp_clients_send_as_with_the_kernel() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3"], "python3");
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, _, srv_conf, cli_conf) = stack_confs(&vpp, "udp-echo", "udp-clients");
    let rust = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let programs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs");
    let sendmmsg = build_c(&vpp, "sendmmsg_udp.c", "sendmmsg_udp", &[]);
    let (addr, port) = (srv_ns.addr.to_string(), "7496");

    // Two datagrams from the script's checks, three from sendmmsg.
    let echo_out = vpp.dir().join("udp_echo.out");
    let echo = ProcessGroup::spawn(
        under_ldp(&mut Command::new("/usr/bin/python3"), &rust, &srv_conf)
            .arg(programs.join("udp_echo.py"))
            .args([&addr, port, "5"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&echo_out).unwrap())
            .stderr(Stdio::null()),
    )
    .expect("spawn udp_echo.py");
    let echoed = || std::fs::read_to_string(&echo_out).unwrap_or_default();
    wait_for_text("the echo server did not start", "ready", echoed);
    let run = |cmd: &mut Command| {
        let child = under_ldp(cmd, &rust, &cli_conf)
            .env("VLS_RS_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn a client");
        let out = wait_output_with_timeout(child, Duration::from_secs(40)).unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let (sent, batch) = run(Command::new(&sendmmsg).args([&addr, port]));
    let (_, checks) =
        run(Command::new("/usr/bin/python3").arg(programs.join("udp_client.py")).args([&addr, port]));
    let status = echo.stop(libc::SIGTERM, Duration::from_secs(10));
    eprintln!("UDP client checks under LDP with the Rust layer:\n{checks}{batch}");
    assert_eq!(checks.lines().filter(|l| l.starts_with("ok:")).count(), 3, "{checks}\nserver: {}", echoed());
    assert!(!checks.contains("FAIL"), "{checks}");
    assert!(sent && batch.contains("sendmmsg sent 3 (lengths 5 6 5)"), "{batch}");
    for word in ["first", "second", "third"] {
        assert!(batch.contains(&format!("received: {word}\n")), "{batch}");
    }
    assert!(echoed().contains("echoed all 5"), "the server echoed all five: {}\n({status:?})", echoed());
}

/// A UDP echo server that closes its socket right after each answer
/// (`tests/programs/udp_close_after_send.py`, under LDP) gets every answer
/// out: the close waits until VPP has taken the datagram. Without that
/// wait VPP freed the socket's session before sending it, and nearly every
/// answer was lost (also with the C layer).
#[test]
fn ldp_udp_close_right_after_sendto_keeps_the_datagram() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3"], "python3");
    let st = stack("udp-echo", "udp-clients");
    let rust = &st.preloads.rust;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/udp_close_after_send.py");
    let (addr, port, count) = (st.server_addr.as_str(), "7497", "20");
    let served_out = st.vpp.dir().join("udp_close_after_send.out");
    let server = ProcessGroup::spawn(
        under_ldp(&mut Command::new("/usr/bin/python3"), rust, &st.srv_conf)
            .arg(&script)
            .args(["serve", addr, port, count])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&served_out).unwrap())
            .stderr(Stdio::null()),
    )
    .expect("spawn the server");
    let served = || std::fs::read_to_string(&served_out).unwrap_or_default();
    wait_for_text("the echo server did not start", "ready", served);
    let (_, stdout, stderr) = run_under_ldp(
        Command::new("/usr/bin/python3")
            .arg(&script)
            .args(["ask", addr, port, count])
            .env("VLS_RS_LOG", "warn"),
        rust,
        &st.cli_conf,
        Duration::from_secs(60),
    );
    let _ = server.stop(libc::SIGTERM, Duration::from_secs(10));
    let text = format!("{stdout}{stderr}");
    assert!(text.contains(&format!("answered {count} of {count}")), "{text}\nserver: {}", served());
}
