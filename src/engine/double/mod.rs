//! An in-memory stand-in for VCL, for the core's tests (test-only).
//!
//! It models what matters to the locking layer, not networking:
//! - worker indices per thread, worker registration;
//! - sessions with a byte queue, blocking and non-blocking reads, pairs of
//!   sessions joined by `connect` (the endpoint pointer carries the peer's
//!   session handle), listeners with an accept queue;
//! - blocking waits that call the installed wait hooks, like VCL does, and
//!   return when the session gets data or the app marks it closing;
//! - a **conflict checker**: VCL's rules for one worker shared by threads
//!   (session-pool changes exclusive with everything, message-queue/epoll
//!   work exclusive with itself and with pool changes; reads/writes on
//!   sessions may overlap each other, except that a non-blocking read that
//!   empties its session's queue touches worker state like epoll work does:
//!   VCL then appends to the worker's unhandled-events vector if data came
//!   in meanwhile) are checked on every call, with a short
//!   pause inside each call to widen race windows. [`Double::violations`]
//!   counts broken rules; with per-thread workers, so does any use of a
//!   session from a thread whose worker does not own it;
//! - moving never-opened sessions, listeners (which leave a stub, as the
//!   shim's) and epoll sets between workers, and inter-worker RPCs,
//!   delivered only where VCL handles its message queue (blocking waits,
//!   epoll waits, flushes) on the destination's thread.
//!
//! Here: the double's state and the conflict checker; its VCL calls are in
//! [`vcl`].

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::handle::{sh_from_parts, sh_parts, Sh, INVALID};
use crate::seam::{RpcHandler, WaitHooks};

mod vcl;

const EBADFD: i32 = -libc::EBADFD;
const EAGAIN: i32 = -libc::EAGAIN;

static NEXT_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// (double id, worker index) pairs of this thread. Plain data without a
    /// destructor, like VCL's `__thread` worker index, so it can still be
    /// read by thread-exit hooks.
    static WORKER: Cell<[(usize, u32); 8]> = const { Cell::new([(0, INVALID); 8]) };
}

/// Sets this thread's worker for double `id` (`INVALID` clears it).
fn set_thread_worker(id: usize, wrk: u32) {
    WORKER.with(|w| {
        let mut a = w.get();
        let slot = a.iter().position(|e| e.0 == id).or_else(|| a.iter().position(|e| e.0 == 0));
        if let Some(i) = slot {
            a[i] = if wrk == INVALID { (0, INVALID) } else { (id, wrk) };
        }
        w.set(a);
    });
}

#[derive(Default)]
pub struct Session {
    is_epoll: bool,
    rx: VecDeque<u8>,
    nonblocking: bool,
    peer: Option<Sh>,
    accept_q: VecDeque<Sh>,
    listening: bool,
    app_closing: bool,
    peer_closed: bool,
    /// (member, registered event data).
    epoll_members: Vec<(Sh, u64)>,
    /// The event data of the set this session was unlinked from when it or
    /// its set moved (per-thread workers), for [`Vcl::rejoin`].
    left_set_data: Option<u64>,
    /// Reads (writes) of this session in progress: VCL's rx FIFO has one
    /// consumer and its tx FIFO one producer, so two at once break it.
    reading: u32,
    writing: u32,
    /// A connect in progress (see [`Double::connect_waits_for_accept`]).
    connecting: bool,
    /// The stub a listener left on the worker it moved out of (as the
    /// shim's): it takes the connections made to the listener's old handle
    /// (as VPP announces them to the old worker until it has handled the
    /// move) until [`Vcl::stub_take`].
    stub: bool,
}

#[derive(Default)]
struct State {
    /// Workers unregistered (their sessions are gone).
    dead_workers: Vec<u32>,
    /// RPCs waiting for their destination worker to handle its queue.
    rpcs: HashMap<u32, VecDeque<Vec<u8>>>,
    next_wrk: u32,
    next_session: HashMap<u32, u32>,
    sessions: HashMap<Sh, Session>,
}

/// Kinds of call, for the conflict checker.
#[derive(Copy, Clone)]
enum Kind {
    Pool,
    MessageQueue,
    Io,
    /// The end of a non-blocking read that emptied the session's queue:
    /// VCL re-arms the session's event there and may append it to the
    /// worker's unhandled-events vector, which epoll waits walk and reset.
    Drain,
}

