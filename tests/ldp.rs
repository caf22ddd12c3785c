//! Drop-in under LDP: unmodified programs run over VPP with
//! `LD_PRELOAD=libvls.so:libvcl_ldpreload.so`, the Rust layer taking the
//! place of libvppcom's own `vls_*` functions.
//!
//! Needs `iperf3` on PATH (Debian's package). The test builds the release
//! `libvls.so` itself (`cargo build --release --features vpp --lib`).

#![cfg(feature = "vpp")]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use vls::harness::{wait_output_with_timeout, VclConf, VppInstance};

/// Builds the release cdylib and returns its path.
fn libvls() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--features", "vpp", "--lib"])
        .current_dir(root)
        .status()
        .expect("run cargo build for libvls.so");
    assert!(status.success(), "building libvls.so failed");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
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
    server_err: String,
    client_err: String,
}

/// One iperf3 TCP run over VPP cut-through with `preload`.
fn iperf_run(vcl_conf: &Path, preload: &str, port: u16) -> Run {
    let spawn = |args: &[&str]| {
        Command::new(iperf3())
            .args(args)
            .env("LD_PRELOAD", preload)
            .env("VCL_CONFIG", vcl_conf)
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
    Run { gbits, server_err: s_err, client_err: c_err }
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
    let so = libvls();
    let vpp = VppInstance::start().expect("vpp");
    let ldp = vpp.install().libdir().expect("VPP libdir").join("libvcl_ldpreload.so");
    assert!(ldp.is_file(), "{} missing", ldp.display());
    let conf = vpp.write_vcl_conf("ldp", &VclConf::default()).unwrap();

    let rust = iperf_run(&conf, &format!("{}:{}", so.display(), ldp.display()), 5201);
    // Proof that the Rust layer served both programs: its call counters.
    for (who, err) in [("server", &rust.server_err), ("client", &rust.client_err)] {
        assert!(err.contains("vls-rs: calls:"), "{who} did not go through libvls.so:\n{err}");
    }
    assert_eq!(calls(&rust.server_err, "accept"), 2, "control + data connection");
    assert!(calls(&rust.client_err, "write_msg") + calls(&rust.client_err, "write") > 100);
    assert!(calls(&rust.server_err, "read") > 100);
    assert!(rust.gbits > 0.0);

    // Same run with the C layer (libvcl_ldpreload.so alone), for comparison.
    let c = iperf_run(&conf, &ldp.display().to_string(), 5202);
    assert!(!c.server_err.contains("vls-rs:"), "the C-layer run must not load libvls.so");
    eprintln!(
        "iperf3 TCP over cut-through, 2 s: Rust VLS {:.1} Gbit/s, C VLS {:.1} Gbit/s",
        rust.gbits, c.gbits
    );
}
