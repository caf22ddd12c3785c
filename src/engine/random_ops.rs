//! Random operations on the C-ABI-shaped core, as a hostile program would
//! make them, over the in-memory VCL double (test-only).
//!
//! Four threads each run a seeded sequence of operations on handles drawn
//! from a shared table (so threads use, close and re-close each other's
//! sessions, stale and never-made handles included). Checked: no panic, no
//! deadlock (every thread ends within a deadline), every return is a
//! success or a `VPPCOM_E*` code, VCL's threading rules hold (the double's
//! conflict checker), and once every handle is closed the session pool,
//! the handle table and VCL's sessions are empty.
//!
//! `VLS_RANDOM_OPS_SEED` replays a run; `VLS_RANDOM_OPS_N` sets the number
//! of operations per thread.

use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::double::Double;
use super::Vls;
use crate::error::VppcomError;
use crate::handle::Vlsh;

/// Handles the threads share: created ones land in random slots.
const SLOTS: usize = 64;
const THREADS: u64 = 4;

/// xorshift64*: a small, seedable generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A return code is a success or a code VCL defines.
fn valid(op: &str, rv: i32) {
    assert!(rv >= 0 || VppcomError::from_raw(rv).name().is_some(), "{op} returned {rv}, not a VPPCOM code");
}

struct World {
    v: &'static Vls<Double>,
    slots: Vec<AtomicI32>,
}

impl World {
    fn pick(&self, rng: &mut Rng) -> Vlsh {
        match rng.below(20) {
            // Never made, or far out of range.
            0 => [-1, 100_000, i32::MAX, -77][rng.below(4) as usize],
            _ => self.slots[rng.below(SLOTS as u64) as usize].load(Ordering::Acquire),
        }
    }

    /// Puts `h` in a random slot; the handle it replaces is closed (so
    /// nothing leaks), possibly while another thread uses it.
    fn put(&self, rng: &mut Rng, h: Vlsh) {
        if h < 0 {
            return;
        }
        let old = self.slots[rng.below(SLOTS as u64) as usize].swap(h, Ordering::AcqRel);
        if old >= 0 {
            valid("close (replaced)", self.v.close(old));
        }
    }

