//! `epoll_wait` and `epoll_pwait` in front of LDP's, with the kernel's
//! answer to a timeout and to a signal.
//!
//! Preloaded first (`LD_PRELOAD=libvls.so:libvcl_ldpreload.so`), these two
//! symbols are what the application calls; both call the next `epoll_pwait`
//! (LDP's; its `epoll_wait` is the same without a mask) and correct two
//! answers LDP gives where the kernel would not:
//!
//! - **Zero events before the timeout.** LDP sleeps on a libc epoll set
//!   that holds VCL's message-queue eventfd. A message that yields no event
//!   for the set (data for a session in no set, a peer's close of a session
//!   being closed, a TX notice nobody asked for) wakes it; LDP then asks VLS
//!   for events, and on the second such empty wake-up of one call it
//!   returns 0 at once, whatever time was left. The kernel returns 0 only
//!   once the timeout has passed, and programs rely on it: haproxy advances
//!   its own clock by the whole timeout after an empty return, so its
//!   connect and server timeouts fired after milliseconds under load (HTTP
//!   503 and 504 answers). Here the wait is resumed for the time that is
//!   left (for ever for `-1`).
//! - **A signal.** LDP turns an interrupted wait (`EINTR` from the libc
//!   wait) into a return of 0 events, which a program waiting without a
//!   timeout takes for a wake-up bug (nginx logs `epoll_wait() returned no
//!   events without timeout`). Here it is -1 with `errno` `EINTR`, as the
//!   kernel answers. A wait resumed after an early empty return holds
//!   the asynchronous signals blocked from then on and sleeps through
//!   `epoll_pwait` with the mask it was called with (see `held_signals`):
//!   a signal that arrives between two resumed calls still ends the wait.
//!   (Holding from the first call would cost two system calls in every
//!   wait; the window left, from LDP's first return to the hold, is as
//!   short as those inside LDP's own wait.)
//!
//! With `VLS_RS_BUSY_POLL_US` set, a wait that may sleep first asks LDP
//! with a zero timeout, again and again, for that long (see
//! [`busy_poll`]); `poll` and `select` do the same (`ldp_poll`).
//!
//! Outside LDP (a program that links `libvls.so` without preloading LDP)
//! the next definition is libc's and every call is passed through
//! unchanged: the kernel already answers this way.
//!
//! **Only the cdylib has these names.** The Rust functions are
//! `vls_preload_epoll_wait` and `vls_preload_epoll_pwait`; the build script
//! adds `epoll_wait` and `epoll_pwait` as aliases of them when it links
//! `libvls.so` (`cargo:rustc-cdylib-link-arg`), and nowhere else. A Rust
//! program that links the crate therefore keeps libc's `epoll_wait` for
//! itself, for tokio's reactor and for VCL (whose `vcl_epoll_wait` defaults
//! to whatever `epoll_wait` the program resolves to).

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::held_signals::HeldSignals;
use crate::errno::{errno, set_errno};

type EpollPwaitFn =
    unsafe extern "C" fn(c_int, *mut libc::epoll_event, c_int, c_int, *const libc::sigset_t) -> c_int;

/// Whether LDP is preloaded (read once): only then are answers corrected.
pub(super) fn under_ldp() -> bool {
    static LDP: OnceLock<bool> = OnceLock::new();
    *LDP.get_or_init(|| {
        std::env::var_os("LD_PRELOAD").is_some_and(|p| p.to_string_lossy().contains("vcl_ldpreload"))
    })
}

/// The next definition of `name` after this library (LDP's or libc's),
/// looked up once; null if there is none.
pub(super) fn next_symbol(cache: &AtomicPtr<c_void>, name: &'static [u8]) -> *mut c_void {
    let p = cache.load(Ordering::Acquire);
    if !p.is_null() {
        return p;
    }
    // SAFETY: `name` is a NUL-terminated symbol name; RTLD_NEXT looks past
    // this library in the usual search order.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr() as *const c_char) };
    cache.store(p, Ordering::Release);
    p
}

