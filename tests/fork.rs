//! Per-process workers (mode 1) against a real VPP: a server process
//! listens, forks children that serve on the shared listener, and the
//! tests check how connections spread, what happens when a child exits or
//! is killed, and when the parent exits first.
//!
//! Server and client are two VCL applications (two processes, through
//! VPP's TCP stack). The server's children are forked from the server's
//! test thread; each ends with `exit` (VLS's exit path runs) and has an
//! `alarm` as a safety net, so a hang fails the test instead of stalling it.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use vls::capi::*;
use vls::ffi;

use common::capi::*;
use common::run_pair;
use vpp_harness::{through_stack, STACK_SERVER};

/// Bytes of a reply: the serving process's pid, right-aligned.
const REPLY: usize = 10;

fn server_addr(port: u16) -> SocketAddr {
    SocketAddr::from((STACK_SERVER, port))
}

fn worker_is_valid(wrk: u32) -> bool {
    // SAFETY: checks the worker pool (null-safe in the shim).
    unsafe { ffi::vppsys_worker_is_valid(wrk) != 0 }
}

static APP_SIGCHLD: AtomicUsize = AtomicUsize::new(0);

extern "C" fn app_sigchld(_: i32) {
    APP_SIGCHLD.fetch_add(1, Ordering::SeqCst);
}

/// The application's own SIGCHLD handler, installed before any fork.
fn install_app_sigchld_handler() {
    // SAFETY: a plain handler that only does an atomic add.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = app_sigchld as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGCHLD, &sa, std::ptr::null_mut()), 0);
    }
}

/// Children still running that this test process kills when it exits
/// (also when the test failed), so no child outlives a test and keeps its
/// output pipes open.
static CHILDREN: std::sync::Mutex<Vec<i32>> = std::sync::Mutex::new(Vec::new());

extern "C" fn kill_children() {
    if let Ok(kids) = CHILDREN.lock() {
        for &pid in kids.iter() {
            // SAFETY: signals our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Forks; the child runs `f` and exits (0, or 101 if `f` panicked). The
/// child kills itself after `limit` at the latest, and is killed when this
/// process exits (unless [`let_outlive`] says otherwise).
fn fork_child(limit: u32, f: impl FnOnce()) -> i32 {
    static AT_EXIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: registers a plain `extern "C" fn()`.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(kill_children);
    });
    // SAFETY: the test's only VLS thread forks; the child runs `f` on it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        // The parent's children, not ours.
        CHILDREN.lock().unwrap().clear();
        // SAFETY: arms SIGALRM (default action: terminate).
        unsafe { libc::alarm(limit) };
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok();
        std::process::exit(if ok { 0 } else { 101 });
    }
    CHILDREN.lock().unwrap().push(pid);
    pid
}

/// Child `pid` may outlive this process (it is not killed at exit).
fn let_outlive(pid: i32) {
    CHILDREN.lock().unwrap().retain(|&p| p != pid);
}

/// A pipe children report to their parent on: (read end, write end).
fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: valid out array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

fn send_i32(fd: i32, v: i32) {
    // SAFETY: writes 4 bytes from a local.
    assert_eq!(unsafe { libc::write(fd, (&v as *const i32).cast(), 4) }, 4);
}

/// Reads what a child sent on the pipe, waiting at most 20 s.
fn recv_i32(fd: i32) -> i32 {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut p, 1, 20_000) }, 1, "no word from a child within 20 s");
    let mut v = 0i32;
    // SAFETY: reads 4 bytes into a local.
    assert_eq!(unsafe { libc::read(fd, (&mut v as *mut i32).cast(), 4) }, 4, "read from a child");
    v
}

/// Waits for child `pid`, at most `limit`; its exit status.
fn wait_child(pid: i32, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: reaps our own child, non-blocking.
        let rv = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rv == pid {
            CHILDREN.lock().unwrap().retain(|&p| p != pid);
            return status;
        }
        assert!(rv == 0 && Instant::now() < deadline, "child {pid} did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Calls `vls_epoll_wait` on `ep` (which may be empty) until `done` holds
/// or `limit` passes; true if it held.
fn epoll_wait_until(ep: i32, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: `evs` holds 4 events.
        unsafe { vls_epoll_wait(ep, evs.as_mut_ptr(), 4, 0.02) };
        if done() {
            return true;
        }
    }
    false
}

/// Waits (on an epoll set of its own, as an application that polls) until
/// every exited child's worker has been cleaned up; true if so in `limit`.
fn children_cleaned_up(limit: Duration) -> bool {
    // A child that exits normally releases its record itself, just before
    // VCL's exit handler frees its worker: both are waited for.
    let workers: Vec<u32> = vls::raw::forked_children().iter().map(|&(w, _)| w).collect();
    let ep = vls_epoll_create();
    let done = epoll_wait_until(ep, limit, || {
        vls::raw::forked_children().is_empty() && workers.iter().all(|&w| !worker_is_valid(w))
    });
    assert_eq!(vls_close(ep), 0);
    done
}

fn add_to_epoll(ep: i32, h: i32) {
    let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: h as u64 };
    // SAFETY: `ev` is valid.
    assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_ADD, h, &mut ev) }, 0, "epoll_ctl add");
}

/// A forked child's server: adds shared listener `l` to its own epoll set
/// (so it listens on its own worker), reports its pid on `report`, then
/// answers requests, one per connection: `helo` → its pid; `kill` → its
/// pid, then reports it on `report` and waits to be killed; `bye!` → its
/// pid, then returns.
fn serve(l: i32, report: i32) {
    serve_on(listen_in_child(l), &[l], report)
}

/// A child starts using shared listener `l`: its own epoll set holds it.
fn listen_in_child(l: i32) -> i32 {
    let me = my_worker();
    let (_, l_wrk) = session_and_worker(l);
    assert_eq!(l_wrk, me, "the child's copy of the listener is on the child's worker");
    let ep = vls_epoll_create();
    assert!(ep >= 0);
    add_to_epoll(ep, l);
    ep
}

