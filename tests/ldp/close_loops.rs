//! Programs that close descriptors by number, one by one: daemons that
//! close everything above 2 at start-up (proftpd), children that do so
//! before `exec` (dropbear's session child). VCL's own descriptors are
//! among those numbers, and LDP takes every number from its base up for a
//! VPP session.

use super::*;

/// `tests/programs/close_all_exec.py`: the server closes every number from
/// 3 to 31 one by one at start-up, as proftpd does, VCL's socket to VPP
/// among them (VPP then detached the application: proftpd never listened,
/// with either layer); `close` now keeps VCL's descriptors open when the
/// program's code closes them. Then, dropbear's session child in small:
/// a forked child closes every descriptor number from 3 up one by one
/// (VCL's own and VPP sessions among them) and execs a shell. LDP answered
/// `EBADFD` for a number at or above its base that is no VPP session, also
/// when a kernel descriptor of that number was open (which stayed open),
/// and dropbear exits on any error but `EBADF` ("Error closing fd 32, File
/// descriptor in bad state": no ssh session worked). Nothing of VCL's may
/// reach the program's stderr either (VCL's goodbye over a closed socket
/// printed "sendmsg: Bad file descriptor" into dropbear users' terminals).
#[test]
fn ldp_closing_every_descriptor_number_answers_as_the_kernel() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3", "/bin/sh"], "python3");
    let st = stack("close-all", "close-all-client");
    let (addr, port) = (&st.server_addr, "7623");
    let super::handover::Served { client_ok, client_out, client_err, status, server_out } =
        super::handover::serve_then_connect(
            &st,
            "close_all_exec.py",
            &["serve", addr, port],
            &["client", addr, port],
        );
    let all = format!("client:\n{client_out}{client_err}\nserver:\n{server_out}");
    assert!(server_out.contains("kernel closes: ok"), "{all}");
    assert!(client_ok, "{all}");
    assert_eq!(client_out.trim(), "child 7", "the child closed everything and ran the shell: {all}");
    assert!(status.is_some_and(|s| s.success()), "server ({status:?}): {all}");
    assert!(!server_out.contains("sendmsg"), "VCL's error reached the program's stderr: {all}");
}