    fn step(&self, rng: &mut Rng) {
        let v = self.v;
        let mut buf = [0u8; 64];
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: rng.next() };
        match rng.below(16) {
            // Every session the table holds is non-blocking: a blocking
            // call on a handle another thread closed (and whose number a
            // new session took) could wait for ever, as with any program.
            // Blocking sessions exist only inside `blocked_read_racing_close`.
            0 => self.put(rng, v.create(0, true)),
            1 => self.put(rng, v.epoll_create()),
            2 => valid("listen", v.listen(self.pick(rng), 4)),
            3 => {
                // The double reads the listener's VCL handle from `ep`.
                let mut target = v.vlsh_to_sh(self.pick(rng));
                let c = self.pick(rng);
                // SAFETY: `target` is a u32 that outlives the call.
                valid("connect", unsafe { v.connect(c, (&mut target as *mut u32).cast()) });
            }
            4 => {
                let l = self.pick(rng);
                // Only non-blocking accepts: a blocking one with nobody to
                // connect would wait for ever, as it should.
                if v.session(l).is_some_and(|s| s.nonblocking_hint.load(Ordering::Relaxed)) {
                    // SAFETY: null endpoint is accepted by the double.
                    let rv = unsafe { v.accept(l, std::ptr::null_mut(), libc::O_NONBLOCK) };
                    valid("accept", rv);
                    self.put(rng, rv);
                }
            }
            5 | 6 => {
                let h = self.pick(rng);
                if v.session(h).is_some_and(|s| s.nonblocking_hint.load(Ordering::Relaxed)) {
                    // SAFETY: `buf` is valid for its length.
                    valid("read", unsafe { v.read(h, buf.as_mut_ptr().cast(), 1 + rng.below(64) as usize) });
                }
            }
            7 | 8 => {
                let n = 1 + rng.below(64) as usize;
                // SAFETY: `buf` is valid for its length.
                valid("write", unsafe { v.write(self.pick(rng), buf.as_mut_ptr() as *mut c_void, n) });
            }
            9 => {
                let op = [libc::EPOLL_CTL_ADD, libc::EPOLL_CTL_MOD, libc::EPOLL_CTL_DEL, 99]
                    [rng.below(4) as usize];
                let (ep, h) = (self.pick(rng), self.pick(rng));
                // SAFETY: `ev` is valid.
                valid("epoll_ctl", unsafe { v.epoll_ctl(ep, op, h, &mut ev) });
            }
            10 => {
                let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
                let max = [8, 1, 0, -3][rng.below(4) as usize];
                // SAFETY: `evs` holds 8 events, `max` <= 8.
                valid("epoll_wait", unsafe { v.epoll_wait(self.pick(rng), evs.as_mut_ptr(), max, 0.0) });
            }
            11 => valid(
                "shutdown",
                v.shutdown(
                    self.pick(rng),
                    [libc::SHUT_RD, libc::SHUT_WR, libc::SHUT_RDWR, 7][rng.below(4) as usize],
                ),
            ),
            12 => {
                let mut flags: u32 = 0;
                let mut len = 4u32;
                // SAFETY: 4-byte buffer.
                valid("attr", unsafe {
                    v.attr(self.pick(rng), 0, (&mut flags as *mut u32).cast(), &mut len)
                });
            }
            13 => {
                // Close (maybe twice, maybe another thread's handle).
                let slot = &self.slots[rng.below(SLOTS as u64) as usize];
                let h = slot.swap(-1, Ordering::AcqRel);
                if h >= 0 {
                    // 0, or EBADFD if it was closed through another slot.
                    valid("close", v.close(h));
                    let again = v.close(h);
                    valid("second close", again);
                }
            }
            14 => valid("close of any handle", {
                // Closes whatever the slot holds without taking it out: the
                // next close of it (or use) must fail cleanly.
                let h = self.pick(rng);
                if v.session(h).is_some() && rng.below(4) == 0 {
                    v.close(h)
                } else {
                    0
                }
            }),
            _ => self.blocked_read_racing_close(rng),
        }
    }

    /// A blocking read on a fresh pair, woken by a close from this thread.
    fn blocked_read_racing_close(&self, rng: &mut Rng) {
        let v = self.v;
        let l = v.create(0, true);
        if l < 0 || v.listen(l, 1) != 0 {
            valid("close", v.close(l));
            return;
        }
        let c = v.create(0, true);
        let mut target = v.vlsh_to_sh(l);
        // SAFETY: `target` is a u32 that outlives the call.
        let rv = unsafe { v.connect(c, (&mut target as *mut u32).cast()) };
        valid("connect", rv);
        // The one blocking session: its pair's close wakes any read on it,
        // also a stray one of another thread through a stale number.
        // SAFETY: null endpoint is accepted by the double.
        let s = unsafe { v.accept(l, std::ptr::null_mut(), 0) };
        valid("accept", s);
        let reader = (rv == 0 && s >= 0).then(|| {
            thread::spawn(move || {
                let mut b = [0u8; 8];
                // SAFETY: `b` is valid for its length.
                unsafe { v.read(s, b.as_mut_ptr().cast(), 8) }
            })
        });
        if let Some(r) = reader {
            // Until the reader is blocked on `s`. Another thread may close
            // `s` first through a stale copy of its number (op 14), and the
            // number may then name someone else's new session: the reader
            // is left to its fate then (it ends when that session closes).
            // (It may instead wait for the session's lock, held by a stray
            // call of another thread on `s`: then the close wakes both.)
            if rng.below(2) == 0 {
                thread::yield_now();
            }
            let sh = v.vlsh_to_sh(s);
            let until = std::time::Instant::now() + Duration::from_secs(1);
            while !r.is_finished()
                && v.vcl().reads_in_progress(sh) == 0
                && v.vlsh_to_sh(s) == sh
                && std::time::Instant::now() < until
            {
                thread::yield_now();
            }
            let ours = v.vlsh_to_sh(s) == sh;
            for h in [s, c, l] {
                valid("close", v.close(h));
            }
            if ours {
                let deadline = std::time::Instant::now() + Duration::from_secs(10);
                while !r.is_finished() {
                    assert!(std::time::Instant::now() < deadline, "close did not wake the blocked read");
                    thread::yield_now();
                }
                valid("blocked read", r.join().expect("reader panicked"));
            }
        } else {
            for h in [s, c, l] {
                if h >= 0 {
                    valid("close", v.close(h));
                }
            }
        }
    }
}

#[test]
fn random_operations_from_four_threads_keep_every_rule() {
    let seed = std::env::var("VLS_RANDOM_OPS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
    });
    let n: u64 = std::env::var("VLS_RANDOM_OPS_N").ok().and_then(|s| s.parse().ok()).unwrap_or(25_000);
    eprintln!(
        "random operations: seed {seed} (VLS_RANDOM_OPS_SEED={seed} replays the sequences), {n} per thread"
    );
    let v = Vls::new_static(Double::new(false));
    // SAFETY: a valid C string.
    assert_eq!(unsafe { v.app_create(c"random".as_ptr()) }, 0);
    let world: &'static World =
        Box::leak(Box::new(World { v, slots: (0..SLOTS).map(|_| AtomicI32::new(-1)).collect() }));
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
    for slot in &world.slots {
        let h = slot.swap(-1, Ordering::AcqRel);
        if h >= 0 {
            valid("final close", v.close(h));
        }
    }
    assert_eq!(v.vcl().violations(), 0, "seed {seed}: VCL's threading rules were broken");
    assert_eq!(v.pool().len(), 0, "seed {seed}: sessions left in the pool");
    assert_eq!(v.pool().table_len(), 0, "seed {seed}: entries left in the handle table");
}
