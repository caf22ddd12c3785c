//! Per-process workers (mode 1): what VLS does around `fork`, when a
//! process closes or stops using a session its relatives also hold, and
//! when a child has exited. The shared state and the SIGCHLD interceptor
//! are in [`super::fork`].
//!
//! - Before the fork (parent): every session of the process that is not
//!   shared yet gets an entry in the shared table (owner and only
//!   subscriber: the parent's worker); SIGCHLD is intercepted (once).
//! - In the child: locks that other threads of the parent held (the child
//!   has only the forking thread) are replaced (VLS's pool locks are held
//!   across the fork instead); its thread registers a new VCL worker, VCL's
//!   sessions are copied to it (same indices), VLS's copied pool is pointed
//!   at it, and the child subscribes to every shared session; the parent
//!   waits (at most [`FORK_WAIT`]; not at all if the fork failed, which
//!   errno tells) until the child is done, so the records being copied do
//!   not change meanwhile.
//! - Listeners: a process that adds a shared listener to an epoll set
//!   (or waits on a set it inherited holding one), selects on it, polls it
//!   or accepts on it starts listening on its own worker, so
//!   VPP spreads connections over the processes that accept; the owner
//!   stops listening then unless it accepts too. Removing a listener from
//!   an epoll set changes nothing.
//! - Close / exit: the worker unsubscribes; the last subscriber closes for
//!   real; an owner that leaves hands VPP's events to the next subscriber.
//!   VPP can do that for a connection only while its FIFOs are in their
//!   first chunk (or cut-through): it would corrupt larger ones (see the
//!   shim's `vppsys_handover_is_safe`); and only to a worker whose VCL and
//!   VPP worker indices are the same (VCL answers VPP's request with the
//!   former, VPP reads the latter: `vppsys_worker_takes_handovers`),
//!   unless `libvls.so` answers in VCL's place with the latter (a process
//!   that preloads it); and no relative may read or write it until the new
//!   owner has its new FIFOs (`handover_gate`). Otherwise the leaving
//!   process keeps
//!   its copy as VPP's owner, hidden from the application ([`Kept`]): the
//!   others are FIFO subscribers, whom VPP tells of the peer's close or
//!   reset but not of data or space, so their waits look at such copies
//!   themselves ([`Watched`]); the last relative to close it closes it in
//!   VPP, and the keeper closes it only if that relative died instead (a
//!   second close could reach another connection). When the keeper exits
//!   such a connection is not handed over either: VPP cleans up after the
//!   exiting worker, which owns it.
//! - An exited child: its worker is queued by the SIGCHLD handler; the next
//!   `epoll_wait`/`select`/`poll`, fork or the exit unsubscribes the child from
//!   its sessions and frees its copies (acting as the child's worker, in
//!   memory only: nothing is sent to VPP on behalf of a dead worker; VPP
//!   cleans up after that app worker itself, closing what it owned), then
//!   frees the worker.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{MutexGuard, PoisonError};
use std::time::Duration;

use super::fork::{SharedTable, Unsubscribed};
use super::kept::Kept;
use super::pool::SessionPool;
use super::quiet::may_log;
use super::sigchld;
use super::{on_worker, solo, ActingAsWorker, Teardown, Vls};
use crate::errno::{errno, set_errno};
use crate::handle::{sh_from_parts, sh_parts, Sh, INVALID};
use crate::seam::{ForkHooks, Listener, Vcl, UNSHARE_KEPT};

/// What fork and the sharing of sessions between processes need, one per
/// process (a field of `Vls`).
#[derive(Default)]
pub(super) struct Forks {
    /// What forked processes share, mapped before the first fork (see
    /// [`fork`](super::fork)).
    pub shared: std::sync::OnceLock<SharedTable>,
    /// Serialises the cleanup of exited children's workers.
    pub child_cleanup: std::sync::Mutex<()>,
    /// How many forks made this process (0 in the process that attached;
    /// each forked child has its parent's count plus one).
    pub fork_generation: std::sync::atomic::AtomicU32,
    /// The application's errno when a fork started.
    pub errno_before_fork: std::sync::atomic::AtomicI32,
    /// Connections shared with forked relatives, watched for VPP handing
    /// them over to this process (see [`Watched`]).
    pub handover_watch: std::sync::Mutex<Vec<Watched>>,
    /// `handover_watch` is not empty (checked on every `epoll_wait`).
    pub watching: AtomicBool,
    /// `handover_watch` holds a copy this process holds only as a FIFO
    /// subscriber: its waits look at it in slices (see [`Watched`]).
    pub subscriber_copies: AtomicBool,
    /// Copies of connections this process left but stays VPP's owner of
    /// (see [`Kept`]).
    pub kept: std::sync::Mutex<Vec<Kept>>,
    /// `kept` is not empty (checked after every `epoll_wait`, `select`,
    /// `poll`).
    pub keeping: AtomicBool,
    /// The pid of the process this state belongs to (set at app creation
    /// and in a forked child): a `vfork` child, which shares the parent's
    /// memory and gets no fork hooks, has another.
    pub pid: std::sync::atomic::AtomicI32,
    /// VLS's SIGCHLD handler was the process's at its last fork (else
    /// exits are found only by looking at every child).
    pub sigchld_intercepted: AtomicBool,
}

