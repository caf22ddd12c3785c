//! Drop-in under LDP: unmodified programs run over VPP with
//! `LD_PRELOAD=libvls.so:libvcl_ldpreload.so`, the Rust layer taking the
//! place of libvppcom's own `vls_*` functions.
//!
//! Needs `iperf3` on PATH (Debian's package). The test builds the release
//! `libvls.so` itself (`cargo build --release --features vpp --lib`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use vpp_harness::{
    under_ldp, wait_output_with_timeout, AppNamespace, Nginx, Preloads, ProcessGroup, VclConf, VppInstance,
    VppOptions, Wrk, WrkResult,
};

/// The LDP tests measure throughput: they run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Builds the release cdylib and returns its path.
fn libvls() -> PathBuf {
    let target = common::cargo_build(&["--release", "--features", common::features(), "--lib"]);
    let so = target.join("release/libvls.so");
    assert!(so.is_file(), "{} missing", so.display());
    so
}

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

fn calls(stderr: &str, name: &str) -> u64 {
    stderr
        .lines()
        .find(|l| l.starts_with("vls-rs: calls:"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
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

// ---------------------------------------------------------------------------
// nginx + wrk: a multi-threaded client in mode 3
// ---------------------------------------------------------------------------

/// [`wrk_limited`], with VPP's sessions (`show session verbose`) sampled
/// 1 s and 3 s into the 5 s run, and VPP's error counters after it; all
/// printed when wrk reports errors, so that a stalled connection can be
/// told apart (still connecting, request unread by the server, response
/// unread by the client, or no request written).
fn wrk_observed(
    vpp: &VppInstance,
    preload: &str,
    conf: &Path,
    threads: u32,
    url: &str,
    limit: Duration,
) -> WrkResult {
    std::thread::scope(|scope| {
        let sample = scope.spawn(|| {
            [1, 2].map(|secs| {
                std::thread::sleep(Duration::from_secs(secs));
                vpp.vppctl("show session verbose").unwrap_or_else(|e| format!("show session: {e}"))
            })
        });
        let result = wrk_limited(preload, conf, threads, url, limit);
        let [at_1s, at_3s] = sample.join().unwrap_or_default();
        if result.errors > 0 {
            let errors = vpp.vppctl("show errors").unwrap_or_else(|e| format!("show errors: {e}"));
            eprintln!(
                "VPP's sessions 1 s into the run:\n{at_1s}\nand 3 s into it:\n{at_3s}\nVPP's error counters:\n{errors}"
            );
        }
        result
    })
}

/// `wrk -c64 -d5s` under LDP with `preload`, killed (and counted as
/// serving nothing) after `limit`; prints its output.
fn wrk_limited(preload: &str, conf: &Path, threads: u32, url: &str, limit: Duration) -> WrkResult {
    let run = Wrk { threads, time_limit: limit, ..Wrk::new(url, preload, conf) }.run().expect("run wrk");
    eprintln!("wrk -t{threads} with {preload}:\n{}{}", run.stdout, run.stderr);
    if !run.status.success() {
        // A crash or a hang counts as a run that served nothing.
        eprintln!("wrk -t{threads} ended with {}", run.status);
    }
    run.result
}

/// Starts nginx (one worker process, no master) under LDP with `preload`,
/// serving a 4 KiB file on the server namespace's address; returns it and
/// the file's URL.
fn start_nginx(vpp: &VppInstance, srv_ns: &AppNamespace, preload: &str) -> (ProcessGroup, String) {
    start_nginx_with(vpp, srv_ns, preload, Nginx::ONE_PROCESS, "access_log off;")
}

/// [`start_nginx`] with `processes` (nginx's process directives) and
/// `logging` (its `http` block's access log directives). nginx runs in a
/// process group of its own, killed when the test ends.
fn start_nginx_with(
    vpp: &VppInstance,
    srv_ns: &AppNamespace,
    preload: &str,
    processes: &str,
    logging: &str,
) -> (ProcessGroup, String) {
    assert!(Path::new("/usr/sbin/nginx").is_file(), "nginx is needed (Debian: apt-get install nginx-light)");
    let nginx = Nginx {
        processes: processes.into(),
        logging: logging.into(),
        ..Nginx::new((srv_ns.addr, 8080).into())
    };
    let vcl = VclConf::in_namespace(srv_ns);
    let group = nginx.start(vpp, &vcl, preload, &[("VLS_RS_LOG", "info")]).expect("start nginx");
    (group, nginx.url())
}

/// nginx under LDP with the Rust layer, and `wrk -c64 -d5s` under LDP
/// against it: `-t1` and `-t2` with the Rust layer, then `-t2` with the C
/// layer (killed after `c_limit`), the client's `vcl.conf` plus `extra`.
/// Prints the three results; asserts both Rust runs served requests with no
/// socket error and no bad response (ratios are for the benchmarks).
fn nginx_and_wrk(what: &str, extra: Option<&str>, c_limit: Duration) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, cli_ns) = vpp.setup_stack_namespaces().expect("namespaces");
    let mut cli = VclConf::in_namespace(&cli_ns);
    if let Some(line) = extra {
        cli = cli.with(line);
    }
    let cli_conf = vpp.write_vcl_conf("wrk", &cli).unwrap();
    let Preloads { c, rust } = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let (nginx, url) = start_nginx(&vpp, &srv_ns, &rust);

    let one = wrk_observed(&vpp, &rust, &cli_conf, 1, &url, Duration::from_secs(60));
    let two = wrk_observed(&vpp, &rust, &cli_conf, 2, &url, Duration::from_secs(60));
    let c_two = wrk_limited(&c, &cli_conf, 2, &url, c_limit);
    drop(nginx);
    eprintln!(
        "wrk -c64 -d5s, {what}: Rust VLS -t1 {:.0} req/s, -t2 {:.0} req/s ({} errors); C VLS -t2 {:.0} req/s ({} errors)",
        one.rps, two.rps, two.errors, c_two.rps, c_two.errors
    );
    // Functional checks only (throughput ratios belong to benchmarks).
    for (name, r) in [("-t1", &one), ("-t2", &two)] {
        assert!(r.requests > 1000, "{name} must serve requests");
        assert_eq!(
            r.errors, 0,
            "{name}: {} socket errors or bad responses for {} requests",
            r.errors, r.requests
        );
    }
}

/// nginx (one worker process) serves a static file over VPP's TCP stack to
/// `wrk -t2 -c64`; both run under LDP with the Rust layer. wrk's threads
/// share one VCL worker (mode 3). Acceptance: no crash or hang, requests
/// served with no socket error and no bad response.
/// The C layer's result for the same `-t2` run is printed for comparison.
#[test]
fn ldp_nginx_and_wrk_two_threads_in_mode3() {
    nginx_and_wrk("one VCL worker (mode 3)", None, Duration::from_secs(60));
}

/// `wrk -t2 -c64` with per-thread workers (`multi-thread-workers`) against
/// nginx, both under LDP with the Rust layer. wrk creates every thread's
/// epoll set in its main thread, which then waits in `pthread_join`: each
/// thread's first use of its set moves the set to the thread's worker
/// without the main thread's help. Same acceptance as in mode 3. The C
/// layer hangs in this run (its threads wait for the main thread to answer
/// their clone RPCs), so its run is cut at 15 s.
#[test]
fn ldp_wrk_two_threads_with_per_thread_workers() {
    nginx_and_wrk("per-thread workers (mode 2)", Some("multi-thread-workers"), Duration::from_secs(15));
}

// ---------------------------------------------------------------------------
// nginx with two worker processes: per-process workers (mode 1)
// ---------------------------------------------------------------------------

/// The children of process `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Requests per nginx worker pid in the access log, from line `from` on;
/// also returns the number of lines.
fn requests_by_pid(log: &Path, from: usize) -> (std::collections::BTreeMap<u32, u64>, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut by_pid = std::collections::BTreeMap::new();
    let mut lines = 0;
    for (i, l) in text.lines().enumerate() {
        lines = i + 1;
        if i >= from {
            if let Ok(pid) = l.trim().parse::<u32>() {
                *by_pid.entry(pid).or_insert(0) += 1;
            }
        }
    }
    (by_pid, lines)
}

/// What one nginx run with two worker processes did.
struct TwoWorkers {
    before: WrkResult,
    before_by_pid: std::collections::BTreeMap<u32, u64>,
    respawned: bool,
    /// The master cleaned up the killed worker's VCL worker (Rust layer).
    cleaned_up: bool,
    after: WrkResult,
    after_by_pid: std::collections::BTreeMap<u32, u64>,
    /// `[alert]` lines of nginx's master other than the killed worker's
    /// exit (e.g. `close() channel failed (9: Bad file descriptor)` when a
    /// cleanup closed a descriptor of its own).
    alerts: Vec<String>,
}

/// nginx (master + 2 worker processes) under LDP with `preload`; `wrk
/// -t1 -c64 -d5s` (under LDP with the Rust layer) before and after one
/// worker is killed with SIGKILL (the master respawns it).
fn nginx_two_workers(
    vpp: &VppInstance,
    srv_ns: &AppNamespace,
    cli_conf: &Path,
    client: &str,
    preload: &str,
    tag: &str,
) -> TwoWorkers {
    let log = vpp.dir().join(format!("nginx/access-{tag}.log"));
    // The error log is shared by the runs: this run's lines come after these.
    let errors_before =
        std::fs::read_to_string(vpp.dir().join("nginx/error.log")).map_or(0, |t| t.lines().count());
    let logging = format!("log_format by_pid '$pid';\n  access_log {} by_pid;", log.display());
    let (nginx, url) =
        start_nginx_with(vpp, srv_ns, preload, "master_process on;\nworker_processes 2;", &logging);
    let master = nginx.id();
    let workers = children_of(master);
    eprintln!("nginx ({tag}): master {master}, workers {workers:?}");
    let before = wrk_observed(vpp, client, cli_conf, 1, &url, Duration::from_secs(30));
    let (before_by_pid, seen) = requests_by_pid(&log, 0);
    let victim = workers.first().copied();
    if let Some(v) = victim {
        // SAFETY: kills one of nginx's workers (our grandchild).
        unsafe { libc::kill(v as i32, libc::SIGKILL) };
    }
    std::thread::sleep(Duration::from_millis(1500));
    let now = children_of(master);
    let respawned = now.len() == 2 && victim.is_some_and(|v| !now.contains(&v));
    // The Rust layer logs the cleanup of the dead worker's VCL worker (done
    // by the master when it forks the new worker); nginx sends its stderr
    // to its error log once started.
    let stderr = std::fs::read_to_string(vpp.dir().join("nginx/stderr.log")).unwrap_or_default()
        + &std::fs::read_to_string(vpp.dir().join("nginx/error.log")).unwrap_or_default();
    let cleaned_up = victim.is_some_and(|v| {
        stderr.lines().any(|l| {
            l.contains("cleaned up the worker of an exited child") && l.contains(&format!("pid={v}"))
        })
    });
    eprintln!("nginx ({tag}): killed worker {victim:?}; workers now {now:?}");
    let after = wrk_observed(vpp, client, cli_conf, 1, &url, Duration::from_secs(30));
    let (after_by_pid, _) = requests_by_pid(&log, seen);
    drop(nginx);
    // What the master logged as alerts, but for the killed worker's exit.
    let log = std::fs::read_to_string(vpp.dir().join("nginx/error.log")).unwrap_or_default();
    let this_run = || log.lines().skip(errors_before).filter(|l| l.contains("[alert]"));
    let alerts =
        this_run().filter(|l| l.contains(&format!("[alert] {master}#")) && !l.contains("exited on signal 9"));
    let alerts = alerts.map(str::to_string).collect();
    let worker_alerts = this_run().filter(|l| !l.contains(&format!("[alert] {master}#"))).count();
    eprintln!("nginx ({tag}): {worker_alerts} alerts of worker processes (e.g. a wake-up without events)");
    TwoWorkers { before, before_by_pid, respawned, cleaned_up, after, after_by_pid, alerts }
}

/// Debian's nginx with `worker_processes 2` (a master that forks two
/// workers; every process has its own VCL worker, the listener is shared)
/// under LDP with the Rust layer serves a static file to `wrk -c64`:
/// both workers serve requests; a worker killed with SIGKILL is respawned
/// by the master and serving continues (errors only for connections the
/// killed worker held), the master cleans up the dead worker's VCL worker
/// (deferred from SIGCHLD to its next fork) and logs no alert but the
/// worker's exit (a cleanup that closed a descriptor of the master's shows
/// as `close() channel failed`). Alerts of the workers are counted and
/// printed (`epoll_wait() returned no events without timeout`: a wake-up
/// that brought no event, a known leftover). The same run with the C layer is printed
/// for comparison.
#[test]
fn ldp_nginx_two_worker_processes_share_the_listener_and_survive_a_killed_worker() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, cli_ns) = vpp.setup_stack_namespaces().expect("namespaces");
    let cli_conf = vpp.write_vcl_conf("wrk", &VclConf::in_namespace(&cli_ns)).unwrap();
    let Preloads { c, rust } = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let r = nginx_two_workers(&vpp, &srv_ns, &cli_conf, &rust, &rust, "rust");
    let cl = nginx_two_workers(&vpp, &srv_ns, &cli_conf, &rust, &c, "c");
    for (name, t) in [("Rust", &r), ("C", &cl)] {
        eprintln!(
            "nginx worker_processes 2, {name} VLS: before the kill {:.0} req/s ({} errors), by worker {:?}; \
             respawned: {}; after {:.0} req/s ({} errors), by worker {:?}",
            t.before.rps,
            t.before.errors,
            t.before_by_pid,
            t.respawned,
            t.after.rps,
            t.after.errors,
            t.after_by_pid
        );
    }
    assert!(r.before.requests > 1000, "nginx must serve requests");
    assert_eq!(r.before.errors, 0, "errors before the kill");
    assert_eq!(r.before_by_pid.len(), 2, "both workers must serve: {:?}", r.before_by_pid);
    assert!(r.respawned, "the master must respawn the killed worker");
    assert!(r.cleaned_up, "the master must clean up the killed worker's VCL worker");
    assert!(r.after.requests > 1000, "serving must continue after the kill");
    // Connections the killed worker held are lost with it; nothing else.
    assert!(r.after.errors <= 64, "{} errors after the kill", r.after.errors);
    assert!(r.alerts.is_empty(), "nginx's master logged alerts: {:#?}", r.alerts);
}

