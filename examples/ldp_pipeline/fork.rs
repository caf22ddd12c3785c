//! `fork-server` and `fork-client`: a connection whose owner forks while
//! bytes are queued on it, and the child that carries on with it under LDP.
//! `exec-server` and `exec-client`: a connection a forked child hands to
//! a program it runs, as `socat`'s `EXEC:` and inetd-style servers do.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::sys::{check, connect_blocking, epoll_ctl, listen_on, read_exact_blocking, write_all_blocking};

/// Bytes the fork client sends before the server forks.
const FORK_QUEUED: usize = 64 << 10;

/// A forking server: accepts one connection, waits until the client's
/// `FORK_QUEUED` bytes are queued, forks, and closes its copy (with that
/// much queued VPP cannot hand the connection over: the parent stays its
/// owner in VPP). The child then reads the bytes, writes `more` and waits
/// in `epoll_wait` (10 s) for the `next` the client sends only then,
/// answers `done`. Prints `fork-server: child exited with <code>` and
/// exits with the child's code (3: the child's wait saw no event).
pub fn fork_server(addr: SocketAddrV4) {
    let l = listen_on(addr);
    // SAFETY: plain libc calls on descriptors this function owns; the child
    // only makes libc calls before it exits.
    unsafe {
        let c = check(libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()), "accept");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut n: i32 = 0;
            // LDP returns the count instead of storing it.
            let rv = check(libc::ioctl(c, libc::FIONREAD, &mut n), "ioctl FIONREAD");
            n = n.max(rv);
            if n as usize >= FORK_QUEUED {
                break;
            }
            if Instant::now() > deadline {
                eprintln!("fork-server: only {n} bytes arrived");
                std::process::exit(1);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut closed = [0i32; 2];
        check(libc::pipe(closed.as_mut_ptr()), "pipe");
        let pid = check(libc::fork(), "fork");
        if pid == 0 {
            let mut b = [0u8; 1];
            read_exact_blocking(closed[0], &mut b);
            let mut got = vec![0u8; FORK_QUEUED];
            read_exact_blocking(c, &mut got);
            if got.iter().any(|&x| x != 3) {
                eprintln!("fork-server child: the queued bytes differ");
                libc::_exit(1);
            }
            let ep = check(libc::epoll_create1(0), "epoll_create1");
            epoll_ctl(ep, libc::EPOLL_CTL_ADD, c, libc::EPOLLIN as u32);
            write_all_blocking(c, b"more");
            let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 4];
            let t0 = Instant::now();
            let n = libc::epoll_wait(ep, evs.as_mut_ptr(), 4, 10_000);
            if n != 1 {
                eprintln!("fork-server child: epoll_wait gave {n} after {} ms", t0.elapsed().as_millis());
                libc::_exit(3);
            }
            let mut next = [0u8; 4];
            read_exact_blocking(c, &mut next);
            write_all_blocking(c, if &next == b"next" { b"done" } else { b"bad!" });
            libc::close(c);
            libc::_exit(0);
        }
        check(libc::close(c), "close");
        write_all_blocking(closed[1], b"x");
        let mut status = 0;
        check(libc::waitpid(pid, &mut status, 0), "waitpid");
        let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 };
        println!("fork-server: child exited with {code}");
        std::process::exit(code);
    }
}

/// The fork server's client: sends `FORK_QUEUED` bytes, waits for `more`,
/// then (200 ms later) sends `next` and expects `done`. Prints
/// `fork-client: done`.
pub fn fork_client(addr: SocketAddrV4) {
    let c = connect_blocking(addr);
    write_all_blocking(c, &vec![3u8; FORK_QUEUED]);
    let mut more = [0u8; 4];
    read_exact_blocking(c, &mut more);
    std::thread::sleep(Duration::from_millis(200));
    write_all_blocking(c, b"next");
    let mut done = [0u8; 4];
    read_exact_blocking(c, &mut done);
    if &done != b"done" {
        eprintln!("fork-client: got {:?}", String::from_utf8_lossy(&done));
        std::process::exit(1);
    }
    println!("fork-client: done");
}

/// A server whose child runs another program while it holds the
/// connection: accepts one connection, forks and closes its copy; the child
/// forks again, and that grandchild runs `sleep 20` with `execl` (holding the
/// inherited connection, which it never uses); the child reads `ping`,
/// answers `pong`, closes and exits at once, before the grandchild. The
/// client must then see the end of the stream: the grandchild's copy went
/// with its `exec`. The server stays 6 s after its child exited (the end
/// must not come from its own exit). Prints `exec-server: child exited
/// with <code>`, and the grandchild's pid as `exec-server: grandchild
/// <pid>`.
pub fn exec_server(addr: SocketAddrV4) {
    let l = listen_on(addr);
    // SAFETY: plain libc calls on descriptors this function owns; the
    // children make only libc calls before they exit or exec.
    unsafe {
        let c = check(libc::accept(l, std::ptr::null_mut(), std::ptr::null_mut()), "accept");
        let pid = check(libc::fork(), "fork");
        if pid == 0 {
            let grandchild = check(libc::fork(), "fork");
            if grandchild == 0 {
                // Not the server's output pipes: its reader waits for them.
                let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
                libc::dup2(null, 1);
                libc::dup2(null, 2);
                // The variadic form: libvls.so's goes through its `execv`.
                libc::execl(
                    c"/bin/sleep".as_ptr(),
                    c"sleep".as_ptr(),
                    c"20".as_ptr(),
                    std::ptr::null::<i8>(),
                );
                libc::_exit(127);
            }
            println!("exec-server: grandchild {grandchild}");
            let mut ping = [0u8; 4];
            read_exact_blocking(c, &mut ping);
            write_all_blocking(c, if &ping == b"ping" { b"pong" } else { b"bad!" });
            libc::close(c);
            libc::_exit(0);
        }
        check(libc::close(c), "close");
        let mut status = 0;
        check(libc::waitpid(pid, &mut status, 0), "waitpid");
        let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 };
        println!("exec-server: child exited with {code}");
        // Alive (as a forking server is) past the client's wait: the end of
        // the stream must not come from this process's exit.
        std::thread::sleep(Duration::from_secs(6));
        std::process::exit(code);
    }
}

/// The exec server's client: sends `ping`, expects `pong` and then the end
/// of the stream within 5 s. Prints `exec-client: done`; exits 2 if the
/// stream does not end.
pub fn exec_client(addr: SocketAddrV4) {
    let c = connect_blocking(addr);
    write_all_blocking(c, b"ping");
    let mut pong = [0u8; 4];
    read_exact_blocking(c, &mut pong);
    if &pong != b"pong" {
        eprintln!("exec-client: got {:?}", String::from_utf8_lossy(&pong));
        std::process::exit(1);
    }
    let mut p = libc::pollfd { fd: c, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 5000) };
    let mut b = [0u8; 1];
    // SAFETY: reads into a valid 1-byte buffer.
    let got = if n == 1 { unsafe { libc::read(c, b.as_mut_ptr().cast(), 1) } } else { -2 };
    if got != 0 {
        eprintln!("exec-client: no end of stream within 5 s (poll {n}, read {got})");
        std::process::exit(2);
    }
    println!("exec-client: done");
}