impl Forks {
    /// Records the calling process as the owner of this state.
    pub(super) fn set_this_process(&self) {
        // SAFETY: getpid has no preconditions.
        self.pid.store(unsafe { libc::getpid() }, Ordering::Release);
    }

    /// Is the calling process the owner of this state (not a `vfork`
    /// child sharing its memory)?
    pub(super) fn is_this_process(&self) -> bool {
        // SAFETY: getpid has no preconditions.
        self.pid.load(Ordering::Acquire) == unsafe { libc::getpid() }
    }
}

/// How long a parent waits for its child to copy the parent's sessions.
pub const FORK_WAIT: Duration = Duration::from_secs(10);

/// VCL's `vcl_poll_t` (the items of `vls_poll`).
#[repr(C)]
struct PollItem {
    fds_ndx: u32,
    sh: u32,
    events: i16,
    revents: i16,
}

/// A session this worker owned, being handed over to worker `to`.
struct Handover {
    to: u32,
    index: u32,
    /// `to`'s hand-over token before (see [`Vcl::handover_token`]).
    before: usize,
}

/// A connection shared with relatives that VPP may hand over to this
/// process. After a hand-over VPP (v26.06) addresses the connection's
/// events to the old owner's session index, VCL drops the receive events
/// that arrive while the hand-over completes, and events sent before it
/// went to the old owner: data can sit in the connection with no event ever
/// reaching an `epoll_wait` here. So `epoll_wait` notices hand-overs (the
/// hand-over token changes), tells VPP this worker's session index
/// ([`Vcl::claim_events`]) and reports the connection if it is readable.
///
/// The claim leaves a window. Until VPP has handled it, data that arrives
/// is announced with the old index, which this worker drops, and the
/// announcement marks the FIFO as announced: VPP's own re-signal when it
/// handles the claim is then suppressed, and no event for that data ever
/// comes (a PostgreSQL backend slept until its 60 s authentication
/// timeout, in 3 to 5 runs of pgbench in 100; data landing a few
/// microseconds after the claim's look was seen in most runs). So a
/// claimed connection is looked at like a subscriber's copy for
/// [`CLAIM_GRACE`] more: waits sleep in slices and report data that came.
///
/// Until then, a copy this process inherited is only a FIFO subscriber,
/// and VPP (25.10 to 26.10) sends a subscriber the peer's close and reset
/// but never data or space events: those go to the owner's worker alone
/// (its session index, its queue). A relative that keeps the connection
/// open, or keeps its copy because VPP could not take it over (see
/// [`Kept`]), would leave this process deaf to new data. So while such a
/// copy is watched, every wait here looks at its FIFOs and reports what
/// changed (new data, space after a full FIFO) on its epoll set, and waits
/// that would sleep sleep in slices of [`SUBSCRIBER_POLL`].
pub(super) struct Watched {
    vlsh: super::Vlsh,
    entry: u32,
    token: usize,
    /// VPP's owner is another process's copy (this one was inherited).
    subscriber: bool,
    /// What the last look saw: bytes readable, and whether it was
    /// writable.
    last_readable: i32,
    last_writable: bool,
    /// Handed over to this worker and claimed then: looked at until
    /// [`CLAIM_GRACE`] has passed, then no longer watched.
    claimed: Option<std::time::Instant>,
}

/// How long a connection handed over to this process is still looked at
/// after its claim (see [`Watched`]): far longer than VPP takes to handle
/// the claim.
pub const CLAIM_GRACE: Duration = Duration::from_secs(1);

/// How often a process looks at the connections it holds only as a FIFO
/// subscriber (see [`Watched`]) while it waits.
pub const SUBSCRIBER_POLL: Duration = Duration::from_millis(10);

/// How long an exiting process waits for its relatives to take over the
/// connections it owned (VPP closes what is still its own when it goes).
pub const HANDOVER_WAIT: Duration = Duration::from_secs(1);

