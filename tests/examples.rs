//! The examples, each run the way the README says: one command, no
//! `VCL_CONFIG`, so the example starts its own VPP.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use vpp_harness::wait_output_with_timeout;

/// Builds the examples once (debug profile, like the tests).
fn examples_dir() -> PathBuf {
    static BUILT: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(d) = &*built {
        return d.clone();
    }
    // The features this test was built with (the async examples need
    // `tokio`; see `common::features`).
    let dir = common::cargo_build(&["--features", common::features(), "--examples"]).join("debug/examples");
    *built = Some(dir.clone());
    dir
}

/// Runs an example with `args` and no `VCL_CONFIG`; returns its stdout.
fn run_example(name: &str, args: &[&str]) -> String {
    let exe = examples_dir().join(name);
    assert!(exe.is_file(), "{} missing", exe.display());
    let child = Command::new(&exe)
        .args(args)
        .env_remove("VCL_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn example");
    let out = wait_output_with_timeout(child, Duration::from_secs(120)).expect("wait for example");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "example {name} failed ({}):\n--- stdout ---\n{stdout}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn example_echo_pair_runs_against_a_self_started_vpp() {
    let out = run_example("echo_client", &["127.0.0.1:7300", "8388608"]);
    assert!(out.contains("8388608 bytes sent and received back intact"), "{out}");
}

#[test]
fn example_mt_server_serves_100_connections() {
    let out = run_example("mt_server", &["127.0.0.1:7301"]);
    assert!(out.contains("mt_clients: 100 connections echoed"), "{out}");
}

#[test]
fn example_udp_echo_through_the_stack() {
    let out = run_example("udp_echo", &[]);
    // "udp_echo: <echoed> of 1000 datagrams of 1200 bytes echoed, <lost> lost, ..."
    let line =
        out.lines().find(|l| l.contains(" of 1000 datagrams of 1200 bytes echoed")).unwrap_or_else(|| {
            panic!("no result line:\n{out}");
        });
    let numbers: Vec<u32> =
        line.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
    let (echoed, lost) = (numbers[0], numbers[3]);
    assert_eq!(echoed + lost, 1000, "{line}");
    // The example's documented bound: at most 10% lost (UDP may drop).
    assert!(echoed >= 900, "{line}");
}

#[cfg(feature = "tokio")]
#[test]
fn example_tokio_echo_runs_against_a_self_started_vpp() {
    let out = run_example("tokio_echo", &["127.0.0.1:7302", "4194304"]);
    assert!(out.contains("4 connections sent 4194304 bytes each and got them back intact"), "{out}");
}

#[cfg(feature = "tokio")]
#[test]
fn example_hyper_hello_answers_every_request() {
    let out = run_example("hyper_hello", &["127.0.0.1:7303"]);
    assert!(out.contains("hyper_hello: 100 requests answered hello"), "{out}");
}

/// `hyper_hello --kernel` (the benchmark's baseline, `benches/async_http.rs`)
/// serves the same answer on the kernel's sockets, without VPP.
#[cfg(feature = "tokio")]
#[test]
fn example_hyper_hello_serves_hello_on_kernel_sockets() {
    use std::io::{Read, Write};
    use std::time::Instant;

    let exe = examples_dir().join("hyper_hello");
    let out = std::env::temp_dir().join(format!("hyper-hello-kernel-{}.out", std::process::id()));
    let mut cmd = Command::new(&exe);
    cmd.args(["--kernel", "--threads", "2", "127.0.0.1:0"])
        .env_remove("VCL_CONFIG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("create the server's stdout file"))
        .stderr(Stdio::inherit());
    // Killed on drop, also when an assertion fails.
    let _server = vpp_harness::ProcessGroup::spawn(&mut cmd).expect("spawn hyper_hello --kernel");
    // Its first line says where it listens.
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let printed = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(line) = printed.lines().next().filter(|_| printed.contains('\n')) {
            break line.to_string();
        }
        assert!(Instant::now() < deadline, "hyper_hello --kernel printed nothing in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_file(&out);
    let addr = line
        .strip_prefix("hyper_hello: serving http://")
        .and_then(|rest| rest.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    let mut conn = std::net::TcpStream::connect(addr).expect("connect to hyper_hello");
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).expect("read the answer");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer:?}");
    assert!(answer.ends_with("\r\n\r\nhello"), "{answer:?}");
}
