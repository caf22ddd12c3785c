//! Lock-free calls while a single thread uses VLS.
//!
//! As long as one thread only has called VLS (mode 3 before a second thread
//! shows up, or a forked child), nothing can race its calls, and the hot
//! path — a non-blocking read or write — needs no lock at all. The hard part
//! is the moment a second thread arrives: it must not start using locks
//! while the first thread is still inside an unlocked call (a close of that
//! session would free what VCL is working on).
//!
//! The hand-over is an asymmetric Dekker handshake:
//!
//! - the solo thread, per call: check that `thread` is itself; `busy =
//!   true`; compiler fence; check `thread` again; … the call …; `busy =
//!   false`. No atomic read-modify-write and no hardware fence: a few
//!   plain moves.
//! - the arriving thread, once: `thread = 0`; `membarrier()` (every
//!   running thread of the process executes a full memory barrier); wait
//!   until `busy` is false; `handed_over = true`.
//! - any other thread arriving meanwhile (it finds `thread` 0 already):
//!   waits until `handed_over` is true, so it too never calls VCL beside
//!   the solo thread's last unlocked call.
//!
//! After the `membarrier`, either the solo thread's `busy = true` is
//! visible to the arriving thread (which then waits for the call to end), or
//! the solo thread's second check comes after the barrier and sees
//! `thread == 0` (and takes the locked path). Without a working
//! `membarrier` (old kernels, seccomp) the solo path is never used.
//!
//! The period can also pass to the thread that arrives
//! ([`super::Vls`]'s `take_over_solo_period`): a program whose main
//! thread only sets up (wrk creates its epoll sets, then one thread of its
//! own does all the I/O) would otherwise pay the locks for its whole run.
//! The arriving thread ends the period as above, then, holding every
//! worker-level lock (only tried: it never waits for them) while no thread
//! waits inside VCL, starts a new one of its own. So no other thread is
//! inside VCL at that moment, and every other thread reaches VCL again only
//! with a worker-level lock taken; after taking it, a thread that finds the
//! period another's ends it, as an arriving thread does
//! ([`Solo::held_by_another`]). The process stays in the shared-worker
//! mode meanwhile: only the new solo thread's unlocked calls differ. The
//! first thread that comes back so ends the take-overs too: its threads
//! share the work, and each take-over would cost a `membarrier` later.
//!
//! Which sessions the solo thread may use without a lock, and under which
//! VCL handle, is one word per session slot in a flat table
//! ([`LockFreeWords`], kept by the session pool): so a read or write on
//! the fast path is the thread check, the `busy` store, the second thread
//! check and one indexed load before the call. The process-wide VLS keeps its
//! `Solo` and table in statics, so that path loads no pointer to them.
//!
//! Only calls that cannot wait in VCL take this path (non-blocking reads and
//! writes, `epoll_ctl`, epoll waits with timeout 0 and LDP's drain-only
//! wait): the arriving thread waits for the call to finish, and a call
//! blocked waiting for data the arriving thread is about to send would never
//! finish.
//!
//! Invariants:
//! - `thread` is non-zero only between [`Solo::start`] and [`Solo::end`]
//!   (or the solo thread's exit, or a fork), and only that thread may
//!   enter while it is. While it is, any other thread that uses VCL holds
//!   a worker-level lock and has ended the period first.
//! - `handed_over` is false only while a hand-over may still have to wait
//!   for an unlocked call: from a successful `start` until the `end` that
//!   saw the last call finish.
//! - `busy` is written only by the solo thread (true only inside a
//!   [`SoloCall`]), so a `SoloCall` never overlaps another one.

use std::sync::atomic::{compiler_fence, AtomicBool, AtomicU32, AtomicUsize, Ordering};

use crate::handle::{Sh, Vlsh, MAX_SESSIONS};