/// [`serve`] with `listeners` already in epoll set `ep` (their handles as
/// event data). The pid is reported after a first (non-waiting) pass over
/// the set, which makes inherited listeners listen here.
fn serve_on(ep: i32, listeners: &[i32], report: i32) {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    let mut reported = false;
    loop {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        let wait = if reported { 1.0 } else { 0.0 };
        // SAFETY: `evs` holds 8 events.
        let n = unsafe { vls_epoll_wait(ep, evs.as_mut_ptr(), 8, wait) };
        assert!(n >= 0, "epoll_wait: {n}");
        if !reported {
            send_i32(report, pid);
            reported = true;
        }
        for ev in &evs[..n as usize] {
            let l = ev.u64 as i32;
            assert!(listeners.contains(&l), "event for {l}, not a listener");
            loop {
                let s = accept(l);
                if s == EAGAIN {
                    break;
                }
                assert!(s >= 0, "accept: {s}");
                let mut cmd = [0u8; 4];
                read_exact(s, &mut cmd);
                write_all(s, format!("{pid:>REPLY$}").as_bytes());
                match &cmd {
                    b"helo" => {}
                    b"kill" => {
                        send_i32(report, pid);
                        std::thread::sleep(Duration::from_secs(60));
                    }
                    b"bye!" => {
                        std::thread::sleep(Duration::from_millis(100));
                        assert_eq!(vls_close(s), 0);
                        return;
                    }
                    other => panic!("unknown request {other:?}"),
                }
                assert_eq!(vls_close(s), 0);
            }
        }
    }
}

/// Client side: one connection, one request; the pid that answered, or
/// `None` if nothing answered within 3 s (the connection may have gone to
/// a worker that just died).
fn request(a: SocketAddr, ep: i32, cmd: &[u8; 4]) -> Option<i32> {
    let c = connect_to(a, TCP);
    write_all(c, cmd);
    add_to_epoll(ep, c);
    let mut reply = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while reply.len() < REPLY && Instant::now() < deadline {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 1];
        // SAFETY: `evs` holds 1 event.
        if unsafe { vls_epoll_wait(ep, evs.as_mut_ptr(), 1, 0.1) } <= 0 {
            continue;
        }
        let mut buf = [0u8; REPLY];
        let n = read_some(c, &mut buf[..REPLY - reply.len()]);
        if n <= 0 {
            break;
        }
        reply.extend_from_slice(&buf[..n as usize]);
    }
    vls_close(c);
    (reply.len() == REPLY).then(|| String::from_utf8_lossy(&reply).trim().parse().expect("a pid"))
}

fn client_epoll() -> i32 {
    let ep = vls_epoll_create();
    assert!(ep >= 0);
    ep
}

/// Client: `n` requests, one connection each; how many each pid answered.
fn answers_by_pid(a: SocketAddr, ep: i32, n: usize) -> std::collections::HashMap<i32, usize> {
    let mut by_pid = std::collections::HashMap::new();
    for _ in 0..n {
        *by_pid.entry(request(a, ep, b"helo").expect("a reply")).or_default() += 1;
    }
    by_pid
}

/// Server: attaches, listens on `a` (blocking) and accepts one connection
/// on which the client sends `first`; returns (listener, connection).
fn accept_first_connection(a: SocketAddr) -> (i32, i32) {
    app("fork-server");
    let l = listen_on(a, TCP, false);
    let s = accept(l);
    assert!(s >= 0, "accept: {s}");
    let mut first = [0u8; 5];
    read_exact(s, &mut first);
    assert_eq!(&first, b"first");
    (l, s)
}

/// The server signals "children ready" by listening on a second port
/// (connections to the shared listener made before the children listen
/// would go to the parent, which does not accept).
fn ready_addr(a: SocketAddr) -> SocketAddr {
    SocketAddr::from((STACK_SERVER, a.port() + 100))
}

/// Server: listens on the ready port and accepts the client's connection
/// there (so it does not wait in the accept queue until the listener
/// closes).
fn announce_ready(a: SocketAddr) -> i32 {
    let l = listen_on(ready_addr(a), TCP, false);
    let c = accept(l);
    assert!(c >= 0, "accept on the ready port: {c}");
    assert_eq!(vls_close(c), 0);
    l
}

/// Client: waits until the server's ready port accepts connections.
fn wait_until_ready(a: SocketAddr) {
    let c = connect_to(ready_addr(a), TCP);
    vls_close(c);
}

/// Sends `bye!` until `n` different processes have said goodbye.
fn say_goodbye(a: SocketAddr, ep: i32, n: usize) {
    let mut gone = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while gone.len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} servers said goodbye", gone.len());
        if let Some(pid) = request(a, ep, b"bye!") {
            gone.insert(pid);
        }
    }
}

