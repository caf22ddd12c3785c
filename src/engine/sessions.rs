//! The session operations of the C ABI (`vls_create` … `vls_attr`, with
//! `vcl_locked.h`'s return conventions) and the handle conversions LDP
//! uses. Each one goes through the call dispatch in `access.rs`; the epoll,
//! select and poll calls are in `readiness.rs`.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::seam::Datagram;

use super::*;

impl<V: Vcl> Vls<V> {
    /// `vls_create`.
    pub fn create(&'static self, proto: u8, nonblocking: bool) -> Vlsh {
        if !self.detect_thread() {
            return INVALID_VLSH;
        }
        let sh = {
            let _g = self.op_locks(OpKind::SessionPool, None);
            self.vcl.create(proto, nonblocking)
        };
        if sh < 0 {
            return INVALID_VLSH;
        }
        self.adopt(sh as Sh, false, nonblocking)
    }

    /// `vls_epoll_create`.
    pub fn epoll_create(&'static self) -> Vlsh {
        if !self.detect_thread() {
            return INVALID_VLSH;
        }
        let sh = {
            let _g = self.op_locks(OpKind::SessionPool, None);
            self.vcl.epoll_create()
        };
        if sh < 0 {
            return INVALID_VLSH;
        }
        self.adopt(sh as Sh, true, false)
    }

    /// Gives a new VCL session a VLS handle; closes it again if the pool is
    /// full (so nothing leaks).
    fn adopt(&'static self, sh: Sh, is_epoll: bool, nonblocking: bool) -> Vlsh {
        let vlsh = if is_epoll { self.pool.alloc_epoll(sh) } else { self.pool.alloc(sh) };
        if vlsh == INVALID_VLSH {
            tracing::error!(sh, "VLS session pool is full");
            let _g = self.op_locks(OpKind::SessionPool, None);
            self.vcl.close(sh);
        } else if let Some(s) = self.pool.get(vlsh) {
            // Locked: a close through a stale number may already race.
            s.lock().set_nonblocking_hint(nonblocking);
        }
        vlsh
    }

    /// True if `vlsh` names a live session (open, or being closed right
    /// now). Lock-free.
    pub fn has_session(&self, vlsh: Vlsh) -> bool {
        self.pool.get(vlsh).is_some()
    }

    /// `vls_close`.
    pub fn close(&'static self, vlsh: Vlsh) -> i32 {
        // (Without a worker, the sessions are orphans: closed without VCL.)
        let _ = self.detect_thread();
        let Some(session) = self.pool.get(vlsh) else { return EBADFD };
        if session.shared.load(Ordering::Acquire) != INVALID {
            self.clean_up_exited_children_before_leaving();
        }
        // Tell threads blocked in VCL on this session to give up, before
        // waiting for them to release the session lock.
        session.app_closed.store(true, Ordering::Release);
        let mut locked = session.lock();
        if locked.closed() {
            return EBADFD;
        }
        let sh = locked.sh();
        let rv = if sh == INVALID {
            // Orphaned (its worker was torn down with its VCL session).
            0
        } else if self.mt_workers.load(Ordering::Relaxed) && !self.is_here(sh) {
            // Marked first: the owner's fast lane must see it before the
            // owner can see the close (see `own_worker_nonblocking_io`).
            locked.mark_closed();
            self.close_on_owner(sh)
        } else {
            let _g = self.op_locks(OpKind::SessionPool, Some(sh));
            // Shared with forked relatives: this worker leaves it (the last
            // one closes it); else a plain close.
            self.close_shared(session.shared.load(Ordering::Acquire), sh)
                .unwrap_or_else(|| self.vcl.close(sh))
        };
        locked.mark_closed();
        drop(locked);
        self.pool.free(session);
        if rv < 0 {
            tracing::debug!(vlsh, rv = %VppcomError::from_raw(rv), "close");
        }
        rv
    }

