//! Debian's sockperf (a latency tool) under LDP: its TCP ping-pong sends
//! with `sendto` to the connected peer's address and its server receives
//! with `MSG_NOSIGNAL`, which the kernel accepts and VCL refuses (`EINVAL`,
//! `EAFNOSUPPORT`): with the C layer both ends fail at once.

use super::*;

/// `sockperf sr --tcp` and `sockperf pp --tcp --data-integrity` (64 and
/// 3000-byte messages, 2 s each) under the Rust layer: every answer checked
/// by sockperf, a latency summary printed.
#[test]
fn ldp_sockperf_ping_pong_with_data_integrity() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let sockperf = "/usr/bin/sockperf";
    need(&[sockperf], "sockperf");
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, _, srv_conf, cli_conf) = stack_confs(&vpp, "sockperf-server", "sockperf-client");
    let preloads = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let addr = srv_ns.addr.to_string();
    for (layer, preload) in [("Rust", &preloads.rust), ("C", &preloads.c)] {
        for (i, size) in ["64", "3000"].into_iter().enumerate() {
            let port = format!("{}", 7520 + i + if layer == "C" { 10 } else { 0 });
            let server_out = vpp.dir().join(format!("sockperf-{layer}-{size}.out"));
            let server = ProcessGroup::spawn(
                under_ldp(&mut Command::new(sockperf), preload, &srv_conf)
                    .args(["sr", "--tcp", "-i", &addr, "-p", &port])
                    .stdin(Stdio::null())
                    .stdout(std::fs::File::create(&server_out).unwrap())
                    .stderr(Stdio::null()),
            )
            .expect("spawn the sockperf server");
            let read = || std::fs::read_to_string(&server_out).unwrap_or_default();
            wait_for_text("the sockperf server did not start", "PORT", read);
            let client = under_ldp(&mut Command::new(sockperf), preload, &cli_conf)
                .args(["pp", "--tcp", "-i", &addr, "-p", &port, "-t", "2", "-m", size, "--data-integrity"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn the sockperf client");
            let out = wait_output_with_timeout(client, Duration::from_secs(30)).unwrap();
            drop(server);
            let text =
                format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let summary = text.lines().find(|l| l.contains("avg-latency")).unwrap_or("(no summary)");
            eprintln!("sockperf {size}-byte ping-pong, {layer} layer: {summary}");
            if layer == "Rust" {
                assert!(out.status.success() && !text.contains("ERROR"), "{text}\nserver:\n{}", read());
                assert!(text.contains("avg-latency="), "no latency summary:\n{text}");
            } else if let Some(e) = text.lines().find(|l| l.contains("ERROR")) {
                eprintln!("  (C layer: {e})");
            }
        }
    }
}
