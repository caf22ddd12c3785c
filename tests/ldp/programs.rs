//! Debian's servers under LDP, as a user runs them: haproxy in front of
//! lighttpd, tinyproxy, socat in fork mode, apache2 (event and prefork), a
//! Python asyncio and a Node.js server, and what a refused connect reports.

use super::*;
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
    need(&["/usr/bin/python3"], "python3");
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

/// A program whose libraries use a socket function in their constructors
/// (PostgreSQL's server is one): LDP starts lazily, before its own
/// constructor, so the layer's fork handlers would be registered before
/// those of LDP's socket wrapper, whose child handler releases the lock
/// the layer's child handler needs to register the child's VCL worker: the
/// child hung in `fork` for ever (it still does with the C layer). Here
/// `tests/programs/early_socket.c`, preloaded last, plays that library for
/// `tests/programs/fork_connect.py`, whose forked child connects to a
/// server (the same script, under LDP without it) through VPP's stack.
#[test]
fn ldp_fork_works_when_a_library_constructor_used_a_socket_first() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    need(&["/usr/bin/python3"], "python3");
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, _, srv_conf, cli_conf) = stack_confs(&vpp, "server", "forker");
    let rust = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so").rust;
    let early = build_c(&vpp, "early_socket.c", "libearly_socket.so", &["-shared", "-fPIC"]);
    let (addr, port) = (srv_ns.addr.to_string(), "7498");
    // In process groups of their own: a child hung in `fork` dies with
    // its group when the test ends.
    let run = |mode: &str, preload: &str, conf: &Path| {
        let out = vpp.dir().join(format!("fork_connect_{mode}.out"));
        let group = spawn_python(
            "fork_connect.py",
            &[mode, &addr, port],
            preload,
            conf,
            &[("VLS_RS_LOG", "warn")],
            &out,
        );
        (group, out)
    };
    let (mut server, served) = run("serve", &rust, &srv_conf);
    let served = || std::fs::read_to_string(&served).unwrap_or_default();
    wait_for_text("the server did not listen", "listening", served);

    let (mut forker, forked) = run("fork", &format!("{rust}:{}", early.display()), &cli_conf);
    let status = forker.wait_for(Duration::from_secs(30)).unwrap();
    let text = std::fs::read_to_string(&forked).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()) && text.contains("child exit status: 0"),
        "the forked child connected and ended ({status:?}):\n{text}\nserver:\n{}",
        served()
    );
    let status = server.wait_for(Duration::from_secs(20)).unwrap();
    assert!(status.is_some_and(|s| s.success()), "server ({status:?}):\n{}", served());
    assert!(served().contains("got: hello from the child"), "the server got the child's line:\n{}", served());
}
