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

/// A forked child whose worker registration fails (VPP refused it, or
/// VCL's `max-workers` is reached) never reaches VCL: its calls fail, its
/// inherited sessions close as orphans, and at exit VCL forgets the
/// workers it copied from the parent (its exit handler would otherwise
/// clean up worker `~0`).
#[test]
fn child_without_a_worker_fails_its_calls_without_reaching_vcl() {
    use crate::seam::ForkHooks;
    let v = app(false);
    let s = v.create(0, true);
    let ep = v.epoll_create();
    assert!(s >= 0 && ep >= 0);
    v.before_fork();
    v.vcl().fail_next_register();
    // This thread goes on as the child.
    v.after_fork_in_child();
    assert_eq!(v.vcl().worker_index(), INVALID, "no worker");
    assert_eq!(v.create(0, true), INVALID_VLSH);
    assert_eq!(v.epoll_create(), INVALID_VLSH);
    let mut buf = [0u8; 4];
    assert_eq!(read(v, s, &mut buf), EBADFD);
    assert_eq!(write(v, s, b"x"), EBADFD);
    let mut e = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 1 };
    // SAFETY: valid event pointer.
    assert_eq!(unsafe { v.epoll_ctl(ep, libc::EPOLL_CTL_ADD, s, &mut e) }, EBADFD);
    let mut out = [libc::epoll_event { events: 0, u64: 0 }; 2];
    // SAFETY: `out` is valid for 2 events.
    assert_eq!(unsafe { v.epoll_wait(ep, out.as_mut_ptr(), 2, 0.0) }, EBADFD);
    let none = std::ptr::null_mut();
    // SAFETY: null maps (nothing to look at).
    let rv = unsafe { v.select(0, none, none, none, 0.0) };
    assert_eq!(rv, EBADFD);
    assert_eq!(v.close(s), 0, "an orphan closes without VCL");
    assert_eq!(v.close(ep), 0);
    assert!(!v.vcl().workers_forgotten());
    v.process_exiting();
    assert!(v.vcl().workers_forgotten(), "VCL's exit handler would look up worker ~0");
    assert!(v.vcl().queues_read().is_empty(), "no worker, no queues to wait for");
    assert_eq!(v.vcl().violations(), 0, "VCL was called without a worker");
}

