//! Debian's mosquitto (an MQTT broker: one thread, one epoll set, many
//! short connections) under LDP, through VPP's stack, with its clients
//! under LDP too.

use super::*;

/// The broker under the Rust layer delivers every one of 200 QoS 1
/// messages, from 200 `mosquitto_pub` runs (4 at a time, each a
/// connection of its own), to a `mosquitto_sub` subscribed to their
/// topics; SIGTERM then stops it cleanly.
#[test]
fn ldp_mosquitto_delivers_every_message() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (broker_bin, publish, subscribe) =
        ("/usr/sbin/mosquitto", "/usr/bin/mosquitto_pub", "/usr/bin/mosquitto_sub");
    need(&[broker_bin, publish, subscribe], "mosquitto mosquitto-clients");
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, _, srv_conf, cli_conf) = stack_confs(&vpp, "mosquitto", "mqtt-clients");
    let rust = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let dir = vpp.dir().join("mosquitto");
    std::fs::create_dir_all(&dir).unwrap();
    let (addr, port) = (srv_ns.addr.to_string(), "7499");
    let conf = dir.join("mosquitto.conf");
    // Logs subscriptions too, so the test knows when the subscriber is in.
    let logging =
        ["error", "warning", "notice", "information", "subscribe"].map(|t| format!("log_type {t}\n"));
    std::fs::write(
        &conf,
        format!("listener {port} {addr}\nallow_anonymous true\nuser root\n{}", logging.concat()),
    )
    .unwrap();
    let log_file = dir.join("broker.log");
    let broker = ProcessGroup::spawn(
        under_ldp(&mut Command::new(broker_bin), &rust, &srv_conf)
            .env("VLS_RS_LOG", "warn")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("broker.out")).unwrap())
            .stderr(std::fs::File::create(&log_file).unwrap()),
    )
    .expect("spawn mosquitto");
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    wait_for_text("the broker did not start", "running", log);

    const PUBLISHERS: usize = 4;
    const EACH: usize = 50;
    let total = (PUBLISHERS * EACH).to_string();
    let subscriber = under_ldp(&mut Command::new(subscribe), &rust, &cli_conf)
        .args(["-h", &addr, "-p", port, "-q", "1", "-t", "t/#", "-v", "-C", &total])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mosquitto_sub");
    wait_for_text("the subscriber did not subscribe", " t/#", log);
    let failures: Vec<String> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..PUBLISHERS)
            .map(|p| {
                let (rust, cli_conf, addr) = (&rust, &cli_conf, &addr);
                s.spawn(move || {
                    let mut failed = Vec::new();
                    for m in 0..EACH {
                        let child = under_ldp(&mut Command::new(publish), rust, cli_conf)
                            .args(["-h", addr, "-p", port, "-q", "1", "-t", &format!("t/{p}")])
                            .args(["-m", &format!("{p}-{m}")])
                            .stdin(Stdio::null())
                            .stdout(Stdio::piped())
                            .stderr(Stdio::piped())
                            .spawn()
                            .expect("spawn mosquitto_pub");
                        let out = wait_output_with_timeout(child, Duration::from_secs(10)).unwrap();
                        if !out.status.success() {
                            failed.push(format!("{p}-{m}: {}", String::from_utf8_lossy(&out.stderr)));
                        }
                    }
                    failed
                })
            })
            .collect();
        runs.into_iter().flat_map(|r| r.join().unwrap()).collect()
    });
    let out = wait_output_with_timeout(subscriber, Duration::from_secs(30)).unwrap();
    let received = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = broker.stop(libc::SIGTERM, Duration::from_secs(10));
    assert!(failures.is_empty(), "publishes failed: {failures:?}\nbroker:\n{}", log());
    let mut got: Vec<&str> = received.lines().collect();
    got.sort_unstable();
    got.dedup();
    assert_eq!(
        got.len(),
        PUBLISHERS * EACH,
        "every message delivered once at least:\n{received}\nsubscriber: {}\nbroker:\n{}",
        String::from_utf8_lossy(&out.stderr),
        log()
    );
    for p in 0..PUBLISHERS {
        for m in 0..EACH {
            let line = format!("t/{p} {p}-{m}");
            assert!(got.binary_search(&line.as_str()).is_ok(), "{line:?} missing:\n{received}");
        }
    }
    assert!(status.is_some_and(|s| s.success()), "the broker's exit on SIGTERM: {status:?}\n{}", log());
    let log = log();
    // (It warns that it runs as root: the test makes it.)
    for bad in ["vls-rs", "WARN", "ERROR", "Error"] {
        assert!(!log.contains(bad), "the broker's log has {bad:?}:\n{log}");
    }
}