/// CPU time (user + system) process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process is alive");
    // Fields after the command name (which may hold spaces): state is the
    // 3rd field, utime and stime the 14th and 15th.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: plain libc query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// VPP dies under a program running over the Rust layer (nginx, one worker
/// process, under LDP). The program's event loop must not spin: VCL keeps
/// its message-queue fd ready after it lost VPP (to retry attaching at every
/// wait), which made every `epoll_wait` of the program return at once,
/// empty, at 100 % of a core for as long as it ran. Now the layer watches a
/// once-a-second timer instead of that fd while VPP is gone, so the program
/// sleeps as it asked and VCL still retries attaching. Checked: the process
/// is still there and used under 20 % of a core over 3 s, starting 2 s after
/// the kill (the detach takes about 1 s).
#[test]
fn ldp_program_does_not_spin_after_vpp_dies() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let vpp_pid = vpp.pid().expect("this test kills VPP: it needs one it started");
    let (srv_ns, cli_ns) = vpp.setup_stack_namespaces().expect("namespaces");
    let cli_conf = vpp.write_vcl_conf("wrk", &VclConf::in_namespace(&cli_ns)).unwrap();
    let Preloads { rust, .. } = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let (mut nginx, url) = start_nginx(&vpp, &srv_ns, &rust);
    let served = wrk_limited(&rust, &cli_conf, 1, &url, Duration::from_secs(30));
    assert!(served.requests > 100, "nginx must serve before VPP dies: {served:?}");
    // SAFETY: plain syscall on the pid of the VPP this test started.
    assert_eq!(unsafe { libc::kill(vpp_pid as i32, libc::SIGKILL) }, 0);
    std::thread::sleep(Duration::from_secs(2));
    let before = cpu_time(nginx.id());
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_time(nginx.id()) - before;
    assert!(nginx.try_wait().unwrap().is_none(), "nginx exited after VPP died");
    eprintln!("nginx used {used:?} of CPU in the 3 s after VPP died");
    assert!(used < Duration::from_millis(600), "nginx spins after VPP died: {used:?} of CPU in 3 s");
}

