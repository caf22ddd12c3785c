//! Per-call cost of `write`/`read` of 64-byte messages on a cut-through TCP
//! session, against one private VPP, side by side for:
//!
//! - `raw`: `vppcom_session_write/read` (no locking layer; one thread only),
//! - `C`: libvppcom's own `vls_*` (the C locking layer, looked up with
//!   `dlsym` in libvppcom so the Rust symbols of this binary don't shadow it),
//! - `Rust`: this crate's `vls_*`;
//! - and, in the 1-thread variant, `floor`: a calibration, the least any
//!   layer between LDP and VCL does per call (look VCL's handle up in a
//!   table, call VCL; no check at all), so the "uncontended cost over raw"
//!   ratio can be read against what is reachable.
//!
//! Variants: one thread on one session; two threads on two distinct
//! sessions; two threads sharing one session (mode 3: one VCL worker); and
//! one thread's event loop as LDP runs it for a single-threaded server
//! (`1e`: LDP's `epoll_wait` sequence, including its drain-only call, then
//! read, write and `EPOLL_CTL_MOD` of the one session it returns); and two
//! threads with `multi-thread-workers` (`2m`, mode 2: a VCL worker each, each
//! thread connects its own session); and `1p`, the one-thread loop paired
//! in one process: raw VCL, the floor and the Rust layer on three sessions,
//! in alternating blocks, so the ratios to raw do not depend on how busy
//! the machine was while each process ran (the C layer cannot share a
//! process with the Rust one, so it is not in this variant).
//! Each client runs in its own process (one VCL app per process); an echo
//! server in another process drains and echoes. Calls are non-blocking, so
//! the time is the layer's and VCL's, not waiting for the peer.
//!
//! Run: `VPP_PREFIX=… VPP_SRC_DIR=… cargo bench --features vpp --bench pingpong`
//!
//! `BENCH_VARIANTS` (comma-separated `1`, `2d`, `2s`, `1e`, `2m`, `1p`) and `BENCH_LAYERS`
//! (`raw`, `floor`, `c`, `rust`) restrict the runs, e.g. to profile one client.
//!
//! Wall time on a small shared machine is noisy (VPP's own thread and the
//! echo server compete for the cores), so each client thread is pinned to a
//! CPU of its own, every variant runs `BENCH_REPEAT` times (default 5) in
//! alternating order of the layers, each client process reports the best of
//! its rounds, and the table shows the median over the repetitions with the
//! range. With `BENCH_INSTRUCTIONS=1` the single-thread clients also run once
//! under `valgrind --tool=callgrind`, counting only the measured loop, and the
//! instructions per call are printed: the same for the same binaries
//! whatever else the machine does.

mod common;

use std::ffi::CString;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::{median, ratio, summary, wanted};
use vls::ffi;
use vls::raw::with_endpt;
use vpp_harness::{wait_output_with_timeout, VclConf, VppInstall, VppInstance, VppOptions};

const MSG: usize = 64;
const ITERS: u64 = 200_000;
/// Measured loops per client process (its best is reported).
const ROUNDS: usize = 3;
/// Client processes per variant and layer, unless `BENCH_REPEAT` says.
const REPEAT: usize = 5;
/// Untimed iterations before each measured loop.
const WARMUP: u64 = 10_000;
const PORT: u16 = 7300;
/// The echo server of the epoll variant, which polls more often.
const EPOLL_PORT: u16 = 7301;
#[path = "pingpong/epoll_loop.rs"]
mod epoll_loop;
#[path = "pingpong/layers.rs"]
mod layers;

use epoll_loop::epoll_loop;
use layers::{api, Api};

