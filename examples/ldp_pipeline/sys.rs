//! The libc helpers every part of `ldp_pipeline` shares: failing on a
//! negative return (`check`), `errno`, `sockaddr_in` from an address,
//! blocking connect / listen / read / write, `O_NONBLOCK` and `epoll_ctl`.

use std::net::SocketAddrV4;

pub fn check(rv: i32, what: &str) -> i32 {
    if rv < 0 {
        eprintln!("ldp_pipeline: {what}: {}", std::io::Error::last_os_error());
        std::process::exit(1);
    }
    rv
}

pub fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*a.ip()).to_be() },
        sin_zero: [0; 8],
    }
}

pub fn set_nonblocking(fd: i32) {
    // SAFETY: plain fcntl calls on our own socket.
    unsafe {
        let fl = check(libc::fcntl(fd, libc::F_GETFL), "fcntl");
        check(libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK), "fcntl");
    }
}

pub fn epoll_ctl(ep: i32, op: i32, fd: i32, events: u32) {
    let mut ev = libc::epoll_event { events, u64: fd as u64 };
    // SAFETY: valid event.
    check(unsafe { libc::epoll_ctl(ep, op, fd, &mut ev) }, "epoll_ctl");
}

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn connect_blocking(addr: SocketAddrV4) -> i32 {
    // SAFETY: plain socket calls; `sa` outlives the connect call.
    unsafe {
        let fd = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
        let sa = sockaddr(addr);
        check(
            libc::connect(fd, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as u32),
            "connect",
        );
        fd
    }
}

pub fn write_all_blocking(fd: i32, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: `data` is valid for its length.
        let w = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if w < 0 && errno() == libc::EINTR {
            continue;
        }
        data = &data[check(w as i32, "write") as usize..];
    }
}

pub fn read_exact_blocking(fd: i32, buf: &mut [u8]) {
    let mut at = 0;
    while at < buf.len() {
        // SAFETY: `buf[at..]` is valid for its length.
        let r = unsafe { libc::read(fd, buf[at..].as_mut_ptr().cast(), buf.len() - at) };
        if r < 0 && (errno() == libc::EINTR || errno() == libc::EAGAIN) {
            continue;
        }
        if check(r as i32, "read") == 0 {
            eprintln!("fork: connection closed after {at} of {} bytes", buf.len());
            std::process::exit(1);
        }
        at += r as usize;
    }
}

/// A listening socket on `addr`.
pub fn listen_on(addr: SocketAddrV4) -> i32 {
    // SAFETY: plain socket calls; `sa` outlives the bind call.
    unsafe {
        let l = check(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0), "socket");
        let one: i32 = 1;
        libc::setsockopt(l, libc::SOL_SOCKET, libc::SO_REUSEADDR, (&one as *const i32).cast(), 4);
        let sa = sockaddr(addr);
        check(
            libc::bind(l, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of_val(&sa) as u32),
            "bind",
        );
        check(libc::listen(l, 1024), "listen");
        l
    }
}
