use super::*;
use crate::capi::held_signals::tests::{count_sigusr2, raise_usr2, usr2_seen};
use crate::errno::errno;

/// A scripted VLS and kernel: session `vlsh` has handle `100 + vlsh` for
/// the handles in `known`; each look gives the next `looks` entry (events
/// for every session; `None`: nothing); each kernel wait records its set
/// and timeout and answers with the next `waits` entry (revents of the
/// first kernel entry, or `Err(errno)`).
struct Script {
    known: Vec<i32>,
    signal: Option<c_int>,
    looks: Vec<Option<c_short>>,
    waits: Vec<Result<c_short, c_int>>,
    seen: Vec<(Vec<c_int>, Option<Duration>)>,
    n_looks: usize,
    writers: Vec<u32>,
    /// Answers of `rearm_readers`, in turn (then false); the readers of
    /// each call.
    rearms: Vec<bool>,
    rearmed: Vec<Vec<u32>>,
    late: usize,
    /// Whether signals were held, for each kernel wait.
    held: Vec<bool>,
    /// Waits sleep in the kernel's `ppoll` for real (their `waits` entry
    /// is not used).
    real_sleep: bool,
    /// The look (counted from 0) that raises `SIGUSR2` on this thread.
    raise_at_look: Option<usize>,
}

impl Script {
    fn new(known: &[i32]) -> Self {
        Script {
            known: known.to_vec(),
            signal: None,
            looks: vec![],
            waits: vec![],
            seen: vec![],
            n_looks: 0,
            writers: vec![],
            rearms: vec![],
            rearmed: vec![],
            late: 0,
            held: vec![],
            real_sleep: false,
            raise_at_look: None,
        }
    }
}

impl PollEnv for Script {
    fn session(&mut self, vlsh: i32) -> Option<u32> {
        self.known.contains(&vlsh).then_some(100 + vlsh as u32)
    }
    fn mq_signal(&mut self, writers: &[u32]) -> Option<c_int> {
        self.writers = writers.to_vec();
        self.signal
    }
    fn look(&mut self, vp: &mut [VclPoll]) -> c_int {
        let got = self.looks.get(self.n_looks).copied().flatten();
        if self.raise_at_look == Some(self.n_looks) {
            raise_usr2();
        }
        self.n_looks += 1;
        for v in vp.iter_mut() {
            assert!(v.sh >= 100, "a session handle from `session`");
            v.revents = got.map_or(0, |g| g & v.events);
        }
        0
    }
    fn rearm_readers(&mut self, readers: &[u32]) -> bool {
        self.rearmed.push(readers.to_vec());
        self.rearms.get(self.rearmed.len() - 1).copied().unwrap_or(false)
    }
    fn woke_late(&mut self) {
        self.late += 1;
    }
    fn kernel_wait(
        &mut self,
        fds: &mut [libc::pollfd],
        timeout: Option<Duration>,
        held: Option<&HeldSignals>,
    ) -> c_int {
        self.seen.push((fds.iter().map(|p| p.fd).collect(), timeout));
        self.held.push(held.is_some());
        if self.real_sleep {
            return kernel_ppoll(fds, timeout, HeldSignals::sleep_mask(held, std::ptr::null()));
        }
        match self.waits.get(self.seen.len() - 1).copied().unwrap_or(Ok(0)) {
            Err(e) => {
                set_errno(e);
                -1
            }
            Ok(r) => {
                if let Some(first) = fds.first_mut() {
                    first.revents = r;
                }
                fds.iter().filter(|p| p.revents != 0).count() as c_int
            }
        }
    }
}

const BASE: i64 = 32;

fn pfd(fd: c_int, events: c_short) -> libc::pollfd {
    libc::pollfd { fd, events, revents: 0 }
}

#[test]
fn a_ready_session_is_answered_at_once_in_the_callers_terms() {
    let mut s = Script::new(&[1]);
    s.looks = vec![Some(libc::POLLIN)];
    let mut fds = [pfd(33, libc::POLLIN | libc::POLLRDNORM), pfd(5, libc::POLLIN)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), 1);
    assert_eq!(fds[0].revents, libc::POLLIN | libc::POLLRDNORM);
    assert_eq!(fds[1].revents, 0);
    // The kernel descriptor was looked at too, without sleeping, and
    // without holding signals (two system calls spared).
    assert_eq!(s.seen, vec![(vec![5], Some(Duration::ZERO))]);
    assert_eq!(s.held, vec![false]);
}

