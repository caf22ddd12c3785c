//! How a parent learns that a forked child is gone.
//!
//! When a child dies its worker and copies must be cleaned up, but not in
//! the SIGCHLD handler: the signal may interrupt code holding the
//! allocator's or VCL's locks. The handler ([`intercept_sigchld`]) only
//! queues the dead child's worker in [`PendingExits`] (atomic bit sets,
//! async-signal-safe; the worker is found by the child's pid in the
//! processes' shared table, `fork::SharedTable`) and then calls the
//! application's own handler; the cleanup runs later from
//! `epoll_wait`/`select`/`poll` and at exit. The queue is only its
//! trigger: the cleanup looks at every child by the pid its worker has
//! *then* (VCL may have given a queued worker's index to a newer child
//! meanwhile). The interceptor is installed once per process and never
//! chains to itself.
//!
//! The handler saves and restores `errno`; [`errno`] and [`set_errno`]
//! serve the fork hooks too.

use std::cell::UnsafeCell;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};

use super::fork::{SharedTable, MAX_WORKERS, WORDS};
use crate::errno::{errno, set_errno};

/// Workers of exited children, queued by the SIGCHLD handler and taken by
/// the deferred cleanup, which uses them only as its trigger (see the
/// module docs). Only atomic bit operations: async-signal-safe, and no
/// queue to overflow.
pub struct PendingExits {
    bits: [AtomicU64; WORDS],
    any: AtomicBool,
}

impl Default for PendingExits {
    fn default() -> Self {
        Self::new()
    }
}

impl PendingExits {
    /// An empty queue.
    pub const fn new() -> Self {
        PendingExits { bits: [const { AtomicU64::new(0) }; WORDS], any: AtomicBool::new(false) }
    }

    /// Queues worker `w` (async-signal-safe).
    pub fn queue(&self, w: u32) {
        if (w as usize) < MAX_WORKERS {
            self.bits[w as usize / 64].fetch_or(1u64 << (w % 64), Ordering::AcqRel);
        }
        self.any.store(true, Ordering::Release);
    }

    /// Notes that some child exited, worker unknown (async-signal-safe).
    pub fn note_exit(&self) {
        self.any.store(true, Ordering::Release);
    }