    /// Per-thread workers: closes `sh`, a session of another thread's
    /// worker. If that thread is outside VCL, this thread closes it as that
    /// worker (holding its gate); otherwise the owner is asked to, by RPC,
    /// and handles it inside the VCL call it is in.
    fn close_on_owner(&'static self, sh: Sh) -> i32 {
        let (owner, index) = sh_parts(sh);
        if let Some(g) = self.moves.gates.get(owner) {
            if g.is_exiting() {
                // VCL frees the worker's sessions with the worker.
                return 0;
            }
            if let Some(_held) = g.try_enter() {
                let _as_owner = ActingAsWorker::new(&self.vcl, owner);
                return self.vcl.close(sh);
            }
        }
        let msg = Rpc::Close { session_index: index }.encode();
        let _inside = self.own_gate();
        let rv = self.vcl.send_rpc(owner, &msg);
        if rv != 0 {
            tracing::warn!(owner, index, "cannot ask a session's worker to close it");
        }
        rv
    }

    /// `vls_shutdown`.
    pub fn shutdown(&'static self, vlsh: Vlsh, how: i32) -> i32 {
        self.with_session(vlsh, OpKind::SessionPool, |sh| self.vcl.shutdown(sh, how))
    }

    /// `vls_bind`.
    ///
    /// # Safety
    /// `ep` as for `vppcom_session_bind`.
    pub unsafe fn bind(&'static self, vlsh: Vlsh, ep: *mut c_void) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session(vlsh, OpKind::MessageQueue, |sh| unsafe { self.vcl.bind(sh, ep) })
    }

    /// `vls_listen`.
    pub fn listen(&'static self, vlsh: Vlsh, q_len: i32) -> i32 {
        self.with_session(vlsh, OpKind::MessageQueue, |sh| self.vcl.listen(sh, q_len.max(0) as u32))
    }

    /// `vls_connect`.
    ///
    /// # Safety
    /// `ep` as for `vppcom_session_connect`.
    ///
    /// In mode 3 a blocking connect is not left to VCL: VCL waits for VPP's
    /// answer polling the message queue without calling the wait hooks, so
    /// it would hold the worker's locks for the whole handshake, and every
    /// other thread (including one whose close or write the peer waits for
    /// before it accepts) would stop. Instead VLS starts the connect
    /// non-blocking and waits itself, taking the locks only to check.
    ///
    /// A datagram session connects at once, as the kernel's: VCL answers a
    /// non-blocking one `EINPROGRESS` until VPP's reply, and programs that
    /// connect a non-blocking UDP socket (glibc's resolver, libuv) take
    /// that for a failure. VLS waits for the reply (a local one, no
    /// handshake) the same way.
    ///
    /// Before each connect (one VCL worker per process, not per-thread
    /// workers) VCL handles what its message queue holds, as an
    /// `epoll_wait` would (events are parked for the program's next wait).
    /// VPP answers every connect and every close on the worker's small
    /// control ring (`event-queue-size` / 16 entries, 128 by default); a
    /// program that closes and opens many connections in a row without
    /// waiting in between (`redis-benchmark` between two tests: 50 closes,
    /// then 50 connects) filled it, and VPP then refused the following
    /// connects as congested. `redis-benchmark` spins for ever on such a
    /// refused connection.
    pub unsafe fn connect(&'static self, vlsh: Vlsh, ep: *mut c_void) -> i32 {
        // (First: VLS's own epoll session is made on the calling thread's
        // worker, which a thread's first call may have to give it.)
        if !self.detect_thread() {
            return EBADFD;
        }
        let shared_worker = self.shares_worker();
        // Not with per-thread workers: VLS's own epoll session is one
        // worker's, and each thread's worker has its own queue.
        let flush_set = if self.mt_workers.load(Ordering::Relaxed) { INVALID } else { self.internal_epoll() };
        let mut waits_here = false;
        let rv = self.with_session(vlsh, OpKind::MessageQueue, |sh| {
            self.handle_mq_events(flush_set);
            let nonblocking = self.vcl.is_nonblocking(sh);
            if !shared_worker || nonblocking {
                // A non-blocking datagram connect is waited for below.
                waits_here = nonblocking && self.vcl.datagram_state(sh) != Datagram::Stream;
                // SAFETY: forwarded contract.
                return unsafe { self.vcl.connect(sh, ep) };
            }
            waits_here = true;
            self.vcl.set_nonblocking(sh, true);
            // SAFETY: forwarded contract.
            let rv = unsafe { self.vcl.connect(sh, ep) };
            self.vcl.set_nonblocking(sh, false);
            rv
        });
        if !waits_here || rv != -libc::EINPROGRESS {
            return rv;
        }
        self.wait_connected(vlsh)
    }

