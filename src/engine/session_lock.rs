//! The lock of one VLS session: two halves, `RX` and `TX`, in one word.
//!
//! A read holds `RX`, a write `TX`, everything else (and, while threads
//! share the worker, a non-blocking read or write) both. Keeping both
//! halves in one word makes "both" one compare-and-swap and one atomic
//! subtract instead of two of each, and there is no poisoning to check: a panic
//! never happens while VLS holds a session lock in a state it could not
//! continue from (the guard releases on unwind).
//!
//! State word: bit 0 `RX` held, bit 1 `TX` held, bit 2 "someone may be
//! sleeping". A locker spins briefly, then sets the sleeper bit and sleeps
//! on the word (`futex`); an unlocker that finds the sleeper bit clears it
//! and wakes every sleeper, and those still blocked set it again before
//! they sleep. Invariant: while a thread sleeps on the word, the word has
//! the sleeper bit or is about to change (so its `FUTEX_WAIT` returns).
//!
//! A whole-session locker that cannot take both halves at once takes `RX`,
//! then `TX` (the order every whole-session locker uses), so readers and
//! writers that keep one half or the other busy cannot starve it by never
//! leaving both free at the same moment.

use std::sync::atomic::{AtomicU32, Ordering};

/// Bits of the state word.
pub const RX: u32 = 1;
pub const TX: u32 = 2;
pub const BOTH: u32 = RX | TX;
const SLEEPERS: u32 = 4;

/// Spins before sleeping (the holder usually leaves within a VCL call).
const SPINS: u32 = 100;

/// A two-half session lock (see the module docs).
#[derive(Default)]
pub struct SessionLock {
    state: AtomicU32,
}

/// Holds `bits` of a [`SessionLock`]; released on drop.
#[must_use]
pub struct SessionLockGuard<'a> {
    lock: &'a SessionLock,
    bits: u32,
}

impl Drop for SessionLockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        // The bits are held (by this guard), so subtracting clears them:
        // one `lock xadd` where an AND returning the old value is a CAS loop.
        let prev = self.lock.state.fetch_sub(self.bits, Ordering::Release);
        if prev & SLEEPERS != 0 {
            self.lock.wake_all();
        }
    }
}

impl SessionLock {
    /// Takes `bits` (`RX`, `TX` or `BOTH`), waiting for them to be free.
    #[inline]
    pub fn lock(&self, bits: u32) -> SessionLockGuard<'_> {
        debug_assert!(bits != 0 && bits & !BOTH == 0);
        let s = self.state.load(Ordering::Relaxed);
        if s & bits != 0
            || self.state.compare_exchange(s, s | bits, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            self.lock_contended(bits);
        }
        SessionLockGuard { lock: self, bits }
    }

    /// Takes `bits` if they are free now.
    pub fn try_lock(&self, bits: u32) -> Option<SessionLockGuard<'_>> {
        let mut s = self.state.load(Ordering::Relaxed);
        while s & bits == 0 {
            match self.state.compare_exchange_weak(s, s | bits, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return Some(SessionLockGuard { lock: self, bits }),
                Err(now) => s = now,
            }
        }
        None
    }

    /// Some half is held.
    pub fn is_locked(&self) -> bool {
        self.state.load(Ordering::Acquire) & BOTH != 0
    }

    #[cold]
    fn lock_contended(&self, bits: u32) {
        for half in [RX, TX] {
            if bits & half != 0 {
                self.lock_half(half);
            }
        }
    }

    /// Waits for and takes one half.
    fn lock_half(&self, bits: u32) {
        let mut spins = 0;
        let mut s = self.state.load(Ordering::Relaxed);
        loop {
            if s & bits == 0 {
                match self.state.compare_exchange_weak(s, s | bits, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => return,
                    Err(now) => {
                        s = now;
                        continue;
                    }
                }
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                s = self.state.load(Ordering::Relaxed);
                continue;
            }
            if s & SLEEPERS == 0 {
                if let Err(now) =
                    self.state.compare_exchange_weak(s, s | SLEEPERS, Ordering::Relaxed, Ordering::Relaxed)
                {
                    s = now;
                    continue;
                }
                s |= SLEEPERS;
            }
            futex_wait(&self.state, s);
            s = self.state.load(Ordering::Relaxed);
        }
    }

    #[cold]
    fn wake_all(&self) {
        self.state.fetch_and(!SLEEPERS, Ordering::Relaxed);
        futex_wake_all(&self.state);
    }
}

/// Sleeps while `word` holds `expected` (or until woken; spurious returns
/// are fine, callers re-check).
fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid, aligned 32-bit word for the whole call;
    // FUTEX_WAIT only reads it; a null timeout means no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Wakes every thread sleeping on `word`.
fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: `word` is a valid, aligned 32-bit word; FUTEX_WAKE does not
    // access memory.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, i32::MAX);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn halves_are_independent_and_both_excludes_each() {
        let l = SessionLock::default();
        let rx = l.lock(RX);
        let tx = l.try_lock(TX).expect("tx is free while rx is held");
        assert!(l.try_lock(RX).is_none());
        assert!(l.try_lock(BOTH).is_none());
        drop(rx);
        assert!(l.try_lock(BOTH).is_none(), "tx still held");
        drop(tx);
        assert!(!l.is_locked());
        let both = l.try_lock(BOTH).expect("free");
        assert!(l.try_lock(RX).is_none() && l.try_lock(TX).is_none());
        drop(both);
        assert!(!l.is_locked());
    }

    #[test]
    fn a_sleeping_locker_is_woken_by_the_unlock() {
        let l: &'static SessionLock = Box::leak(Box::default());
        let held = l.lock(TX);
        let t = std::thread::spawn(move || {
            let _g = l.lock(BOTH);
        });
        // The waiter gives up spinning and announces its sleep.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while l.state.load(Ordering::Relaxed) & SLEEPERS == 0 {
            assert!(std::time::Instant::now() < deadline, "the waiter never announced its sleep");
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(20));
        assert!(!t.is_finished());
        drop(held);
        t.join().unwrap();
        assert_eq!(l.state.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn mutual_exclusion_under_contention() {
        // Non-atomic-style increments (load + store) under the lock: any
        // overlap of two holders of one half loses counts.
        let l = Arc::new(SessionLock::default());
        let counters = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let ts: Vec<_> = (0..4)
            .map(|i| {
                let (l, c) = (l.clone(), counters.clone());
                std::thread::spawn(move || {
                    for n in 0..20_000u32 {
                        let bits = match (i + n) % 3 {
                            0 => RX,
                            1 => TX,
                            _ => BOTH,
                        };
                        let _g = l.lock(bits);
                        for (half, c) in [(RX, &c[0]), (TX, &c[1])] {
                            if bits & half != 0 {
                                let v = c.load(Ordering::Relaxed);
                                std::hint::spin_loop();
                                c.store(v + 1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in ts {
            t.join().unwrap();
        }
        // Per thread: RX in 2 of 3 iterations (RX and BOTH), TX likewise.
        let expected: u64 =
            (0..4u32).map(|i| (0..20_000u32).filter(|n| (i + n) % 3 != 1).count() as u64).sum();
        assert_eq!(counters[0].load(Ordering::Relaxed), expected);
        let expected_tx: u64 =
            (0..4u32).map(|i| (0..20_000u32).filter(|n| (i + n) % 3 != 0).count() as u64).sum();
        assert_eq!(counters[1].load(Ordering::Relaxed), expected_tx);
        assert!(!l.is_locked());
    }
}
