//! Drop-in under LDP: unmodified programs run over VPP with
//! `LD_PRELOAD=libvls.so:libvcl_ldpreload.so`, the Rust layer taking the
//! place of libvppcom's own `vls_*` functions.
//!
//! One module per kind of program: `iperf` and `nginx` (throughput and
//! process models), `pipeline` (the project's own `ldp_pipeline` example,
//! for scenarios no packaged program produces on demand), `programs`
//! (other servers from Debian's packages) and `abi` (what `libvls.so`
//! exports). This file holds what they share.
//!
//! Needs Debian's packages named in the README (each test says which one it
//! misses). The tests build the release `libvls.so` themselves
//! (`cargo build --release --features vpp --lib`).

#[path = "../common/mod.rs"]
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

mod abi;
mod close_loops;
mod connect_burst;
mod handover;
mod iperf;
mod microsocks;
mod mini_httpd;
mod mosquitto;
mod ncat;
mod nginx;
mod nutcracker;
mod pgbouncer;
mod pipeline;
mod postgres;
mod programs;
mod rsync;
mod sendfile;
mod sockopt;
mod sockperf;
mod sshd;
mod udp;
mod unbound;
mod wakeups;

/// Panics, naming the Debian `packages` to install, unless every one of
/// `programs` exists.
fn need(programs: &[&str], packages: &str) {
    for program in programs {
        assert!(Path::new(program).is_file(), "{program} is needed (Debian: apt-get install {packages})");
    }
}

/// Two namespaces joined by VPP's stack, and a `vcl.conf` for the apps
/// `server` and `client` in them: (server's, client's, server's conf,
/// client's conf).
fn stack_confs(
    vpp: &VppInstance,
    server: &str,
    client: &str,
) -> (AppNamespace, AppNamespace, PathBuf, PathBuf) {
    let (srv_ns, cli_ns) = vpp.setup_stack_namespaces().expect("namespaces");
    let srv_conf = vpp.write_vcl_conf(server, &VclConf::in_namespace(&srv_ns)).unwrap();
    let cli_conf = vpp.write_vcl_conf(client, &VclConf::in_namespace(&cli_ns)).unwrap();
    (srv_ns, cli_ns, srv_conf, cli_conf)
}

/// A private VPP for one LDP test: its server and client namespaces'
/// addresses and `vcl.conf` files, and both layers' `LD_PRELOAD` values
/// (`libvls.so` built first). Processes a test starts after this are
/// dropped (killed) before the VPP.
struct Stack {
    vpp: VppInstance,
    server_addr: String,
    client_addr: String,
    srv_conf: PathBuf,
    cli_conf: PathBuf,
    preloads: Preloads,
}

/// A [`Stack`] whose `vcl.conf` files are named after `server` and
/// `client`.
fn stack(server: &str, client: &str) -> Stack {
    let so = libvls();
    let vpp = VppInstance::start_from(common::linked_vpp()).expect("vpp");
    let (srv_ns, cli_ns, srv_conf, cli_conf) = stack_confs(&vpp, server, client);
    let preloads = Preloads::new(vpp.install(), &so).expect("libvcl_ldpreload.so and libvls.so");
    let (server_addr, client_addr) = (srv_ns.addr.to_string(), cli_ns.addr.to_string());
    Stack { vpp, server_addr, client_addr, srv_conf, cli_conf, preloads }
}