    /// The state of a connect started on `vlsh` (non-blocking): 1
    /// connected, 0 still connecting, or the `VPPCOM_E*` code a blocking
    /// connect would have returned (e.g. `ECONNREFUSED`). Looks only: an
    /// event loop learns of the change from an epoll event first.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub fn connect_state(&'static self, vlsh: Vlsh) -> i32 {
        self.with_session(vlsh, OpKind::MessageQueue, |sh| self.vcl.connect_state(sh))
    }

    /// A non-blocking datagram write on `vlsh` did not fit: asks VPP for a
    /// TX event once there is room for any datagram (see [`Vcl::want_tx_event`]).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub fn want_tx_event(&'static self, vlsh: Vlsh) -> i32 {
        self.with_session(vlsh, OpKind::MessageQueue, |sh| self.vcl.want_tx_event(sh))
    }

    /// Waits for the connect started on `vlsh` to succeed (0) or fail (its
    /// error), with the worker locks held only while checking. Bounded like
    /// VCL's own wait (`session-timeout`, 10 minutes by default).
    fn wait_connected(&'static self, vlsh: Vlsh) -> i32 {
        const LIMIT: Duration = Duration::from_secs(600);
        let flush_set = self.internal_epoll();
        let start = Instant::now();
        let mut pause = Duration::from_micros(20);
        loop {
            let state = self.with_session(vlsh, OpKind::MessageQueue, |sh| {
                let st = self.vcl.connect_state(sh);
                if st != 0 {
                    return st;
                }
                self.handle_mq_events(flush_set);
                self.vcl.connect_state(sh)
            });
            match state {
                1 => return 0,
                0 if start.elapsed() < LIMIT => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(1));
                }
                0 => return -libc::ETIMEDOUT,
                e => return e,
            }
        }
    }
    /// `vls_accept`: returns the new session's vlsh or a `VPPCOM_E*` code.
    ///
    /// # Safety
    /// `ep` as for `vppcom_session_accept`.
    pub unsafe fn accept(&'static self, vlsh: Vlsh, ep: *mut c_void, flags: i32) -> Vlsh {
        let mut nonblocking = false;
        // (Only after a fork can a listener be shared.)
        let shared = match self.forks.shared.get() {
            Some(_) => self.pool.get(vlsh).map_or(INVALID, |s| s.shared.load(Ordering::Acquire)),
            None => INVALID,
        };
        // Blocking accepts wait here, not in VCL (see `accept_or_wait`).
        let waits_here = !self.mt_workers.load(Ordering::Relaxed) && self.vcl.use_eventfd();
        // (Made once the thread is known to VLS, after the first try.)
        let mut flush_set = INVALID;
        let mut pause = Duration::from_micros(20);
        let mut waiting = None;
        let rv = loop {
            let mut again = false;
            let rv = self.with_session(vlsh, OpKind::SessionPool, |sh| {
                self.shared_listener_in_use(shared, sh);
                // Per-thread workers: a connection VPP gave the listener's
                // previous worker (queued there before the listener moved
                // here) is handed to this worker while VPP can still do that
                // safely, else aborted, as an accept may be (see `migrate`).
                let foreign = self.mt_workers.load(Ordering::Relaxed) && self.vcl.next_accept_foreign(sh);
                // SAFETY: forwarded contract.
                let rv = unsafe { self.accept_or_wait(sh, ep, flags, waits_here, flush_set, &mut again) };
                if rv >= 0 {
                    if foreign {
                        if let Err(e) = self.vcl.take_over_accepted(rv as Sh, self.rpc_timeout()) {
                            tracing::warn!(reason = ?e, "connection queued on the listener's previous worker: aborted");
                            self.vcl.close(rv as Sh);
                            return -libc::ECONNABORTED;
                        }
                    }
                    nonblocking = self.vcl.is_nonblocking(rv as Sh);
                }
                rv
            });
            if !again {
                break rv;
            }
            if flush_set == INVALID {
                flush_set = self.internal_epoll();
                if flush_set != INVALID {
                    continue;
                }
            }
            waiting.get_or_insert_with(|| Counted::new(&self.waiting_to_accept));
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(1));
        };
        if rv < 0 {
            return rv;
        }
        self.adopt(rv as Sh, false, nonblocking)
    }

    /// One accept on listener `sh` (worker locks held). With `waits_here`
    /// (modes 1 and 3 with use-mq-eventfd) a blocking listener is not left
    /// to VCL's blocking accept: that loops on the worker's message queue
    /// for ever, also after VPP is gone and VCL dropped the queue (a crash),
    /// so no error could ever reach the caller. Instead the accept is tried
    /// without blocking, after letting VCL handle its queue (`flush_set`),
    /// and `again` asks the caller to pause (without the locks) and retry:
    /// VCL's own wait wakes every millisecond too. Once VPP is gone every
    /// accept fails with `ECONNABORTED` (VCL re-listens if it re-attaches).
    ///
    /// # Safety
    /// `ep` as for `vppcom_session_accept`.
    unsafe fn accept_or_wait(
        &'static self,
        sh: Sh,
        ep: *mut c_void,
        flags: i32,
        waits_here: bool,
        flush_set: Sh,
        again: &mut bool,
    ) -> i32 {
        if waits_here && self.vcl.worker_detached() {
            return VppcomError::ECONNABORTED.raw();
        }
        if !waits_here || self.vcl.is_nonblocking(sh) {
            // SAFETY: forwarded contract.
            return unsafe { self.vcl.accept(sh, ep, flags) };
        }
        self.vcl.set_nonblocking(sh, true);
        // SAFETY: forwarded contract.
        let mut rv = unsafe { self.vcl.accept(sh, ep, flags) };
        if rv == EAGAIN {
            self.handle_mq_events(flush_set);
            rv = if self.vcl.worker_detached() {
                VppcomError::ECONNABORTED.raw()
            } else {
                // SAFETY: forwarded contract.
                unsafe { self.vcl.accept(sh, ep, flags) }
            };
        }
        self.vcl.set_nonblocking(sh, false);
        *again = rv == EAGAIN;
        rv
    }

    /// `vls_read`.
    ///
    /// # Safety
    /// `buf` valid for `n` writable bytes.
    pub unsafe fn read(&'static self, vlsh: Vlsh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session_io(vlsh, OpKind::Read, n, |sh| unsafe { self.vcl.read(sh, buf, n) })
    }

    /// `vls_recvfrom`. Beyond VCL (which refuses any flag but `MSG_PEEK`):
    /// `MSG_DONTWAIT` answers `EAGAIN` when nothing is ready on a blocking
    /// session, `MSG_WAITALL` reads until the buffer is full (iperf 2's
    /// server reads its headers so), and flags that change nothing on
    /// receive (`MSG_NOSIGNAL`, `MSG_CMSG_CLOEXEC`) are ignored, as the
    /// kernel does.
    ///
    /// # Safety
    /// `buf` valid for `n` writable bytes; `ep` as for `vppcom_session_recvfrom`.
    pub unsafe fn recvfrom(
        &'static self,
        vlsh: Vlsh,
        buf: *mut c_void,
        n: u32,
        flags: i32,
        ep: *mut c_void,
    ) -> i32 {
        let ReceiveFlags { vcl_flags, dont_wait, wait_all } = ReceiveFlags::of(flags);
        if !dont_wait && !wait_all {
            // SAFETY: forwarded contract.
            return self.with_session(vlsh, OpKind::Read, |sh| unsafe {
                self.vcl.recvfrom(sh, buf, n, vcl_flags, ep)
            });
        }
        let mut got = 0u32;
        loop {
            let mut nonblocking = false;
            let rv = self.with_session(vlsh, OpKind::Read, |sh| {
                nonblocking = self.vcl.is_nonblocking(sh);
                if dont_wait && !nonblocking && self.vcl.read_ready(sh) == 0 {
                    return EAGAIN;
                }
                // SAFETY: forwarded contract (`got < n`: within `buf`).
                unsafe {
                    self.vcl.recvfrom(sh, buf.cast::<u8>().add(got as usize).cast(), n - got, vcl_flags, ep)
                }
            });
            // MSG_WAITALL (a blocking session): until `n` bytes, the end of
            // the stream or an error; what was read is returned first.
            if rv <= 0 {
                return if got > 0 { got as i32 } else { rv };
            }
            got += rv as u32;
            if !wait_all || nonblocking || got >= n {
                return got as i32;
            }
        }
    }

    /// `vls_write`.
    ///
    /// # Safety
    /// `buf` valid for `n` readable bytes.
    pub unsafe fn write(&'static self, vlsh: Vlsh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session(vlsh, OpKind::Write, |sh| unsafe { self.vcl.write(sh, buf, n) })
    }

    /// `vls_write_msg`.
    ///
    /// # Safety
    /// `buf` valid for `n` readable bytes.
    pub unsafe fn write_msg(&'static self, vlsh: Vlsh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: forwarded contract.
        self.with_session(vlsh, OpKind::Write, |sh| unsafe { self.vcl.write_msg(sh, buf, n) })
    }

    /// `vls_sendto`.
    ///
    /// # Safety
    /// `buf` valid for `n` readable bytes; `ep` null or valid.
    pub unsafe fn sendto(
        &'static self,
        vlsh: Vlsh,
        buf: *mut c_void,
        n: i32,
        flags: i32,
        ep: *mut c_void,
    ) -> i32 {
        /// Not a length a datagram send returns: the session must be bound
        /// first.
        const UNBOUND: i32 = i32::MAX;
        // Checked before the send, not after an `EBADFD`: VCL's own attempt
        // to bind an unbound session at `sendto` (a connect and disconnect
        // to learn a local address, then a listen) fails and leaves the
        // session in a state no later send gets out of.
        let dont_wait = flags & libc::MSG_DONTWAIT != 0;
        let send = |sh| {
            // Looked up only when an address or MSG_DONTWAIT needs it.
            let state = (!ep.is_null() || dont_wait).then(|| self.vcl.datagram_state(sh));
            let mut ep = ep;
            match state {
                _ if ep.is_null() => {}
                Some(Datagram::Unbound) => return UNBOUND,
                // A stream's peer is fixed: the kernel ignores the address
                // (VCL refuses it with EINVAL).
                Some(Datagram::Stream) => ep = std::ptr::null_mut(),
                _ => {}
            }
            // VCL ignores MSG_DONTWAIT: a blocking session would wait for
            // room. Refuse as the kernel does when there is none (a stream
            // takes what fits, a datagram must fit whole).
            if dont_wait && !self.vcl.is_nonblocking(sh) {
                let need = if state == Some(Datagram::Stream) { 1 } else { n.max(1) };
                if (0..need).contains(&self.vcl.write_space(sh)) {
                    return EAGAIN;
                }
            }
            // SAFETY: forwarded contract.
            unsafe { self.vcl.sendto(sh, buf, n, flags, ep) }
        };
        let rv = self.with_session(vlsh, OpKind::Write, send);
        if rv != UNBOUND {
            return rv;
        }
        // The kernel binds a socket to a free port at its first `sendto`.
        let rv = self.with_session(vlsh, OpKind::MessageQueue, |sh| {
            if self.vcl.datagram_state(sh) != Datagram::Unbound {
                return 0;
            }
            // SAFETY: `ep` is a valid endpoint (forwarded contract).
            unsafe { self.vcl.bind_to_any(sh, ep) }
        });
        if rv < 0 {
            return rv;
        }
        match self.with_session(vlsh, OpKind::Write, send) {
            UNBOUND => -libc::EBADFD,
            rv => rv,
        }
    }

    /// `vls_attr`.
    ///
    /// # Safety
    /// `buf`/`len` as for `vppcom_session_attr`.
    pub unsafe fn attr(&'static self, vlsh: Vlsh, op: u32, buf: *mut c_void, len: *mut u32) -> i32 {
        // An attribute never blocks: the session-pool read lock is enough.
        self.with_session(vlsh, OpKind::Attr, |sh| {
            // SAFETY: forwarded contract.
            let rv = unsafe { self.vcl.attr(sh, op, buf, len) };
            // (The session is locked whole here, or this is the solo thread.)
            if let Some(s) = self.pool.get(vlsh) {
                s.set_nonblocking_hint(self.vcl.is_nonblocking(sh));
            }
            rv
        })
    }

    // ------------------------------------------------------------------
    // handle conversions and small accessors
    // ------------------------------------------------------------------

    /// `vlsh_to_sh`: the VCL handle, or `INVALID` (`~0`).
    pub fn vlsh_to_sh(&'static self, vlsh: Vlsh) -> Sh {
        let _ = self.detect_thread();
        self.pool.get(vlsh).map(|s| s.sh()).unwrap_or(INVALID)
    }

    /// `vlsh_to_session_and_worker_index`: (session index, worker index),
    /// both `~0` for an unknown handle.
    pub fn vlsh_to_session_and_worker(&'static self, vlsh: Vlsh) -> (u32, u32) {
        match self.vlsh_to_sh(vlsh) {
            INVALID => (INVALID, INVALID),
            sh => {
                let (w, s) = sh_parts(sh);
                (s, w)
            }
        }
    }

    /// `vls_session_index_to_vlsh` on the calling thread's worker.
    pub fn session_index_to_vlsh(&'static self, session_index: u32) -> Vlsh {
        if !self.detect_thread() {
            return INVALID_VLSH;
        }
        let wrk = self.vcl.worker_index();
        if wrk == INVALID {
            return INVALID_VLSH;
        }
        self.pool.vlsh_of(sh_from_parts(wrk, session_index)).unwrap_or(INVALID_VLSH)
    }

    /// `vls_set_epoll_fns`.
    pub fn set_epoll_fns(&self, fns: EpollFns) {
        self.vcl.set_epoll_fns(fns);
    }

    #[cfg(test)]
    /// The session behind `vlsh` (for the safe API and tests).
    pub fn session(&self, vlsh: Vlsh) -> Option<&VlsSession> {
        self.pool.get(vlsh)
    }
}

