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

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_ulong, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::handle::{sh_from_parts, sh_parts, Sh, INVALID};
use crate::seam::{EpollFns, MoveError, RpcHandler, Vcl, WaitHooks};

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

    /// Handles the calling thread's worker's queued RPCs (as VCL does when
    /// it handles its message queue).
    fn handle_rpcs(&self) {
        let wrk = self.wrk();
        loop {
            let msg = self.state.lock().unwrap().rpcs.get_mut(&wrk).and_then(VecDeque::pop_front);
            let Some(msg) = msg else { return };
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

#[allow(unused_variables)]
impl Vcl for Double {
    type Moved = Session;

    unsafe fn app_create(&self, _name: *const c_char) -> i32 {
        let mut st = self.state.lock().unwrap();
        let w = st.next_wrk;
        st.next_wrk += 1;
        set_thread_worker(self.id, w);
        0
    }
    fn worker_index(&self) -> u32 {
        self.wrk()
    }
    fn set_worker_index(&self, wrk: u32) {
        set_thread_worker(self.id, wrk);
    }
    fn worker_register(&self) -> i32 {
        if self.fail_next_register.swap(false, Ordering::SeqCst) {
            return -libc::EEXIST;
        }
        let mut st = self.state.lock().unwrap();
        let w = st.next_wrk;
        st.next_wrk += 1;
        set_thread_worker(self.id, w);
        0
    }
    fn forget_inherited_workers(&self) {
        self.workers_forgotten.store(true, Ordering::SeqCst);
    }
    fn let_vpp_read_queues(&self, _max: Duration) -> bool {
        let wrk = self.wrk();
        if wrk == INVALID {
            // VCL would look up worker ~0.
            self.violations.fetch_add(1, Ordering::SeqCst);
            return false;
        }
        self.queues_read.lock().unwrap().push(wrk);
        true
    }
    fn worker_unregister(&self) {
        let wrk = self.wrk();
        if wrk != INVALID {
            let mut st = self.state.lock().unwrap();
            st.sessions.retain(|sh, _| sh_parts(*sh).0 != wrk);
            st.rpcs.remove(&wrk);
            st.dead_workers.push(wrk);
        }
        set_thread_worker(self.id, INVALID);
    }
    fn mt_workers(&self) -> bool {
        self.mt_workers
    }
    fn use_eventfd(&self) -> bool {
        true
    }
    fn install_wait_hooks(&self, hooks: &'static dyn WaitHooks) {
        let _ = self.hooks.set(hooks);
    }
    fn set_epoll_fns(&self, _fns: EpollFns) {}
    fn mq_epoll_fd(&self) -> i32 {
        self.mq_epoll_fd.load(Ordering::Relaxed)
    }

    fn create(&self, _proto: u8, nonblocking: bool) -> i32 {
        let _c = self.enter(Kind::Pool);
        let mut st = self.state.lock().unwrap();
        self.new_session(&mut st, nonblocking) as i32
    }
    fn close(&self, sh: Sh) -> i32 {
        self.check_own(sh);
        let _c = self.enter(Kind::Pool);
        let mut st = self.state.lock().unwrap();
        match st.sessions.remove(&sh) {
            None => EBADFD,
            Some(s) => {
                if let Some(p) = s.peer.and_then(|p| st.sessions.get_mut(&p)) {
                    p.peer_closed = true;
                }
                self.data.notify_all();
                0
            }
        }
    }
    fn shutdown(&self, sh: Sh, _how: i32) -> i32 {
        self.check_own(sh);
        let _c = self.enter(Kind::Pool);
        if self.state.lock().unwrap().sessions.contains_key(&sh) {
            0
        } else {
            EBADFD
        }
    }
    unsafe fn bind(&self, sh: Sh, _ep: *mut c_void) -> i32 {
        self.check_own(sh);
        let _c = self.enter(Kind::MessageQueue);
        if self.state.lock().unwrap().sessions.contains_key(&sh) {
            0
        } else {
            EBADFD
        }
    }
    fn listen(&self, sh: Sh, _q: u32) -> i32 {
        self.check_own(sh);
        let _c = self.enter(Kind::MessageQueue);
        match self.state.lock().unwrap().sessions.get_mut(&sh) {
            Some(s) => {
                s.listening = true;
                0
            }
            None => EBADFD,
        }
    }
    unsafe fn accept(&self, sh: Sh, _ep: *mut c_void, flags: i32) -> i32 {
        self.check_own(sh);
        // Like VCL, O_NONBLOCK in `flags` makes the new session non-blocking.
        let accepted = |st: &mut State, c: Sh| {
            if let Some(s) = st.sessions.get_mut(&c) {
                s.nonblocking = flags & libc::O_NONBLOCK != 0;
            }
            Self::complete_connect(st, c);
        };
        let nonblocking = {
            let _c = self.enter(Kind::Pool);
            let mut st = self.state.lock().unwrap();
            let Some(l) = st.sessions.get_mut(&sh) else { return EBADFD };
            if let Some(c) = l.accept_q.pop_front() {
                accepted(&mut st, c);
                self.data.notify_all();
                return c as i32;
            }
            l.nonblocking
        };
        if nonblocking {
            return EAGAIN;
        }
        if let Err(e) = self.wait_for(sh, |s| !s.accept_q.is_empty()) {
            return e;
        }
        let _c = self.enter(Kind::Pool);
        let mut st = self.state.lock().unwrap();
        match st.sessions.get_mut(&sh).and_then(|l| l.accept_q.pop_front()) {
            Some(c) => {
                accepted(&mut st, c);
                self.data.notify_all();
                c as i32
            }
            None => EAGAIN,
        }
    }
    /// `ep` points at the peer listener's session handle (`u32`): a new
    /// session is queued on that listener and joined to `sh`.
    unsafe fn connect(&self, sh: Sh, ep: *mut c_void) -> i32 {
        self.check_own(sh);
        let _c = self.enter(Kind::MessageQueue);
        if ep.is_null() {
            return -libc::EFAULT;
        }
        // SAFETY: tests pass a pointer to a u32.
        let listener = unsafe { *(ep as *const u32) };
        let mut st = self.state.lock().unwrap();
        if !st.sessions.contains_key(&sh) || !st.sessions.get(&listener).is_some_and(|l| l.listening) {
            return -libc::ECONNREFUSED;
        }
        let server = self.new_session(&mut st, false);
        st.sessions.get_mut(&server).unwrap().peer = Some(sh);
        let client = st.sessions.get_mut(&sh).unwrap();
        client.peer = Some(server);
        let waits = self.connect_waits_for_accept.load(Ordering::SeqCst);
        client.connecting = waits;
        let nonblocking = client.nonblocking;
        st.sessions.get_mut(&listener).unwrap().accept_q.push_back(server);
        self.data.notify_all();
        if !waits {
            return 0;
        }
        if nonblocking {
            return -libc::EINPROGRESS;
        }
        // VCL's blocking connect: poll until the state changes, no hooks.
        loop {
            match st.sessions.get(&sh) {
                None => return EBADFD,
                Some(s) if !s.connecting => return 0,
                _ => {}
            }
            st = self.data.wait_timeout(st, Duration::from_millis(1)).unwrap().0;
        }
    }
    unsafe fn read(&self, sh: Sh, buf: *mut c_void, n: usize) -> i32 {
        self.check_own(sh);
        let _half = self.enter_half(sh, true);
        let nonblocking = {
            let _c = self.enter(Kind::Io);
            let st = self.state.lock().unwrap();
            let Some(s) = st.sessions.get(&sh) else { return EBADFD };
            s.nonblocking
        };
        if !nonblocking {
            if let Err(e) = self.wait_for(sh, Self::readable) {
                return e;
            }
        }
        let _c = self.enter(Kind::Io);
        let mut st = self.state.lock().unwrap();
        let Some(s) = st.sessions.get_mut(&sh) else { return EBADFD };
        if s.rx.is_empty() {
            return if s.peer_closed { 0 } else { EAGAIN };
        }
        let k = n.min(s.rx.len());
        for i in 0..k {
            // SAFETY: `buf` is valid for `n >= k` bytes.
            unsafe { *(buf as *mut u8).add(i) = s.rx.pop_front().unwrap() };
        }
        let emptied = s.rx.is_empty() && nonblocking;
        drop(st);
        if emptied {
            // Where VCL may append to the worker's unhandled events.
            drop(self.enter(Kind::Drain));
        }
        k as i32
    }
    unsafe fn recvfrom(&self, sh: Sh, buf: *mut c_void, n: u32, _f: i32, _ep: *mut c_void) -> i32 {
        // SAFETY: forwarded.
        unsafe { self.read(sh, buf, n as usize) }
    }
    unsafe fn write(&self, sh: Sh, buf: *mut c_void, n: usize) -> i32 {
        self.check_own(sh);
        let _half = self.enter_half(sh, false);
        let _c = self.enter(Kind::Io);
        let mut st = self.state.lock().unwrap();
        let Some(peer) = st.sessions.get(&sh).map(|s| s.peer) else { return EBADFD };
        let Some(p) = peer.and_then(|p| st.sessions.get_mut(&p)) else { return -libc::ENOTCONN };
        for i in 0..n {
            // SAFETY: `buf` is valid for `n` bytes.
            p.rx.push_back(unsafe { *(buf as *const u8).add(i) });
        }
        self.data.notify_all();
        n as i32
    }
    unsafe fn write_msg(&self, sh: Sh, buf: *mut c_void, n: usize) -> i32 {
        // SAFETY: forwarded; the whole message is appended under one lock.
        unsafe { self.write(sh, buf, n) }
    }
    unsafe fn sendto(&self, sh: Sh, buf: *mut c_void, n: i32, _f: i32, _ep: *mut c_void) -> i32 {
        // SAFETY: forwarded.
        unsafe { self.write(sh, buf, n.max(0) as usize) }
    }
    unsafe fn attr(&self, sh: Sh, _op: u32, _buf: *mut c_void, _len: *mut u32) -> i32 {
        self.check_own(sh);
        let _c = self.enter(Kind::Io);
        if self.state.lock().unwrap().sessions.contains_key(&sh) {
            0
        } else {
            EBADFD
        }
    }
    fn epoll_create(&self) -> i32 {
        let _c = self.enter(Kind::Pool);
        let mut st = self.state.lock().unwrap();
        let sh = self.new_session(&mut st, true);
        st.sessions.get_mut(&sh).unwrap().is_epoll = true;
        sh as i32
    }
    unsafe fn epoll_ctl(&self, ep_sh: Sh, op: i32, sh: Sh, _ev: *mut libc::epoll_event) -> i32 {
        self.check_own(ep_sh);
        self.check_own(sh);
        let _c = self.enter(Kind::MessageQueue);
        let mut st = self.state.lock().unwrap();
        if !st.sessions.contains_key(&sh) {
            return EBADFD;
        }
        let Some(ep) = st.sessions.get_mut(&ep_sh) else { return EBADFD };
        // SAFETY: `ev` is null or valid (packed struct read by value).
        let data = if _ev.is_null() { 0 } else { unsafe { (*_ev).u64 } };
        match op {
            libc::EPOLL_CTL_ADD => ep.epoll_members.push((sh, data)),
            libc::EPOLL_CTL_MOD => ep.epoll_members.iter_mut().filter(|m| m.0 == sh).for_each(|m| m.1 = data),
            libc::EPOLL_CTL_DEL => ep.epoll_members.retain(|m| m.0 != sh),
            _ => {}
        }
        0
    }
    unsafe fn epoll_wait(&self, ep_sh: Sh, evs: *mut libc::epoll_event, max: i32, _wait: f64) -> i32 {
        self.check_own(ep_sh);
        self.handle_rpcs();
        let _c = self.enter(Kind::MessageQueue);
        let st = self.state.lock().unwrap();
        if !st.sessions.contains_key(&ep_sh) {
            return EBADFD;
        }
        // Like VCL, epoll state is per worker: readable members of *every*
        // epoll set of the worker are reported, whichever set is waited on.
        let wrk = crate::handle::sh_parts(ep_sh).0;
        let mut n = 0;
        for (_, ep) in st.sessions.iter().filter(|(h, _)| crate::handle::sh_parts(**h).0 == wrk) {
            for &(m, data) in &ep.epoll_members {
                let Some(s) = st.sessions.get(&m).filter(|s| Self::readable(s)) else { continue };
                if n < max {
                    // Like VCL, a peer's close adds the hang-up bit.
                    let events = if s.peer_closed { libc::EPOLLIN | libc::EPOLLRDHUP } else { libc::EPOLLIN };
                    // SAFETY: `evs` is valid for `max` events.
                    unsafe { *evs.add(n as usize) = libc::epoll_event { events: events as u32, u64: data } };
                    n += 1;
                }
            }
        }
        n
    }
    /// Read map only, no waiting. Like VCL, a readable session is counted
    /// twice (once for its ready state, once for its queued RX event).
    unsafe fn select(&self, n: i32, r: *mut c_ulong, w: *mut c_ulong, e: *mut c_ulong, _wait: f64) -> i32 {
        let _c = self.enter(Kind::MessageQueue);
        let st = self.state.lock().unwrap();
        let word_bits = c_ulong::BITS;
        let mut count = 0;
        for map in [w, e] {
            if !map.is_null() {
                // SAFETY: caller's contract: `n` bits.
                unsafe { std::ptr::write_bytes(map, 0, (n as u32).div_ceil(word_bits) as usize) };
            }
        }
        if r.is_null() {
            return 0;
        }
        let wrk = self.wrk();
        for i in 0..n as u32 {
            // SAFETY: caller's contract: `n` bits.
            let word = unsafe { &mut *r.add((i / word_bits) as usize) };
            let bit: c_ulong = 1 << (i % word_bits);
            if *word & bit == 0 {
                continue;
            }
            if st.sessions.get(&sh_from_parts(wrk, i)).is_some_and(Self::readable) {
                count += 2;
            } else {
                *word &= !bit;
            }
        }
        count
    }
    unsafe fn poll(&self, _vp: *mut c_void, _n: u32, _wait: f64) -> i32 {
        let _c = self.enter(Kind::MessageQueue);
        0
    }
    fn is_nonblocking(&self, sh: Sh) -> bool {
        self.state.lock().unwrap().sessions.get(&sh).is_some_and(|s| s.nonblocking)
    }
    fn read_ready(&self, sh: Sh) -> i32 {
        match self.state.lock().unwrap().sessions.get(&sh) {
            None => EBADFD,
            Some(s) => Self::readable(s) as i32,
        }
    }
    fn write_ready(&self, _sh: Sh) -> bool {
        true
    }
    fn unhandled_events(&self) -> u32 {
        0
    }
    fn set_app_closing(&self, sh: Sh) {
        if let Some(s) = self.state.lock().unwrap().sessions.get_mut(&sh) {
            s.app_closing = true;
        }
        self.data.notify_all();
    }
    fn set_nonblocking(&self, sh: Sh, on: bool) {
        if let Some(s) = self.state.lock().unwrap().sessions.get_mut(&sh) {
            s.nonblocking = on;
        }
    }
    fn connect_state(&self, sh: Sh) -> i32 {
        match self.state.lock().unwrap().sessions.get(&sh) {
            None => EBADFD,
            Some(s) => (!s.connecting) as i32,
        }
    }

    fn move_out(&self, wrk: u32, session_index: u32) -> Result<Session, MoveError> {
        let mut st = self.state.lock().unwrap();
        if wrk >= st.next_wrk || st.dead_workers.contains(&wrk) {
            return Err(MoveError::NoWorker);
        }
        let sh = sh_from_parts(wrk, session_index);
        let Some(s) = st.sessions.get(&sh) else { return Err(MoveError::NoSession) };
        // As the shim: sessions never opened and listeners without queued
        // connections move, and sets whose members all can; connections
        // and stubs do not. A set leaves its members behind, unlinked; a
        // member leaves its set; a listener leaves a stub.
        let alone_movable = |s: &Session| !s.is_epoll && !s.stub && s.peer.is_none() && s.accept_q.is_empty();
        let movable = if s.is_epoll {
            s.epoll_members.iter().all(|m| st.sessions.get(&m.0).is_some_and(alone_movable))
        } else {
            alone_movable(s)
        };
        if !movable {
            return Err(MoveError::NotMovable);
        }
        let mut moved = st.sessions.remove(&sh).unwrap();
        for (m, data) in std::mem::take(&mut moved.epoll_members) {
            if let Some(m) = st.sessions.get_mut(&m) {
                m.left_set_data = Some(data);
            }
        }
        for ep in st.sessions.values_mut() {
            if let Some(i) = ep.epoll_members.iter().position(|m| m.0 == sh) {
                moved.left_set_data = Some(ep.epoll_members.remove(i).1);
            }
        }
        if moved.listening {
            st.sessions.insert(sh, Session { listening: true, stub: true, ..Default::default() });
        }
        Ok(moved)
    }
    fn take_over(&self, sh: Sh, _wait: Duration) -> Result<bool, MoveError> {
        self.check_own(sh);
        match self.state.lock().unwrap().sessions.get(&sh) {
            Some(s) => Ok(s.listening),
            None => Err(MoveError::NoSession),
        }
    }
    fn stub_take(&self, wrk: u32, session_index: u32) -> Result<Session, MoveError> {
        let mut st = self.state.lock().unwrap();
        if wrk >= st.next_wrk || st.dead_workers.contains(&wrk) {
            return Err(MoveError::NoWorker);
        }
        let sh = sh_from_parts(wrk, session_index);
        if !st.sessions.get(&sh).is_some_and(|s| s.stub) {
            return Err(MoveError::NoSession);
        }
        Ok(st.sessions.remove(&sh).unwrap())
    }
    fn merge_accepts(&self, sh: Sh, stub: Session) -> Result<u32, MoveError> {
        self.check_own(sh);
        let mut st = self.state.lock().unwrap();
        let Some(l) = st.sessions.get_mut(&sh).filter(|l| l.listening && !l.stub) else {
            return Err(MoveError::NoSession);
        };
        let n = stub.accept_q.len() as u32;
        l.accept_q.extend(stub.accept_q);
        self.data.notify_all();
        Ok(n)
    }
    fn in_epoll(&self, sh: Sh) -> bool {
        self.state.lock().unwrap().sessions.values().any(|e| e.epoll_members.iter().any(|m| m.0 == sh))
    }
    fn rejoin(&self, ep_sh: Sh, sh: Sh) -> i32 {
        self.check_own(ep_sh);
        self.check_own(sh);
        let mut st = self.state.lock().unwrap();
        let Some(data) = st.sessions.get_mut(&sh).and_then(|s| s.left_set_data.take()) else { return EBADFD };
        match st.sessions.get_mut(&ep_sh) {
            Some(ep) if ep.is_epoll => {
                ep.epoll_members.push((sh, data));
                0
            }
            _ => EBADFD,
        }
    }
    fn move_in(&self, moved: Session) -> Result<Sh, MoveError> {
        // (The session is out of every worker meanwhile: a window to widen.)
        let until = Instant::now() + self.pause;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        let mut st = self.state.lock().unwrap();
        let sh = self.new_session(&mut st, false);
        st.sessions.insert(sh, moved);
        self.moves_in.fetch_add(1, Ordering::SeqCst);
        Ok(sh)
    }
    fn install_rpc_handler(&self, handler: &'static dyn RpcHandler) {
        let _ = self.rpc_handler.set(handler);
    }
    fn send_rpc(&self, dst: u32, msg: &[u8]) -> i32 {
        let mut st = self.state.lock().unwrap();
        if dst >= st.next_wrk || st.dead_workers.contains(&dst) {
            return EBADFD;
        }
        st.rpcs.entry(dst).or_default().push_back(msg.to_vec());
        0
    }
    fn flush_mq(&self) {
        self.handle_rpcs();
    }
}
