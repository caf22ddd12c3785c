//! Socket options under LDP that only tune what the kernel does.

use super::*;

/// `tests/programs/sockopt_hints.py` under the Rust layer: `TCP_DEFER_ACCEPT`,
/// `TCP_QUICKACK`, `SO_SNDBUF` and `SO_RCVBUF` on a VPP session succeed,
/// and the socket then binds and listens. LDP refuses all four with
/// `EOPNOTSUPP` (the C layer's answers are printed with `--nocapture`).
#[test]
fn ldp_setsockopt_accepts_tuning_hints() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3"], "python3");
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, _, srv_conf, _) = stack_confs(&vpp, "sockopt", "unused");
    let preloads = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/sockopt_hints.py");
    let addr = srv_ns.addr.to_string();
    for (layer, preload, port) in [("Rust", &preloads.rust, "7580"), ("C", &preloads.c, "7581")] {
        let child = under_ldp(&mut Command::new("/usr/bin/python3"), preload, &srv_conf)
            .arg(&script)
            .args([&addr, port])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sockopt_hints.py");
        let out = wait_output_with_timeout(child, Duration::from_secs(30)).unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        eprintln!("socket option hints, {layer} layer:\n{text}");
        if layer == "Rust" {
            assert!(out.status.success() && text.contains("done"), "{text}");
            assert_eq!(text.lines().filter(|l| l.starts_with("ok:")).count(), 4, "{text}");
        }
    }
}
