//! Debian's microsocks (a SOCKS5 proxy: a thread per client, each waiting
//! in `poll` on its two connections) under LDP.

use super::*;

/// microsocks in one namespace relays `curl --socks5` downloads (4 at a
/// time, 20 in all) of a 300 kB file from a Python HTTP server in the
/// other namespace, all under the Rust layer: every copy arrives intact.
/// (With the C layer, 1 of 5 sequential downloads arrived intact.)
#[test]
fn ldp_microsocks_relays_every_download_intact() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (proxy, curl) = ("/usr/bin/microsocks", "/usr/bin/curl");
    need(&[proxy, curl, "/usr/bin/python3"], "microsocks curl python3");
    let st = stack("microsocks", "web");
    let (rust, vpp) = (&st.preloads.rust, &st.vpp);
    let (srv_conf, cli_conf) = (&st.srv_conf, &st.cli_conf);
    let www = vpp.dir().join("www");
    std::fs::create_dir_all(&www).unwrap();
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(www.join("blob"), &blob).unwrap();
    let (proxy_addr, web_addr) = (&st.server_addr, &st.client_addr);
    let web_log = vpp.dir().join("web.err");
    let _web = ProcessGroup::spawn(
        under_ldp(&mut Command::new("/usr/bin/python3"), rust, cli_conf)
            .args(["-m", "http.server", "7561", "--bind", web_addr])
            .current_dir(&www)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&web_log).unwrap()),
    )
    .expect("spawn the web server");
    let _proxy = ProcessGroup::spawn(
        under_ldp(&mut Command::new(proxy), rust, srv_conf)
            .args(["-i", proxy_addr, "-p", "7560"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("spawn microsocks");
    let url = format!("http://{web_addr}:7561/blob");
    let socks = format!("{proxy_addr}:7560");
    let download = |name: String| {
        let out = vpp.dir().join(name);
        let mut cmd = Command::new(curl);
        cmd.args(["-s", "-S", "--retry", "0", "--max-time", "20", "--socks5", &socks, &url, "-o"]).arg(&out);
        let (ok, _, err) = run_under_ldp(&mut cmd, rust, cli_conf, Duration::from_secs(30));
        let got = std::fs::read(&out).unwrap_or_default();
        (ok && got == blob, err, got.len())
    };
    // The servers print nothing when they are up: the first download is
    // retried for a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, err, len) = download("first".into());
        if ok {
            break;
        }
        let log = std::fs::read_to_string(&web_log).unwrap_or_default();
        assert!(
            std::time::Instant::now() < deadline,
            "no download through microsocks ({len} bytes): {err}\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut failures = Vec::new();
    for round in 0..5 {
        let results: Vec<_> = std::thread::scope(|s| {
            let runs: Vec<_> =
                (0..4).map(|j| s.spawn(move || download(format!("got-{round}-{j}")))).collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        });
        for (j, (ok, err, len)) in results.into_iter().enumerate() {
            if !ok {
                failures.push(format!("round {round} download {j}: {len} bytes, {err}"));
            }
        }
    }
    assert!(failures.is_empty(), "downloads not intact: {failures:#?}");
}
