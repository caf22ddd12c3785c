//! Model checks of the lock protocol over every interleaving `loom`
//! explores. Run with:
//! `RUSTFLAGS="--cfg loom" cargo test --release --lib engine::locks::loom_models`

use super::*;
use loom::sync::atomic::AtomicUsize;
use loom::thread;

fn leak<T>(t: T) -> &'static T {
    Box::leak(Box::new(t))
}

/// Bounded exploration: at most 2 preemptions per execution (the usual
/// loom bound; most concurrency bugs need fewer), and room for the
/// spin-and-yield waits of the locks.
fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.max_branches = 100_000;
    b.check(f);
}

/// What a blocked VCL call waits for (data, a connection).
#[derive(Default)]
struct Signal {
    set: Mutex<bool>,
    cv: loom::sync::Condvar,
}

impl Signal {
    fn set(&self) {
        *self.set.lock().unwrap() = true;
        self.cv.notify_all();
    }

    fn is_set(&self) -> bool {
        *self.set.lock().unwrap()
    }

    fn wait(&self) {
        let mut set = self.set.lock().unwrap();
        while !*set {
            set = self.cv.wait(set).unwrap();
        }
    }
}

/// Who is inside "VCL" right now, by what the thread holds.
#[derive(Default)]
struct Inside {
    mq: AtomicUsize,
    readers: AtomicUsize,
    writers: AtomicUsize,
}

impl Inside {
    /// Enters with whatever this thread holds; checks exclusion.
    fn enter(&self) -> (bool, bool, bool) {
        let held = held_by_current_thread();
        let (mq, r, w) = held;
        if mq {
            assert_eq!(self.mq.fetch_add(1, Ordering::SeqCst), 0, "two mq holders");
        }
        if r {
            self.readers.fetch_add(1, Ordering::SeqCst);
            assert_eq!(self.writers.load(Ordering::SeqCst), 0, "reader inside with a writer");
        }
        if w {
            assert_eq!(self.writers.fetch_add(1, Ordering::SeqCst), 0, "two writers");
            assert_eq!(self.readers.load(Ordering::SeqCst), 0, "writer inside with a reader");
        }
        held
    }

    fn leave(&self, (mq, r, w): (bool, bool, bool)) {
        if mq {
            self.mq.fetch_sub(1, Ordering::SeqCst);
        }
        if r {
            self.readers.fetch_sub(1, Ordering::SeqCst);
        }
        if w {
            self.writers.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// An operation that blocks inside VCL until `until` is set (by the
    /// other thread's operation, as data or a connection would arrive):
    /// between the wait hooks it sleeps on a condition variable, without
    /// a time limit, so a schedule in which the other thread cannot get
    /// in while this one sleeps is a deadlock that loom reports (a
    /// bounded wait would turn it into a timeout and pass).
    fn blocking_op(&self, l: &'static MtLocks, op: OpKind, until: &'static Signal) {
        let g = l.acquire(op, || false);
        let h = self.enter();
        self.leave(h);
        l.before_wait();
        until.wait();
        l.after_wait();
        let h = self.enter();
        self.leave(h);
        drop(g);
    }

    /// A blocking read as VCL runs it: rounds of (wait hooks around a
    /// short sleep, then a look for data), without a round limit. The
    /// read keeps the session-pool read lock across its rounds; each
    /// `after_wait` releases and retakes it, which is where a waiting
    /// writer gets in. A writer that could never get in is a livelock
    /// loom reports (it exceeds its branch budget), not a timeout.
    fn blocking_op_in_rounds(&self, l: &'static MtLocks, op: OpKind, until: &'static Signal) {
        let g = l.acquire(op, || false);
        let h = self.enter();
        self.leave(h);
        loop {
            l.before_wait();
            let arrived = until.is_set();
            l.after_wait();
            if arrived {
                break;
            }
            thread::yield_now();
        }
        let h = self.enter();
        self.leave(h);
        drop(g);
    }

    fn quick_op(&self, l: &'static MtLocks, op: OpKind, ready: bool) {
        self.quick_op_then(l, op, ready, None);
    }

    /// A non-blocking operation that, while inside VCL, makes the other
    /// thread's wait end (sets `done`).
    fn quick_op_then(&self, l: &'static MtLocks, op: OpKind, ready: bool, done: Option<&'static Signal>) {
        let g = l.acquire(op, move || ready);
        let h = self.enter();
        if let Some(d) = done {
            d.set();
        }
        self.leave(h);
        drop(g);
    }
}

/// A blocking read races a session-pool change (close): no deadlock,
/// and VCL is never entered by a writer together with anyone.
#[test]
fn blocking_read_races_close() {
    model(|| {
        let l = leak(MtLocks::default());
        let inside = leak(Inside::default());
        let data = leak(Signal::default());
        let reader = thread::spawn(move || inside.blocking_op_in_rounds(l, OpKind::Read, data));
        inside.quick_op_then(l, OpKind::SessionPool, true, Some(data));
        reader.join().unwrap();
    });
}

/// A blocking read races an epoll wait: the mq lock is never held by
/// both inside VCL, and the reader's wait lets the poller through.
#[test]
fn blocking_read_races_message_queue_use() {
    model(|| {
        let l = leak(MtLocks::default());
        let inside = leak(Inside::default());
        let data = leak(Signal::default());
        let reader = thread::spawn(move || inside.blocking_op(l, OpKind::Read, data));
        inside.quick_op_then(l, OpKind::MessageQueue, true, Some(data));
        reader.join().unwrap();
    });
}

/// A blocking accept (a session-pool op that waits inside VCL) races a
/// ready read: the waiting writer lets the reader through.
#[test]
fn blocking_accept_races_read() {
    model(|| {
        let l = leak(MtLocks::default());
        let inside = leak(Inside::default());
        let conn = leak(Signal::default());
        let acceptor = thread::spawn(move || inside.blocking_op(l, OpKind::SessionPool, conn));
        inside.quick_op_then(l, OpKind::Read, true, Some(conn));
        acceptor.join().unwrap();
    });
}

/// Two closes at once, then a read: the pending-writer count returns to
/// zero (a lost update would make the read spin forever).
#[test]
fn concurrent_closes_then_read() {
    model(|| {
        let l = leak(MtLocks::default());
        let inside = leak(Inside::default());
        let a = thread::spawn(move || inside.quick_op(l, OpKind::SessionPool, true));
        inside.quick_op(l, OpKind::SessionPool, true);
        a.join().unwrap();
        assert_eq!(l.spool().pending_writers(), 0);
        inside.quick_op(l, OpKind::Read, true);
    });
}

/// A thread that exits while holding the mq and session-pool locks
/// releases them: the next operation gets through.
#[test]
fn thread_exit_releases_locks() {
    model(|| {
        let l = leak(MtLocks::default());
        let inside = leak(Inside::default());
        let t = thread::spawn(move || {
            let g = l.acquire(OpKind::MessageQueue, || true);
            std::mem::forget(g);
        });
        t.join().unwrap();
        inside.quick_op(l, OpKind::SessionPool, true);
        inside.quick_op(l, OpKind::MessageQueue, true);
    });
}
