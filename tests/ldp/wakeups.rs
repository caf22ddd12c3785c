//! A program waiting in `poll` under LDP is woken by VPP's message for
//! its data, also for an answer that arrives in two parts, instead of by
//! the end of its sleep's slice (100 ms).
//!
//! VPP sends an RX event only while the RX FIFO's event flag is clear, and
//! queues it just after the enqueue; a reader that empties the FIFO in
//! between leaves VCL's `poll` a late event for data already read, after
//! which the flag stayed set and the next data sent no event. beanstalkd's
//! clients took 100 ms per answer of more than one segment (a 2000-job run:
//! 58 s, against 4 s with the C layer, whose `poll` never sleeps).

use super::*;

/// Runs `client` (under the Rust layer, with `VLS_RS_STATS=1`, 60 s at
/// most) and returns its output, failing unless it printed `ok`.
fn run_client(client: &mut Command, cli_conf: &Path, rust: &str) -> (String, String) {
    client.env("VLS_RS_STATS", "1").env("VLS_RS_LOG", "warn");
    let (ok, stdout, stderr) = run_under_ldp(client, rust, cli_conf, Duration::from_secs(60));
    assert!(ok && stdout.starts_with("ok "), "the client failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

/// `tests/programs/poll_echo.py`: 600 messages of up to 3000 bytes, each
/// echoed back whole and unchanged, and no sleep of the client's `poll`
/// that VPP's message should have ended. Without the re-arming of the
/// readers before a sleep (`Vls::rearm_rx_events_for_poll`) a run of 1000
/// had over 200 late wake-ups.
#[test]
fn ldp_poll_is_woken_for_an_answer_in_two_segments() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3"], "python3");
    let st = stack("poll-echo", "poll-client");
    let rust = &st.preloads.rust;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/poll_echo.py");
    let (addr, port) = (st.server_addr.as_str(), "7511");
    let out = st.vpp.dir().join("poll_echo.out");
    let server = ProcessGroup::spawn(
        under_ldp(&mut Command::new("/usr/bin/python3"), rust, &st.srv_conf)
            .arg(&script)
            .args(["serve", addr, port])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null()),
    )
    .expect("spawn the echo server");
    wait_for_text("the echo server did not start", "listening", || {
        std::fs::read_to_string(&out).unwrap_or_default()
    });
    let (stdout, stderr) = run_client(
        Command::new("/usr/bin/python3").arg(&script).args(["ask", addr, port, "600"]),
        &st.cli_conf,
        rust,
    );
    drop(server);
    assert_eq!(stdout.trim(), "ok 600");
    assert_eq!(late_wakeups(&stderr), Some(0), "the client's poll slept past VPP's messages:\n{stderr}");
}

/// Debian's beanstalkd (a work queue: one thread, one epoll set) under the
/// Rust layer, and a client waiting in `poll` (`tests/programs/
/// beanstalk_client.py`): 400 jobs of up to 3000 bytes put, reserved and
/// deleted, every body back unchanged, and no late wake-up of the client.
#[test]
fn ldp_beanstalkd_serves_every_job_back() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let beanstalkd = "/usr/bin/beanstalkd";
    need(&[beanstalkd, "/usr/bin/python3"], "beanstalkd python3");
    let st = stack("beanstalkd", "beanstalk-client");
    let rust = &st.preloads.rust;
    let (addr, port) = (st.server_addr.as_str(), "7512");
    let log_file = st.vpp.dir().join("beanstalkd.log");
    let server = ProcessGroup::spawn(
        under_ldp(&mut Command::new(beanstalkd), rust, &st.srv_conf)
            .env("VLS_RS_LOG", "warn")
            .args(["-l", addr, "-p", port])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_file).unwrap()),
    )
    .expect("spawn beanstalkd");
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    // beanstalkd prints nothing when it starts: wait until it answers.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/beanstalk_client.py");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !run_under_ldp(
        Command::new("/usr/bin/python3").arg(&script).args([addr, port, "1"]),
        rust,
        &st.cli_conf,
        Duration::from_secs(20),
    )
    .0
    {
        assert!(std::time::Instant::now() < deadline, "beanstalkd did not answer in 20 s:\n{}", log());
        std::thread::sleep(Duration::from_millis(200));
    }
    let (stdout, stderr) = run_client(
        Command::new("/usr/bin/python3").arg(&script).args([addr, port, "400"]),
        &st.cli_conf,
        rust,
    );
    let status = server.stop(libc::SIGTERM, Duration::from_secs(10));
    assert_eq!(stdout.trim(), "ok 400");
    assert_eq!(late_wakeups(&stderr), Some(0), "the client's poll slept past VPP's messages:\n{stderr}");
    assert!(status.is_some(), "beanstalkd did not end on SIGTERM:\n{}", log());
    assert!(!log().contains("vls-rs"), "beanstalkd's log has the layer's warnings:\n{}", log());
}
