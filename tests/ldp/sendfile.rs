//! `sendfile` to a VPP session under LDP (`libvls.so` answers it in front
//! of LDP, see `src/capi/ldp_sendfile.rs`).

use super::handover::{serve_then_connect, Served};
use super::*;

/// `tests/programs/sendfile_serve.py` sends a 3 MB file with `sendfile`
/// three ways (offsets that move by what each call sent, as Python's
/// `socket.sendfile` does; no offset, from the file's position; a
/// non-blocking socket waiting in `select` when full), under the Rust
/// layer, to a client in the other namespace. LDP's own `sendfile` moved
/// the offset one byte too far after each call (a byte lost per call), and
/// counted bytes a short write did not take. Every copy must arrive whole,
/// and without an offset the file's position must have moved by exactly
/// what was sent.
#[test]
fn ldp_sendfile_sends_every_byte_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3"], "python3");
    let st = stack("sendfile-server", "sendfile-client");
    let file = st.vpp.dir().join("three-mb");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let file = file.to_string_lossy().into_owned();
    let (addr, port) = (&st.server_addr, "7603");
    let Served { client_ok: ok, client_out: out, client_err: err, status, server_out: text } =
        serve_then_connect(
            &st,
            "sendfile_serve.py",
            &["serve", addr, port, &file],
            &["client", addr, port, &file],
        );
    for way in ["offsets", "position", "nonblocking"] {
        assert!(
            out.lines().any(|l| l == format!("{way} whole")),
            "{way}: the copy arrived whole:\n{out}{err}\nserver:\n{text}"
        );
    }
    assert!(ok, "client:\n{out}{err}");
    assert!(status.is_some_and(|s| s.success()) && text.contains("served"), "server ({status:?}):\n{text}");
    let half = data.len() / 2;
    assert!(
        text.contains(&format!("position file position {half}\n"))
            && text.contains(&format!("position file position {}\n", data.len())),
        "the file's position moved by what was sent:\n{text}"
    );
}
