//! An async HTTP server over VPP against nginx over VPP and against itself
//! over the kernel, side by side in one run, as a user would measure them
//! with `wrk -t2 -c64 -d10s --latency`:
//!
//! - **(a) `hyper-vls`**: `examples/hyper_hello` (hyper 1.x answering
//!   `hello`) over `vls::tokio`, on a multi-thread tokio runtime with 2
//!   worker threads (one VCL worker shared by both, VLS mode 3); wrk under
//!   LDP with the Rust layer (`LD_PRELOAD=libvls.so:libvcl_ldpreload.so`).
//! - **(b) `nginx-vls`**: nginx with one process (`master_process off;
//!   worker_processes 1;`) answering every request with `hello`
//!   (`return 200 "hello";`), under LDP with the Rust layer; wrk likewise.
//! - **(c) `hyper-kernel`**: the same `hyper_hello` with `--kernel`: the same
//!   server code on `tokio::net` sockets (2 worker threads); wrk over the
//!   kernel's loopback, no LDP, and no VPP running.
//!
//! (a) and (b) each start a private VPP (the install vpp-sys linked; the
//! harness' default `vcl.conf`: cut-through, `use-mq-eventfd`) and tear it
//! down after the run. Goals: (a) at least 0.9× (b)'s and at least 1.0×
//! (c)'s requests per second; the p99 latency of each is reported.
//!
//! Run: `VPP_PREFIX=/opt/vpp VPP_SRC_DIR=/opt/vpp-src cargo bench --features vpp,tokio --bench async_http`
//!
//! It builds `hyper_hello` itself (`cargo build --release --example
//! hyper_hello`, the cargo and target directory of this binary) and uses
//! the release `libvls.so` beside this binary. Needs Debian's `wrk` and
//! `nginx-light` (or `nginx`): without wrk nothing runs, without nginx (b)
//! is skipped; either is reported as skipped.
//!
//! Each case runs `BENCH_REPEAT` times (default 3), in an order that
//! rotates every round (a b c, b c a, c a b, …); the table shows medians
//! with the range in brackets: requests per second and p99 latency (wrk's),
//! wrk's errors, and the CPU time the server used while wrk ran per request
//! (user and system time of all its threads, from `/proc/<pid>/stat`; less
//! sensitive than requests per second to a machine shared with other work).
//! `BENCH_DURATION` sets wrk's `-d` in seconds (default 10) for quick
//! trials; `BENCH_HYPER_THREADS` the hyper servers' worker threads (default
//! 2); `BENCH_HYPER_BIN` runs that `hyper_hello` binary instead of
//! building one (to compare two builds); `BENCH_CASES=hyper-vls,nginx-vls`
//! restricts the cases;
//! `BENCH_VERBOSE=1` prints the programs' output of each run. A run under LDP counts only if wrk (and nginx) printed the Rust
//! layer's call counts at exit (`VLS_RS_STATS=1`, `vls-rs: calls:`). Every
//! program run has a time limit; a run that fails or hangs is reported and
//! left out of the figures.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{median, summary, wanted};
use vpp_harness::{
    find_program, Nginx, Preloads, ProcessGroup, VclConf, VppInstall, VppInstance, Wrk, WrkResult, ROLE_ENV,
};

/// One run's figures: wrk's, and the CPU time the server used while wrk
/// ran, per request.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wrk: WrkResult,
    server_cpu_us: f64,
}

/// Rounds, unless `BENCH_REPEAT` says.
const REPEAT: usize = 3;
/// wrk's `-d` in seconds, unless `BENCH_DURATION` says.
const DURATION_SECS: u64 = 10;
const WRK_THREADS: u32 = 2;
const WRK_CONNECTIONS: u32 = 64;
/// The servers' runtime threads, unless `BENCH_HYPER_THREADS` says.
const SERVER_THREADS: &str = "2";
/// Where (a) and (b) listen, each in its own VPP.
const VPP_ADDR: &str = "127.0.0.1:8080";
/// What proves that the Rust layer served a process (`VLS_RS_STATS=1`).
const STATS_LINE: &str = "vls-rs: calls:";
/// What `hyper_hello` prints once it listens.
const SERVING: &str = "hyper_hello: serving ";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Case {
    HyperVls,
    NginxVls,
    HyperKernel,
}

