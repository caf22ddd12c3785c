//! Real programs under LDP, the C layer against the Rust layer: unmodified
//! single-threaded event-loop programs run over VPP's host stack with
//! `LD_PRELOAD=libvcl_ldpreload.so` (libvppcom's own, C, locked-sessions
//! layer) and with `LD_PRELOAD=libvls.so:libvcl_ldpreload.so` (this crate's
//! layer in its place), as a user would measure them:
//!
//! - `redis`: `redis-server` (one thread, no persistence) and
//!   `redis-benchmark -q -n 50000 -t set,get` (50 clients, one thread):
//!   SET and GET requests per second and their p50 latency; then
//!   `redis-benchmark -q -n 300000 -t get` for a steadier GET p50.
//! - `nginx`: nginx with one process (`master_process off;
//!   worker_processes 1;`) serving a 4 KiB file, and `wrk -t1 -c16 -d5s`:
//!   requests per second, and wrk's errors (socket errors plus responses
//!   that were not 2xx or 3xx).
//!
//! Server and client of a program both run under LDP with the same layer,
//! attached to one private VPP over cut-through (the harness' default
//! `vcl.conf`: local and global scope, `use-mq-eventfd`), so no kernel
//! socket and no TCP stack is involved; every run starts its own VPP (the
//! install vpp-sys linked) and tears it down.
//!
//! VPP runs as it does by default and in production: its main thread polls
//! without sleeping (`poll-sleep-usec 0`, pinned to core 0), so a message
//! through VPP never waits for VPP to wake up. With the test suite's
//! `poll-sleep-usec 100` both layers spend most of each request waiting
//! for VPP (redis about 115k requests/s against about 450k polling, on a
//! 2-core machine), which hides what the layers cost;
//! `BENCH_VPP_POLL_SLEEP_US=N` runs VPP that way (the header says so).
//!
//! Run: `VPP_PREFIX=/opt/vpp VPP_SRC_DIR=/opt/vpp-src cargo bench --features vpp --bench ldp_programs`
//!
//! Needs Debian's `redis-server`, `redis-tools`, `nginx-light` (or `nginx`)
//! and `wrk`; a program that is missing is reported as skipped. The Rust
//! layer is the release `libvls.so` that `cargo bench` builds with this
//! binary (beside it in `target/release/deps/`; else `target/release/`).
//!
//! Every program runs with `VLS_RS_STATS=1`: a Rust-layer run counts only if
//! each process printed the layer's call counts at exit (`vls-rs: calls:`)
//! and the server had `libvls.so` mapped; a C-layer run only if none did and
//! it had not. Each program runs `BENCH_REPEAT` times (default 3) per layer,
//! the order of the layers alternating (C then Rust, then Rust then C, …);
//! the table shows the median per layer with the range in brackets and the
//! ratio of the medians, Rust/C (above 1 is better for the Rust layer for
//! requests per second, below 1 for latency). Every program run has a time
//! limit; a run that fails or hangs is reported and left out of its layer's
//! figures. `BENCH_PROGRAMS=redis,nginx` restricts the programs;
//! `BENCH_VERBOSE=1` prints the programs' output of each run;
//! `BENCH_BUSY_POLL_US=N` runs the Rust layer's processes with
//! `VLS_RS_BUSY_POLL_US=N` (the header says so).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{median, ratio, summary, wanted};
use vpp_harness::{
    find_program, under_ldp, wait_output_with_timeout, Nginx, Preloads, ProcessGroup, VclConf, VppInstall,
    VppInstance, VppOptions, Wrk,
};

/// Runs per program and layer, unless `BENCH_REPEAT` says.
const REPEAT: usize = 3;
const REDIS_PORT: u16 = 6390;
const NGINX_PORT: u16 = 8080;
/// What proves that the Rust layer served a process (`VLS_RS_STATS=1`).
const STATS_LINE: &str = "vls-rs: calls:";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Layer {
    C,
    Rust,
}

