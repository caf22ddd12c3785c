//! Debian's nutcracker (twemproxy: one thread, one epoll set, a stats
//! thread with a set of its own) in front of redis, all under LDP.

use super::*;

/// redis-server in one namespace, nutcracker proxying to it from the
/// other, and `redis-benchmark` (SET and GET, 16 connections) plus a
/// `redis-cli` SET and GET through the proxy, all under the Rust layer.
///
/// nutcracker registers its listener for `EPOLLIN | EPOLLOUT` and then
/// modifies it to `EPOLLIN`: the layer had parked an `EPOLLOUT` for the
/// listener (found "writable" while the stats thread existed) and returned
/// it after the change, and nutcracker called the listener's send handler,
/// which is null (a crash at start-up).
#[test]
fn ldp_nutcracker_proxies_redis() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (proxy, redis, benchmark, cli) =
        ("/usr/sbin/nutcracker", "/usr/bin/redis-server", "/usr/bin/redis-benchmark", "/usr/bin/redis-cli");
    need(&[proxy, redis, benchmark, cli], "nutcracker redis-server redis-tools");
    let st = stack("nutcracker", "redis");
    let rust = &st.preloads.rust;
    let (srv_conf, cli_conf) = (&st.srv_conf, &st.cli_conf);
    let (proxy_addr, redis_addr) = (&st.server_addr, &st.client_addr);
    let dir = st.vpp.dir().join("nutcracker");
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nutcracker.yml");
    std::fs::write(
        &conf,
        format!(
            "alpha:\n  listen: {proxy_addr}:7540\n  hash: fnv1a_64\n  distribution: ketama\n  redis: true\n  \
             auto_eject_hosts: false\n  servers:\n   - {redis_addr}:7541:1\n"
        ),
    )
    .unwrap();
    let spawn = |cmd: &mut Command, conf: &Path, out: &str| {
        ProcessGroup::spawn(
            under_ldp(cmd, rust, conf)
                .env("VLS_RS_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(dir.join(format!("{out}.out"))).unwrap())
                .stderr(std::fs::File::create(dir.join(format!("{out}.err"))).unwrap()),
        )
        .unwrap_or_else(|e| panic!("spawn {out}: {e}"))
    };
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap_or_default();
    let _redis = spawn(
        Command::new(redis)
            .args(["--bind", redis_addr, "--port", "7541", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no"]),
        cli_conf,
        "redis",
    );
    wait_for_text("redis did not start", "Ready to accept connections", || read("redis.out"));
    let mut nutcracker = spawn(Command::new(proxy).arg("-c").arg(&conf), srv_conf, "nutcracker");
    let client = |args: &[&str]| {
        let mut cmd = Command::new(args[0]);
        cmd.args(["-h", proxy_addr, "-p", "7540"]).args(&args[1..]);
        let (ok, stdout, stderr) = run_under_ldp(&mut cmd, rust, cli_conf, Duration::from_secs(60));
        (ok, format!("{}{stderr}", stdout.replace('\r', "\n")))
    };
    // nutcracker prints nothing when it is up: retry the first SET.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, text) = client(&[cli, "set", "vls-key", "through-the-proxy"]);
        if ok && text.trim() == "OK" {
            break;
        }
        let exited = nutcracker.try_wait().ok().flatten();
        assert!(
            exited.is_none() && std::time::Instant::now() < deadline,
            "no SET through nutcracker ({text:?}); nutcracker {exited:?}:\n{}{}",
            read("nutcracker.out"),
            read("nutcracker.err")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (ok, text) = client(&[cli, "get", "vls-key"]);
    assert!(ok && text.trim() == "through-the-proxy", "GET through nutcracker: {text:?}");
    let (ok, text) = client(&[benchmark, "-q", "-n", "5000", "-c", "16", "-t", "set,get"]);
    let rates: Vec<&str> = text.lines().filter(|l| l.contains("requests per second")).collect();
    eprintln!("redis-benchmark through nutcracker under the Rust layer: {rates:?}");
    assert!(ok && rates.len() == 2 && !text.contains("rror"), "redis-benchmark:\n{text}");
    assert!(nutcracker.try_wait().ok().flatten().is_none(), "nutcracker ended:\n{}", read("nutcracker.err"));
    assert!(!read("nutcracker.err").contains("vls-rs"), "{}", read("nutcracker.err"));
}
