//! `poll` and `ppoll` in front of LDP's: they sleep, and a signal ends them.
//!
//! LDP's `poll` looks at its VPP sessions and its kernel descriptors with
//! zero waits in a loop until something is ready or the timeout passes: a
//! program waiting in `poll` (a listener with nothing to accept, a timeout
//! of minutes) keeps a core busy for the whole wait, and a signal does not
//! end it (the loop never returns `EINTR`), so a program that stops on
//! `SIGTERM` by leaving its `poll` never stops. tinyproxy's listener does
//! exactly that: 100 % of a core while idle, and `SIGTERM` ignored. LDP's
//! `ppoll` is not implemented (`ENOSYS`).
//!
//! Here (only under LDP, only when the set holds a VPP session; a set of
//! kernel descriptors goes straight to the kernel):
//! - the sessions are looked at as LDP does (VLS's `poll` with no wait);
//! - between looks the thread sleeps in the kernel's `ppoll` on its kernel
//!   descriptors plus, while it is the only thread using VLS, the message
//!   queue's eventfd (VPP writes it when a message arrives, so the sleep
//!   ends when a session may have changed; for `POLLOUT`, VPP is asked to
//!   send one when a full TX FIFO gets room; see `Vls::mq_signal_for_poll`).
//!   Before that sleep the sessions polled for `POLLIN` are re-armed: VPP
//!   signals data only while a FIFO's event flag is clear, and VCL's poll
//!   can leave it set on an empty FIFO (`Vls::rearm_rx_events_for_poll`);
//!   a sleep that ran its whole slice before a session was found ready is
//!   counted as a late wake-up (`VLS_RS_STATS`).
//!   Otherwise it sleeps in slices of [`SLICE`], and a look follows each.
//!   A wait that includes room to write (`POLLOUT`) first looks without
//!   sleeping for [`SPIN`], and any wait for `VLS_RS_BUSY_POLL_US`
//!   microseconds if set (see `ldp_wait::busy_poll`);
//! - a signal ends the wait with -1 and `EINTR`, as the kernel's poll does,
//!   also one that arrives between two sleeps: from the first sleep on the
//!   asynchronous signals are held blocked between sleeps, and each sleep
//!   swaps in the caller's mask (see `held_signals`). `ppoll`'s signal
//!   mask applies while the thread sleeps in the kernel;
//! - the answer is the kernel's: the number of entries with events.
//!
//! VCL's own waits on its message queue (`svm_msg_q_timedwait`) call `poll`
//! too, and so reach this one: the calling thread's message-queue eventfd
//! is always a kernel descriptor here.
//!
//! Like LDP, a descriptor number at or above LDP's base (`2^LDP_SID_BIT`)
//! is taken for a VPP session (see `ldp_fds`), if VLS has that handle;
//! otherwise it is the kernel's.
//!
//! `libvls.so` exports the two as `poll` and `ppoll` (aliases the build
//! script adds to the cdylib only, as for `epoll_wait`).

use std::ffi::{c_int, c_short, c_void};
use std::sync::atomic::AtomicPtr;
use std::time::{Duration, Instant};

use super::held_signals::HeldSignals;
use super::ldp_fds::ldp_base;
use super::ldp_wait::{busy_poll, next_symbol, under_ldp};
use crate::errno::set_errno;

/// The longest sleep between two looks when the message queue's eventfd
/// cannot be used (another thread uses VLS, or no `use-mq-eventfd`).
const SLICE: Duration = Duration::from_millis(1);
/// The longest sleep on the eventfd: a second thread that arrives during
/// the sleep may take the signal meant for this one.
const SIGNALLED_SLICE: Duration = Duration::from_millis(100);
/// How long a wait for room to write looks without sleeping first. VPP
/// tells a writer of room in its TX FIFO only after the reader's dequeue
/// notice has gone through VPP, and a reader that drains as fast as the
/// writer fills makes room within microseconds: iperf3's `select` loop
/// (writing as fast as the reader drains) lost most of its speed sleeping
/// at once, and kept it with this. Waits for input only sleep at once
/// (VPP's data event wakes them directly).
const SPIN: Duration = Duration::from_millis(1);

/// VCL's `vcl_poll_t` (vppcom.h).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct VclPoll {
    fds_ndx: u32,
    sh: u32,
    events: c_short,
    revents: c_short,
}