impl<V: Vcl> ForkHooks for Vls<V> {
    fn before_fork(&'static self) {
        let me = self.vcl.worker_index();
        if !self.is_app_created() || me == INVALID {
            return;
        }
        let Some(table) = self.shared_table() else { return };
        self.stop_solo_take_overs();
        // A parent that only forks (nginx's master, respawning a worker
        // that died) never calls epoll_wait: clean up here too. A program
        // that installed its own SIGCHLD handler after VLS's (socat does,
        // at every fork) is no longer told of exits: every child is checked.
        let intercepted = sigchld::intercept_sigchld();
        self.forks.sigchld_intercepted.store(intercepted, Ordering::Release);
        if intercepted {
            self.clean_up_exited_children();
        } else {
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "cannot intercept SIGCHLD (the program handles it): exited children are looked for at each fork and exit"
                );
            }
            self.clean_up_exited_children_now();
        }
        for s in self.pool.live_sessions() {
            let sh = s.sh();
            if s.shared.load(Ordering::Acquire) != INVALID || !on_worker(sh, me) {
                continue;
            }
            match table.alloc(me, sh_parts(sh).1) {
                Some(entry) => {
                    s.set_shared(entry);
                    // This process's own connection: VPP's owner is here.
                    self.watch_handover(s.vlsh, entry, sh, false);
                }
                None => tracing::error!(
                    vlsh = s.vlsh,
                    "shared session table full: the child will not see this session"
                ),
            }
        }
        self.vcl.flush_mq();
        table.fork_started(me);
        // Last: VLS's own locks, held across the fork (released first thing
        // after it, in parent and child).
        self.hold_locks_across_fork();
        // errno tells the parent's hook whether the fork failed (glibc
        // leaves it alone on success): cleared here, the application's value
        // is restored after a successful fork.
        self.forks.errno_before_fork.store(errno(), Ordering::Relaxed);
        set_errno(0);
    }

    fn after_fork_in_parent(&'static self) {
        release_locks_after_fork();
        let me = self.vcl.worker_index();
        let Some(table) = self.forks.shared.get() else { return };
        if me == INVALID {
            return;
        }
        if errno() != 0 {
            // No child: nobody will say it is done.
            table.fork_done(me);
            return;
        }
        if !table.wait_fork_done(me, FORK_WAIT) {
            tracing::warn!(worker = me, "forked child did not finish taking over its sessions in time");
        }
        set_errno(self.forks.errno_before_fork.load(Ordering::Relaxed));
    }

    fn after_fork_in_child(&'static self) {
        self.become_forked_child();
    }
}