impl Layer {
    fn name(self) -> &'static str {
        match self {
            Layer::C => "C",
            Layer::Rust => "Rust",
        }
    }

    fn preload(self, p: &Preloads) -> &str {
        match self {
            Layer::C => &p.c,
            Layer::Rust => &p.rust,
        }
    }

    /// Whether `who`'s stderr shows the right layer: the Rust layer's call
    /// counts in a Rust run, nothing of it in a C run.
    fn check_stderr(self, who: &str, stderr: &str) -> Result<(), String> {
        match self {
            Layer::Rust if !stderr.contains(STATS_LINE) => {
                Err(format!("{who} printed no `{STATS_LINE}` line: the Rust layer did not serve it"))
            }
            Layer::C if stderr.contains("vls-rs:") => Err(format!("{who} loaded libvls.so in a C-layer run")),
            _ => Ok(()),
        }
    }

    /// Whether the server has `libvls.so` mapped as the layer says.
    fn check_mapped(self, who: &str, server: &ProcessGroup) -> Result<(), String> {
        match (self, server.has_mapped("libvls.so")) {
            (Layer::Rust, false) => Err(format!("{who} has no libvls.so mapped in a Rust-layer run")),
            (Layer::C, true) => Err(format!("{who} has libvls.so mapped in a C-layer run")),
            _ => Ok(()),
        }
    }
}

/// One figure a program reports.
struct Figure {
    label: &'static str,
    /// Decimals in the table.
    digits: usize,
}

/// A program measured under both layers.
struct Program {
    name: &'static str,
    /// Binaries it needs, and the Debian package of each.
    needs: &'static [(&'static str, &'static str)],
    figures: &'static [Figure],
    /// One run: a value per figure, or why it failed.
    run: fn(&Run) -> Result<Vec<f64>, String>,
}

const PROGRAMS: [Program; 2] = [
    Program {
        name: "redis",
        needs: &[("redis-server", "redis-server"), ("redis-benchmark", "redis-tools")],
        figures: &[
            Figure { label: "SET requests/s", digits: 0 },
            Figure { label: "GET requests/s", digits: 0 },
            Figure { label: "SET p50 ms", digits: 3 },
            Figure { label: "GET p50 ms", digits: 3 },
            Figure { label: "GET p50 ms (-n 300000)", digits: 3 },
        ],
        run: redis,
    },
    Program {
        name: "nginx",
        needs: &[("nginx", "nginx-light"), ("wrk", "wrk")],
        figures: &[
            Figure { label: "requests/s (wrk -t1 -c16)", digits: 0 },
            Figure { label: "errors", digits: 0 },
        ],
        run: nginx,
    },
];

/// What one run of a program needs.
struct Run<'a> {
    vpp: &'a VppInstance,
    layer: Layer,
    preload: &'a str,
    /// The program's binaries, in the order of [`Program::needs`].
    bins: &'a [PathBuf],
    verbose: bool,
}