/// The next definition of `name` after this library as a function of type
/// `F` (looked up once, see [`next_symbol`]); `None`, with `errno`
/// `ENOSYS`, if there is none.
///
/// # Safety
/// `F` is a function pointer type with the C signature of `name`.
pub(super) unsafe fn next_fn<F: Copy>(cache: &AtomicPtr<c_void>, name: &'static [u8]) -> Option<F> {
    const { assert!(std::mem::size_of::<F>() == std::mem::size_of::<*mut c_void>()) };
    let p = next_symbol(cache, name);
    if p.is_null() {
        set_errno(libc::ENOSYS);
        return None;
    }
    // SAFETY: `p` is the address of `name`, whose type `F` is (caller's
    // contract), and both are one pointer wide (checked above).
    Some(unsafe { std::mem::transmute_copy::<*mut c_void, F>(&p) })
}

/// What is left of `timeout_ms` since `start`, rounded up to whole
/// milliseconds; `None` once it has passed.
fn left_ms(timeout_ms: c_int, start: Instant) -> Option<c_int> {
    let left = Duration::from_millis(timeout_ms as u64).checked_sub(start.elapsed())?;
    if left.is_zero() {
        return None;
    }
    Some(left.as_micros().div_ceil(1000).min(c_int::MAX as u128) as c_int)
}

/// Under LDP [`resume_early_returns`] after a busy poll of
/// [`busy_poll`], else `wait(timeout_ms, None)` once.
fn wait_as_the_kernel(
    timeout_ms: c_int,
    mut wait: impl FnMut(c_int, Option<&HeldSignals>) -> c_int,
) -> c_int {
    if timeout_ms == 0 || !under_ldp() {
        return wait(timeout_ms, None);
    }
    let busy = busy_poll();
    if busy.is_zero() {
        return resume_early_returns(timeout_ms, wait);
    }
    let spun = Instant::now();
    if let Some(rv) = look_without_sleeping(busy, &mut wait) {
        return rv;
    }
    match timeout_ms {
        t if t < 0 => resume_early_returns(t, wait),
        t => left_ms(t, spun).map_or(0, |left| resume_early_returns(left, wait)),
    }
}

/// Calls `wait(0, None)` until it gives events or an error (`Some` of
/// that) or `busy` has passed (`None`).
fn look_without_sleeping(
    busy: Duration,
    wait: &mut impl FnMut(c_int, Option<&HeldSignals>) -> c_int,
) -> Option<c_int> {
    let start = Instant::now();
    loop {
        let rv = wait(0, None);
        if rv != 0 {
            return Some(rv);
        }
        if start.elapsed() >= busy {
            return None;
        }
        std::hint::spin_loop();
    }
}

/// The most `VLS_RS_BUSY_POLL_US` may ask for.
const MAX_BUSY_POLL: Duration = Duration::from_millis(10);

/// How long a wait that may sleep (`epoll_wait`, `poll`, `select` on VPP
/// sessions) first looks without sleeping: `VLS_RS_BUSY_POLL_US`
/// microseconds, at most [`MAX_BUSY_POLL`]; 0 when unset or not a number.
/// Sleeping costs a wake-up per event, which a busy poll saves a program
/// whose events follow each other closely, for the CPU it spins. (LDP's
/// own `select` and `poll` never sleep: a core busy even while idle.)
/// Read once.
pub(super) fn busy_poll() -> Duration {
    static BUSY_POLL: OnceLock<Duration> = OnceLock::new();
    *BUSY_POLL.get_or_init(|| {
        let Ok(v) = std::env::var("VLS_RS_BUSY_POLL_US") else { return Duration::ZERO };
        match v.trim().parse::<u64>() {
            Ok(us) => Duration::from_micros(us).min(MAX_BUSY_POLL),
            Err(_) => {
                tracing::warn!(value = %v, "VLS_RS_BUSY_POLL_US is not a number of microseconds: no busy poll");
                Duration::ZERO
            }
        }
    })
}

/// At most how long one wait may sleep: while the process holds a
/// connection only as a FIFO subscriber (a forked child's copy whose owner
/// is a relative), VPP does not wake it for that connection's data, and
/// each wait looks at it (`Vls::polls_subscriber_copies`).
fn slice_ms() -> Option<c_int> {
    crate::process::vls_if_made()
        .filter(|v| v.polls_subscriber_copies())
        .map(|_| crate::engine::SUBSCRIBER_POLL.as_millis() as c_int)
}