/// What a process holds: open descriptors (`/proc/PID/fd` entries) and
/// resident memory (`/proc/PID/status`, KiB): all of it (`VmRSS`), its
/// anonymous part (`RssAnon`: heap and stacks) and its shared part
/// (`RssShmem`: here mostly the FIFO segments VPP maps into the app).
#[derive(Debug, Clone, Copy)]
struct Usage {
    fds: usize,
    rss: u64,
    anon: u64,
    shmem: u64,
}

/// [`Usage`] of process `pid`; `None` once it is gone.
fn usage(pid: u32) -> Option<Usage> {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        status.lines().find_map(|l| l.strip_prefix(key))?.split_whitespace().next()?.parse().ok()
    };
    Some(Usage { fds, rss: kib("VmRSS:")?, anon: kib("RssAnon:")?, shmem: kib("RssShmem:")? })
}

/// What the descriptors of process `pid` point to (`readlink` of each
/// `/proc/PID/fd` entry), e.g. `socket:[…]` or `/memfd:… (deleted)`.
fn fd_targets(pid: u32) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return Vec::new() };
    let mut t: Vec<String> = dir
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.display().to_string())
        .collect();
    t.sort();
    t
}

/// Soak: nginx (master + 2 worker processes) under LDP with the Rust layer
/// serves `wrk -t2 -c32 -H "Connection: close"` (under LDP with the Rust
/// layer too: a new connection for every request) for `VLS_SOAK_SECS`
/// seconds (default 60), through VPP's TCP stack. Zero errors (socket
/// errors and non-2xx responses), the same two workers at the end, and
/// from a sample after a warm-up to one at the end neither worker's open
/// descriptors nor its resident memory outside the FIFO segments
/// (`VmRSS - RssShmem`) grow by more than a small bound. The segments VPP
/// maps into a worker (descriptors and shared memory) follow the
/// connections VPP still holds, closed ones in TIME_WAIT included: they
/// are printed every 10 s with the rest, and bounded loosely.
/// `cargo test --features vpp --test ldp connection_close_soak -- --ignored --nocapture`
/// (`VLS_SOAK_NGINX_LAYER=c`: nginx with the C layer, for comparison).
///
/// VPP runs with `tcp { timewait-time 1 }`. With VPP's default (10 s), the
/// sessions in TIME_WAIT keep their FIFOs and VPP keeps adding FIFO
/// segments; each one is a descriptor (memfd) in the worker, so the
/// descriptor nginx opens `index.html` on climbs with them. Once it is 32,
/// LDP (`LDP_SID_BIT` 5 by default: descriptors from 32 up are VLS
/// handles plus 32) turns nginx's `close(32)` of that file into
/// `vls_close(0)`, which closes the worker's share of the fork-shared
/// listener (the kernel's descriptor 32 stays open): VCL then gets accepts
/// for listener handle 0 ("couldn't find listen session") and a worker
/// gets EBADFD from every `epoll_wait` (a log flood; with the C layer one
/// worker crashed in one run). `LDP_SID_BIT=10` for nginx avoids it. How
/// the layer should behave when a program closes a descriptor LDP maps to
/// one of its sessions is not settled or tested yet.
/// `VLS_SOAK_TIMEWAIT=default` runs VPP with its default TIME_WAIT instead
/// (no `timewait-time` line), to reproduce that.
#[test]
#[ignore = "long soak (60 s by default)"]
fn ldp_nginx_two_workers_connection_close_soak() {
    /// Growth allowed per worker over the run: descriptors (segments come
    /// and go), private memory, and the FIFO segments' memory.
    const MORE_FDS: usize = 8;
    const MORE_PRIVATE_KIB: u64 = 8 * 1024;
    const MORE_SHMEM_KIB: u64 = 256 * 1024;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let secs: u64 = std::env::var("VLS_SOAK_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let so = libvls();
    // VPP keeps a closed connection's FIFOs through TIME_WAIT (10 s by
    // default): at this rate (thousands of connections a second) it adds
    // FIFO segments until the workers' descriptors reach LDP's first
    // session descriptor (32) and nginx's close of a file closes its
    // listener (see the doc comment). A deployment with this much churn
    // shortens TIME_WAIT; so does this test.
    // VLS_SOAK_TIMEWAIT=default: VPP's own TIME_WAIT (see the doc comment).
    let timewait = match std::env::var("VLS_SOAK_TIMEWAIT").as_deref() {
        Ok("default") => "",
        _ => "tcp { timewait-time 1 }",
    };
    let options = VppOptions { extra_startup: timewait.into(), ..VppOptions::default() };
    let vpp = VppInstance::start_with(common::linked_vpp(), options).expect("vpp");
    let (srv_ns, cli_ns) = vpp.setup_stack_namespaces().expect("namespaces");
    let cli_conf = vpp.write_vcl_conf("wrk", &VclConf::in_namespace(&cli_ns)).unwrap();
    let Preloads { rust, c } = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    // VLS_SOAK_NGINX_LAYER=c: nginx with the C layer instead (comparison).
    let server = if std::env::var("VLS_SOAK_NGINX_LAYER").as_deref() == Ok("c") { &c } else { &rust };
    let (nginx, url) =
        start_nginx_with(&vpp, &srv_ns, server, "master_process on;\nworker_processes 2;", "access_log off;");
    let master = nginx.id();
    let churn = |duration: Duration| {
        let wrk = Wrk {
            threads: 2,
            connections: 32,
            duration,
            time_limit: duration + Duration::from_secs(60),
            headers: vec!["Connection: close".into()],
            ..Wrk::new(&url, &rust, &cli_conf)
        };
        let run = wrk.run().expect("run wrk");
        eprintln!(
            "wrk -t2 -c32 -H 'Connection: close' -d{}s:\n{}{}",
            duration.as_secs(),
            run.stdout,
            run.stderr
        );
        assert!(run.status.success(), "wrk ended with {}", run.status);
        run.result
    };
    // Warm-up: the workers' pools, segments and caches settle.
    let warm = churn(Duration::from_secs(5));
    let workers = children_of(master);
    assert_eq!(workers.len(), 2, "nginx's workers: {workers:?}");
    let start: Vec<Usage> =
        workers.iter().map(|&w| usage(w).expect("a worker is gone after the warm-up")).collect();
    let targets_before: Vec<Vec<String>> = workers.iter().map(|&w| fd_targets(w)).collect();
    // Every 10 s during the run: (seconds, usage by worker). A worker
    // whose every call fails logs an alert per call: nginx is killed once
    // its error log passes 64 MiB (the run then fails).
    let error_log = vpp.dir().join("nginx/error.log");
    let flooded = std::sync::atomic::AtomicBool::new(false);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (run, series) = std::thread::scope(|s| {
        let sampler = s.spawn(|| {
            let t0 = std::time::Instant::now();
            let mut series = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if std::fs::metadata(&error_log).map_or(0, |m| m.len()) > 64 << 20 {
                    flooded.store(true, std::sync::atomic::Ordering::Relaxed);
                    // SAFETY: kills nginx's process group (ours).
                    unsafe { libc::kill(-(master as i32), libc::SIGKILL) };
                    break;
                }
                if t0.elapsed().as_secs() >= 10 * (series.len() as u64 + 1) {
                    let now: Vec<Option<Usage>> = workers.iter().map(|&w| usage(w)).collect();
                    series.push((t0.elapsed().as_secs(), now));
                }
            }
            series
        });
        // Stops the sampler also when the run fails (else the scope would
        // wait for it for ever).
        struct Stop<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let stopping = Stop(&stop);
        let run = churn(Duration::from_secs(secs));
        drop(stopping);
        (run, sampler.join().expect("sampler"))
    });
    let flooded = flooded.load(std::sync::atomic::Ordering::Relaxed);
    let end: Vec<Option<Usage>> = workers.iter().map(|&w| usage(w)).collect();
    let workers_now = children_of(master);
    // VPP's own view: its error counters (drops, retransmissions, resets).
    // (A VPP whose main loop is stuck never answers: 5 s each. Seen after
    // ~10 s of this churn: VPP's tcp4-reset and ip4-input answer each
    // other's packets for ever and its pending frames grow by millions.)
    let mut vpp_answers = true;
    for cmd in ["show errors", "show app server"] {
        let (tx, rx) = std::sync::mpsc::channel();
        let vppctl = vpp.install().vppctl_bin();
        let sock = vpp.dir().join("cli.sock");
        std::thread::spawn(move || {
            let out = Command::new(vppctl)
                .arg("-s")
                .arg(sock)
                .args(cmd.split_whitespace())
                .stdin(Stdio::null())
                .output();
            let _ = tx.send(out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default());
        });
        match rx.recv_timeout(Duration::from_secs(5)) {
            Ok(out) => eprintln!("vppctl {cmd}:\n{out}"),
            Err(_) => {
                eprintln!("vppctl {cmd}: no answer within 5 s (VPP's main loop is stuck)");
                vpp_answers = false;
                break;
            }
        }
    }
    for (i, &w) in workers.iter().enumerate() {
        let after = fd_targets(w);
        let new: Vec<&String> = after.iter().filter(|t| !targets_before[i].contains(t)).collect();
        eprintln!("worker {w}: descriptors opened during the run and still open: {new:?}");
    }
    drop(nginx);
    let log = std::fs::read_to_string(&error_log).unwrap_or_default();
    let notable: Vec<&str> = log
        .lines()
        .filter(|l| ["[alert]", "[crit]", "[error]", "[emerg]"].iter().any(|k| l.contains(k)))
        .collect();
    // By message (the text after "PID#TID: "), with a count.
    let mut kinds = std::collections::BTreeMap::new();
    for l in &notable {
        let msg = l.split_once(": ").map_or(*l, |(_, m)| m);
        let msg = msg.split(", client:").next().unwrap_or(msg);
        *kinds.entry(msg.to_string()).or_insert(0u64) += 1;
    }
    eprintln!("nginx's error log: {} alert/crit/error lines:", notable.len());
    for (msg, n) in &kinds {
        eprintln!("  {n} x {msg}");
    }
    eprintln!(
        "Connection: close soak, {secs} s: {} requests ({:.0} req/s, {} errors); warm-up {} requests ({} errors)",
        run.requests, run.rps, run.errors, warm.requests, warm.errors
    );
    let show =
        |u: &Usage| format!("{} fds, VmRSS {} KiB (RssAnon {}, RssShmem {})", u.fds, u.rss, u.anon, u.shmem);
    for (i, w) in workers.iter().enumerate() {
        eprintln!("worker {w} after the warm-up: {}", show(&start[i]));
    }
    for (t, now) in &series {
        for (i, u) in now.iter().enumerate() {
            eprintln!("worker {} at {t} s: {}", workers[i], u.as_ref().map_or("gone".into(), show));
        }
    }
    for (i, w) in workers.iter().enumerate() {
        eprintln!("worker {w} at the end: {}", end[i].as_ref().map_or("gone".into(), show));
    }
    assert!(vpp_answers, "VPP stopped answering its CLI during the run");
    assert!(!flooded, "nginx's error log passed 64 MiB (nginx was killed)");
    assert_eq!(warm.errors, 0, "errors in the warm-up");
    assert!(run.requests > 1000, "nginx must serve requests");
    assert_eq!(run.errors, 0, "{} socket errors or bad responses for {} requests", run.errors, run.requests);
    assert_eq!(workers_now, workers, "a worker died or was replaced during the run");
    for (i, w) in workers.iter().enumerate() {
        let (a, b) = (start[i], end[i].expect("the worker is gone"));
        assert!(b.fds <= a.fds + MORE_FDS, "worker {w}: open descriptors {} -> {}", a.fds, b.fds);
        let private = |u: Usage| u.rss.saturating_sub(u.shmem);
        assert!(
            private(b) <= private(a) + MORE_PRIVATE_KIB,
            "worker {w}: VmRSS outside the FIFO segments {} KiB -> {} KiB",
            private(a),
            private(b)
        );
        assert!(
            b.shmem <= a.shmem + MORE_SHMEM_KIB,
            "worker {w}: FIFO segments {} KiB -> {} KiB",
            a.shmem,
            b.shmem
        );
    }
}

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