/// Parent listens, forks two children (two forks: the SIGCHLD interceptor
/// is installed once), both accept on the shared listener through their
/// own epoll sets; 64 clients are served, by both. Then each child exits
/// (children exit first, through `exit`): the parent's `epoll_wait`
/// cleans both workers up, the application's own SIGCHLD handler ran (once
/// per signal: once or twice), and the parent, last holder of the
/// listener, closes it.
#[test]
fn fork_two_children_serve_a_shared_listener_and_exit_first() {
    let a = server_addr(7201);
    run_pair(
        "fork_two_children_serve_a_shared_listener_and_exit_first",
        through_stack,
        || {
            app("fork-server");
            install_app_sigchld_handler();
            let l = listen_on(a, TCP, true);
            let parent_wrk = my_worker();
            assert_eq!(vls::raw::mode(), vls::Mode::SingleThread, "nothing forked yet");
            let (rd, wr) = pipe();
            let kids: Vec<i32> = (0..2)
                .map(|_| {
                    fork_child(25, || {
                        assert_eq!(vls::raw::mode(), vls::Mode::PerProcessWorkers, "a forked child");
                        serve(l, wr)
                    })
                })
                .collect();
            let ready: Vec<i32> = (0..2).map(|_| recv_i32(rd)).collect();
            let ready_l = announce_ready(a);
            assert_eq!(my_worker(), parent_wrk, "the parent keeps its worker");
            assert_eq!(vls::raw::mode(), vls::Mode::PerProcessWorkers, "a parent that forked");
            let children = vls::raw::forked_children();
            assert_eq!(children.len(), 2, "both children known: {children:?}");
            for (w, pid) in &children {
                assert!(kids.contains(pid) && ready.contains(pid));
                assert_ne!(*w, parent_wrk);
            }
            assert_eq!(vls::raw::sharers(l), 3, "parent and two children hold the listener");
            assert!(
                children_cleaned_up(Duration::from_secs(20)),
                "the children's workers were not cleaned up: {:?}",
                vls::raw::forked_children()
            );
            for (w, _) in &children {
                assert!(!worker_is_valid(*w), "worker {w} of an exited child still exists");
            }
            for pid in kids {
                assert_eq!(wait_child(pid, Duration::from_secs(5)), 0, "child {pid} failed");
            }
            // Once per SIGCHLD delivered: two children that exit while the
            // first signal is still pending (a busy machine) give one.
            let app_handler_runs = APP_SIGCHLD.load(Ordering::SeqCst);
            assert!(
                (1..=2).contains(&app_handler_runs),
                "the application's handler runs once per SIGCHLD: {app_handler_runs} for two children"
            );
            assert_eq!(vls::raw::sharers(l), 1, "only the parent holds the listener now");
            assert_eq!(vls_close(l), 0, "the last holder closes the listener");
            assert_eq!(vls::raw::shared_sessions(), 0, "no shared entry is left behind");
            assert_eq!(vls_close(ready_l), 0);
        },
        || {
            app("fork-client");
            wait_until_ready(a);
            let ep = client_epoll();
            let by_pid = answers_by_pid(a, ep, 64);
            assert_eq!(by_pid.len(), 2, "both children served: {by_pid:?}");
            say_goodbye(a, ep, 2);
        },
    );
}

/// The mq epoll fd number of (another process's) worker `wrk`, as recorded
/// in VCL's shared worker record.
fn victims_mq_epoll_fd(wrk: u32) -> i32 {
    // SAFETY: reads a field of the worker record (null-checked in C).
    let fd = unsafe { ffi::vppsys_worker_mqs_epfd(wrk) };
    assert!(fd > 2, "worker {wrk} has an mq epoll fd ({fd})");
    fd
}

/// A descriptor of this process and the file it refers to.
struct ParentFile {
    fd: i32,
    dev_ino: (u64, u64),
}

fn dev_ino(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: fstat into a zeroed local.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid out pointer.
    (unsafe { libc::fstat(fd, &mut st) } == 0).then_some((st.st_dev, st.st_ino))
}

/// Makes `fd` a file of this process (an eventfd put there unless it
/// already is one of ours).
fn parent_file_at(fd: i32) -> ParentFile {
    if dev_ino(fd).is_none() {
        // SAFETY: plain syscalls; dup2 onto a number that is not open.
        unsafe {
            let e = libc::eventfd(0, libc::EFD_CLOEXEC);
            assert!(e >= 0);
            assert_eq!(libc::dup2(e, fd), fd);
            libc::close(e);
        }
    }
    ParentFile { fd, dev_ino: dev_ino(fd).expect("open") }
}

impl ParentFile {
    fn assert_still_open(&self) {
        assert_eq!(
            dev_ino(self.fd),
            Some(self.dev_ino),
            "fd {} of this process was closed (or replaced) by the dead child's cleanup",
            self.fd
        );
    }
}

/// A child is killed with SIGKILL (no exit path runs in it): the parent's
/// next `epoll_wait` cleans its worker up, and the other child keeps
/// serving.
#[test]
fn sigkilled_child_is_cleaned_up_by_the_parents_epoll_wait() {
    let a = server_addr(7202);
    run_pair(
        "sigkilled_child_is_cleaned_up_by_the_parents_epoll_wait",
        through_stack,
        || {
            app("fork-server");
            let l = listen_on(a, TCP, true);
            let (rd, wr) = pipe();
            let kids: Vec<i32> = (0..2).map(|_| fork_child(25, || serve(l, wr))).collect();
            for _ in 0..2 {
                recv_i32(rd);
            }
            let ready_l = announce_ready(a);
            let ep = vls_epoll_create();
            // The child that got the client's "kill" reports its pid.
            let victim = recv_i32(rd);
            assert!(kids.contains(&victim));
            let (victim_wrk, _) =
                *vls::raw::forked_children().iter().find(|(_, p)| *p == victim).expect("victim known");
            // Let VPP handle what the victim sent last (its accept reply):
            // VPP v26.06 crashes handling an accept reply that arrives
            // after it deleted the sender's app worker.
            std::thread::sleep(Duration::from_millis(300));
            // The victim's mq epoll fd is a number of the victim's; here it
            // is (made) a file of the parent's, which the cleanup of the
            // victim's worker must leave alone.
            let own = parent_file_at(victims_mq_epoll_fd(victim_wrk));
            // SAFETY: kills our own child.
            assert_eq!(unsafe { libc::kill(victim, libc::SIGKILL) }, 0);
            assert!(
                epoll_wait_until(ep, Duration::from_secs(10), || !worker_is_valid(victim_wrk)),
                "the killed child's worker was not cleaned up"
            );
            own.assert_still_open();
            assert_eq!(vls::raw::forked_children().len(), 1);
            let status = wait_child(victim, Duration::from_secs(5));
            assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
            let survivor = *kids.iter().find(|&&p| p != victim).unwrap();
            assert_eq!(wait_child(survivor, Duration::from_secs(20)), 0, "the survivor failed");
            assert!(epoll_wait_until(ep, Duration::from_secs(5), || vls::raw::forked_children().is_empty()));
            assert_eq!(vls::raw::sharers(l), 1);
            assert_eq!(vls_close(l), 0);
            assert_eq!(vls_close(ready_l), 0);
        },
        || {
            app("fork-client");
            wait_until_ready(a);
            let ep = client_epoll();
            let mut seen = std::collections::HashSet::new();
            for _ in 0..32 {
                seen.insert(request(a, ep, b"helo").expect("a reply"));
            }
            assert_eq!(seen.len(), 2, "both children served");
            let victim = request(a, ep, b"kill").expect("a reply");
            // Give VPP a moment to notice the dead worker; requests that
            // still reach it go unanswered and are retried.
            std::thread::sleep(Duration::from_millis(500));
            let mut answered = 0;
            let deadline = Instant::now() + Duration::from_secs(15);
            while answered < 16 {
                assert!(Instant::now() < deadline, "the survivor stopped serving ({answered} answers)");
                if let Some(pid) = request(a, ep, b"helo") {
                    assert_ne!(pid, victim, "a killed child answered");
                    answered += 1;
                }
            }
            say_goodbye(a, ep, 1);
        },
    );
}