/// Calls `wait(timeout, held)` until it gives the kernel's answer: events,
/// an error, a signal (-1, `EINTR`) or 0 once `timeout_ms` has passed
/// (negative: never). Each call gets what is left of `timeout_ms`, at most
/// [`slice_ms`] when there is one. The first call runs with the thread's
/// signal mask (`held` is `None`); from the second on, signals are held
/// (`Some`), and `wait` sleeps with the mask the guard gives.
fn resume_early_returns(
    timeout_ms: c_int,
    mut wait: impl FnMut(c_int, Option<&HeldSignals>) -> c_int,
) -> c_int {
    let start = (timeout_ms > 0).then(Instant::now);
    let mut timeout = timeout_ms;
    let mut held: Option<HeldSignals> = None;
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) && held.is_none() {
            held = HeldSignals::hold();
        }
        set_errno(0);
        let slice = slice_ms();
        let rv = match slice {
            Some(s) if timeout < 0 || timeout > s => wait(s, held.as_ref()),
            _ => wait(timeout, held.as_ref()),
        };
        if rv != 0 {
            return rv;
        }
        if errno() == libc::EINTR {
            return -1;
        }
        match start {
            None => {} // no limit: wait again
            Some(start) => match left_ms(timeout_ms, start) {
                Some(left) => timeout = left,
                None => return 0,
            },
        }
    }
}

/// `epoll_wait(2)`, through LDP's when preloaded (see the module docs);
/// `libvls.so` exports it as `epoll_wait`.
///
/// # Safety
/// As `epoll_wait(2)`: `events` valid for `maxevents` entries.
#[no_mangle]
pub unsafe extern "C" fn vls_preload_epoll_wait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    maxevents: c_int,
    timeout: c_int,
) -> c_int {
    // The same as `epoll_pwait` without a mask, in LDP as in libc.
    // SAFETY: forwarded contract; a null mask.
    unsafe { vls_preload_epoll_pwait(epfd, events, maxevents, timeout, std::ptr::null()) }
}

/// `epoll_pwait(2)`, through LDP's when preloaded (see the module docs);
/// `libvls.so` exports it as `epoll_pwait`.
///
/// # Safety
/// As `epoll_pwait(2)`: `events` valid for `maxevents` entries, `sigmask`
/// null or valid.
#[no_mangle]
pub unsafe extern "C" fn vls_preload_epoll_pwait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    maxevents: c_int,
    timeout: c_int,
    sigmask: *const libc::sigset_t,
) -> c_int {
    wait_as_the_kernel(timeout, |t, held| {
        let mask = HeldSignals::sleep_mask(held, sigmask);
        // SAFETY: forwarded contract; `mask` the caller's or the guard's.
        unsafe { next_epoll_pwait(epfd, events, maxevents, t, mask) }
    })
}