/// The `ldp_pipeline` example (plain libc sockets and epoll).
fn ldp_pipeline() -> PathBuf {
    // With the suite's features: a build without them would replace the
    // library the rest of the suite (doctests included) links.
    let exe = common::cargo_build(&["--features", common::features(), "--example", "ldp_pipeline"])
        .join("debug/examples/ldp_pipeline");
    assert!(exe.is_file(), "{} missing", exe.display());
    exe
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

/// The same for 60 s (alternating 2 and 4 client threads):
/// `cargo test --features vpp --test ldp pipelined_soak -- --ignored --nocapture`.
/// `dir/lighttpd.conf` for lighttpd serving `dir/www/index.html` (4 KiB,
/// made here) on 127.0.0.1:`port`, logging errors to `dir/lighttpd.err`.
fn write_lighttpd_conf(dir: &Path, port: u16) {
    std::fs::create_dir_all(dir.join("www")).unwrap();
    std::fs::write(dir.join("www/index.html"), "x".repeat(4096)).unwrap();
    std::fs::write(
        dir.join("lighttpd.conf"),
        format!(
            "server.document-root = \"{}\"\nserver.port = {port}\nserver.bind = \"127.0.0.1\"\n\
             server.errorlog = \"{}\"\nserver.pid-file = \"\"\n",
            dir.join("www").display(),
            dir.join("lighttpd.err").display()
        ),
    )
    .unwrap();
}

/// lighttpd (serving a 4 KiB file) behind haproxy, both under LDP with
/// `preload`, in VPP's default namespace; returns them (killed when
/// dropped) and haproxy's URL once one request through it was answered
/// (or after 20 s).
fn start_haproxy_and_lighttpd(vpp: &VppInstance, conf: &Path, preload: &str) -> (Vec<ProcessGroup>, String) {
    let dir = vpp.dir().join("proxy");
    let (web, front) = (7450, 7451);
    write_lighttpd_conf(&dir, web);
    std::fs::write(
        dir.join("haproxy.cfg"),
        format!(
            "global\n    maxconn 1000\ndefaults\n    mode http\n    timeout connect 5s\n    \
             timeout client 30s\n    timeout server 30s\nfrontend fe\n    bind 127.0.0.1:{front}\n    \
             default_backend be\nbackend be\n    server web 127.0.0.1:{web}\n"
        ),
    )
    .unwrap();
    let spawn = |program: &str, args: &[&str], log: &str| {
        ProcessGroup::spawn(
            under_ldp(&mut Command::new(program), preload, conf)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join(log)).unwrap()),
        )
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"))
    };
    let lighttpd = spawn(
        "/usr/sbin/lighttpd",
        &["-D", "-f", dir.join("lighttpd.conf").to_str().unwrap()],
        "lighttpd.out",
    );
    let haproxy =
        spawn("/usr/sbin/haproxy", &["-f", dir.join("haproxy.cfg").to_str().unwrap()], "haproxy.out");
    let url = format!("http://127.0.0.1:{front}/index.html");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        let probe = Wrk {
            connections: 1,
            duration: Duration::from_secs(1),
            time_limit: Duration::from_secs(10),
            ..Wrk::new(&url, preload, conf)
        };
        if probe.run().is_ok_and(|r| r.result.requests > 0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    (vec![haproxy, lighttpd], url)
}