impl Run<'_> {
    /// `bin` under LDP with this run's layer and `VCL_CONFIG`, counting
    /// the Rust layer's calls.
    fn command(&self, bin: &Path, vcl_config: &Path) -> Command {
        let mut cmd = Command::new(bin);
        under_ldp(&mut cmd, self.preload, vcl_config).env("VLS_RS_STATS", "1").stdin(Stdio::null());
        if let (Layer::Rust, Some(us)) = (self.layer, busy_poll_us()) {
            cmd.env("VLS_RS_BUSY_POLL_US", us);
        }
        cmd
    }

    fn show(&self, what: &str, text: &str) {
        if self.verbose {
            eprintln!("--- {what} ({}) ---\n{}", self.layer.name(), text.replace('\r', "\n"));
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let libvls = match common::libvls("ldp_programs") {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ldp_programs: {e}");
            std::process::exit(1);
        }
    };
    let install = VppInstall::at(vls::ffi::VPP_PREFIX).expect("the VPP install vpp-sys linked");
    let preloads = Preloads::new(&install, &libvls).expect("libvcl_ldpreload.so and libvls.so");
    let repeat = common::repeat(REPEAT);
    let verbose = std::env::var_os("BENCH_VERBOSE").is_some();
    eprintln!(
        "ldp_programs: C layer LD_PRELOAD={}\nldp_programs: Rust layer LD_PRELOAD={}",
        preloads.c, preloads.rust
    );
    let vpp_sleep_us = vpp_poll_sleep_us();
    let vpp_options = VppOptions {
        poll_sleep_usec: vpp_sleep_us,
        extra_startup: "cpu { main-core 0 }\n".into(),
        ..VppOptions::default()
    };
    let rust_label = match busy_poll_us() {
        Some(us) => format!("Rust VLS, busy {us} us"),
        None => "Rust VLS".to_string(),
    };

    // samples[program][figure][layer]
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for program in PROGRAMS.iter().filter(|p| wanted("BENCH_PROGRAMS", p.name)) {
        let found: Result<Vec<PathBuf>, String> = program
            .needs
            .iter()
            .map(|(bin, package)| {
                find_program(bin)
                    .ok_or_else(|| format!("{bin} not found (Debian: apt-get install {package})"))
            })
            .collect();
        let bins = match found {
            Ok(bins) => bins,
            Err(why) => {
                let line = format!("{}: skipped: {why}", program.name);
                println!("{line}");
                skipped.push(line);
                continue;
            }
        };
        let mut samples = vec![[Vec::new(), Vec::new()]; program.figures.len()];
        let mut failures = [0usize; 2];
        for rep in 0..repeat {
            let order = if rep % 2 == 0 { [Layer::C, Layer::Rust] } else { [Layer::Rust, Layer::C] };
            for layer in order {
                let t = Instant::now();
                let outcome = VppInstance::start_with(install.clone(), vpp_options.clone())
                    .map_err(|e| format!("VPP did not start: {e}"))
                    .and_then(|vpp| {
                        let run =
                            Run { vpp: &vpp, layer, preload: layer.preload(&preloads), bins: &bins, verbose };
                        (program.run)(&run)
                    });
                let secs = t.elapsed().as_secs_f64();
                let l = layer as usize;
                match outcome {
                    Ok(values) => {
                        let shown: Vec<String> = program
                            .figures
                            .iter()
                            .zip(&values)
                            .map(|(f, v)| format!("{} {v:.*}", f.label, f.digits))
                            .collect();
                        eprintln!(
                            "{} {}/{repeat} {} layer ({secs:.0} s): {}",
                            program.name,
                            rep + 1,
                            layer.name(),
                            shown.join(", ")
                        );
                        for (s, v) in samples.iter_mut().zip(values) {
                            s[l].push(v);
                        }
                    }
                    Err(why) => {
                        eprintln!(
                            "{} {}/{repeat} {} layer FAILED ({secs:.0} s): {why}",
                            program.name,
                            rep + 1,
                            layer.name()
                        );
                        failures[l] += 1;
                    }
                }
            }
        }
        results.push((program, samples, failures));
    }

    let vpp_mode = match vpp_sleep_us {
        0 => "VPP polling (poll-sleep-usec 0)".to_string(),
        us => format!("VPP sleeping {us} us when idle (poll-sleep-usec {us})"),
    };
    println!(
        "\nreal programs under LDP over VPP cut-through ({vpp_mode}), C layer (libvcl_ldpreload.so) vs Rust layer\n\
         (libvls.so:libvcl_ldpreload.so); median of {repeat} runs per layer, range in brackets, layers in\n\
         alternating order; Rust/C is the ratio of the medians (requests/s: above 1 is faster; ms: below 1 is faster)"
    );
    println!("{:<34} {:>26} {:>26} {:>7}", "program: figure", "C VLS", rust_label, "Rust/C");
    for (program, samples, failures) in &results {
        for (figure, s) in program.figures.iter().zip(samples) {
            let label = format!("{}: {}", program.name, figure.label);
            let (c, rust) =
                (summary(&s[0], figure.digits, figure.digits), summary(&s[1], figure.digits, figure.digits));
            let r = if figure.label == "errors" { "-".into() } else { ratio(median(&s[1]), median(&s[0])) };
            println!("{label:<34} {c:>26} {rust:>26} {r:>7}");
        }
        for (layer, n) in [Layer::C, Layer::Rust].iter().zip(failures) {
            if *n > 0 {
                println!("{}: {n} of {repeat} {} layer runs failed (see above)", program.name, layer.name());
            }
        }
    }
    for line in &skipped {
        println!("{line}");
    }
}