/// An app with one session that forks, this thread going on as the child:
/// (the layer, the session, its shared entry, the shared table, the
/// child's worker).
fn forked_child_holding_a_session() -> (&'static Vls<Double>, Vlsh, u32, crate::engine::fork::SharedTable, u32)
{
    use crate::seam::ForkHooks;
    let v = app(false);
    let s = v.create(0, true);
    v.before_fork();
    let entry = v.pool.get(s).unwrap().shared.load(Ordering::Acquire);
    let table = *v.forks.shared.get().unwrap();
    v.after_fork_in_child();
    let child = v.vcl().worker_index();
    assert_ne!(child, INVALID, "the child has a worker");
    (v, s, entry, table, child)
}

/// A forked child's exit: VPP is let read its queues, its worker leaves
/// quietly (closing its socket to VPP, no message: a sandboxed child may
/// not send) and VCL forgets the workers, so VCL's exit handler, which
/// would send the removal, has nothing to do. The process that attached
/// (no fork behind it) leaves its worker to VCL's exit handler, as before.
#[test]
fn a_forked_child_leaves_vpp_quietly_at_exit() {
    let (v, s, entry, table, child) = forked_child_holding_a_session();
    v.process_exiting();
    assert_eq!(v.vcl().queues_read(), vec![child], "VPP read the child's queues first");
    assert_eq!(v.vcl().unregistered_workers(), vec![child], "the child's worker left");
    assert_eq!(v.vcl().quiet_leaves(), 1, "quietly");
    assert!(v.vcl().workers_forgotten(), "VCL's exit handler finds no worker");
    assert_eq!(table.lock(entry).unwrap().n_subscribers(), 1, "the parent alone holds the session");
    let mut buf = [0u8; 4];
    assert_eq!(read(v, s, &mut buf), EBADFD, "later calls (other exit handlers) fail");
    v.process_exiting();
    assert_eq!(v.vcl().quiet_leaves(), 1, "once");
    assert_eq!(v.vcl().violations(), 0, "VCL was called without a worker");

    let parent = app(false);
    let wrk = parent.vcl().worker_index();
    parent.process_exiting();
    assert_eq!(parent.vcl().queues_read(), vec![wrk]);
    assert!(parent.vcl().unregistered_workers().is_empty(), "left to VCL's exit handler");
    assert_eq!(parent.vcl().quiet_leaves(), 0);
    assert!(!parent.vcl().workers_forgotten());
}

/// A forked child ending with `_exit`: its copy of a connection its parent
/// owns is dropped from the shared table (the parent, closing it later, is
/// then the last holder and closes it in VPP); a connection the parent
/// handed over to it and it never took is closed as at exit (VPP would
/// keep it on the parent's worker, which left it: the peer waited for
/// ever), and the hand-over ends.
#[test]
fn a_child_ending_at_once_leaves_what_it_does_not_own_and_closes_what_it_was_handed() {
    let (v, _, entry, table, child) = forked_child_holding_a_session();
    let parent = table.lock(entry).unwrap().owner();
    assert_ne!(parent, child);
    v.process_exits_at_once();
    assert_eq!(table.lock(entry).unwrap().n_subscribers(), 1, "the parent alone holds it");
    assert_eq!(
        table.lock(entry).unwrap().leave(parent),
        crate::engine::fork::Unsubscribed::Last,
        "the parent's close is the last"
    );

    let (v, s, entry, table, child) = forked_child_holding_a_session();
    let parent = table.lock(entry).unwrap().owner();
    // The parent closed its copy: the connection goes to the child.
    assert_eq!(table.lock(entry).unwrap().leave(parent), crate::engine::fork::Unsubscribed::NewOwner(child));
    let state = table.handover(entry).unwrap();
    state.announce(child);
    state.mark_sent();
    v.process_exits_at_once();
    assert!(table.lock(entry).is_none(), "the child was the last holder: closed, the entry freed");
    assert!(!state.is_to(child), "the hand-over ended");
    let mut buf = [0u8; 4];
    assert_eq!(read(v, s, &mut buf), EBADFD, "the copy is gone");
    assert_eq!(v.vcl().violations(), 0);
}

/// A forked child that execs (`libvls.so`'s exec interposers call
/// `process_execs`) leaves every session it shares with its parent and
/// unregisters its worker; if the exec fails its calls fail without
/// reaching VCL, and at exit VCL forgets the workers. A vfork child (same
/// memory, another pid) changes nothing.
#[test]
fn exec_leaves_shared_sessions_and_unregisters_the_worker() {
    let (v, s, entry, table, child) = forked_child_holding_a_session();
    assert_eq!(table.lock(entry).unwrap().n_subscribers(), 2, "parent and child hold it");

    // A vfork child: not this state's process.
    let pid = v.forks.pid.swap(1, Ordering::AcqRel);
    v.process_execs();
    assert_eq!(table.lock(entry).unwrap().n_subscribers(), 2, "a vfork child must change nothing");
    assert!(v.vcl().unregistered_workers().is_empty());
    v.forks.pid.store(pid, Ordering::Release);

    v.process_execs();
    assert_eq!(table.lock(entry).unwrap().n_subscribers(), 1, "the parent alone holds it");
    assert_eq!(v.vcl().unregistered_workers(), vec![child], "the child's worker is gone");
    assert_eq!(v.vcl().quiet_leaves(), 1, "a forked child leaves without a message to VPP");
    assert!(v.vcl().workers_forgotten(), "VCL's exit handler (if the exec fails) has nothing to send");
    assert_eq!(v.vcl().worker_index(), INVALID);
    assert_eq!(v.vcl().violations(), 0, "VCL was called without a worker (exec)");
    // The exec failed: the process goes on without VPP.
    let mut buf = [0u8; 4];
    assert_eq!(read(v, s, &mut buf), EBADFD);
    assert_eq!(v.vcl().violations(), 0, "VCL was called without a worker (read)");
    assert_eq!(v.create(0, true), INVALID_VLSH);
    assert_eq!(v.vcl().violations(), 0, "VCL was called without a worker (create)");
    assert_eq!(v.close(s), 0, "an orphan closes without VCL");
    assert_eq!(v.vcl().violations(), 0, "VCL was called without a worker (calls)");
    v.process_exiting();
    assert!(v.vcl().workers_forgotten(), "VCL's exit handler would look up worker ~0");
    assert_eq!(v.vcl().violations(), 0, "VCL was called without a worker");
}
