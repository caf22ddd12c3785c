//! Scenarios of the `ldp_pipeline` example (plain libc sockets, epoll,
//! poll, select, fork, exec) under LDP: pipelined threads with their own
//! sets, descriptors LDP does not own, waits that keep their timeouts and
//! end on signals, forked children and exec.

use super::*;
// ---------------------------------------------------------------------------
// Pipelined request/response, a thread and an epoll set per connection group
// ---------------------------------------------------------------------------

/// LDP's descriptor split: a program under LDP whose kernel gives it the
/// descriptor number LDP also uses for its first VPP session closes that
/// kernel descriptor; LDP turns the close into `vls_close(0)`. The layer
/// cannot tell which was meant, but says so (a warning naming
/// `LDP_SID_BIT`), and the program survives.
#[test]
fn ldp_close_of_a_colliding_kernel_descriptor_is_reported() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let so = libvls();
    let exe = ldp_pipeline();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let conf = vpp.write_vcl_conf("fd-split", &VclConf::default()).unwrap();
    let preload = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let out = under_ldp(&mut Command::new(&exe), &preload, &conf)
        .env("VLS_RS_LOG", "warn")
        .args(["close-kernel-fd", "32"])
        .stdin(Stdio::null())
        .output()
        .expect("run ldp_pipeline close-kernel-fd");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("socket 32, kernel descriptor 32"), "{stdout}");
    assert!(
        stderr.contains("vls_close of VPP session 0 while kernel descriptor 32")
            && stderr.contains("LDP_SID_BIT"),
        "no warning about the descriptor split:\n{stderr}"
    );
    // With a larger LDP_SID_BIT there is no collision and no warning.
    let out = under_ldp(&mut Command::new(&exe), &preload, &conf)
        .env("VLS_RS_LOG", "warn")
        .env("LDP_SID_BIT", "10")
        .args(["close-kernel-fd", "32"])
        .stdin(Stdio::null())
        .output()
        .expect("run ldp_pipeline close-kernel-fd");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success() && stdout.contains("socket 1024, kernel descriptor 32"),
        "{stdout}\n{stderr}"
    );
    assert!(!stderr.contains("descriptor split"), "{stderr}");
}

/// LDP's descriptor split seen from a real program: bash reads a script
/// from descriptor 255, which LDP (sessions from 2^5 = 32 up by default)
/// turns into `vls_read` of handle 223, no session: the read fails with
/// `EBADFD` and bash stops ("File descriptor in bad state"), with either
/// layer. The Rust layer says why (a warning naming `LDP_SID_BIT`), and
/// with `LDP_SID_BIT=9` the script runs.
#[test]
fn ldp_read_of_a_kernel_descriptor_in_ldps_range_is_reported() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(bash) = vpp_harness::find_program("bash") else {
        panic!("bash not found (Debian: apt-get install bash)");
    };
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let conf = vpp.write_vcl_conf("fd-split-read", &VclConf::default()).unwrap();
    let preload = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let script = vpp.dir().join("script.sh");
    std::fs::write(&script, "echo script-ran\n").unwrap();
    let run = |sid_bit: Option<&str>| {
        let mut cmd = Command::new(&bash);
        under_ldp(&mut cmd, &preload, &conf).env("VLS_RS_LOG", "warn").arg(&script).stdin(Stdio::null());
        if let Some(b) = sid_bit {
            cmd.env("LDP_SID_BIT", b);
        }
        let out = cmd.output().expect("run bash");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (status, stdout, stderr) = run(None);
    assert!(
        !status.success() && !stdout.contains("script-ran"),
        "bash read its script: {status}\n{stdout}\n{stderr}"
    );
    assert!(
        stderr.contains(
            "vls_read of handle 223, which is no VPP session, for the program's kernel descriptor 255"
        ) && stderr.contains("LDP_SID_BIT"),
        "no warning about the descriptor split:\n{stderr}"
    );
    let (status, stdout, stderr) = run(Some("9"));
    assert!(status.success() && stdout.contains("script-ran"), "{status}\n{stdout}\n{stderr}");
    assert!(!stderr.contains("descriptor split"), "{stderr}");
}