#[test]
fn without_the_eventfd_it_sleeps_in_short_slices_until_a_session_is_ready() {
    let mut s = Script::new(&[0]);
    s.looks = vec![None, None, Some(libc::POLLOUT)];
    let mut fds = [pfd(32, libc::POLLOUT)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), 1);
    assert_eq!(fds[0].revents, libc::POLLOUT);
    assert_eq!(s.n_looks, 3);
    // Two sleeps of a slice (no descriptor: a pure sleep), then a check.
    let timeouts: Vec<_> = s.seen.iter().map(|(_, t)| *t).collect();
    assert_eq!(timeouts, vec![Some(SLICE), Some(SLICE), Some(Duration::ZERO)]);
}

#[test]
fn with_the_eventfd_it_sleeps_on_it_between_looks() {
    let mut s = Script::new(&[0]);
    s.signal = Some(77);
    s.looks = vec![None, Some(libc::POLLIN)];
    let mut fds = [pfd(9, libc::POLLIN), pfd(32, libc::POLLIN), pfd(33, libc::POLLOUT)];
    s.known.push(1);
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), 1);
    // Room in the TX FIFO of the session polled for POLLOUT is asked for.
    assert_eq!(s.writers, vec![101]);
    assert_eq!(s.seen[0], (vec![9, 77], Some(SIGNALLED_SLICE)));
    // The eventfd is not in a set that only checks.
    assert_eq!(s.seen[1], (vec![9], Some(Duration::ZERO)));
}

#[test]
fn the_readers_are_rearmed_before_each_sleep_on_the_eventfd() {
    let mut s = Script::new(&[0, 1]);
    s.signal = Some(77);
    s.looks = vec![None, None, Some(libc::POLLIN)];
    let mut fds = [pfd(32, libc::POLLIN), pfd(33, libc::POLLOUT)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), 1);
    // Only the session polled for input, once per sleep.
    assert_eq!(s.rearmed, vec![vec![100], vec![100]]);
    assert_eq!(s.seen[0], (vec![77], Some(SIGNALLED_SLICE)));
}

#[test]
fn data_that_arrived_while_rearming_is_looked_for_without_sleeping() {
    let mut s = Script::new(&[0]);
    s.signal = Some(77);
    s.looks = vec![None, Some(libc::POLLIN)];
    s.rearms = vec![true];
    let mut fds = [pfd(32, libc::POLLIN)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), 1);
    // No sleep on the eventfd: a check with no wait, then the second look.
    assert_eq!(s.seen, vec![(vec![], Some(Duration::ZERO)), (vec![], Some(Duration::ZERO))]);
    assert_eq!(s.n_looks, 2);
}

#[test]
fn without_the_eventfd_nothing_is_rearmed() {
    let mut s = Script::new(&[0]);
    s.looks = vec![None, Some(libc::POLLIN)];
    let mut fds = [pfd(32, libc::POLLIN)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), 1);
    assert!(s.rearmed.is_empty(), "{:?}", s.rearmed);
}

#[test]
fn readiness_found_after_a_whole_slice_on_the_eventfd_is_a_late_wakeup() {
    // The eventfd never fires (the script's waits answer nothing), and the
    // third look finds the session ready: the message never came.
    let mut s = Script::new(&[0]);
    s.signal = Some(77);
    s.looks = vec![None, None, Some(libc::POLLIN)];
    let mut fds = [pfd(32, libc::POLLIN)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), 1);
    assert_eq!(s.late, 1);
    // Woken by the eventfd: on time.
    let mut s = Script::new(&[0]);
    s.signal = Some(77);
    s.looks = vec![None, Some(libc::POLLIN)];
    s.waits = vec![Ok(libc::POLLIN)];
    let mut fds = [pfd(32, libc::POLLIN)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), 1);
    assert_eq!(s.late, 0);
}

#[test]
fn a_timeout_ends_with_zero_and_no_event() {
    let mut s = Script::new(&[0]);
    let start = Instant::now();
    let mut fds = [pfd(32, libc::POLLIN)];
    let rv = poll_sessions_and_fds(
        &mut fds,
        BASE,
        Some(start + Duration::from_millis(20)),
        Duration::ZERO,
        Duration::ZERO,
        &mut s,
    );
    assert_eq!((rv, fds[0].revents), (0, 0));
    assert!(start.elapsed() >= Duration::from_millis(20));
    // Each sleep is at most what was left.
    assert!(s.seen.iter().all(|(_, t)| t.is_some_and(|t| t <= Duration::from_millis(20))));
}

