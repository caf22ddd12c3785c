//! nginx under LDP: `wrk` with several threads (modes 3 and 2), two worker
//! processes sharing a listener, a killed worker, a dead VPP, and a soak.

use super::*;
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
/// socket error and no bad response (ratios are for the benchmarks). In
/// mode 3 (no `extra`), also that `-t1`'s I/O thread took the lock-free
/// single-thread paths over (its log).
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
    if extra.is_none() {
        // wrk's main thread made the epoll set; its one I/O thread, arriving
        // with the main thread outside VCL, takes the lock-free paths over.
        let logged = Wrk {
            duration: Duration::from_secs(1),
            envs: vec![("VLS_RS_LOG".into(), "vls::engine::threads=debug".into())],
            ..Wrk::new(&url, &rust, &cli_conf)
        }
        .run()
        .expect("run wrk");
        let registered: Vec<&str> =
            logged.stderr.lines().filter(|l| l.contains("thread registered")).collect();
        assert!(
            registered.iter().any(|l| l.contains("unlocked_paths=true")),
            "wrk -t1: its I/O thread did not take the lock-free paths over: {registered:?}\n{}",
            logged.stderr
        );
    }
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

/// Debian's siege (a thread per simulated user, each with blocking
/// sockets; mode 3, one VCL worker for all) under LDP with the Rust layer,
/// `-b -c 8 -r 50` against nginx: all 400 transactions succeed. With the C
/// layer siege hung past its run in a manual try (22 transactions/s before
/// that); its run here is printed (killed after 10 s).
#[test]
fn ldp_siege_threads_complete_every_transaction() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let siege = "/usr/bin/siege";
    assert!(Path::new(siege).is_file(), "siege is needed (Debian: apt-get install siege)");
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, cli_ns) = vpp.setup_stack_namespaces().expect("namespaces");
    let cli_conf = vpp.write_vcl_conf("siege", &VclConf::in_namespace(&cli_ns)).unwrap();
    let Preloads { c, rust } = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let (_nginx, url) = start_nginx(&vpp, &srv_ns, &rust);
    // siege reads ~/.siege/siege.conf (and writes a default one): a home of
    // its own keeps the run independent of the user's.
    let home = vpp.dir().join("siege-home");
    std::fs::create_dir_all(&home).unwrap();
    let run = |preload: &str, limit: Duration| {
        let mut cmd = Command::new(siege);
        cmd.env("HOME", &home).args(["-b", "-c", "8", "-r", "50", &url]);
        run_under_ldp(&mut cmd, preload, &cli_conf, limit)
    };
    let (ok, out, err) = run(&c, Duration::from_secs(10));
    eprintln!(
        "siege under the C layer (finished: {ok}):\n{out}{}",
        err.lines().take(20).collect::<Vec<_>>().join("\n")
    );
    let (ok, out, err) = run(&rust, Duration::from_secs(60));
    eprintln!("siege under the Rust layer:\n{out}");
    // siege's summary is JSON on standard output.
    let field = |name: &str| -> Option<f64> {
        let at = out.find(&format!("\"{name}\":"))? + name.len() + 3;
        out[at..].trim_start().split(|c: char| c == ',' || c.is_whitespace()).next()?.parse().ok()
    };
    assert!(ok, "siege:\n{out}\n{err}");
    assert_eq!(field("successful_transactions"), Some(400.0), "{out}\n{err}");
    assert_eq!(field("failed_transactions"), Some(0.0), "{out}\n{err}");
}
