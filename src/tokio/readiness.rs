//! The readiness of one registered session: what the reactor last learnt
//! from VCL, and who waits for it.
//!
//! ## The state word
//!
//! One `AtomicU64` holds `tick << 8 | bits`. The bits say what the session
//! may be able to do now (see the constants); the tick counts the reactor's
//! reports. Only two things change the word:
//!
//! - [`Readiness::set`] (the reactor delivering an event): ORs bits in and
//!   increments the tick, then wakes the waiters of the directions the
//!   bits concern;
//! - [`Readiness::clear`] (a task whose call just answered `WouldBlock`):
//!   removes [`READABLE`] or [`WRITABLE`] **only if the tick is still the
//!   one the task saw before its call** (compare-and-clear). An event that
//!   arrived while the call ran has moved the tick on, so it survives and
//!   the task tries again instead of sleeping on a stale "not ready".
//!
//! Nothing else clears readiness: not a read that returned less than asked,
//! not a read that emptied the FIFO. VPP notifies a session's RX only when
//! its FIFO's event flag goes from unset to set, and the flag is unset only
//! when the application drains the FIFO to empty (see DESIGN.md, "has_event").
//! So "readable" has to stay on until a read says `WouldBlock`, which is
//! also the moment VCL has unset the flag and VPP will notify again.
//!
//! [`READ_CLOSED`], [`HUNG_UP`] and [`ERROR`] are sticky: once VCL reported
//! them, every call of that direction completes (end of stream or an
//! error). [`REARM`] is a request, taken once by [`Readiness::take_rearm`]:
//! after a hang-up VCL stops reporting any event of the session (it zeroes
//! its epoll interest), so a writer that then finds the TX FIFO full must
//! register the session again before waiting for room.
//!
//! ## Waiters
//!
//! One waker per direction (the last task that polled it), as with tokio's
//! own sockets: one reader and one writer at a time. `poll_ready` stores its
//! waker and reads the state again while holding the waker lock, and `set`
//! changes the state before it takes that lock, so an event is either seen
//! by the poll or finds its waker: no wake-up is lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

/// Data (or a connection) to take.
pub(crate) const READABLE: u32 = 1;
/// Room to write.
pub(crate) const WRITABLE: u32 = 1 << 1;
/// The peer closed its side (`EPOLLRDHUP`): reads end. Sticky.
pub(crate) const READ_CLOSED: u32 = 1 << 2;
/// The session hung up (`EPOLLHUP`: closed, reset or refused). Sticky.
pub(crate) const HUNG_UP: u32 = 1 << 3;
/// An error is pending (`EPOLLERR`). Sticky.
pub(crate) const ERROR: u32 = 1 << 4;
/// VCL reports no more events of the session until it is registered
/// again (after `EPOLLRDHUP`/`EPOLLHUP`). Taken by the next writer that
/// would block.
pub(crate) const REARM: u32 = 1 << 5;
/// The reactor is gone (its runtime shut down). Sticky.
pub(crate) const SHUTDOWN: u32 = 1 << 6;

const BITS: u64 = 0xff;
const TICK_SHIFT: u32 = 8;

/// Which way a task wants to use the session.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Read, receive or accept.
    Read,
    /// Write, send, or finish a connect.
    Write,
}

impl Direction {
    /// The bits that make a call of this direction worth trying.
    fn mask(self) -> u32 {
        match self {
            Direction::Read => READABLE | READ_CLOSED | HUNG_UP | ERROR | SHUTDOWN,
            Direction::Write => WRITABLE | HUNG_UP | ERROR | REARM | SHUTDOWN,
        }
    }

    /// The bit a `WouldBlock` of this direction clears.
    pub(crate) fn clearable(self) -> u32 {
        match self {
            Direction::Read => READABLE,
            Direction::Write => WRITABLE,
        }
    }

    fn index(self) -> usize {
        match self {
            Direction::Read => 0,
            Direction::Write => 1,
        }
    }
}

