//! Socket options under LDP that only tune what the kernel does.

use super::*;

/// `tests/programs/sockopt_hints.py` under the Rust layer: `TCP_DEFER_ACCEPT`,
/// `TCP_QUICKACK`, `SO_SNDBUF`, `SO_RCVBUF` and `IP_MTU_DISCOVER` on a VPP
/// session succeed, and the socket then binds and listens. LDP refuses all
/// five with `EOPNOTSUPP` (the C layer's answers are printed with
/// `--nocapture`).
#[test]
fn ldp_setsockopt_accepts_tuning_hints() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3"], "python3");
    let st = stack("sockopt", "unused");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/sockopt_hints.py");
    for (layer, preload, port) in [("Rust", &st.preloads.rust, "7580"), ("C", &st.preloads.c, "7581")] {
        let (ok, stdout, stderr) = run_under_ldp(
            Command::new("/usr/bin/python3").arg(&script).args([st.server_addr.as_str(), port]),
            preload,
            &st.srv_conf,
            Duration::from_secs(30),
        );
        let text = format!("{stdout}{stderr}");
        eprintln!("socket option hints, {layer} layer:\n{text}");
        if layer == "Rust" {
            assert!(ok && text.contains("done"), "{text}");
            assert_eq!(text.lines().filter(|l| l.starts_with("ok:")).count(), 5, "{text}");
        }
    }
}
