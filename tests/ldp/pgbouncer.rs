//! Debian's PgBouncer under LDP, between `pgbench` (under LDP too) and a
//! PostgreSQL server on the kernel's stack.

use super::postgres::{postgres_account, postgresql_bin};
use super::*;

/// PgBouncer (one libevent `epoll` loop holding VPP sessions, its clients,
/// and kernel sockets, its Unix-socket connections to the server) in
/// transaction pooling mode under the Rust layer, with `pgbench -c 8 -j 2
/// -t 100` (TPC-B) connecting through VPP's stack: all 800 transactions
/// done, none failed, PgBouncer's log free of errors. The PostgreSQL
/// server runs without LDP (it is not what this test is about: see
/// `postgres.rs`). With `--nocapture` the same run through PgBouncer under
/// the C layer is printed (its pgbench is the Rust layer's: LDP has no
/// `ppoll`, which pgbench waits in).
#[test]
fn ldp_pgbouncer_pools_pgbench_transactions() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let pgbouncer = "/usr/sbin/pgbouncer";
    need(&[pgbouncer], "pgbouncer");
    let bin = postgresql_bin();
    let (uid, gid) = postgres_account();
    let st = stack("pgbouncer", "pgbench");
    // PgBouncer (as the postgres account) attaches through the server
    // namespace's app socket.
    let conf = std::fs::read_to_string(&st.srv_conf).unwrap();
    let socket = conf
        .lines()
        .find_map(|l| l.trim().strip_prefix("app-socket-api "))
        .expect("the server's vcl.conf names its app socket")
        .trim()
        .to_string();
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let dir = st.vpp.dir().join("pgbouncer");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    let as_postgres = |cmd: &mut Command| {
        use std::os::unix::process::CommandExt;
        cmd.uid(uid).gid(gid).current_dir(&dir);
    };
    let data = dir.join("data");
    let mut initdb = Command::new(bin.join("initdb"));
    as_postgres(&mut initdb);
    let out = initdb.args(["-A", "trust", "-U", "postgres", "-D"]).arg(&data).output().expect("initdb");
    assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
    let pg_log = dir.join("postgres.log");
    let mut postgres = Command::new(bin.join("postgres"));
    as_postgres(&mut postgres);
    let _postgres = ProcessGroup::spawn(
        postgres
            .arg("-D")
            .arg(&data)
            .args(["-p", "7610", "-k"])
            .arg(&dir)
            .args(["-c", "listen_addresses="])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&pg_log).unwrap()),
    )
    .expect("spawn postgres");
    wait_for_text("the server did not get ready", "ready to accept connections", || {
        std::fs::read_to_string(&pg_log).unwrap_or_default()
    });

    let run = |layer: &str, preload: &str, port: &str| -> (bool, String, String) {
        let ini = dir.join(format!("pgbouncer-{layer}.ini"));
        let log = dir.join(format!("pgbouncer-{layer}.log"));
        let users = dir.join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").unwrap();
        std::fs::write(
            &ini,
            format!(
                "[databases]\npostgres = host={} port=7610 dbname=postgres\n\
                 [pgbouncer]\nlisten_addr = {}\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
                 default_pool_size = 4\nlogfile = {}\n",
                dir.display(),
                st.server_addr,
                users.display(),
                log.display()
            ),
        )
        .unwrap();
        let mut cmd = Command::new(pgbouncer);
        as_postgres(&mut cmd);
        let _bouncer = ProcessGroup::spawn(
            under_ldp(&mut cmd, preload, &st.srv_conf)
                .arg(&ini)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("spawn pgbouncer");
        let log = || std::fs::read_to_string(&log).unwrap_or_default();
        wait_for_text("pgbouncer did not listen", "process up", log);
        let pgbench = |args: &[&str]| {
            let mut cmd = Command::new(bin.join("pgbench"));
            cmd.args(["-h", &st.server_addr, "-p", port, "-U", "postgres"]).args(args).arg("postgres");
            let (ok, out, err) =
                run_under_ldp(&mut cmd, &st.preloads.rust, &st.cli_conf, Duration::from_secs(90));
            (ok, format!("{out}{err}"))
        };
        let (ok, init) = pgbench(&["-i", "-s", "1"]);
        if !ok {
            return (false, format!("pgbench -i:\n{init}"), log());
        }
        let (ok, text) = pgbench(&["-c", "8", "-j", "2", "-t", "100"]);
        (ok, text, log())
    };

    let (ok, text, c_log) = run("C", &st.preloads.c, "6433");
    eprintln!("pgbench through PgBouncer under the C layer (ok: {ok}):\n{text}\n{c_log}");

    let (ok, text, log) = run("Rust", &st.preloads.rust, "6432");
    eprintln!("pgbench through PgBouncer under the Rust layer:\n{text}");
    assert!(ok, "pgbench:\n{text}\npgbouncer:\n{log}");
    assert!(text.contains("number of transactions actually processed: 800/800"), "{text}\npgbouncer:\n{log}");
    assert!(text.contains("number of failed transactions: 0 "), "{text}");
    for bad in ["ERROR", "FATAL", "WARNING", "vls-rs"] {
        assert!(!log.contains(bad), "PgBouncer's log has {bad:?}:\n{log}");
    }
}