/// Runs `cmd` under LDP (`preload`, `vcl_conf`) with no input, for `limit`
/// at most: whether it succeeded, and its standard output and error.
fn run_under_ldp(
    cmd: &mut Command,
    preload: &str,
    vcl_conf: &Path,
    limit: Duration,
) -> (bool, String, String) {
    let child = under_ldp(cmd, preload, vcl_conf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    let out = wait_output_with_timeout(child, limit).unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// `tests/programs/<source>` built with `cc` (and `flags`) as `<name>` in
/// `vpp`'s directory.
fn build_c(vpp: &VppInstance, source: &str, name: &str, flags: &[&str]) -> PathBuf {
    let out = vpp.dir().join(name);
    let built = Command::new("cc")
        .args(flags)
        .arg("-o")
        .arg(&out)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs").join(source))
        .output()
        .unwrap_or_else(|e| panic!("a C compiler (cc) is needed to build tests/programs/{source}: {e}"));
    assert!(built.status.success(), "cc {source}: {}", String::from_utf8_lossy(&built.stderr));
    out
}

/// Starts `tests/programs/<script>` with `args` under LDP (`preload`,
/// `vcl_conf`, plus `envs`), in a process group of its own (it dies with
/// the test), its standard output and error going to `out`.
fn spawn_python(
    script: &str,
    args: &[&str],
    preload: &str,
    vcl_conf: &Path,
    envs: &[(&str, &str)],
    out: &Path,
) -> ProcessGroup {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs").join(script);
    let file = std::fs::File::create(out).unwrap();
    ProcessGroup::spawn(
        under_ldp(&mut Command::new("/usr/bin/python3"), preload, vcl_conf)
            .envs(envs.iter().copied())
            .arg(&script)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file),
    )
    .unwrap_or_else(|e| panic!("spawn python3 {}: {e}", script.display()))
}

/// Waits (20 s at most) until `read()` contains `needle`; panics with what
/// it read, saying what did not happen (`what`).
fn wait_for_text(what: &str, needle: &str, read: impl Fn() -> String) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !read().contains(needle) {
        assert!(std::time::Instant::now() < deadline, "{what} in 20 s:\n{}", read());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Builds the release cdylib and returns its path.
fn libvls() -> PathBuf {
    let target = common::cargo_build(&["--release", "--features", common::features(), "--lib"]);
    let so = target.join("release/libvls.so");
    assert!(so.is_file(), "{} missing", so.display());
    // Absolute: some programs run in a directory of their own
    // (CARGO_TARGET_DIR may be relative).
    so.canonicalize().unwrap()
}

/// The count of `name` calls in the layer's exit statistics
/// (`VLS_RS_STATS=1`) printed on `stderr`; 0 if absent.
fn calls(stderr: &str, name: &str) -> u64 {
    stderr
        .lines()
        .find(|l| l.starts_with("vls-rs: calls:"))
        .and_then(|l| l.split_whitespace().find_map(|w| w.strip_prefix(&format!("{name}="))))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The late wake-ups of `poll` and `select` in the layer's exit statistics
/// (`VLS_RS_STATS=1`) printed on `stderr`: sleeps that lasted their whole
/// slice although a session became ready meanwhile. `None` if the line is
/// missing.
fn late_wakeups(stderr: &str) -> Option<u64> {
    stderr
        .lines()
        .find_map(|l| l.strip_prefix("vls-rs: waits: late_wakeups="))
        .and_then(|n| n.trim().parse().ok())
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

/// The `ldp_pipeline` example (plain libc sockets and epoll).
fn ldp_pipeline() -> PathBuf {
    // With the suite's features: a build without them would replace the
    // library the rest of the suite (doctests included) links.
    let exe = common::cargo_build(&["--features", common::features(), "--example", "ldp_pipeline"])
        .join("debug/examples/ldp_pipeline");
    assert!(exe.is_file(), "{} missing", exe.display());
    exe
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
    // Two namespaces joined by VPP's stack, for a server and its clients.
    let (srv_ns, cli_ns) = vpp.setup_stack_namespaces().expect("namespaces");
    for (role, ns) in [("server", &srv_ns), ("client", &cli_ns)] {
        let conf = vpp.write_vcl_conf(role, &VclConf::in_namespace(ns)).unwrap();
        println!("{role} at {}: VCL_CONFIG={}", ns.addr, conf.display());
    }
    let secs = std::env::var("VLS_HOLD_VPP_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    std::thread::sleep(Duration::from_secs(secs));
}
