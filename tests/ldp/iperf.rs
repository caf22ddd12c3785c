//! iperf3 over LDP: the Rust layer against the C layer (throughput, and
//! which layer answered).

use super::*;
fn iperf3() -> PathBuf {
    let p = Path::new("/usr/bin/iperf3");
    assert!(p.is_file(), "iperf3 is needed for the LDP test (Debian: apt-get install iperf3)");
    p.to_path_buf()
}

struct Run {
    gbits: f64,
    /// Bytes the client sent and the server received (iperf3's totals).
    sent: f64,
    received: f64,
    server_err: String,
    client_err: String,
}

/// One iperf3 TCP run over VPP cut-through with `preload`.
fn iperf_run(vcl_conf: &Path, preload: &str, port: u16) -> Run {
    let spawn = |args: &[&str]| {
        under_ldp(&mut Command::new(iperf3()), preload, vcl_conf)
            .args(args)
            .env("VLS_RS_STATS", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn iperf3")
    };
    let port_s = port.to_string();
    let server = spawn(&["-s", "-1", "-B", "127.0.0.1", "-p", &port_s]);
    std::thread::sleep(Duration::from_millis(700));
    let client = spawn(&["-c", "127.0.0.1", "-p", &port_s, "-t", "2", "-f", "g"]);
    let c = wait_output_with_timeout(client, Duration::from_secs(30)).unwrap();
    let s = wait_output_with_timeout(server, Duration::from_secs(10)).unwrap();
    let c_out = String::from_utf8_lossy(&c.stdout).into_owned();
    let c_err = String::from_utf8_lossy(&c.stderr).into_owned();
    let s_err = String::from_utf8_lossy(&s.stderr).into_owned();
    assert!(
        c.status.success() && s.status.success(),
        "iperf3 with {preload} failed: client {} server {}\n{c_out}\n{c_err}\n{}\n{s_err}",
        c.status,
        s.status,
        String::from_utf8_lossy(&s.stdout)
    );
    let gbits = c_out
        .lines()
        .find(|l| l.contains("receiver"))
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.iter().position(|w| *w == "Gbits/sec").and_then(|i| f[i - 1].parse().ok())
        })
        .unwrap_or_else(|| panic!("no receiver line in iperf3 output:\n{c_out}"));
    let (sent, received) = (transfer(&c_out, "sender"), transfer(&c_out, "receiver"));
    Run { gbits, sent, received, server_err: s_err, client_err: c_err }
}