/// haproxy in front of lighttpd, both and `wrk -t2 -c32` under LDP with the
/// Rust layer: every response is a 200 (no socket error, no 503/504). With
/// the answers LDP alone gives (`epoll_wait` returning 0 events early)
/// haproxy's own clock ran ahead and its connect and server timeouts fired
/// after milliseconds. The C layer's run is printed for comparison.
#[test]
fn ldp_haproxy_in_front_of_lighttpd() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for program in ["/usr/sbin/haproxy", "/usr/sbin/lighttpd"] {
        assert!(
            Path::new(program).is_file(),
            "{program} is needed (Debian: apt-get install haproxy lighttpd)"
        );
    }
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let conf = vpp.write_vcl_conf("proxy", &VclConf::default()).unwrap();
    let Preloads { c, rust } = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let run = |preload: &str, limit: Duration| {
        let (programs, url) = start_haproxy_and_lighttpd(&vpp, &conf, preload);
        let run = Wrk { threads: 2, connections: 32, time_limit: limit, ..Wrk::new(&url, preload, &conf) }
            .run()
            .expect("run wrk");
        drop(programs);
        eprintln!("wrk -t2 -c32 through haproxy:\n{}{}", run.stdout, run.stderr);
        if run.result.requests == 0 {
            for log in ["haproxy.out", "lighttpd.out", "lighttpd.err"] {
                let text = std::fs::read_to_string(vpp.dir().join("proxy").join(log)).unwrap_or_default();
                eprintln!("--- {log} ---\n{text}");
            }
        }
        run.result
    };
    let rust_run = run(&rust, Duration::from_secs(60));
    let c_run = run(&c, Duration::from_secs(20));
    eprintln!(
        "haproxy + lighttpd: Rust VLS {:.0} req/s ({} errors), C VLS {:.0} req/s ({} errors)",
        rust_run.rps, rust_run.errors, c_run.rps, c_run.errors
    );
    assert!(rust_run.requests > 1000, "requests must be served: {rust_run:?}");
    assert_eq!(rust_run.errors, 0, "socket errors or non-2xx answers: {rust_run:?}");
}

/// `ab`'s counts: (complete, failed, non-2xx); `None` if it printed none.
fn parse_ab(out: &str) -> Option<(u64, u64, u64)> {
    let field = |name: &str| {
        out.lines().find(|l| l.starts_with(name)).and_then(|l| l[name.len()..].trim().parse::<u64>().ok())
    };
    Some((field("Complete requests:")?, field("Failed requests:")?, field("Non-2xx responses:").unwrap_or(0)))
}

/// Runs Debian's `ab` with `args` under LDP (`preload`, `conf`, and
/// `LDP_SID_BIT=sid_bit` if given) for at most `limit`: its counts
/// ([`parse_ab`]) and everything it printed.
fn ab_under_ldp(
    preload: &str,
    conf: &Path,
    sid_bit: Option<&str>,
    args: &[&str],
    limit: Duration,
) -> (Option<(u64, u64, u64)>, String) {
    let mut cmd = Command::new("/usr/bin/ab");
    under_ldp(&mut cmd, preload, conf)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(bit) = sid_bit {
        cmd.env("LDP_SID_BIT", bit);
    }
    let out = wait_output_with_timeout(cmd.spawn().expect("spawn ab"), limit).unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (parse_ab(&text), text)
}

/// Runs `ab("1", "1")` (requests, concurrency) every 200 ms until one
/// request is answered with a 200 (the servers may not listen yet); fails
/// after 20 s with `why()` and what `ab` printed last.
fn until_one_is_answered(
    ab: impl Fn(&str, &str) -> (Option<(u64, u64, u64)>, String),
    why: impl Fn() -> String,
) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (counts, text) = ab("1", "1");
        if counts == Some((1, 0, 0)) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{}; ab:\n{text}", why());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Debian's tinyproxy (one thread per connection; its listener waits in
/// `poll` without timeout and stops on SIGTERM by leaving it) in front of
/// lighttpd, `ab` through it, all under LDP with the Rust layer: every
/// answer a 200, the idle proxy uses little CPU (LDP's own `poll` looks in
/// a loop, 100 % of a core), and SIGTERM stops it (LDP's `poll` never
/// returned for a signal, so it ran on). tinyproxy's ACL allows any
/// address: over cut-through VPP gives an accepted connection no peer
/// address (`0.0.0.0`), with either layer.
#[test]
fn ldp_tinyproxy_serves_and_stops_on_sigterm() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for program in ["/usr/bin/tinyproxy", "/usr/sbin/lighttpd", "/usr/bin/ab"] {
        assert!(
            Path::new(program).is_file(),
            "{program} is needed (Debian: apt-get install tinyproxy lighttpd apache2-utils)"
        );
    }
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let conf = vpp.write_vcl_conf("tinyproxy", &VclConf::default()).unwrap();
    let rust = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let dir = vpp.dir().join("tinyproxy");
    let (web, proxy) = (7470, 7471);
    write_lighttpd_conf(&dir, web);
    std::fs::write(
        dir.join("tinyproxy.conf"),
        format!(
            "Port {proxy}\nListen 127.0.0.1\nTimeout 30\nMaxClients 64\nAllow 0.0.0.0/0\nLogLevel Notice\n\
             User root\nGroup root\n"
        ),
    )
    .unwrap();
    let spawn = |program: &str, args: &[&str], log: &str| {
        ProcessGroup::spawn(
            under_ldp(&mut Command::new(program), &rust, &conf)
                .args(args)
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.join(format!("{log}.out"))).unwrap())
                .stderr(std::fs::File::create(dir.join(format!("{log}.err"))).unwrap()),
        )
        .unwrap_or_else(|e| panic!("spawn {program}: {e}"))
    };
    let _lighttpd =
        spawn("/usr/sbin/lighttpd", &["-D", "-f", dir.join("lighttpd.conf").to_str().unwrap()], "lighttpd");
    let tinyproxy =
        spawn("/usr/bin/tinyproxy", &["-d", "-c", dir.join("tinyproxy.conf").to_str().unwrap()], "tinyproxy");
    let proxy_arg = format!("127.0.0.1:{proxy}");
    let url = format!("http://127.0.0.1:{web}/index.html");
    let ab = |n: &str, c: &str| {
        ab_under_ldp(
            &rust,
            &conf,
            None,
            &["-n", n, "-c", c, "-s", "10", "-X", &proxy_arg, &url],
            Duration::from_secs(60),
        )
    };
    // Both servers may not listen yet.
    until_one_is_answered(ab, || {
        let log = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        format!(
            "the proxy never answered a 200; tinyproxy:\n{}{}",
            log("tinyproxy.out"),
            log("tinyproxy.err")
        )
    });
    let (counts, text) = ab("1000", "4");
    eprintln!("ab -n 1000 -c 4 through tinyproxy:\n{text}");
    assert_eq!(counts, Some((1000, 0, 0)), "every request answered with a 200");
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_time(tinyproxy.id());
    std::thread::sleep(Duration::from_secs(2));
    let idle = cpu_time(tinyproxy.id()) - before;
    eprintln!("tinyproxy idle for 2 s used {idle:?} of CPU");
    assert!(idle < Duration::from_millis(600), "the idle proxy used {idle:?} of CPU in 2 s (a loop)");
    let status = tinyproxy.stop(libc::SIGTERM, Duration::from_secs(5));
    assert!(status.is_some(), "tinyproxy did not stop within 5 s of SIGTERM");
}