const CASES: [Case; 3] = [Case::HyperVls, Case::NginxVls, Case::HyperKernel];

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::HyperVls => "hyper-vls",
            Case::NginxVls => "nginx-vls",
            Case::HyperKernel => "hyper-kernel",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Case::HyperVls => "(a) hyper, vls::tokio; wrk LDP",
            Case::NginxVls => "(b) nginx 1 worker, LDP; wrk LDP",
            Case::HyperKernel => "(c) hyper, tokio::net; wrk kernel",
        }
    }
}

/// What a run needs.
struct Env {
    hyper: PathBuf,
    wrk: PathBuf,
    nginx: Option<PathBuf>,
    preloads: Preloads,
    install: VppInstall,
    duration: Duration,
    /// `hyper_hello --threads`.
    threads: String,
    verbose: bool,
}

impl Env {
    fn wrk(&self, base: Wrk) -> Wrk {
        Wrk {
            program: self.wrk.clone(),
            threads: WRK_THREADS,
            connections: WRK_CONNECTIONS,
            duration: self.duration,
            latency: true,
            time_limit: self.duration + Duration::from_secs(60),
            ..base
        }
    }

    fn show(&self, case: Case, what: &str, text: &str) {
        if self.verbose {
            eprintln!("--- {what} ({}) ---\n{}", case.name(), text.trim_end());
        }
    }
}