/// The transfer total of iperf3's summary line ending in `which`
/// (`sender` or `receiver`), in bytes.
fn transfer(out: &str, which: &str) -> f64 {
    let line = out
        .lines()
        .rfind(|l| l.trim_end().ends_with(which))
        .unwrap_or_else(|| panic!("no {which} line in iperf3 output:\n{out}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    let i = f.iter().position(|w| w.ends_with("Bytes")).unwrap_or_else(|| panic!("no transfer in {line:?}"));
    let scale = match f[i] {
        "KBytes" => 1024.0,
        "MBytes" => 1024.0 * 1024.0,
        "GBytes" => 1024.0 * 1024.0 * 1024.0,
        _ => 1.0,
    };
    f[i - 1].parse::<f64>().unwrap_or_else(|_| panic!("no number in {line:?}")) * scale
}

#[test]
fn ldp_iperf3_tcp_runs_over_the_rust_layer() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let preloads = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let conf = vpp.write_vcl_conf("ldp", &VclConf::default()).unwrap();

    let rust = iperf_run(&conf, &preloads.rust, 5201);
    // Proof that the Rust layer served both programs: its call counters.
    for (who, err) in [("server", &rust.server_err), ("client", &rust.client_err)] {
        assert!(err.contains("vls-rs: calls:"), "{who} did not go through libvls.so:\n{err}");
    }
    assert_eq!(calls(&rust.server_err, "accept"), 2, "control + data connection");
    assert!(calls(&rust.client_err, "write_msg") + calls(&rust.client_err, "write") > 100);
    assert!(calls(&rust.server_err, "read") > 100);
    // Everything sent arrived (TCP: iperf3's totals agree, up to the
    // rounding of its 3 significant digits), and it was a real transfer.
    assert!(rust.sent > 10.0 * 1024.0 * 1024.0, "iperf3 sent only {} bytes", rust.sent);
    assert!(
        (rust.received - rust.sent).abs() <= 0.01 * rust.sent,
        "iperf3: sent {} bytes, received {}",
        rust.sent,
        rust.received
    );

    // Same run with the C layer (libvcl_ldpreload.so alone), for comparison.
    let c = iperf_run(&conf, &preloads.c, 5202);
    assert!(!c.server_err.contains("vls-rs:"), "the C-layer run must not load libvls.so");
    eprintln!(
        "iperf3 TCP over cut-through, 2 s: Rust VLS {:.1} Gbit/s, C VLS {:.1} Gbit/s",
        rust.gbits, c.gbits
    );
}

/// iperf 2 (Debian's `iperf`: a thread per stream) with two TCP streams
/// for 2 s, server and client under the Rust layer, through VPP's stack:
/// both report a total (`[SUM]`) of more than 0 bytes.
///
/// iperf 2's server asks `getsockopt(SO_RCVBUF)` into an `int`, and VCL
/// writes 8 bytes for it: with the C layer the server dies of "stack
/// smashing detected" at once (printed with `--nocapture`). It also reads
/// its headers with `MSG_WAITALL`, which VCL refuses (`EAFNOSUPPORT`).
#[test]
fn ldp_iperf2_two_streams() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let iperf = "/usr/bin/iperf";
    need(&[iperf], "iperf");
    let st = stack("iperf2-server", "iperf2-client");
    let addr = st.server_addr.as_str();
    for (layer, preload, port) in [("Rust", &st.preloads.rust, "7550"), ("C", &st.preloads.c, "7551")] {
        let server_out = st.vpp.dir().join(format!("iperf2-{layer}.out"));
        let server = ProcessGroup::spawn(
            under_ldp(&mut Command::new(iperf), preload, &st.srv_conf)
                .args(["-s", "-B", addr, "-p", port])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&server_out).unwrap())
                .stderr(Stdio::null()),
        )
        .expect("spawn the iperf server");
        let read = || std::fs::read_to_string(&server_out).unwrap_or_default();
        if layer == "Rust" {
            wait_for_text("the iperf server did not start", "listening", read);
        } else {
            // (Its server may die at start: no line to wait for.)
            std::thread::sleep(Duration::from_secs(1));
        }
        let (_, stdout, stderr) = run_under_ldp(
            Command::new(iperf).args(["-c", addr, "-p", port, "-t", "2", "-P", "2"]),
            preload,
            &st.cli_conf,
            Duration::from_secs(30),
        );
        // The server prints its total once the streams end.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !read().contains("[SUM]") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        drop(server);
        let text = format!("{stdout}{stderr}");
        let sum = |t: &str| t.lines().find(|l| l.contains("[SUM]")).map(str::to_string);
        eprintln!("iperf 2, {layer} layer: client {:?}, server {:?}", sum(&text), sum(&read()));
        if layer == "C" {
            eprintln!("  (C layer: server's last line {:?})", read().lines().last().unwrap_or(""));
        } else {
            for (who, t) in [("client", text.clone()), ("server", read())] {
                let line = sum(&t).unwrap_or_else(|| panic!("no total from the {who}:\n{t}"));
                assert!(!line.contains(" 0.00 Bytes") && line.contains("Bytes"), "{who}: {line}");
                assert!(!t.contains("failed") && !t.contains("smashing"), "{who}:\n{t}");
            }
        }
    }
}

/// iperf3 over UDP through VPP's stack, both programs under the Rust
/// layer: 100 Mbit/s for 2 s, client to server and then reversed (`-R`).
/// iperf3's UDP server connects its socket to the first datagram's sender.
/// Every run completes, the receiver counts at least 10 000 datagrams, and
/// at most 5 % are lost (VPP's FIFOs hold 4 MB: loss means a reader that
/// stopped reading).
#[test]
fn ldp_iperf3_udp_both_ways() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let st = stack("iperf3-udp-server", "iperf3-udp-client");
    for (run, reverse) in [(0u16, false), (1, true)] {
        let port = (5310 + run).to_string();
        let server = under_ldp(&mut Command::new(iperf3()), &st.preloads.rust, &st.srv_conf)
            .args(["-s", "-1", "-B", &st.server_addr, "-p", &port])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the iperf3 server");
        std::thread::sleep(Duration::from_millis(700));
        let mut client = Command::new(iperf3());
        client.args(["-c", &st.server_addr, "-p", &port, "-u", "-b", "100M", "-t", "2"]);
        if reverse {
            client.arg("-R");
        }
        let (ok, out, err) =
            run_under_ldp(&mut client, &st.preloads.rust, &st.cli_conf, Duration::from_secs(30));
        let s = wait_output_with_timeout(server, Duration::from_secs(10)).unwrap();
        let s_text = format!("{}{}", String::from_utf8_lossy(&s.stdout), String::from_utf8_lossy(&s.stderr));
        assert!(ok && s.status.success(), "iperf3 -u (reverse: {reverse}):\n{out}{err}\nserver:\n{s_text}");
        // "... 0.004 ms  12/17000 (0.07%)  receiver"
        let line = out.lines().rfind(|l| l.trim_end().ends_with("receiver")).unwrap_or_default();
        let (lost, total) = line
            .split_whitespace()
            .find_map(|w| {
                let (l, t) = w.split_once('/')?;
                Some((l.parse::<f64>().ok()?, t.parse::<f64>().ok()?))
            })
            .unwrap_or_else(|| panic!("no Lost/Total in iperf3's receiver line:\n{out}"));
        eprintln!("iperf3 -u -b 100M (reverse: {reverse}): {line}");
        assert!(total >= 10_000.0, "only {total} datagrams:\n{out}");
        assert!(lost <= 0.05 * total, "{lost} of {total} datagrams lost:\n{out}");
    }
}