/// `BENCH_VPP_POLL_SLEEP_US` (see the module docs): VPP's
/// `poll-sleep-usec`, 0 unless set. A value that is no number stops the
/// bench rather than measuring something else than asked.
fn vpp_poll_sleep_us() -> u32 {
    match std::env::var("BENCH_VPP_POLL_SLEEP_US") {
        Err(_) => 0,
        Ok(v) => v.trim().parse().unwrap_or_else(|_| {
            eprintln!("ldp_programs: BENCH_VPP_POLL_SLEEP_US={v:?} is not a number of microseconds");
            std::process::exit(2);
        }),
    }
}

/// `BENCH_BUSY_POLL_US`, if set and not 0 (see the module docs).
fn busy_poll_us() -> Option<String> {
    std::env::var("BENCH_BUSY_POLL_US").ok().filter(|v| !v.is_empty() && v != "0")
}

/// Waits at most `timeout` for `child`, whose output is piped, and reads
/// it; an error unless it ran to a successful exit.
fn finish(what: &str, child: std::process::Child, timeout: Duration) -> Result<(String, String), String> {
    let out: Output = wait_output_with_timeout(child, timeout).map_err(|e| format!("{what}: {e}"))?;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    if !out.status.success() {
        // All of it (a hung program's stacks among it) goes to the
        // bench's stderr; the table's line gets the end.
        eprintln!(
            "--- {what} failed ({}), its stderr ---\n{stderr}\n--- end of {what}'s stderr ---",
            out.status
        );
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!("{what} ended with {}: {}", out.status, tail.join(" | ")));
    }
    Ok((stdout, stderr))
}

/// Stops a server with SIGTERM (its exit handlers print the Rust layer's
/// call counts), killing it after 10 s.
fn stop(what: &str, server: ProcessGroup) -> Result<(), String> {
    match server.stop(libc::SIGTERM, Duration::from_secs(10)) {
        Some(_) => Ok(()),
        None => Err(format!("{what} did not exit within 10 s of SIGTERM")),
    }
}

/// redis-benchmark's `-q` result for `test`: `SET: 454545.45 requests per
/// second, p50=0.071 msec` gives (454545.45, 0.071). Its progress lines
/// end in `\r`.
fn redis_figures(out: &str, test: &str) -> Option<(f64, f64)> {
    let line = out.split(['\r', '\n']).map(str::trim).find(|l| {
        l.strip_prefix(test).and_then(|r| r.strip_prefix(": ")).is_some() && l.contains("requests per second")
    })?;
    let rps = line.split_whitespace().nth(1)?.parse().ok()?;
    let p50 = line.split("p50=").nth(1)?.split_whitespace().next()?.parse().ok()?;
    Some((rps, p50))
}

