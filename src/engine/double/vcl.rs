//! The double's VCL calls (`impl Vcl for Double`): sessions, reads and
//! writes, epoll, moves between workers and RPCs, each entering the
//! conflict checker of [`super`] for the kind of VCL state it touches.

use std::ffi::{c_char, c_ulong, c_void};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{set_thread_worker, Double, Kind, Session, State, EAGAIN, EBADFD};
use crate::handle::{sh_from_parts, sh_parts, Sh, INVALID};
use crate::seam::{EpollFns, MoveError, RpcHandler, Vcl, WaitHooks};

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
    fn fork_copy_sessions(&self, parent_wrk: u32) -> i32 {
        // As the shim's: the parent's sessions on the calling worker, same
        // indices (the double's copies share nothing with the originals).
        let me = self.wrk();
        let mut st = self.state.lock().unwrap();
        let copies: Vec<(Sh, Session)> = st
            .sessions
            .iter()
            .filter(|(sh, _)| sh_parts(**sh).0 == parent_wrk)
            .map(|(sh, s)| {
                let copy = Session {
                    is_epoll: s.is_epoll,
                    nonblocking: s.nonblocking,
                    listening: s.listening,
                    ..Session::default()
                };
                (sh_from_parts(me, sh_parts(*sh).1), copy)
            })
            .collect();
        let next = st.next_session.get(&parent_wrk).copied().unwrap_or(0);
        st.next_session.insert(me, next);
        st.sessions.extend(copies);
        0
    }
    fn unshare(&self, sh: Sh, _new_owner: u32, _notify_vpp: bool) -> i32 {
        // The copy goes; the others' stay.
        match self.state.lock().unwrap().sessions.remove(&sh) {
            Some(_) => 0,
            None => -libc::EBADFD,
        }
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
    fn worker_leave_quietly(&self) {
        self.quiet_leaves.fetch_add(1, Ordering::SeqCst);
        self.worker_unregister();
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
    unsafe fn recvfrom(&self, sh: Sh, buf: *mut c_void, n: u32, flags: i32, _ep: *mut c_void) -> i32 {
        // As VCL: no flag but MSG_PEEK (which the double does not model).
        if flags != 0 {
            return -libc::EAFNOSUPPORT;
        }
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