    /// Cheap check for the hot path: anything queued or noted?
    #[inline]
    pub fn is_pending(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Takes every queued worker (each exactly once), and clears the "some
    /// child exited" note.
    pub fn take(&self) -> Vec<u32> {
        self.any.store(false, Ordering::Release);
        let mut out = Vec::new();
        for (i, word) in self.bits.iter().enumerate() {
            let mut v = word.swap(0, Ordering::AcqRel);
            while v != 0 {
                out.push((i * 64) as u32 + v.trailing_zeros());
                v &= v - 1;
            }
        }
        out
    }
}

/// The process's queue of exited children (filled by the SIGCHLD handler).
pub static PENDING_EXITS: PendingExits = PendingExits::new();

/// The table the SIGCHLD handler looks pids up in (set before the first fork).
static SIGNAL_TABLE: AtomicPtr<()> = AtomicPtr::new(std::ptr::null_mut());

/// Makes `table` the one the SIGCHLD handler uses.
pub fn set_signal_table(table: &SharedTable) {
    SIGNAL_TABLE.store(table.as_ptr() as *mut (), Ordering::Release);
}

/// What the SIGCHLD handler does for VLS: queue the worker of `pid` (or, if
/// the pid is unknown, note that a child exited). Async-signal-safe.
pub(crate) fn child_exited(pid: i32) {
    let p = SIGNAL_TABLE.load(Ordering::Acquire);
    if p.is_null() {
        return;
    }
    // SAFETY: stored by `set_signal_table` from `SharedTable::as_ptr`.
    let table = unsafe { SharedTable::from_ptr(p) };
    match table.worker_of_pid(pid) {
        Some(w) => PENDING_EXITS.queue(w),
        None => PENDING_EXITS.note_exit(),
    }
}

/// The application's SIGCHLD action, saved when the interceptor is
/// installed (written once, before the handler can run; read by it).
struct SavedAction(UnsafeCell<Option<libc::sigaction>>);

// SAFETY: written only by `intercept_sigchld` under `INSTALL`, before our
// handler is installed; read-only afterwards.
unsafe impl Sync for SavedAction {}

/// The interceptor's address, as `sigaction` stores handlers.
fn interceptor_address() -> usize {
    on_sigchld as *const () as usize
}

static PREVIOUS_ACTION: SavedAction = SavedAction(UnsafeCell::new(None));
static INSTALL: std::sync::Once = std::sync::Once::new();

extern "C" fn on_sigchld(signum: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // Saved and restored, so the interrupted code does not see ours.
    let saved_errno = errno();
    let pid = if info.is_null() {
        0
    } else {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        unsafe { (*info).si_pid() }
    };
    child_exited(pid);
    // SAFETY: written before this handler was installed, never after.
    if let Some(prev) = unsafe { &*PREVIOUS_ACTION.0.get() } {
        let h = prev.sa_sigaction;
        if h == libc::SIG_IGN {
            // The application asked for children to be reaped
            // automatically; intercepting SIGCHLD turned that off.
            if pid > 0 {
                // SAFETY: async-signal-safe; reaps only that child.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
            }
        } else if h != libc::SIG_DFL && h != interceptor_address() {
            if prev.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the application installed this function with
                // SA_SIGINFO, so it has this signature.
                let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { std::mem::transmute(h) };
                f(signum, info, ctx);
            } else {
                // SAFETY: installed without SA_SIGINFO: a plain handler.
                let f: extern "C" fn(i32) = unsafe { std::mem::transmute(h) };
                f(signum);
            }
        }
    }
    set_errno(saved_errno);
}

/// Installs the SIGCHLD interceptor, once per process (later calls, also
/// after forks, do nothing): the application's action is saved and called
/// after VLS has queued the exit. True if the interceptor is in place.
pub fn intercept_sigchld() -> bool {
    let mut ok = true;
    INSTALL.call_once(|| {
        // SAFETY: plain sigaction calls on valid structs; the saved action
        // is written before ours is installed, so the handler never reads
        // it half-written.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut old) != 0 {
                ok = false;
                return;
            }
            *PREVIOUS_ACTION.0.get() = action_to_chain(old);
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = interceptor_address();
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | (old.sa_flags & libc::SA_NOCLDSTOP);
            libc::sigemptyset(&mut sa.sa_mask);
            ok = libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut()) == 0;
        }
    });
    ok && is_intercepting()
}

/// The action the interceptor calls after its own work, given the action
/// in place when it is installed: never the interceptor itself (it may be
/// in place already, inherited across a fork), or it would call itself
/// forever.
fn action_to_chain(current: libc::sigaction) -> Option<libc::sigaction> {
    (current.sa_sigaction != interceptor_address()).then_some(current)
}

/// Is VLS's SIGCHLD handler the process's current one?
pub(crate) fn is_intercepting() -> bool {
    // SAFETY: reads the current action into a valid struct.
    unsafe {
        let mut cur: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut cur) == 0
            && cur.sa_sigaction == interceptor_address()
    }
}

