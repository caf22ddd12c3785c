//! Debian's PostgreSQL server under LDP, through VPP's stack, with `pgbench`
//! (under LDP too) as its client.

use super::*;

/// The newest `/usr/lib/postgresql/<version>/bin` with a server and pgbench.
pub(super) fn postgresql_bin() -> PathBuf {
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    bins.retain(|b| {
        b.join("postgres").is_file() && b.join("pgbench").is_file() && b.join("initdb").is_file()
    });
    bins.sort();
    bins.pop().expect("PostgreSQL's server and pgbench are needed (Debian: apt-get install postgresql)")
}

/// The `postgres` account's uid and gid (the server refuses to run as root).
pub(super) fn postgres_account() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("the postgres account (made by Debian's postgresql package)");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// PostgreSQL's server (a postmaster forking a backend per connection,
/// plus its auxiliary processes) under LDP with the Rust layer, through
/// VPP's stack, and `pgbench -j 2` under LDP as its client: `pgbench -i`
/// fills its tables, then 5 s of TPC-B transactions from 8 connections,
/// with no failed transaction and nothing fatal in the server's log.
///
/// The server's libraries use a socket function in a constructor before
/// LDP's constructor runs, so LDP starts early and the layer's fork
/// handlers were registered before those of LDP's socket wrapper: the
/// postmaster's first child hung in `fork` for ever (it still does with
/// the C layer). `libvls.so`'s constructor now registers them again after
/// the wrapper's (see also
/// `ldp_fork_works_when_a_library_constructor_used_a_socket_first`).
///
/// Settings a user needs too: `LDP_SID_BIT=9` with
/// `max_files_per_process=300` keeps the server's own files below the
/// descriptors LDP gives VPP sessions (PostgreSQL opens up to 1000 files;
/// LDP's default split is at 32), and the sessions' descriptors below
/// `FD_SETSIZE` (the postmaster waits in `select`). VPP's app socket must
/// be writable by the server's account.
///
/// A backend's first `recv` used to read FIFOs VPP had freed now and then
/// (about 1 run in 10: SIGSEGV in `svm_fifo_copy_from_chunk` on a null
/// chunk, after a 5 s stall): a backend forked while others exited could
/// have a VCL worker index other than its worker index in VPP, and VCL's
/// answer to VPP's hand-over request named the wrong worker. `libvls.so`
/// now answers in VCL's place with VPP's index (the shim's
/// `vppsys_vcl_send_session_worker_update`; `tests/ldp/handover.rs`).
///
/// pgbench aborted now and then (about 1 run in 45) in dlmalloc, growing
/// VCL's session pool in its second thread's first `socket`: a lone
/// thread's calls ran without the worker's locks, and the arriving thread
/// entered VCL beside one (now every call outside the lock-free paths
/// locks; `engine::tests::a_second_thread_waits_for_the_first_threads_unlocked_calls`).
/// The postmaster died of SIGSEGV now and then (about 1 run in 40) dropping
/// its copy of a connection whose FIFOs it no longer mapped (the copy is
/// now dropped without touching them, `vppsys_session_unshare`).
///
/// A connection was lost now and then (3 to 5 runs in 100): the backend
/// of pgbench's first timed connection slept until its 60 s
/// authentication timeout, on data that was there. After a hand-over VPP
/// announces a connection's data with the index of the new FIFOs (0) until
/// the backend's claim (`vppsys_session_claim_events`) reaches it; data
/// landing in between was announced to a session that is not there, and
/// the FIFO's "announced" flag then kept VPP's own re-signal from coming.
/// A claimed connection is now looked at for a while
/// (`fork_hooks::CLAIM_GRACE`): 0 lost in 120 runs.
#[test]
fn ldp_postgresql_serves_pgbench_through_the_stack() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bin = postgresql_bin();
    let (uid, gid) = postgres_account();
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, cli_ns) = vpp.setup_stack_namespaces().expect("namespaces");
    let srv_conf = vpp.write_vcl_conf("postgres", &VclConf::in_namespace(&srv_ns)).unwrap();
    let cli_conf = vpp.write_vcl_conf("pgbench", &VclConf::in_namespace(&cli_ns)).unwrap();
    let Preloads { rust, .. } = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    // The server's account attaches through its namespace's app socket.
    let socket = vpp.app_socket().with_file_name(&srv_ns.id);
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();

    let dir = vpp.dir().join("postgres");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    let data = dir.join("data");
    let as_postgres = |cmd: &mut Command| {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid).current_dir(&dir);
    };
    let mut initdb = Command::new(bin.join("initdb"));
    as_postgres(&mut initdb);
    let out = initdb.args(["-A", "trust", "-U", "postgres", "-D"]).arg(&data).output().expect("initdb");
    assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    // pgbench connects from the client namespace's address.
    let mut hba = std::fs::OpenOptions::new().append(true).open(data.join("pg_hba.conf")).unwrap();
    std::io::Write::write_all(&mut hba, b"host all all 0.0.0.0/0 trust\n").unwrap();

    let port = "7495";
    let addr = srv_ns.addr.to_string();
    let log_file = dir.join("postgres.log");
    let mut server = Command::new(bin.join("postgres"));
    as_postgres(&mut server);
    let server = ProcessGroup::spawn(
        under_ldp(&mut server, &rust, &srv_conf)
            .env("LDP_SID_BIT", "9")
            .env("VLS_RS_LOG", std::env::var("PG_VLS_LOG").unwrap_or("warn".into()))
            .arg("-D")
            .arg(&data)
            .args(["-p", port, "-k"])
            .arg(&dir)
            .args(["-c", &format!("listen_addresses={addr}")])
            .args(["-c", "max_files_per_process=300", "-c", "max_connections=30"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_file).unwrap()),
    )
    .expect("spawn postgres");
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let pgbench = |args: &[&str], limit: Duration| {
        let child = under_ldp(&mut Command::new(bin.join("pgbench")), &rust, &cli_conf)
            .env("LDP_SID_BIT", "9")
            .args(["-h", &addr, "-p", port, "-U", "postgres"])
            .args(args)
            .arg("postgres")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pgbench");
        let out = wait_output_with_timeout(child, limit).expect("pgbench");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };

    // The server is ready once it logs so (its first child, the startup
    // process, has run).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log().contains("ready to accept connections") {
        assert!(std::time::Instant::now() < deadline, "the server did not get ready in 20 s:\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let (ok, text) = pgbench(&["-i", "-s", "1"], Duration::from_secs(60));
    assert!(ok, "pgbench -i:\n{text}\nserver:\n{}", log());
    let (ok, text) = pgbench(&["-c", "8", "-j", "2", "-T", "5"], Duration::from_secs(60));
    eprintln!("pgbench -c 8 -j 2 -T 5 (TPC-B), PostgreSQL under LDP with the Rust layer:\n{text}");
    assert!(ok, "pgbench:\n{text}\nserver:\n{}", log());
    let processed = text
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed:"))
        .and_then(|n| n.split_whitespace().next()?.parse::<u64>().ok());
    assert!(processed.is_some_and(|n| n >= 100), "transactions processed: {processed:?}\n{text}");
    assert!(text.contains("number of failed transactions: 0 "), "{text}");
    // A fast shutdown, which the server logs as complete.
    let status = server.stop(libc::SIGINT, Duration::from_secs(20));
    let log = log();
    assert!(status.is_some_and(|s| s.success()), "the server's exit: {status:?}\n{log}");
    for bad in ["FATAL", "PANIC", "terminated by signal", "vls-rs", "WARN", "ERROR"] {
        assert!(!log.contains(bad), "the server's log has {bad:?}:\n{log}");
    }
    assert!(log.contains("database system is shut down"), "{log}");
}
