//! Signals held back between the sleeps of a wait that sleeps in slices.
//!
//! `poll`, `select` and a resumed `epoll_wait` here sleep in the kernel in
//! slices and look at VPP's sessions in between (see `ldp_poll`,
//! `ldp_wait`). A signal that arrives between two sleeps runs its handler
//! there, and the next sleep knows nothing of it: a program whose handler
//! only sets a flag that it reads once its wait returns (tinyproxy stops on
//! `SIGTERM` that way, its listener waiting without a timeout) sleeps on
//! for ever. The kernel's own `poll` has such a window only in the few
//! instructions before it enters the kernel; a wait in slices has one per
//! slice.
//!
//! So from its first sleep on, such a wait holds the asynchronous signals
//! blocked ([`HeldSignals`]) and sleeps with the mask it was called with,
//! which the kernel swaps in atomically (`ppoll`, `epoll_pwait`): a signal
//! that came between two sleeps is pending, and the next sleep ends at once
//! with `EINTR`. The guard restores the caller's mask when the wait ends.
//!
//! Signals a fault raises (`SIGSEGV`, `SIGBUS`, `SIGFPE`, `SIGILL`,
//! `SIGTRAP`, `SIGSYS`) are never held: the kernel kills a thread whose
//! fault signal is blocked, whatever handler the program installed.

use std::mem::MaybeUninit;

/// The calling thread's signal mask as it was before [`HeldSignals::hold`];
/// restored on drop. Not `Send`: a signal mask is per thread.
pub(super) struct HeldSignals {
    before: libc::sigset_t,
    _per_thread: std::marker::PhantomData<*const ()>,
}

impl HeldSignals {
    /// Blocks every signal the calling thread can block except the fault
    /// signals; `None` if the mask could not be read or changed (the wait
    /// then goes on without holding, as before).
    pub(super) fn hold() -> Option<Self> {
        let mut held = MaybeUninit::<libc::sigset_t>::uninit();
        let mut before = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: `held` is initialised by `sigfillset` before it is read;
        // `before` is written by `pthread_sigmask` when it returns 0, and
        // read only then.
        unsafe {
            libc::sigfillset(held.as_mut_ptr());
            for fault in
                [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGTRAP, libc::SIGSYS]
            {
                libc::sigdelset(held.as_mut_ptr(), fault);
            }
            if libc::pthread_sigmask(libc::SIG_BLOCK, held.as_ptr(), before.as_mut_ptr()) != 0 {
                return None;
            }
            Some(HeldSignals { before: before.assume_init(), _per_thread: std::marker::PhantomData })
        }
    }

    /// The mask to sleep with: the caller's own (`ppoll`'s or
    /// `epoll_pwait`'s argument) if it gave one, else, with signals held,
    /// the thread's mask from before the hold (null without: the thread's
    /// mask as it is).
    pub(super) fn sleep_mask(held: Option<&Self>, callers: *const libc::sigset_t) -> *const libc::sigset_t {
        match held {
            Some(h) if callers.is_null() => &h.before,
            _ => callers,
        }
    }
}

impl Drop for HeldSignals {
    fn drop(&mut self) {
        // SAFETY: `before` is a mask `pthread_sigmask` gave back, and this
        // is the thread it was taken on (the type is not `Send`).
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.before, std::ptr::null_mut()) };
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::cell::Cell;

    thread_local! {
        /// How many times [`count_usr2`] ran on this thread (tests run in
        /// parallel, each raising the signal on its own thread).
        static USR2_SEEN: Cell<usize> = const { Cell::new(0) };
    }

    extern "C" fn count_usr2(_: libc::c_int) {
        USR2_SEEN.with(|n| n.set(n.get() + 1));
    }

    /// How many times this thread's `SIGUSR2` handler ran.
    pub(in crate::capi) fn usr2_seen() -> usize {
        USR2_SEEN.with(Cell::get)
    }

    /// Installs a `SIGUSR2` handler that counts (no `SA_RESTART`).
    pub(in crate::capi) fn count_sigusr2() {
        // SAFETY: a plain `sigaction` with a zeroed struct and a handler
        // that only touches an atomic.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = count_usr2 as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGUSR2, &sa, std::ptr::null_mut()), 0);
        }
    }

    /// Sends `SIGUSR2` to the calling thread.
    pub(in crate::capi) fn raise_usr2() {
        // SAFETY: a signal to the calling thread, whose handler is set.
        unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGUSR2) };
    }

    fn blocked(sig: libc::c_int) -> bool {
        let mut now = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: reads the calling thread's mask into `now`.
        unsafe {
            assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), now.as_mut_ptr()), 0);
            libc::sigismember(now.as_ptr(), sig) == 1
        }
    }

    #[test]
    fn a_held_signal_waits_for_the_sleep_and_ends_it() {
        count_sigusr2();
        let seen = usr2_seen();
        let held = HeldSignals::hold().expect("hold");
        assert!(blocked(libc::SIGUSR2) && blocked(libc::SIGTERM));
        assert!(!blocked(libc::SIGSEGV) && !blocked(libc::SIGBUS), "fault signals are never held");
        raise_usr2();
        assert_eq!(usr2_seen(), seen, "held: the handler has not run");
        let start = std::time::Instant::now();
        // SAFETY: an empty set, a local timespec and a valid mask.
        let rv = unsafe {
            let ts = libc::timespec { tv_sec: 5, tv_nsec: 0 };
            libc::syscall(
                libc::SYS_ppoll,
                std::ptr::null_mut::<libc::pollfd>(),
                0,
                &ts,
                HeldSignals::sleep_mask(Some(&held), std::ptr::null()),
                8usize,
            )
        };
        let err = std::io::Error::last_os_error().raw_os_error();
        assert_eq!((rv, err), (-1, Some(libc::EINTR)), "the sleep ends for the pending signal");
        assert!(start.elapsed() < std::time::Duration::from_secs(4));
        assert_eq!(usr2_seen(), seen + 1);
        drop(held);
        assert!(!blocked(libc::SIGUSR2) && !blocked(libc::SIGTERM), "the mask from before");
    }

    #[test]
    fn the_callers_own_sleep_mask_wins() {
        let held = HeldSignals::hold().expect("hold");
        let mut callers = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: initialises `callers`.
        unsafe { libc::sigemptyset(callers.as_mut_ptr()) };
        assert_eq!(HeldSignals::sleep_mask(Some(&held), callers.as_ptr()), callers.as_ptr());
        assert_ne!(HeldSignals::sleep_mask(Some(&held), std::ptr::null()), std::ptr::null());
        assert_eq!(HeldSignals::sleep_mask(None, callers.as_ptr()), callers.as_ptr());
        assert!(
            HeldSignals::sleep_mask(None, std::ptr::null()).is_null(),
            "without a hold: the thread's mask"
        );
    }
}