/// What [`poll_sessions_and_fds`] needs from VLS and the kernel.
trait PollEnv {
    /// The VCL session handle of a VLS handle, if VLS knows it (and it is
    /// not the descriptor of VCL's own message-queue eventfd).
    fn session(&mut self, vlsh: i32) -> Option<u32>;
    /// The message-queue eventfd to sleep on, its pending signal consumed,
    /// with VPP asked to signal room in the TX FIFOs of `writers`.
    fn mq_signal(&mut self, writers: &[u32]) -> Option<c_int>;
    /// Looks at the sessions without waiting (VLS's `poll`, wait 0): fills
    /// their `revents`; negative: a VPPCOM error.
    fn look(&mut self, vp: &mut [VclPoll]) -> c_int;
    /// Before a sleep on the eventfd: makes VPP's next enqueue on each of
    /// `readers` (found unreadable) send an event; true if data arrived
    /// meanwhile (see `Vls::rearm_rx_events_for_poll`).
    fn rearm_readers(&mut self, readers: &[u32]) -> bool;
    /// A sleep on the eventfd lasted its whole slice, and the next look
    /// found a session ready: VPP's message for it never came.
    fn woke_late(&mut self);
    /// The kernel's `ppoll` on `fds` for at most `timeout` (`None`: no
    /// limit), with the caller's `sigmask`, or the mask from before `held`
    /// when signals are held and the caller gave none; errno set on -1.
    fn kernel_wait(
        &mut self,
        fds: &mut [libc::pollfd],
        timeout: Option<Duration>,
        held: Option<&HeldSignals>,
    ) -> c_int;
}