/// Debian's socat in `fork` mode (a child per connection, which runs a
/// bash script answering one HTTP request) and `ab -c 4`, all under LDP
/// with the Rust layer and `LDP_SID_BIT=9` (bash reads its script from
/// descriptor 255; socat's `select` needs session numbers below 1024):
/// every request gets its 2-byte answer. The parent's cleanup of exited
/// children freed newer children's workers (their index reused), and
/// socat's parent died after some hundred requests; VPP crashed when a
/// child exited right after its accept; and a request now and then never
/// ended (its bash, exec'd by a child that exited first, stayed subscribed
/// to the connection, and its worker was never freed); and, rarely, `ab`'s
/// connect was refused after some hundred requests (the parent lost its
/// listener to a second close of a kept connection, see `Kept`).
#[test]
fn ldp_socat_fork_mode_serves_every_request() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for program in ["/usr/bin/socat", "/usr/bin/ab", "/bin/bash"] {
        assert!(
            Path::new(program).is_file(),
            "{program} is needed (Debian: apt-get install socat apache2-utils)"
        );
    }
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let conf = vpp.write_vcl_conf("socat", &VclConf::default()).unwrap();
    let rust = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let dir = vpp.dir().join("socat");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("answer.sh");
    std::fs::write(
        &script,
        "#!/bin/bash\nwhile IFS= read -r l; do l=${l%$'\\r'}; [ -z \"$l\" ] && break; done\n\
         printf 'HTTP/1.0 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok'\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let port = 7480;
    let _socat = ProcessGroup::spawn(
        under_ldp(&mut Command::new("/usr/bin/socat"), &rust, &conf)
            .env("LDP_SID_BIT", "9")
            // The half-close wait (0.5 s by default) after the script ends.
            .args([
                "-t",
                "0.05",
                &format!("TCP-LISTEN:{port},fork,reuseaddr"),
                &format!("EXEC:{}", script.display()),
            ])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("socat.out")).unwrap())
            .stderr(std::fs::File::create(dir.join("socat.err")).unwrap()),
    )
    .expect("spawn socat");
    let url = format!("http://127.0.0.1:{port}/");
    let ab = |n: &str, c: &str| {
        ab_under_ldp(&rust, &conf, Some("9"), &["-n", n, "-c", c, "-s", "10", &url], Duration::from_secs(90))
    };
    until_one_is_answered(ab, || {
        format!(
            "socat never answered; socat:\n{}",
            std::fs::read_to_string(dir.join("socat.err")).unwrap_or_default()
        )
    });
    let (counts, text) = ab("400", "4");
    let two_bytes = text.contains("Document Length:        2 bytes");
    eprintln!("ab -n 400 -c 4 to socat in fork mode:\n{text}");
    let log = std::fs::read_to_string(dir.join("socat.err")).unwrap_or_default();
    assert_eq!(counts, Some((400, 0, 0)), "every request answered; socat:\n{log}");
    assert!(two_bytes, "the script's answer, not an empty one; socat:\n{log}");
    assert!(!log.contains("signal"), "a socat process died:\n{log}");
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

/// `ldp_pipeline <scenario>-server` and `<scenario>-client` on `addr`, both
/// under LDP with the Rust layer (the server logs at `info`); the client is
/// started again while the server does not listen yet. Their outputs.
fn ldp_server_and_client(scenario: &str, addr: &str) -> (std::process::Output, std::process::Output) {
    let so = libvls();
    let exe = ldp_pipeline();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let conf = vpp.write_vcl_conf(scenario, &VclConf::default()).unwrap();
    let rust = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let server = under_ldp(&mut Command::new(&exe), &rust, &conf)
        .env("VLS_RS_LOG", "info")
        .args([&format!("{scenario}-server"), addr])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the server");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let client = loop {
        let child = under_ldp(&mut Command::new(&exe), &rust, &conf)
            .args([&format!("{scenario}-client"), addr])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the client");
        let out = wait_output_with_timeout(child, Duration::from_secs(30)).unwrap();
        // Not listening yet: connect fails; anything else is the result.
        let refused = String::from_utf8_lossy(&out.stderr).contains("ldp_pipeline: connect");
        if !refused || std::time::Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let server = wait_output_with_timeout(server, Duration::from_secs(30)).unwrap();
    (server, client)
}

fn server_and_client_report(server: &std::process::Output, client: &std::process::Output) -> String {
    format!(
        "server ({}):\n{}{}\nclient ({}):\n{}{}",
        server.status,
        String::from_utf8_lossy(&server.stdout),
        String::from_utf8_lossy(&server.stderr),
        client.status,
        String::from_utf8_lossy(&client.stdout),
        String::from_utf8_lossy(&client.stderr)
    )
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

#[test]
#[ignore]
fn ldp_pipelined_soak() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let until = std::time::Instant::now() + Duration::from_secs(60);
    let runs = pipeline_rounds(&[(2, 1), (4, 1)].repeat(1000), Some(until));
    eprintln!("ldp_pipelined_soak: {runs} client runs in 60 s, all intact");
    assert!(runs > 0);
}

/// For manual runs: starts a VPP, prints the `vcl.conf` to use and the
/// preload list, and keeps VPP up for `VLS_HOLD_VPP_SECS` (default 600).
/// `cargo test --features vpp --test ldp hold_a_vpp -- --ignored --nocapture`
#[test]
#[ignore]
fn hold_a_vpp_for_manual_runs() {
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let conf = vpp.write_vcl_conf("manual", &VclConf::default()).unwrap();
    let preload = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    println!("VCL_CONFIG={} LD_PRELOAD={preload}", conf.display());
    let secs = std::env::var("VLS_HOLD_VPP_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    std::thread::sleep(Duration::from_secs(secs));
}

/// The prototypes of `vcl_locked.h` that `src/capi/mod.rs` implements
/// (parameter names dropped, spacing normalised as [`prototypes`] does).
/// The same in every supported release (25.10 to 26.10).
const IMPLEMENTED: &[&str] = &[
    "vls_handle_t vls_create(uint8_t,uint8_t)",
    "int vls_shutdown(vls_handle_t,int)",
    "int vls_close(vls_handle_t)",
    "int vls_bind(vls_handle_t,vppcom_endpt_t *)",
    "int vls_listen(vls_handle_t,int)",
    "int vls_connect(vls_handle_t,vppcom_endpt_t *)",
    "vls_handle_t vls_accept(vls_handle_t,vppcom_endpt_t *,int)",
    "ssize_t vls_read(vls_handle_t,void *,size_t)",
    "ssize_t vls_recvfrom(vls_handle_t,void *,uint32_t,int,vppcom_endpt_t *)",
    "int vls_write(vls_handle_t,void *,size_t)",
    "int vls_write_msg(vls_handle_t,void *,size_t)",
    "int vls_sendto(vls_handle_t,void *,int,int,vppcom_endpt_t *)",
    "int vls_attr(vls_handle_t,uint32_t,void *,uint32_t *)",
    "vls_handle_t vls_epoll_create(void)",
    "int vls_epoll_ctl(vls_handle_t,int,vls_handle_t,struct epoll_event *)",
    "int vls_epoll_wait(vls_handle_t,struct epoll_event *,int,double)",
    "int vls_select(int,vcl_si_set *,vcl_si_set *,vcl_si_set *,double)",
    "int vls_poll(vcl_poll_t *,uint32_t,double)",
    "vcl_session_handle_t vlsh_to_sh(vls_handle_t)",
    "void vlsh_to_session_and_worker_index(vls_handle_t,uint32_t *,uint32_t *)",
    "vls_handle_t vls_session_index_to_vlsh(uint32_t)",
    "int vls_app_create(char *)",
    "unsigned char vls_use_eventfd(void)",
    "unsigned char vls_mt_wrk_supported(void)",
    "int vls_set_libc_epfd(vls_handle_t,int)",
    "int vls_get_libc_epfd(vls_handle_t)",
    "void vls_set_epoll_fns(vls_epoll_fns_t)",
    "void vls_register_vcl_worker(void)",
];

/// C tokens of `s`: identifiers/numbers, and single punctuation characters.
fn c_tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
        if !c.is_whitespace() {
            out.push(c.to_string());
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// Joins C type tokens: one space between words, `*` after a space.
fn join_type(tokens: &[String]) -> String {
    tokens.join(" ").replace("* *", "**")
}

/// The `vls_*`/`vlsh_*` function declarations of a C header, as
/// (name, normalised prototype without parameter names).
fn prototypes(header: &str) -> Vec<(String, String)> {
    // Comments and preprocessor lines go first.
    let mut text = String::new();
    let mut rest = header;
    while let Some(i) = rest.find("/*") {
        text.push_str(&rest[..i]);
        rest = rest[i..].find("*/").map_or("", |j| &rest[i + j + 2..]);
    }
    text.push_str(rest);
    let text: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");

    let mut out = Vec::new();
    for stmt in text.split([';', '{', '}']) {
        let t = c_tokens(stmt);
        // `ret name ( params )` with a vls_/vlsh_ name right before the '('.
        let Some(open) = t.iter().position(|x| x == "(") else { continue };
        if open == 0 || t.last().map(String::as_str) != Some(")") || t.iter().any(|x| x == "typedef") {
            continue;
        }
        let name = &t[open - 1];
        if !(name.starts_with("vls_") || name.starts_with("vlsh_")) {
            continue;
        }
        let params: Vec<String> = t[open + 1..t.len() - 1]
            .split(|x| x == ",")
            .map(|p| {
                // Drop a trailing parameter name (a word after a type).
                let keep = match p {
                    [.., prev, last]
                        if last.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && prev != "struct" =>
                    {
                        &p[..p.len() - 1]
                    }
                    _ => p,
                };
                join_type(keep)
            })
            .collect();
        out.push((name.clone(), format!("{} {}({})", join_type(&t[..open - 1]), name, params.join(","))));
    }
    out
}

#[test]
fn prototypes_of_a_header_are_read_without_parameter_names() {
    let h = "/* c */\n#include <x.h>\nint vls_a (vls_handle_t vlsh, struct epoll_event *ev);\n\
             typedef int (*vls_f) (int);\nvoid vlsh_b (uint32_t *a,\n uint32_t * b);\nint other (void);\n";
    assert_eq!(
        prototypes(h),
        vec![
            ("vls_a".to_string(), "int vls_a(vls_handle_t,struct epoll_event *)".to_string()),
            ("vlsh_b".to_string(), "void vlsh_b(uint32_t *,uint32_t *)".to_string()),
        ]
    );
}

/// Drop-in check: every function the linked release's `vcl_locked.h`
/// declares is exported by `libvls.so`, with the prototype the C ABI
/// implements.
#[test]
fn libvls_exports_every_function_of_vcl_locked_h() {
    let header_path = Path::new(vls::ffi::VPP_SRC_DIR).join("vcl/vcl_locked.h");
    let header = std::fs::read_to_string(&header_path)
        .unwrap_or_else(|e| panic!("read {}: {e}", header_path.display()));
    let declared = prototypes(&header);
    assert!(
        declared.len() >= 20,
        "only {} vls_ functions found in {}",
        declared.len(),
        header_path.display()
    );

    let so = libvls();
    let nm = Command::new("nm").args(["-D", "--defined-only"]).arg(&so).output().expect("run nm (binutils)");
    assert!(nm.status.success(), "nm -D {}: {}", so.display(), String::from_utf8_lossy(&nm.stderr));
    let nm = String::from_utf8_lossy(&nm.stdout);
    let exported: std::collections::HashSet<&str> = nm
        .lines()
        .filter(|l| l.split_whitespace().nth(1) == Some("T"))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();

    let missing: Vec<&str> =
        declared.iter().map(|(n, _)| n.as_str()).filter(|n| !exported.contains(n)).collect();
    let changed: Vec<&str> =
        declared.iter().map(|(_, p)| p.as_str()).filter(|p| !IMPLEMENTED.contains(p)).collect();
    assert!(
        missing.is_empty() && changed.is_empty(),
        "VPP {} ({}):\n  declared but not exported by {}: {missing:?}\n  \
         prototypes the C ABI does not implement (new or changed): {changed:?}",
        vls::ffi::VPP_RELEASE,
        header_path.display(),
        so.display()
    );
}

/// The wait corrections answer to `epoll_wait`/`epoll_pwait` in the
/// preloaded `libvls.so` only. A Rust program that links the crate (this
/// test, which also links libvppcom) keeps libc's: VCL's own
/// `vcl_epoll_wait` and tokio's reactor bind to whatever `epoll_wait` the
/// program exports, and must get the kernel's.
#[test]
fn only_the_preloaded_library_answers_to_epoll_wait() {
    for name in ["epoll_wait", "epoll_pwait"] {
        let c_name = std::ffi::CString::new(name).unwrap();
        // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the program.
        let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c_name.as_ptr()) };
        assert!(!sym.is_null(), "{name} not found");
        // SAFETY: `info` is written by dladdr for an address it knows.
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: `sym` is a symbol address, `info` a valid out-pointer.
        assert_ne!(unsafe { libc::dladdr(sym, &mut info) }, 0, "{name}: dladdr");
        // SAFETY: dladdr set `dli_fname` to a NUL-terminated path.
        let file = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }.to_string_lossy().into_owned();
        assert!(file.contains("libc.so"), "this program resolves {name} to {file}, not to libc");
    }
    let so = libvls();
    let out = Command::new("nm").args(["-D", "--defined-only"]).arg(&so).output().expect("run nm (binutils)");
    assert!(out.status.success(), "nm -D {}", so.display());
    let table = String::from_utf8_lossy(&out.stdout);
    for name in ["epoll_wait", "epoll_pwait", "vls_epoll_wait"] {
        assert!(
            table.lines().any(|l| l.split_whitespace().last() == Some(name)),
            "{} does not export {name}",
            so.display()
        );
    }
}