/// What [`Readiness::poll_ready`] saw: the tick and the bits of the
/// direction asked for. Give it back to [`Readiness::clear`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Ready {
    tick: u64,
    bits: u32,
}

impl Ready {
    /// The bits of the direction that were set.
    pub(crate) fn bits(self) -> u32 {
        self.bits
    }
}

/// The readiness of one session (see the module docs).
#[derive(Debug)]
pub(crate) struct Readiness {
    /// `tick << 8 | bits`.
    state: AtomicU64,
    /// The waiting reader's and writer's wakers.
    wakers: Mutex<[Option<Waker>; 2]>,
}

/// The epoll bits of a VCL event as readiness bits.
pub(crate) fn from_epoll(events: u32) -> u32 {
    let mut bits = 0;
    if events & libc::EPOLLIN as u32 != 0 {
        bits |= READABLE;
    }
    if events & libc::EPOLLOUT as u32 != 0 {
        bits |= WRITABLE;
    }
    if events & libc::EPOLLRDHUP as u32 != 0 {
        bits |= READ_CLOSED | REARM;
    }
    if events & libc::EPOLLHUP as u32 != 0 {
        bits |= HUNG_UP | REARM;
    }
    if events & libc::EPOLLERR as u32 != 0 {
        bits |= ERROR;
    }
    bits
}

impl Readiness {
    /// A session assumed to be `initial` (e.g. an accepted stream is
    /// assumed readable and writable: the first call finds out).
    pub(crate) fn new(initial: u32) -> Readiness {
        Readiness { state: AtomicU64::new(initial as u64), wakers: Mutex::new([None, None]) }
    }

    /// The current bits (for tests).
    #[cfg(test)]
    pub(crate) fn bits(&self) -> u32 {
        (self.state.load(Ordering::Acquire) & BITS) as u32
    }