/// The kernel's `ppoll(2)` (not LDP's): `sigmask` null or valid.
fn kernel_ppoll(
    fds: &mut [libc::pollfd],
    timeout: Option<Duration>,
    sigmask: *const libc::sigset_t,
) -> c_int {
    let ts = timeout.map(|t| libc::timespec {
        tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: t.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a valid array of its length, `ts_ptr` null or a
    // local timespec, `sigmask` null or valid (caller's contract); the
    // kernel's sigset is 8 bytes on Linux.
    unsafe {
        libc::syscall(libc::SYS_ppoll, fds.as_mut_ptr(), fds.len() as libc::nfds_t, ts_ptr, sigmask, 8usize)
            as c_int
    }
}

/// The events a session entry asks VCL for (VCL knows `POLLIN`/`POLLOUT`).
fn vcl_events(events: c_short) -> c_short {
    let mut e = events;
    if events & libc::POLLRDNORM != 0 {
        e |= libc::POLLIN;
    }
    if events & libc::POLLWRNORM != 0 {
        e |= libc::POLLOUT;
    }
    e
}

/// VCL's answer for a session entry, in the caller's terms.
fn caller_revents(asked: c_short, got: c_short) -> c_short {
    let mut r = got;
    if got & libc::POLLIN != 0 && asked & libc::POLLRDNORM != 0 {
        r |= libc::POLLRDNORM;
    }
    if got & libc::POLLOUT != 0 && asked & libc::POLLWRNORM != 0 {
        r |= libc::POLLWRNORM;
    }
    r
}

/// `poll` over `fds`, of which those at or above `base` are VPP sessions:
/// looks at the sessions, sleeps in the kernel between looks (see the
/// module docs), until something is ready, `deadline` passes (`None`:
/// never) or a signal arrives (-1, `EINTR`).
/// If a session is polled for `POLLOUT`, the first `spin` of the wait
/// looks without sleeping; any wait does for its first `busy_poll`.
fn poll_sessions_and_fds(
    fds: &mut [libc::pollfd],
    base: i64,
    deadline: Option<Instant>,
    spin: Duration,
    busy_poll: Duration,
    env: &mut impl PollEnv,
) -> c_int {
    let start = Instant::now();
    let mut sessions: Vec<VclPoll> = Vec::new();
    let mut kernel: Vec<libc::pollfd> = Vec::new();
    let mut kernel_at: Vec<usize> = Vec::new();
    for (i, p) in fds.iter_mut().enumerate() {
        p.revents = 0;
        if p.fd < 0 {
            continue;
        }
        let session = (i64::from(p.fd) >= base)
            .then(|| i32::try_from(i64::from(p.fd) - base).ok())
            .flatten()
            .and_then(|vlsh| env.session(vlsh));
        match session {
            Some(sh) => {
                sessions.push(VclPoll { fds_ndx: i as u32, sh, events: vcl_events(p.events), revents: 0 })
            }
            // A kernel descriptor, also one at or above the base that is no
            // session (the kernel answers `POLLNVAL` if it is none either).
            None => {
                kernel.push(*p);
                kernel_at.push(i);
            }
        }
    }
    if sessions.is_empty() {
        // Only kernel descriptors after all: one wait in the kernel.
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        return env.kernel_wait(fds, left, None);
    }
    let n_kernel = kernel.len();
    let writers: Vec<u32> = sessions.iter().filter(|s| s.events & libc::POLLOUT != 0).map(|s| s.sh).collect();
    let readers: Vec<u32> = sessions.iter().filter(|s| s.events & libc::POLLIN != 0).map(|s| s.sh).collect();
    let spin = if writers.is_empty() { busy_poll } else { spin.max(busy_poll) };
    // The last sleep was on the eventfd and lasted its whole slice.
    let mut slept_whole_slice = false;
    // From the first sleep on (see `held_signals`).
    let mut held: Option<HeldSignals> = None;
    loop {
        let signal = env.mq_signal(&writers);
        let rv = env.look(&mut sessions);
        if rv < 0 {
            set_errno(-rv);
            return -1;
        }
        let ready_sessions = sessions.iter().filter(|s| s.revents != 0).count();
        let ready_now = ready_sessions > 0;
        if ready_now && slept_whole_slice {
            env.woke_late();
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let sleep = if ready_now || left == Some(Duration::ZERO) || start.elapsed() < spin {
            Some(Duration::ZERO)
        } else {
            let cap = if signal.is_some() { SIGNALLED_SLICE } else { SLICE };
            Some(left.map_or(cap, |l| l.min(cap)))
        };
        // Data that arrived while the readers were re-armed may have sent
        // no event: look again (the kernel's descriptors are still checked).
        let sleep = match (signal, sleep) {
            (Some(_), Some(s)) if s > Duration::ZERO && env.rearm_readers(&readers) => Some(Duration::ZERO),
            _ => sleep,
        };
        kernel.truncate(n_kernel);
        let on_signal = signal.is_some() && sleep != Some(Duration::ZERO);
        if let (Some(fd), true) = (signal, on_signal) {
            kernel.push(libc::pollfd { fd, events: libc::POLLIN, revents: 0 });
        }
        for k in kernel.iter_mut() {
            k.revents = 0;
        }
        if sleep != Some(Duration::ZERO) && held.is_none() {
            held = HeldSignals::hold();
        }
        if env.kernel_wait(&mut kernel, sleep, held.as_ref()) < 0 {
            // EINTR (a signal) or the kernel's error for the set.
            return -1;
        }
        slept_whole_slice =
            on_signal && sleep == Some(SIGNALLED_SLICE) && kernel.iter().all(|k| k.revents == 0);
        let ready_kernel = kernel[..n_kernel].iter().filter(|k| k.revents != 0).count();
        let timed_out = deadline.is_some_and(|d| Instant::now() >= d);
        if ready_now || ready_kernel > 0 || timed_out {
            for s in &sessions {
                let p = &mut fds[s.fds_ndx as usize];
                p.revents = caller_revents(p.events, s.revents);
            }
            for (k, &i) in kernel[..n_kernel].iter().zip(&kernel_at) {
                fds[i].revents = k.revents;
            }
            return (ready_sessions + ready_kernel) as c_int;
        }
    }
}

/// VLS and the kernel, for one call.
struct Ldp {
    vls: &'static crate::engine::Vls<crate::real_vcl::RealVcl>,
    sigmask: *const libc::sigset_t,
    base: i64,
    mq_eventfd: Option<c_int>,
}

impl PollEnv for Ldp {
    fn session(&mut self, vlsh: i32) -> Option<u32> {
        // VCL's own waits poll its message-queue eventfd (through this
        // `poll`, from inside a VLS call): always the kernel's.
        if self.mq_eventfd.is_some_and(|fd| i64::from(fd) == self.base + i64::from(vlsh)) {
            return None;
        }
        let sh = self.vls.vlsh_to_sh(vlsh);
        (sh != crate::handle::INVALID).then_some(sh)
    }
    fn mq_signal(&mut self, writers: &[u32]) -> Option<c_int> {
        self.vls.mq_signal_for_poll(writers)
    }
    fn rearm_readers(&mut self, readers: &[u32]) -> bool {
        self.vls.rearm_rx_events_for_poll(readers)
    }
    fn woke_late(&mut self) {
        super::stats::count_late_wakeup();
        tracing::debug!("poll: a session became ready without a message from VPP (woken by the slice's end)");
    }
    fn look(&mut self, vp: &mut [VclPoll]) -> c_int {
        if vp.is_empty() {
            return 0;
        }
        // SAFETY: `vp` is a valid array of `vcl_poll_t` of its length.
        unsafe { self.vls.poll(vp.as_mut_ptr().cast::<c_void>(), vp.len() as u32, 0.0) }
    }
    fn kernel_wait(
        &mut self,
        fds: &mut [libc::pollfd],
        timeout: Option<Duration>,
        held: Option<&HeldSignals>,
    ) -> c_int {
        kernel_ppoll(fds, timeout, HeldSignals::sleep_mask(held, self.sigmask))
    }
}

/// The caller's set holds a descriptor LDP takes for a VPP session, and VLS
/// exists: the base of LDP's range, else `None` (the kernel answers).
fn ldp_sessions_in(fds: &[libc::pollfd]) -> Option<i64> {
    let base = ldp_base_if_active()?;
    fds.iter().any(|p| p.fd >= 0 && i64::from(p.fd) >= base).then_some(base)
}

/// `ppoll` semantics over `fds` with `timeout` (`None`: no limit).
///
/// # Safety
/// `fds` valid for `nfds` entries; `sigmask` null or valid.
unsafe fn poll_as_the_kernel(
    fds: *mut libc::pollfd,
    nfds: libc::nfds_t,
    timeout: Option<Duration>,
    sigmask: *const libc::sigset_t,
) -> c_int {
    if fds.is_null() && nfds > 0 {
        set_errno(libc::EFAULT);
        return -1;
    }
    let fds: &mut [libc::pollfd] = if nfds == 0 {
        &mut []
    } else {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(fds, nfds as usize) }
    };
    poll_slice(fds, timeout, sigmask)
}

/// [`poll_as_the_kernel`] over a slice (also `select`'s, see `ldp_select`).
/// `sigmask` null or valid.
pub(super) fn poll_slice(
    fds: &mut [libc::pollfd],
    timeout: Option<Duration>,
    sigmask: *const libc::sigset_t,
) -> c_int {
    let Some(base) = ldp_sessions_in(fds) else { return kernel_ppoll(fds, timeout, sigmask) };
    let deadline = timeout.map(|t| Instant::now() + t);
    let vls = crate::process::vls();
    // VCL's own waits on its message queue: no session in them (see
    // `Ldp::session`), so one wait in the kernel.
    let mq_eventfd = vls.mq_eventfd();
    // LDP registers a thread new to VLS before its first look.
    let _ = vls.detect_thread();
    poll_sessions_and_fds(fds, base, deadline, SPIN, busy_poll(), &mut Ldp { vls, sigmask, base, mq_eventfd })
}

/// The base of LDP's descriptor range if LDP is preloaded and VLS exists
/// (a descriptor at or above it may be a VPP session); else `None`.
pub(super) fn ldp_base_if_active() -> Option<i64> {
    if !under_ldp() {
        return None;
    }
    let base = ldp_base()?;
    crate::process::vls_if_made()?;
    Some(base)
}

/// The limit a `timespec` timeout gives (null: none); `Err` with errno
/// `EINVAL` for a negative or malformed one.
///
/// # Safety
/// `ts` null or valid.
pub(super) unsafe fn limit_of_timespec(ts: *const libc::timespec) -> Result<Option<Duration>, ()> {
    if ts.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's contract.
    let ts = unsafe { *ts };
    if ts.tv_sec < 0 || !(0..1_000_000_000).contains(&ts.tv_nsec) {
        set_errno(libc::EINVAL);
        return Err(());
    }
    Ok(Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)))
}

