//! Helpers of the tests that drive the `vls_*` C ABI directly.

use std::ffi::c_void;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use vls::capi::*;
use vls::ffi;
pub use vls::raw::with_endpt;

pub const EBADFD: i32 = -libc::EBADFD;
pub const EAGAIN: i32 = -libc::EAGAIN;
pub const TCP: u8 = ffi::VPPCOM_PROTO_TCP as u8;
pub const UDP: u8 = ffi::VPPCOM_PROTO_UDP as u8;

pub fn app(name: &str) {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { vls_app_create(c.as_ptr() as *mut _) }, 0, "vls_app_create");
}

pub fn listen_on(addr: SocketAddr, proto: u8, nonblocking: bool) -> i32 {
    let l = vls_create(proto, nonblocking as u8);
    assert!(l >= 0, "vls_create");
    // SAFETY: `ep` is valid during the call.
    let (rv, _) = with_endpt(Some(&addr), |ep| unsafe { vls_bind(l, ep) });
    assert_eq!(rv, 0, "bind");
    assert_eq!(vls_listen(l, 64), 0, "listen");
    l
}

pub fn connect_to(addr: SocketAddr, proto: u8) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let h = vls_create(proto, 0);
        assert!(h >= 0);
        // SAFETY: `ep` is valid during the call.
        let (rv, _) = with_endpt(Some(&addr), |ep| unsafe { vls_connect(h, ep) });
        if rv == 0 {
            return h;
        }
        vls_close(h);
        assert!(rv == -libc::ECONNREFUSED && Instant::now() < deadline, "connect: {rv}");
        thread::sleep(Duration::from_millis(50));
    }
}

pub fn accept(l: i32) -> i32 {
    // SAFETY: `ep` is valid during the call.
    let (h, _) = with_endpt(None, |ep| unsafe { vls_accept(l, ep, 0) });
    h
}

pub fn write_all(h: i32, mut buf: &[u8]) {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for its length.
        let n = unsafe { vls_write(h, buf.as_ptr() as *mut c_void, buf.len()) };
        if n == EAGAIN {
            thread::yield_now();
            continue;
        }
        assert!(n > 0, "write: {n}");
        buf = &buf[n as usize..];
    }
}

pub fn read_some(h: i32, buf: &mut [u8]) -> isize {
    // SAFETY: `buf` is valid for its length.
    unsafe { vls_read(h, buf.as_mut_ptr().cast(), buf.len()) }
}

pub fn read_exact(h: i32, buf: &mut [u8]) {
    let mut got = 0;
    while got < buf.len() {
        let n = read_some(h, &mut buf[got..]);
        assert!(n > 0, "read: {n} after {got}");
        got += n as usize;
    }
}

/// Repeats a polling call until it reports something (or 10 s pass).
pub fn until_positive(mut f: impl FnMut() -> i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let n = f();
        if n != 0 || Instant::now() > deadline {
            return n;
        }
    }
}

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The calling thread's VCL worker index.
pub fn my_worker() -> u32 {
    // SAFETY: reads the calling thread's worker index through the shim.
    unsafe { ffi::vppsys_worker_index() }
}

/// (VCL session index, VCL worker index) of handle `h`.
pub fn session_and_worker(h: i32) -> (u32, u32) {
    let (mut si, mut wi) = (0u32, 0u32);
    // SAFETY: valid out pointers.
    unsafe { vlsh_to_session_and_worker_index(h, &mut si, &mut wi) };
    (si, wi)
}

/// `vls_poll` of one handle, as LDP's `poll` calls it (a `vlsh_to_sh`
/// handle), waiting at most `wait_s` seconds (VCL's unit): (its answer,
/// the entry's `revents`).
pub fn poll_one(h: i32, events: i16, wait_s: f64) -> (i32, i16) {
    let mut vp = ffi::vcl_poll_t { fds_ndx: 0, sh: vlsh_to_sh(h), events, revents: 0 };
    // SAFETY: one valid entry.
    let n = unsafe { vls_poll((&mut vp as *mut ffi::vcl_poll_t).cast(), 1, wait_s) };
    (n, vp.revents)
}
