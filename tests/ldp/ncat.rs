//! Debian's ncat (nmap's netcat) as a client under LDP.

use super::*;

/// `ncat ADDR PORT < 50 kB` against `tests/programs/poll_echo.py` (both
/// under the Rust layer), three times: every byte comes back. ncat's
/// non-blocking connect then waits in `select`, and VCL's poll reported
/// the connect in progress as an error, which `select` answers as
/// readable and writable: ncat took the connect for done and its first
/// read failed with `ENOTCONN` ("Transport endpoint is not connected"; the
/// C layer still does, printed with `--nocapture`).
#[test]
fn ldp_ncat_client_gets_its_echo() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ncat = "/usr/bin/ncat";
    need(&[ncat, "/usr/bin/python3"], "ncat python3");
    let st = stack("echo", "ncat");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/poll_echo.py");
    let data: Vec<u8> = (0..50_000u32).map(|i| (i.wrapping_mul(40_503) >> 7) as u8).collect();
    let input = st.vpp.dir().join("ncat.in");
    std::fs::write(&input, &data).unwrap();
    let addr = &st.server_addr;
    for (layer, preload) in [("Rust", &st.preloads.rust), ("C", &st.preloads.c)] {
        for run in 0..3 {
            let port = format!("{}", 7570 + run + if layer == "C" { 10 } else { 0 });
            let out = st.vpp.dir().join(format!("echo-{layer}-{run}.out"));
            let _server = ProcessGroup::spawn(
                under_ldp(&mut Command::new("/usr/bin/python3"), &st.preloads.rust, &st.srv_conf)
                    .arg(&script)
                    .args(["serve", addr, &port])
                    .stdin(Stdio::null())
                    .stdout(std::fs::File::create(&out).unwrap())
                    .stderr(Stdio::null()),
            )
            .expect("spawn the echo server");
            wait_for_text("the echo server did not start", "listening", || {
                std::fs::read_to_string(&out).unwrap_or_default()
            });
            let client = under_ldp(&mut Command::new(ncat), preload, &st.cli_conf)
                .args([addr, &port])
                .stdin(std::fs::File::open(&input).unwrap())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn ncat");
            let done = wait_output_with_timeout(client, Duration::from_secs(20)).unwrap();
            let err = String::from_utf8_lossy(&done.stderr).into_owned();
            if layer == "C" {
                eprintln!(
                    "ncat, C layer, run {run}: {} of {} bytes back; {}",
                    done.stdout.len(),
                    data.len(),
                    err.trim()
                );
                continue;
            }
            assert!(
                done.status.success() && done.stdout == data,
                "run {run}: {} bytes back; {err}",
                done.stdout.len()
            );
        }
    }
}