fn connect(api: &Api, addr: SocketAddr) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // SAFETY: plain values.
        let h = unsafe { (api.create)(ffi::VPPCOM_PROTO_TCP as u8, 0) };
        assert!(h >= 0, "create {h}");
        // SAFETY: the endpoint is valid during the call.
        let (rv, _) = with_endpt(Some(&addr), |ep| unsafe { (api.connect)(h, ep) });
        if rv == 0 {
            let mut flags = libc::O_NONBLOCK as u32;
            let mut len = 4u32;
            // SAFETY: 4-byte buffer.
            let rv = unsafe {
                (api.attr)(h, ffi::VPPCOM_ATTR_SET_FLAGS, (&mut flags as *mut u32).cast(), &mut len)
            };
            assert_eq!(rv, 0, "set non-blocking");
            return h;
        }
        assert!(Instant::now() < deadline, "connect: {rv}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Best of `ROUNDS` runs of [`pingpong_once`]: the machine is shared with
/// VPP and the echo server, so the minimum is the stable figure.
fn pingpong(api: Api, h: i32) -> f64 {
    let rounds = if std::env::var_os("BENCH_ONE_ROUND").is_some() { 1 } else { ROUNDS };
    (0..rounds).map(|_| pingpong_once(api, h)).fold(f64::INFINITY, f64::min)
}

/// One thread's loop: write 64 bytes, read what is there. Returns ns/call.
#[inline(never)]
fn pingpong_once(api: Api, h: i32) -> f64 {
    let mut out = [7u8; MSG];
    let mut inb = [0u8; MSG];
    for _ in 0..WARMUP {
        // SAFETY: valid buffers.
        unsafe {
            (api.write)(h, out.as_mut_ptr().cast(), MSG);
            (api.read)(h, inb.as_mut_ptr().cast(), MSG);
        }
    }
    let t = Instant::now();
    for _ in 0..ITERS {
        // SAFETY: valid buffers.
        unsafe {
            std::hint::black_box((api.write)(h, out.as_mut_ptr().cast(), MSG));
            std::hint::black_box((api.read)(h, inb.as_mut_ptr().cast(), MSG));
        }
    }
    t.elapsed().as_nanos() as f64 / (2 * ITERS) as f64
}

/// Iterations per block of the paired variant.
const PAIRED_BLOCK: u64 = 10_000;
/// Blocks per layer in the paired variant.
const PAIRED_BLOCKS: usize = 40;

/// The paired variant (`1p`): one process, one thread, the Rust layer
/// attached, and three sessions to the echo server: one driven through raw
/// VCL, one through the `floor` table, one through the Rust layer. Blocks
/// of [`PAIRED_BLOCK`] iterations run on the three in turn (the order
/// rotating), so a disturbance of the machine hits neighbouring blocks of
/// every layer alike; prints the median over the rounds of each layer's
/// block time over the raw block of the same round.
fn paired_client() {
    let rust = api("rust");
    let name = CString::new("bench-paired").unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { (rust.app_create)(name.as_ptr() as *mut _) }, 0);
    let addr = SocketAddr::from(([127, 0, 0, 1], PORT));
    // Raw VCL and the floor table beside the layer: the layer never sees
    // their sessions, and this one thread is the only VCL user.
    let apis = [api("raw"), api("floor"), rust];
    let hs = apis.map(|a| connect(&a, addr));
    pin_to_cpu(0);
    let mut out = [7u8; MSG];
    let mut inb = [0u8; MSG];
    let mut block = |l: usize, iters: u64| {
        let (a, h) = (apis[l], hs[l]);
        let t = Instant::now();
        for _ in 0..iters {
            // SAFETY: valid buffers.
            unsafe {
                std::hint::black_box((a.write)(h, out.as_mut_ptr().cast(), MSG));
                std::hint::black_box((a.read)(h, inb.as_mut_ptr().cast(), MSG));
            }
        }
        t.elapsed().as_nanos() as f64 / (2 * iters) as f64
    };
    for l in 0..3 {
        block(l, WARMUP);
    }
    let mut ns = [const { Vec::new() }; 3];
    for round in 0..PAIRED_BLOCKS {
        for k in 0..3 {
            let l = (round + k) % 3;
            ns[l].push(block(l, PAIRED_BLOCK));
        }
    }
    let over_raw = |l: usize| median(&ns[l].iter().zip(&ns[0]).map(|(x, raw)| x / raw).collect::<Vec<_>>());
    let (floor, rust_over) = (over_raw(1).unwrap(), over_raw(2).unwrap());
    println!("PAIRED {:.1} {floor:.4} {rust_over:.4}", median(&ns[0]).unwrap());
}

