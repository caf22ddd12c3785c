//! `select` and `poll` of [`Vls`]: VCL's own, under the worker's locks
//! (released while VCL sleeps), for the sessions of the calling thread's
//! worker. Shared listeners in the maps start listening on this process's
//! worker first (see `fork_hooks`); while VPP is gone nothing is ready.
//! The answer keeps only the bits the caller asked for and counts bits as
//! `select(2)` does.

use std::ffi::{c_ulong, c_void};
use std::sync::atomic::Ordering;

use super::access::WorkerLocks;
use super::kept::AfterWait;
use super::locks::OpKind;
use super::{clear_bits, copy_bits, count_set_bits, keep_bits, solo, Vls, EBADFD};
use crate::seam::Vcl;

/// What a select or poll holds while it works on the worker's message
/// queue: the worker's locks (dropped first), then the work due after a
/// wait in VCL.
struct QueueLook<V: Vcl + 'static> {
    _locks: Option<WorkerLocks>,
    _after: AfterWait<V>,
}

impl<V: Vcl> Vls<V> {
    /// The start of a select or poll: the thread registered, children
    /// that exited cleaned up, connections handed over from a relative
    /// claimed, the worker's locks for its message queue; `None` if the
    /// thread has no VCL worker.
    fn look_at_queue(&'static self) -> Option<QueueLook<V>> {
        if !self.detect_thread() {
            return None;
        }
        let after = self.after_wait();
        self.clean_up_exited_children();
        // A forked child that waits in select or poll claims too: until it
        // does, VPP addresses the connection's events to the old owner's
        // session index (see `fork_hooks::Watched`), and the hand-over
        // keeps its relatives' reads and writes waiting (`handover_gate`).
        self.notice_handovers();
        Some(QueueLook { _locks: self.op_locks(OpKind::MessageQueue, None), _after: after })
    }

    /// `vls_select`.
    ///
    /// # Safety
    /// Maps null or valid for `n_bits` bits.
    pub unsafe fn select(
        &'static self,
        n_bits: i32,
        r: *mut c_ulong,
        w: *mut c_ulong,
        e: *mut c_ulong,
        wait: f64,
    ) -> i32 {
        let Some(_look) = self.look_at_queue() else { return EBADFD };
        // SAFETY: forwarded contract (the read map is null or `n_bits` bits).
        unsafe { self.shared_listeners_selected(r, n_bits) };
        if self.detaching() {
            // Nothing is ready (VPP is gone): the maps say so too.
            for map in [r, w, e] {
                // SAFETY: forwarded contract (each map null or `n_bits` bits).
                unsafe { clear_bits(map, n_bits) };
            }
            return 0;
        }
        // VCL sets the bit of any session it has a queued event for, asked
        // for or not (LDP would then report a descriptor the application
        // never passed): only the bits asked for are kept.
        // SAFETY: forwarded contract (each map null or `n_bits` bits).
        let asked = unsafe { [copy_bits(r, n_bits), copy_bits(w, n_bits), copy_bits(e, n_bits)] };
        // SAFETY: forwarded contract.
        let rv = self.sleeping_in_vcl(wait != 0.0, || unsafe { self.vcl.select(n_bits, r, w, e, wait) });
        if rv <= 0 {
            return rv;
        }
        for (map, asked) in [r, w, e].into_iter().zip(&asked) {
            // SAFETY: forwarded contract (each map null or `n_bits` bits).
            unsafe { keep_bits(map, asked) };
        }
        // VCL counts a session once for its ready state and again for every
        // RX/TX event still queued for it, so its total can exceed the bits
        // it set. select(2) returns the number of bits set; LDP passes this
        // value on to the application as is.
        // SAFETY: forwarded contract (each map null or `n_bits` bits).
        unsafe { count_set_bits(r, n_bits) + count_set_bits(w, n_bits) + count_set_bits(e, n_bits) }
    }

    /// `vls_poll`.
    ///
    /// # Safety
    /// `vp` valid for `n` entries.
    pub unsafe fn poll(&'static self, vp: *mut c_void, n: u32, wait: f64) -> i32 {
        let Some(_look) = self.look_at_queue() else { return EBADFD };
        // SAFETY: forwarded contract.
        unsafe { self.shared_listeners_polled(vp, n) };
        if self.detaching() {
            return 0;
        }
        // SAFETY: forwarded contract.
        self.sleeping_in_vcl(wait != 0.0, || unsafe { self.vcl.poll(vp, n, wait) })
    }

    /// The calling thread's worker's message-queue eventfd, if it has one.
    pub fn mq_eventfd(&self) -> Option<i32> {
        self.vcl.mq_eventfd()
    }

