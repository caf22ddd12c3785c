//! The fork hooks, without a real fork.

use super::*;

/// The fork hooks without a fork: before it, the parent's sessions enter
/// the shared table; if the fork failed (errno set), the parent does not
/// wait for a child; if it succeeded, it waits until the child is done and
/// the application's errno is restored.
#[test]
fn parent_waits_for_its_child_only_when_the_fork_succeeded() {
    use crate::seam::ForkHooks;
    let v = app(false);
    let h = v.create(0, false);
    assert_eq!(v.sharers(h), 0, "not shared before any fork");
    v.before_fork();
    assert_eq!(v.sharers(h), 1, "shared from the fork on, held by the parent");
    set_errno(libc::EAGAIN); // fork failed
    let start = Instant::now();
    v.after_fork_in_parent();
    assert!(start.elapsed() < Duration::from_secs(1), "waited for a child that does not exist");

    set_errno(1234);
    v.before_fork();
    assert_eq!(v.sharers(h), 1, "shared once, not again");
    let wrk = v.vcl().worker_index();
    static CHILD_DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let child = thread::spawn(move || {
        // (The pause only makes a parent that does not wait return first.)
        thread::sleep(Duration::from_millis(100));
        CHILD_DONE.store(true, Ordering::SeqCst);
        v.forks.shared.get().unwrap().fork_done(wrk);
    });
    v.after_fork_in_parent(); // errno is 0: the fork succeeded
    assert!(CHILD_DONE.load(Ordering::SeqCst), "did not wait for the child");
    assert_eq!(errno(), 1234, "the application's errno is back");
    child.join().unwrap();
    assert_eq!(v.close(h), 0, "the only holder closes it for real");
    assert_eq!(v.shared_sessions(), 0);
}