/// Runs `ldp_pipeline client` rounds against an `ldp_pipeline server` (4
/// threads, accepting on one and serving on the others), both under LDP
/// with the Rust layer over cut-through (`use-mq-eventfd`, one VCL worker
/// per process: mode 3): for each `(threads, rounds)` that many client runs
/// with 8 connections per thread, 300 requests of 64..4160 bytes per
/// connection, 4 in flight. Every run must end within 60 s with every byte
/// echoed intact (the client itself reports a stall after 10 s without
/// progress). Returns the number of client runs.
fn pipeline_rounds(plan: &[(u32, u32)], until: Option<std::time::Instant>) -> u32 {
    let so = libvls();
    let exe = ldp_pipeline();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let conf = vpp.write_vcl_conf("pipeline", &VclConf::default()).unwrap();
    let preload = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let addr = "127.0.0.1:7420";
    let server_err = vpp.dir().join("pipeline-server.stderr");
    let _server = ProcessGroup::spawn(
        under_ldp(&mut Command::new(&exe), &preload, &conf)
            .args(["server", addr, "4"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&server_err).unwrap()),
    )
    .expect("spawn the server");
    std::thread::sleep(Duration::from_millis(700));
    let mut runs = 0;
    for &(threads, rounds) in plan {
        for round in 0..rounds {
            if until.is_some_and(|t| std::time::Instant::now() >= t) {
                return runs;
            }
            let client = under_ldp(&mut Command::new(&exe), &preload, &conf)
                .args(["client", addr, &threads.to_string(), "8", "300", "4"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn the client");
            let out = wait_output_with_timeout(client, Duration::from_secs(60)).unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && stdout.contains("all intact"),
                "client run {round} with {threads} threads failed ({}):\n{stdout}{}\n--- server ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&server_err).unwrap_or_default()
            );
            let expected = format!("ldp_pipeline: {} requests", threads * 8 * 300);
            assert!(stdout.contains(&expected), "{stdout}");
            runs += 1;
        }
    }
    runs
}

/// memcached (Debian's, 4 worker threads: a libevent server whose listener
/// thread hands each connection to a worker thread) under LDP with the Rust
/// layer, and `ldp_pipeline memcached-client` under LDP too (mode 3 on both
/// sides): 2- and 4-thread clients, 8 connections per thread, pipelining 8
/// sets and then 8 gets per connection for 30 rounds, every value checked;
/// 5 runs each. (With the C layer the same clients time out.) LDP needs
/// `LDP_SID_BIT=10` for memcached's own descriptors, and memcached `-c` above
/// the VPP descriptor numbers (see the README).
#[test]
fn ldp_memcached_serves_pipelining_threads() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let memcached = Path::new("/usr/bin/memcached");
    assert!(memcached.is_file(), "memcached is needed (Debian: apt-get install memcached)");
    let so = libvls();
    let exe = ldp_pipeline();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let conf = vpp.write_vcl_conf("memcached", &VclConf::default()).unwrap();
    let preload = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let (port, addr) = ("7430", "127.0.0.1:7430");
    let server_err = vpp.dir().join("memcached.stderr");
    let mut server = ProcessGroup::spawn(
        under_ldp(&mut Command::new(memcached), &preload, &conf)
            .env("LDP_SID_BIT", "10")
            .args(["-u", "root", "-l", "127.0.0.1", "-p", port, "-U", "0", "-t", "4", "-c", "8192"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&server_err).unwrap()),
    )
    .expect("spawn memcached");
    let client = |threads: u32, rounds: u32| {
        let child = under_ldp(&mut Command::new(&exe), &preload, &conf)
            .env("LDP_SID_BIT", "10")
            .args(["memcached-client", addr, &threads.to_string(), "8", &rounds.to_string(), "8"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the client");
        wait_output_with_timeout(child, Duration::from_secs(60)).unwrap()
    };
    // memcached is up once a one-set client gets its answers.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !client(1, 1).status.success() {
        assert!(
            server.try_wait().unwrap().is_none(),
            "memcached exited: {}",
            std::fs::read_to_string(&server_err).unwrap_or_default()
        );
        assert!(std::time::Instant::now() < deadline, "memcached never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    for threads in [2, 4] {
        for run in 0..5 {
            let out = client(threads, 30);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success()
                    && stdout.contains(&format!(
                        "ldp_pipeline: {} sets and gets, all intact",
                        threads * 8 * 30 * 8 * 2
                    )),
                "run {run} with {threads} threads failed ({}):\n{stdout}{}\n--- memcached ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&server_err).unwrap_or_default()
            );
        }
    }
    assert!(server.try_wait().unwrap().is_none(), "memcached exited");
}

/// Several client threads, each with its own epoll set and 8 pipelined
/// connections, against a multi-threaded server, both under LDP (mode 3):
/// no lost wake-up (every thread finishes), no byte lost or reordered.
/// 2 and 4 client threads, 25 runs each.
#[test]
fn ldp_pipelined_clients_with_a_set_per_thread_lose_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(pipeline_rounds(&[(2, 25), (4, 25)], None), 50);
}