fn main() {
    match run() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("async_http: {e}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<(), String> {
    let Some(wrk) = find_program("wrk") else {
        println!("async_http: skipped: wrk not found (Debian: apt-get install wrk); nothing measured");
        return Ok(());
    };
    let nginx = find_program("nginx");
    let libvls = common::libvls("async_http")?;
    let install = VppInstall::at(vls::ffi::VPP_PREFIX).map_err(|e| format!("the VPP vpp-sys linked: {e}"))?;
    let preloads = Preloads::new(&install, &libvls).map_err(|e| e.to_string())?;
    let duration = Duration::from_secs(
        std::env::var("BENCH_DURATION").ok().and_then(|v| v.parse().ok()).unwrap_or(DURATION_SECS).max(1),
    );
    let hyper = match std::env::var_os("BENCH_HYPER_BIN") {
        Some(bin) => PathBuf::from(bin),
        None => build_hyper_hello()?,
    };
    let env = Env {
        hyper,
        wrk,
        nginx,
        preloads,
        install,
        duration,
        threads: std::env::var("BENCH_HYPER_THREADS").unwrap_or_else(|_| SERVER_THREADS.into()),
        verbose: std::env::var_os("BENCH_VERBOSE").is_some(),
    };
    let repeat = common::repeat(REPEAT);
    eprintln!("async_http: server {}\nasync_http: LD_PRELOAD={}", env.hyper.display(), env.preloads.rust);

    let mut skipped = Vec::new();
    let cases: Vec<Case> = CASES
        .into_iter()
        .filter(|c| wanted("BENCH_CASES", c.name()))
        .filter(|c| {
            let skip = *c == Case::NginxVls && env.nginx.is_none();
            if skip {
                let line =
                    format!("{}: skipped: nginx not found (Debian: apt-get install nginx-light)", c.label());
                println!("{line}");
                skipped.push(line);
            }
            !skip
        })
        .collect();

    // samples[case]: one per successful run
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); CASES.len()];
    let mut failures = [0usize; CASES.len()];
    for round in 0..repeat {
        for i in 0..cases.len() {
            let case = cases[(i + round) % cases.len()];
            let t = Instant::now();
            let outcome = match case {
                Case::HyperVls => with_vpp(&env, |vpp| hyper_vls(&env, vpp)),
                Case::NginxVls => with_vpp(&env, |vpp| nginx_vls(&env, vpp)),
                Case::HyperKernel => hyper_kernel(&env),
            };
            let secs = t.elapsed().as_secs_f64();
            let k = case as usize;
            match outcome {
                Ok(r) => {
                    eprintln!(
                        "{} {}/{repeat} ({secs:.0} s): {:.0} requests/s, p99 {:.3} ms, {} errors, \
                         server CPU {:.2} us/request",
                        case.name(),
                        round + 1,
                        r.wrk.rps,
                        r.wrk.p99_ms.unwrap_or(f64::NAN),
                        r.wrk.errors,
                        r.server_cpu_us
                    );
                    samples[k].push(r);
                }
                Err(why) => {
                    eprintln!("{} {}/{repeat} FAILED ({secs:.0} s): {why}", case.name(), round + 1);
                    failures[k] += 1;
                }
            }
        }
    }

    println!(
        "\nHTTP `hello`, wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} -d{}s --latency; median of {repeat} runs, \
         range in brackets, cases in rotating order",
        env.duration.as_secs()
    );
    println!(
        "{:<34} {:>24} {:>22} {:>6} {:>22}",
        "case", "requests/s", "p99 ms", "errors", "server CPU us/request"
    );
    let figure = |k: usize, f: fn(&Sample) -> f64| -> Vec<f64> { samples[k].iter().map(f).collect() };
    let rps = |k: usize| figure(k, |r| r.wrk.rps);
    let p99 = |k: usize| figure(k, |r| r.wrk.p99_ms.unwrap_or(f64::NAN));
    for &case in &cases {
        let k = case as usize;
        let errors: f64 = figure(k, |r| r.wrk.errors as f64).iter().sum();
        println!(
            "{:<34} {:>24} {:>22} {:>6} {:>22}",
            case.label(),
            summary(&rps(k), 0, 0),
            summary(&p99(k), 3, 2),
            if samples[k].is_empty() { "-".into() } else { format!("{errors:.0}") },
            summary(&figure(k, |r| r.server_cpu_us), 2, 2)
        );
        if failures[k] > 0 {
            println!("{}: {} of {repeat} runs failed (see above)", case.label(), failures[k]);
        }
    }
    let a = Case::HyperVls as usize;
    for (other, goal) in [(Case::NginxVls, 0.9), (Case::HyperKernel, 1.0)] {
        let b = other as usize;
        let (ra, rb) = (median(&rps(a)), median(&rps(b)));
        let (pa, pb) = (median(&p99(a)), median(&p99(b)));
        let letter = &other.label()[..3];
        match (ra, rb) {
            (Some(ra), Some(rb)) => {
                let r = ra / rb;
                let verdict = if r >= goal { "met" } else { "MISSED" };
                let p = match (pa, pb) {
                    (Some(pa), Some(pb)) => format!("{:.2}", pa / pb),
                    _ => "-".into(),
                };
                println!(
                    "(a)/{letter} requests/s {r:.2} (goal >= {goal:.1}: {verdict}); p99 (a)/{letter} {p}"
                );
            }
            _ => println!("(a)/{letter}: not measured"),
        }
    }
    for line in &skipped {
        println!("{line}");
    }
    Ok(())
}

/// Builds the release `hyper_hello` into this binary's target directory
/// with this binary's cargo (cargo does not build examples for `cargo
/// bench`), and returns its path.
fn build_hyper_hello() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    // <target>/release/deps/async_http-<hash>
    let release = exe.parent().and_then(Path::parent).ok_or("this binary is not in <target>/release/deps")?;
    let target = release.parent().ok_or("this binary is not in <target>/release/deps")?;
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--features", "vpp,tokio", "--example", "hyper_hello", "--target-dir"])
        .arg(target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build --release --example hyper_hello failed ({status})"));
    }
    let bin = release.join("examples/hyper_hello");
    if !bin.is_file() {
        return Err(format!("{} is missing after the build", bin.display()));
    }
    Ok(bin)
}