/// The test double.
pub struct Double {
    id: usize,
    mt_workers: bool,
    state: Mutex<State>,
    data: Condvar,
    hooks: OnceLock<&'static dyn WaitHooks>,
    rpc_handler: OnceLock<&'static dyn RpcHandler>,
    pool_ops: AtomicU32,
    mq_ops: AtomicU32,
    io_ops: AtomicU32,
    drain_ops: AtomicU32,
    violations: AtomicUsize,
    /// Sessions moved in so far.
    moves_in: AtomicUsize,
    /// `forget_inherited_workers` was called.
    workers_forgotten: AtomicBool,
    /// How many workers left through `worker_leave_quietly` (also in
    /// `dead_workers`).
    quiet_leaves: AtomicUsize,
    /// Workers whose queues VPP was let read before they went away.
    queues_read: Mutex<Vec<u32>>,
    /// The next worker registration fails (as VCL's when VPP refuses it).
    fail_next_register: AtomicBool,
    /// How long each call pauses inside (widens race windows).
    pause: Duration,
    /// Connects complete only once the server side accepts them.
    connect_waits_for_accept: AtomicBool,
    /// Threads blocked in a wait inside a call (read, write, accept).
    blocked: AtomicUsize,
    /// What `mq_epoll_fd` answers (-1: no eventfd, the default).
    mq_epoll_fd: std::sync::atomic::AtomicI32,
}

struct InCall<'a> {
    d: &'a Double,
    kind: Kind,
}

impl Drop for InCall<'_> {
    fn drop(&mut self) {
        self.d.counter(self.kind).fetch_sub(1, Ordering::SeqCst);
    }
}

/// A read or write of one session in progress (see [`Double::enter_half`]).
struct InHalf<'a> {
    d: &'a Double,
    sh: Sh,
    rx: bool,
}

impl Drop for InHalf<'_> {
    fn drop(&mut self) {
        let mut st = self.d.state.lock().unwrap();
        if let Some(s) = st.sessions.get_mut(&self.sh) {
            let n = if self.rx { &mut s.reading } else { &mut s.writing };
            *n = n.saturating_sub(1);
        }
    }
}

impl Double {
    /// A double; `mt_workers` models `multi-thread-workers`.
    pub fn new(mt_workers: bool) -> Self {
        Double {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            mt_workers,
            state: Mutex::new(State::default()),
            data: Condvar::new(),
            hooks: OnceLock::new(),
            rpc_handler: OnceLock::new(),
            pool_ops: AtomicU32::new(0),
            mq_ops: AtomicU32::new(0),
            io_ops: AtomicU32::new(0),
            drain_ops: AtomicU32::new(0),
            violations: AtomicUsize::new(0),
            moves_in: AtomicUsize::new(0),
            workers_forgotten: AtomicBool::new(false),
            quiet_leaves: AtomicUsize::new(0),
            queues_read: Mutex::new(Vec::new()),
            fail_next_register: AtomicBool::new(false),
            pause: Duration::from_micros(20),
            connect_waits_for_accept: AtomicBool::new(false),
            blocked: AtomicUsize::new(0),
            mq_epoll_fd: std::sync::atomic::AtomicI32::new(-1),
        }
    }

    /// The same double without the pause inside each call (for operations
    /// that never run at once, e.g. the fuzz target's).
    pub fn without_pause(mut self) -> Self {
        self.pause = Duration::ZERO;
        self
    }

    /// Makes `mq_epoll_fd` answer `fd` (a stand-in for VCL's message-queue
    /// epoll fd, so that epoll sets get wake fds).
    pub fn set_mq_epoll_fd(&self, fd: i32) {
        self.mq_epoll_fd.store(fd, Ordering::Relaxed);
    }

    /// From now on a connect completes only when the server side accepts
    /// it, as over VPP's cut-through; a blocking connect waits for that
    /// polling the (modelled) message queue without calling the wait hooks,
    /// like VCL; a non-blocking one returns `EINPROGRESS`.
    pub fn connect_waits_for_accept(&self) {
        self.connect_waits_for_accept.store(true, Ordering::SeqCst);
    }

    /// Threads blocked inside a read, write or accept right now (a test
    /// waits for this instead of assuming a thread blocked by now).
    pub fn blocked(&self) -> usize {
        self.blocked.load(Ordering::SeqCst)
    }

