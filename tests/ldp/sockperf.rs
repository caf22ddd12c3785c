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
    let st = stack("sockperf-server", "sockperf-client");
    let (srv_conf, cli_conf, addr) = (&st.srv_conf, &st.cli_conf, &st.server_addr);
    for (layer, preload) in [("Rust", &st.preloads.rust), ("C", &st.preloads.c)] {
        for (i, size) in ["64", "3000"].into_iter().enumerate() {
            let port = format!("{}", 7520 + i + if layer == "C" { 10 } else { 0 });
            let server_out = st.vpp.dir().join(format!("sockperf-{layer}-{size}.out"));
            let server = ProcessGroup::spawn(
                under_ldp(&mut Command::new(sockperf), preload, srv_conf)
                    .args(["sr", "--tcp", "-i", addr, "-p", &port])
                    .stdin(Stdio::null())
                    .stdout(std::fs::File::create(&server_out).unwrap())
                    .stderr(Stdio::null()),
            )
            .expect("spawn the sockperf server");
            let read = || std::fs::read_to_string(&server_out).unwrap_or_default();
            if layer == "Rust" {
                wait_for_text("the sockperf server did not start", "PORT", read);
            } else {
                // The C layer's run is only reported: a server that does
                // not start (it hung now and then) is reported too.
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !read().contains("PORT") && std::time::Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                if !read().contains("PORT") {
                    eprintln!("sockperf {size}-byte ping-pong, C layer: the server did not start in 10 s");
                    continue;
                }
            }
            let (ok, stdout, stderr) = run_under_ldp(
                Command::new(sockperf)
                    .args(["pp", "--tcp", "-i", addr, "-p", &port, "-t", "2", "-m", size])
                    .arg("--data-integrity"),
                preload,
                cli_conf,
                Duration::from_secs(30),
            );
            drop(server);
            let text = format!("{stdout}{stderr}");
            let summary = text.lines().find(|l| l.contains("avg-latency")).unwrap_or("(no summary)");
            eprintln!("sockperf {size}-byte ping-pong, {layer} layer: {summary}");
            if layer == "Rust" {
                assert!(ok && !text.contains("ERROR"), "{text}\nserver:\n{}", read());
                assert!(text.contains("avg-latency="), "no latency summary:\n{text}");
            } else if let Some(e) = text.lines().find(|l| l.contains("ERROR")) {
                eprintln!("  (C layer: {e})");
            }
        }
    }
}