/// The parent accepts a connection, forks a child, and exits: the child
/// (now the only holder of the listener and the connection) answers on
/// that connection and on new ones.
#[test]
fn parent_exits_first_and_its_child_keeps_the_sessions() {
    let a = server_addr(7203);
    run_pair(
        "parent_exits_first_and_its_child_keeps_the_sessions",
        through_stack,
        || {
            let (l, s) = accept_first_connection(a);
            // SAFETY: getpid has no preconditions.
            let parent = unsafe { libc::getpid() };
            let child = fork_child(25, move || {
                let ep = listen_in_child(l);
                // Wait in epoll_wait (where the parent's connection is
                // handed over) for the parent to be gone (re-parented).
                // SAFETY: getppid has no preconditions.
                let gone =
                    epoll_wait_until(ep, Duration::from_secs(15), || unsafe { libc::getppid() } != parent);
                assert!(gone, "the parent did not exit");
                assert_eq!(vls::raw::sharers(s), 1, "the parent left the connection at exit");
                // SAFETY: getpid has no preconditions.
                let pid = unsafe { libc::getpid() };
                write_all(s, format!("{pid:>REPLY$}").as_bytes());
                let mut second = [0u8; 6];
                read_exact(s, &mut second);
                assert_eq!(&second, b"second");
                write_all(s, b"ok");
                let (_, wr) = pipe();
                serve_on(ep, &[l], wr);
                std::thread::sleep(Duration::from_millis(200));
                // Its parent is gone: its result goes to a file the client
                // checks (a failed assertion above never writes it).
                std::fs::write(outliving_child_result(), "done").expect("write the child's result");
            });
            // The parent exits now (the test returns), leaving both
            // sessions to the child.
            let_outlive(child);
        },
        || {
            app("fork-client");
            let c = connect_to(a, TCP);
            write_all(c, b"first");
            let mut reply = [0u8; REPLY];
            read_exact(c, &mut reply);
            let child: i32 = String::from_utf8_lossy(&reply).trim().parse().unwrap();
            write_all(c, b"second");
            let mut ok = [0u8; 2];
            read_exact(c, &mut ok);
            assert_eq!(&ok, b"ok");
            vls_close(c);
            let ep = client_epoll();
            for _ in 0..8 {
                assert_eq!(request(a, ep, b"helo"), Some(child), "the child serves new connections");
            }
            say_goodbye(a, ep, 1);
            let deadline = Instant::now() + Duration::from_secs(10);
            while std::fs::read_to_string(outliving_child_result()).ok().as_deref() != Some("done") {
                assert!(
                    Instant::now() < deadline,
                    "the child that outlived its parent did not finish cleanly"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        },
    );
}

/// Where the child of `parent_exits_first_and_its_child_keeps_the_sessions`
/// reports that it finished (beside both roles' `vcl.conf`).
fn outliving_child_result() -> std::path::PathBuf {
    let conf = std::path::PathBuf::from(std::env::var_os("VCL_CONFIG").expect("VCL_CONFIG"));
    conf.parent().expect("the instance's directory").join("outliving-child.result")
}

/// An epoll set made before the fork, holding two listeners, works in the
/// child that inherits it: the set's VCL links are re-based to the child's
/// worker, and both listeners (several in one set) start listening there
/// when the child waits on the set.
#[test]
fn epoll_set_made_before_fork_serves_both_its_listeners_in_the_child() {
    let (a1, a2) = (server_addr(7204), server_addr(7205));
    run_pair(
        "epoll_set_made_before_fork_serves_both_its_listeners_in_the_child",
        through_stack,
        || {
            app("fork-server");
            let (l1, l2) = (listen_on(a1, TCP, true), listen_on(a2, TCP, true));
            let ep = vls_epoll_create();
            assert!(ep >= 0);
            add_to_epoll(ep, l1);
            add_to_epoll(ep, l2);
            let (rd, wr) = pipe();
            let child = fork_child(25, || {
                let (_, ep_wrk) = session_and_worker(ep);
                assert_eq!(ep_wrk, my_worker(), "the inherited set is on the child's worker");
                serve_on(ep, &[l1, l2], wr);
            });
            recv_i32(rd);
            let ready_l = announce_ready(a1);
            assert_eq!(wait_child(child, Duration::from_secs(20)), 0, "the child failed");
            assert!(epoll_wait_until(ep, Duration::from_secs(5), || vls::raw::forked_children().is_empty()));
            assert_eq!(vls_close(l1), 0);
            assert_eq!(vls_close(l2), 0);
            assert_eq!(vls::raw::shared_sessions(), 1, "the epoll set is still shared with nobody but us");
            assert_eq!(vls_close(ep), 0);
            assert_eq!(vls::raw::shared_sessions(), 0);
            assert_eq!(vls_close(ready_l), 0);
        },
        || {
            app("fork-client");
            wait_until_ready(a1);
            let ep = client_epoll();
            let mut pids = std::collections::HashSet::new();
            for _ in 0..8 {
                pids.insert(request(a1, ep, b"helo").expect("a reply on the first listener"));
                pids.insert(request(a2, ep, b"helo").expect("a reply on the second listener"));
            }
            assert_eq!(pids.len(), 1, "one child served both: {pids:?}");
            say_goodbye(a1, ep, 1);
        },
    );
}

/// nginx removes listeners from its epoll sets and adds them back all the
/// time: removing must not stop listening. Child A adds the listener to
/// its set and removes it again, then sleeps; connections made meanwhile
/// still go to A (VPP still hands A its share), which answers them when it
/// wakes. The parent's copy of the listener (not listening since the
/// children took over) is closed early: that sends VPP nothing and stops
/// nobody.
#[test]
fn removing_a_listener_from_epoll_does_not_stop_it() {
    let a = server_addr(7206);
    run_pair(
        "removing_a_listener_from_epoll_does_not_stop_it",
        through_stack,
        || {
            app("fork-server");
            let l = listen_on(a, TCP, true);
            let (rd, wr) = pipe();
            let sleeper = fork_child(25, || {
                let ep = listen_in_child(l);
                // SAFETY: `ev` may be null for a delete.
                assert_eq!(unsafe { vls_epoll_ctl(ep, libc::EPOLL_CTL_DEL, l, std::ptr::null_mut()) }, 0);
                // SAFETY: getpid has no preconditions.
                send_i32(wr, unsafe { libc::getpid() });
                std::thread::sleep(Duration::from_millis(1500));
                add_to_epoll(ep, l);
                serve_on(ep, &[l], wr);
            });
            let other = fork_child(25, || serve(l, wr));
            recv_i32(rd);
            recv_i32(rd);
            assert_eq!(vls_close(l), 0, "the parent drops its copy");
            let ready_l = announce_ready(a);
            for pid in [sleeper, other] {
                assert_eq!(wait_child(pid, Duration::from_secs(20)), 0, "child {pid} failed");
            }
            assert!(children_cleaned_up(Duration::from_secs(5)));
            assert_eq!(vls::raw::shared_sessions(), 0, "the last child closed the listener");
            assert_eq!(vls_close(ready_l), 0);
        },
        || {
            app("fork-client");
            wait_until_ready(a);
            let ep = client_epoll();
            let by_pid = answers_by_pid(a, ep, 8);
            assert_eq!(by_pid.len(), 2, "the sleeping child kept its share: {by_pid:?}");
            say_goodbye(a, ep, 2);
        },
    );
}

/// Server with per-thread workers, through VPP's stack.
fn through_stack_mt(vpp: &vpp_harness::VppInstance) -> (vpp_harness::VclConf, vpp_harness::VclConf) {
    let (srv, cli) = through_stack(vpp);
    (srv.with("multi-thread-workers"), cli)
}

/// With per-thread workers on (`multi-thread-workers`): the parent accepts
/// a connection, forks, and closes its copy; the child, now the only
/// holder, waits for the connection's events in its own epoll set and
/// serves it: VPP hands the connection to the child's worker and delivers
/// its events there (data that came during the hand-over, and later data).
/// The parent stays alive meanwhile.
#[test]
fn connection_accepted_in_the_parent_is_served_by_the_child_after_the_parent_closes_it() {
    let a = server_addr(7207);
    run_pair(
        "connection_accepted_in_the_parent_is_served_by_the_child_after_the_parent_closes_it",
        through_stack_mt,
        || {
            let (l, s) = accept_first_connection(a);
            let (rd, wr) = pipe();
            let child = fork_child(25, move || {
                let ep = vls_epoll_create();
                assert!(ep >= 0);
                add_to_epoll(ep, s);
                // SAFETY: getpid has no preconditions.
                send_i32(wr, unsafe { libc::getpid() });
                let wait_for_data = || {
                    let deadline = Instant::now() + Duration::from_secs(15);
                    loop {
                        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 1];
                        // SAFETY: `evs` holds 1 event.
                        let n = unsafe { vls_epoll_wait(ep, evs.as_mut_ptr(), 1, 0.05) };
                        if n == 1 {
                            assert_eq!({ evs[0].u64 }, s as u64);
                            return;
                        }
                        assert!(
                            n == 0 && Instant::now() < deadline,
                            "no event for the connection in the child: {n}"
                        );
                    }
                };
                wait_for_data();
                let mut second = [0u8; 6];
                read_exact(s, &mut second);
                assert_eq!(&second, b"second");
                // SAFETY: getpid has no preconditions.
                let pid = unsafe { libc::getpid() };
                write_all(s, format!("{pid:>REPLY$}").as_bytes());
                // Later data brings its own events to this worker.
                wait_for_data();
                let mut third = [0u8; 5];
                read_exact(s, &mut third);
                assert_eq!(&third, b"third");
                let mut eof = [0u8; 1];
                assert_eq!(read_some(s, &mut eof), 0, "the client closes");
                assert_eq!(vls_close(s), 0, "the last holder closes it for real");
            });
            let child_pid = recv_i32(rd);
            assert_eq!(child_pid, child);
            assert_eq!(vls::raw::sharers(s), 2);
            assert_eq!(vls_close(s), 0, "the parent drops its copy");
            let ready_l = announce_ready(a);
            assert_eq!(wait_child(child, Duration::from_secs(20)), 0, "the child failed");
            assert!(children_cleaned_up(Duration::from_secs(5)));
            assert_eq!(vls_close(l), 0);
            assert_eq!(vls_close(ready_l), 0);
        },
        || {
            app("fork-client");
            let c = connect_to(a, TCP);
            write_all(c, b"first");
            wait_until_ready(a);
            write_all(c, b"second");
            let mut reply = [0u8; REPLY];
            read_exact(c, &mut reply);
            let pid: i32 = String::from_utf8_lossy(&reply).trim().parse().expect("a pid");
            assert!(pid > 0);
            write_all(c, b"third");
            std::thread::sleep(Duration::from_millis(200));
            assert_eq!(vls_close(c), 0);
        },
    );
}

/// A process with two threads forks while its second thread is blocked in
/// a read (holding that session's lock and the worker's locks in between
/// waits). The child has only the forking thread: it must not inherit those
/// locks as held. It closes its copy of that connection and serves new ones
/// on the shared listener; the parent's reader gets its data afterwards.
#[test]
fn fork_while_another_thread_is_blocked_in_a_read() {
    let a = server_addr(7208);
    run_pair(
        "fork_while_another_thread_is_blocked_in_a_read",
        through_stack,
        || {
            app("fork-server");
            let l = listen_on(a, TCP, true);
            let deadline = Instant::now() + Duration::from_secs(10);
            let x = loop {
                let x = accept(l);
                if x >= 0 {
                    break x;
                }
                assert!(x == EAGAIN && Instant::now() < deadline, "accept: {x}");
                std::thread::sleep(Duration::from_millis(10));
            };
            let reader = std::thread::spawn(move || {
                let mut buf = [0u8; 4];
                read_exact(x, &mut buf); // blocks until the client's "wake"
                buf
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while vls::raw::threads_waiting_in_vcl() == 0 {
                assert!(Instant::now() < deadline, "the reader never blocked in VCL");
                std::thread::sleep(Duration::from_millis(1));
            }
            let (rd, wr) = pipe();
            let child = fork_child(25, || {
                assert_eq!(vls_close(x), 0, "the child drops its copy of the blocked connection");
                serve(l, wr);
            });
            assert_eq!(recv_i32(rd), child, "the child came up");
            let ready_l = announce_ready(a);
            assert_eq!(&reader.join().unwrap(), b"wake", "the parent's reader got its data");
            assert_eq!(wait_child(child, Duration::from_secs(20)), 0, "the child failed");
            assert!(children_cleaned_up(Duration::from_secs(5)));
            assert_eq!(vls_close(x), 0);
            assert_eq!(vls_close(l), 0);
            assert_eq!(vls_close(ready_l), 0);
        },
        || {
            app("fork-client");
            let x = connect_to(a, TCP);
            wait_until_ready(a);
            let ep = client_epoll();
            let pid = request(a, ep, b"helo").expect("the child answers");
            assert!(pid > 0);
            write_all(x, b"wake");
            say_goodbye(a, ep, 1);
            assert_eq!(vls_close(x), 0);
        },
    );
}

/// Bytes the client has sent and the server holds unread when it forks
/// (many FIFO chunks: VPP starts a FIFO with a 4 KiB chunk and grows it).
const QUEUED_IN: usize = 96 << 10;
/// Bytes the child writes before its parent drops its copy.
const QUEUED_OUT: usize = 96 << 10;

/// The byte at offset `i` of a stream seeded with `seed` (a pattern whose
/// period is not a power of two, so a misplaced chunk shows).
fn pattern_byte(seed: u8, i: usize) -> u8 {
    ((i % 251) as u8).wrapping_add(seed)
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| pattern_byte(seed, i)).collect()
}

/// Bytes waiting to be read on `s`.
fn nread(s: i32) -> i32 {
    let mut len = 0u32;
    // SAFETY: GET_NREAD writes nothing through the buffer.
    unsafe { vls_attr(s, ffi::VPPCOM_ATTR_GET_NREAD, std::ptr::null_mut(), &mut len) }
}

/// Waits (polling an epoll set, as an application does) until the kept
/// copy of a connection is gone, once its last relative closed it.
fn assert_kept_copy_goes() {
    let ep = vls_epoll_create();
    assert!(
        epoll_wait_until(ep, Duration::from_secs(5), || vls::raw::kept_connections() == 0),
        "the kept connection outlived its last holder"
    );
    assert_eq!(vls_close(ep), 0);
}

/// Listens on `a`, accepts one connection and waits until the client's
/// `QUEUED_IN` bytes are all in its rx FIFO; returns listener and
/// connection.
fn accept_with_queued_input(a: SocketAddr) -> (i32, i32) {
    let l = listen_on(a, TCP, false);
    let s = accept(l);
    assert!(s >= 0, "accept: {s}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while nread(s) < QUEUED_IN as i32 {
        assert!(Instant::now() < deadline, "only {} bytes arrived", nread(s));
        std::thread::sleep(Duration::from_millis(5));
    }
    (l, s)
}

/// The hand-over of a connection whose FIFOs hold many chunks of data:
/// the parent accepts, waits until the client's `QUEUED_IN` bytes are all
/// in its rx FIFO, and forks; the child writes `QUEUED_OUT` bytes the
/// client does not read yet; then the parent drops its copy, which makes
/// the child's worker the connection's owner in VPP. Every byte must
/// arrive once, in order, in both directions.
fn queued_data_survives_the_hand_over(name: &str, a: SocketAddr, setup: common::PairSetup) {
    let ready = SocketAddr::new(a.ip(), a.port() + 100);
    run_pair(
        name,
        setup,
        || {
            app("fork-server");
            let (l, s) = accept_with_queued_input(a);
            let (rd, wr) = pipe();
            let (back_rd, back_wr) = pipe();
            let child = fork_child(25, move || {
                write_all(s, &pattern(7, QUEUED_OUT));
                send_i32(wr, 1);
                assert_eq!(recv_i32(back_rd), 2, "the parent dropped its copy");
                let mut got = vec![0u8; QUEUED_IN];
                read_exact(s, &mut got);
                if let Some(i) = (0..QUEUED_IN).find(|&i| got[i] != pattern_byte(3, i)) {
                    panic!("client's byte {i} of {QUEUED_IN} differs after the hand-over");
                }
                write_all(s, b"done");
                let mut eof = [0u8; 1];
                assert_eq!(read_some(s, &mut eof), 0, "the client closes");
                assert_eq!(vls_close(s), 0);
            });
            assert_eq!(recv_i32(rd), 1, "the child wrote its data");
            assert_eq!(vls::raw::sharers(s), 2);
            assert_eq!(vls::raw::kept_connections(), 0);
            assert_eq!(vls_close(s), 0, "the parent drops its copy");
            // The FIFOs grew past their first chunk: VPP could not hand the
            // connection over; this process stays its owner in VPP.
            assert_eq!(vls::raw::kept_connections(), 1);
            send_i32(back_wr, 2);
            let rl = listen_on(ready, TCP, false);
            let c = accept(rl);
            assert!(c >= 0, "accept on the ready port: {c}");
            assert_eq!(vls_close(c), 0);
            assert_eq!(wait_child(child, Duration::from_secs(20)), 0, "the child failed");
            // The child closed it: the kept copy goes (once VPP confirms).
            assert_kept_copy_goes();
            assert_eq!(vls_close(l), 0);
            assert_eq!(vls_close(rl), 0);
        },
        || {
            app("fork-client");
            let c = connect_to(a, TCP);
            write_all(c, &pattern(3, QUEUED_IN));
            // The server is ready once the hand-over was asked for.
            let r = connect_to(ready, TCP);
            vls_close(r);
            let mut got = vec![0u8; QUEUED_OUT];
            read_exact(c, &mut got);
            if let Some(i) = (0..QUEUED_OUT).find(|&i| got[i] != pattern_byte(7, i)) {
                panic!("server's byte {i} of {QUEUED_OUT} differs after the hand-over");
            }
            let mut done = [0u8; 4];
            read_exact(c, &mut done);
            assert_eq!(&done, b"done");
            assert_eq!(vls_close(c), 0);
        },
    );
}

common::stack_and_cut_through! {
    queued_data_survives_the_hand_over: queued_data_survives_the_hand_over_through_the_stack on 7211, queued_data_survives_the_hand_over_cut_through on 7212
}

/// After a hand-over VPP could not make (the parent kept its copy as VPP's
/// owner, see `queued_data_survives_the_hand_over`), the child waits in
/// `epoll_wait` for data the client sends only then: it must be woken.
fn child_is_woken_after_a_kept_hand_over(name: &str, a: SocketAddr, setup: common::PairSetup) {
    run_pair(
        name,
        setup,
        || {
            app("fork-server");
            let (l, s) = accept_with_queued_input(a);
            let (back_rd, back_wr) = pipe();
            let child = fork_child(25, move || {
                assert_eq!(recv_i32(back_rd), 2, "the parent dropped its copy");
                let mut got = vec![0u8; QUEUED_IN];
                read_exact(s, &mut got);
                let ep = vls_epoll_create();
                add_to_epoll(ep, s);
                // Tells the client to send the rest now.
                write_all(s, b"more");
                let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
                // SAFETY: `evs` holds 4 events.
                // (VCL's unit: milliseconds.)
                let n = unsafe { vls_epoll_wait(ep, evs.as_mut_ptr(), 4, 10_000.0) };
                assert_eq!(n, 1, "the client's data must wake the child within 10 s");
                let mut next = [0u8; 4];
                read_exact(s, &mut next);
                assert_eq!(&next, b"next");
                write_all(s, b"done");
                assert_eq!(vls_close(ep), 0);
                assert_eq!(vls_close(s), 0);
            });
            assert_eq!(vls_close(s), 0, "the parent drops its copy");
            assert_eq!(vls::raw::kept_connections(), 1, "VPP could not hand the connection over");
            send_i32(back_wr, 2);
            assert_eq!(wait_child(child, Duration::from_secs(20)), 0, "the child failed");
            assert_kept_copy_goes();
            assert_eq!(vls_close(l), 0);
        },
        || {
            app("fork-client");
            let c = connect_to(a, TCP);
            write_all(c, &pattern(3, QUEUED_IN));
            let mut more = [0u8; 4];
            read_exact(c, &mut more);
            assert_eq!(&more, b"more");
            // The child is in its wait by now or soon: either way the data
            // must reach it.
            std::thread::sleep(Duration::from_millis(200));
            write_all(c, b"next");
            let mut done = [0u8; 4];
            read_exact(c, &mut done);
            assert_eq!(&done, b"done");
            assert_eq!(vls_close(c), 0);
        },
    );
}

#[test]
fn child_is_woken_after_a_kept_hand_over_through_the_stack() {
    child_is_woken_after_a_kept_hand_over(
        "child_is_woken_after_a_kept_hand_over_through_the_stack",
        server_addr(7214),
        through_stack,
    );
}

/// A child forked while VCL's `max-workers` is reached gets no worker of
/// its own (VCL refuses the registration): its VLS calls fail with an
/// error instead of reaching VCL, and it ends with its own exit status
/// (VCL's exit handler used to clean up worker `~0` and crash it with
/// SIGSEGV). The parent goes on serving.
#[test]
fn child_without_a_worker_fails_its_calls_and_exits_cleanly() {
    let a = server_addr(7216);
    run_pair(
        "child_without_a_worker_fails_its_calls_and_exits_cleanly",
        |vpp| {
            let (mut server, client) = through_stack(vpp);
            server.extra.push("max-workers 1".into());
            (server, client)
        },
        || {
            app("fork-no-worker");
            let l = listen_on(a, TCP, false);
            let child = fork_child(20, move || {
                assert_eq!(my_worker(), u32::MAX, "the child got a worker beyond max-workers");
                assert!(vls_create(TCP, 1) < 0, "a session without a worker");
                let mut buf = [0u8; 4];
                // SAFETY: `buf` is valid for 4 bytes.
                let rv = unsafe { vls_read(l, buf.as_mut_ptr().cast(), buf.len()) };
                assert_eq!(rv, EBADFD as isize);
                assert_eq!(vls_close(l), 0, "the inherited listener closes as an orphan");
            });
            let status = wait_child(child, Duration::from_secs(20));
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "the child ended with status {status:#x} (signal {})",
                if libc::WIFSIGNALED(status) { libc::WTERMSIG(status) } else { 0 }
            );
            let s = accept(l);
            assert!(s >= 0, "accept after the child: {s}");
            let mut hello = [0u8; 5];
            read_exact(s, &mut hello);
            write_all(s, &hello);
            vls_close(s);
            vls_close(l);
        },
        || {
            app("fork-no-worker-client");
            let c = connect_to(a, TCP);
            write_all(c, b"hello");
            let mut back = [0u8; 5];
            read_exact(c, &mut back);
            assert_eq!(&back, b"hello");
            vls_close(c);
        },
    );
}

/// A fresh connection a forking server leaves to its child right after
/// accepting it, the client's first bytes still unread (socat's `fork`
/// mode): the child reads them, writes, then waits for the client's answer
/// in `vls_poll`, as LDP's `poll` calls it (with `vlsh_to_sh` handles), and
/// both directions work. VCL's poll looks entries up as session indexes:
/// on the child's worker (not 0) it found none until the layer turned the
/// handles into indexes. Cut-through, the parent keeps the connection as
/// VPP's owner (VPP's hand-over would give the accepted side FIFOs of its
/// own; see the shim's `vppsys_handover_is_safe`) and the child works on
/// the shared FIFOs.
fn fresh_connection_left_to_a_child(name: &str, a: SocketAddr, setup: common::PairSetup) {
    run_pair(
        name,
        setup,
        || {
            app("fork-server");
            let l = listen_on(a, TCP, false);
            let s = accept(l);
            assert!(s >= 0, "accept: {s}");
            assert_eq!(poll_one(s, libc::POLLIN, 10.0).0, 1, "the client's first bytes are queued");
            let child = fork_child(25, move || {
                assert_ne!(my_worker(), 0, "the child has a worker of its own");
                let mut first = [0u8; 5];
                read_exact(s, &mut first);
                assert_eq!(&first, b"first");
                write_all(s, b"child");
                let (n, revents) = poll_one(s, libc::POLLIN, 10.0);
                assert_eq!(
                    (n, revents & libc::POLLIN),
                    (1, libc::POLLIN),
                    "the client's answer (revents {revents:#x})"
                );
                let mut second = [0u8; 6];
                read_exact(s, &mut second);
                assert_eq!(&second, b"second");
                write_all(s, b"done");
                assert_eq!(vls_close(s), 0);
            });
            assert_eq!(vls_close(s), 0, "the parent drops its copy");
            assert_eq!(wait_child(child, Duration::from_secs(20)), 0, "the child failed");
            assert_eq!(vls_close(l), 0);
        },
        || {
            app("fork-client");
            let c = connect_to(a, TCP);
            write_all(c, b"first");
            let mut from_child = [0u8; 5];
            read_exact(c, &mut from_child);
            assert_eq!(&from_child, b"child");
            write_all(c, b"second");
            let mut done = [0u8; 4];
            read_exact(c, &mut done);
            assert_eq!(&done, b"done");
            assert_eq!(vls_close(c), 0);
        },
    );
}

common::stack_and_cut_through! {
    fresh_connection_left_to_a_child: fresh_connection_left_to_a_child_through_the_stack on 7217, fresh_connection_left_to_a_child_cut_through on 7218
}

/// A server that forks a child per connection (socat's `fork` mode, inetd
/// style) while clients keep connecting, 4 at a time: each child answers
/// and exits at once. VCL frees an exiting child's worker, and the next
/// fork is given the same worker index; the parent, handling the first
/// child's SIGCHLD after that fork, cleaned up the *new* child's live
/// worker by that index, and a later cleanup of it aborted in VCL's heap
/// (double free: socat's parent died after some hundred requests). Every
/// request is answered, every child exits with 0, the parent lives on.
#[test]
fn server_forking_a_child_per_connection_serves_every_one() {
    const CLIENTS: usize = 4;
    const EACH: usize = 20;
    let a = SocketAddr::from(([127, 0, 0, 1], 7219));
    run_pair(
        "server_forking_a_child_per_connection_serves_every_one",
        vpp_harness::cut_through,
        || {
            app("fork-per-connection-server");
            let l = listen_on(a, TCP, false);
            let mut children = Vec::new();
            for _ in 0..CLIENTS * EACH {
                assert_eq!(poll_one(l, libc::POLLIN, 20.0).0, 1, "the next connection within 20 s");
                let s = accept(l);
                assert!(s >= 0, "accept: {s}");
                children.push(fork_child(20, move || {
                    let mut req = [0u8; 5];
                    read_exact(s, &mut req);
                    assert_eq!(&req, b"hello");
                    write_all(s, b"world");
                    assert_eq!(vls_close(s), 0);
                }));
                assert_eq!(vls_close(s), 0, "the parent's copy");
            }
            for pid in children {
                let status = wait_child(pid, Duration::from_secs(20));
                assert!(
                    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                    "child {pid} ended with status {status:#x}"
                );
            }
            assert_eq!(vls_close(l), 0);
        },
        || {
            app("fork-per-connection-client");
            let threads: Vec<_> = (0..CLIENTS)
                .map(|_| {
                    std::thread::spawn(move || {
                        for _ in 0..EACH {
                            let c = connect_to(a, TCP);
                            write_all(c, b"hello");
                            let mut back = [0u8; 5];
                            read_exact(c, &mut back);
                            assert_eq!(&back, b"world");
                            assert_eq!(vls_close(c), 0);
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().expect("client thread");
            }
        },
    );
}
