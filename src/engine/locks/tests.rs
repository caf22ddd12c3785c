//! Unit tests of the worker-level locks.

use super::*;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn leak() -> &'static MtLocks {
    Box::leak(Box::default())
}

/// Runs `f` on a thread of its own and fails if it has not returned
/// within `limit` (a hang is a failure, not a stuck test run).
fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("{what}: not done within {limit:?} (deadlock?)"))
}

#[test]
fn ready_write_that_ends_up_waiting_holds_mq_after_the_wait() {
    let l = leak();
    let g = l.acquire(OpKind::Write, || true);
    assert_eq!(held_by_current_thread(), (false, true, false));
    l.before_wait();
    l.after_wait();
    assert_eq!(held_by_current_thread(), (true, true, false), "VCL flushes the mq after a wait");
    drop(g);
    assert_eq!(held_by_current_thread(), (false, false, false));
    assert!(l.mq_is_free());
}

#[test]
fn ready_read_takes_no_mq_lock() {
    let l = leak();
    let g = l.acquire(OpKind::Read, || true);
    assert_eq!(held_by_current_thread(), (false, true, false));
    assert!(l.mq_is_free());
    drop(g);
    assert_eq!(held_by_current_thread(), (false, false, false));
}

#[test]
fn blocking_read_takes_mq_and_wait_drops_it() {
    let l = leak();
    let g = l.acquire(OpKind::Read, || false);
    assert_eq!(held_by_current_thread(), (true, true, false));
    l.before_wait();
    assert!(l.mq_is_free(), "mq must be free while VCL sleeps");
    assert_eq!(held_by_current_thread(), (false, true, false));
    l.after_wait();
    assert_eq!(held_by_current_thread(), (true, true, false));
    drop(g);
    assert!(l.mq_is_free());
}

#[test]
fn blocking_pool_op_releases_the_write_lock_while_waiting() {
    let l = leak();
    let g = l.acquire(OpKind::SessionPool, || true);
    assert_eq!(held_by_current_thread(), (false, false, true));
    l.before_wait();
    assert_eq!(held_by_current_thread(), (false, false, false));
    // Another thread can read meanwhile (it would block forever if a
    // waiting accept kept the write lock).
    std::thread::spawn(move || drop(l.spool.read())).join().unwrap();
    l.after_wait();
    assert_eq!(held_by_current_thread(), (false, false, true));
    drop(g);
    assert_eq!(held_by_current_thread(), (false, false, false));
    drop(l.spool.write());
}

#[test]
fn read_waiting_for_mq_proceeds_when_ready() {
    let l = leak();
    let ready = Arc::new(AtomicBool::new(false));
    let checks = Arc::new(AtomicUsize::new(0));
    let holder = l.mq.lock().unwrap();
    let (r2, c2) = (ready.clone(), checks.clone());
    let t = std::thread::spawn(move || {
        let _g = l.acquire(OpKind::Read, || {
            c2.fetch_add(1, Ordering::SeqCst);
            r2.load(Ordering::SeqCst)
        });
        held_by_current_thread()
    });
    // A second readiness check means it is waiting for the mq lock.
    let deadline = Instant::now() + Duration::from_secs(10);
    while checks.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the read never waited for the mq lock");
        std::thread::yield_now();
    }
    ready.store(true, Ordering::SeqCst);
    let held = t.join().unwrap();
    assert_eq!(held, (false, true, false), "became ready: no mq needed");
    drop(holder);
}

#[test]
fn thread_exit_releases_held_locks() {
    let l = leak();
    std::thread::spawn(move || {
        let g = l.acquire(OpKind::MessageQueue, || false);
        std::mem::forget(g); // as if the thread died mid-operation
    })
    .join()
    .unwrap();
    assert!(l.mq_is_free(), "mq lock leaked by an exited thread");
    within(Duration::from_secs(10), "write lock after the reader's exit", move || drop(l.spool.write()));
}

#[test]
fn concurrent_writers_leave_no_pending_count() {
    let l = leak();
    within(Duration::from_secs(30), "4 threads taking the write lock 2000 times", move || {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        drop(l.spool.write());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
    assert_eq!(l.spool.pending_writers(), 0, "a lost update left a writer count with no writer");
    // A reader is not held back by a phantom writer.
    within(Duration::from_secs(10), "a read lock after the writers", move || drop(l.spool.read()));
}

#[test]
fn writer_is_not_starved_by_readers() {
    let l = leak();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _r = l.spool.read();
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    // The readers hold the lock in turns, back to back, from now on.
    while l.spool.readers.iter().all(|s| s.0.load(Ordering::SeqCst) == 0) {
        std::thread::yield_now();
    }
    let writes = within(Duration::from_secs(20), "100 writes among 3 busy readers", move || {
        for _ in 0..100 {
            drop(l.spool.write());
        }
        100
    });
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }
    assert_eq!(writes, 100);
}