/// One word per session slot (index = VLS handle): the session's VCL
/// handle plus one while the solo thread may use it without a lock, else 0
/// (see `pool::VlsSession::refresh_lock_free`, the only writer).
pub type LockFreeWords = [AtomicU32; MAX_SESSIONS];

/// A new table of [`LockFreeWords`], all 0, that lives for the rest of
/// the process (as every VLS does), from zeroed memory: 4 MiB of address
/// space, of which only the pages of used slots are ever touched.
#[cfg(any(test, feature = "fuzzing"))]
pub fn leaked_words() -> &'static LockFreeWords {
    let layout = std::alloc::Layout::new::<LockFreeWords>();
    // SAFETY: the layout has a non-zero size; all-zero bytes are valid
    // `AtomicU32`s, so the zeroed allocation is an initialised table,
    // never freed (hence `'static`).
    unsafe {
        let p = std::alloc::alloc_zeroed(layout).cast::<LockFreeWords>();
        if p.is_null() {
            std::alloc::handle_alloc_error(layout);
        }
        &*p
    }
}

/// `membarrier(2)` commands (linux/membarrier.h).
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_long = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_long = 1 << 4;

/// Keeps `busy` (written by the solo thread on every call) away from what
/// other threads read on their own hot paths.
#[repr(align(128))]
struct Padded(AtomicBool);

/// The single-thread fast path's state (see the module docs).
pub struct Solo {
    /// The solo thread (its [`this_thread`]) while the fast path may be
    /// used; 0 before and after.
    thread: AtomicUsize,
    /// No unlocked call is in progress, nor can one start: the period
    /// never began, or it ended and its last call is over.
    handed_over: AtomicBool,
    /// The solo thread is inside an unlocked call.
    busy: Padded,
    /// Which sessions the fast path may use (shared with the pool that
    /// keeps it).
    words: &'static LockFreeWords,
    /// No thread may take the period over any more: the process forks or
    /// exits (those paths use VCL without the worker-level locks), or a
    /// thread came back while another had the period.
    take_overs_closed: AtomicBool,
}

/// The solo thread inside an unlocked call; ends it on drop.
#[must_use]
pub struct SoloCall<'a> {
    busy: &'a AtomicBool,
}

impl Drop for SoloCall<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.busy.store(false, Ordering::Release);
    }
}

/// An identity of the calling thread, unique among live threads: the
/// thread pointer (what `pthread_self` returns; read directly on x86-64,
/// where the ABI keeps it at `%fs:0`, to save a call on the hot path).
#[inline(always)]
pub(super) fn this_thread() -> usize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        let tp: usize;
        // SAFETY: on x86-64 Linux `%fs:0` always holds the thread control
        // block's address (the TLS ABI requires it); reading it has no
        // side effects.
        unsafe {
            std::arch::asm!("mov {}, qword ptr fs:[0]", out(reg) tp, options(nostack, readonly, preserves_flags, pure));
        }
        tp
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
    // SAFETY: no preconditions.
    unsafe {
        libc::pthread_self() as usize
    }
}

/// Runs `membarrier(cmd)`; true on success.
fn membarrier(cmd: libc::c_long) -> bool {
    // SAFETY: plain system call with integer arguments.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_long, 0 as libc::c_long) == 0 }
}

/// Registers the process for expedited private barriers (per address
/// space: again in a forked child); false if the kernel (or a seccomp
/// filter) refuses.
pub fn register_barrier() -> bool {
    !cfg!(loom) && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED)
}

/// A full memory barrier on every running thread of the process (after
/// [`register_barrier`]); false if it failed.
pub fn barrier() -> bool {
    membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
}

/// `membarrier(MEMBARRIER_CMD_QUERY)` lists the expedited private
/// barrier: the kernel (and a seccomp filter, if any) allows the fast path.
pub fn barrier_available() -> bool {
    const MEMBARRIER_CMD_QUERY: libc::c_long = 0;
    // SAFETY: plain system call with integer arguments.
    let mask = unsafe {
        libc::syscall(libc::SYS_membarrier, MEMBARRIER_CMD_QUERY, 0 as libc::c_long, 0 as libc::c_long)
    };
    !cfg!(loom) && mask > 0 && mask & MEMBARRIER_CMD_PRIVATE_EXPEDITED != 0
}

