//! The operation language of the random-operations test
//! (`random_ops.rs`) and of the fuzz target (`fuzz/`, feature `fuzzing`):
//! the C-ABI-shaped core called as a hostile program would, over the
//! in-memory VCL double.
//!
//! Threads make operations on handles drawn from a shared table (so they
//! use, close and re-close each other's sessions, stale and never-made
//! handles included): create, epoll create, listen, connect, accept, read,
//! write, epoll ctl (add, mod, del, bad op), epoll wait, shutdown, attr,
//! close (also twice, also of a handle another slot still holds), and a
//! blocking read racing a close. Every return must be a success or a
//! `VPPCOM_E*` code; once every handle is closed the session pool and
//! the handle table must be empty and VCL's threading rules unbroken
//! ([`World::check_empty`]). Choices come from a [`Choices`]: a seeded
//! [`Rng`] or the fuzzer's [`Bytes`].

use std::ffi::c_void;
use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;
use std::time::Duration;

use super::double::Double;
use super::Vls;
use crate::error::VppcomError;
use crate::handle::Vlsh;

/// Handles the threads share: created ones land in random slots.
const SLOTS: usize = 64;

/// Where the operations' choices come from: a seeded generator (the
/// test) or the fuzzer's bytes.
pub trait Choices {
    /// Any value.
    fn next(&mut self) -> u64;

    /// A value below `n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// xorshift64*: a small, seedable generator.
pub struct Rng(pub u64);

impl Choices for Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The fuzzer's input, one byte per choice (zeros once it is used up).
#[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
pub struct Bytes<'a>(pub &'a [u8]);

#[cfg_attr(not(feature = "fuzzing"), allow(dead_code))]
impl Bytes<'_> {
    /// The input is used up.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Choices for Bytes<'_> {
    fn next(&mut self) -> u64 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b.into()
            }
            None => 0,
        }
    }
}

/// A return code is a success or a code VCL defines.
pub fn valid(op: &str, rv: i32) {
    assert!(rv >= 0 || VppcomError::from_raw(rv).name().is_some(), "{op} returned {rv}, not a VPPCOM code");
}

/// The shared handle table of the threads that make the operations, over
/// one VLS on the double.
pub struct World {
    v: &'static Vls<Double>,
    slots: Vec<AtomicI32>,
}

impl World {
    /// A table of empty slots over `v` (whose app is created already).
    pub fn new(v: &'static Vls<Double>) -> Self {
        World { v, slots: (0..SLOTS).map(|_| AtomicI32::new(-1)).collect() }
    }

    /// A fresh VLS over a fresh double (multi-thread workers off) with its
    /// app created, and a world over it. The double pauses inside its calls
    /// only if `pause` (widens race windows of threads running at once).
    pub fn fresh(pause: bool) -> Self {
        let d = Double::new(false);
        let v = Vls::new_static(if pause { d } else { d.without_pause() });
        // SAFETY: a valid C string.
        assert_eq!(unsafe { v.app_create(c"random".as_ptr()) }, 0);
        World::new(v)
    }

    /// Closes every handle the table holds.
    pub fn close_all(&self) {
        for slot in &self.slots {
            let h = slot.swap(-1, Ordering::AcqRel);
            if h >= 0 {
                valid("final close", self.v.close(h));
            }
        }
    }

    /// After [`close_all`](Self::close_all) with no operation running:
    /// VCL's threading rules held throughout, and the session pool and the
    /// handle table are empty. (The double may still hold connections that
    /// waited in a listener's queue and were never accepted: VLS never saw
    /// them.)
    pub fn check_empty(&self) -> Result<(), String> {
        let v = self.v;
        if v.vcl().violations() != 0 {
            return Err(format!("VCL's threading rules were broken {} times", v.vcl().violations()));
        }
        let (sessions, entries) = (v.pool().len(), v.pool().table_len());
        if sessions != 0 {
            return Err(format!("{sessions} sessions left in the pool"));
        }
        if entries != 0 {
            return Err(format!("{entries} entries left in the handle table"));
        }
        Ok(())
    }

    fn pick(&self, rng: &mut impl Choices) -> Vlsh {
        match rng.below(20) {
            // Never made, or far out of range.
            0 => [-1, 100_000, i32::MAX, -77][rng.below(4) as usize],
            _ => self.slots[rng.below(SLOTS as u64) as usize].load(Ordering::Acquire),
        }
    }

    /// Puts `h` in a random slot; the handle it replaces is closed (so
    /// nothing leaks), possibly while another thread uses it.
    fn put(&self, rng: &mut impl Choices, h: Vlsh) {
        if h < 0 {
            return;
        }
        let old = self.slots[rng.below(SLOTS as u64) as usize].swap(h, Ordering::AcqRel);
        if old >= 0 {
            valid("close (replaced)", self.v.close(old));
        }
    }

    /// One operation, its kind and arguments drawn from `rng`.
    pub fn step(&self, rng: &mut impl Choices) {
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
                if v.pool().get(l).is_some_and(|s| s.nonblocking_hint()) {
                    // SAFETY: null endpoint is accepted by the double.
                    let rv = unsafe { v.accept(l, std::ptr::null_mut(), libc::O_NONBLOCK) };
                    valid("accept", rv);
                    self.put(rng, rv);
                }
            }
            5 | 6 => {
                let h = self.pick(rng);
                if v.pool().get(h).is_some_and(|s| s.nonblocking_hint()) {
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
                if v.pool().get(h).is_some() && rng.below(4) == 0 {
                    v.close(h)
                } else {
                    0
                }
            }),
            _ => self.blocked_read_racing_close(rng),
        }
    }

    /// A blocking read on a fresh pair, woken by a close from this thread.
    fn blocked_read_racing_close(&self, rng: &mut impl Choices) {
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