/// One call of the `epoll_pwait` that follows this library (LDP's or
/// libc's; the system call if there is none).
///
/// # Safety
/// As `epoll_pwait(2)`.
unsafe fn next_epoll_pwait(
    epfd: c_int,
    events: *mut libc::epoll_event,
    maxevents: c_int,
    timeout: c_int,
    sigmask: *const libc::sigset_t,
) -> c_int {
    static NEXT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    let next = next_symbol(&NEXT, b"epoll_pwait\0");
    if next.is_null() {
        // SAFETY: the system call with the caller's arguments (the kernel's
        // sigset size is 8 bytes on Linux).
        return unsafe {
            libc::syscall(libc::SYS_epoll_pwait, epfd, events, maxevents, timeout, sigmask, 8usize) as c_int
        };
    }
    // SAFETY: `next` is the `epoll_pwait` that follows this library (LDP's
    // or libc's), called with the caller's arguments.
    unsafe {
        std::mem::transmute::<*mut c_void, EpollPwaitFn>(next)(epfd, events, maxevents, timeout, sigmask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_empty_return_is_resumed_for_the_time_left() {
        let start = Instant::now();
        let mut timeouts = Vec::new();
        // LDP's early answer: 0 events at once.
        let rv = resume_early_returns(60, |t, _| {
            timeouts.push(t);
            std::thread::sleep(Duration::from_millis(5));
            0
        });
        assert_eq!(rv, 0);
        assert!(start.elapsed() >= Duration::from_millis(60), "{:?}", start.elapsed());
        assert!(timeouts.len() >= 2, "{timeouts:?}");
        assert_eq!(timeouts[0], 60);
        assert!(timeouts.windows(2).all(|w| w[1] < w[0]), "each call gets less: {timeouts:?}");
    }

    #[test]
    fn a_busy_poll_looks_with_zero_timeouts_until_events_or_its_end() {
        let mut timeouts = Vec::new();
        let rv = look_without_sleeping(Duration::from_secs(5), &mut |t, held| {
            assert!(held.is_none());
            timeouts.push(t);
            if timeouts.len() < 4 {
                0
            } else {
                2
            }
        });
        assert_eq!(rv, Some(2));
        assert_eq!(timeouts, [0, 0, 0, 0]);
        let start = Instant::now();
        assert_eq!(look_without_sleeping(Duration::from_millis(3), &mut |_, _| 0), None);
        assert!(start.elapsed() >= Duration::from_millis(3));
    }

    #[test]
    fn events_and_errors_are_returned_as_they_come() {
        let mut calls = 0;
        assert_eq!(
            resume_early_returns(1_000, |_, _| {
                calls += 1;
                3
            }),
            3
        );
        assert_eq!(calls, 1);
        assert_eq!(
            resume_early_returns(1_000, |_, _| {
                set_errno(libc::EBADF);
                -1
            }),
            -1
        );
        assert_eq!(errno(), libc::EBADF);
    }

    #[test]
    fn a_wait_without_limit_is_resumed_until_events() {
        let mut calls = 0;
        let rv = resume_early_returns(-1, |t, _| {
            assert_eq!(t, -1);
            calls += 1;
            if calls < 3 {
                0
            } else {
                1
            }
        });
        assert_eq!((rv, calls), (1, 3));
    }

    #[test]
    fn a_signal_is_minus_one_with_eintr() {
        let mut calls = 0;
        let rv = resume_early_returns(-1, |_, _| {
            calls += 1;
            set_errno(libc::EINTR);
            0
        });
        assert_eq!((rv, errno(), calls), (-1, libc::EINTR, 1));
    }

    #[test]
    fn signals_are_held_from_the_first_resumed_call_on() {
        let mut held = Vec::new();
        let rv = resume_early_returns(-1, |_, h| {
            held.push(h.is_some());
            (held.len() == 3) as c_int
        });
        assert_eq!((rv, held), (1, vec![false, true, true]));
    }

    /// A signal that arrives between two resumed calls ends the next
    /// call's sleep: -1 with `EINTR`, not 0 at the timeout.
    #[test]
    fn a_signal_that_arrives_between_two_calls_ends_the_wait() {
        use crate::capi::held_signals::tests::{count_sigusr2, raise_usr2, usr2_seen};
        count_sigusr2();
        let before = usr2_seen();
        // SAFETY: a new epoll set, closed below.
        let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(epfd >= 0);
        let start = Instant::now();
        let mut calls = 0;
        let rv = resume_early_returns(3_000, |t, held| {
            calls += 1;
            if calls <= 2 {
                // LDP's early empty returns, the signal right after the second.
                if calls == 2 {
                    raise_usr2();
                }
                return 0;
            }
            let mut ev = [libc::epoll_event { events: 0, u64: 0 }];
            let mask = HeldSignals::sleep_mask(held, std::ptr::null());
            // SAFETY: the epoll set above, a local event array, a valid mask.
            let rv =
                unsafe { libc::syscall(libc::SYS_epoll_pwait, epfd, ev.as_mut_ptr(), 1, t, mask, 8usize) };
            if rv < 0 && errno() == libc::EINTR {
                // As LDP answers a signal.
                return 0;
            }
            rv as c_int
        });
        let err = errno();
        // SAFETY: closes the set this test made.
        unsafe { libc::close(epfd) };
        assert_eq!((rv, err), (-1, libc::EINTR), "after {:?}", start.elapsed());
        assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
        assert_eq!((usr2_seen(), calls), (before + 1, 3));
    }

    #[test]
    fn what_is_left_of_a_timeout_is_rounded_up_and_ends() {
        let start = Instant::now();
        let left = left_ms(10_000, start).expect("time left");
        assert!((9_000..=10_000).contains(&left), "{left}");
        assert_eq!(left_ms(1, start - Duration::from_millis(5)), None);
        // 0.4 ms left is 1 ms, not 0 (which would be a poll).
        let just = left_ms(2, start - Duration::from_micros(1_600));
        assert!(matches!(just, Some(1) | None), "{just:?}");
    }
}