/// For tests: whether the lock-free path is to be expected on this
/// machine. Where the kernel (or a seccomp filter) has no `membarrier` it
/// cannot be tested, which is a failure (this panics) unless
/// `VLS_ALLOW_NO_MEMBARRIER=1` says it is known and accepted.
#[doc(hidden)]
pub fn lock_free_expected() -> bool {
    let ok = barrier_available();
    if !ok {
        assert!(
            std::env::var_os("VLS_ALLOW_NO_MEMBARRIER").is_some_and(|v| v == "1"),
            "membarrier(2) is unavailable here, so the lock-free fast path cannot be tested \
             (set VLS_ALLOW_NO_MEMBARRIER=1 to check only the fallback)"
        );
        eprintln!("membarrier unavailable here: only the fallback (every call locks) is checked");
    }
    ok
}

impl Solo {
    /// A solo state reading `words`, not started.
    pub const fn new(words: &'static LockFreeWords) -> Self {
        Solo {
            thread: AtomicUsize::new(0),
            handed_over: AtomicBool::new(true),
            busy: Padded(AtomicBool::new(false)),
            words,
            take_overs_closed: AtomicBool::new(false),
        }
    }

    /// The table of lock-free words this state reads (for the pool that
    /// keeps it).
    pub fn words(&self) -> &'static LockFreeWords {
        self.words
    }

    /// Enters an unlocked call on session `vlsh` (see [`Solo::enter`]):
    /// also `None` if the session may not take the fast path (closed,
    /// blocking, an epoll session, unknown). Gives the VCL handle to use.
    #[inline(always)]
    pub fn enter_session(&self, vlsh: Vlsh) -> Option<(SoloCall<'_>, Sh)> {
        let call = self.enter()?;
        // A negative vlsh becomes an index beyond the table. Acquire: the
        // word is read after `enter`'s check, as the handshake requires.
        let sh = self.words.get(vlsh as u32 as usize)?.load(Ordering::Acquire).checked_sub(1)?;
        Some((call, sh))
    }

    /// Makes the calling thread the solo thread, if the kernel offers the
    /// barrier the hand-over needs. Call only while no other thread uses
    /// VLS (app creation, a forked child).
    pub fn start(&self) -> bool {
        // Registration is per address space: done again in a forked child.
        let ok = register_barrier();
        if !ok {
            tracing::debug!("membarrier unavailable: single-thread calls take the locks");
        }
        self.busy.0.store(false, Ordering::Relaxed);
        self.handed_over.store(!ok, Ordering::Relaxed);
        self.thread.store(if ok { this_thread() } else { 0 }, Ordering::Release);
        ok
    }

    /// Enters an unlocked call, if the calling thread is the solo thread
    /// and no other thread has arrived.
    #[inline(always)]
    pub fn enter(&self) -> Option<SoloCall<'_>> {
        let me = this_thread();
        if self.thread.load(Ordering::Relaxed) != me {
            return None;
        }
        let busy = &self.busy.0;
        busy.store(true, Ordering::Relaxed);
        // The store above and the load below stay in this order in the
        // code; the hardware order is the arriving thread's `membarrier`'s
        // business.
        compiler_fence(Ordering::SeqCst);
        let call = SoloCall { busy };
        // Acquire: an arriving thread's writes before `end` (it switched
        // the locks on) are visible if the fast path is refused.
        (self.thread.load(Ordering::Acquire) == me).then_some(call)
    }

    /// Ends the solo period (another thread arrived): from now on every
    /// call takes the locked path. Returns once the solo thread is outside
    /// any unlocked call, also when another arriving thread is ending the
    /// period at the same time. Called by an arriving thread, after it
    /// switched the locks on, or by the solo thread itself as the process
    /// ends or execs: then no other thread can be inside an unlocked call
    /// and there is no `membarrier` (a sandboxed process may be killed for
    /// one: OpenSSH's pre-auth child, seccomp).
    pub fn end(&self) {
        let mut spins = 0u32;
        loop {
            if self.handed_over.load(Ordering::Acquire) {
                return;
            }
            let was = self.thread.swap(0, Ordering::SeqCst);
            if was == this_thread() {
                // Only this thread took the unlocked path, and it is not
                // inside a call now.
                self.handed_over.store(true, Ordering::Release);
                return;
            }
            if was != 0 {
                break;
            }
            // Another thread is handing over, or the solo thread is just
            // leaving (exit, fork) or starting: look again shortly, never
            // relying on a hand-over that might not come.
            pause(&mut spins);
        }
        if !barrier() {
            // Cannot happen after a successful registration; waiting on
            // `busy` is the best left to do.
            tracing::error!(errno = std::io::Error::last_os_error().raw_os_error(), "membarrier failed");
        }
        let mut spins = 0u32;
        while self.busy.0.load(Ordering::Acquire) {
            // Unlocked calls never wait in VCL: this is short.
            pause(&mut spins);
        }
        self.handed_over.store(true, Ordering::Release);
    }

    /// No thread may take the period over from now on. Followed by a full
    /// fence: a thread taking it over at this moment either sees this (and
    /// ends its period itself) or its period is visible to the caller's
    /// next [`Solo::held_by_another`].
    pub fn close_take_overs(&self) {
        self.take_overs_closed.store(true, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
    }

    /// See [`Solo::close_take_overs`] (a thread taking the period over asks
    /// before, and again after a full fence once its period started).
    pub fn take_overs_closed(&self) -> bool {
        self.take_overs_closed.load(Ordering::SeqCst)
    }

    /// Another thread's period is on. For a thread that holds a
    /// worker-level lock and is about to use VCL, which must end it first
    /// (see the module docs). (A plain load: a period that began before the
    /// lock was taken is visible through the lock; none can begin while it
    /// is held.)
    #[inline(always)]
    pub fn held_by_another(&self) -> bool {
        let t = self.thread.load(Ordering::Relaxed);
        t != 0 && t != this_thread()
    }

    /// The solo thread is exiting: nobody uses the fast path any more (a
    /// new thread could get the same `pthread_t`).
    pub fn thread_exits(&self) {
        if self.thread.load(Ordering::Relaxed) == this_thread() {
            self.thread.store(0, Ordering::Release);
            // Outside any call of its own: nothing to wait for.
            self.handed_over.store(true, Ordering::Release);
        }
    }

    /// A forked child (one thread, outside any call): the parent's solo
    /// period, copied with its memory, is over. Its thread may start
    /// another.
    pub fn forget_after_fork(&self) {
        self.thread.store(0, Ordering::Release);
        self.busy.0.store(false, Ordering::Relaxed);
        self.handed_over.store(true, Ordering::Release);
    }

    /// The fast path is in use.
    pub fn is_active(&self) -> bool {
        self.thread.load(Ordering::Acquire) != 0
    }
}