/// `poll(2)`, with LDP's sessions (see the module docs); `libvls.so`
/// exports it as `poll`.
///
/// # Safety
/// As `poll(2)`: `fds` valid for `nfds` entries.
#[no_mangle]
pub unsafe extern "C" fn vls_preload_poll(
    fds: *mut libc::pollfd,
    nfds: libc::nfds_t,
    timeout: c_int,
) -> c_int {
    type PollFn = unsafe extern "C" fn(*mut libc::pollfd, libc::nfds_t, c_int) -> c_int;
    if !under_ldp() {
        static NEXT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
        let next = next_symbol(&NEXT, b"poll\0");
        if !next.is_null() {
            // SAFETY: `next` is the `poll` after this library (libc's),
            // called with the caller's arguments.
            return unsafe { std::mem::transmute::<*mut c_void, PollFn>(next)(fds, nfds, timeout) };
        }
    }
    let timeout = u64::try_from(timeout).ok().map(Duration::from_millis);
    // SAFETY: forwarded contract.
    unsafe { poll_as_the_kernel(fds, nfds, timeout, std::ptr::null()) }
}

/// `ppoll(2)`, with LDP's sessions (see the module docs); `libvls.so`
/// exports it as `ppoll`.
///
/// # Safety
/// As `ppoll(2)`: `fds` valid for `nfds` entries, `timeout` and `sigmask`
/// null or valid.
#[no_mangle]
pub unsafe extern "C" fn vls_preload_ppoll(
    fds: *mut libc::pollfd,
    nfds: libc::nfds_t,
    timeout: *const libc::timespec,
    sigmask: *const libc::sigset_t,
) -> c_int {
    // SAFETY: forwarded contract.
    let Ok(timeout) = (unsafe { limit_of_timespec(timeout) }) else { return -1 };
    // SAFETY: forwarded contract.
    unsafe { poll_as_the_kernel(fds, nfds, timeout, sigmask) }
}

#[cfg(test)]
mod tests;