#[test]
fn a_signal_ends_the_wait_with_eintr() {
    let mut s = Script::new(&[0]);
    s.waits = vec![Ok(0), Err(libc::EINTR)];
    let mut fds = [pfd(32, libc::POLLIN)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), -1);
    assert_eq!(errno(), libc::EINTR);
    assert_eq!(s.n_looks, 2);
}

#[test]
fn signals_are_held_from_the_first_sleep_on() {
    let mut s = Script::new(&[0]);
    s.looks = vec![None, None, Some(libc::POLLIN)];
    let mut fds = [pfd(32, libc::POLLIN)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), 1);
    assert_eq!(s.held, vec![true, true, true]);
}

/// tinyproxy's listener stops on `SIGTERM` by a flag its handler sets and
/// its loop reads once `poll` returns: a signal that arrived while the wait
/// was looking at the sessions between two sleeps ran its handler there,
/// and the wait slept on for ever (the idle proxy ignored `SIGTERM` now and
/// then). The signal now ends the next sleep: -1 with `EINTR`, not 0 at the
/// timeout.
#[test]
fn a_signal_that_arrives_between_two_sleeps_ends_the_wait() {
    count_sigusr2();
    let before = usr2_seen();
    let mut s = Script::new(&[0]);
    s.real_sleep = true;
    // The third look, after two sleeps of a slice.
    s.raise_at_look = Some(2);
    let start = Instant::now();
    let mut fds = [pfd(32, libc::POLLIN)];
    let rv = poll_sessions_and_fds(
        &mut fds,
        BASE,
        Some(start + Duration::from_secs(3)),
        Duration::ZERO,
        Duration::ZERO,
        &mut s,
    );
    assert_eq!((rv, errno()), (-1, libc::EINTR), "after {:?}", start.elapsed());
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    assert_eq!(usr2_seen(), before + 1, "the handler ran once");
    assert_eq!(s.n_looks, 3);
}

#[test]
fn a_ready_kernel_descriptor_is_answered_in_its_place() {
    let mut s = Script::new(&[0]);
    s.waits = vec![Ok(0), Ok(libc::POLLIN)];
    let mut fds = [pfd(32, libc::POLLIN), pfd(-1, libc::POLLIN), pfd(4, libc::POLLIN)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), 1);
    assert_eq!([fds[0].revents, fds[1].revents, fds[2].revents], [0, 0, libc::POLLIN]);
}

#[test]
fn a_number_above_the_base_that_is_no_session_is_the_kernels() {
    let mut s = Script::new(&[0]);
    s.waits = vec![Ok(libc::POLLNVAL)];
    let mut fds = [pfd(40, libc::POLLIN), pfd(32, libc::POLLIN)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), 1);
    assert_eq!([fds[0].revents, fds[1].revents], [libc::POLLNVAL, 0]);
    assert_eq!(s.seen[0].0, vec![40]);
}

#[test]
fn a_set_without_sessions_waits_once_in_the_kernel_for_the_whole_timeout() {
    let mut s = Script::new(&[]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut fds = [pfd(40, libc::POLLIN), pfd(3, libc::POLLOUT)];
    assert_eq!(
        poll_sessions_and_fds(&mut fds, BASE, Some(deadline), Duration::ZERO, Duration::ZERO, &mut s),
        0
    );
    assert_eq!(s.n_looks, 0);
    assert_eq!(s.seen.len(), 1);
    assert_eq!(s.seen[0].0, vec![40, 3]);
    assert!(s.seen[0].1.is_some_and(|t| t > Duration::from_secs(4)), "{:?}", s.seen[0].1);
}

#[test]
fn a_vls_error_is_minus_one_with_its_errno() {
    struct Failing;
    impl PollEnv for Failing {
        fn session(&mut self, _: i32) -> Option<u32> {
            Some(1)
        }
        fn mq_signal(&mut self, _: &[u32]) -> Option<c_int> {
            None
        }
        fn look(&mut self, _: &mut [VclPoll]) -> c_int {
            -libc::EBADFD
        }
        fn rearm_readers(&mut self, _: &[u32]) -> bool {
            panic!("no re-arming after a failed look")
        }
        fn woke_late(&mut self) {}
        fn kernel_wait(
            &mut self,
            _: &mut [libc::pollfd],
            _: Option<Duration>,
            _: Option<&HeldSignals>,
        ) -> c_int {
            panic!("no kernel wait after a failed look")
        }
    }
    let mut fds = [pfd(32, libc::POLLIN)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut Failing), -1);
    assert_eq!(errno(), libc::EBADFD);
}