fn client(layer: &str, threads: usize, shared: bool) {
    let api = api(layer);
    let name = CString::new(format!("bench-{layer}")).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { (api.app_create)(name.as_ptr() as *mut _) }, 0);
    let port = if std::env::var_os("BENCH_EPOLL").is_some() { EPOLL_PORT } else { PORT };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if std::env::var_os("BENCH_MT").is_some() {
        return client_per_thread_workers(api, layer, threads, addr);
    }
    let n_sessions = if shared { 1 } else { threads };
    let hs: Vec<i32> = (0..n_sessions).map(|_| connect(&api, addr)).collect();
    if threads == 1 {
        // Raw VCL may only be used from the thread that created the app.
        pin_to_cpu(0);
        let ns = if std::env::var_os("BENCH_EPOLL").is_some() {
            epoll_loop(api, hs[0])
        } else {
            pingpong(api, hs[0])
        };
        println!("RESULT {ns:.1}");
        return;
    }
    // SAFETY: plain read of the calling thread's VCL worker index.
    let wrk = unsafe { ffi::vppsys_worker_index() };
    let raw = layer == "raw";
    let hs = Arc::new(hs);
    run_threads(api, threads, move |i| {
        if raw {
            // Calibration only (see `main`): the thread uses the app's
            // worker without any locking layer.
            // SAFETY: plain write of this thread's worker index.
            unsafe { ffi::vppsys_set_worker_index(wrk) };
        }
        hs[i % hs.len()]
    });
}

/// Mode 2 (`multi-thread-workers`): every thread has a VCL worker of its
/// own and connects its own session (a connected session does not move
/// between workers), then runs the same loop.
fn client_per_thread_workers(api: Api, layer: &str, threads: usize, addr: SocketAddr) {
    let raw = layer == "raw";
    run_threads(api, threads, move |_| {
        if raw {
            // The layers register a new thread by themselves; raw VCL
            // needs it done.
            // SAFETY: registers the calling thread's own worker.
            assert_eq!(unsafe { ffi::vppcom_worker_register() }, 0, "worker register");
        }
        connect(&api, addr)
    });
}

/// Runs the ping-pong loop on `threads` threads, each pinned to a CPU of
/// its own, on the session `setup(i)` gives thread `i` (called on that
/// thread), all starting together; prints the mean ns per call.
fn run_threads(api: Api, threads: usize, setup: impl Fn(usize) -> i32 + Send + Sync + 'static) {
    let barrier = Arc::new(Barrier::new(threads));
    let setup = Arc::new(setup);
    let ts: Vec<_> = (0..threads)
        .map(|i| {
            let (b, setup) = (barrier.clone(), setup.clone());
            std::thread::spawn(move || {
                let h = setup(i);
                pin_to_cpu(i);
                b.wait();
                pingpong(api, h)
            })
        })
        .collect();
    let per: Vec<f64> = ts.into_iter().map(|t| t.join().unwrap()).collect();
    println!("RESULT {:.1}", per.iter().sum::<f64>() / per.len() as f64);
}

/// Pins the calling thread to the `i`-th CPU counted from the last one the
/// process may use (wrapping around), or the first one for `usize::MAX`:
/// client threads on CPUs of their own from the last one down, the echo
/// server and VPP (which sleep most of the time) on the first.
fn pin_to_cpu(i: usize) {
    // SAFETY: `set` is a plain bit set owned by this frame; 0 = this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) != 0 {
            return;
        }
        let cpus: Vec<usize> =
            (0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect();
        let pick = if i == usize::MAX { cpus.first() } else { cpus.iter().rev().nth(i % cpus.len().max(1)) };
        let Some(&cpu) = pick else { return };
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
    }
}

/// Echo server: non-blocking accept, then every `BENCH_SERVER_SLEEP_US`
/// (default 1000) drain and echo every session (sleeping in between keeps
/// a core free for the clients), on `BENCH_PORT`.
fn server() {
    let port: u16 = std::env::var("BENCH_PORT").ok().and_then(|v| v.parse().ok()).unwrap_or(PORT);
    let nap = Duration::from_micros(
        std::env::var("BENCH_SERVER_SLEEP_US").ok().and_then(|v| v.parse().ok()).unwrap_or(1000),
    );
    pin_to_cpu(usize::MAX);
    let name = CString::new("bench-server").unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { ffi::vppcom_app_create(name.as_ptr()) }, 0);
    use vls::raw::vcl;
    // SAFETY: the only VCL user of this process is this thread.
    let l = unsafe { vcl::session_create(vcl::Proto::Tcp, true) }.unwrap();
    // SAFETY: the only VCL user of this process is this thread.
    unsafe { vcl::bind(l, &SocketAddr::from(([127, 0, 0, 1], port))) }.unwrap();
    // SAFETY: the only VCL user of this process is this thread.
    unsafe { vcl::listen(l, 64) }.unwrap();
    let mut sessions = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        // SAFETY: the only VCL user of this process is this thread.
        if let Ok((s, _)) = unsafe { vcl::accept(l, libc::O_NONBLOCK) } {
            sessions.push(s);
        }
        sessions.retain(|&s| {
            // Everything queued, a bounded number of reads at a time.
            for _ in 0..64 {
                // SAFETY: the only VCL user of this process is this thread.
                match unsafe { vcl::read(s, &mut buf) } {
                    Ok(0) => {
                        // SAFETY: the only VCL user of this process is this thread.
                        let _ = unsafe { vcl::close(s) };
                        return false;
                    }
                    Ok(n) => {
                        // SAFETY: the only VCL user of this process is this thread.
                        let _ = unsafe { vcl::write(s, &buf[..n]) };
                    }
                    Err(e) if e == vls::VppcomError::EAGAIN => return true,
                    Err(_) => {
                        // SAFETY: the only VCL user of this process is this thread.
                        let _ = unsafe { vcl::close(s) };
                        return false;
                    }
                }
            }
            true
        });
        std::thread::sleep(nap);
    }
}