/// redis-server and redis-benchmark under LDP with `run`'s layer.
fn redis(run: &Run) -> Result<Vec<f64>, String> {
    let (server_bin, bench_bin) = (&run.bins[0], &run.bins[1]);
    let vcl = run.vpp.write_vcl_conf("redis", &VclConf::default()).map_err(|e| e.to_string())?;
    let dir = run.vpp.dir();
    let (log, err) = (dir.join("redis-server.log"), dir.join("redis-server.stderr"));
    let port = REDIS_PORT.to_string();
    let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut cmd = run.command(server_bin, &vcl);
    cmd.args(["--save", "", "--appendonly", "no", "--port", &port, "--bind", "127.0.0.1"])
        .args(["--protected-mode", "no"])
        .current_dir(dir)
        .stdout(file(&log)?)
        .stderr(file(&err)?);
    let mut server = ProcessGroup::spawn(&mut cmd).map_err(|e| format!("redis-server: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let server_log = || std::fs::read_to_string(&log).unwrap_or_default();
    while !server_log().contains("Ready to accept connections") {
        if let Ok(Some(status)) = server.try_wait() {
            return Err(format!("redis-server exited with {status}: {}", server_log()));
        }
        if Instant::now() > deadline {
            return Err(format!("redis-server not ready after 15 s: {}", server_log()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    run.layer.check_mapped("redis-server", &server)?;

    let benchmark = |n: &str, tests: &str, limit: u64| -> Result<String, String> {
        let what = format!("redis-benchmark -n {n} -t {tests}");
        let mut cmd = run.command(bench_bin, &vcl);
        cmd.args(["-h", "127.0.0.1", "-p", &port, "-q", "-n", n, "-t", tests])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|e| format!("{what}: {e}"))?;
        let (out, err) = finish(&what, child, Duration::from_secs(limit))?;
        run.show(&what, &format!("{out}{err}"));
        run.layer.check_stderr(&what, &err)?;
        Ok(out)
    };
    let short = benchmark("50000", "set,get", 60)?;
    let long = benchmark("300000", "get", 120)?;
    stop("redis-server", server)?;
    let server_err = std::fs::read_to_string(&err).unwrap_or_default();
    run.show("redis-server", &(server_log() + &server_err));
    run.layer.check_stderr("redis-server", &server_err)?;

    let get = |out: &str, test: &str| {
        redis_figures(out, test)
            .ok_or_else(|| format!("no {test} result in redis-benchmark's output: {out:?}"))
    };
    let ((set_rps, set_p50), (get_rps, get_p50), (_, long_p50)) =
        (get(&short, "SET")?, get(&short, "GET")?, get(&long, "GET")?);
    Ok(vec![set_rps, get_rps, set_p50, get_p50, long_p50])
}

/// nginx and wrk under LDP with `run`'s layer.
fn nginx(run: &Run) -> Result<Vec<f64>, String> {
    let nginx = Nginx { program: run.bins[0].clone(), ..Nginx::new(([127, 0, 0, 1], NGINX_PORT).into()) };
    let mut server = nginx
        .start(run.vpp, &VclConf::default(), run.preload, &[("VLS_RS_STATS", "1")])
        .map_err(|e| format!("nginx: {e}"))?;
    let dir = run.vpp.dir().join("nginx");
    let server_out = || {
        ["stderr.log", "error.log"].map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default()).concat()
    };
    if let Ok(Some(status)) = server.try_wait() {
        return Err(format!("nginx exited with {status}: {}", server_out()));
    }
    run.layer.check_mapped("nginx", &server)?;

    let vcl = run.vpp.write_vcl_conf("wrk", &VclConf::default()).map_err(|e| e.to_string())?;
    let wrk = Wrk {
        program: run.bins[1].clone(),
        connections: 16,
        time_limit: Duration::from_secs(30),
        envs: vec![("VLS_RS_STATS".into(), "1".into())],
        ..Wrk::new(&nginx.url(), run.preload, &vcl)
    };
    let w = wrk.run().map_err(|e| format!("wrk: {e}"))?;
    run.show("wrk", &format!("{}{}", w.stdout, w.stderr));
    if !w.status.success() {
        let tail: Vec<&str> = w.stderr.lines().rev().take(5).collect();
        return Err(format!("wrk ended with {}: {}", w.status, tail.join(" | ")));
    }
    if w.result.requests == 0 {
        return Err(format!("wrk got no response: {}", w.stdout));
    }
    run.layer.check_stderr("wrk", &w.stderr)?;
    stop("nginx", server)?;
    // nginx writes its stderr to its error log once started.
    let out = server_out();
    run.show("nginx", &out);
    run.layer.check_stderr("nginx", &out)?;
    Ok(vec![w.result.rps, w.result.errors as f64])
}