#[test]
fn the_kernels_ppoll_sleeps_and_reports_a_ready_pipe() {
    let mut p = [0; 2];
    // SAFETY: a pipe into a local array.
    assert_eq!(unsafe { libc::pipe(p.as_mut_ptr()) }, 0);
    let mut fds = [pfd(p[0], libc::POLLIN)];
    let start = Instant::now();
    assert_eq!(kernel_ppoll(&mut fds, Some(Duration::from_millis(30)), std::ptr::null()), 0);
    assert!(start.elapsed() >= Duration::from_millis(29));
    // SAFETY: a write of one byte from a local into the pipe.
    assert_eq!(unsafe { libc::write(p[1], [1u8].as_ptr().cast(), 1) }, 1);
    assert_eq!(kernel_ppoll(&mut fds, None, std::ptr::null()), 1);
    assert_eq!(fds[0].revents, libc::POLLIN);
    // SAFETY: closes the pipe this test made.
    unsafe {
        libc::close(p[0]);
        libc::close(p[1]);
    }
}

#[test]
fn a_wait_for_input_sleeps_at_once() {
    let mut s = Script::new(&[0]);
    s.signal = Some(77);
    s.looks = vec![None, Some(libc::POLLIN)];
    let mut fds = [pfd(32, libc::POLLIN)];
    assert_eq!(
        poll_sessions_and_fds(&mut fds, BASE, None, Duration::from_millis(5), Duration::ZERO, &mut s),
        1
    );
    assert_eq!(s.seen[0], (vec![77], Some(SIGNALLED_SLICE)));
}

#[test]
fn a_wait_for_room_looks_without_sleeping_for_the_spin_time_first() {
    let mut s = Script::new(&[0]);
    s.signal = Some(77);
    let start = Instant::now();
    let mut fds = [pfd(32, libc::POLLOUT)];
    let rv = poll_sessions_and_fds(
        &mut fds,
        BASE,
        Some(start + Duration::from_millis(30)),
        Duration::from_millis(5),
        Duration::ZERO,
        &mut s,
    );
    assert_eq!(rv, 0);
    let zero = s.seen.iter().take_while(|(_, t)| *t == Some(Duration::ZERO)).count();
    assert!(zero >= 2, "several looks without sleep first: {:?}", &s.seen[..s.seen.len().min(5)]);
    // Those do not wait on the eventfd; the sleeps after them do.
    assert!(s.seen[..zero].iter().all(|(fds, _)| fds.is_empty()));
    let sleeps: Vec<_> = s.seen[zero..].iter().filter(|(_, t)| *t != Some(Duration::ZERO)).collect();
    assert!(!sleeps.is_empty() && sleeps.iter().all(|(fds, _)| fds == &vec![77]), "{sleeps:?}");
}

/// `VLS_RS_BUSY_POLL_US`: a wait for input looks again without sleeping
/// until its busy poll has passed (every kernel wait with a zero timeout),
/// then sleeps as before.
#[test]
fn a_busy_poll_looks_without_sleeping_first() {
    let mut s = Script::new(&[0]);
    s.looks = vec![None, None, None, Some(libc::POLLIN)];
    let mut fds = [pfd(32, libc::POLLIN)];
    assert_eq!(
        poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::from_secs(5), &mut s),
        1
    );
    // A kernel wait follows each look (the kernel's descriptors).
    assert_eq!(s.seen.len(), 4, "{:?}", s.seen);
    assert!(s.seen.iter().all(|(_, t)| *t == Some(Duration::ZERO)), "no sleep: {:?}", s.seen);
    assert!(s.held.iter().all(|h| !h), "signals are held only from the first sleep on");
    // Without it, the first wait already sleeps.
    let mut s = Script::new(&[0]);
    s.looks = vec![None, Some(libc::POLLIN)];
    assert_eq!(poll_sessions_and_fds(&mut fds, BASE, None, Duration::ZERO, Duration::ZERO, &mut s), 1);
    assert!(s.seen[0].1.is_some_and(|t| t > Duration::ZERO), "{:?}", s.seen);
}