/// Debian's apache2 under LDP, through VPP's stack (its own app
/// namespace; `ab`, under LDP too, in another), with the event MPM (a
/// child with a listener thread and worker threads; connections it keeps
/// for a lingering close go to the listener thread's epoll set) and the
/// prefork MPM (children forked from the master accepting on the shared
/// listener): every one of 2000 `ab -c 8` requests answered with a 200,
/// with the Rust layer. With the C layer both stall (`ab` times out after
/// some dozens of requests; its run is only reported). Over cut-through
/// both layers stall too: VPP's cut-through connections ignore
/// `shutdown(SHUT_WR)` (no half-close in that transport, 26.06), so the
/// lingering close apache does after a response never ends the stream.
#[test]
fn ldp_apache2_event_and_prefork_serve_through_the_stack() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for program in ["/usr/sbin/apache2", "/usr/bin/ab"] {
        assert!(
            Path::new(program).is_file(),
            "{program} is needed (Debian: apt-get install apache2 apache2-utils)"
        );
    }
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, cli_ns) = vpp.setup_stack_namespaces().expect("namespaces");
    let srv_conf = vpp.write_vcl_conf("apache2", &VclConf::in_namespace(&srv_ns)).unwrap();
    let cli_conf = vpp.write_vcl_conf("ab", &VclConf::in_namespace(&cli_ns)).unwrap();
    let Preloads { rust, c } = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let dir = vpp.dir().join("apache2");
    let port = 7490;
    let url = format!("http://{}:{port}/index.html", srv_ns.addr);
    for (mpm, preload, layer) in [("event", &rust, "Rust"), ("prefork", &rust, "Rust"), ("event", &c, "C")] {
        let conf = write_apache2_conf(&dir, mpm, srv_ns.addr, port);
        let _apache = ProcessGroup::spawn(
            under_ldp(&mut Command::new("/usr/sbin/apache2"), preload, &srv_conf)
                .args(["-f", conf.to_str().unwrap(), "-DFOREGROUND"])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.join("apache2.out")).unwrap())
                .stderr(std::fs::File::create(dir.join("apache2.err")).unwrap()),
        )
        .expect("spawn apache2");
        let log = || {
            let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
            format!("apache2 ({mpm}, {layer} layer):\n{}{}", read("apache2.err"), read("error.log"))
        };
        let ab = ab_at(preload, &cli_conf, &url, &[]);
        until_one_is_answered(&ab, log);
        let (counts, text) = ab("2000", "8");
        eprintln!("ab -n 2000 -c 8 to apache2 ({mpm} MPM, {layer} layer):\n{text}");
        if layer == "C" {
            eprintln!("(the C layer's run is only reported)");
            continue;
        }
        assert_eq!(counts, Some((2000, 0, 0)), "every request answered with a 200; {}", log());
    }
}

/// An apache2 configuration with the `mpm` MPM (`event` or `prefork`)
/// serving a 4 KiB file from `dir/www` on `addr:port` (children as
/// www-data: apache refuses to serve as root); returns its path.
fn write_apache2_conf(dir: &Path, mpm: &str, addr: std::net::Ipv4Addr, port: u16) -> PathBuf {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "x".repeat(4096)).unwrap();
    // The children (www-data) read the file.
    let mut p = www.clone();
    loop {
        let _ = std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        if !p.pop() || p == Path::new("/tmp") || p == Path::new("/") {
            break;
        }
    }
    let limits = match mpm {
        "event" => "StartServers 1\nServerLimit 1\nThreadsPerChild 8\nMaxRequestWorkers 8\n",
        _ => "StartServers 2\nServerLimit 4\nMaxRequestWorkers 4\n",
    };
    let modules = "/usr/lib/apache2/modules";
    let conf = dir.join(format!("apache2-{mpm}.conf"));
    std::fs::write(
        &conf,
        format!(
            "ServerRoot {dir}\nPidFile {dir}/apache2.pid\nErrorLog {dir}/error.log\nLogLevel warn\n\
             LoadModule mpm_{mpm}_module {modules}/mod_mpm_{mpm}.so\n\
             LoadModule authz_core_module {modules}/mod_authz_core.so\n\
             LoadModule mime_module {modules}/mod_mime.so\nTypesConfig /etc/mime.types\n\
             LoadModule dir_module {modules}/mod_dir.so\n\
             User www-data\nGroup www-data\nListen {addr}:{port}\nServerName localhost\n\
             DocumentRoot {www}\n<Directory {www}>\n  Require all granted\n</Directory>\n{limits}",
            dir = dir.display(),
            www = www.display(),
        ),
    )
    .unwrap();
    conf
}