    /// Reads of session `sh` in progress (blocked ones included).
    pub fn reads_in_progress(&self, sh: Sh) -> u32 {
        self.state.lock().unwrap().sessions.get(&sh).map_or(0, |s| s.reading)
    }

    /// Connects made and not yet accepted (their callers are waiting, or
    /// about to).
    pub fn connects_waiting(&self) -> usize {
        self.state.lock().unwrap().sessions.values().filter(|s| s.connecting).count()
    }

    /// Broken VCL threading rules seen so far.
    pub fn violations(&self) -> usize {
        self.violations.load(Ordering::SeqCst)
    }

    /// `forget_inherited_workers` was called.
    /// Workers unregistered so far (their indices).
    pub fn unregistered_workers(&self) -> Vec<u32> {
        self.state.lock().unwrap().dead_workers.clone()
    }

    /// How many workers left VPP quietly (a forked child's exit or exec).
    pub fn quiet_leaves(&self) -> usize {
        self.quiet_leaves.load(Ordering::SeqCst)
    }

    pub fn workers_forgotten(&self) -> bool {
        self.workers_forgotten.load(Ordering::SeqCst)
    }

    /// The workers whose queues VPP was let read (`let_vpp_read_queues`),
    /// in call order.
    pub fn queues_read(&self) -> Vec<u32> {
        self.queues_read.lock().unwrap().clone()
    }

    /// Makes the next worker registration fail.
    pub fn fail_next_register(&self) {
        self.fail_next_register.store(true, Ordering::SeqCst);
    }

    /// Sessions moved in to a worker so far.
    pub fn moves_in(&self) -> usize {
        self.moves_in.load(Ordering::SeqCst)
    }

    /// VCL frees session `sh` by itself (as after VPP cleaned it up),
    /// behind VLS's back.
    pub fn forget_session(&self, sh: Sh) {
        self.state.lock().unwrap().sessions.remove(&sh);
    }

    /// Listener stubs waiting to be taken, and the connections queued on
    /// them.
    pub fn stubs(&self) -> (usize, usize) {
        let st = self.state.lock().unwrap();
        st.sessions.values().filter(|s| s.stub).fold((0, 0), |(n, q), s| (n + 1, q + s.accept_q.len()))
    }

    /// RPC messages sent to worker `wrk` and not yet handled by it.
    pub fn rpcs_queued(&self, wrk: u32) -> usize {
        self.state.lock().unwrap().rpcs.get(&wrk).map_or(0, VecDeque::len)
    }

    /// Number of sessions VCL holds.
    pub fn n_sessions(&self) -> usize {
        self.state.lock().unwrap().sessions.len()
    }

    fn counter(&self, k: Kind) -> &AtomicU32 {
        match k {
            Kind::Pool => &self.pool_ops,
            Kind::MessageQueue => &self.mq_ops,
            Kind::Io => &self.io_ops,
            Kind::Drain => &self.drain_ops,
        }
    }

    /// Enters a call of kind `k`, counting a violation if it overlaps a call
    /// it must not overlap (only relevant when threads share a worker).
    fn enter(&self, k: Kind) -> InCall<'_> {
        if self.wrk() == INVALID {
            // VCL would look up worker ~0.
            if std::env::var_os("DOUBLE_DEBUG").is_some() {
                eprintln!("violation: call from a thread without a worker");
            }
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
        let mine = self.counter(k).fetch_add(1, Ordering::SeqCst);
        if !self.mt_workers {
            let pool = self.pool_ops.load(Ordering::SeqCst);
            let mq = self.mq_ops.load(Ordering::SeqCst);
            let io = self.io_ops.load(Ordering::SeqCst);
            let drain = self.drain_ops.load(Ordering::SeqCst);
            let bad = match k {
                Kind::Pool => mine > 0 || mq > 0 || io > 0 || drain > 0,
                Kind::MessageQueue => mine > 0 || pool > 0 || drain > 0,
                Kind::Io => pool > 0,
                Kind::Drain => mine > 0 || pool > 0 || mq > 0,
            };
            if bad {
                if std::env::var_os("DOUBLE_DEBUG").is_some() {
                    eprintln!(
                        "violation: {} while pool={pool} mq={mq} io={io}\n{}",
                        match k {
                            Kind::Pool => "pool",
                            Kind::MessageQueue => "message-queue",
                            Kind::Io => "io",
                            Kind::Drain => "drain",
                        },
                        std::backtrace::Backtrace::force_capture()
                    );
                }
                self.violations.fetch_add(1, Ordering::SeqCst);
            }
        }
        let until = Instant::now() + self.pause;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        InCall { d: self, kind: k }
    }