/// Has child `pid` (of this process) exited? True once it is a zombie or
/// already reaped; it is not reaped here (the application still can).
pub fn has_exited(pid: i32) -> bool {
    // SAFETY: `info` is a valid out struct; WNOWAIT leaves the child alone.
    unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        let rv = libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        );
        if rv != 0 {
            // ECHILD: reaped already (or not our child: then its parent
            // cleans up; a worker of another process is not ours to free).
            return io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD);
        }
        info.si_pid() == pid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static APP_HANDLER_RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    extern "C" fn app_handler(_: i32) {
        APP_HANDLER_RUNS.fetch_add(1, Ordering::SeqCst);
    }

    fn action(handler: usize) -> libc::sigaction {
        // SAFETY: all-zero is a valid sigaction.
        let mut sa: libc::sigaction = unsafe { std::mem::zeroed() };
        sa.sa_sigaction = handler;
        sa
    }

    #[test]
    fn the_interceptor_never_chains_to_itself() {
        assert!(action_to_chain(action(interceptor_address())).is_none(), "inherited interceptor");
        let app = action(app_handler as *const () as usize);
        assert_eq!(action_to_chain(app).map(|a| a.sa_sigaction), Some(app.sa_sigaction));
        assert_eq!(action_to_chain(action(libc::SIG_DFL)).map(|a| a.sa_sigaction), Some(libc::SIG_DFL));
    }

    /// The real signal path: the application's handler is installed, VLS
    /// intercepts (twice: the second call does nothing), a child exits; the
    /// interceptor queues the child's worker and the application's handler
    /// runs.
    #[test]
    fn sigchld_queues_the_child_and_runs_the_applications_handler() {
        // SAFETY: installs a handler that only does an atomic add.
        unsafe {
            let mut sa = action(app_handler as *const () as usize);
            libc::sigemptyset(&mut sa.sa_mask);
            assert_eq!(libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut()), 0);
        }
        assert!(intercept_sigchld() && intercept_sigchld(), "installed, and a second call is harmless");
        let t = SharedTable::map().unwrap();
        set_signal_table(&t);
        let before = APP_HANDLER_RUNS.load(Ordering::SeqCst);
        let (rd, wr) = {
            let mut fds = [0; 2];
            // SAFETY: valid out array.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            (fds[0], fds[1])
        };
        // SAFETY: the child only blocks on a read and calls `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut b = 0u8;
            // SAFETY: waits until the parent has recorded us, then ends.
            unsafe {
                libc::read(rd, (&mut b as *mut u8).cast(), 1);
                libc::_exit(0);
            }
        }
        t.set_process(700, pid, 0);
        // SAFETY: lets the child go.
        assert_eq!(unsafe { libc::write(wr, [1u8].as_ptr().cast(), 1) }, 1);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut queued = Vec::new();
        while !queued.contains(&700) {
            assert!(std::time::Instant::now() < deadline, "the exit was not queued");
            queued.extend(PENDING_EXITS.take());
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(has_exited(pid));
        assert!(APP_HANDLER_RUNS.load(Ordering::SeqCst) > before, "the application's handler ran");
        // SAFETY: reaps our own child; closes our pipe.
        unsafe {
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            libc::close(rd);
            libc::close(wr);
        }
    }

    #[test]
    fn pending_exits_hand_out_each_worker_once() {
        let q = PendingExits::new();
        assert!(!q.is_pending());
        q.queue(3);
        q.queue(700);
        q.queue(3);
        q.queue(5000); // out of range: only noted
        assert!(q.is_pending());
        assert_eq!(q.take(), vec![3, 700]);
        assert!(!q.is_pending());
        assert!(q.take().is_empty());
        q.note_exit();
        assert!(q.is_pending() && q.take().is_empty());
    }

    #[test]
    fn queueing_from_many_threads_loses_nothing() {
        let q = std::sync::Arc::new(PendingExits::new());
        let hs: Vec<_> = (0..4)
            .map(|t| {
                let q = q.clone();
                std::thread::spawn(move || {
                    for w in (t..MAX_WORKERS as u32).step_by(4) {
                        q.queue(w);
                    }
                })
            })
            .collect();
        let mut seen = Vec::new();
        while hs.iter().any(|h| !h.is_finished()) {
            seen.extend(q.take());
        }
        for h in hs {
            h.join().unwrap();
        }
        seen.extend(q.take());
        seen.sort_unstable();
        assert_eq!(seen, (0..MAX_WORKERS as u32).collect::<Vec<_>>());
    }
}