/// A forking server under LDP (`ldp_pipeline fork-server`): the parent
/// accepts, waits until 64 KiB are queued, forks and closes its copy, which
/// VPP then cannot hand over (the parent stays VPP's owner, as the log
/// says). The child reads the queued bytes, then waits in `epoll_wait` for
/// data the client sends only then. VPP tells only the owner of that data;
/// the child must be woken all the same (it looks at the connection while
/// it waits), within its 10 s.
#[test]
fn ldp_forked_child_is_woken_for_a_connection_its_parent_kept() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (server, client) = ldp_server_and_client("fork", "127.0.0.1:7442");
    let (s_out, s_err) = (String::from_utf8_lossy(&server.stdout), String::from_utf8_lossy(&server.stderr));
    let c_out = String::from_utf8_lossy(&client.stdout);
    let report = server_and_client_report(&server, &client);
    assert!(
        s_err.contains("stays this process's in VPP"),
        "the parent must have kept the connection (else this tests nothing):\n{report}"
    );
    assert!(s_out.contains("fork-server: child exited with 0") && server.status.success(), "{report}");
    assert!(c_out.contains("fork-client: done") && client.status.success(), "{report}");
}

/// A forked child that runs another program while it holds a connection
/// (`ldp_pipeline exec-server`: the child forks a grandchild that execs
/// `sleep 20`, answers, closes and exits before it). The client must see
/// the end of the stream: the grandchild's copy goes with its `exec`.
/// Without that the grandchild stays subscribed to the connection, the
/// child's close is not the last, and the peer waits for ever (found with
/// socat's `EXEC:` in fork mode: a request now and then never ended).
#[test]
fn ldp_exec_in_a_forked_child_lets_the_connection_close() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (server, client) = ldp_server_and_client("exec", "127.0.0.1:7443");
    let s_out = String::from_utf8_lossy(&server.stdout);
    let c_out = String::from_utf8_lossy(&client.stdout);
    let report = server_and_client_report(&server, &client);
    let grandchild =
        s_out.lines().find_map(|l| l.strip_prefix("exec-server: grandchild ")?.trim().parse().ok());
    if let Some(pid) = grandchild.filter(|&p: &i32| p > 1) {
        // SAFETY: plain kill of the `sleep` the scenario left running.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(s_out.contains("exec-server: child exited with 0") && server.status.success(), "{report}");
    assert!(c_out.contains("exec-client: done") && client.status.success(), "{report}");
}