/// Runs `f` with a private VPP, torn down after it.
fn with_vpp(env: &Env, f: impl FnOnce(&VppInstance) -> Result<Sample, String>) -> Result<Sample, String> {
    let vpp = VppInstance::start_from(env.install.clone()).map_err(|e| format!("VPP did not start: {e}"))?;
    f(&vpp)
}

/// Starts `hyper_hello` with `args` and `envs` (stdout and stderr to files
/// `<out>.out`, `<out>.err`), and waits at most 15 s for it to listen.
/// Returns it and the URL it serves.
fn start_hyper(
    env: &Env,
    args: &[&str],
    envs: &[(&str, &Path)],
    out: &Path,
) -> Result<(ProcessGroup, String, PathBuf, PathBuf), String> {
    let (log, err) = (out.with_extension("out"), out.with_extension("err"));
    let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut cmd = Command::new(&env.hyper);
    cmd.args(args)
        .env_remove("LD_PRELOAD")
        .env_remove("VCL_CONFIG")
        .env_remove(ROLE_ENV)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(file(&log)?)
        .stderr(file(&err)?);
    let mut server = ProcessGroup::spawn(&mut cmd).map_err(|e| format!("hyper_hello: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    loop {
        if let Some(url) = read(&log).lines().find_map(|l| l.strip_prefix(SERVING)) {
            return Ok((server, url.trim().to_string(), log, err));
        }
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!("hyper_hello exited with {status}: {}{}", read(&log), read(&err)));
        }
        if Instant::now() > deadline {
            return Err(format!("hyper_hello not listening after 15 s: {}{}", read(&log), read(&err)));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The CPU time (user and system, all threads) process `pid` used so far.
fn cpu_secs(pid: u32) -> Result<f64, String> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| format!("/proc/{pid}/stat: {e}"))?;
    // After the command name in parentheses: field 3 (state) on; utime
    // and stime are fields 14 and 15, in clock ticks.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i - 3).and_then(|f| f.parse::<u64>().ok());
    let (utime, stime) = ticks(14).zip(ticks(15)).ok_or_else(|| format!("/proc/{pid}/stat: {stat:?}"))?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Ok((utime + stime) as f64 / hz.max(1) as f64)
}

/// Runs `wrk` against the server `server`; its result and the server's CPU
/// time per request, unless it failed, got nothing, or (under LDP) was not
/// served by the Rust layer.
fn measure(env: &Env, case: Case, wrk: Wrk, server: &ProcessGroup) -> Result<Sample, String> {
    let ldp = !wrk.preload.is_empty();
    let cpu_before = cpu_secs(server.id())?;
    let w = wrk.run().map_err(|e| format!("wrk: {e}"))?;
    let cpu = cpu_secs(server.id())? - cpu_before;
    env.show(case, "wrk", &format!("{}{}", w.stdout, w.stderr));
    if !w.status.success() {
        let tail: Vec<&str> = w.stderr.lines().rev().take(5).collect();
        return Err(format!("wrk ended with {}: {}", w.status, tail.join(" | ")));
    }
    if w.result.requests == 0 {
        return Err(format!("wrk got no response: {}", w.stdout));
    }
    if w.result.p99_ms.is_none() {
        return Err(format!("wrk printed no 99% latency: {}", w.stdout));
    }
    if ldp && !w.stderr.contains(STATS_LINE) {
        return Err(format!("wrk printed no `{STATS_LINE}` line: the Rust layer did not serve it"));
    }
    Ok(Sample { wrk: w.result, server_cpu_us: cpu * 1e6 / w.result.requests as f64 })
}

/// Stops a server with SIGTERM, killing it after 10 s.
fn stop(what: &str, server: ProcessGroup) -> Result<(), String> {
    match server.stop(libc::SIGTERM, Duration::from_secs(10)) {
        Some(_) => Ok(()),
        None => Err(format!("{what} did not exit within 10 s of SIGTERM")),
    }
}

