//! Debian's unbound (a DNS server) under LDP, answering over UDP.

use super::*;

/// unbound serving a local zone under the Rust layer answers all 20
/// queries of `tests/programs/dns_query.py` (under LDP too, each from a
/// socket never bound). unbound sets `IP_MTU_DISCOVER` on its UDP socket
/// and gives up ("could not open ports") when that fails, as it does with
/// LDP's `setsockopt` (the C layer's run is printed with `--nocapture`).
#[test]
fn ldp_unbound_answers_every_query() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let unbound = "/usr/sbin/unbound";
    need(&[unbound, "/usr/bin/python3"], "unbound python3");
    let st = stack("unbound", "dns-client");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/dns_query.py");
    let addr = st.server_addr.as_str();
    for (layer, preload, port) in [("Rust", &st.preloads.rust, "7590"), ("C", &st.preloads.c, "7591")] {
        let dir = st.vpp.dir().join(format!("unbound-{layer}"));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("unbound.conf");
        std::fs::write(
            &conf,
            format!(
                "server:\n  interface: {addr}\n  port: {port}\n  do-ip6: no\n  access-control: 0.0.0.0/0 allow\n  \
                 username: \"\"\n  chroot: \"\"\n  directory: \"{}\"\n  pidfile: \"\"\n  use-syslog: no\n  \
                 verbosity: 1\n  num-threads: 1\n  do-daemonize: no\n  local-zone: \"vls.test.\" static\n  \
                 local-data: \"a.vls.test. IN A 10.1.2.3\"\nremote-control:\n  control-enable: no\n",
                dir.display()
            ),
        )
        .unwrap();
        let log_file = dir.join("unbound.log");
        let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
        let server = ProcessGroup::spawn(
            under_ldp(&mut Command::new(unbound), preload, &st.srv_conf)
                .args(["-d", "-c"])
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log_file).unwrap()),
        )
        .expect("spawn unbound");
        if layer == "Rust" {
            wait_for_text("unbound did not start", "start of service", log);
        } else {
            // (It may give up at start: no line to wait for.)
            std::thread::sleep(Duration::from_secs(2));
        }
        // (The C layer's run only shows its failure: 3 queries.)
        let queries = if layer == "Rust" { "20" } else { "3" };
        let (_, stdout, stderr) = run_under_ldp(
            Command::new("/usr/bin/python3").arg(&script).args([addr, port, queries]),
            &st.preloads.rust,
            &st.cli_conf,
            Duration::from_secs(90),
        );
        drop(server);
        eprintln!("unbound, {layer} layer: {}", stdout.trim());
        if layer == "C" {
            eprintln!("  (C layer's log: {:?})", log().lines().find(|l| l.contains("error")).unwrap_or(""));
            continue;
        }
        assert_eq!(stdout.trim(), "answered 20 of 20", "{stderr}\nunbound:\n{}", log());
        assert!(!log().contains("fatal"), "{}", log());
    }
}