/// `ldp_pipeline server <addr> 1` under LDP with `preload` (killed when
/// dropped).
fn echo_server(exe: &Path, preload: &str, conf: &Path, addr: &str) -> ProcessGroup {
    ProcessGroup::spawn(
        under_ldp(&mut Command::new(exe), preload, conf)
            .args(["server", addr, "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    )
    .expect("spawn the echo server")
}

/// Runs `ldp_pipeline <args>` under LDP with `preload` until `parse` finds
/// its answer in what it printed (the server may not listen yet: tries for
/// 20 s); a run that hangs is killed after 30 s.
fn pipeline_check<T>(
    exe: &Path,
    preload: &str,
    conf: &Path,
    args: &[&str],
    parse: impl Fn(&str) -> Option<T>,
) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let child = under_ldp(&mut Command::new(exe), preload, conf)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn ldp_pipeline {args:?}: {e}"));
        let out = wait_output_with_timeout(child, Duration::from_secs(30)).unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if let Some(r) = parse(&stdout) {
            return r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ldp_pipeline {args:?} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What `ldp_pipeline wait-check` printed: the 1 s wait's result and
/// duration, and the signalled wait's result, errno and duration.
fn parse_wait_check(out: &str) -> Option<(i64, u64, i64, i32, u64)> {
    let line = out.lines().find(|l| l.starts_with("wait-check:"))?;
    let w: Vec<&str> = line.split_whitespace().collect();
    // wait-check: timeout R after MS ms; signal R errno E after MS ms
    Some((
        w[2].parse().ok()?,
        w[4].parse().ok()?,
        w[7].parse().ok()?,
        w[9].parse().ok()?,
        w[11].parse().ok()?,
    ))
}

/// `epoll_wait` under LDP keeps the kernel's promises while VCL is woken by
/// messages that give the set no event (echo arriving for a connection in
/// no set): 0 events only once the timeout has passed (LDP alone returns 0
/// at the second such wake-up, which made haproxy's timeouts fire early),
/// and -1 with `EINTR` for a signal (LDP alone returns 0). The C layer's
/// run (the same LDP) is printed for comparison.
#[test]
fn ldp_epoll_wait_keeps_its_timeout_and_reports_signals() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let so = libvls();
    let exe = ldp_pipeline();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let conf = vpp.write_vcl_conf("waits", &VclConf::default()).unwrap();
    let Preloads { c, rust } = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let addr = "127.0.0.1:7440";
    let _server = echo_server(&exe, &rust, &conf, addr);
    let check = |preload: &str| pipeline_check(&exe, preload, &conf, &["wait-check", addr], parse_wait_check);
    let (c_rv, c_ms, c_srv, c_errno, c_sms) = check(&c);
    eprintln!("C layer: 1 s wait: {c_rv} after {c_ms} ms; signalled wait: {c_srv} (errno {c_errno}) after {c_sms} ms");
    let (rv, ms, srv, errno, sms) = check(&rust);
    eprintln!(
        "Rust layer: 1 s wait: {rv} after {ms} ms; signalled wait: {srv} (errno {errno}) after {sms} ms"
    );
    assert_eq!(rv, 0, "nothing is ready in the set");
    assert!(ms >= 995, "a 1000 ms wait returned 0 after {ms} ms");
    // A signal that arrives between two waits (not inside one) lets the
    // wait run its 3 s out; inside one, as nearly always, it ends it.
    if sms < 2_900 {
        assert_eq!((srv, errno), (-1, libc::EINTR), "a signal ends the wait with EINTR (after {sms} ms)");
    }
}

/// What `ldp_pipeline poll-check` printed, as numbers in order: timeout
/// rv, ms, cpu ms; signal rv, errno, ms; echo rv, revents, ms; ppoll rv,
/// errno, ms.
fn parse_poll_check(out: &str) -> Option<Vec<i64>> {
    numbers_of_line(out, "poll-check:", 12)
}

/// The `n` numbers of the line of `out` that starts with `tag`.
fn numbers_of_line(out: &str, tag: &str, n: usize) -> Option<Vec<i64>> {
    let line = out.lines().find(|l| l.starts_with(tag))?;
    let nums: Vec<i64> = line
        .split(|c: char| !(c.is_ascii_digit() || c == '-'))
        .filter(|t| !t.is_empty() && *t != "-")
        .filter_map(|t| t.parse().ok())
        .collect();
    (nums.len() == n).then_some(nums)
}

/// `poll` under LDP on a VPP session sleeps and ends as the kernel's does:
/// a 1 s poll with nothing to read returns 0 after 1 s having used little
/// CPU (LDP's own poll looks in a loop for the whole second), a poll
/// without timeout ends with -1 and `EINTR` when a signal arrives (LDP's
/// never returns: a program that stops on SIGTERM by leaving its poll
/// never stops), data that arrives ends the wait at once, and `ppoll`
/// works (LDP's is `ENOSYS`); the same for `select`, which LDP loops in
/// the same way. The C layer's run (the same LDP, without the
/// signal, which would hang it) is printed for comparison.
#[test]
fn ldp_poll_and_select_sleep_and_end_on_a_signal() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let so = libvls();
    let exe = ldp_pipeline();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let conf = vpp.write_vcl_conf("polls", &VclConf::default()).unwrap();
    let Preloads { c, rust } = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let addr = "127.0.0.1:7441";
    let _server = echo_server(&exe, &rust, &conf, addr);
    let check = |preload: &str, extra: &[&str]| {
        let args = [&["poll-check", addr][..], extra].concat();
        pipeline_check(&exe, preload, &conf, &args, |out| {
            Some((parse_poll_check(out)?, numbers_of_line(out, "select-check:", 9)?))
        })
    };
    let c_run = check(&c, &["no-signal"]);
    eprintln!("C layer (no signal): poll {:?}, select {:?}", c_run.0, c_run.1);
    let (r, sel) = check(&rust, &[]);
    eprintln!("Rust layer: poll {r:?}, select {sel:?}");
    let [rv, ms, cpu, srv, errno, sms, erv, revents, ems, prv, perrno, pms] = r[..] else { unreachable!() };
    assert_eq!(rv, 0, "nothing to read");
    assert!(ms >= 995, "a 1000 ms poll returned after {ms} ms");
    assert!(cpu < 500, "a 1000 ms poll used {cpu} ms of CPU (it looks in a loop)");
    assert_eq!((srv, errno), (-1, libc::EINTR as i64), "a signal ends a poll without timeout");
    assert!((150..3_000).contains(&sms), "the signal came after 200 ms, the poll ended after {sms} ms");
    assert_eq!(erv, 1, "the echo makes the session readable");
    assert_ne!(revents & libc::POLLIN as i64, 0, "revents {revents}");
    assert!(ems < 2_000, "the echo took {ems} ms to end the poll");
    assert_eq!((prv, perrno), (0, 0), "a 200 ms ppoll with nothing to read");
    assert!(pms >= 195, "a 200 ms ppoll returned after {pms} ms");
    let [rv, ms, cpu, srv, errno, sms, erv, isset, ems] = sel[..] else { unreachable!() };
    assert_eq!(rv, 0, "select: nothing to read");
    assert!(ms >= 295, "a 300 ms select returned after {ms} ms");
    assert!(cpu < 150, "a 300 ms select used {cpu} ms of CPU (it looks in a loop)");
    assert_eq!((srv, errno), (-1, libc::EINTR as i64), "a signal ends a select without timeout");
    assert!((150..3_000).contains(&sms), "the signal came after 200 ms, the select ended after {sms} ms");
    assert_eq!((erv, isset), (1, 1), "the echo makes the session readable");
    assert!(ems < 2_000, "the echo took {ems} ms to end the select");
}

/// A daemon that closes every descriptor from 3 up at start-up
/// (`closefrom(3)`, `close_range(3, ~0U, 0)`; varnishd does) keeps its VPP
/// connection and its attachment to VPP under the Rust layer: VCL's own
/// descriptors (its socket to VPP, whose closing makes VPP detach the
/// application, its queues' eventfds, its segments) stay open. LDP passes
/// both calls to libc, so with the C layer the application loses VPP (shown,
/// not asserted).
#[test]
fn ldp_closefrom_keeps_vcl_descriptors() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let so = libvls();
    let exe = ldp_pipeline();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let conf = vpp.write_vcl_conf("closefrom", &VclConf::default()).unwrap();
    let Preloads { c, rust } = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let addr = "127.0.0.1:7443";
    let _server = echo_server(&exe, &rust, &conf, addr);
    let parse = |out: &str| numbers_of_line(out, "closefrom-check:", 4);
    let c_run = under_ldp(&mut Command::new(&exe), &c, &conf)
        .args(["closefrom-check", addr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|child| wait_output_with_timeout(child, Duration::from_secs(10)));
    match c_run {
        Ok(out) => eprintln!(
            "C layer ({}): {:?}",
            out.status,
            parse(&String::from_utf8_lossy(&out.stdout)).map_or("no answer".into(), |n| format!("{n:?}"))
        ),
        Err(e) => eprintln!("C layer: {e}"),
    }
    let r = pipeline_check(&exe, &rust, &conf, &["closefrom-check", addr], parse);
    eprintln!("Rust layer: echo, after closefrom, after close_range, new connection: {r:?}");
    assert_eq!(r, vec![1, 1, 1, 1], "echo, after closefrom, after close_range, new connection");
}

/// The same for 60 s (alternating 2 and 4 client threads):
/// `cargo test --features vpp --test ldp pipelined_soak -- --ignored --nocapture`.
#[test]
#[ignore]
fn ldp_pipelined_soak() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let runs = pipeline_rounds(&[(2, 1), (4, 1)].repeat(1000), Some(until));
    eprintln!("ldp_pipelined_soak: {runs} client runs in 60 s, all intact");
    assert!(runs > 0);
}