fn main() {
    match std::env::var("BENCH_ROLE").as_deref() {
        Ok("server") => return server(),
        Ok("paired") => return paired_client(),
        Ok("client") => {
            let layer = std::env::var("BENCH_LAYER").unwrap();
            let threads: usize = std::env::var("BENCH_THREADS").unwrap().parse().unwrap();
            let shared = std::env::var("BENCH_SHARED").as_deref() == Ok("1");
            return client(&layer, threads, shared);
        }
        _ => {}
    }
    // `cargo bench` passes `--bench`; nothing else is accepted.
    // VPP's main thread on the first CPU, like the echo server: the clients
    // start from the last one.
    let options = VppOptions { extra_startup: "cpu { main-core 0 }\n".into(), ..VppOptions::default() };
    let install = VppInstall::at(ffi::VPP_PREFIX).expect("the VPP install vpp-sys linked");
    let vpp = VppInstance::start_with(install, options).expect("start VPP");
    let conf = vpp.write_vcl_conf("bench", &VclConf::default()).unwrap();
    let conf_mt = vpp.write_vcl_conf("bench-mt", &VclConf::default().with("multi-thread-workers")).unwrap();
    let conf_mt = conf_mt.to_str().expect("UTF-8 path").to_string();
    let exe = std::env::current_exe().unwrap();
    let spawn = |envs: &[(&str, &str)]| {
        let mut c = Command::new(&exe);
        c.env("VCL_CONFIG", &conf).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in envs {
            c.env(k, v);
        }
        c.spawn().unwrap()
    };
    let mut server = spawn(&[("BENCH_ROLE", "server")]);

    // The epoll variant's echo server polls every 50 µs, so the session it
    // echoes to stays readable however fast the loop consumes.
    let mut epoll_server = wanted("BENCH_VARIANTS", "1e").then(|| {
        spawn(&[
            ("BENCH_ROLE", "server"),
            ("BENCH_PORT", &EPOLL_PORT.to_string()),
            ("BENCH_SERVER_SLEEP_US", "50"),
        ])
    });
    std::thread::sleep(Duration::from_millis(500));

    let run = |layer: &str, threads: usize, shared: bool, epoll: bool, mt: bool| -> Option<f64> {
        let t = threads.to_string();
        let mut envs = vec![
            ("BENCH_ROLE", "client"),
            ("BENCH_LAYER", layer),
            ("BENCH_THREADS", &t),
            ("BENCH_SHARED", if shared { "1" } else { "0" }),
        ];
        if epoll {
            envs.push(("BENCH_EPOLL", "1"));
        }
        if mt {
            envs.push(("BENCH_MT", "1"));
            envs.push(("VCL_CONFIG", &conf_mt));
        }
        let child = spawn(&envs);
        let out = wait_output_with_timeout(child, Duration::from_secs(120)).unwrap();
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let r = text.lines().find_map(|l| l.strip_prefix("RESULT ")).and_then(|v| v.parse().ok());
        if r.is_none() {
            eprintln!(
                "{layer} x{threads} shared={shared} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).lines().take(5).collect::<Vec<_>>().join(" | ")
            );
        }
        r
    };

    let repeat = common::repeat(REPEAT);
    // (label, name in BENCH_VARIANTS, threads, one shared session, epoll
    // loop, per-thread workers)
    let variants = [
        ("1 thread", "1", 1, false, false, false),
        ("2 threads, distinct sessions", "2d", 2, false, false, false),
        ("2 threads, one shared session", "2s", 2, true, false, false),
        ("1 thread, LDP epoll loop", "1e", 1, false, true, false),
        ("2 threads, own workers (mode 2)", "2m", 2, false, false, true),
    ];
    // samples[variant][layer]: one figure per client process.
    // (The fourth layer, `floor`, runs in the 1-thread variant only.)
    let mut samples = vec![[const { Vec::new() }; 4]; variants.len()];
    // `BENCH_TIMING=0`: instruction counts only.
    let timed_reps = if std::env::var("BENCH_TIMING").as_deref() == Ok("0") { 0 } else { repeat };
    for rep in 0..timed_reps {
        for (v, &(_, variant_name, threads, shared, epoll, mt)) in variants.iter().enumerate() {
            let mut layers = vec![(0, "raw"), (1, "c"), (2, "rust")];
            if variant_name == "1" {
                layers.insert(1, (3, "floor"));
            }
            if shared {
                // Raw VCL is not thread-safe. Two threads on two
                // non-blocking sessions of one worker do run (nothing
                // creates or closes sessions meanwhile): measured as the
                // floor of what any locking layer can reach there.
                layers.remove(0);
            }
            if rep % 2 == 1 {
                layers.reverse();
            }
            if !wanted("BENCH_VARIANTS", variant_name) {
                continue;
            }
            layers.retain(|(_, layer)| wanted("BENCH_LAYERS", layer));
            for (l, layer) in layers {
                if let Some(ns) = run(layer, threads, shared, epoll, mt) {
                    samples[v][l].push(ns);
                }
            }
        }
    }

    // The paired variant: (raw ns, floor/raw, Rust/raw) per client process.
    let mut paired: Vec<[f64; 3]> = Vec::new();
    if wanted("BENCH_VARIANTS", "1p") {
        for _ in 0..timed_reps {
            let child = spawn(&[("BENCH_ROLE", "paired")]);
            let out = wait_output_with_timeout(child, Duration::from_secs(120)).unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let r = text.lines().find_map(|l| l.strip_prefix("PAIRED ")).and_then(|v| {
                let f: Vec<f64> = v.split_whitespace().filter_map(|x| x.parse().ok()).collect();
                <[f64; 3]>::try_from(f).ok()
            });
            match r {
                Some(r) => paired.push(r),
                None => eprintln!(
                    "paired client failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
    }

    println!(
        "\nwrite+read of {MSG}-byte messages, cut-through TCP, {ITERS} iterations per thread; ns per call,\n\
         median of {repeat} client processes (each the best of {ROUNDS} loops), range in brackets;\n\
         the epoll loop: ns per iteration (LDP's epoll_wait sequence returning the session, read 64,\n\
         write 64, EPOLL_CTL_MOD)"
    );
    println!("{:<31} {:>17} {:>17} {:>17} {:>7}", "variant", "raw", "C VLS", "Rust VLS", "Rust/C");
    let medians: Vec<[Option<f64>; 4]> =
        samples.iter().map(|layers| layers.each_ref().map(|s| median(s))).collect();
    for ((label, ..), (layers, med)) in variants.iter().zip(samples.iter().zip(&medians)) {
        let cell = |l: usize| summary(&layers[l], 1, 0);
        println!("{label:<31} {:>17} {:>17} {:>17} {:>7}", cell(0), cell(1), cell(2), ratio(med[2], med[1]));
    }
    println!(
        "uncontended cost over raw: C {}  Rust {}",
        ratio(medians[0][1], medians[0][0]),
        ratio(medians[0][2], medians[0][0])
    );
    println!(
        "1 thread, handle-table floor (a table lookup and the VCL call, no checks; calibration): {} ns, over raw {}",
        summary(&samples[0][3], 1, 0),
        ratio(medians[0][3], medians[0][0])
    );
    if !paired.is_empty() {
        let col = |i: usize| paired.iter().map(|r| r[i]).collect::<Vec<_>>();
        println!(
            "1 thread, paired in one process ({PAIRED_BLOCKS} rounds of {PAIRED_BLOCK}-iteration blocks, layers in turn;\n\
             median over the rounds of block time over the same round's raw block; median of {} processes):\n\
             raw {} ns  floor/raw {}  Rust/raw {}",
            paired.len(),
            summary(&col(0), 1, 0),
            summary(&col(1), 3, 3),
            summary(&col(2), 3, 3)
        );
    }
    println!(
        "2 threads on distinct sessions over 1 thread: raw (no locking, calibration) {}  C {}  Rust {}",
        ratio(medians[1][0], medians[0][0]),
        ratio(medians[1][1], medians[0][1]),
        ratio(medians[1][2], medians[0][2])
    );
    if std::env::var_os("BENCH_INSTRUCTIONS").is_some() {
        println!(
            "\ninstructions per call (callgrind, measured loop only; callgrind runs one thread at a time,\n\
             so the 2-thread column is the locking work without contention)"
        );
        println!(
            "{:<6} {:>10} {:>30} {:>28}",
            "layer", "1 thread", "2 threads, distinct sessions", "epoll loop, per iteration"
        );
        let mut counts = Vec::new();
        let mut loops = Vec::new();
        for layer in ["raw", "c", "rust", "floor"] {
            if !wanted("BENCH_LAYERS", layer) {
                continue;
            }
            let count = |variant: &str, threads: usize, epoll: bool| {
                wanted("BENCH_VARIANTS", variant)
                    .then(|| instructions_per_call(&exe, &conf, layer, threads, epoll))
                    .flatten()
            };
            let (one, two, ep) = if layer == "floor" {
                (count("1", 1, false), None, None)
            } else {
                (count("1", 1, false), count("2d", 2, false), count("1e", 1, true))
            };
            let fmt = |n: Option<f64>| n.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
            println!("{layer:<6} {:>10} {:>30} {:>28}", fmt(one), fmt(two), fmt(ep));
            counts.push(one);
            loops.push(ep);
        }
        if let [Some(raw), Some(c), Some(rust), Some(floor)] = counts[..] {
            println!(
                "1 thread: Rust/raw {:.2}  C/raw {:.2}  Rust/C {:.2}  floor/raw {:.2}",
                rust / raw,
                c / raw,
                rust / c,
                floor / raw
            );
        }
        if let [Some(raw), Some(c), Some(rust), _] = loops[..] {
            println!("epoll loop: Rust/raw {:.2}  C/raw {:.2}  Rust/C {:.2}", rust / raw, c / raw, rust / c);
        }
    }
    for s in std::iter::once(&mut server).chain(epoll_server.as_mut()) {
        let _ = s.kill();
        let _ = s.wait();
    }
}

/// Instructions per call of the client of `layer` with `threads` threads
/// (distinct sessions), counted by callgrind in `pingpong_once` only
/// (warm-up loop included); with `epoll`, per iteration of
/// `epoll_loop_once`.
fn instructions_per_call(
    exe: &std::path::Path,
    conf: &std::path::Path,
    layer: &str,
    threads: usize,
    epoll: bool,
) -> Option<f64> {
    let out_file = std::env::temp_dir()
        .join(format!("vls-bench-callgrind-{layer}-{threads}-{epoll}-{}", std::process::id()));
    let mut cmd = Command::new("valgrind");
    if epoll {
        cmd.env("BENCH_EPOLL", "1");
    }
    let toggle = if epoll { "--toggle-collect=*epoll_loop_once" } else { "--toggle-collect=*pingpong_once" };
    let child = cmd
        .args(["--tool=callgrind", toggle, "--dump-instr=yes"])
        .arg(format!("--callgrind-out-file={}", out_file.display()))
        .arg(exe)
        .env("VCL_CONFIG", conf)
        .env("BENCH_ROLE", "client")
        .env("BENCH_LAYER", layer)
        .env("BENCH_THREADS", threads.to_string())
        .env("BENCH_SHARED", "0")
        .env("BENCH_ONE_ROUND", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let out = wait_output_with_timeout(child, Duration::from_secs(600)).ok()?;
    let text = std::fs::read_to_string(&out_file).ok();
    if std::env::var_os("BENCH_KEEP_CALLGRIND").is_some() {
        eprintln!("callgrind output kept: {}", out_file.display());
    } else {
        let _ = std::fs::remove_file(&out_file);
    }
    if !out.status.success() {
        eprintln!("callgrind {layer} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
        return None;
    }
    // "summary: <Ir>" (or "totals:") holds the collected instruction count.
    let total: f64 = text?
        .lines()
        .find_map(|l| l.strip_prefix("summary: ").or_else(|| l.strip_prefix("totals: ")))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // The ping-pong loop makes 2 calls per iteration; the epoll loop's
    // figure is per iteration.
    let per_iteration = if epoll { 1.0 } else { 2.0 };
    Some(total / (per_iteration * (WARMUP + ITERS) as f64 * threads as f64))
}