/// (a): `hyper_hello` over `vls::tokio`, wrk under LDP.
fn hyper_vls(env: &Env, vpp: &VppInstance) -> Result<Sample, String> {
    let case = Case::HyperVls;
    let vcl = vpp.write_vcl_conf("hyper", &VclConf::default()).map_err(|e| e.to_string())?;
    let args = ["--threads", &env.threads, VPP_ADDR];
    let (server, url, log, err) = start_hyper(env, &args, &[("VCL_CONFIG", &vcl)], &vpp.dir().join("hyper"))?;
    let wrk_vcl = vpp.write_vcl_conf("wrk", &VclConf::default()).map_err(|e| e.to_string())?;
    let wrk = Wrk {
        envs: vec![("VLS_RS_STATS".into(), "1".into())],
        ..env.wrk(Wrk::new(&url, &env.preloads.rust, &wrk_vcl))
    };
    let result = measure(env, case, wrk, &server);
    let stopped = stop("hyper_hello", server);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    env.show(case, "hyper_hello", &(read(&log) + &read(&err)));
    let result = result?;
    stopped?;
    Ok(result)
}

/// (b): nginx under LDP answering `hello`, wrk under LDP.
fn nginx_vls(env: &Env, vpp: &VppInstance) -> Result<Sample, String> {
    let case = Case::NginxVls;
    let program = env.nginx.clone().ok_or("nginx not found")?;
    let listen = VPP_ADDR.parse().map_err(|e| format!("{VPP_ADDR}: {e}"))?;
    let nginx = Nginx { program, answer: Some("hello".into()), ..Nginx::new(listen) };
    let mut server = nginx
        .start(vpp, &VclConf::default(), &env.preloads.rust, &[("VLS_RS_STATS", "1")])
        .map_err(|e| format!("nginx: {e}"))?;
    let dir = vpp.dir().join("nginx");
    let server_out = || {
        ["stderr.log", "error.log"].map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default()).concat()
    };
    if let Ok(Some(status)) = server.try_wait() {
        return Err(format!("nginx exited with {status}: {}", server_out()));
    }
    if !server.has_mapped("libvls.so") {
        return Err("nginx has no libvls.so mapped".into());
    }
    let wrk_vcl = vpp.write_vcl_conf("wrk", &VclConf::default()).map_err(|e| e.to_string())?;
    let url = format!("http://{VPP_ADDR}/");
    let wrk = Wrk {
        envs: vec![("VLS_RS_STATS".into(), "1".into())],
        ..env.wrk(Wrk::new(&url, &env.preloads.rust, &wrk_vcl))
    };
    let result = measure(env, case, wrk, &server);
    let stopped = stop("nginx", server);
    // nginx writes its stderr to its error log once started.
    let out = server_out();
    env.show(case, "nginx", &out);
    let result = result?;
    stopped?;
    if !out.contains(STATS_LINE) {
        return Err(format!("nginx printed no `{STATS_LINE}` line: the Rust layer did not serve it"));
    }
    Ok(result)
}

/// (c): `hyper_hello --kernel` on any free loopback port, wrk over the
/// kernel; no VPP.
fn hyper_kernel(env: &Env) -> Result<Sample, String> {
    let case = Case::HyperKernel;
    let dir = std::env::temp_dir().join(format!("async-http-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let args = ["--kernel", "--threads", &env.threads, "127.0.0.1:0"];
    let started = start_hyper(env, &args, &[], &dir.join("hyper"));
    let result = started.and_then(|(server, url, log, err)| {
        let result = measure(env, case, env.wrk(Wrk::kernel(&url)), &server);
        let stopped = stop("hyper_hello --kernel", server);
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        env.show(case, "hyper_hello --kernel", &(read(&log) + &read(&err)));
        let result = result?;
        stopped?;
        Ok(result)
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}
