//! Many connects right after many closes, with no wait in between: VPP
//! must accept every one.
//!
//! VPP answers each connect and each close on the worker's control ring,
//! which holds `event-queue-size` / 16 messages (128 by default). A
//! program that closes and opens connections in a burst without waiting
//! in between filled it; VPP then took the client for congested and
//! refused its next connects (`redis-benchmark` between two tests, which
//! then spins for ever on the refused connection).

use super::*;

/// `tests/programs/connect_burst.py`, over cut-through (64 KiB FIFOs), VPP
/// polling without sleeping (as by default and in production: a VPP that
/// sleeps between polls answered too late to fill the ring):
/// 20 rounds of 50 non-blocking connects in a row (as `redis-benchmark`'s
/// 50 clients), each round after the previous round's 50 closes. Every
/// connect must succeed and the server must see every connection close.
/// Without VCL's queue handled before each connect (`Vls::connect`) 76 to
/// 106 of the 1000 were refused (3 runs). Rounds of 100 still overflow
/// the ring during the 100 closes alone (see the README).
#[test]
fn ldp_connects_right_after_closes_are_not_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3"], "python3");
    let so = libvls();
    let options = VppOptions { poll_sleep_usec: 0, ..VppOptions::default() };
    let vpp = VppInstance::start_with(common::linked_vpp(), options).expect("vpp");
    let conf = vpp.write_vcl_conf("burst", &VclConf { fifo_size: 64 << 10, ..VclConf::default() }).unwrap();
    let rust = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let log = vpp.dir().join("connect_burst.out");
    let (rounds, k) = (20, 50);
    let total = (rounds * k).to_string();
    let server_args = ["serve", "127.0.0.1", "7720", &total];
    let mut server = spawn_python("connect_burst.py", &server_args, &rust, &conf, &[], &log);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/connect_burst.py");
    let served = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for_text("the server did not listen", "listening", served);
    let (ok, out, err) = run_under_ldp(
        Command::new("/usr/bin/python3").arg(&script).args([
            "client",
            "127.0.0.1",
            "7720",
            &rounds.to_string(),
            &k.to_string(),
        ]),
        &rust,
        &conf,
        Duration::from_secs(90),
    );
    let status = server.wait_for(Duration::from_secs(30)).unwrap();
    let text = served();
    assert!(ok, "client:\n{out}{err}\nserver:\n{text}");
    assert_eq!(out.trim(), format!("refused 0 of {total}"), "client:\n{err}\nserver:\n{text}");
    assert!(text.contains(&format!("closed {total} of {total}")), "server ({status:?}):\n{text}");
}