/// VLS's own mutexes the forking thread holds across `fork` (so the child
/// does not inherit one held by a thread it does not have).
type HeldAcrossFork =
    (MutexGuard<'static, Teardown>, MutexGuard<'static, ()>, MutexGuard<'static, Vec<Watched>>);

std::thread_local! {
    static HELD_ACROSS_FORK: RefCell<Option<HeldAcrossFork>> = const { RefCell::new(None) };
}

/// Releases what [`Vls::hold_locks_across_fork`] took (in parent and child,
/// first thing after the fork; also after a failed fork).
fn release_locks_after_fork() {
    SessionPool::release_after_fork();
    HELD_ACROSS_FORK.with(|h| drop(h.borrow_mut().take()));
}

impl<V: Vcl> Vls<V> {
    /// Takes VLS's own locks for the fork: exit teardown, child cleanup,
    /// the hand-over watch list (in the order other paths nest them), then
    /// the session pool's.
    fn hold_locks_across_fork(&'static self) {
        let held = (
            self.worker_teardown.lock().unwrap_or_else(PoisonError::into_inner),
            self.forks.child_cleanup.lock().unwrap_or_else(PoisonError::into_inner),
            self.forks.handover_watch.lock().unwrap_or_else(PoisonError::into_inner),
        );
        HELD_ACROSS_FORK.with(|h| *h.borrow_mut() = Some(held));
        self.pool.hold_across_fork();
    }

    /// The shared table, mapped on first use (before the first fork).
    fn shared_table(&self) -> Option<SharedTable> {
        if let Some(t) = self.forks.shared.get() {
            return Some(*t);
        }
        match SharedTable::map() {
            Ok(t) => {
                sigchld::set_signal_table(&t);
                Some(*self.forks.shared.get_or_init(|| t))
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot map the table forked processes share: fork without VLS support");
                None
            }
        }
    }

    /// The child half of the fork (see the module docs). Runs on the
    /// child's only thread.
    fn become_forked_child(&'static self) {
        release_locks_after_fork();
        let parent = self.vcl.worker_index();
        let Some(table) = self.forks.shared.get().copied() else { return };
        if parent == INVALID {
            return;
        }
        // The child has only this thread: whatever other threads of the
        // parent held stays held forever. Fresh worker-level locks, fresh
        // objects for the sessions they held; one thread again (lock-free
        // paths until a second one comes).
        self.fresh_locks();
        self.needs_locks.store(false, Ordering::Release);
        self.solo.forget_after_fork();
        self.moves.gates.set_fast_lane(false);
        let replaced = self.pool.replace_sessions_held_by_lost_threads();
        // The parent's children are not this process's.
        let _ = sigchld::PENDING_EXITS.take();
        self.vcl.set_worker_index(INVALID);
        let registered = self.vcl.worker_register();
        let copied = if registered == 0 { self.vcl.fork_copy_sessions(parent) } else { registered };
        if copied != 0 {
            tracing::error!(
                parent,
                registered,
                copied,
                "forked child could not get a VCL worker: its sessions are unusable"
            );
            self.vcl.set_worker_index(INVALID);
            self.process_wrk.store(INVALID, Ordering::Release);
            for s in self.pool.live_sessions() {
                self.pool.unmap(&s.lock());
            }
            table.fork_done(parent);
            return;
        }
        let me = self.vcl.worker_index();
        // Lock-free paths only with a worker (a child without one must not
        // reach VCL at all).
        if !self.mt_workers.load(Ordering::Acquire) && self.exit_key.is_some() {
            self.solo.start();
        } else if self.mt_workers.load(Ordering::Acquire) {
            // The registration does not survive `fork`.
            self.moves.gates.set_fast_lane(solo::register_barrier());
        }
        self.vcl.install_wait_hooks(self);
        self.forks.set_this_process();
        // SAFETY: getpid has no preconditions.
        table.set_process(me, unsafe { libc::getpid() }, parent);
        let mut inherited = Vec::new();
        for s in self.pool.live_sessions() {
            let locked = s.lock();
            let sh = locked.sh();
            if locked.closed() || sh == INVALID {
                continue;
            }
            let (wrk, index) = sh_parts(sh);
            if wrk != parent {
                // Another thread's worker (per-thread workers): that thread
                // does not exist in the child.
                self.pool.unmap(&locked);
                continue;
            }
            self.pool.remap(&locked, sh_from_parts(me, index));
            let entry = s.shared.load(Ordering::Acquire);
            match table.lock(entry) {
                Some(g) if g.session_index() == index => {
                    g.subscribe(me);
                    inherited.push((s.vlsh, entry, sh_from_parts(me, index)));
                }
                _ => s.set_shared(INVALID),
            }
        }
        self.drop_inherited_kept_copies(me);
        // The parent's watch list came along: this worker's tokens differ,
        // and every copy here is a subscriber's until VPP hands it over.
        self.forks.handover_watch.lock().unwrap_or_else(PoisonError::into_inner).clear();
        self.forks.watching.store(false, Ordering::Release);
        self.forks.subscriber_copies.store(false, Ordering::Release);
        for (vlsh, entry, sh) in inherited {
            self.watch_handover(vlsh, entry, sh, true);
        }
        let ep = self.internal_ep.load(Ordering::Acquire);
        if on_worker(ep, parent) {
            self.internal_ep.store(sh_from_parts(me, sh_parts(ep).1), Ordering::Release);
        }
        self.process_wrk.store(me, Ordering::Release);
        self.forks.fork_generation.fetch_add(1, Ordering::AcqRel);
        self.n_threads.store(1, Ordering::Release);
        *self.worker_teardown.lock().unwrap_or_else(PoisonError::into_inner) = Teardown::Pending;
        table.fork_done(parent);
        tracing::info!(
            parent,
            worker = me,
            vpp_worker = self.vcl.vpp_worker_index(),
            pid = std::process::id(),
            replaced,
            "forked child has its own VCL worker"
        );
    }

    /// Close of a session: if it is shared with other processes, this
    /// worker leaves it (the last one closes it for real). `None` if the
    /// session is not shared (the caller closes it).
    pub(super) fn close_shared(&'static self, entry: u32, sh: Sh) -> Option<i32> {
        self.leave_shared(entry, sh).map(|(rv, _)| rv)
    }

    /// [`Self::close_shared`], also saying to whom the session went: a
    /// hand-over in progress if this worker owned it, with the new owner's
    /// hand-over token as it was before (see [`Vcl::handover_token`]).
    fn leave_shared(&'static self, entry: u32, sh: Sh) -> Option<(i32, Option<Handover>)> {
        if entry == INVALID {
            return None;
        }
        let table = self.forks.shared.get()?;
        let (me, index) = sh_parts(sh);
        let what = {
            let g = table.lock(entry)?;
            if g.session_index() != index {
                return None;
            }
            g.leave(me)
        };
        let handover = match what {
            Unsubscribed::NewOwner(to) => {
                Some(Handover { to, index, before: self.vcl.handover_token(to, index) })
            }
            _ => None,
        };
        let rv = self.drop_copy(sh, entry, what);
        if rv == UNSHARE_KEPT {
            self.keep_owner_copy(sh, entry);
            return Some((0, None));
        }
        if what == Unsubscribed::Last && rv == 0 {
            // Closed in VPP (unless a listener copy): a relative keeping
            // the connection must not close it again (see `Kept`).
            if let Some(g) = table.lock(entry).filter(|g| g.session_index() == index && g.keeper() != INVALID)
            {
                g.set_closed_in_vpp();
            }
        }
        Some((rv, handover))
    }

    /// Drops the calling worker's copy of shared session `sh` (entry
    /// `entry`) it has just left ([`UNSHARE_KEPT`]: kept as VPP's owner,
    /// for the caller to record).
    fn drop_copy(&self, sh: Sh, entry: u32, what: Unsubscribed) -> i32 {
        let rv = match what {
            // A listener copy that never listened here has nothing to
            // unbind: closing it would unbind the listener of another
            // worker (VCL sends the copied VPP handle).
            Unsubscribed::Last if self.vcl.listener_state(sh) != Listener::Elsewhere => self.vcl.close(sh),
            Unsubscribed::NewOwner(owner) => self.hand_over_copy(sh, entry, owner),
            _ => self.vcl.unshare(sh, INVALID, true),
        };
        if may_log() {
            tracing::debug!(sh, ?what, rv, "left a shared session");
        }
        rv
    }

    /// A process is using shared listener `sh` (epoll add, select, accept):
    /// it listens on its own worker from now on; the owner stops, unless it
    /// uses the listener too.
    #[inline]
    pub(super) fn shared_listener_in_use(&'static self, entry: u32, sh: Sh) {
        // (Inline: almost every session is shared by no process.)
        if entry != INVALID {
            self.shared_session_in_use(entry, sh);
        }
    }

    /// [`Self::shared_listener_in_use`] for a session in the shared table.
    #[cold]
    fn shared_session_in_use(&'static self, entry: u32, sh: Sh) {
        let Some(table) = self.forks.shared.get() else { return };
        let (me, index) = sh_parts(sh);
        match self.vcl.listener_state(sh) {
            Listener::No => {}
            Listener::Here => {
                if let Some(g) = table.lock(entry) {
                    g.set_listening(me, true);
                }
            }
            Listener::Elsewhere => {
                self.vcl.listener_start(sh);
                let stop_owner = table.lock(entry).and_then(|g| {
                    g.set_listening(me, true);
                    let owner = g.owner();
                    (owner != me && !g.is_listening(owner)).then_some(owner)
                });
                // (The owner's copy may have stopped already: another
                // relative started first.)
                let stopped_owner = stop_owner.filter(|&owner| self.vcl.listener_stop_on(owner, index));
                tracing::info!(sh, worker = me, ?stopped_owner, "listening on a shared listener");
            }
        }
    }

    /// A forked child waits on epoll set `ep_vlsh` that it inherited: the
    /// shared listeners in it are in use (checked once per set and fork).
    #[inline]
    pub(super) fn shared_listeners_in_set(&'static self, ep_vlsh: super::Vlsh, set: &super::VlsSession) {
        let generation = self.forks.fork_generation.load(Ordering::Acquire);
        if generation == 0 || set.listeners_checked.load(Ordering::Acquire) == generation {
            return;
        }
        set.listeners_checked.store(generation, Ordering::Release);
        for s in self.pool.live_sessions() {
            let sh = s.sh();
            if s.membership.set() == Some(ep_vlsh) && self.is_here(sh) {
                self.shared_listener_in_use(s.shared.load(Ordering::Acquire), sh);
            }
        }
    }

    /// `select`'s read map names listeners (by session index on this
    /// worker): the shared ones are in use.
    ///
    /// # Safety
    /// `map` is null or valid for `n_bits` bits rounded up to whole words.
    pub(super) unsafe fn shared_listeners_selected(&'static self, map: *const libc::c_ulong, n_bits: i32) {
        if self.forks.shared.get().is_none() || map.is_null() || n_bits <= 0 {
            return;
        }
        let me = self.vcl.worker_index();
        let word_bits = libc::c_ulong::BITS as usize;
        // SAFETY: caller's contract.
        let words = unsafe { std::slice::from_raw_parts(map, (n_bits as usize).div_ceil(word_bits)) };
        for (i, &w) in words.iter().enumerate() {
            let mut w = w;
            while w != 0 {
                let bit = i * word_bits + w.trailing_zeros() as usize;
                w &= w - 1;
                self.shared_listener_by_sh(sh_from_parts(me, bit as u32));
            }
        }
    }

    /// `poll`'s items name sessions by VCL handle: the shared listeners
    /// among them are in use.
    ///
    /// # Safety
    /// `vp` is valid for `n` `vcl_poll_t` items.
    pub(super) unsafe fn shared_listeners_polled(&'static self, vp: *const libc::c_void, n: u32) {
        if self.forks.shared.get().is_none() || vp.is_null() {
            return;
        }
        // SAFETY: caller's contract; `PollItem` is `vcl_poll_t`'s layout.
        let items = unsafe { std::slice::from_raw_parts(vp as *const PollItem, n as usize) };
        for it in items {
            if it.events & libc::POLLIN != 0 {
                self.shared_listener_by_sh(it.sh);
            }
        }
    }

    fn shared_listener_by_sh(&'static self, sh: Sh) {
        if let Some(s) = self.pool.vlsh_of(sh).and_then(|v| self.pool.get(v)) {
            self.shared_listener_in_use(s.shared.load(Ordering::Acquire), sh);
        }
    }

    /// An epoll wait on `set` has fork-related work to do before or after
    /// it (exited children to clean up, handed-over connections to notice,
    /// kept copies to check, inherited shared listeners to start): what the
    /// lock-free wait leaves to the general one. Four loads when there is
    /// none.
    #[inline(always)]
    pub(super) fn fork_work_around_wait(&self, set: &super::VlsSession) -> bool {
        let generation = self.forks.fork_generation.load(Ordering::Acquire);
        sigchld::PENDING_EXITS.is_pending()
            || self.forks.watching.load(Ordering::Acquire)
            || self.forks.keeping.load(Ordering::Acquire)
            || (generation != 0 && set.listeners_checked.load(Ordering::Acquire) != generation)
    }

    /// Cleans up after children that have exited (queued by the SIGCHLD
    /// handler, or found exited when a SIGCHLD was seen). Called from
    /// `epoll_wait`, `select`, `poll` and at exit; cheap when nothing is
    /// pending.
    #[inline]
    pub(super) fn clean_up_exited_children(&'static self) {
        if sigchld::PENDING_EXITS.is_pending() {
            self.clean_up_exited_children_now();
        }
    }

    /// Before this process leaves a connection shared with forked
    /// relatives: cleans up after children that have exited, so that the
    /// connection is not handed over to one of them. VPP refuses an update
    /// naming a worker that is gone, and the connection then stays with
    /// this process's worker, which has left it: nobody closes it and the
    /// peer waits for ever (a child that fails at once, as vsftpd's on
    /// `dup2`, and ends with `_exit`).
    /// (No system call when SIGCHLD is intercepted and no exit pending: as
    /// of the last fork; a program that took the signal over since loses
    /// this look, not the later ones of `epoll_wait`, `poll` and exit.)
    pub(super) fn clean_up_exited_children_before_leaving(&'static self) {
        if sigchld::PENDING_EXITS.is_pending() || !self.forks.sigchld_intercepted.load(Ordering::Acquire) {
            self.clean_up_exited_children_now();
        }
    }

    #[cold]
    fn clean_up_exited_children_now(&'static self) {
        // Without a shared table this process never forked: the queued
        // exits are not its children's (and are left for whoever has one).
        let Some(table) = self.forks.shared.get().copied() else { return };
        let _serial = self.forks.child_cleanup.lock().unwrap_or_else(PoisonError::into_inner);
        // The queue only says that some child exited: the worker index it
        // names may have been given to a newer child since (its exit
        // handler freed the worker, the next fork took the index), and
        // cleaning that one up freed a live worker's state under it.
        let _ = sigchld::PENDING_EXITS.take();
        let me = self.process_wrk.load(Ordering::Acquire);
        if me == INVALID {
            return;
        }
        // Signals merge (two children exiting at once may bring one
        // SIGCHLD), and the application may reap before VLS looks: every
        // child of this process is checked, by the pid its worker has now.
        for (wrk, pid) in table.children_of(me) {
            if sigchld::has_exited(pid) {
                self.clean_up_worker_of_exited(&table, wrk, pid);
            }
        }
    }

    /// Drops every copy the exited process of worker `wrk` held (acting as
    /// that worker: VCL works on the calling thread's worker; without
    /// messages to VPP), then frees the worker.
    fn clean_up_worker_of_exited(&'static self, table: &SharedTable, wrk: u32, pid: i32) {
        // Claimed first: a process that left its shared sessions at exit or
        // exec released its record itself before its worker was freed (the
        // index may be a newer process's now, subscribed to connections
        // this cleanup would take from it).
        if !table.release_process(wrk, pid) {
            return;
        }
        let mut copies = 0;
        {
            let _as_child = ActingAsWorker::new(&self.vcl, wrk);
            for entry in table.subscribed_by(wrk) {
                // A hand-over to it will not complete (see `handover_gate`).
                if let Some(h) = table.handover(entry) {
                    h.end(wrk);
                }
                let Some(g) = table.lock(entry) else { continue };
                let index = g.session_index();
                let what = g.leave(wrk);
                if what != Unsubscribed::NotSubscribed {
                    // Memory only: VPP cleans up after the dead worker
                    // (its listeners, the sessions it owned) by itself.
                    self.vcl.unshare(sh_from_parts(wrk, index), INVALID, false);
                    copies += 1;
                }
            }
            self.vcl.worker_cleanup_dead(wrk, pid);
        }
        if may_log() {
            tracing::info!(worker = wrk, pid, copies, "cleaned up the worker of an exited child");
        }
    }

    /// Watches connection `vlsh` (shared entry `entry`, handle `sh` on this
    /// worker) for a hand-over to this worker; `subscriber`: this copy is
    /// not VPP's owner (see [`Watched`]). Listeners and epoll sets are not
    /// watched.
    fn watch_handover(&self, vlsh: super::Vlsh, entry: u32, sh: Sh, subscriber: bool) {
        if !self.is_here(sh) || self.vcl.listener_state(sh) != Listener::No {
            return;
        }
        let token = self.vcl.handover_token(sh_parts(sh).0, sh_parts(sh).1);
        if token == 0 {
            return;
        }
        let mut w = self.forks.handover_watch.lock().unwrap_or_else(PoisonError::into_inner);
        w.push(Watched {
            vlsh,
            entry,
            token,
            subscriber,
            last_readable: 0,
            last_writable: true,
            claimed: None,
        });
        self.forks.watching.store(true, Ordering::Release);
        if subscriber {
            self.forks.subscriber_copies.store(true, Ordering::Release);
        }
    }

    /// Whether this process holds a connection only as a FIFO subscriber
    /// (its waits then look at it in slices of [`SUBSCRIBER_POLL`]).
    #[inline]
    pub fn polls_subscriber_copies(&self) -> bool {
        self.forks.subscriber_copies.load(Ordering::Acquire)
    }

    /// Reports (parks on their epoll sets) the watched connections that
    /// were handed over to this worker since the last look and have data
    /// or a pending close; forgets those handed over or no longer shared.
    /// Cheap when nothing is watched.
    #[inline]
    pub(super) fn notice_handovers(&'static self) {
        if self.forks.watching.load(Ordering::Acquire) {
            self.notice_handovers_now();
        }
    }

    #[cold]
    fn notice_handovers_now(&'static self) {
        let _g = self.op_locks(super::OpKind::MessageQueue, None);
        let mut w = self.forks.handover_watch.lock().unwrap_or_else(PoisonError::into_inner);
        w.retain_mut(|x| {
            let Some(s) = self.pool.get(x.vlsh) else { return false };
            let sh = s.sh();
            if s.is_closed() || s.shared.load(Ordering::Acquire) != x.entry || !self.is_here(sh) {
                return false;
            }
            let (wrk, index) = sh_parts(sh);
            let token = self.vcl.handover_token(wrk, index);
            if token == x.token {
                if x.claimed.is_some_and(|at| at.elapsed() >= CLAIM_GRACE) {
                    return false;
                }
                if x.subscriber {
                    self.report_subscriber_copy(s, x);
                }
                return true;
            }
            // Handed over to this worker, which now owns it until it
            // closes it: claimed, then looked at for a while (see
            // `Watched`); relatives' reads and writes may go on (see
            // `handover_gate`).
            self.vcl.claim_events(sh);
            if let Some(h) = self.forks.shared.get().and_then(|t| t.handover(x.entry)) {
                h.end(wrk);
            }
            let readable = self.vcl.read_ready(sh);
            if readable != 0 {
                if may_log() {
                    tracing::debug!(vlsh = x.vlsh, "connection handed over to this process, readable");
                }
                self.park(libc::EPOLLIN as u32, x.vlsh as u64);
            }
            *x = Watched {
                token,
                subscriber: true,
                last_readable: readable.max(0),
                last_writable: self.vcl.write_ready(sh),
                claimed: Some(std::time::Instant::now()),
                ..*x
            };
            true
        });
        self.forks.watching.store(!w.is_empty(), Ordering::Release);
        self.forks.subscriber_copies.store(w.iter().any(|x| x.subscriber), Ordering::Release);
    }

    /// A look at copy `s` this process holds only as a FIFO subscriber
    /// (see [`Watched`]): parks on its epoll set what VPP told only the
    /// owner, for the bits the application asked for: `EPOLLIN` when the
    /// bytes readable changed and are not 0, `EPOLLOUT` when it became
    /// writable. (The peer's close and reset reach subscribers anyway.)
    fn report_subscriber_copy(&self, s: &super::VlsSession, x: &mut Watched) {
        let sh = s.sh();
        let readable = self.vcl.read_ready(sh).max(0);
        let writable = self.vcl.write_ready(sh);
        let interest = s.membership.interest();
        let mut events = 0;
        if readable > 0 && readable != x.last_readable && interest & libc::EPOLLIN as u32 != 0 {
            events |= libc::EPOLLIN as u32;
        }
        if writable && !x.last_writable && interest & libc::EPOLLOUT as u32 != 0 {
            events |= libc::EPOLLOUT as u32;
        }
        (x.last_readable, x.last_writable) = (readable, writable);
        if events != 0 && s.membership.set().is_some() {
            self.park(events, x.vlsh as u64);
        }
    }

    /// Waits (at most [`HANDOVER_WAIT`]) until the new owners have taken
    /// the sessions over: VPP asks each of them, and they answer the next
    /// time they handle their queue (in `epoll_wait`, `select`, ...).
    fn wait_for_handovers(&self, handovers: &[Handover]) {
        let deadline = std::time::Instant::now() + HANDOVER_WAIT;
        while handovers.iter().any(|h| self.vcl.handover_token(h.to, h.index) == h.before)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// At process exit: exited children are cleaned up, and this worker
    /// leaves every shared session, so relatives keep them (VCL's own exit
    /// handler then frees the worker).
    pub(super) fn leave_shared_sessions_at_exit(&'static self) {
        if self.forks.shared.get().is_none() {
            return;
        }
        self.clean_up_exited_children_now();
        let mut handovers = Vec::new();
        // Connections first, listeners after: VPP may close the connections
        // a listener accepted when it stops listening, unless they have
        // been handed over already.
        for listeners in [false, true] {
            for s in self.pool.live_sessions() {
                // A session another thread is using (blocked in a read, say)
                // is left as it is: waiting for it could take forever, and
                // VCL's exit handler takes the worker down anyway.
                let Some(locked) = s.try_lock() else { continue };
                let sh = locked.sh();
                if locked.closed()
                    || !self.is_here(sh)
                    || (self.vcl.listener_state(sh) != Listener::No) != listeners
                {
                    continue;
                }
                if let Some((_, handover)) = self.leave_shared(s.shared.load(Ordering::Acquire), sh) {
                    s.set_shared(INVALID);
                    self.pool.unmap(&locked);
                    handovers.extend(handover.filter(|h| !listeners && h.before != 0));
                }
            }
            if !listeners {
                self.wait_for_handovers(&handovers);
            }
        }
        self.release_kept_at_exit();
        // Left nothing for a relative to clean up: the record goes before
        // VCL frees the worker, whose index the next fork may take. A
        // parent cleaning up after this process from an older list of its
        // children would otherwise take that newer process's connections
        // (unsubscribed, a connection it kept for it was closed in VPP:
        // socat's children read EBADFD now and then).
        let me = self.vcl.worker_index();
        if let Some(table) = self.forks.shared.get() {
            if me != INVALID && table.subscribed_by(me).is_empty() {
                // SAFETY: getpid has no preconditions.
                table.release_process(me, unsafe { libc::getpid() });
            }
        }
    }
}

impl<V: Vcl> Vls<V> {
    /// The pid of the process this state is (set when the app is created
    /// and in each forked child), without a system call.
    pub fn process_pid(&self) -> i32 {
        self.forks.pid.load(Ordering::Acquire)
    }

    /// Per-process workers: the forked children of this process that VLS
    /// knows of and has not cleaned up yet, as (VCL worker, pid).
    pub fn forked_children(&self) -> Vec<(u32, i32)> {
        let me = self.process_wrk.load(Ordering::Acquire);
        self.forks.shared.get().map(|t| t.children_of(me)).unwrap_or_default()
    }

    /// Per-process workers: sessions shared with forked relatives now (in
    /// the whole family of processes).
    pub fn shared_sessions(&self) -> usize {
        self.forks.shared.get().map_or(0, |t| t.in_use())
    }

    /// Per-process workers: how many workers (processes) hold a copy of
    /// session `vlsh`; 0 if it is not shared.
    pub fn sharers(&self, vlsh: super::Vlsh) -> u32 {
        let Some(s) = self.pool.get(vlsh) else { return 0 };
        let entry = s.shared.load(Ordering::Acquire);
        match (self.forks.shared.get(), entry) {
            (Some(t), e) if e != INVALID => t.lock(e).map_or(0, |g| g.n_subscribers()),
            _ => 0,
        }
    }
}