    /// For a `poll` that looks at its sessions without waiting in VCL
    /// (`libvls.so`'s `poll` in front of LDP's): the calling thread's
    /// message-queue eventfd to sleep on between looks, with its pending
    /// signal consumed first, so that the next message VPP queues wakes the
    /// sleeper. VPP signals only when the queue goes from empty to not
    /// empty, and a look drains the queue, so the order is: this, then the
    /// look, then the sleep.
    ///
    /// Only while the calling thread is the only one using VLS (inside a
    /// solo call, with no other thread registered: no other thread is in
    /// VCL, none can enter while the signal is read, and none sleeps on
    /// the signal outside VCL, as an epoll wait may). Another thread may
    /// be blocked in VCL reading the same eventfd; taking its signal would
    /// leave it asleep with messages queued. `None` then, or without an
    /// eventfd, or where the kernel cannot read it without blocking: the
    /// caller sleeps in short slices.
    ///
    /// `writers`: the sessions polled for `POLLOUT`. VCL's `poll` does not
    /// ask VPP to say when a full TX FIFO gets room (its epoll does), so
    /// the sleeper would not be woken for it: this asks, for each.
    pub fn mq_signal_for_poll(&'static self, writers: &[u32]) -> Option<i32> {
        let _alone = self.alone_in_process()?;
        let fd = self.vcl.mq_eventfd()?;
        for &sh in writers {
            self.vcl.want_tx_space_notice(sh);
        }
        drain_eventfd(fd).then_some(fd)
    }

    /// For the same `poll`, after a look that found none of `readers` (the
    /// sessions polled for `POLLIN`) ready and before sleeping on the
    /// eventfd: makes sure VPP's next enqueue on each of them sends an
    /// event. VPP sends an RX event only while the FIFO's event flag is
    /// clear, and queues it after the enqueue; a reader that empties the
    /// FIFO in between leaves VCL's `poll` to drain an event for data
    /// already read, and VCL's `poll` (unlike its `select` and `epoll`)
    /// does not clear the flag then. The sleeper was woken only by the end
    /// of its slice, however soon the next data came. True if data arrived
    /// meanwhile (look again instead of sleeping).
    ///
    /// Only while the calling thread is the only one using VLS, as for
    /// [`Vls::mq_signal_for_poll`] (the other case sleeps in short slices).
    pub fn rearm_rx_events_for_poll(&'static self, readers: &[u32]) -> bool {
        let Some(_alone) = self.alone_in_process() else { return false };
        readers.iter().fold(false, |arrived, &sh| self.vcl.rearm_rx_event(sh) | arrived)
    }
}

impl<V: Vcl> Vls<V> {
    /// A solo call (see `solo`) of the process's only registered thread
    /// (not one that took the period over from others).
    fn alone_in_process(&self) -> Option<solo::SoloCall<'_>> {
        let call = self.solo.enter()?;
        // (An arriving thread switches the locks on, then waits for this
        // call to end.)
        (!self.needs_locks.load(Ordering::Acquire)).then_some(call)
    }
}

/// Reads `fd`'s counter (an eventfd) if it is not zero, never blocking:
/// a `ppoll` with no wait, then a `read` only if the counter is set. The
/// descriptor itself stays blocking, as VCL's own readers expect, and the
/// two calls cannot race another reader: the caller is inside a solo call
/// (see [`Vls::mq_signal_for_poll`]). Plain `ppoll` and `read` because a
/// sandboxed process may be allowed nothing else: OpenSSH's pre-auth child
/// (seccomp) is killed by `preadv2`. False on an error.
///
/// System calls, not libc's functions: those are LDP's, which take a
/// descriptor number from `2^LDP_SID_BIT` up for a VPP session.
fn drain_eventfd(fd: i32) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let no_wait = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: one pollfd and a timespec, both locals; no signal mask.
    let n = unsafe {
        libc::syscall(
            libc::SYS_ppoll,
            &mut pfd as *mut libc::pollfd,
            1,
            &no_wait,
            std::ptr::null::<libc::sigset_t>(),
            0,
        )
    };
    if n < 0 || pfd.revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
        return false;
    }
    if pfd.revents & libc::POLLIN == 0 {
        return true;
    }
    let mut counter = 0u64;
    // SAFETY: reads 8 bytes into a local u64. The counter is not zero
    // (above) and nobody else reads it meanwhile (the caller's solo call):
    // the read does not block.
    let rv =
        unsafe { libc::syscall(libc::SYS_read, fd, (&mut counter as *mut u64).cast::<libc::c_void>(), 8) };
    rv == 8
}