/// One more in `n` while this lives.
struct Counted<'a>(&'a AtomicU32);

impl<'a> Counted<'a> {
    fn new(n: &'a AtomicU32) -> Self {
        n.fetch_add(1, Ordering::SeqCst);
        Counted(n)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A receive's flags: those VCL is given (it refuses any but `MSG_PEEK`),
/// and the two VLS answers itself. Flags the kernel ignores on a receive
/// (`MSG_NOSIGNAL`, sockperf's; `MSG_CMSG_CLOEXEC`) are dropped; others
/// (`MSG_OOB`, ...) stay, and VCL refuses them.
struct ReceiveFlags {
    vcl_flags: i32,
    /// `MSG_DONTWAIT`: `EAGAIN` rather than a wait on a blocking session.
    dont_wait: bool,
    /// `MSG_WAITALL` (not with `MSG_PEEK` or `MSG_DONTWAIT`): read until
    /// the buffer is full.
    wait_all: bool,
}

impl ReceiveFlags {
    fn of(flags: i32) -> Self {
        let dropped = libc::MSG_NOSIGNAL | libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT | libc::MSG_WAITALL;
        let dont_wait = flags & libc::MSG_DONTWAIT != 0;
        let wait_all = flags & libc::MSG_WAITALL != 0 && flags & libc::MSG_PEEK == 0 && !dont_wait;
        ReceiveFlags { vcl_flags: flags & !dropped, dont_wait, wait_all }
    }
}