/// Event-loop runtimes under LDP, through VPP's stack: a Python asyncio
/// HTTP server (its epoll selector) and a Node.js one (libuv), from
/// `tests/programs/`, each serving 2000 `ab -c 8` requests with a new
/// connection each and 2000 with keep-alive, every one answered, with the
/// Rust layer. (With the C layer, tried by hand: the asyncio server stalls
/// after some dozens of requests, and Node.js aborts on libuv's assertion
/// that an endless `epoll_wait` never returns 0.)
#[test]
fn ldp_asyncio_and_node_servers_serve_through_the_stack() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let programs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs");
    let servers = [
        ("/usr/bin/python3", programs.join("asyncio_http.py"), 7495, "python3"),
        ("/usr/bin/node", programs.join("node_http.js"), 7496, "nodejs"),
    ];
    for (program, _, _, package) in &servers {
        assert!(Path::new(program).is_file(), "{program} is needed (Debian: apt-get install {package})");
    }
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, cli_ns) = vpp.setup_stack_namespaces().expect("namespaces");
    let srv_conf = vpp.write_vcl_conf("server", &VclConf::in_namespace(&srv_ns)).unwrap();
    let cli_conf = vpp.write_vcl_conf("ab", &VclConf::in_namespace(&cli_ns)).unwrap();
    let rust = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    for (program, script, port, _) in servers {
        let out = vpp.dir().join(format!("{port}.out"));
        let _server = ProcessGroup::spawn(
            under_ldp(&mut Command::new(program), &rust, &srv_conf)
                .args([script.to_str().unwrap(), &port.to_string(), &srv_ns.addr.to_string()])
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(out.with_extension("err")).unwrap()),
        )
        .expect("spawn the server");
        let log = || {
            let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
            format!("{program} {}:\n{}{}", script.display(), read(&out), read(&out.with_extension("err")))
        };
        let url = format!("http://{}:{port}/", srv_ns.addr);
        until_one_is_answered(ab_at(&rust, &cli_conf, &url, &[]), log);
        for keep_alive in [&[][..], &["-k"][..]] {
            let (counts, text) = ab_at(&rust, &cli_conf, &url, keep_alive)("2000", "8");
            eprintln!("ab {keep_alive:?} -n 2000 -c 8 to {program}:\n{text}");
            assert_eq!(counts, Some((2000, 0, 0)), "every request answered ({keep_alive:?}); {}", log());
        }
    }
}

/// What one `ab` run gave: its counts ([`parse_ab`]) and its output.
type AbRun = (Option<(u64, u64, u64)>, String);

/// `ab -n <n> -c <c> -s 5 <extra> <url>` under LDP (`preload`, `conf`,
/// at most 60 s), as a function of `n` and `c` (for
/// [`until_one_is_answered`] and the runs after it).
fn ab_at<'a>(
    preload: &'a str,
    conf: &'a Path,
    url: &'a str,
    extra: &'a [&'a str],
) -> impl Fn(&str, &str) -> AbRun + 'a {
    move |n, c| {
        let mut args = vec!["-n", n, "-c", c, "-s", "5"];
        args.extend_from_slice(extra);
        args.push(url);
        ab_under_ldp(preload, conf, None, &args, Duration::from_secs(60))
    }
}

/// A connect without blocking to a port nobody listens on, through VPP's
/// stack (VPP's TCP gets a reset), checked as programs check it
/// (`tests/programs/so_error.py`: writable, then `getsockopt(SO_ERROR)`):
/// `ECONNREFUSED`, as from the kernel. VCL's `VPPCOM_ATTR_GET_ERROR`, which
/// LDP's `SO_ERROR` asks, always says 0 (with the C layer the script
/// prints `SO_ERROR 0`): the program took the refused connection for an
/// established one.
#[test]
fn ldp_so_error_reports_a_refused_connect() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    assert!(
        Path::new("/usr/bin/python3").is_file(),
        "/usr/bin/python3 is needed (Debian: apt-get install python3)"
    );
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, cli_ns) = vpp.setup_stack_namespaces().expect("namespaces");
    let cli_conf = vpp.write_vcl_conf("client", &VclConf::in_namespace(&cli_ns)).unwrap();
    let rust = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/so_error.py");
    let child = under_ldp(&mut Command::new("/usr/bin/python3"), &rust, &cli_conf)
        .args([script.to_str().unwrap(), &srv_ns.addr.to_string(), "7497"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let out = wait_output_with_timeout(child, Duration::from_secs(30)).unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("SO_ERROR 111 ECONNREFUSED"),
        "a refused connect is reported as the kernel does:\n{text}"
    );
}

/// Debian's apache2 (event MPM) under LDP through VPP's stack sends a
/// 48 MiB file to `curl` (under LDP too) six times, each whole, the same
/// bytes, within 6 s (about 1 s here). A worker thread that cannot finish a response hands
/// it to the listener thread's epoll set with `EPOLLOUT`; by then the
/// socket is writable, and VCL queued that event for the worker's next
/// wait while the listener slept in the kernel until VPP's next message:
/// transfers stalled for seconds, or past curl's limit, now and then.
#[test]
fn ldp_apache2_sends_a_large_file_without_stalls() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for program in ["/usr/sbin/apache2", "/usr/bin/curl"] {
        assert!(Path::new(program).is_file(), "{program} is needed (Debian: apt-get install apache2 curl)");
    }
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, cli_ns) = vpp.setup_stack_namespaces().expect("namespaces");
    let srv_conf = vpp.write_vcl_conf("apache2", &VclConf::in_namespace(&srv_ns)).unwrap();
    let cli_conf = vpp.write_vcl_conf("curl", &VclConf::in_namespace(&cli_ns)).unwrap();
    let rust = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let dir = vpp.dir().join("apache2");
    let port = 7491;
    let conf = write_apache2_conf(&dir, "event", srv_ns.addr, port);
    // 48 MiB that no run of equal bytes could hide a loss in.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: Vec<u8> = (0..48 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(dir.join("www/big.bin"), &big).unwrap();
    let _apache = ProcessGroup::spawn(
        under_ldp(&mut Command::new("/usr/sbin/apache2"), &rust, &srv_conf)
            .args(["-f", conf.to_str().unwrap(), "-DFOREGROUND"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.join("apache2.out")).unwrap())
            .stderr(std::fs::File::create(dir.join("apache2.err")).unwrap()),
    )
    .expect("spawn apache2");
    let url = format!("http://{}:{port}/index.html", srv_ns.addr);
    let log = || std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
    until_one_is_answered(ab_at(&rust, &cli_conf, &url, &[]), log);
    let url = format!("http://{}:{port}/big.bin", srv_ns.addr);
    let got = dir.join("got.bin");
    for i in 0..6 {
        let _ = std::fs::remove_file(&got);
        let curl = under_ldp(&mut Command::new("/usr/bin/curl"), &rust, &cli_conf)
            .args([
                "-s",
                "-m",
                "6",
                "-o",
                got.to_str().unwrap(),
                "-w",
                "%{http_code} %{size_download} %{time_total}",
                &url,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn curl");
        let out = wait_output_with_timeout(curl, Duration::from_secs(30)).unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        eprintln!("download {i}: {said}");
        assert!(out.status.success(), "download {i} within 6 s (curl: {said}, {}); {}", out.status, log());
        let data = std::fs::read(&got).unwrap_or_default();
        assert!(data == big, "download {i}: {} bytes, not the file's {} ({said})", data.len(), big.len());
    }
}