/// One step of a short wait: spin first, then let other threads run.
fn pause(spins: &mut u32) {
    if *spins < 100 {
        std::hint::spin_loop();
        *spins += 1;
    } else {
        std::thread::yield_now();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;
    use std::time::Duration;

    /// Starts `solo`; where the fast path cannot be tested (and that is
    /// accepted, see [`lock_free_expected`]) checks the fallback instead
    /// and says false.
    fn started(solo: &Solo) -> bool {
        let expected = lock_free_expected();
        let ok = solo.start();
        assert_eq!(ok, expected);
        if !ok {
            assert!(solo.enter().is_none(), "fast path without membarrier");
        }
        ok
    }

    #[test]
    fn only_the_solo_thread_enters_and_only_until_the_end() {
        let solo = Arc::new(Solo::new(leaked_words()));
        assert!(solo.enter().is_none(), "not started");
        if !started(&solo) {
            return;
        }
        assert!(solo.enter().is_some());
        let s = solo.clone();
        std::thread::spawn(move || assert!(s.enter().is_none(), "another thread entered")).join().unwrap();
        solo.end();
        assert!(solo.enter().is_none(), "entered after the end");
        assert!(!solo.is_active());
    }

    #[test]
    fn end_waits_for_the_call_in_progress() {
        let solo: &'static Solo = Box::leak(Box::new(Solo::new(leaked_words())));
        if !started(solo) {
            return;
        }
        let inside = Arc::new(AtomicU32::new(0));
        let call = solo.enter().expect("solo thread enters");
        inside.store(1, Ordering::SeqCst);
        let i = inside.clone();
        let arriving = std::thread::spawn(move || {
            solo.end();
            // The call must have ended before `end` returned.
            i.load(Ordering::SeqCst)
        });
        // The arriving thread is inside `end` once it has turned the fast
        // path off; then it waits for the call (give it time to return
        // early if it were going to).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while solo.is_active() {
            assert!(std::time::Instant::now() < deadline, "end never started");
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(50));
        assert!(!arriving.is_finished(), "end returned while the call was in progress");
        inside.store(2, Ordering::SeqCst);
        drop(call);
        assert_eq!(arriving.join().unwrap(), 2);
    }

    /// Two threads arrive at once: the one that finds the period already
    /// ending must wait for the solo thread's call as well, not go on to
    /// call VCL beside it.
    #[test]
    fn a_second_arriving_thread_also_waits_for_the_call_in_progress() {
        let solo: &'static Solo = Box::leak(Box::new(Solo::new(leaked_words())));
        if !started(solo) {
            return;
        }
        let inside = Arc::new(AtomicU32::new(1));
        let call = solo.enter().expect("solo thread enters");
        let arrive = |i: Arc<AtomicU32>| {
            std::thread::spawn(move || {
                solo.end();
                i.load(Ordering::SeqCst)
            })
        };
        let first = arrive(inside.clone());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while solo.is_active() {
            assert!(std::time::Instant::now() < deadline, "end never started");
            std::thread::yield_now();
        }
        // The first is inside `end`, waiting for the call: the second finds
        // the period over already.
        let second = arrive(inside.clone());
        std::thread::sleep(Duration::from_millis(50));
        assert!(!second.is_finished(), "the second arriving thread did not wait for the call");
        assert!(!first.is_finished(), "end returned while the call was in progress");
        inside.store(2, Ordering::SeqCst);
        drop(call);
        assert_eq!(first.join().unwrap(), 2);
        assert_eq!(second.join().unwrap(), 2);
        // Once handed over, a late arrival returns at once.
        solo.end();
    }

    #[test]
    fn thread_identity_is_pthread_self() {
        // SAFETY: no preconditions.
        assert_eq!(this_thread(), unsafe { libc::pthread_self() } as usize);
        let other = std::thread::spawn(this_thread).join().unwrap();
        assert_ne!(other, this_thread());
    }

    #[test]
    fn exit_of_the_solo_thread_ends_the_fast_path() {
        let solo: &'static Solo = Box::leak(Box::new(Solo::new(leaked_words())));
        if !started(solo) {
            return;
        }
        std::thread::spawn(move || {
            assert!(solo.start());
            solo.thread_exits();
        })
        .join()
        .unwrap();
        assert!(!solo.is_active());
        // Another thread's exit does not end it.
        assert!(solo.start());
        std::thread::spawn(move || solo.thread_exits()).join().unwrap();
        assert!(solo.is_active());
    }
}
