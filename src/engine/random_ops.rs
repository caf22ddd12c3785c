//! Random operations on the C-ABI-shaped core, as a hostile program would
//! make them, over the in-memory VCL double (test-only); the operations
//! are those of [`super::ops`] (shared with the fuzz target).
//!
//! Four threads each run a seeded sequence of operations on one shared
//! handle table. Checked: no panic, no deadlock (every thread ends within
//! a deadline), every return is a success or a `VPPCOM_E*` code, VCL's
//! threading rules hold (the double's conflict checker), and once every
//! handle is closed the session pool and the handle table are empty.
//!
//! `VLS_RANDOM_OPS_SEED` replays a run; `VLS_RANDOM_OPS_N` sets the number
//! of operations per thread.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::ops::{Rng, World};

const THREADS: u64 = 4;

#[test]
fn random_operations_from_four_threads_keep_every_rule() {
    let seed = std::env::var("VLS_RANDOM_OPS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let n: u64 = std::env::var("VLS_RANDOM_OPS_N").ok().and_then(|s| s.parse().ok()).unwrap_or(25_000);
    eprintln!(
        "random operations: seed {seed} (VLS_RANDOM_OPS_SEED={seed} replays the sequences), {n} per thread"
    );
    let world: &'static World = Box::leak(Box::new(World::fresh(true)));
    let (done_tx, done_rx) = mpsc::channel();
    for t in 0..THREADS {
        let done_tx = done_tx.clone();
        thread::spawn(move || {
            let mut rng = Rng(seed.wrapping_add(t.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1);
            for _ in 0..n {
                world.step(&mut rng);
            }
            done_tx.send(t).unwrap();
        });
    }
    drop(done_tx);
    for _ in 0..THREADS {
        done_rx.recv_timeout(Duration::from_secs(120)).unwrap_or_else(|e| {
            panic!("seed {seed}: a thread neither finished nor failed within 120 s ({e})")
        });
    }
    world.close_all();
    if let Err(e) = world.check_empty() {
        panic!("seed {seed}: {e}");
    }
}