    /// An event for the session: adds `bits`, moves the tick on, wakes the
    /// waiters `bits` concern.
    pub(crate) fn set(&self, bits: u32) {
        if bits == 0 {
            return;
        }
        let add = bits as u64 & BITS;
        // A plain read-modify-write: the tick lives in the high bits.
        let _ = self.state.fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
            Some(((s >> TICK_SHIFT).wrapping_add(1) << TICK_SHIFT) | (s & BITS) | add)
        });
        let (reader, writer) = {
            let mut w = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
            let r = if bits & Direction::Read.mask() != 0 { w[0].take() } else { None };
            let wr = if bits & Direction::Write.mask() != 0 { w[1].take() } else { None };
            (r, wr)
        };
        // Woken outside the lock (a waker may run code of the runtime).
        if let Some(w) = reader {
            w.wake();
        }
        if let Some(w) = writer {
            w.wake();
        }
    }

    /// Ready if a call of direction `dir` is worth trying; else registers
    /// the task's waker for `dir` and returns `Pending`.
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, dir: Direction) -> Poll<Ready> {
        if let Some(r) = self.ready_now(dir) {
            return Poll::Ready(r);
        }
        let mut w = self.wakers.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = &mut w[dir.index()];
        match slot {
            Some(old) if old.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        // Again under the lock: `set` changes the state before it takes
        // the lock, so it either shows here or finds the waker.
        match self.ready_now(dir) {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }

    fn ready_now(&self, dir: Direction) -> Option<Ready> {
        let s = self.state.load(Ordering::Acquire);
        let bits = (s & BITS) as u32 & dir.mask();
        (bits != 0).then_some(Ready { tick: s >> TICK_SHIFT, bits })
    }

    /// A call of direction `dir` answered `WouldBlock` after `seen`: clears
    /// that direction's readiness unless an event came since (the tick
    /// moved on). Sticky bits stay.
    pub(crate) fn clear(&self, seen: Ready, dir: Direction) {
        let clear = (seen.bits & dir.clearable()) as u64;
        if clear == 0 {
            return;
        }
        let mut cur = self.state.load(Ordering::Acquire);
        loop {
            if cur >> TICK_SHIFT != seen.tick || cur & clear == 0 {
                return;
            }
            match self.state.compare_exchange_weak(cur, cur & !clear, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// Takes the [`REARM`] request: true if it was set (the caller then
    /// registers the session with VCL again).
    pub(crate) fn take_rearm(&self) -> bool {
        self.state.fetch_and(!(REARM as u64), Ordering::AcqRel) & REARM as u64 != 0
    }

    /// The reactor is gone: every call completes (with an error) and every
    /// waiter is woken.
    pub(crate) fn shut_down(&self) {
        self.set(SHUTDOWN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;
    use std::task::Wake;

    /// A waker that counts its wakes.
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counter() -> (Arc<Counter>, Waker) {
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    fn poll(r: &Readiness, w: &Waker, dir: Direction) -> Poll<Ready> {
        r.poll_ready(&mut Context::from_waker(w), dir)
    }

    #[test]
    fn initial_readiness_is_ready_and_a_wouldblock_clears_it() {
        let r = Readiness::new(READABLE | WRITABLE);
        let (_, w) = counter();
        let Poll::Ready(seen) = poll(&r, &w, Direction::Read) else { panic!("initially readable") };
        assert_eq!(seen.bits(), READABLE);
        r.clear(seen, Direction::Read);
        assert!(poll(&r, &w, Direction::Read).is_pending());
        // The other direction is untouched.
        assert!(poll(&r, &w, Direction::Write).is_ready());
    }

    #[test]
    fn an_event_during_the_call_survives_the_clear() {
        let r = Readiness::new(READABLE);
        let (_, w) = counter();
        let Poll::Ready(seen) = poll(&r, &w, Direction::Read) else { panic!() };
        // The read runs; meanwhile the reactor reports new data…
        r.set(READABLE);
        // …then the read (which started before the data) says WouldBlock.
        r.clear(seen, Direction::Read);
        let Poll::Ready(again) = poll(&r, &w, Direction::Read) else {
            panic!("the event that came during the call was lost")
        };
        // The retry says WouldBlock too: now it clears.
        r.clear(again, Direction::Read);
        assert!(poll(&r, &w, Direction::Read).is_pending());
    }

    #[test]
    fn partial_reads_keep_readiness_until_wouldblock() {
        // The has_event case: a reader takes part of the data and comes
        // back later; no new event will come until the FIFO is drained, so
        // only WouldBlock may clear.
        let r = Readiness::new(0);
        let (woken, w) = counter();
        assert!(poll(&r, &w, Direction::Read).is_pending());
        r.set(READABLE);
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        for _ in 0..3 {
            // A read that returned data: no clear.
            assert!(poll(&r, &w, Direction::Read).is_ready());
        }
    }

    #[test]
    fn set_wakes_only_the_directions_it_concerns() {
        let r = Readiness::new(0);
        let (reader, rw) = counter();
        let (writer, ww) = counter();
        assert!(poll(&r, &rw, Direction::Read).is_pending());
        assert!(poll(&r, &ww, Direction::Write).is_pending());
        r.set(WRITABLE);
        assert_eq!((reader.0.load(Ordering::SeqCst), writer.0.load(Ordering::SeqCst)), (0, 1));
        r.set(READ_CLOSED);
        assert_eq!(reader.0.load(Ordering::SeqCst), 1);
        // A hang-up concerns both.
        assert!(poll(&r, &ww, Direction::Write).is_ready());
        let r = Readiness::new(0);
        assert!(poll(&r, &rw, Direction::Read).is_pending());
        assert!(poll(&r, &ww, Direction::Write).is_pending());
        r.set(from_epoll((libc::EPOLLHUP | libc::EPOLLERR) as u32));
        assert_eq!((reader.0.load(Ordering::SeqCst), writer.0.load(Ordering::SeqCst)), (2, 2));
    }

    #[test]
    fn sticky_bits_stay_and_rearm_is_taken_once() {
        let r = Readiness::new(WRITABLE);
        let (_, w) = counter();
        r.set(from_epoll(libc::EPOLLRDHUP as u32));
        assert_eq!(r.bits() & (READ_CLOSED | REARM), READ_CLOSED | REARM);
        let Poll::Ready(seen) = poll(&r, &w, Direction::Read) else { panic!() };
        r.clear(seen, Direction::Read);
        assert!(poll(&r, &w, Direction::Read).is_ready(), "end of stream stays readable");
        let Poll::Ready(seen) = poll(&r, &w, Direction::Write) else { panic!() };
        assert!(r.take_rearm());
        assert!(!r.take_rearm());
        r.clear(seen, Direction::Write);
        assert!(poll(&r, &w, Direction::Write).is_pending(), "the writer waits for VCL again");
    }

    #[test]
    fn shutdown_wakes_and_readies_both_directions() {
        let r = Readiness::new(0);
        let (woken, w) = counter();
        assert!(poll(&r, &w, Direction::Read).is_pending());
        r.shut_down();
        assert_eq!(woken.0.load(Ordering::SeqCst), 1);
        for dir in [Direction::Read, Direction::Write] {
            let Poll::Ready(seen) = poll(&r, &w, dir) else { panic!() };
            assert_ne!(seen.bits() & SHUTDOWN, 0);
        }
    }

    #[test]
    fn epoll_bits_map_to_readiness() {
        assert_eq!(from_epoll(libc::EPOLLIN as u32), READABLE);
        assert_eq!(from_epoll(libc::EPOLLOUT as u32), WRITABLE);
        assert_eq!(from_epoll((libc::EPOLLOUT | libc::EPOLLHUP) as u32), WRITABLE | HUNG_UP | REARM);
        assert_eq!(from_epoll(libc::EPOLLERR as u32), ERROR);
        assert_eq!(from_epoll(0), 0);
    }

    /// The race the tick exists for, many times over on two threads. The
    /// "reactor" thread makes one unit of data, sets readiness, and waits
    /// until the "task" has taken it; the task polls, "reads" (takes what
    /// is there, or gets WouldBlock and clears) and parks while not ready.
    /// Each event is the last one until the task reacts, so a clear that
    /// removed an event which arrived during a call leaves the task asleep
    /// with data waiting: the reactor's wait then times out.
    #[test]
    fn no_event_is_lost_between_a_call_and_its_clear() {
        use std::time::{Duration, Instant};
        const N: usize = 20_000;
        let r = Arc::new(Readiness::new(0));
        let produced = Arc::new(AtomicUsize::new(0));
        let consumed = Arc::new(AtomicUsize::new(0));
        let reactor = {
            let (r, produced, consumed) = (r.clone(), produced.clone(), consumed.clone());
            std::thread::spawn(move || {
                for i in 1..=N {
                    // Vary the moment of the event against the task's call.
                    for _ in 0..(i % 7) * 10 {
                        std::hint::spin_loop();
                    }
                    produced.store(i, Ordering::SeqCst);
                    r.set(READABLE);
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while consumed.load(Ordering::SeqCst) < i {
                        assert!(
                            Instant::now() < deadline,
                            "event {i} lost: the task sleeps with data waiting"
                        );
                        std::thread::yield_now();
                    }
                }
            })
        };
        /// Unparks the task thread.
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let w = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut taken = 0;
        let mut calls = 0u32;
        while taken < N {
            if reactor.is_finished() {
                break; // it failed; its panic is reported below
            }
            let Poll::Ready(seen) = poll(&r, &w, Direction::Read) else {
                std::thread::park_timeout(Duration::from_millis(100));
                continue;
            };
            // The call: takes all there is, or WouldBlock.
            calls += 1;
            let there = produced.load(Ordering::SeqCst);
            for _ in 0..(calls % 5) * 10 {
                std::hint::spin_loop();
            }
            if there > taken {
                taken = there;
                consumed.store(taken, Ordering::SeqCst);
            } else {
                r.clear(seen, Direction::Read);
            }
        }
        reactor.join().expect("no event lost");
    }
}