    /// Per-thread workers: a session used from a thread whose worker does
    /// not own it is a violation (VCL would look the index up in the wrong
    /// worker's pool).
    fn check_own(&self, sh: Sh) {
        if self.mt_workers && sh_parts(sh).0 != self.wrk() {
            if std::env::var_os("DOUBLE_DEBUG").is_some() {
                eprintln!("violation: session {sh:#x} used from worker {}", self.wrk());
            }
            self.violations.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Handles the RPCs queued for the calling thread's worker when it
    /// looks (as VCL reads its message queue in a batch: what arrives
    /// while it handles them waits for its next look).
    fn handle_rpcs(&self) {
        let wrk = self.wrk();
        let batch = self.state.lock().unwrap().rpcs.get_mut(&wrk).map(std::mem::take).unwrap_or_default();
        for msg in batch {
            if let Some(h) = self.rpc_handler.get() {
                h.handle_rpc(&msg);
            }
        }
    }

    fn wrk(&self) -> u32 {
        WORKER.with(|w| w.get().iter().find(|e| e.0 == self.id).map_or(INVALID, |e| e.1))
    }

    fn new_session(&self, st: &mut State, nonblocking: bool) -> Sh {
        let wrk = self.wrk();
        let next = st.next_session.entry(wrk).or_insert(0);
        let sh = sh_from_parts(wrk, *next);
        *next += 1;
        st.sessions.insert(sh, Session { nonblocking, ..Default::default() });
        sh
    }

    fn readable(s: &Session) -> bool {
        !s.rx.is_empty() || s.peer_closed || !s.accept_q.is_empty()
    }

    /// The client side of accepted server session `server` is connected.
    fn complete_connect(st: &mut State, server: Sh) {
        if let Some(c) = st.sessions.get(&server).and_then(|s| s.peer) {
            if let Some(c) = st.sessions.get_mut(&c) {
                c.connecting = false;
            }
        }
    }

    /// Enters a read (`rx`) or write of session `sh`, counting a violation
    /// if another of the same kind is in progress on it.
    fn enter_half(&self, sh: Sh, rx: bool) -> InHalf<'_> {
        let mut st = self.state.lock().unwrap();
        if let Some(s) = st.sessions.get_mut(&sh) {
            let n = if rx { &mut s.reading } else { &mut s.writing };
            if *n > 0 {
                self.violations.fetch_add(1, Ordering::SeqCst);
            }
            *n += 1;
        }
        InHalf { d: self, sh, rx }
    }

    /// Blocking wait the way VCL does it: hooks around short sleeps, until
    /// `done` or the app marks the session closing.
    fn wait_for(&self, sh: Sh, done: impl Fn(&Session) -> bool) -> Result<(), i32> {
        struct Blocked<'a>(Option<&'a AtomicUsize>);
        impl Drop for Blocked<'_> {
            fn drop(&mut self) {
                if let Some(b) = self.0 {
                    b.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        let mut blocked = Blocked(None);
        loop {
            {
                let st = self.state.lock().unwrap();
                match st.sessions.get(&sh) {
                    None => return Err(EBADFD),
                    Some(s) if s.app_closing => return Err(-libc::ECONNRESET),
                    Some(s) if done(s) => return Ok(()),
                    _ => {}
                }
            }
            if blocked.0.is_none() {
                self.blocked.fetch_add(1, Ordering::SeqCst);
                blocked.0 = Some(&self.blocked);
            }
            if let Some(h) = self.hooks.get() {
                h.pre_wait(sh);
            }
            {
                let st = self.state.lock().unwrap();
                let closing = st.sessions.get(&sh).map_or(true, |s| s.app_closing || done(s));
                if !closing {
                    let _ = self.data.wait_timeout(st, Duration::from_millis(1)).unwrap();
                }
            }
            if let Some(h) = self.hooks.get() {
                h.post_wait(sh);
            }
            // Like VCL, handle the message queue's events after a wait.
            drop(self.enter(Kind::MessageQueue));
            self.handle_rpcs();
        }
    }
}
